"""Usage: one normalized record of the tokens a model call consumed.

Conventions (the same as LangChain's ``UsageMetadata`` and OpenAI's chat API):

* ``input`` counts **every** prompt token, including the cached ones
  (``cache_read``, ``cache_write_5m``, ``cache_write_1h``), audio and image input.
  Anthropic reports ``input_tokens`` *without* cache tokens; ``from_anthropic``
  adds them back.
* ``output`` counts every generated token, including ``reasoning`` and
  ``audio_output``.
* The detail fields are subsets of ``input``/``output``; the parsers below
  guarantee ``cache_read + cache_write <= input`` and ``reasoning <= output``.
* ``estimated`` is True when any part was counted locally instead of reported
  by the provider. Adding an estimated usage to an exact one gives an estimate.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from tokenward.errors import UsageParseError

__all__ = ["TOKEN_FIELDS", "Usage"]

#: The token kinds a :class:`Usage` counts, in storage and display order. Catalog prices,
#: ledger columns and report tables use the same names.
TOKEN_FIELDS: tuple[str, ...] = (
    "input",
    "output",
    "cache_read",
    "cache_write_5m",
    "cache_write_1h",
    "reasoning",
    "audio_input",
    "audio_output",
    "image_input",
)
_COUNT_FIELDS = TOKEN_FIELDS
_new_usage = object.__new__
_set = object.__setattr__


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts of one model call (or a sum of calls). Immutable; supports ``+``."""

    input: int = 0
    output: int = 0
    cache_read: int = 0
    cache_write_5m: int = 0
    cache_write_1h: int = 0
    reasoning: int = 0
    audio_input: int = 0
    audio_output: int = 0
    image_input: int = 0
    estimated: bool = False
    #: a cost the provider itself reported for the call (USD, e.g. OpenRouter's ``usage.cost``);
    #: kept beside tokenward's own price, never mixed with it. ``None`` when not reported.
    reported_cost: Decimal | None = None

    def __post_init__(self) -> None:
        cost = self.reported_cost
        if cost is not None and (type(cost) is not Decimal or not cost.is_finite() or cost < 0):
            raise TypeError(
                f"Usage.reported_cost must be a finite Decimal >= 0 or None, got {cost!r}"
            )
        # fast path: plain non-negative ints (the only thing parsers and the core build)
        for value in (
            self.input,
            self.output,
            self.cache_read,
            self.cache_write_5m,
            self.cache_write_1h,
            self.reasoning,
            self.audio_input,
            self.audio_output,
            self.image_input,
        ):
            if type(value) is not int or value < 0:
                self._validate()
                return

    def _validate(self) -> None:
        for name in _COUNT_FIELDS:
            value = getattr(self, name)
            if type(value) is not int:
                if isinstance(value, bool) or not isinstance(value, int):
                    raise TypeError(
                        f"Usage.{name} must be an int, got {type(value).__name__} {value!r}"
                    )
            if value < 0:
                raise ValueError(f"Usage.{name} must be >= 0, got {value}")

    @classmethod
    def _trusted(
        cls,
        input: int,
        output: int,
        cache_read: int = 0,
        cache_write_5m: int = 0,
        cache_write_1h: int = 0,
        reasoning: int = 0,
        audio_input: int = 0,
        audio_output: int = 0,
        image_input: int = 0,
        estimated: bool = False,
        reported_cost: Decimal | None = None,
    ) -> Usage:
        """Build without validation: for callers that already checked every count is an int >= 0."""
        u = _new_usage(cls)
        _set(u, "input", input)
        _set(u, "output", output)
        _set(u, "cache_read", cache_read)
        _set(u, "cache_write_5m", cache_write_5m)
        _set(u, "cache_write_1h", cache_write_1h)
        _set(u, "reasoning", reasoning)
        _set(u, "audio_input", audio_input)
        _set(u, "audio_output", audio_output)
        _set(u, "image_input", image_input)
        _set(u, "estimated", estimated)
        _set(u, "reported_cost", reported_cost)
        return u

    @property
    def total(self) -> int:
        """Input plus output tokens."""
        return self.input + self.output

    @property
    def cache_write(self) -> int:
        """Tokens written to the prompt cache (both TTLs)."""
        return self.cache_write_5m + self.cache_write_1h

    @property
    def uncached_input(self) -> int:
        """Input tokens billed at the plain input price."""
        return max(0, self.input - self.cache_read - self.cache_write)

    def __add__(self, other: object) -> Usage:
        if not isinstance(other, Usage):
            return NotImplemented
        return Usage._trusted(  # sums of validated counts stay valid
            input=self.input + other.input,
            output=self.output + other.output,
            cache_read=self.cache_read + other.cache_read,
            cache_write_5m=self.cache_write_5m + other.cache_write_5m,
            cache_write_1h=self.cache_write_1h + other.cache_write_1h,
            reasoning=self.reasoning + other.reasoning,
            audio_input=self.audio_input + other.audio_input,
            audio_output=self.audio_output + other.audio_output,
            image_input=self.image_input + other.image_input,
            estimated=self.estimated or other.estimated,
            # a sum is reported only when every part was (a partial sum would mislead)
            reported_cost=(
                self.reported_cost + other.reported_cost
                if self.reported_cost is not None and other.reported_cost is not None
                else None
            ),
        )

    def __radd__(self, other: object) -> Usage:
        # lets sum(usages) work with its default start of 0
        if other == 0:
            return self
        return NotImplemented

    def __bool__(self) -> bool:
        return self.total > 0

    def to_dict(self) -> dict[str, int | bool | str]:
        """Plain dict of all fields (for JSON, storage); ``reported_cost`` only when reported."""
        out: dict[str, int | bool | str] = {
            "input": self.input,
            "output": self.output,
            "cache_read": self.cache_read,
            "cache_write_5m": self.cache_write_5m,
            "cache_write_1h": self.cache_write_1h,
            "reasoning": self.reasoning,
            "audio_input": self.audio_input,
            "audio_output": self.audio_output,
            "image_input": self.image_input,
            "estimated": self.estimated,
        }
        if self.reported_cost is not None:
            out["reported_cost"] = str(self.reported_cost)
        return out

    # -- provider parsers (implemented below the class) ------------------------------------
    @classmethod
    def from_openai(cls, payload: Any) -> Usage:
        """OpenAI usage: Chat Completions (``prompt_tokens``…, ``*_tokens_details``), Responses API
        (``input_tokens``, ``input_tokens_details.cached_tokens``…) or embeddings. Accepts the
        response itself (``{"usage": {...}}``) or SDK objects. DeepSeek's ``prompt_cache_hit_tokens``
        is understood too."""
        return _from_openai(payload)

    @classmethod
    def from_anthropic(cls, payload: Any) -> Usage:
        """Anthropic Messages usage. Its ``input_tokens`` excludes cache reads and writes; they are
        added back so ``input`` counts every prompt token. ``cache_creation`` splits writes into
        5-minute and 1-hour TTLs (without it, all writes are 5-minute)."""
        return _from_anthropic(payload)

    @classmethod
    def from_gemini(cls, payload: Any) -> Usage:
        """Gemini ``usageMetadata`` (camelCase REST or snake_case SDK). ``thoughtsTokenCount`` is billed
        as output but not included in ``candidatesTokenCount``: output = candidates + thoughts,
        reasoning = thoughts. ``toolUsePromptTokenCount`` adds to input. Audio/image input from
        ``promptTokensDetails`` modalities."""
        return _from_gemini(payload)

    @classmethod
    def from_bedrock(cls, payload: Any) -> Usage:
        """Bedrock Converse ``usage``. ``inputTokens`` excludes ``cacheReadInputTokens`` and
        ``cacheWriteInputTokens`` (AWS reports them separately, like Anthropic); they are added
        back. ``cacheDetails`` (per-TTL writes) splits 5m/1h."""
        return _from_bedrock(payload)

    @classmethod
    def from_langchain(cls, payload: Any) -> Usage:
        """LangChain ``UsageMetadata`` dict (``input_tokens`` already includes cache tokens) with
        ``input_token_details`` {cache_read, cache_creation, audio, ephemeral_5m_input_tokens,
        ephemeral_1h_input_tokens} and ``output_token_details`` {reasoning, audio}."""
        return _from_langchain(payload)

    @classmethod
    def from_any(cls, payload: Any) -> Usage:
        """Detect the provider shape from its keys and parse it. Accepts dicts, SDK/pydantic
        objects, LangChain messages/results and wrappers (``{"usage": …}``, ``usage_metadata``,
        ``token_usage``, ``llm_output``, ``response_metadata``, ``raw``…). Raises
        :class:`~tokenward.errors.UsageParseError` when no usage can be found."""
        return _from_any(payload)


