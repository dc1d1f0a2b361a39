"""The budget store protocol and the in-memory store.

A store keeps, per counter key, the committed ``spent`` amount and the number of committed
``calls``; and, per reservation, the amounts held on each key until ``expires_at``. Amounts
are integers (nano-USD or tokens): stores never see money as floats.

``reserve`` is all-or-nothing over several items. Each item writes to one key (the current
bucket) but is checked against the SUM over ``read_keys`` (all buckets of a rolling window;
just the one key otherwise). Expired reservations stop counting the moment their TTL passes
(every store computes "reserved" from live reservations only), so a crashed process can never
leak budget; ``expire`` merely deletes the dead rows.
"""

from __future__ import annotations

import heapq
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

__all__ = [
    "BudgetStore",
    "CounterStatus",
    "MemoryBudgetStore",
    "ReserveItem",
    "ReserveResult",
]


@dataclass(frozen=True)
class ReserveItem:
    """One budget's share of a reservation.

    ``key`` receives the amount; ``read_keys`` (which include ``key``) are summed and checked
    against ``limit`` (``None`` = record only, never deny). ``lock_key`` serialises concurrent
    reservations on the same budget+scope in stores that lock rows (Postgres).
    ``expires_at`` (epoch seconds or ``None``) is when the counter may be deleted.
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


@dataclass(frozen=True)
class CounterStatus:
    """Committed ``spent``, live ``reserved`` and committed ``calls`` of one counter key."""

    spent: int = 0
    reserved: int = 0
    calls: int = 0


@dataclass(frozen=True)
class ReserveResult:
    """``ok`` and, per item, the summed ``(spent, reserved)`` over its read keys BEFORE this
    reservation. When denied, ``failed`` is the index of the first item that did not fit."""

    ok: bool
    totals: tuple[tuple[int, int], ...] = ()
    failed: int | None = None


@runtime_checkable
class BudgetStore(Protocol):
    """Where budget counters live. Implementations must make ``reserve`` atomic across every
    process that shares the store."""

    def reserve(
        self, items: Sequence[ReserveItem], reservation_id: str, ttl: float, now: float
    ) -> ReserveResult:
        """Hold ``amount`` on every item's key, or nothing if any item would exceed its limit."""
        ...

    def commit(
        self,
        reservation_id: str,
        actuals: Mapping[str, int],
        now: float,
        expires: Mapping[str, float | None] | None = None,
    ) -> None:
        """Drop the reservation (if still alive) and add ``actuals`` (key -> amount) to spent,
        one call per key. Spend is recorded even when the reservation has expired."""
        ...

    def release(self, reservation_id: str, now: float) -> None:
        """Drop the reservation without recording spend."""
        ...

    def status(self, keys: Sequence[str], now: float) -> list[CounterStatus]:
        """Per key: spent, live reserved and calls."""
        ...

    def mark_once(self, marker: str, expires_at: float | None, now: float) -> bool:
        """Atomically record ``marker``; True only for the first caller (across processes)."""
        ...

    def expire(self, now: float) -> int:
        """Delete expired reservations, counters and markers; returns the number removed."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


@dataclass
class _Res:
    expires_at: float
    amounts: dict[str, int] = field(default_factory=dict)


class MemoryBudgetStore:
    """In-process store guarded by one ``threading.Lock``. Per process only: use SQLite,
    Postgres or Redis to share budgets between processes or machines."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._spent: dict[str, int] = {}
        self._calls: dict[str, int] = {}
        self._counter_expiry: dict[str, float] = {}
        self._reserved: dict[str, int] = {}
        self._res: dict[str, _Res] = {}
        self._markers: dict[str, float | None] = {}
        self._heap: list[tuple[float, str]] = []
        self._next_sweep = 0.0

    # all methods below hold self._lock
    def _sweep(self, now: float) -> int:
        n = 0
        while self._heap and self._heap[0][0] <= now:
            exp, rid = heapq.heappop(self._heap)
            r = self._res.get(rid)
            if r is not None and r.expires_at == exp:
                self._drop(rid)
                n += 1
        if now >= self._next_sweep:
            self._next_sweep = now + 60
            for k in [k for k, e in self._counter_expiry.items() if e <= now]:
                self._spent.pop(k, None)
                self._calls.pop(k, None)
                self._counter_expiry.pop(k, None)
                n += 1
            for m in [m for m, e in self._markers.items() if e is not None and e <= now]:
                del self._markers[m]
                n += 1
        return n

    def _drop(self, rid: str) -> None:
        r = self._res.pop(rid, None)
        if r is None:
            return
        for k, a in r.amounts.items():
            left = self._reserved.get(k, 0) - a
            if left:
                self._reserved[k] = left
            else:
                self._reserved.pop(k, None)

    def reserve(
        self, items: Sequence[ReserveItem], reservation_id: str, ttl: float, now: float
    ) -> ReserveResult:
        with self._lock:
            self._sweep(now)
            totals = []
            for i, it in enumerate(items):
                if it.read_keys:
                    spent = sum(self._spent.get(k, 0) for k in it.read_keys)
                    reserved = sum(self._reserved.get(k, 0) for k in it.read_keys)
                else:  # one counter (calendar, conversation windows)
                    spent = self._spent.get(it.key, 0)
                    reserved = self._reserved.get(it.key, 0)
                totals.append((spent, reserved))
                if it.limit is not None and spent + reserved + it.amount > it.limit:
                    return ReserveResult(False, tuple(totals), i)
            self._drop(reservation_id)
            r = _Res(now + ttl)
            for it in items:
                r.amounts[it.key] = r.amounts.get(it.key, 0) + it.amount
                self._reserved[it.key] = self._reserved.get(it.key, 0) + it.amount
                if it.expires_at is not None:
                    self._counter_expiry[it.key] = max(
                        self._counter_expiry.get(it.key, 0), it.expires_at
                    )
            self._res[reservation_id] = r
            heapq.heappush(self._heap, (r.expires_at, reservation_id))
            return ReserveResult(True, tuple(totals))

    def commit(
        self,
        reservation_id: str,
        actuals: Mapping[str, int],
        now: float,
        expires: Mapping[str, float | None] | None = None,
    ) -> None:
        with self._lock:
            self._drop(reservation_id)
            for k, a in actuals.items():
                self._spent[k] = self._spent.get(k, 0) + a
                self._calls[k] = self._calls.get(k, 0) + 1
                e = (expires or {}).get(k)
                if e is not None:
                    self._counter_expiry[k] = max(self._counter_expiry.get(k, 0), e)

    def release(self, reservation_id: str, now: float) -> None:
        with self._lock:
            self._drop(reservation_id)

    def extend(self, reservation_id: str, ttl_seconds: float, now: float) -> bool:
        """Keep a live reservation for ``ttl_seconds`` from ``now``; False if it is gone."""
        with self._lock:
            self._sweep(now)
            r = self._res.get(reservation_id)
            if r is None:
                return False
            r.expires_at = now + ttl_seconds
            heapq.heappush(self._heap, (r.expires_at, reservation_id))
            return True

    def status(self, keys: Sequence[str], now: float) -> list[CounterStatus]:
        with self._lock:
            self._sweep(now)
            return [
                CounterStatus(
                    self._spent.get(k, 0), self._reserved.get(k, 0), self._calls.get(k, 0)
                )
                for k in keys
            ]

    def mark_once(self, marker: str, expires_at: float | None, now: float) -> bool:
        with self._lock:
            e = self._markers.get(marker, -1.0)
            if marker in self._markers and (e is None or e > now):
                return False
            self._markers[marker] = expires_at
            return True

    def expire(self, now: float) -> int:
        with self._lock:
            self._next_sweep = 0.0
            return self._sweep(now)

    def close(self) -> None:
        pass
