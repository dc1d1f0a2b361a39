"""``BudgetedLLM``: hard budgets that stop a LlamaIndex call before the model runs."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable, Generator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from llama_index.core.base.llms.types import (
    ChatMessage,
    ChatResponse,
    ChatResponseAsyncGen,
    ChatResponseGen,
    CompletionResponse,
    CompletionResponseAsyncGen,
    CompletionResponseGen,
    LLMMetadata,
)
from llama_index.core.bridge.pydantic import Field, SerializeAsAny
from llama_index.core.llms.function_calling import FunctionCallingLLM
from llama_index.core.llms.llm import LLM
from pydantic import SkipValidation

from tokenward.accountant import Accountant
from tokenward.integrations._common import guard
from tokenward.integrations.llama_index import _spans
from tokenward.integrations.llama_index._common import (
    logger,
    max_output_tokens,
    model_from_llm,
    resolve_accountant,
)
from tokenward.integrations.llama_index._runs import call_data, find_call, finish_call, start_call

if TYPE_CHECKING:
    from llama_index.core.tools import BaseTool

__all__ = ["BudgetedLLM"]

T = TypeVar("T")
_CLOSED = "cancelled (stream closed early)"


class BudgetedLLM(FunctionCallingLLM):
    """Wraps any LlamaIndex ``LLM`` so every call is preflighted, then settled.

    ``accountant.preflight`` runs **before** the wrapped model is called: when a
    hard budget says no, ``BudgetExceededError`` is raised and the model is never
    reached. When the call ends, its usage (from ``response.raw`` /
    ``additional_kwargs``, or counted and marked estimated) is settled; on error
    the reservation is released. Works for ``chat``, ``complete``,
    ``stream_chat``, ``stream_complete``, their async variants and, for
    function-calling models, ``chat_with_tools`` (agents).

    Use it wherever LlamaIndex takes an LLM::

        Settings.llm = BudgetedLLM(OpenAI(model="gpt-4o-mini"), accountant, agent="rag")
        index.as_query_engine(llm=BudgetedLLM(llm, accountant))

    Calls made through it are recorded once even when :func:`instrument` is also
    active for the same accountant (the wrapped model's own events are folded in).
    """

    llm: SerializeAsAny[LLM] = Field(description="The wrapped LLM.")
    # Plain excluded fields, not pydantic private attributes: reading a ``PrivateAttr`` goes
    # through ``BaseModel.__getattr__`` (microseconds each), and every call reads these.
    accountant: SkipValidation[Accountant] = Field(exclude=True, repr=False)
    dims: dict[str, Any] = Field(default_factory=dict, exclude=True, repr=False)
    model_override: str | None = Field(
        default=None, exclude=True, description="The model name to record calls under."
    )

    def __init__(
        self,
        llm: LLM,
        accountant: Accountant | None = None,
        *,
        model: str | None = None,
        **dims: Any,
    ) -> None:
        super().__init__(
            llm=llm,
            callback_manager=llm.callback_manager,
            system_prompt=llm.system_prompt,
            messages_to_prompt=llm.messages_to_prompt,
            completion_to_prompt=llm.completion_to_prompt,
            pydantic_program_mode=llm.pydantic_program_mode,
            output_parser=llm.output_parser,
            query_wrapper_prompt=llm.query_wrapper_prompt,
            accountant=resolve_accountant(accountant),
            dims=dict(dims),
            model_override=model,
        )
        _spans.ensure_span_tree()

    @classmethod
    def class_name(cls) -> str:
        return "BudgetedLLM"

    @property
    def metadata(self) -> LLMMetadata:
        return self.llm.metadata

    def to_payload(self) -> dict[str, Any]:
        return self.llm.to_payload()

    # ------------------------------------------------------------------ lifecycle
    def _begin(
        self,
        kind: str,
        kwargs: dict[str, Any],
        *,
        messages: Sequence[ChatMessage] | None = None,
        prompt: str | None = None,
    ) -> str | None:
        """Preflight the call (a denial raises here); its run id, or None when not ours."""
        run_id = _spans.current_span() or _new_id()
        found = find_call(self.accountant, run_id)
        if found is not None and found[0] != run_id:
            return None  # nested inside a call this accountant already preflighted
        with guard(logger, "BudgetedLLM start"):
            start_call(
                self.accountant,
                run_id,
                self.model_override or model_from_llm(self.llm),
                owner=self,
                messages=messages,
                prompt=prompt,
                tools=kwargs.get("tools"),
                max_output=max_output_tokens(kwargs, self.llm.to_payload()),
                dims=self.dims,
                kind=kind,
                parent_id=_spans.parent_of(run_id),
                enforce=True,
            )
        return run_id if call_data(self.accountant, run_id) is not None else None

    def _finish(self, run_id: str | None, **how: Any) -> None:
        if run_id is not None:
            with guard(logger, "BudgetedLLM end"):
                finish_call(self.accountant, run_id, **how)

    def _wrap_gen(
        self, run_id: str | None, gen: Generator[Any, None, None]
    ) -> Generator[Any, None, None]:
        data = call_data(self.accountant, run_id) if run_id is not None else None
        if data is None:
            yield from gen
            return
        try:
            for item in gen:
                data.last_response = item
                yield item
        except GeneratorExit:  # consumer stopped early: bill what was streamed
            self._finish(run_id, status="cancelled", error=_CLOSED, response=data.last_response)
            raise
        except BaseException as exc:
            self._finish(run_id, error=exc)
            raise
        self._finish(run_id)

    async def _wrap_agen(
        self, run_id: str | None, agen: AsyncGenerator[Any, None]
    ) -> AsyncGenerator[Any, None]:
        data = call_data(self.accountant, run_id) if run_id is not None else None
        if data is None:
            async for item in agen:
                yield item
            return
        try:
            async for item in agen:
                data.last_response = item
                yield item
        except GeneratorExit:
            self._finish(run_id, status="cancelled", error=_CLOSED, response=data.last_response)
            raise
        except BaseException as exc:
            self._finish(run_id, error=exc)
            raise
        self._finish(run_id)

    def _guarded(self, run_id: str | None, run: Callable[[], T]) -> T:
        """Run the wrapped model; on failure release the call's reservation and re-raise."""
        try:
            return run()
        except BaseException as exc:
            self._finish(run_id, error=exc)
            raise

    async def _aguarded(self, run_id: str | None, run: Callable[[], Awaitable[T]]) -> T:
        try:
            return await run()
        except BaseException as exc:
            self._finish(run_id, error=exc)
            raise

    # ------------------------------------------------------------------ sync
    def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        run_id = self._begin("chat", kwargs, messages=messages)
        response = self._guarded(run_id, lambda: self.llm.chat(messages, **kwargs))
        self._finish(run_id, response=response)
        return response

    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        run_id = self._begin("completion", kwargs, prompt=prompt)
        response = self._guarded(
            run_id, lambda: self.llm.complete(prompt, formatted=formatted, **kwargs)
        )
        self._finish(run_id, response=response)
        return response

    def stream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseGen:
        run_id = self._begin("chat", kwargs, messages=messages)
        return self._wrap_gen(
            run_id, self._guarded(run_id, lambda: self.llm.stream_chat(messages, **kwargs))
        )

    def stream_complete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponseGen:
        run_id = self._begin("completion", kwargs, prompt=prompt)
        return self._wrap_gen(
            run_id,
            self._guarded(
                run_id, lambda: self.llm.stream_complete(prompt, formatted=formatted, **kwargs)
            ),
        )

    # ------------------------------------------------------------------ async
    async def achat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        run_id = self._begin("chat", kwargs, messages=messages)
        response = await self._aguarded(run_id, lambda: self.llm.achat(messages, **kwargs))
        self._finish(run_id, response=response)
        return response

    async def acomplete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponse:
        run_id = self._begin("completion", kwargs, prompt=prompt)
        response = await self._aguarded(
            run_id, lambda: self.llm.acomplete(prompt, formatted=formatted, **kwargs)
        )
        self._finish(run_id, response=response)
        return response

    async def astream_chat(
        self, messages: Sequence[ChatMessage], **kwargs: Any
    ) -> ChatResponseAsyncGen:
        run_id = self._begin("chat", kwargs, messages=messages)
        agen = await self._aguarded(run_id, lambda: self.llm.astream_chat(messages, **kwargs))
        return self._wrap_agen(run_id, agen)

    async def astream_complete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponseAsyncGen:
        run_id = self._begin("completion", kwargs, prompt=prompt)
        agen = await self._aguarded(
            run_id, lambda: self.llm.astream_complete(prompt, formatted=formatted, **kwargs)
        )
        return self._wrap_agen(run_id, agen)

    # ------------------------------------------------------------------ tools (agents)
    def _prepare_chat_with_tools(
        self,
        tools: Sequence[BaseTool],
        user_msg: str | ChatMessage | None = None,
        chat_history: list[ChatMessage] | None = None,
        verbose: bool = False,
        allow_parallel_tool_calls: bool = False,
        tool_required: bool = False,
        **kwargs: Any,
    ) -> dict[str, Any]:
        return self._function_llm()._prepare_chat_with_tools_compat(
            tools,
            user_msg=user_msg,
            chat_history=chat_history,
            verbose=verbose,
            allow_parallel_tool_calls=allow_parallel_tool_calls,
            tool_required=tool_required,
            **kwargs,
        )

    def _validate_chat_with_tools_response(
        self,
        response: ChatResponse,
        tools: Sequence[BaseTool],
        allow_parallel_tool_calls: bool = False,
        **kwargs: Any,
    ) -> ChatResponse:
        return self._function_llm()._validate_chat_with_tools_response(
            response, tools, allow_parallel_tool_calls=allow_parallel_tool_calls, **kwargs
        )

    def get_tool_calls_from_response(
        self, response: ChatResponse, error_on_no_tool_call: bool = True, **kwargs: Any
    ) -> Any:
        return self._function_llm().get_tool_calls_from_response(
            response, error_on_no_tool_call=error_on_no_tool_call, **kwargs
        )

    def _function_llm(self) -> FunctionCallingLLM:
        if not isinstance(self.llm, FunctionCallingLLM):
            raise NotImplementedError(
                f"{type(self.llm).__name__} is not a function-calling LLM; tool calling is "
                f"unavailable through BudgetedLLM too"
            )
        return self.llm


def _new_id() -> str:
    import uuid

    return f"BudgetedLLM-{uuid.uuid4()}"
