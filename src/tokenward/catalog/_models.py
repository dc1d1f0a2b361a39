"""Data types of the catalog: prices, price tiers and model descriptions."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import date, datetime, time, timezone
from decimal import Context, Decimal, InvalidOperation
from typing import Any, Literal

from tokenward.usage import TOKEN_FIELDS

__all__ = ["PRICE_FIELDS", "ModelInfo", "PricePeriod", "PriceTier", "Prices", "as_utc"]

#: Names of the price fields of :class:`Prices`, in display order.
PRICE_FIELDS: tuple[str, ...] = TOKEN_FIELDS  # one price per token kind

_REQUIRED = ("input", "output")
_EXACT = Context(prec=60)  # products of prices and fractions, exact at 60 digits


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

    def scaled(self, factor: Decimal) -> Prices:
        """Every price times ``factor``, exactly (``scaled(Decimal("0.5"))``: a 50 % discount)."""
        values: dict[str, Any] = {}
        for name in PRICE_FIELDS:
            value = getattr(self, name)
            values[name] = None if value is None else _EXACT.multiply(value, factor)
        return Prices(**values)

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


def as_utc(value: date | datetime | None, name: str = "value") -> datetime | None:
    """A period bound as an aware UTC datetime (a date means its midnight UTC; naive means UTC)."""
    if value is None:
        return None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=timezone.utc)
    raise TypeError(f"PricePeriod.{name} must be a date or datetime, got {type(value).__name__}")


@dataclass(frozen=True, slots=True)
class PricePeriod:
    """The prices of a model while a condition holds: a dated price change, an off-peak window.

    ``start``/``end`` bound the period in time (UTC; ``end`` excluded; a ``date`` means its
    midnight UTC, ``None`` leaves that side open). ``daily`` limits it to a time-of-day window
    ``(from, to)`` in UTC (``to`` excluded; ``from > to`` wraps past midnight). Among a model's
    periods the **last** whose conditions all hold applies (the first when none does), the rule
    genai-prices uses for its conditional prices.

    ``batch`` (with its own ``batch_tiers``) prices a batch call in this period; ``None`` falls
    back to the model's ``batch_discount``, or refuses batch pricing when it has none.
    """

    prices: Prices
    tiers: tuple[PriceTier, ...] = ()
    batch: Prices | None = None
    batch_tiers: tuple[PriceTier, ...] = ()
    start: datetime | None = None
    end: datetime | None = None
    daily: tuple[time, time] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.prices, Prices):
            raise TypeError("PricePeriod.prices must be a Prices")
        if self.batch is not None and not isinstance(self.batch, Prices):
            raise TypeError("PricePeriod.batch must be a Prices or None")
        for name in ("tiers", "batch_tiers"):
            tiers = tuple(sorted(getattr(self, name), key=lambda t: t.above_input_tokens))
            if not all(isinstance(t, PriceTier) for t in tiers):
                raise TypeError(f"PricePeriod.{name} must hold PriceTier objects")
            object.__setattr__(self, name, tiers)
        start, end = as_utc(self.start, "start"), as_utc(self.end, "end")
        if start is not None and end is not None and end <= start:
            raise ValueError(f"PricePeriod ends ({end}) before it starts ({start})")
        object.__setattr__(self, "start", start)
        object.__setattr__(self, "end", end)
        if self.daily is not None:
            window = tuple(self.daily)
            if len(window) != 2 or not all(isinstance(t, time) for t in window):
                raise TypeError("PricePeriod.daily must be a (from, to) pair of datetime.time")
            window = (_day_time(window[0]), _day_time(window[1]))
            if window[0] == window[1]:
                raise ValueError("PricePeriod.daily is an empty window (from == to)")
            object.__setattr__(self, "daily", window)

    def applies(self, at: datetime) -> bool:
        """Whether this period's conditions hold at ``at`` (naive means UTC)."""
        when = as_utc(at, "at")
        assert when is not None
        if self.start is not None and when < self.start:
            return False
        if self.end is not None and when >= self.end:
            return False
        if self.daily is None:
            return True
        now = when.time()
        begin, stop = self.daily
        if begin < stop:
            return begin <= now < stop
        return now >= begin or now < stop


