"""The shared accounting core: estimate -> reserve -> settle -> record -> notify.

Every framework adapter feeds one :class:`Accountant`. The lifecycle of a model
call is keyed by a call id (``run_id``)::

    est = accountant.preflight(run_id, "gpt-4o", messages=msgs, dims={"user_id": "u1"})
    # ... call the provider (BudgetExceededError was raised above if a hard budget said no)
    event = accountant.settle(run_id, Usage.from_any(response))
    # or, when the call failed:
    accountant.release(run_id, error=exc)

The Accountant holds no pricing, counting or storage logic of its own: input
tokens come from :mod:`tokenward.counting`, money from :func:`tokenward.cost.cost`
(the same function for the estimate and for the final bill, so tiers and cache
prices apply to both), events go to a :mod:`tokenward.ledger` store and budget
reservations to :class:`tokenward.budgets.Budgets`.

Default ledger: ``Accountant()`` keeps events in memory (no file appears behind
your back). Pass ``ledger="path/to/ledger.db"`` (or any URL :func:`open_ledger`
accepts), or use :meth:`Accountant.default`, which honours ``TOKENWARD_DB`` and
otherwise writes SQLite to ``./.tokenward/ledger.db``.
"""

from __future__ import annotations

import contextvars
import dataclasses
import functools
import inspect
import logging
import os
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from tokenward.errors import ConfigurationError
from tokenward.ledger import UsageEvent
from tokenward.usage import Usage

if TYPE_CHECKING:
    from tokenward.budgets import Budgets
    from tokenward.catalog import Catalog, ModelInfo
    from tokenward.counting import TokenCounter
    from tokenward.ledger import LedgerStore

__all__ = [
    "DIMENSION_KEYS",
    "Accountant",
    "Estimate",
    "Tracker",
    "current_dims",
    "get_default_accountant",
    "set_default_accountant",
    "track",
]

logger = logging.getLogger("tokenward")

#: The dimension keys every event carries (``tags`` is a separate str->str mapping).
DIMENSION_KEYS: tuple[str, ...] = ("user_id", "conversation_id", "session_id", "agent")

_DEFAULT_DB_PATH = os.path.join(".tokenward", "ledger.db")
_get_counter: Callable[..., TokenCounter] | None = None  # tokenward.counting.get_counter, lazily
_MAX_PENDING = 10_000
_MAX_SETTLED = 100_000
_ZERO = Decimal(0)

F = TypeVar("F", bound=Callable[..., Any])


