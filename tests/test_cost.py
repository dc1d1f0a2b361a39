"""Exact cost: published price arithmetic reproduced to the last digit."""

from __future__ import annotations

from datetime import date, datetime, timezone
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tokenward.catalog import Catalog, ModelInfo, Prices
from tokenward.cost import CostBreakdown, cost, from_nanos, to_nanos
from tokenward.errors import PricingMissingError, UnknownModelError
from tokenward.usage import Usage

D = Decimal


def _nonzero(breakdown: CostBreakdown) -> dict[str, Decimal]:
    return {k: v for k, v in breakdown.components().items() if v}


def test_claude_sonnet_4_cache_writes_5m_1h_and_reads() -> None:
    # $3 input, $3.75 5m write, $6 1h write, $0.30 read, $15 output per 1M tokens
    usage = Usage.from_anthropic(
        {
            "input_tokens": 1000,
            "output_tokens": 2000,
            "cache_read_input_tokens": 50000,
            "cache_creation_input_tokens": 30000,
            "cache_creation": {
                "ephemeral_5m_input_tokens": 10000,
                "ephemeral_1h_input_tokens": 20000,
            },
        }
    )
    c = cost(usage, "claude-sonnet-4-20250514")
    assert _nonzero(c) == {
        "input": D("0.003"),  # 1,000 x $3
        "cache_write_5m": D("0.0375"),  # 10,000 x $3.75
        "cache_write_1h": D("0.12"),  # 20,000 x $6
        "cache_read": D("0.015"),  # 50,000 x $0.30
        "output": D("0.03"),  # 2,000 x $15
    }
    assert c.total == D("0.2055")
    assert c.tier is None and c.model == "claude-sonnet-4-0" and not c.batch
    assert c.percentages()["cache_write_1h"] == D("58.39")
    assert c.percentages()["input"] == D("1.46")
    assert c.nanos == 205_500_000
    # Message Batches API: half of everything, caching included
    assert cost(usage, "claude-sonnet-4", batch=True).total == D("0.10275")


def test_gpt_4o_mini_cached_input() -> None:
    usage = Usage.from_openai(
        {
            "prompt_tokens": 2006,
            "completion_tokens": 300,
            "prompt_tokens_details": {"cached_tokens": 1920},
        }
    )
    c = cost(usage, "gpt-4o-mini-2024-07-18")
    assert _nonzero(c) == {
        "input": D("0.0000129"),
        "cache_read": D("0.000144"),
        "output": D("0.00018"),
    }
    assert c.total == D("0.0003369")
    assert c.model == "gpt-4o-mini"


def test_o3_reasoning_billed_at_output_price() -> None:
    usage = Usage.from_openai(
        {
            "prompt_tokens": 1200,
            "completion_tokens": 5400,
            "completion_tokens_details": {"reasoning_tokens": 4800},
        }
    )
    c = cost(usage, "o3")
    assert _nonzero(c) == {"input": D("0.0024"), "output": D("0.0048"), "reasoning": D("0.0384")}
    assert c.total == D("0.0456")


def test_o4_mini_reasoning_and_cache() -> None:
    usage = Usage(input=10000, cache_read=8000, output=2000, reasoning=1500)
    c = cost(usage, "openai/o4-mini-2025-04-16")
    assert _nonzero(c) == {
        "input": D("0.0022"),
        "cache_read": D("0.0022"),
        "output": D("0.0022"),
        "reasoning": D("0.0066"),
    }
    assert c.total == D("0.0132")


def test_gemini_2_5_pro_below_at_and_above_200k() -> None:
    below = Usage.from_gemini(
        {"promptTokenCount": 100000, "candidatesTokenCount": 1000, "thoughtsTokenCount": 3000}
    )
    c = cost(below, "gemini-2.5-pro")
    assert (c.input, c.output, c.reasoning, c.total, c.tier) == (
        D("0.125"),
        D("0.01"),
        D("0.03"),
        D("0.165"),
        None,
    )
    # exactly 200k is still the base tier ("prompts <= 200k tokens")
    assert cost(Usage(input=200000), "gemini-2.5-pro").total == D("0.25")
    above = Usage.from_gemini(
        {
            "usageMetadata": {
                "promptTokenCount": 250000,
                "candidatesTokenCount": 1000,
                "thoughtsTokenCount": 3000,
                "cachedContentTokenCount": 200000,
                "promptTokensDetails": [
                    {"modality": "TEXT", "tokenCount": 249000},
                    {"modality": "IMAGE", "tokenCount": 1000},
                ],
            }
        }
    )
    c = cost(above, "models/gemini-2.5-pro")
    assert c.tier == 200000
    assert _nonzero(c) == {
        "input": D("0.1225"),  # 49,000 text x $2.50 (whole call at the >200k tier)
        "cache_read": D("0.05"),  # 200,000 x $0.25
        "image_input": D("0.0025"),  # 1,000 x $2.50 (images at the input price)
        "output": D("0.015"),  # 1,000 x $15
        "reasoning": D("0.045"),  # 3,000 thinking x $15
    }
    assert c.total == D("0.235")


