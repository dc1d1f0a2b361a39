"""Analytics over ledger stores: exact numbers on small hand-made data."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from tokenward.errors import ConfigurationError, UnknownModelError
from tokenward.ledger import (
    MemoryLedger,
    SQLiteLedger,
    UsageEvent,
    cache_break_even,
    cache_report,
    model_breakdown,
    peak_hour,
    trend,
    usage_stats,
)
from tokenward.usage import Usage

UTC = timezone.utc
T0 = datetime(2026, 11, 20, tzinfo=UTC)


def P(inp: str, read: str | None = None, w5: str | None = None, w1: str | None = None) -> Any:
    """A Prices-like object (USD per 1M tokens)."""
    return SimpleNamespace(
        input=Decimal(inp),
        output=Decimal("10"),
        cache_read=None if read is None else Decimal(read),
        cache_write_5m=None if w5 is None else Decimal(w5),
        cache_write_1h=None if w1 is None else Decimal(w1),
    )


class FakeCatalog:
    def __init__(self, prices: dict[str, Any]) -> None:
        self.prices = prices

    def get(self, name: str) -> Any:
        if name not in self.prices:
            raise UnknownModelError(name)
        return SimpleNamespace(prices=self.prices[name])


CATALOG = FakeCatalog(
    {
        "claude": P("3", read="0.30", w5="3.75", w1="6"),
        "gpt": P("2.50", read="1.25"),
    }
)


@pytest.fixture(params=["memory", "sqlite"])
def ledger(request: pytest.FixtureRequest, tmp_path: Path):
    led: Any = MemoryLedger() if request.param == "memory" else SQLiteLedger(tmp_path / "a.db")
    yield led
    led.close()


def ev(i: int, ts: datetime, model: str = "gpt", **kw: Any) -> UsageEvent:
    return UsageEvent(
        id=str(i),
        timestamp=ts,
        model=model,
        provider=None,
        usage=kw.pop("usage", Usage(input=100, output=50)),
        cost=kw.pop("cost", Decimal("0.01")),
        **kw,
    )


def test_usage_stats_exact(ledger) -> None:
    ledger.record_many(
        [
            ev(
                1,
                T0,
                usage=Usage(input=1000, output=250, cache_read=400),
                cost=Decimal("0.03"),
                latency_ms=200.0,
            ),
            ev(
                2,
                T0,
                usage=Usage(input=200, output=50),
                cost=Decimal("0.01"),
                status="error",
                latency_ms=100.0,
            ),
            ev(3, T0, usage=Usage(input=300, output=100, estimated=True), cost=Decimal("0.02")),
            ev(4, T0, usage=Usage(input=0, output=0), cost=Decimal("0"), status="cancelled"),
        ]
    )
    s = usage_stats(ledger)
    assert (s.calls, s.errors, s.cancelled, s.input, s.output, s.tokens) == (
        4,
        1,
        1,
        1500,
        400,
        1900,
    )
    assert s.cost == Decimal("0.06")
    assert s.success_rate == 0.5
    assert s.avg_input_per_call == 375.0 and s.avg_output_per_call == 100.0
    assert s.avg_tokens_per_call == 475.0
    assert s.avg_cost_per_call == Decimal("0.015")
    assert s.input_output_ratio == 3.75
    assert s.cache_hit_rate == pytest.approx(400 / 1500)
    assert s.avg_latency_ms == 150.0
    assert s.estimated_share == 0.25
    empty = usage_stats(ledger, where={"user_id": "nobody"})
    assert empty.calls == 0 and empty.success_rate is None and empty.cost == 0


def test_peak_hour_profile(ledger) -> None:
    ledger.record_many(
        [
            ev(1, T0 + timedelta(hours=9, minutes=5)),
            ev(2, T0 + timedelta(days=1, hours=9, minutes=50)),
            ev(3, T0 + timedelta(hours=14), cost=Decimal("5")),
            ev(4, T0 + timedelta(days=2, hours=14, minutes=1)),
            ev(5, T0 + timedelta(days=2, hours=9, minutes=1)),
        ]
    )
    p = peak_hour(ledger)
    assert p is not None
    assert (p.hour, p.value, p.share) == (9, 3, 0.6)
    assert p.by_hour[14] == 2 and sum(p.by_hour) == 5 and len(p.by_hour) == 24
    by_cost = peak_hour(ledger, metric="cost")
    assert by_cost is not None and by_cost.hour == 14 and by_cost.value == Decimal("5.01")
    assert peak_hour(ledger, where={"model": "none"}) is None


def test_trend_this_period_vs_previous(ledger) -> None:
    now = T0 + timedelta(days=14)
    ledger.record_many(
        [
            ev(1, now - timedelta(days=1), cost=Decimal("3")),
            ev(2, now - timedelta(days=6), cost=Decimal("1")),
            ev(3, now - timedelta(days=8), cost=Decimal("2")),
            ev(4, now - timedelta(days=15), cost=Decimal("100")),  # outside both periods
        ]
    )
    t = trend(ledger, timedelta(days=7), now=now)
    assert (t.current, t.previous, t.change) == (Decimal("4"), Decimal("2"), Decimal("2"))
    assert t.change_pct == 1.0
    assert t.current_start == now - timedelta(days=7) and t.previous_start == now - timedelta(
        days=14
    )
    calls = trend(ledger, timedelta(days=7), metric="calls", now=now)
    assert (calls.current, calls.previous, calls.change_pct) == (2, 1, 1.0)
    none_before = trend(ledger, timedelta(days=1), now=now)
    assert none_before.previous == 0 and none_before.change_pct is None
    with pytest.raises(ConfigurationError):
        trend(ledger, timedelta(0), now=now)


def test_cache_break_even_formula() -> None:
    # Anthropic-style: write 3.75, input 3, read 0.30 -> 0.75 / 2.70 reads
    be = cache_break_even(P("3", read="0.30", w5="3.75", w1="6"))
    assert be == Decimal("0.75") / Decimal("2.70")
    assert cache_break_even(P("3", read="0.30", w5="3.75", w1="6"), ttl="1h") == (
        Decimal("3") / Decimal("2.70")
    )
    # OpenAI-style automatic caching: writes cost nothing extra
    assert cache_break_even(P("2.50", read="1.25")) == 0
    # reads that save nothing never pay a write back
    assert cache_break_even(P("1", read="1", w5="2")) is None
    assert cache_break_even("claude", catalog=CATALOG) == be
    with pytest.raises(ConfigurationError):
        cache_break_even(P("1"), ttl="1d")


def test_cache_report_savings_in_usd(ledger) -> None:
    ledger.record_many(
        [
            ev(
                1,
                T0,
                "claude",
                usage=Usage(
                    input=1_000_000,
                    output=0,
                    cache_read=600_000,
                    cache_write_5m=200_000,
                    cache_write_1h=100_000,
                ),
            ),
            ev(2, T0, "gpt", usage=Usage(input=400_000, output=0, cache_read=400_000)),
            ev(3, T0, "mystery", usage=Usage(input=10, output=0, cache_read=5)),
            ev(4, T0, "plain", usage=Usage(input=10, output=0)),  # no cache use: no price needed
        ]
    )
    r = cache_report(ledger, catalog=CATALOG)
    by = {m.model: m for m in r.per_model}
    claude = by["claude"]
    # reads: 0.6M x (3 - 0.30) = 1.62 ; premium: 0.2M x 0.75 + 0.1M x 3 = 0.45
    assert claude.read_savings == Decimal("1.62")
    assert claude.write_premium == Decimal("0.45")
    assert claude.net_savings == Decimal("1.17")
    assert claude.hit_rate == 0.6
    assert claude.break_even_reads == Decimal("0.75") / Decimal("2.70")
    gpt = by["gpt"]
    assert gpt.read_savings == Decimal("0.5") and gpt.write_premium == 0 and gpt.hit_rate == 1.0
    assert r.unpriced_models == ("mystery",) and by["mystery"].priced is False
    assert by["plain"].priced is True and by["plain"].read_savings == 0
    assert r.read_savings == Decimal("2.12") and r.net_savings == Decimal("1.67")
    assert r.cache_read == 1_000_005 and r.input == 1_400_020
    assert r.hit_rate == pytest.approx(1_000_005 / 1_400_020)


def test_cache_report_with_the_shipped_catalog(ledger) -> None:
    """If this fails, the default catalog's Claude Sonnet 4 cache prices changed."""
    ledger.record(
        ev(1, T0, "claude-sonnet-4", usage=Usage(input=1_000_000, output=0, cache_read=1_000_000))
    )
    r = cache_report(ledger)
    assert r.read_savings == Decimal("2.7")  # 1M x (3.00 - 0.30)


