"""A small, mergeable, exponentially decayed quantile sketch for token counts.

Why this sketch: a log-bucket histogram (the DDSketch idea, Masson et al., VLDB 2019)
maps a value ``v >= 1`` to bucket ``ceil(log(v) / log(gamma))`` with
``gamma = (1 + a) / (1 - a)``; every quantile it answers is within a *relative* error
``a`` of the exact one (here ``a = 1 %`` by default), whatever the distribution. That
suits output lengths, which are heavy-tailed (a 10-token reply and a 10,000-token one
are both common): the p99 of such data is exactly where rank-error sketches such as
GK or KLL become loose in value, and where t-digest's error depends on the data.
Two more properties decide it:

* **merge is exact**: adding two histograms bucket by bucket gives the histogram of the
  union, so sketches written by several processes combine without loss (t-digest and KLL
  merges add error; P-square cannot merge at all);
* **decay is exact**: with *forward decay* (Cormode et al., ICDE 2009) an observation made
  at time ``t`` weighs ``2 ** ((t - landmark) / half_life)``; weights are only ever added,
  never rescaled per observation, and two sketches with different landmarks merge after
  one multiplication. Quantiles depend only on relative weights, so an observation one
  half-life old counts half as much as a new one: the sketch follows drift.

Size: token counts up to 2 M need at most ``log(2e6) / log(gamma)`` ~ 730 buckets at 1 %;
a workload whose outputs span 10..20,000 tokens uses about 380, stored sparsely.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Mapping
from typing import Any

from tokenward.errors import ConfigurationError

__all__ = ["DecayedSketch"]

_FORMAT = 1
# rescale the stored weights once the newest observation weighs 2**_RESCALE_AT times the
# landmark's: keeps every weight a comfortably finite float
_RESCALE_AT = 256.0


class DecayedSketch:
    """Quantiles of non-negative values, within relative error ``relative_accuracy``,
    with old observations fading by half every ``half_life`` seconds.

    ``add(value, at)`` takes the observation's time in seconds (any clock shared by every
    sketch that will be merged; tokenward uses Unix time). ``quantile(q)`` answers in the
    same unit as the values; ``count`` is the number of observations ever added (not
    decayed), ``weight(now)`` their decayed total.
    """

    __slots__ = (
        "_gamma",
        "_keys",
        "_landmark",
        "_log_gamma",
        "alpha",
        "buckets",
        "count",
        "half_life",
        "zero",
    )

    def __init__(self, *, relative_accuracy: float = 0.01, half_life: float = 86_400.0) -> None:
        if not 0.0 < relative_accuracy < 0.5:
            raise ConfigurationError(
                f"relative_accuracy must be between 0 and 0.5, got {relative_accuracy!r}; "
                "use e.g. 0.01 for 1 %"
            )
        if not half_life > 0 or not math.isfinite(half_life):
            raise ConfigurationError(
                f"half_life must be a positive number of seconds, got {half_life!r}"
            )
        self.alpha = float(relative_accuracy)
        self.half_life = float(half_life)
        self._gamma = (1.0 + self.alpha) / (1.0 - self.alpha)
        self._log_gamma = math.log(self._gamma)
        self.buckets: dict[int, float] = {}
        self.zero = 0.0  # weight of observations equal to 0
        self.count = 0
        self._landmark: float | None = None
        self._keys: list[int] = []  # sorted bucket indices (kept for quantile walks)

    # -- adding ----------------------------------------------------------------------------
    def _index(self, value: float) -> int:
        return math.ceil(math.log(value) / self._log_gamma)

    def _scale(self, at: float) -> float:
        """The weight of an observation at ``at`` relative to the landmark (rescaling first
        when that weight would grow too large)."""
        if self._landmark is None:
            self._landmark = at
        exponent = (at - self._landmark) / self.half_life
        if exponent > _RESCALE_AT:
            self._move_landmark(at)
            exponent = 0.0
        return float(2.0**exponent)

    def _move_landmark(self, landmark: float) -> None:
        assert self._landmark is not None
        factor = 2.0 ** ((self._landmark - landmark) / self.half_life)
        self.zero *= factor
        for key in self._keys:
            self.buckets[key] *= factor
        self._landmark = landmark

    def add(self, value: float, at: float, weight: float = 1.0) -> None:
        """Record ``value`` (>= 0) observed at time ``at`` (seconds)."""
        if not value >= 0 or not math.isfinite(value):
            raise ConfigurationError(f"sketch values must be finite and >= 0, got {value!r}")
        w = weight * self._scale(at)
        if value < 1.0:  # tokens: 0 (an empty reply); fractions below 1 count as 0 too
            self.zero += w
        else:
            key = self._index(value)
            if key in self.buckets:
                self.buckets[key] += w
            else:
                self.buckets[key] = w
                bisect.insort(self._keys, key)
        self.count += 1

    def bucket(self, value: int) -> int | None:
        """The bucket a token count falls in (``None``: the zero bucket), for :meth:`add_batch`."""
        return None if value < 1 else math.ceil(math.log(value) / self._log_gamma)

    def add_batch(self, weights: Mapping[int | None, float], at: float, count: int) -> None:
        """Record ``count`` observations at once: ``weights`` maps each :meth:`bucket` to the
        summed weight of its observations relative to time ``at`` (an observation made at
        ``t`` weighs ``2 ** ((t - at) / half_life)``). The same sketch as ``count`` calls of
        :meth:`add`, with one decay factor for the batch."""
        scale = self._scale(at)
        buckets = self.buckets
        for key, w in weights.items():
            if key is None:
                self.zero += w * scale
            elif key in buckets:
                buckets[key] += w * scale
            else:
                buckets[key] = w * scale
                bisect.insort(self._keys, key)
        self.count += count

    # -- reading ---------------------------------------------------------------------------
    def _total(self) -> float:
        return self.zero + math.fsum(self.buckets[k] for k in self._keys)

    def weight(self, now: float) -> float:
        """The decayed number of observations as of ``now`` (each counts ``2**-age/half_life``)."""
        if self._landmark is None:
            return 0.0
        return float(self._total() * 2.0 ** ((self._landmark - now) / self.half_life))

    def quantile(self, q: float) -> float | None:
        """The value below which a fraction ``q`` of the (decayed) weight lies, or ``None``
        when nothing was added.

        Follows the inverted-CDF definition (the smallest observed value whose cumulative
        weight reaches ``q`` x total): the answer is within ``relative_accuracy`` of that
        exact value."""
        if not 0.0 <= q <= 1.0:
            raise ConfigurationError(f"quantile must be between 0 and 1, got {q!r}")
        total = self._total()
        if total <= 0.0:
            return None
        rank = q * total
        acc = self.zero
        if acc >= rank and self.zero > 0.0:
            return 0.0
        for key in self._keys:
            acc += self.buckets[key]
            if acc >= rank * (1.0 - 1e-12):
                return self._value(key)
        return self._value(self._keys[-1])

    def quantiles(self, qs: tuple[float, ...]) -> tuple[float | None, ...]:
        """Several quantiles in one walk (``qs`` ascending)."""
        return tuple(self.quantile(q) for q in qs)

    def _value(self, key: int) -> float:
        # the point of bucket (gamma**(key-1), gamma**key] within relative error alpha of both ends
        return 2.0 * self._gamma**key / (self._gamma + 1.0)

    # -- combining -------------------------------------------------------------------------
    def _check_compatible(self, other: DecayedSketch) -> None:
        if other.alpha != self.alpha or other.half_life != self.half_life:
            raise ConfigurationError(
                "cannot merge sketches with different settings "
                f"(relative_accuracy {self.alpha} vs {other.alpha}, half_life {self.half_life} "
                f"vs {other.half_life}); build both with the same OutputPredictor settings"
            )

    def merge(self, other: DecayedSketch) -> None:
        """Add ``other``'s observations to this sketch (exact: the result is the sketch of
        both streams)."""
        self._check_compatible(other)
        if other._landmark is None:
            return
        if self._landmark is None:
            self._landmark = other._landmark
        elif other._landmark > self._landmark:
            self._move_landmark(other._landmark)
        factor = 2.0 ** ((other._landmark - self._landmark) / self.half_life)
        self.zero += other.zero * factor
        for key in other._keys:
            w = other.buckets[key] * factor
            if key in self.buckets:
                self.buckets[key] += w
            else:
                self.buckets[key] = w
                bisect.insort(self._keys, key)
        self.count += other.count

    def copy(self) -> DecayedSketch:
        """An independent copy."""
        out = DecayedSketch(relative_accuracy=self.alpha, half_life=self.half_life)
        out.merge(self)
        return out

    # -- persistence -----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """A JSON object holding the whole sketch (see :meth:`from_dict`)."""
        return {
            "format": _FORMAT,
            "relative_accuracy": self.alpha,
            "half_life": self.half_life,
            "landmark": self._landmark,
            "count": self.count,
            "zero": self.zero,
            "buckets": [[k, self.buckets[k]] for k in self._keys],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DecayedSketch:
        """The sketch :meth:`to_dict` wrote. Raises ``ConfigurationError`` for anything else."""
        try:
            if data.get("format") != _FORMAT:
                raise ValueError(f"unknown format {data.get('format')!r}")
            out = cls(
                relative_accuracy=float(data["relative_accuracy"]),
                half_life=float(data["half_life"]),
            )
            landmark = data["landmark"]
            out._landmark = None if landmark is None else float(landmark)
            out.count = int(data["count"])
            out.zero = float(data["zero"])
            for key, w in data["buckets"]:
                weight = float(w)
                if not (weight >= 0 and math.isfinite(weight)):
                    raise ValueError(f"bad weight {w!r}")
                out.buckets[int(key)] = weight
            out._keys = sorted(out.buckets)
            if out.count < 0 or not (out.zero >= 0 and math.isfinite(out.zero)):
                raise ValueError("negative count or bad zero weight")
        except ConfigurationError:
            raise
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigurationError(
                f"not a tokenward output sketch ({exc}); delete the stored state to start over"
            ) from None
        return out

    def __len__(self) -> int:
        return len(self._keys) + (1 if self.zero else 0)

    def __repr__(self) -> str:
        p50, p99 = self.quantile(0.5), self.quantile(0.99)
        return (
            f"DecayedSketch(count={self.count}, buckets={len(self)}, p50={p50 and round(p50)}, "
            f"p99={p99 and round(p99)})"
        )
