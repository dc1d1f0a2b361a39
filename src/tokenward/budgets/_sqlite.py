"""SQLite budget store: one file shared by several processes on one machine.

Every write runs in ``BEGIN IMMEDIATE`` (the database write lock is taken before anything is
read, so check-then-reserve is atomic across processes), with WAL journaling and a
``busy_timeout``. A lock that cannot be obtained within ``timeout`` seconds, or a file that
cannot be opened or read, raises ``BudgetStoreUnavailableError``; anything else the database
rejects raises ``BudgetStoreError``.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from tokenward.budgets._store import (
    DEFAULT_COMMIT_RETENTION,
    CommitItem,
    CommitResult,
    CounterStatus,
    ReserveItem,
    ReserveResult,
    check_amount,
    check_limit,
    store_key,
)
from tokenward.errors import BudgetStoreError, BudgetStoreUnavailableError, ConfigurationError

__all__ = ["SQLiteBudgetStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tw_budget_counters (
    key TEXT PRIMARY KEY, spent INTEGER NOT NULL DEFAULT 0, calls INTEGER NOT NULL DEFAULT 0,
    expires_at REAL);
CREATE TABLE IF NOT EXISTS tw_budget_reservations (
    rid TEXT NOT NULL, key TEXT NOT NULL, amount INTEGER NOT NULL, expires_at REAL NOT NULL,
    PRIMARY KEY (rid, key));
CREATE INDEX IF NOT EXISTS tw_budget_reservations_key ON tw_budget_reservations (key, expires_at);
-- expire() scans the (short) live reservations instead: every reserve and commit wrote this
-- index's page, and each dirty page is one more WAL frame written at COMMIT
DROP INDEX IF EXISTS tw_budget_reservations_exp;
CREATE TABLE IF NOT EXISTS tw_budget_markers (marker TEXT PRIMARY KEY, expires_at REAL);
CREATE TABLE IF NOT EXISTS tw_budget_commits (rid TEXT PRIMARY KEY, expires_at REAL NOT NULL);
"""

# SQLite result codes that mean "the file cannot be used right now", for everyone
_UNAVAILABLE = (
    "SQLITE_BUSY",
    "SQLITE_LOCKED",
    "SQLITE_CANTOPEN",
    "SQLITE_IOERR",
    "SQLITE_FULL",
    "SQLITE_READONLY",
    "SQLITE_PERM",
    "SQLITE_NOTADB",
    "SQLITE_CORRUPT",
    "SQLITE_PROTOCOL",
    "SQLITE_NOMEM",
)
_UNAVAILABLE_TEXT = ("locked", "busy", "unable to open", "disk i/o", "readonly", "not a database")


def _unavailable(exc: sqlite3.Error) -> bool:
    name = getattr(exc, "sqlite_errorname", None)  # Python >= 3.11
    if name is not None:
        return any(name.startswith(code) for code in _UNAVAILABLE)
    text = str(exc).lower()
    return isinstance(exc, sqlite3.OperationalError) and any(t in text for t in _UNAVAILABLE_TEXT)


