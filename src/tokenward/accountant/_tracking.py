"""Dimensions and tracking: who a call belongs to, and live totals for a block of code.

``Dims`` is the one normalized form of a call's dimensions (``user_id``,
``conversation_id``, ``session_id``, ``agent`` and ``tags``). Every value passes the
input hygiene of :mod:`tokenward._hygiene` when it enters here, once: stores only ever
see text they can encode and keys they can index. A value longer than the key limit is
kept as a bounded form (prefix + hash), and its original (cleaned, capped) is kept for
display in the tag ``"<name>.original"``.

``track(...)`` blocks set dimensions for every call inside them (``contextvars``, so
threads and asyncio tasks each see their own) and count the events settled inside.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import threading
from collections.abc import Callable, Mapping
from decimal import Decimal
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from tokenward._hygiene import MAX_KEY, MAX_TEXT, bounded, clean
from tokenward.errors import ConfigurationError
from tokenward.usage import Usage

if TYPE_CHECKING:
    from tokenward.ledger import UsageEvent

__all__ = [
    "DIMENSION_KEYS",
    "EMPTY_DIMS",
    "Dims",
    "Tracker",
    "active_trackers",
    "current_dims",
    "key_text",
    "track",
]

#: The dimension keys every event carries (``tags`` is a separate str->str mapping).
DIMENSION_KEYS: tuple[str, ...] = ("user_id", "conversation_id", "session_id", "agent")
_ORIGINAL = ".original"

F = TypeVar("F", bound=Callable[..., Any])


def _text(value: Any) -> str:
    if type(value) is str:
        return value
    try:
        return str(value)
    except Exception:  # noqa: BLE001  # a value whose __str__ raises is still a value
        return f"<unprintable {type(value).__name__}>"


def key_text(value: Any) -> tuple[str | None, str | None]:
    """``(stored form, original)`` of a dimension value: cleaned text, bounded to ``MAX_KEY``
    (``original`` is set only when it had to be shortened); ``(None, None)`` for ``""``."""
    text = clean(_text(value))
    if not text:
        return None, None
    if len(text) <= MAX_KEY:
        return text, None
    return bounded(text), text[:MAX_TEXT]


class Dims:
    """Normalized dimensions of a call: the four standard keys plus tags."""

    __slots__ = ("agent", "conversation_id", "session_id", "tags", "user_id")

    def __init__(self) -> None:
        self.user_id: str | None = None
        self.conversation_id: str | None = None
        self.session_id: str | None = None
        self.agent: str | None = None
        self.tags: dict[str, str] = {}

    def merged(self, other: Mapping[str, Any] | None) -> Dims:
        """A copy with ``other``'s non-None values on top (tags merged key by key).

        Unknown keys in ``other`` become tags, so ``dims={"team": "search"}`` works. Values
        are cleaned and bounded here (see the module docstring).
        """
        out = Dims()
        out.user_id = self.user_id
        out.conversation_id = self.conversation_id
        out.session_id = self.session_id
        out.agent = self.agent
        if self.tags:
            out.tags = dict(self.tags)
        if not other:
            return out
        for key, value in other.items():
            if value is None:
                continue
            if key == "tags":
                if not isinstance(value, Mapping):
                    raise ConfigurationError(
                        f"dims['tags'] must be a mapping of str to str, got {type(value).__name__}"
                    )
                for tag, tag_value in value.items():
                    out._set_tag(tag, tag_value)
            elif key in DIMENSION_KEYS:
                stored, original = key_text(value)
                setattr(out, key, stored)
                if original is not None:
                    out.tags[key + _ORIGINAL] = original
            else:
                out._set_tag(key, value)
        return out

    def _set_tag(self, key: Any, value: Any) -> None:
        name, _ = key_text(key)
        if name is None:
            return
        stored, original = key_text(value)
        self.tags[name] = stored or ""
        if original is not None:
            self.tags[name + _ORIGINAL] = original

    def as_dict(self) -> dict[str, Any]:
        return {
            "user_id": self.user_id,
            "conversation_id": self.conversation_id,
            "session_id": self.session_id,
            "agent": self.agent,
            "tags": dict(self.tags),
        }

    def for_budgets(self, model: str, provider: str | None) -> dict[str, Any]:
        """What budgets match on: the standard keys, ``tags``, and the model and provider
        (so a budget can be limited to one of them)."""
        return {
            "user_id": self.user_id,
            "conversation_id": self.conversation_id,
            "session_id": self.session_id,
            "agent": self.agent,
            "tags": self.tags,
            "model": model,
            "provider": provider,
        }


EMPTY_DIMS = Dims()
_current_dims: contextvars.ContextVar[Dims] = contextvars.ContextVar(
    "tokenward_dims", default=EMPTY_DIMS
)
_current_trackers: contextvars.ContextVar[tuple[Tracker, ...]] = contextvars.ContextVar(
    "tokenward_trackers", default=()
)


def current_dims() -> dict[str, Any]:
    """Dimensions set by the enclosing :func:`track` blocks (innermost wins).

    Adapters merge these under the dimensions they read from framework metadata,
    so ``with track(user_id="u1"):`` attributes every call inside to ``u1``.
    Returns ``{"user_id", "conversation_id", "session_id", "agent", "tags"}``.
    """
    return _current_dims.get().as_dict()


def resolve_dims(dims: Mapping[str, Any] | None) -> Dims:
    """The dimensions of a call made now: the enclosing ``track()`` blocks', ``dims`` on top."""
    return _current_dims.get().merged(dims)


