"""Context limits exposed where the frameworks keep conversations: the LangChain agent
middleware (state messages) and the LlamaIndex chat memory (stored history)."""

from __future__ import annotations

import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from llama_index.core.base.llms.types import ChatMessage

from tokenward.accountant import Accountant
from tokenward.context import can_add, window_status
from tokenward.errors import ConfigurationError
from tokenward.integrations.langchain import TokenBudgetMiddleware
from tokenward.integrations.llama_index import TokenwardChatMemory

TEXT = "lorem ipsum dolor sit amet " * 50


def test_langchain_middleware_reports_the_state_window():
    mw = TokenBudgetMiddleware(Accountant(), model_name="gpt-4o")
    state = {
        "messages": [SystemMessage("Be brief."), HumanMessage(TEXT), AIMessage("Sure.")],
    }
    st = mw.window_status(state)
    core = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": TEXT},
        {"role": "assistant", "content": "Sure."},
    ]
    assert st == window_status(core, "gpt-4o")
    assert st.window == 128_000 and st.used > 250
    check = mw.can_add(state, HumanMessage("and one more"))
    assert check.allowed
    assert check == can_add(core, {"role": "user", "content": "and one more"}, "gpt-4o")
    small = mw.can_add(state["messages"], HumanMessage(TEXT * 500), model="gpt-4o")
    assert not small.allowed and small.remedy is not None


def test_langchain_middleware_needs_a_model_name():
    with pytest.raises(ConfigurationError, match="model_name"):
        TokenBudgetMiddleware(Accountant()).window_status({"messages": []})


def test_llama_index_memory_reports_its_window():
    memory = TokenwardChatMemory.from_defaults(model="gpt-4o", token_limit=100_000)
    memory.put(ChatMessage(role="user", content=TEXT))
    memory.put(ChatMessage(role="assistant", content="Sure."))
    st = memory.window_status()
    core = [{"role": "user", "content": TEXT}, {"role": "assistant", "content": "Sure."}]
    assert st == window_status(core, "gpt-4o")
    assert memory.can_add(ChatMessage(role="user", content="next")).allowed
    huge = memory.can_add(ChatMessage(role="user", content=TEXT * 500))
    assert not huge.allowed and huge.remedies[0].kind == "switch_model"
    with pytest.raises(ConfigurationError, match="model="):
        TokenwardChatMemory.from_defaults(token_limit=10).window_status()
