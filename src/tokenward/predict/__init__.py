"""Plan ahead: learned output lengths, forecasts that match enforcement, what-if replay,
model selection.

* :class:`OutputPredictor` keeps per ``(model, route)`` a decayed quantile sketch
  (:class:`DecayedSketch`) of output tokens, shared across processes through the ledger's
  state, and tells pre-flights what to reserve (``min(max_tokens, p99)``).
* :func:`calls_left` and :func:`pacing`: how many calls a budget still admits (the same
  arithmetic as enforcement) and how a calendar window's spend is pacing.
* :func:`replay` re-prices the ledger under a :class:`Scenario` (another model, cache hits,
  batch prices).
* :func:`select_models`: models meeting requirements (window, output, price, provider,
  capabilities), cheapest first.
"""

from tokenward.predict._forecast import Pacing, calls_left, pacing
from tokenward.predict._predictor import (
    OutputPrediction,
    OutputPredictor,
    PredictorStats,
    StateStore,
)
from tokenward.predict._replay import Replay, ReplayRow, Scenario, TokenRatio, replay
from tokenward.predict._select import (
    CAPABILITIES,
    ModelChoice,
    capabilities_of,
    mix_price,
    select_models,
)
from tokenward.predict._sketch import DecayedSketch

__all__ = [
    "CAPABILITIES",
    "DecayedSketch",
    "ModelChoice",
    "OutputPrediction",
    "OutputPredictor",
    "Pacing",
    "PredictorStats",
    "Replay",
    "ReplayRow",
    "Scenario",
    "StateStore",
    "TokenRatio",
    "calls_left",
    "capabilities_of",
    "mix_price",
    "pacing",
    "replay",
    "select_models",
]
