"""One LLM call's lifecycle against the Accountant, shared by every LlamaIndex adapter.

``start_call`` preflights the call under its span id (estimate + budget reservation);
the call then lives in the accountant's call table, with this adapter's per-call data
(:class:`CallData`: the adapter accounting it, the latest streamed chunk, an inner call's
response) in its ``Run.data``. That run is the only record of the call: whether a span
is already accounted, and by whom, is read there (``find_call``), not in a map of our own. ``finish_call`` settles it with the provider's usage (or, when the provider
reported none, lets the core count the output text and mark the event estimated) or
releases it on error.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tokenward.accountant import LazyMessages
from tokenward.errors import BudgetExceededError, BudgetStoreUnavailableError
from tokenward.integrations._common import log_internal_error
from tokenward.integrations.llama_index import _spans
from tokenward.integrations.llama_index._common import (
    logger,
    response_model,
    response_output,
    to_messages,
    tools_to_dicts,
    usage_from_response,
)
from tokenward.usage import Usage

if TYPE_CHECKING:
    from tokenward.accountant import Accountant
    from tokenward.ledger import UsageEvent

__all__ = [
    "CallData",
    "account_embedding",
    "call_data",
    "enclosing_call",
    "find_call",
    "finish_call",
    "start_call",
]


@dataclass(slots=True)
class CallData:
    """A LlamaIndex call's own data, kept in the accountant's call table (``Run.data``)."""

    owner: object  # the adapter accounting it (BudgetedLLM, an event or callback handler)
    last_response: Any = None  # latest streamed chunk
    child_response: Any = None  # response of the inner call folded into this one


def call_data(accountant: Accountant, run_id: str) -> CallData | None:
    """The data of a call this adapter started and that has not ended yet."""
    run = accountant.run(run_id)
    data = run.data if run is not None else None
    return data if isinstance(data, CallData) else None


_MAX_DEPTH = 64


def enclosing_call(accountant: Accountant, span_id: str | None) -> tuple[str, CallData] | None:
    """``(run id, data)`` of the pending call on ``span_id`` or on its nearest ancestor span
    (an inner span adopted into an async stream's call counts as that call's)."""
    depth = 0
    while span_id is not None and depth < _MAX_DEPTH:  # the span, its parent... (open spans)
        root = _spans.adopted_by(accountant, span_id) or span_id
        data = call_data(accountant, root)
        if data is not None:
            return root, data
        span_id = _spans.parent_of(span_id)
        depth += 1
    return None


def find_call(accountant: Accountant, span_id: str | None) -> tuple[str, CallData] | None:
    """The pending call ``span_id`` is part of: its own or an ancestor's (``CustomLLM.chat``
    -> ``complete``), or the async stream whose lazy inner call it is."""
    found = enclosing_call(accountant, span_id)
    if found is not None or span_id is None:
        return found
    root = _spans.adopt_lazy_inner(
        accountant, span_id, lambda root: call_data(accountant, root) is not None
    )
    data = call_data(accountant, root) if root is not None else None
    return (root, data) if root is not None and data is not None else None


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
) -> bool:
    """Preflight the call on ``run_id``; False when another adapter accounts it already.

    With ``enforce=True`` (``BudgetedLLM``, legacy callbacks) a denial raises before the
    model is called. An instrumentation handler cannot stop a call (``enforce=False``): a
    denial is logged and the call is opened without a reservation, recorded when it ends.
    A call with no model name is recorded as ``"unknown"``.
    """
    if model is None:
        log_internal_error(
            logger,
            "model name",
            ValueError(
                f"a LlamaIndex {kind} call reports no model name; recorded as 'unknown'. "
                f"Pass default_model='...' (or model='...' to BudgetedLLM)"
            ),
        )
    if accountant.run(run_id) is not None:
        return False
    preflight: dict[str, Any] = {
        "messages": _prompt(messages, prompt),
        "tools": tools_to_dicts(tools),
        "max_output_tokens": max_output,
        "dims": dims,
        "parent_id": parent_id,
        "kind": kind,
        "data": CallData(owner),
    }
    try:
        accountant.preflight(run_id, model, **preflight)
    except (BudgetExceededError, BudgetStoreUnavailableError) as denied:
        if enforce:
            raise  # (a denied preflight leaves nothing pending)
        logger.warning(
            "tokenward: a budget denied a LlamaIndex call, but instrumentation handlers "
            "cannot stop calls; it is recorded anyway. Wrap the LLM in BudgetedLLM to "
            "enforce: %s",
            denied,
        )
        accountant.preflight(run_id, model, enforce=False, **preflight)
    return True


def _prompt(messages: Sequence[Any] | None, prompt: str | None) -> Sequence[Any] | LazyMessages:
    """The prompt as the core takes it, converted to core messages only when counted.

    A completion's prompt is one plain-text message (counted, when needed, as text: see
    ``Estimate``). Chat messages stay LlamaIndex's own until a count needs them: the core
    bounds them from their fields (``content`` blocks), which is exact enough unless a
    message carries ``additional_kwargs`` (tool calls, tool-call ids, names) the bound
    cannot see; such a prompt is converted at once. (The list is copied: the app may
    append to its own afterwards.)
    """
    if messages is None:
        return [{"role": "user", "content": prompt or ""}]
    if any(m.additional_kwargs for m in messages):
        return to_messages(messages)
    return LazyMessages(list(messages), to_messages)


def _counter(model: str, accountant: Any) -> Any:
    from tokenward.counting import get_counter

    return get_counter(accountant.model_info(model)[0].name, catalog=accountant.catalog)


def finish_call(
    accountant: Accountant,
    run_id: str,
    *,
    response: Any = None,
    error: BaseException | str | None = None,
    status: str = "ok",
    count: Callable[[], Usage] | None = None,
) -> UsageEvent | None:
    """Settle (or, on ``error`` without a response, release) the call; runs once.

    ``count()`` (a caller's own tokenizer) is asked for the usage only when neither the
    response nor an inner call's response reports one.
    """
    data = call_data(accountant, run_id)
    _spans.forget(accountant, run_id)
    if data is None:
        return None  # already ended
    if response is None:
        response = data.last_response
    if error is not None and response is None:
        return accountant.release(run_id, error=error)
    usage = usage_from_response(response) or usage_from_response(data.child_response)
    if usage is None and count is not None:
        usage = count()
    if response is None:
        response = data.child_response
    text, tools = response_output(response)
    return accountant.settle(
        run_id,
        usage,
        model=response_model(response),
        output_text=text,
        tool_names=tools,
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

    Embedding responses carry no usage in LlamaIndex events, so the input is counted with
    the model's tokenizer (``estimated`` unless it is exact), or taken from ``counts`` (per
    chunk, the caller's own tokenizer: ``estimated``). The request already ran, so it is
    recorded as it is (its spend committed on the budgets).
    """
    if model is None:
        log_internal_error(
            logger,
            "embedding model name",
            ValueError(
                "a LlamaIndex embedding call reports no model name; recorded as 'unknown'. "
                "Pass default_model='...'"
            ),
        )
    name = model or "unknown"
    if counts is not None:
        tokens, estimated = sum(counts), True
    else:
        counter = _counter(name, accountant)
        tokens, estimated = sum(counter.count_text(chunk) for chunk in chunks), not counter.exact
    return accountant.record(
        name,
        Usage(input=tokens, estimated=estimated),
        run_id=run_id,
        kind="embedding",
        parent_id=parent_id,
        latency_ms=latency_ms,
        **_dims_kwargs(dims),
    )


def _dims_kwargs(dims: Mapping[str, Any] | None) -> dict[str, Any]:
    # record() takes dimensions as keyword arguments; its own parameters cannot be dims
    return {k: v for k, v in (dims or {}).items() if k not in _RECORD_PARAMS}


_RECORD_PARAMS = frozenset(
    ("model", "usage", "run_id", "status", "latency_ms", "tool_names", "kind", "parent_id")
)
