"""Learned output lengths: what a call will most likely produce, per model and route.

A pre-flight has to reserve the call's output before it exists. ``max_tokens`` is a
safe bound but usually far too high (an agent asked for ``max_tokens=16000`` that
answers in ~50 tokens holds 16,000 tokens of budget for every call in flight), so
concurrent calls are denied although the budget would have paid for them.
:class:`OutputPredictor` keeps, per ``(model, route)`` (the route is the call's
``agent``, or its ``route`` tag), a :class:`DecayedSketch` of observed output tokens
and answers ``min(max_tokens, p99)`` once ``min_samples`` calls were seen
(``max_tokens``, or a conservative default, before that). The settle step replaces
the reservation with the actual usage, so a call that outgrows its prediction costs
the budget at most its own prediction error; those calls are counted
(:attr:`OutputPredictor.stats`).

Sketches are shared through a state store (the ledger's ``put_state``/``get_state``):
each process writes its own observations under its own key and merges everybody
else's on :meth:`~OutputPredictor.sync` (at start, then every ``sync_every``), so
writers never overwrite each other and a restart starts from what was learned.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Protocol, runtime_checkable

from tokenward._memo import remember
from tokenward.errors import ConfigurationError
from tokenward.predict._sketch import DecayedSketch

__all__ = ["OutputPrediction", "OutputPredictor", "PredictorStats", "StateStore"]

logger = logging.getLogger("tokenward.predict")

#: The state namespace holding output-length sketches.
NAMESPACE = "output_tokens"
_DOC_FORMAT = 1
_FORGET_AFTER_HALF_LIVES = 10  # a writer silent this long weighs < 0.1 %: forgotten
_SEP = "\x1f"
_FOLD_AT = 256  # observations kept before they are folded into the sketches


@runtime_checkable
class StateStore(Protocol):
    """Where learned values are kept: the ledger's state API (``LedgerStore.put_state`` /
    ``get_state``), or anything with the same two methods."""

    def put_state(self, namespace: str, key: str, value: Mapping[str, Any]) -> None: ...

    def get_state(self, namespace: str) -> dict[str, dict[str, Any]]: ...


@dataclass(frozen=True, slots=True)
class OutputPrediction:
    """What the predictor knows about one ``(model, route)``.

    ``samples`` counts every observation (including other processes' once synced);
    ``p50``/``p95``/``p99`` are decayed quantiles of output tokens (rounded up; ``None``
    without observations); ``ready`` says whether ``samples >= min_samples``, i.e. whether
    reservations use the prediction; ``reserve`` is the quantile reservations use."""

    model: str
    route: str | None
    samples: int
    p50: int | None
    p95: int | None
    p99: int | None
    reserve: int | None
    ready: bool


@dataclass(frozen=True, slots=True)
class PredictorStats:
    """How predictions fared against what calls produced.

    ``under_reserved_calls`` produced more output than was reserved for them, by
    ``under_reserved_tokens`` in total and ``max_under_reserved`` at most (the most a
    single call can have pushed a budget past its reservation)."""

    observed: int
    predicted_calls: int
    under_reserved_calls: int
    under_reserved_tokens: int
    max_under_reserved: int


def _seconds(value: timedelta | float, name: str) -> float:
    seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
    if not seconds > 0 or not math.isfinite(seconds):
        raise ConfigurationError(f"{name} must be a positive duration, got {value!r}")
    return seconds


def _key(model: str, route: str | None) -> str:
    return f"{model}{_SEP}{route or ''}"


def _split(key: str) -> tuple[str, str | None]:
    model, _, route = key.partition(_SEP)
    return model, route or None


class OutputPredictor:
    """Per ``(model, route)`` decayed quantiles of output tokens; see the module docs.

    Args:
        state: a :class:`StateStore` (e.g. the Accountant's ledger) to load from and sync to;
            ``None`` keeps what is learned in this process only.
        quantile: the quantile reservations use (default p99).
        min_samples: observations needed before predictions are used; before that
            :meth:`reserve_output` returns ``max_tokens`` (or the fallback).
        half_life: how fast old observations fade (default one day).
        relative_accuracy: the sketches' relative error (default 1 %).
        sync_every: how often :meth:`observe` also syncs with ``state``, in a background
            thread (``None``: only on :meth:`sync` / :meth:`close`).
        clock: seconds since the epoch (shared by every process: sketches merge on it).
    """

    def __init__(
        self,
        state: StateStore | None = None,
        *,
        quantile: float = 0.99,
        min_samples: int = 50,
        half_life: timedelta | float = timedelta(days=1),
        relative_accuracy: float = 0.01,
        sync_every: timedelta | float | None = timedelta(seconds=30),
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not 0.0 < quantile <= 1.0:
            raise ConfigurationError(f"quantile must be in (0, 1], got {quantile!r}; e.g. 0.99")
        if isinstance(min_samples, bool) or not isinstance(min_samples, int) or min_samples < 1:
            raise ConfigurationError(f"min_samples must be an int >= 1, got {min_samples!r}")
        if state is not None and not isinstance(state, StateStore):
            raise ConfigurationError(
                f"state must have put_state()/get_state() (a LedgerStore), got "
                f"{type(state).__name__}; pass the ledger, or None to keep predictions in memory"
            )
        self.state = state
        self.quantile = float(quantile)
        self.min_samples = min_samples
        self.half_life = _seconds(half_life, "half_life")
        self.relative_accuracy = float(relative_accuracy)
        # checks the settings; tells observations' buckets apart when they are folded in
        self._probe = self._new_sketch()
        self.sync_every = None if sync_every is None else _seconds(sync_every, "sync_every")
        self._clock = clock
        self.writer = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._lock = threading.Lock()
        self._own: dict[str, DecayedSketch] = {}  # this process's observations
        self._others: dict[str, DecayedSketch] = {}  # every other writer's, as last synced
        self._combined: dict[str, DecayedSketch] = {}  # both: what predictions read
        # per key: (sketch, its count, the reserve quantile) as last computed (reserve_for)
        self._cached: dict[str, tuple[DecayedSketch, int, int | None]] = {}
        # observations not folded into the sketches yet: (model, route, output tokens, time)
        self._new: list[tuple[str, str | None, int, float]] = []
        self._dirty = False
        self._last_sync = clock()
        self._observed = 0
        self._predicted_calls = 0
        self._under_calls = 0
        self._under_tokens = 0
        self._under_max = 0
        self._sync_failed = False
        self._syncer: threading.Thread | None = None  # the background sync in flight
        if state is not None:
            self.sync()

    # -- learning --------------------------------------------------------------------------
    def _new_sketch(self) -> DecayedSketch:
        return DecayedSketch(relative_accuracy=self.relative_accuracy, half_life=self.half_life)

    def observe(
        self,
        model: str,
        route: str | None,
        output_tokens: int,
        *,
        reserved: int | None = None,
        at: float | None = None,
    ) -> None:
        """Learn that a call to ``model`` on ``route`` produced ``output_tokens``.

        ``reserved`` is the output that was reserved for it, if a prediction was used:
        calls that produced more are counted in :attr:`stats`. O(1): observations are kept
        in a short list and folded into the sketches in batches (every ``_FOLD_AT`` calls,
        and before anything reads them), which is the same sketch, computed once per batch."""
        if type(output_tokens) is not int and (
            isinstance(output_tokens, bool) or not isinstance(output_tokens, int)
        ):
            raise ConfigurationError(f"output_tokens must be an int, got {output_tokens!r}")
        if output_tokens < 0:
            raise ConfigurationError(f"output_tokens must be >= 0, got {output_tokens}")
        now = float(self._clock() if at is None else at)
        with self._lock:
            new = self._new
            new.append((model, route, output_tokens, now))
            if len(new) >= _FOLD_AT:
                self._fold()
            self._dirty = True
            self._observed += 1
            if reserved is not None:
                self._predicted_calls += 1
                over = output_tokens - reserved
                if over > 0:
                    self._under_calls += 1
                    self._under_tokens += over
                    self._under_max = max(self._under_max, over)
            syncer = None
            if (
                self.state is not None
                and self.sync_every is not None
                and now - self._last_sync >= self.sync_every
                and self._syncer is None
            ):
                # off the caller's thread: a slow or unreachable store never delays a call
                syncer = self._syncer = threading.Thread(
                    target=self._sync_in_background, name="tokenward-predictor-sync", daemon=True
                )
        if syncer is not None:
            syncer.start()

    def _fold(self) -> None:
        """Add the observations kept by :meth:`observe` to this process's sketches and the
        combined ones (under the lock): per ``(model, route)``, each bucket's weight summed
        relative to the batch's first observation, then one add per sketch."""
        new = self._new
        if not new:
            return
        self._new = []
        half_life = self.half_life
        batches: dict[tuple[str, str | None], tuple[float, dict[int | None, float], list[int]]]
        batches = {}
        bucket_of = self._probe.bucket
        buckets: dict[int, int | None] = {}  # token count -> its bucket, once per distinct count
        for model, route, tokens, at in new:
            pair = (model, route)
            batch = batches.get(pair)
            if batch is None:
                batch = batches[pair] = (at, {}, [0])
            weights = batch[1]
            bucket = buckets.get(tokens, -1)
            if bucket == -1:  # buckets are None or >= 0
                bucket = buckets[tokens] = bucket_of(tokens)
            w = 2.0 ** ((at - batch[0]) / half_life)
            weights[bucket] = weights.get(bucket, 0.0) + w
            batch[2][0] += 1
        for (model, route), (at, weights, n) in batches.items():
            key = _key(model, route)
            for sketches in (self._own, self._combined):
                sketch = sketches.get(key)
                if sketch is None:
                    sketch = sketches[key] = self._new_sketch()
                sketch.add_batch(weights, at, n[0])

    def _sync_in_background(self) -> None:
        try:
            self.sync()
        finally:
            with self._lock:
                self._syncer = None

    # -- predicting ------------------------------------------------------------------------
    def predict(self, model: str, route: str | None = None) -> OutputPrediction:
        """What is known about ``(model, route)`` now."""
        with self._lock:
            self._fold()
            sketch = self._combined.get(_key(model, route))
            if sketch is None:
                return OutputPrediction(model, route, 0, None, None, None, None, False)
            p50, p95, p99, q = sketch.quantiles((0.5, 0.95, 0.99, self.quantile))
            samples = sketch.count

        def up(v: float | None) -> int | None:
            # values are integers: round the sketch's answer up, not past its bucket
            return None if v is None else math.ceil(v - 1e-9)

        return OutputPrediction(
            model, route, samples, up(p50), up(p95), up(p99), up(q), samples >= self.min_samples
        )

    def reserve_output(
        self,
        model: str,
        route: str | None,
        *,
        max_tokens: int | None,
        fallback: int,
        ceiling: int | None = None,
    ) -> tuple[int, bool]:
        """Output tokens to reserve for a call, and whether the prediction decided it.

        With enough samples: ``min(max_tokens, predicted quantile)`` (without ``max_tokens``:
        ``min(ceiling, predicted quantile)``, ``ceiling`` being the model's max output).
        Before that: ``max_tokens``, or ``fallback`` when the call sets none."""
        prediction = self.predict(model, route)
        if not prediction.ready or prediction.reserve is None:
            return (max_tokens if max_tokens is not None else fallback), False
        bound = max_tokens if max_tokens is not None else ceiling
        if bound is None:
            return prediction.reserve, True
        return min(bound, prediction.reserve), prediction.reserve < bound

    def reserve_for(self, model: str, route: str | None = None) -> int | None:
        """The output tokens reservations use for ``(model, route)`` (the ``quantile``,
        rounded up), or ``None`` before ``min_samples`` observations: what a pre-flight asks.

        Cheap: the quantile is recomputed only once the sketch has about 0.1 % new
        observations (every observation below 1,024 samples), which moves it by at most a
        tenth of a percentile; without new observations it cannot move (decay weighs every
        stored observation alike)."""
        key = _key(model, route)
        with self._lock:
            sketch = self._combined.get(key)
            hit = self._cached.get(key)  # only kept once min_samples were seen
            if (
                hit is not None
                and hit[0] is sketch
                and sketch.count - hit[1] + len(self._new) <= sketch.count >> 10
            ):  # not folded yet: the observations kept by observe() count as new ones
                return hit[2]
            self._fold()
            sketch = self._combined.get(key)
            if sketch is None or sketch.count < self.min_samples:
                return None
            q = sketch.quantile(self.quantile)
            value = None if q is None else math.ceil(q - 1e-9)
            remember(self._cached, key, (sketch, sketch.count, value), 10_000)
            return value

    def routes(self) -> list[OutputPrediction]:
        """A prediction for every ``(model, route)`` seen, sorted by model then route."""
        with self._lock:
            self._fold()
            keys = sorted(self._combined)
        return [self.predict(*_split(k)) for k in keys]

    @property
    def stats(self) -> PredictorStats:
        """Observations and how many outgrew their reservation (see :class:`PredictorStats`)."""
        with self._lock:
            return PredictorStats(
                self._observed,
                self._predicted_calls,
                self._under_calls,
                self._under_tokens,
                self._under_max,
            )

    # -- sharing ---------------------------------------------------------------------------
    def _document(self, now: float) -> dict[str, Any]:
        self._fold()
        return {
            "format": _DOC_FORMAT,
            "updated": now,
            "sketches": {k: s.to_dict() for k, s in self._own.items()},
        }

    def sync(self) -> None:
        """Write this process's sketches to the state store and merge every other writer's.

        Never raises for a store problem (logged once; predictions go on from what is
        known). Writers silent for ten half-lives are forgotten (their weight is below
        0.1 %) and their documents emptied."""
        state = self.state
        if state is None:
            return
        now = self._clock()
        with self._lock:
            doc = self._document(now) if self._dirty else None
            self._dirty = False
            self._last_sync = now
        try:
            if doc is not None:
                state.put_state(NAMESPACE, self.writer, doc)
            stored = state.get_state(NAMESPACE)
        except Exception as exc:  # noqa: BLE001 - learning must never break a call
            with self._lock:
                self._dirty = self._dirty or doc is not None
            if not self._sync_failed:
                logger.warning(
                    "tokenward: could not sync output predictions with %s (%s); "
                    "continuing with what this process knows",
                    type(state).__name__,
                    exc,
                )
            self._sync_failed = True
            return
        self._sync_failed = False
        others, stale = self._merge_documents(stored, now)
        for writer in stale:
            try:
                state.put_state(NAMESPACE, writer, {})
            except Exception:  # noqa: BLE001 - forgetting is housekeeping
                logger.debug("tokenward: could not empty stale predictor state %s", writer)
        with self._lock:
            self._others = others
            combined = {k: s.copy() for k, s in others.items()}
            for k, s in self._own.items():
                if k in combined:
                    combined[k].merge(s)
                else:
                    combined[k] = s.copy()
            self._combined = combined

    def _merge_documents(
        self, stored: Mapping[str, Mapping[str, Any]], now: float
    ) -> tuple[dict[str, DecayedSketch], list[str]]:
        others: dict[str, DecayedSketch] = {}
        stale: list[str] = []
        forget = _FORGET_AFTER_HALF_LIVES * self.half_life
        for writer, doc in stored.items():
            if writer == self.writer or not doc:
                continue
            try:
                if doc.get("format") != _DOC_FORMAT:
                    raise ConfigurationError(f"unknown format {doc.get('format')!r}")
                if now - float(doc["updated"]) > forget:
                    stale.append(writer)
                    continue
                sketches = {k: DecayedSketch.from_dict(v) for k, v in dict(doc["sketches"]).items()}
                for k, sketch in sketches.items():
                    if k in others:
                        others[k].merge(sketch)
                    else:
                        others[k] = sketch
            except (ConfigurationError, KeyError, TypeError, ValueError) as exc:
                logger.warning(
                    "tokenward: ignoring unreadable output predictions of writer %s (%s)",
                    writer,
                    exc,
                )
        return others, stale

    def close(self) -> None:
        """Write what was learned since the last sync."""
        with self._lock:
            syncer = self._syncer
        if syncer is not None:
            syncer.join()
        with self._lock:
            dirty = self._dirty
        if dirty:
            self.sync()

    def __repr__(self) -> str:
        with self._lock:
            self._fold()
            n = len(self._combined)
        return (
            f"OutputPredictor(routes={n}, quantile={self.quantile}, min_samples={self.min_samples}, "
            f"state={type(self.state).__name__ if self.state is not None else None})"
        )
