"""replay(): the ledger re-priced under another model, cache hit rate or batch prices."""

from __future__ import annotations

from datetime import datetime, time, timedelta, timezone
from decimal import Decimal

import pytest

from tokenward.catalog import Catalog, ModelInfo, Prices, PriceTier, default_catalog
from tokenward.cost import cost
from tokenward.counting import get_counter
from tokenward.errors import ConfigurationError
from tokenward.ledger import MemoryLedger, SQLiteLedger, UsageEvent
from tokenward.predict import Scenario, replay
from tokenward.usage import Usage

T0 = datetime(2026, 3, 1, tzinfo=timezone.utc)
D = Decimal


def _model(name: str, inp: str, out: str, **kw: object) -> ModelInfo:
    prices = {k: D(str(v)) for k, v in kw.items() if k in ("cache_read", "cache_write_5m")}
    return ModelInfo(
        name=name,
        provider=str(kw.get("provider", "acme")),
        context_window=int(kw.get("window", 100_000)),  # type: ignore[call-overload]
        max_output=8_000,
        prices=Prices(input=D(inp), output=D(out), **prices),
        tiers=tuple(kw.get("tiers", ())),  # type: ignore[arg-type]
        batch_discount=D(str(kw["batch"])) if "batch" in kw else None,
    )


@pytest.fixture
def catalog() -> Catalog:
    return Catalog(
        [
            _model("big", "10", "30", batch="0.5"),
            _model("small", "1", "3", cache_read="0.1"),
            _model("cached", "3", "15", cache_read="0.3", cache_write_5m="3.75"),
        ]
    )


@pytest.fixture(params=["memory", "sqlite"])
def ledger(request, tmp_path):
    store = MemoryLedger() if request.param == "memory" else SQLiteLedger(tmp_path / "l.db")
    yield store
    store.close()


def record(ledger, catalog, n, *, model="big", inp=1_000, out=100, day=0, **dims):
    for i in range(n):
        usage = Usage(input=inp, output=out)
        info = catalog.find(model)
        ledger.record(
            UsageEvent(
                id=f"{model}-{day}-{i}-{dims.get('agent')}",
                timestamp=T0 + timedelta(days=day, minutes=i),
                model=model,
                provider="acme",
                usage=usage,
                cost=cost(usage, info).total if info is not None else None,
                **dims,
            )
        )


def test_another_model_with_the_same_tokenizer(ledger, catalog):
    record(ledger, catalog, 10, agent="support")
    record(ledger, catalog, 5, day=1, agent="writer", inp=2_000, out=500)
    r = replay(ledger, Scenario(model="small"), by=("agent",), catalog=catalog)
    # big: 10 x (1000 x 10 + 100 x 30)/1M + 5 x (2000 x 10 + 500 x 30)/1M = 0.13 + 0.175
    assert r.cost_before == D("0.305")
    assert r.cost_after == D("0.0305")  # the same tokens at a tenth of the prices
    assert r.delta == D("-0.2745") and r.delta_pct == pytest.approx(-90.0)
    assert r.calls == 15 and r.unpriced_calls == 0
    by_agent = {row.dims["agent"]: row for row in r.rows}
    assert by_agent["writer"].cost_before == D("0.175")
    assert by_agent["writer"].cost_after == D("0.0175")
    assert by_agent["support"].delta == D("-0.117")
    assert r.components_after == {"input": D("0.02"), "output": D("0.0105")}
    # both models are counted by the same estimator: no conversion, but not exact either
    assert [(t.basis, t.ratio) for t in r.ratios] == [("same tokenizer", 1.0)]


def test_cache_hits_read_and_write_at_the_model_prices(ledger, catalog):
    record(ledger, catalog, 10, model="cached", inp=10_000, out=0)
    r = replay(ledger, Scenario(cache_hit=0.8), catalog=catalog)
    # before: 10 x 10000 x $3/1M = 0.3; after: 80 % read at $0.3, 20 % written at $3.75
    assert r.cost_before == D("0.3")
    assert r.components_after == {"cache_read": D("0.024"), "cache_write_5m": D("0.075")}
    assert r.cost_after == D("0.099")
    # a model without a cache-write price writes nothing extra
    record(ledger, catalog, 10, model="small", inp=10_000, out=0)
    r = replay(ledger, Scenario(cache_hit=0.5), where={"model": "small"}, catalog=catalog)
    assert r.components_after == {"input": D("0.05"), "cache_read": D("0.005")}
    # an explicit write share overrides the default
    r = replay(ledger, Scenario(cache_hit=0.5, cache_write=0.1), where={"model": "cached"},
               catalog=catalog)  # fmt: skip
    assert r.components_after["cache_write_5m"] == D("0.0375")


