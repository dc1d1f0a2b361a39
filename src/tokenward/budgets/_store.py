"""The budget store protocol, the values it exchanges, and the in-memory store.

A store keeps, per counter key, the committed ``spent`` amount and the number of committed
``calls``; and, per reservation, the amounts held on each key until the reservation expires.
Amounts are integers (nano-USD or tokens): stores never see money as floats.

One call of the protocol is one round trip to a shared store:

* ``reserve`` is all-or-nothing over several items. Each item writes to one key (the current
  bucket) but is checked against the SUM over its ``read_keys`` (all buckets of a rolling
  window; just the one key otherwise).
* ``commit`` replaces a reservation by the actual spend, returns the committed spend of each
  item after it, and records the threshold markers that spend reached (each one only once
  across every process). It is idempotent on the reservation id: a commit replayed within
  the store's ``commit_retention`` (a journal written during an outage) changes nothing.

The items and results are immutable ``NamedTuple`` records: ``Budgets`` builds one item per
budget per call, and a tuple costs a third of a frozen dataclass to build.

Expired reservations stop counting the moment their TTL passes (every store computes
"reserved" from live reservations only), so a crashed process can never leak budget;
``expire`` merely deletes the dead rows.

Stores defend themselves against hostile values: keys that are long or hold characters a
database cannot store are replaced by a bounded stand-in (:func:`store_key`); amounts outside
``0..MAX_AMOUNT`` raise :class:`~tokenward.errors.BudgetStoreError`, which concerns one call
only. :class:`~tokenward.errors.BudgetStoreUnavailableError` is raised for connectivity only.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import repeat
from typing import NamedTuple, Protocol, runtime_checkable

from tokenward.errors import BudgetStoreError

__all__ = [
    "MAX_AMOUNT",
    "MAX_LIMIT",
    "BudgetStore",
    "CommitItem",
    "CommitResult",
    "CounterStatus",
    "MemoryBudgetStore",
    "ReserveItem",
    "ReserveResult",
    "store_key",
]

MAX_AMOUNT = 2**53 - 1
"""Largest amount one reservation or commit may carry (about $9 million in nano-USD): every
store, Redis' Lua numbers included, adds it exactly."""

MAX_LIMIT = 2**63 - 1
"""Largest limit a store compares against (a 64-bit signed integer column)."""

DEFAULT_COMMIT_RETENTION = 3600.0
"""Seconds a store remembers a committed reservation id, so a replayed commit is applied once."""

_KEY_CHARS = 200  # longer keys are hashed: PostgreSQL's btree rows stop at ~2.7 kB
_KEY_HEAD = 48


def store_key(key: str) -> str:
    """``key`` itself when it is at most 200 printable characters; otherwise a stand-in of at
    most 81 characters: up to 48 printable characters of ``key``, ``\\x1f`` and 128 bits of its
    SHA-256. Stand-ins never collide with keys kept as they are (those never contain
    ``\\x1f``) and are valid UTF-8 without NUL, so every database can store them."""
    if len(key) <= _KEY_CHARS and key.isprintable():
        return key
    digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:32]
    head = "".join(c for c in key[:_KEY_HEAD] if c.isprintable())
    return f"{head}\x1f{digest}"


def check_amount(amount: object, what: str = "amount") -> int:
    """``amount`` if it is an int in ``0..MAX_AMOUNT``; else :class:`BudgetStoreError`."""
    if type(amount) is not int or not 0 <= amount <= MAX_AMOUNT:
        raise BudgetStoreError(
            f"budget {what} {amount!r} is not an integer in 0..{MAX_AMOUNT}; pass integer "
            f"nano-USD or tokens below that bound."
        )
    return amount


def check_limit(limit: object) -> int | None:
    """``limit`` if it is ``None`` or an int in ``0..MAX_LIMIT``; else :class:`BudgetStoreError`."""
    if limit is not None and (type(limit) is not int or not 0 <= limit <= MAX_LIMIT):
        raise BudgetStoreError(
            f"budget limit {limit!r} is not an integer in 0..{MAX_LIMIT}; lower the limit."
        )
    return limit


class ReserveItem(NamedTuple):
    """One budget's share of a reservation.

    ``key`` receives the amount; ``read_keys`` (which include ``key``) are summed and checked
    against ``limit`` (``None`` = record only, never deny). ``lock_key`` serialises concurrent
    reservations and commits on the same budget+scope (rolling windows: one lock for all
    their buckets). ``expires_at`` (epoch seconds or ``None``) is when the counter may be
    deleted.
    """

    key: str
    amount: int
    limit: int | None
    read_keys: tuple[str, ...] = ()
    lock_key: str = ""
    expires_at: float | None = None

    @property
    def keys(self) -> tuple[str, ...]:
        return self.read_keys or (self.key,)

    @property
    def lock(self) -> str:
        return self.lock_key or self.key


