"""Translation helpers shared by the LlamaIndex adapters.

They only *extract* things from LlamaIndex objects (model names, messages, output
text, tool names) and hand provider payloads to :meth:`Usage.from_any`; pricing,
counting and budget decisions stay in the core.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from llama_index.core.base.llms.types import CompletionResponse

from tokenward.errors import UsageParseError
from tokenward.integrations._common import MODEL_KEYS, guard
from tokenward.messages import Message, ToolCall
from tokenward.usage import Usage

if TYPE_CHECKING:
    from tokenward.accountant import Accountant

logger = logging.getLogger("tokenward.integrations.llama_index")

#: keys of ``LLM.to_payload()`` / ``BaseEmbedding.to_dict()`` that name the model, best first
_NO_MODEL = ("", "unknown", "default", None)


def swallow_internal_errors(what: str = "event") -> guard:
    """The adapters' guard (:func:`tokenward.integrations._common.guard`) on this logger."""
    return guard(logger, f"LlamaIndex {what}")


def resolve_accountant(accountant: Accountant | None) -> Accountant:
    if accountant is not None:
        return accountant
    from tokenward.accountant import get_default_accountant

    return get_default_accountant()


def model_from_dict(model_dict: Mapping[str, Any] | None, default: str | None = None) -> str | None:
    """Model name from an event's ``model_dict`` (``LLM.to_payload()``), else ``default``."""
    if model_dict:
        for key in MODEL_KEYS:
            value = model_dict.get(key)
            if isinstance(value, str) and value not in _NO_MODEL:
                return value
    return default


def placeholder_model(model_dict: Mapping[str, Any] | None) -> str:
    """The name to record a call under when its LLM reports no model: the LLM's class
    name (``MockLLM``), else ``"unknown"``. The catalog does not price it (cost unknown)."""
    name = (model_dict or {}).get("class_name")
    return name if isinstance(name, str) and name else "unknown"


#: embedding clients that send ``text.replace("\n", " ")`` instead of the text they are given
_NEWLINES_AS_SPACES = frozenset({"OpenAIEmbedding", "AzureOpenAIEmbedding"})


def embedding_texts(model_dict: Mapping[str, Any] | None, chunks: Sequence[str]) -> list[str]:
    """The texts an embedding client actually sends for ``chunks`` (what the provider bills).

    LlamaIndex's ``OpenAIEmbedding`` replaces every newline with a space before the
    request; its events carry the original text.
    """
    if (model_dict or {}).get("class_name") in _NEWLINES_AS_SPACES:
        return [chunk.replace("\n", " ") for chunk in chunks]
    return list(chunks)


def model_from_llm(llm: Any, default: str | None = None) -> str | None:
    """Model name of a LlamaIndex ``LLM`` (its payload/metadata), else ``default``."""
    try:
        payload = llm.to_payload()
    except Exception:  # noqa: BLE001 - a custom LLM's payload must not break accounting
        payload = {}
    name = model_from_dict(payload)
    if name is None:
        name = model_from_dict({k: getattr(llm, k, None) for k in MODEL_KEYS})
    return name or default


def max_output_tokens(
    kwargs: Mapping[str, Any] | None, model_dict: Mapping[str, Any] | None
) -> int | None:
    """The output cap of a call: the call's ``max_tokens`` kwarg, else the LLM's own setting.

    ``model_dict`` is ``LLM.to_payload()``: its ``num_output`` (LLMMetadata) is the
    output space LlamaIndex itself reserves for the model, used when nothing more
    specific is set. ``None`` lets the core assume its default.
    """
    for source in (kwargs, model_dict):
        if source:
            for key in _OUTPUT_KEYS:
                value = source.get(key)
                if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                    return value
    return None


_OUTPUT_KEYS = (
    "max_tokens",
    "max_completion_tokens",
    "max_output_tokens",
    "max_new_tokens",
    "num_output",
)


def _args_json(args: Any) -> str:
    if isinstance(args, str):
        return args
    return json.dumps(args, separators=(",", ":"), ensure_ascii=False)


def _tool_calls_of(message: Any) -> tuple[ToolCall, ...]:
    """Tool calls of a ChatMessage, each once.

    They may sit in ``ToolCallBlock`` blocks and in ``additional_kwargs["tool_calls"]``
    (OpenAI dicts/objects or LlamaIndex ``ToolSelection`` s), and
    ``llama-index-llms-openai`` 0.8 fills *both* for the same call. A call is keyed by
    its id (by name and arguments when it has none); blocks come first because that is
    what the OpenAI client sends when a message has them.
    """
    calls: dict[Any, ToolCall] = {}

    def add(call: ToolCall) -> None:
        calls.setdefault(call.id or (call.name, call.arguments), call)

    for block in getattr(message, "blocks", None) or ():
        if getattr(block, "block_type", None) == "tool_call":
            add(
                ToolCall(
                    id=str(block.tool_call_id or ""),
                    name=block.tool_name,
                    arguments=_args_json(block.tool_kwargs),
                )
            )
    extra = getattr(message, "additional_kwargs", None) or {}
    for raw in extra.get("tool_calls") or ():
        if hasattr(raw, "model_dump"):
            raw = raw.model_dump()
        if not isinstance(raw, Mapping):
            continue
        if "tool_name" in raw:  # a LlamaIndex ToolSelection
            add(
                ToolCall(
                    id=str(raw.get("tool_id") or ""),
                    name=str(raw["tool_name"]),
                    arguments=_args_json(raw.get("tool_kwargs") or {}),
                )
            )
        else:
            add(ToolCall.from_openai(raw))
    return tuple(calls.values())


