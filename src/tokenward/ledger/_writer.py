"""The background writer: events queued by ``record()``, written in time-bounded batches.

What it promises (see docs/ledger-migrations.md, "Durability"):

* **Time-bounded batches.** The first event of a batch waits at most ``max_delay``
  (default 30 ms) for company; a batch is capped at what the database commits in about
  ``_WRITE_TARGET`` (70 ms, learned from the last writes). While the database keeps up,
  an acknowledged event is committed within ~``max_delay`` + two batch writes (≤ 200 ms
  measured): that is all a ``SIGKILL`` can take.
* **Bounded queue, explicit backpressure.** At most two batch caps of events are held
  in memory, queued or being written (at least ``_MIN_QUEUE``, at most ``max_queue``).
  When the app records faster than the database commits, ``record()`` waits for room;
  if the database makes no progress for ``block_timeout`` seconds, events go to the
  dead-letter file instead (retryable, never dropped) until the writer catches up.
* **Per-event isolation** is the store's ``write`` callable's job: it stores what it can,
  dead-letters what the database refuses, and raises only when the database is
  unavailable; the writer then keeps the batch and retries with backoff.
* **Exit, SIGTERM, fork.** At interpreter exit every writer drains, retrying for its
  ``drain_timeout`` (a store sets it to outlast its database's busy timeout), then puts
  what is left in the dead-letter file. A SIGTERM handler is installed only when the app
  has none (the default action): it drains (at most ``SIGTERM_TIMEOUT``), then restores
  the default action and re-raises the signal. A fork child starts with an empty queue
  and a fresh thread (``os.register_at_fork``); a ``multiprocessing`` child drains at
  its exit too (``multiprocessing.util.Finalize``), since it leaves through ``os._exit``.
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import sys
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from typing import Any

from tokenward.errors import LedgerError, LedgerUnavailableError

__all__ = ["SIGTERM_TIMEOUT", "BatchWriter", "drain_all"]

logger = logging.getLogger("tokenward.ledger")

_WRITE_TARGET = 0.07  # seconds one batch write should take (caps the batch size)
_FIRST_CAP = 2_000  # batch cap before the writer has timed a write
_MIN_CAP = 256
_MIN_QUEUE = 1_000
#: Seconds a SIGTERM drain may take before the rest goes to the dead-letter file
#: (container runtimes send SIGKILL 10 s after SIGTERM by default).
SIGTERM_TIMEOUT = 8.0

_OPEN, _CLOSING, _CLOSED = "open", "closing", "closed"

_live: weakref.WeakSet[BatchWriter] = weakref.WeakSet()
_hooks_pid: int | None = None  # the process whose exit hooks are installed


class BatchWriter:
    """Collects items from any thread; one daemon thread writes them in batches.

    Args:
        write: stores a batch (idempotent: a batch may be retried after it raised).
            It raises only when nothing could be stored right now.
        spill: ``spill(items, reason, durable)`` puts items aside (the dead-letter file);
            called when items cannot be written in time. ``durable`` asks for a disk sync
            (a drain; a single spilled ``submit`` does not). Returns ``False`` if even
            that failed.
        name: the thread's name.
        max_batch: hard cap on a batch.
        max_delay: seconds the first item of a batch waits for more.
        max_queue: hard cap on queued items.
        block_timeout: seconds ``submit`` waits for room before spilling.
        drain_timeout: seconds ``close()`` (and exit) keep retrying before spilling.
    """

    def __init__(
        self,
        write: Callable[[Sequence[Any]], None],
        spill: Callable[[Sequence[Any], str, bool], bool],
        *,
        name: str,
        max_batch: int = 20_000,
        max_delay: float = 0.03,
        max_queue: int = 50_000,
        block_timeout: float = 1.0,
        drain_timeout: float = 30.0,
    ) -> None:
        self._write = write
        self._spill = spill
        self._name = name
        self._max_batch = max_batch
        self._max_delay = max_delay
        self._max_queue = max_queue
        self.block_timeout = block_timeout
        self.drain_timeout = drain_timeout
        self._reset()
        _live.add(self)
        _install_sigterm_handler()

    def _reset(self) -> None:
        # an RLock (a signal handler may re-enter); submit_one takes it directly, without the
        # Condition's Python-level __enter__/__exit__
        self._mutex = threading.RLock()
        self._cond = threading.Condition(self._mutex)
        self._pending: list[Any] = []
        self._inflight: list[Any] = []
        self._held = 0  # queued + being written: what the bound limits
        self._submitted = 0
        self._done = 0
        self._failures = 0
        self._error: BaseException | None = None
        self._flushers = 0
        self._state = _OPEN
        self._spilling = False
        self._thread: threading.Thread | None = None
        self._stopped = False
        self._deadline = 0.0
        self._secs_per_item = 0.0
        self._cap = min(_FIRST_CAP, self._max_batch)
        self._bound = self._queue_bound()

    def _queue_bound(self) -> int:
        bound = min(self._max_queue, max(2 * self._cap, _MIN_QUEUE))
        self._cap = min(self._cap, max(1, bound // 2))  # one batch written, one queued
        return bound

    def _after_fork_in_child(self) -> None:
        # the parent's queue, thread and (possibly held) lock stay with the parent
        closed = self._state == _CLOSED
        self._reset()
        if closed:
            self._state = _CLOSED

    # -- producers ---------------------------------------------------------------------

    def submit_one(self, item: Any) -> None:
        """Queue one item (the per-call hot path)."""
        with self._mutex:
            pending = self._pending
            if self._state is not _OPEN or self._held >= self._bound:
                if not self._make_room():
                    spill = True
                else:
                    spill = False
                    pending.append(item)
                    self._held += 1
                    self._submitted += 1
                    self._cond.notify()
            else:
                spill = False
                pending.append(item)
                self._held += 1
                self._submitted += 1
                if len(pending) == 1 or len(pending) >= self._cap:
                    self._cond.notify()
                if self._thread is None:
                    self._start()
        if spill:
            self._spill_now([item])

    def submit(self, items: Sequence[Any]) -> None:
        """Queue several items."""
        for item in items:
            self.submit_one(item)

    def _make_room(self) -> bool:
        """With the lock held: ``True`` when the caller may queue, ``False`` to spill."""
        if self._state is not _OPEN:
            if self._state is _CLOSED and not _exiting:
                raise LedgerError("this ledger is closed; open a new one to record events")
            return False  # the process is stopping: straight to the dead-letter file
        if self._thread is None:
            self._start()
        if self._spilling:
            return False
        deadline = time.monotonic() + self.block_timeout
        while self._held >= self._bound and self._state is _OPEN:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self._spilling = True
                logger.error(
                    "tokenward: the ledger database made no progress for %.1fs; new events "
                    "go to the dead-letter file until it catches up (replay them with "
                    "ledger.replay_dead_letters())",
                    self.block_timeout,
                )
                return False
            self._cond.wait(remaining)
        return self._state is _OPEN

    def _spill_now(self, items: Sequence[Any]) -> None:
        reason = (
            "the ledger was stopping"
            if self._state is not _OPEN
            else f"the database was slower than the app for {self.block_timeout:g}s"
        )
        self._spill(items, reason, False)

    def pending(self) -> int:
        with self._cond:
            return self._submitted - self._done

    # -- the writer thread ---------------------------------------------------------------

    def _start(self) -> None:
        _install_exit_hooks()
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        cond = self._cond
        backoff = 0.05
        last_taken = time.monotonic()
        first_seen: float | None = None
        while True:
            with cond:
                if not self._pending and self._state is _OPEN:
                    while not self._pending and self._state is _OPEN:
                        cond.wait()
                    first_seen = time.monotonic()
                elif first_seen is None:
                    first_seen = last_taken  # they arrived while the last batch was written
                if not self._pending or self._state is _CLOSED:
                    self._stopped = True
                    cond.notify_all()
                    return
                deadline = first_seen + self._max_delay
                while len(self._pending) < self._cap and not self._flushers:
                    if self._state is not _OPEN:
                        break
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    cond.wait(remaining)
                batch = self._pending[: self._cap]
                del self._pending[: len(batch)]
                self._inflight = batch
                last_taken = time.monotonic()
                if not self._pending:
                    first_seen = None
            started = time.monotonic()
            try:
                self._write(batch)
            except Exception as exc:  # noqa: BLE001 - the writer never dies: keep it, retry
                with cond:
                    self._inflight = []
                    if self._state is _CLOSED:  # close() gave up and spilled it already
                        self._stopped = True
                        cond.notify_all()
                        return
                    self._pending[0:0] = batch
                    self._failures += 1
                    self._error = exc
                    cond.notify_all()
                    if self._failures == 1 or self._failures % 20 == 0:
                        logger.error(
                            "tokenward: writing %d ledger events failed (kept, retrying): %s",
                            len(batch),
                            exc,
                        )
                    cond.wait(backoff)  # close() wakes it for one more try at once
                backoff = min(backoff * 2, 2.0)
                first_seen = None
                continue
            elapsed = time.monotonic() - started
            backoff = 0.05
            with cond:
                self._inflight = []
                self._held -= len(batch)
                self._done += len(batch)
                self._error = None
                self._learn(len(batch), elapsed)
                if self._spilling and self._held < self._bound // 2:
                    self._spilling = False
                cond.notify_all()

    def _learn(self, n: int, elapsed: float) -> None:
        """Cap the batch at what the database commits in ``_WRITE_TARGET`` seconds."""
        if n < _MIN_CAP:
            return  # small batches are dominated by the fixed per-transaction cost
        per_item = elapsed / n
        self._secs_per_item = (
            per_item if not self._secs_per_item else 0.7 * self._secs_per_item + 0.3 * per_item
        )
        cap = int(_WRITE_TARGET / self._secs_per_item) if self._secs_per_item else self._cap
        self._cap = max(_MIN_CAP, min(self._max_batch, cap))
        self._bound = self._queue_bound()

    # -- consumers -----------------------------------------------------------------------

    def flush(self, timeout: float | None = 60.0) -> None:
        """Wait until everything submitted before the call is written (or set aside)."""
        with self._cond:
            target = self._submitted
            if self._done >= target:
                return
            if self._thread is None or not self._thread.is_alive():
                self._start()
            failures = self._failures
            self._flushers += 1
            self._cond.notify_all()
            deadline = None if timeout is None else time.monotonic() + timeout
            try:
                while self._done < target:
                    if self._failures > failures:
                        raise LedgerUnavailableError(
                            f"{self._submitted - self._done} ledger events are not written yet "
                            f"(kept in memory, retried in the background): {self._error}",
                        ) from self._error
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        raise LedgerUnavailableError(
                            f"timed out after {timeout}s waiting for "
                            f"{self._submitted - self._done} ledger events to be written"
                        )
                    self._cond.wait(remaining if remaining is not None else 1.0)
            finally:
                self._flushers -= 1

    def close(self, timeout: float | None = None) -> int:
        """Write everything queued, retrying for up to ``timeout`` (default
        ``drain_timeout``) seconds; what is still unwritten then goes to the dead-letter
        file. Returns how many items went there. Idempotent."""
        self._begin_close(timeout)
        return self._finish_close()

    def _begin_close(self, timeout: float | None) -> None:
        with self._cond:
            if self._state is not _OPEN:
                return
            self._state = _CLOSING
            limit = self.drain_timeout if timeout is None else timeout
            self._deadline = time.monotonic() + limit
            self._cond.notify_all()

    def _finish_close(self) -> int:
        with self._cond:
            if self._state is _CLOSED:
                return 0
            # wait on the condition, not thread.join(): a SIGTERM handler may run this in
            # a thread that already holds the (reentrant) lock; wait() releases it fully
            while self._thread is not None and not self._stopped and self._thread.is_alive():
                remaining = self._deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(min(remaining, 0.25))
            leftover = [*self._inflight, *self._pending] if not self._stopped else []
            self._pending = []
            self._held = 0
            self._done = self._submitted
            self._state = _CLOSED
            self._cond.notify_all()
            error = self._error
        _live.discard(self)
        if leftover:
            self._spill(leftover, f"not written before the ledger closed: {error}", True)
        return len(leftover)


# -- process-wide hooks ---------------------------------------------------------------------

_exiting = False


def drain_all(timeout: float | None = None) -> None:
    """Drain every live writer at once (exit, SIGTERM), each within its own
    ``drain_timeout`` (and ``timeout`` when given); leftovers go to dead-letter files."""
    global _exiting
    _exiting = True
    writers = list(_live)
    for w in writers:
        w._begin_close(timeout if timeout is None else min(timeout, w.drain_timeout))
    for w in writers:
        try:
            spilled = w._finish_close()
        except Exception:  # pragma: no cover - best effort at exit
            logger.exception("tokenward: draining a ledger writer failed")
            continue
        if spilled:
            logger.error(
                "tokenward: %d ledger events could not be written before the process "
                "stopped; they are in the dead-letter file (replay them with "
                "ledger.replay_dead_letters())",
                spilled,
            )


atexit.register(drain_all)


def _after_fork_in_child() -> None:
    global _exiting
    _exiting = False
    for w in list(_live):
        w._after_fork_in_child()


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _install_exit_hooks() -> None:
    """A ``multiprocessing`` child leaves through ``os._exit`` (no atexit): drain in its
    finalizers. Installed once per process, when its first writer thread starts (in a
    child that is after multiprocessing reset its finalizer registry)."""
    global _hooks_pid
    pid = os.getpid()
    if _hooks_pid == pid:
        return
    _hooks_pid = pid
    util = sys.modules.get("multiprocessing.util")
    if util is not None:
        util.Finalize(None, drain_all, exitpriority=100)


def _on_sigterm(signum: int, frame: Any) -> None:
    try:
        drain_all(SIGTERM_TIMEOUT)
    finally:
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)


def _install_sigterm_handler() -> None:
    """Flush on SIGTERM, but only when the app left SIGTERM at its default action."""
    if threading.current_thread() is not threading.main_thread():
        return
    try:
        current = signal.getsignal(signal.SIGTERM)
        if current is signal.SIG_DFL:
            signal.signal(signal.SIGTERM, _on_sigterm)
    except (ValueError, OSError, AttributeError):  # pragma: no cover - no signals here
        return
