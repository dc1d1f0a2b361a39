"""Small translation helpers shared by the LangChain adapters.

They only *extract* things from LangChain objects (model names, dimensions,
usage payloads, output text); every decision is left to the core.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any, TypeVar

from tokenward.errors import UsageParseError
from tokenward.integrations._common import BASE_URL_KEYS, MODEL_KEYS, guard
from tokenward.usage import Usage, provider_cost

logger = logging.getLogger("tokenward.integrations.langchain")
_T = TypeVar("_T")

__all__ = [
    "ResultInfo",
    "base_url_from_start",
    "dims_from_run",
    "extract_result",
    "generation_usage",
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
    dims: dict[str, Any] = dict(base) if base else {}
    base_tags = dims.pop("tags", None)
    merged_tags: dict[str, str] = dict(base_tags) if base_tags else {}
    if metadata:
        get = metadata.get
        for key, dim in _DIM_KEYS.items():
            value = get(key)
            if value is not None and value != "":
                # an explicit conversation_id beats a LangGraph thread_id
                if key == "thread_id" and get("conversation_id"):
                    continue
                if key == "lc_agent_name" and get("agent"):
                    continue
                dims[dim] = str(value)
        meta_tags = get("tags")
        if meta_tags and isinstance(meta_tags, Mapping):
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
    return dims


def _first_name(source: Mapping[str, Any]) -> str | None:
    """The first model name under one of :data:`MODEL_KEYS` in ``source`` (``_norm`` inlined:
    most keys are absent, and a run that names its model only in metadata probes them all)."""
    get = source.get
    for key in MODEL_KEYS:
        value = get(key)
        if value is not None and value != "":
            name = str(value)
            if name:
                return name
    return None


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
        name = _first_name(invocation_params)
        if name:
            return name
    if serialized:
        kwargs = serialized.get("kwargs")
        if kwargs and isinstance(kwargs, Mapping):
            name = _first_name(kwargs)
            if name:
                return name
    if metadata:
        return _norm(metadata.get("ls_model_name")) or None
    return None


def base_url_from_start(
    serialized: Mapping[str, Any] | None, invocation_params: Mapping[str, Any] | None
) -> str | None:
    """Where the model's client sends requests, when the run says (helps recognise local and
    self-hosted models)."""
    kwargs = serialized.get("kwargs") if serialized else None
    if type(kwargs) is not dict and not isinstance(kwargs, Mapping):  # dict: no ABC check
        kwargs = None
    for source in (invocation_params, kwargs):
        # one pass over the source's keys first: most runs name no endpoint at all
        if source and not _BASE_URL_KEYS.isdisjoint(source):
            for key in BASE_URL_KEYS:
                value = source.get(key)
                if isinstance(value, str) and value:
                    return value
    return None


#: Keys under which invocation params carry the caller's output cap, best first.
_MAX_OUTPUT_KEYS = (
    "max_completion_tokens",
    "max_tokens",
    "max_output_tokens",
    "max_new_tokens",
    "num_predict",
)
_BASE_URL_KEYS = frozenset(BASE_URL_KEYS)
_MAX_OUTPUT_KEY_SET = frozenset(_MAX_OUTPUT_KEYS)


def max_output_from_params(invocation_params: Mapping[str, Any] | None) -> int | None:
    """The caller's output cap (``max_tokens`` / ``max_completion_tokens`` / ...), if any."""
    if not invocation_params or _MAX_OUTPUT_KEY_SET.isdisjoint(invocation_params):
        return None
    for key in _MAX_OUTPUT_KEYS:
        value = invocation_params.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def _parsed(parse: Callable[[Any], _T], payload: Any) -> _T | None:
    """``parse(payload)``, or None (logged) when the payload is not usable usage."""
    try:
        return parse(payload)
    except UsageParseError:
        logger.debug("no usable usage in %r", type(payload).__name__, exc_info=True)
        return None


def _provider_usage(metadata: Mapping[str, Any] | None) -> Any:
    """The provider's own usage object kept in LangChain metadata (``response_metadata``,
    ``generation_info``, ``llm_output``): its ``token_usage`` (OpenAI-style) or ``usage``."""
    if not metadata:
        return None
    return metadata.get("token_usage") or metadata.get("usage")


