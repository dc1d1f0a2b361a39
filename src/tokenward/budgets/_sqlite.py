"""SQLite budget store: one file shared by several processes on one machine.

Every write runs in ``BEGIN IMMEDIATE`` (the database write lock is taken before anything is
read, so check-then-reserve is atomic across processes), with WAL journaling and a
``busy_timeout``. A lock that cannot be obtained within ``timeout`` seconds, or a file that
cannot be opened, raises ``BudgetStoreUnavailableError``.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path

from tokenward.budgets._store import CounterStatus, ReserveItem, ReserveResult
from tokenward.errors import BudgetStoreUnavailableError

__all__ = ["SQLiteBudgetStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tw_budget_counters (
    key TEXT PRIMARY KEY, spent INTEGER NOT NULL DEFAULT 0, calls INTEGER NOT NULL DEFAULT 0,
    expires_at REAL);
CREATE TABLE IF NOT EXISTS tw_budget_reservations (
    rid TEXT NOT NULL, key TEXT NOT NULL, amount INTEGER NOT NULL, expires_at REAL NOT NULL,
    PRIMARY KEY (rid, key));
CREATE INDEX IF NOT EXISTS tw_budget_reservations_key ON tw_budget_reservations (key, expires_at);
CREATE INDEX IF NOT EXISTS tw_budget_reservations_exp ON tw_budget_reservations (expires_at);
CREATE TABLE IF NOT EXISTS tw_budget_markers (marker TEXT PRIMARY KEY, expires_at REAL);
"""


