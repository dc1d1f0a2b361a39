"""PostgreSQL budget store (psycopg 3): every operation is one statement, one round trip.

Tables (``table_prefix`` default ``tw_budget_``): ``counters`` (per counter key: committed
``spent`` and ``calls``, ``reserved`` = the sum of its rows in ``holds``, and ``next_expiry``:
no hold expires before it), ``holds`` (one row per reservation and key, with its expiry),
``markers`` (threshold alerts fired) and ``commits`` (committed reservation ids, kept
``commit_retention`` seconds).

``reserve`` and ``commit`` are PL/pgSQL functions created with the tables (``reserve_v4``,
``commit_v4``; the v3/v2 functions of earlier versions, on the same tables with the same
meaning, are left for processes still running them). Each runs in the one implicit
transaction of its statement:

* ``reserve`` first takes a transaction-level advisory lock per budget+scope (``lock_key``:
  the counter key, or one lock for all buckets of a rolling window), in ascending lock-id
  order so reservations touching several budgets never deadlock. Reserves on one
  budget+scope are therefore serialised, and no row is written just to lock it. It drops
  the expired holds of a key only once its ``next_expiry`` has passed (a crashed process's
  reservations stop counting the moment their TTL passes), reads spent and reserved of
  every read key from ``counters`` in ONE index scan (one snapshot, taken after the locks),
  sums them per item and checks every limit, then inserts its holds and adds them to
  ``reserved`` in one statement, or returns which item did not fit and writes nothing. An
  id that holds budget already or was committed before (both found by the same read) has
  its own holds left out of the totals and, on success, its reservation replaced and its
  commit record dropped (it may be committed again);
* ``commit`` is one statement: it records the reservation id (a replayed commit finds it
  and the rest of the statement changes nothing), deletes the holds and moves their amounts
  from ``reserved`` to ``spent`` -- so a reserve's single-snapshot read sees a commit whole
  or not at all, and commits need no lock -- returning the new spend of the keys written;
  the function sums it per item and records the threshold markers that spend reached,
  returning those it recorded first.

A budget check reads one ``counters`` row per key (updated in place, so heavy traffic on one
budget leaves no trail of dead rows to scan); ``holds`` is only searched by reservation id.
Both functions run with sequential and bitmap scans disabled, so every lookup is an index
probe whatever the planner's estimates: their plans are generic (cached per session), and
on small or freshly created tables it chose to scan ``holds`` -- whose dead rows pile up
with traffic between vacuums -- and to hash all of ``counters`` for two keys. Their
statements are kept to few plan nodes: on every call the server sets up each node of each
statement again, which costs more than running it (a per-item read of two keys through
unnest, LATERAL probes and GROUP BY took ~80 us; one index scan and a PL/pgSQL loop, ~40).
Their arguments are typed arrays sent as array literals (one string each: psycopg adapts a
string several times faster than a list, and the server parses no JSON).
Connections are kept in a small per-process free list, each with its cursor (autocommit,
so no ``BEGIN``/``COMMIT`` round trips; statements prepared on first use). A pooled
connection that turns out dead (server restarted) is replaced and the call retried once on
a new connection, and a statement the server rolled back to break a deadlock is run again (up
to five times, jittered; then the store counts as unavailable for that call, so a commit is
journaled, never dropped); every operation is idempotent, so the retry is safe. Connection failures,
timeouts and a server shutting down raise
``BudgetStoreUnavailableError``; a value the server rejects raises ``BudgetStoreError``.
"""

from __future__ import annotations

import hashlib
import os
import random
import re
import time
from collections.abc import Iterable, Sequence
from typing import Any, Literal

