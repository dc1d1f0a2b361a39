"""A background writer that batches events into one transaction per batch."""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from typing import Any

from tokenward.errors import LedgerError

logger = logging.getLogger("tokenward.ledger")

_live: weakref.WeakSet[_BatchWriter] = weakref.WeakSet()


def _flush_all_at_exit() -> None:
    for writer in list(_live):
        try:
            writer.close(timeout=10.0)
        except Exception as exc:  # pragma: no cover - best effort at interpreter exit
            logger.error("tokenward: ledger events could not be written at exit: %s", exc)


atexit.register(_flush_all_at_exit)


class _BatchWriter:
    """Collects items from any thread; a daemon thread writes them in batches.

    ``write(batch)`` must be idempotent (it may be retried after a failure).
    A failed batch is kept and retried with backoff; nothing is dropped.
    ``flush()`` waits until everything submitted before the call is written and
    raises :class:`LedgerError` if a write attempt failed meanwhile.
    """

    def __init__(
        self,
        write: Callable[[Sequence[Any]], None],
        *,
        name: str,
        max_batch: int = 5000,
        max_delay: float = 0.1,
    ) -> None:
        self._write = write
        self._name = name
        self._max_batch = max_batch
        self._max_delay = max_delay
        self._reset()
        _live.add(self)

    def _reset(self) -> None:
        self._pid = os.getpid()
        self._cond = threading.Condition()
        self._pending: list[Any] = []
        self._submitted = 0
        self._done = 0
        self._failures = 0
        self._error: BaseException | None = None
        self._flushers = 0
        self._closing = False
        self._closed = False
        self._thread: threading.Thread | None = None

    def _ensure_thread(self) -> None:
        if os.getpid() != self._pid:
            # forked: the parent's thread and pending items stay with the parent
            self._reset()
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
            self._thread.start()

    def submit(self, items: Sequence[Any]) -> None:
        if not items:
            return
        with self._cond:
            if self._closed or self._closing:
                raise LedgerError("this ledger is closed; open a new one to record events")
            self._ensure_thread()
            self._pending.extend(items)
            self._submitted += len(items)
            if len(self._pending) >= self._max_batch:
                self._cond.notify_all()

    def submit_one(self, item: Any) -> None:
        """``submit([item])`` without building a list (the per-call hot path)."""
        with self._cond:
            if self._closed or self._closing:
                raise LedgerError("this ledger is closed; open a new one to record events")
            thread = self._thread
            if thread is None or self._pid != os.getpid() or not thread.is_alive():
                self._ensure_thread()
            pending = self._pending
            pending.append(item)
            self._submitted += 1
            if len(pending) >= self._max_batch:
                self._cond.notify_all()

    def pending(self) -> int:
        with self._cond:
            return self._submitted - self._done

    def _run(self) -> None:
        backoff = 0.05
        while True:
            with self._cond:
                while not self._pending and not self._closing:
                    self._cond.wait()
                if not self._pending:
                    return
                if (
                    len(self._pending) < self._max_batch
                    and not self._flushers
                    and not self._closing
                ):
                    self._cond.wait(self._max_delay)
                batch = self._pending[: self._max_batch]
                del self._pending[: len(batch)]
            try:
                self._write(batch)
            except BaseException as exc:  # keep the batch, retry later
                with self._cond:
                    self._pending[0:0] = batch
                    self._failures += 1
                    self._error = exc
                    self._cond.notify_all()
                    closing = self._closing
                logger.error(
                    "tokenward: writing %d ledger events failed (will retry): %s", len(batch), exc
                )
                if closing:
                    return
                time.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            backoff = 0.05
            with self._cond:
                self._done += len(batch)
                self._error = None
                self._cond.notify_all()

    def flush(self, timeout: float | None = 60.0) -> None:
        with self._cond:
            if os.getpid() != self._pid:
                self._reset()
                return
            target = self._submitted
            if self._done >= target:
                return
            self._ensure_thread()
            failures = self._failures
            self._flushers += 1
            self._cond.notify_all()
            deadline = None if timeout is None else time.monotonic() + timeout
            try:
                while self._done < target:
                    if self._failures > failures:
                        raise LedgerError(
                            f"{self._submitted - self._done} ledger events are not written yet "
                            f"(kept in memory, retried in the background): {self._error}"
                        ) from self._error
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        raise LedgerError(
                            f"timed out after {timeout}s waiting for "
                            f"{self._submitted - self._done} ledger events to be written"
                        )
                    self._cond.wait(remaining if remaining is not None else 1.0)
            finally:
                self._flushers -= 1

    def close(self, timeout: float | None = 60.0) -> None:
        with self._cond:
            if self._closed:
                return
            if os.getpid() != self._pid:
                self._reset()
            self._closing = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None and thread.is_alive():
            thread.join(timeout)
        with self._cond:
            left = self._submitted - self._done
            self._closed = True
            error = self._error
        _live.discard(self)
        if left:
            raise LedgerError(f"{left} ledger events could not be written: {error}") from error
