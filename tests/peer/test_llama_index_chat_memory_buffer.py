"""Peer test: LlamaIndex's ``tests/memory/test_chat_memory_buffer.py``.

Source: run-llama/llama_index, ``llama-index-core/tests/memory/test_chat_memory_buffer.py``
(read at commit f9e4870; llama-index-core 0.14.25 is pinned here, and its sdist ships no
tests). Re-expressed, not copied: each test names the upstream test it mirrors, for
``ChatMemoryBuffer`` and ``TokenwardChatMemory`` (the adapted line: the class).

One adaptation throughout: upstream calls ``memory.get(initial_tokens)``, which lands in
``get``'s first parameter, ``input``, not in ``initial_token_count`` (the signature is
``get(input=None, initial_token_count=0)``); as written, four of its tests fail against
ChatMemoryBuffer 0.14.25 itself. Here the count is passed by keyword, as the test names
describe.
"""

from __future__ import annotations

import pickle

import pytest

pytest.importorskip("llama_index.core")

from llama_index.core.llms import ChatMessage, MessageRole
from llama_index.core.utils import get_tokenizer

from tests.peer._llama_index import IMPLEMENTATIONS, chat_memory_class, xfail_for

tokenizer = get_tokenizer()

FIRST_QUESTION = ChatMessage(role=MessageRole.USER, content="first message")
FIRST_ANSWER = ChatMessage(role=MessageRole.ASSISTANT, content="first answer")
SECOND_QUESTION = ChatMessage(role=MessageRole.USER, content="second message")
SECOND_ANSWER = ChatMessage(role=MessageRole.USER, content="second answer")  # a user role upstream


def tokens(message: ChatMessage) -> int:
    return len(tokenizer(str(message.content)))


NEWEST_RETURNED_WHEN_OVERSIZED = (
    "the upstream test predates ChatMemoryBuffer's rule (in 0.14.25) that the newest "
    "message is returned when it alone exceeds the limit; TokenwardChatMemory follows the class"
)
ASSISTANT_FIRST = (
    "ChatMemoryBuffer 0.14.25 returns a history that starts with the assistant answer: "
    "its loop that drops a leading assistant message stops at one message"
)


@pytest.fixture(params=IMPLEMENTATIONS)
def Memory(request):
    return chat_memory_class(request.param)


def test_put_get(Memory):
    """Mirrors ``test_put_get``."""
    memory = Memory.from_defaults(chat_history=[FIRST_QUESTION])
    history = memory.get()
    assert len(history) == 1 and history[0].content == FIRST_QUESTION.content


def test_get_when_initial_tokens_less_than_limit_returns_history(Memory):
    """Mirrors ``test_get_when_initial_tokens_less_than_limit_returns_history``."""
    memory = Memory.from_defaults(token_limit=1000, chat_history=[FIRST_QUESTION])
    assert memory.get(initial_token_count=5) == [FIRST_QUESTION]


def test_get_when_initial_tokens_exceed_limit_raises_value_error(Memory):
    """Mirrors ``test_get_when_initial_tokens_exceed_limit_raises_value_error``."""
    memory = Memory.from_defaults(token_limit=49)
    with pytest.raises(ValueError) as raised:
        memory.get(initial_token_count=50)
    assert str(raised.value) == "Initial token count exceeds token limit"


@pytest.mark.parametrize(
    "implementation",
    [xfail_for(i, i, NEWEST_RETURNED_WHEN_OVERSIZED) for i in IMPLEMENTATIONS],
)
def test_get_when_initial_tokens_same_as_limit_removes_message(implementation):
    """Mirrors ``test_get_when_initial_tokens_same_as_limit_removes_message``."""
    memory = chat_memory_class(implementation).from_defaults(
        token_limit=5, chat_history=[FIRST_QUESTION]
    )
    assert memory.get(initial_token_count=5) == []


@pytest.mark.parametrize(
    "implementation", [xfail_for(i, "llama_index", ASSISTANT_FIRST) for i in IMPLEMENTATIONS]
)
def test_get_when_space_for_assistant_message_removes_assistant_message_at_start_of_history(
    implementation,
):
    """Mirrors the upstream test of the same name: room for the answer alone, and a
    history may not start with an answer, so nothing is returned."""
    memory = chat_memory_class(implementation).from_defaults(
        token_limit=5, chat_history=[FIRST_QUESTION, FIRST_ANSWER]
    )
    assert memory.get(initial_token_count=5 - tokens(FIRST_QUESTION)) == []


def test_get_when_space_for_second_message_and_answer_removes_only_first_message_and_answer(
    Memory,
):
    """Mirrors the upstream test of the same name."""
    memory = Memory.from_defaults(
        token_limit=5,
        chat_history=[FIRST_QUESTION, FIRST_ANSWER, SECOND_QUESTION, SECOND_ANSWER],
    )
    initial = 5 - tokens(FIRST_QUESTION) - tokens(FIRST_ANSWER)
    assert memory.get(initial_token_count=initial) == [SECOND_QUESTION, SECOND_ANSWER]


def test_get_when_space_for_all_but_first_message_removes_first_message_and_answer(Memory):
    """Mirrors the upstream test of the same name: room for three messages, but the third
    newest is an answer, which may not start the history."""
    memory = Memory.from_defaults(
        token_limit=10,
        chat_history=[FIRST_QUESTION, FIRST_ANSWER, SECOND_QUESTION, SECOND_ANSWER],
    )
    initial = 10 - tokens(FIRST_ANSWER) - tokens(FIRST_QUESTION) - tokens(SECOND_ANSWER)
    assert memory.get(initial_token_count=initial) == [SECOND_QUESTION, SECOND_ANSWER]


def test_set(Memory):
    """Mirrors ``test_set``."""
    memory = Memory.from_defaults(chat_history=[FIRST_QUESTION])
    memory.put(FIRST_QUESTION)
    assert len(memory.get()) == 2
    memory.set([FIRST_QUESTION])
    assert len(memory.get()) == 1


def test_max_tokens(Memory):
    """Mirrors ``test_max_tokens``: 5 tokens hold two 2-token messages, newest last."""
    memory = Memory.from_defaults(chat_history=[FIRST_QUESTION], token_limit=5)
    memory.put(FIRST_QUESTION)
    assert len(memory.get()) == 2
    memory.put(FIRST_QUESTION)
    memory.put(FIRST_QUESTION)
    assert len(memory.get()) == 2
    assert len(memory.get_all()) == 4
    memory.put(ChatMessage(role=MessageRole.USER, content="test message2"))
    assert memory.get()[-1].content == "test message2"
    assert len(memory.get()) == 2


def test_string_save_load(Memory):
    """Mirrors ``test_string_save_load``."""
    memory = Memory.from_defaults(chat_history=[FIRST_QUESTION], token_limit=5)
    loaded = Memory.from_string(memory.to_string())
    assert len(loaded.get()) == 1 and loaded.token_limit == 5


def test_dict_save_load(Memory):
    """Mirrors ``test_dict_save_load``."""
    memory = Memory.from_defaults(chat_history=[FIRST_QUESTION], token_limit=5)
    loaded = Memory.from_dict(memory.to_dict())
    assert len(loaded.get()) == 1 and loaded.token_limit == 5


def test_pickle(Memory):
    """Mirrors ``test_pickle``: the tiktoken tokenizer does not stop pickling."""
    memory = Memory.from_defaults()
    assert isinstance(pickle.loads(pickle.dumps(memory)), Memory)
