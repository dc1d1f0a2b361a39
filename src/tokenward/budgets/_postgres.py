"""PostgreSQL budget store (psycopg 3): every operation is one statement, one round trip.

``reserve`` and ``commit`` are PL/pgSQL functions created with the tables. Each runs in the
one implicit transaction of its statement:

* both first take a transaction-level advisory lock per budget+scope (``lock_key``: the
  counter key, or one lock for all buckets of a rolling window), in ascending lock-id order
  so reservations touching several budgets never deadlock. Reserves and commits on one
  budget+scope are therefore serialised, and no counter row is written just to lock it;
* ``reserve`` then reads committed spend and live reservations of every item in ONE
  statement (one snapshot, taken after the locks), checks every limit and inserts the
  reservation rows, or returns which item did not fit and writes nothing;
* ``commit`` records the reservation id (a replayed commit finds it and changes nothing),
  deletes the reservation, upserts the spend, reads the new spend of every item and records
  the threshold markers that spend reached, returning those it recorded first.

Reserved amounts are rows with an expiry: expired rows simply stop counting (a crashed
process cannot leak budget); ``expire()`` deletes them. Connections are kept in a small
per-process free list (autocommit, so no ``BEGIN``/``COMMIT`` round trips). A pooled
connection that turns out dead (server restarted) is replaced and the call retried once on a
new connection; every operation is idempotent, so the retry is safe. Connection failures,
timeouts and a server shutting down raise ``BudgetStoreUnavailableError``; a value the
server rejects raises ``BudgetStoreError``.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Sequence
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
from tokenward.errors import (
    BudgetStoreError,
    BudgetStoreUnavailableError,
    ConfigurationError,
    IntegrationUnavailableError,
)

__all__ = ["PostgresBudgetStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS {p}counters (
    key text PRIMARY KEY, spent bigint NOT NULL DEFAULT 0, calls bigint NOT NULL DEFAULT 0,
    expires_at double precision);
CREATE TABLE IF NOT EXISTS {p}reservations (
    rid text NOT NULL, key text NOT NULL, amount bigint NOT NULL,
    expires_at double precision NOT NULL, PRIMARY KEY (rid, key));
CREATE INDEX IF NOT EXISTS {p}reservations_key ON {p}reservations (key, expires_at);
CREATE TABLE IF NOT EXISTS {p}markers (marker text PRIMARY KEY, expires_at double precision);
CREATE TABLE IF NOT EXISTS {p}commits (rid text PRIMARY KEY, expires_at double precision NOT NULL);

CREATE OR REPLACE FUNCTION {p}reserve_v2(
    p_rid text, p_now float8, p_exp float8, p_locks bigint[], p_keys text[],
    p_amounts bigint[], p_limits bigint[], p_rkeys text[], p_ritem int[])
RETURNS TABLE (o_failed int, o_spent bigint[], o_reserved bigint[])
LANGUAGE plpgsql AS $fn$
#variable_conflict use_column
DECLARE
    l bigint;
    i int;
    s bigint[];
    r bigint[];
BEGIN
    FOREACH l IN ARRAY p_locks LOOP
        PERFORM pg_advisory_xact_lock(l);
    END LOOP;
    -- one snapshot after the locks: committed spend and live reservations per item
    SELECT array_agg(t.s ORDER BY t.item), array_agg(t.r ORDER BY t.item) INTO s, r
    FROM (
        SELECT k.item,
            coalesce(sum((SELECT c.spent FROM {p}counters c WHERE c.key = k.key)), 0)::bigint AS s,
            coalesce(sum((SELECT sum(x.amount) FROM {p}reservations x WHERE x.key = k.key
                          AND x.expires_at > p_now AND x.rid <> p_rid)), 0)::bigint AS r
        FROM unnest(p_rkeys, p_ritem) AS k(key, item)
        GROUP BY k.item
    ) t;
    FOR i IN 1 .. cardinality(p_keys) LOOP
        IF p_limits[i] IS NOT NULL
           AND s[i]::numeric + r[i] + p_amounts[i] > p_limits[i] THEN
            RETURN QUERY SELECT i, s[1:i], r[1:i];
            RETURN;
        END IF;
    END LOOP;
    DELETE FROM {p}reservations x WHERE x.rid = p_rid;
    DELETE FROM {p}commits d WHERE d.rid = p_rid;
    INSERT INTO {p}reservations (rid, key, amount, expires_at)
        SELECT p_rid, t.k, sum(t.a), p_exp FROM unnest(p_keys, p_amounts) AS t(k, a) GROUP BY t.k;
    RETURN QUERY SELECT 0, s, r;
END
$fn$;

CREATE OR REPLACE FUNCTION {p}commit_v2(
    p_rid text, p_now float8, p_keep float8, p_locks bigint[], p_keys text[],
    p_amounts bigint[], p_exps float8[], p_rkeys text[], p_ritem int[],
    p_marks text[], p_mark_at bigint[], p_mark_item int[])
RETURNS TABLE (o_applied boolean, o_spent bigint[], o_fired text[])
LANGUAGE plpgsql AS $fn$
#variable_conflict use_column
DECLARE
    l bigint;
    s bigint[];
    f text[];
BEGIN
    INSERT INTO {p}commits AS d (rid, expires_at) VALUES (p_rid, p_keep)
        ON CONFLICT (rid) DO UPDATE SET expires_at = excluded.expires_at
        WHERE d.expires_at <= p_now;
    IF NOT FOUND THEN  -- committed before: a replay changes nothing
        RETURN QUERY SELECT false, NULL::bigint[], NULL::text[];
        RETURN;
    END IF;
    FOREACH l IN ARRAY p_locks LOOP
        PERFORM pg_advisory_xact_lock(l);
    END LOOP;
    DELETE FROM {p}reservations x WHERE x.rid = p_rid;
    INSERT INTO {p}counters AS c (key, spent, calls, expires_at)
        SELECT t.k, sum(t.a), count(*), max(t.e)
        FROM unnest(p_keys, p_amounts, p_exps) AS t(k, a, e) GROUP BY t.k
    ON CONFLICT (key) DO UPDATE SET spent = c.spent + excluded.spent,
        calls = c.calls + excluded.calls, expires_at = GREATEST(c.expires_at, excluded.expires_at);
    SELECT array_agg(t.s ORDER BY t.item) INTO s
    FROM (
        SELECT k.item, coalesce(sum(c.spent), 0)::bigint AS s
        FROM unnest(p_rkeys, p_ritem) AS k(key, item) LEFT JOIN {p}counters c ON c.key = k.key
        GROUP BY k.item
    ) t;
    IF cardinality(p_marks) > 0 THEN
        WITH fired AS (
            INSERT INTO {p}markers AS m (marker, expires_at)
                SELECT x.marker, p_exps[x.item]
                FROM unnest(p_marks, p_mark_at, p_mark_item) AS x(marker, at, item)
                WHERE s[x.item] >= x.at
            ON CONFLICT (marker) DO UPDATE SET expires_at = excluded.expires_at
                WHERE m.expires_at IS NOT NULL AND m.expires_at <= p_now
            RETURNING m.marker)
        SELECT array_agg(fired.marker) INTO f FROM fired;
    END IF;
    RETURN QUERY SELECT true, s, f;
END
$fn$;
"""