class SQLiteBudgetStore:
    """Budget counters in a SQLite file (WAL, ``BEGIN IMMEDIATE``). Safe for threads and for
    processes sharing the file on a local disk (not on a network filesystem).

    Args:
        path: the database file (created with its directory), or ``":memory:"`` for a
            database shared by this store's threads only.
        timeout: seconds to wait for another process's write lock before the store counts
            as unavailable.
        commit_retention: seconds a committed reservation id is remembered (replayed commits
            within it are applied once).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        timeout: float = 10.0,
        commit_retention: float = DEFAULT_COMMIT_RETENTION,
    ) -> None:
        self.path = str(path)
        self.timeout = timeout
        self.commit_retention = commit_retention
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
        with self._errors():
            conn.executescript(_SCHEMA)

    @classmethod
    def from_url(cls, url: str, **options: Any) -> SQLiteBudgetStore:
        """``sqlite:///relative/path.db``, ``sqlite:////absolute/path.db`` or
        ``sqlite:///:memory:``."""
        head, sep, path = url.partition(":///")
        if not sep or head.lower() != "sqlite" or not path:
            raise ConfigurationError(
                f"SQLite budget store URL {url!r} has no path; use sqlite:///relative.db or "
                f"sqlite:////absolute/path.db."
            )
        return cls(path, **options)

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None or getattr(self._local, "pid", None) != os.getpid():
            with self._errors():
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

    def _errors(self) -> _Errors:
        return _Errors(self.path)

    def _tx(self) -> _Tx:
        return _Tx(self._conn(), self.path)

    def reserve(
        self, items: Sequence[ReserveItem], reservation_id: str, ttl: float, now: float
    ) -> ReserveResult:
        if not items:
            return ReserveResult(True)
        rid = store_key(reservation_id)
        checks = [(check_amount(it.amount), check_limit(it.limit)) for it in items]
        read_sql, read_args = _per_item(items)
        sql = (  # per item: spent, reserved by others; and whether the id held or committed
            f"{read_sql} SELECT k.item, COALESCE(SUM(c.spent), 0), "
            f"COALESCE(SUM((SELECT SUM(r.amount) FROM tw_budget_reservations r "
            f"WHERE r.key = k.key AND r.expires_at > ? AND r.rid <> ?)), 0), "
            f"EXISTS (SELECT 1 FROM tw_budget_reservations WHERE rid = ?) "
            f"OR EXISTS (SELECT 1 FROM tw_budget_commits WHERE rid = ?) "
            f"FROM k LEFT JOIN tw_budget_counters c ON c.key = k.key "
            f"GROUP BY k.item ORDER BY k.item"
        )
        rows = [v for it in items for v in (rid, store_key(it.key), it.amount, now + ttl)]
        insert = (
            "INSERT INTO tw_budget_reservations (rid, key, amount, expires_at) VALUES "
            + ",".join(["(?,?,?,?)"] * len(items))
            + " ON CONFLICT (rid, key) DO UPDATE SET amount = amount + excluded.amount"
        )
        with self._tx() as c:
            totals = []
            read = c.execute(sql, (*read_args, now, rid, rid, rid)).fetchall()
            for (_, spent, reserved, _), (amount, limit) in zip(read, checks):
                totals.append((int(spent), int(reserved)))
                if limit is not None and spent + reserved + amount > limit:
                    return ReserveResult(False, tuple(totals), len(totals) - 1)
            if read[0][3]:  # the id was reserved or committed before: start afresh
                c.execute("DELETE FROM tw_budget_reservations WHERE rid = ?", (rid,))
                c.execute("DELETE FROM tw_budget_commits WHERE rid = ?", (rid,))
            c.execute(insert, rows)
            return ReserveResult(True, tuple(totals))

    def commit(self, reservation_id: str, items: Sequence[CommitItem], now: float) -> CommitResult:
        rid = store_key(reservation_id)
        rows = [
            v for it in items for v in (store_key(it.key), check_amount(it.amount), it.expires_at)
        ]
        upsert = (
            "INSERT INTO tw_budget_counters (key, spent, calls, expires_at) VALUES "
            + ",".join(["(?,?,1,?)"] * len(items))
            + " ON CONFLICT (key) DO UPDATE SET spent = spent + excluded.spent, "
            "calls = calls + 1, "
            "expires_at = MAX(COALESCE(expires_at, 0), COALESCE(excluded.expires_at, 0))"
        )
        read_sql, read_args = _per_item(items)
        sums = (
            f"{read_sql} SELECT k.item, COALESCE(SUM(c.spent), 0) FROM k "
            f"LEFT JOIN tw_budget_counters c ON c.key = k.key GROUP BY k.item ORDER BY k.item"
        )
        with self._tx() as c:
            fresh = c.execute(
                "INSERT INTO tw_budget_commits (rid, expires_at) VALUES (?, ?) "
                "ON CONFLICT (rid) DO UPDATE SET expires_at = excluded.expires_at "
                "WHERE tw_budget_commits.expires_at <= ?",
                (rid, now + self.commit_retention, now),
            ).rowcount
            if not fresh:
                return CommitResult(False)
            c.execute("DELETE FROM tw_budget_reservations WHERE rid = ?", (rid,))
            if not items:
                return CommitResult(True)
            c.execute(upsert, rows)
            spent = [int(s) for _, s in c.execute(sums, read_args)]
            fired = [
                marker
                for it, s in zip(items, spent)
                for at, marker in it.marks
                if s >= at and self._mark(c, marker, it.expires_at, now)
            ]
        return CommitResult(True, tuple(spent), frozenset(fired))

    @staticmethod
    def _mark(c: sqlite3.Connection, marker: str, expires_at: float | None, now: float) -> bool:
        return bool(
            c.execute(
                "INSERT INTO tw_budget_markers (marker, expires_at) VALUES (?, ?) "
                "ON CONFLICT (marker) DO UPDATE SET expires_at = excluded.expires_at "
                "WHERE tw_budget_markers.expires_at IS NOT NULL "
                "AND tw_budget_markers.expires_at <= ?",
                (store_key(marker), expires_at, now),
            ).rowcount
        )

    def release(self, reservation_id: str, now: float) -> None:
        with self._tx() as c:
            c.execute(
                "DELETE FROM tw_budget_reservations WHERE rid = ?", (store_key(reservation_id),)
            )

    def extend(self, reservation_id: str, ttl: float, now: float) -> bool:
        with self._tx() as c:
            return bool(
                c.execute(
                    "UPDATE tw_budget_reservations SET expires_at = MAX(expires_at, ?) "
                    "WHERE rid = ? AND expires_at > ?",
                    (now + ttl, store_key(reservation_id), now),
                ).rowcount
            )

    def status(self, keys: Sequence[str], now: float) -> list[CounterStatus]:
        if not keys:
            return []
        safe = [store_key(k) for k in keys]
        marks = ",".join("?" * len(safe))
        with self._errors():
            c = self._conn()
            spent = {
                k: (s, n)
                for k, s, n in c.execute(
                    f"SELECT key, spent, calls FROM tw_budget_counters WHERE key IN ({marks})", safe
                )
            }
            res = dict(
                c.execute(
                    f"SELECT key, SUM(amount) FROM tw_budget_reservations WHERE key IN ({marks}) "
                    f"AND expires_at > ? GROUP BY key",
                    (*safe, now),
                ).fetchall()
            )
        return [
            CounterStatus(spent.get(k, (0, 0))[0], int(res.get(k, 0)), spent.get(k, (0, 0))[1])
            for k in safe
        ]

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
            n += c.execute("DELETE FROM tw_budget_commits WHERE expires_at <= ?", (now,)).rowcount
        return n

    def close(self) -> None:
        with self._conns_lock:
            for conn in self._conns:
                with contextlib.suppress(sqlite3.Error):
                    conn.close()
            self._conns.clear()
        self._local = threading.local()


