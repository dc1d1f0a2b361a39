"""One small parser per provider usage shape, each registered with how to recognize it.

Every parser reads the usage mapping itself (the registry removed the response envelope):
``None`` counts as 0, counts are ints (or integral floats / digit strings) >= 0, details
are never larger than their total; anything else raises UsageParseError naming the field.
Fixtures of each shape, taken from the providers' documentation, are in tests/test_usage.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from tokenward.errors import UsageParseError
from tokenward.usage._fields import count, mapping_of, money, sub
from tokenward.usage._record import Usage
from tokenward.usage._registry import GENERIC, PROVIDER, REFINED, REPORTED_COST, register_shape

__all__ = ["provider_cost"]


def _build(
    *,
    input: int,
    output: int,
    cache_read: int = 0,
    cache_write_5m: int = 0,
    cache_write_1h: int = 0,
    reasoning: int = 0,
    audio_input: int = 0,
    audio_output: int = 0,
    image_input: int = 0,
    reported_cost: Decimal | None = None,
    names: Mapping[str, str],
) -> Usage:
    """The Usage, once every detail fits in its total (``names``: our field -> payload field)."""
    cache = cache_read + cache_write_5m + cache_write_1h
    if (
        cache > input
        or audio_input > input
        or image_input > input
        or reasoning + audio_output > output
    ):
        _raise_too_large(
            (cache_read, "cache_read", "input"),
            (cache_write_5m + cache_write_1h, "cache_write", "input"),
            (cache, "cache_write", "input"),
            (audio_input, "audio_input", "input"),
            (image_input, "image_input", "input"),
            (reasoning, "reasoning", "output"),
            (audio_output, "audio_output", "output"),
            (reasoning + audio_output, "reasoning", "output"),
            totals={"input": input, "output": output},
            names=names,
        )
    return Usage(
        input,
        output,
        cache_read,
        cache_write_5m,
        cache_write_1h,
        reasoning,
        audio_input,
        audio_output,
        image_input,
        False,
        reported_cost,
    )


def _raise_too_large(
    *parts: tuple[int, str, str], totals: Mapping[str, int], names: Mapping[str, str]
) -> None:
    for part, ours, total_name in parts:
        total = totals[total_name]
        if part > total:
            field, total_field = names.get(ours, ours), names[total_name]
            raise UsageParseError(
                f"usage field {field!r} ({part}) is larger than {total_field!r} ({total}); "
                "pass the provider's usage payload unchanged",
                field=field,
            )


def _split_writes(
    total: int, five: int, one: int, total_field: str, split_field: str
) -> tuple[int, int]:
    """Reconcile a total cache-write count with a per-TTL split (remainder -> 5 minutes)."""
    if five + one > total:
        if total == 0:
            return five, one  # only the split was reported
        raise UsageParseError(
            f"usage field {split_field!r} ({five + one}) is larger than {total_field!r} ({total})",
            field=split_field,
        )
    return five + (total - five - one), one


def _cache_added_back(
    uncached: int,
    output: int,
    cache_read: int,
    five: int,
    one: int,
    names: Mapping[str, str],
) -> Usage:
    """Anthropic's and Bedrock's convention: input counted without cache reads and writes."""
    return _build(
        input=uncached + cache_read + five + one,
        output=output,
        cache_read=cache_read,
        cache_write_5m=five,
        cache_write_1h=one,
        names=names,
    )


def _list(value: Any, field: str) -> list[Mapping[str, Any]]:
    """A list of objects (per-modality or per-TTL details); ``None`` is empty."""
    if value is None:
        return []
    if not isinstance(value, (list, tuple)):
        raise UsageParseError(f"usage field {field!r} must be a list", field=field)
    items = []
    for i, item in enumerate(value):
        entry = mapping_of(item)
        if entry is None:
            raise UsageParseError(f"usage field {field}[{i}] must be an object", field=field)
        items.append(entry)
    return items


# ------------------------------------------------------------------------- OpenAI and alike
_CHAT_NAMES = {
    "input_details": "prompt_tokens_details",
    "output_details": "completion_tokens_details",
    "input": "prompt_tokens",
    "output": "completion_tokens",
    "cache_read": "prompt_tokens_details.cached_tokens",
    "cache_write": "prompt_tokens_details.cache_write_tokens",
    "audio_input": "prompt_tokens_details.audio_tokens",
    "image_input": "prompt_tokens_details.image_tokens",
    "reasoning": "completion_tokens_details.reasoning_tokens",
    "audio_output": "completion_tokens_details.audio_tokens",
}
_RESPONSES_NAMES = {
    "input_details": "input_tokens_details",
    "output_details": "output_tokens_details",
    "input": "input_tokens",
    "output": "output_tokens",
    "cache_read": "input_tokens_details.cached_tokens",
    "cache_write": "input_tokens_details.cache_write_tokens",
    "audio_input": "input_tokens_details.audio_tokens",
    "image_input": "input_tokens_details.image_tokens",
    "reasoning": "output_tokens_details.reasoning_tokens",
    "audio_output": "output_tokens_details.audio_tokens",
}


def _openai_like(
    data: Mapping[str, Any],
    names: Mapping[str, str],
    *,
    cache_read: Any = None,
    reported_cost: Decimal | None = None,
) -> Usage:
    """Chat Completions and Responses API usage: one layout, two sets of key names."""
    inp, out = names["input"], names["output"]
    in_details = sub(data, names["input_details"], names["input_details"])
    out_details = sub(data, names["output_details"], names["output_details"])
    if cache_read is None:
        cache_read = in_details.get("cached_tokens")
    return _build(
        input=count(data.get(inp), inp),
        output=count(data.get(out), out),
        cache_read=count(cache_read, names["cache_read"]),
        cache_write_5m=count(in_details.get("cache_write_tokens"), names["cache_write"]),
        audio_input=count(in_details.get("audio_tokens"), names["audio_input"]),
        image_input=count(in_details.get("image_tokens"), names["image_input"]),
        reasoning=count(out_details.get("reasoning_tokens"), names["reasoning"]),
        audio_output=count(out_details.get("audio_tokens"), names["audio_output"]),
        reported_cost=reported_cost,
        names=names,
    )


@register_shape(
    "openai-chat",
    summary="OpenAI Chat Completions and embeddings; Mistral, vLLM and other OpenAI-compatible APIs",
    markers=[("prompt_tokens", "completion_tokens")],
    rank=PROVIDER,
    families=["openai"],
)
def openai_chat(data: Mapping[str, Any]) -> Usage:
    # Mistral's `prompt_audio_seconds` is a duration, not tokens: not read
    return _openai_like(data, _CHAT_NAMES)


@register_shape(
    "openai-responses",
    summary="OpenAI Responses API",
    markers=[("input_tokens", "output_tokens"), ("input_tokens_details", "output_tokens_details")],
    rank=REFINED,
    families=["openai"],
    paths=[("usage",), ("response", "usage")],  # the response itself; a response.completed event
)
def openai_responses(data: Mapping[str, Any]) -> Usage:
    return _openai_like(data, _RESPONSES_NAMES)


# https://api-docs.deepseek.com/guides/kv_cache: prompt_tokens = prompt_cache_hit_tokens +
# prompt_cache_miss_tokens; hits are billed at the cache price
@register_shape(
    "deepseek",
    summary="DeepSeek chat (context caching on disk)",
    markers=[
        ("prompt_tokens", "completion_tokens"),
        ("prompt_cache_hit_tokens", "prompt_cache_miss_tokens"),
    ],
    rank=REFINED,
    families=["openai"],
)
def deepseek(data: Mapping[str, Any]) -> Usage:
    hits = data.get("prompt_cache_hit_tokens")
    if hits is None:
        return _openai_like(data, _CHAT_NAMES)
    return _openai_like(
        data, {**_CHAT_NAMES, "cache_read": "prompt_cache_hit_tokens"}, cache_read=hits
    )


def provider_cost(payload: Any) -> Decimal | None:
    """The cost a provider reported in its usage object (a mapping or SDK object), in USD;
    ``None`` when it reports none. Raises UsageParseError naming the field when malformed.

    OpenRouter (https://openrouter.ai/docs/use-cases/usage-accounting) reports ``cost``, the
    credits (USD) charged to the account. With BYOK (``is_byok``, the user's own provider key)
    that is OpenRouter's fee only and the provider bills ``cost_details.upstream_inference_cost``
    on the user's key, so the call cost the sum of both.
    """
    data = payload if type(payload) is dict else mapping_of(payload)
    if data is None:
        return None
    value = data.get("cost")
    if value is None:
        return None
    total = money(value, "cost")
    upstream = sub(data, "cost_details", "cost_details").get("upstream_inference_cost")
    if upstream is not None and data.get("is_byok") is not False:
        total += money(upstream, "cost_details.upstream_inference_cost")
    return total


@register_shape(
    "openrouter",
    summary="OpenRouter chat completions with usage accounting (cost in USD)",
    markers=[("prompt_tokens", "completion_tokens"), ("cost", "cost_details")],
    rank=REPORTED_COST,
    families=["openai"],
)
def openrouter(data: Mapping[str, Any]) -> Usage:
    return _openai_like(data, _CHAT_NAMES, reported_cost=provider_cost(data))


@register_shape(
    "openrouter-responses",
    summary="OpenRouter Responses API with usage accounting (cost in USD)",
    markers=[("input_tokens", "output_tokens"), ("cost", "cost_details")],
    rank=REPORTED_COST,
    families=["openai"],
)
def openrouter_responses(data: Mapping[str, Any]) -> Usage:
    return _openai_like(data, _RESPONSES_NAMES, reported_cost=provider_cost(data))


# ---------------------------------------------------------------------------------- Anthropic
@register_shape(
    "anthropic",
    summary="Anthropic Messages, also through Bedrock InvokeModel and Vertex",
    markers=[
        ("input_tokens", "output_tokens"),
        ("cache_read_input_tokens", "cache_creation_input_tokens", "cache_creation"),
    ],
    rank=REFINED,
    families=["anthropic", "bedrock"],
    paths=[("usage",), ("message", "usage")],  # the message; a message_start stream event
)
def anthropic(data: Mapping[str, Any]) -> Usage:
    written = count(data.get("cache_creation_input_tokens"), "cache_creation_input_tokens")
    split = sub(data, "cache_creation", "cache_creation")
    five = count(split.get("ephemeral_5m_input_tokens"), "cache_creation.ephemeral_5m_input_tokens")
    one = count(split.get("ephemeral_1h_input_tokens"), "cache_creation.ephemeral_1h_input_tokens")
    five, one = _split_writes(written, five, one, "cache_creation_input_tokens", "cache_creation")
    return _cache_added_back(
        count(data.get("input_tokens"), "input_tokens"),
        count(data.get("output_tokens"), "output_tokens"),
        count(data.get("cache_read_input_tokens"), "cache_read_input_tokens"),
        five,
        one,
        names={
            "input": "input_tokens",
            "output": "output_tokens",
            "cache_read": "cache_read_input_tokens",
            "cache_write": "cache_creation_input_tokens",
            "reasoning": "output_tokens",
        },
    )


# ------------------------------------------------------------------------------------ Gemini
_GEMINI_CAMEL = {
    "prompt": "promptTokenCount",
    "candidates": "candidatesTokenCount",
    "cached": "cachedContentTokenCount",
    "thoughts": "thoughtsTokenCount",
    "tool": "toolUsePromptTokenCount",
    "details": "promptTokensDetails",
    "tool_details": "toolUsePromptTokensDetails",
    "out_details": "candidatesTokensDetails",
    "count": "tokenCount",
}
_GEMINI_SNAKE = {
    "prompt": "prompt_token_count",
    "candidates": "candidates_token_count",
    "cached": "cached_content_token_count",
    "thoughts": "thoughts_token_count",
    "tool": "tool_use_prompt_token_count",
    "details": "prompt_tokens_details",
    "tool_details": "tool_use_prompt_tokens_details",
    "out_details": "candidates_tokens_details",
    "count": "token_count",
}


def _modalities(items: list[Mapping[str, Any]], field: str, count_key: str) -> dict[str, int]:
    """Tokens per modality (``TEXT``, ``AUDIO``, ``IMAGE``…) of a Gemini details list."""
    counts: dict[str, int] = {}
    for i, entry in enumerate(items):
        modality = entry.get("modality")
        modality = getattr(modality, "value", modality)  # the google-genai SDK's enum
        name = str(modality or "").upper().rsplit(".", 1)[-1]
        tokens = count(entry.get(count_key), f"{field}[{i}].{count_key}")
        counts[name] = counts.get(name, 0) + tokens
    return counts


# https://ai.google.dev/api/generate-content#UsageMetadata: thoughts are billed as output but
# not counted in candidatesTokenCount; tool-use prompt tokens are input beside promptTokenCount
@register_shape(
    "gemini",
    summary="Google Gemini / Vertex AI usageMetadata (REST camelCase or SDK snake_case)",
    markers=[
        (
            "promptTokenCount",
            "candidatesTokenCount",
            "totalTokenCount",
            "cachedContentTokenCount",
            "thoughtsTokenCount",
            "prompt_token_count",
            "candidates_token_count",
            "total_token_count",
            "cached_content_token_count",
            "thoughts_token_count",
        )
    ],
    rank=PROVIDER,
    families=["gemini"],
    paths=[("usageMetadata",), ("usage_metadata",)],
)
def gemini(data: Mapping[str, Any]) -> Usage:
    k = _GEMINI_SNAKE if any(key in data for key in _GEMINI_SNAKE.values()) else _GEMINI_CAMEL
    thoughts = count(data.get(k["thoughts"]), k["thoughts"])
    inputs = _modalities(_list(data.get(k["details"]), k["details"]), k["details"], k["count"])
    for name, tokens in _modalities(
        _list(data.get(k["tool_details"]), k["tool_details"]), k["tool_details"], k["count"]
    ).items():
        inputs[name] = inputs.get(name, 0) + tokens
    outputs = _modalities(
        _list(data.get(k["out_details"]), k["out_details"]), k["out_details"], k["count"]
    )
    return _build(
        input=count(data.get(k["prompt"]), k["prompt"]) + count(data.get(k["tool"]), k["tool"]),
        output=count(data.get(k["candidates"]), k["candidates"]) + thoughts,
        cache_read=count(data.get(k["cached"]), k["cached"]),
        reasoning=thoughts,
        audio_input=inputs.get("AUDIO", 0),
        image_input=inputs.get("IMAGE", 0),
        audio_output=outputs.get("AUDIO", 0),
        names={
            "input": k["prompt"],
            "output": k["candidates"],
            "cache_read": k["cached"],
            "cache_write": k["cached"],
            "reasoning": k["thoughts"],
            "audio_input": k["details"],
            "image_input": k["details"],
            "audio_output": k["out_details"],
        },
    )


# ----------------------------------------------------------------------------------- Bedrock
# Bedrock counts input without cache reads and writes (totalTokens = all four), Anthropic's
# convention: https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_TokenUsage.html
_BEDROCK_NAMES = {
    "input": "inputTokens",
    "output": "outputTokens",
    "cache_read": "cacheReadInputTokens",
    "cache_write": "cacheWriteInputTokens",
    "reasoning": "outputTokens",
}


@register_shape(
    "bedrock-converse",
    summary="AWS Bedrock Converse / ConverseStream",
    markers=[("inputTokens", "outputTokens")],
    rank=PROVIDER,
    families=["bedrock"],
    paths=[("usage",), ("metadata", "usage")],  # the response; a ConverseStream metadata event
)
def bedrock_converse(data: Mapping[str, Any]) -> Usage:
    written = count(data.get("cacheWriteInputTokens"), "cacheWriteInputTokens")
    five = one = 0
    for i, entry in enumerate(_list(data.get("cacheDetails"), "cacheDetails")):
        tokens = count(entry.get("inputTokens"), f"cacheDetails[{i}].inputTokens")
        if str(entry.get("ttl") or "5m").lower() in ("1h", "60m", "3600s", "one_hour"):
            one += tokens
        else:
            five += tokens
    five, one = _split_writes(written, five, one, "cacheWriteInputTokens", "cacheDetails")
    return _cache_added_back(
        count(data.get("inputTokens"), "inputTokens"),
        count(data.get("outputTokens"), "outputTokens"),
        count(data.get("cacheReadInputTokens"), "cacheReadInputTokens"),
        five,
        one,
        names=_BEDROCK_NAMES,
    )


_INVOKE_HEADERS = {
    "input": "x-amzn-bedrock-input-token-count",
    "output": "x-amzn-bedrock-output-token-count",
    "cache_read": "x-amzn-bedrock-cache-read-input-token-count",
    "cache_write": "x-amzn-bedrock-cache-write-input-token-count",
    "reasoning": "x-amzn-bedrock-output-token-count",
}


@register_shape(
    "bedrock-invoke",
    summary="AWS Bedrock InvokeModel token-count response headers (every model family)",
    markers=[(_INVOKE_HEADERS["input"], _INVOKE_HEADERS["output"])],
    rank=PROVIDER,
    families=["bedrock"],
    paths=[("ResponseMetadata", "HTTPHeaders")],  # boto3's invoke_model() response
)
def bedrock_invoke(data: Mapping[str, Any]) -> Usage:
    n = _INVOKE_HEADERS
    return _cache_added_back(
        count(data.get(n["input"]), n["input"]),
        count(data.get(n["output"]), n["output"]),
        count(data.get(n["cache_read"]), n["cache_read"]),
        count(data.get(n["cache_write"]), n["cache_write"]),
        0,
        names=n,
    )


_INVOKE_METRICS = {
    "input": "inputTokenCount",
    "output": "outputTokenCount",
    "cache_read": "cacheReadInputTokenCount",
    "cache_write": "cacheWriteInputTokenCount",
    "reasoning": "outputTokenCount",
}


@register_shape(
    "bedrock-invoke-stream",
    summary="AWS Bedrock InvokeModelWithResponseStream, the last chunk's invocation metrics",
    markers=[(_INVOKE_METRICS["input"], _INVOKE_METRICS["output"])],
    rank=PROVIDER,
    families=["bedrock"],
    paths=[("amazon-bedrock-invocationMetrics",)],
)
def bedrock_invoke_stream(data: Mapping[str, Any]) -> Usage:
    n = _INVOKE_METRICS
    return _cache_added_back(
        count(data.get(n["input"]), n["input"]),
        count(data.get(n["output"]), n["output"]),
        count(data.get(n["cache_read"]), n["cache_read"]),
        count(data.get(n["cache_write"]), n["cache_write"]),
        0,
        names=n,
    )


# ------------------------------------------------------------------------------------ Cohere
# Cohere v2 `usage` (v1: `meta`): `billed_units` are the tokens Cohere bills, `tokens` all it
# processed (with its prompt template). Billed units are what a price applies to, so they win.
# `cached_tokens` counts against the processed prompt, not the billed one, and Cohere prices no
# cache reads: it is not read (as cache_read it could exceed the billed input).
@register_shape(
    "cohere",
    summary="Cohere chat and embed (v2 usage, v1 meta)",
    markers=[("billed_units", "tokens")],
    rank=PROVIDER,
    families=["cohere"],
    paths=[("usage",), ("meta",)],
)
def cohere(data: Mapping[str, Any]) -> Usage:
    billed = sub(data, "billed_units", "billed_units")
    processed = sub(data, "tokens", "tokens")
    names = {"input": "billed_units.input_tokens", "output": "billed_units.output_tokens"}
    values = {}
    for ours, key in (("input", "input_tokens"), ("output", "output_tokens")):
        value = billed.get(key)
        if value is None:
            value = processed.get(key)
            names[ours] = f"tokens.{key}"
        values[ours] = count(value, names[ours])
    return _build(input=values["input"], output=values["output"], names=names)


# ------------------------------------------------------------------------------------ Ollama
# https://github.com/ollama/ollama/blob/main/docs/api.md: the native API's final response
# counts the prompt (prompt_eval_count) and the generated tokens (eval_count) beside durations
@register_shape(
    "ollama",
    summary="Ollama native API (/api/chat, /api/generate); local models, priced at $0",
    markers=[("prompt_eval_count", "eval_count")],
    rank=PROVIDER,
)
def ollama(data: Mapping[str, Any]) -> Usage:
    return _build(
        input=count(data.get("prompt_eval_count"), "prompt_eval_count"),
        output=count(data.get("eval_count"), "eval_count"),
        names={"input": "prompt_eval_count", "output": "eval_count"},
    )


# --------------------------------------------------------------------------------- LangChain
_LANGCHAIN_NAMES = {
    "input": "input_tokens",
    "output": "output_tokens",
    "cache_read": "input_token_details.cache_read",
    "cache_write": "input_token_details.cache_creation",
    "audio_input": "input_token_details.audio",
    "reasoning": "output_token_details.reasoning",
    "audio_output": "output_token_details.audio",
}


@register_shape(
    "langchain",
    summary=(
        "LangChain UsageMetadata, and plain input_tokens/output_tokens from any provider "
        "(the same meaning everywhere)"
    ),
    markers=[("input_tokens", "output_tokens", "input_token_details", "output_token_details")],
    rank=GENERIC,
    families=["langchain"],
    paths=[("usage",), ("usage_metadata",)],
)
def langchain(data: Mapping[str, Any]) -> Usage:
    # the counts and the detail objects are read as they are when already in normal form
    # (what every LangChain integration reports); the readers only see anything else
    inp = data.get("input_tokens")
    if type(inp) is not int or inp < 0:
        inp = count(inp, "input_tokens")
    out = data.get("output_tokens")
    if type(out) is not int or out < 0:
        out = count(out, "output_tokens")
    details = data.get("input_token_details")
    if details is not None and type(details) is not dict:
        details = sub(data, "input_token_details", "input_token_details")
    out_details = data.get("output_token_details")
    if out_details is not None and type(out_details) is not dict:
        out_details = sub(data, "output_token_details", "output_token_details")
    if not details and not out_details:
        return Usage(inp, out)  # most calls report no details: nothing to check them against
    cache_read = five = one = audio = reasoning = audio_out = 0
    if details:
        cache_read = count(details.get("cache_read"), "input_token_details.cache_read")
        written = count(details.get("cache_creation"), "input_token_details.cache_creation")
        five = count(
            details.get("ephemeral_5m_input_tokens"),
            "input_token_details.ephemeral_5m_input_tokens",
        )
        one = count(
            details.get("ephemeral_1h_input_tokens"),
            "input_token_details.ephemeral_1h_input_tokens",
        )
        # langchain-anthropic reports both the total and the per-TTL split (some versions zero
        # the total), others only one of them: writes the split leaves out are 5-minute writes
        five += max(0, written - five - one)
        audio = count(details.get("audio"), "input_token_details.audio")
    if out_details:
        reasoning = count(out_details.get("reasoning"), "output_token_details.reasoning")
        audio_out = count(out_details.get("audio"), "output_token_details.audio")
    return _build(
        input=inp,
        output=out,
        cache_read=cache_read,
        cache_write_5m=five,
        cache_write_1h=one,
        audio_input=audio,
        reasoning=reasoning,
        audio_output=audio_out,
        names=_LANGCHAIN_NAMES,
    )
