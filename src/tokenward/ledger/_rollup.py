"""How the SQLite writer adds a batch to the rollups, at the least cost per event.

Every daily rollup is added from Python: the batch's rows are grouped and summed (by the
finest rollups, the others regrouped from those sums) and each group is upserted once.
A group of one row costs more that way than letting SQLite add the row it just inserted
(:func:`rowwise_sql`, one upsert per row, no parameters to bind): so a rollup keyed by a
grouping of its own (no other rollup is regrouped from it) that barely folds in a batch
(fewer than ``_FOLD`` rows per group: a per-user rollup under many users) is added row by
row in SQL instead; the same rollup under a handful of users (a LangChain app serving one
user per process, a batch job) folds into a few upserts.

The monthly twin of the per-user rollup is not touched per event: once a UTC day is over,
the day's rows of the daily rollup are added to it in one statement
(``monthly_through_day`` in ``tokenward_rollup_state`` says how far it goes; queries read
later days from the daily rollup). An event for a day already added (a late or back-dated
event) is added to the monthly rollup with its batch.

Both ways give exactly :func:`~tokenward.ledger._sqlcommon.rebuild_rollup_sql`'s sums
(tests compare the tables after a rebuild).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from operator import itemgetter
from typing import Any

from tokenward.ledger._base import AGG_FIELDS
from tokenward.ledger._event import EVENT_COLUMNS, USAGE_FIELDS
from tokenward.ledger._sqlcommon import (
    EVENTS,
    MONTHLY,
    MONTHLY_THROUGH,
    ROLLUP_STATE,
    WRITE_ROLLUPS,
    derived_rollup_sql,
    month_expr,
)

__all__ = ["RollupPlan"]

#: Rollups with this dimension have a monthly twin compacted from the daily one at day end.
_PER_EVENT_DIMENSION = "user_id"
#: A rollup keyed by a grouping of its own is upserted from Python when a batch folds into
#: groups of at least this many rows on average, else row by row in SQL.
_FOLD = 4

_DAY_US = 86_400_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_COL = {name: i for i, name in enumerate(EVENT_COLUMNS)}
_TS, _STATUS, _COST, _LATENCY = (_COL[c] for c in ("ts_us", "status", "cost_nanos", "latency_ms"))
_ESTIMATED, _TOOL_CALLS = _COL["estimated"], _COL["tool_calls"]
_TOKENS = tuple(_COL[f] for f in USAGE_FIELDS)
_TS_OF = itemgetter(_TS)

Key = tuple[Any, ...]


@lru_cache(maxsize=4096)
def _month(day: int) -> int:
    """Months since 1970-01 of UTC day number ``day``."""
    d = _EPOCH + timedelta(days=day)
    return (d.year - 1970) * 12 + d.month - 1


#: the columns a rollup sums, in this order: status, estimated, tokens..., tool_calls,
#: cost_nanos, latency_ms
_VALUES = itemgetter(_STATUS, _ESTIMATED, *_TOKENS, _TOOL_CALLS, _COST, _LATENCY)
_N_TOKENS = len(_TOKENS)


def _sums(rows: Sequence[tuple[Any, ...]]) -> list[Any]:
    """The aggregate vector (AGG_FIELDS order) of event rows."""
    if len(rows) == 1:
        status, estimated, *counts, nanos, latency = _VALUES(rows[0])
        return [
            1,
            1 if status == "error" else 0,
            1 if status == "cancelled" else 0,
            estimated,
            *counts,
            nanos or 0,
            1 if nanos is None else 0,
            latency or 0.0,
            0 if latency is None else 1,
        ]
    statuses, estimated, *counts, costs, latencies = zip(*map(_VALUES, rows))
    priced = [c for c in costs if c is not None]
    timed = [x for x in latencies if x is not None]
    return [
        len(rows),
        statuses.count("error"),
        statuses.count("cancelled"),
        sum(estimated),
        *map(sum, counts),
        sum(priced),
        len(rows) - len(priced),
        float(sum(timed)),
        len(timed),
    ]


def _add(a: list[Any], b: Sequence[Any]) -> list[Any]:
    return [x + y for x, y in zip(a, b)]


class RollupPlan:
    """How to add a batch of event rows to every rollup of :data:`WRITE_ROLLUPS`."""

    def __init__(self) -> None:
        per_event = [
            (t, dims)
            for t, dims, period in WRITE_ROLLUPS
            if _PER_EVENT_DIMENSION in dims and period == "day"
        ]
        compacted = {MONTHLY[t] for t, _ in per_event if t in MONTHLY}
        grouped = [r for r in WRITE_ROLLUPS if r[0] not in compacted]
        #: add the rows of days already compacted (``ts_us < :late_before``) among those
        #: with ``rowid > :before`` (just inserted) to the compacted monthly rollups
        self.late = [
            rowwise_sql(MONTHLY[t], dims, "month", "ts_us < :late_before")
            for t, dims in per_event
            if t in MONTHLY
        ]
        #: add the days ``(:through, :upto]`` of a daily rollup to its monthly twin
        self.compact = [
            derived_rollup_sql(
                MONTHLY[t], dims, "month", t, dims, "sqlite", "day > :through AND day <= :upto"
            )
            for t, dims in per_event
            if t in MONTHLY
        ]
        self.read_through = f"SELECT value FROM {ROLLUP_STATE} WHERE name = '{MONTHLY_THROUGH}'"
        self.set_through = f"UPDATE {ROLLUP_STATE} SET value = ? WHERE name = '{MONTHLY_THROUGH}'"
        daily = [dims for _, dims, period in grouped if period == "day"]
        # bases: daily rollups whose dimensions no other one covers
        self.bases = [d for d in daily if not any(set(d) < set(other) for other in daily)]
        self._getters = [itemgetter(*(_COL[d] for d in dims)) for dims in self.bases]
        # each rollup is regrouped from the base with the fewest dimensions covering it
        self._plan: list[tuple[str, str, int, Callable[[Key], Key] | None]] = []
        for table, dims, period in grouped:
            _, base = min((len(b), i) for i, b in enumerate(self.bases) if set(dims) <= set(b))
            same = tuple(dims) == tuple(self.bases[base]) and period == "day"
            # base keys are (day, *base dims); rollup keys (day, *dims)
            regroup = (
                None if same else itemgetter(0, *(1 + self.bases[base].index(d) for d in dims))
            )
            self._plan.append((_upsert_sql(table, (period, *dims)), period, base, regroup))
        #: bases that only their own rollup reads: that rollup's row-by-row statement (for a
        #: batch that barely folds)
        self._rowwise: dict[int, str] = {}
        for i, dims in enumerate(self.bases):
            (table,) = [t for (t, d, p) in grouped if p == "day" and tuple(d) == tuple(dims)]
            if [base for _, _, base, _ in self._plan].count(i) == 1:
                self._rowwise[i] = rowwise_sql(table, dims, "day")

    def grouped(
        self, rows: Sequence[tuple[Any, ...]]
    ) -> tuple[list[tuple[str, list[tuple[Any, ...]]]], list[str]]:
        """``([(upsert_sql, parameter rows)], [rowwise_sql])``: the rollups' deltas of
        ``rows``, and the statements that add the rows with ``rowid > :before`` (the rows
        just inserted) to the rollups that barely fold in this batch."""
        base_sums: list[dict[Key, list[Any]] | None] = []
        rowwise: list[str] = []
        whole: list[Any] | None = None  # the sums of every row (shared, never modified)
        day = None
        if rows:
            first = min(map(_TS_OF, rows)) // _DAY_US
            if max(map(_TS_OF, rows)) // _DAY_US == first:
                day = first  # one UTC day (live traffic): group by the dimensions alone
        for i, getter in enumerate(self._getters):
            if day is not None:
                keys: list[Any] = list(map(getter, rows))
            else:  # keys (day, dims) nested, not unpacked: one small tuple per row
                keys = [(row[_TS] // _DAY_US, getter(row)) for row in rows]
            distinct = set(keys)
            if i in self._rowwise and len(distinct) * _FOLD > len(rows):
                rowwise.append(self._rowwise[i])
                base_sums.append(None)
                continue
            if len(distinct) == 1:  # the whole batch (one user, one model...): summed once
                whole = _sums(rows) if whole is None else whole
                vectors = dict.fromkeys(distinct, whole)
            else:
                groups: dict[Any, list[tuple[Any, ...]]] = {}
                get = groups.get
                for key, row in zip(keys, rows):
                    group = get(key)
                    if group is None:
                        groups[key] = [row]
                    else:
                        group.append(row)
                vectors = {key: _sums(g) for key, g in groups.items()}
            if day is not None:
                base_sums.append({(day, *dims): v for dims, v in vectors.items()})
            else:
                base_sums.append({(d, *dims): v for (d, dims), v in vectors.items()})
        out = []
        for sql, period, base, regroup in self._plan:
            sums = base_sums[base]
            if sums is None:
                continue
            if regroup is not None or period != "day":
                acc: dict[Key, list[Any]] = {}
                for key, vector in sums.items():
                    k = regroup(key) if regroup is not None else key
                    if period != "day":
                        k = (_month(k[0]), *k[1:])
                    cur = acc.get(k)
                    acc[k] = vector if cur is None else _add(cur, vector)
                sums = acc
            out.append((sql, [(*_blank(k), *v) for k, v in sums.items()]))
        return out, rowwise


def rowwise_sql(table: str, dims: Sequence[str], period: str, also: str = "true") -> str:
    """Add the event rows with ``rowid > :before`` (and ``also``) to rollup ``table``,
    one upsert per row."""
    key = (period, *dims)
    per_row = [
        "1",
        "CASE WHEN status = 'error' THEN 1 ELSE 0 END",
        "CASE WHEN status = 'cancelled' THEN 1 ELSE 0 END",
        "estimated",
        *USAGE_FIELDS,
        "tool_calls",
        "coalesce(cost_nanos, 0)",
        "CASE WHEN cost_nanos IS NULL THEN 1 ELSE 0 END",
        "coalesce(latency_ms, 0.0)",
        "CASE WHEN latency_ms IS NULL THEN 0 ELSE 1 END",
    ]
    select = ", ".join(
        [
            "ts_us / 86400000000" if period == "day" else month_expr("sqlite"),
            *(d if d == "model" else f"coalesce({d}, '')" for d in dims),
            *per_row,
        ]
    )
    updates = ", ".join(f"{f} = {f} + excluded.{f}" for f in AGG_FIELDS)
    return (
        f"INSERT INTO {table} ({', '.join((*key, *AGG_FIELDS))}) "
        f"SELECT {select} FROM {EVENTS} WHERE rowid > :before AND {also} "
        f"ON CONFLICT ({', '.join(key)}) DO UPDATE SET {updates}"
    )


def _blank(key: Key) -> Key:
    """Rollups store a missing dimension as ``''``."""
    return tuple("" if v is None else v for v in key) if None in key else key


def _upsert_sql(table: str, key: Sequence[str]) -> str:
    cols = (*key, *AGG_FIELDS)
    updates = ", ".join(f"{f} = {f} + excluded.{f}" for f in AGG_FIELDS)
    return (
        f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' for _ in cols)}) "
        f"ON CONFLICT ({', '.join(key)}) DO UPDATE SET {updates}"
    )
