"""Prices from genai-prices: agreement with its own ``calc_price``, the overlay, dated prices,
the integer pricing path, the names users send, local models, unknown models, no network."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tokenward.catalog import (
    Catalog,
    ModelInfo,
    PricePeriod,
    Prices,
    PriceTier,
    default_catalog,
    provider_for_class,
    tokenizer_family,
)
from tokenward.catalog._genai import PriceData, bundled_data
from tokenward.cost import cost, estimate_nanos, price_nanos, to_nanos
from tokenward.errors import PricingMissingError, UnknownModelError
from tokenward.usage import Usage

UTC = timezone.utc
PROVIDERS = ("openai", "anthropic", "google", "mistral", "deepseek")
# Models whose genai-prices price tokenward's overlay replaces, citing the provider's own page
# (data/overlay.json says why for each).
OVERLAID = ["deepseek:deepseek-chat", "deepseek:deepseek-reasoner"]
SHAPES = [
    Usage(input=1_000, output=500),
    Usage(input=250_000, cache_read=120_000, output=3_000, reasoning=1_000),  # above 200k tiers
    Usage(
        input=50_000, cache_read=10_000, cache_write_5m=4_000, cache_write_1h=2_000, output=7_000
    ),
    Usage(input=300_000, output=0),
    Usage(input=1, output=1),  # sub-nano amounts: the rounding
]
TIMES = [
    datetime(2026, 12, 4, 12, 0, tzinfo=UTC),
    datetime(2026, 3, 1, 12, 0, tzinfo=UTC),
    datetime(2026, 8, 20, 2, 30, tzinfo=UTC),  # inside DeepSeek's 01:00-04:00 UTC peak
    datetime(2026, 9, 15, 7, 0, tzinfo=UTC),
    datetime(2025, 6, 1, 20, 0, tzinfo=UTC),  # DeepSeek's old night discount
]


@pytest.fixture(scope="module")
def data() -> PriceData:
    """The snapshot installed with genai-prices, converted (never a cached update)."""
    loaded = default_catalog().price_data
    assert loaded is not None
    return loaded if loaded.origin == "bundled" else bundled_data()


def _price_keys(model_price: Any) -> set[str]:
    return {k for k, v in vars(model_price).items() if v is not None and not k.startswith("_")}


def _is_chat(model: Any) -> bool:
    """Priced per input and output token in every period (embeddings, TTS, OCR, transcription
    and image models are priced otherwise)."""
    prices = model.prices if isinstance(model.prices, list) else [model.prices]
    periods = [getattr(p, "prices", p) for p in prices]
    return all({"input_mtok", "output_mtok"} <= _price_keys(p) for p in periods)


def _chat_models() -> Iterator[tuple[Any, Any]]:
    from genai_prices.data import providers

    for provider in providers:
        if provider.id in PROVIDERS:
            for model in provider.models:
                if _is_chat(model):
                    yield provider, model


def _genai_usage(usage: Usage) -> Any:
    from genai_prices import Usage as GenaiUsage

    return GenaiUsage(
        input_tokens=usage.input,
        cache_read_tokens=usage.cache_read,
        cache_write_tokens=usage.cache_write_5m + usage.cache_write_1h,
        cache_write_1h_tokens=usage.cache_write_1h,
        output_tokens=usage.output,
        output_reasoning_tokens=usage.reasoning,
    )


def _fit(usage: Usage, model_price: Any) -> Usage:
    """Drop 1-hour cache writes where the model has one cache-write price only: tokenward
    refuses to guess that price (PricingMissingError), genai-prices bills the one it has."""
    keys = _price_keys(model_price)
    if usage.cache_write_1h and "cache_write_1h_mtok" not in keys and "cache_write_mtok" in keys:
        return Usage(
            input=usage.input - usage.cache_write_1h,
            cache_read=usage.cache_read,
            cache_write_5m=usage.cache_write_5m,
            output=usage.output,
            reasoning=usage.reasoning,
        )
    return usage


# ------------------------------------------------------------------ agreement with genai-prices
def test_every_chat_model_of_the_snapshot_is_priced_and_agrees_with_calc_price(
    data: PriceData,
) -> None:
    """Iterates genai-prices' bundled snapshot (not a hand list): every chat model of OpenAI,
    Anthropic, Google, Mistral and DeepSeek is priced, to the nano-dollar of genai-prices' own
    ``calc_price``, on several usage shapes and at several instants (dated and time-of-day
    prices). Models the overlay reprices are listed and checked against their cited values in
    the next test."""
    checked, overlaid = set(), []
    for provider, model in _chat_models():
        info = data.models.get((provider.id, model.id.lower()))
        assert info is not None and info.priced, f"{provider.id}:{model.id} is not priced"
        if info.price_source == "tokenward overlay":
            overlaid.append(f"{provider.id}:{model.id}")
            continue
        assert info.price_source == data.source
        for when in TIMES:
            for shape in SHAPES:
                usage = _fit(shape, model.get_prices(when))
                genai = model.calc_price(
                    _genai_usage(usage), provider, genai_request_timestamp=when
                )
                expected = to_nanos(genai.total_price)
                assert price_nanos(usage, info, at=when) == expected, (model.id, usage, when)
        checked.add((provider.id, model.id))
    assert sorted(overlaid) == OVERLAID
    assert len(checked) >= 200
    assert {p for p, _ in checked} == set(PROVIDERS)


def test_batch_prices_agree_with_calc_price_batch_variants(data: PriceData) -> None:
    when = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
    checked = 0
    for provider, model in _chat_models():
        if not any(v.when == {"processing": "batch"} for v in model.price_variants or ()):
            continue
        info = data.models[(provider.id, model.id.lower())]
        if info.price_source == "tokenward overlay":
            continue
        for shape in SHAPES[:2]:
            genai = model.calc_price(
                _genai_usage(shape),
                provider,
                genai_request_timestamp=when,
                price_context={"processing": "batch"},
            )
            assert price_nanos(shape, info, at=when, batch=True) == to_nanos(genai.total_price)
        checked += 1
    assert checked >= 50


@pytest.mark.parametrize(
    ("name", "when", "input_", "cache_hit", "output"),
    [
        # DeepSeek's pricing page, per 1M tokens: (input cache miss, cache hit, output)
        ("deepseek-chat", datetime(2025, 6, 1, 12, 0, tzinfo=UTC), "0.27", "0.07", "1.10"),
        ("deepseek-chat", datetime(2025, 6, 1, 20, 0, tzinfo=UTC), "0.135", "0.035", "0.55"),
        ("deepseek-reasoner", datetime(2025, 6, 1, 12, 0, tzinfo=UTC), "0.55", "0.14", "2.19"),
        ("deepseek-reasoner", datetime(2025, 6, 1, 20, 0, tzinfo=UTC), "0.135", "0.035", "0.55"),
        ("deepseek-chat", datetime(2025, 9, 5, 15, 59, tzinfo=UTC), "0.27", "0.07", "1.10"),
        ("deepseek-chat", datetime(2025, 9, 5, 16, 0, tzinfo=UTC), "0.56", "0.07", "1.68"),
        ("deepseek-reasoner", datetime(2025, 12, 24, 20, 0, tzinfo=UTC), "0.56", "0.07", "1.68"),
        ("deepseek-chat", datetime(2026, 4, 25, 9, 0, tzinfo=UTC), "0.14", "0.028", "0.28"),
        ("deepseek-reasoner", datetime(2026, 5, 2, 9, 0, tzinfo=UTC), "0.14", "0.0028", "0.28"),
        # Mistral's docs: mistral-large-latest is Large 2.1, then Large 3 from 2025-12-02
        ("mistral-large-latest", datetime(2025, 11, 30, tzinfo=UTC), "2", None, "6"),
        ("mistral-large-latest", datetime(2025, 12, 2, tzinfo=UTC), "0.5", None, "1.5"),
        # Devstral Medium 1.0, which genai-prices lacks
        ("devstral-medium-2507", datetime(2026, 1, 1, tzinfo=UTC), "0.4", None, "2"),
    ],
)
def test_overlay_prices_at_the_providers_cited_values(
    name: str, when: datetime, input_: str, cache_hit: str | None, output: str
) -> None:
    info = default_catalog().get(name)
    assert info.price_source == "tokenward overlay" and info.source.startswith("https://")
    if cache_hit is None:  # no cache price: 3M uncached input tokens, 2M output tokens
        usage = Usage(input=3_000_000, output=2_000_000)
        expected = 3 * Decimal(input_) + 2 * Decimal(output)
    else:  # 2M uncached + 1M cached input tokens, 2M output tokens
        usage = Usage(input=3_000_000, cache_read=1_000_000, output=2_000_000)
        expected = 2 * Decimal(input_) + Decimal(cache_hit) + 2 * Decimal(output)
    assert cost(usage, info, at=when).total == expected
    assert price_nanos(usage, info, at=when) == to_nanos(expected)


def test_models_genai_prices_lacks_come_from_the_overlay_with_cited_sources() -> None:
    catalog = default_catalog()
    for name, expected in [
        ("mistral/ministral-3-3b-2512", "ministral-3b-2512"),  # LiteLLM's name for Ministral 3
        ("ministral-3b-latest", "ministral-3b-2512"),
        ("ministral-3-8b-2512", "ministral-8b-2512"),
        ("ministral-3-14b-2512", "ministral-14b-2512"),
        ("ministral-14b-latest", "ministral-14b-2512"),
        ("devstral-latest", "devstral-2512"),
        ("devstral-medium-latest", "devstral-2512"),
        ("devstral-medium-2507", "devstral-medium-2507"),
        ("gemini/gemma-3-27b-it", "gemma-3"),  # free on the Gemini API
    ]:
        info = catalog.get(name)
        assert info.name == expected and info.priced, name
    assert catalog.get("gemini/gemma-3-27b-it").prices == Prices(input="0", output="0")
    assert catalog.get("gemini-3.1-pro-preview").context_window > 0  # overlay fact
    assert catalog.get("gpt-5.4").max_output == 128_000


# ------------------------------------------------------------------ dated prices
def test_each_event_is_priced_at_its_own_time() -> None:
    """Replaying last March's ledger gives last March's prices."""
    catalog = default_catalog()
    flash = catalog.get("deepseek-v4-flash")
    usage = Usage(input=1_000_000, output=1_000_000)
    peak = datetime(2026, 9, 15, 2, 0, tzinfo=UTC)  # 01:00-04:00 UTC: peak price
    off_peak = datetime(2026, 9, 15, 12, 0, tzinfo=UTC)
    march = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)  # before the August price change
    assert cost(usage, flash, at=march).total == Decimal("0.14") + Decimal("0.28")
    assert cost(usage, flash, at=off_peak).total == Decimal("0.15") + Decimal("0.6")
    assert cost(usage, flash, at=peak).total == Decimal("0.3") + Decimal("1.2")
    naive = datetime(2026, 9, 15, 2, 0)  # naive timestamps are UTC
    assert price_nanos(usage, flash, at=naive) == price_nanos(usage, flash, at=peak)
    other_zone = peak.astimezone(timezone(timedelta(hours=8)))  # the same instant in Beijing
    assert price_nanos(usage, flash, at=other_zone) == price_nanos(usage, flash, at=peak)
    assert estimate_nanos(flash, 1_000_000, 1_000_000, at=peak) == 1_500_000_000


def test_a_price_change_applies_from_its_date(data: PriceData) -> None:
    medium = default_catalog().get("mistral-medium-latest")  # moved to Medium 3.5 on 2026-06-16
    assert len(medium.periods) >= 2 and medium.price_source.startswith("genai-prices")
    usage = Usage(input=1_000_000, output=1_000_000)
    before = datetime(2026, 6, 15, 23, 59, tzinfo=UTC)
    after = datetime(2026, 6, 16, 0, 0, tzinfo=UTC)
    assert cost(usage, medium, at=before).total == Decimal("0.4") + Decimal("2")
    assert cost(usage, medium, at=after).total == Decimal("1.5") + Decimal("7.5")


def test_periods_of_a_registered_model() -> None:
    cat = Catalog()
    info = ModelInfo(
        name="acme-llm",
        provider="acme",
        context_window=8000,
        max_output=None,
        prices=Prices(input="2", output="4"),
        periods=(
            PricePeriod(Prices(input="1", output="2"), batch=Prices(input="0.5", output="1")),
            PricePeriod(Prices(input="2", output="4"), start=datetime(2026, 1, 1, tzinfo=UTC)),
        ),
    )
    cat.register(info)
    usage = Usage(input=1_000_000, output=1_000_000)
    assert cost(usage, "acme-llm", catalog=cat, at=datetime(2025, 6, 1)).total == Decimal(3)
    assert cost(usage, "acme-llm", catalog=cat, at=datetime(2026, 6, 1)).total == Decimal(6)
    assert cost(usage, "acme-llm", catalog=cat, at=datetime(2025, 6, 1), batch=True).total == 1.5
    with pytest.raises(PricingMissingError, match="batch"):
        cost(usage, "acme-llm", catalog=cat, at=datetime(2026, 6, 1), batch=True)
    with pytest.raises(ValueError, match="before it starts"):
        PricePeriod(
            Prices(input="1", output="1"),
            start=datetime(2026, 1, 2, tzinfo=UTC),
            end=datetime(2026, 1, 1, tzinfo=UTC),
        )


# ------------------------------------------------------------------ the integer pricing path
_SAMPLE = [
    "gpt-5.4",  # tiers above 272k
    "claude-sonnet-4-6",  # a dated price change
    "claude-sonnet-4-5",  # cache writes 5m/1h, tiers
    "gemini-2.5-pro",
    "deepseek-v4-flash",  # time-of-day prices
    "deepseek-chat",  # overlay schedule
    "o3",
    "mistral-large-latest",
]
_tokens = st.integers(min_value=0, max_value=2_000_000)


@st.composite
def _usages(draw: Any) -> Usage:
    cache_read, cache_5m, cache_1h, image = (draw(_tokens) for _ in range(4))
    plain = draw(_tokens)
    reasoning = draw(_tokens)
    return Usage(
        input=plain + cache_read + cache_5m + cache_1h + image,
        cache_read=cache_read,
        cache_write_5m=cache_5m,
        cache_write_1h=cache_1h,
        image_input=image,
        output=reasoning + draw(_tokens),
        reasoning=reasoning,
    )


@settings(max_examples=300, deadline=None)
@given(
    name=st.sampled_from(_SAMPLE),
    usage=_usages(),
    when=st.datetimes(
        min_value=datetime(2025, 1, 1), max_value=datetime(2027, 6, 1), timezones=st.just(UTC)
    ),
    batch=st.booleans(),
)
def test_price_nanos_is_the_rounded_exact_cost(
    name: str, usage: Usage, when: datetime, batch: bool
) -> None:
    info = default_catalog().get(name)
    try:
        exact = cost(usage, info, at=when, batch=batch).total
    except PricingMissingError:
        with pytest.raises(PricingMissingError):
            price_nanos(usage, info, at=when, batch=batch)
        return
    assert price_nanos(usage, info, at=when, batch=batch) == to_nanos(exact)
    plain = Usage(input=usage.input, output=usage.output)
    assert estimate_nanos(info, usage.input, usage.output, at=when) == price_nanos(
        plain, info, at=when
    )


def test_a_price_finer_than_a_femto_dollar_stays_exact() -> None:
    info = ModelInfo(
        name="tiny",
        provider="acme",
        context_window=1000,
        max_output=None,
        prices=Prices(input="0.000000000001234567", output="3"),
        tiers=(PriceTier(10, Prices(input="0.5", output="3.0000000000000000015")),),
    )
    for usage in (Usage(input=7, output=1), Usage(input=1_000_000_007, output=999_999)):
        assert price_nanos(usage, info) == to_nanos(cost(usage, info).total)


# ------------------------------------------------------------------ names users send
@pytest.mark.parametrize(
    ("name", "kwargs", "expected_name", "expected_provider"),
    [
        # dated snapshots
        ("gpt-5.4-2026-03-05", {}, "gpt-5.4", "openai"),
        ("claude-sonnet-4-5-20250929", {}, "claude-sonnet-4-5", "anthropic"),
        # provider prefixes
        ("openai/gpt-5.4", {}, "gpt-5.4", "openai"),
        ("openai:gpt-5.4", {}, "gpt-5.4", "openai"),  # LangChain's init_chat_model
        ("anthropic/claude-sonnet-4-6", {}, "claude-sonnet-4-6", "anthropic"),
        ("azure/gpt-5.4", {}, "azure/gpt-5.4", "azure"),
        ("vertex_ai/claude-sonnet-4-6", {}, "google/claude-sonnet-4-6", "google"),
        ("vertex_ai/gemini-3.1-pro-preview", {}, "gemini-3.1-pro-preview", "google"),
        ("bedrock/us.anthropic.claude-sonnet-4-6-v1:0", {}, None, "aws"),
        # Bedrock ids
        ("us.anthropic.claude-sonnet-4-6-v1:0", {}, None, "aws"),
        ("global.anthropic.claude-sonnet-4-5-20250929-v1:0", {}, None, "aws"),
        # Vertex @ versions
        ("claude-sonnet-4-6@20260101", {}, "google/claude-sonnet-4-6", "google"),
        ("gemini-2.5-pro@001", {}, "gemini-2.5-pro", "google"),
        # OpenRouter slugs: the provider's own model; through OpenRouter, OpenRouter's entry
        ("anthropic/claude-sonnet-4.6", {}, "claude-sonnet-4-6", "anthropic"),
        (
            "anthropic/claude-sonnet-4.6",
            {"base_url": "https://openrouter.ai/api/v1"},
            "openrouter/anthropic/claude-sonnet-4.6",
            "openrouter",
        ),
        ("openrouter/anthropic/claude-sonnet-4.6", {}, None, "openrouter"),
        # the provider a framework's model class implies
        ("claude-sonnet-4-6", {"provider": provider_for_class("ChatVertexAI")}, None, "google"),
        ("gpt-5.4", {"provider": provider_for_class("AzureChatOpenAI")}, "azure/gpt-5.4", "azure"),
        ("claude-sonnet-4-6", {"provider": provider_for_class("ChatAnthropic")}, None, "anthropic"),
        (
            "anthropic.claude-sonnet-4-6-v1:0",
            {"provider": provider_for_class("ChatBedrockConverse")},
            None,
            "aws",
        ),
        ("deepseek-chat", {"provider": provider_for_class("ChatDeepSeek")}, None, "deepseek"),
        # a base_url names the provider
        ("gpt-5.4", {"base_url": "https://myco.openai.azure.com/"}, "azure/gpt-5.4", "azure"),
        ("deepseek-v4-pro", {"base_url": "https://api.deepseek.com/v1"}, None, "deepseek"),
    ],
)
def test_name_forms(
    name: str, kwargs: dict[str, Any], expected_name: str | None, expected_provider: str
) -> None:
    info = default_catalog().lookup(name, **kwargs)
    assert info.priced and info.price_source.startswith(("genai-prices", "tokenward overlay"))
    assert info.provider == expected_provider
    if expected_name is not None:
        assert info.name == expected_name
    assert default_catalog().get(info.name) is info or info.provider != expected_provider


def test_every_listed_name_resolves_to_itself() -> None:
    catalog = default_catalog()
    strays = [m.name for m in catalog.models() if catalog.find(m.name) is not m]
    assert strays == []


@pytest.mark.parametrize(
    "cls",
    [
        "ChatOpenAI",
        "AzureChatOpenAI",
        "ChatAnthropic",
        "ChatBedrock",
        "ChatBedrockConverse",
        "ChatVertexAI",
        "ChatGoogleGenerativeAI",
        "ChatMistralAI",
        "ChatOllama",
        "ChatDeepSeek",
        "OpenAI",
        "Anthropic",
        "Ollama",
    ],
)
def test_provider_for_class(cls: str) -> None:
    expected = {
        "ChatOpenAI": "openai",
        "AzureChatOpenAI": "azure",
        "ChatAnthropic": "anthropic",
        "ChatBedrock": "aws",
        "ChatBedrockConverse": "aws",
        "ChatVertexAI": "google",
        "ChatGoogleGenerativeAI": "google",
        "ChatMistralAI": "mistral",
        "ChatOllama": "ollama",
        "ChatDeepSeek": "deepseek",
        "OpenAI": "openai",  # LlamaIndex's (and LangChain's completion) OpenAI
        "Anthropic": "anthropic",
        "Ollama": "ollama",
    }[cls]
    assert provider_for_class(cls) == expected
    assert provider_for_class(f"langchain_x.chat_models.{cls}") == expected
    # a class or an instance: the MRO decides, so a subclass maps like its base
    base = type(cls, (), {})
    sub = type("MyTunedChat", (base,), {})
    assert provider_for_class(base) == expected
    assert provider_for_class(sub()) == expected


def test_provider_for_class_of_generic_and_real_framework_classes() -> None:
    from langchain_core.language_models import FakeListChatModel
    from llama_index.core.llms import MockLLM

    assert provider_for_class(FakeListChatModel(responses=["x"])) is None
    assert provider_for_class(MockLLM()) is None
    assert provider_for_class("OpenAILike") is None  # generic: pass base_url instead


# ------------------------------------------------------------------ local models
@pytest.mark.parametrize(
    ("name", "kwargs", "runtime"),
    [
        ("ollama/llama3.1:8b", {}, "ollama"),
        ("ollama_chat/qwen3:14b", {}, "ollama"),
        ("hosted_vllm/Qwen/Qwen3-8B", {}, "vllm"),
        ("llama3.1:8b", {"provider": provider_for_class("ChatOllama")}, "ollama"),
        ("Qwen/Qwen3-8B", {"provider": "vllm"}, "vllm"),
        ("local-model", {"provider": "lmstudio"}, "lmstudio"),
        ("model.gguf", {"provider": "llama.cpp"}, "llamacpp"),
        ("Qwen/Qwen3-8B", {"base_url": "http://localhost:8000/v1"}, "local"),
        ("gpt-oss-20b", {"provider": "openai", "base_url": "http://127.0.0.1:1234/v1"}, "local"),
        ("mistral-small", {"base_url": "http://[::1]:11434"}, "local"),
    ],
)
def test_local_models_cost_nothing_and_keep_their_tokens(
    name: str, kwargs: dict[str, Any], runtime: str
) -> None:
    info = default_catalog().lookup(name, **kwargs)
    assert info.priced and info.price_source == "local" and info.provider == runtime
    assert info.prices == Prices(input="0", output="0")
    usage = Usage(input=12_345, output=678)
    breakdown = cost(usage, info)
    assert breakdown.total == 0 and price_nanos(usage, info) == 0
    assert usage.total == 13_023  # tokens are still counted
    assert "/" not in info.name or name.startswith(("Qwen", "hosted_vllm"))


def test_a_registered_model_wins_over_local_detection() -> None:
    cat = Catalog.default()
    cat.override("proxied-gpt", input="2.5", output="10", context_window=400_000)
    info = cat.lookup("proxied-gpt", base_url="http://localhost:4000")  # a local gateway
    assert info.price_source == "user" and info.prices is not None
    assert info.prices.input == Decimal("2.5")


# ------------------------------------------------------------------ tokenizer families
@pytest.mark.parametrize(
    ("name", "encoding"),
    [
        ("gpt-5", "o200k_base"),
        ("gpt-5.4", "o200k_base"),
        ("gpt-5.4-mini-2026-03-17", "o200k_base"),
        ("azure/gpt-5.4", "o200k_base"),
        ("openrouter/openai/gpt-5.4", "o200k_base"),
        ("o1", "o200k_base"),
        ("o3-mini", "o200k_base"),
        ("o4-mini", "o200k_base"),
        ("gpt-4.1", "o200k_base"),
        ("gpt-4.1-nano-2025-04-14", "o200k_base"),
        ("gpt-4o", "o200k_base"),
        ("gpt-4o-mini", "o200k_base"),
        ("ft:gpt-4o-mini-2024-07-18:acme::x", "o200k_base"),
        ("gpt-4", "cl100k_base"),
        ("gpt-4-turbo", "cl100k_base"),
        ("gpt-3.5-turbo", "cl100k_base"),
        ("azure/gpt-35-turbo", "cl100k_base"),
        ("text-embedding-3-small", "cl100k_base"),
        ("claude-sonnet-4-6", None),
        ("gemini-3.1-pro-preview", None),
        ("mistral-large-latest", None),
        ("deepseek-chat", None),
        ("llama3.1:8b", None),
    ],
)
def test_tokenizer_family(name: str, encoding: str | None) -> None:
    assert tokenizer_family(name) == encoding
    assert default_catalog().lookup(name).tokenizer == encoding


def test_every_openai_family_model_of_the_catalog_counts_with_o200k() -> None:
    import re

    family = re.compile(r"^(gpt-5|o\d|gpt-4\.1|gpt-4o)")
    models = [m for m in default_catalog().models() if family.match(m.name.rsplit("/", 1)[-1])]
    assert len(models) >= 40
    assert all(m.tokenizer == "o200k_base" for m in models), [
        m.name for m in models if m.tokenizer != "o200k_base"
    ]


# ------------------------------------------------------------------ unknown models
def test_an_unknown_model_gets_an_unpriced_placeholder_with_best_guesses() -> None:
    catalog = default_catalog()
    acme = catalog.lookup("acme-llm-9")
    assert not acme.priced and acme.name == "acme-llm-9" and acme.provider == "unknown"
    assert catalog.lookup("gpt-9-ultra").provider == "openai"  # genai-prices' match rules
    assert catalog.lookup("claude-next-9").provider == "anthropic"
    assert catalog.lookup("acme/llm-9").provider == "acme"
    assert catalog.lookup("llm-9", provider="AcMe").provider == "acme"
    with pytest.raises(UnknownModelError, match="tokenward models update"):
        catalog.get("acme-llm-9")
    usage = Usage(input=10, output=5)
    assert price_nanos(usage, acme) is None and estimate_nanos(acme, 10, 5) is None
    with pytest.raises(PricingMissingError, match="tokenward models update"):
        cost(usage, acme)


# ------------------------------------------------------------------ lazy, offline
def _python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_import_tokenward_does_not_import_genai_prices() -> None:
    result = _python(
        """
        import sys
        import tokenward, tokenward.catalog, tokenward.cost
        print(sorted(m for m in sys.modules if m.startswith(("genai_prices", "httpx"))))
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