def test_claude_sonnet_4_5_long_context_tier() -> None:
    usage = Usage.from_anthropic(
        {"input_tokens": 230000, "cache_read_input_tokens": 20000, "output_tokens": 1000}
    )
    c = cost(usage, "claude-sonnet-4-5")
    assert c.tier == 200000
    assert _nonzero(c) == {"input": D("1.38"), "cache_read": D("0.012"), "output": D("0.0225")}
    assert c.total == D("1.4145")


def test_gemini_1_5_pro_tier_above_128k() -> None:
    assert cost(Usage(input=128000, output=1000), "gemini-1.5-pro").total == D("0.165")
    assert cost(Usage(input=128001, output=1000), "gemini-1.5-pro").total == D("0.3300025")


def test_batch_gpt_4_1() -> None:
    usage = Usage(input=1_000_000, output=100_000)
    assert cost(usage, "gpt-4.1").total == D("2.8")
    c = cost(usage, "gpt-4.1", batch=True)
    assert (c.input, c.output, c.total, c.batch) == (D("1.0"), D("0.4"), D("1.4"), True)


def test_batch_without_batch_price_is_an_error() -> None:
    with pytest.raises(PricingMissingError, match="batch"):
        cost(Usage(input=10, output=10), "deepseek-chat", batch=True)


def test_deepseek_cache_hit() -> None:
    usage = Usage.from_openai(
        {
            "prompt_tokens": 10000,
            "completion_tokens": 1000,
            "prompt_cache_hit_tokens": 6000,
            "prompt_cache_miss_tokens": 4000,
        }
    )
    # DeepSeek's pricing page: from 2025-09-05 16:00 UTC $0.56 input (cache miss), $0.07 cache
    # hit, $1.68 output; deepseek-chat = deepseek-v4-flash from 2026-04-24 ($0.14/$0.28), with
    # the cache hit cut to $0.0028 from 2026-04-26 12:15 UTC
    c = cost(usage, "deepseek/deepseek-chat", at=datetime(2025, 10, 1, tzinfo=timezone.utc))
    assert _nonzero(c) == {
        "input": D("0.00224"),
        "cache_read": D("0.00042"),
        "output": D("0.00168"),
    }
    assert c.total == D("0.00434")
    c = cost(usage, "deepseek/deepseek-chat", at=datetime(2026, 6, 1, tzinfo=timezone.utc))
    assert _nonzero(c) == {
        "input": D("0.00056"),
        "cache_read": D("0.0000168"),
        "output": D("0.00028"),
    }
    assert c.total == D("0.0008568")


def test_openai_cache_write_tokens_billed_as_input() -> None:
    c = cost(Usage(input=1000, cache_write_5m=400), "gpt-4o")
    assert (c.input, c.cache_write_5m, c.total) == (D("0.0015"), D("0.001"), D("0.0025"))


def test_cache_read_without_cache_price_billed_as_input() -> None:
    c = cost(Usage(input=1000, cache_read=400, output=0), "gpt-4-turbo")
    assert (c.input, c.cache_read, c.total) == (D("0.006"), D("0.004"), D("0.01"))


def test_audio_priced_or_refused() -> None:
    c = cost(Usage(input=1000, audio_input=400, output=10), "gemini-2.0-flash")
    assert _nonzero(c) == {
        "input": D("0.00006"),
        "audio_input": D("0.00028"),
        "output": D("0.000004"),
    }
    assert c.total == D("0.000344")
    with pytest.raises(PricingMissingError, match="audio_input"):
        cost(Usage(input=1000, audio_input=400), "gpt-4o")
    with pytest.raises(PricingMissingError, match="audio_output"):
        cost(Usage(input=10, output=400, audio_output=400), "gpt-4o-mini")


def test_one_hour_writes_need_a_one_hour_price() -> None:
    info = ModelInfo(
        name="half-priced",
        provider="x",
        context_window=1000,
        max_output=None,
        prices=Prices(input="1", output="1", cache_write_5m="1.25"),
        as_of=date(2026, 1, 1),
        source="https://x.example",
    )
    with pytest.raises(PricingMissingError, match="cache_write_1h"):
        cost(Usage(input=100, cache_write_1h=50), info)
    assert cost(Usage(input=100, cache_write_5m=40), info).total == D("0.00011")


