"""Correction of estimated token counts from provider-reported usage, per (provider, model,
content class), with an exportable state and a drift history.

An estimate for a model without a local tokenizer is its o200k token count (see
:class:`~tokenward.counting.EstimatorCounter`); the provider's tokenizer spends more or fewer
tokens on the same text, and the ratio differs by content (code, CJK, other scripts...).
Each reported usage teaches the ratio of its prompt's dominant content class and the model's
overall ratio; a class with too few observations uses the overall one.

Persistence: :meth:`Calibrator.state` returns one :class:`CalibrationRecord` per key (learned
log-ratios, timestamped ratio snapshots and daily accuracy points), :meth:`Calibrator.load_state`
restores them (:meth:`Calibrator.merge_state` merges them with what is already known), and
``Calibrator(on_snapshot=...)`` is told whenever a key's ratio moved enough to be snapshotted
(and on a key's first observation of a UTC day), so a store can write the record then
(settable later: ``calibrator.on_snapshot = store.save``). :mod:`tokenward.counting._persist`
keeps the records in a ledger.

Accuracy over time: every accepted observation adds to its key's point of the day (UTC) the
relative error of the raw estimate (``|estimate - reported| / reported``, before calibration)
and of the calibrated estimate with the ratio in force *before* the observation (after
calibration, out of sample). The last ``daily`` points are kept per key.
"""

from __future__ import annotations

import math
import statistics
import threading
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from typing import Any

__all__ = [
    "ALL_CONTENT",
    "AccuracyPoint",
    "CalibrationRecord",
    "Calibrator",
    "RatioSnapshot",
    "default_calibrator",
    "merge_records",
]

#: content class of the model-wide ratio (every observation teaches it)
ALL_CONTENT = "*"
#: share of a prompt's tokens its dominant class needs for the observation to teach that class
_DOMINANT_SHARE = 0.6

_Key = tuple[str, str, str]  # (provider, model, content class)


@dataclass(frozen=True, slots=True)
class RatioSnapshot:
    """The ratio of one key at one time, and how many observations it rested on."""

    at: datetime
    ratio: float
    samples: int

    def to_dict(self) -> dict[str, Any]:
        return {"at": self.at.isoformat(), "ratio": self.ratio, "samples": self.samples}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RatioSnapshot:
        return cls(
            datetime.fromisoformat(str(data["at"])), float(data["ratio"]), int(data["samples"])
        )