def _with_provider_cost(usage: Usage, provider_usage: Any) -> Usage:
    """``usage`` with the cost the provider reported in its own usage object (OpenRouter's
    ``cost``), which LangChain's ``UsageMetadata`` has no field for."""
    if usage.reported_cost is not None or not provider_usage:
        return usage
    cost = _parsed(provider_cost, provider_usage)
    return usage if cost is None else replace(usage, reported_cost=cost)


def generation_usage(message: Any, generation_info: Mapping[str, Any] | None) -> Usage | None:
    """Usage of one generation, None when it reports none.

    LangChain's normalized ``message.usage_metadata`` first (plus a cost the provider
    reported beside it); else the provider's usage object in the message's
    ``response_metadata``, then in the generation's ``generation_info``.
    """
    return _generation_usage(
        getattr(message, "usage_metadata", None),
        _provider_usage(getattr(message, "response_metadata", None)),
        generation_info,
    )


#: LangChain's ``UsageMetadata`` -> Usage (the bound classmethod, looked up once)
_from_langchain = Usage.from_langchain


def _generation_usage(
    usage_metadata: Any, provider_usage: Any, generation_info: Mapping[str, Any] | None
) -> Usage | None:
    """:func:`generation_usage` from the message's fields, read once by the caller."""
    if usage_metadata:
        usage = _parsed(_from_langchain, usage_metadata)
        if usage is not None:
            if not provider_usage and generation_info:
                provider_usage = _provider_usage(generation_info)
            if not provider_usage or usage.reported_cost is not None:
                return usage  # most calls: no provider usage object beside LangChain's
            return _with_provider_cost(usage, provider_usage)
    for payload in (provider_usage, _provider_usage(generation_info)):
        if payload:
            usage = _parsed(Usage.from_any, payload)
            if usage:
                return usage
    return None


class ResultInfo:
    """What an ``LLMResult`` tells us: usage, response model, output text, tool names.

    ``output_text`` is only needed when no usage was reported (the core then counts it), so
    it is joined from the generations on first read, not for every call.
    """

    __slots__ = ("_outputs", "_text", "model", "tool_names", "usage")

    def __init__(self) -> None:
        self.usage: Usage | None = None
        self.model: str | None = None
        self.tool_names: list[str] = []
        self._outputs: list[tuple[Any, str]] = []  # (message or None, generation text)
        self._text: str | None = None

    @property
    def output_text(self) -> str:
        """The text of every generation (message content, reasoning, tool calls), joined."""
        if self._text is None:
            self._text = "".join(
                _message_text(m, text) if m is not None else text for m, text in self._outputs
            )
        return self._text


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
    (as OpenAI reports it) are counted once. A cost the provider reported in its
    usage object (OpenRouter) is kept as ``usage.reported_cost``. The core parsers
    receive the provider's usage object, never LangChain's containers.
    """
    info = ResultInfo()
    outputs = info._outputs
    total: Usage | None = None
    for candidates in getattr(response, "generations", None) or ():
        prompt_usage: list[Usage] = []
        for gen in candidates:
            message = getattr(gen, "message", None)
            generation_info = getattr(gen, "generation_info", None)
            if message is not None:
                meta = getattr(message, "response_metadata", None)
                usage = _generation_usage(
                    getattr(message, "usage_metadata", None),
                    _provider_usage(meta) if meta else None,
                    generation_info,
                )
                if info.model is None and meta:
                    info.model = _norm(
                        meta.get("model_name") or meta.get("model") or meta.get("model_id")
                    )
                outputs.append((message, getattr(gen, "text", "") or ""))
                for call in getattr(message, "tool_calls", None) or ():
                    name = call.get("name")
                    if name:
                        info.tool_names.append(str(name))
            else:
                usage = _generation_usage(None, None, generation_info)
                outputs.append((None, getattr(gen, "text", "") or ""))
            if usage is not None:
                prompt_usage.append(usage)
        if prompt_usage:
            if len(prompt_usage) > 1 and all(u == prompt_usage[0] for u in prompt_usage):
                prompt_usage = prompt_usage[:1]
            for u in prompt_usage:
                total = u if total is None else total + u
    llm_output = getattr(response, "llm_output", None) or {}
    payload = _provider_usage(llm_output) if llm_output else None
    if payload:
        if total is None:
            total = _parsed(Usage.from_any, payload) or None
        else:  # the call's usage object may carry the cost the generations' did not
            total = _with_provider_cost(total, payload)
    if info.model is None and llm_output:
        info.model = _norm(llm_output.get("model_name") or llm_output.get("model"))
    info.usage = total
    return info
