"""PostgreSQL budget store (SQLAlchemy Core + psycopg 3).

``reserve`` is ONE round trip: a server-side PL/pgSQL function (created with the tables)
that, in a single implicit transaction,

1. ``INSERT … ON CONFLICT (key) DO UPDATE`` on the budget+scope rows in sorted key order:
   creates the counters of first-seen keys (1,000 users arriving at once all get counters)
   and takes their row locks in a deterministic order (no deadlocks between reservations
   touching several budgets);
2. reads spent and live reserved amounts of every key involved (fresh snapshot after the
   locks), checks every item against its limit;
3. inserts the reservation rows, or returns which item did not fit and writes nothing.

``commit`` is one statement too (a data-modifying CTE deletes the reservation and upserts
the spend). Reserved amounts are rows with an expiry: expired rows simply stop counting (a
crashed process cannot leak budget); ``expire()`` deletes them. Connection failures raise
``BudgetStoreUnavailableError``.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from tokenward.budgets._store import CounterStatus, ReserveItem, ReserveResult
from tokenward.errors import BudgetStoreUnavailableError, IntegrationUnavailableError

__all__ = ["PostgresBudgetStore"]

_FUNCTION = """
CREATE OR REPLACE FUNCTION {fn}(
    p_rid text, p_now float8, p_exp float8, p_locks text[], p_keys text[], p_amounts bigint[],
    p_limits bigint[], p_rkeys text[], p_ritem int[])
RETURNS TABLE (ok boolean, failed int, spent bigint[], reserved bigint[])
LANGUAGE plpgsql AS $fn$
DECLARE
    i int;
    s bigint;
    r bigint;
    ss bigint[] := '{{}}';
    rr bigint[] := '{{}}';
    ks text[];
BEGIN
    -- create first-seen rows and lock every budget+scope row, in sorted key order
    INSERT INTO {c} AS c (key) SELECT k FROM unnest(p_locks) AS k ORDER BY k
    ON CONFLICT (key) DO UPDATE SET key = c.key;
    FOR i IN 1 .. coalesce(array_length(p_keys, 1), 0) LOOP
        ks := ARRAY(SELECT p_rkeys[j] FROM generate_subscripts(p_rkeys, 1) AS j WHERE p_ritem[j] = i);
        SELECT coalesce(sum(c.spent), 0) INTO s FROM {c} AS c WHERE c.key = ANY(ks);
        SELECT coalesce(sum(x.amount), 0) INTO r FROM {r} AS x
            WHERE x.key = ANY(ks) AND x.expires_at > p_now;
        ss := ss || s;
        rr := rr || r;
        IF p_limits[i] IS NOT NULL AND s + r + p_amounts[i] > p_limits[i] THEN
            RETURN QUERY SELECT false, i, ss, rr;
            RETURN;
        END IF;
    END LOOP;
    INSERT INTO {r} AS x (rid, key, amount, expires_at)
        SELECT p_rid, t.k, sum(t.a), p_exp FROM unnest(p_keys, p_amounts) AS t(k, a) GROUP BY t.k
    ON CONFLICT (rid, key) DO UPDATE SET amount = excluded.amount, expires_at = excluded.expires_at;
    RETURN QUERY SELECT true, 0, ss, rr;