# =============================================================================================
# Provider parsers. Every parser: None -> 0, ints (or integral floats / digit strings) >= 0,
# details never larger than their total; anything else raises UsageParseError naming the field.
# =============================================================================================


_MISSING = object()


class _AttrView(Mapping[str, Any]):
    """Read-only mapping view of an object's public attributes (SDK/pydantic objects, dataclasses).

    Attributes are read directly (no ``model_dump``), so subclass fields that a declared field
    type would drop on serialization (LangChain's ``ChatGeneration.message``) stay visible and
    large responses are not copied. ``model_dump()``/``to_dict()`` is only a fallback for keys
    that are not attributes. Methods are not values.
    """

    __slots__ = ("_dump", "_obj")

    def __init__(self, obj: Any) -> None:
        self._obj = obj
        self._dump: Mapping[str, Any] | None = None

    def _dumped(self) -> Mapping[str, Any]:
        if self._dump is None:
            data: Any = None
            for name in ("model_dump", "to_dict", "dict"):
                method = getattr(self._obj, name, None)
                if callable(method):
                    try:
                        data = method()
                    except Exception:  # noqa: BLE001 - a broken dump just means "no extra keys"
                        data = None
                    if isinstance(data, Mapping):
                        break
            self._dump = data if isinstance(data, Mapping) else {}
        return self._dump

    def __getitem__(self, key: str) -> Any:
        if key.startswith("_"):
            raise KeyError(key)
        try:
            value = getattr(self._obj, key)
        except AttributeError:
            value = _MISSING
        except Exception:  # noqa: BLE001 - a property that raises is not usage
            raise KeyError(key) from None
        if value is _MISSING or (callable(value) and not isinstance(value, type)):
            dumped = self._dumped()
            if key in dumped:
                return dumped[key]
            raise KeyError(key)
        return value

    def __iter__(self) -> Iterator[str]:
        fields_ = getattr(type(self._obj), "model_fields", None)
        if isinstance(fields_, Mapping):
            keys = list(fields_)
            keys += list(getattr(self._obj, "__pydantic_extra__", None) or ())
        elif hasattr(self._obj, "__dict__"):
            keys = list(vars(self._obj))
        else:
            keys = [k for k in dir(self._obj) if not callable(getattr(self._obj, k, None))]
        return iter([k for k in keys if not k.startswith("_")] or list(self._dumped()))

    def __len__(self) -> int:
        return sum(1 for _ in self)


