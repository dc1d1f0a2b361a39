"""SQLite budget store: one file shared by several processes on one machine.

Every write runs in ``BEGIN IMMEDIATE`` (the database write lock is taken before anything is
read, so check-then-reserve is atomic across processes), with WAL journaling and a
``busy_timeout``. A lock that cannot be obtained within ``timeout`` seconds, or a file that
cannot be opened or read, raises ``BudgetStoreUnavailableError``; anything else the database
rejects raises ``BudgetStoreError``.

The cost of a transaction is its COMMIT: each B-tree page it changed is one WAL frame. So a
reservation changes as few pages as it can, in two ``WITHOUT ROWID`` tables keyed by what is
looked up and no secondary index:

* ``tw_budget_keys`` (key, rid): per counter key, the counter row (rid ``''``: committed
  ``amount`` spent, ``calls``, ``expires_at`` when it may be deleted, 0 or NULL never) and,
  beside it in the same page, one row per live hold (rid ``':' + id``: the ``amount`` held
  until ``expires_at``). A budget check reads one key range; a reserve or commit of a call
  under two budgets changes two pages of this table.
* ``tw_budget_ids`` (rid): per reservation id, the keys it holds (``\\x1e``-separated) and
  until when, and once committed (``committed`` = 1) the commit marker, kept until
  ``expires_at`` (``commit_retention``) so a replayed commit changes nothing. One page.
* ``tw_budget_markers``: threshold markers fired (written only when a threshold is reached).

An existing file of the previous layout (``tw_budget_counters``, ``tw_budget_reservations``,
``tw_budget_commits``) is migrated on open, counters, live reservations and remembered
commits kept, in one transaction.
"""

from __future__ import annotations

