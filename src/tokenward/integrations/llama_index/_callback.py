"""Legacy ``CallbackManager`` handler: a drop-in, priced superset of ``TokenCountingHandler``."""

from __future__ import annotations

import threading
import time
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from llama_index.core.callbacks.base_handler import BaseCallbackHandler
from llama_index.core.callbacks.schema import CBEventType, EventPayload
from llama_index.core.callbacks.token_counting import TokenCountingEvent

from tokenward.integrations.llama_index import _spans
from tokenward.integrations.llama_index._common import (
    max_output_tokens,
    model_from_dict,
    resolve_accountant,
    swallow_internal_errors,
)
from tokenward.integrations.llama_index._runs import account_embedding, finish_call, start_call

if TYPE_CHECKING:
    from tokenward.accountant import Accountant
    from tokenward.ledger import UsageEvent

__all__ = ["TokenwardCallbackHandler"]


class TokenwardCallbackHandler(BaseCallbackHandler):
    """Records LLM and embedding calls from a LlamaIndex ``CallbackManager``.

    Migration from ``TokenCountingHandler`` is one line::

        # token_counter = TokenCountingHandler()
        token_counter = TokenwardCallbackHandler(accountant, user_id="u1")
        Settings.callback_manager = CallbackManager([token_counter])

    It keeps TokenCountingHandler's counters (``prompt_llm_token_count``,
    ``completion_llm_token_count``, ``total_llm_token_count``,
    ``total_embedding_token_count``, ``llm_token_counts``,
    ``embedding_token_counts``, ``reset_counts()``) with provider-reported
    numbers where available, and adds ``total_cost`` and the recorded ``events``.
    Every call also lands in the accountant's ledger with cost and dimensions.

    Unlike an instrumentation event handler, a callback handler's exception
    reaches the caller: a hard budget that denies a call raises
    ``BudgetExceededError`` from ``on_event_start``, before the model is called.

    Use this **or** :func:`instrument`, not both: if both feed the same accountant
    each call is still recorded once (whichever sees it first, the
    instrumentation handler), but then this handler's counters stay empty.
    """

    def __init__(
        self,
        accountant: Accountant | None = None,
        *,
        default_model: str | None = None,
        event_starts_to_ignore: list[CBEventType] | None = None,
        event_ends_to_ignore: list[CBEventType] | None = None,
        **dims: Any,
    ) -> None:
        super().__init__(event_starts_to_ignore or [], event_ends_to_ignore or [])
        self.accountant = resolve_accountant(accountant)
        self.default_model = default_model
        self.dims = dict(dims)
        self.llm_token_counts: list[TokenCountingEvent] = []
        self.embedding_token_counts: list[TokenCountingEvent] = []
        self.events: list[UsageEvent] = []
        self._calls: dict[str, str] = {}  # callback event id -> run id (its span)
        self._embeddings: dict[str, tuple[str | None, str, float]] = {}
        self._embedding_spans: dict[str, int] = {}
        self._lock = threading.Lock()
        _spans.ensure_span_tree()

    # ------------------------------------------------------------------ traces
    def start_trace(self, trace_id: str | None = None) -> None:
        return None

    def end_trace(
        self, trace_id: str | None = None, trace_map: dict[str, list[str]] | None = None
    ) -> None:
        return None

    # ------------------------------------------------------------------ events
    def on_event_start(
        self,
        event_type: CBEventType,
        payload: dict[str, Any] | None = None,
        event_id: str = "",
        parent_id: str = "",
        **kwargs: Any,
    ) -> str:
        if payload is None:
            return event_id
        with swallow_internal_errors("callback start"):
            if event_type == CBEventType.LLM:
                self._llm_start(payload, event_id)
            elif event_type == CBEventType.EMBEDDING:
                self._embedding_start(payload, event_id)
        return event_id

    def _embedding_start(self, payload: dict[str, Any], event_id: str) -> None:
        span = _spans.current_span() or event_id
        owner = _spans.owner_of(self.accountant, span)
        if owner is None:
            _spans.claim(self.accountant, span, self)
        elif owner is not self:
            return  # recorded by instrument() for the same accountant
        model = model_from_dict(payload.get(EventPayload.SERIALIZED), self.default_model)
        with self._lock:
            self._embeddings[event_id] = (model, span, time.perf_counter())
            self._embedding_spans[span] = self._embedding_spans.get(span, 0) + 1

    def _llm_start(self, payload: dict[str, Any], event_id: str) -> None:
        span = _spans.current_span()
        owner = _spans.find_owner(self.accountant, span)
        if owner is not None:  # an inner call (CustomLLM chat -> complete) or accounted elsewhere
            if span is not None:
                _spans.expect_lazy_inner(self.accountant, span, owner[0])
            return
        serialized = payload.get(EventPayload.SERIALIZED) or {}
        extra = payload.get(EventPayload.ADDITIONAL_KWARGS) or {}
        messages = payload.get(EventPayload.MESSAGES)
        run_id = span or event_id
        started = start_call(
            self.accountant,
            run_id,
            model_from_dict(serialized, self.default_model),
            owner=self,
            messages=messages,
            prompt=None if messages is not None else str(payload.get(EventPayload.PROMPT, "")),
            tools=extra.get("tools"),
            max_output=max_output_tokens(extra, serialized),
            dims=self.dims,
            kind="chat" if messages is not None else "completion",
            parent_id=_spans.parent_of(span),
            enforce=True,
        )
        if started:
            if span is not None:
                _spans.expect_lazy_inner(self.accountant, span, run_id)
            with self._lock:
                self._calls[event_id] = run_id

    def on_event_end(
        self,
        event_type: CBEventType,
        payload: dict[str, Any] | None = None,
        event_id: str = "",
        **kwargs: Any,
    ) -> None:
        payload = payload or {}
        with swallow_internal_errors("callback end"):
            if event_type == CBEventType.LLM:
                with self._lock:
                    run_id = self._calls.pop(event_id, None)
                if run_id is None:
                    return
                if EventPayload.EXCEPTION in payload:
                    finish_call(self.accountant, run_id, error=payload[EventPayload.EXCEPTION])
                    return
                response = payload.get(EventPayload.RESPONSE, payload.get(EventPayload.COMPLETION))
                event = finish_call(self.accountant, run_id, response=response)
                if event is not None:
                    self._count(
                        event,
                        str(
                            payload.get(EventPayload.MESSAGES, payload.get(EventPayload.PROMPT, ""))
                        ),
                        str(response),
                        event_id,
                    )
            elif event_type == CBEventType.EMBEDDING:
                with self._lock:
                    entry = self._embeddings.pop(event_id, None)
                    if entry is None:
                        return
                    model, span, started = entry
                    left = self._embedding_spans.pop(span, 1) - 1
                    if left > 0:
                        self._embedding_spans[span] = left
                if left <= 0:
                    _spans.unclaim(self.accountant, span)
                chunks = payload.get(EventPayload.CHUNKS) or []
                event = account_embedding(
                    self.accountant,
                    event_id,
                    model,
                    chunks,
                    dims=self.dims,
                    parent_id=_spans.parent_of(span),
                    latency_ms=(time.perf_counter() - started) * 1000.0,
                )
                if event is not None:
                    self.events.append(event)
                    self.embedding_token_counts.append(
                        TokenCountingEvent(
                            prompt="\n".join(chunks),
                            completion="",
                            event_id=event_id,
                            prompt_token_count=event.usage.input,
                            completion_token_count=0,
                        )
                    )

    def _count(self, event: UsageEvent, prompt: str, completion: str, event_id: str) -> None:
        self.events.append(event)
        self.llm_token_counts.append(
            TokenCountingEvent(
                prompt=prompt,
                completion=completion,
                event_id=event_id,
                prompt_token_count=event.usage.input,
                completion_token_count=event.usage.output,
            )
        )

    # ------------------------------------------------------------------ TokenCountingHandler API
    @property
    def total_llm_token_count(self) -> int:
        """Prompt + completion tokens of every LLM call recorded by this handler."""
        return sum(x.total_token_count for x in self.llm_token_counts)

    @property
    def prompt_llm_token_count(self) -> int:
        return sum(x.prompt_token_count for x in self.llm_token_counts)

    @property
    def completion_llm_token_count(self) -> int:
        return sum(x.completion_token_count for x in self.llm_token_counts)

    @property
    def total_embedding_token_count(self) -> int:
        return sum(x.total_token_count for x in self.embedding_token_counts)

    @property
    def total_cost(self) -> Decimal:
        """USD cost of every call recorded by this handler (LLM and embedding)."""
        return sum((e.cost for e in self.events if e.cost is not None), Decimal(0))

    def reset_counts(self) -> None:
        """Forget the counters (the ledger keeps its events)."""
        self.llm_token_counts = []
        self.embedding_token_counts = []
        self.events = []
