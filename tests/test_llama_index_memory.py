"""TokenwardChatMemory / trim_chat_history: core trim_history behind LlamaIndex's memory API."""

from __future__ import annotations

import asyncio
import json

import pytest

pytest.importorskip("llama_index.core")

from llama_index.core.base.llms.types import ChatMessage, LLMMetadata, ToolCallBlock
from llama_index.core.chat_engine import SimpleChatEngine
from llama_index.core.llms.mock import MockFunctionCallingLLM, MockLLMWithChatMemoryOfLastCall
from llama_index.core.memory import ChatMemoryBuffer

from tokenward.counting import get_counter
from tokenward.integrations.llama_index._common import to_messages
from tokenward.llama_index import TokenwardChatMemory, trim_chat_history

MODEL = "gpt-4o-mini"
COUNTER = get_counter(MODEL)


def conversation(turns: int) -> list[ChatMessage]:
    history = [ChatMessage(role="system", content="You are a terse travel assistant.")]
    for i in range(turns):
        history.append(ChatMessage(role="user", content=f"Question {i}: tell me about city {i}."))
        history.append(ChatMessage(role="assistant", content=f"City {i} is lovely. " * 6))
    return history


def tokens(messages: list[ChatMessage]) -> int:
    return COUNTER.count_messages(to_messages(messages))


def tool_turn(i: int, blocks: bool) -> list[ChatMessage]:
    call_id = f"call_{i}"
    if blocks:  # how FunctionAgent stores tool calls
        call = ChatMessage(
            role="assistant",
            blocks=[
                ToolCallBlock(
                    tool_call_id=call_id, tool_name="weather", tool_kwargs={"city": f"c{i}"}
                )
            ],
        )
    else:  # OpenAI-style additional_kwargs
        call = ChatMessage(
            role="assistant",
            content="",
            additional_kwargs={
                "tool_calls": [
                    {
                        "id": call_id,
                        "type": "function",
                        "function": {"name": "weather", "arguments": json.dumps({"city": f"c{i}"})},
                    }
                ]
            },
        )
    return [
        ChatMessage(role="user", content=f"Weather in c{i}?"),
        call,
        ChatMessage(
            role="tool",
            content=f"Sunny in c{i}. " * 10,
            additional_kwargs={"tool_call_id": call_id, "name": "weather"},
        ),
        ChatMessage(role="assistant", content=f"It is sunny in c{i}."),
    ]


def test_keeps_system_and_newest_turns_within_the_limit():
    history = conversation(40)
    memory = TokenwardChatMemory.from_defaults(chat_history=history, token_limit=300, model=MODEL)
    kept = memory.get()
    assert kept[0] is history[0]  # the system message survives
    assert kept[1].role == "user" and kept[-1] is history[-1]
    assert kept[1:] == history[len(history) - len(kept) + 1 :]  # a contiguous newest window
    assert tokens(kept) <= 300
    # one more older turn would not fit
    assert tokens([history[0]] + history[len(history) - len(kept) - 1 :]) > 300
    # ChatMemoryBuffer, same limit: drops the system message
    buffer = ChatMemoryBuffer.from_defaults(chat_history=history, token_limit=300)
    assert all(m.role != "system" for m in buffer.get())
    assert memory.get_all() == history  # trimming happens at read time; nothing is lost


@pytest.mark.parametrize("blocks", [False, True], ids=["additional_kwargs", "ToolCallBlock"])
def test_tool_call_groups_stay_together(blocks):
    history = [ChatMessage(role="system", content="Use tools.")]
    for i in range(6):
        history += tool_turn(i, blocks)
    for limit in range(60, 400, 7):
        kept = trim_chat_history(history, limit, model=MODEL)
        assert tokens(kept) <= limit
        ids_called = set()
        for m in kept:
            for part in to_messages([m])[0].tool_calls:
                ids_called.add(part.id)
            if m.role == "tool":
                assert m.additional_kwargs["tool_call_id"] in ids_called, limit
        # a tool call is never kept without its result either
        results = {m.additional_kwargs.get("tool_call_id") for m in kept if m.role == "tool"}
        assert ids_called <= results


