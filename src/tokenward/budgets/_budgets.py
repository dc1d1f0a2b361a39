"""``Budgets``: the object the Accountant holds. Reserve before a call, commit after it."""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from itertools import repeat
from operator import is_
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

from tokenward._hygiene import MAX_COUNT
from tokenward._memo import remember
from tokenward.budgets._journal import Journal, JournalEntry
from tokenward.budgets._rules import Budget, _escape, _now, nanos_to_usd
from tokenward.budgets._store import (
    MAX_AMOUNT,
    BudgetStore,
    CommitItem,
    CommitResult,
    CounterStatus,
    MemoryBudgetStore,
    ReserveItem,
)
from tokenward.budgets._windows import WindowSpan
from tokenward.errors import (
    BudgetExceededError,
    BudgetStoreError,
    BudgetStoreUnavailableError,
    ConfigurationError,
    UnpricedModelError,
)

if TYPE_CHECKING:
    from tokenward.predict import Pacing

__all__ = [
    "Alert",
    "AlertSink",
    "BudgetStatus",
    "Budgets",
    "LoggingAlertSink",
    "Quote",
    "Reservation",
]

logger = logging.getLogger("tokenward.budgets")
_warned: set[str] = set()


def _warn_once(kind: str, msg: str, *args: Any) -> None:
    """Log a warning the first time ``kind`` happens in this process (then at debug level)."""
    if kind in _warned:
        logger.debug(msg, *args)
        return
    _warned.add(kind)
    logger.warning(msg + " (logged once per process)", *args)


def _at(now: datetime | None, now_s: float) -> datetime:
    """The datetime of an instant: ``now`` when given, else made from the epoch seconds
    ``now_s`` (without a given ``now`` the clock is read once as a float; a datetime is made
    only when something needs one: a new window bucket, a denial, an alert)."""
    return now if now is not None else datetime.fromtimestamp(now_s, timezone.utc)


