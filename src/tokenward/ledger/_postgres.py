"""SQLLedger: a shared ledger in PostgreSQL (SQLAlchemy Core + psycopg 3).

Schema and migrations
---------------------
The schema is created on first use (``CREATE TABLE IF NOT EXISTS``) inside a
transaction holding a PostgreSQL advisory lock, so several processes can start
at once. ``tokenward_schema_version`` records every applied version (one row
each). On connect the store reads ``MAX(version)``:

* missing -> the tables are created and version 1 recorded;
* lower than this release's ``SCHEMA_VERSION`` -> the pending migrations run in
  order, each in the same locked transaction, and are recorded;
* higher -> :class:`~tokenward.errors.LedgerError`: a newer tokenward wrote this
  database; upgrade instead of writing rows an older schema would misread.

With ``read_only=True`` nothing is created or migrated: every query runs in a
``READ ONLY`` transaction, and a database without a current tokenward schema is refused.

Batches are written with ``COPY`` (psycopg 3 ``cursor.copy``) into a temporary stage
table, then one statement inserts them (duplicates skipped) and adds exactly the
inserted rows to every rollup.

See ``docs/ledger-migrations.md`` for the rules migrations follow.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
import weakref
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

from tokenward.errors import (
    ConfigurationError,
    IntegrationUnavailableError,
    LedgerError,
    LedgerUnavailableError,
    LedgerValueError,
)
from tokenward.ledger._deadletter import describe
from tokenward.ledger._event import EVENT_COLUMNS
from tokenward.ledger._sqlcommon import (
    DEAD_LETTERS,
    EVENTS,
    ROLLUP_SOURCE_COLUMNS,
    SCHEMA_VERSION,
    STAGE,
    STATE,
    VERSION_TABLE,
    WRITE_ROLLUPS,
    ddl,
    migrations,
    rebuild_rollup_sql,
    rollup_upsert_sql,
)
from tokenward.ledger._sqlstore import Row, SQLStore

__all__ = ["SQLLedger"]

_LOCK_KEY = 0x746F6B776172  # "tokwar": advisory lock id for schema changes
_RETRY_SQLSTATES = ("40P01", "40001")  # deadlock detected, serialization failure
#: SQLSTATE classes that mean "this value": data exception, integrity, program limit
#: (e.g. an index row too large)
_VALUE_CLASSES = ("22", "23", "54")
#: SQLSTATE classes that mean "the server is unavailable": connection exception,
#: insufficient resources, operator intervention (shutdown), system error
_UNAVAILABLE_CLASSES = ("08", "53", "57", "58")

#: Migrations from version N-1 to N: ``{N: [statements]}``.
_MIGRATIONS = migrations("postgresql")

_live_stores: weakref.WeakSet[SQLLedger] = weakref.WeakSet()


_STAGE_DDL = (
    f"CREATE TEMP TABLE IF NOT EXISTS {STAGE} "
    f"(LIKE {EVENTS} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
)
#: key in a pooled connection's ``info``: its session has the stage table
_STAGE_READY = "tokenward_stage_ready"
_COPY_SQL = f"COPY {STAGE} ({', '.join(EVENT_COLUMNS)}) FROM STDIN"


def _insert_sql() -> str:
    """One statement after the batch was COPYed into the temp stage table: insert it
    (ordered by id, duplicates skipped) and add exactly the inserted rows to every
    rollup, each in key order so concurrent writers lock rows in the same order."""
    cols = ", ".join(EVENT_COLUMNS)
    ctes = [
        f"""ins AS (
  INSERT INTO {EVENTS} ({cols})
  SELECT {cols} FROM {STAGE} ORDER BY id COLLATE "C"
  ON CONFLICT (id) DO NOTHING
  RETURNING {", ".join(ROLLUP_SOURCE_COLUMNS)}
)"""
    ]
    *first, last = WRITE_ROLLUPS
    for i, (table, dims, period) in enumerate(first):
        ctes.append(f"r{i} AS ({rollup_upsert_sql(table, dims, 'ins', 'postgresql', period)})")
    return (
        "WITH "
        + ",\n".join(ctes)
        + "\n"
        + rollup_upsert_sql(last[0], last[1], "ins", "postgresql", last[2])
    )


def normalize_url(url: str) -> str:
    """``postgres://`` / ``postgresql://`` -> ``postgresql+psycopg://`` (psycopg 3)."""
    m = re.match(r"^(postgres|postgresql)(\+[a-z0-9_]+)?://", url)
    if not m:
        raise ConfigurationError(
            f"SQLLedger needs a PostgreSQL URL (postgresql://user:pass@host/db), got {url!r}"
        )
    if m.group(2):
        return url
    return "postgresql+psycopg://" + url[m.end() :]


