"""Ledger stores: one behaviour, three stores (memory, SQLite, PostgreSQL).

Every store test runs against every store; expected numbers come from a plain
Python reference computed over the same events, so the stores are checked
against each other *and* against an independent implementation.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

# server fixtures (postgres_url, make_postgres_db) come from tests/_servers.py via conftest.py
from tokenward.errors import ConfigurationError, LedgerError
from tokenward.ledger import (
    LedgerStore,
    MemoryLedger,
    SQLiteLedger,
    SQLLedger,
    SummaryRow,
    UsageEvent,
    open_ledger,
)
from tokenward.ledger._postgres import normalize_url
from tokenward.ledger._sqlcommon import ROLLUP_TABLES
from tokenward.usage import Usage

UTC = timezone.utc
T0 = datetime(2026, 11, 20, 0, 0, tzinfo=UTC)  # a Friday

STORES = ["memory", "sqlite", "sqlite-sync", "postgres", "postgres-sync"]


@pytest.fixture(params=STORES)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LedgerStore]:
    kind = request.param
    if kind == "memory":
        s: Any = MemoryLedger()
    elif kind.startswith("sqlite"):
        s = SQLiteLedger(tmp_path / "ledger.db", batch=kind == "sqlite")
    else:
        url = request.getfixturevalue("postgres_url")  # one database per module, emptied here
        s = SQLLedger(url, batch=kind == "postgres")
        with s._engine.begin() as conn:
            conn.exec_driver_sql(f"TRUNCATE tokenward_events, {', '.join(ROLLUP_TABLES)}")
    yield s
    s.close()


def ev(i: int | str, ts: datetime, **kw: Any) -> UsageEvent:
    usage = kw.pop("usage", Usage(input=100, output=20))
    cost = kw.pop("cost", Decimal("0.001"))
    model = kw.pop("model", "gpt-4o")
    provider = kw.pop("provider", "openai")
    return UsageEvent(
        id=str(i), timestamp=ts, model=model, provider=provider, usage=usage, cost=cost, **kw
    )


def dataset(n: int = 400, seed: int = 7, days: int = 10) -> list[UsageEvent]:
    """Deterministic, varied events over ``days`` days (several models, users, agents, tags)."""
    rnd = random.Random(seed)
    models = [("gpt-4o", "openai"), ("claude-sonnet-4", "anthropic"), ("gemini-2.5-pro", None)]
    out = []
    for i in range(n):
        model, provider = rnd.choice(models)
        inp = rnd.randint(0, 5000)
        cr = rnd.randint(0, inp // 2)
        cw5 = rnd.randint(0, (inp - cr) // 2)
        cw1 = rnd.choice([0, 0, rnd.randint(0, (inp - cr - cw5))])
        out_t = rnd.randint(0, 800)
        tags: dict[str, str] = {}
        if rnd.random() < 0.7:
            tags["team"] = rnd.choice(["search", "support"])
        if rnd.random() < 0.3:
            tags["env"] = "prod"
        out.append(
            UsageEvent(
                id=f"e{i:05d}",
                timestamp=T0 + timedelta(microseconds=rnd.randint(0, days * 86_400_000_000)),
                model=model,
                provider=provider,
                usage=Usage(
                    input=inp,
                    output=out_t,
                    cache_read=cr,
                    cache_write_5m=cw5,
                    cache_write_1h=cw1,
                    reasoning=rnd.randint(0, out_t),
                    estimated=rnd.random() < 0.1,
                ),
                cost=Decimal(rnd.randint(0, 50_000_000)).scaleb(-9),
                status=rnd.choices(["ok", "error", "cancelled"], [8, 1, 1])[0],
                kind=rnd.choice(["chat", "chat", "embedding"]),
                user_id=rnd.choice(["alice", "bob", "carol", None]),
                conversation_id=f"c{rnd.randint(0, 9)}",
                session_id=rnd.choice([None, "s1"]),
                agent=rnd.choice([None, "planner", "coder"]),
                tags=tags,
                tool_calls=rnd.randint(0, 3),
                tool_names=tuple(rnd.sample(["search", "calc", "sql"], rnd.randint(0, 2))),
                latency_ms=rnd.choice([None, rnd.randint(1, 4000) * 0.25]),
                parent_id=rnd.choice([None, "root"]),
            )
        )
    return out


# -- an independent reference implementation of the queries --------------------------------


def _dim(e: UsageEvent, d: str) -> str | None:
    return e.tags.get(d[4:]) if d.startswith("tag:") else getattr(e, d)


def _match(e: UsageEvent, since: Any, until: Any, where: dict[str, Any]) -> bool:
    if since is not None and e.timestamp < since:
        return False
    if until is not None and e.timestamp >= until:
        return False
    for d, v in where.items():
        accepted = list(v) if isinstance(v, list) else [v]
        if _dim(e, d) not in accepted:
            return False
    return True


def reference(events: list[UsageEvent], since=None, until=None, by=(), where=None) -> dict:
    groups: dict[tuple, dict[str, Any]] = {}
    for e in events:
        if not _match(e, since, until, where or {}):
            continue
        g = groups.setdefault(
            tuple(_dim(e, d) for d in by),
            {
                "calls": 0,
                "errors": 0,
                "cancelled": 0,
                "estimated": 0,
                "input": 0,
                "output": 0,
                "cache_read": 0,
                "cache_write_5m": 0,
                "cache_write_1h": 0,
                "reasoning": 0,
                "tool_calls": 0,
                "cost": Decimal(0),
                "latency_ms_total": 0.0,
                "latency_count": 0,
            },
        )
        g["calls"] += 1
        g["errors"] += e.status == "error"
        g["cancelled"] += e.status == "cancelled"
        g["estimated"] += e.estimated
        for f in ("input", "output", "cache_read", "cache_write_5m", "cache_write_1h", "reasoning"):
            g[f] += getattr(e.usage, f)
        g["tool_calls"] += e.tool_calls
        g["cost"] += e.cost
        if e.latency_ms is not None:
            g["latency_ms_total"] += e.latency_ms
            g["latency_count"] += 1
    return groups


def as_dict(rows: list[SummaryRow], by) -> dict:
    out = {}
    for r in rows:
        out[tuple(r.dims[d] for d in by)] = {
            k: getattr(r, k)
            for k in (
                "calls",
                "errors",
                "cancelled",
                "estimated",
                "input",
                "output",
                "cache_read",
                "cache_write_5m",
                "cache_write_1h",
                "reasoning",
                "tool_calls",
                "cost",
                "latency_ms_total",
                "latency_count",
            )
        }
    return out


QUERIES = [
    dict(),
    dict(by=["model"]),
    dict(by=["model", "user_id"]),
    dict(by=["provider", "agent", "status", "kind"]),
    dict(by=["conversation_id"]),
    dict(by=["session_id", "tag:team"]),
    dict(by=["tag:env"], where={"tag:team": "search"}),
    dict(by=["user_id"], where={"user_id": None}),
    dict(by=["user_id"], where={"user_id": ["alice", None]}),
    dict(by=["model"], where={"agent": "planner", "status": ["ok", "cancelled"]}),
    dict(by=["agent"], since=T0 + timedelta(days=2), until=T0 + timedelta(days=5)),
    dict(
        by=["agent"],
        since=T0 + timedelta(days=2, hours=5, microseconds=3),
        until=T0 + timedelta(days=7, hours=1),
    ),
    dict(
        by=["model"], since=T0 + timedelta(days=3, hours=1), until=T0 + timedelta(days=3, hours=20)
    ),
    dict(by=["user_id"], since=T0 + timedelta(days=4, hours=12)),
    dict(by=["user_id"], until=T0 + timedelta(days=4, hours=12)),
    dict(by=["provider"], where={"provider": None}),
    dict(where={"model": "no-such-model"}),
]


# -- queries ------------------------------------------------------------------------------------


@pytest.mark.parametrize("q", QUERIES, ids=[str(i) for i in range(len(QUERIES))])
def test_summary_matches_reference(store: LedgerStore, q: dict) -> None:
    """If this fails, a store aggregates, filters or splits time ranges differently."""
    events = dataset()
    store.record_many(events)
    by = q.get("by", ())
    got = store.summary(q.get("since"), q.get("until"), by=by, where=q.get("where"))
    expected = reference(events, q.get("since"), q.get("until"), by, q.get("where"))
    assert as_dict(got, by) == expected
    # most expensive first
    assert [r.cost for r in got] == sorted((r.cost for r in got), reverse=True)
    if expected:
        assert sum(r.calls for r in got) == store.count(
            q.get("since"), q.get("until"), where=q.get("where")
        )


def test_summary_exact_small_example(store: LedgerStore) -> None:
    store.record_many(
        [
            ev(
                1,
                T0,
                user_id="u1",
                usage=Usage(input=1000, output=200, cache_read=400),
                cost=Decimal("0.012345678"),
                latency_ms=100.0,
            ),
            ev(
                2,
                T0 + timedelta(hours=1),
                user_id="u1",
                status="error",
                usage=Usage(input=10, output=0),
                cost=Decimal("0"),
            ),
            ev(
                3,
                T0 + timedelta(hours=2),
                user_id="u2",
                model="claude-sonnet-4",
                provider="anthropic",
                usage=Usage(input=50, output=5, reasoning=3),
                cost=Decimal("0.5"),
                latency_ms=50.5,
            ),
        ]
    )
    rows = store.summary(by=["user_id"])
    assert [r["user_id"] for r in rows] == ["u2", "u1"]  # cost desc
    u1 = rows[1]
    assert (u1.calls, u1.errors, u1.input, u1.output, u1.cache_read, u1.tokens) == (
        2,
        1,
        1010,
        200,
        400,
        1210,
    )
    assert u1.cost == Decimal("0.012345678")
    assert u1.ok == 1
    assert u1.avg_latency_ms == 100.0
    assert rows[0].cost == Decimal("0.5") and rows[0].reasoning == 3
    (total,) = store.summary()
    assert total.calls == 3 and total.cost == Decimal("0.512345678") and total.dims == {}
    assert store.summary(where={"user_id": "nobody"}) == []


def test_timeseries_buckets_are_utc_and_iso_weeks(store: LedgerStore) -> None:
    """Hours/days/weeks (Monday start)/months are UTC; empty buckets are omitted."""
    sun = datetime(2026, 11, 29, 23, 59, 59, 999999, tzinfo=UTC)  # Sunday, last microsecond
    mon = datetime(2026, 11, 30, 0, 0, tzinfo=UTC)  # Monday
    dec = datetime(2026, 12, 1, 10, 30, tzinfo=timezone(timedelta(hours=5)))  # 05:30 UTC
    store.record_many(
        [
            ev("a", sun, cost=Decimal("1")),
            ev("b", mon, cost=Decimal("2")),
            ev("c", mon + timedelta(minutes=59), cost=Decimal("4")),
            ev("d", dec, cost=Decimal("8"), user_id="x"),
        ]
    )
    hours = store.timeseries("hour")
    assert [(r.bucket, r.calls, r.cost) for r in hours] == [
        (datetime(2026, 11, 29, 23, tzinfo=UTC), 1, Decimal(1)),
        (datetime(2026, 11, 30, 0, tzinfo=UTC), 2, Decimal(6)),
        (datetime(2026, 12, 1, 5, tzinfo=UTC), 1, Decimal(8)),
    ]
    days = store.timeseries("day")
    assert [(r.bucket.day, r.calls) for r in days] == [(29, 1), (30, 2), (1, 1)]
    weeks = store.timeseries("week")
    assert [(r.bucket, r.calls) for r in weeks] == [
        (datetime(2026, 11, 23, tzinfo=UTC), 1),
        (datetime(2026, 11, 30, tzinfo=UTC), 3),
    ]
    months = store.timeseries("month", by=["user_id"])
    assert [(r.bucket.month, r["user_id"], r.cost) for r in months] == [
        (11, None, Decimal(7)),
        (12, "x", Decimal(8)),
    ]
    assert all(r.bucket.tzinfo is not None for r in months)
    part = store.timeseries("day", since=mon + timedelta(minutes=30))
    assert [(r.bucket.day, r.calls) for r in part] == [(30, 1), (1, 1)]


@pytest.mark.parametrize("bucket", ["hour", "day", "week", "month"])
def test_timeseries_matches_reference(store: LedgerStore, bucket: str) -> None:
    events = dataset(300, seed=3)
    store.record_many(events)
    since, until = T0 + timedelta(days=1, hours=3), T0 + timedelta(days=8, hours=2)
    rows = store.timeseries(bucket, since, until, by=["model"])
    assert sum(r.calls for r in rows) == store.count(since, until)
    for r in rows:
        start = r.bucket
        assert start is not None
        if bucket == "hour":
            end = start + timedelta(hours=1)
        elif bucket == "day":
            end = start + timedelta(days=1)
        elif bucket == "week":
            assert start.weekday() == 0
            end = start + timedelta(days=7)
        else:
            assert start.day == 1
            end = start.replace(month=start.month % 12 + 1, year=start.year + (start.month == 12))
        exp = reference(events, max(start, since), min(end, until), ["model"])
        assert as_dict([r], ["model"]) == {(r["model"],): exp[(r["model"],)]}


def test_top_by_metric(store: LedgerStore) -> None:
    store.record_many(
        [
            ev(1, T0, user_id="a", cost=Decimal("3"), usage=Usage(input=1, output=1)),
            ev(2, T0, user_id="b", cost=Decimal("1.5"), usage=Usage(input=500, output=500)),
            ev(3, T0, user_id="b", cost=Decimal("1"), usage=Usage(input=1, output=1)),
            ev(4, T0, user_id="c", cost=Decimal("2"), usage=Usage(input=10, output=10)),
            ev(5, T0, user_id="c", cost=Decimal("0"), usage=Usage(input=1, output=1)),
            ev(6, T0, user_id="c", cost=Decimal("0"), usage=Usage(input=1, output=1)),
        ]
    )
    assert [r["user_id"] for r in store.top(2, "user_id")] == ["a", "b"]
    assert [r["user_id"] for r in store.top(5, "user_id", metric="tokens")] == ["b", "c", "a"]
    assert [r["user_id"] for r in store.top(1, "user_id", metric="calls")] == ["c"]
    assert store.top(0, "user_id") == []


def test_events_roundtrip_order_filters_and_limit(store: LedgerStore) -> None:
    e1 = ev(
        "z",
        T0 + timedelta(seconds=1),
        tags={"team": "x", "env": "dev"},
        tool_calls=2,
        tool_names=("search", "calc"),
        latency_ms=12.75,
        prompt="hi",
        output="hello",
        error=None,
        parent_id="p",
        session_id="s",
        usage=Usage(
            input=9,
            output=8,
            cache_read=1,
            cache_write_5m=2,
            cache_write_1h=3,
            reasoning=4,
            audio_input=1,
            audio_output=2,
            image_input=1,
        ),
        cost=Decimal("0.0000000015"),
    )  # stored half-even -> 0.000000002
    e2 = ev("a", T0 + timedelta(seconds=1), kind="embedding", estimated=True)
    e3 = ev("m", T0, status="cancelled", error="user hit stop", conversation_id="c")
    store.record_many([e1, e2, e3])
    got = list(store.events())
    assert [e.id for e in got] == ["m", "a", "z"]  # time, then id
    assert got == [e3.stored(), e2.stored(), e1.stored()]
    assert got[2].cost == Decimal("0.000000002") and got[2].tags == {"env": "dev", "team": "x"}
    assert got[2].timestamp.tzinfo is not None
    assert [e.id for e in store.events(limit=2)] == ["m", "a"]
    assert [e.id for e in store.events(where={"tag:team": "x"})] == ["z"]
    assert [e.id for e in store.events(since=T0 + timedelta(microseconds=1))] == ["a", "z"]
    assert list(store.events(until=T0)) == []


def test_events_pagination_past_page_size(store: LedgerStore) -> None:
    events = [ev(f"p{i:04d}", T0 + timedelta(seconds=i // 3)) for i in range(4500)]
    store.record_many(events)
    got = [e.id for e in store.events()]
    assert got == [e.id for e in events]
    assert [e.id for e in store.events(limit=2001)] == got[:2001]


def test_recording_is_idempotent_on_id(store: LedgerStore) -> None:
    first = ev("run-1", T0, cost=Decimal("1"))
    store.record(first)
    store.record(replace(first, cost=Decimal("99")))
    store.record_many([first, first, ev("run-2", T0)])
    assert store.count() == 2
    (total,) = store.summary()
    assert total.cost == Decimal("1.001") and total.calls == 2
    assert next(iter(store.events())).cost == Decimal("1")


def test_threads_record_concurrently_nothing_lost(store: LedgerStore) -> None:
    def work(t: int) -> None:
        for i in range(250):
            store.record(ev(f"t{t}-{i}", T0 + timedelta(seconds=i), cost=Decimal("0.000001")))
            if i % 50 == 0:  # duplicates from another thread's id space too
                store.record(
                    ev(f"t{(t + 1) % 8}-{i}", T0 + timedelta(seconds=i), cost=Decimal("0.000001"))
                )

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    store.flush()
    assert store.count() == 2000
    (total,) = store.summary()
    assert total.calls == 2000 and total.cost == Decimal("0.002")


def test_query_validation(store: LedgerStore) -> None:
    with pytest.raises(ConfigurationError, match="unknown dimension"):
        store.summary(by=["colour"])
    with pytest.raises(ConfigurationError, match="timezone-aware"):
        store.summary(since=datetime(2026, 1, 1))
    with pytest.raises(ConfigurationError, match="bucket"):
        store.timeseries("minute")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="metric"):
        store.top(3, "model", metric="latency")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="before since"):
        store.summary(since=T0, until=T0 - timedelta(days=1))
    with pytest.raises(ConfigurationError, match="empty list"):
        store.summary(where={"model": []})
    with pytest.raises(ConfigurationError):
        store.summary(by=["model; DROP TABLE tokenward_events"])


def test_closed_store_refuses_writes(store: LedgerStore) -> None:
    store.record(ev(1, T0))
    store.close()
    with pytest.raises(LedgerError, match="closed"):
        store.record(ev(2, T0))
    store.close()  # idempotent


# -- rollups -----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_rollup_answers_equal_raw_scan(kind: str, tmp_path: Path, request) -> None:
    """If this fails, the daily rollup drifted from the events it summarizes."""
    if kind == "sqlite":
        s: Any = SQLiteLedger(tmp_path / "r.db")
    else:
        s = SQLLedger(request.getfixturevalue("make_postgres_db")())
    try:
        events = dataset(600, seed=11, days=130)  # Nov 2026 .. Mar 2027: whole months inside
        s.record_many(events[:250])
        s.flush()
        s.record_many(events)  # half duplicates: must not be double counted in the rollup
        long_range = [
            dict(by=["user_id"]),
            dict(by=["user_id", "model"], where={"status": "ok"}),
            dict(
                by=["user_id"],
                since=T0 + timedelta(days=15, hours=3),
                until=T0 + timedelta(days=101, minutes=7),
            ),
            dict(
                by=["user_id"],
                since=datetime(2026, 12, 1, tzinfo=UTC),
                until=datetime(2027, 2, 1, tzinfo=UTC),
            ),
            dict(
                by=["model"],
                where={"user_id": [None, "bob"]},
                since=datetime(2026, 12, 31, 23, tzinfo=UTC),
            ),
        ]
        for q in QUERIES + long_range:
            expected = reference(
                events, q.get("since"), q.get("until"), q.get("by", ()), q.get("where")
            )
            s.use_rollups = True
            fast = s.summary(
                q.get("since"), q.get("until"), by=q.get("by", ()), where=q.get("where")
            )
            s.use_rollups = False
            slow = s.summary(
                q.get("since"), q.get("until"), by=q.get("by", ()), where=q.get("where")
            )
            assert as_dict(fast, q.get("by", ())) == as_dict(slow, q.get("by", ())) == expected
        s.use_rollups = True
        before = s.timeseries("week", by=["agent"])
        tables = {t: sorted(s._fetch(f"SELECT * FROM {t}", {})) for t in ROLLUP_TABLES}
        assert all(tables.values())
        s.rebuild_rollups()  # regroups some rollups from others: must give the same rows
        assert {t: sorted(s._fetch(f"SELECT * FROM {t}", {})) for t in ROLLUP_TABLES} == tables
        assert s.timeseries("week", by=["agent"]) == before
    finally:
        s.close()


# -- UsageEvent ------------------------------------------------------------------------------


def test_usage_event_validation_and_normalization() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        ev(1, datetime(2026, 1, 1))
    with pytest.raises(TypeError, match="never a float"):
        ev(1, T0, cost=0.5)
    with pytest.raises(ValueError, match="status"):
        ev(1, T0, status="failed")
    with pytest.raises(ValueError, match="id"):
        ev("", T0)
    plus2 = datetime(2026, 1, 1, 12, tzinfo=timezone(timedelta(hours=2)))
    e = ev(
        1,
        plus2,
        user_id="",
        tags={"b": "2", "a": "1"},
        tool_names=["x"],
        usage=Usage(input=1, estimated=True),
        cost="0.25",
    )
    assert e.timestamp == datetime(2026, 1, 1, 10, tzinfo=UTC) and e.timestamp.tzinfo is UTC
    assert e.user_id is None and list(e.tags) == ["a", "b"] and e.tool_names == ("x",)
    assert e.estimated is True and e.cost == Decimal("0.25") and e.cost_nanos == 250_000_000
    assert UsageEvent.from_dict(e.to_dict()) == e
    fresh = UsageEvent.create("gpt-4o", Usage(input=1), Decimal("0"))
    assert len(fresh.id) == 32 and fresh.timestamp.tzinfo is UTC


def _validated_row_to_event(r: tuple) -> UsageEvent:
    """The decoder as it was before the trusted fast path: every field through __post_init__."""
    import json

    from tokenward.ledger._event import from_micros, from_nanos

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


def test_trusted_row_decoder_equals_validating_constructor() -> None:
    from tokenward.ledger._event import event_to_row, row_to_event

    plus2 = timezone(timedelta(hours=2))
    events = [
        *dataset(300, seed=11),
        ev(
            "tz",
            datetime(2026, 1, 1, 12, tzinfo=plus2),
            user_id="",
            agent="",
            tags={"b": "2", "a": "1", "ü": 'é"q'},
            tool_names=["x", "y"],
            latency_ms=7,
            usage=Usage(input=1, estimated=True),
            cost="12.5000000009",
            error="boom",
            prompt="p",
            output="o",
            parent_id="root",
            session_id="s",
        ),
        ev("old", datetime(1969, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC), cost=Decimal("3")),
        ev("zero", T0, cost=Decimal("0E-12"), latency_ms=0.0, tool_calls=5),
    ]
    for e in events:
        row = event_to_row(e)
        fast, slow = row_to_event(row), _validated_row_to_event(row)
        assert fast == slow == e.stored()
        for name in UsageEvent.__dataclass_fields__:
            a, b = getattr(fast, name), getattr(slow, name)
            assert type(a) is type(b), name
            assert repr(a) == repr(b), name  # same Decimal exponent, same tag order
        assert fast.timestamp.tzinfo is UTC and str(fast.cost) == str(slow.cost)
        assert event_to_row(fast) == row  # a decoded event re-encodes to the same row
    # rows as PostgreSQL returns them (ints for REAL latency are possible in SQLite too)
    row = list(event_to_row(events[-3]))
    row[25] = 7  # latency_ms stored as an integer value
    assert row_to_event(tuple(row)).latency_ms == 7.0
    assert type(row_to_event(tuple(row)).latency_ms) is float


# -- SQLite specifics ---------------------------------------------------------------------------


def test_sqlite_batched_writes_visible_to_other_connections_after_flush(tmp_path: Path) -> None:
    path = tmp_path / "l.db"
    writer = SQLiteLedger(path, flush_interval=60)  # never flushes on its own within the test
    reader = SQLiteLedger(path, batch=False)
    writer.record_many([ev(i, T0) for i in range(10)])
    assert reader.count() == 0  # still queued in the writer
    writer.flush()
    assert reader.count() == 10
    writer.record(ev(99, T0))
    writer.close()  # close flushes
    assert reader.count() == 11
    reader.close()
    again = SQLiteLedger(path)
    assert again.count() == 11 and again.schema_version() == 1
    assert again._rconn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    again.close()


def test_sqlite_flushes_at_interpreter_exit(tmp_path: Path) -> None:
    path = tmp_path / "exit.db"
    code = (
        "from datetime import datetime, timezone\n"
        "from decimal import Decimal\n"
        "from tokenward.ledger import SQLiteLedger, UsageEvent\n"
        "from tokenward.usage import Usage\n"
        f"led = SQLiteLedger({str(path)!r}, flush_interval=60)\n"
        "led.record_many([UsageEvent(id=str(i), timestamp=datetime.now(timezone.utc), "
        "model='m', provider=None, usage=Usage(input=1), cost=Decimal(1)) for i in range(300)])\n"
        # no flush, no close: the atexit hook must write them
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    led = SQLiteLedger(path)
    assert led.count() == 300
    led.close()


def test_sqlite_failed_write_is_kept_and_retried(tmp_path: Path, monkeypatch) -> None:
    led = SQLiteLedger(tmp_path / "retry.db", flush_interval=0.01)
    real = led._write
    calls = {"n": 0}

    def flaky(events):
        calls["n"] += 1
        if calls["n"] == 1:
            raise LedgerError("disk on fire")
        real(events)

    monkeypatch.setattr(led._writer, "_write", flaky)
    led.record_many([ev(i, T0) for i in range(5)])
    with pytest.raises(LedgerError, match="disk on fire"):
        led.flush()
    led.flush()  # the retry succeeds; nothing was dropped
    assert led.count() == 5 and calls["n"] >= 2
    led.close()


def test_sqlite_refuses_newer_schema_without_touching_it(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    SQLiteLedger(path).close()
    import sqlite3

    with sqlite3.connect(path) as conn:
        conn.execute("INSERT INTO tokenward_schema_version VALUES (99, 'later', 'future')")
    before = path.read_bytes()
    with pytest.raises(LedgerError, match="schema version 99.*newer tokenward") as info:
        SQLiteLedger(path)
    assert info.value.code == "ledger-schema-newer"
    assert path.read_bytes() == before


@pytest.mark.parametrize(
    "content", [b"this is not a database" * 500, b"SQLite format 3\x00" + b"\xff" * 5000]
)
def test_sqlite_corrupted_file_gives_clear_error_and_keeps_data(
    tmp_path: Path, content: bytes
) -> None:
    path = tmp_path / "broken.db"
    path.write_bytes(content)
    with pytest.raises(LedgerError, match="not a readable tokenward SQLite database") as info:
        SQLiteLedger(path)
    assert "Move it aside" in str(info.value) and ".recover" in str(info.value)
    assert path.read_bytes() == content  # never deleted or rewritten


def test_sqlite_foreign_table_is_not_adopted(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "foreign.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE tokenward_events (x INTEGER)")
    with pytest.raises(LedgerError, match="not created by tokenward"):
        SQLiteLedger(path)


def test_sqlite_rejects_memory_path() -> None:
    with pytest.raises(ConfigurationError, match="MemoryLedger"):
        SQLiteLedger(":memory:")


# -- multiple processes ------------------------------------------------------------------------


def _mp_worker(target: str, worker: int, n: int, batch: bool) -> None:
    """Child process: records n own events plus 100 events every worker also records."""
    led = open_ledger(target, batch=batch)
    own = [
        ev(
            f"w{worker}-{i}",
            T0 + timedelta(seconds=i),
            user_id=f"u{worker}",
            cost=Decimal("0.000000001"),
        )
        for i in range(n)
    ]
    shared = [
        ev(
            f"shared-{i}",
            T0 + timedelta(hours=1, seconds=i),
            user_id="shared",
            cost=Decimal("0.000000001"),
        )
        for i in range(100)
    ]
    rnd = random.Random(worker)
    mixed = own + shared
    rnd.shuffle(mixed)
    for chunk in range(0, len(mixed), 37):
        led.record_many(mixed[chunk : chunk + 37])
    led.close()


def _run_workers(target: str, batch: bool, procs: int = 4, n: int = 500) -> None:
    ctx = multiprocessing.get_context("spawn")
    ps = [ctx.Process(target=_mp_worker, args=(target, w, n, batch)) for w in range(procs)]
    for p in ps:
        p.start()
    for p in ps:
        p.join(120)
    assert [p.exitcode for p in ps] == [0] * procs


def _check_exactly_once(led: Any, procs: int = 4, n: int = 500) -> None:
    assert led.count() == procs * n + 100
    by_user = {r["user_id"]: r.calls for r in led.summary(by=["user_id"])}
    assert by_user == {**{f"u{w}": n for w in range(procs)}, "shared": 100}
    led.use_rollups = False
    assert led.count() == procs * n + 100
    (total,) = led.summary()
    assert total.cost == Decimal(procs * n + 100).scaleb(-9)


@pytest.mark.slow
@pytest.mark.parametrize("batch", [True, False], ids=["batched", "sync"])
def test_sqlite_several_processes_exactly_once(tmp_path: Path, batch: bool) -> None:
    path = str(tmp_path / "mp.db")
    SQLiteLedger(path).close()  # create first, or let the children race to create it:
    _run_workers(path if batch else str(tmp_path / "mp2.db"), batch)
    led = SQLiteLedger(path if batch else tmp_path / "mp2.db")
    _check_exactly_once(led)
    led.close()


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.parametrize("batch", [True, False], ids=["batched", "sync"])
def test_postgres_several_processes_exactly_once(
    make_postgres_db: Callable[[], str], batch: bool
) -> None:
    url = make_postgres_db()  # schema not created yet: the children race to create it
    _run_workers(url, batch)
    led = SQLLedger(url)
    _check_exactly_once(led)
    led.close()


# -- PostgreSQL specifics ----------------------------------------------------------------------


@pytest.mark.postgres
def test_postgres_refuses_newer_schema(make_postgres_db: Callable[[], str]) -> None:
    url = make_postgres_db()
    led = SQLLedger(url)
    led.record(ev(1, T0))
    led.close()
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("INSERT INTO tokenward_schema_version VALUES (42, 'later', 'future')")
    with pytest.raises(LedgerError, match="schema version 42"):
        SQLLedger(url)
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT count(*) FROM tokenward_events").fetchone()[0] == 1


@pytest.mark.postgres
def test_postgres_indexes_and_version(make_postgres_db: Callable[[], str]) -> None:
    url = make_postgres_db()
    led = SQLLedger(url)
    assert led.schema_version() == 1
    led.close()
    import psycopg

    with psycopg.connect(url) as conn:
        names = {
            r[0]
            for r in conn.execute(
                "SELECT indexname FROM pg_indexes WHERE tablename = 'tokenward_events'"
            )
        }
    assert {"tokenward_events_ts", "tokenward_events_user_ts", "tokenward_events_conv_ts"} <= names


def test_postgres_unreachable_is_a_ledger_error(tmp_path: Path) -> None:
    with pytest.raises(LedgerError, match="schema setup failed"):
        SQLLedger(f"postgresql://nobody@/nodb?host={tmp_path}&connect_timeout=2")


# -- open_ledger ---------------------------------------------------------------------------------


def test_open_ledger_routes_by_url(tmp_path: Path, request) -> None:
    assert isinstance(open_ledger(":memory:"), MemoryLedger)
    assert isinstance(open_ledger("memory://"), MemoryLedger)
    mem = MemoryLedger()
    assert open_ledger(mem) is mem
    a = open_ledger(tmp_path / "a.db")
    assert isinstance(a, SQLiteLedger) and a.path == str(tmp_path / "a.db")
    a.close()
    b = open_ledger(f"sqlite:///{tmp_path}/sub/b.db", batch=False)
    assert isinstance(b, SQLiteLedger) and b.path == f"{tmp_path}/sub/b.db" and not b._batch
    b.close()
    with pytest.raises(ConfigurationError, match="unsupported ledger URL scheme 'mysql'"):
        open_ledger("mysql://x/y")
    assert normalize_url("postgresql://u:p@h/db") == "postgresql+psycopg://u:p@h/db"
    assert normalize_url("postgres://h/db") == "postgresql+psycopg://h/db"
    assert normalize_url("postgresql+psycopg2://h/db") == "postgresql+psycopg2://h/db"


@pytest.mark.postgres
def test_open_ledger_postgres(make_postgres_db: Callable[[], str]) -> None:
    led = open_ledger(make_postgres_db())
    assert isinstance(led, SQLLedger)
    assert led._engine.dialect.driver == "psycopg"
    led.close()


def test_stores_satisfy_the_protocol(tmp_path: Path) -> None:
    s = SQLiteLedger(tmp_path / "p.db")
    assert isinstance(MemoryLedger(), LedgerStore) and isinstance(s, LedgerStore)
    s.close()


def test_fork_child_gets_its_own_connections(tmp_path: Path) -> None:
    if not hasattr(os, "fork"):
        pytest.skip("needs fork")
    led = SQLiteLedger(tmp_path / "fork.db")
    led.record(ev("parent", T0))
    led.flush()
    ctx = multiprocessing.get_context("fork")
    p = ctx.Process(target=_fork_child, args=(led,))
    p.start()
    p.join(60)
    assert p.exitcode == 0
    assert {e.id for e in led.events()} == {"parent", "child"}
    led.close()


def _fork_child(led: SQLiteLedger) -> None:
    led.record(ev("child", T0))
    led.close()


def test_server_fixtures_fail_in_ci_and_skip_locally(monkeypatch) -> None:
    """If this fails, a server that cannot start would be silently skipped in CI."""
    import tests._servers as servers

    monkeypatch.setattr(servers, "_IN_CI", True)
    with pytest.raises(pytest.fail.Exception, match="CI=true"):
        servers._unavailable("embedded PostgreSQL", RuntimeError("initdb failed\nmore"))
    monkeypatch.setattr(servers, "_IN_CI", False)
    with pytest.raises(
        pytest.skip.Exception, match="embedded PostgreSQL unavailable: RuntimeError: initdb failed$"
    ):
        servers._unavailable("embedded PostgreSQL", RuntimeError("initdb failed\nmore"))