def test_model_breakdown(ledger) -> None:
    ledger.record_many(
        [
            ev(1, T0, "a", cost=Decimal("3"), usage=Usage(input=10, output=10)),
            ev(
                2,
                T0,
                "a",
                cost=Decimal("3"),
                usage=Usage(input=30, output=10, cache_read=20),
                status="error",
            ),
            ev(3, T0, "b", cost=Decimal("2"), usage=Usage(input=5, output=5)),
        ]
    )
    rows = model_breakdown(ledger)
    assert [r.model for r in rows] == ["a", "b"]
    a, b = rows
    assert (a.calls, a.tokens, a.cost, a.cost_share) == (2, 60, Decimal("6"), 0.75)
    assert a.avg_cost_per_call == Decimal("3") and a.avg_tokens_per_call == 30.0
    assert a.success_rate == 0.5 and a.cache_hit_rate == 0.5
    assert b.cost_share == 0.25 and b.success_rate == 1.0


def test_unpriced_calls_are_counted_not_averaged_as_free(ledger) -> None:
    """If this fails, calls with an unknown cost pulled the average cost per call down
    as if they were free, or were not reported as unpriced."""
    ledger.record_many(
        [
            ev(1, T0, cost=Decimal("0.03")),
            ev(2, T0, cost=Decimal("0.01")),
            ev(3, T0, model="acme-llm-9", cost=None),
        ]
    )
    s = usage_stats(ledger)
    assert (s.calls, s.unpriced_calls, s.cost) == (3, 1, Decimal("0.04"))
    assert s.avg_cost_per_call == Decimal("0.02")
    by_model = {m.model: m for m in model_breakdown(ledger)}
    assert by_model["acme-llm-9"].unpriced_calls == 1
    assert by_model["acme-llm-9"].avg_cost_per_call is None
    assert by_model["gpt"].avg_cost_per_call == Decimal("0.02")