def test_pinned_messages_are_kept():
    history = conversation(30)
    history[3] = ChatMessage(
        role="user", content="My name is Ada; remember it.", additional_kwargs={"pinned": True}
    )
    kept = trim_chat_history(
        history, 250, model=MODEL, pinned=lambda m: m.additional_kwargs.get("pinned", False)
    )
    assert history[3] in kept and kept[0] is history[0] and tokens(kept) <= 250
    memory = TokenwardChatMemory.from_defaults(
        chat_history=history, token_limit=250, model=MODEL, pinned=[3]
    )
    assert history[3] in memory.get()


def test_from_defaults_with_llm_and_tokenizer_fn():
    class Priced(MockLLMWithChatMemoryOfLastCall):
        @property
        def metadata(self) -> LLMMetadata:
            return LLMMetadata(context_window=4000, model_name=MODEL)

    memory = TokenwardChatMemory.from_defaults(llm=Priced())
    assert memory.token_limit == 3000 and memory.model == MODEL
    words = TokenwardChatMemory.from_defaults(
        chat_history=conversation(10), token_limit=60, tokenizer_fn=str.split
    )
    kept = words.get()
    assert sum(len(m.content.split()) for m in kept) <= 60 and kept[0].role == "system"


def test_drop_in_for_simple_chat_engine():
    llm = MockLLMWithChatMemoryOfLastCall()  # echoes, and records what it was sent
    memory = TokenwardChatMemory.from_defaults(
        chat_history=conversation(50), token_limit=400, model=MODEL
    )
    engine = SimpleChatEngine.from_defaults(llm=llm, memory=memory)
    engine.chat("And the next city?")
    sent = llm.last_chat_messages
    assert sent[0].role == "system" and sent[-1].content == "And the next city?"
    assert tokens(list(sent)) <= 400
    assert len(memory.get_all()) == 1 + 100 + 2  # the turn was stored


def test_drop_in_for_index_chat_engine():
    from llama_index.core import Document, Settings, VectorStoreIndex
    from llama_index.core.embeddings import MockEmbedding

    llm = MockLLMWithChatMemoryOfLastCall(is_chat_model=True)  # history goes in as messages
    old = Settings._llm, Settings._embed_model
    Settings.llm, Settings.embed_model = llm, MockEmbedding(embed_dim=8)
    try:
        index = VectorStoreIndex.from_documents([Document(text="Paris is in France.")])
        memory = TokenwardChatMemory.from_defaults(
            chat_history=conversation(50)[1:], token_limit=500, model=MODEL
        )
        engine = index.as_chat_engine(chat_mode="context", memory=memory)
        assert str(engine.chat("Where is Paris?"))
    finally:
        Settings._llm, Settings._embed_model = old
    sent = list(llm.last_chat_messages)
    history_part = [m for m in sent if m.role != "system"]
    assert history_part[-1].content == "Where is Paris?"
    assert 0 < len(history_part) < 101


def test_function_agent_with_tokenward_memory():
    from llama_index.core.agent.workflow import FunctionAgent
    from llama_index.core.tools import FunctionTool

    class ToolLLM(MockFunctionCallingLLM):
        @property
        def metadata(self) -> LLMMetadata:
            return LLMMetadata(is_function_calling_model=True, model_name=MODEL)

    def weather(city: str = "Paris") -> str:
        """Weather for a city."""
        return f"Sunny in {city}."

    memory = TokenwardChatMemory.from_defaults(
        chat_history=conversation(30)[1:], token_limit=200, model=MODEL
    )
    agent = FunctionAgent(tools=[FunctionTool.from_defaults(weather)], llm=ToolLLM())

    async def run() -> str:
        return str(await agent.run("Weather in Paris?", memory=memory))

    assert "Tool calls complete" in asyncio.run(run())
    stored = memory.get_all()
    roles = [m.role.value for m in stored[-4:]]
    assert roles == ["user", "assistant", "tool", "assistant"]
    kept = memory.get()
    assert tokens(kept) <= 200 and kept[-1] is stored[-1]
    assert [m.role.value for m in kept[-4:]] == roles  # the tool group is intact


def test_new_memory_class_via_trim_chat_history():
    from llama_index.core.memory import Memory

    memory = Memory.from_defaults(session_id="s1", token_limit=100_000)
    memory.put_messages(conversation(40))
    trimmed = trim_chat_history(memory.get_all(), 300, model=MODEL)
    assert trimmed[0].role == "system" and tokens(trimmed) <= 300


