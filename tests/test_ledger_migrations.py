"""Schema migrations: a ledger written by schema version 1 (built here with version 1's
own DDL) is migrated to the current schema on open, with every event and rollup kept."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from tokenward.errors import LedgerError
from tokenward.ledger import SQLiteLedger, SQLLedger, UsageEvent, open_ledger
from tokenward.ledger._event import EVENT_COLUMNS, event_to_row
from tokenward.ledger._sqlcommon import ROLLUP_TABLES, SCHEMA_VERSION, WRITE_ROLLUPS, month_expr
from tokenward.testing._ledger import QUERIES, T0, as_dict, dataset, ev, reference

# -- schema version 1, frozen as tokenward 0.1.0 created it ---------------------------------

_USAGE = (
    "input",
    "output",
    "cache_read",
    "cache_write_5m",
    "cache_write_1h",
    "reasoning",
    "audio_input",
    "audio_output",
    "image_input",
)
_V1_SUMS = ("estimated", *_USAGE, "tool_calls", "cost_nanos")
_V1_AGG = ("calls", "errors", "cancelled", *_V1_SUMS, "latency_sum", "latency_count")
_V1_COLUMNS = EVENT_COLUMNS[: EVENT_COLUMNS.index("price_source")]


def v1_ddl(dialect: str) -> list[str]:
    big = "INTEGER" if dialect == "sqlite" else "BIGINT"
    real = "REAL" if dialect == "sqlite" else "DOUBLE PRECISION"
    usage_cols = ",\n  ".join(f"{f} {big} NOT NULL DEFAULT 0" for f in _USAGE)
    stmts = [
        """CREATE TABLE IF NOT EXISTS tokenward_schema_version (
  version INTEGER PRIMARY KEY,
  applied_at TEXT NOT NULL,
  note TEXT
)""",
        f"""CREATE TABLE IF NOT EXISTS tokenward_events (
  id TEXT PRIMARY KEY,
  ts_us {big} NOT NULL,
  model TEXT NOT NULL,
  provider TEXT,
  {usage_cols},
  usage_estimated INTEGER NOT NULL DEFAULT 0,
  cost_nanos {big} NOT NULL,
  estimated INTEGER NOT NULL DEFAULT 0,
  status TEXT NOT NULL DEFAULT 'ok',
  kind TEXT NOT NULL DEFAULT 'chat',
  user_id TEXT,
  conversation_id TEXT,
  session_id TEXT,
  agent TEXT,
  tags TEXT NOT NULL DEFAULT '{{}}',
  tool_calls INTEGER NOT NULL DEFAULT 0,
  tool_names TEXT NOT NULL DEFAULT '[]',
  latency_ms {real},
  parent_id TEXT,
  error TEXT,
  prompt_text TEXT,
  output_text TEXT
)""",
        "CREATE INDEX IF NOT EXISTS tokenward_events_ts ON tokenward_events (ts_us)",
        "CREATE INDEX IF NOT EXISTS tokenward_events_user_ts ON tokenward_events (user_id, ts_us)",
        "CREATE INDEX IF NOT EXISTS tokenward_events_conv_ts "
        "ON tokenward_events (conversation_id, ts_us)",
    ]
    for table, dims, period in WRITE_ROLLUPS:
        key = (period, *dims)
        stmts.append(
            f"""CREATE TABLE IF NOT EXISTS {table} (
  {period} {big} NOT NULL,
  {", ".join(f"{d} TEXT NOT NULL" for d in dims)},
  calls {big} NOT NULL DEFAULT 0,
  errors {big} NOT NULL DEFAULT 0,
  cancelled {big} NOT NULL DEFAULT 0,
  {", ".join(f"{f} {big} NOT NULL DEFAULT 0" for f in _V1_SUMS)},
  latency_sum {real} NOT NULL DEFAULT 0,
  latency_count {big} NOT NULL DEFAULT 0,
  PRIMARY KEY ({", ".join(key)})
)"""
        )
    return stmts


def v1_rollup_fill(dialect: str) -> list[str]:
    """What version 1's writer kept in its rollups: totals of every event."""
    out = []
    for table, dims, period in WRITE_ROLLUPS:
        unit = "ts_us / 86400000000" if period == "day" else month_expr(dialect)
        select = ", ".join(
            [
                unit,
                *(d if d == "model" else f"coalesce({d}, '')" for d in dims),
                "COUNT(*)",
                "SUM(CASE WHEN status = 'error' THEN 1 ELSE 0 END)",
                "SUM(CASE WHEN status = 'cancelled' THEN 1 ELSE 0 END)",
                *(f"SUM({f})" for f in _V1_SUMS),
                "coalesce(SUM(latency_ms), 0.0)",
                "COUNT(latency_ms)",
            ]
        )
        groups = ", ".join(str(i + 1) for i in range(1 + len(dims)))
        out.append(
            f"INSERT INTO {table} ({', '.join((period, *dims, *_V1_AGG))}) "
            f"SELECT {select} FROM tokenward_events GROUP BY {groups}"
        )
    return out


def _v1_rows(events: Sequence[UsageEvent]) -> list[tuple[Any, ...]]:
    return [event_to_row(e)[: len(_V1_COLUMNS)] for e in events]


