"""Legacy ``CallbackManager`` handler: a drop-in, priced superset of ``TokenCountingHandler``."""

from __future__ import annotations

import functools
import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from llama_index.core.callbacks.pythonically_printing_base_handler import (
    PythonicallyPrintingBaseHandler,
)
from llama_index.core.callbacks.schema import CBEventType, EventPayload
from llama_index.core.callbacks.token_counting import TokenCountingEvent
from llama_index.core.utilities.token_counting import TokenCounter

from tokenward.errors import TokenBudgetExceededError
from tokenward.integrations.llama_index import _spans
from tokenward.integrations.llama_index._common import (
    embedding_texts,
    max_output_tokens,
    model_from_dict,
    placeholder_model,
    resolve_accountant,
    response_model,
    response_text,
    swallow_internal_errors,
    to_messages,
    tool_names,
    usage_from_response,
)
from tokenward.integrations.llama_index._runs import (
    account_embedding,
    find_call,
    finish_call,
    start_call,
)
from tokenward.usage import Usage

if TYPE_CHECKING:
    from typing_extensions import Never

    from tokenward.accountant import Accountant
    from tokenward.ledger import UsageEvent

__all__ = ["TokenwardCallbackHandler"]

_START_GUARD = swallow_internal_errors("callback start")
_END_GUARD = swallow_internal_errors("callback end")


