"""select_models: one selection by requirements, used by can_add, Degrade.cheaper and the advisor."""

from __future__ import annotations

from decimal import Decimal

import pytest

from tokenward.budgets import Degrade
from tokenward.catalog import Catalog, ModelInfo, Prices, default_catalog
from tokenward.errors import ConfigurationError
from tokenward.predict import capabilities_of, select_models

D = Decimal


def _m(name, window, inp, out, provider="acme", max_out=8_000, batch=None, **prices):
    return ModelInfo(
        name=name,
        provider=provider,
        context_window=window,
        max_output=max_out,
        prices=Prices(input=D(inp), output=D(out), **{k: D(v) for k, v in prices.items()}),
        batch_discount=D(batch) if batch else None,
    )


@pytest.fixture
def catalog() -> Catalog:
    return Catalog(
        [
            _m("a-pro", 200_000, "10", "30", batch="0.5", cache_read="1", cache_write_1h="20"),
            _m("a-mid", 100_000, "3", "15", cache_read="0.3"),
            _m("a-mini", 50_000, "0.5", "2", max_out=4_000),
            _m("b-flash", 1_000_000, "0.3", "2.5", provider="b", image_input="0.3"),
            _m("b-voice", 30_000, "2", "8", provider="b", audio_input="40"),
        ]
    )


def names(choices):
    return [c.name for c in choices]


def test_cheapest_first_for_the_default_three_to_one_mix(catalog):
    # 3M input + 1M output: b-flash 3.4, a-mini 3.5, b-voice 14, a-mid 24, a-pro 60
    out = select_models(catalog)
    assert names(out) == ["b-flash", "a-mini", "b-voice", "a-mid", "a-pro"]
    assert out[0].cost == D("3.4")


def test_window_output_provider_and_price_requirements(catalog):
    assert names(select_models(catalog, min_context=100_000)) == ["b-flash", "a-mid", "a-pro"]
    assert names(select_models(catalog, min_output=5_000, provider="acme")) == ["a-mid", "a-pro"]
    assert names(select_models(catalog, provider=["acme", "b"], max_cost="4")) == [
        "b-flash",
        "a-mini",
    ]
    # the mix of one call: 10,000 in + 1,000 out
    out = select_models(catalog, input_tokens=10_000, output_tokens=1_000, exclude=["b-flash"])
    assert out[0].name == "a-mini" and out[0].cost == D("0.007")


def test_capabilities_come_from_the_price_data(catalog):
    assert capabilities_of(catalog.get("a-pro")) == {"caching", "cache_1h", "batch"}
    assert names(select_models(catalog, capabilities=["caching"])) == ["a-mid", "a-pro"]
    assert names(select_models(catalog, capabilities=["vision"])) == ["b-flash"]
    assert names(select_models(catalog, capabilities=["audio"])) == ["b-voice"]
    with pytest.raises(ConfigurationError, match="choose from"):
        select_models(catalog, capabilities=["telepathy"])


def test_embeddings_and_unpriced_models_are_left_out():
    cat = default_catalog()
    chat = select_models(cat)
    assert chat and all(c.info.mode == "chat" and c.info.priced for c in chat)
    assert all(c.info.mode == "embedding" for c in select_models(cat, mode="embedding"))


def test_degrade_cheaper_builds_a_ladder_closest_step_first(catalog):
    d = Degrade.cheaper("a-pro", min_context=40_000, catalog=catalog)
    assert d.ladder == ("a-mid", "a-mini")  # same provider, each cheaper than a-pro
    assert Degrade.cheaper("a-pro", catalog=catalog).ladder == ()  # none has a 200k window
    wide = Degrade.cheaper("a-pro", catalog=catalog, same_provider=False)
    assert wide.ladder == ("b-flash",)
    assert Degrade.cheaper("a-pro", min_context=1, steps=1, catalog=catalog).ladder == ("a-mid",)
