"""The one finish path: how a call ends, whatever ended it.

``settle`` (the provider answered), ``release`` (the call failed or was cancelled) and
``record`` (a call accounted after the fact) all describe the end as an :class:`Ending`
and hand it to :func:`end`, which claims the call in the table, completes and checks the
usage, decides the status, prices the call in integer nano-USD, records the event, commits
the budgets (or releases the reservation) and notifies trackers and sinks, in one frame; if
anything raises, the call is put back as it was (the one rollback).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import logging
import operator
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from tokenward._hygiene import MAX_COUNT, MAX_TEXT, clean, count_ok, key
from tokenward.accountant._predict import learn
from tokenward.accountant._table import Run, RunState
from tokenward.accountant._tracking import active_trackers, resolve_dims, union
from tokenward.cost import price_nanos
from tokenward.errors import (
    ConfigurationError,
    PricingMissingError,
    TokenwardError,
    UsageParseError,
)
from tokenward.ledger import UsageEvent
from tokenward.usage import TOKEN_FIELDS, Usage

if TYPE_CHECKING:
    from tokenward.accountant._facade import Accountant

__all__ = ["Ending", "end", "is_cancellation", "normalize_usage"]

logger = logging.getLogger("tokenward")

_CANCELLED = (asyncio.CancelledError, concurrent.futures.CancelledError, KeyboardInterrupt)
_CANCELLED_NAMES = ("cancelled", "canceled", "cancellederror", "generatorexit", "keyboardinterrupt")
_warned: set[str] = set()
_counts = operator.attrgetter(*TOKEN_FIELDS)


def is_cancellation(error: BaseException | str | None) -> bool:
    """Whether ``error`` means the caller stopped the call (task cancelled, stream closed
    early, Ctrl-C), not that it failed."""
    if error is None:
        return False
    if isinstance(error, str):
        return error.strip().lower().startswith(_CANCELLED_NAMES)
    return isinstance(error, (*_CANCELLED, GeneratorExit))


def _error_text(error: BaseException | str | None) -> str | None:
    if error is None:
        return None
    if isinstance(error, str):
        text = error
    else:
        detail = str(error)
        text = f"{type(error).__name__}: {detail}" if detail else type(error).__name__
    return clean(text)[:MAX_TEXT]


def normalize_usage(usage: Any) -> Usage | None:
    """``usage`` checked at the boundary: a :class:`Usage` (or a provider payload parsed with
    ``Usage.from_any``) whose counts are ints in ``[0, 2**63)``; else ``UsageParseError``."""
    if usage is None:
        return None
    parsed: Usage
    if isinstance(usage, Usage):
        parsed = usage
    else:
        try:
            parsed = Usage.from_any(usage)
        except TokenwardError:
            raise
        except Exception as exc:  # noqa: BLE001  # a payload the parsers choke on is bad input
            raise UsageParseError(
                f"cannot read usage from {type(usage).__name__} ({type(exc).__name__}: {exc}); "
                f"pass a tokenward Usage(...) or the provider's usage payload"
            ) from None
    if max(_counts(parsed)) >= MAX_COUNT:  # one C-level pass; the field is named only when off
        for field in TOKEN_FIELDS:
            value = getattr(parsed, field)
            if not count_ok(value):
                raise UsageParseError(
                    f"usage.{field} = {value!r} is not a token count (an int in [0, 2**63)); "
                    f"check the provider payload or the Usage you built",
                    field=field,
                )
    return parsed


@dataclasses.dataclass(slots=True)
class Ending:
    """How a call ended, as told by ``settle`` / ``release`` / ``record``."""

    usage: Usage | None
    estimate_missing: bool  # count what the provider did not report (settle)
    status: str = "ok"
    error: BaseException | str | None = None
    model: str | None = None
    provider: str | None = None
    base_url: str | None = None
    output_text: str | None = None
    tool_names: Sequence[str] = ()
    dims: Mapping[str, Any] | None = None
    latency_ms: float | None = None
    kind: str = "chat"
    parent_id: str | None = None
    orphan: bool = False  # never preflighted

    @property
    def state(self) -> RunState:
        error = self.error
        if error is None:
            return "settled" if self.status == "ok" else "released"
        return "cancelled" if is_cancellation(error) else "released"


def _complete_usage(acc: Accountant, run: Run, ending: Ending) -> Usage:
    """The usage to bill: the provider's, completed from our counts where it is silent."""
    usage = ending.usage
    estimate = run.estimate
    if usage is None or not usage:
        if not ending.estimate_missing:
            return usage or Usage()
        prompt = estimate.prompt_tokens if estimate is not None else 0
        output = 0
        if ending.output_text:
            from tokenward.counting import get_counter

            output = get_counter(run.info.name, catalog=acc.catalog).count_text(ending.output_text)
        return Usage(input=prompt, output=output, estimated=True)
    if estimate is None or run.kind == "embedding":
        return usage
    if usage.input == 0 and (estimate.counted or estimate.messages()) and estimate.prompt_tokens:
        # the provider reported output only (some streams): fill in the counted prompt
        return dataclasses.replace(usage, input=estimate.prompt_tokens, estimated=True)
    _calibrate(acc, run, usage.input)
    return usage


