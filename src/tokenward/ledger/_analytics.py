"""Analytics over any ledger store: averages, ratios, peaks, trends and cache economics.

Everything here is computed from :meth:`LedgerStore.summary` /
:meth:`~LedgerStore.timeseries` rows, so it works the same on every store and
benefits from the stores' rollups. Money is :class:`~decimal.Decimal`; rates and
ratios are floats in ``[0, 1]`` (or ``None`` when undefined, e.g. no calls).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from tokenward.errors import ConfigurationError
from tokenward.ledger._base import LedgerStore, SummaryRow, WhereValue, check_metric

__all__ = [
    "CacheModelRow",
    "CacheReport",
    "ModelBreakdown",
    "PeakHour",
    "Trend",
    "UsageStats",
    "cache_break_even",
    "cache_report",
    "model_breakdown",
    "peak_hour",
    "trend",
    "usage_stats",
]

_MILLION = Decimal(1_000_000)
_ZERO = Decimal(0)


def _div(a: float, b: float) -> float | None:
    return a / b if b else None


def _money_avg(total: Decimal, n: int) -> Decimal | None:
    return (total / n) if n else None


@dataclass(frozen=True)
class UsageStats:
    """Totals and per-call averages for a set of events."""

    calls: int
    errors: int
    cancelled: int
    input: int
    output: int
    cache_read: int
    cache_write: int
    reasoning: int
    tokens: int
    cost: Decimal
    success_rate: float | None  #: ok calls / calls
    avg_input_per_call: float | None
    avg_output_per_call: float | None
    avg_tokens_per_call: float | None
    avg_cost_per_call: Decimal | None  #: over the priced calls only
    input_output_ratio: float | None  #: input tokens per output token
    cache_hit_rate: float | None  #: cache_read / input
    avg_latency_ms: float | None
    estimated_share: float | None  #: share of calls whose usage was estimated
    unpriced_calls: int = 0  #: calls whose cost is unknown (not in ``cost``)

    @classmethod
    def from_row(cls, row: SummaryRow | None) -> UsageStats:
        """Stats of one summary row (``None`` -> all zeros)."""
        if row is None:
            return cls(
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                _ZERO,
                None,
                None,
                None,
                None,
                None,
                None,
                None,
                None,
                None,
            )
        n = row.calls
        return cls(
            calls=n,
            errors=row.errors,
            cancelled=row.cancelled,
            input=row.input,
            output=row.output,
            cache_read=row.cache_read,
            cache_write=row.cache_write,
            reasoning=row.reasoning,
            tokens=row.tokens,
            cost=row.cost,
            success_rate=_div(row.ok, n),
            avg_input_per_call=_div(row.input, n),
            avg_output_per_call=_div(row.output, n),
            avg_tokens_per_call=_div(row.tokens, n),
            avg_cost_per_call=_money_avg(row.cost, n - row.unpriced_calls),
            input_output_ratio=_div(row.input, row.output),
            cache_hit_rate=_div(row.cache_read, row.input),
            avg_latency_ms=row.avg_latency_ms,
            estimated_share=_div(row.estimated, n),
            unpriced_calls=row.unpriced_calls,
        )


def usage_stats(
    ledger: LedgerStore,
    since: datetime | None = None,
    until: datetime | None = None,
    where: Mapping[str, WhereValue] | None = None,
) -> UsageStats:
    """Totals, success rate, per-call averages, input/output ratio and cache hit rate."""
    rows = ledger.summary(since, until, by=(), where=where)
    return UsageStats.from_row(rows[0] if rows else None)


@dataclass(frozen=True)
class PeakHour:
    """The busiest hour of the day (UTC) by ``metric``, with the whole 24-hour profile."""

    hour: int  #: 0..23, UTC
    metric: str
    value: Decimal | int
    share: float | None  #: of the metric's total over the range
    by_hour: tuple[Decimal | int, ...]  #: 24 values, index = UTC hour of day


def peak_hour(
    ledger: LedgerStore,
    since: datetime | None = None,
    until: datetime | None = None,
    where: Mapping[str, WhereValue] | None = None,
    metric: str = "calls",
) -> PeakHour | None:
    """Hour of day (UTC) with the most calls/tokens/cost; ``None`` when there are no events.

    Ties go to the earliest hour.
    """
    check_metric(metric)
    zero: Decimal | int = _ZERO if metric == "cost" else 0
    profile: list[Any] = [zero] * 24
    rows = ledger.timeseries("hour", since, until, where=where)
    if not rows:
        return None
    for row in rows:
        assert row.bucket is not None
        profile[row.bucket.hour] += row.metric(metric)  # type: ignore[arg-type]
    total = sum(profile, zero)
    best = max(range(24), key=lambda h: (profile[h], -h))
    return PeakHour(
        hour=best,
        metric=metric,
        value=profile[best],
        share=float(profile[best] / total) if total else None,
        by_hour=tuple(profile),
    )


@dataclass(frozen=True)
class Trend:
    """``metric`` over the current period vs the period just before it."""

    metric: str
    current: Decimal | int
    previous: Decimal | int
    change: Decimal | int  #: current - previous
    change_pct: float | None  #: relative change; None when previous is 0
    current_start: datetime
    current_end: datetime
    previous_start: datetime


def trend(
    ledger: LedgerStore,
    period: timedelta = timedelta(days=7),
    metric: str = "cost",
    *,
    now: datetime | None = None,
    where: Mapping[str, WhereValue] | None = None,
) -> Trend:
    """Compare ``[now - period, now)`` with ``[now - 2*period, now - period)``."""
    check_metric(metric)
    if period <= timedelta(0):
        raise ConfigurationError(f"period must be positive, got {period}")
    end = now or datetime.now(timezone.utc)
    start = end - period
    prev_start = start - period

    def value(lo: datetime, hi: datetime) -> Decimal | int:
        rows = ledger.summary(lo, hi, by=(), where=where)
        if not rows:
            return _ZERO if metric == "cost" else 0
        return rows[0].metric(metric)  # type: ignore[arg-type]

    cur, prev = value(start, end), value(prev_start, start)
    change = cur - prev
    return Trend(
        metric=metric,
        current=cur,
        previous=prev,
        change=change,
        change_pct=float(change / prev) if prev else None,
        current_start=start,
        current_end=end,
        previous_start=prev_start,
    )


# -- cache economics ----------------------------------------------------------------------


def _catalog(catalog: Any) -> Any:
    if catalog is not None:
        return catalog
    from tokenward.catalog import default_catalog  # lazy: catalog is optional here

    return default_catalog()


def _prices_of(model_or_prices: Any, catalog: Any) -> Any:
    if isinstance(model_or_prices, str):
        return _catalog(catalog).get(model_or_prices).prices
    return model_or_prices


def cache_break_even(
    model_or_prices: Any, *, ttl: str = "5m", catalog: Any = None
) -> Decimal | None:
    """Cache reads needed to pay back one cache write of the same tokens.

    ``(write_price - input_price) / (input_price - read_price)``: writing to the
    cache costs a premium over plain input; each later read saves
    ``input - read``. ``0`` when writes cost no premium; ``None`` when reads save
    nothing (the write never pays back). Round up for a whole number of reads.

    ``model_or_prices`` is a model name (looked up in ``catalog``, default the
    shipped catalog) or a ``Prices`` object. ``ttl`` is ``"5m"`` or ``"1h"``.
    """
    if ttl not in ("5m", "1h"):
        raise ConfigurationError(f"ttl must be '5m' or '1h', got {ttl!r}")
    prices = _prices_of(model_or_prices, catalog)
    inp = prices.input
    read = prices.cache_read if prices.cache_read is not None else inp
    write = getattr(prices, f"cache_write_{ttl}")
    if write is None:
        write = inp
    saving = inp - read
    premium = write - inp
    if premium <= 0:
        return Decimal(0)
    if saving <= 0:
        return None
    ratio: Decimal = premium / saving
    return ratio


@dataclass(frozen=True)
class CacheModelRow:
    """Prompt-cache economics of one model."""

    model: str
    input: int
    cache_read: int
    cache_write_5m: int
    cache_write_1h: int
    hit_rate: float | None  #: cache_read / input
    read_savings: Decimal  #: what the reads would have cost at the input price minus what they cost
    write_premium: Decimal  #: what the writes cost above the input price
    net_savings: Decimal  #: read_savings - write_premium
    break_even_reads: Decimal | None  #: see :func:`cache_break_even` (5-minute writes)
    priced: bool  #: False when the model is not in the catalog (savings counted as 0)


@dataclass(frozen=True)
class CacheReport:
    """Prompt-cache hit rate and savings in USD, overall and per model."""

    input: int
    cache_read: int
    cache_write: int
    hit_rate: float | None
    read_savings: Decimal
    write_premium: Decimal
    net_savings: Decimal
    per_model: tuple[CacheModelRow, ...]
    unpriced_models: tuple[str, ...]


def cache_report(
    ledger: LedgerStore,
    since: datetime | None = None,
    until: datetime | None = None,
    where: Mapping[str, WhereValue] | None = None,
    *,
    catalog: Any = None,
) -> CacheReport:
    """Cache hit rate and USD savings from the catalog's prices (base tier).

    Savings per model = ``cache_read x (input_price - cache_read_price)``; the
    write premium = ``cache_write_5m x (cache_write_5m_price - input_price) +``
    the same for 1-hour writes. Models missing from the catalog are listed in
    ``unpriced_models`` and contribute no savings (never a guess).
    """
    rows = ledger.summary(since, until, by=["model"], where=where)
    per_model: list[CacheModelRow] = []
    unpriced: list[str] = []
    cat = None
    for row in sorted(rows, key=lambda r: r.dims["model"] or ""):
        model = row.dims["model"] or ""
        prices = None
        if row.cache_read or row.cache_write:
            if cat is None:
                cat = _catalog(catalog)
            try:
                prices = cat.get(model).prices
            except KeyError:
                unpriced.append(model)
        read_sav = prem = _ZERO
        be = None
        if prices is not None:
            inp = prices.input
            read = prices.cache_read if prices.cache_read is not None else inp
            w5 = prices.cache_write_5m if prices.cache_write_5m is not None else inp
            w1 = prices.cache_write_1h if prices.cache_write_1h is not None else w5
            read_sav = row.cache_read * (inp - read) / _MILLION
            prem = (row.cache_write_5m * (w5 - inp) + row.cache_write_1h * (w1 - inp)) / _MILLION
            be = cache_break_even(prices)
        per_model.append(
            CacheModelRow(
                model=model,
                input=row.input,
                cache_read=row.cache_read,
                cache_write_5m=row.cache_write_5m,
                cache_write_1h=row.cache_write_1h,
                hit_rate=_div(row.cache_read, row.input),
                read_savings=read_sav,
                write_premium=prem,
                net_savings=read_sav - prem,
                break_even_reads=be,
                priced=prices is not None or not (row.cache_read or row.cache_write),
            )
        )
    total_in = sum(r.input for r in per_model)
    total_read = sum(r.cache_read for r in per_model)
    read_savings = sum((r.read_savings for r in per_model), _ZERO)
    premium = sum((r.write_premium for r in per_model), _ZERO)
    return CacheReport(
        input=total_in,
        cache_read=total_read,
        cache_write=sum(r.cache_write_5m + r.cache_write_1h for r in per_model),
        hit_rate=_div(total_read, total_in),
        read_savings=read_savings,
        write_premium=premium,
        net_savings=read_savings - premium,
        per_model=tuple(per_model),
        unpriced_models=tuple(unpriced),
    )


@dataclass(frozen=True)
class ModelBreakdown:
    """One model's share of the usage."""

    model: str
    calls: int
    tokens: int
    input: int
    output: int
    cost: Decimal
    cost_share: float | None  #: of the total cost in the range
    avg_cost_per_call: Decimal | None  #: over the priced calls only
    avg_tokens_per_call: float | None
    success_rate: float | None
    cache_hit_rate: float | None
    unpriced_calls: int = 0  #: calls whose cost is unknown (not in ``cost``)


def model_breakdown(
    ledger: LedgerStore,
    since: datetime | None = None,
    until: datetime | None = None,
    where: Mapping[str, WhereValue] | None = None,
) -> list[ModelBreakdown]:
    """Per-model calls, tokens, cost and shares, most expensive first."""
    rows: Sequence[SummaryRow] = ledger.summary(since, until, by=["model"], where=where)
    total = sum((r.cost for r in rows), _ZERO)
    return [
        ModelBreakdown(
            model=r.dims["model"] or "",
            calls=r.calls,
            tokens=r.tokens,
            input=r.input,
            output=r.output,
            cost=r.cost,
            cost_share=float(r.cost / total) if total else None,
            avg_cost_per_call=_money_avg(r.cost, r.calls - r.unpriced_calls),
            avg_tokens_per_call=_div(r.tokens, r.calls),
            success_rate=_div(r.ok, r.calls),
            cache_hit_rate=_div(r.cache_read, r.input),
            unpriced_calls=r.unpriced_calls,
        )
        for r in rows
    ]