def _as_mapping(obj: Any) -> Mapping[str, Any] | None:
    """A mapping view of dicts, pydantic models, dataclasses, SDK objects; None for scalars."""
    if obj is None or isinstance(obj, (str, bytes, int, float, bool, list, tuple)):
        return None
    if isinstance(obj, Mapping):
        return obj
    return _AttrView(obj)


def _get(data: Mapping[str, Any] | None, *keys: str) -> Any:
    """First present, non-None value among ``keys``."""
    if data is None:
        return None
    for key in keys:
        value = data.get(key, None) if isinstance(data, Mapping) else None
        if value is not None:
            return value
    return None


def _count(value: Any, field: str) -> int:
    """Validate one token count."""
    if value is None:
        return 0
    if isinstance(value, bool):
        raise UsageParseError(
            f"usage field {field!r} must be a token count, got {value!r}", field=field
        )
    if isinstance(value, int):
        result = value
    elif isinstance(value, float):
        if not value.is_integer():
            raise UsageParseError(
                f"usage field {field!r} must be a whole number, got {value!r}", field=field
            )
        result = int(value)
    elif isinstance(value, str):
        text = value.strip()
        if not text.isdigit():
            raise UsageParseError(
                f"usage field {field!r} must be a non-negative integer, got {value!r}", field=field
            )
        result = int(text)
    else:
        raise UsageParseError(
            f"usage field {field!r} must be a token count, got {type(value).__name__}", field=field
        )
    if result < 0:
        raise UsageParseError(f"usage field {field!r} must be >= 0, got {result}", field=field)
    return result