def _priced_dataset() -> list[UsageEvent]:
    return [e for e in dataset(300, seed=5, days=70) if e.cost is not None]  # v1 had no NULL


def _check_migrated(led: Any, events: list[UsageEvent]) -> None:
    assert led.schema_version() == SCHEMA_VERSION
    versions = [r[0] for r in led._fetch("SELECT version FROM tokenward_schema_version", {})]
    assert sorted(versions) == [1, 2]
    expected_events = sorted((e.stored() for e in events), key=lambda e: (e.timestamp, e.id))
    # version 1 stored no price_source: the migrated events have none
    assert list(led.events()) == [
        UsageEvent.from_dict({**e.to_dict(), "price_source": None}) for e in expected_events
    ]
    for q in QUERIES:
        expected = reference(
            events, q.get("since"), q.get("until"), q.get("by", ()), q.get("where")
        )
        for rollups in (True, False):
            led.use_rollups = rollups
            got = led.summary(
                q.get("since"), q.get("until"), by=q.get("by", ()), where=q.get("where")
            )
            assert as_dict(got, q.get("by", ())) == expected
    led.use_rollups = True
    migrated = {t: sorted(led._fetch(f"SELECT * FROM {t}", {})) for t in ROLLUP_TABLES}
    led.rebuild_rollups()  # the migrated rollups are exactly what the events give
    assert {t: sorted(led._fetch(f"SELECT * FROM {t}", {})) for t in ROLLUP_TABLES} == migrated
    # version 2 features work on the migrated ledger
    led.record_many([ev("unpriced", T0, cost=None, price_source=None), ev("priced", T0)])
    led.put_state("calibration", "m", {"ratio": 1.0})
    led.flush()
    (total,) = led.summary()
    assert total.unpriced_calls == 1 and total.calls == len(events) + 2
    assert led.get_state("calibration") == {"m": {"ratio": 1.0}}


def test_sqlite_ledger_of_schema_1_is_migrated_with_everything_kept(tmp_path: Path) -> None:
    """If this fails, opening a ledger written by tokenward 0.1.0 (schema 1) lost or
    changed events or rollups, or left it unable to store unpriced events."""
    path = tmp_path / "v1.db"
    events = _priced_dataset()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    for stmt in v1_ddl("sqlite"):
        conn.execute(stmt)
    conn.execute("INSERT INTO tokenward_schema_version VALUES (1, '2026-11-23', 'initial schema')")
    marks = ", ".join("?" for _ in _V1_COLUMNS)
    conn.executemany(
        f"INSERT INTO tokenward_events ({', '.join(_V1_COLUMNS)}) VALUES ({marks})",
        _v1_rows(events),
    )
    for stmt in v1_rollup_fill("sqlite"):
        conn.execute(stmt)
    rowids = conn.execute("SELECT rowid, id FROM tokenward_events ORDER BY rowid").fetchall()
    conn.close()
    before = path.read_bytes()
    with pytest.raises(LedgerError, match="open it once read-write") as info:
        open_ledger(path, read_only=True)  # a read-only open never migrates
    assert info.value.code == "ledger-schema-older" and path.read_bytes() == before

    led = SQLiteLedger(path)
    try:
        _check_migrated(led, events)
        after = led._fetch(
            "SELECT rowid, id FROM tokenward_events WHERE rowid <= :n", {"n": len(rowids)}
        )
        assert [tuple(r) for r in after] == rowids  # rows kept in place, rowids unchanged
        indexes = {
            r[0] for r in led._fetch("SELECT name FROM sqlite_master WHERE type = 'index'", {})
        }
        assert {
            "tokenward_events_ts",
            "tokenward_events_user_ts",
            "tokenward_events_conv_ts",
        } <= indexes
    finally:
        led.close()
    ro = open_ledger(path, read_only=True)
    assert ro.count() == len(events) + 2
    ro.close()


@pytest.mark.postgres
def test_postgres_ledger_of_schema_1_is_migrated_with_everything_kept(
    make_postgres_db: Callable[[], str], tmp_path: Path
) -> None:
    """If this fails, a PostgreSQL ledger of schema 1 lost or changed data on migration."""
    import psycopg

    url = make_postgres_db()
    events = _priced_dataset()
    with psycopg.connect(url) as conn:
        for stmt in v1_ddl("postgresql"):
            conn.execute(stmt)
        conn.execute(
            "INSERT INTO tokenward_schema_version VALUES (1, '2026-11-23', 'initial schema')"
        )
        marks = ", ".join("%s" for _ in _V1_COLUMNS)
        with conn.cursor() as cur:
            cur.executemany(
                f"INSERT INTO tokenward_events ({', '.join(_V1_COLUMNS)}) VALUES ({marks})",
                _v1_rows(events),
            )
        for stmt in v1_rollup_fill("postgresql"):
            conn.execute(stmt)
    with pytest.raises(LedgerError, match="open it once read-write"):
        SQLLedger(url, read_only=True)
    led = SQLLedger(url, dead_letter_path=tmp_path / "dead.jsonl")
    try:
        _check_migrated(led, events)
    finally:
        led.close()