def _sqlstate(exc: BaseException) -> str:
    for candidate in (exc, getattr(exc, "orig", None), exc.__cause__):
        state = getattr(candidate, "sqlstate", None)
        if state:
            return str(state)
    return ""


class SQLLedger(SQLStore):
    """Events in PostgreSQL, shared by every process and machine that points at it.

    Args:
        url: ``postgresql://user:password@host:5432/db`` (``postgres://`` and
            explicit drivers such as ``postgresql+psycopg://`` work too), or a
            SQLAlchemy ``Engine``.
        batch: ``True`` (default) queues events for a background writer (see
            :class:`SQLiteLedger` for the durability and backpressure rules, the same
            here); ``False`` writes synchronously.
        batch_size, flush_interval, max_queue, block_timeout: as for :class:`SQLiteLedger`.
        read_only: queries only, each in a ``READ ONLY`` transaction; nothing is created.
        drain_timeout: seconds ``close()`` and exit keep retrying queued events (30 s).
        dead_letter_path: the dead-letter file (default ``$TOKENWARD_DEAD_LETTERS`` or
            ``./.tokenward/ledger-dead-letters.jsonl``).
        engine_kwargs: passed to ``sqlalchemy.create_engine``.

    Needs the ``postgres`` extra: ``pip install "tokenward[postgres]"``.
    """

    _id_col = 'id COLLATE "C"'

    def __init__(
        self,
        url: Any,
        *,
        batch: bool = True,
        batch_size: int = 20_000,
        flush_interval: float = 0.03,
        read_only: bool = False,
        max_queue: int = 50_000,
        block_timeout: float = 1.0,
        drain_timeout: float = 30.0,
        dead_letter_path: str | os.PathLike[str] | None = None,
        engine_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        try:
            import sqlalchemy
        except ImportError as exc:  # pragma: no cover - exercised without the extra
            raise IntegrationUnavailableError("sqlalchemy", "postgres") from exc
        self._sa = sqlalchemy
        try:
            import psycopg

            self._driver_errors: tuple[type[BaseException], ...] = (psycopg.Error,)
        except ImportError:  # pragma: no cover
            self._driver_errors = ()
        if isinstance(url, str):
            try:
                import psycopg
            except ImportError as exc:  # pragma: no cover
                raise IntegrationUnavailableError("psycopg", "postgres") from exc
            kwargs = {"pool_pre_ping": True, **(engine_kwargs or {})}
            self._engine = sqlalchemy.create_engine(normalize_url(url), **kwargs)
            self._owns_engine = True
        else:
            self._engine = url
            self._owns_engine = False
        if self._engine.dialect.name != "postgresql":
            raise ConfigurationError(
                f"SQLLedger supports PostgreSQL only, got {self._engine.dialect.name!r}; "
                "use SQLiteLedger(path) for SQLite"
            )
        self._insert = sqlalchemy.text(_insert_sql())
        self._batch = batch
        self._read_only = read_only
        self._closed = False
        self._init_schema()
        _live_stores.add(self)
        self._setup_writing(
            name="tokenward-sql-ledger",
            batch=batch,
            batch_size=batch_size,
            flush_interval=flush_interval,
            max_queue=max_queue,
            block_timeout=block_timeout,
            drain_timeout=drain_timeout,
            dead_letter_path=os.fspath(
                dead_letter_path
                or os.environ.get("TOKENWARD_DEAD_LETTERS")
                or os.path.join(".tokenward", "ledger-dead-letters.jsonl")
            ),
        )

    def __repr__(self) -> str:
        return f"SQLLedger({self._url_text()!r}{', read_only=True' if self._read_only else ''})"

    def _url_text(self) -> str:
        return str(self._engine.url.render_as_string(hide_password=True))

    def _map_error(self, exc: BaseException, action: str) -> LedgerError:
        """A driver error as the :class:`LedgerError` the user should see."""
        if isinstance(exc, LedgerError):
            return exc
        where = f"ledger {action} on {self._url_text()}"
        state = _sqlstate(exc)
        orig = getattr(exc, "orig", None) or exc
        import psycopg

        if (
            state[:2] in _VALUE_CLASSES
            or isinstance(orig, (UnicodeEncodeError, OverflowError, psycopg.DataError))
            or (not state and isinstance(orig, ValueError))
        ):
            return LedgerValueError(f"{where}: the database refused a value: {describe(orig)}")
        unavailable = (
            self._sa.exc.OperationalError,
            self._sa.exc.InterfaceError,
            self._sa.exc.DisconnectionError,
            self._sa.exc.TimeoutError,
            psycopg.OperationalError,
            psycopg.InterfaceError,
            OSError,
        )
        if (
            state[:2] in _UNAVAILABLE_CLASSES
            or state in _RETRY_SQLSTATES
            or (not state and isinstance(exc, unavailable))
        ):
            return LedgerUnavailableError(
                f"{where} failed: {describe(orig)}. Fix: check that the server is up and "
                "reachable with this URL."
            )
        return LedgerError(f"{where} failed: {describe(orig)}")

    @contextlib.contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        caught: tuple[type[BaseException], ...] = (
            self._sa.exc.SQLAlchemyError,
            *self._driver_errors,
            OSError,
            UnicodeEncodeError,
            OverflowError,
            ValueError,
        )
        try:
            yield
        except caught as exc:
            raise self._map_error(exc, action) from exc

    def _init_schema(self) -> None:
        text = self._sa.text
        if self._read_only:
            with self._errors("read-only open"), self._engine.connect() as conn:
                conn.exec_driver_sql("SET TRANSACTION READ ONLY")
                self._check_version(conn, for_writing=False)
            return
        with self._errors("schema setup"), self._engine.begin() as conn:
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK_KEY})
            current = self._check_version(conn, for_writing=True)
            now = datetime.now(timezone.utc).isoformat()
            if current == 0:
                for stmt in ddl("postgresql"):
                    conn.execute(text(stmt))
                conn.execute(
                    text(
                        f"INSERT INTO {VERSION_TABLE} (version, applied_at, note) "
                        "VALUES (:v, :at, 'initial schema')"
                    ),
                    {"v": SCHEMA_VERSION, "at": now},
                )
            else:
                for version in range(current + 1, SCHEMA_VERSION + 1):
                    for stmt in _MIGRATIONS[version]:
                        conn.execute(text(stmt))
                    conn.execute(
                        text(
                            f"INSERT INTO {VERSION_TABLE} (version, applied_at, note) "
                            "VALUES (:v, :at, 'migration')"
                        ),
                        {"v": version, "at": now},
                    )

    def _check_version(self, conn: Any, *, for_writing: bool) -> int:
        text = self._sa.text
        exists = conn.execute(
            text("SELECT to_regclass(:t) IS NOT NULL"), {"t": VERSION_TABLE}
        ).scalar()
        current = 0
        if exists:
            current = conn.execute(text(f"SELECT MAX(version) FROM {VERSION_TABLE}")).scalar() or 0
        if current > SCHEMA_VERSION:
            raise LedgerError(
                f"the ledger database has schema version {current}, written by a newer "
                f"tokenward (this one understands up to {SCHEMA_VERSION}). Upgrade "
                "tokenward (`pip install -U tokenward`); nothing was modified.",
                code="ledger-schema-newer",
            )
        if not for_writing and current == 0:
            raise LedgerError(
                f"{self._url_text()} holds no tokenward ledger (no {VERSION_TABLE} table); "
                "opened read-only, nothing was created. Fix: point at the database your "
                "app records to.",
                code="ledger-schema-unknown",
            )
        if not for_writing and current < SCHEMA_VERSION:
            raise LedgerError(
                f"the ledger database has schema version {current}, older than this "
                f"tokenward's {SCHEMA_VERSION}, and was opened read-only. Fix: open it once "
                "read-write (e.g. `open_ledger(url).close()`) to migrate it.",
                code="ledger-schema-older",
            )
        return int(current)

    def _after_fork_in_child(self) -> None:
        # pooled connections must not be shared with the parent: drop them unclosed
        self._engine.dispose(close=False)

    # -- writing --------------------------------------------------------------------------

    def _insert_rows(self, rows: list[Row]) -> None:
        for attempt in range(5):
            try:
                self._copy_rows(rows)
                return
            except LedgerUnavailableError as exc:
                if _sqlstate(exc.__cause__ or exc) not in _RETRY_SQLSTATES or attempt == 4:
                    raise
                time.sleep(0.01 * (attempt + 1))  # deadlock / serialization: safe to retry

    def _copy_rows(self, rows: list[Row]) -> None:
        info: dict[Any, Any] = {}
        with self._errors("write"), self._engine.begin() as conn:
            # COPY the batch into a per-connection temp table (psycopg's fast path), then
            # move it with one INSERT ... ON CONFLICT DO NOTHING + rollup upserts.
            info = conn.connection.info
            driver = conn.connection.driver_connection
            assert driver is not None  # a checked-out connection always has one
            cur = driver.cursor()
            if not info.get(_STAGE_READY):  # once per session (committed below)
                cur.execute(_STAGE_DDL)
            with cur.copy(_COPY_SQL) as copy:
                for row in rows:
                    copy.write_row(row)
            conn.execute(self._insert)
        info[_STAGE_READY] = True  # committed: the session keeps its temp table

    def _insert_dead_letters(self, rows: list[tuple[int, str, str, str]]) -> None:
        with self._errors("dead-letter write"), self._engine.begin() as conn:
            conn.execute(
                self._sa.text(
                    f"INSERT INTO {DEAD_LETTERS} (at_us, event_id, reason, event) "
                    "VALUES (:at, :id, :reason, :event)"
                ),
                [{"at": a, "id": i, "reason": r, "event": e} for a, i, r, e in rows],
            )

    def _upsert_state(self, namespace: str, key: str, value: str, updated_us: int) -> None:
        with self._errors("state write"), self._engine.begin() as conn:
            conn.execute(
                self._sa.text(
                    f"INSERT INTO {STATE} (namespace, key, value, updated_us) "
                    "VALUES (:ns, :key, :value, :at) ON CONFLICT (namespace, key) DO UPDATE "
                    "SET value = excluded.value, updated_us = excluded.updated_us"
                ),
                {"ns": namespace, "key": key, "value": value, "at": updated_us},
            )

    def _release(self) -> None:
        if self._owns_engine:
            self._engine.dispose()

    def __enter__(self) -> SQLLedger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reading --------------------------------------------------------------------------

    def _fetch(self, sql: str, params: Mapping[str, Any]) -> list[Sequence[Any]]:
        if self._closed:
            raise LedgerError("this ledger is closed; open a new one to query it")
        with self._errors("query"), self._engine.connect() as conn:
            if self._read_only:
                conn.exec_driver_sql("SET TRANSACTION READ ONLY")
            return [tuple(r) for r in conn.execute(self._sa.text(sql), dict(params))]

    def _tag_expr(self, param: str) -> str:
        return f"(CAST(tags AS jsonb) ->> CAST(:{param} AS text))"

    def _tag_param(self, key: str) -> str:
        return key

    def rebuild_rollups(self) -> None:
        """Recompute every rollup table from the events (after rows were written to
        ``tokenward_events`` by other means, e.g. a bulk ``COPY``), in one transaction."""
        self._check_writable("rebuild rollups")
        self.flush()
        text = self._sa.text
        with self._errors("rollup rebuild"), self._engine.begin() as conn:
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK_KEY})
            conn.execute(text(f"LOCK TABLE {EVENTS} IN SHARE MODE"))
            for stmt in rebuild_rollup_sql("postgresql"):
                conn.execute(text(stmt))

    def schema_version(self) -> int:
        """The schema version of the database."""
        return int(self._fetch(f"SELECT MAX(version) FROM {VERSION_TABLE}", {})[0][0])


def _after_fork_in_child() -> None:
    for store in list(_live_stores):
        store._after_fork_in_child()


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_after_fork_in_child)