_RESERVE = (
    "SELECT * FROM {p}reserve_v2(%s, %s, %s, %s::bigint[], %s::text[], %s::bigint[], "
    "%s::bigint[], %s::text[], %s::int[])"
)
_COMMIT = (
    "SELECT * FROM {p}commit_v2(%s, %s, %s, %s::bigint[], %s::text[], %s::bigint[], "
    "%s::float8[], %s::text[], %s::int[], %s::text[], %s::bigint[], %s::int[])"
)
_RELEASE = "DELETE FROM {p}reservations WHERE rid = %s"
_EXTEND = (
    "UPDATE {p}reservations SET expires_at = GREATEST(expires_at, %s) "
    "WHERE rid = %s AND expires_at > %s"
)
_STATUS = (
    "SELECT k.key, coalesce(c.spent, 0), coalesce(c.calls, 0), "
    "coalesce((SELECT sum(x.amount) FROM {p}reservations x "
    "WHERE x.key = k.key AND x.expires_at > %s), 0) "
    "FROM unnest(%s::text[]) AS k(key) LEFT JOIN {p}counters c ON c.key = k.key"
)
_EXPIRE = (
    "WITH r AS (DELETE FROM {p}reservations WHERE expires_at <= %(now)s RETURNING 1), "
    "c AS (DELETE FROM {p}counters WHERE expires_at <= %(now)s RETURNING 1), "
    "m AS (DELETE FROM {p}markers WHERE expires_at <= %(now)s RETURNING 1), "
    "d AS (DELETE FROM {p}commits WHERE expires_at <= %(now)s RETURNING 1) "
    "SELECT (SELECT count(*) FROM r) + (SELECT count(*) FROM c) + (SELECT count(*) FROM m) "
    "+ (SELECT count(*) FROM d)"
)