class CommitItem(NamedTuple):
    """One budget's share of a commit: ``amount`` is added to ``key``'s spend.

    ``read_keys``, ``lock_key`` and ``expires_at`` mean what they mean in :class:`ReserveItem`
    (the store reports the spend summed over ``read_keys``). ``marks`` are
    ``(at, marker)`` pairs: once the item's summed spend is ``>= at``, the store records
    ``marker`` (expiring with the counter) and reports it in :attr:`CommitResult.fired` to
    the one commit, across all processes, that recorded it first.
    """

    key: str
    amount: int
    read_keys: tuple[str, ...] = ()
    lock_key: str = ""
    expires_at: float | None = None
    marks: tuple[tuple[int, str], ...] = ()

    @property
    def keys(self) -> tuple[str, ...]:
        return self.read_keys or (self.key,)

    @property
    def lock(self) -> str:
        return self.lock_key or self.key


@dataclass(frozen=True)
class CounterStatus:
    """Committed ``spent``, live ``reserved`` and committed ``calls`` of one counter key."""

    spent: int = 0
    reserved: int = 0
    calls: int = 0


class ReserveResult(NamedTuple):
    """``ok`` and, per item, the summed ``(spent, reserved)`` over its read keys BEFORE this
    reservation (the id's own earlier reservation excluded). When denied, ``failed`` is the
    index of the first item that did not fit and ``totals`` stops at it."""

    ok: bool
    totals: tuple[tuple[int, int], ...] = ()
    failed: int | None = None


class CommitResult(NamedTuple):
    """``applied`` is False when this reservation id was already committed (nothing changed,
    ``spent`` and ``fired`` are empty). Otherwise ``spent`` holds, per item, the committed
    spend summed over its read keys after this commit, and ``fired`` the markers this commit
    recorded first."""

    applied: bool
    spent: tuple[int, ...] = ()
    fired: frozenset[str] = frozenset()