def _day_time(value: time) -> time:
    """A time of day in UTC, without tzinfo (naive means UTC already)."""
    if value.tzinfo is None:
        return value
    moment = datetime.combine(date(2000, 1, 3), value).astimezone(timezone.utc)
    return moment.time()


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
    ``price_source`` names the price data that priced the model (``"genai-prices 0.2.3"``,
    ``"tokenward overlay"``, ``"user"``, ``"local"``), recorded on every event it prices.

    ``periods`` holds the model's price history and time-of-day prices (see
    :class:`PricePeriod`); when set, they price each call at its own time, and ``prices`` /
    ``tiers`` show the period in force when the catalog was loaded. Empty: ``prices``/``tiers``
    (and ``batch_discount``) always apply. ``dataclasses.replace(info, prices=..., periods=())``
    gives a model priced at fixed prices.
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
    price_source: str = "user"
    periods: tuple[PricePeriod, ...] = ()

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
        periods = tuple(self.periods)
        if not all(isinstance(p, PricePeriod) for p in periods):
            raise TypeError(f"{self.name}: periods must hold PricePeriod objects")
        if periods and self.prices is None:
            raise ValueError(f"{self.name}: an unpriced model cannot have price periods")
        object.__setattr__(self, "periods", periods)

    def tier_for(self, input_tokens: int) -> PriceTier | None:
        """The tier that applies to a call with ``input_tokens`` prompt tokens, or ``None``."""
        chosen = None
        for tier in self.tiers:
            if input_tokens > tier.above_input_tokens:
                chosen = tier
        return chosen

    def period_at(self, at: datetime | None = None) -> PricePeriod:
        """The price period in force at ``at`` (default now; naive means UTC)."""
        if self.prices is None:
            raise self._unpriced()
        if not self.periods:
            return PricePeriod(self.prices, self.tiers)
        when = at if at is not None else datetime.now(timezone.utc)
        for period in reversed(self.periods):  # the last period whose conditions hold
            if period.applies(when):
                return period
        return self.periods[0]

    def prices_for(
        self, input_tokens: int, *, at: datetime | None = None, batch: bool = False
    ) -> Prices:
        """Prices for a call with ``input_tokens`` prompt tokens (tier-aware), made at ``at``
        (default now), at the batch rate when ``batch``.

        Raises :class:`~tokenward.errors.PricingMissingError` for an unpriced model, or for
        ``batch=True`` on a model without batch prices.
        """
        if self.prices is None:
            raise self._unpriced()
        if not self.periods and not batch:
            tier = self.tier_for(input_tokens)
            return self.prices if tier is None else tier.prices
        period = self.period_at(at)
        base, tiers = period.prices, period.tiers
        if batch:
            if period.batch is not None:
                base, tiers = period.batch, period.batch_tiers
            elif self.batch_discount is not None:
                keep = 1 - self.batch_discount
                base = base.scaled(keep)
                tiers = tuple(PriceTier(t.above_input_tokens, t.prices.scaled(keep)) for t in tiers)
            else:
                from tokenward.errors import PricingMissingError

                raise PricingMissingError(
                    f"Model {self.name!r} has no batch price. Price it without batch, or set "
                    f"one with catalog.override({self.name!r}, batch_discount='0.5')."
                )
        chosen = base
        for tier in tiers:  # ascending: the highest exceeded wins
            if input_tokens > tier.above_input_tokens:
                chosen = tier.prices
        return chosen

    def _unpriced(self) -> Exception:
        from tokenward.errors import PricingMissingError

        return PricingMissingError(
            f"Model {self.name!r} has no price. Run `tokenward models update`, or register "
            f"its prices with catalog.override({self.name!r}, input=..., output=..., "
            "context_window=...)."
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict in the ``models.json`` format."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "prices":
                if value is not None:
                    value = _prices_dict(value)
            elif f.name == "tiers":
                value = _tiers_list(value)
            elif f.name == "batch_discount":
                value = None if value is None else str(value)
            elif f.name == "aliases":
                value = list(value)
            elif f.name == "as_of":
                value = value.isoformat()
            elif f.name == "periods":
                value = [_period_dict(p) for p in value]
            out[f.name] = value
        return out


def _prices_dict(prices: Prices) -> dict[str, str]:
    return {k: v for k, v in prices.to_dict().items() if v is not None}


def _tiers_list(tiers: tuple[PriceTier, ...]) -> list[dict[str, Any]]:
    return [
        {"above_input_tokens": t.above_input_tokens, "prices": _prices_dict(t.prices)}
        for t in tiers
    ]


def _period_dict(period: PricePeriod) -> dict[str, Any]:
    out: dict[str, Any] = {"prices": _prices_dict(period.prices)}
    if period.tiers:
        out["tiers"] = _tiers_list(period.tiers)
    if period.batch is not None:
        out["batch"] = _prices_dict(period.batch)
    if period.batch_tiers:
        out["batch_tiers"] = _tiers_list(period.batch_tiers)
    for name in ("start", "end"):
        moment = getattr(period, name)
        if moment is not None:
            out[name] = moment.isoformat().replace("+00:00", "Z")
    if period.daily is not None:
        out["daily"] = [t.isoformat() for t in period.daily]
    return out