def active_trackers() -> tuple[Tracker, ...]:
    """The trackers of the enclosing ``track()`` blocks."""
    return _current_trackers.get()


def union(a: tuple[Tracker, ...], b: tuple[Tracker, ...]) -> tuple[Tracker, ...]:
    """Trackers in ``a`` then those of ``b`` not already in it."""
    if not b or a == b:
        return a
    if not a:
        return b
    return a + tuple(t for t in b if not any(t is x for x in a))


class Tracker:
    """Live totals for a block of code: a context manager and a decorator.

    ``with track(user_id="u1") as t:`` counts every event settled inside the block
    (by any :class:`~tokenward.Accountant`, or only by one when created with
    :meth:`Accountant.track`) and applies its dimensions to calls made inside.
    Nested trackers all count an inner event; concurrent asyncio tasks and threads
    each see only their own blocks (``contextvars``).

    ``cost`` sums the priced events; ``unpriced_calls`` counts events whose cost is
    unknown (a model with no price), so a total is never silently short.

    Used as a decorator, each invocation of the function gets a fresh tracker
    (sync and ``async def`` functions); the last one is kept in ``.last``.
    """

    def __init__(
        self,
        dims: Mapping[str, Any] | None = None,
        *,
        accountant: object | None = None,
        keep_events: bool = True,
    ) -> None:
        self._dims_arg: dict[str, Any] = dict(dims or {})
        Dims().merged(self._dims_arg)  # validate early
        self._accountant = accountant
        self._keep_events = keep_events
        self._lock = threading.Lock()
        self._tokens: list[
            tuple[contextvars.Token[Dims], contextvars.Token[tuple[Tracker, ...]]]
        ] = []
        self.calls = 0
        self.errors = 0
        self.unpriced_calls = 0
        self.usage = Usage()
        self.cost: Decimal = Decimal(0)
        self.estimated = False
        self.events: list[UsageEvent] = []
        self.last: Tracker | None = None

    # -- totals
    @property
    def dims(self) -> dict[str, Any]:
        """The dimensions this tracker applies (as given)."""
        return dict(self._dims_arg)

    @property
    def input_tokens(self) -> int:
        return self.usage.input

    @property
    def output_tokens(self) -> int:
        return self.usage.output

    @property
    def total_tokens(self) -> int:
        return self.usage.total

    def add(self, event: UsageEvent, accountant: object) -> None:
        """Count ``event`` (recorded by ``accountant``) in the totals."""
        if self._accountant is not None and accountant is not self._accountant:
            return
        with self._lock:
            self.calls += 1
            if event.status != "ok":
                self.errors += 1
            self.usage = self.usage + event.usage
            if event.cost is None:
                self.unpriced_calls += 1
            else:
                self.cost += event.cost
            self.estimated = self.estimated or bool(event.estimated)
            if self._keep_events:
                self.events.append(event)

    def summary(self) -> dict[str, Any]:
        """Totals as plain data (cost as a string to keep Decimal precision)."""
        return {
            "calls": self.calls,
            "errors": self.errors,
            "unpriced_calls": self.unpriced_calls,
            "usage": self.usage.to_dict(),
            "cost": str(self.cost),
            "estimated": self.estimated,
        }

    def __repr__(self) -> str:
        unpriced = f", unpriced_calls={self.unpriced_calls}" if self.unpriced_calls else ""
        return (
            f"Tracker(calls={self.calls}, errors={self.errors}, input={self.usage.input}, "
            f"output={self.usage.output}, cost=${self.cost}{unpriced}, "
            f"estimated={self.estimated})"
        )

    # -- context manager
    def __enter__(self) -> Tracker:
        t1 = _current_dims.set(_current_dims.get().merged(self._dims_arg))
        t2 = _current_trackers.set((*_current_trackers.get(), self))
        self._tokens.append((t1, t2))
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        t1, t2 = self._tokens.pop()
        _current_trackers.reset(t2)
        _current_dims.reset(t1)

    async def __aenter__(self) -> Tracker:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, tb)

    # -- decorator
    def _fresh(self) -> Tracker:
        return Tracker(self._dims_arg, accountant=self._accountant, keep_events=self._keep_events)

    def __call__(self, func: F) -> F:
        if inspect.isgeneratorfunction(func) or inspect.isasyncgenfunction(func):
            raise TypeError(
                f"track() cannot decorate the generator function {func.__qualname__}: its "
                f"block would end at the first yield; use `with track(...):` inside it"
            )
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                tracker = self._fresh()
                self.last = tracker
                with tracker:
                    return await func(*args, **kwargs)

            async_wrapper.tracker = self  # type: ignore[attr-defined]
            return async_wrapper  # type: ignore[return-value]

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            tracker = self._fresh()
            self.last = tracker
            with tracker:
                return func(*args, **kwargs)

        wrapper.tracker = self  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]


def track(**dims: Any) -> Tracker:
    """Live totals (calls, usage, cost, errors) of every call made inside a block.

    Like LangChain's ``get_openai_callback`` but for every provider, with cost, and
    usable as a decorator. Keyword arguments (``user_id``, ``conversation_id``,
    ``session_id``, ``agent``, ``tags={...}``, or any other key, which becomes a
    tag) are applied to calls inside the block::

        with track(user_id="u1") as t:
            chain.invoke(...)
        print(t.cost, t.usage.total, t.calls)
    """
    return Tracker(dims)
