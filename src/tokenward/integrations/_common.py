"""What every framework adapter shares: which errors reach the host application.

An adapter must never break the app it observes: a bug in tokenward (or a broken
store) is logged and swallowed. Two errors are the user's to see, raised before the
model is called: a hard budget denial, and a model the catalog does not know (register
it or choose ``Catalog(fallback=...)``; a silent zero cost is never an option).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from tokenward.errors import BudgetExceededError, UnknownModelError

__all__ = ["MODEL_KEYS", "PROPAGATE", "swallow_internal_errors"]

#: Errors an adapter lets through to the caller.
PROPAGATE: tuple[type[Exception], ...] = (BudgetExceededError, UnknownModelError)

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


@contextmanager
def swallow_internal_errors(logger: logging.Logger, what: str | None = None) -> Iterator[None]:
    """Log and swallow any error in an adapter body except those in :data:`PROPAGATE`."""
    try:
        yield
    except PROPAGATE:
        raise
    except Exception:
        if what:
            logger.error("internal error in tokenward (%s)", what, exc_info=True)
        else:
            logger.error("internal error in tokenward", exc_info=True)
