"""Anthropic request shapes: the tool-use system prompt sizes and OpenAI -> Messages API
conversion (for the estimate's tool term and for ``messages.count_tokens``).

When a request carries ``tools``, Anthropic adds a tool-use system prompt whose size depends
on the model and on ``tool_choice`` (``auto``/``none`` vs ``any``/``tool``), on top of the
tool definitions themselves. Figures from "Tool use with Claude > Pricing",
https://platform.claude.com/docs/en/agents-and-tools/tool-use/overview#pricing (2026-12),
older models from the earlier revision of the same table.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from tokenward.counting._content import TOOL_CALL_PARTS
from tokenward.counting._functions import normalize_tools
from tokenward.messages import Message

__all__ = ["to_anthropic_request", "to_anthropic_tools", "tool_prompt_tokens"]

# (model prefix, tokens with tool_choice auto/none, tokens with any/tool); longest first
_TOOL_PROMPT: tuple[tuple[str, int, int], ...] = (
    ("claude-opus-5", 286, 406),
    ("claude-opus-4-8", 290, 410),
    ("claude-opus-4-7", 675, 804),
    ("claude-opus-4-6", 497, 589),
    ("claude-opus-4-5", 496, 588),
    ("claude-opus-4-1", 313, 315),
    ("claude-opus-4", 313, 315),
    ("claude-sonnet-5", 354, 474),
    ("claude-sonnet-4-6", 497, 589),
    ("claude-sonnet-4-5", 496, 588),
    ("claude-sonnet-4", 313, 315),
    ("claude-haiku-4-5", 496, 588),
    ("claude-3-5-haiku", 264, 355),
    ("claude-3-7-sonnet", 346, 313),
    ("claude-3-5-sonnet-20240620", 294, 261),
    ("claude-3-5-sonnet", 346, 313),
    ("claude-3-opus", 530, 281),
    ("claude-3-sonnet", 159, 235),
    ("claude-3-haiku", 264, 340),
)
#: unknown (newer) Claude models: the largest current figure, so budgets are not under-reserved
_DEFAULT_TOOL_PROMPT = (675, 804)


def tool_prompt_tokens(model: str, tool_choice: Any = None) -> int:
    """Tokens of the tool-use system prompt Anthropic adds for ``model``."""
    m = model.lower()
    auto, forced = _DEFAULT_TOOL_PROMPT
    for prefix, a, f in _TOOL_PROMPT:
        if m.startswith(prefix):
            auto, forced = a, f
            break
    kind = tool_choice.get("type") if isinstance(tool_choice, Mapping) else tool_choice
    return forced if kind in ("any", "tool", "required", "function") else auto


def to_anthropic_tools(tools: Sequence[Any] | None) -> list[dict[str, Any]]:
    """Tool definitions in the Messages API shape (OpenAI ``tools``/``functions`` converted;
    Anthropic tools and server tools such as ``web_search_*`` kept as they are)."""
    out: list[dict[str, Any]] = []
    for t in tools or ():
        if hasattr(t, "model_dump") and not isinstance(t, Mapping):
            t = t.model_dump()
        if isinstance(t, Mapping) and (
            "input_schema" in t or str(t.get("type", "")) not in ("", "function")
        ):
            out.append(dict(t))
            continue
        for fn in normalize_tools([t]):
            tool: dict[str, Any] = {"name": fn.get("name", "")}
            if fn.get("description"):
                tool["description"] = fn["description"]
            tool["input_schema"] = fn.get("parameters") or {"type": "object", "properties": {}}
            out.append(tool)
    return out


def _tool_choice(tool_choice: Any) -> dict[str, Any] | None:
    if tool_choice is None:
        return None
    if isinstance(tool_choice, Mapping) and tool_choice.get("type") in (
        "auto",
        "any",
        "tool",
        "none",
    ):
        return dict(tool_choice)
    if tool_choice in ("auto", "none"):
        return {"type": tool_choice}
    if tool_choice == "required":
        return {"type": "any"}
    if isinstance(tool_choice, Mapping):
        fn = tool_choice.get("function") or tool_choice
        if isinstance(fn, Mapping) and fn.get("name"):
            return {"type": "tool", "name": str(fn["name"])}
    return None


def _image_block(part: Mapping[str, Any]) -> dict[str, Any]:
    iu = part.get("image_url")
    url = iu.get("url") if isinstance(iu, Mapping) else iu
    if isinstance(url, str) and url.startswith("data:") and ";base64," in url:
        media, data = url[5:].split(";base64,", 1)
        return {"type": "image", "source": {"type": "base64", "media_type": media, "data": data}}
    return {"type": "image", "source": {"type": "url", "url": str(url or "")}}


def _file_block(part: Mapping[str, Any]) -> dict[str, Any]:
    file = part.get("file")
    data = file.get("file_data") if isinstance(file, Mapping) else part.get("file_data")
    if isinstance(data, str) and data.startswith("data:") and ";base64," in data:
        media, payload = data[5:].split(";base64,", 1)
        return {
            "type": "document",
            "source": {"type": "base64", "media_type": media, "data": payload},
        }
    return {
        "type": "document",
        "source": {"type": "base64", "media_type": "application/pdf", "data": data or ""},
    }


def _blocks(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    out: list[dict[str, Any]] = []
    for part in content or ():
        if isinstance(part, str):
            out.append({"type": "text", "text": part})
            continue
        if hasattr(part, "model_dump") and not isinstance(part, Mapping):
            part = part.model_dump()
        if not isinstance(part, Mapping):
            continue
        ptype = part.get("type")
        if ptype in ("text", "input_text", "output_text"):
            out.append({"type": "text", "text": str(part.get("text") or "")})
        elif ptype in ("image_url", "input_image"):
            out.append(_image_block(part))
        elif ptype in ("file", "input_file"):
            out.append(_file_block(part))
        elif ptype == "tool_call":  # LangChain v1 standard block
            out.append(
                {
                    "type": "tool_use",
                    "id": part.get("id") or "",
                    "name": part.get("name") or "",
                    "input": part.get("args") or {},
                }
            )
        else:  # Anthropic-native blocks (tool_use, tool_result, thinking, document, ...)
            out.append(dict(part))
    return out


def _input(arguments: str) -> Any:
    try:
        return json.loads(arguments or "{}")
    except ValueError:
        return {"arguments": arguments}


def to_anthropic_request(
    messages: Iterable[Message | Mapping[str, Any]],
    tools: Sequence[Any] | None = None,
    tool_choice: Any = None,
) -> dict[str, Any]:
    """``{"system", "messages", "tools", "tool_choice"}`` keyword arguments for the Messages
    API from OpenAI-style (or already Anthropic-style) messages. System/developer messages
    become the ``system`` prompt; ``tool`` messages become ``tool_result`` blocks; assistant
    ``tool_calls`` become ``tool_use`` blocks (unless the content already carries them)."""
    system: list[dict[str, Any]] = []
    out: list[dict[str, Any]] = []
    for raw in messages:
        m = raw if isinstance(raw, Message) else Message.from_openai(raw)
        if m.role in ("system", "developer"):
            system.extend(_blocks(m.content))
            continue
        if m.role in ("tool", "function"):
            block: dict[str, Any] = {
                "type": "tool_result",
                "tool_use_id": m.tool_call_id or m.name or "",
            }
            content = _blocks(m.content)
            if content:
                block["content"] = content
            out.append({"role": "user", "content": [block]})
            continue
        blocks = _blocks(m.content)
        if m.role == "assistant" and m.tool_calls:
            present = {b.get("id") for b in blocks if b.get("type") in TOOL_CALL_PARTS}
            for c in m.tool_calls:
                if c.id not in present:
                    blocks.append(
                        {
                            "type": "tool_use",
                            "id": c.id,
                            "name": c.name,
                            "input": _input(c.arguments),
                        }
                    )
        role = "assistant" if m.role == "assistant" else "user"
        out.append({"role": role, "content": blocks or [{"type": "text", "text": ""}]})
    request: dict[str, Any] = {"messages": out}
    if system:
        request["system"] = system
    converted = to_anthropic_tools(tools)
    if converted:
        request["tools"] = converted
        choice = _tool_choice(tool_choice)
        if choice is not None:
            request["tool_choice"] = choice
    return request
