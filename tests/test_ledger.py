"""Ledger stores: one behaviour, three stores (memory, SQLite, PostgreSQL).

Every store passes :class:`tokenward.testing.LedgerStoreConformance` (the shared
behaviour, checked against a plain Python reference); the rest of this module covers
what is specific to the SQL stores (rollups, schema, multiple processes).
"""

from __future__ import annotations

import multiprocessing
import random
import sqlite3
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tokenward.errors import ConfigurationError, LedgerError
from tokenward.ledger import LedgerStore, MemoryLedger, SQLiteLedger, SQLLedger, open_ledger
from tokenward.ledger._postgres import normalize_url
from tokenward.ledger._sqlcommon import ROLLUP_TABLES, SCHEMA_VERSION
from tokenward.testing import LedgerStoreConformance
from tokenward.testing._ledger import QUERIES, T0, as_dict, dataset, ev, reference

UTC = timezone.utc

# -- our stores pass the conformance suite ------------------------------------------------


class TestMemoryLedger(LedgerStoreConformance):
    def make_store(self, tmp_path: Path) -> LedgerStore:
        return MemoryLedger()


class TestSQLiteLedger(LedgerStoreConformance):
    def make_store(self, tmp_path: Path) -> LedgerStore:
        return SQLiteLedger(tmp_path / "ledger.db")


class TestSQLiteLedgerUnbatched(LedgerStoreConformance):
    def make_store(self, tmp_path: Path) -> LedgerStore:
        return SQLiteLedger(tmp_path / "ledger.db", batch=False)


def _fresh_postgres(url: str, batch: bool, tmp_path: Path) -> SQLLedger:
    s = SQLLedger(url, batch=batch, dead_letter_path=tmp_path / "dead.jsonl")
    with s._engine.begin() as conn:
        tables = ", ".join(("tokenward_events", "tokenward_dead_letters", "tokenward_state"))
        conn.exec_driver_sql(f"TRUNCATE {tables}, {', '.join(ROLLUP_TABLES)}")
    return s


@pytest.mark.postgres
class TestPostgresLedger(LedgerStoreConformance):
    @pytest.fixture
    def store(self, postgres_url: str, tmp_path: Path) -> Iterator[LedgerStore]:
        s = _fresh_postgres(postgres_url, True, tmp_path)
        yield s
        s.close()


@pytest.mark.postgres
class TestPostgresLedgerUnbatched(LedgerStoreConformance):
    @pytest.fixture
    def store(self, postgres_url: str, tmp_path: Path) -> Iterator[LedgerStore]:
        s = _fresh_postgres(postgres_url, False, tmp_path)
        yield s
        s.close()


# -- rollups ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_rollup_answers_equal_raw_scan(kind: str, tmp_path: Path, request: Any) -> None:
    """If this fails, a rollup drifted from the events it summarizes."""
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
            {"by": ["user_id"]},
            {"by": ["user_id", "model"], "where": {"status": "ok"}},
            {
                "by": ["user_id"],
                "since": T0 + timedelta(days=15, hours=3),
                "until": T0 + timedelta(days=101, minutes=7),
            },
            {
                "by": ["user_id"],
                "since": datetime(2026, 12, 1, tzinfo=UTC),
                "until": datetime(2027, 2, 1, tzinfo=UTC),
            },
            {
                "by": ["model"],
                "where": {"user_id": [None, "bob"]},
                "since": datetime(2026, 12, 31, 23, tzinfo=UTC),
            },
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
        answers = [
            s.summary(q.get("since"), q.get("until"), by=q.get("by", ())) for q in long_range
        ]
        # SQLite's monthly rollups hold only the days that ended (later days are read from
        # the daily one): compare those tables after a rebuild through the queries
        exact = [t for t in ROLLUP_TABLES if kind == "postgres" or "monthly" not in t]
        tables = {t: sorted(s._fetch(f"SELECT * FROM {t}", {})) for t in exact}
        assert all(tables.values())
        s.rebuild_rollups()  # the SQL rebuild must give the write path's rows exactly
        assert {t: sorted(s._fetch(f"SELECT * FROM {t}", {})) for t in exact} == tables
        assert s.timeseries("week", by=["agent"]) == before
        assert [
            s.summary(q.get("since"), q.get("until"), by=q.get("by", ())) for q in long_range
        ] == answers
    finally:
        s.close()


# -- SQLite specifics ---------------------------------------------------------------------


def test_sqlite_batched_writes_visible_to_other_connections_after_flush(tmp_path: Path) -> None:
    path = tmp_path / "l.db"
    writer = SQLiteLedger(path, flush_interval=60)
    reader = SQLiteLedger(path, batch=False)
    writer.record_many([ev(i, T0) for i in range(10)])
    writer.flush()
    assert reader.count() == 10
    writer.record(ev(99, T0))
    writer.close()  # close flushes
    assert reader.count() == 11
    reader.close()
    again = SQLiteLedger(path)
    assert again.count() == 11 and again.schema_version() == SCHEMA_VERSION
    assert again._reader_conn().execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    again.close()


