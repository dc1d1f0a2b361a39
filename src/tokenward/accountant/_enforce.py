"""Checking a call against the budgets before it is made, and watching its asyncio task.

``check_budgets`` is the enforcement step of ``Accountant.preflight``: reserve a cheap upper
bound of the call first, the exact count only when that bound does not fit (near a
limit); a denial removes the call from the table; anything that is not a decision goes
to the budgets' one fail_mode policy (``Budgets.enforcement_failed``). ``watch`` releases
a call the moment its asyncio task is cancelled, since frameworks do not always report it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from functools import partial
from typing import TYPE_CHECKING, Any

from tokenward.accountant._estimate import Estimate, expected_output
from tokenward.accountant._predict import predicted_quote
from tokenward.accountant._table import Run
from tokenward.cost import estimate_nanos
from tokenward.errors import (
    BudgetExceededError,
    BudgetStoreUnavailableError,
    UnpricedModelError,
)

if TYPE_CHECKING:
    from tokenward.accountant._facade import Accountant
    from tokenward.budgets import Budgets

__all__ = ["check_budgets", "free", "keep_alive", "watch"]

logger = logging.getLogger("tokenward")
_DENIALS = (BudgetExceededError, BudgetStoreUnavailableError)


def check_budgets(acc: Accountant, run: Run, estimate: Estimate, budgets: Budgets) -> None:
    """Reserve ``run``'s estimate; a denial raises (and forgets the run), anything else that
    prevents a decision follows the budgets' ``fail_mode``.

    The first attempt reserves the prompt's upper bound (its exact count when it is already
    counted, or cannot be bounded); only when that is denied, near a limit, does the exact
    count decide in a second attempt."""
    info = run.info
    exact = False
    try:
        while True:
            bound = None if exact else estimate.bound()
            prompt = estimate.prompt_tokens if bound is None else bound
            # the model's window caps the output when the prompt was counted to reserve it
            out = expected_output(
                info,
                acc.expected_output_tokens,
                estimate._max_output,
                prompt if bound is None else None,
            )
            # unpriced: a USD budget may price it as another model
            price_as = None if info.priced else partial(_priced_as, acc, prompt, out)
            try:
                run.reservation = budgets.reserve(
                    run.id,
                    run.budget_dims,
                    estimate_nanos(info, prompt, out) if info.priced else None,
                    prompt + out,
                    now=acc.budget_now(),
                    price_as=price_as,
                    predicted=predicted_quote(acc, run, prompt, out) if budgets.predicts else None,
                )
                break
            except BudgetExceededError as denied:
                if exact or estimate.counted or isinstance(denied, UnpricedModelError):
                    raise
                exact = True  # near a limit: the upper bound did not fit, the exact count decides
    except _DENIALS:
        acc._table.discard(run)
        raise
    except Exception as exc:  # noqa: BLE001  # not a decision: the fail_mode policy decides
        try:
            budgets.enforcement_failed(exc, run.id)
        except BaseException:
            acc._table.discard(run)
            raise
    except BaseException:
        acc._table.discard(run)
        raise
    reservation = run.reservation
    estimate.reserved = reservation is not None
    if reservation is not None:
        run.extend_at = reservation.expires_at - budgets.reservation_ttl.total_seconds() / 2


def _priced_as(acc: Accountant, prompt: int, out: int, model: str) -> int | None:
    return estimate_nanos(acc.model_info(model)[0], prompt, out)


def watch(acc: Accountant, run: Run) -> None:
    """In an asyncio task, release the call the moment the task is cancelled: frameworks
    do not always report a cancellation (LangChain's ``agenerate`` does not)."""
    loop = asyncio._get_running_loop()  # None outside an event loop: nothing to watch
    task = asyncio.current_task(loop) if loop is not None else None
    if task is not None:
        hook = partial(_task_done, acc, run.id)
        task.add_done_callback(hook)
        run.watch = (task, hook)


def _task_done(acc: Accountant, run_id: str, task: asyncio.Task[Any]) -> None:
    if task.cancelled() and acc.run(run_id) is not None:
        try:
            acc.release(run_id, error=asyncio.CancelledError())
        except Exception:
            logger.exception("tokenward: could not release cancelled run %s", run_id)


def free(acc: Accountant, replaced: Run | None, evicted: list[Run]) -> None:
    """Give back the reservations of runs the table let go (replaced by a new preflight of
    the same id, or evicted because they never ended)."""
    for old in evicted:
        logger.warning("tokenward: run %s was never settled; releasing its reservation", old.id)
    if acc.budgets is not None:
        for run in (replaced, *evicted):
            if run is not None:
                acc.budgets.release(run.reservation)


def keep_alive(acc: Accountant, run: Run | None) -> None:
    """Extend a streaming call's reservation before its TTL lapses, at most once per half
    TTL (cheap enough to call per streamed token)."""
    if run is None or run.reservation is None or acc.budgets is None:
        return
    now = acc.budget_now()
    now_s = now.timestamp() if now is not None else time.time()
    if now_s < run.extend_at:
        return
    run.extend_at = now_s + acc.budgets.reservation_ttl.total_seconds() / 2
    acc.budgets.extend(run.reservation, now=now)
