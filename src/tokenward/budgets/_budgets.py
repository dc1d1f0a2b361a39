"""``Budgets``: the object the Accountant holds. Reserve before a call, commit after it."""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, Literal

from tokenward.budgets._rules import Budget, _escape, _now
from tokenward.budgets._store import (
    BudgetStore,
    CommitItem,
    CommitResult,
    CounterStatus,
    MemoryBudgetStore,
    ReserveItem,
)
from tokenward.budgets._windows import WindowSpan
from tokenward.errors import BudgetExceededError, BudgetStoreUnavailableError, ConfigurationError

__all__ = ["Alert", "AlertSink", "BudgetStatus", "Budgets", "LoggingAlertSink"]

logger = logging.getLogger("tokenward.budgets")
_UTC = timezone.utc
_DONE_MEMORY = 10_000  # committed run ids remembered to make commit idempotent


@dataclass(frozen=True)
class Alert:
    """A threshold crossed (``kind="threshold"``) or a soft limit exceeded (``kind="exceeded"``).
    Fired once per (budget, scope key, window, threshold) across every process sharing the store.
    Amounts are in ``unit`` (Decimal USD or int tokens)."""

    budget: str
    scope_key: str
    window: str
    threshold: float
    kind: Literal["threshold", "exceeded"]
    unit: str
    spent: Decimal | int
    limit: Decimal | int
    utilization: float
    mode: str
    at: datetime
    reset_at: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict (amounts and instants as strings)."""
        d = asdict(self)
        for k in ("spent", "limit"):
            d[k] = str(d[k])
        for k in ("at", "reset_at"):
            d[k] = d[k].isoformat() if d[k] else None
        return d


AlertSink = Callable[[Alert], None]


class LoggingAlertSink:
    """Logs each alert as one structured record (``extra={"tokenward_alert": {...}}``) on the
    ``tokenward.budgets`` logger at WARNING."""

    def __init__(self, logger_: logging.Logger | None = None, level: int = logging.WARNING) -> None:
        self.logger = logger_ or logger
        self.level = level

    def __call__(self, alert: Alert) -> None:
        self.logger.log(
            self.level,
            "budget %s (%s) %s %.0f%%: spent %s of %s %s",
            alert.budget,
            alert.scope_key,
            "exceeded" if alert.kind == "exceeded" else "reached",
            alert.threshold * 100,
            alert.spent,
            alert.limit,
            alert.unit,
            extra={"tokenward_alert": alert.to_dict()},
        )


@dataclass(frozen=True)
class BudgetStatus:
    """Where one budget stands for one scope key. Amounts in ``unit`` (Decimal USD or int tokens).

    ``utilization`` = spent / limit; ``remaining`` = limit - spent - reserved (>= 0);
    ``forecast_remaining_calls`` = remaining // average committed cost per call in this window
    (``None`` until a call was committed)."""

    budget: str
    scope_key: str
    unit: str
    mode: str
    window: str
    limit: Decimal | int
    spent: Decimal | int
    reserved: Decimal | int
    remaining: Decimal | int
    utilization: float
    reset_at: datetime | None
    near_limit: bool
    calls: int
    average_per_call: Decimal | int | None
    forecast_remaining_calls: int | None


@dataclass
class _Applied:
    budget: Budget
    scope_key: str  # including the conversation part for conversation windows
    limit: int
    amount: int
    spans: list[WindowSpan]
    item: ReserveItem | None  # None for per-request windows
    before: tuple[int, int] = (0, 0)
    known: bool = False  # ``before`` was read from the store at reserve time


@dataclass
class _Pending:
    applied: list[_Applied]
    degraded: bool = False
    expires_at: float = 0.0


@dataclass
class _JournalEntry:
    id: str
    items: list[CommitItem]
    at: float = field(default_factory=time.time)


class Budgets:
    """A set of :class:`Budget` rules enforced against one store.

    Args:
        budgets: the rules. Every rule whose ``where`` matches a call applies to it.
        store: a :class:`BudgetStore`; default an in-process ``MemoryBudgetStore``.
        fail_mode: what happens when the store cannot be reached. ``"closed"`` (default) raises
            ``BudgetStoreUnavailableError`` from ``reserve`` (the call is not made). ``"open"``
            lets calls through, logs a warning, keeps spend in a local journal and commits it to
            the store once it is reachable again (``reconcile()``, also tried automatically).
            Commits never raise for an unreachable store in either mode: the call has happened,
            its spend is journaled instead.
        alert_sinks: callables receiving :class:`Alert`; default one ``LoggingAlertSink``.
        reservation_ttl: how long a reservation holds budget if neither commit nor release
            arrives (a crashed process): after it, the budget is whole again.
        retry_interval: after a store failure, how long to treat the store as down without
            trying it (keeps degraded calls fast).
        housekeeping_interval: how often (at most) ``reserve`` also deletes expired
            reservations, old window counters and fired-threshold markers from the store
            (``None``: never; call ``expire()`` yourself).
    """

    def __init__(
        self,
        *budgets: Budget,
        store: BudgetStore | None = None,
        fail_mode: Literal["closed", "open"] = "closed",
        alert_sinks: Iterable[AlertSink] | None = None,
        reservation_ttl: timedelta = timedelta(minutes=10),
        retry_interval: timedelta = timedelta(seconds=1),
        housekeeping_interval: timedelta | None = timedelta(minutes=10),
    ) -> None:
        names = [b.name for b in budgets]
        for b in budgets:
            if not isinstance(b, Budget):
                raise ConfigurationError(f"Budgets(...) takes Budget objects, got {b!r}.")
        if len(set(names)) != len(names):
            dup = sorted({n for n in names if names.count(n) > 1})
            raise ConfigurationError(f"Budget names must be unique; duplicated: {dup}.")
        if fail_mode not in ("closed", "open"):
            raise ConfigurationError(f"fail_mode must be 'closed' or 'open', got {fail_mode!r}.")
        if not isinstance(reservation_ttl, timedelta) or reservation_ttl <= timedelta(0):
            raise ConfigurationError("reservation_ttl must be a positive timedelta.")
        self._budgets: dict[str, Budget] = {b.name: b for b in budgets}
        self.store: BudgetStore = store if store is not None else MemoryBudgetStore()
        self.fail_mode = fail_mode
        self.alert_sinks: list[AlertSink] = (
            [LoggingAlertSink()] if alert_sinks is None else list(alert_sinks)
        )
        self.reservation_ttl = reservation_ttl
        self.retry_interval = retry_interval.total_seconds()
        self._lock = threading.Lock()
        self._pending: dict[str, _Pending] = {}
        self._done: OrderedDict[str, None] = OrderedDict()
        self._journal: list[_JournalEntry] = []
        self._down_until = 0.0
        self._fired: set[str] = set()
        self._housekeeping = (
            housekeeping_interval.total_seconds() if housekeeping_interval is not None else None
        )
        self._next_housekeeping = time.monotonic() + (self._housekeeping or 0)
        # per (budget, scope key): the counter keys of its current window spans (recomputed
        # when Budget.spans() hands out a new span list, i.e. when the bucket changed)
        self._keys_cache: dict[
            tuple[str, str], tuple[list[WindowSpan], tuple[str, ...], float | None, str]
        ] = {}
        # per (budget, scope key, window key, thresholds): the alert markers
        self._marker_cache: dict[tuple[Any, ...], tuple[tuple[float, str], ...]] = {}

    # -- introspection ------------------------------------------------------------------------
    @property
    def budgets(self) -> list[Budget]:
        """The rules, in the order given."""
        return list(self._budgets.values())

    def __getitem__(self, name: str) -> Budget:
        return self._budgets[name]

    @property
    def degraded(self) -> bool:
        """True while the store is considered unreachable."""
        return time.monotonic() < self._down_until

    @property
    def journal_size(self) -> int:
        """Commits waiting to be written to the store (fail-open / outage)."""
        return len(self._journal)

    # -- planning -----------------------------------------------------------------------------
    def _plan(
        self, dims: Mapping[str, Any], cost_nanos: int, tokens: int, now: datetime
    ) -> list[_Applied]:
        out = []
        for b in self._budgets.values():
            if not b.applies(dims):
                continue
            skey = b.scope_key(dims)
            limit = b.limit_for(skey)
            amount = b.amount(cost_nanos, tokens)
            spans = b.spans(now)
            item = None
            if b.window.kind == "conversation":
                conv = b._dim(dims, "conversation_id")
                if conv is not None and "conversation_id" not in b.scope:
                    ckey = f"conversation_id={_escape(conv)}"
                    skey = ckey if skey == "*" else f"{skey}|{ckey}"
                elif conv is None:
                    spans = []  # a conversation of its own: checked like a request
            if b.window.accumulates and spans:
                cached = self._keys_cache.get((b.name, skey))
                if cached is None or cached[0] is not spans:
                    base = f"{b.name}|{skey}"
                    keys = tuple(f"{base}|{s.key}" for s in spans)
                    exp = spans[-1].end.timestamp() + 3600 if spans[-1].end else None
                    cached = (spans, keys, exp, f"{base}|lock" if len(keys) > 1 else "")
                    if len(self._keys_cache) >= 10_000:
                        self._keys_cache.clear()
                    self._keys_cache[(b.name, skey)] = cached
                _, keys, exp, lock_key = cached
                item = ReserveItem(
                    key=keys[-1],
                    amount=amount,
                    limit=limit if b.mode == "hard" else None,
                    read_keys=keys if len(keys) > 1 else (),
                    lock_key=lock_key,
                    expires_at=exp,
                )
            out.append(_Applied(b, skey, limit, amount, spans, item))
        return out

    # -- store access with fail handling -------------------------------------------------------
    def _store_call(self, fn: Callable[[], Any], *, force: bool = False) -> Any:
        if not force and time.monotonic() < self._down_until:
            raise BudgetStoreUnavailableError(
                "budget store marked unavailable after a recent failure; retrying in "
                f"{self._down_until - time.monotonic():.1f}s."
            )
        try:
            out = fn()
        except BudgetStoreUnavailableError:
            self._down_until = time.monotonic() + self.retry_interval
            raise
        self._down_until = 0.0
        return out

    def _maybe_reconcile(self, now_s: float) -> None:
        if self._journal and time.monotonic() >= self._down_until:
            try:
                self._reconcile(now_s, force=False)
            except BudgetStoreUnavailableError:
                pass

    def reconcile(self, *, now: datetime | None = None) -> int:
        """Write journaled spend (recorded while the store was down) to the store. Returns the
        number of entries written; raises ``BudgetStoreUnavailableError`` if still down.
        Also tried automatically before store operations once ``retry_interval`` has passed."""
        return self._reconcile(_now(now).timestamp(), force=True)

    def _reconcile(self, now_s: float, *, force: bool) -> int:
        n = 0
        while True:
            with self._lock:
                if not self._journal:
                    break
                entry = self._journal[0]
            self._store_call(
                lambda e=entry: self.store.commit(e.id, e.items, now_s),  # type: ignore[misc]
                force=force,
            )
            with self._lock:
                if self._journal and self._journal[0] is entry:
                    self._journal.pop(0)
            n += 1
        if n:
            logger.info("tokenward budgets: reconciled %d journaled commit(s) with the store", n)
        return n

    # -- the Accountant's API -----------------------------------------------------------------
    def reserve(
        self,
        run_id: str,
        dims: Mapping[str, Any] | None,
        cost_nanos: int,
        tokens: int,
        *,
        now: datetime | None = None,
    ) -> None:
        """Hold ``cost_nanos`` / ``tokens`` on every budget that applies, all or nothing.

        Raises ``BudgetExceededError`` (naming the first hard budget that would be exceeded)
        or, with ``fail_mode="closed"``, ``BudgetStoreUnavailableError``. Reserving the same
        ``run_id`` again replaces the earlier reservation."""
        if cost_nanos < 0 or tokens < 0:
            raise ConfigurationError("cost_nanos and tokens must be >= 0.")
        now_dt = _now(now)
        now_s = now_dt.timestamp()
        dims = dims or {}
        if run_id in self._pending:
            self.release(run_id, now=now_dt)
        applied = self._plan(dims, cost_nanos, tokens, now_dt)
        for a in applied:  # per-request windows: nothing stored, nothing shared
            if a.item is None and a.budget.mode == "hard" and a.amount > a.limit:
                raise self._denial(a, (0, 0), now_dt)
        stored_applied = [a for a in applied if a.item is not None]
        items = [a.item for a in stored_applied]
        pending = _Pending(applied, expires_at=now_s + self.reservation_ttl.total_seconds())
        if items:
            self._maybe_reconcile(now_s)
            try:
                res = self._store_call(
                    lambda: self.store.reserve(
                        items, run_id, self.reservation_ttl.total_seconds(), now_s
                    )
                )
            except BudgetStoreUnavailableError as exc:
                if self.fail_mode == "closed":
                    raise BudgetStoreUnavailableError(
                        f"Budget store unavailable ({exc}); call denied because fail_mode='closed'. "
                        f"Restore the store, or use Budgets(..., fail_mode='open') to let calls "
                        f"through and reconcile spend later."
                    ) from exc
                logger.warning(
                    "tokenward budgets: store unavailable (%s); allowing run %s (fail_mode='open'), "
                    "spend will be journaled and reconciled",
                    exc,
                    run_id,
                )
                pending.degraded = True
            else:
                if not res.ok:
                    failed = stored_applied[res.failed]
                    raise self._denial(failed, res.totals[res.failed], now_dt)
                for a, tot in zip(stored_applied, res.totals):
                    a.before = tot
                    a.known = True
        with self._lock:
            self._pending[run_id] = pending
            self._done.pop(run_id, None)
        if self._housekeeping is not None and time.monotonic() >= self._next_housekeeping:
            self._next_housekeeping = time.monotonic() + self._housekeeping
            try:
                self._store_call(lambda: self.store.expire(now_s))
            except Exception:  # housekeeping must never fail a call
                logger.debug("tokenward budgets: housekeeping failed", exc_info=True)

    def commit(
        self,
        run_id: str,
        cost_nanos: int,
        tokens: int,
        *,
        dims: Mapping[str, Any] | None = None,
        now: datetime | None = None,
    ) -> None:
        """Replace the reservation of ``run_id`` by the actual spend. Without a reservation
        (expired, never made) spend is still recorded when ``dims`` are given. Idempotent: a
        second commit of the same ``run_id`` does nothing. Fires threshold alerts."""
        now_dt = _now(now)
        now_s = now_dt.timestamp()
        with self._lock:
            p = self._pending.pop(run_id, None)
            if p is None and run_id in self._done:
                return
            self._done[run_id] = None
            if len(self._done) > _DONE_MEMORY:
                self._done.popitem(last=False)
        if p is None:
            if dims is None:
                logger.debug(
                    "tokenward budgets: commit for unknown run %s ignored (no dims)", run_id
                )
                return
            p = _Pending(self._plan(dims, cost_nanos, tokens, now_dt))
        items: list[CommitItem] = []
        for a in p.applied:
            a.amount = a.budget.amount(cost_nanos, tokens)
            if a.item is not None:
                it = a.item
                marks = self._marks(a)
                items.append(
                    CommitItem(it.key, a.amount, it.read_keys, it.lock_key, it.expires_at, marks)
                )
        result: CommitResult | None = None
        if items:
            if p.degraded or self.degraded:
                self._journal_add(run_id, items)
            else:
                self._maybe_reconcile(now_s)
                try:
                    result = self._store_call(lambda: self.store.commit(run_id, items, now_s))
                except BudgetStoreUnavailableError as exc:
                    logger.warning(
                        "tokenward budgets: store unavailable at commit of %s (%s); spend journaled",
                        run_id,
                        exc,
                    )
                    self._journal_add(run_id, items)
        sent = frozenset(marker for it in items for _, marker in it.marks)
        self._check_thresholds(p, now_dt, result, sent)

    def _journal_add(self, run_id: str, items: list[CommitItem]) -> None:
        with self._lock:
            # keyed by the run id: the store applies a replayed commit once, and reconciling
            # also drops the run's reservation if the store kept it
            self._journal.append(_JournalEntry(run_id, [replace(it, marks=()) for it in items]))

    def release(self, run_id: str, *, now: datetime | None = None) -> None:
        """Return the reservation of ``run_id`` (the call failed or was cancelled)."""
        with self._lock:
            p = self._pending.pop(run_id, None)
        if p is None or p.degraded or not any(a.item for a in p.applied):
            return
        now_s = _now(now).timestamp()
        try:
            self._store_call(lambda: self.store.release(run_id, now_s))
        except BudgetStoreUnavailableError as exc:
            logger.warning(
                "tokenward budgets: store unavailable at release of %s (%s); the reservation "
                "expires after its TTL",
                run_id,
                exc,
            )

    # -- status, errors, alerts ---------------------------------------------------------------
    def _statuses(self, a: _Applied, now_s: float) -> list[CounterStatus]:
        assert a.item is not None
        return list(self._store_call(lambda: self.store.status(list(a.item.keys), now_s)))

    def _reset_at(
        self, a: _Applied, now: datetime, statuses: list[CounterStatus] | None, need: int | None
    ) -> datetime | None:
        kind = a.budget.window.kind
        if kind in ("request", "conversation") or not a.spans:
            return None
        if kind != "rolling":
            return a.spans[-1].end
        if statuses is None:
            return None
        # oldest non-empty bucket leaves first; with ``need`` find when enough has left.
        total = sum(s.spent + s.reserved for s in statuses)
        freed = 0
        for span, st in zip(a.spans, statuses):
            used = st.spent + st.reserved
            if not used:
                continue
            freed += used
            if need is None or total - freed + need <= a.limit:
                return span.end
        return a.spans[-1].end

    def _denial(self, a: _Applied, totals: tuple[int, int], now: datetime) -> BudgetExceededError:
        b = a.budget
        spent, reserved = totals
        statuses = None
        if b.window.kind == "rolling" and a.item is not None:
            try:
                statuses = self._statuses(a, now.timestamp())
            except BudgetStoreUnavailableError:
                statuses = None
        reset = self._reset_at(a, now, statuses, a.amount)
        unit = b.unit
        fmt = (lambda n: f"${b.to_unit(n)}") if unit == "usd" else (lambda n: f"{n} tokens")
        if a.amount > a.limit:
            suggestion = (
                f"This call alone ({fmt(a.amount)}) exceeds the whole limit {fmt(a.limit)}: lower "
                f"max_tokens, trim the prompt or use a cheaper model."
            )
        elif reset is not None:
            suggestion = (
                f"Retry after {reset.isoformat()}, lower max_tokens, use a cheaper model, or raise "
                f"the limit (Budget({b.name!r}, overrides={{{a.scope_key!r}: ...}}))."
            )
        else:
            suggestion = (
                "This window never resets: start a new conversation, lower max_tokens, use a "
                f"cheaper model, or raise the limit (Budget({b.name!r}, overrides=...))."
            )
        msg = (
            f"Budget {b.name!r} ({a.scope_key}, {b.window.describe()}) would be exceeded: "
            f"spent {fmt(spent)} + reserved {fmt(reserved)} + this call {fmt(a.amount)} > "
            f"limit {fmt(a.limit)}. {suggestion}"
        )
        return BudgetExceededError(
            msg,
            budget=b.name,
            scope_key=a.scope_key,
            unit=unit,
            limit=b.to_unit(a.limit),
            spent=b.to_unit(spent),
            reserved=b.to_unit(reserved),
            attempted=b.to_unit(a.amount),
            reset_at=reset,
            suggestion=suggestion,
        )

    def _markers(self, a: _Applied) -> tuple[tuple[float, str], ...]:
        """``(threshold, marker)`` of ``a``'s budget and scope in the current window."""
        b = a.budget
        ths = tuple(b.thresholds)
        if b.mode == "soft" and 1.0 not in ths:
            ths = (*ths, 1.0)
        if not ths or a.limit <= 0:
            return ()
        window_key = a.spans[-1].key if a.spans else ""
        mkey = (b.name, a.scope_key, window_key, ths)
        markers = self._marker_cache.get(mkey)
        if markers is None:  # the "fired" markers of this window, built once
            prefix = f"{b.name}|{a.scope_key}|{window_key}"
            markers = tuple((t, f"{prefix}|{t}") for t in ths)
            if len(self._marker_cache) >= 10_000:
                self._marker_cache.clear()
            self._marker_cache[mkey] = markers
        return markers

    def _marks(self, a: _Applied) -> tuple[tuple[int, str], ...]:
        """What the store records at commit once spend reaches it: ``(amount, marker)`` of
        every threshold not yet fired here (``spent >= t * limit``, spent an integer); none
        when even spent + reserved at reserve time plus this call stays below them all."""
        marks = tuple(
            (math.ceil(t * a.limit), m) for t, m in self._markers(a) if m not in self._fired
        )
        if marks and a.known and sum(a.before) + a.amount < min(at for at, _ in marks):
            return ()
        return marks

    def _check_thresholds(
        self, p: _Pending, now: datetime, result: CommitResult | None, sent: frozenset[str]
    ) -> None:
        if result is not None and not result.applied:
            return  # the store had this commit already: its alerts went out then
        spent_after = (
            dict(zip((a.item.key for a in p.applied if a.item is not None), result.spent))
            if result is not None
            else {}
        )
        for a in p.applied:
            b = a.budget
            markers = self._markers(a)
            pending_ths = [t for t, m in markers if m not in self._fired]
            if not pending_ths:
                continue
            window_key = a.spans[-1].key if a.spans else ""
            if a.item is None:  # per-request window: this call is the whole window
                spent = a.amount
                base = f"{b.name}|{a.scope_key}|{window_key}|{id(p)}"
            else:
                base = f"{b.name}|{a.scope_key}|{window_key}"
                # the store's spend after this commit; an estimate when degraded or journaled
                spent = spent_after.get(a.item.key, a.before[0] + a.amount)
            for t in pending_ths:
                if spent < t * a.limit:
                    continue
                marker = f"{base}|{t}"
                if result is not None and a.item is not None:
                    if marker not in sent:
                        continue  # not offered to the store this time: the next commit will
                    first = marker in result.fired  # recorded once across every process
                else:
                    first = marker not in self._fired
                if a.item is not None:
                    self._fired.add(marker)
                if first:
                    self._emit(
                        Alert(
                            budget=b.name,
                            scope_key=a.scope_key,
                            window=window_key or b.window.kind,
                            threshold=t,
                            kind="exceeded"
                            if spent > a.limit or (t == 1.0 and b.mode == "soft")
                            else "threshold",
                            unit=b.unit,
                            spent=b.to_unit(spent),
                            limit=b.to_unit(a.limit),
                            utilization=spent / a.limit,
                            mode=b.mode,
                            at=now,
                            reset_at=self._reset_at(a, now, None, None),
                        )
                    )
            if len(self._fired) > 100_000:
                self._fired.clear()

    def _emit(self, alert: Alert) -> None:
        for sink in self.alert_sinks:
            try:
                sink(alert)
            except Exception:  # an alert sink must never break the host app
                logger.exception("tokenward budgets: alert sink %r failed", sink)

    def status(self, budget: str, *, now: datetime | None = None, **dims: Any) -> BudgetStatus:
        """Spent, reserved, remaining, utilisation, reset time, near-limit flag and a forecast of
        remaining calls for ``budget`` and the scope the given dimensions select
        (e.g. ``budgets.status("per-user", user_id="u1")``)."""
        try:
            b = self._budgets[budget]
        except KeyError:
            raise ConfigurationError(
                f"No budget named {budget!r}; known: {sorted(self._budgets)}."
            ) from None
        now_dt = _now(now)
        applied = [a for a in self._plan(dims, 0, 0, now_dt) if a.budget is b]
        if not applied:
            a = _Applied(b, b.scope_key(dims), b.limit_for(b.scope_key(dims)), 0, [], None)
        else:
            a = applied[0]
        statuses = self._statuses(a, now_dt.timestamp()) if a.item is not None else []
        spent = sum(s.spent for s in statuses)
        reserved = sum(s.reserved for s in statuses)
        calls = sum(s.calls for s in statuses)
        remaining = max(0, a.limit - spent - reserved)
        util = spent / a.limit if a.limit else (1.0 if spent else 0.0)
        avg = spent // calls if calls else None
        forecast = (remaining // avg if avg else None) if calls else None
        near = bool(b.thresholds) and (spent + reserved) >= max(b.thresholds) * a.limit
        return BudgetStatus(
            budget=b.name,
            scope_key=a.scope_key,
            unit=b.unit,
            mode=b.mode,
            window=b.window.describe(),
            limit=b.to_unit(a.limit),
            spent=b.to_unit(spent),
            reserved=b.to_unit(reserved),
            remaining=b.to_unit(remaining),
            utilization=util,
            reset_at=self._reset_at(a, now_dt, statuses or None, None),
            near_limit=near,
            calls=calls,
            average_per_call=b.to_unit(avg) if avg is not None else None,
            forecast_remaining_calls=forecast,
        )

    def max_utilization(
        self, dims: Mapping[str, Any] | None, *, now: datetime | None = None
    ) -> float:
        """Highest (spent + reserved) / limit among the budgets that apply to ``dims`` (0.0 if
        none apply). Middleware uses it to degrade before a hard deny."""
        now_dt = _now(now)
        worst = 0.0
        applied = [a for a in self._plan(dims or {}, 0, 0, now_dt) if a.item is not None]
        for a, used in zip(applied, self._used(applied, now_dt.timestamp())):
            worst = max(worst, used / a.limit if a.limit else (1.0 if used else 0.0))
        return worst

    def _used(self, applied: list[_Applied], now_s: float) -> list[int]:
        """spent + reserved of each applied budget, read from the store in one round trip."""
        keys = [k for a in applied if a.item is not None for k in a.item.keys]
        statuses = iter(self._store_call(lambda: self.store.status(keys, now_s)) if keys else ())
        return [
            sum(st.spent + st.reserved for _, st in zip(a.item.keys, statuses))
            if a.item is not None
            else 0
            for a in applied
        ]

    def headroom(
        self, dims: Mapping[str, Any] | None, *, now: datetime | None = None
    ) -> tuple[int | None, int | None]:
        """``(nano-USD, tokens)`` a new call may still reserve under every applicable hard
        budget (``None`` = unbounded in that unit). Used by :func:`suggest_degradation`."""
        now_dt = _now(now)
        usd: int | None = None
        tok: int | None = None
        applied = [a for a in self._plan(dims or {}, 0, 0, now_dt) if a.budget.mode == "hard"]
        for a, used in zip(applied, self._used(applied, now_dt.timestamp())):
            room = a.limit if a.item is None else max(0, a.limit - used)
            if a.budget.unit == "usd":
                usd = room if usd is None else min(usd, room)
            else:
                tok = room if tok is None else min(tok, room)
        return usd, tok

    def expire(self, *, now: datetime | None = None) -> int:
        """Delete expired reservations/counters in the store (optional housekeeping)."""
        return int(self._store_call(lambda: self.store.expire(_now(now).timestamp())))

    def close(self) -> None:
        """Try to reconcile journaled spend, then close the store."""
        if self._journal:
            try:
                self.reconcile()
            except BudgetStoreUnavailableError:
                logger.warning(
                    "tokenward budgets: %d journaled commit(s) could not be written at close",
                    len(self._journal),
                )
        self.store.close()
