"""Prompt conversion for pre-flight counting (BaseMessage lists -> core messages)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from langchain_core.messages import BaseMessage, convert_to_openai_messages

__all__ = ["messages_for_preflight"]


def messages_for_preflight(messages: Sequence[Sequence[BaseMessage]]) -> list[Any]:
    """The prompt of one chat run (LangChain passes one message list per run) as OpenAI dicts."""
    flat: list[BaseMessage] = [m for batch in messages for m in batch]
    return list(convert_to_openai_messages(flat))
