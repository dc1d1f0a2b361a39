"""TokenwardCallbackHandler: a one-line, priced replacement for TokenCountingHandler."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

pytest.importorskip("llama_index.core")

from llama_index.core import Document, Settings, VectorStoreIndex
from llama_index.core.base.llms.types import ChatMessage, CompletionResponse, LLMMetadata
from llama_index.core.callbacks import CallbackManager, TokenCountingHandler
from llama_index.core.callbacks.schema import CBEventType, EventPayload
from llama_index.core.embeddings import MockEmbedding
from llama_index.core.llms import CustomLLM, MockLLM
from llama_index.core.llms.callbacks import llm_completion_callback

from tokenward.accountant import Accountant
from tokenward.budgets import Budget, Budgets
from tokenward.cost import cost
from tokenward.counting import get_counter
from tokenward.errors import BudgetExceededError
from tokenward.llama_index import TokenwardCallbackHandler, dims, instrument
from tokenward.usage import Usage

MODEL = "gpt-4o-mini"
EMBED = "text-embedding-3-small"


class CountingMockLLM(MockLLM):
    calls: int = 0

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(num_output=self.max_tokens or -1, model_name=MODEL)

    def _generate_text(self, length: int) -> str:
        self.calls += 1
        return super()._generate_text(length)


class ReportingLLM(CustomLLM):
    """Reports OpenAI usage in ``raw``; chat() runs through CustomLLM's inner complete()."""

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(model_name=MODEL)

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        return CompletionResponse(
            text="Paris.", raw={"usage": {"prompt_tokens": 120, "completion_tokens": 3}}
        )

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any):
        raise NotImplementedError


def user(text: str) -> ChatMessage:
    return ChatMessage(role="user", content=text)


def test_counters_are_a_deduplicated_superset_of_token_counting_handler():
    acc = Accountant()
    ours = TokenwardCallbackHandler(acc)
    theirs = TokenCountingHandler()
    llm = ReportingLLM(callback_manager=CallbackManager([ours, theirs]))
    llm.chat([user("What is the capital of France?")])
    llm.complete("What is the capital of France?")
    # TokenCountingHandler counts chat() twice (chat + inner complete): 3 entries for 2 calls
    assert len(theirs.llm_token_counts) == 3
    assert theirs.prompt_llm_token_count == 360
    # ours: one entry per call, the provider's numbers, with cost
    assert len(ours.llm_token_counts) == 2
    assert ours.prompt_llm_token_count == 240
    assert ours.completion_llm_token_count == 6
    assert ours.total_llm_token_count == 246
    assert ours.total_cost == 2 * cost(Usage(input=120, output=3), MODEL).total
    assert [e.usage for e in acc.ledger.events()] == [Usage(input=120, output=3)] * 2
    ours.reset_counts()
    assert ours.total_llm_token_count == 0 and ours.llm_token_counts == []
    assert ours.total_cost == Decimal(0)
    assert len(list(acc.ledger.events())) == 2  # the ledger keeps everything


def test_embedding_counts_match_token_counting_handler():
    acc = Accountant()
    ours = TokenwardCallbackHandler(acc)
    theirs = TokenCountingHandler()  # cl100k by default, like text-embedding-3-small
    old = Settings._llm, Settings._embed_model, Settings._callback_manager
    try:
        Settings.llm = CountingMockLLM(max_tokens=4)
        Settings.embed_model = MockEmbedding(embed_dim=8, model_name=EMBED)
        Settings.callback_manager = CallbackManager([ours, theirs])
        index = VectorStoreIndex.from_documents(
            [
                Document(text="Paris is the capital of France."),
                Document(text="Berlin is the capital of Germany, with many museums."),
            ]
        )
        index.as_query_engine().query("capital of France?")
    finally:
        Settings._llm, Settings._embed_model, Settings._callback_manager = old
    assert ours.total_embedding_token_count == theirs.total_embedding_token_count > 0
    embeds = [e for e in acc.ledger.events() if e.kind == "embedding"]
    assert sum(e.usage.input for e in embeds) == ours.total_embedding_token_count
    assert all(e.model == EMBED and not e.estimated for e in embeds)
    assert len(ours.llm_token_counts) == len(theirs.llm_token_counts) == 1  # predict -> complete
    llm_event = next(e for e in acc.ledger.events() if e.kind != "embedding")
    assert ours.prompt_llm_token_count == llm_event.usage.input
    assert llm_event.usage.output == get_counter(MODEL).count_text("text text text text")


