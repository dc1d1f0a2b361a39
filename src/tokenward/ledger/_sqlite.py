"""SQLiteLedger: the default store, one file, safe for many threads and processes."""

from __future__ import annotations

import contextlib
import functools
import itertools
import os
import sqlite3
import threading
import time
import urllib.parse
import weakref
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime, timezone
from operator import itemgetter
from pathlib import Path
from typing import Any

from tokenward.errors import (
    ConfigurationError,
    LedgerError,
    LedgerUnavailableError,
    LedgerValueError,
)
from tokenward.ledger._deadletter import describe
from tokenward.ledger._event import EVENT_COLUMNS
from tokenward.ledger._rollup import RollupPlan
from tokenward.ledger._sqlcommon import (
    DEAD_LETTERS,
    EVENT_DEFAULTS,
    EVENTS,
    SCHEMA_VERSION,
    STATE,
    VERSION_TABLE,
    ddl,
    migrations,
    rebuild_rollup_sql,
)
from tokenward.ledger._sqlstore import Row, SQLStore

__all__ = ["SQLiteLedger"]

#: Each events column's default (``None``: NULL), in row order.
_DEFAULTS = tuple(EVENT_DEFAULTS.get(c) for c in EVENT_COLUMNS)
#: Parameters per statement: SQLite's historic limit.
_MAX_PARAMS = 999
_chain = itertools.chain.from_iterable
_ROLLUPS = RollupPlan()
_TS_OF = itemgetter(EVENT_COLUMNS.index("ts_us"))
#: Read once at the start of a write: the last day the monthly rollups hold, and the
#: highest rowid (the rows the transaction inserts get rowids above it).
_WRITE_STATE = f"SELECT ({_ROLLUPS.read_through}), (SELECT coalesce(max(rowid), 0) FROM {EVENTS})"
_DAY_US = 86_400_000_000
_CACHE_KIB = -65536  # PRAGMA cache_size of the writer connection: negative = KiB (64 MiB)
_READ_CACHE_KIB = -16384  # the reader connection's (16 MiB)
_CHECKPOINT_PAGES = 10_000  # PRAGMA wal_autocheckpoint (pages of 4 KiB)

#: Migrations from version N-1 to N: ``{N: [statements]}``.
_MIGRATIONS = migrations("sqlite")

# Driver errors by SQLite result code (``sqlite_errorname`` without its extended suffix).
_VALUE_CODES = {"SQLITE_TOOBIG", "SQLITE_CONSTRAINT", "SQLITE_MISMATCH", "SQLITE_RANGE"}
_CORRUPT_CODES = {"SQLITE_CORRUPT", "SQLITE_NOTADB", "SQLITE_FORMAT"}
_FIXES = {
    "SQLITE_BUSY": "another process held the write lock longer than busy_timeout; "
    "raise busy_timeout= or end that process's long transaction",
    "SQLITE_LOCKED": "another connection holds a conflicting lock; retry later",
    "SQLITE_READONLY": "the file or its directory is read-only: fix the permissions, or open "
    "it with read_only=True to only read it",
    "SQLITE_CANTOPEN": "check that the path exists and its directory is writable",
    "SQLITE_FULL": "the disk is full: free space, or point the ledger at another disk",
    "SQLITE_IOERR": "the disk failed a read or write: check the file system",
    "SQLITE_PERM": "permission denied: fix the file's permissions",
}

_live_stores: weakref.WeakSet[SQLiteLedger] = weakref.WeakSet()
_abandoned: list[
    sqlite3.Connection
] = []  # a parent's connections, never used nor closed in a child


def _corrupt(path: str, exc: BaseException) -> LedgerError:
    return LedgerError(
        f"the ledger file {path!r} is not a readable tokenward SQLite database ({exc}). "
        "tokenward did not modify it. Move it aside (or point the ledger at another path) "
        f"and keep it for recovery: `sqlite3 {path} .recover > ledger.sql` salvages what "
        "is readable.",
        code="ledger-corrupted",
    )


