"""Cache-aware trimming in TokenwardChatMemory: the trim point holds across turns, cuts to
low water, and survives serialization with the chat store."""

from __future__ import annotations

import pickle
from itertools import pairwise

import pytest

pytest.importorskip("llama_index.core")

from llama_index.core.base.llms.types import ChatMessage
from llama_index.core.chat_engine import SimpleChatEngine
from llama_index.core.llms.mock import MockLLMWithChatMemoryOfLastCall

from tokenward.context import CacheAwareTrim
from tokenward.counting import get_counter
from tokenward.errors import ConfigurationError
from tokenward.integrations.llama_index._common import to_messages
from tokenward.llama_index import TokenwardChatMemory, trim_chat_history

MODEL = "gpt-4o-mini"
COUNTER = get_counter(MODEL)
LIMIT, LOW = 400, 0.5
SYSTEM = ChatMessage(role="system", content="You are a terse travel assistant.")


def tokens(messages) -> int:
    return COUNTER.count_messages(to_messages(messages))


def user(i: int) -> ChatMessage:
    return ChatMessage(role="user", content=f"Question {i}: tell me about city {i}. " * (i % 3 + 1))


def reply(i: int) -> ChatMessage:
    return ChatMessage(role="assistant", content=f"City {i} is lovely. " * (i % 4 + 2))


def check(prompts: list[list[ChatMessage]], high: int, low: int) -> int:
    """Each prompt starts with the previous one unless it was cut back to ``low``."""
    cuts = 0
    for before, now in pairwise(prompts):
        assert tokens(now) <= high and now[0].role == "system"
        if [m.content for m in now[: len(before)]] != [m.content for m in before]:
            cuts += 1
            assert tokens(now) <= low
    return cuts


def run(memory: TokenwardChatMemory, turns: int, reload=None) -> list[list[ChatMessage]]:
    prompts = []
    for i in range(turns):
        memory.put(user(i))
        prompts.append(memory.get())
        memory.put(reply(i))
        if reload is not None:
            memory = reload(memory)
    return prompts


def test_get_holds_the_prefix_until_the_high_water_mark_then_cuts_to_low_water():
    memory = TokenwardChatMemory.from_defaults(
        chat_history=[SYSTEM], token_limit=LIMIT, model=MODEL, cache_aware=True, low_water=LOW
    )
    prompts = run(memory, 50)
    cuts = check(prompts, LIMIT, int(LIMIT * LOW))
    state = memory.cache_state
    assert 3 <= cuts == state.cuts and state.turns == 50
    assert state.breakpoints == (0, len(prompts[-1]) - 1)  # system prompt, last message
    # the same conversation trimmed every turn moves its oldest message nearly every turn
    plain = run(TokenwardChatMemory.from_defaults([SYSTEM], token_limit=LIMIT, model=MODEL), 50)
    assert check(plain, LIMIT, LIMIT) > 3 * cuts
    # the core function with one state per conversation gives the same windows
    own = CacheAwareTrim(low_water=LOW)
    history = memory.get_all()
    for i, got in enumerate(prompts):
        upto = history[: 2 + 2 * i]
        assert trim_chat_history(upto, LIMIT, model=MODEL, cache_aware=own) == got
    memory.reset()
    assert memory.cache_state is None and memory.cache_snapshot is None


@pytest.mark.parametrize(
    "reload",
    [
        lambda m: TokenwardChatMemory.from_dict(m.to_dict()),
        lambda m: TokenwardChatMemory.from_string(m.to_string()),
        lambda m: pickle.loads(pickle.dumps(m)),
        lambda m: TokenwardChatMemory.model_validate(m.model_dump()),
    ],
)
def test_the_cut_point_survives_serialization_between_turns(reload):
    def fresh() -> TokenwardChatMemory:
        return TokenwardChatMemory.from_defaults(
            chat_history=[SYSTEM],
            token_limit=LIMIT,
            model=MODEL,
            cache_aware="anthropic",
            low_water=LOW,
        )

    live = run(fresh(), 40)
    reloaded = run(fresh(), 40, reload=reload)  # a new memory object every turn
    assert [[m.content for m in p] for p in reloaded] == [[m.content for m in p] for p in live]
    assert check(reloaded, LIMIT, int(LIMIT * LOW)) >= 3


def test_simple_chat_engine_sends_a_stable_prefix():
    llm = MockLLMWithChatMemoryOfLastCall(is_chat_model=True, max_tokens=25)
    memory = TokenwardChatMemory.from_defaults(
        token_limit=LIMIT, model=MODEL, cache_aware="openai", low_water=LOW
    )
    engine = SimpleChatEngine.from_defaults(llm=llm, memory=memory, system_prompt="Be terse.")
    sent = []
    for i in range(40):
        engine.chat(f"Question {i}: tell me about city {i}.")
        sent.append([m for m in llm.last_chat_messages if m.role != "system"])
    cuts = 0
    for before, now in pairwise(sent):
        if [m.content for m in now[: len(before)]] != [m.content for m in before]:
            cuts += 1
    assert 2 <= cuts == memory.cache_state.cuts
    assert memory.cache_state.breakpoints == ()  # OpenAI caches automatically


def test_bad_cache_options():
    # raised in the model validator: pydantic reports them as a ValidationError (a ValueError)
    with pytest.raises(ValueError, match="unknown cache rules"):
        TokenwardChatMemory.from_defaults(token_limit=100, cache_aware="gemini")
    with pytest.raises(ValueError, match="below 1"):
        TokenwardChatMemory.from_defaults(token_limit=100, cache_aware=True, low_water=2.0)
    with pytest.raises(ValueError, match="allow_partial"):
        TokenwardChatMemory.from_defaults(token_limit=100, cache_aware=True, allow_partial=True)
    with pytest.raises(ConfigurationError):  # the function takes a state
        trim_chat_history([SYSTEM], 100, cache_aware=CacheAwareTrim(), allow_partial=True)