def test_sqlite_stores_every_column_as_given_bound_or_defaulted(tmp_path: Path) -> None:
    """If this fails, a column the writer left to its SQL default (it binds only the
    columns where some row of the batch differs from the default) is stored differently
    from the value the row holds, or the declared defaults drifted from the DDL."""
    from dataclasses import replace

    from tokenward.ledger._event import EVENT_COLUMNS, event_to_row
    from tokenward.ledger._sqlcommon import EVENT_DEFAULTS, EVENTS

    plain = [ev(f"p{i}", T0 + timedelta(seconds=i)) for i in range(70)]
    rich = replace(
        plain[0],
        id="rich",
        prompt="hi",
        error="boom",
        status="error",
        tags={"team": "x"},
        tool_names=("search",),
        tool_calls=1,
        session_id="s",
        agent="a",
        parent_id="p0",
    )
    for batch in (plain[:40], [*plain[40:], rich]):  # all-default columns, then mixed ones
        with SQLiteLedger(tmp_path / "d.db", batch=False) as led:
            led.record_many(batch)
    conn = sqlite3.connect(tmp_path / "d.db")
    typed = ", ".join(f"{c}, typeof({c})" for c in EVENT_COLUMNS)
    stored = {r[0]: r for r in conn.execute(f"SELECT {typed} FROM {EVENTS}")}
    for e in [*plain, rich]:
        row = event_to_row(e)
        want = []
        for v in row:
            kind = {int: "integer", float: "real", str: "text", type(None): "null"}[type(v)]
            want += [v, kind]
        assert stored[e.id] == tuple(want)
    info = {r[1]: r[4] for r in conn.execute(f"PRAGMA table_info({EVENTS})")}
    conn.close()
    for col, default in EVENT_DEFAULTS.items():
        assert info[col] == (repr(default) if isinstance(default, int) else f"'{default}'")
    assert {c for c, d in info.items() if d is not None} == set(EVENT_DEFAULTS)


def test_sqlite_writer_commits_within_its_window_without_flush(tmp_path: Path) -> None:
    """If this fails, queued events wait for a flush (or a full batch) instead of being
    committed within the writer's time window (what a SIGKILL can take)."""
    path = tmp_path / "w.db"
    writer = SQLiteLedger(path, flush_interval=0.05)
    reader = SQLiteLedger(path, batch=False)
    for round_ in range(3):  # the first batch, and the ones after it
        writer.record_many([ev(f"{round_}-{i}", T0) for i in range(10)])
        deadline = datetime.now(UTC) + timedelta(seconds=10)
        while reader.count() < 10 * (round_ + 1) and datetime.now(UTC) < deadline:
            time.sleep(0.01)
        assert reader.count() == 10 * (round_ + 1)
    writer.close()
    reader.close()