# SQLSTATE classes/codes that mean the server cannot serve anyone right now
_UNAVAILABLE_CLASSES = ("08", "53", "57", "58")  # connection, resources, shutdown/timeout, I/O
_UNAVAILABLE_CODES = ("55P03", "25006")  # lock timeout, read-only server (failover)
_PREFIX = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,40}")


def _psycopg() -> Any:
    try:
        import psycopg
    except ImportError:
        raise IntegrationUnavailableError("psycopg", "postgres") from None
    return psycopg


def _conninfo(url: str | Any) -> str:
    """A libpq connection string from a ``postgresql://`` URL (also ``postgres://`` and
    SQLAlchemy's ``postgresql+driver://``) or an SQLAlchemy engine/URL object."""
    engine_url = getattr(url, "url", url)
    if not isinstance(engine_url, str) and hasattr(engine_url, "render_as_string"):
        url = engine_url.set(drivername="postgresql").render_as_string(hide_password=False)
    if not isinstance(url, str):
        raise ConfigurationError(
            f"PostgresBudgetStore needs a postgresql:// URL or an SQLAlchemy engine, got {url!r}."
        )
    scheme, sep, rest = url.partition("://")
    if sep and scheme.split("+", 1)[0].lower() in ("postgresql", "postgres"):
        return f"postgresql://{rest}"
    raise ConfigurationError(
        f"PostgresBudgetStore URL {url!r} must start with postgresql://user:pass@host/db."
    )