def test_every_tool_call_shape_is_read():
    from llama_index.core.tools import ToolSelection

    from tokenward.messages import ToolCall

    expected = (ToolCall(id="t1", name="lookup", arguments='{"city":"Paris"}'),)
    shapes = [
        ChatMessage(
            role="assistant",
            content="",
            additional_kwargs={
                "tool_calls": [
                    {
                        "id": "t1",
                        "type": "function",
                        "function": {"name": "lookup", "arguments": '{"city":"Paris"}'},
                    }
                ]
            },
        ),
        ChatMessage(
            role="assistant",
            content="",
            additional_kwargs={
                "tool_calls": [
                    ToolSelection(tool_id="t1", tool_name="lookup", tool_kwargs={"city": "Paris"})
                ]
            },
        ),
        ChatMessage(
            role="assistant",
            blocks=[
                ToolCallBlock(tool_call_id="t1", tool_name="lookup", tool_kwargs={"city": "Paris"})
            ],
        ),
    ]
    for shape in shapes:
        (msg,) = to_messages([shape])
        assert msg.role == "assistant" and msg.tool_calls == expected and msg.source is shape
    (tool,) = to_messages(
        [
            ChatMessage(
                role="tool",
                content="sunny",
                additional_kwargs={"tool_call_id": "t1", "name": "lookup"},
            )
        ]
    )
    # the name is not sent to the provider (LlamaIndex's clients send tool_call_id only)
    assert (tool.role, tool.tool_call_id, tool.name, tool.content) == ("tool", "t1", None, "sunny")


def test_a_tool_call_in_both_openai_shapes_is_read_once():
    """llama-index-llms-openai 0.8 puts each tool call in ``additional_kwargs["tool_calls"]``
    and in a ``ToolCallBlock``: counted once, as the client sends it once."""
    from llama_index.core.base.llms.types import ChatResponse
    from llama_index.llms.openai.utils import from_openai_message, to_openai_message_dicts
    from openai.types.chat import ChatCompletionMessage
    from openai.types.chat.chat_completion_message_tool_call import (
        ChatCompletionMessageToolCall,
        Function,
    )

    from tokenward.integrations.llama_index._common import tool_names
    from tokenward.messages import Message

    reply = from_openai_message(
        ChatCompletionMessage(
            role="assistant",
            content=None,
            tool_calls=[
                ChatCompletionMessageToolCall(
                    id="call_1",
                    type="function",
                    function=Function(name="get_weather", arguments='{"city": "Oslo"}'),
                )
            ],
        ),
        modalities=["text"],
    )
    assert reply.additional_kwargs["tool_calls"] and reply.blocks  # both shapes are filled
    (converted,) = to_messages([reply])
    assert [c.id for c in converted.tool_calls] == ["call_1"]
    assert tool_names(ChatResponse(message=reply)) == ("get_weather",)
    history = [
        ChatMessage(role="user", content="Weather in Oslo?"),
        reply,
        ChatMessage(
            role="tool",
            content="Sunny.",
            additional_kwargs={"tool_call_id": "call_1", "name": "get_weather"},
        ),
    ]
    sent = [Message.from_openai(m) for m in to_openai_message_dicts(history)]
    assert COUNTER.count_messages(to_messages(history)) == COUNTER.count_messages(sent)


def test_works_without_an_llm_counting_like_chat_memory_buffer():
    history = conversation(30)[1:]  # no system message: ChatMemoryBuffer would drop it
    for memory in (
        TokenwardChatMemory(token_limit=120),
        TokenwardChatMemory.from_defaults(token_limit=120),
    ):
        memory.set(history)
        assert memory.model is None and memory.tokenizer is None
        buffer = ChatMemoryBuffer.from_defaults(chat_history=history, token_limit=120)
        assert memory.get() == buffer.get()
    assert TokenwardChatMemory.from_defaults().token_limit == 3000


