"""Usage capture from LlamaIndex's instrumentation dispatcher (``instrument()``)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from llama_index.core.instrumentation.event_handlers import BaseEventHandler
from llama_index.core.instrumentation.events import BaseEvent
from llama_index.core.instrumentation.events.embedding import (
    EmbeddingEndEvent,
    EmbeddingStartEvent,
    SparseEmbeddingEndEvent,
)
from llama_index.core.instrumentation.events.exception import ExceptionEvent
from llama_index.core.instrumentation.events.llm import (
    LLMChatEndEvent,
    LLMChatInProgressEvent,
    LLMChatStartEvent,
    LLMCompletionEndEvent,
    LLMCompletionInProgressEvent,
    LLMCompletionStartEvent,
    LLMPredictEndEvent,
    LLMPredictStartEvent,
    LLMStructuredPredictEndEvent,
    LLMStructuredPredictInProgressEvent,
    LLMStructuredPredictStartEvent,
)
from llama_index_instrumentation import get_dispatcher
from llama_index_instrumentation.events.span import SpanDropEvent
from pydantic import Field, SkipValidation

from tokenward.accountant import Accountant
from tokenward.integrations._common import guard
from tokenward.integrations.llama_index import _spans
from tokenward.integrations.llama_index._common import (
    embedding_texts,
    logger,
    max_output_tokens,
    model_from_dict,
    resolve_accountant,
)
from tokenward.integrations.llama_index._runs import (
    CallData,
    account_embedding,
    call_data,
    enclosing_call,
    find_call,
    finish_call,
    start_call,
)

__all__ = ["InstrumentHandle", "TokenwardEventHandler", "instrument"]


class TokenwardEventHandler(BaseEventHandler):
    """Records every LLM and embedding call LlamaIndex makes into an ``Accountant``.

    Attach it with :func:`instrument` (which also installs the span tracker it
    needs). One user call is recorded once, keyed by its instrumentation span id:
    the inner ``complete()`` a ``CustomLLM`` runs for ``chat()`` (and the
    ``predict()``/``structured_predict()`` wrapper spans) are folded into the
    outer call, never recorded twice.

    The dispatcher swallows every exception a handler raises, so this handler
    **cannot** stop a call: a hard budget that denies a call (or budgets that cannot
    be checked) is logged and the call is recorded when it ends. Wrap the model in
    :class:`BudgetedLLM` to enforce budgets before the provider is called. Calls in
    flight live in the accountant's call table, not in the handler.
    """

    # Plain fields, not pydantic private attributes: reading a ``PrivateAttr`` goes through
    # ``BaseModel.__getattr__`` (microseconds each), and every event reads these.
    accountant: SkipValidation[Accountant] = Field(exclude=True, repr=False)
    dims: dict[str, Any] = Field(default_factory=dict, exclude=True, repr=False)
    default_model: str | None = Field(default=None, exclude=True)
    #: open embedding spans -> [model, start time, batches not ended, model_dict]: a span may
    #: hold several start/end pairs, each recorded at its end (no call is pending in between)
    embeddings: dict[str, list[Any]] = Field(default_factory=dict, exclude=True, repr=False)

    def __init__(
        self, accountant: Accountant | None = None, *, default_model: str | None = None, **dims: Any
    ) -> None:
        fields: dict[str, Any] = {
            "accountant": resolve_accountant(accountant),
            "dims": dict(dims),
            "default_model": default_model,
        }
        super().__init__(**fields)
        _spans.ensure_span_tree()

    @classmethod
    def class_name(cls) -> str:
        return "TokenwardEventHandler"

    # ------------------------------------------------------------------ dispatch
    def handle(self, event: BaseEvent, **kwargs: Any) -> None:
        try:
            entry = _DISPATCH[type(event)]
        except KeyError:
            entry = _subclass_entry(type(event))
        if entry is None:
            return
        method, what = entry
        with guard(logger, what):
            method(self, event)

    # ------------------------------------------------------------------ LLM calls
    def _own(self, span: str) -> CallData | None:
        """The data of the call this handler started on ``span``, if it is still pending."""
        data = call_data(self.accountant, span)
        return data if data is not None and data.owner is self else None

    def _enclosing(self, span: str) -> CallData | None:
        """The data of the call an inner span (``CustomLLM.chat`` -> ``complete``) is folded
        into, when this handler accounts it."""
        found = enclosing_call(self.accountant, span)
        return found[1] if found is not None and found[1].owner is self else None

    def _on_start(self, event: LLMChatStartEvent | LLMCompletionStartEvent) -> None:
        span = event.span_id or event.id_
        accountant = self.accountant
        found = find_call(accountant, span)
        if found is not None:  # the inner call of one already accounted: folded into it
            _spans.expect_lazy_inner(accountant, span, found[0])
            return
        chat = event if isinstance(event, LLMChatStartEvent) else None
        completion = event if isinstance(event, LLMCompletionStartEvent) else None
        started = start_call(
            accountant,
            span,
            model_from_dict(event.model_dict, self.default_model),
            owner=self,
            messages=chat.messages if chat is not None else None,
            prompt=completion.prompt if completion is not None else None,
            tools=event.additional_kwargs.get("tools"),
            max_output=max_output_tokens(event.additional_kwargs, event.model_dict),
            dims=self.dims,
            kind="chat" if chat is not None else "completion",
            parent_id=_spans.parent_of(span),
            enforce=False,
        )
        if started:
            _spans.expect_lazy_inner(accountant, span, span)

    def _on_progress(self, event: LLMChatInProgressEvent | LLMCompletionInProgressEvent) -> None:
        span = event.span_id or ""
        data = self._own(span)
        if data is not None:
            data.last_response = event.response
            return
        data = self._enclosing(span)
        if data is not None:
            data.child_response = event.response

    def _on_end(self, event: LLMChatEndEvent | LLMCompletionEndEvent) -> None:
        span = event.span_id or ""
        if self._own(span) is not None:
            finish_call(self.accountant, span, response=event.response)
            return
        data = self._enclosing(span)
        if data is not None and event.response is not None:
            data.child_response = event.response

    def _on_error(self, event: ExceptionEvent | SpanDropEvent) -> None:
        span = event.span_id or ""
        if self.embeddings.pop(span, None) is not None:  # a failed embedding request
            _spans.unclaim(self.accountant, span)
        if self._own(span) is not None:
            error = getattr(event, "exception", None) or getattr(event, "err_str", "error")
            finish_call(self.accountant, span, error=error)

    # ------------------------------------------------------------------ embeddings
    def _on_embedding_start(self, event: EmbeddingStartEvent) -> None:
        # one span may hold several batches (several start/end pairs, async: all starts first)
        span = event.span_id or event.id_
        owner = _spans.owner_of(self.accountant, span)
        if owner is None:
            _spans.claim(self.accountant, span, self)
        elif owner is not self:
            return  # the legacy handler or another adapter records this one
        entry = self.embeddings.get(span)
        if entry is None:
            self.embeddings[span] = [
                model_from_dict(event.model_dict, self.default_model),
                time.perf_counter(),
                1,
                event.model_dict,
            ]
        else:
            entry[2] += 1

    def _on_embedding_end(self, event: EmbeddingEndEvent | SparseEmbeddingEndEvent) -> None:
        span = event.span_id or event.id_
        entry = self.embeddings.get(span)
        if entry is None:
            return
        entry[2] -= 1
        if entry[2] <= 0:
            del self.embeddings[span]
            _spans.unclaim(self.accountant, span)
        account_embedding(
            self.accountant,
            event.id_,
            entry[0],
            embedding_texts(entry[3], event.chunks),
            dims=self.dims,
            parent_id=_spans.parent_of(span),
            latency_ms=(time.perf_counter() - entry[1]) * 1000.0,
        )

    def _ignore(self, event: BaseEvent) -> None:
        """predict / structured-predict events wrap chat/complete calls counted on their own."""


_Entry = tuple[Callable[[TokenwardEventHandler, Any], None], str]

#: event class -> (handler method, the label its internal errors are logged under); other
#: classes are added on first sight (``None``: not an event this handler records)
_DISPATCH: dict[type, _Entry | None] = {
    cls: (method, f"LlamaIndex {cls.__name__}")
    for cls, method in (
        (LLMChatStartEvent, TokenwardEventHandler._on_start),
        (LLMCompletionStartEvent, TokenwardEventHandler._on_start),
        (LLMChatInProgressEvent, TokenwardEventHandler._on_progress),
        (LLMCompletionInProgressEvent, TokenwardEventHandler._on_progress),
        (LLMChatEndEvent, TokenwardEventHandler._on_end),
        (LLMCompletionEndEvent, TokenwardEventHandler._on_end),
        (ExceptionEvent, TokenwardEventHandler._on_error),
        (SpanDropEvent, TokenwardEventHandler._on_error),
        (EmbeddingStartEvent, TokenwardEventHandler._on_embedding_start),
        (EmbeddingEndEvent, TokenwardEventHandler._on_embedding_end),
        (SparseEmbeddingEndEvent, TokenwardEventHandler._on_embedding_end),
        (LLMPredictStartEvent, TokenwardEventHandler._ignore),
        (LLMPredictEndEvent, TokenwardEventHandler._ignore),
        (LLMStructuredPredictStartEvent, TokenwardEventHandler._ignore),
        (LLMStructuredPredictInProgressEvent, TokenwardEventHandler._ignore),
        (LLMStructuredPredictEndEvent, TokenwardEventHandler._ignore),
    )
}


def _subclass_entry(event_type: type) -> _Entry | None:
    """The entry of an event class seen for the first time: that of its nearest known base
    (a provider's own event subclass), else ``None``; remembered for the next events."""
    entry: _Entry | None = None
    for cls, known in list(_DISPATCH.items()):
        if known is not None and issubclass(event_type, cls):
            entry = (known[0], f"LlamaIndex {event_type.__name__}")
            break
    _DISPATCH[event_type] = entry
    return entry


class InstrumentHandle:
    """What :func:`instrument` returns: the attached handler and a way to remove it."""

    def __init__(self, handler: TokenwardEventHandler) -> None:
        self.handler = handler

    @property
    def accountant(self) -> Accountant:
        return self.handler.accountant

    @property
    def attached(self) -> bool:
        return any(h is self.handler for h in get_dispatcher().event_handlers)

    def detach(self) -> None:
        """Stop recording (idempotent)."""
        with _instrument_lock:
            root = get_dispatcher()
            root.event_handlers = [h for h in root.event_handlers if h is not self.handler]
            _handles.pop(id(self.handler.accountant), None)

    def __enter__(self) -> InstrumentHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.detach()

    def __repr__(self) -> str:
        return f"InstrumentHandle(accountant={self.accountant!r}, attached={self.attached})"


_instrument_lock = threading.Lock()
_handles: dict[int, InstrumentHandle] = {}


def instrument(
    accountant: Accountant | None = None, *, default_model: str | None = None, **dims: Any
) -> InstrumentHandle:
    """Record every LlamaIndex LLM and embedding call into ``accountant``.

    Attaches a :class:`TokenwardEventHandler` to the root instrumentation
    dispatcher, so every query engine, chat engine, agent and index in the
    process is covered. ``dims`` (``user_id``, ``conversation_id``, ``agent``,
    ``tags={...}``) apply to every call; per-request dimensions come from
    ``with tokenward.llama_index.dims(user_id=...)`` blocks around the call.
    ``default_model`` names the model when an LLM reports none (``MockLLM``).

    Idempotent per accountant: a second call returns the handle already attached
    (with the new ``dims``/``default_model``). ``handle.detach()`` removes it.
    This records spending but cannot *stop* a call (LlamaIndex swallows handler
    exceptions); use :class:`BudgetedLLM` for hard budgets.
    """
    acc = resolve_accountant(accountant)
    with _instrument_lock:
        handle = _handles.get(id(acc))
        if handle is not None and handle.attached and handle.accountant is acc:
            handle.handler.dims = dict(dims)
            handle.handler.default_model = default_model
            return handle
        handler = TokenwardEventHandler(acc, default_model=default_model, **dims)
        get_dispatcher().add_event_handler(handler)
        handle = InstrumentHandle(handler)
        _handles[id(acc)] = handle
    logger.debug("tokenward: instrumented LlamaIndex for %r", acc)
    return handle
