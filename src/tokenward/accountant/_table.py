"""The call table: every model call's lifecycle, in one place.

A call is *pending* from :meth:`Accountant.preflight` until it ends, once, as *settled*,
*released* (failed) or *cancelled*. The table is the only record of that: adapters keep
their per-call data in :attr:`Run.data` and Budgets' :class:`~tokenward.budgets.Reservation`
lives in :attr:`Run.reservation`, so nothing else can disagree about whether a call is
pending. Ending a call is claimed atomically (:meth:`RunTable.take`); when recording it
fails, :meth:`RunTable.restore` puts it back as it was (the caller may retry). Runs that
never end are evicted oldest first (by count, and after ``max_age`` seconds, looked at
once a second) and handed
back to the Accountant, which releases their reservations.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

from tokenward.errors import ConfigurationError

if TYPE_CHECKING:
    from tokenward.accountant._estimate import Estimate
    from tokenward.accountant._tracking import Dims, Tracker
    from tokenward.budgets import Reservation
    from tokenward.catalog import ModelInfo

__all__ = ["Run", "RunState", "RunTable"]

RunState = Literal["pending", "settled", "released", "cancelled"]


class Run:
    """One call between its start and its end (a row of the call table)."""

    __slots__ = (
        "base_url",
        "budget_dims",
        "committed",
        "data",
        "dims",
        "estimate",
        "extend_at",
        "id",
        "info",
        "kind",
        "model",
        "opened",
        "parent_id",
        "predicted",
        "prompt_text",
        "reservation",
        "started",
        "trackers",
        "watch",
    )

    def __init__(
        self,
        run_id: str,
        model: str,
        info: ModelInfo,
        dims: Dims,
        kind: str = "chat",
        parent_id: str | None = None,
        trackers: tuple[Tracker, ...] = (),
        base_url: str | None = None,
        data: Any = None,
    ) -> None:
        self.id = run_id
        self.model = model  #: the name recorded on the event
        self.info = info
        self.dims = dims
        self.kind = kind
        self.parent_id = parent_id
        self.trackers = trackers
        self.base_url = base_url
        self.data = data  #: the adapter's own per-call data (a stream's last chunk...)
        self.estimate: Estimate | None = None
        self.reservation: Reservation | None = None
        self.budget_dims: dict[str, Any] | None = None
        self.prompt_text: str | None = None
        self.predicted: int | None = None  #: output tokens reserved from a prediction
        self.committed = False  #: its spend reached the budgets (a retried end skips it)
        self.extend_at = 0.0  #: budget-clock time of the next reservation keep-alive
        self.watch: tuple[Any, Any] | None = None  #: (asyncio task, done callback) watched
        #: when it was opened, and when the model call itself started (reset then)
        self.opened = self.started = time.perf_counter()

    def __repr__(self) -> str:
        return f"Run({self.id!r}, model={self.model!r}, kind={self.kind!r})"


class RunTable:
    """Pending runs by id, and the ids of ended runs (for idempotency), under one lock."""

    def __init__(
        self, *, max_pending: int = 10_000, max_ended: int = 100_000, max_age: float = 86_400.0
    ) -> None:
        self.max_pending = max_pending
        self.max_ended = max_ended
        self.max_age = max_age
        self._lock = threading.Lock()
        self._pending: OrderedDict[str, Run] = OrderedDict()
        self._ended: OrderedDict[str, RunState] = OrderedDict()
        self._age_check_at = 0.0  # when open() next looks for runs older than max_age
        #: ``get(run_id)``: the pending run ``run_id``, if any (read only: adapters look, the
        #: Accountant ends); the pending dict's own getter, no Python frame per look
        self.get: Callable[[str], Run | None] = self._pending.get

    def __len__(self) -> int:
        return len(self._pending)

    def open(self, run: Run) -> tuple[Run | None, list[Run]]:
        """Add a pending run. Returns the run it replaces (same id, still pending) and the
        runs evicted to make room. Raises ``ConfigurationError`` for an id that already ended."""
        evicted: list[Run] = []
        with self._lock:
            if run.id in self._ended:
                raise ConfigurationError(
                    f"run_id {run.id!r} was already settled; use a fresh id for every model call"
                )
            replaced = self._pending.pop(run.id, None)
            self._pending[run.id] = run
            pending = self._pending
            while len(pending) > self.max_pending:
                evicted.append(pending.popitem(last=False)[1])
            if run.opened >= self._age_check_at:  # the oldest is looked at once a second
                self._age_check_at = run.opened + 1.0
                cutoff = run.opened - self.max_age
                while pending and next(iter(pending.values())).opened < cutoff:
                    evicted.append(pending.popitem(last=False)[1])
        return replaced, evicted

    def state(self, run_id: str) -> RunState | None:
        """``"pending"``, how the run ended, or ``None`` when unknown (or long forgotten)."""
        with self._lock:
            if run_id in self._pending:
                return "pending"
            return self._ended.get(run_id)

    def take(self, run_id: str, state: RunState) -> tuple[bool, Run | None]:
        """Claim the end of ``run_id`` as ``state``: ``(True, run)`` (``run`` is ``None`` for an
        id that was never opened), or ``(False, None)`` when it already ended."""
        with self._lock:
            if run_id in self._ended:
                return False, None
            run = self._pending.pop(run_id, None)
            self._ended[run_id] = state
            if len(self._ended) > self.max_ended:
                self._ended.popitem(last=False)
        return True, run

    def restore(self, run_id: str, run: Run | None) -> None:
        """Undo :meth:`take`: recording the end failed, so the run is pending again."""
        with self._lock:
            self._ended.pop(run_id, None)
            if run is not None:
                self._pending[run_id] = run

    def discard(self, run: Run) -> None:
        """Forget a pending run without ending it (its call was denied, never made)."""
        with self._lock:
            if self._pending.get(run.id) is run:
                del self._pending[run.id]

    def drain(self) -> list[Run]:
        """Remove and return every pending run (closing)."""
        with self._lock:
            runs = list(self._pending.values())
            self._pending.clear()
        return runs