def test_an_oversized_newest_message_is_returned_as_chat_memory_buffer_does():
    long = ChatMessage(role="user", content="word " * 400)
    history = [ChatMessage(role="user", content="hi"), ChatMessage(role="assistant", content="hey")]
    ours = TokenwardChatMemory.from_defaults(chat_history=[*history, long], token_limit=100)
    theirs = ChatMemoryBuffer.from_defaults(chat_history=[*history, long], token_limit=100)
    assert ours.get() == theirs.get() == [long]
    system = ChatMessage(role="system", content="Be brief.")
    with_system = TokenwardChatMemory.from_defaults(
        chat_history=[system, *history, long], token_limit=100, model=MODEL
    )
    assert with_system.get() == [system, long]


def round_trips(memory: TokenwardChatMemory) -> dict[str, TokenwardChatMemory]:
    import pickle

    return {
        "dict": TokenwardChatMemory.from_dict(memory.to_dict()),
        "string": TokenwardChatMemory.from_string(memory.to_string()),
        "model_dump": TokenwardChatMemory.model_validate(memory.model_dump()),
        "json": TokenwardChatMemory.model_validate_json(memory.model_dump_json()),
        "pickle": pickle.loads(pickle.dumps(memory)),
    }


CONFIG = ("token_limit", "model", "tokenizer", "pinned", "keep_system", "start_on", "overflow")


def test_default_tokenizer_stays_the_default_after_every_serialization():
    # an unpickled copy of the global tokenizer used to read as a custom tokenizer, so a
    # model-counting memory counted message text without the chat overhead after pickle
    memory = TokenwardChatMemory.from_defaults(
        chat_history=conversation(20), token_limit=150, model=MODEL
    )
    expected = [m.content for m in memory.get()]
    for how, loaded in round_trips(memory).items():
        assert loaded.tokenizer is None, how
        assert [m.content for m in loaded.get()] == expected, how


def test_configuration_survives_every_serialization():
    from tokenward.counting import get_encoding

    encoding = get_encoding("o200k_base")
    memory = TokenwardChatMemory.from_defaults(
        chat_history=conversation(20),
        token_limit=150,
        tokenizer_fn=encoding.encode,
        model=MODEL,
        pinned=[3],
        start_on=None,
        overflow="raise",
    )
    assert memory.tokenizer == "tiktoken:o200k_base"
    expected = memory.get()
    for how, loaded in round_trips(memory).items():
        assert {k: getattr(loaded, k) for k in CONFIG} == {k: getattr(memory, k) for k in CONFIG}, (
            how
        )
        assert loaded.tokenizer_fn("two words") == encoding.encode("two words"), how
        assert [m.content for m in loaded.get()] == [m.content for m in expected], how


def test_unserializable_tokenizer_and_predicate_are_named_and_reattached(caplog):
    import pickle

    def pin_names(message: ChatMessage) -> bool:
        return "Ada" in (message.content or "")

    history = conversation(20)
    history[3] = ChatMessage(role="user", content="My name is Ada.")
    memory = TokenwardChatMemory.from_defaults(
        chat_history=history, token_limit=60, tokenizer_fn=str.split, pinned=pin_names
    )
    expected = memory.get()
    assert history[3] in expected
    data = memory.to_dict()
    assert data["tokenizer"] == "custom:str.split"
    assert data["pinned"].startswith("predicate:") and data["pinned"].endswith("pin_names")
    detached = TokenwardChatMemory.from_dict(data)
    with caplog.at_level("WARNING"):
        assert detached.get()  # still works: default tokenizer, nothing pinned
    assert "tokenizer_fn=..., pinned=..." in caplog.text
    again = TokenwardChatMemory.from_dict(data, tokenizer_fn=str.split, pinned=pin_names)
    assert [m.content for m in again.get()] == [m.content for m in expected]
    restored = TokenwardChatMemory.from_string(
        memory.to_string(), tokenizer_fn=str.split, pinned=pin_names
    )
    assert [m.content for m in restored.get()] == [m.content for m in expected]
    # pickling a memory with a lambda keeps the live object whole (LlamaIndex's deletes it)
    with_lambda = TokenwardChatMemory.from_defaults(
        chat_history=history, token_limit=60, tokenizer_fn=lambda t: t.split()
    )
    loaded = pickle.loads(pickle.dumps(with_lambda))
    assert callable(with_lambda.tokenizer_fn) and with_lambda.get() == with_lambda.get()
    assert (
        loaded.tokenizer
        == "custom:test_unserializable_tokenizer_and_predicate_are_named_and_reattached.<locals>.<lambda>"
    )
    assert loaded.get()
