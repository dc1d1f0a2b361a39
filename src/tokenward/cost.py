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

import time as _time
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import ROUND_HALF_EVEN, Context, Decimal, localcontext

from tokenward._memo import remember
from tokenward.catalog import Catalog, ModelInfo, PricePeriod, Prices, PriceTier, default_catalog
from tokenward.errors import PricingMissingError
from tokenward.usage import Usage

__all__ = ["CostBreakdown", "cost", "estimate_nanos", "from_nanos", "price_nanos", "to_nanos"]

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


# ----------------------------------------------------------------------------- the integer plan
# A model's prices are converted once into exact integers: units of 10**-(6+d) USD per token,
# where d >= 9 is the largest number of decimals any of its prices has (so every published
# price, in USD per 1M tokens, is a whole number of units; usually d = 9, i.e. femto-USD).
# Pricing a call is then integer multiply-adds and one rounding to nano-USD.

_Table = tuple[
    int | None, ...
]  # per-token price of each component (COMPONENTS order); None = no price
_Rates = tuple[
    _Table, tuple[tuple[int, _Table], ...]
]  # base table, (threshold, table) tiers ascending
_MIN_DECIMALS = 9
_DAY = 86_400


def _decimals(value: Decimal) -> int:
    exponent = value.as_tuple().exponent
    return -exponent if isinstance(exponent, int) and exponent < 0 else 0


def _components(prices: Prices) -> tuple[Decimal | None, ...]:
    """Per-component prices (USD per 1M tokens) with the documented fallbacks; None = missing."""
    inp, out = prices.input, prices.output
    cache_5m = prices.cache_write_5m
    if prices.cache_write_1h is not None:
        cache_1h: Decimal | None = prices.cache_write_1h
    else:  # a 5-minute write price but no 1-hour one: refuse rather than guess
        cache_1h = None if cache_5m is not None else inp
    return (
        inp,
        inp if prices.cache_read is None else prices.cache_read,
        inp if cache_5m is None else cache_5m,
        cache_1h,
        out,
        out if prices.reasoning is None else prices.reasoning,
        prices.audio_input,
        prices.audio_output,
        inp if prices.image_input is None else prices.image_input,
    )


class _Entry:
    """One price period, compiled: its time conditions (seconds) and integer rates."""

    __slots__ = ("batch", "daily", "end", "start", "std")

    def __init__(
        self,
        start: float | None,
        end: float | None,
        daily: tuple[int, int] | None,
        std: _Rates,
        batch: _Rates | None,
    ) -> None:
        self.start, self.end, self.daily, self.std, self.batch = start, end, daily, std, batch

    def applies(self, ts: float) -> bool:
        if self.start is not None and ts < self.start:
            return False
        if self.end is not None and ts >= self.end:
            return False
        if self.daily is None:
            return True
        second, (begin, stop) = ts % _DAY, self.daily
        if begin < stop:
            return begin <= second < stop
        return second >= begin or second < stop


class _Plan:
    """A model's prices as integers, per period; ``timed`` when the period depends on the time."""

    __slots__ = ("divisor", "entries", "info", "scale", "timed")

    def __init__(self, info: ModelInfo, entries: tuple[_Entry, ...], decimals: int) -> None:
        self.info = info
        self.entries = entries
        self.timed = len(entries) > 1
        self.scale = Decimal(10) ** (6 + decimals)  # units per USD
        self.divisor: int = int(10 ** (decimals - 3))  # units per nano-USD (decimals >= 9)

    def entry(self, at: datetime | None) -> _Entry:
        entries = self.entries
        if not self.timed:
            return entries[0]
        ts = _time.time() if at is None else _timestamp(at)
        for entry in reversed(entries):  # the last period whose conditions hold wins
            if entry.applies(ts):
                return entry
        return entries[0]

    def nanos(self, units: int) -> int:
        """Units -> whole nano-USD, rounded half-to-even (the rounding of :func:`to_nanos`)."""
        quotient, remainder = divmod(units, self.divisor)
        twice = remainder * 2
        if twice > self.divisor or (twice == self.divisor and quotient & 1):
            quotient += 1
        return quotient


