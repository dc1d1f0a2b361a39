"""Calibration kept in a ledger: loaded when an Accountant starts, written off the hot path.

A :class:`CalibrationSync` binds a :class:`~tokenward.counting.Calibrator` (the process-wide
one by default) to a ledger's state documents (namespace ``"calibration"``, one JSON document
per (provider, model, content class), the :class:`CalibrationRecord` of the key):

* **load** (once, at construction): the ledger's records are merged into the calibrator
  (:meth:`Calibrator.merge_state`); a ledger that cannot be read is logged once and the
  calibrator simply stays as it was (uncalibrated for those keys);
* **write** never happens in the call that taught the calibrator: a snapshot
  (``Calibrator.on_snapshot``: a ratio moved, or a key's first observation of a day) only
  marks its key dirty and arms a timer; the timer thread writes the dirty keys at most once
  per ``interval`` seconds, and :meth:`flush` / :meth:`close` (the Accountant's own) write
  every key that learned something since the sync started. At interpreter exit live syncs
  flush too (best effort);
* **merge across processes**: a write reads the ledger's records first and merges each with
  the calibrator's (:func:`merge_records`: the learned window resting on more observations
  wins, ratio snapshots and daily accuracy points are united), so two processes writing the
  same key keep each other's history.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import threading
import weakref
from collections.abc import Callable, Mapping
from typing import Any

from tokenward.counting._calibrator import (
    CalibrationRecord,
    Calibrator,
    default_calibrator,
    merge_records,
)

__all__ = ["NAMESPACE", "CalibrationSync", "attach", "read_calibration", "state_key"]

logger = logging.getLogger("tokenward")

#: the ledger state namespace calibration records live in
NAMESPACE = "calibration"
#: seconds between background writes of changed keys (at most one write batch per interval)
DEFAULT_INTERVAL = 30.0

_Key = tuple[str, str, str]


def state_key(key: _Key) -> str:
    """The state-document key of a (provider, model, content class): a JSON array (model
    names hold ``/``, ``:`` and ``|``; this cannot collide)."""
    return json.dumps(list(key), ensure_ascii=True, separators=(",", ":"))


def read_calibration(ledger: Any) -> tuple[list[CalibrationRecord], int]:
    """The calibration records a ledger holds, and how many documents were unreadable
    (skipped). Raises what the ledger raises when it cannot be read at all."""
    docs = ledger.get_state(NAMESPACE)
    records: list[CalibrationRecord] = []
    bad = 0
    for value in docs.values():
        try:
            if not isinstance(value, Mapping):
                raise TypeError(f"a calibration record is a JSON object, got {value!r:.40}")
            records.append(CalibrationRecord.from_dict(value))
        except Exception:  # noqa: BLE001 - one bad document must not hide the others
            bad += 1
    return records, bad


class _Fanout:
    """A calibrator's ``on_snapshot``: tells every live sync (and the listener it replaced)."""

    def __init__(self, previous: Callable[[CalibrationRecord], Any] | None) -> None:
        self.previous = previous
        self.syncs: weakref.WeakSet[CalibrationSync] = weakref.WeakSet()

    def __call__(self, record: CalibrationRecord) -> None:
        for sync in tuple(self.syncs):
            sync.mark(record.key)
        if self.previous is not None:
            self.previous(record)


_fanout_lock = threading.Lock()
_live: weakref.WeakSet[CalibrationSync] = weakref.WeakSet()


def _fanout(calibrator: Calibrator) -> _Fanout:
    with _fanout_lock:
        current = calibrator.on_snapshot
        if isinstance(current, _Fanout):
            return current
        fan = _Fanout(current)
        calibrator.on_snapshot = fan
        return fan


