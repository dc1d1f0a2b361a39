"""BudgetedLLM: the budget check runs before the wrapped model; a denied call never reaches it."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

pytest.importorskip("llama_index.core")

from llama_index.core import Document, Settings, VectorStoreIndex
from llama_index.core.base.llms.types import ChatMessage, CompletionResponse, LLMMetadata
from llama_index.core.embeddings import MockEmbedding
from llama_index.core.llms import MockLLM
from llama_index.core.llms.callbacks import llm_completion_callback
from llama_index.core.llms.mock import MockFunctionCallingLLM

from tokenward.accountant import Accountant
from tokenward.budgets import Budget, Budgets
from tokenward.counting import get_counter
from tokenward.errors import BudgetExceededError
from tokenward.llama_index import BudgetedLLM, dims, instrument
from tokenward.messages import Message
from tokenward.usage import Usage

MODEL = "gpt-4o-mini"
LONG = "word " * 300


class CountingMockLLM(MockLLM):
    """MockLLM naming a priced model; ``calls`` counts real invocations of the model."""

    calls: int = 0

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(num_output=self.max_tokens or -1, model_name=MODEL, context_window=16000)

    def _generate_text(self, length: int) -> str:
        self.calls += 1
        return super()._generate_text(length)


class RawUsageLLM(CountingMockLLM):
    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        self.calls += 1
        return CompletionResponse(
            text="ok", raw={"usage": {"prompt_tokens": 20, "completion_tokens": 2}}
        )


class BrokenLLM(CountingMockLLM):
    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        raise ConnectionError("provider down")


def user(text: str) -> ChatMessage:
    return ChatMessage(role="user", content=text)


def budgeted(limit_tokens: int = 200, max_tokens: int = 5, **kw: Any):
    acc = Accountant(budgets=Budgets(Budget("cap", limit_tokens=limit_tokens, window="day")))
    inner = CountingMockLLM(max_tokens=max_tokens)
    return acc, inner, BudgetedLLM(inner, acc, **kw)


def events(acc: Accountant) -> list:
    return list(acc.ledger.events())


def test_allowed_call_is_preflighted_then_settled():
    acc, inner, llm = budgeted()
    response = llm.chat([user("hello there")])
    assert response.message.content == "text text text text text" and inner.calls == 1
    (event,) = events(acc)
    counter = get_counter(MODEL)
    assert event.usage == Usage(
        input=counter.count_messages([Message(role="user", content="hello there")]),
        output=5,
        estimated=True,
    )
    status = acc.budgets.status("cap")
    assert status.spent == event.usage.total and status.reserved == 0


@pytest.mark.parametrize("method", ["chat", "complete", "stream_chat", "stream_complete"])
def test_denied_sync_call_never_reaches_the_model(method):
    acc, inner, llm = budgeted(limit_tokens=100)
    with pytest.raises(BudgetExceededError) as info:
        if method in ("chat", "stream_chat"):
            getattr(llm, method)([user(LONG)])
        else:
            getattr(llm, method)(LONG)
    assert inner.calls == 0
    assert info.value.budget == "cap" and info.value.limit == 100
    assert events(acc) == []
    assert acc.budgets.status("cap").reserved == 0


@pytest.mark.parametrize("method", ["achat", "acomplete", "astream_chat", "astream_complete"])
def test_denied_async_call_never_reaches_the_model(method):
    acc, inner, llm = budgeted(limit_tokens=100)

    async def go() -> None:
        arg = [user(LONG)] if "chat" in method else LONG
        await getattr(llm, method)(arg)

    with pytest.raises(BudgetExceededError):
        asyncio.run(go())
    assert inner.calls == 0 and events(acc) == []


def test_every_method_records_one_event_even_with_instrument_active():
    acc, _inner, llm = budgeted(limit_tokens=100_000)
    with instrument(acc):
        llm.chat([user("a")])
        llm.complete("a")
        list(llm.stream_chat([user("a")]))
        list(llm.stream_complete("a"))

        async def go() -> None:
            await llm.achat([user("a")])
            await llm.acomplete("a")
            async for _ in await llm.astream_chat([user("a")]):
                pass
            async for _ in await llm.astream_complete("a"):
                pass

        asyncio.run(go())
    recorded = events(acc)
    assert len(recorded) == 8
    assert all(e.id.startswith("BudgetedLLM.") for e in recorded)
    assert [e.kind for e in recorded] == ["chat", "completion"] * 4


def test_reported_usage_wins_and_is_exact():
    acc = Accountant()
    llm = BudgetedLLM(RawUsageLLM(), acc)
    llm.chat([user("hi")])
    (event,) = events(acc)
    assert event.usage == Usage(input=20, output=2) and not event.estimated


def test_error_releases_the_reservation_and_records_the_failure():
    acc = Accountant(budgets=Budgets(Budget("cap", limit_tokens=10_000, window="day")))
    llm = BudgetedLLM(BrokenLLM(max_tokens=5), acc)
    with pytest.raises(ConnectionError):
        llm.chat([user("hi")])
    (event,) = events(acc)
    assert event.status == "error" and "provider down" in event.error
    status = acc.budgets.status("cap")
    assert status.reserved == 0 and status.spent == 0


def test_stream_closed_early_bills_what_was_streamed():
    acc, _inner, llm = budgeted(limit_tokens=10_000, max_tokens=6)
    stream = llm.stream_complete("go")
    next(stream), next(stream), next(stream)
    stream.close()
    (event,) = events(acc)
    assert event.status == "cancelled" and event.usage.output == 2  # MockLLM's 3rd chunk text
    assert acc.budgets.status("cap").reserved == 0


def test_tool_schemas_are_counted_in_the_estimate():
    from llama_index.core.tools import FunctionTool

    def lookup(city: str) -> str:
        """Look up a city."""
        return city

    tool = FunctionTool.from_defaults(lookup)
    acc = Accountant()
    BudgetedLLM(CountingMockLLM(max_tokens=1), acc).chat([user("hi")], tools=[tool])
    (event,) = events(acc)
    counter = get_counter(MODEL)
    with_tools = counter.count_messages(
        [Message(role="user", content="hi")], tools=[tool.metadata.to_openai_tool()]
    )
    assert (
        event.usage.input
        == with_tools
        > counter.count_messages([Message(role="user", content="hi")])
    )


def test_tool_calls_in_additional_kwargs_count_toward_the_preflight():
    # the prompt's byte bound reads a ChatMessage's own fields; a tool call kept in
    # additional_kwargs is invisible there, so such a prompt must be counted from core
    # messages: the big arguments below cross the cap and the call is denied before it runs
    call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "search", "arguments": '{"q": "' + LONG + '"}'},
    }
    history = [
        user("hi"),
        ChatMessage(role="assistant", content="", additional_kwargs={"tool_calls": [call]}),
        ChatMessage(role="tool", content="ok", additional_kwargs={"tool_call_id": "call_1"}),
    ]
    acc, inner, llm = budgeted(limit_tokens=200)
    with pytest.raises(BudgetExceededError):
        llm.chat(history)
    assert inner.calls == 0 and events(acc) == []


def test_the_prompt_is_the_messages_the_call_started_with():
    from llama_index.core.base.llms.types import ChatResponse
    from llama_index.core.llms.callbacks import llm_chat_callback

    class AppendingLLM(CountingMockLLM):  # the app's list grows while the call runs
        @llm_chat_callback()
        def chat(self, messages: Any, **kwargs: Any) -> ChatResponse:
            messages.append(user(LONG))
            return ChatResponse(message=ChatMessage(role="assistant", content="ok"))

    acc = Accountant()
    BudgetedLLM(AppendingLLM(), acc).chat([user("hello there")])
    (event,) = events(acc)  # no usage reported: the prompt is counted at the end
    assert event.usage.estimated
    assert event.usage.input == get_counter(MODEL).count_messages([Message("user", "hello there")])


def test_dims_and_model_override():
    acc = Accountant()
    llm = BudgetedLLM(MockLLM(max_tokens=1), acc, model="gpt-4o", agent="writer")
    with dims(user_id="u9"):
        llm.complete("x")
    (event,) = events(acc)
    assert (event.model, event.agent, event.user_id) == ("gpt-4o", "writer", "u9")


def test_is_a_drop_in_llm_for_query_engines():
    acc, inner, llm = budgeted(limit_tokens=100_000)
    old_llm, old_embed = Settings._llm, Settings._embed_model
    Settings.embed_model = MockEmbedding(embed_dim=8)
    try:
        Settings.llm = llm
        index = VectorStoreIndex.from_documents([Document(text="Paris is the capital of France.")])
        assert str(index.as_query_engine().query("capital of France?"))
        assert str(index.as_query_engine(llm=llm).query("capital of France?"))
        assert inner.calls == 2 and len(events(acc)) == 2
        assert llm.metadata.context_window == 16000  # metadata passes through
        # the same engine, budget now exhausted: denied before the model
        tiny = BudgetedLLM(
            inner, Accountant(budgets=Budgets(Budget("t", limit_tokens=10, window="day")))
        )
        with pytest.raises(BudgetExceededError):
            index.as_query_engine(llm=tiny).query("capital of France?")
        assert inner.calls == 2
    finally:
        Settings._llm, Settings._embed_model = old_llm, old_embed


class ToolMockLLM(MockFunctionCallingLLM):
    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(is_function_calling_model=True, model_name=MODEL)


def test_function_agent_through_budgeted_llm():
    from llama_index.core.agent.workflow import FunctionAgent
    from llama_index.core.tools import FunctionTool

    def lookup(city: str = "Paris") -> str:
        """Look up a city."""
        return f"{city} is a capital."

    acc = Accountant(budgets=Budgets(Budget("cap", limit_tokens=100_000, window="day")))
    llm = BudgetedLLM(ToolMockLLM(), acc)
    assert llm.metadata.is_function_calling_model
    agent = FunctionAgent(tools=[FunctionTool.from_defaults(lookup)], llm=llm)

    async def run(agent: FunctionAgent) -> Any:
        return await agent.run("Where is Paris?")

    out = asyncio.run(run(agent))
    assert "Tool calls complete" in str(out)
    recorded = events(acc)
    assert len(recorded) == 2 and recorded[0].tool_names == ("lookup",)

    denied = BudgetedLLM(
        ToolMockLLM(), Accountant(budgets=Budgets(Budget("t", limit_tokens=10, window="day")))
    )
    agent = FunctionAgent(tools=[FunctionTool.from_defaults(lookup)], llm=denied)
    with pytest.raises(BudgetExceededError):
        asyncio.run(run(agent))
