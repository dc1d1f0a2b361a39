"""instrument(): real LlamaIndex code paths (MockLLM, MockEmbedding, VectorStoreIndex,
query/chat engines, FunctionAgent) recorded into a real Accountant, each call once."""

from __future__ import annotations

import asyncio
import logging
from decimal import Decimal
from typing import Any

import pytest

pytest.importorskip("llama_index.core")

from llama_index.core import Document, PromptTemplate, Settings, VectorStoreIndex
from llama_index.core.base.llms.types import (
    ChatMessage,
    ChatResponse,
    CompletionResponse,
    LLMMetadata,
)
from llama_index.core.embeddings import MockEmbedding
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.event_handlers import BaseEventHandler
from llama_index.core.instrumentation.events.llm import LLMChatStartEvent
from llama_index.core.llms import CustomLLM, MockLLM
from llama_index.core.llms.callbacks import llm_chat_callback, llm_completion_callback
from llama_index.core.llms.mock import MockFunctionCallingLLM

from tokenward.accountant import Accountant
from tokenward.budgets import Budget, Budgets
from tokenward.cost import cost
from tokenward.counting import get_counter
from tokenward.errors import BudgetExceededError
from tokenward.llama_index import dims, instrument
from tokenward.messages import Message
from tokenward.usage import Usage

MODEL = "gpt-4o-mini"
EMBED = "text-embedding-3-small"


class PricedMockLLM(MockLLM):
    """MockLLM that names a priced model (MockLLM reports model_name='unknown')."""

    calls: int = 0

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(num_output=self.max_tokens or -1, model_name=MODEL)

    def _generate_text(self, length: int) -> str:  # the "model": counts real invocations
        self.calls += 1
        return super()._generate_text(length)


class OpenAIShapedLLM(CustomLLM):
    """A CustomLLM whose completions carry an OpenAI usage payload in ``raw``."""

    usage: dict = {}  # noqa: RUF012  (a pydantic field: each instance gets a copy)

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(model_name=MODEL)

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        return CompletionResponse(
            text="Paris.", raw={"model": "gpt-4o-mini-2024-07-18", "usage": dict(self.usage)}
        )

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any):
        def gen():
            yield CompletionResponse(text="Par", delta="Par", raw={"usage": None})
            yield CompletionResponse(text="Paris.", delta="is.", raw={"usage": dict(self.usage)})

        return gen()


class AnthropicChatLLM(CustomLLM):
    """A chat-native LLM (no inner complete) returning Anthropic usage in ``raw``."""

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(model_name="claude-sonnet-4-5", is_chat_model=True)

    @llm_chat_callback()
    def chat(self, messages, **kwargs: Any) -> ChatResponse:
        return ChatResponse(
            message=ChatMessage(role="assistant", content="Bonjour"),
            raw={
                "model": "claude-sonnet-4-5",
                "usage": {
                    "input_tokens": 100,
                    "output_tokens": 20,
                    "cache_read_input_tokens": 1000,
                    "cache_creation_input_tokens": 50,
                },
            },
        )

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        raise AssertionError("not used")

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any):
        raise AssertionError("not used")


class KwargsUsageLLM(OpenAIShapedLLM):
    """Usage only in ``additional_kwargs`` (how several LlamaIndex LLM classes report it)."""

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        return CompletionResponse(
            text="ok",
            additional_kwargs={"prompt_tokens": 42, "completion_tokens": 7, "total_tokens": 49},
        )


class FailingLLM(PricedMockLLM):
    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        raise RuntimeError("provider down")


@pytest.fixture
def accountant():
    acc = Accountant()
    handle = instrument(acc)
    old_llm, old_embed = Settings._llm, Settings._embed_model
    Settings.llm = PricedMockLLM(max_tokens=8)
    Settings.embed_model = MockEmbedding(embed_dim=8, model_name=EMBED)
    try:
        yield acc
    finally:
        handle.detach()
        Settings._llm, Settings._embed_model = old_llm, old_embed


def llm_events(acc: Accountant):
    return [e for e in list(acc.ledger.events()) if e.kind != "embedding"]


def user(text: str) -> ChatMessage:
    return ChatMessage(role="user", content=text)