def _timestamp(at: datetime) -> float:
    if at.tzinfo is None:
        at = at.replace(tzinfo=timezone.utc)
    return at.timestamp()


def _seconds(moment: datetime | None) -> float | None:
    return None if moment is None else moment.timestamp()


def _compile(info: ModelInfo) -> _Plan:
    periods = info.periods or (PricePeriod(info.prices, info.tiers),)  # type: ignore[arg-type]
    keep = None if info.batch_discount is None else _CTX.subtract(_ONE, info.batch_discount)
    raw = []
    for period in periods:
        std = (period.prices, period.tiers)
        batch: tuple[Prices, tuple[PriceTier, ...]] | None = None
        if period.batch is not None:
            batch = (period.batch, period.batch_tiers)
        elif keep is not None:
            batch = (
                period.prices.scaled(keep),
                tuple(PriceTier(t.above_input_tokens, t.prices.scaled(keep)) for t in period.tiers),
            )
        raw.append((period, std, batch))
    decimals = _MIN_DECIMALS
    for _, std, batch in raw:
        for prices, tiers in (std, *(() if batch is None else (batch,))):
            for p in (prices, *(t.prices for t in tiers)):
                for value in _components(p):
                    if value is not None:
                        decimals = max(decimals, _decimals(value))

    def table(prices: Prices) -> _Table:
        return tuple(
            None if v is None else int(v.scaleb(decimals, _CTX)) for v in _components(prices)
        )

    def rates(prices: Prices, tiers: tuple[PriceTier, ...]) -> _Rates:
        return table(prices), tuple((t.above_input_tokens, table(t.prices)) for t in tiers)

    entries = []
    for period, std, batch in raw:
        daily = None
        if period.daily is not None:
            begin, stop = period.daily
            daily = (
                begin.hour * 3600 + begin.minute * 60 + begin.second,
                stop.hour * 3600 + stop.minute * 60 + stop.second,
            )
        entries.append(
            _Entry(
                _seconds(period.start),
                _seconds(period.end),
                daily,
                rates(*std),
                None if batch is None else rates(*batch),
            )
        )
    return _Plan(info, tuple(entries), decimals)


_PLANS: dict[int, _Plan] = {}


def _plan(info: ModelInfo) -> _Plan:
    """The compiled plan of ``info``, cached by identity (``ModelInfo`` is immutable; the cache
    entry keeps the object alive, so its id cannot be reused while cached)."""
    plan = _PLANS.get(id(info))
    if plan is not None and plan.info is info:
        return plan
    return remember(_PLANS, id(info), _compile(info), 4096)


def _missing(info: ModelInfo, kind: str, field: str, tokens: int) -> PricingMissingError:
    return PricingMissingError(
        f"Usage has {tokens} {kind} tokens but model {info.name!r} has no {field} price. "
        f"Set it with catalog.override({info.name!r}, {field}=...) or register a model that "
        "prices it."
    )


def _priced(
    usage: Usage, plan: _Plan, at: datetime | None, batch: bool
) -> tuple[int | None, tuple[int, ...], _Table, int]:
    """``(tier threshold, tokens per component, per-token prices, price in units)`` of one
    call (units: ``plan.scale`` per USD).

    Raises like :func:`cost` for a token kind the model cannot price.
    """
    entry = plan.entry(at) if plan.timed else plan.entries[0]  # most models: one period
    rates = entry.batch if batch else entry.std
    if rates is None:
        name = plan.info.name
        raise PricingMissingError(
            f"Model {name!r} has no batch price. Call cost(..., batch=False), or set one with "
            f"catalog.override({name!r}, batch_discount='0.5')."
        )
    table, tiers = rates
    n_input = usage.input
    tier = None
    for threshold, tier_table in tiers:  # ascending: the highest exceeded wins
        if n_input > threshold:
            tier, table = threshold, tier_table
    cache_read = usage.cache_read
    cache_write_5m = usage.cache_write_5m
    cache_write_1h = usage.cache_write_1h
    reasoning = usage.reasoning
    audio_input = usage.audio_input
    audio_output = usage.audio_output
    image_input = usage.image_input
    if audio_input and table[6] is None:
        raise _missing(plan.info, "audio input", "audio_input", audio_input)
    if audio_output and table[7] is None:
        raise _missing(plan.info, "audio output", "audio_output", audio_output)
    if cache_write_1h and table[3] is None:
        raise _missing(plan.info, "1-hour cache write", "cache_write_1h", cache_write_1h)
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
    units = 0
    for n, price in zip(tokens, table):
        if n:  # a zero component adds nothing (and may have no price)
            units += n * price  # type: ignore[operator]
    return tier, tokens, table, units