def _default_journal_path(store: object) -> str | None:
    env = os.environ.get("TOKENWARD_BUDGET_JOURNAL")
    if env:
        return env
    path = getattr(store, "path", None)
    if isinstance(path, str) and path and not path.startswith("file:") and path != ":memory:":
        return f"{path}-journal"
    return None


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
    ``forecast_remaining_calls``: how many more calls, made one after another, this budget
    admits (:func:`tokenward.predict.calls_left`): the next call reserves
    ``next_call_reserve`` and each call keeps the average committed per call in this window.
    ``next_call_reserve`` is what the pre-flight of a given call shape holds on this budget
    (:meth:`Accountant.status <tokenward.Accountant.status>` asks the estimate path for it;
    without a shape it is the average, i.e. ``remaining // average``); ``None`` until a call
    was committed and no shape was given. ``pacing``: spend per day so far, allowed per day
    for the rest of the window and the projected exhaustion (calendar windows, else
    ``None``)."""

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
    next_call_reserve: Decimal | int | None = None
    pacing: Pacing | None = None


_NEVER = 1 << 128
"""A ``next_alert`` no spend reaches: every threshold of the slot has fired."""


_NONES = repeat(None)


class _Rule:
    """A :class:`Budget` as ``Budgets`` plans with it: whether it filters calls, which
    dimensions select its slot, and its slots (current window of each scope seen)."""

    __slots__ = ("budget", "conversation", "dims", "filters", "slots", "usd")

    def __init__(self, b: Budget) -> None:
        self.budget = b
        self.filters = bool(b.where) or b.missing == "skip"
        self.usd = b.unit == "usd"
        # a per-conversation window not scoped by conversation: its counters are anyway
        self.conversation = b.window.kind == "conversation" and "conversation_id" not in b.scope
        self.dims = (*b.scope, "conversation_id") if self.conversation else b.scope
        # raw dimension values -> slot; the values, not the scope key, so nothing is re-derived
        self.slots: dict[tuple[Any, ...], _Slot] = {}

    def from_tags(self, dims: Mapping[str, Any], values: tuple[Any, ...]) -> tuple[Any, ...]:
        """``values`` (each dimension read from ``dims``, some missing) completed from the
        ``tags`` dimension, as :meth:`Budget.scope_key` reads them."""
        tags = dims.get("tags")
        if not isinstance(tags, Mapping):
            return values
        return tuple(tags.get(d) if v is None else v for d, v in zip(self.dims, values))


class _Slot:
    """One budget for one scope in its current window: everything a call needs from it,
    computed once (counter keys, window end, alert markers, the next threshold)."""

    __slots__ = (
        "budget",
        "expires_at",
        "hard_limit",
        "key",
        "keys",
        "limit",
        "lock_key",
        "markers",
        "next_alert",
        "read_keys",
        "scope_key",
        "spans",
        "start",
        "until",
        "window_key",
    )

    def __init__(self, b: Budget, scope_key: str, spans: list[WindowSpan], now_s: float) -> None:
        self.budget = b
        self.scope_key = scope_key
        self.limit = b.limit_for(scope_key)
        self.hard_limit = self.limit if b.mode == "hard" else None  # what the store checks
        self.spans = spans
        cached = b._span_cache
        self.start, self.until = (cached[0], cached[1]) if cached else (now_s, now_s)
        base = f"{b.name}|{scope_key}"
        self.keys = tuple(f"{base}|{span.key}" for span in spans)
        # the counter this call writes (None: per-request window, nothing stored)
        self.key = self.keys[-1] if b.window.accumulates and spans else None
        self.read_keys = self.keys if len(self.keys) > 1 else ()
        self.lock_key = f"{base}|lock" if len(self.keys) > 1 else ""
        end = spans[-1].end if spans else None
        self.expires_at = end.timestamp() + 3600 if end is not None else None
        self.window_key = spans[-1].key if spans else ""
        ths = tuple(b.thresholds)
        if b.mode == "soft" and 1.0 not in ths:
            ths = (*ths, 1.0)
        prefix = f"{base}|{self.window_key}"
        # (fraction, spend that reaches it: spent >= t * limit with spent an integer, marker)
        self.markers = (
            tuple((t, math.ceil(t * self.limit), f"{prefix}|{t}") for t in ths)
            if self.limit > 0
            else ()
        )
        self.next_alert = 0  # spend below this crosses no threshold not yet fired

    def update_next_alert(self, fired: set[str]) -> None:
        self.next_alert = min(
            (at for _, at, marker in self.markers if marker not in fired), default=_NEVER
        )


class _Applied:
    """One budget's share of one call: its slot, the amount it counts and, once reserved,
    what the store said was spent and reserved before it."""

    __slots__ = ("amount", "before", "item", "known", "slot")

    def __init__(self, slot: _Slot, amount: int, item: ReserveItem | None) -> None:
        self.slot = slot
        self.amount = amount
        self.item = item  # None for per-request windows
        self.before = (0, 0)
        self.known = False  # ``before`` was read from the store at reserve time

    @property
    def budget(self) -> Budget:
        return self.slot.budget

    @property
    def scope_key(self) -> str:
        """Including the conversation part for conversation windows."""
        return self.slot.scope_key

    @property
    def limit(self) -> int:
        return self.slot.limit

    @property
    def spans(self) -> list[WindowSpan]:
        return self.slot.spans


class Reservation:
    """What :meth:`Budgets.reserve` holds for one call; hand it back to ``commit``/``release``.

    The caller keeps it (the Accountant's run table does): ``Budgets`` keeps no per-call
    state of its own. ``expires_at`` (epoch seconds) is when the store drops the hold unless
    :meth:`Budgets.extend` pushes it back; ``degraded`` is set when the store was unreachable
    and ``fail_mode="open"`` let the call through (its spend is journaled at commit).
    """

    __slots__ = ("applied", "degraded", "done", "expires_at", "id", "stored")

    def __init__(self, run_id: str, applied: tuple[_Applied, ...], expires_at: float) -> None:
        self.id = run_id
        self.applied = applied
        self.expires_at = expires_at
        self.degraded = False
        self.stored = False  # something is held in the store under ``id``
        self.done = False  # committed or released: a second commit/release does nothing

    @property
    def budgets(self) -> list[str]:
        """Names of the budgets this reservation holds amounts on."""
        return [a.budget.name for a in self.applied]

    def __repr__(self) -> str:
        state = "done" if self.done else ("degraded" if self.degraded else "held")
        return f"Reservation({self.id!r}, budgets={self.budgets}, {state})"


PriceAs = Callable[[str], "int | None"]


class Quote(NamedTuple):
    """What a call may cost before it runs: ``cost_nanos`` (``None``: no known price),
    ``tokens`` (input + output), and ``price_as(model)``: the same tokens priced as another
    model (for ``Budget(price_as=...)``)."""

    cost_nanos: int | None
    tokens: int
    price_as: PriceAs | None = None


class Budgets:
    """A set of :class:`Budget` rules enforced against one store.

    Args:
        budgets: the rules. Every rule whose ``where`` matches a call applies to it.
        store: a :class:`BudgetStore`; default an in-process ``MemoryBudgetStore``.
        fail_mode: what happens when the budgets cannot be checked (the store cannot be
            reached, or answers with an error). ``"closed"`` (default) raises
            ``BudgetStoreUnavailableError`` from ``reserve`` (the call is not made). ``"open"``
            lets calls through, logs a warning, journals their spend and commits it to the
            store once it is reachable again (``reconcile()``, also tried automatically).
            Commits never raise for an unreachable store in either mode: the call has happened,
            its spend is journaled instead.
        alert_sinks: callables receiving :class:`Alert`; default one ``LoggingAlertSink``.
        reservation_ttl: how long a reservation holds budget if neither commit nor release
            arrives (a crashed process): after it, the budget is whole again. A long stream
            extends it (:meth:`extend`).
        retry_interval: after a store failure, how long to treat the store as down without
            trying it (keeps degraded calls fast).
        housekeeping_interval: how often (at most) ``reserve`` also deletes expired
            reservations, old window counters and fired-threshold markers from the store
            (``None``: never; call ``expire()`` yourself).
        journal_path: a file that keeps journaled spend across restarts (SQLite, fsync'd);
            entries left by an earlier process are replayed once the store answers. Default:
            ``$TOKENWARD_BUDGET_JOURNAL``, else beside a SQLite store's file, else beside the
            Accountant's SQLite ledger, else memory only (with a warning when used).
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
        journal_path: str | os.PathLike[str] | None = None,
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
        self._hard = tuple(b for b in budgets if b.mode == "hard")
        self.store: BudgetStore = store if store is not None else MemoryBudgetStore()
        self.fail_mode = fail_mode
        self.alert_sinks: list[AlertSink] = (
            [LoggingAlertSink()] if alert_sinks is None else list(alert_sinks)
        )
        self.reservation_ttl = reservation_ttl
        self._ttl = reservation_ttl.total_seconds()
        self.retry_interval = retry_interval.total_seconds()
        self._journal = Journal(journal_path or _default_journal_path(self.store))
        self._down_until = 0.0
        self._fired: set[str] = set()
        self._closed = False
        self._housekeeping = (
            housekeeping_interval.total_seconds() if housekeeping_interval is not None else None
        )
        self._next_housekeeping = time.monotonic() + (self._housekeeping or 0)
        self._rules = tuple(_Rule(b) for b in budgets)
        # a hard budget applies to every call: nothing to match before enforcing
        self._enforces_all = any(not r.filters for r in self._rules if r.budget.mode == "hard")
        #: whether a budget reserves predicted outputs (``Budget(reserve="predicted")``)
        self.predicts = any(b.reserve == "predicted" for b in budgets)

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

    @property
    def journal_path(self) -> str | None:
        """Where journaled spend is kept across restarts (``None``: memory only)."""
        return self._journal.path

    def use_journal_path(self, path: str | os.PathLike[str]) -> None:
        """Keep journaled spend in ``path`` unless a journal file is already configured."""
        self._journal.use_path(path)

    def enforces(self, dims: Mapping[str, Any]) -> bool:
        """Whether a hard budget applies to a call with these dimensions (so it must be checked
        before it is made)."""
        return self._enforces_all or any(b.applies(dims) for b in self._hard)

    # -- planning -----------------------------------------------------------------------------
    def _plan(
        self,
        dims: Mapping[str, Any],
        cost_nanos: int | None,
        tokens: int,
        now: datetime | None,
        now_s: float,
        price_as: PriceAs | None = None,
        *,
        deny_unpriced: bool = False,
    ) -> list[_Applied]:
        out = []
        for rule in self._rules:
            b = rule.budget
            if rule.filters and not b.applies(dims):
                continue
            if not rule.usd:
                amount = tokens
            elif cost_nanos is not None:
                amount = cost_nanos
            else:
                unpriced = self._unpriced(b, dims, price_as, deny_unpriced)
                if unpriced is None:
                    continue  # this USD budget does not count calls whose cost is unknown
                amount = unpriced
            # the rule's slot for this scope, from its cache while the window bucket lasts;
            # keyed by the raw values of its dimensions, so nothing is re-derived
            raw: Any = tuple(map(dims.get, rule.dims))
            if any(map(is_, raw, _NONES)):  # (identity, in C: values may be anything)
                raw = rule.from_tags(dims, raw)
            try:
                slot = rule.slots.get(raw)
            except TypeError:  # an unhashable value: no caching for it
                slot = raw = None
            if slot is None or not slot.start <= now_s < slot.until:
                slot = self._slot(rule, dims, raw, now, now_s)
            key = slot.key
            item = None
            if key is not None:
                item = ReserveItem(
                    key,
                    amount if amount <= MAX_AMOUNT else MAX_AMOUNT,
                    slot.hard_limit,
                    slot.read_keys,
                    slot.lock_key,
                    slot.expires_at,
                )
            out.append(_Applied(slot, amount, item))
        return out

    def _with_predicted(
        self,
        applied: list[_Applied],
        dims: Mapping[str, Any],
        predicted: Quote,
        now: datetime | None,
        now_s: float,
        *,
        deny_unpriced: bool = False,
    ) -> list[_Applied]:
        """``applied`` with budgets whose ``reserve="predicted"`` counting ``predicted``."""
        cost, tokens, price_as = predicted
        if (cost is not None and not 0 <= cost < MAX_COUNT) or not 0 <= tokens < MAX_COUNT:
            raise ConfigurationError("predicted amounts must be >= 0 and below 2**63.")
        alt = {
            a.budget.name: a
            for a in self._plan(
                dims, cost, tokens, now, now_s, price_as, deny_unpriced=deny_unpriced
            )
            if a.budget.reserve == "predicted"
        }
        return [
            alt.get(a.budget.name, a) if a.budget.reserve == "predicted" else a for a in applied
        ]

    def _slot(
        self,
        rule: _Rule,
        dims: Mapping[str, Any],
        raw: tuple[Any, ...] | None,
        now: datetime | None,
        now_s: float,
    ) -> _Slot:
        """The budget's slot for the scope ``dims`` select (the values ``raw``; ``None``: not
        hashable), made for the current window bucket and cached under ``raw``."""
        b = rule.budget
        skey = b.scope_key(dims)
        spans = b.spans(_at(now, now_s))
        if rule.conversation:
            conv = b._dim(dims, "conversation_id")
            if conv is not None:
                ckey = f"conversation_id={_escape(conv)}"
                skey = ckey if skey == "*" else f"{skey}|{ckey}"
            else:
                spans = []  # a conversation of its own: checked like a request
        slot = _Slot(b, skey, spans, now_s)
        slot.update_next_alert(self._fired)
        if raw is not None:
            remember(rule.slots, raw, slot, 10_000)
        return slot

    def _unpriced(
        self, b: Budget, dims: Mapping[str, Any], price_as: PriceAs | None, deny: bool
    ) -> int | None:
        """The amount a USD budget counts for a call whose model has no price, or ``None``."""
        model = str(dims.get("model") or "unknown")
        if b.price_as is not None and price_as is not None:
            amount = price_as(b.price_as)
            if amount is not None:
                return amount
            _warn_once(
                f"price_as:{b.name}",
                "tokenward budgets: Budget %r price_as=%r is not priced either",
                b.name,
                b.price_as,
            )
        if b.unpriced == "deny" and b.mode == "hard" and deny:
            skey = b.scope_key(dims)
            raise UnpricedModelError(
                model, budget=b.name, scope_key=skey, limit=nanos_to_usd(b.limit_for(skey))
            )
        return None

    # -- store access with fail handling -------------------------------------------------------
    def _store_call(self, fn: Callable[..., Any], *args: Any, force: bool = False) -> Any:
        """The one outage policy around every store access: refused while the store is marked
        down after a failure (unless ``force``), marked down when it fails, the outage
        forgotten once it answers."""
        if self._down_until and not force and time.monotonic() < self._down_until:
            raise BudgetStoreUnavailableError(
                "budget store marked unavailable after a recent failure; retrying in "
                f"{self._down_until - time.monotonic():.1f}s."
            )
        try:
            out = fn(*args)
        except BudgetStoreUnavailableError:
            self._down_until = time.monotonic() + self.retry_interval
            raise
        if self._down_until:  # back: the next outage is worth a warning again
            self._down_until = 0.0
            _warned.difference_update(("store-down", "commit-down"))
        return out

    def _maybe_reconcile(self, now_s: float) -> None:
        if len(self._journal) and time.monotonic() >= self._down_until:
            with contextlib.suppress(BudgetStoreUnavailableError):
                self._reconcile(now_s, force=False)

    def reconcile(self, *, now: datetime | None = None) -> int:
        """Write journaled spend (recorded while the store was down) to the store. Returns the
        number of entries written; raises ``BudgetStoreUnavailableError`` if still down.
        Also tried automatically before store operations once ``retry_interval`` has passed."""
        return self._reconcile(_now(now).timestamp(), force=True)

    def _reconcile(self, now_s: float, *, force: bool) -> int:
        n = 0
        while True:
            entry = self._journal.first()
            if entry is None:
                break
            try:
                self._store_call(self._commit_entry, entry, now_s, force=force)
            except BudgetStoreUnavailableError:
                raise
            except Exception as exc:  # noqa: BLE001  # a refused value can never be replayed
                logger.error(
                    "tokenward budgets: journaled commit %s refused by the store (%s: %s); "
                    "dropped: %s",
                    entry.id,
                    type(exc).__name__,
                    exc,
                    entry.actuals,
                )
            self._journal.remove(entry)
            n += 1
        if n:
            logger.info("tokenward budgets: reconciled %d journaled commit(s) with the store", n)
        return n

    def _commit_entry(self, entry: JournalEntry, now_s: float) -> None:
        # applied=False: this commit had already reached the store before the outage
        items = [
            CommitItem(k, a, expires_at=entry.expires.get(k)) for k, a in entry.actuals.items()
        ]
        self.store.commit(entry.id, items, now_s)

    def enforcement_failed(self, exc: BaseException, run_id: str) -> None:
        """The one policy for a call whose budgets could not be checked (not a denial).

        ``fail_mode="closed"`` raises ``BudgetStoreUnavailableError`` (the call is denied before
        it is made); ``"open"`` logs it once per kind of error and returns (the call runs; its
        spend is committed, or journaled, when it ends).
        """
        if self.fail_mode == "closed":
            raise BudgetStoreUnavailableError(
                f"Budgets could not be checked ({type(exc).__name__}: {exc}); call denied because "
                f"fail_mode='closed'. Restore the budget store, or use "
                f"Budgets(..., fail_mode='open') to let calls through and reconcile spend later."
            ) from exc
        _warn_once(
            f"unenforced:{type(exc).__name__}",
            "tokenward budgets: could not check budgets (%s: %s); allowing run %s "
            "(fail_mode='open'), spend will be committed or journaled",
            type(exc).__name__,
            exc,
            run_id,
        )

    # -- the Accountant's API -----------------------------------------------------------------
    def reserve(
        self,
        run_id: str,
        dims: Mapping[str, Any] | None,
        cost_nanos: int | None,
        tokens: int,
        *,
        now: datetime | None = None,
        price_as: PriceAs | None = None,
        predicted: Quote | None = None,
    ) -> Reservation | None:
        """Hold ``cost_nanos`` / ``tokens`` on every budget that applies, all or nothing
        (``predicted``: what budgets with ``reserve="predicted"`` hold instead, the call
        priced with its predicted output).

        Returns the :class:`Reservation` to hand back to :meth:`commit` / :meth:`release`, or
        ``None`` when no budget applies. ``cost_nanos=None`` means the model has no known price:
        USD budgets follow their ``unpriced`` / ``price_as`` setting (``price_as(model)`` returns
        this call's amount priced as that model). Raises ``BudgetExceededError`` (naming the
        first hard budget that would be exceeded; ``UnpricedModelError`` for an unpriced model)
        or, with ``fail_mode="closed"``, ``BudgetStoreUnavailableError``."""
        if (cost_nanos is not None and not 0 <= cost_nanos < MAX_COUNT) or not (
            0 <= tokens < MAX_COUNT
        ):
            raise ConfigurationError("cost_nanos and tokens must be >= 0 and below 2**63.")
        now_s = time.time() if now is None else _now(now).timestamp()
        if dims is None:
            dims = {}
        applied = self._plan(dims, cost_nanos, tokens, now, now_s, price_as, deny_unpriced=True)
        if predicted is not None and self.predicts:
            applied = self._with_predicted(applied, dims, predicted, now, now_s, deny_unpriced=True)
        if not applied:
            return None
        stored = []
        items = []
        for a in applied:
            item = a.item
            if item is not None:
                stored.append(a)
                items.append(item)
            elif a.slot.hard_limit is not None and a.amount > a.slot.limit:
                # per-request windows: nothing stored, nothing shared
                raise self._denial(a, (0, 0), _at(now, now_s))
        reservation = Reservation(run_id, tuple(applied), now_s + self._ttl)
        if items:
            if self._journal.entries:
                self._maybe_reconcile(now_s)
            try:
                res = self._store_call(self.store.reserve, items, run_id, self._ttl, now_s)
            except BudgetStoreUnavailableError as exc:
                if self.fail_mode == "closed":
                    raise BudgetStoreUnavailableError(
                        f"Budget store unavailable ({exc}); call denied because fail_mode='closed'. "
                        f"Restore the store, or use Budgets(..., fail_mode='open') to let calls "
                        f"through and reconcile spend later."
                    ) from exc
                _warn_once(
                    "store-down",
                    "tokenward budgets: store unavailable (%s); allowing run %s "
                    "(fail_mode='open'), spend will be journaled and reconciled",
                    exc,
                    run_id,
                )
                reservation.degraded = True
            except Exception as exc:  # noqa: BLE001  # an answer that is not a decision
                self.enforcement_failed(exc, run_id)
            else:
                at = res.failed
                if res.ok:
                    for a, tot in zip(stored, res.totals):
                        a.before = tot
                        a.known = True
                    reservation.stored = True
                elif type(at) is not int or not 0 <= at < min(len(stored), len(res.totals)):
                    self.enforcement_failed(
                        BudgetStoreError(
                            f"{type(self.store).__name__}.reserve denied run {run_id} without "
                            f"naming the item that did not fit (ReserveResult.failed={at!r}); "
                            f"fix the store to return the index of the first item denied"
                        ),
                        run_id,
                    )
                else:
                    raise self._denial(stored[at], res.totals[at], _at(now, now_s))
        if self._housekeeping is not None and time.monotonic() >= self._next_housekeeping:
            self._next_housekeeping = time.monotonic() + self._housekeeping
            try:
                self._store_call(self.store.expire, now_s)
            except Exception:  # housekeeping must never fail a call
                logger.debug("tokenward budgets: housekeeping failed", exc_info=True)
        return reservation

    def commit(
        self,
        reservation: Reservation | None,
        cost_nanos: int | None,
        tokens: int,
        *,
        dims: Mapping[str, Any] | None = None,
        run_id: str | None = None,
        now: datetime | None = None,
        price_as: PriceAs | None = None,
    ) -> None:
        """Replace ``reservation`` by the actual spend and fire threshold alerts.

        Without a reservation (``None``: nothing was reserved, or it was never made), the spend
        is recorded on the budgets that apply to ``dims`` under ``run_id``. Committing a
        reservation twice does nothing. Never raises for an unreachable store: the spend is
        journaled. ``cost_nanos=None`` (unpriced): USD budgets count it only with ``price_as``."""
        now_s = time.time() if now is None else _now(now).timestamp()
        if reservation is not None:
            if reservation.done:
                return
            reservation.done = True
            applied = reservation.applied
            rid = reservation.id
            degraded = reservation.degraded
        else:
            if dims is None:
                logger.debug("tokenward budgets: commit without reservation nor dims ignored")
                return
            applied = tuple(self._plan(dims, cost_nanos, tokens, now, now_s, price_as))
            rid = run_id or uuid.uuid4().hex
            degraded = False
        if cost_nanos is not None and not 0 <= cost_nanos < MAX_COUNT:
            raise ConfigurationError("cost_nanos must be >= 0 and below 2**63.")
        items: list[CommitItem] = []
        counted: list[tuple[_Applied, CommitItem | None]] = []
        alerting = False  # whether an alert can fire (else the store's answer is enough)
        for a in applied:
            slot = a.slot
            if slot.budget.unit != "usd":
                amount = tokens
            elif cost_nanos is not None:
                amount = cost_nanos
            else:
                unpriced = self._unpriced(slot.budget, dims or {}, price_as, False)
                if unpriced is None:
                    continue
                amount = unpriced
            a.amount = amount
            it = a.item
            if it is None:
                counted.append((a, None))
                alerting = alerting or bool(slot.markers)
                continue
            marks: tuple[tuple[int, str], ...] = ()
            # thresholds the store records once spend reaches them; none when even spent +
            # reserved at reserve time plus this call stays below the next one
            if slot.markers and not (
                a.known and a.before[0] + a.before[1] + amount < slot.next_alert
            ):
                marks = self._marks(slot)
                alerting = alerting or bool(marks)
            ci = CommitItem(
                it.key,
                amount if amount <= MAX_AMOUNT else MAX_AMOUNT,
                it.read_keys,
                it.lock_key,
                it.expires_at,
                marks,
            )
            items.append(ci)
            counted.append((a, ci))
        result: CommitResult | None = None
        if items:
            if degraded or (self._down_until and self.degraded):
                self._journal_add(rid, items)
            else:
                if self._journal.entries:
                    self._maybe_reconcile(now_s)
                try:
                    result = self._store_call(self.store.commit, rid, items, now_s)
                except BudgetStoreUnavailableError as exc:
                    _warn_once(
                        "commit-down",
                        "tokenward budgets: store unavailable at commit of %s (%s); spend journaled",
                        rid,
                        exc,
                    )
                    self._journal_add(rid, items)
                except Exception as exc:  # noqa: BLE001  # a refused value would block the journal
                    logger.error(
                        "tokenward budgets: the store refused the commit of %s (%s: %s); "
                        "spend not counted: %s",
                        rid,
                        type(exc).__name__,
                        exc,
                        {it.key: it.amount for it in items},
                    )
                    counted = [(a, ci) for a, ci in counted if ci is None]
        elif reservation is not None and reservation.stored:
            self.release(reservation, now=_at(now, now_s), _force=True)
        if alerting or result is None:
            self._check_thresholds(counted, id(reservation), now, now_s, result)

    def _journal_add(self, rid: str, items: list[CommitItem]) -> None:
        # keyed by the run id: the store applies a replayed commit once, and replaying it also
        # drops the run's reservation if the store kept it; threshold marks are not replayed
        actuals: dict[str, int] = {}
        expires: dict[str, float | None] = {}
        for it in items:
            actuals[it.key] = actuals.get(it.key, 0) + it.amount
            expires[it.key] = it.expires_at
        self._journal.add(JournalEntry(rid, actuals, expires))

    def release(
        self, reservation: Reservation | None, *, now: datetime | None = None, _force: bool = False
    ) -> None:
        """Return ``reservation`` (the call failed or was cancelled): its hold ends now."""
        if reservation is None or (reservation.done and not _force):
            return
        reservation.done = True
        if reservation.degraded or not reservation.stored:
            return
        now_s = _now(now).timestamp()
        try:
            self._store_call(self.store.release, reservation.id, now_s)
        except Exception as exc:  # noqa: BLE001  # a release never raises into an error path
            logger.warning(
                "tokenward budgets: could not release %s (%s: %s); the reservation expires "
                "after its TTL",
                reservation.id,
                type(exc).__name__,
                exc,
            )

    def extend(self, reservation: Reservation | None, *, now: datetime | None = None) -> bool:
        """Keep ``reservation`` alive for another ``reservation_ttl`` (a long stream). Returns
        whether the store extended it."""
        if reservation is None or reservation.done or not reservation.stored:
            return False
        now_s = _now(now).timestamp()
        try:
            ok = bool(self._store_call(self.store.extend, reservation.id, self._ttl, now_s))
        except Exception as exc:  # noqa: BLE001  # keep-alive is best effort
            logger.debug("tokenward budgets: could not extend %s: %s", reservation.id, exc)
            return False
        if ok:
            reservation.expires_at = now_s + self._ttl
        return ok

    # -- status, errors, alerts ---------------------------------------------------------------
    def _statuses(self, a: _Applied, now_s: float) -> list[CounterStatus]:
        item = a.item
        assert item is not None
        return list(self._store_call(self.store.status, list(item.keys), now_s))

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

        def fmt(n: int) -> str:
            return f"${b.to_unit(n)}" if unit == "usd" else f"{n} tokens"

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

    def _marks(self, slot: _Slot) -> tuple[tuple[int, str], ...]:
        """``(amount, marker)`` of every threshold of ``slot`` not yet fired here: what the
        store records at commit once spend reaches the amount."""
        fired = self._fired
        return tuple((at, m) for _, at, m in slot.markers if m not in fired)

    def _check_thresholds(
        self,
        counted: list[tuple[_Applied, CommitItem | None]],
        call: int,
        now: datetime | None,
        now_s: float,
        result: CommitResult | None,
    ) -> None:
        """Fire the alerts this commit crossed. With the store's answer, its spend after the
        commit decides and a threshold fires first only where the store says it recorded the
        marker first; without one (journaled, degraded) the spend is estimated locally."""
        if result is not None and not result.applied:
            return  # the store had this commit already: its alerts went out then
        i = 0  # result.spent has one entry per committed item
        for a, item in counted:
            slot = a.slot
            if item is not None and result is not None:
                i += 1
                if item.marks:  # else the bound says no threshold can be crossed
                    offered = {marker for _, marker in item.marks}
                    spent = result.spent[i - 1]
                    self._alerts(a, slot, call, _at(now, now_s), spent, offered, result.fired)
            elif slot.markers and a.before[0] + a.amount >= slot.next_alert:
                # a request window, or an estimate
                spent = a.before[0] + a.amount
                self._alerts(a, slot, call, _at(now, now_s), spent, None, None)

    def _alerts(
        self,
        a: _Applied,
        slot: _Slot,
        call: int,
        now: datetime,
        spent: int,
        offered: set[str] | None,
        first_in_store: frozenset[str] | None,
    ) -> None:
        b = a.budget
        fired = self._fired
        for t, at, marker in slot.markers:
            if spent < at or marker in fired:
                continue
            if a.item is None:  # per-request window: this call is the whole window
                marker = f"{b.name}|{a.scope_key}|{slot.window_key}|{call}|{t}"
            if offered is not None and first_in_store is not None:
                if marker not in offered:
                    continue  # not offered to the store this time: the next commit will
                first = marker in first_in_store  # recorded once across every process
            else:
                first = marker not in fired
            if a.item is not None:
                fired.add(marker)
            if first:
                self._emit(
                    Alert(
                        budget=b.name,
                        scope_key=a.scope_key,
                        window=slot.window_key or b.window.kind,
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
        slot.update_next_alert(fired)
        if len(fired) > 100_000:
            fired.clear()
            for rule in self._rules:  # their next_alert bounds assumed the forgotten markers
                rule.slots.clear()

    def _emit(self, alert: Alert) -> None:
        for sink in self.alert_sinks:
            try:
                sink(alert)
            except Exception:  # an alert sink must never break the host app
                logger.exception("tokenward budgets: alert sink %r failed", sink)

    def status(
        self,
        budget: str,
        *,
        now: datetime | None = None,
        next_call: Quote | None = None,
        predicted: Quote | None = None,
        **dims: Any,
    ) -> BudgetStatus:
        """Spent, reserved, remaining, utilisation, reset time, near-limit flag, pacing and a
        forecast of remaining calls for ``budget`` and the scope the given dimensions select
        (e.g. ``budgets.status("per-user", user_id="u1")``).

        ``next_call`` (and ``predicted``) are what the next call would reserve, as
        :meth:`reserve` takes them: the forecast then agrees with enforcement (its last call
        is admitted, the one after it denied, while calls keep the window's average).
        :meth:`Accountant.status <tokenward.Accountant.status>` computes them."""
        try:
            b = self._budgets[budget]
        except KeyError:
            raise ConfigurationError(
                f"No budget named {budget!r}; known: {sorted(self._budgets)}."
            ) from None
        now_dt = _now(now)
        now_s = now_dt.timestamp()
        shape = next_call or Quote(0, 0)
        planned = self._plan(dims, shape.cost_nanos, shape.tokens, now_dt, now_s, shape.price_as)
        if predicted is not None:
            planned = self._with_predicted(planned, dims, predicted, now_dt, now_s)
        applied = [a for a in planned if a.budget is b]
        if not applied:
            a = _Applied(_Slot(b, b.scope_key(dims), [], now_dt.timestamp()), 0, None)
        else:
            a = applied[0]
        statuses = self._statuses(a, now_dt.timestamp()) if a.item is not None else []
        spent = sum(s.spent for s in statuses)
        reserved = sum(s.reserved for s in statuses)
        calls = sum(s.calls for s in statuses)
        remaining = max(0, a.limit - spent - reserved)
        util = spent / a.limit if a.limit else (1.0 if spent else 0.0)
        from tokenward.predict._forecast import calls_left, pacing

        avg = spent // calls if calls else None
        reserve = a.amount if next_call is not None and applied else avg
        forecast = None
        if reserve is not None and (avg or reserve):
            # a window without spend yet: each call keeps what it reserves (the worst case)
            forecast = calls_left(remaining, reserve, avg if avg else reserve)
        near = bool(b.thresholds) and (spent + reserved) >= max(b.thresholds) * a.limit
        pace = None
        span = a.spans[-1] if a.spans and b.window.kind in ("day", "week", "month") else None
        if span is not None and span.start is not None and span.end is not None:
            pace = pacing(
                limit=a.limit,
                spent=spent,
                reserved=reserved,
                start=span.start,
                end=span.end,
                now=now_dt,
                to_unit=b.to_unit,
            )
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
            next_call_reserve=b.to_unit(reserve) if reserve is not None else None,
            pacing=pace,
        )

    def max_utilization(
        self, dims: Mapping[str, Any] | None, *, now: datetime | None = None
    ) -> float:
        """Highest (spent + reserved) / limit among the budgets that apply to ``dims`` (0.0 if
        none apply). Middleware uses it to degrade before a hard deny."""
        now_dt = _now(now)
        worst = 0.0
        applied = [
            a
            for a in self._plan(dims or {}, 0, 0, now_dt, now_dt.timestamp())
            if a.item is not None
        ]
        for a, used in zip(applied, self._used(applied, now_dt.timestamp())):
            worst = max(worst, used / a.limit if a.limit else (1.0 if used else 0.0))
        return worst

    def _used(self, applied: list[_Applied], now_s: float) -> list[int]:
        """spent + reserved of each applied budget, read from the store in one round trip."""
        keys = [k for a in applied if a.item is not None for k in a.item.keys]
        statuses = iter(self._store_call(self.store.status, keys, now_s) if keys else ())
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
        applied = [
            a
            for a in self._plan(dims or {}, 0, 0, now_dt, now_dt.timestamp())
            if a.budget.mode == "hard"
        ]
        for a, used in zip(applied, self._used(applied, now_dt.timestamp())):
            room = a.limit if a.item is None else max(0, a.limit - used)
            if a.budget.unit == "usd":
                usd = room if usd is None else min(usd, room)
            else:
                tok = room if tok is None else min(tok, room)
        return usd, tok

    def expire(self, *, now: datetime | None = None) -> int:
        """Delete expired reservations/counters in the store (optional housekeeping)."""
        return int(self._store_call(self.store.expire, _now(now).timestamp()))

    def close(self) -> None:
        """Reconcile journaled spend with the store, then close it (idempotent). Spend that still
        cannot be written stays in the journal file, replayed by the next process."""
        if self._closed:
            return
        self._closed = True
        if len(self._journal):
            try:
                self.reconcile()
            except BudgetStoreUnavailableError:
                logger.warning(
                    "tokenward budgets: %d journaled commit(s) could not be written at close; %s",
                    len(self._journal),
                    f"kept in {self._journal.path}"
                    if self._journal.path
                    else "lost (no journal_path)",
                )
        self._journal.close()
        self.store.close()