def test_batch_prices_and_models_without_them(ledger, catalog):
    record(ledger, catalog, 4, model="big")
    record(ledger, catalog, 4, model="small")
    r = replay(ledger, Scenario(batch=True), catalog=catalog)
    rows = {row.dims["model"]: row for row in r.rows}
    assert rows["big"].cost_after == rows["big"].cost_before / 2
    assert rows["small"].cost_after == rows["small"].cost_before
    assert r.notes == ["no batch prices for small: priced at their normal prices"]


def test_price_tiers_are_applied_call_by_call(ledger):
    tiered = _model("long", "1", "3", window=1_000_000,
                    tiers=(PriceTier(200_000, Prices(input=D(2), output=D(6))),))  # fmt: skip
    cat = Catalog([_model("big", "10", "30", window=1_000_000), tiered])
    record(ledger, cat, 3, model="big", inp=100_000, out=1_000)
    record(ledger, cat, 1, model="big", inp=300_000, out=1_000, day=0, agent="x")
    r = replay(ledger, Scenario(model="long"), catalog=cat)
    # 3 x (100000 x 1 + 1000 x 3) + (300000 x 2 + 1000 x 6), per 1M: the big call at tier prices
    assert r.cost_after == D("0.309") + D("0.606")
    assert r.per_call_groups == 1
    # the same days summed at base prices would have been wrong
    assert r.cost_after != cost(Usage(input=600_000, output=4_000), _model("f", "1", "3")).total


def test_token_counts_follow_the_tokenizer_ratio_of_stored_content(tmp_path):
    cat = default_catalog()
    ledger = MemoryLedger()
    text = (
        "Die Lieferung verzögert sich um zwei Tage. 配送が2日遅れます。 def f(x): return x**2\n"
        * 20
    )
    o200k, cl100k = get_counter("gpt-4o"), get_counter("gpt-4")
    for i in range(5):
        usage = Usage(input=o200k.count_text(text), output=o200k.count_text(text[:200]))
        ledger.record(
            UsageEvent(
                id=f"e{i}",
                timestamp=T0 + timedelta(minutes=i),
                model="gpt-4o",
                provider="openai",
                usage=usage,
                cost=cost(usage, "gpt-4o").total,
                prompt=text,
                output=text[:200],
            )
        )
    r = replay(ledger, Scenario(model="gpt-4"), catalog=cat)
    (ratio,) = r.ratios
    assert ratio.basis == "stored content" and ratio.exact and not r.estimated
    expected = (cl100k.count_text(text) + cl100k.count_text(text[:200])) / (
        o200k.count_text(text) + o200k.count_text(text[:200])
    )
    assert ratio.ratio == pytest.approx(expected) and ratio.ratio > 1.05
    row = r.rows[0]
    assert row.tokens_after == pytest.approx(row.tokens_before * ratio.ratio, abs=2)


def test_without_stored_content_the_ratio_is_measured_on_sample_text_and_flagged(catalog):
    ledger = MemoryLedger()
    record(ledger, default_catalog(), 3, model="gpt-4o")
    r = replay(ledger, Scenario(model="gpt-4"))
    (ratio,) = r.ratios
    assert ratio.basis == "sample text" and not ratio.exact and r.estimated
    given = replay(ledger, Scenario(model="gpt-4", token_ratio=1.25))
    assert given.ratios[0].basis == "given" and given.rows[0].tokens_after == round(
        given.rows[0].tokens_before * 1.25
    )


def test_unpriced_calls_are_shown_but_left_out_of_the_totals(catalog):
    ledger = MemoryLedger()
    record(ledger, catalog, 2, model="big")
    record(ledger, catalog, 3, model="mystery-model")  # nobody can price it: cost None
    r = replay(ledger, Scenario(model="small"), catalog=catalog)
    assert r.unpriced_calls == 3 and r.calls == 5
    rows = {row.dims["model"]: row for row in r.rows}
    assert rows["mystery-model"].cost_before is None and rows["mystery-model"].delta is None
    assert rows["mystery-model"].cost_after > 0  # what it would cost on the priced model
    assert r.cost_before == rows["big"].cost_before and r.cost_after == rows["big"].cost_after
    assert "left out of the totals" in r.notes[0]


def test_a_target_without_a_price_is_an_error_naming_the_fix(catalog):
    with pytest.raises(ConfigurationError, match="tokenward models"):
        replay(MemoryLedger(), Scenario(model="nope"), catalog=catalog)