def test_explicit_reasoning_price() -> None:
    info = ModelInfo(
        name="thinker",
        provider="x",
        context_window=1000,
        max_output=None,
        prices=Prices(input="1", output="2", reasoning="3"),
        as_of=date(2026, 1, 1),
        source="https://x.example",
    )
    c = cost(Usage(input=0, output=100, reasoning=60), info)
    assert (c.output, c.reasoning) == (D("0.00008"), D("0.00018"))


def test_embedding_cost() -> None:
    assert cost(Usage(input=1_000_000), "text-embedding-3-small").total == D("0.02")


def test_unknown_model_and_custom_catalog() -> None:
    with pytest.raises(UnknownModelError):
        cost(Usage(input=1), "no-such-model-xyz")
    cat = Catalog.default()
    cat.override("gpt-4o", input="1", output="1")
    assert cost(Usage(input=1_000_000), "gpt-4o", catalog=cat).total == D("1")
    fb = Catalog(Catalog.default().models(), fallback="gpt-4o-mini")
    assert cost(Usage(input=1_000_000), "no-such-model-xyz", catalog=fb).model == "gpt-4o-mini"


def test_estimated_flag_and_zero_usage() -> None:
    c = cost(Usage(input=10, output=10, estimated=True), "gpt-4o")
    assert c.estimated
    zero = cost(Usage(), "gpt-4o")
    assert zero.total == 0 and set(zero.percentages().values()) == {D("0.00")}


def test_breakdowns_add() -> None:
    a = cost(Usage(input=1000, output=100), "gpt-4o")
    b = cost(Usage(input=2000, output=300), "gpt-4o")
    s = a + b
    assert s.total == a.total + b.total == D("0.0115")
    assert (s.input, s.output) == (D("0.0075"), D("0.004"))
    assert (a + cost(Usage(input=1), "o3")).model == "mixed"


def test_nanos_round_half_even() -> None:
    assert to_nanos(D("0.2055")) == 205_500_000
    assert to_nanos(D("0.0000000015")) == 2
    assert to_nanos(D("0.0000000025")) == 2
    assert to_nanos("1") == 1_000_000_000
    assert from_nanos(205_500_000) == D("0.2055")
    assert from_nanos(to_nanos(D("12.345678901"))) == D("12.345678901")
    with pytest.raises(TypeError):
        to_nanos(0.1)  # type: ignore[arg-type]


usages = st.builds(
    lambda cr, w5, w1, unc, au, img, out, rs, ao: Usage(
        input=cr + w5 + w1 + unc + au + img,
        cache_read=cr,
        cache_write_5m=w5,
        cache_write_1h=w1,
        audio_input=au,
        image_input=img,
        output=out + rs + ao,
        reasoning=rs,
        audio_output=ao,
    ),
    *[st.integers(0, 3_000_000)] * 9,
)


@given(usages)
def test_total_is_exact_sum_of_components(usage: Usage) -> None:
    info = ModelInfo(
        name="all",
        provider="x",
        context_window=10_000_000,
        max_output=None,
        prices=Prices(
            input="1.1",
            output="4.4",
            cache_read="0.275",
            cache_write_5m="1.375",
            cache_write_1h="2.2",
            audio_input="3.3",
            audio_output="6.6",
        ),
        as_of=date(2026, 1, 1),
        source="https://x.example",
    )
    c = cost(usage, info)
    assert c.total == sum(c.components().values())
    # the exact integer arithmetic, done independently in micro-dollars x 10
    expected_tenth_micros = (
        (usage.input - usage.cache_read - usage.cache_write - usage.audio_input - usage.image_input)
        * 11
        + usage.cache_read * D("2.75")
        + usage.cache_write_5m * D("13.75")
        + usage.cache_write_1h * 22
        + usage.audio_input * 33
        + usage.audio_output * 66
        + usage.image_input * 11
        + (usage.output - usage.reasoning - usage.audio_output) * 44
        + usage.reasoning * 44
    )
    assert c.total * 10_000_000 == expected_tenth_micros


def test_price_nanos_is_none_for_an_unpriced_model_and_exact_otherwise() -> None:
    from tokenward.catalog import Catalog
    from tokenward.cost import estimate_nanos, price_nanos

    cat = Catalog.default()
    usage = Usage(input=1_234, output=567, cache_read=200)
    info = cat.get("gpt-4o")
    assert price_nanos(usage, info) == to_nanos(cost(usage, info).total)
    assert estimate_nanos(info, 1_000, 10) == to_nanos(
        cost(Usage(input=1_000, output=10), info).total
    )
    unknown = cat.lookup("acme-llm-9")
    assert price_nanos(usage, unknown) is None
    assert estimate_nanos(unknown, 1_000, 10) is None
    with pytest.raises(PricingMissingError, match="tokenward models update"):
        cost(usage, unknown)
