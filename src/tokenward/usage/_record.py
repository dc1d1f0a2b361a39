"""Usage: one normalized record of the tokens a model call consumed.

Conventions (the same as LangChain's ``UsageMetadata`` and OpenAI's chat API):

* ``input`` counts **every** prompt token, including the cached ones
  (``cache_read``, ``cache_write_5m``, ``cache_write_1h``), audio and image input.
  Anthropic and Bedrock report input *without* cache tokens; their parsers add them back.
* ``output`` counts every generated token, including ``reasoning`` and
  ``audio_output``.
* The detail fields are subsets of ``input``/``output``; the parsers guarantee
  ``cache_read + cache_write <= input`` and ``reasoning <= output``.
* ``estimated`` is True when any part was counted locally instead of reported
  by the provider. Adding an estimated usage to an exact one gives an estimate.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from decimal import Decimal
from typing import Any

from tokenward.errors import UsageParseError
from tokenward.usage._registry import parse_usage

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


@dataclass(frozen=True, slots=True, init=False)
class Usage:
    """Token counts of one model call (or a sum of calls). Immutable; supports ``+``.

    Every count is a plain ``int >= 0``; ``reported_cost`` a finite ``Decimal >= 0`` or None.
    """

    input: int
    output: int
    cache_read: int
    cache_write_5m: int
    cache_write_1h: int
    reasoning: int
    audio_input: int
    audio_output: int
    image_input: int
    estimated: bool
    #: a cost the provider itself reported for the call (USD, e.g. OpenRouter's ``usage.cost``);
    #: kept beside tokenward's own price, never mixed with it. ``None`` when not reported.
    reported_cost: Decimal | None

    def __init__(
        self,
        input: int = 0,
        output: int = 0,
        cache_read: int = 0,
        cache_write_5m: int = 0,
        cache_write_1h: int = 0,
        reasoning: int = 0,
        audio_input: int = 0,
        audio_output: int = 0,
        image_input: int = 0,
        estimated: bool = False,
        reported_cost: Decimal | None = None,
    ) -> None:
        # one expression: this runs for every parsed call
        if not (
            type(input) is int
            and input >= 0
            and type(output) is int
            and output >= 0
            and type(cache_read) is int
            and cache_read >= 0
            and type(cache_write_5m) is int
            and cache_write_5m >= 0
            and type(cache_write_1h) is int
            and cache_write_1h >= 0
            and type(reasoning) is int
            and reasoning >= 0
            and type(audio_input) is int
            and audio_input >= 0
            and type(audio_output) is int
            and audio_output >= 0
            and type(image_input) is int
            and image_input >= 0
        ):
            raise _invalid_count(locals())
        if reported_cost is not None and (
            type(reported_cost) is not Decimal or not reported_cost.is_finite() or reported_cost < 0
        ):
            raise TypeError(
                f"Usage.reported_cost must be a finite Decimal >= 0 or None, got {reported_cost!r}"
            )
        (
            set_input, set_output, set_cache_read, set_cache_write_5m, set_cache_write_1h,
            set_reasoning, set_audio_input, set_audio_output, set_image_input, set_estimated,
            set_reported_cost,
        ) = _SET  # fmt: skip
        set_input(self, input)
        set_output(self, output)
        set_cache_read(self, cache_read)
        set_cache_write_5m(self, cache_write_5m)
        set_cache_write_1h(self, cache_write_1h)
        set_reasoning(self, reasoning)
        set_audio_input(self, audio_input)
        set_audio_output(self, audio_output)
        set_image_input(self, image_input)
        set_estimated(self, estimated)
        set_reported_cost(self, reported_cost)

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
        return Usage(
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
        return self.input > 0 or self.output > 0  # total > 0 (counts are >= 0)

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

    # -- parsing provider payloads (the shapes are registered in tokenward.usage._shapes) ----
    @classmethod
    def from_openai(cls, payload: Any) -> Usage:
        """OpenAI usage: Chat Completions (``prompt_tokens``…, ``*_tokens_details``), Responses API
        (``input_tokens``, ``input_tokens_details.cached_tokens``…) or embeddings, and the same
        shapes from OpenAI-compatible APIs (DeepSeek's ``prompt_cache_hit_tokens``, OpenRouter's
        ``cost``, Mistral). Accepts the response itself (``{"usage": {...}}``) or SDK objects."""
        return parse_usage(payload, "openai")

    @classmethod
    def from_anthropic(cls, payload: Any) -> Usage:
        """Anthropic Messages usage. Its ``input_tokens`` excludes cache reads and writes; they are
        added back so ``input`` counts every prompt token. ``cache_creation`` splits writes into
        5-minute and 1-hour TTLs (without it, all writes are 5-minute)."""
        return parse_usage(payload, "anthropic")

    @classmethod
    def from_gemini(cls, payload: Any) -> Usage:
        """Gemini ``usageMetadata`` (camelCase REST or snake_case SDK). ``thoughtsTokenCount`` is billed
        as output but not included in ``candidatesTokenCount``: output = candidates + thoughts,
        reasoning = thoughts. ``toolUsePromptTokenCount`` adds to input. Audio/image input and
        audio output from the ``*TokensDetails`` modality lists."""
        return parse_usage(payload, "gemini")

    @classmethod
    def from_bedrock(cls, payload: Any) -> Usage:
        """Bedrock usage: Converse ``usage`` (``inputTokens``…), InvokeModel's token-count response
        headers, or the ``amazon-bedrock-invocationMetrics`` of a stream's last chunk. Bedrock's
        input excludes cache reads and writes (like Anthropic's); they are added back.
        ``cacheDetails`` (per-TTL writes) splits 5m/1h."""
        return parse_usage(payload, "bedrock")

    @classmethod
    def from_cohere(cls, payload: Any) -> Usage:
        """Cohere usage (v2 ``usage``, v1 ``meta``): the ``billed_units`` Cohere bills, else the
        ``tokens`` it processed."""
        return parse_usage(payload, "cohere")

    @classmethod
    def from_langchain(cls, payload: Any) -> Usage:
        """LangChain ``UsageMetadata`` dict (``input_tokens`` already includes cache tokens) with
        ``input_token_details`` {cache_read, cache_creation, audio, ephemeral_5m_input_tokens,
        ephemeral_1h_input_tokens} and ``output_token_details`` {reasoning, audio}."""
        return parse_usage(payload, "langchain")

    @classmethod
    def from_any(cls, payload: Any) -> Usage:
        """Recognize the provider shape of a usage mapping, provider response or SDK object and
        parse it (the registered shapes: :func:`tokenward.usage.usage_shapes`). Framework
        containers (LangChain results and messages' metadata, LlamaIndex responses) are the
        adapters' to open. Raises :class:`~tokenward.errors.UsageParseError` when no usage
        shape is recognized; the message lists the registered shapes."""
        if isinstance(payload, Usage):
            return payload
        if payload is None:
            raise UsageParseError(
                "no usage payload (got None); pass the provider's usage object", field=None
            )
        return parse_usage(payload)


#: The slots' setters, in field order: a frozen dataclass is filled through them (what
#: object.__setattr__ does, at half its cost).
_SET: tuple[Callable[[Usage, Any], None], ...] = tuple(
    getattr(Usage, f.name).__set__ for f in fields(Usage)
)


def _invalid_count(values: dict[str, Any]) -> Exception:
    """The error for the first count that is not a plain int >= 0."""
    for name in TOKEN_FIELDS:
        value = values[name]
        if type(value) is not int:
            return TypeError(f"Usage.{name} must be an int, got {type(value).__name__} {value!r}")
        if value < 0:
            return ValueError(f"Usage.{name} must be >= 0, got {value}")
    return AssertionError("no invalid count")  # pragma: no cover - called only on one
