"""Exact cost of a model call: ``Usage`` x catalog prices, in ``Decimal`` USD.

Rules (the same the providers publish):

* every component is ``tokens * price_per_1M / 1_000_000``, computed exactly;
* a call whose ``usage.input`` exceeds a tier threshold is billed **entirely** at that tier;
* ``batch=True`` takes the model's batch discount off every component (error if it has none);
* cache reads without a cache-read price, cache writes without a cache-write price (OpenAI,
  Gemini, DeepSeek: a written token is an ordinary input token) and image tokens without an
  image price are billed at the input price; reasoning without a reasoning price at the
  output price; audio tokens need an audio price (``PricingMissingError`` otherwise);
* 1-hour cache writes on a model that has a 5-minute write price but no 1-hour price raise
  ``PricingMissingError`` rather than guessing.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal, localcontext
from functools import lru_cache

from tokenward.catalog import Catalog, ModelInfo, Prices, default_catalog
from tokenward.errors import PricingMissingError
from tokenward.usage import Usage

__all__ = ["CostBreakdown", "cost", "from_nanos", "to_nanos"]

_MILLION = Decimal(1_000_000)
_ZERO = Decimal(0)
_NANO = Decimal(1_000_000_000)
_CENT = Decimal("0.01")
COMPONENTS: tuple[str, ...] = (
    "input",
    "cache_read",
    "cache_write_5m",
    "cache_write_1h",
    "output",
    "reasoning",
    "audio_input",
    "audio_output",
    "image_input",
)


@dataclass(frozen=True, slots=True)
class CostBreakdown:
    """Cost of one call (or a sum), per component, in ``Decimal`` USD.

    ``input`` is the uncached text input, ``output`` the non-reasoning text output; the other
    components are priced separately. ``tier`` is the threshold of the price tier used
    (``None`` = base prices); ``batch`` tells whether the batch discount was applied.
    """

    model: str
    input: Decimal
    cache_read: Decimal
    cache_write_5m: Decimal
    cache_write_1h: Decimal
    output: Decimal
    reasoning: Decimal
    audio_input: Decimal
    audio_output: Decimal
    image_input: Decimal
    total: Decimal
    tier: int | None = None
    batch: bool = False
    estimated: bool = False

    def components(self) -> dict[str, Decimal]:
        """Component name -> USD (all components, zeros included)."""
        return {name: getattr(self, name) for name in COMPONENTS}

    def percentages(self) -> dict[str, Decimal]:
        """Component name -> share of ``total`` in percent, ``Decimal`` quantized to 0.01."""
        if self.total == 0:
            return {name: Decimal("0.00") for name in COMPONENTS}
        with localcontext() as ctx:
            ctx.prec = 50
            return {
                name: (value * 100 / self.total).quantize(_CENT, rounding=ROUND_HALF_EVEN)
                for name, value in self.components().items()
            }

    @property
    def nanos(self) -> int:
        """``total`` as integer nano-USD (storage unit)."""
        return to_nanos(self.total)

    def __add__(self, other: object) -> CostBreakdown:
        if not isinstance(other, CostBreakdown):
            return NotImplemented
        values = {
            name: getattr(self, name) + getattr(other, name) for name in (*COMPONENTS, "total")
        }
        return CostBreakdown(
            model=self.model if self.model == other.model else "mixed",
            tier=self.tier if self.tier == other.tier else None,
            batch=self.batch and other.batch,
            estimated=self.estimated or other.estimated,
            **values,
        )


def _resolve(model: str | ModelInfo, catalog: Catalog | None) -> ModelInfo:
    if isinstance(model, ModelInfo):
        return model
    if not isinstance(model, str):
        raise TypeError(f"model must be a name or a ModelInfo, got {type(model).__name__}")
    return (catalog if catalog is not None else default_catalog()).get(model)


@lru_cache(maxsize=1024)
def _effective(prices: Prices) -> tuple[Decimal, ...]:
    """Per-component prices in ``COMPONENTS`` order, with the documented fallbacks applied.

    Audio prices stay 0 here; their absence is checked (and refused) before pricing.
    """
    inp, out = prices.input, prices.output
    return (
        inp,
        inp if prices.cache_read is None else prices.cache_read,
        inp if prices.cache_write_5m is None else prices.cache_write_5m,
        inp if prices.cache_write_1h is None else prices.cache_write_1h,
        out,
        out if prices.reasoning is None else prices.reasoning,
        prices.audio_input or _ZERO,
        prices.audio_output or _ZERO,
        inp if prices.image_input is None else prices.image_input,
    )


def _missing(info: ModelInfo, kind: str, field: str, tokens: int) -> PricingMissingError:
    return PricingMissingError(
        f"Usage has {tokens} {kind} tokens but model {info.name!r} has no {field} price. "
        f"Set it with catalog.override({info.name!r}, {field}=...) or register a model that "
        "prices it."
    )


def cost(
    usage: Usage,
    model: str | ModelInfo,
    *,
    catalog: Catalog | None = None,
    batch: bool = False,
) -> CostBreakdown:
    """Price ``usage`` for ``model`` (a name resolved in ``catalog`` or the default catalog).

    Raises ``UnknownModelError`` for unknown names (unless the catalog has a fallback) and
    ``PricingMissingError`` when the usage contains a token kind the model cannot price, or
    ``batch=True`` for a model without batch pricing.
    """
    if not isinstance(usage, Usage):
        raise TypeError(
            f"usage must be a Usage, got {type(usage).__name__}; try Usage.from_any(payload)"
        )
    info = _resolve(model, catalog)
    tier = info.tier_for(usage.input)
    prices = info.prices if tier is None else tier.prices

    if batch and info.batch_discount is None:
        raise PricingMissingError(
            f"Model {info.name!r} has no batch price. Call cost(..., batch=False), or set one with "
            f"catalog.override({info.name!r}, batch_discount='0.5')."
        )
    if usage.audio_input and prices.audio_input is None:
        raise _missing(info, "audio input", "audio_input", usage.audio_input)
    if usage.audio_output and prices.audio_output is None:
        raise _missing(info, "audio output", "audio_output", usage.audio_output)
    if usage.cache_write_1h and prices.cache_write_1h is None and prices.cache_write_5m is not None:
        raise _missing(info, "1-hour cache write", "cache_write_1h", usage.cache_write_1h)

    tokens = (
        max(
            0,
            usage.input
            - usage.cache_read
            - usage.cache_write_5m
            - usage.cache_write_1h
            - usage.audio_input
            - usage.image_input,
        ),
        usage.cache_read,
        usage.cache_write_5m,
        usage.cache_write_1h,
        max(0, usage.output - usage.reasoning - usage.audio_output),
        usage.reasoning,
        usage.audio_input,
        usage.audio_output,
        usage.image_input,
    )
    with localcontext() as ctx:
        ctx.prec = 60  # exact for any realistic token count and price
        if batch and info.batch_discount is not None:
            keep = 1 - info.batch_discount
            amounts = [
                Decimal(n) * price * keep / _MILLION if n else _ZERO
                for n, price in zip(tokens, _effective(prices), strict=True)
            ]
        else:  # division (not * 1E-6) keeps results short: 0.0375, not 0.03750000
            amounts = [
                Decimal(n) * price / _MILLION if n else _ZERO
                for n, price in zip(tokens, _effective(prices), strict=True)
            ]
        total = sum(amounts, _ZERO)
    return CostBreakdown(
        model=info.name,
        total=total,
        tier=None if tier is None else tier.above_input_tokens,
        batch=batch,
        estimated=usage.estimated,
        **dict(zip(COMPONENTS, amounts, strict=True)),
    )


def to_nanos(usd: Decimal | int | str) -> int:
    """USD -> integer nano-USD (1e-9), rounded half-to-even. Floats are refused (money is never float)."""
    if isinstance(usd, (float, bool)):
        raise TypeError("to_nanos() takes a Decimal (or int/str), never a float")
    value = usd if isinstance(usd, Decimal) else Decimal(usd)
    with localcontext() as ctx:
        ctx.prec = 60
        return int((value * _NANO).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


def from_nanos(nanos: int) -> Decimal:
    """Integer nano-USD -> exact ``Decimal`` USD."""
    if isinstance(nanos, bool) or not isinstance(nanos, int):
        raise TypeError("from_nanos() takes an int")
    with localcontext() as ctx:
        ctx.prec = 60
        return Decimal(nanos) / _NANO
