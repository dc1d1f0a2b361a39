"""``Accountant``: estimate -> reserve -> settle -> record -> notify, for every adapter.

The lifecycle of a model call is keyed by a call id (``run_id``)::

    est = accountant.preflight(run_id, "gpt-4o", messages=msgs, dims={"user_id": "u1"})
    # ... call the provider (BudgetExceededError was raised above if a hard budget said no)
    event = accountant.settle(run_id, Usage.from_any(response))
    # or, when the call failed:
    accountant.release(run_id, error=exc)

The Accountant holds no pricing, counting or storage logic of its own: input tokens come
from :mod:`tokenward.counting` (only when a budget needs them, see ``_estimate``), money
from :func:`tokenward.cost.price_nanos` (integer nano-USD, the same function for the
estimate and the bill), events go to a :mod:`tokenward.ledger` store and reservations to
:class:`tokenward.budgets.Budgets`. Calls in flight live in one table (``_table``).

Default ledger: ``Accountant()`` keeps events in memory (no file appears behind your
back). Pass ``ledger="path/to/ledger.db"`` (or any URL :func:`open_ledger` accepts), or use
:meth:`Accountant.default`, which honours ``TOKENWARD_DB`` and otherwise writes SQLite to
``./.tokenward/ledger.db``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from functools import partial
from typing import TYPE_CHECKING, Any

from tokenward._hygiene import bounded, clean, count_ok
from tokenward.accountant._estimate import Estimate, Prompt, expected_output
from tokenward.accountant._finish import Ending, finish, normalize_usage
from tokenward.accountant._table import Run, RunState, RunTable
from tokenward.accountant._tracking import Tracker, active_trackers, resolve_dims
from tokenward.cost import estimate_nanos
from tokenward.errors import (
    BudgetExceededError,
    BudgetStoreUnavailableError,
    ConfigurationError,
    UnpricedModelError,
)

if TYPE_CHECKING:
    from tokenward.budgets import Budget, Budgets
    from tokenward.catalog import Catalog, ModelInfo
    from tokenward.ledger import LedgerStore, UsageEvent

__all__ = ["Accountant", "get_default_accountant", "set_default_accountant"]

logger = logging.getLogger("tokenward")

_DEFAULT_DB_PATH = os.path.join(".tokenward", "ledger.db")
_DENIALS = (BudgetExceededError, BudgetStoreUnavailableError)
_warned_unpriced: set[str] = set()


def _as_budgets(budgets: object) -> Budgets | None:
    from tokenward.budgets import Budget, Budgets

    if budgets is None or isinstance(budgets, Budgets):
        return budgets
    if isinstance(budgets, Budget):
        return Budgets(budgets)
    if isinstance(budgets, (list, tuple)) and all(isinstance(b, Budget) for b in budgets):
        return Budgets(*budgets)
    raise TypeError(
        f"Accountant(budgets=...) takes a Budgets object or a list of Budget rules, got "
        f"{type(budgets).__name__}: use budgets=[Budget('daily', limit_usd='5')] or "
        f"budgets=Budgets(Budget(...), store=...)"
    )


def _count_arg(name: str, value: int | None) -> None:
    if value is not None and not count_ok(value):
        raise ConfigurationError(f"{name} must be a whole number >= 0 below 2**63, got {value!r}")


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
        :class:`~tokenward.budgets.Budgets`, or a list of :class:`~tokenward.budgets.Budget`
        rules (enforced in memory). ``preflight`` reserves on them and raises
        ``BudgetExceededError`` before the provider is called.
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
    max_pending:
        Calls in flight remembered; the oldest is released when more are started.

    Thread-safe and asyncio-safe: a short lock guards the call table only; no lock is
    held while counting, pricing, writing to the ledger or notifying.
    """

    def __init__(
        self,
        *,
        catalog: Catalog | None = None,
        ledger: LedgerStore | str | os.PathLike[str] | None = None,
        budgets: Budgets | Sequence[Budget] | None = None,
        sinks: Sequence[Callable[[UsageEvent], Any]] = (),
        expected_output_tokens: int = 1024,
        store_content: bool = False,
        clock: Callable[[], datetime] | None = None,
        max_pending: int = 10_000,
    ) -> None:
        _count_arg("expected_output_tokens", expected_output_tokens)
        budgets_ = _as_budgets(budgets)
        if catalog is None:
            from tokenward.catalog import default_catalog

            catalog = default_catalog()
        ledger_path = None
        if ledger is None:
            from tokenward.ledger import MemoryLedger

            ledger = MemoryLedger()
        elif isinstance(ledger, (str, os.PathLike)):
            from tokenward.ledger import open_ledger

            ledger_path = os.fspath(ledger)
            ledger = open_ledger(ledger_path)
        elif not callable(getattr(ledger, "record", None)):
            raise TypeError(f"ledger must be a LedgerStore or a path, got {type(ledger).__name__}")
        self.catalog: Catalog = catalog
        self.ledger: LedgerStore = ledger
        self.budgets: Budgets | None = budgets_
        if budgets_ is not None and ledger_path and "://" not in ledger_path:
            # keep fail-open spend beside the ledger unless the budgets have their own file
            budgets_.use_journal_path(ledger_path + "-budget-journal")
        self.expected_output_tokens = expected_output_tokens
        self.store_content = store_content
        self._sinks: list[Callable[[UsageEvent], Any]] = list(sinks)
        self._clock = clock
        self._table = RunTable(max_pending=max_pending)
        self._closed = False
        self._lock = threading.Lock()
        #: (model, provider, base_url) -> (catalog generation, fallback, info, name to record)
        self._infos: dict[tuple[Any, ...], tuple[Any, Any, ModelInfo, str]] = {}

    @classmethod
    def default(cls, **kwargs: Any) -> Accountant:
        """An Accountant with a SQLite ledger at ``$TOKENWARD_DB`` or ``./.tokenward/ledger.db``.

        The directory is created if needed. Other keyword arguments are passed on.
        """
        target = kwargs.pop("ledger", None) or os.environ.get("TOKENWARD_DB") or _DEFAULT_DB_PATH
        target = os.fspath(target)
        if "://" not in target:
            os.makedirs(os.path.dirname(os.path.abspath(target)), exist_ok=True)
        return cls(ledger=target, **kwargs)

    # -- sinks
    def add_sink(self, sink: Callable[[UsageEvent], Any]) -> None:
        """Notify ``sink(event)`` for every recorded event."""
        self._sinks.append(sink)

    def remove_sink(self, sink: Callable[[UsageEvent], Any]) -> None:
        """Stop notifying ``sink``."""
        self._sinks.remove(sink)

    # -- helpers
    def now(self) -> datetime:
        """The timestamp of an event recorded now (the ``clock`` when one was given)."""
        return self._clock() if self._clock is not None else datetime.now(timezone.utc)

    def budget_now(self) -> datetime | None:
        return self._clock() if self._clock is not None else None

    def model_info(
        self, model: str, provider: str | None = None, base_url: str | None = None
    ) -> tuple[ModelInfo, str]:
        """``(info, name to record)`` for a model name; never raises for an unknown one.

        The name is the catalog's canonical one, or the requested one for a fallback or an
        unpriced model (warned about once per model and process). Cached per name while the
        catalog is unchanged (same generation and fallback).
        """
        catalog = self.catalog
        generation = getattr(catalog, "_generation", None)
        fallback = getattr(catalog, "_fallback", None)
        key = (model, provider, base_url)
        hit = self._infos.get(key)
        if hit is not None and hit[0] == generation and hit[1] is fallback:
            return hit[2], hit[3]
        info = catalog.lookup(model, provider=provider, base_url=base_url)
        name = info.name if info.name != model and catalog.find(model) is not None else model
        if not info.priced and model not in _warned_unpriced:
            _warned_unpriced.add(model)
            logger.warning(
                "tokenward: model %r has no known price; its calls are recorded with their "
                "tokens and cost unknown. Price it with catalog.register(...) or "
                "`tokenward models update` (logged once per model)",
                model,
            )
        if generation is not None:
            if len(self._infos) >= 1024:
                self._infos.clear()
            self._infos[key] = (generation, fallback, info, name)
        return info, name

    # -- lifecycle
    def preflight(
        self,
        run_id: str,
        model: str | None,
        *,
        messages: Prompt | None = None,
        prompt_tokens: int | None = None,
        tools: Sequence[Any] | None = None,
        max_output_tokens: int | None = None,
        dims: Mapping[str, Any] | None = None,
        parent_id: str | None = None,
        kind: str = "chat",
        provider: str | None = None,
        base_url: str | None = None,
        data: Any = None,
        enforce: bool = True,
    ) -> Estimate:
        """Open the call in the call table and reserve its estimate on every hard budget.

        ``messages`` (dicts or :class:`~tokenward.Message`, or a zero-argument callable
        returning them, called only if a count is needed) or ``prompt_tokens`` describe the
        input. The prompt is counted only when a hard budget applies, and exactly only when
        a cheap upper bound of it does not fit (see :class:`Estimate`, which counts on first
        read). ``provider``/``base_url`` help recognise the model; ``data`` is the adapter's
        own per-call slot (``accountant.run(run_id).data``). ``enforce=False`` opens the call
        without checking budgets (an adapter that cannot stop it); it is committed at its end.

        An unknown model is not an error: the call is recorded with cost unknown. Raises
        ``BudgetExceededError`` when a hard budget denies the call (``UnpricedModelError``
        for a USD budget and a model with no price) and, when the budgets cannot be checked
        and ``fail_mode="closed"``, ``BudgetStoreUnavailableError``; then nothing is left
        pending.
        """
        run_id = bounded(clean(str(run_id)))
        if prompt_tokens is None and messages is None:
            raise ConfigurationError(
                "preflight() needs messages=[...] or prompt_tokens=N to estimate the input"
            )
        _count_arg("prompt_tokens", prompt_tokens)
        _count_arg("max_output_tokens", max_output_tokens)
        info, name = self.model_info(bounded(clean(model or "unknown")), provider, base_url)
        run = Run(
            run_id,
            name,
            info,
            resolve_dims(dims),
            kind=kind,
            parent_id=parent_id,
            trackers=active_trackers(),
            base_url=base_url,
            data=data,
        )
        estimate = Estimate(
            run_id,
            name,
            info,
            self.catalog,
            prompt=messages,
            tools=tools,
            prompt_tokens=prompt_tokens,
            max_output_tokens=max_output_tokens,
            default_output=self.expected_output_tokens,
            kind=kind,
        )
        run.estimate = estimate
        if self.store_content and messages is not None:
            from tokenward.messages import Message

            run.prompt_text = clean(
                "\n".join(
                    f"{m.role}: {m.text}" for m in map(Message.from_openai, estimate.messages())
                )
            )
        replaced, evicted = self._table.open(run)
        if replaced is not None and self.budgets is not None:
            self.budgets.release(replaced.reservation)
        for old in evicted:  # never settled nor released: free their reservations
            logger.warning("tokenward: run %s was never settled; releasing its reservation", old.id)
            if self.budgets is not None:
                self.budgets.release(old.reservation)
        if self.budgets is not None:
            run.budget_dims = run.dims.for_budgets(name, info.provider)
            if enforce and self.budgets.enforces(run.budget_dims):
                self._enforce(run, estimate, self.budgets)
        self._watch(run)
        run.started = time.perf_counter()  # latency is the model's, not the pre-flight's
        return estimate

    def _watch(self, run: Run) -> None:
        """In an asyncio task, release the call the moment the task is cancelled: frameworks
        do not always report a cancellation (LangChain's ``agenerate`` does not)."""
        loop = asyncio._get_running_loop()  # None outside an event loop: nothing to watch
        task = asyncio.current_task(loop) if loop is not None else None
        if task is not None:
            hook = partial(self._task_done, run.id)
            task.add_done_callback(hook)
            run.watch = (task, hook)

    def _task_done(self, run_id: str, task: asyncio.Task[Any]) -> None:
        if task.cancelled() and self._table.get(run_id) is not None:
            try:
                self.release(run_id, error=asyncio.CancelledError())
            except Exception:  # a loop callback must not raise
                logger.exception("tokenward: could not release cancelled run %s", run_id)

    def _enforce(self, run: Run, estimate: Estimate, budgets: Budgets) -> None:
        """Reserve ``run``'s estimate; on anything but a decision, the budgets' fail_mode."""
        try:
            try:
                run.reservation = self._reserve(run, estimate, budgets, exact=False)
            except BudgetExceededError as denied:
                if estimate.counted or isinstance(denied, UnpricedModelError):
                    raise
                # near a limit: the upper bound did not fit, the exact count decides
                run.reservation = self._reserve(run, estimate, budgets, exact=True)
        except _DENIALS:
            self._table.discard(run)
            raise
        except Exception as exc:  # noqa: BLE001  # not a decision: the fail_mode policy decides
            try:
                budgets.enforcement_failed(exc, run.id)
            except BaseException:
                self._table.discard(run)
                raise
        except BaseException:
            self._table.discard(run)
            raise
        estimate.reserved = run.reservation is not None
        if run.reservation is not None:
            run.extend_at = run.reservation.expires_at - budgets.reservation_ttl.total_seconds() / 2

    def _reserve(self, run: Run, estimate: Estimate, budgets: Budgets, *, exact: bool) -> Any:
        bound = None if exact else estimate.bound()
        prompt = estimate.prompt_tokens if bound is None else bound
        out = expected_output(
            run.info,
            self.expected_output_tokens,
            estimate._max_output,
            prompt if bound is None else None,
        )
        info = run.info

        def price_as(model: str) -> int | None:
            return estimate_nanos(self.model_info(model)[0], prompt, out)

        return budgets.reserve(
            run.id,
            run.budget_dims,
            estimate_nanos(info, prompt, out) if info.priced else None,
            prompt + out,
            now=self.budget_now(),
            price_as=price_as,
        )

    def pending(self, run_id: str) -> Estimate | None:
        """The estimate of a call preflighted but not yet settled or released."""
        run = self._table.get(str(run_id))
        return run.estimate if run is not None else None

    def run(self, run_id: str) -> Run | None:
        """The call table's record of a pending call (adapters read their ``data`` here)."""
        return self._table.get(str(run_id))

    @property
    def pending_calls(self) -> int:
        """Calls preflighted and not ended yet."""
        return len(self._table)

    def state(self, run_id: str) -> RunState | None:
        """``"pending"``, ``"settled"``, ``"released"``, ``"cancelled"`` or ``None`` (unknown)."""
        return self._table.state(str(run_id))

    def keepalive(self, run_id: str) -> None:
        """A call is still streaming: extend its reservation before the TTL lapses (throttled:
        at most once per half TTL, so calling it per token is cheap)."""
        run = self._table.get(str(run_id))
        if run is None or run.reservation is None or self.budgets is None:
            return
        now = self.budget_now()
        now_s = now.timestamp() if now is not None else time.time()
        if now_s < run.extend_at:
            return
        run.extend_at = now_s + self.budgets.reservation_ttl.total_seconds() / 2
        self.budgets.extend(run.reservation, now=now)

    def settle(
        self,
        run_id: str,
        usage: Any,
        *,
        model: str | None = None,
        status: str = "ok",
        latency_ms: float | None = None,
        output_text: str | None = None,
        tool_names: Sequence[str] = (),
        dims: Mapping[str, Any] | None = None,
        error: BaseException | str | None = None,
        provider: str | None = None,
        base_url: str | None = None,
    ) -> UsageEvent | None:
        """Price the finished call, record it, commit it on budgets and notify sinks.

        The provider's ``usage`` wins (a :class:`Usage`, or a raw provider payload, parsed
        with ``Usage.from_any``; counts must be ints in ``[0, 2**63)``, else
        ``UsageParseError``). When it is ``None`` or empty, the input is the preflight prompt
        (counted now) and the output is counted from ``output_text``; the event is then
        marked ``estimated=True``. ``model`` overrides the preflight model (the response's
        model name); it is required when ``run_id`` was never preflighted. Settling the same
        ``run_id`` twice records it once (returns ``None`` the second time).
        """
        ending = Ending(
            usage=normalize_usage(usage),
            estimate_missing=True,
            status=status,
            error=error,
            model=model,
            provider=provider,
            base_url=base_url,
            output_text=output_text,
            tool_names=tool_names,
            dims=dims,
            latency_ms=latency_ms,
        )
        return self._end(str(run_id), ending, require_model=True)

    def release(
        self,
        run_id: str,
        *,
        partial_usage: Any = None,
        error: BaseException | str | None = None,
        model: str | None = None,
    ) -> UsageEvent | None:
        """End a call that failed or was cancelled: its reservation is released at once.

        Records an ``error`` event (``cancelled`` for ``asyncio.CancelledError``,
        ``GeneratorExit``, ``KeyboardInterrupt`` or ``error="cancelled"``) with the partial
        usage if any, so paid-for tokens are never lost. Returns ``None`` when ``run_id``
        already ended, or is unknown without partial usage. A partial usage for a run that
        was never preflighted is recorded when ``model`` is given (else logged as lost).
        """
        usage = normalize_usage(partial_usage)
        run_id = str(run_id)
        if self._table.get(run_id) is None and (not usage or model is None):
            if usage:
                logger.warning(
                    "tokenward: release(%s) with partial usage but no preflight and no model=; "
                    "the usage could not be priced or recorded",
                    run_id,
                )
            return None
        ending = Ending(usage=usage, estimate_missing=False, status="error", error=error or "error")
        ending.model = model
        return self._end(run_id, ending, require_model=False)

    def record(
        self,
        model: str,
        usage: Any,
        *,
        run_id: str | None = None,
        status: str = "ok",
        latency_ms: float | None = None,
        tool_names: Sequence[str] = (),
        kind: str = "chat",
        parent_id: str | None = None,
        error: BaseException | str | None = None,
        provider: str | None = None,
        base_url: str | None = None,
        **dims: Any,
    ) -> UsageEvent:
        """Record one finished call without a preflight (no reservation)::

            accountant.record("gpt-4o", Usage(input=1200, output=300), user_id="u1")

        ``usage`` may also be a provider payload (parsed with ``Usage.from_any``).
        Keyword arguments other than the named ones are dimensions (``user_id``,
        ``conversation_id``, ``session_id``, ``agent``, ``tags``; others become tags).
        """
        parsed = normalize_usage(usage)
        if parsed is None:
            raise TypeError("record() needs a Usage (or a provider usage payload), got None")
        rid = str(run_id) if run_id is not None else uuid.uuid4().hex
        ending = Ending(
            usage=parsed,
            estimate_missing=False,
            status=status,
            error=error,
            model=model,
            provider=provider,
            base_url=base_url,
            tool_names=tool_names,
            dims=dims,
            latency_ms=latency_ms,
            kind=kind,
            parent_id=parent_id,
        )
        event = self._end(rid, ending, require_model=True, duplicate_ok=False)
        assert event is not None
        return event

    def _end(
        self, run_id: str, ending: Ending, *, require_model: bool, duplicate_ok: bool = True
    ) -> UsageEvent | None:
        """The one way a call ends: claim it in the table, finish it, or put it back."""
        run_id = bounded(clean(run_id))
        first, run = self._table.take(run_id, ending.state)
        if not first:
            if duplicate_ok:
                return None
            raise ConfigurationError(f"run_id {run_id!r} was already recorded")
        try:
            if run is None:
                run = self._orphan(run_id, ending, require_model)
            return finish(self, run, ending)
        except BaseException:
            self._table.restore(run_id, self._table_run(run, ending))
            raise

    @staticmethod
    def _table_run(run: Run | None, ending: Ending) -> Run | None:
        return run if run is not None and not ending.orphan else None

    def _orphan(self, run_id: str, ending: Ending, require_model: bool) -> Run:
        """A run ended without a preflight (``record``, or ``settle`` with ``model=``)."""
        ending.orphan = True
        if ending.model is None:
            raise ConfigurationError(
                f"settle({run_id!r}) without a preflight needs model=...; "
                f"call preflight() first or pass the model name"
            )
        info, name = self.model_info(bounded(clean(ending.model)), ending.provider, ending.base_url)
        ending.model = None  # already applied
        return Run(
            run_id,
            name,
            info,
            resolve_dims(ending.dims),
            kind=ending.kind,
            parent_id=ending.parent_id,
            trackers=active_trackers(),
        )

    # -- convenience
    def track(self, **dims: Any) -> Tracker:
        """Like :func:`track`, counting only this accountant's events."""
        return Tracker(dims, accountant=self)

    def flush(self) -> None:
        """Write buffered events to the ledger."""
        self.ledger.flush()

    def close(self) -> None:
        """End the Accountant: pending calls have their reservations released, the budgets
        reconcile journaled spend with their store and close it, the ledger flushes and
        closes. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        leftover = self._table.drain()
        try:
            if self.budgets is not None:
                for run in leftover:
                    self.budgets.release(run.reservation)
                self.budgets.close()
        finally:
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
                _default = Accountant.default() if os.environ.get("TOKENWARD_DB") else Accountant()
    return _default


def set_default_accountant(accountant: Accountant | None) -> Accountant | None:
    """Install ``accountant`` as the default (``None`` resets); returns the previous one."""
    global _default
    if accountant is not None and not isinstance(accountant, Accountant):
        raise TypeError(f"expected an Accountant, got {type(accountant).__name__}")
    with _default_lock:
        previous, _default = _default, accountant
    return previous
