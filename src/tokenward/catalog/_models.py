"""Data types of the catalog: prices, price tiers and model descriptions."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

from tokenward.usage import TOKEN_FIELDS

__all__ = ["PRICE_FIELDS", "ModelInfo", "PriceTier", "Prices"]

#: Names of the price fields of :class:`Prices`, in display order.
PRICE_FIELDS: tuple[str, ...] = TOKEN_FIELDS  # one price per token kind

_REQUIRED = ("input", "output")


def _to_decimal(value: Any, name: str) -> Decimal:
    """Convert a price to Decimal; floats go through ``str`` so 0.1 stays 0.1."""
    if isinstance(value, bool):
        raise TypeError(f"price {name!r} must be a number, got {value!r}")
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, (int, str)):
        try:
            result = Decimal(value)
        except InvalidOperation:
            raise ValueError(f"price {name!r} is not a number: {value!r}") from None
    elif isinstance(value, float):
        result = Decimal(str(value))
    else:
        raise TypeError(f"price {name!r} must be a Decimal, int or str, got {type(value).__name__}")
    if not result.is_finite():
        raise ValueError(f"price {name!r} must be finite, got {value!r}")
    if result < 0:
        raise ValueError(f"price {name!r} must be >= 0, got {value!r}")
    return result


@dataclass(frozen=True, slots=True)
class Prices:
    """Prices in USD per 1M tokens (``Decimal``).

    ``None`` means "not separately priced":

    * ``cache_read`` None -> cache hits are billed at the ``input`` price;
    * ``cache_write_5m`` / ``cache_write_1h`` None -> tokens written to the cache are billed at
      the ``input`` price (OpenAI, Gemini and DeepSeek charge no cache-write fee: a written
      token is an ordinary input token). ``Decimal(0)`` would mean the write is free on top of
      nothing, which no provider does;
    * ``reasoning`` None -> reasoning tokens are billed at the ``output`` price;
    * ``audio_input`` / ``audio_output`` None -> the model has no audio price; pricing usage
      with audio tokens raises :class:`~tokenward.errors.PricingMissingError`;
    * ``image_input`` None -> image tokens are billed at the ``input`` price.

    Values may be given as ``Decimal``, ``int`` or ``str`` (floats are converted via ``str``).
    """

    input: Decimal
    output: Decimal
    cache_read: Decimal | None = None
    cache_write_5m: Decimal | None = None
    cache_write_1h: Decimal | None = None
    reasoning: Decimal | None = None
    audio_input: Decimal | None = None
    audio_output: Decimal | None = None
    image_input: Decimal | None = None

    def __post_init__(self) -> None:
        for name in PRICE_FIELDS:
            value = getattr(self, name)
            if value is None:
                if name in _REQUIRED:
                    raise ValueError(f"price {name!r} is required")
                continue
            object.__setattr__(self, name, _to_decimal(value, name))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Prices:
        """Build from a mapping of price field -> number/str; unknown keys raise ``ValueError``."""
        unknown = set(data) - set(PRICE_FIELDS)
        if unknown:
            raise ValueError(f"unknown price field(s): {', '.join(sorted(unknown))}")
        return cls(**data)

    def to_dict(self) -> dict[str, str | None]:
        """Prices as strings (exact), for JSON."""
        return {
            n: (None if getattr(self, n) is None else str(getattr(self, n))) for n in PRICE_FIELDS
        }


@dataclass(frozen=True, slots=True)
class PriceTier:
    """Prices that apply to the **whole call** when its input tokens exceed ``above_input_tokens``."""

    above_input_tokens: int
    prices: Prices

    def __post_init__(self) -> None:
        if isinstance(self.above_input_tokens, bool) or not isinstance(
            self.above_input_tokens, int
        ):
            raise TypeError("PriceTier.above_input_tokens must be an int")
        if self.above_input_tokens <= 0:
            raise ValueError("PriceTier.above_input_tokens must be > 0")
        if not isinstance(self.prices, Prices):
            raise TypeError("PriceTier.prices must be a Prices")


Mode = Literal["chat", "embedding", "completion"]


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """One model: where it runs, how big its window is and what it costs.

    ``tiers`` are sorted by threshold; ``prices_for(n)`` returns the prices of the highest
    tier whose threshold ``n`` exceeds (the whole call is billed at that tier), else ``prices``.
    ``batch_discount`` is the fraction taken off every component in batch mode
    (``Decimal("0.5")`` = half price); ``None`` = no batch mode.
    ``tokenizer`` names a tiktoken encoding (``"o200k_base"``/``"cl100k_base"``) or is ``None``
    when tokens can only be estimated.

    ``prices`` is ``None`` for a model nobody can price (:meth:`Catalog.lookup` returns such a
    placeholder for unknown names): its calls are recorded with their tokens and cost unknown.
    ``price_source`` names the price data that priced the model (e.g. ``"tokenward catalog"``,
    ``"user"``), recorded on every event it prices.
    """

    name: str
    provider: str
    context_window: int
    max_output: int | None
    prices: Prices | None
    tiers: tuple[PriceTier, ...] = ()
    batch_discount: Decimal | None = None
    tokenizer: str | None = None
    aliases: tuple[str, ...] = ()
    as_of: date = field(default_factory=date.today)
    source: str = ""
    mode: Mode = "chat"
    notes: str = ""
    price_source: str = "tokenward catalog"

    @property
    def priced(self) -> bool:
        """True when the model has prices (False for an unknown model's placeholder)."""
        return self.prices is not None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ValueError("ModelInfo.name must be a non-empty string")
        if isinstance(self.context_window, bool) or not isinstance(self.context_window, int):
            raise TypeError(f"{self.name}: context_window must be an int")
        if self.context_window < 0:
            raise ValueError(f"{self.name}: context_window must be >= 0")
        if self.max_output is not None and (
            isinstance(self.max_output, bool)
            or not isinstance(self.max_output, int)
            or self.max_output <= 0
        ):
            raise ValueError(f"{self.name}: max_output must be a positive int or None")
        if self.prices is not None and not isinstance(self.prices, Prices):
            raise TypeError(f"{self.name}: prices must be a Prices or None (unpriced)")
        if self.prices is None and self.tiers:
            raise ValueError(f"{self.name}: an unpriced model cannot have price tiers")
        tiers = tuple(sorted(self.tiers, key=lambda t: t.above_input_tokens))
        thresholds = [t.above_input_tokens for t in tiers]
        if len(set(thresholds)) != len(thresholds):
            raise ValueError(f"{self.name}: duplicate tier thresholds {thresholds}")
        object.__setattr__(self, "tiers", tiers)
        if self.batch_discount is not None:
            discount = _to_decimal(self.batch_discount, "batch_discount")
            if not (0 < discount < 1):
                raise ValueError(f"{self.name}: batch_discount must be a fraction between 0 and 1")
            object.__setattr__(self, "batch_discount", discount)
        object.__setattr__(self, "aliases", tuple(self.aliases))
        if self.mode not in ("chat", "embedding", "completion"):
            raise ValueError(f"{self.name}: mode must be chat, embedding or completion")

    def tier_for(self, input_tokens: int) -> PriceTier | None:
        """The tier that applies to a call with ``input_tokens`` prompt tokens, or ``None``."""
        chosen = None
        for tier in self.tiers:
            if input_tokens > tier.above_input_tokens:
                chosen = tier
        return chosen

    def prices_for(self, input_tokens: int) -> Prices:
        """Prices for a call with ``input_tokens`` prompt tokens (tier-aware).

        Raises :class:`~tokenward.errors.PricingMissingError` for an unpriced model.
        """
        tier = self.tier_for(input_tokens)
        if tier is not None:
            return tier.prices
        if self.prices is None:
            from tokenward.errors import PricingMissingError

            raise PricingMissingError(
                f"Model {self.name!r} has no price. Run `tokenward models update`, or register "
                f"its prices with catalog.override({self.name!r}, input=..., output=..., "
                "context_window=...)."
            )
        return self.prices

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict in the ``models.json`` format."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "prices":
                if value is not None:
                    value = {k: v for k, v in value.to_dict().items() if v is not None}
            elif f.name == "tiers":
                value = [
                    {
                        "above_input_tokens": t.above_input_tokens,
                        "prices": {k: v for k, v in t.prices.to_dict().items() if v is not None},
                    }
                    for t in value
                ]
            elif f.name == "batch_discount":
                value = None if value is None else str(value)
            elif f.name == "aliases":
                value = list(value)
            elif f.name == "as_of":
                value = value.isoformat()
            out[f.name] = value
        return out
