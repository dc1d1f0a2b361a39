"""Per-model correction of estimated token counts from provider-reported usage."""

from __future__ import annotations

import math
import statistics
import threading
from collections import deque

__all__ = ["Calibrator", "default_calibrator"]


class Calibrator:
    """Learns ``reported / estimated`` per model, robustly.

    Each observation contributes ``log(reported / estimate)``. The ratio is the exponential
    of the *median* of the last ``window`` accepted log-ratios, clamped to
    ``[min_ratio, max_ratio]``. Observations are rejected when either count is below
    ``min_tokens`` (tiny prompts are dominated by fixed overheads), when the raw ratio is
    outside ``[min_ratio / 2, max_ratio * 2]`` (mismatched payloads, e.g. usage including
    images we never saw), or, once ``min_samples`` are in, when they are more than
    ``outlier_factor`` times away from the current ratio. Until ``min_samples`` observations
    are in, the ratio is 1.0. Thread-safe.
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
    ) -> None:
        if not 0 < min_ratio <= 1.0 <= max_ratio:
            raise ValueError("need 0 < min_ratio <= 1 <= max_ratio")
        self.window = window
        self.min_samples = max(1, min_samples)
        self.min_ratio = min_ratio
        self.max_ratio = max_ratio
        self._log_outlier = math.log(outlier_factor)
        self.min_tokens = min_tokens
        self._lock = threading.Lock()
        self._obs: dict[str, deque[float]] = {}
        self._ratio: dict[str, float] = {}
        self.rejected = 0

    def observe(self, estimate: int, reported: int, model: str | None = None) -> bool:
        """Record one pair; returns False when it was rejected as invalid or an outlier."""
        key = model or ""
        if estimate < self.min_tokens or reported < self.min_tokens:
            return self._reject()
        r = reported / estimate
        if not (self.min_ratio / 2 <= r <= self.max_ratio * 2):
            return self._reject()
        lr = math.log(r)
        with self._lock:
            obs = self._obs.get(key)
            if obs is None:
                obs = self._obs[key] = deque(maxlen=self.window)
            if len(obs) >= self.min_samples:
                current = statistics.median(obs)
                if abs(lr - current) > self._log_outlier:
                    self.rejected += 1
                    return False
            obs.append(lr)
            if len(obs) >= self.min_samples:
                ratio = math.exp(statistics.median(obs))
                self._ratio[key] = min(self.max_ratio, max(self.min_ratio, ratio))
        return True

    def _reject(self) -> bool:
        with self._lock:
            self.rejected += 1
        return False

    def ratio(self, model: str | None = None) -> float:
        """Current correction factor for ``model`` (1.0 until enough observations)."""
        return self._ratio.get(model or "", 1.0)

    def apply(self, estimate: int, model: str | None = None) -> int:
        """``estimate`` corrected by the learned ratio."""
        r = self._ratio.get(model or "", 1.0)
        return estimate if r == 1.0 else int(math.floor(estimate * r + 0.5))

    def samples(self, model: str | None = None) -> int:
        """Number of accepted observations kept for ``model``."""
        obs = self._obs.get(model or "")
        return len(obs) if obs else 0

    def reset(self, model: str | None = None) -> None:
        """Forget one model's observations, or all of them when ``model`` is None."""
        with self._lock:
            if model is None:
                self._obs.clear()
                self._ratio.clear()
            else:
                self._obs.pop(model, None)
                self._ratio.pop(model, None)


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
