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

import functools
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Literal

from tokenward._hygiene import key
from tokenward.accountant._enforce import check_budgets, free, keep_alive, watch
from tokenward.accountant._estimate import Estimate, Prompt
from tokenward.accountant._finish import Ending, end, normalize_usage
from tokenward.accountant._predict import make_predictor, next_call_quotes
from tokenward.accountant._resolve import Models, as_budgets, check_count
from tokenward.accountant._table import Run, RunState, RunTable
from tokenward.accountant._tracking import Tracker, active_trackers, resolve_dims
from tokenward.counting._persist import attach as attach_calibration
from tokenward.errors import ConfigurationError

if TYPE_CHECKING:
    from tokenward.budgets import Budget, Budgets, BudgetStatus
    from tokenward.catalog import Catalog, ModelInfo
    from tokenward.ledger import LedgerStore, UsageEvent
    from tokenward.predict import OutputPredictor

__all__ = ["Accountant"]

logger = logging.getLogger("tokenward")

_DEFAULT_DB_PATH = os.path.join(".tokenward", "ledger.db")


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
    predictor:
        Learns output lengths per (model, route) from every successful call and tells the
        pre-flight what budgets with ``Budget(reserve="predicted")`` hold
        (:class:`~tokenward.predict.OutputPredictor`; the route is the call's ``route`` tag,
        else its ``agent``). ``"auto"`` (default): one kept in the ledger's state documents
        when a ledger is given (shared by every process using it, synced every 30 s and at
        :meth:`close`), in memory otherwise; ``None``: no learning, budgets always reserve
        ``max_tokens``.

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
        predictor: OutputPredictor | Literal["auto"] | None = "auto",
    ) -> None:
        check_count("expected_output_tokens", expected_output_tokens)
        budgets_ = as_budgets(budgets)
        if catalog is None:
            from tokenward.catalog import default_catalog

            catalog = default_catalog()
        ledger_path = None
        keep_calibration = ledger is not None  # an in-memory default ledger keeps nothing
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
        #: what :meth:`now` returns, as one callable (the finish path calls it per event)
        self._now: Callable[[], datetime] = (
            clock if clock is not None else functools.partial(datetime.now, timezone.utc)
        )
        self._table = RunTable(max_pending=max_pending)
        self._closed = False
        self._lock = threading.Lock()
        self._models = Models(catalog)
        # estimator calibration: loaded from the ledger now, written off the hot path
        self._calibration = attach_calibration(ledger) if keep_calibration else None
        self.predictor = make_predictor(predictor, ledger, keep_calibration)

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
        return self._now()

    def budget_now(self) -> datetime | None:
        return self._clock() if self._clock is not None else None

    def model_info(
        self, model: str, provider: str | None = None, base_url: str | None = None
    ) -> tuple[ModelInfo, str]:
        """``(info, name to record)`` for a model name (cleaned and bounded like every key);
        never raises for an unknown one (see :class:`~tokenward.accountant._resolve.Models`)."""
        return self._models.info(model, provider, base_url)

    def counts_exactly(self, info: ModelInfo) -> bool:
        """Whether the model's prompts are counted by its own tokenizer (cached per model)."""
        return self._models.counts_exactly(info)

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
        run_id = key(str(run_id))
        if prompt_tokens is None and messages is None:
            raise ConfigurationError(
                "preflight() needs messages=[...] or prompt_tokens=N to estimate the input"
            )
        if prompt_tokens is not None:
            check_count("prompt_tokens", prompt_tokens)
        if max_output_tokens is not None:
            check_count("max_output_tokens", max_output_tokens)
        info, name = self._models.info(model or "unknown", provider, base_url)
        run = Run(
            run_id,
            name,
            info,
            resolve_dims(dims),
            kind,
            parent_id,
            active_trackers(),
            base_url,
            data,
        )
        run.estimate = estimate = Estimate(
            run_id, name, info, self.catalog, prompt=messages, tools=tools, kind=kind,
            prompt_tokens=prompt_tokens, max_output_tokens=max_output_tokens,
            default_output=self.expected_output_tokens,
        )  # fmt: skip
        if self.store_content and messages is not None:
            run.prompt_text = estimate.text()
        replaced, evicted = self._table.open(run)
        if replaced is not None or evicted:
            free(self, replaced, evicted)
        if self.budgets is not None:
            run.budget_dims = run.dims.for_budgets(name, info.provider)
            if enforce and self.budgets.enforces(run.budget_dims):
                check_budgets(self, run, estimate, self.budgets)
        watch(self, run)
        run.started = time.perf_counter()  # latency is the model's, not the pre-flight's
        return estimate

    def status(
        self,
        budget: str,
        *,
        model: str | None = None,
        messages: Prompt | None = None,
        prompt_tokens: int | None = None,
        tools: Sequence[Any] | None = None,
        max_output_tokens: int | None = None,
        dims: Mapping[str, Any] | None = None,
        kind: str = "chat",
        provider: str | None = None,
        base_url: str | None = None,
    ) -> BudgetStatus:
        """Where ``budget`` stands for the scope ``dims`` select, with a forecast for calls
        shaped like this one (``model`` and ``messages`` / ``prompt_tokens``, as
        :meth:`preflight` takes them): ``next_call_reserve`` is what the pre-flight of such a
        call would hold on this budget (the same estimate and output prediction, the exact
        prompt count), and ``forecast_remaining_calls`` how many such calls, made one after
        another, are admitted while each keeps the window's average (the last one counted is
        admitted, the next denied); ``pacing`` for calendar windows. Without ``model``: the
        budget's status from its window's average alone. Nothing is reserved or recorded."""
        if self.budgets is None:
            raise ConfigurationError(
                "status() needs budgets: Accountant(budgets=[Budget(...)]) or Budgets(...)"
            )
        now = self.budget_now()
        if model is None:
            if messages is not None or prompt_tokens is not None:
                raise ConfigurationError("status(): a call shape needs model=... too")
            # no call shape: only the budget's own scope decides (a copy: the scope is shared)
            scope = {**resolve_dims(dims).for_budgets("", None), "model": None}
            return self.budgets.status(budget, now=now, **scope)
        if prompt_tokens is None and messages is None:
            raise ConfigurationError(
                "status(model=...) needs messages=[...] or prompt_tokens=N, like the calls to forecast"
            )
        check_count("prompt_tokens", prompt_tokens)
        check_count("max_output_tokens", max_output_tokens)
        info, name = self.model_info(model, provider, base_url)
        run = Run("status", name, info, resolve_dims(dims), kind=kind)
        estimate = Estimate(
            "status", name, info, self.catalog, prompt=messages, tools=tools, kind=kind,
            prompt_tokens=prompt_tokens, max_output_tokens=max_output_tokens,
            default_output=self.expected_output_tokens,
        )  # fmt: skip
        worst, predicted = next_call_quotes(self, run, estimate, self.budgets)
        return self.budgets.status(
            budget,
            now=now,
            next_call=worst,
            predicted=predicted,
            **run.dims.for_budgets(name, info.provider),
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
        keep_alive(self, self._table.get(str(run_id)))

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
            normalize_usage(usage), True, status, error, model, provider, base_url,
            output_text, tool_names, dims, latency_ms,
        )  # fmt: skip
        return end(self, str(run_id), ending)

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
        return end(self, run_id, ending)

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
        ending = Ending(parsed, False, status, error, model, provider, base_url)
        ending.tool_names, ending.dims, ending.latency_ms = tool_names, dims, latency_ms
        ending.kind, ending.parent_id = kind, parent_id
        event = end(self, rid, ending, duplicate_ok=False)
        assert event is not None
        return event

    # -- convenience
    def track(self, **dims: Any) -> Tracker:
        """Like :func:`track`, counting only this accountant's events."""
        return Tracker(dims, accountant=self)

    def flush(self) -> None:
        """Write buffered events (and learned estimator calibration) to the ledger."""
        if self._calibration is not None:
            self._calibration.flush()
        if self.predictor is not None:
            self.predictor.close()  # what was learned since the last sync
        self.ledger.flush()

    def close(self) -> None:
        """End the Accountant: pending calls have their reservations released, the budgets
        reconcile journaled spend with their store and close it, the estimator calibration
        learned is written to the ledger, the ledger flushes and closes. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        leftover = self._table.drain()
        try:
            if self.predictor is not None:
                self.predictor.close()  # never raises for a store problem
            if self._calibration is not None:
                self._calibration.close()
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
