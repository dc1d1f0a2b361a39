"""Plain-data chat messages and RAG chunks shared by counting and context algorithms.

Framework adapters convert LangChain ``BaseMessage`` / LlamaIndex ``ChatMessage``
objects to these and back; the core never sees a framework type.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["Chunk", "Message", "Role", "ToolCall"]

Role = Literal["system", "user", "assistant", "tool", "function", "developer"]

_ROLE_ALIASES = {"human": "user", "ai": "assistant", "chatbot": "assistant", "model": "assistant"}


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A tool call requested by an assistant message (arguments as a JSON string)."""

    id: str
    name: str
    arguments: str = "{}"

    @classmethod
    def from_openai(cls, data: Mapping[str, Any]) -> ToolCall:
        fn = data.get("function") or {}
        args = fn.get("arguments", data.get("args", "{}"))
        if not isinstance(args, str):
            args = json.dumps(args, separators=(",", ":"), ensure_ascii=False)
        return cls(
            id=str(data.get("id") or ""),
            name=str(fn.get("name") or data.get("name") or ""),
            arguments=args,
        )

    def to_openai(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": self.arguments},
        }


@dataclass(frozen=True, slots=True)
class Message:
    """One chat message.

    ``content`` is a string or a list of OpenAI-style content parts
    (``{"type": "text", "text": ...}``, ``{"type": "image_url", ...}``).
    ``id`` is the framework's message id, kept through trimming.
    ``source`` is an opaque slot where an adapter keeps the original framework
    object, so it can hand back exactly what it was given.
    """

    role: str
    content: str | tuple[Any, ...] | list[Any] = ""
    name: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    id: str | None = None
    source: Any = field(default=None, compare=False, repr=False)

    @classmethod
    def from_openai(cls, data: Mapping[str, Any] | Message) -> Message:
        """Build from an OpenAI chat message dict (``role``, ``content``, ``tool_calls``...)."""
        if isinstance(data, Message):
            return data
        if not isinstance(data, Mapping):
            raise TypeError(
                f"expected a message dict with 'role' and 'content', got {type(data).__name__}"
            )
        try:
            role = data["role"]
        except KeyError:
            raise ValueError(f"message has no 'role': {dict(data)!r}") from None
        role = _ROLE_ALIASES.get(role, role) or ""
        content = data.get("content")
        if content is None:
            content = ""
        calls = tuple(ToolCall.from_openai(c) for c in (data.get("tool_calls") or ()))
        return cls(
            role=role,
            content=content,
            name=data.get("name"),
            tool_calls=calls,
            tool_call_id=data.get("tool_call_id"),
            id=data.get("id"),
        )

    def to_openai(self) -> dict[str, Any]:
        out: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.name:
            out["name"] = self.name
        if self.tool_calls:
            out["tool_calls"] = [c.to_openai() for c in self.tool_calls]
        if self.tool_call_id:
            out["tool_call_id"] = self.tool_call_id
        return out

    @property
    def text(self) -> str:
        """The text of the message (text parts joined; non-text parts skipped)."""
        if isinstance(self.content, str):
            return self.content
        parts: list[str] = []
        for part in self.content:
            if isinstance(part, str):
                parts.append(part)
            elif isinstance(part, Mapping) and part.get("type") in ("text", "input_text"):
                parts.append(str(part.get("text", "")))
        return "".join(parts)


def as_messages(messages: Sequence[Mapping[str, Any] | Message]) -> list[Message]:
    """Normalize a list of dicts/Messages to Messages."""
    return [Message.from_openai(m) for m in messages]


@dataclass(slots=True)
class Chunk:
    """A retrieved RAG chunk: text, relevance score (higher is better) and metadata."""

    text: str
    score: float | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    id: str | None = None
    source: Any = field(default=None, compare=False, repr=False)