# ----------------------------------------------------------------------------- dedupe
def test_mockllm_chat_emits_two_events_but_is_recorded_once(accountant):
    seen: list[str] = []

    class Spy(BaseEventHandler):
        def handle(self, event, **kwargs):
            seen.append(type(event).__name__)

    spy = Spy()
    get_dispatcher().add_event_handler(spy)
    try:
        llm = PricedMockLLM(max_tokens=5)
        response = llm.chat([user("What is the capital of France?")])
    finally:
        root = get_dispatcher()
        root.event_handlers = [h for h in root.event_handlers if h is not spy]
    # the anchor: LlamaIndex emits a chat AND an inner completion for one call
    assert seen.count("LLMChatStartEvent") == 1 and seen.count("LLMCompletionStartEvent") == 1
    events = llm_events(accountant)
    assert len(events) == 1
    event = events[0]
    counter = get_counter(MODEL)
    assert event.model == MODEL and event.kind == "chat" and event.status == "ok"
    assert event.estimated is True  # MockLLM reports no usage: counted
    assert event.usage.input == counter.count_messages(
        [Message(role="user", content="What is the capital of France?")]
    )
    assert event.usage.output == counter.count_text(response.message.content) == 5
    assert event.id.startswith("PricedMockLLM.chat-")  # the span id is the run id
    assert event.cost == cost(event.usage, MODEL).total > 0


def test_stream_async_and_completion_paths_each_record_once(accountant):
    llm = PricedMockLLM(max_tokens=4)
    for _ in llm.stream_chat([user("a b c")]):
        pass
    for _ in llm.stream_complete("a b c"):
        pass
    llm.complete("a b c")

    async def run_async() -> None:
        await llm.achat([user("a b c")])
        await llm.acomplete("a b c")
        gen = await llm.astream_chat([user("a b c")])
        async for _ in gen:
            pass

    asyncio.run(run_async())
    events = llm_events(accountant)
    assert [e.kind for e in events] == [
        "chat",
        "completion",
        "completion",
        "chat",
        "completion",
        "chat",
    ]
    assert [e.id.split("-")[0] for e in events] == [
        "PricedMockLLM.stream_chat",
        "PricedMockLLM.stream_complete",
        "PricedMockLLM.complete",
        "PricedMockLLM.achat",
        "PricedMockLLM.acomplete",
        "PricedMockLLM.astream_chat",
    ]
    assert all(e.usage.output > 0 for e in events)


def test_predict_is_one_call(accountant):
    llm = PricedMockLLM(max_tokens=3)
    assert llm.predict(PromptTemplate("Say {x}"), x="hi") == "text text text"
    events = llm_events(accountant)
    assert len(events) == 1 and events[0].kind == "completion"
    assert events[0].parent_id.startswith("PricedMockLLM.predict-")


# ----------------------------------------------------------------------------- usage shapes
def test_openai_raw_usage_is_exact_and_priced(accountant):
    llm = OpenAIShapedLLM(
        usage={
            "prompt_tokens": 1200,
            "completion_tokens": 30,
            "prompt_tokens_details": {"cached_tokens": 1000},
        }
    )
    llm.chat([user("capital of France?")])  # chat -> inner complete: still one event
    (event,) = llm_events(accountant)
    assert event.usage == Usage(input=1200, output=30, cache_read=1000)
    assert event.estimated is False
    assert event.model == "gpt-4o-mini"  # the dated snapshot from raw resolves to the catalog name
    assert event.cost == cost(Usage(input=1200, output=30, cache_read=1000), MODEL).total


def test_streamed_usage_in_last_chunk(accountant):
    llm = OpenAIShapedLLM(usage={"prompt_tokens": 11, "completion_tokens": 2})
    text = "".join(r.delta for r in llm.stream_chat([user("capital?")]))
    assert text == "Paris."
    (event,) = llm_events(accountant)
    assert event.usage == Usage(input=11, output=2) and not event.estimated


def test_anthropic_raw_usage_counts_cache_as_input(accountant):
    AnthropicChatLLM().chat([user("hello")])
    (event,) = llm_events(accountant)
    assert event.model == "claude-sonnet-4-5"
    assert event.usage == Usage(input=1150, output=20, cache_read=1000, cache_write_5m=50)


class GeminiChatLLM(AnthropicChatLLM):
    """Gemini reports ``usage_metadata`` (thoughts billed as output)."""

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(model_name="gemini-2.5-flash", is_chat_model=True)

    @llm_chat_callback()
    def chat(self, messages, **kwargs: Any) -> ChatResponse:
        return ChatResponse(
            message=ChatMessage(role="assistant", content="Hallo"),
            raw={
                "usage_metadata": {
                    "prompt_token_count": 100,
                    "candidates_token_count": 20,
                    "cached_content_token_count": 40,
                    "thoughts_token_count": 5,
                    "total_token_count": 125,
                }
            },
        )


