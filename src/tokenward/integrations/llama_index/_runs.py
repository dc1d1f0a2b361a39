"""One LLM call's lifecycle against the Accountant, shared by every LlamaIndex adapter.

``start_call`` claims the call's span and preflights it (estimate + budget
reservation); ``finish_call`` settles it with the provider's usage (or, when the
provider reported none, lets the core count the output text and mark the event
estimated) or releases it on error.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tokenward.errors import BudgetExceededError, TokenwardError
from tokenward.integrations.llama_index import _spans
from tokenward.integrations.llama_index._common import (
    logger,
    response_model,
    response_text,
    to_messages,
    tool_names,
    tools_to_dicts,
    usage_from_response,
)
from tokenward.messages import Message
from tokenward.usage import Usage

if TYPE_CHECKING:
    from tokenward.accountant import Accountant
    from tokenward.ledger import UsageEvent

__all__ = ["LLMCall", "account_embedding", "finish_call", "start_call"]


@dataclass(slots=True)
class LLMCall:
    """A call in flight: what is needed to settle it once it ends."""

    accountant: Any
    run_id: str
    model: str
    kind: str
    messages: list[Any]
    denied: BudgetExceededError | None = None
    dims: dict[str, Any] = field(default_factory=dict)
    last_response: Any = None  # latest streamed chunk
    child_response: Any = None  # response of the inner call folded into this one
    started: float = field(default_factory=time.perf_counter)
    done: bool = False


def _snapshot_dims(static: Mapping[str, Any]) -> dict[str, Any]:
    """Dimensions in effect now (``track()`` blocks) with the adapter's own on top."""
    from tokenward.accountant import current_dims

    snap = current_dims()
    for key, value in static.items():
        if key == "tags" and isinstance(value, Mapping):
            snap["tags"] = {**snap.get("tags", {}), **value}
        elif value is not None:
            snap[key] = value
    return snap


def start_call(
    accountant: Accountant,
    run_id: str,
    model: str | None,
    *,
    owner: object,
    messages: Sequence[Any] | None = None,
    prompt: str | None = None,
    tools: Any = None,
    max_output: int | None = None,
    dims: Mapping[str, Any] | None = None,
    kind: str = "chat",
    parent_id: str | None = None,
    enforce: bool,
    raise_config_errors: bool = False,
) -> LLMCall | None:
    """Claim ``run_id`` and preflight the call; ``None`` when it cannot be accounted.

    With ``enforce=True`` (``BudgetedLLM``, legacy callbacks) a denial raises
    ``BudgetExceededError`` before the model is called; otherwise it is logged and
    the call is recorded when it ends. Other tokenward errors (an unknown model)
    are logged and the call is not recorded, unless ``raise_config_errors``.
    """
    if model is None:
        logger.warning(
            "tokenward: a LlamaIndex %s call reports no model name and was not recorded; "
            "pass default_model='...' (or model='...' to BudgetedLLM)",
            kind,
        )
        return None
    if not _spans.claim(accountant, run_id, owner):
        return None
    prompt_tokens = None
    if messages is not None:
        core_messages = to_messages(messages)
    else:  # a completion: the provider bills the prompt text, without chat framing
        core_messages = [Message("user", prompt or "")]
        prompt_tokens = _counter(model, accountant).count_text(prompt or "")
    call = LLMCall(accountant, run_id, model, kind, core_messages, dims=dict(dims or {}))
    try:
        accountant.preflight(
            run_id,
            model,
            messages=core_messages,
            prompt_tokens=prompt_tokens,
            tools=tools_to_dicts(tools),
            max_output_tokens=max_output,
            dims=dims,
            parent_id=parent_id,
            kind=kind,
        )
    except BudgetExceededError as exc:
        if enforce:
            _spans.unclaim(accountant, run_id)
            raise
        logger.warning(
            "tokenward: budget %r denied a LlamaIndex call, but instrumentation handlers cannot "
            "stop calls; it is recorded anyway. Wrap the LLM in BudgetedLLM to enforce: %s",
            exc.budget,
            exc,
        )
        call.denied = exc
        call.dims = _snapshot_dims(call.dims)
    except TokenwardError as exc:  # unknown model, bad configuration: say so once, plainly
        _spans.unclaim(accountant, run_id)
        if raise_config_errors:
            raise
        logger.error("tokenward: a LlamaIndex %s call was not recorded: %s", kind, exc)
        return None
    except BaseException:
        _spans.unclaim(accountant, run_id)
        raise
    return call


