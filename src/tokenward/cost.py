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
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Context, Decimal, localcontext
from functools import lru_cache
from typing import Any

from tokenward.catalog import Catalog, ModelInfo, Prices, default_catalog
from tokenward.errors import PricingMissingError
from tokenward.usage import Usage

__all__ = ["CostBreakdown", "cost", "estimate_nanos", "from_nanos", "price_nanos", "to_nanos"]

_MILLION = Decimal(1_000_000)
_ZERO = Decimal(0)
_NANO = Decimal(1_000_000_000)
_CENT = Decimal("0.01")
_ONE = Decimal(1)
# Every operation of the pricing path is exact at 60 digits (token counts times prices, divided by
# a power of ten), so a private context gives the same results as ``localcontext()`` with
# ``prec = 60`` without entering and leaving a context on every call.
_CTX = Context(prec=60, rounding=ROUND_HALF_EVEN)
_mul = _CTX.multiply
_div = _CTX.divide
_add = _CTX.add
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


_PLANS: dict[int, tuple[ModelInfo, tuple[Any, ...]]] = {}


def _plan(info: ModelInfo) -> tuple[Any, ...]:
    """Per-model pricing plan: base effective prices and ``(threshold, prices, effective)`` tiers.

    Cached by object identity (``ModelInfo`` is immutable; the entry keeps the object alive, so
    its id cannot be reused while cached).
    """
    entry = _PLANS.get(id(info))
    if entry is not None and entry[0] is info:
        return entry[1]
    plan = (
        _effective(info.prices),
        tuple((t.above_input_tokens, t.prices, _effective(t.prices)) for t in info.tiers),
    )
    if len(_PLANS) >= 1024:
        _PLANS.clear()
    _PLANS[id(info)] = (info, plan)
    return plan


def _priced(
    usage: Usage, info: ModelInfo, batch: bool
) -> tuple[int | None, tuple[int, ...], tuple[Decimal, ...], Decimal | None]:
    """``(tier threshold, tokens per component, effective prices, batch keep factor)``.

    Raises like :func:`cost` for prices the model lacks.
    """
    effective, tiers = _plan(info)
    n_input = usage.input
    tier = None
    prices = info.prices
    for threshold, tier_prices, tier_effective in tiers:  # sorted: the highest exceeded wins
        if n_input > threshold:
            tier, prices, effective = threshold, tier_prices, tier_effective

    if batch and info.batch_discount is None:
        raise PricingMissingError(
            f"Model {info.name!r} has no batch price. Call cost(..., batch=False), or set one with "
            f"catalog.override({info.name!r}, batch_discount='0.5')."
        )
    audio_input = usage.audio_input
    audio_output = usage.audio_output
    cache_write_1h = usage.cache_write_1h
    if audio_input and prices.audio_input is None:
        raise _missing(info, "audio input", "audio_input", audio_input)
    if audio_output and prices.audio_output is None:
        raise _missing(info, "audio output", "audio_output", audio_output)
    if cache_write_1h and prices.cache_write_1h is None and prices.cache_write_5m is not None:
        raise _missing(info, "1-hour cache write", "cache_write_1h", cache_write_1h)

    cache_read = usage.cache_read
    cache_write_5m = usage.cache_write_5m
    reasoning = usage.reasoning
    image_input = usage.image_input
    tokens = (
        max(0, n_input - cache_read - cache_write_5m - cache_write_1h - audio_input - image_input),
        cache_read,
        cache_write_5m,
        cache_write_1h,
        max(0, usage.output - reasoning - audio_output),
        reasoning,
        audio_input,
        audio_output,
        image_input,
    )
    keep = None
    if batch and info.batch_discount is not None:
        keep = _CTX.subtract(_ONE, info.batch_discount)
    return tier, tokens, effective, keep


def _amount(n: int, price: Decimal, keep: Decimal | None) -> Decimal:
    # division (not * 1E-6) keeps results short: 0.0375, not 0.03750000
    if keep is None:
        return _div(_mul(Decimal(n), price), _MILLION)
    return _div(_mul(_mul(Decimal(n), price), keep), _MILLION)


def _cost_total(usage: Usage, info: ModelInfo, batch: bool = False) -> Decimal:
    """``cost(usage, info, batch=batch).total`` without building the breakdown (hot path)."""
    _, tokens, effective, keep = _priced(usage, info, batch)
    total = _ZERO
    for n, price in zip(tokens, effective):
        if n:  # a zero component adds nothing (the running sum's exponent is already <= 0)
            total = _add(total, _amount(n, price, keep))
    return total


def _estimate_total(info: ModelInfo, input_tokens: int, output_tokens: int) -> Decimal:
    """``cost(Usage(input=input_tokens, output=output_tokens), info).total`` (the pre-flight guess).

    Callers pass validated ints >= 0; a plain input/output usage has no other component, so
    no price can be missing.
    """
    effective, tiers = _plan(info)
    for threshold, _, tier_effective in tiers:  # sorted: the highest exceeded wins
        if input_tokens > threshold:
            effective = tier_effective
    total = _ZERO
    if input_tokens:
        total = _add(total, _div(_mul(Decimal(input_tokens), effective[0]), _MILLION))
    if output_tokens:
        total = _add(total, _div(_mul(Decimal(output_tokens), effective[4]), _MILLION))
    return total


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
    if info.prices is None:
        info.prices_for(usage.input)  # raises PricingMissingError naming the fix
    tier, tokens, effective, keep = _priced(usage, info, batch)
    amounts = [
        _amount(n, price, keep) if n else _ZERO for n, price in zip(tokens, effective, strict=True)
    ]
    total = _ZERO
    for amount in amounts:
        total = _add(total, amount)
    # positional: model, the components in COMPONENTS order, total, tier, batch, estimated
    return CostBreakdown(info.name, *amounts, total, tier, batch, usage.estimated)


def price_nanos(
    usage: Usage, info: ModelInfo, *, at: datetime | None = None, batch: bool = False
) -> int | None:
    """The cost of ``usage`` on ``info`` in whole nano-USD, or ``None`` when the model is unpriced.

    Equal to ``to_nanos(cost(usage, info, batch=batch).total)``; ``at`` is when the call was
    made (prices that changed over time are taken as of then). Raises like :func:`cost` for a
    token kind the model cannot price.
    """
    if info.prices is None:
        return None
    return to_nanos(_cost_total(usage, info, batch))


def estimate_nanos(
    info: ModelInfo, input_tokens: int, output_tokens: int, *, at: datetime | None = None
) -> int | None:
    """A plain input/output guess priced in nano-USD (the pre-flight estimate); ``None`` if unpriced."""
    if info.prices is None:
        return None
    return to_nanos(_estimate_total(info, input_tokens, output_tokens))


def to_nanos(usd: Decimal | int | str) -> int:
    """USD -> integer nano-USD (1e-9), rounded half-to-even. Floats are refused (money is never float)."""
    if type(usd) is Decimal:
        value = usd
    else:
        if isinstance(usd, (float, bool)):
            raise TypeError("to_nanos() takes a Decimal (or int/str), never a float")
        value = usd if isinstance(usd, Decimal) else Decimal(usd)
    # quantize to whole nano-USD, half-to-even, at 60 digits (the context's rounding)
    return int(_CTX.quantize(_mul(value, _NANO), _ONE))


def from_nanos(nanos: int) -> Decimal:
    """Integer nano-USD -> exact ``Decimal`` USD."""
    if isinstance(nanos, bool) or not isinstance(nanos, int):
        raise TypeError("from_nanos() takes an int")
    return _div(Decimal(nanos), _NANO)