def test_gemini_raw_usage(accountant):
    GeminiChatLLM().chat([user("hello")])
    (event,) = llm_events(accountant)
    assert event.model == "gemini-2.5-flash"
    assert event.usage == Usage(input=100, output=25, cache_read=40, reasoning=5)
    assert event.cost == cost(event.usage, "gemini-2.5-flash").total


def test_usage_from_additional_kwargs(accountant):
    KwargsUsageLLM().complete("hello")
    (event,) = llm_events(accountant)
    assert event.usage == Usage(input=42, output=7) and not event.estimated


def test_failed_call_is_recorded_as_error(accountant):
    with pytest.raises(RuntimeError, match="provider down"):
        FailingLLM().chat([user("hi")])
    (event,) = llm_events(accountant)
    assert event.status == "error" and "provider down" in event.error
    assert accountant.pending(event.id) is None


# ----------------------------------------------------------------------------- dims
def test_dimensions_from_context_manager_and_instrument(accountant):
    instrument(accountant, agent="support-bot")  # idempotent: same handle, new dims
    llm = PricedMockLLM(max_tokens=2)
    with dims(user_id="u1", conversation_id="c1", tags={"team": "search"}) as tracker:
        llm.chat([user("hi")])
    with accountant.track(user_id="u2"):
        llm.complete("hi")
    llm.complete("anonymous")
    first, second, third = llm_events(accountant)
    assert (first.user_id, first.conversation_id, first.agent, first.tags) == (
        "u1",
        "c1",
        "support-bot",
        {"team": "search"},
    )
    assert (second.user_id, second.agent) == ("u2", "support-bot")
    assert third.user_id is None
    assert tracker.calls == 1 and tracker.usage == first.usage and tracker.cost == first.cost


def test_instrument_is_idempotent_and_detachable():
    acc = Accountant()
    h1 = instrument(acc)
    h2 = instrument(acc)
    try:
        assert h1 is h2
        assert sum(h is h1.handler for h in get_dispatcher().event_handlers) == 1
        PricedMockLLM(max_tokens=1).complete("x")
        assert len(list(acc.ledger.events())) == 1
    finally:
        h1.detach()
    assert not h1.attached
    PricedMockLLM(max_tokens=1).complete("x")
    assert len(list(acc.ledger.events())) == 1
    h3 = instrument(acc)  # re-attach after detach works
    try:
        assert h3 is not h1 and h3.attached
    finally:
        h3.detach()


def test_default_model_names_an_anonymous_llm():
    acc = Accountant()
    with instrument(acc, default_model=MODEL):
        MockLLM(max_tokens=2).complete("x")  # reports model_name='unknown'
    (event,) = list(acc.ledger.events())
    assert event.model == MODEL and event.usage.output == 2


# ----------------------------------------------------------------------------- enforcement
def test_dispatcher_swallows_budget_errors_raised_by_event_handlers():
    """The anchor, proved: raising from an instrumentation handler does NOT stop the call."""

    class Denier(BaseEventHandler):
        def handle(self, event, **kwargs):
            if isinstance(event, LLMChatStartEvent):
                raise BudgetExceededError(
                    "denied",
                    budget="b",
                    scope_key="global",
                    unit="usd",
                    limit=0,
                    spent=0,
                    reserved=0,
                    attempted=1,
                )

    denier = Denier()
    get_dispatcher().add_event_handler(denier)
    try:
        llm = PricedMockLLM(max_tokens=2)
        response = llm.chat([user("hi")])
    finally:
        root = get_dispatcher()
        root.event_handlers = [h for h in root.event_handlers if h is not denier]
    assert llm.calls == 1 and response.message.content == "text text"


def test_instrument_cannot_deny_but_records_the_call(caplog):
    acc = Accountant(budgets=Budgets(Budget("tiny", limit_tokens=5, window="day")))
    llm = PricedMockLLM(max_tokens=3)
    with instrument(acc), caplog.at_level(logging.WARNING, "tokenward.integrations.llama_index"):
        llm.chat([user("a question long enough to exceed five tokens")])
    assert llm.calls == 1
    assert "BudgetedLLM" in caplog.text
    (event,) = list(acc.ledger.events())
    assert event.usage.output == 3 and event.usage.input > 5 and event.estimated


# ----------------------------------------------------------------------------- real pipelines
DOCS = [
    Document(text="Paris is the capital of France. It is on the Seine."),
    Document(text="Berlin is the capital of Germany. It has many museums."),
    Document(text="Madrid is the capital of Spain. It is in the centre of the country."),
]