@runtime_checkable
class BudgetStore(Protocol):
    """Where budget counters live. ``tokenward.testing.BudgetStoreConformance`` checks an
    implementation against this contract."""

    def reserve(
        self, items: Sequence[ReserveItem], reservation_id: str, ttl: float, now: float
    ) -> ReserveResult:
        """Hold ``amount`` on every item's key until ``now + ttl``, or nothing if any item
        would exceed its limit; atomic across every process sharing the store. A live
        reservation with the same id is replaced on success (kept on denial), and the id may
        be committed again."""
        ...

    def commit(self, reservation_id: str, items: Sequence[CommitItem], now: float) -> CommitResult:
        """Drop the reservation (if still alive) and add each item's amount to its key's spend,
        one call per key; record the markers reached. Spend is recorded even when the
        reservation has expired. A second commit of the same id within the store's
        ``commit_retention`` changes nothing and returns ``applied=False``."""
        ...

    def release(self, reservation_id: str, now: float) -> None:
        """Drop the reservation without recording spend (idempotent)."""
        ...

    def extend(self, reservation_id: str, ttl: float, now: float) -> bool:
        """Keep a live reservation until ``now + ttl`` (a long stream). False if it is no
        longer alive (expired, committed or released): nothing is held then."""
        ...

    def status(self, keys: Sequence[str], now: float) -> list[CounterStatus]:
        """Per key: spent, live reserved and calls."""
        ...

    def expire(self, now: float) -> int:
        """Delete expired reservations, counters, markers and remembered commit ids; returns
        the number removed."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


_Held = tuple[float, tuple[ReserveItem, ...]]
"""A live reservation: when it expires and the items it holds."""

_SWEEP_INTERVAL = 60.0
_WINDOWS = 10_000  # running totals kept at most (a cache: forgetting one costs one re-sum)
_NOTHING: dict[str, int] = {}  # never written to


class _Window:
    """The running totals of one rolling window: committed ``spent`` and live ``reserved``
    summed over its bucket ``keys``, kept up to date by every write to one of them, so a
    reserve or commit reads two numbers instead of summing every bucket."""

    __slots__ = ("keys", "reserved", "spent")

    def __init__(self, keys: tuple[str, ...], spent: int, reserved: int) -> None:
        self.keys = keys
        self.spent = spent
        self.reserved = reserved


class MemoryBudgetStore:
    """In-process store guarded by one ``threading.Lock``. Per process only: use SQLite,
    Postgres or Redis to share budgets between processes or machines.

    A call does no housekeeping until something can have expired: the store keeps the
    earliest instant a live reservation can expire (live reservations are the calls in
    flight, so scanning them is cheap) and sweeps old counters, markers and remembered
    commit ids once a minute. A rolling window's buckets are summed once per bucket: the
    store keeps their running totals per lock key (see :class:`_Window`) until the window
    moves on.

    Args:
        commit_retention: seconds a committed reservation id is remembered (replayed commits
            within it are applied once).
    """

    def __init__(self, *, commit_retention: float = DEFAULT_COMMIT_RETENTION) -> None:
        self.commit_retention = commit_retention
        self._lock = threading.Lock()
        self._spent: dict[str, int] = {}
        self._calls: dict[str, int] = {}
        self._counter_expiry: dict[str, float] = {}
        self._reserved: dict[str, int] = {}
        self._res: dict[str, _Held] = {}
        self._markers: dict[str, float | None] = {}
        # committed id -> remembered until, in the order they were committed (a dict keeps
        # insertion order: the sweep forgets from the front, no second log to keep)
        self._done: dict[str, float] = {}
        self._next_sweep = 0.0
        self._due = 0.0  # no reservation expires and no sweep is due before this
        self._windows: dict[str, _Window] = {}  # lock key -> its window's running totals
        # counter key -> the window summing it; a tuple in the rare case of several (or of
        # a window naming the key more than once: it appears once per time)
        self._member: dict[str, _Window | tuple[_Window, ...]] = {}

    @classmethod
    def from_url(cls, url: str, **options: float) -> MemoryBudgetStore:
        """``memory://`` (nothing else in the URL)."""
        return cls(**options)

    # all methods below hold self._lock
    def _sweep(self, now: float) -> int:
        dead = [rid for rid, (expires_at, _) in self._res.items() if expires_at <= now]
        for rid in dead:
            self._drop(rid)
        n = len(dead)
        if now >= self._next_sweep:
            self._next_sweep = now + _SWEEP_INTERVAL
            done = self._done
            forgotten = []
            for rid, until in done.items():
                if until > now:
                    break
                forgotten.append(rid)
            for rid in forgotten:
                del done[rid]
            n += len(forgotten)
            expired = [k for k, e in self._counter_expiry.items() if e <= now]
            for k in expired:
                self._spent.pop(k, None)
                self._calls.pop(k, None)
                self._counter_expiry.pop(k, None)
            if expired:  # the running totals summed them: summed again on next use
                self._windows.clear()
                self._member.clear()
            n += len(expired)
            for m in [m for m, e in self._markers.items() if e is not None and e <= now]:
                del self._markers[m]
                n += 1
        due = self._next_sweep
        for expires_at, _ in self._res.values():
            if expires_at < due:
                due = expires_at
        self._due = due
        return n

    def _window(self, lock: str, keys: tuple[str, ...]) -> _Window:
        """The running totals over ``keys`` kept under ``lock``: summed afresh when the
        window moved on (a new bucket) or the lock sums other keys."""
        w = self._windows.get(lock)
        if w is not None and (w.keys is keys or w.keys == keys):
            return w
        member = self._member
        if w is not None:
            for k in w.keys:
                held = member[k]
                if isinstance(held, _Window):  # w itself
                    del member[k]
                else:
                    rest = list(held)
                    rest.remove(w)
                    member[k] = rest[0] if len(rest) == 1 else tuple(rest)
        elif len(self._windows) >= _WINDOWS:
            self._windows.clear()
            member.clear()
        spent, reserved = self._spent, self._reserved
        w = self._windows[lock] = _Window(
            keys, sum(map(spent.get, keys, repeat(0))), sum(map(reserved.get, keys, repeat(0)))
        )
        for k in keys:
            other = member.get(k)
            if other is None:
                member[k] = w
            else:
                member[k] = (other, w) if isinstance(other, _Window) else (*other, w)
        return w

    @staticmethod
    def _moved(m: _Window | tuple[_Window, ...], spent: int, reserved: int) -> None:
        """Add to the running totals of the window(s) ``m`` summing a key just written."""
        for w in (m,) if isinstance(m, _Window) else m:
            w.spent += spent
            w.reserved += reserved

    def _drop(self, rid: str) -> None:
        held = self._res.pop(rid, None)
        if held is None:
            return
        reserved, member = self._reserved, self._member
        for it in held[1]:
            k, amount = it.key, it.amount
            left = reserved.get(k, 0) - amount
            if left:
                reserved[k] = left
            else:  # (zero amounts: another reservation may have removed the key already)
                reserved.pop(k, None)
            m = member.get(k)
            if m is not None:
                self._moved(m, 0, -amount)

    def reserve(
        self, items: Sequence[ReserveItem], reservation_id: str, ttl: float, now: float
    ) -> ReserveResult:
        for it in items:
            check_amount(it.amount)
            check_limit(it.limit)
        with self._lock:
            if now >= self._due:
                self._sweep(now)
            own = self._res.get(reservation_id)
            mine = _NOTHING  # the id's own live reservation is replaced, not added to
            if own is not None and own[0] > now:
                mine = {}
                for it in own[1]:
                    mine[it.key] = mine.get(it.key, 0) + it.amount
            totals = []
            all_spent, all_reserved = self._spent, self._reserved
            for i, it in enumerate(items):
                keys = it.read_keys
                if keys:  # a rolling window: its buckets' running totals
                    w = self._window(it.lock_key or it.key, keys)
                    spent = w.spent
                    reserved = w.reserved
                    if mine:
                        reserved -= sum(map(mine.get, keys, repeat(0)))
                else:
                    spent = all_spent.get(it.key, 0)
                    reserved = all_reserved.get(it.key, 0) - mine.get(it.key, 0)
                totals.append((spent, reserved))
                if it.limit is not None and spent + reserved + it.amount > it.limit:
                    return ReserveResult(False, tuple(totals), i)
            if own is not None:
                self._drop(reservation_id)
            self._done.pop(reservation_id, None)
            member = self._member
            for it in items:
                k, amount = it.key, it.amount
                all_reserved[k] = all_reserved.get(k, 0) + amount
                m = member.get(k)
                if m is not None:
                    self._moved(m, 0, amount)
            expires_at = now + ttl
            self._res[reservation_id] = (expires_at, tuple(items))
            if expires_at < self._due:
                self._due = expires_at
            return ReserveResult(True, tuple(totals))

    def commit(self, reservation_id: str, items: Sequence[CommitItem], now: float) -> CommitResult:
        for it in items:
            check_amount(it.amount)
        with self._lock:
            done = self._done
            until = done.get(reservation_id)
            if until is not None:
                if until > now:
                    return CommitResult(False)
                del done[reservation_id]  # forgotten: remembered again, last in order
            done[reservation_id] = now + self.commit_retention
            self._drop(reservation_id)
            totals, calls, expiry, member = (
                self._spent,
                self._calls,
                self._counter_expiry,
                self._member,
            )
            for it in items:
                k, amount, e = it.key, it.amount, it.expires_at
                totals[k] = totals.get(k, 0) + amount
                calls[k] = calls.get(k, 0) + 1
                if e is not None and expiry.get(k, 0) < e:  # the latest window end wins
                    expiry[k] = e
                m = member.get(k)
                if m is not None:
                    self._moved(m, amount, 0)
            sums = []
            marked = False
            for it in items:
                keys = it.read_keys
                if keys:
                    sums.append(self._window(it.lock_key or it.key, keys).spent)
                else:
                    sums.append(totals[it.key])
                marked = marked or bool(it.marks)
            spent = tuple(sums)
            if not marked:
                return CommitResult(True, spent)
            fired = frozenset(
                marker
                for it, s in zip(items, spent)
                for at, marker in it.marks
                if s >= at and self._mark(marker, it.expires_at, now)
            )
            return CommitResult(True, spent, fired)

    def _mark(self, marker: str, expires_at: float | None, now: float) -> bool:
        if marker in self._markers:
            e = self._markers[marker]
            if e is None or e > now:
                return False
        self._markers[marker] = expires_at
        return True

    def release(self, reservation_id: str, now: float) -> None:
        with self._lock:
            self._drop(reservation_id)

    def extend(self, reservation_id: str, ttl: float, now: float) -> bool:
        with self._lock:
            held = self._res.get(reservation_id)
            if held is None or held[0] <= now:
                return False
            if now + ttl > held[0]:  # never earlier: the due bound still holds
                self._res[reservation_id] = (now + ttl, held[1])
            return True

    def status(self, keys: Sequence[str], now: float) -> list[CounterStatus]:
        with self._lock:
            if now >= self._due:
                self._sweep(now)
            return [
                CounterStatus(
                    self._spent.get(k, 0), self._reserved.get(k, 0), self._calls.get(k, 0)
                )
                for k in keys
            ]

    def expire(self, now: float) -> int:
        with self._lock:
            self._next_sweep = 0.0
            return self._sweep(now)

    def close(self) -> None:
        pass