from tokenward._memo import remember
from tokenward.budgets._store import (
    DEFAULT_COMMIT_RETENTION,
    MAX_LIMIT,
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
ALTER TABLE {p}counters ADD COLUMN IF NOT EXISTS reserved bigint NOT NULL DEFAULT 0;
ALTER TABLE {p}counters ADD COLUMN IF NOT EXISTS next_expiry double precision;
CREATE TABLE IF NOT EXISTS {p}holds (
    rid text NOT NULL, key text NOT NULL, amount bigint NOT NULL,
    expires_at double precision NOT NULL, PRIMARY KEY (rid, key));
CREATE INDEX IF NOT EXISTS {p}holds_key ON {p}holds (key, expires_at);
CREATE TABLE IF NOT EXISTS {p}markers (marker text PRIMARY KEY, expires_at double precision);
CREATE TABLE IF NOT EXISTS {p}commits (rid text PRIMARY KEY, expires_at double precision NOT NULL);

-- drop the expired holds of the keys whose next_expiry has passed (caller holds their locks)
CREATE OR REPLACE FUNCTION {p}purge_v3(p_keys text[], p_now float8) RETURNS void
LANGUAGE plpgsql AS $fn$
#variable_conflict use_column
DECLARE
    k text;
BEGIN
    FOR k IN SELECT c.key FROM unnest(p_keys) AS r(key)
             JOIN LATERAL (SELECT c.key FROM {p}counters c
                           WHERE c.key = r.key AND c.next_expiry <= p_now) c ON true LOOP
        WITH gone AS (
            DELETE FROM {p}holds h WHERE h.key = k AND h.expires_at <= p_now RETURNING h.amount)
        UPDATE {p}counters c SET
            reserved = GREATEST(c.reserved - coalesce((SELECT sum(g.amount) FROM gone g), 0), 0),
            next_expiry = (SELECT min(h.expires_at) FROM {p}holds h
                           WHERE h.key = k AND h.expires_at > p_now)
        WHERE c.key = k;
    END LOOP;
END
$fn$;

-- Arguments are typed arrays: per item p_amount and p_limit (NULL: never deny); its read keys
-- as pairs (p_read_item, p_read_key); per key written p_key, p_held and p_expires (the
-- counter's expiry); p_locks the advisory lock ids, ascending. Counters are looked up by
-- key one at a time (LATERAL). Returns one array: the failed item (1-based; 0: held), the
-- spent of each item, then what others hold on each, up to the failed item.
-- Three statements when the id is new (locks; one read; one write of the holds and
-- counters); an id that holds budget already or was committed before ("known", found by
-- the read's two index probes) also has its own holds left out of the totals and, on
-- success, its reservation and commit record dropped (replaced; may be committed again).
CREATE OR REPLACE FUNCTION {p}reserve_v4(
    p_rid text, p_now float8, p_exp float8, p_locks bigint[], p_amount bigint[],
    p_limit bigint[], p_read_item int[], p_read_key text[], p_key text[], p_held bigint[],
    p_expires float8[]) RETURNS bigint[]
LANGUAGE plpgsql SET enable_seqscan = off SET enable_bitmapscan = off AS $fn$
#variable_conflict use_column
DECLARE
    o_spent bigint[];
    o_reserved bigint[];
    due boolean;
    known boolean;
    f_key text[];
    f_spent bigint[];
    f_reserved bigint[];
    pos int;
BEGIN
    PERFORM pg_advisory_xact_lock(unnest(p_locks));  -- ascending: no deadlocks
    LOOP
        -- one snapshot after the locks: the counters read (one index scan, their order
        -- unknown), then summed per item
        SELECT array_agg(c.key), array_agg(c.spent), array_agg(c.reserved),
               bool_or(c.next_expiry <= p_now),
               EXISTS (SELECT FROM {p}holds h WHERE h.rid = p_rid)
               OR EXISTS (SELECT FROM {p}commits d WHERE d.rid = p_rid)
        INTO f_key, f_spent, f_reserved, due, known
        FROM {p}counters c WHERE c.key = ANY(p_read_key);
        EXIT WHEN NOT coalesce(due, false);
        PERFORM {p}purge_v3(p_read_key, p_now);  -- a hold expired: drop it, then read again
    END LOOP;
    o_spent := array_fill(0::bigint, ARRAY[cardinality(p_amount)]);
    o_reserved := o_spent;
    FOR j IN 1 .. cardinality(p_read_key) LOOP
        pos := array_position(f_key, p_read_key[j]);
        IF pos IS NOT NULL THEN
            o_spent[p_read_item[j]] := o_spent[p_read_item[j]] + f_spent[pos];
            o_reserved[p_read_item[j]] := o_reserved[p_read_item[j]] + f_reserved[pos];
        END IF;
    END LOOP;
    IF known THEN  -- what this id holds itself is not held by others
        SELECT array_agg(o_reserved[t.i] - t.own ORDER BY t.i) INTO o_reserved FROM (
            SELECT r.i, coalesce(sum(h.amount), 0)::bigint AS own
            FROM unnest(p_read_item, p_read_key) AS r(i, key)
            LEFT JOIN LATERAL (SELECT h.amount FROM {p}holds h
                               WHERE h.rid = p_rid AND h.key = r.key
                               AND h.expires_at > p_now) h ON true
            GROUP BY r.i
        ) t;
    END IF;
    FOR i IN 1 .. cardinality(p_amount) LOOP
        IF p_limit[i] IS NOT NULL
           AND o_spent[i]::numeric + o_reserved[i] + p_amount[i] > p_limit[i] THEN
            RETURN i::bigint || o_spent[1:i] || o_reserved[1:i];
        END IF;
    END LOOP;
    IF known THEN  -- replace this id's reservation; a later commit of it counts again
        WITH rearm AS (DELETE FROM {p}commits d WHERE d.rid = p_rid),
        gone AS (DELETE FROM {p}holds h WHERE h.rid = p_rid RETURNING h.key, h.amount)
        UPDATE {p}counters c SET reserved = GREATEST(c.reserved - g.amount, 0)
        FROM (SELECT gone.key, sum(gone.amount) AS amount FROM gone GROUP BY gone.key) g
        WHERE c.key = g.key;
    END IF;
    WITH held AS (
        INSERT INTO {p}holds (rid, key, amount, expires_at)
        SELECT p_rid, unnest(p_key), unnest(p_held), p_exp)
    INSERT INTO {p}counters AS c (key, reserved, next_expiry, expires_at)
        SELECT unnest(p_key), unnest(p_held), p_exp, unnest(p_expires)
    ON CONFLICT (key) DO UPDATE SET reserved = c.reserved + excluded.reserved,
        next_expiry = LEAST(c.next_expiry, excluded.next_expiry),
        expires_at = GREATEST(c.expires_at, excluded.expires_at);
    RETURN 0::bigint || o_spent || o_reserved;
END
$fn$;

-- the commit, one statement: the id is recorded (a replay finds it and changes nothing: the
-- rest of the statement only acts when it was recorded); the holds leave "reserved" as the
-- actual amounts enter "spent", so a reserve's single-snapshot read sees a commit whole or
-- not at all (commits need no lock); then the markers the new spend reached are recorded.
-- Arguments: per key written p_key, p_amount, p_calls (items on it), p_expires; per item
-- its read keys as pairs (p_read_item, p_read_key); per marker (p_mark_item, p_mark_at,
-- p_mark, p_mark_exp). Returns NULL for a replay, else per item its new spend, then the
-- (1-based) positions in p_mark of the markers this commit recorded first.
CREATE OR REPLACE FUNCTION {p}commit_v4(
    p_rid text, p_now float8, p_keep float8, p_key text[], p_amount bigint[],
    p_calls int[], p_expires float8[], p_read_item int[], p_read_key text[],
    p_mark_item int[], p_mark_at bigint[], p_mark text[], p_mark_exp float8[]) RETURNS bigint[]
LANGUAGE plpgsql SET enable_seqscan = off SET enable_bitmapscan = off AS $fn$
#variable_conflict use_column
DECLARE
    applied boolean;
    o_spent bigint[];
    o_fired bigint[];
    f_key text[];
    f_spent bigint[];
    other boolean := false;
    pos int;
BEGIN
    WITH rec AS (
        INSERT INTO {p}commits AS d (rid, expires_at) VALUES (p_rid, p_keep)
        ON CONFLICT (rid) DO UPDATE SET expires_at = excluded.expires_at
            WHERE d.expires_at <= p_now
        RETURNING true AS ok),
    gone AS (DELETE FROM {p}holds h WHERE h.rid = p_rid AND (SELECT rec.ok FROM rec)
             RETURNING h.key, h.amount),
    held AS (SELECT gone.key, sum(gone.amount) AS amount FROM gone GROUP BY gone.key),
    spend AS (SELECT unnest(p_key) AS k, unnest(p_amount) AS a, unnest(p_calls) AS n,
                     unnest(p_expires) AS e WHERE (SELECT rec.ok FROM rec)),
    up AS (
        INSERT INTO {p}counters AS c (key, spent, calls, reserved, expires_at)
        SELECT coalesce(spend.k, held.key), coalesce(spend.a, 0), coalesce(spend.n, 0),
               -coalesce(held.amount, 0), spend.e
        FROM spend FULL JOIN held ON held.key = spend.k
        ON CONFLICT (key) DO UPDATE SET spent = c.spent + excluded.spent,
            calls = c.calls + excluded.calls,
            reserved = GREATEST(c.reserved + excluded.reserved, 0),
            expires_at = GREATEST(c.expires_at, excluded.expires_at)
        RETURNING c.key, c.spent)
    SELECT (SELECT rec.ok FROM rec), array_agg(up.key), array_agg(up.spent)
    INTO applied, f_key, f_spent FROM up;
    IF applied IS NULL THEN  -- committed before: a replay
        RETURN NULL;
    END IF;
    -- per item (p_read_item ascends from 1): the new spend of its read keys; read keys not
    -- written (a rolling window's other buckets) are read once, when the first is met
    o_spent := array_fill(0::bigint, ARRAY[coalesce(p_read_item[cardinality(p_read_item)], 0)]);
    FOR j IN 1 .. cardinality(p_read_key) LOOP
        pos := array_position(f_key, p_read_key[j]);
        IF pos IS NULL AND NOT other THEN
            SELECT f_key || array_agg(c.key), f_spent || array_agg(c.spent) INTO f_key, f_spent
            FROM {p}counters c WHERE c.key = ANY(p_read_key) AND NOT c.key = ANY(f_key);
            other := true;
            pos := array_position(f_key, p_read_key[j]);
        END IF;
        IF pos IS NOT NULL THEN
            o_spent[p_read_item[j]] := o_spent[p_read_item[j]] + f_spent[pos];
        END IF;
    END LOOP;
    IF cardinality(p_mark) > 0 THEN
        WITH fired AS (
            INSERT INTO {p}markers AS m (marker, expires_at)
            SELECT k.m, k.e FROM (SELECT unnest(p_mark_item) AS i, unnest(p_mark_at) AS at,
                                         unnest(p_mark) AS m, unnest(p_mark_exp) AS e) k
            WHERE o_spent[k.i] >= k.at
            ON CONFLICT (marker) DO UPDATE SET expires_at = excluded.expires_at
                WHERE m.expires_at IS NOT NULL AND m.expires_at <= p_now
            RETURNING m.marker)
        SELECT array_agg(array_position(p_mark, fired.marker)) INTO o_fired FROM fired;
    END IF;
    RETURN coalesce(o_spent, '{{}}') || o_fired;
END
$fn$;
"""

# arrays travel as text literals (see _array): psycopg adapts one string far faster than a list
_RESERVE = (
    "SELECT {p}reserve_v4(%s, %s, %s, %s::bigint[], %s::bigint[], %s::bigint[], "
    "%s::int[], %s::text[], %s::text[], %s::bigint[], %s::float8[])"
)
_COMMIT = (
    "SELECT {p}commit_v4(%s, %s, %s, %s::text[], %s::bigint[], %s::int[], "
    "%s::float8[], %s::int[], %s::text[], %s::int[], %s::bigint[], %s::text[], %s::float8[])"
)
_RELEASE = (
    "WITH gone AS (DELETE FROM {p}holds h WHERE h.rid = %s RETURNING h.key, h.amount) "
    "UPDATE {p}counters c SET reserved = GREATEST(c.reserved - g.amount, 0) "
    "FROM (SELECT gone.key, sum(gone.amount) AS amount FROM gone GROUP BY gone.key) g "
    "WHERE c.key = g.key"
)
_EXTEND = (
    "UPDATE {p}holds SET expires_at = GREATEST(expires_at, %s) WHERE rid = %s AND expires_at > %s"
)
_STATUS = (
    "SELECT k.key, coalesce(c.spent, 0), coalesce(c.calls, 0), "
    "CASE WHEN c.next_expiry IS NULL OR c.next_expiry > %(now)s THEN coalesce(c.reserved, 0) "
    "ELSE coalesce((SELECT sum(h.amount) FROM {p}holds h "
    "WHERE h.key = k.key AND h.expires_at > %(now)s), 0) END "
    "FROM unnest(%(keys)s::text[]) AS k(key) LEFT JOIN {p}counters c ON c.key = k.key"
)
_EXPIRE = (
    "WITH h AS (DELETE FROM {p}holds WHERE expires_at <= %(now)s RETURNING key, amount), "
    "r AS (UPDATE {p}counters c SET reserved = GREATEST(c.reserved - g.amount, 0) "
    "FROM (SELECT h.key, sum(h.amount) AS amount FROM h GROUP BY h.key) g "
    "WHERE c.key = g.key RETURNING 1), "
    "c AS (DELETE FROM {p}counters WHERE expires_at <= %(now)s RETURNING 1), "
    "m AS (DELETE FROM {p}markers WHERE expires_at <= %(now)s RETURNING 1), "
    "d AS (DELETE FROM {p}commits WHERE expires_at <= %(now)s RETURNING 1) "
    "SELECT (SELECT count(*) FROM h) + (SELECT count(*) FROM c) + (SELECT count(*) FROM m) "
    "+ (SELECT count(*) FROM d) + 0 * (SELECT count(*) FROM r)"
)

# SQLSTATE classes/codes that mean the server cannot serve anyone right now
_UNAVAILABLE_CLASSES = ("08", "53", "57", "58")  # connection, resources, shutdown/timeout, I/O
_UNAVAILABLE_CODES = ("55P03", "25006")  # lock timeout, read-only server (failover)
# a statement the server rolled back to let another go on (row locks taken in opposite
# orders by two calls: a release or a re-reserve beside a commit): it did nothing, run again;
# one that keeps losing is contention, like a lock timeout: the store is unavailable for that
# call (a commit is journaled and replayed), not refusing a value (spend dropped)
_ROLLED_BACK = ("40P01", "40001")  # deadlock detected, serialization failure
_RETRIES = 5
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
        table_prefix: prefix of the four tables and three functions (created if missing); a
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
        # generic plans: the statements never change, and planning them anew for each call
        # costs more than running them
        options = (
            f"-c statement_timeout={int(statement_timeout * 1000)} "
            "-c plan_cache_mode=force_generic_plan "
            # a reserve's read must see what committed before its locks were granted: only
            # READ COMMITTED takes a snapshot per statement (a database or role defaulting
            # to REPEATABLE READ would let two reserves both fit)
            "-c default_transaction_isolation=read\\ committed"
        )
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
        self._lock_ids: dict[str, int] = {}
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
        """A cursor on a pooled connection and whether the connection is new. The cursor is
        kept with its connection: a new cursor per call costs more client time than the
        function it runs. Connections never cross a ``fork``: psycopg closes a connection
        only in the process that opened it, so the parent's are dropped."""
        if self._pid != os.getpid():
            self._idle = []
            self._pid = os.getpid()
        try:
            return self._idle.pop(), False
        except IndexError:
            pass
        with self._errors():
            return self._connect().cursor(), True

    def _checkin(self, cur: Any) -> None:
        if len(self._idle) < self._pool_size and not cur.connection.closed:
            self._idle.append(cur)
        else:
            cur.connection.close()

    def _run(self, name: str, params: Sequence[Any] | dict[str, Any], *, rows: bool = False) -> Any:
        """Execute one statement: all rows (``rows=True``), else its first row, or the row
        count of a statement that returns none."""
        sql = self._sql[name]
        returns = name not in ("release", "extend")
        victims = 0
        while True:
            cur, new = self._checkout()
            try:
                cur.execute(sql, params, prepare=True)
                if rows:
                    out = cur.fetchall()
                else:
                    out = cur.fetchone() if returns else cur.rowcount
            except self._pg.Error as exc:
                conn = cur.connection
                broken = bool(conn.broken or conn.closed)
                if broken:  # the server went away: the idle connections are dead too
                    idle, self._idle = self._idle, []
                    for c in (conn, *(i.connection for i in idle)):
                        c.close()
                    if not new:
                        continue  # a stale pooled connection: retry once on a new one
                else:
                    self._checkin(cur)
                    if getattr(exc, "sqlstate", None) in _ROLLED_BACK and victims < _RETRIES:
                        victims += 1  # rolled back whole: run it again, a little later than
                        time.sleep(random.uniform(0.0, 0.005 * victims))  # the other party
                        continue
                raise _translate(exc, broken or _unavailable(exc)) from exc
            except (UnicodeError, OverflowError, ValueError, TypeError) as exc:
                self._checkin(cur)
                raise _translate(exc, False) from exc
            self._checkin(cur)
            return out

    def _errors(self) -> _Errors:
        return _Errors(self._pg)

    def _locks(self, keys: Sequence[str]) -> str:
        """64-bit advisory lock ids, ascending (the one order every process locks in), as an
        array literal."""
        ids = self._lock_ids
        for k in keys:
            if k not in ids:
                h = hashlib.blake2b(k.encode(), digest_size=8, key=self._lock_salt[:64])
                remember(ids, k, int.from_bytes(h.digest(), "big", signed=True), 4096)
        return _array(sorted({ids[k] for k in keys}))

    # -- the protocol --------------------------------------------------------------------------
    def reserve(
        self, items: Sequence[ReserveItem], reservation_id: str, ttl: float, now: float
    ) -> ReserveResult:
        amounts, limits, read_items, read_keys = [], [], [], []
        held: dict[str, list[Any]] = {}  # per key written: amount, counter expiry
        for i, it in enumerate(items, 1):
            amount = check_amount(it.amount)
            amounts.append(amount)
            limits.append(check_limit(it.limit))
            for k in it.keys:
                read_items.append(i)
                read_keys.append(store_key(k))
            _add(held, store_key(it.key), amount, it.expires_at)
        (out,) = self._run(
            "reserve",
            (
                store_key(reservation_id),
                now,
                now + ttl,
                self._locks([store_key(it.lock) for it in items]),
                _array(amounts),
                _array(limits),
                _array(read_items),
                _text_array(read_keys),
                _text_array(held),
                _array([w[0] for w in held.values()]),
                _array([w[1] for w in held.values()]),
            ),
        )
        n = len(out) // 2
        totals = tuple(zip(out[1 : n + 1], out[n + 1 :]))
        if out[0]:
            return ReserveResult(False, totals, out[0] - 1)
        return ReserveResult(True, totals)

    def commit(self, reservation_id: str, items: Sequence[CommitItem], now: float) -> CommitResult:
        spend: dict[str, list[Any]] = {}  # per key written: amount, counter expiry, calls
        read_items, read_keys = [], []
        mark_items, mark_at, marks, mark_exp = [], [], [], []
        originals: list[str] = []  # the markers as given, in the order sent
        for i, it in enumerate(items, 1):
            _add(spend, store_key(it.key), check_amount(it.amount), it.expires_at)
            for k in it.keys:
                read_items.append(i)
                read_keys.append(store_key(k))
            for at, marker in it.marks:
                originals.append(marker)
                mark_items.append(i)
                mark_at.append(min(at, MAX_LIMIT))
                marks.append(store_key(marker))
                mark_exp.append(it.expires_at)
        (out,) = self._run(
            "commit",
            (
                store_key(reservation_id),
                now,
                now + self.commit_retention,
                _text_array(spend),
                _array([w[0] for w in spend.values()]),
                _array([w[2] for w in spend.values()]),
                _array([w[1] for w in spend.values()]),
                _array(read_items),
                _text_array(read_keys),
                _array(mark_items),
                _array(mark_at),
                _text_array(marks),
                _array(mark_exp),
            ),
        )
        if out is None:  # committed before: a replay
            return CommitResult(False)
        n = len(items)
        return CommitResult(True, tuple(out[:n]), frozenset(originals[j - 1] for j in out[n:]))

    def release(self, reservation_id: str, now: float) -> None:
        self._run("release", (store_key(reservation_id),))

    def extend(self, reservation_id: str, ttl: float, now: float) -> bool:
        return bool(self._run("extend", (now + ttl, store_key(reservation_id), now)))

    def status(self, keys: Sequence[str], now: float) -> list[CounterStatus]:
        if not keys:
            return []
        safe = [store_key(k) for k in keys]
        rows = self._run("status", {"now": now, "keys": safe}, rows=True)
        by_key = {k: CounterStatus(int(s), int(r), int(c)) for k, s, c, r in rows}
        return [by_key[k] for k in safe]

    def expire(self, now: float) -> int:
        row = self._run("expire", {"now": now})
        return int(row[0]) if row else 0

    def drop_tables(self) -> None:
        """Drop the store's tables and functions (tests, uninstall)."""
        p = self.table_prefix
        cur, _ = self._checkout()
        conn = cur.connection
        try:
            with self._errors():
                conn.execute(
                    f"DROP FUNCTION IF EXISTS {p}reserve_v4, {p}commit_v4, "
                    f"{p}reserve_v3, {p}commit_v3, {p}purge_v3, "
                    f"{p}reserve_v2, {p}commit_v2, {p}purge_v2; "
                    f"DROP TABLE IF EXISTS {p}counters, {p}holds, {p}markers, {p}commits"
                )
        finally:
            conn.close()

    def close(self) -> None:
        idle, self._idle = self._idle, []
        if self._pid == os.getpid():
            for cur in idle:
                cur.connection.close()


def _add(writes: dict[str, list[Any]], key: str, amount: int, expires_at: float | None) -> None:
    """Sum the items writing to one key: [amount, latest expiry (None: never), items]."""
    w = writes.get(key)
    if w is None:
        writes[key] = [amount, expires_at, 1]
    else:
        w[0] += amount
        w[2] += 1
        if expires_at is not None and (w[1] is None or expires_at > w[1]):
            w[1] = expires_at


def _array(values: Iterable[int | float | None]) -> str:
    """A PostgreSQL array literal of numbers (``None`` is NULL)."""
    return "{" + ",".join("NULL" if v is None else repr(v) for v in values) + "}"


def _text_array(values: Iterable[str]) -> str:
    """A PostgreSQL array literal of strings, each quoted (store keys hold no NUL)."""
    return (
        "{"
        + ",".join('"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"' for v in values)
        + "}"
    )


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
    return state[:2] in _UNAVAILABLE_CLASSES or state in _UNAVAILABLE_CODES or state in _ROLLED_BACK


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
