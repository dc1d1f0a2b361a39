"""Model catalog: shipped data integrity, name resolution, overrides, LiteLLM import."""

from __future__ import annotations

import json
import re
import threading
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from tokenward.catalog import Catalog, ModelInfo, Prices, PriceTier, default_catalog
from tokenward.errors import ConfigurationError, UnknownModelError

OVERLAY = (
    Path(__file__).resolve().parents[1] / "src" / "tokenward" / "catalog" / "data" / "overlay.json"
)


@pytest.fixture()
def catalog() -> Catalog:
    return Catalog.default()


# ------------------------------------------------------------------ shipped data integrity
def test_overlay_integrity() -> None:
    from tokenward.catalog._overlay import Overlay

    overlay = Overlay.model_validate_json(
        OVERLAY.read_bytes()
    )  # pydantic: the same check as at load
    names = set()
    for entry in overlay.models:
        # a model priced by tokenward cites the provider's own page, never another price map
        assert entry.source.startswith("https://"), entry.name
        assert "litellm" not in entry.source.lower(), entry.name
        assert entry.notes, f"{entry.name}: say why the overlay prices it"
        assert entry.name.lower() not in names
        names.add(entry.name.lower())
    raw = json.loads(OVERLAY.read_text())
    for entry in raw["models"]:
        for period in entry.get("periods", []) + [entry]:
            for value in (period.get("prices") or {}).values():
                assert isinstance(value, str), f"{entry['name']}: prices must be decimal strings"
    data = default_catalog().price_data
    assert data is not None
    for fact in overlay.facts:  # every fact completes a model genai-prices has
        assert (fact.provider, fact.model.lower()) in data.models, fact.model


def test_required_families_are_covered(catalog: Catalog) -> None:
    for name in [
        "gpt-4o",
        "gpt-4o-mini",
        "gpt-4.1",
        "gpt-4.1-mini",
        "gpt-4.1-nano",
        "o1",
        "o1-mini",
        "o3",
        "o3-mini",
        "o4-mini",
        "gpt-5",
        "gpt-5-mini",
        "gpt-5-nano",
        "gpt-4-turbo",
        "gpt-4",
        "gpt-3.5-turbo",
        "text-embedding-3-small",
        "text-embedding-3-large",
        "text-embedding-ada-002",
        "claude-3-haiku",
        "claude-3-5-haiku",
        "claude-3-5-sonnet",
        "claude-3-7-sonnet",
        "claude-sonnet-4",
        "claude-sonnet-4-5",
        "claude-opus-4",
        "claude-opus-4-1",
        "claude-haiku-4-5",
        "claude-opus-4-5",
        "gemini-1.5-pro",
        "gemini-1.5-flash",
        "gemini-2.0-flash",
        "gemini-2.0-flash-lite",
        "gemini-2.5-pro",
        "gemini-2.5-flash",
        "gemini-2.5-flash-lite",
        "mistral-large-latest",
        "mistral-small-2506",
        "codestral-latest",
        "deepseek-chat",
        "deepseek-reasoner",
        "groq/llama-3.3-70b-versatile",
        # current models (Dec 2026)
        "gpt-5.1",
        "gpt-5.2",
        "gpt-5.4",
        "gpt-5.4-mini",
        "gpt-5.4-nano",
        "gpt-5.5",
        "claude-sonnet-4-6",
        "claude-opus-4-6",
        "claude-opus-4-7",
        "gemini-3.1-pro-preview",
        "gemini-3.5-flash",
        "mistral-medium-3.5",
        "deepseek-v4-pro",
        "deepseek-v4-flash",
    ]:
        info = catalog.find(name)
        assert info is not None and info.priced, name


def test_anthropic_cache_price_ratios(catalog: Catalog) -> None:
    # Anthropic's published multiples: 5-minute write 1.25x, 1-hour write 2x, read 0.1x input
    checked = 0
    for info in catalog.models(provider="anthropic"):
        if not re.match(r"claude-(3-5|3-7|sonnet-4|opus-4|haiku-4)", info.name):
            continue
        assert info.batch_discount == Decimal("0.5"), info.name
        for p in [info.prices, *(t.prices for t in info.tiers)]:
            assert p.cache_write_5m == p.input * Decimal("1.25"), info.name
            assert p.cache_write_1h == p.input * 2, info.name
            assert p.cache_read == p.input * Decimal("0.1"), info.name
        checked += 1
    assert checked >= 10
    # published figures differ from the multiples for the oldest model
    assert catalog.get("claude-3-haiku").prices == Prices(
        input="0.25", output="1.25", cache_read="0.03", cache_write_5m="0.30", cache_write_1h="0.50"
    )