import contextlib
import functools
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
CREATE TABLE IF NOT EXISTS tw_budget_keys (
    key TEXT NOT NULL, rid TEXT NOT NULL, amount INTEGER NOT NULL,
    calls INTEGER NOT NULL DEFAULT 0, expires_at REAL,
    PRIMARY KEY (key, rid)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS tw_budget_ids (
    rid TEXT PRIMARY KEY, keys TEXT, expires_at REAL NOT NULL,
    committed INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS tw_budget_markers (marker TEXT PRIMARY KEY, expires_at REAL);
"""

# the previous layout (one row per counter, per hold with two indexes, per committed id),
# moved into the tables above with everything kept; spend is added, so tables that a process
# of the previous version created again meanwhile are merged, never overwritten
_MIGRATE = """
INSERT INTO tw_budget_keys (key, rid, amount, calls, expires_at)
    SELECT key, '', spent, calls, expires_at FROM tw_budget_counters WHERE true
    ON CONFLICT (key, rid) DO UPDATE SET amount = amount + excluded.amount,
    calls = calls + excluded.calls,
    expires_at = MAX(COALESCE(expires_at, 0), COALESCE(excluded.expires_at, 0));
INSERT OR IGNORE INTO tw_budget_keys (key, rid, amount, calls, expires_at)
    SELECT key, ':' || rid, amount, 0, expires_at FROM tw_budget_reservations;
INSERT OR IGNORE INTO tw_budget_ids (rid, keys, expires_at, committed)
    SELECT rid, group_concat(key, char(30)), max(expires_at), 0
    FROM tw_budget_reservations GROUP BY rid;
INSERT OR REPLACE INTO tw_budget_ids (rid, keys, expires_at, committed)
    SELECT rid, NULL, expires_at, 1 FROM tw_budget_commits;
DROP TABLE tw_budget_counters;
DROP TABLE tw_budget_reservations;
DROP TABLE tw_budget_commits;
"""

# (SQLite's RETURNING costs more than a second statement: every write here is followed by a
# read where it needs what it changed)
_ID_SQL = "SELECT keys, committed, expires_at FROM tw_budget_ids WHERE rid = ?"

_SEP = "\x1e"  # never in a store_key (kept keys are printable, stand-ins use \x1f)

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
        self._errs = _Errors(self.path)
        self._local = threading.local()
        self._conns: list[sqlite3.Connection] = []
        self._conns_lock = threading.Lock()
        if not self._uri:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        conn = self._conn()
        self._keepalive = conn if self._uri else None  # keeps a shared in-memory db alive
        with self._errors():
            conn.executescript(_SCHEMA)
        self._migrate()

    def _migrate(self) -> None:
        """Move the previous layout's rows into the current tables (once, by one process)."""
        old = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'tw_budget_counters'"
        if self._conn().execute(old).fetchone() is None:
            return
        with self._tx() as c:
            if c.execute(old).fetchone() is not None:  # not migrated meanwhile by another process
                for statement in _MIGRATE.split(";"):
                    if statement.strip():
                        c.execute(statement)

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
        return self._errs

    def _tx(self) -> _Tx:
        return _Tx(self._conn(), self._errs)

    def reserve(
        self, items: Sequence[ReserveItem], reservation_id: str, ttl: float, now: float
    ) -> ReserveResult:
        if not items:
            return ReserveResult(True)
        rid = store_key(reservation_id)
        hold = ":" + rid
        checks = []
        args: list[Any] = []  # per read key: item index, key
        held: dict[str, int] = {}  # one hold row per key
        for i, it in enumerate(items):
            amount = check_amount(it.amount)
            checks.append((amount, check_limit(it.limit)))
            key = store_key(it.key)
            held[key] = held.get(key, 0) + amount
            if it.read_keys:
                for k in it.read_keys:
                    args += (i, store_key(k))
            else:
                args += (i, key)
        until = now + ttl
        with self._tx() as c:
            totals = []
            read = c.execute(_reserve_read_sql(len(args) // 2), (*args, hold, now, rid)).fetchall()
            before = read.pop(0)[1] if read[0][0] < 0 else None  # the keys the id holds
            for (_, _, spent, reserved), (amount, limit) in zip(read, checks):
                totals.append((spent, reserved))
                if limit is not None and spent + reserved + amount > limit:
                    return ReserveResult(False, tuple(totals), len(totals) - 1)
            if before is not None:  # drop the holds not renewed
                gone = [k for k in before.split(_SEP) if k not in held]
                if gone:
                    c.execute(_drop_sql(len(gone)), (hold, *gone))
            c.execute(
                _hold_sql(len(held)),
                [v for key, amount in held.items() for v in (key, hold, amount, until)],
            )
            c.execute(  # a commit marker of the id is replaced: its next commit counts
                "INSERT OR REPLACE INTO tw_budget_ids (rid, keys, expires_at, committed) "
                "VALUES (?, ?, ?, 0)",
                (rid, _SEP.join(held), until),
            )
            return ReserveResult(True, tuple(totals))

    def commit(self, reservation_id: str, items: Sequence[CommitItem], now: float) -> CommitResult:
        rid = store_key(reservation_id)
        spend: dict[str, list[Any]] = {}  # per key: amount, calls, expires_at
        reads = []  # per item: its read keys
        for it in items:
            amount = check_amount(it.amount)
            key = store_key(it.key)
            w = spend.get(key)
            if w is None:
                spend[key] = [amount, 1, it.expires_at]
            else:
                w[0] += amount
                w[1] += 1
                if it.expires_at is not None and (w[2] is None or it.expires_at > w[2]):
                    w[2] = it.expires_at
            reads.append([store_key(k) for k in it.read_keys] if it.read_keys else [key])
        with self._tx() as c:
            row = c.execute(_ID_SQL, (rid,)).fetchone()
            if row is not None and row[1] and row[2] > now:  # committed before: a replay
                return CommitResult(False)
            c.execute(  # the marker, in the reservation's row
                "INSERT OR REPLACE INTO tw_budget_ids (rid, keys, expires_at, committed) "
                "VALUES (?, NULL, ?, 1)",
                (rid, now + self.commit_retention),
            )
            if row is not None and not row[1] and row[0] is not None:  # its holds
                keys = row[0].split(_SEP)
                c.execute(_drop_sql(len(keys)), (":" + rid, *keys))
            if not items:
                return CommitResult(True)
            c.execute(_spend_sql(len(spend)), [v for k, w in spend.items() for v in (k, *w)])
            keys = list(dict.fromkeys(k for ks in reads for k in ks))
            totals = dict(c.execute(_spent_sql(len(keys)), keys).fetchall())
            spent = [sum(totals.get(k, 0) for k in ks) for ks in reads]
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
        rid = store_key(reservation_id)
        with self._tx() as c:
            row = c.execute(_ID_SQL, (rid,)).fetchone()
            if row is None or row[1]:  # never reserved, or committed
                return
            c.execute("DELETE FROM tw_budget_ids WHERE rid = ?", (rid,))
            if row[0] is not None:
                keys = row[0].split(_SEP)
                c.execute(_drop_sql(len(keys)), (":" + rid, *keys))

    def extend(self, reservation_id: str, ttl: float, now: float) -> bool:
        rid = store_key(reservation_id)
        until = now + ttl
        with self._tx() as c:
            row = c.execute(_ID_SQL, (rid,)).fetchone()
            if row is None or row[1] or row[2] <= now or row[0] is None:  # not alive
                return False
            keys = row[0].split(_SEP)
            c.execute(
                "UPDATE tw_budget_ids SET expires_at = MAX(expires_at, ?) WHERE rid = ?",
                (until, rid),
            )
            c.execute(
                f"UPDATE tw_budget_keys SET expires_at = MAX(expires_at, ?) "
                f"WHERE rid = ? AND key IN ({_marks(len(keys))})",
                (until, ":" + rid, *keys),
            )
            return True

    def status(self, keys: Sequence[str], now: float) -> list[CounterStatus]:
        if not keys:
            return []
        safe = [store_key(k) for k in keys]
        found: dict[str, list[int]] = {k: [0, 0, 0] for k in safe}  # spent, reserved, calls
        with self._errors():
            for key, rid, amount, calls, expires_at in self._conn().execute(
                _read_sql(len(found)), list(found)
            ):
                s = found[key]
                if not rid:
                    s[0], s[2] = amount, calls
                elif expires_at > now:
                    s[1] += amount
        return [CounterStatus(*found[k]) for k in safe]

    def expire(self, now: float) -> int:
        with self._tx() as c:
            n = c.execute(  # holds past their TTL, counters past their window
                "DELETE FROM tw_budget_keys WHERE expires_at <= ? AND (rid <> '' OR expires_at > 0)",
                (now,),
            ).rowcount
            n += c.execute(
                "DELETE FROM tw_budget_markers WHERE expires_at IS NOT NULL AND expires_at <= ?",
                (now,),
            ).rowcount
            n += c.execute("DELETE FROM tw_budget_ids WHERE expires_at <= ?", (now,)).rowcount
        return n

    def close(self) -> None:
        with self._conns_lock:
            for conn in self._conns:
                with contextlib.suppress(sqlite3.Error):
                    conn.close()
            self._conns.clear()
        self._local = threading.local()


def _marks(n: int) -> str:
    return ",".join("?" * n)


@functools.lru_cache(maxsize=64)
def _read_sql(n: int) -> str:
    """Counter and hold rows of ``n`` keys (one range of the primary key each)."""
    return (
        f"SELECT key, rid, amount, calls, expires_at FROM tw_budget_keys WHERE key IN ({_marks(n)})"
    )


@functools.lru_cache(maxsize=64)
def _reserve_read_sql(n: int) -> str:
    """Per item (``n`` pairs of item index and read key, then the hold and the time): its
    spend and what others hold live, summed over its read keys, after a row ``(-1, keys)``
    if the id (last argument) holds budget."""
    return (
        f"WITH k(item, key) AS (VALUES {','.join(['(?,?)'] * n)}) "
        f"SELECT k.item, NULL, COALESCE(SUM(t.amount) FILTER (WHERE t.rid = ''), 0), "
        f"COALESCE(SUM(t.amount) FILTER (WHERE t.rid <> '' AND t.rid <> ? "
        f"AND t.expires_at > ?), 0) "
        f"FROM k LEFT JOIN tw_budget_keys t ON t.key = k.key GROUP BY k.item "
        f"UNION ALL SELECT -1, keys, NULL, NULL FROM tw_budget_ids WHERE rid = ? AND committed = 0 "
        f"ORDER BY 1"
    )


@functools.lru_cache(maxsize=64)
def _hold_sql(n: int) -> str:
    """Hold ``n`` rows (key, rid, amount, expires_at); a hold of the same id is replaced."""
    return (
        "INSERT INTO tw_budget_keys (key, rid, amount, expires_at) VALUES "
        + ",".join(["(?,?,?,?)"] * n)
        + " ON CONFLICT (key, rid) DO UPDATE SET amount = excluded.amount, "
        "expires_at = excluded.expires_at"
    )


@functools.lru_cache(maxsize=64)
def _spend_sql(n: int) -> str:
    """Add (key, amount, calls, expires_at) to ``n`` counters."""
    return (
        "INSERT INTO tw_budget_keys (key, rid, amount, calls, expires_at) VALUES "
        + ",".join(["(?,'',?,?,?)"] * n)
        + " ON CONFLICT (key, rid) DO UPDATE SET amount = amount + excluded.amount, "
        "calls = calls + excluded.calls, "
        "expires_at = MAX(COALESCE(expires_at, 0), COALESCE(excluded.expires_at, 0))"
    )


@functools.lru_cache(maxsize=64)
def _spent_sql(n: int) -> str:
    """The spend of ``n`` counters: (key, amount) of those that exist."""
    return f"SELECT key, amount FROM tw_budget_keys WHERE rid = '' AND key IN ({_marks(n)})"


@functools.lru_cache(maxsize=64)
def _drop_sql(n: int) -> str:
    """Delete the holds of one id (first argument) on ``n`` keys."""
    return f"DELETE FROM tw_budget_keys WHERE rid = ? AND key IN ({_marks(n)})"


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

    def __init__(self, conn: sqlite3.Connection, errors: _Errors) -> None:
        self.conn = conn
        self.errors = errors

    def __enter__(self) -> sqlite3.Connection:
        with self.errors:
            self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, et: object, exc: BaseException | None, tb: object) -> Literal[False]:
        with self.errors:
            if self.conn.in_transaction:
                self.conn.execute("COMMIT" if exc is None else "ROLLBACK")
        return self.errors.__exit__(et, exc, tb)  # raises the translated error
