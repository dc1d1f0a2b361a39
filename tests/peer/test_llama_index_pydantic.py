"""The pydantic our ``llama-index`` extra allows is one LlamaIndex's serialization works with.

pydantic 2.14 rejects llama-index-core 0.14.25's ``ChatMessage`` serializer (it passes
``SerializationInfo`` where pydantic expects an index key; pydantic/pydantic#13506), so
``ChatMemoryBuffer.to_dict()`` raises; ``pyproject.toml`` constrains the extra to
``pydantic<2.14``. This checks the environment the extra installs.
"""

from __future__ import annotations

import pytest

pytest.importorskip("llama_index.core")

from llama_index.core.llms import ChatMessage
from llama_index.core.memory import ChatMemoryBuffer


def test_chat_memory_buffer_serializes_with_the_installed_pydantic():
    memory = ChatMemoryBuffer.from_defaults(
        chat_history=[ChatMessage(role="user", content="hello")], token_limit=100
    )
    data = memory.to_dict()
    assert data["chat_store"]["store"]["chat_history"][0]["blocks"][0]["text"] == "hello"
    assert ChatMemoryBuffer.from_string(memory.to_string()).get_all() == memory.get_all()