@pytest.mark.parametrize(
    "kwargs", [{"cache_hit": 1.5}, {"cache_hit": 0.8, "cache_write": 0.3}, {"token_ratio": 0}]
)
def test_bad_scenarios_are_configuration_errors(kwargs):
    with pytest.raises(ConfigurationError):
        Scenario(**kwargs)


def test_scenarios_describe_themselves():
    assert Scenario().describe() == "as recorded"
    assert Scenario(model="m", cache_hit=0.8, batch=True).describe() == (
        "on m, 80% cache hits, batch prices"
    )


def test_recorded_costs_prove_which_days_need_reading_call_by_call(ledger):
    tiered = _model("long", "1", "4", window=1_000_000, cache_read="0.1",
                    tiers=(PriceTier(200_000, Prices(input=D(2), output=D(6),
                                                      cache_read=D("0.2"))),))  # fmt: skip
    cat = Catalog([tiered])
    for day in range(5):
        record(ledger, cat, 4, model="long", inp=50_000, out=500, day=day)
    record(ledger, cat, 1, model="long", inp=300_000, out=500, day=3, agent="big")
    r = replay(ledger, Scenario(cache_hit=0.5), catalog=cat)
    assert r.per_call_groups == 1  # only day 3 holds a call above 200k; it alone is read
    per_call = sum(
        (cost(Usage(input=e.usage.input, output=e.usage.output, cache_read=e.usage.input // 2),
              tiered).total for e in ledger.events()),
        D(0),
    )  # fmt: skip
    assert r.cost_after == per_call


def test_each_day_is_priced_at_the_prices_of_that_day(ledger):
    from tokenward.catalog import PricePeriod

    march5 = datetime(2026, 3, 5, tzinfo=timezone.utc)
    changed = ModelInfo(
        name="dated", provider="acme", context_window=100_000, max_output=8_000,
        prices=Prices(input=D(1), output=D(2)),
        periods=(
            PricePeriod(Prices(input=D(2), output=D(4)), end=march5),  # twice the price before
            PricePeriod(Prices(input=D(1), output=D(2)), start=march5),
        ),
    )  # fmt: skip
    offpeak = ModelInfo(
        name="offpeak", provider="acme", context_window=100_000, max_output=8_000,
        prices=Prices(input=D(1), output=D(1)),
        periods=(
            PricePeriod(Prices(input=D(1), output=D(1))),
            PricePeriod(Prices(input=D("0.5"), output=D("0.5")),
                        daily=(time(0, 0), time(12, 0))),  # half price before noon UTC
        ),
    )  # fmt: skip
    cat = Catalog([_model("big", "10", "30"), changed, offpeak])
    record(ledger, cat, 2, model="big", inp=1_000_000, out=0, day=2)  # March 3rd
    record(ledger, cat, 2, model="big", inp=1_000_000, out=0, day=6)  # March 7th
    r = replay(ledger, Scenario(model="dated"), catalog=cat)
    assert r.cost_after == 2 * D(2) + 2 * D(1) and r.per_call_groups == 0
    # the calls of one day fall on both sides of noon: priced call by call
    ledger.record(
        UsageEvent(id="pm", timestamp=T0 + timedelta(days=2, hours=15), model="big",
                   provider="acme", usage=Usage(input=1_000_000), cost=D(10))
    )  # fmt: skip
    r = replay(ledger, Scenario(model="offpeak"), catalog=cat)
    assert r.cost_after == 4 * D("0.5") + D(1)  # the 00:0x calls at half price, 15:00 full
    assert r.per_call_groups == 2


class _EventsOnly:
    """A store without ``events_with_input``: replay reads every call of a tiered day."""

    def __init__(self, store):
        self._store = store

    def events(self, *args, **kw):
        return self._store.events(*args, **kw)

    def timeseries(self, *args, **kw):
        return self._store.timeseries(*args, **kw)


class _Counting(_EventsOnly):
    """The store, counting the calls ``events_with_input`` hands out."""

    def __init__(self, store):
        super().__init__(store)
        self.read = 0

    def events_with_input(self, *args, **kw):
        out = list(self._store.events_with_input(*args, **kw))
        self.read += len(out)
        return iter(out)


def _tiered_catalog() -> Catalog:
    from tokenward.catalog import PricePeriod

    def prices(k: int) -> Prices:
        return Prices(input=D(k), output=D(3 * k), cache_read=D(k) / 10,
                      cache_write_5m=D(k) * D("1.25"))  # fmt: skip

    def tiers(k: int) -> tuple[PriceTier, ...]:
        return (PriceTier(200_000, prices(2 * k)), PriceTier(500_000, prices(3 * k)))

    change, midday = T0 + timedelta(days=2), T0 + timedelta(days=3, hours=12)
    target = ModelInfo(
        name="tiered", provider="acme", context_window=1_000_000, max_output=8_000,
        prices=prices(1), tiers=tiers(1), batch_discount=D("0.5"),
        periods=(
            PricePeriod(prices(1), tiers(1), end=change),
            PricePeriod(prices(2), tiers(2), start=change, end=midday),  # a day boundary
            PricePeriod(prices(3), tiers(3), start=midday),  # inside a day: read call by call
        ),
    )  # fmt: skip
    plain = _model("plain", "1", "3", window=1_000_000, cache_read="0.1",
                   cache_write_5m="1.25", tiers=tiers(1))  # fmt: skip
    return Catalog(
        [_model("wide", "1", "2", window=1_000_000), _model("wider", "2", "5", window=2_000_000),
         target, plain]
    )  # fmt: skip


@pytest.mark.parametrize("ratio", [None, 1.37, 0.61])
def test_reading_only_the_calls_above_a_tier_prices_like_reading_every_call(ledger, ratio):
    cat = _tiered_catalog()
    n = 0
    for day in range(5):
        for model in ("wide", "wider"):
            for i, inp in enumerate(
                (1_000, 150_000, 145_985, 145_986, 199_999, 200_000, 200_001, 250_000, 327_869,
                 327_870, 499_999, 600_000, 900_000, 7_777, 12_345 + day)
            ):  # fmt: skip
                if (day + i) % 4 == 3:
                    continue  # a different mix of calls each day
                usage = Usage(input=inp, output=1_000 + i, cache_read=inp // 7 * (i % 2),
                              cache_write_5m=inp // 11 * (i % 3 == 0))  # fmt: skip
                n += 1
                ledger.record(
                    UsageEvent(
                        id=f"e{n}", timestamp=T0 + timedelta(days=day, hours=(5 * i) % 24),
                        model=model, provider="acme", usage=usage,
                        cost=None if n % 9 == 0 else D(n) / 1000,
                        agent=("a", "b", None)[i % 3], user_id=f"u{i % 4}",
                    )
                )  # fmt: skip
    scenarios = [
        Scenario(model=target, token_ratio=ratio, cache_hit=hit, batch=batch)
        for target in ("tiered", "plain")
        for hit in (None, 0.8, 0.33)
        for batch in (False, True)
    ]
    for scenario in scenarios:
        for by in (("model",), ("agent",), ("user_id", "model"), ("tag:none",)):
            for since in (None, T0 + timedelta(days=1, hours=7)):
                counting = _Counting(ledger)
                fast = replay(counting, scenario, since=since, by=by, catalog=cat)
                slow = replay(_EventsOnly(ledger), scenario, since=since, by=by, catalog=cat)
                assert fast.per_call_groups > 0 and 0 < counting.read < fast.calls
                assert fast == slow, (scenario, by, since)
    # the tiers were reached: more than the same calls at base prices
    untiered = Catalog([*(m for m in cat if m.name != "plain"),
                        _model("plain", "1", "3", window=1_000_000, cache_read="0.1",
                               cache_write_5m="1.25")])  # fmt: skip
    tiered, base = (
        sum((row.cost_after for row in replay(ledger, Scenario(model="plain"), catalog=c).rows),
            D(0))
        for c in (cat, untiered)
    )  # fmt: skip
    assert tiered > base


def test_groups_priced_from_their_totals_are_not_read_again_call_by_call(ledger):
    tiered = _model("long", "1", "3", window=1_000_000,
                    tiers=(PriceTier(200_000, Prices(input=D(2), output=D(6))),))  # fmt: skip
    cat = Catalog([_model("big", "10", "30", window=1_000_000), tiered])
    record(ledger, cat, 1, model="big", inp=300_000, out=1_000, agent="x")  # x: call by call
    record(ledger, cat, 2, model="big", inp=90_000, out=1_000, agent="y")  # y: from its total
    for store in (ledger, _EventsOnly(ledger)):
        r = replay(store, Scenario(model="long"), by=("agent",), catalog=cat)
        rows = {row.dims["agent"]: row.cost_after for row in r.rows}
        # x: 300000 x 2 + 1000 x 6 per 1M; y: 2 x (90000 x 1 + 1000 x 3) per 1M, once
        assert rows == {"x": D("0.606"), "y": D("0.186")}
        assert r.per_call_groups == 1 and r.calls == 3
        assert r.cost_after == replay(store, Scenario(model="long"), catalog=cat).cost_after
