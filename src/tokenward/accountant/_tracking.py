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
from tokenward._memo import remember
from tokenward.errors import ConfigurationError
from tokenward.ledger._event import event_tags
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
EMPTY_TAGS = event_tags(None)

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


def _set_tag(tags: dict[str, str], key: Any, value: Any) -> None:
    name, _ = key_text(key)
    if name is None:
        return
    stored, original = key_text(value)
    tags[name] = stored or ""
    if original is not None:
        tags[name + _ORIGINAL] = original


class Dims:
    """Normalized dimensions of a call: the four standard keys plus tags.

    Never changed once built (:meth:`merged` returns a new one), so one ``Dims`` is shared by
    every call made with the same dimensions (see :func:`resolve_dims`).
    """

    __slots__ = ("_scope", "agent", "conversation_id", "route", "session_id", "tags", "user_id")

    def __init__(self) -> None:
        self.user_id: str | None = None
        self.conversation_id: str | None = None
        self.session_id: str | None = None
        self.agent: str | None = None
        #: read-only, sorted (what events keep: ``event_tags``)
        self.tags: Mapping[str, str] = EMPTY_TAGS
        self._scope: tuple[str, str | None, dict[str, Any]] | None = None
        #: what output lengths are learned per (the predictor): the ``route`` tag, else the
        #: agent; set once, as the Dims is built
        self.route: str | None = None

    def merged(self, other: Mapping[str, Any] | None) -> Dims:
        """These dimensions with ``other``'s non-None values on top (tags merged key by key).

        Unknown keys in ``other`` become tags, so ``dims={"team": "search"}`` works. Values
        are cleaned and bounded here (see the module docstring).
        """
        if not other:
            return self
        out = Dims()
        out.user_id = self.user_id
        out.conversation_id = self.conversation_id
        out.session_id = self.session_id
        out.agent = self.agent
        tags = dict(self.tags)
        for key, value in other.items():
            if value is None:
                continue
            if key == "tags":
                if not isinstance(value, Mapping):
                    raise ConfigurationError(
                        f"dims['tags'] must be a mapping of str to str, got {type(value).__name__}"
                    )
                for tag, tag_value in value.items():
                    _set_tag(tags, tag, tag_value)
            elif key in DIMENSION_KEYS:
                stored, original = key_text(value)
                setattr(out, key, stored)
                if original is not None:
                    tags[key + _ORIGINAL] = original
            else:
                _set_tag(tags, key, value)
        out.tags = event_tags(tags)
        out.route = out.tags.get("route") or out.agent
        return out

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
        (so a budget can be limited to one of them). Budgets only read it: the same dict is
        handed out again for the same model and provider."""
        scope = self._scope
        if scope is not None and scope[0] == model and scope[1] == provider:
            return scope[2]
        out = {
            "user_id": self.user_id,
            "conversation_id": self.conversation_id,
            "session_id": self.session_id,
            "agent": self.agent,
            "tags": self.tags,
            "model": model,
            "provider": provider,
        }
        self._scope = (model, provider, out)
        return out


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


#: (enclosing dims, dims given as key/value pairs) -> the resolved Dims (see resolve_dims)
_resolved: dict[tuple[Any, ...], Dims] = {}
_RESOLVED_MAX = 4096


def _content(dims: Mapping[str, Any]) -> list[Any] | None:
    """``dims`` as a flat list of its keys and values when they are all text (``tags`` a dict
    of text), else ``None``: values of other types (1 and True hash alike) are not cached."""
    parts: list[Any] = []
    for key, value in dims.items():
        if type(key) is not str:
            return None
        if type(value) is str or value is None:
            parts += (key, value)
        elif key == "tags" and type(value) is dict:
            pairs = tuple(value.items())
            for pair in pairs:
                if type(pair[0]) is not str or type(pair[1]) is not str:
                    return None
            parts += (key, pairs)
        else:
            return None
    return parts


def resolve_dims(dims: Mapping[str, Any] | None) -> Dims:
    """The dimensions of a call made now: the enclosing ``track()`` blocks', ``dims`` on top.

    Resolved once per distinct content: calls made with the same dimensions (and ``track()``
    blocks entered with them) share one :class:`Dims` (values are cleaned and bounded only
    the first time)."""
    base = _current_dims.get()
    if not dims:
        return base
    content = _content(dims)
    if content is None:
        return base.merged(dims)
    key = (base, *content)
    hit = _resolved.get(key)
    if hit is None:
        hit = remember(_resolved, key, base.merged(dims), _RESOLVED_MAX)
    return hit


#: ``active_trackers()``: the trackers of the enclosing ``track()`` blocks (the context
#: variable's own getter: read twice per call, it adds no Python frame)
active_trackers: Callable[[], tuple[Tracker, ...]] = _current_trackers.get


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
        t1 = _current_dims.set(resolve_dims(self._dims_arg))
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
