"""Learned output lengths in the Accountant: what budgets with ``reserve="predicted"`` hold.

The Accountant owns one :class:`~tokenward.predict.OutputPredictor`. The finish path
teaches it what every successful call produced (:func:`learn`); the pre-flight asks it,
only when a budget reserves predicted outputs, for ``min(worst case, p99)`` of the call's
``(model, route)`` (:func:`predicted_quote`); :meth:`Accountant.status` asks the same
function, so the forecast agrees with enforcement.

The route of a call is its ``route`` tag when it has one (``dims={"route": "search"}``),
else its ``agent``, else ``None`` (the model alone): an agent's calls usually share one
prompt and one answer shape, and a ``route`` tag splits an agent whose calls do not.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Literal

from tokenward.accountant._estimate import Estimate, expected_output
from tokenward.cost import estimate_nanos

if TYPE_CHECKING:
    from tokenward.accountant._facade import Accountant
    from tokenward.accountant._table import Run
    from tokenward.budgets import Budgets, Quote
    from tokenward.predict import OutputPredictor
    from tokenward.usage import Usage

__all__ = ["learn", "make_predictor", "next_call_quotes", "predicted_quote"]

logger = logging.getLogger("tokenward")


def make_predictor(
    predictor: OutputPredictor | Literal["auto"] | None, ledger: Any, persist: bool
) -> OutputPredictor | None:
    """The Accountant's predictor: the one given, none, or (``"auto"``) one kept in the
    ledger's state documents when ``persist`` (a ledger was given) and the ledger has them."""
    from tokenward.errors import ConfigurationError
    from tokenward.predict import OutputPredictor, StateStore

    if predictor is None or isinstance(predictor, OutputPredictor):
        return predictor
    if predictor != "auto":
        raise ConfigurationError(
            f"predictor must be an OutputPredictor, 'auto' or None, got {predictor!r}"
        )
    state = ledger if persist and isinstance(ledger, StateStore) else None
    return OutputPredictor(state)


def predicted_quote(acc: Accountant, run: Run, prompt: int, worst: int) -> Quote | None:
    """What the call costs with its predicted output, when the predictor knows its model and
    route and predicts less than ``worst`` (the output the pre-flight reserves otherwise:
    ``max_tokens``, or the default capped by the model); else ``None``. Remembered on the run
    (``run.predicted``) so the settle step can tell whether the call outgrew it."""
    predictor = acc.predictor
    if predictor is None or run.kind == "embedding":
        return None
    try:
        out = predictor.reserve_for(run.model, run.dims.route)
    except Exception:  # a prediction never breaks a call: the worst case holds
        logger.debug("tokenward: no output prediction for %s", run.id, exc_info=True)
        return None
    if out is None or out >= worst:
        run.predicted = None
        return None
    run.predicted = out
    info = run.info
    from tokenward.budgets import Quote

    def price_as(model: str) -> int | None:
        return estimate_nanos(acc.model_info(model)[0], prompt, out)

    return Quote(estimate_nanos(info, prompt, out) if info.priced else None, prompt + out, price_as)


def learn(acc: Accountant, run: Run, usage: Usage, status: str) -> None:
    """Teach the predictor what a successful call produced, under the model name its
    pre-flight asked for (the response may name a dated snapshot)."""
    predictor = acc.predictor
    if predictor is None or status != "ok" or run.kind == "embedding":
        return
    if usage.estimated and not usage.output:
        return  # no reported usage and no output text: nothing was learned about its length
    model = run.estimate.model if run.estimate is not None else run.model
    try:
        predictor.observe(model, run.dims.route, usage.output, reserved=run.predicted)
    except Exception:  # learning is best effort; the event is recorded
        logger.debug("tokenward: output prediction could not learn from %s", run.id, exc_info=True)


def next_call_quotes(
    acc: Accountant, run: Run, estimate: Estimate, budgets: Budgets
) -> tuple[Quote, Quote | None]:
    """What the pre-flight of ``run`` would reserve when its budgets decide: the worst case
    and the predicted quote, from the exact prompt count (``_enforce._reserve`` with
    ``exact=True``, the count that decides a call near a limit)."""
    from tokenward.budgets import Quote

    info = run.info
    prompt = estimate.prompt_tokens
    out = expected_output(info, acc.expected_output_tokens, estimate._max_output, prompt)

    def price_as(model: str) -> int | None:
        return estimate_nanos(acc.model_info(model)[0], prompt, out)

    worst = Quote(
        estimate_nanos(info, prompt, out) if info.priced else None, prompt + out, price_as
    )
    return worst, predicted_quote(acc, run, prompt, out) if budgets.predicts else None