def map_error(exc: BaseException, path: str, action: str) -> LedgerError:
    """A driver error as the :class:`LedgerError` the user should see: a value the database
    cannot store, a corrupt file, or the database being unavailable (connectivity only)."""
    if isinstance(exc, LedgerError):
        return exc
    where = f"ledger {action} on {path!r}"
    name = getattr(exc, "sqlite_errorname", None) or ""
    code = "_".join(name.split("_")[:2])
    if (
        code in _VALUE_CODES
        or isinstance(exc, (OverflowError, UnicodeEncodeError, ValueError, sqlite3.DataError))
        or (isinstance(exc, sqlite3.ProgrammingError) and "binding" in str(exc))
    ):
        return LedgerValueError(f"{where}: the database cannot store a value: {describe(exc)}")
    if code in _CORRUPT_CODES:
        return _corrupt(path, exc)
    if isinstance(exc, (sqlite3.OperationalError, OSError)):
        fix = _FIXES.get(code, "check the file and its directory")
        return LedgerUnavailableError(f"{where} failed: {describe(exc)}. Fix: {fix}.")
    if type(exc) is sqlite3.DatabaseError:  # e.g. "file is not a database" without a code
        return _corrupt(path, exc)
    return LedgerError(f"{where} failed: {describe(exc)}")


@functools.lru_cache(maxsize=64)
def _insert_sql(columns: tuple[int, ...], rows: int) -> str:
    """``INSERT OR IGNORE`` of ``rows`` rows of the events columns at ``columns``."""
    values = f"({', '.join('?' for _ in columns)})"
    return (
        f"INSERT OR IGNORE INTO {EVENTS} ({', '.join(EVENT_COLUMNS[i] for i in columns)}) "
        f"VALUES {', '.join([values] * rows)}"
    )


def _insert_events(conn: sqlite3.Connection, rows: Sequence[Row]) -> None:
    """``INSERT OR IGNORE`` the rows, in their order (rowids increase with it).

    Binding a parameter is most of what an insert costs from Python (a NULL the most: the
    driver looks for an adapter first), and most columns hold their default in every row of
    a batch (no reasoning tokens, no prompt text, ...): only the columns where some row
    differs from the default are bound, SQLite fills in the others. Rows go in multi-row
    INSERTs (one statement step per statement, not per row): as many as fit in 999
    parameters, the rest in power-of-two chunks (a few prepared shapes, reused).
    """
    n = len(rows)
    columns = list(zip(*rows))
    bound = tuple(
        i
        for i, (col, default) in enumerate(zip(columns, _DEFAULTS))
        if col[0] != default or col.count(default) != n
    )
    values = itemgetter(*bound)
    k = _MAX_PARAMS // len(bound)
    done = 0
    while done < n:
        size = min(k, 1 << ((n - done).bit_length() - 1))  # a power of two, or k
        full = (n - done) // size * size
        chunk = rows[done : done + full]
        if size == 1:
            conn.executemany(_insert_sql(bound, 1), map(values, chunk))
        else:
            conn.executemany(
                _insert_sql(bound, size),
                [tuple(_chain(map(values, chunk[i : i + size]))) for i in range(0, full, size)],
            )
        done += full