def _calibrate(acc: Accountant, run: Run, reported: int) -> None:
    """Teach an estimating counter the provider's count of a prompt it estimated."""
    estimate = run.estimate
    if estimate is None or reported <= 0 or acc._models.counts_exactly(run.info):
        return
    from tokenward.counting import get_counter

    counter = get_counter(run.info.name, catalog=acc.catalog)
    observe = getattr(counter, "observe", None)
    if observe is None or (not estimate.counted and hasattr(counter, "fallback")):
        return  # counting now would ask the provider's endpoint: only local counts here
    try:
        counted = estimate.prompt_tokens  # the estimator's count of this prompt
        if counted and not estimate.exact:
            observe(counted, reported)
    except Exception:  # learning is best effort; the event must be recorded
        logger.debug("calibration failed for %s", run.info.name, exc_info=True)


def _reprice(acc: Accountant, run: Run, ending: Ending, named: str) -> None:
    """The response names a model other than the run's (a dated snapshot...): price that one
    when it is known."""
    model = key(named)
    if model == run.model:
        return
    info, name = acc.model_info(model, ending.provider, ending.base_url or run.base_url)
    if info.priced or not run.info.priced:
        run.info, run.model = info, name
    else:
        logger.debug(
            "response model %r has no price; run %s priced as %r", model, run.id, run.model
        )


def _price(run: Run, usage: Usage, at: Any) -> int | None:
    try:
        nanos = price_nanos(usage, run.info, at=at)
    except PricingMissingError as exc:  # a token kind the model has no price for
        if run.info.name not in _warned:
            _warned.add(run.info.name)
            logger.warning("tokenward: %s; cost recorded as unknown (logged once)", exc)
        return None
    if nanos is not None and not 0 <= nanos < MAX_COUNT:
        raise UsageParseError(
            f"usage {usage.to_dict()} on {run.model!r} costs {nanos} nano-USD, beyond what a "
            f"ledger can store; check the provider payload"
        )
    return nanos


def _settle_budgets(
    acc: Accountant, run: Run, usage: Usage, nanos: int | None, status: str, dims: Any
) -> None:
    budgets = acc.budgets
    assert budgets is not None
    if status != "ok" and not usage:  # failed before using anything: give the hold back
        budgets.release(run.reservation)
        return
    if run.reservation is None and run.budget_dims is None:
        run.budget_dims = dims.for_budgets(run.model, run.info.provider)

    price_as = None
    if nanos is None:  # unpriced: a USD budget may price it as another model

        def price_as(model: str) -> int | None:
            return price_nanos(usage, acc.model_info(model)[0])

    budgets.commit(
        run.reservation,
        nanos,
        usage.total,
        dims=run.budget_dims,
        run_id=run.id,
        now=acc.budget_now(),
        price_as=price_as,
    )


