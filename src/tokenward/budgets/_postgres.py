"""PostgreSQL budget store (SQLAlchemy Core + psycopg 3).

``reserve`` is one transaction:

1. ``INSERT … ON CONFLICT DO NOTHING`` creates the counter rows of first-seen keys (so 1,000
   users arriving at once all get counters; nobody's reservation is lost to a missing row);
2. ``SELECT … ORDER BY key FOR UPDATE`` locks the budget+scope rows in a deterministic key
   order (no deadlocks between reservations touching several budgets);
3. ONE statement reads spent and live reserved amounts of every key involved (one snapshot,
   so a concurrent commit that moves "reserved" to "spent" is seen entirely or not at all);
4. the check runs, and the reservation rows are inserted — or nothing is written.

Reserved amounts are rows with an expiry: expired rows simply stop counting (a crashed
process cannot leak budget); ``expire()`` deletes them. Connection failures raise
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


def _sa() -> Any:
    try:
        import sqlalchemy
    except ImportError:
        raise IntegrationUnavailableError("sqlalchemy", "postgres") from None
    return sqlalchemy


def _normalize_url(url: str) -> str:
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


class PostgresBudgetStore:
    """Budget counters in PostgreSQL, shared by every process and machine using the database.

    Args:
        url: ``postgresql://user:pass@host/db`` (psycopg 3 driver is used) or an SQLAlchemy URL;
            or an existing ``sqlalchemy.engine.Engine``.
        table_prefix: prefix of the three tables (created if missing).
        connect_timeout: seconds before an unreachable server counts as unavailable.
    """

    def __init__(
        self,
        url: str | Any,
        *,
        table_prefix: str = "tw_budget_",
        connect_timeout: int = 3,
        pool_size: int = 5,
    ) -> None:
        sa = _sa()
        self._sa = sa
        self._url = url
        self._connect_timeout = connect_timeout
        self._pool_size = pool_size
        self._lock = threading.Lock()
        self._engine: Any = None
        self._pid = -1
        md = sa.MetaData()
        p = table_prefix
        self.counters = sa.Table(
            f"{p}counters", md,
            sa.Column("key", sa.Text, primary_key=True),
            sa.Column("spent", sa.BigInteger, nullable=False, server_default="0"),
            sa.Column("calls", sa.BigInteger, nullable=False, server_default="0"),
            sa.Column("expires_at", sa.Float, nullable=True),
        )
        self.reservations = sa.Table(
            f"{p}reservations", md,
            sa.Column("rid", sa.Text, primary_key=True),
            sa.Column("key", sa.Text, primary_key=True),
            sa.Column("amount", sa.BigInteger, nullable=False),
            sa.Column("expires_at", sa.Float, nullable=False),
            sa.Index(f"{p}reservations_key", "key", "expires_at"),
        )
        self.markers = sa.Table(
            f"{p}markers", md,
            sa.Column("marker", sa.Text, primary_key=True),
            sa.Column("expires_at", sa.Float, nullable=True),
        )
        self._md = md
        self._t = {"c": f"{p}counters", "r": f"{p}reservations", "m": f"{p}markers"}
        with self._wrap():
            md.create_all(self.engine, checkfirst=True)

    @property
    def engine(self) -> Any:
        """The SQLAlchemy engine of this process (re-created after ``fork``)."""
        if self._engine is None or self._pid != os.getpid():
            with self._lock:
                if self._engine is None or self._pid != os.getpid():
                    if isinstance(self._url, str):
                        if self._engine is not None:
                            self._engine.dispose(close=False)
                        self._engine = self._sa.create_engine(
                            _normalize_url(self._url),
                            pool_pre_ping=True,
                            pool_size=self._pool_size,
                            connect_args={"connect_timeout": self._connect_timeout},
                        )
                    else:
                        self._url.dispose(close=False) if self._pid != -1 else None
                        self._engine = self._url
                    self._pid = os.getpid()
        return self._engine

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
        for kind, key, amount, calls in conn.execute(self._totals_sql(), {"keys": list(keys), "now": now}):
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
        sa = self._sa
        from sqlalchemy.dialects.postgresql import insert

        locks = sorted({it.lock for it in items})
        keys = sorted({k for it in items for k in it.keys})
        with self._wrap(), self.engine.begin() as conn:
            conn.execute(
                insert(self.counters).values([{"key": k} for k in locks]).on_conflict_do_nothing()
            )
            conn.execute(
                sa.select(self.counters.c.key)
                .where(self.counters.c.key.in_(locks))
                .order_by(self.counters.c.key)
                .with_for_update()
            ).all()
            rows = self._read(conn, keys, now)
            totals = []
            for i, it in enumerate(items):
                spent = sum(rows.get(k, (0, 0, 0))[0] for k in it.keys)
                reserved = sum(rows.get(k, (0, 0, 0))[1] for k in it.keys)
                totals.append((spent, reserved))
                if it.limit is not None and spent + reserved + it.amount > it.limit:
                    conn.rollback()
                    return ReserveResult(False, tuple(totals), i)
            conn.execute(self.reservations.delete().where(self.reservations.c.rid == reservation_id))
            amounts: dict[str, int] = {}
            for it in items:
                amounts[it.key] = amounts.get(it.key, 0) + it.amount
            conn.execute(
                insert(self.reservations).values(
                    [{"rid": reservation_id, "key": k, "amount": a, "expires_at": now + ttl}
                     for k, a in sorted(amounts.items())]
                )
            )
            return ReserveResult(True, tuple(totals))

    def commit(
        self,
        reservation_id: str,
        actuals: Mapping[str, int],
        now: float,
        expires: Mapping[str, float | None] | None = None,
    ) -> None:
        from sqlalchemy.dialects.postgresql import insert

        exp = expires or {}
        with self._wrap(), self.engine.begin() as conn:
            conn.execute(self.reservations.delete().where(self.reservations.c.rid == reservation_id))
            if actuals:
                stmt = insert(self.counters).values(
                    [{"key": k, "spent": a, "calls": 1, "expires_at": exp.get(k)}
                     for k, a in sorted(actuals.items())]
                )
                c = self.counters.c
                conn.execute(
                    stmt.on_conflict_do_update(
                        index_elements=[c.key],
                        set_={
                            "spent": c.spent + stmt.excluded.spent,
                            "calls": c.calls + 1,
                            "expires_at": self._sa.func.greatest(c.expires_at, stmt.excluded.expires_at),
                        },
                    )
                )

    def release(self, reservation_id: str, now: float) -> None:
        with self._wrap(), self.engine.begin() as conn:
            conn.execute(self.reservations.delete().where(self.reservations.c.rid == reservation_id))

    def status(self, keys: Sequence[str], now: float) -> list[CounterStatus]:
        if not keys:
            return []
        with self._wrap(), self.engine.connect() as conn:
            rows = self._read(conn, keys, now)
        return [CounterStatus(*rows.get(k, (0, 0, 0))) for k in keys]

    def mark_once(self, marker: str, expires_at: float | None, now: float) -> bool:
        from sqlalchemy.dialects.postgresql import insert

        m = self.markers
        with self._wrap(), self.engine.begin() as conn:
            conn.execute(
                m.delete().where(m.c.marker == marker, m.c.expires_at.is_not(None), m.c.expires_at <= now)
            )
            got = conn.execute(
                insert(m).values(marker=marker, expires_at=expires_at)
                .on_conflict_do_nothing()
                .returning(m.c.marker)
            ).first()
            return got is not None

    def expire(self, now: float) -> int:
        r, c, m = self.reservations, self.counters, self.markers
        with self._wrap(), self.engine.begin() as conn:
            n = conn.execute(r.delete().where(r.c.expires_at <= now)).rowcount
            n += conn.execute(c.delete().where(c.c.expires_at.is_not(None), c.c.expires_at <= now)).rowcount
            n += conn.execute(m.delete().where(m.c.expires_at.is_not(None), m.c.expires_at <= now)).rowcount
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
        if isinstance(exc, (exc_mod.OperationalError, exc_mod.InterfaceError, exc_mod.TimeoutError)) or (
            isinstance(exc, exc_mod.DBAPIError) and exc.connection_invalidated
        ):
            raise BudgetStoreUnavailableError(
                f"Postgres budget store unavailable: {str(exc).splitlines()[0]}. Check the "
                f"server is reachable."
            ) from exc
        return False
