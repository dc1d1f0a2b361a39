"""Prompt conversion for pre-flight counting (BaseMessage lists -> core messages)."""

from __future__ import annotations

from collections.abc import Sequence

from langchain_core.messages import BaseMessage

from tokenward.integrations.langchain._messages import to_core_message
from tokenward.messages import Message

__all__ = ["messages_for_preflight"]


def messages_for_preflight(messages: Sequence[Sequence[BaseMessage]]) -> list[Message]:
    """The prompt of one chat run as core messages (LangChain passes one list per run).

    Content blocks (images, documents) are kept as they are, so the core counter applies
    its provider formulas to them.
    """
    return [to_core_message(m) for batch in messages for m in batch]