def test_hard_budget_stops_the_call_before_the_model():
    acc = Accountant(budgets=Budgets(Budget("cap", limit_tokens=50, window="day")))
    handler = TokenwardCallbackHandler(acc)
    llm = CountingMockLLM(max_tokens=5, callback_manager=CallbackManager([handler]))
    llm.chat([user("short")])
    assert llm.calls == 1
    with pytest.raises(BudgetExceededError):
        llm.chat([user("word " * 200)])
    assert llm.calls == 1  # never reached
    assert len(handler.llm_token_counts) == 1 and len(list(acc.ledger.events())) == 1
    assert acc.budgets.status("cap").reserved == 0


def test_instrument_and_callback_on_one_accountant_record_once():
    acc = Accountant()
    handler = TokenwardCallbackHandler(acc)
    llm = CountingMockLLM(max_tokens=2, callback_manager=CallbackManager([handler]))
    with instrument(acc):
        llm.chat([user("hi")])
        llm.complete("hi")
    assert len(list(acc.ledger.events())) == 2
    assert handler.llm_token_counts == []  # documented: use one of them


def test_dimensions_and_default_model():
    acc = Accountant()
    handler = TokenwardCallbackHandler(acc, default_model="gpt-4o", dims={"agent": "legacy-app"})
    llm = MockLLM(max_tokens=2, callback_manager=CallbackManager([handler]))
    with dims(user_id="u5", tags={"plan": "pro"}):
        llm.chat([user("hi")])
    (event,) = acc.ledger.events()
    assert (event.model, event.user_id, event.agent, event.tags) == (
        "gpt-4o",
        "u5",
        "legacy-app",
        {"plan": "pro"},
    )


def test_error_is_recorded_and_released():
    class Broken(CountingMockLLM):
        @llm_completion_callback()
        def complete(
            self, prompt: str, formatted: bool = False, **kwargs: Any
        ) -> CompletionResponse:
            raise TimeoutError("slow provider")

    acc = Accountant(budgets=Budgets(Budget("cap", limit_tokens=10_000, window="day")))
    handler = TokenwardCallbackHandler(acc)
    with pytest.raises(TimeoutError):
        Broken(callback_manager=CallbackManager([handler])).complete("hi")
    (event,) = acc.ledger.events()
    assert event.status == "error" and "slow provider" in event.error
    assert acc.budgets.status("cap").reserved == 0


def test_async_stream_through_callback_manager_is_one_call():
    import asyncio

    acc = Accountant()
    handler = TokenwardCallbackHandler(acc)
    llm = CountingMockLLM(max_tokens=3, callback_manager=CallbackManager([handler]))

    async def go() -> None:
        async for _ in await llm.astream_chat([user("hi")]):
            pass
        await llm.achat([user("hi")])

    asyncio.run(go())
    assert [e.id.split("-")[0] for e in acc.ledger.events()] == [
        "CountingMockLLM.astream_chat",
        "CountingMockLLM.achat",
    ]
    assert len(handler.llm_token_counts) == 2


# --------------------------------------------------------------------------- drop-in arguments
def words_tokenizer(text: str) -> list[str]:
    return text.split()


def test_tokenizer_counts_like_token_counting_handler_when_no_usage_is_reported():
    acc = Accountant()
    ours = TokenwardCallbackHandler(acc, tokenizer=words_tokenizer)
    theirs = TokenCountingHandler(tokenizer=words_tokenizer)
    llm = CountingMockLLM(max_tokens=6, callback_manager=CallbackManager([ours, theirs]))
    llm.complete("What is the capital of France?")
    (their_event,) = theirs.llm_token_counts
    (our_event,) = ours.llm_token_counts
    assert (our_event.prompt_token_count, our_event.completion_token_count) == (
        their_event.prompt_token_count,
        their_event.completion_token_count,
    )
    (event,) = acc.ledger.events()
    assert event.usage.input == 6 and event.estimated  # six words; a user tokenizer's count
    # a provider's reported usage still wins over the tokenizer
    reporting = TokenwardCallbackHandler(Accountant(), tokenizer=words_tokenizer)
    ReportingLLM(callback_manager=CallbackManager([reporting])).complete("hi")
    assert reporting.prompt_llm_token_count == 120


def test_token_budget_raises_a_value_error_and_stops_the_next_call_before_it_runs():
    from tokenward import TokenBudgetExceededError

    handler = TokenwardCallbackHandler(Accountant(), tokenizer=words_tokenizer, token_budget=12)
    llm = CountingMockLLM(max_tokens=4, callback_manager=CallbackManager([handler]))
    llm.complete("one two three")  # 3 + 4 = 7 tokens
    with pytest.raises(ValueError) as raised:  # 14 > 12, raised when the crossing call ends
        llm.complete("one two three")
    assert isinstance(raised.value, TokenBudgetExceededError)
    assert isinstance(raised.value, BudgetExceededError)
    assert "Limit: 12" in str(raised.value) and raised.value.code == "token-budget-exceeded"
    assert llm.calls == 2
    with pytest.raises(TokenBudgetExceededError):
        llm.complete("one two three")
    assert llm.calls == 2  # the model was not called again
    handler.reset_counts()
    llm.complete("one")
    assert llm.calls == 3