def _per_item(items: Sequence[ReserveItem | CommitItem]) -> tuple[str, list[Any]]:
    """A ``WITH k(item, key)`` clause listing every item's read keys, and its arguments."""
    args: list[Any] = []
    for i, it in enumerate(items):
        for k in it.keys:
            args += (i, store_key(k))
    return f"WITH k(item, key) AS (VALUES {','.join(['(?,?)'] * (len(args) // 2))})", args


class _Errors:
    """Translate sqlite3 failures: the file cannot be used (locked, unreadable) ->
    ``BudgetStoreUnavailableError``; a value the database rejects -> ``BudgetStoreError``."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __enter__(self) -> None:
        return None

    def __exit__(self, et: object, exc: BaseException | None, tb: object) -> Literal[False]:
        if exc is None or isinstance(exc, (BudgetStoreError, BudgetStoreUnavailableError)):
            return False
        if isinstance(exc, sqlite3.Error) and _unavailable(exc):
            raise BudgetStoreUnavailableError(
                f"SQLite budget store {self.path!r} unavailable: {exc}. Check the file is on a "
                f"local disk and writable, or raise SQLiteBudgetStore(timeout=...)."
            ) from exc
        if isinstance(exc, (sqlite3.Error, OverflowError, UnicodeError, ValueError)):
            raise BudgetStoreError(
                f"SQLite budget store {self.path!r} rejected a value: {type(exc).__name__}: "
                f"{exc}. Check the amounts and keys passed to the store."
            ) from exc
        return False


class _Tx:
    """``BEGIN IMMEDIATE`` … ``COMMIT`` (``ROLLBACK`` on an exception), errors translated."""

    def __init__(self, conn: sqlite3.Connection, path: str) -> None:
        self.conn = conn
        self.path = path

    def __enter__(self) -> sqlite3.Connection:
        with _Errors(self.path):
            self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, et: object, exc: BaseException | None, tb: object) -> Literal[False]:
        with _Errors(self.path):
            if self.conn.in_transaction:
                self.conn.execute("COMMIT" if exc is None else "ROLLBACK")
        return _Errors(self.path).__exit__(et, exc, tb)  # raises the translated error