@dataclass(frozen=True, slots=True)
class AccuracyPoint:
    """One UTC day of a key's estimation accuracy: ``samples`` accepted observations and the
    sums of their relative errors before (raw estimate) and after calibration (the ratio in
    force before each observation). ``error_before`` / ``error_after`` are the means."""

    day: date
    samples: int
    sum_before: float
    sum_after: float

    @property
    def error_before(self) -> float:
        """Mean relative error of the uncalibrated estimate (0.05 = 5 %)."""
        return self.sum_before / self.samples if self.samples else 0.0

    @property
    def error_after(self) -> float:
        """Mean relative error of the calibrated estimate (0.05 = 5 %)."""
        return self.sum_after / self.samples if self.samples else 0.0

    def add(self, before: float, after: float) -> AccuracyPoint:
        return AccuracyPoint(
            self.day, self.samples + 1, self.sum_before + before, self.sum_after + after
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "day": self.day.isoformat(),
            "samples": self.samples,
            "sum_before": self.sum_before,
            "sum_after": self.sum_after,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AccuracyPoint:
        return cls(
            date.fromisoformat(str(data["day"])),
            int(data["samples"]),
            float(data["sum_before"]),
            float(data["sum_after"]),
        )


@dataclass(frozen=True, slots=True)
class CalibrationRecord:
    """Everything the calibrator knows about one (provider, model, content class)."""

    provider: str
    model: str
    content_class: str
    ratio: float
    log_ratios: tuple[float, ...]
    history: tuple[RatioSnapshot, ...] = field(default=())
    #: accepted observations ever (``log_ratios`` keeps only the last ``window``)
    observations: int = 0
    #: daily accuracy points, oldest first
    accuracy: tuple[AccuracyPoint, ...] = field(default=())

    @property
    def samples(self) -> int:
        """Accepted observations this record rests on (at least its kept log-ratios)."""
        return max(self.observations, len(self.log_ratios))

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.provider, self.model, self.content_class)

    def to_dict(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "model": self.model,
            "content_class": self.content_class,
            "ratio": self.ratio,
            "log_ratios": list(self.log_ratios),
            "history": [s.to_dict() for s in self.history],
            "observations": self.samples,
            "accuracy": [p.to_dict() for p in self.accuracy],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CalibrationRecord:
        return cls(
            provider=str(data.get("provider") or ""),
            model=str(data.get("model") or ""),
            content_class=str(data.get("content_class") or ALL_CONTENT),
            ratio=float(data.get("ratio", 1.0)),
            log_ratios=tuple(float(x) for x in data.get("log_ratios") or ()),
            history=tuple(RatioSnapshot.from_dict(s) for s in data.get("history") or ()),
            observations=int(data.get("observations") or 0),
            accuracy=tuple(AccuracyPoint.from_dict(p) for p in data.get("accuracy") or ()),
        )


def merge_records(
    mine: CalibrationRecord, other: CalibrationRecord, *, history: int = 256, daily: int = 90
) -> CalibrationRecord:
    """One record of the same key from two sources (two processes, or memory and a ledger).

    The learned window (log-ratios, ratio) comes from the record resting on more
    observations (``mine`` on a tie); ratio snapshots are united (by time) and daily accuracy
    points too (for a day both have, the one with more samples: the same point read back, or
    the busier process's), keeping the last ``history`` snapshots and ``daily`` points.
    """
    base = other if other.samples > mine.samples else mine
    snaps = {(s.at, s.ratio, s.samples): s for s in (*other.history, *mine.history)}
    snapshots = sorted(snaps.values(), key=lambda s: s.at)
    days: dict[date, AccuracyPoint] = {}
    for p in (*mine.accuracy, *other.accuracy):
        have = days.get(p.day)
        if have is None or p.samples > have.samples:
            days[p.day] = p
    accuracy = [days[d] for d in sorted(days)]
    return CalibrationRecord(
        provider=base.provider,
        model=base.model,
        content_class=base.content_class,
        ratio=base.ratio,
        log_ratios=base.log_ratios,
        history=tuple(snapshots[-max(1, history) :]),
        observations=max(mine.samples, other.samples),
        accuracy=tuple(accuracy[-max(1, daily) :]),
    )


class _Entry:
    __slots__ = ("daily", "history", "obs", "ratio", "total")

    def __init__(self, window: int, history: int, daily: int) -> None:
        self.obs: deque[float] = deque(maxlen=window)
        self.ratio: float | None = None
        self.history: deque[RatioSnapshot] = deque(maxlen=history)
        self.daily: deque[AccuracyPoint] = deque(maxlen=daily)
        self.total = 0


class Calibrator:
    """Learns ``reported / estimated`` per (provider, model, content class), robustly.

    Each observation contributes ``log(reported / estimate)``. A key's ratio is the
    exponential of the *median* of its last ``window`` accepted log-ratios, clamped to
    ``[min_ratio, max_ratio]``. Observations are rejected when either count is below
    ``min_tokens`` (tiny prompts are dominated by fixed overheads), when the raw ratio is
    outside ``[min_ratio / 2, max_ratio * 2]`` (mismatched payloads, e.g. usage including
    images we never saw), or, once ``min_samples`` are in, when they are more than
    ``outlier_factor`` times away from the current ratio. Until ``min_samples`` observations
    are in, a key has no ratio of its own (a class falls back to the model-wide ratio, that
    one to 1.0). A snapshot is added to a key's history when its ratio first exists and
    whenever it moved by ``snapshot_change`` (relative) since the last snapshot; the history
    keeps the last ``history`` snapshots. Accuracy is kept per UTC day, the last ``daily``
    days (see the module doc). Thread-safe.
    """

    def __init__(
        self,
        *,
        window: int = 64,
        min_samples: int = 3,
        min_ratio: float = 0.5,
        max_ratio: float = 2.0,
        outlier_factor: float = 1.5,
        min_tokens: int = 16,
        history: int = 256,
        daily: int = 90,
        snapshot_change: float = 0.01,
        on_snapshot: Callable[[CalibrationRecord], Any] | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        if not 0 < min_ratio <= 1.0 <= max_ratio:
            raise ValueError("need 0 < min_ratio <= 1 <= max_ratio")
        self.window = window
        self.min_samples = max(1, min_samples)
        self.min_ratio = min_ratio
        self.max_ratio = max_ratio
        self._log_outlier = math.log(outlier_factor)
        self.min_tokens = min_tokens
        self._history = history
        self._daily = max(1, daily)
        self._snapshot_change = snapshot_change
        #: called with a :class:`CalibrationRecord` whenever a key's ratio moved enough to be
        #: snapshotted (in the observing thread, outside the lock): where a store persists it
        self.on_snapshot = on_snapshot
        self._clock = clock or (lambda: datetime.now(timezone.utc))
        self._lock = threading.Lock()
        self._entries: dict[_Key, _Entry] = {}
        self.rejected = 0

    # -- learning --------------------------------------------------------------------------
    def observe(
        self,
        estimate: int | Mapping[str, int],
        reported: int,
        model: str | None = None,
        *,
        provider: str | None = None,
        content_class: str | None = None,
    ) -> bool:
        """Record one (estimate, reported) pair; False when rejected as invalid or an outlier.

        ``estimate`` is the uncalibrated estimate, or its split by content class
        (``{"code": 800, "prose": 200}``): the dominant class (60 %+ of the tokens) learns
        from the part of ``reported`` the other classes' current ratios do not explain.
        ``content_class`` names the class of a plain ``estimate``.
        """
        if isinstance(estimate, Mapping):
            parts = {str(k): int(v) for k, v in estimate.items() if int(v) > 0}
        else:
            parts = {content_class or ALL_CONTENT: int(estimate)}
        total = sum(parts.values())
        if total < self.min_tokens or reported < self.min_tokens:
            return self._reject()
        r = reported / total
        if not (self.min_ratio / 2 <= r <= self.max_ratio * 2):
            return self._reject()
        p, m = provider or "", model or ""
        snapshots: list[CalibrationRecord] = []
        with self._lock:
            dominant, size = max(parts.items(), key=lambda kv: kv[1])
            prior = self._ratio_locked(p, m, dominant)  # the ratio its estimate was made with
            accepted = self._add((p, m, ALL_CONTENT), math.log(r), snapshots)
            if accepted and dominant != ALL_CONTENT and size >= _DOMINANT_SHARE * total:
                rest = sum(
                    self._ratio_locked(p, m, c) * n for c, n in parts.items() if c != dominant
                )
                explained = reported - rest
                if explained > 0:
                    rc = explained / size
                    if self.min_ratio / 2 <= rc <= self.max_ratio * 2:
                        self._add((p, m, dominant), math.log(rc), snapshots, prior)
            if not accepted:
                self.rejected += 1
        listener = self.on_snapshot
        if listener is not None:
            for record in snapshots:
                listener(record)
        return accepted

    def _add(
        self,
        key: _Key,
        lr: float,
        snapshots: list[CalibrationRecord],
        prior: float | None = None,
    ) -> bool:
        entry = self._entries.get(key)
        if entry is None:
            entry = self._entries[key] = _Entry(self.window, self._history, self._daily)
        obs = entry.obs
        if len(obs) >= self.min_samples and abs(lr - statistics.median(obs)) > self._log_outlier:
            return False
        if prior is None:
            prior = self._ratio_locked(*key)
        now = self._clock()
        new_day = self._account(entry, now.date(), lr, prior)
        obs.append(lr)
        entry.total += 1
        if len(obs) >= self.min_samples:
            ratio = min(self.max_ratio, max(self.min_ratio, math.exp(statistics.median(obs))))
            entry.ratio = ratio
            last = entry.history[-1].ratio if entry.history else None
            if last is None or abs(ratio - last) >= self._snapshot_change * last:
                entry.history.append(RatioSnapshot(now, ratio, len(obs)))
                snapshots.append(self._record(key, entry))
            elif new_day:  # a new day's accuracy point is news for a store too
                snapshots.append(self._record(key, entry))
        return True

    @staticmethod
    def _account(entry: _Entry, day: date, lr: float, prior: float) -> bool:
        """Add one observation's errors to the day's accuracy point; True on a new day.

        ``lr`` is ``log(reported / raw estimate)``: the raw estimate is off by
        ``|exp(-lr) - 1|`` of the reported count, the calibrated one by ``|prior*exp(-lr) - 1|``.
        """
        inv = math.exp(-lr)
        before, after = abs(inv - 1.0), abs(prior * inv - 1.0)
        daily = entry.daily
        if daily and daily[-1].day == day:
            daily[-1] = daily[-1].add(before, after)
            return False
        daily.append(AccuracyPoint(day, 1, before, after))
        return True

    def _reject(self) -> bool:
        with self._lock:
            self.rejected += 1
        return False

    # -- reading ---------------------------------------------------------------------------
    def _ratio_locked(self, provider: str, model: str, content_class: str) -> float:
        for c in (content_class, ALL_CONTENT):
            entry = self._entries.get((provider, model, c))
            if entry is not None and entry.ratio is not None:
                return entry.ratio
        return 1.0

    def ratio(
        self,
        model: str | None = None,
        *,
        provider: str | None = None,
        content_class: str | None = None,
    ) -> float:
        """Correction factor for ``model`` (and content class): 1.0 until learned."""
        return self._ratio_locked(provider or "", model or "", content_class or ALL_CONTENT)

    def apply(
        self,
        estimate: int,
        model: str | None = None,
        *,
        provider: str | None = None,
        content_class: str | None = None,
    ) -> int:
        """``estimate`` corrected by the learned ratio."""
        r = self.ratio(model, provider=provider, content_class=content_class)
        return estimate if r == 1.0 else math.floor(estimate * r + 0.5)

    def samples(
        self,
        model: str | None = None,
        *,
        provider: str | None = None,
        content_class: str | None = None,
    ) -> int:
        """Number of accepted observations kept for the key."""
        entry = self._entries.get((provider or "", model or "", content_class or ALL_CONTENT))
        return len(entry.obs) if entry else 0

    def history(
        self,
        model: str | None = None,
        *,
        provider: str | None = None,
        content_class: str | None = None,
    ) -> list[RatioSnapshot]:
        """The key's ratio snapshots, oldest first (its drift over time)."""
        entry = self._entries.get((provider or "", model or "", content_class or ALL_CONTENT))
        return list(entry.history) if entry else []

    def accuracy(
        self,
        model: str | None = None,
        *,
        provider: str | None = None,
        content_class: str | None = None,
    ) -> list[AccuracyPoint]:
        """The key's daily accuracy points, oldest first (estimation accuracy over time)."""
        entry = self._entries.get((provider or "", model or "", content_class or ALL_CONTENT))
        return list(entry.daily) if entry else []

    def observations(self) -> dict[_Key, int]:
        """Accepted observations ever, per key (a cheap way to see which keys changed)."""
        with self._lock:
            return {k: e.total for k, e in self._entries.items()}

    # -- persistence -----------------------------------------------------------------------
    @staticmethod
    def _record(key: _Key, entry: _Entry) -> CalibrationRecord:
        return CalibrationRecord(
            provider=key[0],
            model=key[1],
            content_class=key[2],
            ratio=entry.ratio if entry.ratio is not None else 1.0,
            log_ratios=tuple(entry.obs),
            history=tuple(entry.history),
            observations=max(entry.total, len(entry.obs)),
            accuracy=tuple(entry.daily),
        )

    def record(self, key: _Key) -> CalibrationRecord | None:
        """The record of one ``(provider, model, content class)`` key, if it has one."""
        with self._lock:
            entry = self._entries.get(key)
            return self._record(key, entry) if entry is not None and entry.obs else None

    def state(self) -> list[CalibrationRecord]:
        """One record per key that has observations (JSON via ``record.to_dict()``)."""
        with self._lock:
            return [self._record(k, e) for k, e in self._entries.items() if e.obs]

    def load_state(self, records: Iterable[CalibrationRecord | Mapping[str, Any]]) -> None:
        """Restore records from :meth:`state` (or their ``to_dict()`` form), replacing what
        this calibrator knew about those keys; other keys are kept. The ratio is recomputed
        from the log-ratios with this calibrator's settings."""
        with self._lock:
            for raw in records:
                rec = (
                    raw if isinstance(raw, CalibrationRecord) else CalibrationRecord.from_dict(raw)
                )
                self._entries[rec.key] = self._entry_of(rec)

    def _entry_of(self, rec: CalibrationRecord) -> _Entry:
        entry = _Entry(self.window, self._history, self._daily)
        entry.obs.extend(rec.log_ratios)
        entry.history.extend(rec.history)
        entry.daily.extend(rec.accuracy)
        entry.total = rec.samples
        if len(entry.obs) >= self.min_samples:
            ratio = math.exp(statistics.median(entry.obs))
            entry.ratio = min(self.max_ratio, max(self.min_ratio, ratio))
        return entry

    def merge_state(self, records: Iterable[CalibrationRecord | Mapping[str, Any]]) -> int:
        """Like :meth:`load_state`, but a key this calibrator already knows is merged with
        the record (:func:`merge_records`: the window resting on more observations wins,
        histories are united) instead of replaced. Returns the number of records taken."""
        taken = 0
        with self._lock:
            for raw in records:
                rec = (
                    raw if isinstance(raw, CalibrationRecord) else CalibrationRecord.from_dict(raw)
                )
                entry = self._entries.get(rec.key)
                if entry is not None and entry.obs:
                    mine = self._record(rec.key, entry)
                    rec = merge_records(mine, rec, history=self._history, daily=self._daily)
                self._entries[rec.key] = self._entry_of(rec)
                taken += 1
        return taken

    def reset(self, model: str | None = None, *, provider: str | None = None) -> None:
        """Forget one model's keys (all its classes), or everything when ``model`` is None."""
        with self._lock:
            if model is None:
                self._entries.clear()
                return
            for key in [k for k in self._entries if k[1] == model]:
                if provider is None or key[0] == provider:
                    del self._entries[key]


_default: Calibrator | None = None
_default_lock = threading.Lock()


def default_calibrator() -> Calibrator:
    """The process-wide calibrator shared by estimator counters."""
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                _default = Calibrator()
    return _default
