"""The advisor on constructed ledgers: each rule with its exact numbers.

A small custom catalog keeps the arithmetic checkable by hand. The observed period is exactly
30 days (``since`` .. ``until``), so monthly savings equal the period's savings (rounded to
cents, half-even).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from tokenward.catalog import Catalog, ModelInfo, Prices
from tokenward.cost import cost
from tokenward.ledger import MemoryLedger, UsageEvent
from tokenward.report import Suggestion, advise
from tokenward.usage import Usage

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
SINCE, UNTIL = T0, T0 + timedelta(days=30)


def _model(
    name: str, window: int, max_out: int | None, inp: str, out: str, **kw: object
) -> ModelInfo:
    extra = {k: v for k, v in kw.items() if k in ("cache_read", "cache_write_5m", "cache_write_1h")}
    return ModelInfo(
        name=name,
        provider=str(kw.get("provider", "acme")),
        context_window=window,
        max_output=max_out,
        prices=Prices(
            input=Decimal(inp),
            output=Decimal(out),
            **{k: Decimal(str(v)) for k, v in extra.items()},
        ),
        batch_discount=Decimal(str(kw["batch"])) if "batch" in kw else None,
    )


@pytest.fixture
def catalog() -> Catalog:
    return Catalog(
        [
            _model(
                "acme-2-big",
                100_000,
                8_000,
                "10",
                "30",
                cache_read="1",
                cache_write_5m="12.5",
                cache_write_1h="20",
                batch="0.5",
            ),
            _model("acme-2-small", 50_000, 4_000, "1", "3", cache_read="0.1"),
            _model("acme-2-tiny", 4_000, 1_000, "0.1", "0.3"),
            _model("acme-1-small", 100_000, 8_000, "0.5", "1"),  # older generation: never proposed
            _model("other-3-pro", 200_000, 8_000, "2", "6", provider="other"),
        ]
    )


class Events:
    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self.ledger = MemoryLedger()
        self.n = 0

    def add(
        self,
        model: str = "acme-2-big",
        *,
        at: timedelta = timedelta(hours=1),
        input: int = 100,
        output: int = 10,
        cache_read: int = 0,
        reasoning: int = 0,
        **dims: object,
    ) -> UsageEvent:
        self.n += 1
        usage = Usage(input=input, output=output, cache_read=cache_read, reasoning=reasoning)
        ev = UsageEvent(
            id=f"e{self.n}",
            timestamp=T0 + at,
            model=model,
            provider="acme",
            usage=usage,
            cost=cost(usage, model, catalog=self.catalog).total,
            **dims,  # type: ignore[arg-type]
        )
        self.ledger.record(ev)
        return ev

    def advise(self, **kw: object) -> list[Suggestion]:
        return advise(self.ledger, catalog=self.catalog, since=SINCE, until=UNTIL, **kw)  # type: ignore[arg-type]


def only(suggestions: list[Suggestion], kind: str) -> list[Suggestion]:
    return [s for s in suggestions if s.kind == kind]


def test_empty_ledger_gives_no_advice(catalog: Catalog) -> None:
    assert Events(catalog).advise() == []


def test_cheaper_model_same_provider_closest_step_with_exact_savings(catalog: Catalog) -> None:
    ev = Events(catalog)
    for i in range(10):
        ev.add(at=timedelta(hours=i), input=5_000, output=500, agent="support")
    out = ev.advise()
    assert [s.kind for s in out] == ["cheaper_model"]
    s = out[0]
    # 10 calls x (5000 x $10 + 500 x $30)/1M = $0.65 at big; $0.065 at small -> $0.585 saved
    assert s.evidence["cost_in_period_usd"] == Decimal("0.65")
    assert s.evidence["candidate_cost_in_period_usd"] == Decimal("0.065")
    assert s.estimated_monthly_savings_usd == Decimal("0.58")  # 0.585 rounded half-even
    assert s.evidence["candidate_model"] == "acme-2-small"  # tiny's 4k window is too small
    assert s.evidence["max_prompt_tokens"] == 5_000 and s.evidence["max_output_tokens"] == 500
    assert s.evidence["candidate_context_window"] == 50_000
    assert s.evidence["context_window_share"] == 0.11
    assert s.risk == "medium"  # 10 % of the price: a big capability step
    assert s.workload == "agent=support / acme-2-big"
    assert "acme-2-small" in s.title and "$0.58/month" in s.title


def test_cheaper_model_needs_enough_context_window(catalog: Catalog) -> None:
    ev = Events(catalog)
    ev.add(input=60_000, output=500)  # too big for acme-2-small (50k); acme-1 is older
    out = only(ev.advise(), "cheaper_model")
    assert len(out) == 1
    s = out[0]
    assert s.evidence["candidate_model"] == "other-3-pro"  # only another provider fits
    assert s.risk == "high" and "another provider" in s.detail
    # 60000 x 10 + 500 x 30 = 0.615; at other: 60000 x 2 + 500 x 6 = 0.123
    assert s.estimated_monthly_savings_usd == Decimal("0.49")  # 0.492


def test_prompt_caching_counts_history_prefixes_within_the_ttl(catalog: Catalog) -> None:
    ev = Events(catalog)
    m = timedelta(minutes=1)
    ev.add(at=1 * m, input=20_000, output=1_000, conversation_id="c1", agent="chat")
    ev.add(at=2 * m, input=22_000, output=1_000, conversation_id="c1", agent="chat")
    ev.add(at=3 * m, input=24_000, output=1_000, conversation_id="c1", agent="chat")
    ev.add(at=30 * m, input=26_000, output=1_000, conversation_id="c1", agent="chat")  # 27 min
    out = only(ev.advise(), "prompt_caching")
    assert [s.title.split(" ")[0] for s in out] == ["Cache", "Extend"]
    s = out[0]
    # prefixes read: min(21000, 22000) + min(23000, 24000) = 44000 tokens
    assert s.evidence["cacheable_prefix_tokens"] == 44_000
    # written once: 21000 for call 2, then only the 2000 new tokens for call 3
    assert s.evidence["cache_write_tokens"] == 23_000
    assert s.evidence["calls_with_cacheable_prefix"] == 2
    assert s.evidence["conversations"] == 1
    assert s.evidence["cache_hit_rate"] == 0.0
    # 44000 x ($10 - $1) = $0.396 minus write premium 23000 x ($12.5 - $10) = $0.0575
    assert s.evidence["savings_in_period_usd"] == Decimal("0.3385")
    assert s.estimated_monthly_savings_usd == Decimal("0.34")
    assert s.risk == "low"
    # 1-hour cache: the 4th call (27 min later) reads 25000 more; writes 21000 + 2000 + 2000
    # at ($20 - $10): 69000 x $9 - 25000 x $10 = $0.371, i.e. $0.0325 more than with 5 minutes
    x = out[1]
    assert x.evidence["cacheable_prefix_tokens_1h"] == 69_000
    assert x.evidence["cache_write_tokens_1h"] == 25_000
    assert x.evidence["net_savings_1h_in_period_usd"] == Decimal("0.371")
    assert x.estimated_monthly_savings_usd == Decimal("0.03")


def test_prompt_cache_extension_not_suggested_when_turns_are_quick(catalog: Catalog) -> None:
    ev = Events(catalog)
    m = timedelta(minutes=1)
    for i, n in enumerate((20_000, 22_000, 24_000)):
        ev.add(at=i * m, input=n, output=1_000, conversation_id="c1")
    assert [s.title.split(" ")[0] for s in only(ev.advise(), "prompt_caching")] == ["Cache"]


def test_prompt_caching_not_suggested_when_already_cached(catalog: Catalog) -> None:
    ev = Events(catalog)
    m = timedelta(minutes=1)
    ev.add(at=1 * m, input=20_000, output=1_000, conversation_id="c1")
    ev.add(at=2 * m, input=22_000, output=1_000, cache_read=21_000, conversation_id="c1")
    ev.add(at=3 * m, input=24_000, output=1_000, cache_read=23_000, conversation_id="c1")
    assert only(ev.advise(), "prompt_caching") == []  # hit rate 66 % and nothing left to read


def test_batch_for_calls_marked_offline(catalog: Catalog) -> None:
    ev = Events(catalog)
    for i in range(4):
        ev.add(at=timedelta(hours=i), input=5_000, output=500, tags={"batch": "true"})
    ev.add(at=timedelta(hours=5), input=5_000, output=500, agent="nightly")
    ev.add(at=timedelta(hours=6), input=5_000, output=500)  # interactive: not counted
    s = only(ev.advise(offline_agents=["nightly"]), "batch")
    assert len(s) == 2  # one per workload (no agent / agent=nightly)
    by = {x.workload: x for x in s}
    assert by["acme-2-big"].evidence["offline_calls"] == 4
    assert by["acme-2-big"].evidence["offline_cost_in_period_usd"] == Decimal("0.26")
    assert by["acme-2-big"].estimated_monthly_savings_usd == Decimal("0.13")
    assert by["agent=nightly / acme-2-big"].estimated_monthly_savings_usd == Decimal(
        "0.03"
    )  # 0.0325


def test_batch_needs_a_batch_discount(catalog: Catalog) -> None:
    ev = Events(catalog)
    ev.add("acme-2-small", input=500_0, output=50, tags={"offline": "yes"})
    assert only(ev.advise(), "batch") == []


def test_max_tokens_from_output_p99_and_the_runaway_tail(catalog: Catalog) -> None:
    ev = Events(catalog)
    for i in range(99):
        ev.add(at=timedelta(minutes=10 * i), input=100, output=300)
    ev.add(at=timedelta(days=2), input=100, output=1_500)
    out = only(ev.advise(), "max_tokens")
    assert len(out) == 1
    s = out[0]
    assert s.evidence["p99_output_tokens"] == 300  # nearest rank 99 of 100
    assert s.evidence["suggested_max_tokens"] == 512  # ceil(300 x 1.25 / 256) x 256
    assert s.evidence["model_max_output"] == 8_000
    assert s.evidence["tokens_above_cap"] == 988 and s.evidence["calls_above_cap"] == 1
    assert s.evidence["requested_max_tokens_recorded"] is False
    assert s.estimated_monthly_savings_usd == Decimal("0.03")  # 988 x $30 / 1M = 0.02964
    assert "does not record the max_tokens" in s.detail


def test_max_tokens_without_runaway_outputs_has_no_usd_figure(catalog: Catalog) -> None:
    ev = Events(catalog)
    for i in range(25):
        ev.add(at=timedelta(minutes=10 * i), input=100, output=200)
    s = only(ev.advise(), "max_tokens")
    assert len(s) == 1 and s[0].estimated_monthly_savings_usd is None
    assert s[0].evidence["suggested_max_tokens"] == 256
    assert ev.advise()[-1].kind == "max_tokens"  # unquantified advice sorts last


def test_max_tokens_needs_enough_calls(catalog: Catalog) -> None:
    ev = Events(catalog)
    for i in range(19):
        ev.add(at=timedelta(minutes=i), input=100, output=200)
    assert only(ev.advise(), "max_tokens") == []


def test_trim_history_when_history_dominates_and_grows(catalog: Catalog) -> None:
    ev = Events(catalog)
    for i, n in enumerate((1_000, 2_000, 3_000, 4_000, 5_000)):
        ev.add(at=timedelta(hours=i), input=n, output=50, conversation_id="c1", agent="chat")
    out = only(ev.advise(), "trim_history")
    assert len(out) == 1
    s = out[0]
    assert s.evidence["conversations"] == 1 and s.evidence["calls"] == 5
    assert s.evidence["input_output_ratio"] == 60.0
    assert s.evidence["avg_first_prompt_tokens"] == 1_000
    assert s.evidence["avg_last_prompt_tokens"] == 5_000
    assert s.evidence["tokens_above_cap"] == 6_000  # over 2 x 1000: 1000 + 2000 + 3000
    assert s.evidence["savings_in_period_usd"] == Decimal("0.06")
    assert s.estimated_monthly_savings_usd == Decimal("0.06")
    assert s.workload == "agent=chat"


def test_trim_history_not_for_short_or_balanced_conversations(catalog: Catalog) -> None:
    ev = Events(catalog)
    for i, n in enumerate((1_000, 2_000, 3_000)):  # 3 calls only
        ev.add(at=timedelta(hours=i), input=n, output=50, conversation_id="short")
    for i, n in enumerate((1_000, 2_000, 3_000, 4_000)):  # ratio 10 < 20
        ev.add(at=timedelta(hours=i), input=n, output=1_000, conversation_id="balanced")
    assert only(ev.advise(), "trim_history") == []


def test_monthly_scaling_and_order_and_floor(catalog: Catalog) -> None:
    ev = Events(catalog)
    for i in range(10):
        ev.add(at=timedelta(hours=i), input=5_000, output=500)
    # a 3-day window: $0.585 x 30 / 3 = $5.85 a month
    out = advise(ev.ledger, catalog=catalog, since=T0, until=T0 + timedelta(days=3))
    assert out[0].estimated_monthly_savings_usd == Decimal("5.85")
    assert out[0].evidence["period_days"] == 3
    assert (
        advise(ev.ledger, catalog=catalog, since=SINCE, until=UNTIL, min_monthly_savings_usd="1")
        == []
    )
    again = advise(ev.ledger, catalog=catalog, since=T0, until=T0 + timedelta(days=3))
    assert [s.to_dict() for s in again] == [s.to_dict() for s in out]  # deterministic


def test_reasoning_workloads_only_move_to_reasoning_models() -> None:
    cat = Catalog(
        [
            _model("o5", 200_000, 100_000, "10", "40"),
            _model("o5-mini", 200_000, 100_000, "1", "4"),
            _model("acme-9-chat", 200_000, 100_000, "0.1", "0.4"),
        ]
    )
    ev = Events(cat)
    for i in range(5):
        ev.add("o5", at=timedelta(hours=i), input=1_000, output=2_000, reasoning=1_500)
    s = only(ev.advise(), "cheaper_model")
    assert [x.evidence["candidate_model"] for x in s] == ["o5-mini"]
    assert s[0].risk == "high"  # 10 % of the price AND reasoning used


def test_unknown_models_are_skipped_not_guessed(catalog: Catalog) -> None:
    ev = Events(catalog)
    ev.ledger.record(
        UsageEvent(
            id="x",
            timestamp=T0 + timedelta(hours=1),
            model="mystery",
            provider=None,
            usage=Usage(input=50_000, output=10),
            cost=Decimal(1),
        )
    )
    assert ev.advise() == []


def test_suggestion_to_dict_is_json_ready(catalog: Catalog) -> None:
    ev = Events(catalog)
    for i in range(10):
        ev.add(at=timedelta(hours=i), input=5_000, output=500)
    d = ev.advise()[0].to_dict()
    assert d["estimated_monthly_savings_usd"] == "0.58"
    assert Decimal(d["evidence"]["cost_in_period_usd"]) == Decimal("0.65")
    import json

    json.dumps(d)


def test_prompt_caching_from_stored_prompts_with_a_common_start(catalog: Catalog) -> None:
    ev = Events(catalog)
    system = "You are a careful assistant. " * 140  # 4060 characters shared
    m = timedelta(minutes=1)
    for i, q in enumerate(("first question", "second question", "third one")):
        prompt = system + q
        ev.add(at=i * m, input=2_000, output=10, prompt=prompt, agent="qa")
    ev.add(at=3 * m, input=2_000, output=10, prompt="Something else entirely", agent="qa")
    s = only(ev.advise(), "prompt_caching")
    assert len(s) == 1
    e = s[0].evidence
    # calls 2 and 3: 2000 x 4060 // len(prompt) tokens of shared prefix each
    p2 = 2_000 * 4060 // len(system + "second question")
    p3 = 2_000 * 4060 // len(system + "third one")
    assert e["cacheable_prefix_tokens"] == p2 + p3 == 1992 + 1995
    assert e["calls_sharing_a_stored_prompt_prefix"] == 2 and e["conversations"] == 0
    # written once: call 2's prefix, then what call 3's prefix adds to it
    assert e["cache_write_tokens"] == p2 + (p3 - p2) == 1995


def test_cheaper_model_reprices_each_call_at_its_tier() -> None:
    from tokenward.catalog import PriceTier

    small = ModelInfo(
        name="acme-2-small",
        provider="acme",
        context_window=500_000,
        max_output=8_000,
        prices=Prices(input=Decimal(1), output=Decimal(3)),
        tiers=(PriceTier(200_000, Prices(input=Decimal(2), output=Decimal(6))),),
    )
    cat = Catalog([_model("acme-2-big", 500_000, 8_000, "10", "30"), small])
    ev = Events(cat)
    ev.add(at=timedelta(hours=1), input=100_000, output=1_000)  # base tier
    ev.add(at=timedelta(hours=2), input=300_000, output=1_000)  # above 200k: tier prices
    s = only(ev.advise(), "cheaper_model")[0]
    # 100000 x $1 + 1000 x $3 = 0.103; 300000 x $2 + 1000 x $6 = 0.606
    assert s.evidence["candidate_cost_in_period_usd"] == Decimal("0.709")
    per_call = sum((cost(e.usage, small).total for e in ev.ledger.events()), Decimal(0))
    assert per_call == Decimal("0.709")


def test_max_tokens_uses_the_requested_limit_when_tagged(catalog: Catalog) -> None:
    ev = Events(catalog)
    for i in range(30):
        ev.add(at=timedelta(minutes=i), input=100, output=300, tags={"max_tokens": "4000"})
    s = only(ev.advise(), "max_tokens")[0]
    assert s.evidence["requested_max_tokens_recorded"] is True
    assert s.evidence["compared_with_max_tokens"] == 4_000
    assert s.evidence["suggested_max_tokens"] == 512
    assert "from the max_tokens tag" in s.detail
    # a requested limit already close to the outputs: nothing to suggest
    ev2 = Events(catalog)
    for i in range(30):
        ev2.add(at=timedelta(minutes=i), input=100, output=300, tags={"max_tokens": "600"})
    assert only(ev2.advise(), "max_tokens") == []


def test_batch_recognizes_offline_agent_names_with_medium_risk(catalog: Catalog) -> None:
    ev = Events(catalog)
    for i in range(2):
        ev.add(at=timedelta(hours=i), input=5_000, output=500, agent="nightly-digest")
    ev.add(at=timedelta(hours=3), input=5_000, output=500, agent="support")  # interactive
    s = only(ev.advise(), "batch")
    assert len(s) == 1
    assert s[0].workload == "agent=nightly-digest / acme-2-big"
    assert s[0].evidence["identified_by"] == ["agent name"] and s[0].risk == "medium"
    assert s[0].estimated_monthly_savings_usd == Decimal("0.06")  # 0.13 x 0.5 = 0.065
    assert "agent's name only" in s[0].detail


def test_open_ended_period_runs_until_now(catalog: Catalog) -> None:
    ev = Events(catalog)
    for i in range(10):
        ev.add(at=timedelta(hours=i), input=5_000, output=500)
    # since T0, no until, "now" 30 days later: the period is 30 days although calls stop early
    out = advise(ev.ledger, catalog=catalog, since=T0, now=T0 + timedelta(days=30))
    assert out[0].evidence["period_days"] == 30
    assert out[0].estimated_monthly_savings_usd == Decimal("0.58")
    # no bounds at all: the span of the calls (9 hours), at least one day
    out = advise(ev.ledger, catalog=catalog)
    assert out[0].evidence["period_days"] == 1