def _counted_usage(call: LLMCall, text: str) -> Usage:
    """Usage of a call that ran without a reservation and reported none: core counter."""
    counter = _counter(call.model, call.accountant)
    prompt = (
        counter.count_text(call.messages[0].text)
        if call.kind == "completion"
        else counter.count_messages(call.messages)
    )
    return Usage(input=prompt, output=counter.count_text(text), estimated=True)


def _counter(model: str, accountant: Any) -> Any:
    from tokenward.counting import get_counter

    return get_counter(model, catalog=accountant.catalog)


def finish_call(
    call: LLMCall,
    *,
    response: Any = None,
    error: BaseException | str | None = None,
    status: str = "ok",
    usage: Usage | None = None,
) -> UsageEvent | None:
    """Settle (or, on ``error`` without a response, release) the call; runs once.

    ``usage`` is used when the response reports none (a caller's own count).
    """
    if call.done:
        return None
    call.done = True
    acc = call.accountant
    _spans.unclaim(acc, call.run_id)
    response = response if response is not None else call.last_response
    if error is not None and response is None:
        if call.denied is not None:
            return None  # nothing reserved, nothing reported
        return acc.release(call.run_id, error=error)  # type: ignore[no-any-return]
    usage = usage_from_response(response) or usage_from_response(call.child_response) or usage
    if response is None:
        response = call.child_response
    text = response_text(response)
    model = response_model(response)
    if model is not None and acc.catalog.find(model) is None:
        model = None  # an unknown snapshot name: keep the model we priced the estimate with
    if call.denied is not None:
        if usage is None:
            usage = _counted_usage(call, text)
        return acc.settle(  # type: ignore[no-any-return]
            call.run_id,
            usage,
            model=model or call.model,
            output_text=text,
            tool_names=tool_names(response),
            dims=call.dims,
            status=status,
            error=error,
            latency_ms=(time.perf_counter() - call.started) * 1000.0,
        )
    return acc.settle(  # type: ignore[no-any-return]
        call.run_id,
        usage,
        model=model,
        output_text=text,
        tool_names=tool_names(response),
        status=status,
        error=error,
    )


def account_embedding(
    accountant: Accountant,
    run_id: str,
    model: str | None,
    chunks: Sequence[str],
    *,
    dims: Mapping[str, Any] | None = None,
    parent_id: str | None = None,
    latency_ms: float | None = None,
    counts: Sequence[int] | None = None,
) -> UsageEvent | None:
    """Record one embedding request (``kind="embedding"``); tokens counted by the core counter.

    Embedding responses carry no usage in LlamaIndex events, so the input is
    counted with the model's tokenizer (``estimated`` unless it is exact), or taken
    from ``counts`` (per chunk, the caller's own tokenizer: ``estimated``).
    """
    if model is None:
        logger.warning(
            "tokenward: an embedding call reports no model name and was not "
            "recorded; pass default_model='...'"
        )
        return None
    if counts is not None:
        tokens, estimated = sum(counts), True
    else:
        counter = _counter(model, accountant)
        tokens, estimated = sum(counter.count_text(chunk) for chunk in chunks), not counter.exact
    usage = Usage(input=tokens, estimated=estimated)
    try:
        accountant.preflight(
            run_id, model, prompt_tokens=tokens, dims=dims, parent_id=parent_id, kind="embedding"
        )
    except BudgetExceededError as exc:
        logger.warning(
            "tokenward: budget %r denied an embedding call that already ran; recording it anyway",
            exc.budget,
        )
        return accountant.record(
            model,
            usage,
            run_id=run_id,
            kind="embedding",
            parent_id=parent_id,
            latency_ms=latency_ms,
            **_snapshot_dims(dims or {}),
        )
    return accountant.settle(run_id, usage, latency_ms=latency_ms)  # type: ignore[no-any-return]