class SQLiteLedger(SQLStore):
    """Events in one SQLite file (WAL mode), written by a background thread in batches.

    Args:
        path: file path (parent directories are created). Several processes may
            open the same file; each event id is stored once.
        batch: ``True`` (default) queues events and writes them from a background
            thread, one transaction per batch. ``False`` writes each
            ``record``/``record_many`` call synchronously in its own transaction.
        batch_size: hard cap on events per transaction (the writer also caps a batch
            at what it commits in ~70 ms).
        flush_interval: seconds the first event of a batch waits for more (30 ms).
        busy_timeout: seconds to wait for another process's write lock.
        synchronous: SQLite ``synchronous`` pragma. ``"NORMAL"`` (default): in WAL
            mode a commit is not fsynced; the WAL is synced at each checkpoint.
            Safe against corruption and against application crashes (a killed
            process loses no committed event), but an OS crash or power loss may
            lose the transactions committed since the last checkpoint. ``"FULL"``
            fsyncs every commit.
        read_only: open an existing ledger for queries only: the file is opened with
            SQLite's ``mode=ro``, nothing is created, migrated or written.
        max_queue, block_timeout: backpressure (see below).
        drain_timeout: seconds ``close()`` and interpreter exit keep retrying queued
            events before they go to the dead-letter file (default: ``busy_timeout``
            plus 5 s, so a write waiting for another process's lock is not cut short).
        dead_letter_path: the dead-letter file (default: ``<path>.dead-letters.jsonl``).

    Durability in batched mode: ``record()`` returns before the event is written. While
    the database keeps up, the writer commits an event within ~``flush_interval`` plus
    two batch writes (≤ 200 ms measured): what a ``SIGKILL`` can take. ``close()``,
    interpreter exit, ``SIGTERM`` (when the app has no handler of its own) and the exit
    of a ``multiprocessing`` fork child write everything queued. When the app records
    faster than the database commits, ``record()`` waits for room (the queue holds about
    one batch); after ``block_timeout`` seconds without progress events go to the
    dead-letter file (``replay_dead_letters()`` brings them back). An event the database
    refuses (e.g. a lone surrogate) goes to the ``tokenward_dead_letters`` table with the
    reason; the rest of its batch is written.

    Queries flush this object's pending writes first, so a process always reads its own
    writes.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        batch: bool = True,
        batch_size: int = 20_000,
        flush_interval: float = 0.03,
        busy_timeout: float = 30.0,
        synchronous: str = "NORMAL",
        read_only: bool = False,
        max_queue: int = 50_000,
        block_timeout: float = 1.0,
        drain_timeout: float | None = None,
        dead_letter_path: str | os.PathLike[str] | None = None,
    ) -> None:
        p = os.fspath(path)
        if p in ("", ":memory:") or p.startswith("file::memory:"):
            raise ConfigurationError(
                "SQLiteLedger needs a file path; use MemoryLedger() for an in-memory ledger"
            )
        if synchronous.upper() not in ("OFF", "NORMAL", "FULL", "EXTRA"):
            raise ConfigurationError(
                f"synchronous must be OFF/NORMAL/FULL/EXTRA, got {synchronous!r}"
            )
        self.path = str(Path(p).expanduser())
        self._busy_ms = int(busy_timeout * 1000)
        self._synchronous = synchronous.upper()
        self._batch = batch
        self._read_only = read_only
        self._closed = False
        self._wlock = threading.Lock()  # the writer connection
        self._rlock = threading.Lock()  # the reader connection
        self._wconn: sqlite3.Connection | None = None
        self._rconn: sqlite3.Connection | None = None
        if read_only:
            self._rconn = self._open_read_only()
        else:
            self._wconn = self._open_read_write()
        _live_stores.add(self)
        self._setup_writing(
            name="tokenward-sqlite-ledger",
            batch=batch,
            batch_size=batch_size,
            flush_interval=flush_interval,
            max_queue=max_queue,
            block_timeout=block_timeout,
            drain_timeout=busy_timeout + 5.0 if drain_timeout is None else drain_timeout,
            dead_letter_path=os.fspath(dead_letter_path or self.path + ".dead-letters.jsonl"),
        )

    def __repr__(self) -> str:
        mode = ", read_only=True" if self._read_only else f", batch={self._batch}"
        return f"SQLiteLedger({self.path!r}{mode})"

    # -- connections & schema -------------------------------------------------------------

    def _connect(self, target: str, *, uri: bool = False) -> sqlite3.Connection:
        try:
            return sqlite3.connect(
                target,
                timeout=self._busy_ms / 1000,
                isolation_level=None,
                check_same_thread=False,
                uri=uri,
            )
        except (sqlite3.Error, OSError) as exc:
            raise map_error(exc, self.path, "open") from exc

    def _pragmas(self, conn: sqlite3.Connection, *, writer: bool) -> None:
        conn.execute(f"PRAGMA busy_timeout = {self._busy_ms}")
        conn.execute("PRAGMA temp_store = MEMORY")  # GROUP BY sorts stay in memory
        # Page cache (allocated as used): the writer keeps a batch's index and rollup
        # pages in memory until COMMIT instead of spilling to the WAL mid-transaction.
        conn.execute(f"PRAGMA cache_size = {_CACHE_KIB if writer else _READ_CACHE_KIB}")
        if writer:
            conn.execute(f"PRAGMA synchronous = {self._synchronous}")
            # Checkpoint every ~40 MB of WAL instead of every 4 MB (committed data is
            # unaffected; see the durability note); the WAL is truncated back to 64 MiB.
            conn.execute(f"PRAGMA wal_autocheckpoint = {_CHECKPOINT_PAGES}")
            conn.execute(f"PRAGMA journal_size_limit = {64 * 1024 * 1024}")

    def _open_read_write(self) -> sqlite3.Connection:
        directory = Path(self.path).parent
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise LedgerError(
                f"cannot create the directory of the ledger file {self.path!r}: "
                f"{describe(exc)}. Fix: create it or make it writable, or point the "
                "ledger at a writable path (TOKENWARD_DB / ledger=...).",
                code="ledger-read-only",
            ) from exc
        exists = os.path.exists(self.path)
        if not os.access(self.path if exists else directory, os.W_OK):
            what = "file" if exists else "directory of the ledger file"
            raise LedgerError(
                f"the {what} {self.path if exists else str(directory)!r} is not writable by "
                "this process. Fix: make it writable, point the ledger at a writable path "
                "(TOKENWARD_DB / ledger=...), or open it with read_only=True to only read it.",
                code="ledger-read-only",
            )
        conn = self._connect(self.path)
        try:
            conn.execute(f"PRAGMA busy_timeout = {self._busy_ms}")
            # everything that could refuse the file is read before anything is written
            self._check_schema(conn, for_writing=True)
            # WAL is persistent: set it once; the pragma reports the mode in effect
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":  # pragma: no cover - e.g. a read-only medium
                raise LedgerError(f"could not switch {self.path!r} to WAL mode (got {mode!r})")
            if self._schema_state(conn)[0] != SCHEMA_VERSION:  # else no write lock needed
                self._init_schema(conn)
            self._pragmas(conn, writer=True)
        except BaseException as exc:
            conn.close()
            if isinstance(exc, (sqlite3.Error, OSError)):
                raise map_error(exc, self.path, "setup") from exc
            raise
        return conn

    def _open_read_only(self) -> sqlite3.Connection:
        if not os.path.exists(self.path):
            raise LedgerError(
                f"no ledger at {self.path!r} (opened read-only, so nothing was created). "
                "Fix: check the path, or record events to it first.",
                code="ledger-missing",
            )
        uri = f"file:{urllib.parse.quote(os.path.abspath(self.path))}?mode=ro"
        conn = self._connect(uri, uri=True)
        try:
            self._check_schema(conn, for_writing=False)
            self._pragmas(conn, writer=False)
        except BaseException as exc:
            conn.close()
            if isinstance(exc, (sqlite3.Error, OSError)):
                raise map_error(exc, self.path, "read-only open") from exc
            raise
        return conn

    def _schema_state(self, conn: sqlite3.Connection) -> tuple[int, bool]:
        """``(schema version, whether an events table exists)``: reads only."""
        tables = {
            r[0]
            for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name IN (?, ?)",
                (VERSION_TABLE, EVENTS),
            )
        }
        current = 0
        if VERSION_TABLE in tables:
            current = conn.execute(f"SELECT MAX(version) FROM {VERSION_TABLE}").fetchone()[0] or 0
        return int(current), EVENTS in tables

    def _check_schema(self, conn: sqlite3.Connection, *, for_writing: bool) -> None:
        current, has_events = self._schema_state(conn)
        if current > SCHEMA_VERSION:
            raise LedgerError(
                f"the ledger {self.path!r} has schema version {current}, written by a newer "
                f"tokenward (this one understands up to {SCHEMA_VERSION}). Upgrade tokenward "
                "(`pip install -U tokenward`); the file was not modified.",
                code="ledger-schema-newer",
            )
        if current == 0 and has_events:
            raise LedgerError(
                f"{self.path!r} has a {EVENTS} table but no {VERSION_TABLE}; it was not "
                "created by tokenward and was not modified. Use another path.",
                code="ledger-schema-unknown",
            )
        if for_writing:
            return
        if current == 0:
            raise LedgerError(
                f"{self.path!r} is not a tokenward ledger (no {VERSION_TABLE} table); "
                "opened read-only, nothing was created in it. Fix: pass the path of a "
                "ledger tokenward wrote (TOKENWARD_DB, --db).",
                code="ledger-schema-unknown",
            )
        if current < SCHEMA_VERSION:
            raise LedgerError(
                f"the ledger {self.path!r} has schema version {current}, older than this "
                f"tokenward's {SCHEMA_VERSION}, and was opened read-only. Fix: open it once "
                "read-write (e.g. `open_ledger(path).close()`) to migrate it.",
                code="ledger-schema-older",
            )

    def _init_schema(self, conn: sqlite3.Connection) -> None:
        conn.execute("BEGIN IMMEDIATE")
        try:
            self._check_schema(conn, for_writing=True)  # again, under the write lock
            current, _ = self._schema_state(conn)
            now = datetime.now(timezone.utc).isoformat()
            if current == 0:
                for stmt in ddl("sqlite"):
                    conn.execute(stmt)
                conn.execute(
                    f"INSERT INTO {VERSION_TABLE} (version, applied_at, note) VALUES (?, ?, ?)",
                    (SCHEMA_VERSION, now, "initial schema"),
                )
            else:
                for version in range(current + 1, SCHEMA_VERSION + 1):
                    for stmt in _MIGRATIONS[version]:
                        conn.execute(stmt)
                    conn.execute(
                        f"INSERT INTO {VERSION_TABLE} (version, applied_at, note) VALUES (?, ?, ?)",
                        (version, now, "migration"),
                    )
            conn.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise

    def _writer_conn(self) -> sqlite3.Connection:
        conn = self._wconn
        if conn is None:
            conn = self._wconn = self._connect(self.path)
            self._pragmas(conn, writer=True)
        return conn

    def _reader_conn(self) -> sqlite3.Connection:
        conn = self._rconn
        if conn is None:
            conn = self._rconn = self._connect(self.path)
            self._pragmas(conn, writer=False)
        return conn

    def _after_fork_in_child(self) -> None:
        # SQLite connections must not cross fork(): leave the parent's alone (closing
        # them here could release the parent's locks) and open fresh ones on first use
        for conn in (self._wconn, self._rconn):
            if conn is not None:
                _abandoned.append(conn)
        self._wconn = self._rconn = None
        self._wlock = threading.Lock()
        self._rlock = threading.Lock()

    @contextlib.contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        try:
            yield
        except (sqlite3.Error, OSError, OverflowError, UnicodeEncodeError, ValueError) as exc:
            raise map_error(exc, self.path, action) from exc

    # -- writing --------------------------------------------------------------------------

    def _insert_rows(self, rows: list[Row]) -> None:
        """The rows (ids unique) and their rollup deltas, in one transaction."""
        # before taking the lock: assumes every row is new
        grouped, rowwise = _ROLLUPS.grouped(rows)
        with self._wlock, self._errors("write"):
            conn = self._writer_conn()
            conn.execute("BEGIN IMMEDIATE")
            try:
                through, before = conn.execute(_WRITE_STATE).fetchone()
                through = self._compact_monthly(conn, int(through))
                changes = conn.total_changes
                _insert_events(conn, rows)
                if conn.total_changes - changes != len(rows):  # some ids were stored already
                    new = {
                        r[0]
                        for r in conn.execute(f"SELECT id FROM {EVENTS} WHERE rowid > ?", (before,))
                    }
                    grouped, rowwise = _ROLLUPS.grouped([r for r in rows if r[0] in new])
                for sql, params in grouped:
                    conn.executemany(sql, params)
                for sql in rowwise:
                    conn.execute(sql, {"before": before})
                late_before = (through + 1) * _DAY_US
                if min(map(_TS_OF, rows)) < late_before:  # else no row is late: skip the scan
                    for sql in _ROLLUPS.late:
                        conn.execute(sql, {"before": before, "late_before": late_before})
                conn.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                raise

    @staticmethod
    def _compact_monthly(conn: sqlite3.Connection, through: int) -> int:
        """Add the days that ended since the last compaction (the monthly rollups hold the
        days up to ``through``) to the monthly rollups, in the caller's write transaction;
        returns the last day they now hold."""
        upto = int(time.time() // 86_400) - 1  # yesterday (UTC)
        if upto > through:
            for sql in _ROLLUPS.compact:
                conn.execute(sql, {"through": through, "upto": upto})
            conn.execute(_ROLLUPS.set_through, (upto,))
            through = upto
        return through

    _scan_source = f"{EVENTS} NOT INDEXED"

    def _prefer_scan(self, since: datetime | None, until: datetime | None) -> bool:
        """SQLite has no statistics to weigh the time index against a scan: through the
        index, every event of the range costs a random read of its row, about twenty times a
        scanned one, so a range holding more than a twentieth of the events is scanned (the
        counts come from the rollups)."""
        if since is None and until is None:
            return True
        total = self.count()
        return total > 0 and self.count(since, until) * 20 > total

    def _monthly_limit(self) -> int | None:
        return int(self._fetch(_ROLLUPS.read_through, {})[0][0]) + 1

    def _insert_dead_letters(self, rows: list[tuple[int, str, str, str]]) -> None:
        with self._wlock, self._errors("dead-letter write"):
            conn = self._writer_conn()
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.executemany(f"INSERT INTO {DEAD_LETTERS} VALUES (?, ?, ?, ?)", rows)
                conn.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                raise

    def _upsert_state(self, namespace: str, key: str, value: str, updated_us: int) -> None:
        with self._wlock, self._errors("state write"):
            self._writer_conn().execute(
                f"INSERT INTO {STATE} (namespace, key, value, updated_us) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (namespace, key) DO UPDATE SET value = excluded.value, "
                "updated_us = excluded.updated_us",
                (namespace, key, value, updated_us),
            )

    def _release(self) -> None:
        with self._wlock, self._rlock:
            for conn in (self._wconn, self._rconn):
                if conn is not None:
                    with contextlib.suppress(sqlite3.Error):
                        conn.close()

    def __enter__(self) -> SQLiteLedger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reading --------------------------------------------------------------------------

    def _fetch(self, sql: str, params: Mapping[str, Any]) -> list[Sequence[Any]]:
        if self._closed:
            raise LedgerError("this ledger is closed; open a new one to query it")
        with self._rlock, self._errors("query"):
            return self._reader_conn().execute(sql, params).fetchall()

    def _tag_expr(self, param: str) -> str:
        return f"json_extract(tags, :{param})"

    def _tag_param(self, key: str) -> str:
        return f'$."{key}"'

    def rebuild_rollups(self) -> None:
        """Recompute every rollup table from the events, in one transaction.

        Needed after rows were inserted, edited or deleted in ``tokenward_events``
        by other means than this store. This is also the bulk-load path for large
        imports: insert the rows (``EVENT_COLUMNS`` order, ``INSERT OR IGNORE`` keeps
        ids unique) into ``tokenward_events`` in one transaction, optionally dropping
        its secondary indexes first and recreating them afterwards, then call
        ``rebuild_rollups()`` once.
        """
        self._check_writable("rebuild rollups")
        self.flush()
        with self._wlock, self._errors("rollup rebuild"):
            conn = self._writer_conn()
            conn.execute("BEGIN IMMEDIATE")
            try:
                for stmt in rebuild_rollup_sql("sqlite"):
                    conn.execute(stmt)
                # the monthly rollups now hold every event
                last = conn.execute(f"SELECT coalesce(max(ts_us) / {_DAY_US}, -1) FROM {EVENTS}")
                conn.execute(_ROLLUPS.set_through, (last.fetchone()[0],))
                conn.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                raise

    def schema_version(self) -> int:
        """The schema version of the file."""
        return int(self._fetch(f"SELECT MAX(version) FROM {VERSION_TABLE}", {})[0][0])


_held_at_fork: list[threading.Lock] = []


def _before_fork() -> None:
    # let a write or query in progress finish first: forking in the middle of a SQLite
    # call could copy a mutex SQLite holds into the child (bounded wait: best effort)
    for store in list(_live_stores):
        for lock in (store._wlock, store._rlock):
            if lock.acquire(timeout=5.0):
                _held_at_fork.append(lock)


def _after_fork_in_parent() -> None:
    while _held_at_fork:
        _held_at_fork.pop().release()


def _after_fork_in_child() -> None:
    _held_at_fork.clear()  # the child gets fresh locks
    for store in list(_live_stores):
        store._after_fork_in_child()


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(
        before=_before_fork,
        after_in_parent=_after_fork_in_parent,
        after_in_child=_after_fork_in_child,
    )
