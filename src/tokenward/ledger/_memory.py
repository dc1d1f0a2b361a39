"""MemoryLedger: a thread-safe in-process ledger (tests, short scripts, the default sink)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

from tokenward.errors import LedgerError
from tokenward.ledger._base import (
    Bucket,
    Key,
    Metric,
    SummaryRow,
    WhereValue,
    check_bucket,
    check_by,
    check_min_input,
    check_range,
    check_state,
    check_where,
    event_agg,
    merge_into,
    summary_rows,
    timeseries_rows,
    top_rows,
)
from tokenward.ledger._event import UsageEvent, to_micros

__all__ = ["MemoryLedger"]

_DAY_US = 86_400_000_000
_HOUR_US = 3_600_000_000


def _dim_value(e: UsageEvent, dim: str) -> str | None:
    if dim.startswith("tag:"):
        return e.tags.get(dim[4:])
    return getattr(e, dim)  # type: ignore[no-any-return]


class MemoryLedger:
    """Keeps events in a dict, in memory only. Same query semantics as the SQL stores.

    Costs are rounded to whole nano-USD on record, exactly as the SQL stores do,
    so every store returns identical numbers.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._events: dict[str, tuple[int, UsageEvent]] = {}
        self._state: dict[str, dict[str, str]] = {}
        self._closed = False

    def __repr__(self) -> str:
        return f"MemoryLedger(events={len(self._events)})"

    # -- writing ---------------------------------------------------------------------

    def record(self, event: UsageEvent) -> None:
        if not isinstance(event, UsageEvent):
            raise TypeError(f"expected UsageEvent, got {type(event).__name__}")
        e = event.stored()
        with self._lock:
            if self._closed:
                raise LedgerError("this ledger is closed; open a new one to record events")
            if e.id not in self._events:
                self._events[e.id] = (to_micros(e.timestamp), e)

    def record_many(self, events: Iterable[UsageEvent]) -> None:
        staged = []
        for e in events:
            if not isinstance(e, UsageEvent):
                raise TypeError(f"expected UsageEvent, got {type(e).__name__}")
            staged.append(e.stored())
        with self._lock:
            if self._closed:
                raise LedgerError("this ledger is closed; open a new one to record events")
            for e in staged:
                if e.id not in self._events:
                    self._events[e.id] = (to_micros(e.timestamp), e)

    def flush(self) -> None:
        """Nothing to do: events are stored when recorded."""

    def put_state(self, namespace: str, key: str, value: Mapping[str, Any]) -> None:
        text = check_state(namespace, key, value)
        with self._lock:
            if self._closed:
                raise LedgerError("this ledger is closed; open a new one to store state")
            self._state.setdefault(namespace, {})[key] = text

    def get_state(self, namespace: str) -> dict[str, dict[str, Any]]:
        check_state(namespace, None)
        with self._lock:
            stored = dict(self._state.get(namespace, {}))
        return {key: json.loads(text) for key, text in stored.items()}

    def close(self) -> None:
        with self._lock:
            self._closed = True

    def __enter__(self) -> MemoryLedger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reading ---------------------------------------------------------------------

    def _select(self, since: Any, until: Any, where: Any) -> list[tuple[int, UsageEvent]]:
        lo, hi = check_range(since, until)
        conds = check_where(where)
        with self._lock:
            items = list(self._events.values())
        out = []
        for ts, e in items:
            if lo is not None and ts < lo:
                continue
            if hi is not None and ts >= hi:
                continue
            if any(_dim_value(e, d) not in vals for d, vals in conds.items()):
                continue
            out.append((ts, e))
        return out

    def events(
        self,
        since: datetime | None = None,
        until: datetime | None = None,
        where: Mapping[str, WhereValue] | None = None,
        limit: int | None = None,
    ) -> Iterator[UsageEvent]:
        selected = sorted(self._select(since, until, where), key=lambda te: (te[0], te[1].id))
        if limit is not None:
            selected = selected[:limit]
        return iter([e for _, e in selected])

    def events_with_input(
        self,
        min_input: int,
        since: datetime | None = None,
        until: datetime | None = None,
        where: Mapping[str, WhereValue] | None = None,
    ) -> Iterator[UsageEvent]:
        """The events of :meth:`events` with at least ``min_input`` input tokens."""
        min_input = check_min_input(min_input)
        selected = [
            te for te in self._select(since, until, where) if te[1].usage.input >= min_input
        ]
        selected.sort(key=lambda te: (te[0], te[1].id))
        return iter([e for _, e in selected])

    def count(
        self,
        since: datetime | None = None,
        until: datetime | None = None,
        where: Mapping[str, WhereValue] | None = None,
    ) -> int:
        return len(self._select(since, until, where))

    def summary(
        self,
        since: datetime | None = None,
        until: datetime | None = None,
        by: Sequence[str] = (),
        where: Mapping[str, WhereValue] | None = None,
    ) -> list[SummaryRow]:
        dims = check_by(by)
        acc: dict[Key, list[Any]] = {}
        for _, e in self._select(since, until, where):
            merge_into(acc, tuple(_dim_value(e, d) for d in dims), event_agg(e))
        return summary_rows(dims, acc)

    def timeseries(
        self,
        bucket: Bucket = "day",
        since: datetime | None = None,
        until: datetime | None = None,
        by: Sequence[str] = (),
        where: Mapping[str, WhereValue] | None = None,
    ) -> list[SummaryRow]:
        check_bucket(bucket)
        dims = check_by(by)
        unit = _HOUR_US if bucket == "hour" else _DAY_US
        acc: dict[Key, list[Any]] = {}
        for ts, e in self._select(since, until, where):
            merge_into(acc, (ts // unit, *(_dim_value(e, d) for d in dims)), event_agg(e))
        return timeseries_rows(dims, acc, bucket)

    def top(
        self,
        n: int,
        by: str,
        metric: Metric = "cost",
        since: datetime | None = None,
        until: datetime | None = None,
        where: Mapping[str, WhereValue] | None = None,
    ) -> list[SummaryRow]:
        return top_rows(self.summary(since, until, by=[by], where=where), n, metric)
