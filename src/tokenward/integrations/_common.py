"""What every framework adapter shares: one guard around each callback body, one policy.

An adapter must never break the app it observes, except where the user asked for it.
Every adapter callback body runs under :func:`guard` (sentry-python's
``capture_internal_exceptions`` pattern). Its policy, in one place:

* **denials reach the caller**, before the model runs: ``BudgetExceededError`` (a hard
  budget said no; ``UnpricedModelError`` for a USD budget and a model with no price) and
  ``BudgetStoreUnavailableError`` (the budgets could not be checked and the budget's
  ``fail_mode`` is ``"closed"``). Whether an enforcement error denies the call is decided
  by the budgets' ``fail_mode`` (``Budgets.enforcement_failed``), never by an adapter;
* **cancellation passes through** untouched (``asyncio.CancelledError``,
  ``KeyboardInterrupt``, ``GeneratorExit``: not ``Exception`` subclasses);
* **everything else is an internal error**: logged once per kind (adapter step and error
  type, with its traceback; later ones at debug level), and swallowed. A ``fallback``
  given to the guard then runs, so the call still gets its ledger event (e.g. an end
  callback whose usage could not be read records the call with estimated usage).

An unknown model is not an error at all: its call runs and is recorded with its tokens
and cost unknown.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any

from tokenward.errors import BudgetExceededError, BudgetStoreUnavailableError

__all__ = ["BASE_URL_KEYS", "DENIALS", "MODEL_KEYS", "guard", "log_internal_error"]

#: Errors an adapter lets through to the caller: the call is denied.
DENIALS: tuple[type[Exception], ...] = (BudgetExceededError, BudgetStoreUnavailableError)

#: Keys under which framework objects name their model, best first.
MODEL_KEYS = (
    "model",
    "model_name",
    "model_id",
    "deployment_name",
    "deployment",
    "engine",
    "azure_deployment",
)

#: Keys under which framework objects name the endpoint they send requests to.
BASE_URL_KEYS = ("base_url", "openai_api_base", "api_base", "azure_endpoint", "endpoint")

_seen_lock = threading.Lock()
_seen: set[tuple[str, str]] = set()


def log_internal_error(logger: logging.Logger, what: str, exc: BaseException) -> None:
    """Log an adapter's internal error: the first of its kind with its traceback at ERROR,
    repeats at DEBUG (a broken store or a bug must not flood the host's logs per call)."""
    key = (what, type(exc).__qualname__)
    with _seen_lock:
        first = key not in _seen
        _seen.add(key)
    if first:
        logger.error(
            "internal error in tokenward (%s); the call goes on. Logged once per kind: %s: %s",
            what,
            type(exc).__name__,
            exc,
            exc_info=exc,
        )
    else:
        logger.debug("internal error in tokenward (%s): %r", what, exc)


class guard:  # used like a function: ``with guard(logger, "step"):``
    """Run an adapter body: denials and cancellation propagate, other errors are logged once
    per kind and swallowed, then ``fallback()`` (if given) runs under the same policy.

    A guard keeps no state while it runs: one made once per step (without a per-call
    fallback) can serve every call, in every thread."""

    __slots__ = ("fallback", "logger", "what")

    def __init__(
        self, logger: logging.Logger, what: str, fallback: Callable[[], Any] | None = None
    ) -> None:
        self.logger = logger
        self.what = what
        self.fallback = fallback

    def __enter__(self) -> guard:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        if exc is None or not isinstance(exc, Exception) or isinstance(exc, DENIALS):
            return False
        log_internal_error(self.logger, self.what, exc)
        if self.fallback is not None:
            with guard(self.logger, f"{self.what} (fallback)"):
                self.fallback()
        return True