def test_sqlite_refuses_newer_schema_without_touching_it(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    SQLiteLedger(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute("INSERT INTO tokenward_schema_version VALUES (99, 'later', 'future')")
    before = path.read_bytes()
    with pytest.raises(LedgerError, match=r"schema version 99.*newer tokenward") as info:
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
    assert path.read_bytes() == content


def test_sqlite_foreign_table_is_not_adopted(tmp_path: Path) -> None:
    path = tmp_path / "foreign.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE tokenward_events (x INTEGER)")
    with pytest.raises(LedgerError, match="not created by tokenward"):
        SQLiteLedger(path)


def test_sqlite_rejects_memory_path() -> None:
    with pytest.raises(ConfigurationError, match="MemoryLedger"):
        SQLiteLedger(":memory:")


# -- multiple processes -------------------------------------------------------------------


def _mp_worker(target: str, worker: int, n: int, batch: bool) -> None:
    """Child process: records n own events plus 100 events every worker also records."""
    led = open_ledger(target, batch=batch)
    own = [
        ev(f"w{worker}-{i}", T0 + timedelta(seconds=i), user_id=f"u{worker}", cost=Decimal("1E-9"))
        for i in range(n)
    ]
    shared = [
        ev(
            f"shared-{i}",
            T0 + timedelta(hours=1, seconds=i),
            user_id="shared",
            cost=Decimal("1E-9"),
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
    SQLiteLedger(path).close()
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


# -- PostgreSQL specifics -----------------------------------------------------------------


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
    assert led.schema_version() == SCHEMA_VERSION
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


# -- open_ledger --------------------------------------------------------------------------


def test_open_ledger_routes_by_url(tmp_path: Path) -> None:
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


def test_server_fixtures_fail_in_ci_and_skip_locally(monkeypatch: pytest.MonkeyPatch) -> None:
    """If this fails, a server that cannot start would be silently skipped in CI."""
    import tests._servers as servers

    monkeypatch.setattr(servers, "_IN_CI", True)
    with pytest.raises(pytest.fail.Exception, match="CI=true"):
        servers._unavailable("embedded PostgreSQL", RuntimeError("initdb failed\nmore"))
    monkeypatch.setattr(servers, "_IN_CI", False)
    with pytest.raises(
        pytest.skip.Exception,
        match=r"embedded PostgreSQL unavailable: RuntimeError: initdb failed$",
    ):
        servers._unavailable("embedded PostgreSQL", RuntimeError("initdb failed\nmore"))


def test_sqlite_rollups_exact_whether_a_batch_folds_or_not(tmp_path: Path) -> None:
    """If this fails, a rollup written from Python sums (a batch that folds into a few
    groups per user) or row by row in SQL (about one group per row) differs from what the
    events give, or a batch with already-stored events was counted twice."""
    from dataclasses import replace

    from tokenward.ledger._event import event_to_row
    from tokenward.ledger._sqlite import _ROLLUPS

    def users(events: list[Any], names: list[str | None]) -> list[Any]:
        return [replace(e, user_id=names[i % len(names)]) for i, e in enumerate(events)]

    one_day = users(dataset(400, seed=3, days=1), ["alice", None])
    three_days = users([replace(e, id=f"3d-{e.id}") for e in dataset(400, seed=4, days=3)], ["bob"])
    sparse = [
        replace(e, id=f"sp-{e.id}", user_id=f"user-{i}")
        for i, e in enumerate(dataset(100, seed=5, days=1))
    ]
    again = [*one_day[:200], *users([replace(e, id=f"new-{e.id}") for e in sparse[:60]], ["c"])]
    one_group = [
        ev(f"one-{i}", T0 + timedelta(hours=5, seconds=i), user_id="dora", agent="x")
        for i in range(50)
    ]
    batches = [one_day, three_days, sparse, again, one_group]
    folds = [not _ROLLUPS.grouped([event_to_row(e) for e in b])[1] for b in batches]
    assert folds == [True, True, False, True, True]  # both ways are exercised
    led = SQLiteLedger(tmp_path / "f.db", batch=False)
    recorded: dict[str, Any] = {}
    for b in batches:
        led.record_many(b)
        for e in b:
            recorded.setdefault(e.id, e)
        for by in (["user_id"], ["user_id", "model", "status"], ["agent", "model"]):
            got = as_dict(led.summary(by=by), by)
            assert got == reference(list(recorded.values()), None, None, by)
    daily = [t for t in ROLLUP_TABLES if "monthly" not in t]
    tables = {t: sorted(led._fetch(f"SELECT * FROM {t}", {})) for t in daily}
    led.rebuild_rollups()
    assert {t: sorted(led._fetch(f"SELECT * FROM {t}", {})) for t in daily} == tables
    led.close()


def test_sqlite_monthly_rollup_catches_up_when_days_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If this fails, the monthly per-user rollup (compacted from the daily one once a UTC
    day is over, with late events added as they come) double counts or misses a day."""
    import tokenward.ledger._sqlite as sqlite_store

    class Clock:
        now = T0.timestamp()

        def time(self) -> float:
            return self.now

    clock = Clock()
    monkeypatch.setattr(sqlite_store, "time", clock)
    led = SQLiteLedger(tmp_path / "m.db", batch=False)
    events = dataset(500, seed=13, days=120)  # 2026-11-20 .. 2027-03-20
    queries = [
        {"by": ["user_id"]},
        {"by": ["user_id", "model"], "since": datetime(2026, 12, 1, tzinfo=UTC)},
        {"by": ["user_id"], "until": datetime(2027, 2, 1, tzinfo=UTC)},
    ]

    def check(recorded: list[Any]) -> None:
        for q in queries:
            got = led.summary(q.get("since"), q.get("until"), by=q["by"])
            assert as_dict(got, q["by"]) == reference(
                recorded, q.get("since"), q.get("until"), q["by"]
            )

    led.record_many(events[:200])  # "today" is T0: nothing of it in the monthly rollup yet
    assert led._monthly_limit() == int(T0.timestamp() // 86_400)
    check(events[:200])
    clock.now = datetime(2027, 2, 15, tzinfo=UTC).timestamp()  # months went by
    led.record_many(events[200:])  # compacts Nov 20 .. Feb 14 first, then adds late rows
    assert led._monthly_limit() == int(clock.now // 86_400)
    check(events)
    led.record_many([ev("late", T0 + timedelta(days=3), user_id="alice")])  # a late event
    check([*events, ev("late", T0 + timedelta(days=3), user_id="alice")])
    whole = "SELECT * FROM tokenward_monthly_user WHERE month < :feb"  # Nov, Dec, Jan: done
    feb_2027 = (2027 - 1970) * 12 + 1
    months = sorted(led._fetch(whole, {"feb": feb_2027}))
    assert len({m[0] for m in months}) == 3
    led.rebuild_rollups()
    assert sorted(led._fetch(whole, {"feb": feb_2027})) == months
    led.close()