def cost(
    usage: Usage,
    model: str | ModelInfo,
    *,
    catalog: Catalog | None = None,
    batch: bool = False,
    at: datetime | None = None,
) -> CostBreakdown:
    """Price ``usage`` for ``model`` (a name resolved in ``catalog`` or the default catalog).

    ``at`` is when the call was made (default now): a model whose price changed over time, or
    that has off-peak prices, is priced as of then. Raises ``UnknownModelError`` for unknown
    names (unless the catalog has a fallback) and ``PricingMissingError`` when the model has no
    price, when the usage contains a token kind the model cannot price, or ``batch=True`` for a
    model without batch pricing.
    """
    if not isinstance(usage, Usage):
        raise TypeError(
            f"usage must be a Usage, got {type(usage).__name__}; try Usage.from_any(payload)"
        )
    info = _resolve(model, catalog)
    if info.prices is None:
        info.prices_for(usage.input)  # raises PricingMissingError naming the fix
    plan = _plan(info)
    tier, tokens, table, units = _priced(usage, plan, at, batch)
    scale = plan.scale
    a = [
        _div(Decimal(n * price), scale) if n else _ZERO  # type: ignore[operator]
        for n, price in zip(tokens, table, strict=True)
    ]
    total = _div(Decimal(units), scale)
    # positional (the fastest way to build it): the components in COMPONENTS order
    return CostBreakdown(
        info.name, a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8],
        total, tier, batch, usage.estimated,
    )  # fmt: skip


def price_nanos(
    usage: Usage, info: ModelInfo, *, at: datetime | None = None, batch: bool = False
) -> int | None:
    """The cost of ``usage`` on ``info`` in whole nano-USD, or ``None`` when the model is unpriced.

    Equal to ``to_nanos(cost(usage, info, batch=batch, at=at).total)``, in integer arithmetic;
    ``at`` is when the call was made (default now). Raises like :func:`cost` for a token kind
    the model cannot price.
    """
    if info.prices is None:
        return None
    plan = _plan(info)
    return plan.nanos(_priced(usage, plan, at, batch)[3])


def estimate_nanos(
    info: ModelInfo, input_tokens: int, output_tokens: int, *, at: datetime | None = None
) -> int | None:
    """A plain input/output guess priced in nano-USD (the pre-flight estimate); ``None`` if unpriced.

    Equal to ``price_nanos(Usage(input=input_tokens, output=output_tokens), info, at=at)``.
    """
    if info.prices is None:
        return None
    plan = _plan(info)
    table, tiers = plan.entry(at).std
    for threshold, tier_table in tiers:
        if input_tokens > threshold:
            table = tier_table
    return plan.nanos(input_tokens * table[0] + output_tokens * table[4])  # type: ignore[operator]


def _cost_total(usage: Usage, info: ModelInfo, batch: bool = False) -> Decimal:
    """``cost(usage, info, batch=batch).total`` without the breakdown.

    Kept for callers on the Decimal path (the Accountant before it moves to :func:`price_nanos`).
    """
    plan = _plan(info)
    return _div(Decimal(_priced(usage, plan, None, batch)[3]), plan.scale)


def _estimate_total(info: ModelInfo, input_tokens: int, output_tokens: int) -> Decimal:
    """:func:`estimate_nanos` as an exact Decimal (see :func:`_cost_total`)."""
    return _cost_total(Usage(input=input_tokens, output=output_tokens), info)


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
