"""Small translation helpers shared by the LangChain adapters.

They only *extract* things from LangChain objects (model names, dimensions,
usage payloads, output text); every decision is left to the core.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from tokenward.errors import UsageParseError
from tokenward.integrations._common import BASE_URL_KEYS, MODEL_KEYS, guard
from tokenward.usage import Usage

logger = logging.getLogger("tokenward.integrations.langchain")

__all__ = [
    "ResultInfo",
    "base_url_from_start",
    "dims_from_run",
    "extract_result",
    "max_output_from_params",
    "model_from_start",
    "swallow_internal_errors",
]

#: metadata key -> dimension name
_DIM_KEYS: dict[str, str] = {
    "user_id": "user_id",
    "conversation_id": "conversation_id",
    "thread_id": "conversation_id",
    "session_id": "session_id",
    "agent": "agent",
    "lc_agent_name": "agent",
}
#: tags LangChain/LangGraph add on their own; they say nothing about the caller
_INTERNAL_TAG_PREFIXES = ("seq:step:", "map:key:", "graph:step:", "langsmith:", "nostream")


def swallow_internal_errors(what: str = "adapter") -> guard:
    """The adapters' guard (:func:`tokenward.integrations._common.guard`) on this logger."""
    return guard(logger, what)


def _norm(value: Any) -> str | None:
    if value is None or value == "":
        return None
    return str(value)


def dims_from_run(
    base: Mapping[str, Any],
    metadata: Mapping[str, Any] | None,
    tags: Sequence[str] | None,
) -> dict[str, Any]:
    """Dimensions for one run: the handler's defaults, overridden by run metadata.

    ``metadata`` keys ``user_id``, ``conversation_id`` (or ``thread_id``),
    ``session_id``, ``agent`` (or LangChain's ``lc_agent_name``) set the
    dimension of that name; ``metadata["tags"]`` (a mapping) and run tags become
    ``tags`` (``"team:search"`` -> ``{"team": "search"}``, a bare tag ->
    ``{tag: "true"}``). LangChain's own ``seq:step:N``-style tags are skipped.
    """
    dims: dict[str, Any] = dict(base)
    base_tags = base.get("tags")
    merged_tags: dict[str, str] = dict(base_tags) if base_tags else {}
    if metadata:
        for key, dim in _DIM_KEYS.items():
            value = metadata.get(key)
            if value is not None and value != "":
                # an explicit conversation_id beats a LangGraph thread_id
                if key == "thread_id" and metadata.get("conversation_id"):
                    continue
                if key == "lc_agent_name" and metadata.get("agent"):
                    continue
                dims[dim] = str(value)
        meta_tags = metadata.get("tags")
        if isinstance(meta_tags, Mapping):
            merged_tags.update({str(k): str(v) for k, v in meta_tags.items()})
    if tags:
        for tag in tags:
            if not isinstance(tag, str) or tag.startswith(_INTERNAL_TAG_PREFIXES):
                continue
            key, sep, value = tag.partition(":")
            if not sep:
                key, sep, value = tag.partition("=")
            merged_tags[key] = value if sep else "true"
    if merged_tags:
        dims["tags"] = merged_tags
    else:
        dims.pop("tags", None)
    return dims


def model_from_start(
    serialized: Mapping[str, Any] | None,
    invocation_params: Mapping[str, Any] | None,
    metadata: Mapping[str, Any] | None,
) -> str | None:
    """The model name of a starting run.

    Order: invocation params (``model``, ``model_name``, ``model_id``,
    ``deployment_name``...), the serialized constructor kwargs, then LangSmith's
    ``ls_model_name`` metadata.
    """
    if invocation_params:
        for key in MODEL_KEYS:
            name = _norm(invocation_params.get(key))
            if name:
                return name
    if serialized:
        kwargs = serialized.get("kwargs")
        if isinstance(kwargs, Mapping):
            for key in MODEL_KEYS:
                name = _norm(kwargs.get(key))
                if name:
                    return name
    if metadata:
        name = _norm(metadata.get("ls_model_name"))
        if name:
            return name
    return None


def base_url_from_start(
    serialized: Mapping[str, Any] | None, invocation_params: Mapping[str, Any] | None
) -> str | None:
    """Where the model's client sends requests, when the run says (helps recognise local and
    self-hosted models)."""
    kwargs = (serialized or {}).get("kwargs")
    for source in (invocation_params, kwargs if isinstance(kwargs, Mapping) else None):
        if source:
            for key in BASE_URL_KEYS:
                value = source.get(key)
                if isinstance(value, str) and value:
                    return value
    return None