_NO_NETWORK = """
    import socket

    def refuse(*args, **kwargs):
        raise AssertionError(f"network connection attempted: {args!r}")

    socket.socket.connect = refuse
    socket.socket.connect_ex = refuse
    socket.create_connection = refuse
    socket.getaddrinfo = refuse
"""


def test_no_network_at_import_lookup_or_cost() -> None:
    result = _python(
        _NO_NETWORK
        + """
    import tokenward
    from tokenward import Usage, cost
    from tokenward.catalog import default_catalog
    from tokenward.cost import price_nanos

    catalog = default_catalog()
    for name in ("gpt-5.4", "anthropic/claude-sonnet-4.6", "acme-llm-9", "ollama/llama3"):
        info = catalog.lookup(name, base_url="https://api.openai.com/v1")
        if info.priced:
            price_nanos(Usage(input=1000, output=10), info)
    print(cost(Usage(input=1000, output=10), "gpt-5.4").total)
    """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "0.00265"


def test_no_network_during_lookup_and_cost_in_process(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("network connection attempted")

    catalog = default_catalog()
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    fresh = Catalog.default()  # shares the loaded data; a new catalog must not fetch either
    for cat in (catalog, fresh):
        info = cat.lookup("gemini-3.5-flash", provider="google")
        assert cost(Usage(input=100, output=100), info).total > 0
        assert not cat.lookup("never-heard-of-it").priced


def test_price_source_names_the_data(data: PriceData) -> None:
    from importlib.metadata import version

    info = default_catalog().get("gpt-5.4")
    assert data.source == f"genai-prices {version('genai-prices')}"
    assert info.price_source == default_catalog().price_data.source  # type: ignore[union-attr]
    assert json.loads(json.dumps(info.to_dict()))["price_source"] == info.price_source