def _sub(data: Mapping[str, Any] | None, key: str, field: str) -> Mapping[str, Any] | None:
    value = _get(data, key)
    if value is None:
        return None
    mapping = _as_mapping(value)
    if mapping is None:
        raise UsageParseError(
            f"usage field {field!r} must be an object, got {value!r}", field=field
        )
    return mapping


def _check_part(part: int, total: int, part_field: str, total_field: str) -> None:
    if part > total:
        raise UsageParseError(
            f"usage field {part_field!r} ({part}) is larger than {total_field!r} ({total})",
            field=part_field,
        )


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
    names: Mapping[str, str],
) -> Usage:
    """Check the detail-vs-total invariants and build the Usage (names: our field -> payload field)."""
    n = names
    _check_part(cache_read, input, n["cache_read"], n["input"])
    _check_part(cache_write_5m + cache_write_1h, input, n["cache_write"], n["input"])
    _check_part(cache_read + cache_write_5m + cache_write_1h, input, n["cache_write"], n["input"])
    _check_part(audio_input, input, n.get("audio_input", "audio_input"), n["input"])
    _check_part(image_input, input, n.get("image_input", "image_input"), n["input"])
    _check_part(reasoning, output, n["reasoning"], n["output"])
    _check_part(audio_output, output, n.get("audio_output", "audio_output"), n["output"])
    _check_part(reasoning + audio_output, output, n["reasoning"], n["output"])
    return Usage(
        input=input,
        output=output,
        cache_read=cache_read,
        cache_write_5m=cache_write_5m,
        cache_write_1h=cache_write_1h,
        reasoning=reasoning,
        audio_input=audio_input,
        audio_output=audio_output,
        image_input=image_input,
    )


def _unwrap(
    payload: Any, keys: tuple[str, ...], marker_keys: tuple[str, ...], what: str
) -> Mapping[str, Any]:
    """The usage mapping inside ``payload`` (itself, or under one of ``keys``)."""
    data = _as_mapping(payload)
    if data is None:
        raise UsageParseError(
            f"{what} usage must be an object, got {type(payload).__name__}", field=None
        )
    if any(k in data and data.get(k) is not None for k in marker_keys):
        return data
    for key in keys:
        inner = _as_mapping(data.get(key))
        if inner is not None:
            return inner
    return data


# ------------------------------------------------------------------------------------ OpenAI
_OPENAI_CHAT = ("prompt_tokens", "completion_tokens")
_OPENAI_RESP = ("input_tokens", "output_tokens")


