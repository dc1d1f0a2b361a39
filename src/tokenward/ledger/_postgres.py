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

See ``docs/ledger-migrations.md`` for the rules migrations follow.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

from tokenward.errors import ConfigurationError, IntegrationUnavailableError, LedgerError
from tokenward.ledger._event import EVENT_COLUMNS, UsageEvent, event_to_row
from tokenward.ledger._sqlcommon import (
    EVENTS,
    ROLLUP_SOURCE_COLUMNS,
    SCHEMA_VERSION,
    STAGE,
    VERSION_TABLE,
    WRITE_ROLLUPS,
    _SQLQueries,
    ddl,
    rebuild_rollup_sql,
    rollup_upsert_sql,
)
from tokenward.ledger._writer import _BatchWriter

__all__ = ["SQLLedger"]

_LOCK_KEY = 0x746F6B776172
_RETRY_SQLSTATES = (
    "40P01",
    "40001",
)  # deadlock detected, serialization failure  # "tokwar": advisory lock id for schema changes

#: Migrations from version N-1 to N: ``{N: [statements]}``. Version 1 is the base schema.
_MIGRATIONS: dict[int, list[str]] = {}


_STAGE_DDL = (
    f"CREATE TEMP TABLE IF NOT EXISTS {STAGE} "
    f"(LIKE {EVENTS} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
)
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


class SQLLedger(_SQLQueries):
    """Events in PostgreSQL, shared by every process and machine that points at it.

    Args:
        url: ``postgresql://user:password@host:5432/db`` (``postgres://`` and
            explicit drivers such as ``postgresql+psycopg://`` work too), or a
            SQLAlchemy ``Engine``.
        batch: ``True`` (default) queues events for a background writer that
            inserts each batch with one statement; ``False`` writes synchronously.
        batch_size, flush_interval: as for :class:`SQLiteLedger`.
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
        flush_interval: float = 0.1,
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
        self._closed = False
        self._init_schema()
        self._writer = (
            _BatchWriter(
                self._write,
                name="tokenward-sql-ledger",
                max_batch=batch_size,
                max_delay=flush_interval,
            )
            if batch
            else None
        )

    def __repr__(self) -> str:
        return f"SQLLedger({self._engine.url.render_as_string(hide_password=True)!r})"

    @contextlib.contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        try:
            yield
        except LedgerError:
            raise
        except (self._sa.exc.SQLAlchemyError, *self._driver_errors) as exc:
            raise LedgerError(
                f"ledger {action} failed on {self._engine.url.render_as_string(hide_password=True)}:"
                f" {exc.__class__.__name__}: {str(exc).splitlines()[0]}"
            ) from exc

    def _init_schema(self) -> None:
        text = self._sa.text
        with self._errors("schema setup"), self._engine.begin() as conn:
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK_KEY})
            exists = conn.execute(
                text("SELECT to_regclass(:t) IS NOT NULL"), {"t": VERSION_TABLE}
            ).scalar()
            current = 0
            if exists:
                current = (
                    conn.execute(text(f"SELECT MAX(version) FROM {VERSION_TABLE}")).scalar() or 0
                )
            if current > SCHEMA_VERSION:
                raise LedgerError(
                    f"the ledger database has schema version {current}, written by a newer "
                    f"tokenward (this one understands up to {SCHEMA_VERSION}). Upgrade "
                    "tokenward (`pip install -U tokenward`); nothing was modified.",
                    code="ledger-schema-newer",
                )
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

    # -- writing --------------------------------------------------------------------------

    def _write(self, events: Sequence[UsageEvent]) -> None:
        unique: dict[str, UsageEvent] = {}
        for e in events:
            unique.setdefault(e.id, e)
        rows = [event_to_row(e) for e in unique.values()]
        for attempt in range(5):
            try:
                self._write_rows(rows)
                return
            except LedgerError as exc:
                cause = exc.__cause__
                code = getattr(cause, "sqlstate", None) or getattr(
                    getattr(cause, "orig", None), "sqlstate", None
                )
                if code not in _RETRY_SQLSTATES or attempt == 4:
                    raise
                time.sleep(0.01 * (attempt + 1))  # deadlock / serialization: safe to retry

    def _write_rows(self, rows: list[tuple[Any, ...]]) -> None:
        with self._errors("write"), self._engine.begin() as conn:
            # COPY the batch into a per-connection temp table (psycopg's fast path), then
            # move it with one INSERT ... ON CONFLICT DO NOTHING + rollup upserts.
            dbapi = conn.connection.driver_connection
            cur = dbapi.cursor()
            cur.execute(_STAGE_DDL)
            with cur.copy(_COPY_SQL) as copy:
                for row in rows:
                    copy.write_row(row)
            conn.execute(self._insert)

    def close(self) -> None:
        """Flush, stop the writer and dispose of the engine (if this object created it)."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._writer is not None:
                self._writer.close()
        finally:
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
            return [tuple(r) for r in conn.execute(self._sa.text(sql), dict(params))]

    def _tag_expr(self, param: str) -> str:
        return f"(CAST(tags AS jsonb) ->> CAST(:{param} AS text))"

    def _tag_param(self, key: str) -> str:
        return key

    def rebuild_rollups(self) -> None:
        """Recompute every rollup table from the events (after rows were written to
        ``tokenward_events`` by other means, e.g. a bulk ``COPY``), in one transaction."""
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