# --------------------------------------------------------------------------- dims
class _Dims:
    """Normalized dimensions of a call: the four standard keys plus tags."""

    __slots__ = ("agent", "conversation_id", "session_id", "tags", "user_id")

    def __init__(
        self,
        user_id: str | None = None,
        conversation_id: str | None = None,
        session_id: str | None = None,
        agent: str | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> None:
        self.user_id = user_id
        self.conversation_id = conversation_id
        self.session_id = session_id
        self.agent = agent
        self.tags: dict[str, str] = dict(tags) if tags else {}

    def merged(self, other: Mapping[str, Any] | None) -> _Dims:
        """A copy with ``other``'s non-None values on top (tags merged key by key).

        Unknown keys in ``other`` become tags, so ``dims={"team": "search"}`` works.
        """
        out = _new_dims(_Dims)
        out.user_id = self.user_id
        out.conversation_id = self.conversation_id
        out.session_id = self.session_id
        out.agent = self.agent
        out.tags = dict(self.tags) if self.tags else {}
        if not other:
            return out
        for key, value in other.items():
            if value is None:
                continue
            if key == "user_id":  # the common keys first, without setattr()
                out.user_id = value if type(value) is str else str(value)
            elif key == "conversation_id":
                out.conversation_id = value if type(value) is str else str(value)
            elif key == "tags":
                if not isinstance(value, Mapping):
                    raise ConfigurationError(
                        f"dims['tags'] must be a mapping of str to str, got {type(value).__name__}"
                    )
                if value:
                    out.tags.update({str(k): str(v) for k, v in value.items()})
            elif key in DIMENSION_KEYS:
                setattr(out, key, str(value))
            else:
                out.tags[str(key)] = str(value)
        return out

    def as_dict(self) -> dict[str, Any]:
        return {
            "user_id": self.user_id,
            "conversation_id": self.conversation_id,
            "session_id": self.session_id,
            "agent": self.agent,
            "tags": dict(self.tags),
        }


_new_dims = object.__new__
_EMPTY_DIMS = _Dims()
_current_dims: contextvars.ContextVar[_Dims] = contextvars.ContextVar(
    "tokenward_dims", default=_EMPTY_DIMS
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


# --------------------------------------------------------------------------- estimate
@dataclass(frozen=True, slots=True)
class Estimate:
    """What :meth:`Accountant.preflight` expects a call to cost (and reserved on budgets).

    ``prompt_tokens`` is the input count (``exact`` says whether a real tokenizer
    produced it), ``expected_output`` the output tokens assumed for the estimate,
    ``cost`` the USD amount priced by the same function as the final bill.
    """

    run_id: str
    model: str
    prompt_tokens: int
    exact: bool
    expected_output: int
    cost: Decimal
    provider: str | None = None
    reserved: bool = False

    @property
    def tokens(self) -> int:
        """Input plus expected output tokens (what token budgets reserve)."""
        return self.prompt_tokens + self.expected_output


@dataclass(slots=True)
class _Pending:
    estimate: Estimate
    info: ModelInfo
    requested_model: str
    dims: _Dims
    parent_id: str | None
    kind: str
    started: float
    trackers: tuple[Tracker, ...]
    prompt_text: str | None


# --------------------------------------------------------------------------- tracker
class Tracker:
    """Live totals for a block of code: a context manager and a decorator.

    ``with track(user_id="u1") as t:`` counts every event settled inside the block
    (by any :class:`Accountant`, or only by one when created with
    :meth:`Accountant.track`) and applies its dimensions to calls made inside.
    Nested trackers all count an inner event; concurrent asyncio tasks and threads
    each see only their own blocks (``contextvars``).

    Used as a decorator, each invocation of the function gets a fresh tracker
    (sync and ``async def`` functions); the last one is kept in ``.last``.
    """

    def __init__(
        self,
        dims: Mapping[str, Any] | None = None,
        *,
        accountant: Accountant | None = None,
        keep_events: bool = True,
    ) -> None:
        self._dims_arg: dict[str, Any] = dict(dims or {})
        _Dims().merged(self._dims_arg)  # validate early
        self._accountant = accountant
        self._keep_events = keep_events
        self._lock = threading.Lock()
        self._tokens: list[
            tuple[contextvars.Token[_Dims], contextvars.Token[tuple[Tracker, ...]]]
        ] = []
        self.calls = 0
        self.errors = 0
        self.usage = Usage()
        self.cost: Decimal = _ZERO
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

    def _add(self, event: UsageEvent, accountant: Accountant) -> None:
        if self._accountant is not None and accountant is not self._accountant:
            return
        with self._lock:
            self.calls += 1
            if event.status != "ok":
                self.errors += 1
            self.usage = self.usage + event.usage
            self.cost += event.cost
            self.estimated = self.estimated or bool(event.estimated)
            if self._keep_events:
                self.events.append(event)

    def summary(self) -> dict[str, Any]:
        """Totals as plain data (cost as a string to keep Decimal precision)."""
        return {
            "calls": self.calls,
            "errors": self.errors,
            "usage": self.usage.to_dict(),
            "cost": str(self.cost),
            "estimated": self.estimated,
        }

    def __repr__(self) -> str:
        return (
            f"Tracker(calls={self.calls}, errors={self.errors}, input={self.usage.input}, "
            f"output={self.usage.output}, cost=${self.cost}, estimated={self.estimated})"
        )

    # -- context manager
    def __enter__(self) -> Tracker:
        t1 = _current_dims.set(_current_dims.get().merged(self._dims_arg))
        t2 = _current_trackers.set(_current_trackers.get() + (self,))
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


# --------------------------------------------------------------------------- accountant
def _is_cancellation(error: BaseException | str | None) -> bool:
    if error is None:
        return False
    if isinstance(error, str):
        return error.strip().lower() in ("cancelled", "canceled")
    import asyncio
    import concurrent.futures

    return isinstance(
        error, (asyncio.CancelledError, concurrent.futures.CancelledError, KeyboardInterrupt)
    )


def _error_text(error: BaseException | str | None) -> str | None:
    if error is None:
        return None
    if isinstance(error, str):
        return error
    text = str(error)
    name = type(error).__name__
    return f"{name}: {text}" if text else name


class Accountant:
    """Prices, bounds and records every model call; the one object adapters need.

    Parameters
    ----------
    catalog:
        Model prices and windows (default: the shipped catalog, process-wide).
    ledger:
        A ledger store, a SQLite path / database URL (opened with ``open_ledger``),
        or ``None`` for an in-memory ledger. See :meth:`default` for a SQLite file.
    budgets:
        Optional :class:`~tokenward.budgets.Budgets`; ``preflight`` reserves on them
        and raises ``BudgetExceededError`` before the provider is called.
    sinks:
        Callables notified with each recorded :class:`UsageEvent`. A sink that
        raises is logged and skipped; it never breaks the call or other sinks.
    expected_output_tokens:
        Output assumed by estimates when the call sets no ``max_output_tokens``
        (capped at the model's max output).
    store_content:
        Opt in to storing prompt and output text on events (off by default).
    clock:
        Returns the timestamp of new events (tz-aware UTC). For tests and demos.

    Thread-safe and asyncio-safe: a short lock guards the pending-call map only;
    no lock is held while counting, pricing, writing to the ledger or notifying.
    """

    def __init__(
        self,
        *,
        catalog: Catalog | None = None,
        ledger: LedgerStore | str | os.PathLike[str] | None = None,
        budgets: Budgets | None = None,
        sinks: Sequence[Callable[[UsageEvent], Any]] = (),
        expected_output_tokens: int = 1024,
        store_content: bool = False,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        if expected_output_tokens < 0:
            raise ConfigurationError(
                f"expected_output_tokens must be >= 0, got {expected_output_tokens}"
            )
        if catalog is None:
            from tokenward.catalog import default_catalog

            catalog = default_catalog()
        if ledger is None:
            from tokenward.ledger import MemoryLedger

            ledger = MemoryLedger()
        elif isinstance(ledger, (str, os.PathLike)):
            from tokenward.ledger import open_ledger

            ledger = open_ledger(os.fspath(ledger))
        self.catalog: Catalog = catalog
        self.ledger: LedgerStore = ledger
        self.budgets: Budgets | None = budgets
        self.expected_output_tokens = expected_output_tokens
        self.store_content = store_content
        self._sinks: list[Callable[[UsageEvent], Any]] = list(sinks)
        self._clock = clock
        self._lock = threading.Lock()
        self._pending: OrderedDict[str, _Pending] = OrderedDict()
        self._settled: OrderedDict[str, None] = OrderedDict()
        from tokenward.cost import _cost_total, _estimate_total
        from tokenward.cost import to_nanos as _to_nanos

        #: ``cost(usage, info).total`` without the breakdown (the same arithmetic)
        self._cost_total = _cost_total
        self._estimate_total = _estimate_total  # the same for a plain input/output guess
        self._to_nanos = _to_nanos
        #: model name -> (catalog generation, catalog fallback, info, name to record)
        self._infos: dict[str, tuple[Any, Any, ModelInfo, str]] = {}

    @classmethod
    def default(cls, **kwargs: Any) -> Accountant:
        """An Accountant with a SQLite ledger at ``$TOKENWARD_DB`` or ``./.tokenward/ledger.db``.

        The directory is created if needed. Other keyword arguments are passed on.
        """
        target = kwargs.pop("ledger", None) or os.environ.get("TOKENWARD_DB") or _DEFAULT_DB_PATH
        target = os.fspath(target)
        if "://" not in target:
            directory = os.path.dirname(os.path.abspath(target))
            os.makedirs(directory, exist_ok=True)
        return cls(ledger=target, **kwargs)

    # -- sinks
    def add_sink(self, sink: Callable[[UsageEvent], Any]) -> None:
        """Notify ``sink(event)`` for every recorded event."""
        self._sinks.append(sink)

    def remove_sink(self, sink: Callable[[UsageEvent], Any]) -> None:
        """Stop notifying ``sink``."""
        self._sinks.remove(sink)

    # -- helpers
    def _now(self) -> datetime:
        if self._clock is not None:
            return self._clock()
        return datetime.now(timezone.utc)

    def _calibrate(self, info: ModelInfo, estimate: int, reported: int) -> None:
        """Teach the model's estimator the provider's count for a prompt we estimated."""
        observe = getattr(self._counter(info), "observe", None)
        if observe is None or reported <= 0:
            return
        try:
            observe(estimate, reported)
        except Exception:  # learning is best effort; the event must still be recorded
            logger.debug("calibration failed for %s", info.name, exc_info=True)

    def _counter(self, info: ModelInfo) -> TokenCounter:
        global _get_counter
        if _get_counter is None:
            from tokenward.counting import get_counter  # cached per model by the counting module

            _get_counter = get_counter
        return _get_counter(info.name, catalog=self.catalog)

    def _budget_now(self) -> datetime | None:
        return self._clock() if self._clock is not None else None

    def _model_info(self, model: str) -> tuple[ModelInfo, str]:
        """``(info, name to record)``: the canonical name, or the requested one for a fallback.

        Cached per name, and valid only while the catalog is unchanged (same generation,
        same fallback): a ``register``/``override``/``set_fallback`` is seen at the next call.
        """
        catalog = self.catalog
        generation = getattr(catalog, "_generation", None)
        fallback = getattr(catalog, "_fallback", None)
        hit = self._infos.get(model) if type(model) is str else None
        if (
            hit is not None
            and hit[0] == generation
            and hit[1] is fallback
            and generation is not None
        ):
            return hit[2], hit[3]
        info, name = self._resolve_model(model)
        if generation is not None and type(model) is str:
            if len(self._infos) >= 1024:
                self._infos.clear()
            self._infos[model] = (generation, fallback, info, name)
        return info, name

    def _resolve_model(self, model: str) -> tuple[ModelInfo, str]:
        info = self.catalog.get(model)
        if info.name == model:
            return info, model
        if self.catalog.find(model) is None:  # priced by the catalog's explicit fallback
            return info, model
        return info, info.name

    @staticmethod
    def _budget_dims(dims: _Dims, model: str, provider: str | None) -> dict[str, Any]:
        # the standard keys, ``tags`` as a mapping (budgets match ``where`` on tags too),
        # and the model and provider so a budget can be limited to one of them.
        return {
            "user_id": dims.user_id,
            "conversation_id": dims.conversation_id,
            "session_id": dims.session_id,
            "agent": dims.agent,
            "tags": dims.tags,
            "model": model,
            "provider": provider,
        }

    def _resolve_dims(self, dims: Mapping[str, Any] | None) -> _Dims:
        return _current_dims.get().merged(dims)

    # -- lifecycle
    def preflight(
        self,
        run_id: str,
        model: str,
        *,
        messages: Sequence[Any] | None = None,
        prompt_tokens: int | None = None,
        tools: Sequence[Any] | None = None,
        max_output_tokens: int | None = None,
        dims: Mapping[str, Any] | None = None,
        parent_id: str | None = None,
        kind: str = "chat",
    ) -> Estimate:
        """Count the input, estimate the cost and reserve it on every applicable budget.

        Pass ``messages`` (dicts or :class:`~tokenward.Message`) to count them exactly
        (per-message counts are cached by content), or ``prompt_tokens`` if already
        known. The expected output is ``max_output_tokens`` when given, otherwise
        ``min(model max output, expected_output_tokens)`` (0 for embeddings).

        Raises ``UnknownModelError`` for a model the catalog does not know (unless it
        has a fallback) and ``BudgetExceededError`` when a hard budget denies the call;
        in both cases nothing is left pending.
        """
        run_id = str(run_id)
        if run_id in self._settled:
            raise ConfigurationError(
                f"run_id {run_id!r} was already settled; use a fresh id for every model call"
            )
        info, name = self._model_info(model)
        counted_exact = True
        if prompt_tokens is None:
            if messages is None:
                raise ConfigurationError(
                    "preflight() needs messages=[...] or prompt_tokens=N to estimate the input"
                )
            counter = self._counter(info)
            prompt_tokens = (
                counter.count_messages(messages, tools=tools) if messages or tools else 0
            )
            counted_exact = bool(counter.exact)
        elif prompt_tokens < 0:
            raise ConfigurationError(f"prompt_tokens must be >= 0, got {prompt_tokens}")
        if kind == "embedding":
            expected = 0
        elif max_output_tokens is not None:
            if max_output_tokens < 0:
                raise ConfigurationError(f"max_output_tokens must be >= 0, got {max_output_tokens}")
            expected = max_output_tokens
        else:
            expected = self.expected_output_tokens
            if info.max_output:
                expected = min(expected, info.max_output)
            if info.context_window and prompt_tokens < info.context_window:
                # the reply cannot be longer than what is left of the window
                expected = min(expected, info.context_window - prompt_tokens)
        if type(prompt_tokens) is int and type(expected) is int:  # both >= 0 (checked above)
            estimated_cost = self._estimate_total(info, prompt_tokens, expected)
        else:  # Usage() raises its TypeError for anything but ints
            guess = Usage(input=prompt_tokens, output=expected, estimated=True)
            estimated_cost = self._cost_total(guess, info)
        resolved = self._resolve_dims(dims)
        estimate = Estimate(
            run_id=run_id,
            model=name,
            prompt_tokens=prompt_tokens,
            exact=counted_exact,
            expected_output=expected,
            cost=estimated_cost,
            provider=info.provider,
            reserved=self.budgets is not None,
        )
        if self.budgets is not None:
            self.budgets.reserve(
                run_id,
                self._budget_dims(resolved, name, info.provider),
                self._to_nanos(estimated_cost),
                estimate.tokens,
                now=self._budget_now(),
            )
        prompt_text = None
        if self.store_content and messages:
            prompt_text = _messages_text(messages)
        pending = _Pending(
            estimate=estimate,
            info=info,
            requested_model=name,
            dims=resolved,
            parent_id=parent_id,
            kind=kind,
            started=time.perf_counter(),
            trackers=_current_trackers.get(),
            prompt_text=prompt_text,
        )
        evicted: list[str] = []
        with self._lock:
            if run_id in self._pending:
                self._pending.move_to_end(run_id)
            self._pending[run_id] = pending
            while len(self._pending) > _MAX_PENDING:
                evicted.append(self._pending.popitem(last=False)[0])
        for old in evicted:  # never settled nor released: free their reservations
            logger.warning("tokenward: run %s was never settled; releasing its reservation", old)
            self._release_budget(old)
        return estimate

    def pending(self, run_id: str) -> Estimate | None:
        """The estimate of a call preflighted but not yet settled or released."""
        with self._lock:
            entry = self._pending.get(str(run_id))
        return entry.estimate if entry else None

    def settle(
        self,
        run_id: str,
        usage: Usage | Any | None,
        *,
        model: str | None = None,
        status: str = "ok",
        latency_ms: float | None = None,
        output_text: str | None = None,
        tool_names: Sequence[str] = (),
        dims: Mapping[str, Any] | None = None,
        error: BaseException | str | None = None,
    ) -> UsageEvent | None:
        """Price the finished call, commit it on budgets, record it and notify sinks.

        The provider's ``usage`` wins (a :class:`Usage`, or a raw provider payload, which
        is parsed with ``Usage.from_any``). When it is ``None`` or empty, the input is the
        preflight count and the output is counted from ``output_text``; the event is
        then marked ``estimated=True``. ``model`` overrides the preflight model (the
        response's model name); it is required when ``run_id`` was never preflighted.
        Settling the same ``run_id`` twice records it once (returns ``None`` the second
        time). Latency is measured from ``preflight`` unless given.
        """
        run_id = str(run_id)
        usage = _as_usage(usage)
        with self._lock:
            if run_id in self._settled:
                return None
            entry = self._pending.pop(run_id, None)
            self._mark_settled(run_id)
        try:
            return self._settle(
                run_id,
                entry,
                usage,
                model=model,
                status=status,
                latency_ms=latency_ms,
                output_text=output_text,
                tool_names=tool_names,
                dims=dims,
                error=error,
            )
        except BaseException:
            with self._lock:  # let the caller retry: nothing was recorded
                self._settled.pop(run_id, None)
                if entry is not None:
                    self._pending[run_id] = entry
            raise

    def _mark_settled(self, run_id: str) -> None:
        self._settled[run_id] = None
        while len(self._settled) > _MAX_SETTLED:
            self._settled.popitem(last=False)

    def _settle(
        self,
        run_id: str,
        entry: _Pending | None,
        usage: Usage | None,
        *,
        model: str | None,
        status: str,
        latency_ms: float | None,
        output_text: str | None,
        tool_names: Sequence[str],
        dims: Mapping[str, Any] | None,
        error: BaseException | str | None,
    ) -> UsageEvent:
        if entry is None:
            if model is None:
                raise ConfigurationError(
                    f"settle({run_id!r}) without a preflight needs model=...; "
                    f"call preflight() first or pass the model name"
                )
            info, name = self._model_info(model)
            resolved = self._resolve_dims(dims)
            trackers = _current_trackers.get()
            parent_id, kind, prompt_text = None, "chat", None
            prompt_estimate = 0
        else:
            if model is not None and model != entry.requested_model:
                try:  # the response names a snapshot ("gpt-4o-2024-08-06"): price that
                    info, name = self._model_info(model)
                except KeyError:  # unknown to the catalog: keep the preflight model
                    logger.warning(
                        "tokenward: response model %r is not in the catalog; pricing run %s as %r",
                        model,
                        run_id,
                        entry.requested_model,
                    )
                    info, name = entry.info, entry.requested_model
            else:
                info, name = entry.info, entry.requested_model
            resolved = entry.dims.merged(dims) if dims else entry.dims
            trackers = _union(entry.trackers, _current_trackers.get())
            parent_id, kind, prompt_text = entry.parent_id, entry.kind, entry.prompt_text
            prompt_estimate = entry.estimate.prompt_tokens
            if latency_ms is None:
                latency_ms = (time.perf_counter() - entry.started) * 1000.0

        if usage is None or not usage:
            out_tokens = 0
            if output_text:
                out_tokens = self._counter(info).count_text(output_text)
            usage = Usage(input=prompt_estimate, output=out_tokens, estimated=True)
        elif usage.input == 0 and prompt_estimate and kind != "embedding":
            # the provider reported output only (some streams): fill in the counted prompt
            usage = dataclasses.replace(usage, input=prompt_estimate, estimated=True)
        elif entry is not None and not entry.estimate.exact and prompt_estimate:
            self._calibrate(entry.info, prompt_estimate, usage.input)
        return self._finish(
            run_id,
            name,
            info,
            usage,
            resolved,
            trackers,
            status=status,
            kind=kind,
            tool_names=tool_names,
            latency_ms=latency_ms,
            parent_id=parent_id,
            error=error,
            prompt_text=prompt_text,
            output_text=output_text,
        )

    def _finish(
        self,
        run_id: str,
        name: str,
        info: ModelInfo,
        usage: Usage,
        dims: _Dims,
        trackers: tuple[Tracker, ...],
        *,
        status: str,
        kind: str,
        tool_names: Sequence[str],
        latency_ms: float | None,
        parent_id: str | None,
        error: BaseException | str | None,
        prompt_text: str | None,
        output_text: str | None,
    ) -> UsageEvent:
        """Price a finished call, record it, commit its cost on the budgets, notify."""
        nanos = self._to_nanos(self._cost_total(usage, info))
        if error is not None and status == "ok":
            status = "cancelled" if _is_cancellation(error) else "error"
        event = self._make_event(
            run_id,
            name,
            info,
            usage,
            _usd(nanos),
            status=status,
            kind=kind,
            dims=dims,
            tool_names=tool_names,
            latency_ms=latency_ms,
            parent_id=parent_id,
            error=_error_text(error),
            prompt_text=prompt_text,
            output_text=output_text,
        )
        if self.budgets is not None:
            self.budgets.commit(
                run_id,
                nanos,
                usage.total,
                dims=self._budget_dims(dims, name, info.provider),
                now=self._budget_now(),
            )
        self._emit(event, trackers)
        return event

    def release(
        self,
        run_id: str,
        *,
        partial_usage: Usage | None = None,
        error: BaseException | str | None = None,
        model: str | None = None,
    ) -> UsageEvent | None:
        """End a call that failed or was cancelled.

        Records an ``error`` event (``cancelled`` for ``asyncio.CancelledError``,
        ``KeyboardInterrupt`` or ``error="cancelled"``) with the partial usage if
        any, so failures are counted and paid-for tokens are never lost. The budget
        reservation is released, or replaced by the partial cost. Returns ``None``
        when ``run_id`` is already settled, or unknown without partial usage. A
        partial usage for a run that was never preflighted is recorded when
        ``model`` is given (otherwise it is logged as lost).
        """
        run_id = str(run_id)
        with self._lock:
            if run_id in self._settled:
                return None
            entry = self._pending.pop(run_id, None)
            if entry is not None:
                self._mark_settled(run_id)
        if entry is None:
            self._release_budget(run_id)
            if partial_usage:
                if model is not None:
                    status = "cancelled" if _is_cancellation(error) else "error"
                    return self.record(
                        model,
                        partial_usage,
                        run_id=run_id,
                        status=status,
                        error=_error_text(error) or status,
                    )
                logger.warning(
                    "tokenward: release(%s) with partial usage but no preflight and no model=; "
                    "the usage could not be priced or recorded",
                    run_id,
                )
            return None
        status = "cancelled" if _is_cancellation(error) else "error"
        usage = partial_usage or Usage()
        try:
            nanos = self._to_nanos(self._cost_total(usage, entry.info))
            event = self._make_event(
                run_id,
                entry.requested_model,
                entry.info,
                usage,
                _usd(nanos),
                status=status,
                kind=entry.kind,
                dims=entry.dims,
                tool_names=(),
                latency_ms=(time.perf_counter() - entry.started) * 1000.0,
                parent_id=entry.parent_id,
                error=_error_text(error) or status,
                prompt_text=entry.prompt_text,
                output_text=None,
            )
            if self.budgets is not None:
                if usage:
                    self.budgets.commit(
                        run_id,
                        nanos,
                        usage.total,
                        dims=self._budget_dims(
                            entry.dims, entry.requested_model, entry.info.provider
                        ),
                        now=self._budget_now(),
                    )
                else:
                    self.budgets.release(run_id)
            self._emit(event, _union(entry.trackers, _current_trackers.get()))
        except BaseException:
            with self._lock:
                self._settled.pop(run_id, None)
                self._pending[run_id] = entry
            raise
        return event

    def _release_budget(self, run_id: str) -> None:
        if self.budgets is None:
            return
        try:
            self.budgets.release(run_id)
        except Exception:  # a release must never raise into the caller's error path
            logger.exception("tokenward: could not release the budget reservation of %s", run_id)

    def record(
        self,
        model: str,
        usage: Usage | Any,
        *,
        run_id: str | None = None,
        status: str = "ok",
        latency_ms: float | None = None,
        tool_names: Sequence[str] = (),
        kind: str = "chat",
        parent_id: str | None = None,
        error: BaseException | str | None = None,
        **dims: Any,
    ) -> UsageEvent:
        """Record one finished call without a preflight (no reservation)::

            accountant.record("gpt-4o", Usage(input=1200, output=300), user_id="u1")

        ``usage`` may also be a provider payload (parsed with ``Usage.from_any``).
        Keyword arguments other than the named ones are dimensions (``user_id``,
        ``conversation_id``, ``session_id``, ``agent``, ``tags``; others become tags).
        """
        usage = _as_usage(usage)
        if usage is None:
            raise TypeError("record() needs a Usage (or a provider usage payload), got None")
        run_id = str(run_id) if run_id is not None else uuid.uuid4().hex
        with self._lock:
            if run_id in self._settled:
                raise ConfigurationError(f"run_id {run_id!r} was already recorded")
            self._mark_settled(run_id)
        try:
            info, name = self._model_info(model)
            resolved = self._resolve_dims(dims)
            event = self._finish(
                run_id,
                name,
                info,
                usage,
                resolved,
                _current_trackers.get(),
                status=status,
                kind=kind,
                tool_names=tool_names,
                latency_ms=latency_ms,
                parent_id=parent_id,
                error=error,
                prompt_text=None,
                output_text=None,
            )
        except BaseException:
            with self._lock:
                self._settled.pop(run_id, None)
            raise
        return event

    def _make_event(
        self,
        run_id: str,
        model: str,
        info: ModelInfo,
        usage: Usage,
        cost: Decimal,
        *,
        status: str,
        kind: str,
        dims: _Dims,
        tool_names: Sequence[str],
        latency_ms: float | None,
        parent_id: str | None,
        error: str | None,
        prompt_text: str | None,
        output_text: str | None,
    ) -> UsageEvent:
        names = tuple(str(n) for n in tool_names) if tool_names else ()
        return UsageEvent(
            id=run_id,
            timestamp=self._now(),
            model=model,
            provider=info.provider,
            usage=usage,
            cost=cost,
            estimated=usage.estimated,
            status=status,  # type: ignore[arg-type]  # validated by UsageEvent
            kind=kind,  # type: ignore[arg-type]
            user_id=dims.user_id,
            conversation_id=dims.conversation_id,
            session_id=dims.session_id,
            agent=dims.agent,
            tags=dict(dims.tags),
            tool_calls=len(names),
            tool_names=names,
            latency_ms=latency_ms,
            parent_id=parent_id,
            error=error,
            prompt=prompt_text if self.store_content else None,
            output=output_text if self.store_content else None,
        )

    def _emit(self, event: UsageEvent, trackers: tuple[Tracker, ...]) -> None:
        self.ledger.record(event)
        for tracker in trackers:
            tracker._add(event, self)
        for sink in tuple(self._sinks):
            try:
                sink(event)
            except Exception:
                logger.exception("tokenward: sink %r failed on event %s", sink, event.id)

    # -- convenience
    def track(self, **dims: Any) -> Tracker:
        """Like :func:`track`, counting only this accountant's events."""
        return Tracker(dims, accountant=self)

    def flush(self) -> None:
        """Write buffered events to the ledger."""
        self.ledger.flush()

    def close(self) -> None:
        """Flush and close the ledger. Calls still pending have their reservations released."""
        with self._lock:
            leftover = list(self._pending)
            self._pending.clear()
        for run_id in leftover:
            self._release_budget(run_id)
        self.ledger.close()

    def __enter__(self) -> Accountant:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"Accountant(ledger={type(self.ledger).__name__}, "
            f"budgets={'yes' if self.budgets is not None else 'no'}, sinks={len(self._sinks)})"
        )


def _as_usage(usage: Any) -> Usage | None:
    """``Usage`` as given; a provider payload (dict, SDK object) parsed with ``Usage.from_any``."""
    if usage is None or isinstance(usage, Usage):
        return usage
    return Usage.from_any(usage)


def _usd(nanos: int) -> Decimal:
    # the event carries the cost exactly as the ledger stores it (whole nano-USD, in the
    # ledger's own representation), so what settle() returns equals what a query returns
    return Decimal(nanos).scaleb(-9)


def _union(a: tuple[Tracker, ...], b: tuple[Tracker, ...]) -> tuple[Tracker, ...]:
    if not b or a == b:
        return a
    if not a:
        return b
    return a + tuple(t for t in b if not any(t is x for x in a))


def _messages_text(messages: Sequence[Any]) -> str:
    from tokenward.messages import Message

    lines = []
    for m in messages:
        msg = m if isinstance(m, Message) else Message.from_openai(m)
        lines.append(f"{msg.role}: {msg.text}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- default
_default_lock = threading.Lock()
_default: Accountant | None = None


def get_default_accountant() -> Accountant:
    """The process-wide Accountant adapters use when none is given.

    Created on first use: a SQLite ledger at ``$TOKENWARD_DB`` when that variable is
    set, otherwise an in-memory ledger (nothing written to disk unless asked).
    Replace it with :func:`set_default_accountant`.
    """
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                if os.environ.get("TOKENWARD_DB"):
                    _default = Accountant.default()
                else:
                    _default = Accountant()
    return _default


def set_default_accountant(accountant: Accountant | None) -> Accountant | None:
    """Install ``accountant`` as the default (``None`` resets); returns the previous one."""
    global _default
    if accountant is not None and not isinstance(accountant, Accountant):
        raise TypeError(f"expected an Accountant, got {type(accountant).__name__}")
    with _default_lock:
        previous, _default = _default, accountant
    return previous