_ROLES = {"chatbot": "assistant", "model": "assistant", "human": "user", "ai": "assistant"}


def _b64(data: Any) -> str:
    return data.decode() if isinstance(data, bytes) else str(data or "")


def _content_parts(blocks: Sequence[Any]) -> list[dict[str, Any]]:
    """Content blocks as the content parts the core counter reads (tool calls are carried
    by ``tool_calls``). Image and document data are kept base64, as LlamaIndex stores them."""
    parts: list[dict[str, Any]] = []
    for block in blocks:
        kind = getattr(block, "block_type", None)
        if kind == "text":
            parts.append({"type": "text", "text": block.text})
        elif kind == "thinking":
            parts.append({"type": "thinking", "thinking": block.content or ""})
        elif kind == "image":
            url = str(block.url) if block.url else None
            if url is None and block.image:
                url = f"data:{block.image_mimetype or 'image/png'};base64,{_b64(block.image)}"
            parts.append(
                {
                    "type": "image_url",
                    "image_url": {"url": url or "", "detail": block.detail or "auto"},
                }
            )
        elif kind == "document":
            source = {
                "type": "base64",
                "media_type": block.document_mimetype or "application/pdf",
                "data": _b64(block.data),
            }
            parts.append({"type": "document", "source": source, "title": block.title})
        elif kind != "tool_call":
            parts.append({"type": str(kind)})
    return parts


def to_message(message: Any) -> Message:
    """A LlamaIndex ``ChatMessage`` as a core :class:`Message` (the original kept in ``source``)."""
    role = message.role
    role = getattr(role, "_value_", role)
    role = _ROLES.get(role, role)
    extra = message.additional_kwargs
    blocks = message.blocks
    if not extra and len(blocks) == 1 and getattr(blocks[0], "block_type", None) == "text":
        return Message(role, blocks[0].text, source=message)  # the common case, kept cheap
    calls = _tool_calls_of(message)
    plain = all(getattr(b, "block_type", None) in ("text", "tool_call") for b in blocks)
    return Message(
        role,
        (message.content or "") if plain else _content_parts(blocks),
        # a tool result's "name" is LlamaIndex bookkeeping: its clients send tool_call_id only
        name=None if role == "tool" else extra.get("name"),
        tool_calls=calls,
        tool_call_id=extra.get("tool_call_id"),
        id=extra.get("id"),
        source=message,
    )


def to_messages(messages: Sequence[Any] | None) -> list[Message]:
    return [to_message(m) for m in messages or ()]


def tools_to_dicts(tools: Any) -> list[dict[str, Any]] | None:
    """OpenAI tool schemas for the ``tools`` kwarg of a chat call (``BaseTool`` or dicts)."""
    if not tools:
        return None
    out: list[dict[str, Any]] = []
    for tool in tools:
        if isinstance(tool, Mapping):
            out.append(dict(tool))
            continue
        metadata = getattr(tool, "metadata", None)
        if metadata is not None and hasattr(metadata, "to_openai_tool"):
            try:
                out.append(metadata.to_openai_tool(skip_length_check=True))
            except TypeError:
                out.append(metadata.to_openai_tool())
    return out or None


def usage_from_response(response: Any) -> Usage | None:
    """Provider usage of a ``ChatResponse``/``CompletionResponse``, or ``None`` when absent.

    ``response.raw`` is tried first (OpenAI, Anthropic, Gemini... shapes, via
    ``Usage.from_any``), then ``response.additional_kwargs`` (where several
    LlamaIndex LLM classes copy ``prompt_tokens``/``completion_tokens``).
    """
    if response is None:
        return None
    for payload in (getattr(response, "raw", None), getattr(response, "additional_kwargs", None)):
        if not payload:
            continue
        try:
            usage = Usage.from_any(payload)
        except (UsageParseError, TypeError, ValueError, AttributeError, KeyError):
            logger.debug("no usage in %r", type(payload).__name__, exc_info=True)
            continue
        if usage:
            return usage
    return None


def response_model(response: Any) -> str | None:
    """The model name the provider reported in ``response.raw`` (exact snapshot), if any."""
    raw = getattr(response, "raw", None)
    if raw is None:
        return None
    value = raw.get("model") if isinstance(raw, Mapping) else getattr(raw, "model", None)
    return value if isinstance(value, str) and value else None


def response_output(response: Any) -> tuple[str, tuple[str, ...]]:
    """The generated text of a chat/completion response (tool-call arguments included) and
    the names of the tools it calls, read in one pass over its message."""
    if response is None:
        return "", ()
    # a CompletionResponse has no ``message``: asking a pydantic model for a missing
    # attribute raises inside ``BaseModel.__getattr__`` (microseconds), so do not ask
    message = (
        None if isinstance(response, CompletionResponse) else getattr(response, "message", None)
    )
    if message is None:
        return getattr(response, "text", None) or "", ()
    text = message.content or ""
    calls = _tool_calls_of(message)
    if not calls:
        return text, ()
    return text + "".join(c.name + c.arguments for c in calls), tuple(c.name for c in calls)


def response_text(response: Any) -> str:
    """The generated text of a chat/completion response (tool-call arguments included)."""
    return response_output(response)[0]


def tool_names(response: Any) -> tuple[str, ...]:
    """The names of the tools a chat response calls."""
    return response_output(response)[1]