class TokenwardCallbackHandler(PythonicallyPrintingBaseHandler):
    """Records LLM and embedding calls from a LlamaIndex ``CallbackManager``.

    Migration from ``TokenCountingHandler`` is one line; its arguments keep their
    meaning::

        # token_counter = TokenCountingHandler(tokenizer=enc.encode, token_budget=50_000)
        token_counter = TokenwardCallbackHandler(accountant, tokenizer=enc.encode,
                                                 token_budget=50_000, dims={"user_id": "u1"})
        Settings.callback_manager = CallbackManager([token_counter])

    It keeps TokenCountingHandler's counters (``prompt_llm_token_count``,
    ``completion_llm_token_count``, ``total_llm_token_count``,
    ``total_embedding_token_count``, ``llm_token_counts``,
    ``embedding_token_counts``, ``reset_counts()``) with provider-reported
    numbers where available, and adds ``total_cost`` and the recorded ``events``.
    Every call also lands in the accountant's ledger with cost and dimensions.

    Args:
        accountant: where calls are recorded (default: ``get_default_accountant()``).
        tokenizer: counts tokens (``len(tokenizer(text))``) when the provider reports
            no usage, as in ``TokenCountingHandler``; such counts are marked
            ``estimated``. Default: the model's own tokenizer.
        event_starts_to_ignore / event_ends_to_ignore: event types to skip.
        verbose: print (or log at DEBUG to ``logger``) each call's token usage.
        logger: where ``verbose`` output goes instead of ``print``.
        token_budget: a limit on this handler's LLM tokens (prompt + completion):
            once exceeded, :class:`~tokenward.TokenBudgetExceededError` (a
            ``ValueError``) is raised when the crossing call ends and before every
            later event starts. For limits per user, per day or in dollars, shared
            across processes, use a :class:`~tokenward.Budget` on the accountant.
        default_model: the model name when an LLM reports none (``MockLLM``); without
            it such a call is recorded under the LLM's class name, cost unknown.
        dims: dimensions for every call (``user_id``, ``conversation_id``, ``agent``,
            ``tags={...}``); per-request ones come from ``tokenward.llama_index.dims``.

    Unknown keyword arguments raise ``TypeError`` (dimensions go in ``dims=``).

    Unlike an instrumentation event handler, a callback handler's exception
    reaches the caller: a hard budget that denies a call raises
    ``BudgetExceededError`` from ``on_event_start``, before the model is called.
    An end event whose start this handler never saw (events delivered by hand,
    starts filtered out) is still recorded.

    Use this **or** :func:`instrument`, not both: if both feed the same accountant
    each call is still recorded once (whichever sees it first, the
    instrumentation handler), but then this handler's counters stay empty.
    """

    def __init__(
        self,
        accountant: Accountant | None = None,
        *,
        tokenizer: Callable[[str], Sequence[Any]] | None = None,
        event_starts_to_ignore: list[CBEventType] | None = None,
        event_ends_to_ignore: list[CBEventType] | None = None,
        verbose: bool = False,
        logger: logging.Logger | None = None,
        token_budget: int | None = None,
        default_model: str | None = None,
        dims: Mapping[str, Any] | None = None,
        **unexpected: Never,
    ) -> None:
        if unexpected:
            names = ", ".join(sorted(unexpected))
            raise TypeError(
                f"TokenwardCallbackHandler() got unexpected keyword argument(s) {names}; "
                f"dimensions go in dims={{...}}, e.g. dims={{'user_id': 'u1'}}"
            )
        if accountant is not None and not hasattr(accountant, "preflight"):
            raise TypeError(
                f"TokenwardCallbackHandler()'s first argument is the Accountant, got "
                f"{type(accountant).__name__}; pass a tokenizer as tokenizer=..."
            )
        super().__init__(event_starts_to_ignore or [], event_ends_to_ignore or [], logger=logger)
        self.accountant = resolve_accountant(accountant)
        self.tokenizer = tokenizer
        self.token_budget = token_budget
        self.default_model = default_model
        self.dims = dict(dims or {})
        self.llm_token_counts: list[TokenCountingEvent] = []
        self.embedding_token_counts: list[TokenCountingEvent] = []
        self.events: list[UsageEvent] = []
        self._verbose = verbose
        self._token_counter = TokenCounter(tokenizer=tokenizer) if tokenizer else None  # type: ignore[arg-type]
        # callback event id -> run id (its span) of an LLM call this handler started, or None
        # for a start seen and left to another call or adapter (its end is not recorded here)
        self._llm_events: dict[str, str | None] = {}
        # the same for embedding requests: event id -> (model, span, start time, model dict)
        self._embeddings: dict[str, tuple[str, str, float, Mapping[str, Any]] | None] = {}
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
        self._check_budget()
        if payload is None:
            return event_id
        with _START_GUARD:
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
            self._embeddings[event_id] = None  # recorded by instrument() for the same accountant
            return
        serialized = payload.get(EventPayload.SERIALIZED) or {}
        model = model_from_dict(serialized, self.default_model) or placeholder_model(serialized)
        with self._lock:
            self._embeddings[event_id] = (model, span, time.perf_counter(), serialized)
            self._embedding_spans[span] = self._embedding_spans.get(span, 0) + 1

    def _llm_start(self, payload: dict[str, Any], event_id: str) -> None:
        span = _spans.current_span()
        found = find_call(self.accountant, span)
        if found is not None:  # an inner call (CustomLLM chat -> complete) or accounted elsewhere
            if span is not None:
                _spans.expect_lazy_inner(self.accountant, span, found[0])
            self._llm_events[event_id] = None
            return
        serialized = payload.get(EventPayload.SERIALIZED) or {}
        extra = payload.get(EventPayload.ADDITIONAL_KWARGS) or {}
        messages = payload.get(EventPayload.MESSAGES)
        run_id = span or event_id
        started = start_call(
            self.accountant,
            run_id,
            model_from_dict(serialized, self.default_model) or placeholder_model(serialized),
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
        if started and span is not None:
            _spans.expect_lazy_inner(self.accountant, span, run_id)
        self._llm_events[event_id] = run_id if started else None

    def on_event_end(
        self,
        event_type: CBEventType,
        payload: dict[str, Any] | None = None,
        event_id: str = "",
        **kwargs: Any,
    ) -> None:
        if payload is None or event_type in self.event_ends_to_ignore:
            return
        with _END_GUARD:
            if event_type == CBEventType.LLM:
                self._llm_end(payload, event_id)
            elif event_type == CBEventType.EMBEDDING:
                self._embedding_end(payload, event_id)
        if event_type == CBEventType.LLM:
            self._check_budget()

    def _llm_end(self, payload: dict[str, Any], event_id: str) -> None:
        run_id: str | None = None  # None: an end whose start this handler never saw
        if event_id in self._llm_events:
            run_id = self._llm_events.pop(event_id)
            if run_id is None:
                return  # left to another call or adapter
        messages = payload.get(EventPayload.MESSAGES)
        prompt = (
            "\n".join(str(m) for m in messages)
            if messages is not None
            else str(payload.get(EventPayload.PROMPT, ""))
        )
        response = payload.get(EventPayload.RESPONSE, payload.get(EventPayload.COMPLETION))
        event: UsageEvent | None
        if run_id is None:
            event = self._record_unstarted(payload, response)
        elif EventPayload.EXCEPTION in payload:
            finish_call(self.accountant, run_id, error=payload[EventPayload.EXCEPTION])
            return
        else:
            count = None
            if self._token_counter is not None:
                count = functools.partial(self._tokenizer_usage, messages, prompt, response)
            event = finish_call(self.accountant, run_id, response=response, count=count)
        if event is not None:
            self._count(event, prompt, str(response), event_id)

    def _tokenizer_usage(self, messages: Any, prompt: str, response: Any) -> Usage:
        """``TokenCountingHandler``'s counts with the user's tokenizer (no usage reported)."""
        counter = self._token_counter
        assert counter is not None
        prompt_tokens = (
            counter.estimate_tokens_in_messages(list(messages))
            if messages is not None
            else counter.get_string_tokens(prompt)
        )
        return Usage(
            input=prompt_tokens, output=counter.get_string_tokens(str(response)), estimated=True
        )

    def _record_unstarted(self, payload: dict[str, Any], response: Any) -> UsageEvent | None:
        """Record an LLM end event whose start this handler never saw."""
        messages = payload.get(EventPayload.MESSAGES)
        model = response_model(response) or self.default_model or placeholder_model(None)
        if isinstance(response, str):
            text = response
        else:
            text = response_text(response) or ("" if response is None else str(response))
        prompt = str(payload.get(EventPayload.PROMPT, ""))
        usage = usage_from_response(response)
        if usage is None and self._token_counter is not None:
            usage = self._tokenizer_usage(messages, prompt, text)
        if usage is None:
            from tokenward.counting import get_counter

            counter = get_counter(model, catalog=self.accountant.catalog)
            usage = Usage(
                input=counter.count_messages(to_messages(messages))
                if messages is not None
                else counter.count_text(prompt),
                output=counter.count_text(text),
                estimated=True,
            )
        return self.accountant.record(
            model,
            usage,
            run_id=uuid.uuid4().hex,
            kind="chat" if messages is not None else "completion",
            tool_names=tool_names(response),
            **self.dims,
        )

    def _embedding_end(self, payload: dict[str, Any], event_id: str) -> None:
        with self._lock:
            seen = event_id in self._embeddings
            entry = self._embeddings.pop(event_id, None)
            if seen and entry is None:
                return  # left to another adapter
            left = 0
            if entry is not None:
                left = self._embedding_spans.pop(entry[1], 1) - 1
                if left > 0:
                    self._embedding_spans[entry[1]] = left
        serialized: Mapping[str, Any] = {}
        span: str | None = None
        started: float | None = None
        if entry is None:  # an end without a start: no model known, no latency
            model = self.default_model or placeholder_model(None)
        else:
            model, span, started, serialized = entry
            if left <= 0:
                _spans.unclaim(self.accountant, span)
        texts = embedding_texts(serialized, payload.get(EventPayload.CHUNKS) or [])
        if self._token_counter is not None:
            counts = [self._token_counter.get_string_tokens(t) for t in texts]
        else:
            from tokenward.counting import get_counter

            counter = get_counter(model, catalog=self.accountant.catalog)
            counts = [counter.count_text(t) for t in texts]
        event = account_embedding(
            self.accountant,
            event_id if entry is not None else uuid.uuid4().hex,
            model,
            texts,
            dims=self.dims,
            parent_id=_spans.parent_of(span),
            latency_ms=None if started is None else (time.perf_counter() - started) * 1000.0,
            counts=counts if self._token_counter is not None else None,
        )
        if event is None:
            return
        self.events.append(event)
        for text, tokens in zip(texts, counts):
            self.embedding_token_counts.append(
                TokenCountingEvent(
                    prompt=text,
                    completion="",
                    event_id=event_id,
                    prompt_token_count=tokens,
                    completion_token_count=0,
                )
            )
        if self._verbose:
            self._print(f"Embedding Token Usage: {sum(counts)}")

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
        if self._verbose:
            self._print(
                f"LLM Prompt Token Usage: {event.usage.input}\n"
                f"LLM Completion Token Usage: {event.usage.output}"
            )

    def _check_budget(self) -> None:
        if self.token_budget is None:
            return
        used = self.total_llm_token_count
        if used > self.token_budget:
            raise TokenBudgetExceededError(
                f"Token budget exceeded! Limit: {self.token_budget}, Current: {used} (LLM tokens "
                f"counted by this TokenwardCallbackHandler); raise token_budget=, call "
                f"reset_counts(), or set a tokenward Budget to stop calls before they run",
                budget="token_budget",
                scope_key="handler",
                unit="tokens",
                limit=self.token_budget,
                spent=used,
                reserved=0,
                attempted=0,
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
        """USD cost of the priced calls recorded by this handler (LLM and embedding);
        calls whose cost is unknown are counted in :attr:`unpriced_calls`."""
        return sum((e.cost for e in self.events if e.cost is not None), Decimal(0))

    @property
    def unpriced_calls(self) -> int:
        """Calls recorded by this handler whose cost is unknown (an unpriced model)."""
        return sum(1 for e in self.events if e.cost is None)

    def reset_counts(self) -> None:
        """Forget the counters (the ledger keeps its events)."""
        self.llm_token_counts = []
        self.embedding_token_counts = []
        self.events = []
