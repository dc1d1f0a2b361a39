"""Schema and query building shared by the SQLite and PostgreSQL stores.

Both stores keep two tables:

``tokenward_events``
    one row per event; timestamps are integer microseconds since the Unix epoch
    (UTC), cost integer nano-USD, tags and tool names JSON text.
``tokenward_daily``, ``tokenward_daily_agent``, ``tokenward_daily_user``, ``tokenward_monthly_user``
    daily rollups per (UTC day, model, provider, status, kind), the second also
    per agent, the third also per user_id, and a monthly twin of the per-user
    one (long ranges read whole months from it), with every total. They are updated
    in the same transaction as the insert, from exactly the rows that were
    inserted (duplicates skipped), so they are never stale: PostgreSQL upserts
    one row per group per batch (groups in key order, so concurrent writers
    cannot deadlock); SQLite, whose writer holds the whole database, sums a batch's
    groups in Python, or upserts each new row into its group directly when a batch
    barely folds (see ``_rollup``). ``NULL`` dimensions are
    stored as ``''`` there. Rows written to the events table by other means
    (e.g. a bulk load) need :meth:`rebuild_rollups`.

A query whose ``by``/``where`` dimensions all fit one rollup reads whole days
from the smallest such rollup and the partial days at either end of the range
from the events table; everything else (hourly buckets, conversation,
session, tags, user x agent) reads the events table (indexed on time, user
and conversation).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

from tokenward.ledger._base import (
    AGG_FIELDS,
    Bucket,
    Key,
    Metric,
    SummaryRow,
    WhereValue,
    check_bucket,
    check_by,
    check_min_input,
    check_range,
    check_where,
    merge_into,
    split_days,
    split_months,
    summary_rows,
    timeseries_rows,
    top_rows,
)
from tokenward.ledger._event import EVENT_COLUMNS, USAGE_FIELDS, UsageEvent, row_to_event

SCHEMA_VERSION = 2
EVENTS = "tokenward_events"
STAGE = "tokenward_stage"
VERSION_TABLE = "tokenward_schema_version"
DEAD_LETTERS = "tokenward_dead_letters"
STATE = "tokenward_state"
ROLLUP_STATE = "tokenward_rollup_state"
#: the last UTC day (days since 1970-01-01) whose events are all in the monthly rollups
MONTHLY_THROUGH = "monthly_through_day"

#: Daily rollup tables, smallest first: ``(table, dimensions)``. A query is answered
#: from the first table whose dimensions cover every ``by`` and ``where`` dimension.
ROLLUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("tokenward_daily", ("model", "provider", "status", "kind")),
    ("tokenward_daily_agent", ("agent", "model", "provider", "status", "kind")),
    ("tokenward_daily_user", ("user_id", "model", "provider", "status", "kind")),
)
#: Monthly twins of the daily rollups that grow large (one row per user per day):
#: long-range queries read whole months from them.
MONTHLY = {"tokenward_daily_user": "tokenward_monthly_user"}
#: Every rollup the write path maintains: ``(table, dimensions, period)``.
WRITE_ROLLUPS: tuple[tuple[str, tuple[str, ...], str], ...] = (
    *((t, dims, "day") for t, dims in ROLLUPS),
    *((MONTHLY[t], dims, "month") for t, dims in ROLLUPS if t in MONTHLY),
)
ROLLUP_TABLES = tuple(t for t, _, _ in WRITE_ROLLUPS)
DAILY = ROLLUP_TABLES[0]

_DAY_US = 86_400_000_000
_HOUR_US = 3_600_000_000

_SUM_FIELDS = (
    "estimated",
    *USAGE_FIELDS,
    "tool_calls",
)
#: Columns the rollups read from inserted rows.
ROLLUP_SOURCE_COLUMNS = tuple(
    dict.fromkeys(
        [
            "ts_us",
            *(d for _, dims in ROLLUPS for d in dims),
            *_SUM_FIELDS,
            "cost_nanos",
            "latency_ms",
        ]
    )
)


def ddl(dialect: str) -> list[str]:
    """CREATE statements (idempotent) of the current schema for "sqlite" or "postgresql"."""
    big = "INTEGER" if dialect == "sqlite" else "BIGINT"
    real = "REAL" if dialect == "sqlite" else "DOUBLE PRECISION"
    return [
        f"""CREATE TABLE IF NOT EXISTS {VERSION_TABLE} (
  version INTEGER PRIMARY KEY,
  applied_at TEXT NOT NULL,
  note TEXT
)""",
        _events_ddl(dialect),
        *_event_indexes(),
        *_side_tables(dialect),
        *(_rollup_ddl(table, dims, period, big, real) for table, dims, period in WRITE_ROLLUPS),
        _monthly_through_init(),
    ]


#: Events-table columns with a default, and that default (a column not listed defaults to
#: NULL). A row holding a column's default stores the same bytes whether the value is bound
#: or the column is left out of the INSERT (the SQLite writer leaves such columns out).
EVENT_DEFAULTS: dict[str, int | str] = {
    **dict.fromkeys(USAGE_FIELDS, 0),
    "usage_estimated": 0,
    "estimated": 0,
    "status": "ok",
    "kind": "chat",
    "tags": "{}",
    "tool_calls": 0,
    "tool_names": "[]",
}


def _events_ddl(dialect: str) -> str:
    big = "INTEGER" if dialect == "sqlite" else "BIGINT"
    real = "REAL" if dialect == "sqlite" else "DOUBLE PRECISION"

    def dflt(col: str) -> str:
        value = EVENT_DEFAULTS[col]
        return f"DEFAULT {value!r}" if isinstance(value, int) else f"DEFAULT '{value}'"

    usage_cols = ",\n  ".join(f"{f} {big} NOT NULL {dflt(f)}" for f in USAGE_FIELDS)
    return f"""CREATE TABLE IF NOT EXISTS {EVENTS} (
  id TEXT PRIMARY KEY,
  ts_us {big} NOT NULL,
  model TEXT NOT NULL,
  provider TEXT,
  {usage_cols},
  usage_estimated INTEGER NOT NULL {dflt("usage_estimated")},
  cost_nanos {big},
  estimated INTEGER NOT NULL {dflt("estimated")},
  status TEXT NOT NULL {dflt("status")},
  kind TEXT NOT NULL {dflt("kind")},
  user_id TEXT,
  conversation_id TEXT,
  session_id TEXT,
  agent TEXT,
  tags TEXT NOT NULL {dflt("tags")},
  tool_calls INTEGER NOT NULL {dflt("tool_calls")},
  tool_names TEXT NOT NULL {dflt("tool_names")},
  latency_ms {real},
  parent_id TEXT,
  error TEXT,
  prompt_text TEXT,
  output_text TEXT,
  price_source TEXT,
  provider_cost_nanos {big}
)"""


def _event_indexes() -> list[str]:
    return [
        f"CREATE INDEX IF NOT EXISTS {EVENTS}_ts ON {EVENTS} (ts_us)",
        f"CREATE INDEX IF NOT EXISTS {EVENTS}_user_ts ON {EVENTS} (user_id, ts_us)",
        f"CREATE INDEX IF NOT EXISTS {EVENTS}_conv_ts ON {EVENTS} (conversation_id, ts_us)",
    ]


def _side_tables(dialect: str) -> list[str]:
    """Tables added by schema version 2: dead letters and the state documents."""
    big = "INTEGER" if dialect == "sqlite" else "BIGINT"
    return [
        # events the database refused, with the reason; all text is ASCII (JSON-escaped),
        # so a value that poisoned the events table cannot poison this one
        f"""CREATE TABLE IF NOT EXISTS {DEAD_LETTERS} (
  at_us {big} NOT NULL,
  event_id TEXT NOT NULL,
  reason TEXT NOT NULL,
  event TEXT NOT NULL
)""",
        f"""CREATE TABLE IF NOT EXISTS {STATE} (
  namespace TEXT NOT NULL,
  key TEXT NOT NULL,
  value TEXT NOT NULL,
  updated_us {big} NOT NULL,
  PRIMARY KEY (namespace, key)
)""",
        f"""CREATE TABLE IF NOT EXISTS {ROLLUP_STATE} (
  name TEXT PRIMARY KEY,
  value {big} NOT NULL
)""",
    ]


def _monthly_through_init() -> str:
    """Every event already stored is in the monthly rollups (version 1 kept them whole)."""
    return (
        f"INSERT INTO {ROLLUP_STATE} (name, value) "
        f"SELECT '{MONTHLY_THROUGH}', coalesce(max(ts_us) / {_DAY_US}, -1) FROM {EVENTS} "
        f"WHERE NOT EXISTS (SELECT 1 FROM {ROLLUP_STATE} WHERE name = '{MONTHLY_THROUGH}')"
    )


def _rollup_ddl(table: str, dims: Sequence[str], period: str, big: str, real: str) -> str:
    key = (period, *dims)
    return f"""CREATE TABLE IF NOT EXISTS {table} (
  {period} {big} NOT NULL,
  {", ".join(f"{d} TEXT NOT NULL" for d in dims)},
  calls {big} NOT NULL DEFAULT 0,
  errors {big} NOT NULL DEFAULT 0,
  cancelled {big} NOT NULL DEFAULT 0,
  {", ".join(f"{f} {big} NOT NULL DEFAULT 0" for f in _SUM_FIELDS)},
  cost_nanos {big} NOT NULL DEFAULT 0,
  unpriced {big} NOT NULL DEFAULT 0,
  latency_sum {real} NOT NULL DEFAULT 0,
  latency_count {big} NOT NULL DEFAULT 0,
  PRIMARY KEY ({", ".join(key)})
)"""


def migrations(dialect: str) -> dict[int, list[str]]:
    """Statements that take a ledger from version N-1 to N: ``{N: [statements]}``.

    Version 2 (unpriced events and price provenance): ``cost_nanos`` becomes nullable
    (NULL = unpriced, never $0), ``price_source`` and ``provider_cost_nanos`` are added,
    every rollup gains ``unpriced`` (events before version 2 were all priced: 0), and
    the dead-letter, state and rollup-state tables are created (the monthly rollups of
    version 1 hold every event: ``monthly_through_day`` starts at the last event's day). SQLite cannot drop a NOT NULL
    constraint in place, so it rebuilds the events table (rows, rowids and indexes kept).
    """
    big = "INTEGER" if dialect == "sqlite" else "BIGINT"
    v1_columns = ", ".join(EVENT_COLUMNS[: EVENT_COLUMNS.index("price_source")])
    if dialect == "sqlite":
        events = [
            f"ALTER TABLE {EVENTS} RENAME TO {EVENTS}_v1",
            *(f"DROP INDEX IF EXISTS {EVENTS}_{name}" for name in ("ts", "user_ts", "conv_ts")),
            _events_ddl("sqlite"),
            f"INSERT INTO {EVENTS} (rowid, {v1_columns}) "
            f"SELECT rowid, {v1_columns} FROM {EVENTS}_v1 ORDER BY rowid",
            f"DROP TABLE {EVENTS}_v1",
            *_event_indexes(),
        ]
    else:
        events = [
            f"ALTER TABLE {EVENTS} ALTER COLUMN cost_nanos DROP NOT NULL",
            f"ALTER TABLE {EVENTS} ADD COLUMN IF NOT EXISTS price_source TEXT",
            f"ALTER TABLE {EVENTS} ADD COLUMN IF NOT EXISTS provider_cost_nanos {big}",
        ]
    rollups = [
        f"ALTER TABLE {table} ADD COLUMN unpriced {big} NOT NULL DEFAULT 0"
        for table in ROLLUP_TABLES
    ]
    return {2: [*events, *rollups, *_side_tables(dialect), _monthly_through_init()]}


def raw_agg_select() -> str:
    """Aggregates over event rows, in AGG_FIELDS order."""
    return ", ".join(
        [
            "COUNT(*)",
            "SUM(CASE WHEN status = 'error' THEN 1 ELSE 0 END)",
            "SUM(CASE WHEN status = 'cancelled' THEN 1 ELSE 0 END)",
            *(f"SUM({f})" for f in _SUM_FIELDS),
            "coalesce(SUM(cost_nanos), 0)",
            "SUM(CASE WHEN cost_nanos IS NULL THEN 1 ELSE 0 END)",
            "SUM(latency_ms)",
            "COUNT(latency_ms)",
        ]
    )


def rollup_agg_select() -> str:
    return ", ".join(f"SUM({f})" for f in AGG_FIELDS)


def month_expr(dialect: str, day: str = "ts_us / 86400000000") -> str:
    """SQL: the UTC calendar month of day number ``day`` (default: the day of ``ts_us``)
    as months since 1970-01 (integer math)."""
    if dialect == "sqlite":
        d = f"({day}) * 86400"
        return (
            f"(CAST(strftime('%Y', {d}, 'unixepoch') AS INTEGER) - 1970) * 12"
            f" + CAST(strftime('%m', {d}, 'unixepoch') AS INTEGER) - 1"
        )
    d = f"(DATE '1970-01-01' + CAST({day} AS integer))"
    # date_part (double precision, exact for whole years/months) rather than EXTRACT
    # (numeric since PostgreSQL 14, several times slower per row)
    return f"CAST((date_part('year', {d}) - 1970) * 12 + date_part('month', {d}) - 1 AS bigint)"


def rollup_upsert_sql(
    table: str, dims: Sequence[str], source: str, dialect: str, period: str = "day"
) -> str:
    """Add the rows of ``source`` (events-shaped) into rollup ``table``.

    Groups are inserted in key order, so concurrent writers lock rollup rows in
    the same order (no deadlocks in PostgreSQL).
    """
    key = (period, *dims)
    n = len(key)
    select = ", ".join(
        [
            "ts_us / 86400000000" if period == "day" else month_expr(dialect),
            *(d if d == "model" else f"coalesce({d}, '')" for d in dims),
            raw_agg_select().replace("SUM(latency_ms)", "coalesce(SUM(latency_ms), 0.0)"),
        ]
    )
    groups = ", ".join(str(i + 1) for i in range(n))
    qual = f"{table}." if dialect == "postgresql" else ""
    updates = ", ".join(f"{f} = {qual}{f} + excluded.{f}" for f in AGG_FIELDS)
    return (
        f"INSERT INTO {table} ({', '.join((*key, *AGG_FIELDS))}) "
        f"SELECT {select} FROM {source} WHERE true GROUP BY {groups} ORDER BY {groups} "
        f"ON CONFLICT ({', '.join(key)}) DO UPDATE SET {updates}"
    )


def derived_rollup_sql(
    table: str,
    dims: Sequence[str],
    period: str,
    source: str,
    source_dims: Sequence[str],
    dialect: str,
    where: str = "true",
) -> str:
    """Add the rows of rollup-shaped ``source`` (daily, ``source_dims`` a superset of
    ``dims``) matching ``where`` into rollup ``table``, regrouped: coarser dimensions
    and/or by month."""
    assert set(dims) <= set(source_dims)
    key = (period, *dims)
    n = len(key)
    select = ", ".join(
        [
            "day" if period == "day" else month_expr(dialect, "day"),
            *dims,
            *(f"SUM({f})" for f in AGG_FIELDS),
        ]
    )
    groups = ", ".join(str(i + 1) for i in range(n))
    qual = f"{table}." if dialect == "postgresql" else ""
    updates = ", ".join(f"{f} = {qual}{f} + excluded.{f}" for f in AGG_FIELDS)
    return (
        f"INSERT INTO {table} ({', '.join((*key, *AGG_FIELDS))}) "
        f"SELECT {select} FROM {source} WHERE {where} GROUP BY {groups} ORDER BY {groups} "
        f"ON CONFLICT ({', '.join(key)}) DO UPDATE SET {updates}"
    )


#: The daily rollup every other rollup can be regrouped from (its dimensions cover theirs).
_BASE_ROLLUP = "tokenward_daily_user"


def rebuild_rollup_sql(dialect: str) -> list[str]:
    """Statements that recompute every rollup table from the events table.

    Rollups whose dimensions are a subset of the per-user daily rollup (the model-level
    daily one and the monthly per-user one) are regrouped from it instead of scanning
    the events again: the same sums, from far fewer rows.
    """
    base_dims = dict((t, d) for t, d, _ in WRITE_ROLLUPS)[_BASE_ROLLUP]
    out = [f"DELETE FROM {table}" for table in ROLLUP_TABLES]
    derived = []
    for table, dims, period in WRITE_ROLLUPS:
        if table != _BASE_ROLLUP and set(dims) <= set(base_dims):
            derived.append(
                derived_rollup_sql(table, dims, period, _BASE_ROLLUP, base_dims, dialect)
            )
        else:
            out.append(rollup_upsert_sql(table, dims, EVENTS, dialect, period))
    return out + derived


class _SQLQueries:
    """Query methods shared by the SQL stores; subclasses provide the plumbing.

    Subclasses implement ``_fetch(sql, params) -> list[tuple]``, ``_tag_expr(param)``,
    ``_tag_param(key)`` and ``flush()``. ``use_rollups`` can be turned off to force every
    query onto the events table (used to cross-check the rollup).
    """

    use_rollups: bool = True
    _id_col: str = "id"  # PostgreSQL: 'id COLLATE "C"' so ids sort by code point everywhere

    # -- plumbing supplied by subclasses ---------------------------------------------------
    def flush(self) -> None:
        raise NotImplementedError

    def _monthly_limit(self) -> int | None:
        """The first UTC day the monthly rollups may not hold yet (``None``: they hold
        every event, as PostgreSQL's, maintained with each insert)."""
        return None

    def _fetch(self, sql: str, params: Mapping[str, Any]) -> list[Sequence[Any]]:
        raise NotImplementedError

    def _tag_expr(self, param: str) -> str:
        raise NotImplementedError

    def _tag_param(self, key: str) -> str:
        raise NotImplementedError

    # -- SQL building -----------------------------------------------------------------------
    def _dim_expr(self, dim: str, params: dict[str, Any], rollup: bool) -> str:
        if dim.startswith("tag:"):
            name = f"t{len(params)}"
            params[name] = self._tag_param(dim[4:])
            return self._tag_expr(name)
        return f"NULLIF({dim}, '')" if rollup else dim

    def _where_sql(
        self,
        conds: Mapping[str, tuple[str | None, ...]],
        params: dict[str, Any],
        rollup: bool,
    ) -> list[str]:
        clauses = []
        for dim, values in conds.items():
            expr = dim if rollup else self._dim_expr(dim, params, rollup=False)
            present = [v for v in values if v is not None]
            parts = []
            if rollup and None in values:
                present.append("")
            elif None in values:
                parts.append(f"{expr} IS NULL")
            if present:
                names = []
                for v in present:
                    name = f"w{len(params)}"
                    params[name] = v
                    names.append(f":{name}")
                parts.append(f"{expr} IN ({', '.join(names)})")
            clauses.append("(" + " OR ".join(parts) + ")")
        return clauses

    def _grouped(
        self,
        dims: Sequence[str],
        conds: Mapping[str, tuple[str | None, ...]],
        lo: int | None,
        hi: int | None,
        unit: str | None,
    ) -> dict[Key, list[Any]]:
        """Aggregate vectors keyed by ``(unit?, *dims)``; unit is "hour" / "day" / None."""
        acc: dict[Key, list[Any]] = {}
        table = None
        if self.use_rollups and unit != "hour":
            needed = {*dims, *conds}
            table = next((t for t, tdims in ROLLUPS if needed <= set(tdims)), None)
        if table is not None:
            raws, days = split_days(lo, hi)
        else:
            raws, days = [(lo, hi)], None
        for rlo, rhi in raws:
            self._run_grouped(acc, dims, conds, unit, rlo, rhi, rollup=None)
        if days is not None and table is not None:
            day_ranges: list[tuple[int | None, int | None]] = [days]
            if unit is None and table in MONTHLY:
                first, end = days
                limit = self._monthly_limit()  # days < limit are in the monthly rollup
                cut = end if limit is None or (end is not None and end <= limit) else limit
                if first is not None and cut is not None and cut <= first:
                    cut = first  # nothing of this range is in the monthly rollup yet
                day_ranges, months = split_months(first, cut)
                if cut != end:
                    day_ranges.append((cut, end))
                if months is not None:
                    self._run_grouped(
                        acc,
                        dims,
                        conds,
                        unit,
                        months[0],
                        months[1],
                        rollup=MONTHLY[table],
                        period="month",
                    )
            for dlo, dhi in day_ranges:
                if dlo is None or dhi is None or dlo < dhi:
                    self._run_grouped(acc, dims, conds, unit, dlo, dhi, rollup=table)
        return acc

    def _run_grouped(
        self,
        acc: dict[Key, list[Any]],
        dims: Sequence[str],
        conds: Mapping[str, tuple[str | None, ...]],
        unit: str | None,
        lo: int | None,
        hi: int | None,
        *,
        rollup: str | None,
        period: str = "day",
    ) -> None:
        params: dict[str, Any] = {}
        select: list[str] = []
        if unit is not None:
            if rollup:
                select.append("day")
            else:
                select.append(f"ts_us / {_HOUR_US if unit == 'hour' else _DAY_US}")
        select.extend(self._dim_expr(d, params, rollup is not None) for d in dims)
        where = self._where_sql(conds, params, rollup is not None)
        tcol = period if rollup else "ts_us"
        if lo is not None:
            where.append(f"{tcol} >= :lo")
            params["lo"] = lo
        if hi is not None:
            where.append(f"{tcol} < :hi")
            params["hi"] = hi
        agg = rollup_agg_select() if rollup else raw_agg_select()
        sql = f"SELECT {', '.join([*select, agg])} FROM {rollup or EVENTS}"
        if where:
            sql += " WHERE " + " AND ".join(where)
        if select:
            sql += " GROUP BY " + ", ".join(str(i + 1) for i in range(len(select)))
        k = len(select)
        for row in self._fetch(sql, params):
            if not row[k]:
                continue
            merge_into(acc, tuple(row[:k]), row[k:])

    # -- public queries ---------------------------------------------------------------------
    def summary(
        self,
        since: datetime | None = None,
        until: datetime | None = None,
        by: Sequence[str] = (),
        where: Mapping[str, WhereValue] | None = None,
    ) -> list[SummaryRow]:
        dims = check_by(by)
        conds = check_where(where)
        lo, hi = check_range(since, until)
        self.flush()
        return summary_rows(dims, self._grouped(dims, conds, lo, hi, None))

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
        conds = check_where(where)
        lo, hi = check_range(since, until)
        self.flush()
        unit = "hour" if bucket == "hour" else "day"
        return timeseries_rows(dims, self._grouped(dims, conds, lo, hi, unit), bucket)

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

    def count(
        self,
        since: datetime | None = None,
        until: datetime | None = None,
        where: Mapping[str, WhereValue] | None = None,
    ) -> int:
        rows = self.summary(since, until, by=(), where=where)
        return rows[0].calls if rows else 0

    def events(
        self,
        since: datetime | None = None,
        until: datetime | None = None,
        where: Mapping[str, WhereValue] | None = None,
        limit: int | None = None,
    ) -> Iterator[UsageEvent]:
        conds = check_where(where)
        lo, hi = check_range(since, until)
        if limit is not None and (not isinstance(limit, int) or limit < 0):
            from tokenward.errors import ConfigurationError

            raise ConfigurationError(f"limit must be an int >= 0, got {limit!r}")
        self.flush()
        return self._iter_events(conds, lo, hi, limit)

    def events_with_input(
        self,
        min_input: int,
        since: datetime | None = None,
        until: datetime | None = None,
        where: Mapping[str, WhereValue] | None = None,
    ) -> Iterator[UsageEvent]:
        """The events of :meth:`events` with at least ``min_input`` input tokens, filtered
        in the database (what-if replay reads only the calls that can reach a price tier)."""
        min_input = check_min_input(min_input)
        conds = check_where(where)
        lo, hi = check_range(since, until)
        self.flush()
        if self._prefer_scan(since, until):
            return self._iter_events(
                conds, lo, hi, None, page=100_000, min_input=min_input, source=self._scan_source
            )
        return self._iter_events(conds, lo, hi, None, min_input=min_input)

    _scan_source = EVENTS  # the events table, read without its time index (SQLite)

    def _prefer_scan(self, since: datetime | None, until: datetime | None) -> bool:
        """Whether a filter the indexes do not cover (input tokens) reads ``[since, until)``
        faster by scanning the whole table than through the time index (``False``: the
        database's planner decides)."""
        return False

    def _iter_events(
        self,
        conds: Mapping[str, tuple[str | None, ...]],
        lo: int | None,
        hi: int | None,
        limit: int | None,
        page: int = 2000,
        min_input: int | None = None,
        source: str = EVENTS,
    ) -> Iterator[UsageEvent]:
        base_params: dict[str, Any] = {}
        where = self._where_sql(conds, base_params, rollup=False)
        if min_input is not None:
            where.append("input >= :min_input")
            base_params["min_input"] = min_input
        if lo is not None:
            where.append("ts_us >= :lo")
            base_params["lo"] = lo
        if hi is not None:
            where.append("ts_us < :hi")
            base_params["hi"] = hi
        cols = ", ".join(EVENT_COLUMNS)
        left = limit
        after: tuple[int, str] | None = None
        while left is None or left > 0:
            params = dict(base_params)
            clauses = list(where)
            if after is not None:
                clauses.append(
                    f"(ts_us > :after_ts OR (ts_us = :after_ts AND {self._id_col} > :after_id))"
                )
                params["after_ts"], params["after_id"] = after
            size = page if left is None else min(page, left)
            sql = f"SELECT {cols} FROM {source}"
            if clauses:
                sql += " WHERE " + " AND ".join(clauses)
            sql += f" ORDER BY ts_us, {self._id_col} LIMIT {int(size)}"
            rows = self._fetch(sql, params)
            for row in rows:
                yield row_to_event(row)
            if len(rows) < size:
                return
            if left is not None:
                left -= len(rows)
            last = rows[-1]
            after = (last[1], last[0])