def test_verbose_prints_or_logs_each_calls_usage(capsys, caplog):
    import logging

    handler = TokenwardCallbackHandler(Accountant(), tokenizer=words_tokenizer, verbose=True)
    CountingMockLLM(max_tokens=2, callback_manager=CallbackManager([handler])).complete("a b c")
    assert "LLM Prompt Token Usage: 3\nLLM Completion Token Usage: 2" in capsys.readouterr().out
    log = logging.getLogger("tests.tokenward.verbose")
    logged = TokenwardCallbackHandler(Accountant(), verbose=True, logger=log, default_model=MODEL)
    with caplog.at_level(logging.DEBUG, logger=log.name):
        logged.on_event_end(
            CBEventType.EMBEDDING, payload={EventPayload.CHUNKS: ["one two"]}, event_id="e"
        )
    assert "Embedding Token Usage: 2" in caplog.text


def test_unknown_keyword_arguments_are_rejected_and_dimensions_go_in_dims():
    with pytest.raises(TypeError, match=r"user_id.*dims=\{"):
        TokenwardCallbackHandler(Accountant(), user_id="u1")  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="tokenizer="):
        TokenwardCallbackHandler(words_tokenizer)  # type: ignore[arg-type]
    acc = Accountant()
    handler = TokenwardCallbackHandler(acc, default_model=MODEL, dims={"user_id": "u1"})
    MockLLM(max_tokens=2, callback_manager=CallbackManager([handler])).complete("hi")
    assert [e.user_id for e in acc.ledger.events()] == ["u1"]


def test_event_ends_to_ignore_is_honoured_even_when_called_directly():
    handler = TokenwardCallbackHandler(
        Accountant(), default_model=MODEL, event_ends_to_ignore=[CBEventType.EMBEDDING]
    )
    handler.on_event_end(CBEventType.EMBEDDING, payload={EventPayload.CHUNKS: ["x"]}, event_id="e")
    assert handler.embedding_token_counts == [] and handler.events == []


def test_an_end_without_a_start_is_recorded():
    acc = Accountant()
    handler = TokenwardCallbackHandler(acc, default_model=MODEL)
    handler.on_event_end(
        CBEventType.LLM,
        payload={
            EventPayload.PROMPT: "What is the capital of France?",
            EventPayload.COMPLETION: CompletionResponse(text="Paris."),
        },
        event_id="never-started",
    )
    (event,) = acc.ledger.events()
    counter = get_counter(MODEL)
    assert event.model == MODEL and event.kind == "completion" and event.estimated
    assert event.usage.input == counter.count_text("What is the capital of France?")
    assert event.usage.output == counter.count_text("Paris.")
    assert handler.total_llm_token_count == event.usage.total


def test_a_call_without_a_model_name_is_recorded_under_its_class_with_cost_unknown():
    acc = Accountant()
    handler = TokenwardCallbackHandler(acc)
    llm = MockLLM(max_tokens=3, callback_manager=CallbackManager([handler]))
    llm.chat([user("hi")])
    handler.on_event_end(
        CBEventType.LLM,
        payload={EventPayload.PROMPT: "two", EventPayload.RESPONSE: "three"},
        event_id="no-start",
    )
    first, second = acc.ledger.events()
    assert (first.model, first.cost) == ("MockLLM", None)
    assert (second.model, second.cost) == ("unknown", None)
    assert handler.unpriced_calls == 2 and handler.total_cost == Decimal(0)
    assert len(handler.llm_token_counts) == 2


def test_a_completion_prompt_is_counted_as_text_without_chat_overhead():
    prompt = "What is the capital of France?"
    counter = get_counter(MODEL)
    acc = Accountant()
    handler = TokenwardCallbackHandler(acc)
    CountingMockLLM(max_tokens=2, callback_manager=CallbackManager([handler])).complete(prompt)
    with instrument(acc2 := Accountant()):
        CountingMockLLM(max_tokens=2).complete(prompt)
    for accountant in (acc, acc2):
        (event,) = accountant.ledger.events()
        assert event.kind == "completion"
        assert event.usage.input == counter.count_text(prompt) == 7
        assert event.usage.input < counter.count_messages([{"role": "user", "content": prompt}])
