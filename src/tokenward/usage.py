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

from dataclasses import dataclass, fields

__all__ = ["Usage"]


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

    def __post_init__(self) -> None:
        for f in fields(self):
            if f.name == "estimated":
                continue
            value = getattr(self, f.name)
            if type(value) is not int:
                if isinstance(value, bool) or not isinstance(value, int):
                    raise TypeError(
                        f"Usage.{f.name} must be an int, got {type(value).__name__} {value!r}"
                    )
            if value < 0:
                raise ValueError(f"Usage.{f.name} must be >= 0, got {value}")

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
        )

    def __radd__(self, other: object) -> Usage:
        # lets sum(usages) work with its default start of 0
        if other == 0:
            return self
        return NotImplemented

    def __bool__(self) -> bool:
        return self.total > 0

    def to_dict(self) -> dict[str, int | bool]:
        """Plain dict of all fields (for JSON, storage)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}