class PostgresBudgetStore:
    """Budget counters in PostgreSQL, shared by every process and machine using the database.

    Args:
        url: ``postgresql://user:pass@host/db`` (psycopg 3), or an SQLAlchemy engine whose
            URL is used.
        table_prefix: prefix of the four tables and two functions (created if missing); a
            SQL identifier.
        connect_timeout: seconds before an unreachable server counts as unavailable.
        statement_timeout: seconds a statement may wait (e.g. for a lock) before the store
            counts as unavailable.
        pool_size: idle connections kept per process (more are opened under load and closed
            when returned).
        synchronous_commit: ``False`` sets ``synchronous_commit=off`` on the store's sessions:
            faster commits; a server crash may lose the last few hundred ms of recorded spend
            and reservations (never corrupts counters).
        commit_retention: seconds a committed reservation id is remembered (replayed commits
            within it are applied once).
    """

    def __init__(
        self,
        url: str | Any,
        *,
        table_prefix: str = "tw_budget_",
        connect_timeout: int = 3,
        statement_timeout: float = 10.0,
        pool_size: int = 5,
        synchronous_commit: bool = True,
        commit_retention: float = DEFAULT_COMMIT_RETENTION,
    ) -> None:
        self._pg = _psycopg()
        self._conninfo = _conninfo(url)
        if not _PREFIX.fullmatch(table_prefix):
            raise ConfigurationError(
                f"table_prefix {table_prefix!r} must be a SQL identifier (letters, digits, _), "
                f"e.g. 'tw_budget_'."
            )
        options = f"-c statement_timeout={int(statement_timeout * 1000)}"
        if not synchronous_commit:
            options += " -c synchronous_commit=off"
        self._connect_kwargs: dict[str, Any] = {
            "autocommit": True,
            "connect_timeout": connect_timeout,
            "options": options,
        }
        self.table_prefix = table_prefix
        self.commit_retention = commit_retention
        self._pool_size = pool_size
        self._idle: list[Any] = []
        self._pid = os.getpid()
        self._lock_salt = table_prefix.encode()
        p = table_prefix
        self._sql = {
            name: sql.format(p=p)
            for name, sql in (
                ("reserve", _RESERVE),
                ("commit", _COMMIT),
                ("release", _RELEASE),
                ("extend", _EXTEND),
                ("status", _STATUS),
                ("expire", _EXPIRE),
            )
        }
        ddl = _SCHEMA.format(p=p)
        with self._errors():
            conn = self._connect()
            try:
                # serialise DDL between processes starting at the same time
                conn.execute("SELECT pg_advisory_lock(hashtext(%s))", (f"{p}schema",))
                try:
                    conn.execute(ddl)
                finally:
                    conn.execute("SELECT pg_advisory_unlock(hashtext(%s))", (f"{p}schema",))
            finally:
                conn.close()

    @classmethod
    def from_url(cls, url: str, **options: Any) -> PostgresBudgetStore:
        """``postgresql://user:pass@host:5432/db`` (also ``postgres://``)."""
        return cls(url, **options)

    # -- connections ---------------------------------------------------------------------------
    def _connect(self) -> Any:
        return self._pg.connect(self._conninfo, **self._connect_kwargs)

    def _checkout(self) -> tuple[Any, bool]:
        """A connection and whether it is new. Connections never cross a ``fork``: psycopg
        closes a connection only in the process that opened it, so the parent's are dropped."""
        if self._pid != os.getpid():
            self._idle = []
            self._pid = os.getpid()
        try:
            return self._idle.pop(), False
        except IndexError:
            pass
        with self._errors():
            return self._connect(), True

    def _checkin(self, conn: Any) -> None:
        if len(self._idle) < self._pool_size and not conn.closed:
            self._idle.append(conn)
        else:
            conn.close()

    def _run(self, name: str, params: Sequence[Any] | dict[str, Any], *, rows: bool = False) -> Any:
        """Execute one statement: all rows (``rows=True``), else its first row, or the row
        count of a statement that returns none."""
        sql = self._sql[name]
        while True:
            conn, new = self._checkout()
            try:
                cur = conn.execute(sql, params)
                if rows:
                    out = cur.fetchall()
                else:
                    out = cur.fetchone() if cur.description else cur.rowcount
            except self._pg.Error as exc:
                broken = bool(conn.broken or conn.closed)
                if broken:  # the server went away: the idle connections are dead too
                    idle, self._idle = self._idle, []
                    for c in (conn, *idle):
                        c.close()
                    if not new:
                        continue  # a stale pooled connection: retry once on a new one
                else:
                    self._checkin(conn)
                raise _translate(exc, broken or _unavailable(exc)) from exc
            except (UnicodeError, OverflowError, ValueError, TypeError) as exc:
                self._checkin(conn)
                raise _translate(exc, False) from exc
            self._checkin(conn)
            return out

    def _errors(self) -> _Errors:
        return _Errors(self._pg)

    def _locks(self, keys: Sequence[str]) -> list[int]:
        """64-bit advisory lock ids, ascending: the one order every process locks in."""
        ids = set()
        for k in keys:
            h = hashlib.blake2b(k.encode(), digest_size=8, key=self._lock_salt[:64])
            ids.add(int.from_bytes(h.digest(), "big", signed=True))
        return sorted(ids)

    # -- the protocol --------------------------------------------------------------------------
    def reserve(
        self, items: Sequence[ReserveItem], reservation_id: str, ttl: float, now: float
    ) -> ReserveResult:
        read_keys: list[str] = []
        read_item: list[int] = []
        for i, it in enumerate(items, 1):
            check_amount(it.amount)
            check_limit(it.limit)
            for k in it.keys:
                read_keys.append(store_key(k))
                read_item.append(i)
        failed, spent, reserved = self._run(
            "reserve",
            (
                store_key(reservation_id),
                now,
                now + ttl,
                self._locks([store_key(it.lock) for it in items]),
                [store_key(it.key) for it in items],
                [it.amount for it in items],
                [it.limit for it in items],
                read_keys,
                read_item,
            ),
        )
        totals = tuple(zip(spent or (), reserved or ()))
        if failed:
            return ReserveResult(False, totals, failed - 1)
        return ReserveResult(True, totals)

    def commit(self, reservation_id: str, items: Sequence[CommitItem], now: float) -> CommitResult:
        read_keys: list[str] = []
        read_item: list[int] = []
        marks: list[str] = []
        mark_at: list[int] = []
        mark_item: list[int] = []
        for i, it in enumerate(items, 1):
            check_amount(it.amount)
            for k in it.keys:
                read_keys.append(store_key(k))
                read_item.append(i)
            for at, marker in it.marks:
                marks.append(store_key(marker))
                mark_at.append(min(at, 2**63 - 1))
                mark_item.append(i)
        applied, spent, fired = self._run(
            "commit",
            (
                store_key(reservation_id),
                now,
                now + self.commit_retention,
                self._locks([store_key(it.lock) for it in items]),
                [store_key(it.key) for it in items],
                [it.amount for it in items],
                [it.expires_at for it in items],
                read_keys,
                read_item,
                marks,
                mark_at,
                mark_item,
            ),
        )
        if not applied:
            return CommitResult(False)
        fired_set = set(fired or ())
        originals = frozenset(
            marker for it in items for _, marker in it.marks if store_key(marker) in fired_set
        )
        return CommitResult(True, tuple(spent or ()), originals)

    def release(self, reservation_id: str, now: float) -> None:
        self._run("release", (store_key(reservation_id),))

    def extend(self, reservation_id: str, ttl: float, now: float) -> bool:
        return bool(self._run("extend", (now + ttl, store_key(reservation_id), now)))

    def status(self, keys: Sequence[str], now: float) -> list[CounterStatus]:
        if not keys:
            return []
        safe = [store_key(k) for k in keys]
        rows = self._run("status", (now, safe), rows=True)
        by_key = {k: CounterStatus(int(s), int(r), int(c)) for k, s, c, r in rows}
        return [by_key[k] for k in safe]

    def expire(self, now: float) -> int:
        row = self._run("expire", {"now": now})
        return int(row[0]) if row else 0

    def drop_tables(self) -> None:
        """Drop the store's tables and functions (tests, uninstall)."""
        p = self.table_prefix
        conn, _ = self._checkout()
        try:
            with self._errors():
                conn.execute(
                    f"DROP FUNCTION IF EXISTS {p}reserve_v2, {p}commit_v2; "
                    f"DROP TABLE IF EXISTS {p}counters, {p}reservations, {p}markers, {p}commits"
                )
        finally:
            conn.close()

    def close(self) -> None:
        idle, self._idle = self._idle, []
        if self._pid == os.getpid():
            for conn in idle:
                conn.close()