class CalibrationSync:
    """Keeps a calibrator's records in a ledger (see the module doc).

    ``interval`` is the least time between two background writes (``0`` or less: no
    background writes, only :meth:`flush` / :meth:`close`). ``writes`` counts the
    ``put_state`` calls made, ``loaded`` the records taken at start.
    """

    def __init__(
        self,
        ledger: Any,
        calibrator: Calibrator | None = None,
        *,
        interval: float = DEFAULT_INTERVAL,
        load: bool = True,
    ) -> None:
        self.ledger = ledger
        self.calibrator = calibrator if calibrator is not None else default_calibrator()
        self.interval = interval
        self.writes = 0
        self.loaded = 0
        self._lock = threading.Lock()  # dirty set and timer
        self._write_lock = threading.Lock()  # one write batch at a time
        self._dirty: set[_Key] = set()
        self._timer: threading.Timer | None = None
        self._closed = False
        self._warned_write = False
        self._read_only = bool(getattr(ledger, "read_only", False))
        if load:
            self.load()
        # keys learned before this sync started are not this ledger's news
        self._written: dict[_Key, int] = self.calibrator.observations()
        _fanout(self.calibrator).syncs.add(self)
        _live.add(self)

    # -- loading ---------------------------------------------------------------------------
    def load(self) -> int:
        """Merge the ledger's records into the calibrator; 0 (logged) when it cannot."""
        try:
            records, bad = read_calibration(self.ledger)
            taken = self.calibrator.merge_state(records)
        except Exception as exc:  # noqa: BLE001 - never fail the host over learned values
            logger.warning(
                "tokenward: could not load the estimator calibration from the ledger (%s: %s); "
                "estimates start uncalibrated",
                type(exc).__name__,
                exc,
            )
            return 0
        if bad:
            logger.warning(
                "tokenward: skipped %d unreadable calibration record(s) in the ledger; "
                "those estimates start uncalibrated",
                bad,
            )
        self.loaded += taken
        return taken

    # -- writing ---------------------------------------------------------------------------
    def mark(self, key: _Key) -> None:
        """A key has news (called from the calibrator's snapshot, in the observing thread):
        remember it and arm the background write. No I/O here."""
        with self._lock:
            self._dirty.add(key)
            if self._timer is not None or self._closed or self._read_only or self.interval <= 0:
                return
            timer = self._timer = threading.Timer(self.interval, self._background_flush)
            timer.daemon = True
        timer.start()

    def _background_flush(self) -> None:
        with self._lock:
            self._timer = None
        self.flush()

    def _changed(self) -> set[_Key]:
        with self._lock:
            keys, self._dirty = self._dirty, set()
        for key, n in self.calibrator.observations().items():
            if self._written.get(key) != n:
                keys.add(key)
        return keys

    def flush(self) -> int:
        """Write every key with news now (in the calling thread); the number written.
        Failures are logged once and the keys are kept for the next try."""
        if self._read_only:
            return 0
        with self._write_lock:
            keys = self._changed()
            if not keys:
                return 0
            written = 0
            try:
                records = [r for r in map(self.calibrator.record, keys) if r is not None]
                stored = {r.key: r for r in read_calibration(self.ledger)[0]} if records else {}
                for record in records:
                    other = stored.get(record.key)
                    merged = merge_records(record, other) if other is not None else record
                    self.ledger.put_state(NAMESPACE, state_key(record.key), merged.to_dict())
                    self.writes += 1
                    written += 1
                    self._written[record.key] = record.samples
            except Exception as exc:  # never fail the host over learned values
                with self._lock:
                    self._dirty |= keys
                if not self._warned_write:
                    self._warned_write = True
                    logger.warning(
                        "tokenward: could not write the estimator calibration to the ledger "
                        "(%s: %s); it stays in memory (logged once)",
                        type(exc).__name__,
                        exc,
                    )
                else:
                    logger.debug("calibration write failed", exc_info=True)
            return written

    def close(self) -> None:
        """Stop the background writes and write what is left. Idempotent; never raises."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()
        try:
            self.flush()
        finally:
            fan = self.calibrator.on_snapshot
            if isinstance(fan, _Fanout):
                fan.syncs.discard(self)
            _live.discard(self)

    def __repr__(self) -> str:
        return (
            f"<CalibrationSync ledger={type(self.ledger).__name__} loaded={self.loaded} "
            f"writes={self.writes}>"
        )


def attach(ledger: Any, calibrator: Calibrator | None = None) -> CalibrationSync | None:
    """A sync for an Accountant's ledger, or ``None`` for a store without state documents.
    Never raises."""
    if not callable(getattr(ledger, "get_state", None)) or not callable(
        getattr(ledger, "put_state", None)
    ):
        return None
    try:
        return CalibrationSync(ledger, calibrator)
    except Exception:
        logger.warning("tokenward: estimator calibration not kept in the ledger", exc_info=True)
        return None


@atexit.register
def _flush_at_exit() -> None:
    for sync in tuple(_live):
        sync._warned_write = True  # at exit a closed ledger is no news: debug log only
        with contextlib.suppress(Exception):  # exit is best effort
            sync.flush()