class SQLiteBudgetStore:
    """Budget counters in a SQLite file (WAL, ``BEGIN IMMEDIATE``). Safe for threads and for
    processes sharing the file on a local disk (not on a network filesystem)."""

    def __init__(self, path: str | os.PathLike[str], *, timeout: float = 10.0) -> None:
        self.path = str(path)
        self.timeout = timeout
        self._uri = False
        if self.path == ":memory:":  # one in-memory database shared by this store's threads
            self.path = f"file:tokenward-budgets-{uuid.uuid4().hex}?mode=memory&cache=shared"
            self._uri = True
        self._local = threading.local()
        self._conns: list[sqlite3.Connection] = []
        self._conns_lock = threading.Lock()
        if not self._uri:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        conn = self._conn()
        self._keepalive = conn if self._uri else None  # keeps a shared in-memory db alive
        with self._wrap():
            conn.executescript(_SCHEMA)

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None or getattr(self._local, "pid", None) != os.getpid():
            with self._wrap():
                conn = sqlite3.connect(
                    self.path,
                    timeout=self.timeout,
                    isolation_level=None,
                    check_same_thread=False,
                    uri=self._uri,
                )
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute(f"PRAGMA busy_timeout={int(self.timeout * 1000)}")
                conn.execute("PRAGMA synchronous=NORMAL")
            self._local.conn = conn
            self._local.pid = os.getpid()
            with self._conns_lock:
                self._conns.append(conn)
        return conn

    def _wrap(self) -> _Wrap:
        return _Wrap(self.path)

    def _tx(self) -> _Tx:
        return _Tx(self._conn(), self.path)

    @staticmethod
    def _totals(cur: sqlite3.Connection, keys: Sequence[str], now: float) -> tuple[int, int]:
        marks = ",".join("?" * len(keys))
        spent = cur.execute(
            f"SELECT COALESCE(SUM(spent),0) FROM tw_budget_counters WHERE key IN ({marks})", keys
        ).fetchone()[0]
        reserved = cur.execute(
            f"SELECT COALESCE(SUM(amount),0) FROM tw_budget_reservations "
            f"WHERE key IN ({marks}) AND expires_at > ?",
            (*keys, now),
        ).fetchone()[0]
        return int(spent), int(reserved)

    def reserve(
        self, items: Sequence[ReserveItem], reservation_id: str, ttl: float, now: float
    ) -> ReserveResult:
        with self._tx() as c:
            c.execute("DELETE FROM tw_budget_reservations WHERE rid = ?", (reservation_id,))
            totals = []
            for i, it in enumerate(items):
                spent, reserved = self._totals(c, it.keys, now)
                totals.append((spent, reserved))
                if it.limit is not None and spent + reserved + it.amount > it.limit:
                    c.execute("ROLLBACK")
                    return ReserveResult(False, tuple(totals), i)
            c.executemany(
                "INSERT INTO tw_budget_reservations (rid, key, amount, expires_at) VALUES (?,?,?,?) "
                "ON CONFLICT (rid, key) DO UPDATE SET amount = amount + excluded.amount",
                [(reservation_id, it.key, it.amount, now + ttl) for it in items],
            )
            return ReserveResult(True, tuple(totals))

    def commit(
        self,
        reservation_id: str,
        actuals: Mapping[str, int],
        now: float,
        expires: Mapping[str, float | None] | None = None,
    ) -> None:
        exp = expires or {}
        with self._tx() as c:
            c.execute("DELETE FROM tw_budget_reservations WHERE rid = ?", (reservation_id,))
            c.executemany(
                "INSERT INTO tw_budget_counters (key, spent, calls, expires_at) VALUES (?,?,1,?) "
                "ON CONFLICT (key) DO UPDATE SET spent = spent + excluded.spent, calls = calls + 1, "
                "expires_at = MAX(COALESCE(expires_at, 0), COALESCE(excluded.expires_at, 0))",
                [(k, a, exp.get(k)) for k, a in actuals.items()],
            )

    def release(self, reservation_id: str, now: float) -> None:
        with self._tx() as c:
            c.execute("DELETE FROM tw_budget_reservations WHERE rid = ?", (reservation_id,))

    def status(self, keys: Sequence[str], now: float) -> list[CounterStatus]:
        if not keys:
            return []
        with self._wrap():
            c = self._conn()
            marks = ",".join("?" * len(keys))
            spent = {
                k: (s, n)
                for k, s, n in c.execute(
                    f"SELECT key, spent, calls FROM tw_budget_counters WHERE key IN ({marks})", keys
                )
            }
            res = dict(
                c.execute(
                    f"SELECT key, SUM(amount) FROM tw_budget_reservations WHERE key IN ({marks}) "
                    f"AND expires_at > ? GROUP BY key",
                    (*keys, now),
                ).fetchall()
            )
        return [
            CounterStatus(spent.get(k, (0, 0))[0], int(res.get(k, 0)), spent.get(k, (0, 0))[1])
            for k in keys
        ]

    def mark_once(self, marker: str, expires_at: float | None, now: float) -> bool:
        with self._tx() as c:
            c.execute(
                "DELETE FROM tw_budget_markers WHERE marker = ? AND expires_at IS NOT NULL AND expires_at <= ?",
                (marker, now),
            )
            cur = c.execute(
                "INSERT OR IGNORE INTO tw_budget_markers (marker, expires_at) VALUES (?, ?)",
                (marker, expires_at),
            )
            return cur.rowcount == 1

    def expire(self, now: float) -> int:
        with self._tx() as c:
            n = c.execute(
                "DELETE FROM tw_budget_reservations WHERE expires_at <= ?", (now,)
            ).rowcount
            n += c.execute(
                "DELETE FROM tw_budget_counters WHERE expires_at IS NOT NULL AND expires_at > 0 "
                "AND expires_at <= ?",
                (now,),
            ).rowcount
            n += c.execute(
                "DELETE FROM tw_budget_markers WHERE expires_at IS NOT NULL AND expires_at <= ?",
                (now,),
            ).rowcount
        return n

    def close(self) -> None:
        with self._conns_lock:
            for conn in self._conns:
                try:
                    conn.close()
                except sqlite3.Error:
                    pass
            self._conns.clear()
        self._local = threading.local()


class _Wrap:
    """Translate sqlite3 operational failures (locked, unreadable file) into
    ``BudgetStoreUnavailableError``."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __enter__(self) -> None:
        return None

    def __exit__(self, et: object, exc: BaseException | None, tb: object) -> bool:
        if isinstance(exc, sqlite3.OperationalError):
            raise BudgetStoreUnavailableError(
                f"SQLite budget store {self.path!r} unavailable: {exc}. Check the file is on a "
                f"local disk and writable, or raise SQLiteBudgetStore(timeout=...)."
            ) from exc
        return False


class _Tx:
    def __init__(self, conn: sqlite3.Connection, path: str) -> None:
        self.conn = conn
        self.path = path

    def __enter__(self) -> sqlite3.Connection:
        with _Wrap(self.path):
            self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, et: object, exc: BaseException | None, tb: object) -> bool:
        with _Wrap(self.path):
            if self.conn.in_transaction:
                if exc is None:
                    self.conn.execute("COMMIT")
                else:
                    self.conn.execute("ROLLBACK")
        if isinstance(exc, sqlite3.OperationalError):
            raise BudgetStoreUnavailableError(
                f"SQLite budget store {self.path!r} unavailable: {exc}."
            ) from exc
        return False
