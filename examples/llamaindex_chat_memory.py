"""A long support chat with tool calls, trimmed for every turn by TokenwardChatMemory.

``TokenwardChatMemory`` is a drop-in for ``ChatMemoryBuffer`` (same store, same
``from_defaults``) whose trimming keeps the system message, never sends a tool
result without the assistant message that called the tool, keeps pinned
messages, and counts with the model's tokenizer.

Runs offline with MockLLMWithChatMemoryOfLastCall (it records what it was sent).

    python examples/llamaindex_chat_memory.py
"""

from __future__ import annotations

import json

from llama_index.core.base.llms.types import ChatMessage, LLMMetadata
from llama_index.core.chat_engine import SimpleChatEngine
from llama_index.core.llms.mock import MockLLMWithChatMemoryOfLastCall
from llama_index.core.memory import ChatMemoryBuffer

from tokenward.counting import get_counter
from tokenward.llama_index import TokenwardChatMemory, trim_chat_history

MODEL = "gpt-5.4-mini"


class RecordingLLM(MockLLMWithChatMemoryOfLastCall):
    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(model_name=MODEL, context_window=8000, num_output=16, is_chat_model=True)


def history() -> list[ChatMessage]:
    msgs = [
        ChatMessage(
            role="system",
            content="You are Ada, the support bot of Acme. Never "
            "promise refunds; escalate billing questions to a human.",
        )
    ]
    msgs.append(
        ChatMessage(
            role="user",
            content="My account id is ACME-4411; please remember it.",
            additional_kwargs={"pinned": True},
        )
    )
    msgs.append(ChatMessage(role="assistant", content="Noted: ACME-4411."))
    for i in range(40):
        msgs.append(ChatMessage(role="user", content=f"Question {i}: is order {1000 + i} shipped?"))
        call = f"call_{i}"
        msgs.append(
            ChatMessage(
                role="assistant",
                content="",
                additional_kwargs={
                    "tool_calls": [
                        {
                            "id": call,
                            "type": "function",
                            "function": {
                                "name": "order_status",
                                "arguments": json.dumps({"order": 1000 + i}),
                            },
                        }
                    ]
                },
            )
        )
        msgs.append(
            ChatMessage(
                role="tool",
                content=json.dumps(
                    {"order": 1000 + i, "status": "shipped", "carrier": "UPS", "eta_days": i % 5}
                ),
                additional_kwargs={"tool_call_id": call, "name": "order_status"},
            )
        )
        msgs.append(
            ChatMessage(role="assistant", content=f"Order {1000 + i} has shipped with UPS.")
        )
    return msgs


def describe(messages: list[ChatMessage]) -> str:
    counter = get_counter(MODEL)
    # content, tool calls (OpenAI format in additional_kwargs here) and chat overhead, as the
    # OpenAI client sends them (a tool result's "name" stays behind)
    n = counter.count_messages(
        [
            {
                "role": m.role.value,
                "content": m.content or "",
                **{k: v for k, v in m.additional_kwargs.items() if k != "name"},
            }
            for m in messages
        ]
    )
    roles = "".join(
        {"system": "S", "user": "u", "assistant": "a", "tool": "t"}[m.role.value]
        for m in messages[:8]
    )
    return f"{len(messages):3d} messages, {n} tokens, starts {roles}..."


def main() -> None:
    limit = 600
    past = history()
    print(f"stored history: {len(past)} messages")

    buffer = ChatMemoryBuffer.from_defaults(chat_history=list(past), token_limit=limit)
    window = buffer.get()
    print(
        f"ChatMemoryBuffer.get():      {describe(window)}"
        f" system kept: {window[0].role.value == 'system'}"
    )

    memory = TokenwardChatMemory.from_defaults(
        chat_history=list(past),
        token_limit=limit,
        llm=RecordingLLM(),
        pinned=lambda m: m.additional_kwargs.get("pinned", False),
    )
    window = memory.get()
    print(
        f"TokenwardChatMemory.get():   {describe(window)}"
        f" system kept: {window[0].role.value == 'system'},"
        f" pinned kept: {any('ACME-4411' in (m.content or '') for m in window)}"
    )
    orphan = any(
        m.role.value == "tool" and i > 0 and window[i - 1].role.value == "user"
        for i, m in enumerate(window)
    )
    print(f"tool results without their call: {orphan}")

    # drop-in: the chat engine sends the trimmed window every turn
    llm = RecordingLLM(max_tokens=8)  # short replies
    engine = SimpleChatEngine.from_defaults(llm=llm, memory=memory)
    for question in ["Is order 1039 shipped?", "And what was my account id?"]:
        engine.chat(question)
        sent = list(llm.last_chat_messages or [])
        print(f"turn '{question}': sent {describe(sent)}")
    print(f"stored now: {len(memory.get_all())} messages (trimming is at read time; nothing lost)")

    # the same trimming for the newer Memory class, or any list of ChatMessages
    trimmed = trim_chat_history(past, 200, model=MODEL)
    print(f"trim_chat_history(past, 200): {describe(trimmed)}")


if __name__ == "__main__":
    main()