def _from_openai(payload: Any) -> Usage:
    data = _unwrap(payload, ("usage", "token_usage"), _OPENAI_CHAT + _OPENAI_RESP, "OpenAI")
    if "prompt_tokens" in data or "completion_tokens" in data:
        input_ = _count(data.get("prompt_tokens"), "prompt_tokens")
        output = _count(data.get("completion_tokens"), "completion_tokens")
        ptd = _sub(data, "prompt_tokens_details", "prompt_tokens_details")
        ctd = _sub(data, "completion_tokens_details", "completion_tokens_details")
        cached = _get(ptd, "cached_tokens")
        cached_field = "prompt_tokens_details.cached_tokens"
        if cached is None and data.get("prompt_cache_hit_tokens") is not None:  # DeepSeek
            cached, cached_field = data.get("prompt_cache_hit_tokens"), "prompt_cache_hit_tokens"
        names = {
            "input": "prompt_tokens",
            "output": "completion_tokens",
            "cache_read": cached_field,
            "cache_write": "prompt_tokens_details.cache_write_tokens",
            "audio_input": "prompt_tokens_details.audio_tokens",
            "image_input": "prompt_tokens_details.image_tokens",
            "reasoning": "completion_tokens_details.reasoning_tokens",
            "audio_output": "completion_tokens_details.audio_tokens",
        }
        return _build(
            input=input_,
            output=output,
            cache_read=_count(cached, cached_field),
            cache_write_5m=_count(_get(ptd, "cache_write_tokens"), names["cache_write"]),
            audio_input=_count(_get(ptd, "audio_tokens"), names["audio_input"]),
            image_input=_count(_get(ptd, "image_tokens"), names["image_input"]),
            reasoning=_count(_get(ctd, "reasoning_tokens"), names["reasoning"]),
            audio_output=_count(_get(ctd, "audio_tokens"), names["audio_output"]),
            names=names,
        )
    if "input_tokens" in data or "output_tokens" in data:
        itd = _sub(data, "input_tokens_details", "input_tokens_details")
        otd = _sub(data, "output_tokens_details", "output_tokens_details")
        names = {
            "input": "input_tokens",
            "output": "output_tokens",
            "cache_read": "input_tokens_details.cached_tokens",
            "cache_write": "input_tokens_details.cache_write_tokens",
            "audio_input": "input_tokens_details.audio_tokens",
            "image_input": "input_tokens_details.image_tokens",
            "reasoning": "output_tokens_details.reasoning_tokens",
            "audio_output": "output_tokens_details.audio_tokens",
        }
        return _build(
            input=_count(data.get("input_tokens"), "input_tokens"),
            output=_count(data.get("output_tokens"), "output_tokens"),
            cache_read=_count(_get(itd, "cached_tokens"), names["cache_read"]),
            cache_write_5m=_count(_get(itd, "cache_write_tokens"), names["cache_write"]),
            audio_input=_count(_get(itd, "audio_tokens"), names["audio_input"]),
            image_input=_count(_get(itd, "image_tokens"), names["image_input"]),
            reasoning=_count(_get(otd, "reasoning_tokens"), names["reasoning"]),
            audio_output=_count(_get(otd, "audio_tokens"), names["audio_output"]),
            names=names,
        )
    raise UsageParseError(
        "OpenAI usage needs 'prompt_tokens'/'completion_tokens' (Chat Completions) or "
        "'input_tokens'/'output_tokens' (Responses API)",
        field="prompt_tokens",
    )


# --------------------------------------------------------------------------------- Anthropic
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


def _from_anthropic(payload: Any) -> Usage:
    data = _unwrap(payload, ("usage",), ("input_tokens", "output_tokens"), "Anthropic")
    if "input_tokens" not in data and "output_tokens" not in data:
        raise UsageParseError(
            "Anthropic usage needs 'input_tokens' and 'output_tokens'", field="input_tokens"
        )
    uncached = _count(data.get("input_tokens"), "input_tokens")
    output = _count(data.get("output_tokens"), "output_tokens")
    cache_read = _count(data.get("cache_read_input_tokens"), "cache_read_input_tokens")
    written = _count(data.get("cache_creation_input_tokens"), "cache_creation_input_tokens")
    split = _sub(data, "cache_creation", "cache_creation")
    five = _count(
        _get(split, "ephemeral_5m_input_tokens"), "cache_creation.ephemeral_5m_input_tokens"
    )
    one = _count(
        _get(split, "ephemeral_1h_input_tokens"), "cache_creation.ephemeral_1h_input_tokens"
    )
    five, one = _split_writes(written, five, one, "cache_creation_input_tokens", "cache_creation")
    return _build(
        input=uncached + cache_read + five + one,
        output=output,
        cache_read=cache_read,
        cache_write_5m=five,
        cache_write_1h=one,
        names={
            "input": "input_tokens",
            "output": "output_tokens",
            "cache_read": "cache_read_input_tokens",
            "cache_write": "cache_creation_input_tokens",
            "reasoning": "output_tokens",
        },
    )


# ------------------------------------------------------------------------------------ Gemini
_GEMINI_KEYS = {
    "prompt": ("promptTokenCount", "prompt_token_count"),
    "candidates": ("candidatesTokenCount", "candidates_token_count"),
    "cached": ("cachedContentTokenCount", "cached_content_token_count"),
    "thoughts": ("thoughtsTokenCount", "thoughts_token_count"),
    "tool": ("toolUsePromptTokenCount", "tool_use_prompt_token_count"),
    "details": ("promptTokensDetails", "prompt_tokens_details"),
    "tool_details": ("toolUsePromptTokensDetails", "tool_use_prompt_tokens_details"),
}
_GEMINI_MARKERS = tuple(
    k for pair in ("prompt", "candidates", "cached", "thoughts") for k in _GEMINI_KEYS[pair]
) + (
    "totalTokenCount",
    "total_token_count",
)