def max_output_from_params(invocation_params: Mapping[str, Any] | None) -> int | None:
    """The caller's output cap (``max_tokens`` / ``max_completion_tokens`` / ...), if any."""
    if not invocation_params:
        return None
    for key in (
        "max_completion_tokens",
        "max_tokens",
        "max_output_tokens",
        "max_new_tokens",
        "num_predict",
    ):
        value = invocation_params.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def usage_from_metadata(usage_metadata: Any) -> Usage | None:
    """Usage from an ``AIMessage.usage_metadata`` (via the core parser), or None."""
    if not usage_metadata:
        return None
    return Usage.from_langchain(usage_metadata)


def usage_from_payload(payload: Any) -> Usage | None:
    """Usage from any provider payload (via ``Usage.from_any``), None when it has none."""
    if not payload:
        return None
    try:
        usage = Usage.from_any(payload)
    except UsageParseError:
        logger.debug("no usable usage in %r", type(payload).__name__, exc_info=True)
        return None
    return usage if usage else None


class ResultInfo:
    """What an ``LLMResult`` tells us: usage, response model, output text, tool names."""

    __slots__ = ("model", "output_text", "tool_names", "usage")

    def __init__(self) -> None:
        self.usage: Usage | None = None
        self.model: str | None = None
        self.output_text: str = ""
        self.tool_names: list[str] = []


_TEXT_BLOCKS = ("text", "output_text", "reasoning", "thinking")


def _message_text(message: Any, fallback: str) -> str:
    parts: list[str] = []
    content = getattr(message, "content", None)
    if isinstance(content, str):
        parts.append(content)
    elif isinstance(content, list):
        for block in content:
            if isinstance(block, str):
                parts.append(block)
            elif isinstance(block, Mapping) and block.get("type") in _TEXT_BLOCKS:
                parts.append(
                    str(block.get("text") or block.get("reasoning") or block.get("thinking") or "")
                )
    else:
        parts.append(fallback)
    for call in getattr(message, "tool_calls", None) or ():
        parts.append(str(call.get("name") or ""))
        parts.append(json.dumps(call.get("args") or {}, ensure_ascii=False))
    return "".join(parts)


def extract_result(response: Any) -> ResultInfo:
    """Read every generation of an ``LLMResult``.

    Usage comes, per generation, from ``message.usage_metadata``, else from the
    message's ``response_metadata`` (``token_usage``/``usage``) or the
    generation's ``generation_info``; when no generation carries any, from
    ``llm_output["token_usage"|"usage"]``. Usage for different prompts is summed;
    ``n>1`` candidates of one prompt that all repeat the same call-level usage
    (as OpenAI reports it) are counted once.
    """
    info = ResultInfo()
    texts: list[str] = []
    total: Usage | None = None
    for candidates in getattr(response, "generations", None) or ():
        prompt_usage: list[Usage] = []
        for gen in candidates:
            message = getattr(gen, "message", None)
            usage: Usage | None = None
            if message is not None:
                usage = usage_from_metadata(getattr(message, "usage_metadata", None))
                meta = getattr(message, "response_metadata", None) or {}
                if usage is None and meta:
                    usage = usage_from_payload(meta.get("token_usage") or meta.get("usage"))
                if info.model is None and meta:
                    info.model = _norm(
                        meta.get("model_name") or meta.get("model") or meta.get("model_id")
                    )
                texts.append(_message_text(message, getattr(gen, "text", "") or ""))
                for call in getattr(message, "tool_calls", None) or ():
                    name = call.get("name")
                    if name:
                        info.tool_names.append(str(name))
            else:
                texts.append(getattr(gen, "text", "") or "")
            gen_info = getattr(gen, "generation_info", None)
            if usage is None and gen_info:
                usage = usage_from_payload(gen_info.get("token_usage") or gen_info.get("usage"))
            if usage is not None:
                prompt_usage.append(usage)
        if prompt_usage:
            if len(prompt_usage) > 1 and all(u == prompt_usage[0] for u in prompt_usage):
                prompt_usage = prompt_usage[:1]
            for u in prompt_usage:
                total = u if total is None else total + u
    llm_output = getattr(response, "llm_output", None) or {}
    if total is None and llm_output:
        total = usage_from_payload(llm_output.get("token_usage") or llm_output.get("usage"))
    if info.model is None and llm_output:
        info.model = _norm(llm_output.get("model_name") or llm_output.get("model"))
    info.usage = total
    info.output_text = "".join(texts)
    return info