def _unavailable(exc: BaseException) -> bool:
    """Connectivity (refused, reset, timed out, server shutting down) or a server that cannot
    serve anyone right now -- as opposed to a value this call got wrong."""
    state = getattr(exc, "sqlstate", None)
    if state is None:  # raised by libpq/psycopg itself: connection lost, refused, closed
        module = type(exc).__module__
        return module.startswith("psycopg") and type(exc).__name__ in (
            "OperationalError",
            "InterfaceError",
        )
    return state[:2] in _UNAVAILABLE_CLASSES or state in _UNAVAILABLE_CODES


def _translate(exc: BaseException, unavailable: bool) -> Exception:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if unavailable:
        return BudgetStoreUnavailableError(
            f"Postgres budget store unavailable: {first}. Check the server is reachable."
        )
    return BudgetStoreError(
        f"Postgres budget store rejected this call: {type(exc).__name__}: {first}. Check the "
        f"amounts and keys passed to the store."
    )


class _Errors:
    """Map psycopg errors raised outside :meth:`PostgresBudgetStore._run` (connect, DDL,
    status reads)."""

    def __init__(self, pg: Any) -> None:
        self.pg = pg

    def __enter__(self) -> None:
        return None

    def __exit__(self, et: object, exc: BaseException | None, tb: object) -> Literal[False]:
        if exc is None or isinstance(exc, (BudgetStoreError, BudgetStoreUnavailableError)):
            return False
        if isinstance(exc, self.pg.Error):
            raise _translate(exc, _unavailable(exc)) from exc
        if isinstance(exc, (UnicodeError, OverflowError, ValueError, TypeError)):
            raise _translate(exc, False) from exc
        return False