def test_vector_index_query_engine_and_embeddings(accountant):
    index = VectorStoreIndex.from_documents(DOCS)
    embeds = [e for e in list(accountant.ledger.events()) if e.kind == "embedding"]
    counter = get_counter(EMBED)
    assert sum(e.usage.input for e in embeds) == sum(
        counter.count_text(n.get_content(metadata_mode="embed"))
        for n in index.docstore.docs.values()
    )
    assert all(e.model == EMBED and e.cost > 0 for e in embeds)

    response = index.as_query_engine(similarity_top_k=2).query("What is the capital of France?")
    assert str(response)
    llm = llm_events(accountant)
    assert len(llm) == 1  # one synthesis call (chat + inner complete folded)
    query_embeds = [e for e in list(accountant.ledger.events()) if e.kind == "embedding"][
        len(embeds) :
    ]
    assert len(query_embeds) == 1
    assert query_embeds[0].usage.input == counter.count_text("What is the capital of France?")
    total = sum((e.cost for e in list(accountant.ledger.events())), Decimal(0))
    assert total > 0


def test_chat_engine_records_each_turn(accountant):
    index = VectorStoreIndex.from_documents(DOCS)
    engine = index.as_chat_engine(chat_mode="context")
    with dims(conversation_id="conv-7"):
        engine.chat("Tell me about Paris")
        engine.chat("And Berlin?")
    events = llm_events(accountant)
    assert len(events) == 2 and {e.conversation_id for e in events} == {"conv-7"}
    assert events[1].usage.input > events[0].usage.input  # the history grew


class ToolMockLLM(MockFunctionCallingLLM):
    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(is_function_calling_model=True, model_name=MODEL)


def test_function_agent_offline(accountant):
    from llama_index.core.agent.workflow import FunctionAgent
    from llama_index.core.tools import FunctionTool

    calls: list[str] = []

    def lookup(city: str = "Paris") -> str:
        """Look up a city."""
        calls.append(city)
        return f"{city} is a capital."

    agent = FunctionAgent(
        tools=[FunctionTool.from_defaults(lookup)], llm=ToolMockLLM(), system_prompt="Use tools."
    )

    async def run() -> str:
        return str(await agent.run("Where is Paris?"))

    with dims(agent="city-agent"):
        out = asyncio.run(run())
    assert calls == ["Paris"] and "Tool calls complete" in out
    events = llm_events(accountant)
    assert len(events) == 2  # tool-calling turn + final answer
    assert events[0].tool_names == ("lookup",) and events[0].tool_calls == 1
    assert {e.agent for e in events} == {"city-agent"}


def test_unknown_and_unnamed_models_are_recorded_with_cost_unknown(caplog):
    class Custom(MockLLM):
        @property
        def metadata(self) -> LLMMetadata:
            return LLMMetadata(model_name="acme-finetune-7")

    acc = Accountant()
    with instrument(acc), caplog.at_level(logging.WARNING):
        MockLLM(max_tokens=1).complete("x")  # model_name='unknown' and no default_model
        Custom(max_tokens=1).complete("x")  # a name the catalog does not know
    events = sorted(acc.ledger.events(), key=lambda e: e.model)
    assert [(e.model, e.cost) for e in events] == [("acme-finetune-7", None), ("unknown", None)]
    assert all(e.usage.input > 0 for e in events)
    assert "reports no model name" in caplog.text and "default_model=" in caplog.text
    assert "'acme-finetune-7' has no known price" in caplog.text


def test_concurrent_async_calls_are_each_recorded_once(accountant):
    llm = PricedMockLLM(max_tokens=3)

    async def stream(i: int) -> str:
        gen = await llm.astream_chat([user(f"stream {i}")])
        text = ""
        async for chunk in gen:
            await asyncio.sleep(0)  # interleave with the other tasks
            text = chunk.message.content
        return text

    async def go() -> list:
        return await asyncio.gather(
            *[llm.achat([user(f"chat {i}")]) for i in range(6)], *[stream(i) for i in range(4)]
        )

    results = asyncio.run(go())
    assert len(results) == 10
    events = llm_events(accountant)
    assert len(events) == 10
    assert sorted(e.id.split("-")[0] for e in events) == (
        ["PricedMockLLM.achat"] * 6 + ["PricedMockLLM.astream_chat"] * 4
    )
    assert len({e.id for e in events}) == 10