def test_openai_has_no_cache_write_price(catalog: Catalog) -> None:
    info = catalog.get("gpt-4o")
    assert info.prices.cache_write_5m is None and info.prices.cache_write_1h is None
    assert info.prices.cache_read == Decimal("1.25")


def test_known_figures(catalog: Catalog) -> None:
    assert catalog.get("gpt-4o-mini").prices == Prices(
        input="0.15", output="0.60", cache_read="0.075"
    )
    assert catalog.get("gpt-4o-2024-05-13").prices.input == Decimal("5")
    assert catalog.get("gpt-4o-2024-05-13").prices.output == Decimal("15")
    sonnet = catalog.get("claude-sonnet-4-5")
    assert [t.above_input_tokens for t in sonnet.tiers] == [200000]
    assert sonnet.prices_for(200_000) == sonnet.prices
    long = sonnet.prices_for(200_001)
    assert (long.input, long.output, long.cache_write_5m, long.cache_write_1h, long.cache_read) == (
        Decimal("6"),
        Decimal("22.5"),
        Decimal("7.5"),
        Decimal("12"),
        Decimal("0.6"),
    )
    assert catalog.get("gemini-1.5-pro").tiers[0].above_input_tokens == 128000
    assert catalog.get("gemini-2.5-pro").prices_for(250_000).output == Decimal("15")