def end(
    acc: Accountant, run_id: str, ending: Ending, *, duplicate_ok: bool = True
) -> UsageEvent | None:
    """The one way a call ends: claim it in the table, bill it as ``ending`` says (record its
    event, settle its budgets, notify), or put it back as it was.

    Returns ``None`` for a run that already ended (or raises ``ConfigurationError`` when
    ``duplicate_ok`` is false, as ``record`` wants)."""
    run_id = key(run_id)
    first, held = acc._table.take(run_id, ending.state)
    if not first:
        if duplicate_ok:
            return None
        raise ConfigurationError(f"run_id {run_id!r} was already recorded")
    try:
        run = held if held is not None else _orphan(acc, run_id, ending)
        if ending.model is not None and ending.model != run.model:  # run.model is clean
            _reprice(acc, run, ending, ending.model)
        usage = _complete_usage(acc, run, ending)
        status = ending.status
        error = None
        if ending.error is not None:
            if status == "ok":
                status = "error"
            if is_cancellation(ending.error):
                status = "cancelled"
            error = _error_text(ending.error)
        if ending.status != "ok" and error is None:
            error = status
        dims = run.dims.merged(ending.dims) if ending.dims and not ending.orphan else run.dims
        latency = ending.latency_ms
        if latency is None and not ending.orphan:
            latency = (time.perf_counter() - run.started) * 1000.0
        timestamp = acc._now()
        nanos = _price(run, usage, timestamp)
        info = run.info
        names = tuple(key(str(n)) for n in ending.tool_names) if ending.tool_names else ()
        store = acc.store_content
        # positional, in field order (the cheapest call): every value is in normal form
        event = UsageEvent(
            run.id,
            timestamp,
            run.model,
            info.provider,
            usage,
            None,  # the cost: derived from cost_nanos, which the ledger stores as it is
            usage.estimated,
            status,  # type: ignore[arg-type]  # validated by UsageEvent
            run.kind,  # type: ignore[arg-type]
            dims.user_id,
            dims.conversation_id,
            dims.session_id,
            dims.agent,
            dims.tags,
            len(names),
            names,
            latency if latency is None or latency >= 0 else None,
            run.parent_id,
            error,
            run.prompt_text if store else None,
            clean(ending.output_text) if store and ending.output_text else None,
            info.price_source if nanos is not None else None,
            usage.reported_cost,
            cost_nanos=nanos,
        )
        acc.ledger.record(event)
        if acc.budgets is not None and not run.committed:
            _settle_budgets(acc, run, usage, nanos, status, dims)
            run.committed = True
        if acc.predictor is not None:
            learn(acc, run, usage, status)
        trackers = active_trackers()
        for tracker in union(run.trackers, trackers) if run.trackers or trackers else ():
            tracker.add(event, acc)
        for sink in tuple(acc._sinks) if acc._sinks else ():
            try:
                sink(event)
            except Exception:
                logger.exception("tokenward: sink %r failed on event %s", sink, event.id)
        if run.watch is not None:  # ended: its task's cancellation no longer concerns it
            task, hook = run.watch
            task.remove_done_callback(hook)
            run.watch = None
        return event
    except BaseException:
        acc._table.restore(run_id, held)
        raise


def _orphan(acc: Accountant, run_id: str, ending: Ending) -> Run:
    """A run that ends without a preflight (``record``, or ``settle`` with ``model=``)."""
    ending.orphan = True
    if ending.model is None:
        raise ConfigurationError(
            f"settle({run_id!r}) without a preflight needs model=...; "
            f"call preflight() first or pass the model name"
        )
    info, name = acc.model_info(ending.model, ending.provider, ending.base_url)
    ending.model = None  # already applied
    return Run(
        run_id,
        name,
        info,
        resolve_dims(ending.dims),
        kind=ending.kind,
        parent_id=ending.parent_id,
        trackers=active_trackers(),
    )