END
$fn$;
"""


def _sa() -> Any:
    try:
        import sqlalchemy
    except ImportError:
        raise IntegrationUnavailableError("sqlalchemy", "postgres") from None
    return sqlalchemy


def _normalize_url(url: str) -> str:
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


class PostgresBudgetStore:
    """Budget counters in PostgreSQL, shared by every process and machine using the database.

    Args:
        url: ``postgresql://user:pass@host/db`` (psycopg 3 driver is used) or an SQLAlchemy URL;
            or an existing ``sqlalchemy.engine.Engine``.
        table_prefix: prefix of the three tables (created if missing).
        connect_timeout: seconds before an unreachable server counts as unavailable.
        synchronous_commit: ``False`` sets ``synchronous_commit=off`` on the store's sessions:
            faster commits; a server crash may lose the last few hundred ms of recorded spend
            (never corrupts counters). Reservations are unaffected in practice.
    """

    def __init__(
        self,
        url: str | Any,
        *,
        table_prefix: str = "tw_budget_",
        connect_timeout: int = 3,
        pool_size: int = 5,
        synchronous_commit: bool = True,
    ) -> None:
        sa = _sa()
        self._sa = sa
        self._url = url
        self._connect_args: dict[str, Any] = {"connect_timeout": connect_timeout}
        if not synchronous_commit:
            self._connect_args["options"] = "-c synchronous_commit=off"

        self._pool_size = pool_size
        self._lock = threading.Lock()
        self._engine: Any = None
        self._pid = -1
        md = sa.MetaData()
        p = table_prefix
        self.counters = sa.Table(
            f"{p}counters",
            md,
            sa.Column("key", sa.Text, primary_key=True),
            sa.Column("spent", sa.BigInteger, nullable=False, server_default="0"),
            sa.Column("calls", sa.BigInteger, nullable=False, server_default="0"),
            sa.Column("expires_at", sa.Float, nullable=True),
        )
        self.reservations = sa.Table(
            f"{p}reservations",
            md,
            sa.Column("rid", sa.Text, primary_key=True),
            sa.Column("key", sa.Text, primary_key=True),
            sa.Column("amount", sa.BigInteger, nullable=False),
            sa.Column("expires_at", sa.Float, nullable=False),
            sa.Index(f"{p}reservations_key", "key", "expires_at"),
        )
        self.markers = sa.Table(
            f"{p}markers",
            md,
            sa.Column("marker", sa.Text, primary_key=True),
            sa.Column("expires_at", sa.Float, nullable=True),
        )
        self._md = md
        self._t = {"c": f"{p}counters", "r": f"{p}reservations", "m": f"{p}markers"}
        self._fn = f"{p}reserve"
        self._reserve_sql = sa.text(
            f"SELECT * FROM {self._fn}(:rid, :now, :exp, "
            f"CAST(:locks AS text[]), CAST(:keys AS text[]), CAST(:amounts AS bigint[]), "
            f"CAST(:limits AS bigint[]), CAST(:rkeys AS text[]), CAST(:ritem AS int[]))"
        )
        c, r = self._t["c"], self._t["r"]
        self._commit_sql = sa.text(
            f"WITH d AS (DELETE FROM {r} WHERE rid = :rid) "
            f"INSERT INTO {c} (key, spent, calls, expires_at) "
            f"SELECT k, a, 1, e FROM unnest(CAST(:keys AS text[]), CAST(:amounts AS bigint[]), "
            f"CAST(:exps AS float8[])) AS t(k, a, e) "
            f"ON CONFLICT (key) DO UPDATE SET spent = {c}.spent + excluded.spent, "
            f"calls = {c}.calls + 1, expires_at = GREATEST({c}.expires_at, excluded.expires_at)"
        )
        with self._wrap(), self._autocommit.connect() as conn:
            # serialise DDL between processes starting at the same time
            conn.execute(sa.text("SELECT pg_advisory_lock(hashtext(:n))"), {"n": self._fn})
            try:
                md.create_all(conn, checkfirst=True)
                conn.execute(sa.text(_FUNCTION.format(fn=self._fn, c=c, r=r)))
            finally:
                conn.execute(sa.text("SELECT pg_advisory_unlock(hashtext(:n))"), {"n": self._fn})
                conn.commit()

    @property
    def engine(self) -> Any:
        """The SQLAlchemy engine of this process (re-created after ``fork``)."""
        if self._engine is None or self._pid != os.getpid():
            with self._lock:
                if self._engine is None or self._pid != os.getpid():
                    if isinstance(self._url, str):
                        if self._engine is not None:
                            self._engine.dispose(close=False)
                        # no pool_pre_ping: a dead connection fails the call, SQLAlchemy
                        # invalidates the pool and the next call reconnects.
                        # every operation is a single statement: autocommit connections
                        # avoid BEGIN/COMMIT round trips.
                        self._engine = self._sa.create_engine(
                            _normalize_url(self._url),
                            pool_size=self._pool_size,
                            isolation_level="AUTOCOMMIT",
                            connect_args=self._connect_args,
                        )
                    else:
                        self._url.dispose(close=False) if self._pid != -1 else None
                        self._engine = self._url
                    self._pid = os.getpid()
                    self._auto = (
                        self._engine
                        if isinstance(self._url, str)
                        else self._engine.execution_options(isolation_level="AUTOCOMMIT")
                    )
        return self._engine

    @property
    def _autocommit(self) -> Any:
        self.engine  # noqa: B018 - (re)creates the engine for this process
        return self._auto

    def _wrap(self) -> _Wrap:
        return _Wrap(self._sa)

    def _totals_sql(self) -> Any:
        c, r = self._t["c"], self._t["r"]
        return self._sa.text(
            f"SELECT 's' AS kind, key, spent AS amount, calls FROM {c} WHERE key = ANY(:keys) "
            f"UNION ALL SELECT 'r', key, SUM(amount), 0 FROM {r} "
            f"WHERE key = ANY(:keys) AND expires_at > :now GROUP BY key"
        )

    def _read(self, conn: Any, keys: Sequence[str], now: float) -> dict[str, list[int]]:
        out: dict[str, list[int]] = {}
        for kind, key, amount, calls in conn.execute(
            self._totals_sql(), {"keys": list(keys), "now": now}
        ):
            row = out.setdefault(key, [0, 0, 0])
            if kind == "s":
                row[0] += int(amount)
                row[2] += int(calls)
            else:
                row[1] += int(amount)
        return out

    def reserve(
        self, items: Sequence[ReserveItem], reservation_id: str, ttl: float, now: float
    ) -> ReserveResult:
        read_keys: list[str] = []
        read_item: list[int] = []
        for i, it in enumerate(items, 1):
            read_keys.extend(it.keys)
            read_item.extend([i] * len(it.keys))
        params = {
            "rid": reservation_id,
            "now": now,
            "exp": now + ttl,
            "locks": sorted({it.lock for it in items}),
            "keys": [it.key for it in items],
            "amounts": [it.amount for it in items],
            "limits": [it.limit for it in items],
            "rkeys": read_keys,
            "ritem": read_item,
        }
        with self._wrap(), self._autocommit.connect() as conn:
            ok, failed, spent, reserved = conn.execute(self._reserve_sql, params).one()
        totals = tuple(zip((int(x) for x in spent or ()), (int(x) for x in reserved or ())))
        return ReserveResult(bool(ok), totals, None if ok else int(failed) - 1)

    def commit(
        self,
        reservation_id: str,
        actuals: Mapping[str, int],
        now: float,
        expires: Mapping[str, float | None] | None = None,
    ) -> None:
        exp = expires or {}
        items = sorted(actuals.items())
        params = {
            "rid": reservation_id,
            "keys": [k for k, _ in items],
            "amounts": [a for _, a in items],
            "exps": [exp.get(k) for k, _ in items],
        }
        with self._wrap(), self._autocommit.connect() as conn:
            conn.execute(self._commit_sql, params)

    def release(self, reservation_id: str, now: float) -> None:
        with self._wrap(), self._autocommit.connect() as conn:
            conn.execute(
                self.reservations.delete().where(self.reservations.c.rid == reservation_id)
            )

    def status(self, keys: Sequence[str], now: float) -> list[CounterStatus]:
        if not keys:
            return []
        with self._wrap(), self._autocommit.connect() as conn:
            rows = self._read(conn, keys, now)
        return [CounterStatus(*rows.get(k, (0, 0, 0))) for k in keys]

    def mark_once(self, marker: str, expires_at: float | None, now: float) -> bool:
        m = self._t["m"]
        sql = self._sa.text(
            f"INSERT INTO {m} (marker, expires_at) VALUES (:m, :e) ON CONFLICT (marker) DO UPDATE "
            f"SET expires_at = excluded.expires_at WHERE {m}.expires_at IS NOT NULL "
            f"AND {m}.expires_at <= :now RETURNING marker"
        )
        with self._wrap(), self._autocommit.connect() as conn:
            return conn.execute(sql, {"m": marker, "e": expires_at, "now": now}).first() is not None

    def expire(self, now: float) -> int:
        r, c, m = self.reservations, self.counters, self.markers
        with self._wrap(), self.engine.begin() as conn:
            n = conn.execute(r.delete().where(r.c.expires_at <= now)).rowcount
            n += conn.execute(
                c.delete().where(c.c.expires_at.is_not(None), c.c.expires_at <= now)
            ).rowcount
            n += conn.execute(
                m.delete().where(m.c.expires_at.is_not(None), m.c.expires_at <= now)
            ).rowcount
        return int(n)

    def drop_tables(self) -> None:
        """Drop the store's tables (tests, uninstall)."""
        with self._wrap():
            self._md.drop_all(self.engine, checkfirst=True)

    def close(self) -> None:
        if self._engine is not None and isinstance(self._url, str):
            self._engine.dispose()
        self._engine = None


class _Wrap:
    """Map connection-level failures to ``BudgetStoreUnavailableError``."""

    def __init__(self, sa: Any) -> None:
        self.sa = sa

    def __enter__(self) -> None:
        return None

    def __exit__(self, et: object, exc: BaseException | None, tb: object) -> bool:
        if exc is None:
            return False
        exc_mod = self.sa.exc
        if isinstance(
            exc, (exc_mod.OperationalError, exc_mod.InterfaceError, exc_mod.TimeoutError)
        ) or (isinstance(exc, exc_mod.DBAPIError) and exc.connection_invalidated):
            raise BudgetStoreUnavailableError(
                f"Postgres budget store unavailable: {str(exc).splitlines()[0]}. Check the "
                f"server is reachable."
            ) from exc
        return False