def _modality_counts(value: Any, field: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    if value is None:
        return counts
    if not isinstance(value, (list, tuple)):
        raise UsageParseError(
            f"usage field {field!r} must be a list of modality counts", field=field
        )
    for i, item in enumerate(value):
        entry = _as_mapping(item)
        if entry is None:
            raise UsageParseError(f"usage field {field}[{i}] must be an object", field=field)
        modality = entry.get("modality")
        modality = getattr(modality, "value", modality)
        name = str(modality or "").upper().rsplit(".", 1)[-1]
        tokens = _count(_get(entry, "tokenCount", "token_count"), f"{field}[{i}].tokenCount")
        counts[name] = counts.get(name, 0) + tokens
    return counts


def _from_gemini(payload: Any) -> Usage:
    data = _unwrap(payload, ("usageMetadata", "usage_metadata"), _GEMINI_MARKERS, "Gemini")
    camel = any(k in data for k in ("promptTokenCount", "candidatesTokenCount", "totalTokenCount"))
    i = 0 if camel else 1
    if not any(k in data for k in _GEMINI_MARKERS):
        raise UsageParseError(
            "Gemini usage needs 'promptTokenCount'/'candidatesTokenCount' (or snake_case)",
            field="promptTokenCount",
        )

    def val(key: str) -> Any:
        return _get(data, *_GEMINI_KEYS[key])

    f = {k: v[i] for k, v in _GEMINI_KEYS.items()}
    prompt = _count(val("prompt"), f["prompt"])
    candidates = _count(val("candidates"), f["candidates"])
    thoughts = _count(val("thoughts"), f["thoughts"])
    tool = _count(val("tool"), f["tool"])
    cached = _count(val("cached"), f["cached"])
    modalities = _modality_counts(val("details"), f["details"])
    for name, tokens in _modality_counts(val("tool_details"), f["tool_details"]).items():
        modalities[name] = modalities.get(name, 0) + tokens
    return _build(
        input=prompt + tool,
        output=candidates + thoughts,
        cache_read=cached,
        reasoning=thoughts,
        audio_input=modalities.get("AUDIO", 0),
        image_input=modalities.get("IMAGE", 0),
        names={
            "input": f["prompt"],
            "output": f["candidates"],
            "cache_read": f["cached"],
            "cache_write": f["cached"],
            "reasoning": f["thoughts"],
            "audio_input": f["details"],
            "image_input": f["details"],
        },
    )


# ----------------------------------------------------------------------------------- Bedrock
# Converse TokenUsage: inputTokens counts only the uncached prompt; cacheReadInputTokens and
# cacheWriteInputTokens are reported beside it (totalTokens = all four), the same convention as
# Anthropic's API. https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_TokenUsage.html
# and https://docs.aws.amazon.com/bedrock/latest/userguide/prompt-caching.html
def _from_bedrock(payload: Any) -> Usage:
    data = _unwrap(payload, ("usage",), ("inputTokens", "outputTokens"), "Bedrock")
    if "inputTokens" not in data and "outputTokens" not in data:
        raise UsageParseError(
            "Bedrock Converse usage needs 'inputTokens' and 'outputTokens'", field="inputTokens"
        )
    uncached = _count(data.get("inputTokens"), "inputTokens")
    output = _count(data.get("outputTokens"), "outputTokens")
    cache_read = _count(data.get("cacheReadInputTokens"), "cacheReadInputTokens")
    written = _count(data.get("cacheWriteInputTokens"), "cacheWriteInputTokens")
    five = one = 0
    details = data.get("cacheDetails")
    if details is not None:
        if not isinstance(details, (list, tuple)):
            raise UsageParseError("usage field 'cacheDetails' must be a list", field="cacheDetails")
        for idx, item in enumerate(details):
            entry = _as_mapping(item)
            if entry is None:
                raise UsageParseError(
                    f"usage field cacheDetails[{idx}] must be an object", field="cacheDetails"
                )
            tokens = _count(
                _get(entry, "inputTokens", "input_tokens"), f"cacheDetails[{idx}].inputTokens"
            )
            ttl = str(_get(entry, "ttl") or "5m").lower()
            if ttl in ("1h", "60m", "3600s", "one_hour"):
                one += tokens
            else:
                five += tokens
    five, one = _split_writes(written, five, one, "cacheWriteInputTokens", "cacheDetails")
    return _build(
        input=uncached + cache_read + five + one,
        output=output,
        cache_read=cache_read,
        cache_write_5m=five,
        cache_write_1h=one,
        names={
            "input": "inputTokens",
            "output": "outputTokens",
            "cache_read": "cacheReadInputTokens",
            "cache_write": "cacheWriteInputTokens",
            "reasoning": "outputTokens",
        },
    )


# --------------------------------------------------------------------------------- LangChain
_LC_INPUT_DETAILS = (
    "cache_creation",
    "ephemeral_5m_input_tokens",
    "ephemeral_1h_input_tokens",
    "cache_read",
    "audio",
)
_LC_KEYS = frozenset(
    ("input_tokens", "output_tokens", "total_tokens", "input_token_details", "output_token_details")
)


def _plain_count(value: Any) -> int | None:
    """``value`` as a count when it is None or a plain int >= 0; None when it needs the slow path."""
    if value is None:
        return 0
    if type(value) is int and value >= 0:
        return value
    return None


def _fast_langchain(data: dict[str, Any]) -> Usage | None:
    """The common case of :func:`_from_langchain`: a plain dict of plain ints.

    Returns None whenever anything is unusual (other types, invalid values, inconsistent
    details), so the general parser handles it and raises its precise errors.
    """
    input_ = data.get("input_tokens")
    output = data.get("output_tokens")
    if type(input_) is not int or type(output) is not int or input_ < 0 or output < 0:
        return None
    itd = data.get("input_token_details")
    otd = data.get("output_token_details")
    written = five = one = cache_read = audio_input = reasoning = audio_output = 0
    if itd is not None:
        if type(itd) is not dict:
            return None
        if itd:
            counts = [_plain_count(itd.get(k)) for k in _LC_INPUT_DETAILS]
            if None in counts:
                return None
            written, five, one, cache_read, audio_input = counts  # type: ignore[misc]
    if otd is not None:
        if type(otd) is not dict:
            return None
        if otd:
            r = _plain_count(otd.get("reasoning"))
            a = _plain_count(otd.get("audio"))
            if r is None or a is None:
                return None
            reasoning, audio_output = r, a
    total_written = max(written, five + one)
    if five + one > total_written:  # pragma: no cover - impossible by construction
        return None
    five += total_written - five - one  # remainder of the total -> 5 minutes (as _split_writes)
    if (
        cache_read + five + one > input_
        or audio_input > input_
        or reasoning + audio_output > output
    ):
        return None  # the general parser raises the precise error
    return Usage._trusted(
        input_, output, cache_read, five, one, reasoning, audio_input, audio_output, 0
    )


def _from_langchain(payload: Any) -> Usage:
    if type(payload) is dict:
        fast = _fast_langchain(payload)
        if fast is not None:
            return fast
    data = _unwrap(payload, ("usage_metadata",), ("input_tokens", "output_tokens"), "LangChain")
    if "input_tokens" not in data and "output_tokens" not in data:
        raise UsageParseError(
            "LangChain UsageMetadata needs 'input_tokens' and 'output_tokens'", field="input_tokens"
        )
    input_ = _count(data.get("input_tokens"), "input_tokens")
    output = _count(data.get("output_tokens"), "output_tokens")
    itd = _sub(data, "input_token_details", "input_token_details")
    otd = _sub(data, "output_token_details", "output_token_details")
    written = _count(_get(itd, "cache_creation"), "input_token_details.cache_creation")
    five = _count(
        _get(itd, "ephemeral_5m_input_tokens"), "input_token_details.ephemeral_5m_input_tokens"
    )
    one = _count(
        _get(itd, "ephemeral_1h_input_tokens"), "input_token_details.ephemeral_1h_input_tokens"
    )
    # langchain-anthropic reports both the total and the per-TTL split; other versions only one
    five, one = _split_writes(
        max(written, five + one),
        five,
        one,
        "input_token_details.cache_creation",
        "input_token_details.ephemeral_*_input_tokens",
    )
    return _build(
        input=input_,
        output=output,
        cache_read=_count(_get(itd, "cache_read"), "input_token_details.cache_read"),
        cache_write_5m=five,
        cache_write_1h=one,
        audio_input=_count(_get(itd, "audio"), "input_token_details.audio"),
        reasoning=_count(_get(otd, "reasoning"), "output_token_details.reasoning"),
        audio_output=_count(_get(otd, "audio"), "output_token_details.audio"),
        names={
            "input": "input_tokens",
            "output": "output_tokens",
            "cache_read": "input_token_details.cache_read",
            "cache_write": "input_token_details.cache_creation",
            "audio_input": "input_token_details.audio",
            "reasoning": "output_token_details.reasoning",
            "audio_output": "output_token_details.audio",
        },
    )


# ------------------------------------------------------------------------------- detection
_WRAPPERS = (
    "usage_metadata",
    "usageMetadata",
    "usage",
    "token_usage",
    "llm_output",
    "response_metadata",
    "raw",
    "message",
    "additional_kwargs",
    "generation_info",
    "metadata",  # Bedrock ConverseStream metadata event: {"metadata": {"usage": ...}}
    "response",  # LlamaIndex callback payloads: {EventPayload.RESPONSE: ChatResponse}
    "completion",
)


def _detect(data: Mapping[str, Any]) -> Usage | None:
    keys = {
        k
        for k in (
            "prompt_tokens",
            "completion_tokens",
            "input_tokens",
            "output_tokens",
            "inputTokens",
            "outputTokens",
            "input_token_details",
            "output_token_details",
            "input_tokens_details",
            "output_tokens_details",
            "cache_read_input_tokens",
            "cache_creation_input_tokens",
            "cache_creation",
            "total_tokens",
        )
        if data.get(k) is not None
    }
    if any(data.get(k) is not None for k in _GEMINI_MARKERS):
        return _from_gemini(data)
    if "inputTokens" in keys or "outputTokens" in keys:
        return _from_bedrock(data)
    if "prompt_tokens" in keys or "completion_tokens" in keys:
        return _from_openai(data)
    if "input_tokens" in keys or "output_tokens" in keys:
        if keys & {"cache_read_input_tokens", "cache_creation_input_tokens", "cache_creation"}:
            return _from_anthropic(data)
        if keys & {"input_tokens_details", "output_tokens_details"}:
            return _from_openai(data)
        # LangChain UsageMetadata, or a plain {input_tokens, output_tokens} (same meaning everywhere)
        return _from_langchain(data)
    return None


def _search(obj: Any, depth: int) -> Usage | None:
    if depth > 4:
        return None
    if isinstance(obj, Usage):
        return obj
    data = _as_mapping(obj)
    if data is None:
        return None
    found = _detect(data)
    if found is not None:
        return found
    for key in _WRAPPERS:
        try:
            inner = data.get(key)
        except Exception:  # noqa: BLE001  # pragma: no cover - a property that raises: not usage
            inner = None
        if inner is None:
            continue
        found = _search(inner, depth + 1)
        if found is not None:
            return found
    # LangChain LLMResult/ChatResult: usage on the first generation's message (one per call)
    generations = data.get("generations")
    while isinstance(generations, (list, tuple)) and generations:
        generations = generations[0]
    if generations is not None and not isinstance(generations, (list, tuple)):
        return _search(generations, depth + 1)
    return None


def _from_any(payload: Any) -> Usage:
    if isinstance(payload, Usage):
        return payload
    if (
        type(payload) is dict
        and payload.keys() <= _LC_KEYS
        and type(payload.get("input_tokens")) is int
    ):
        # a LangChain UsageMetadata (or a plain {input_tokens, output_tokens}): what _detect
        # would pick for these keys
        fast = _fast_langchain(payload)
        if fast is not None:
            return fast
    if payload is None:
        raise UsageParseError("no usage payload (got None)", field=None)
    found = _search(payload, 0)
    if found is None:
        data = _as_mapping(payload)
        keys = sorted(str(k) for k in data)[:12] if data is not None else []
        raise UsageParseError(
            f"could not find token usage in {type(payload).__name__} (keys: {', '.join(keys) or 'none'}); "
            "pass the provider's usage object or call Usage.from_openai/from_anthropic/from_gemini/"
            "from_bedrock/from_langchain directly",
            field=None,
        )
    return found