def test_default_catalog_is_a_singleton_and_threadsafe() -> None:
    seen = []
    threads = [threading.Thread(target=lambda: seen.append(default_catalog())) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(c is seen[0] for c in seen)
    assert seen[0] is default_catalog()


# ------------------------------------------------------------------ name resolution
@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("gpt-4o", "gpt-4o"),
        ("GPT-4o", "gpt-4o"),
        ("openai/gpt-4o", "gpt-4o"),
        ("azure/gpt-4o", "azure/gpt-4o"),  # Azure serves it (at OpenAI's price)
        ("gpt-4o-2024-08-06", "gpt-4o"),
        ("gpt-4o-2024-11-20", "gpt-4o"),
        ("gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
        ("openai/gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
        ("gpt-4o-2024-05-13", "gpt-4o-2024-05-13"),
        ("gpt-4.1-mini-2025-04-14", "gpt-4.1-mini"),
        ("o3-mini-2025-01-31", "o3-mini"),
        ("gpt-4-0613", "gpt-4"),
        ("azure/gpt-35-turbo", "azure/gpt-3.5-turbo"),
        ("claude-3-5-sonnet-20241022", "claude-3-5-sonnet"),
        ("claude-3-5-sonnet-latest", "claude-3-5-sonnet"),
        ("anthropic/claude-sonnet-4-20250514", "claude-sonnet-4-0"),
        ("claude-sonnet-4-5-20250929", "claude-sonnet-4-5"),
        # Bedrock prices its regional endpoints apart (genai-prices' "regional." entries)
        (
            "bedrock/anthropic.claude-3-5-sonnet-20241022-v2:0",
            "regional.anthropic.claude-3-5-sonnet-20241022-v2:0",
        ),
        (
            "anthropic.claude-3-haiku-20240307-v1:0",
            "regional.anthropic.claude-3-haiku-20240307-v1:0",
        ),
        (
            "us.anthropic.claude-3-7-sonnet-20250219-v1:0",
            "regional.anthropic.claude-3-7-sonnet-20250219-v1:0",
        ),
        (
            "global.anthropic.claude-sonnet-4-5-20250929-v1:0",
            "global.anthropic.claude-sonnet-4-5-20250929-v1:0",
        ),
        # Claude on Vertex has Google's own prices
        ("vertex_ai/claude-3-5-sonnet-v2@20241022", "google/claude-3-5-sonnet"),
        ("vertex_ai/claude-opus-4-1@20250805", "google/claude-4-opus"),
        ("gemini/gemini-2.5-pro", "gemini-2.5-pro"),
        ("models/gemini-1.5-pro-002", "gemini-1.5-pro"),
        ("vertex_ai/gemini-2.0-flash-001", "gemini-2.0-flash"),
        ("gemini-2.0-flash-lite", "gemini-2.0-flash-lite"),
        ("vertex_ai/gemini-2.5-pro-preview-06-05", "gemini-2.5-pro"),
        ("gemini-2.5-flash-preview-09-2025", "gemini-2.5-flash"),
        ("openrouter/anthropic/claude-3.5-sonnet", "openrouter/anthropic/claude-3.5-sonnet"),
        ("mistral/mistral-large-latest", "mistral-large-latest"),
        ("deepseek/deepseek-chat", "deepseek-chat"),
        ("groq/llama-3.3-70b-versatile", "llama-3.3-70b-versatile"),
        ("bedrock/meta.llama3-3-70b-instruct-v1:0", "meta.llama3-3-70b-instruct-v1:0"),
    ],
)
def test_resolution(catalog: Catalog, query: str, expected: str) -> None:
    assert catalog.resolve(query) == expected
    assert catalog.get(query).name == expected


def test_mini_snapshot_never_resolves_to_parent(catalog: Catalog) -> None:
    assert catalog.get("gpt-4o-mini-2024-07-18").prices.input == Decimal("0.15")
    assert catalog.get("gpt-4.1-nano-2025-04-14").prices.input == Decimal("0.10")


def test_unknown_model_lists_close_matches(catalog: Catalog) -> None:
    with pytest.raises(UnknownModelError) as info:
        catalog.get("claude-sonet-4")
    assert info.value.model == "claude-sonet-4"
    assert any(s.startswith("claude-sonnet-4") for s in info.value.suggestions)
    assert isinstance(info.value, KeyError)
    assert "claude-sonnet-4" in str(info.value)
    assert "tokenward models update" in str(info.value)
    assert catalog.find("claude-sonet-4") is None
    assert "claude-sonet-4" not in catalog
    # differently-priced old snapshots, previews and fine-tunes have their own prices, never
    # the family's
    assert catalog.get("gpt-3.5-turbo-1106").prices.input == Decimal("1")
    assert catalog.get("gpt-3.5-turbo").prices.input == Decimal("0.5")
    assert catalog.get("gemini-2.5-flash-preview-05-20").name == "gemini-2.5-flash-preview"
    fine_tuned = catalog.get("ft:gpt-4o-mini-2024-07-18:acme::abc123")
    assert fine_tuned.name == "ft:gpt-4o-mini"
    assert fine_tuned.prices.input == 2 * catalog.get("gpt-4o-mini").prices.input


def test_fallback_is_explicit() -> None:
    cat = Catalog.default()
    with pytest.raises(UnknownModelError):
        cat.get("my-private-model")
    with_fallback = Catalog(Catalog.default().models(), fallback="gpt-4o-mini")
    assert with_fallback.get("my-private-model").name == "gpt-4o-mini"
    assert with_fallback.find("my-private-model") is None
    with pytest.raises(UnknownModelError):
        Catalog(Catalog.default().models(), fallback="no-such-model")


def _custom(name: str = "acme-llm", **kw) -> ModelInfo:
    return ModelInfo(
        name=name,
        provider="acme",
        context_window=32000,
        max_output=4096,
        prices=Prices(input="1", output="2"),
        aliases=kw.pop("aliases", ("acme",)),
        as_of=date(2026, 1, 1),
        source="https://acme.example/pricing",
        **kw,
    )


def test_register_custom_model_and_cache_invalidation(catalog: Catalog) -> None:
    assert catalog.find("acme/acme-llm-2026-01-01") is None  # cached miss...
    catalog.register(_custom())
    assert catalog.get("acme/acme-llm-2026-01-01").name == "acme-llm"  # ...is invalidated
    assert catalog.get("ACME").name == "acme-llm"
    assert [m.name for m in catalog.models(provider="acme")] == ["acme-llm"]
    assert [m.name for m in catalog.models(search="acme")] == ["acme-llm"]


def test_override_prices(catalog: Catalog) -> None:
    new = catalog.override("openai/gpt-4o", input="2.00", output=Decimal("8"))
    assert new.name == "gpt-4o"
    assert catalog.get("gpt-4o-2024-08-06").prices.input == Decimal("2.00")
    assert catalog.get("gpt-4o").prices.output == Decimal(8)
    assert catalog.get("gpt-4o").prices.cache_read == Decimal("1.25")  # untouched
    assert "overridden by user" in catalog.get("gpt-4o").notes
    # the shipped default singleton is not affected by a separate catalog
    assert default_catalog().get("gpt-4o").prices.input == Decimal("2.50")
    with pytest.raises(ConfigurationError):
        catalog.override("gpt-4o", inptu="1")
    with pytest.raises(UnknownModelError):
        catalog.override("nope-model", input="1")
    custom = catalog.override("nope-model", input="1", output="3", context_window=8000)
    assert catalog.get("nope-model") == custom and custom.provider == "custom"


def test_model_info_validation() -> None:
    with pytest.raises(ValueError):
        Prices(input="-1", output="1")
    with pytest.raises(ValueError):
        _custom(batch_discount=Decimal("1.5"))
    info = _custom(
        tiers=(
            PriceTier(500, Prices(input="3", output="4")),
            PriceTier(100, Prices(input="2", output="3")),
        )
    )
    assert [t.above_input_tokens for t in info.tiers] == [100, 500]
    assert info.prices_for(100).input == 1
    assert info.prices_for(101).input == 2
    assert info.prices_for(10_000).input == 3


# ------------------------------------------------------------------ models.json validation
def _write(tmp_path: Path, models: list) -> Path:
    path = tmp_path / "models.json"
    path.write_text(json.dumps({"models": models}))
    return path


def _entry(**kw):
    e = {
        "name": "m",
        "provider": "p",
        "context_window": 1000,
        "max_output": None,
        "prices": {"input": "1", "output": "2"},
        "as_of": "2026-01-01",
        "source": "https://x.example",
    }
    e.update(kw)
    return e


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"context_window": -1}, "context_window"),
        ({"source": "somewhere"}, "source"),
        ({"as_of": "yesterday"}, "as_of"),
        ({"prices": {"input": 1.5, "output": "2"}}, "float"),
        ({"prices": {"input": "1"}}, "output"),
        ({"prices": {"input": "1", "output": "2", "cache_wirte": "1"}}, "cache_wirte"),
        (
            {
                "tiers": [
                    {"above_input_tokens": 200, "prices": {"input": "1", "output": "2"}},
                    {"above_input_tokens": 100, "prices": {"input": "1", "output": "2"}},
                ]
            },
            "ascending",
        ),
        ({"tokenizer": "gpt2"}, "tokenizer"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_invalid_models_json_is_rejected_clearly(tmp_path: Path, bad: dict, message: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        Catalog.from_json(_write(tmp_path, [_entry(**bad)]))
    assert message in str(info.value)
    assert "'m'" in str(info.value)  # names the model


def test_duplicate_alias_is_rejected(tmp_path: Path) -> None:
    path = _write(tmp_path, [_entry(name="a", aliases=["x"]), _entry(name="b", aliases=["X"])])
    with pytest.raises(ConfigurationError, match="'X'"):
        Catalog.from_json(path)


def test_broken_json_file(tmp_path: Path) -> None:
    path = tmp_path / "models.json"
    path.write_text("{not json")
    with pytest.raises(ConfigurationError, match="not valid JSON"):
        Catalog.from_json(path)


def test_to_dict_round_trip(tmp_path: Path, catalog: Catalog) -> None:
    path = tmp_path / "copy.json"
    catalog.override("gpt-4o", input="2.00")
    catalog.override("in-house-llm", input="0.5", output="1", context_window=32000)
    catalog.to_json(path)
    again = Catalog.from_json(path)
    assert again.models() == catalog.models()
    assert again.get("gpt-4o").prices.input == Decimal("2.00")
    assert again.get("in-house-llm").source == "urn:tokenward:user-defined"


# ------------------------------------------------------------------ LiteLLM import
LITELLM = {
    "sample_spec": {"input_cost_per_token": 0.0, "mode": "one of ..."},
    "gpt-4o-mini": {
        "input_cost_per_token": 1.5e-07,
        "output_cost_per_token": 6e-07,
        "cache_read_input_token_cost": 7.5e-08,
        "input_cost_per_token_batches": 7.5e-08,
        "output_cost_per_token_batches": 3e-07,
        "litellm_provider": "openai",
        "max_input_tokens": 128000,
        "max_output_tokens": 16384,
        "mode": "chat",
    },
    "claude-sonnet-4-5-20250929": {
        "input_cost_per_token": 3e-06,
        "output_cost_per_token": 1.5e-05,
        "cache_creation_input_token_cost": 3.75e-06,
        "cache_creation_input_token_cost_above_1hr": 6e-06,
        "cache_read_input_token_cost": 3e-07,
        "input_cost_per_token_above_200k_tokens": 6e-06,
        "output_cost_per_token_above_200k_tokens": 2.25e-05,
        "cache_creation_input_token_cost_above_200k_tokens": 7.5e-06,
        "cache_read_input_token_cost_above_200k_tokens": 6e-07,
        "litellm_provider": "anthropic",
        "max_input_tokens": 200000,
        "max_output_tokens": 64000,
        "mode": "chat",
    },
    "gemini/gemini-2.5-flash": {
        "input_cost_per_token": 3e-07,
        "output_cost_per_token": 2.5e-06,
        "input_cost_per_audio_token": 1e-06,
        "output_cost_per_reasoning_token": 2.5e-06,
        "litellm_provider": "gemini",
        "max_input_tokens": 1048576,
        "max_output_tokens": 65535,
        "mode": "chat",
    },
    "text-embedding-3-small": {
        "input_cost_per_token": 2e-08,
        "output_cost_per_token": 0.0,
        "litellm_provider": "openai",
        "max_input_tokens": 8191,
        "max_tokens": 8191,
        "mode": "embedding",
    },
    "dall-e-3": {
        "litellm_provider": "openai",
        "mode": "image_generation",
        "output_cost_per_image": 0.04,
    },
    "no-context": {"input_cost_per_token": 1e-06, "output_cost_per_token": 1e-06, "mode": "chat"},
}


@pytest.mark.parametrize("as_file", [False, True])
def test_from_litellm(tmp_path: Path, as_file: bool) -> None:
    if as_file:
        path = tmp_path / "model_prices_and_context_window.json"
        path.write_text(json.dumps(LITELLM))
        cat = Catalog.from_litellm(path)
        assert cat.get("gpt-4o-mini").source.startswith("file:")
    else:
        cat = Catalog.from_litellm(LITELLM)
    assert len(cat) == 4  # sample_spec, image model and the entry without a context size skipped
    mini = cat.get("openai/gpt-4o-mini-2024-07-18")
    assert mini.prices == Prices(
        input=Decimal("0.15"), output=Decimal("0.6"), cache_read=Decimal("0.075")
    )
    assert str(mini.prices.input) == "0.15"  # exact, no binary float residue
    assert mini.batch_discount == Decimal("0.5")
    assert (
        mini.tokenizer == "o200k_base"
        and mini.context_window == 128000
        and mini.max_output == 16384
    )
    sonnet = cat.get("claude-sonnet-4-5")
    assert sonnet.prices.cache_write_5m == Decimal(
        "3.75"
    ) and sonnet.prices.cache_write_1h == Decimal("6")
    (tier,) = sonnet.tiers
    assert tier.above_input_tokens == 200000
    assert (
        tier.prices.input,
        tier.prices.output,
        tier.prices.cache_write_5m,
        tier.prices.cache_read,
    ) == (Decimal("6"), Decimal("22.5"), Decimal("7.5"), Decimal("0.6"))
    assert tier.prices.cache_write_1h == Decimal("6")  # not given for the tier -> base price kept
    flash = cat.get("gemini-2.5-flash")  # "gemini/" key found without its prefix
    assert flash.prices.audio_input == Decimal("1") and flash.prices.reasoning == Decimal("2.5")
    assert flash.tokenizer is None
    emb = cat.get("text-embedding-3-small")
    assert emb.mode == "embedding" and emb.prices.input == Decimal("0.02")


def test_from_litellm_tiered_pricing_ranges() -> None:
    cat = Catalog.from_litellm(
        {
            "dashscope/qwen-plus": {
                "litellm_provider": "dashscope",
                "max_input_tokens": 997952,
                "max_output_tokens": 32768,
                "mode": "chat",
                "tiered_pricing": [
                    {
                        "input_cost_per_token": 4e-07,
                        "output_cost_per_token": 1.2e-06,
                        "range": [0, 256000.0],
                    },
                    {
                        "input_cost_per_token": 1.2e-06,
                        "output_cost_per_token": 3.6e-06,
                        "range": [256000.0, 1000000.0],
                    },
                ],
            },
            "broken-tiers": {
                "input_cost_per_token": 1e-06,
                "output_cost_per_token": 2e-06,
                "max_tokens": 10,
                "mode": "chat",
                "tiered_pricing": "not a list",
            },
        }
    )
    qwen = cat.get("qwen-plus")
    assert (qwen.prices.input, qwen.prices.output) == (Decimal("0.4"), Decimal("1.2"))
    assert qwen.prices_for(256_000).input == Decimal("0.4")
    assert qwen.prices_for(256_001).output == Decimal("3.6")
    assert cat.get("broken-tiers").tiers == ()


def test_litellm_catalog_can_extend_default(catalog: Catalog) -> None:
    before = len(catalog)
    catalog.extend(
        Catalog.from_litellm(
            {
                "acme-chat": {
                    "input_cost_per_token": 1e-06,
                    "output_cost_per_token": 2e-06,
                    "max_tokens": 4096,
                    "litellm_provider": "acme",
                    "mode": "chat",
                }
            }
        )
    )
    assert len(catalog) == before + 1
    assert catalog.get("acme-chat").prices.output == Decimal("2")


def test_concurrent_register_and_resolve(catalog: Catalog) -> None:
    errors: list[BaseException] = []

    def writer(i: int) -> None:
        try:
            for j in range(50):
                catalog.register(_custom(f"custom-{i}-{j}", aliases=(f"alias-{i}-{j}",)))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    def reader() -> None:
        try:
            for _ in range(300):
                assert catalog.get("openai/gpt-4o-mini-2024-07-18").name == "gpt-4o-mini"
                assert catalog.find("custom-does-not-exist") is None
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(4)]
    threads += [threading.Thread(target=reader) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert all(catalog.get(f"alias-{i}-49").name == f"custom-{i}-49" for i in range(4))


def test_override_other_facts(catalog: Catalog) -> None:
    info = catalog.override("deepseek-chat", batch_discount="0.25", context_window=64000)
    assert info.batch_discount == Decimal("0.25") and info.context_window == 64000
    # DeepSeek's page: deepseek-chat is deepseek-v4-flash's non-thinking mode since 2026-04-24
    assert catalog.get("deepseek/deepseek-chat").prices.input == Decimal("0.14")
    assert info.price_source == "user" and info.periods == ()  # fixed prices from now on
    flat = catalog.override("gemini-2.5-pro", input="1", output="8", tiers=())
    assert flat.prices_for(500_000).input == Decimal("1")
    with pytest.raises(ConfigurationError):
        catalog.override("gpt-4o", input="-1")
    with pytest.raises(ConfigurationError):
        catalog.override("gpt-4o", tiers=[{"above_input_tokens": 1}])


def test_lookup_never_raises_for_an_unknown_model() -> None:
    cat = Catalog.default()
    known = cat.lookup("openai/gpt-4o-2024-08-06")
    assert known.name == "gpt-4o" and known.priced
    unknown = cat.lookup("acme-llm-9", provider="acme")
    assert unknown.name == "acme-llm-9" and unknown.provider == "acme"
    assert not unknown.priced and unknown.prices is None
    assert cat.lookup("acme/llm-9").provider == "acme"
    with pytest.raises(UnknownModelError):
        cat.get("acme-llm-9")
