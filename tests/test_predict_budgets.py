"""Learned output lengths wired into enforcement: ``Budget(reserve="predicted")``, the
Accountant's predictor, and forecasts that agree with the pre-flight."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from tokenward import Accountant, Usage
from tokenward.budgets import Budget, Budgets
from tokenward.errors import BudgetExceededError, ConfigurationError
from tokenward.predict import OutputPredictor

MODEL = "gpt-5.4-mini"
T0 = datetime(2026, 3, 10, 12, 0, tzinfo=timezone.utc)


def _acc(*budgets: Budget, min_samples: int = 5, **kwargs) -> Accountant:
    predictor = OutputPredictor(None, min_samples=min_samples, sync_every=None)
    return Accountant(
        budgets=Budgets(*budgets, alert_sinks=[]), predictor=predictor, clock=lambda: T0, **kwargs
    )


def _call(
    acc: Accountant, rid: str, output: int, *, prompt: int = 100, cap: int = 16_000, **dims
) -> dict[str, int]:
    acc.preflight(rid, MODEL, prompt_tokens=prompt, max_output_tokens=cap, dims=dims)
    run = acc.run(rid)
    held = {a.budget.name: a.amount for a in run.reservation.applied}
    acc.settle(rid, Usage(input=prompt, output=output))
    return held


def test_reserve_setting_is_validated_and_defaults_to_max_tokens():
    assert Budget("b", limit_tokens=10).reserve == "max_tokens"
    assert Budget("b", limit_tokens=10, reserve="predicted").reserve == "predicted"
    with pytest.raises(ConfigurationError, match="reserve must be"):
        Budget("b", limit_tokens=10, reserve="p99")  # type: ignore[arg-type]
    assert not Budgets(Budget("b", limit_tokens=10)).predicts
    assert Budgets(Budget("b", limit_tokens=10, reserve="predicted")).predicts


def test_predicted_budgets_hold_the_p99_once_learned_others_keep_max_tokens():
    acc = _acc(
        Budget("predicted", limit_tokens=10**9, reserve="predicted"),
        Budget("worst", limit_tokens=10**9),
    )
    held = [_call(acc, f"r{i}", 40 + i, agent="support") for i in range(8)]
    for h in held[:5]:  # before min_samples: the worst case everywhere
        assert h == {"predicted": 16_100, "worst": 16_100}
    for h in held[5:]:  # then the p99 of what was seen (within the sketch's 1 %)
        assert h["worst"] == 16_100
        assert 100 + 40 < h["predicted"] <= 100 + 48
    stats = acc.predictor.stats
    assert stats.observed == 8 and stats.predicted_calls == 3 and stats.under_reserved_calls <= 3


def test_routes_are_the_route_tag_else_the_agent():
    acc = _acc(Budget("p", limit_tokens=10**9, reserve="predicted"))
    for i in range(5):
        _call(acc, f"a{i}", 50, agent="support")
        _call(acc, f"b{i}", 3_000, agent="support", route="long")
    assert acc.predictor.predict(MODEL, "support").p99 == pytest.approx(50, rel=0.02)
    assert acc.predictor.predict(MODEL, "long").p99 == pytest.approx(3_000, rel=0.02)
    assert _call(acc, "x", 10, agent="support")["p"] < 200
    assert _call(acc, "y", 10, agent="support", route="long")["p"] > 3_000


def test_a_call_that_outgrows_its_prediction_is_settled_at_its_real_cost():
    acc = _acc(Budget("p", limit_tokens=10**9, reserve="predicted"))
    for i in range(5):
        _call(acc, f"r{i}", 50)
    assert _call(acc, "big", 5_000)["p"] < 200
    assert acc.status("p").spent == 5 * 150 + 5_100
    stats = acc.predictor.stats
    assert stats.under_reserved_calls == 1 and stats.max_under_reserved >= 4_940


def test_failed_calls_and_embeddings_teach_nothing_and_none_disables_learning():
    acc = _acc(Budget("p", limit_tokens=10**9, reserve="predicted"))
    acc.preflight("f", MODEL, prompt_tokens=10, max_output_tokens=100)
    acc.release("f", partial_usage=Usage(input=10, output=3), error="boom")
    acc.record("text-embedding-3-small", Usage(input=10), kind="embedding")
    assert acc.predictor.stats.observed == 0
    off = Accountant(budgets=[Budget("p", limit_tokens=10**9, reserve="predicted")], predictor=None)
    assert off.predictor is None
    off.preflight("r", MODEL, prompt_tokens=10, max_output_tokens=100)
    assert off.run("r").reservation.applied[0].amount == 110
    off.settle("r", Usage(input=10, output=5))
    with pytest.raises(ConfigurationError, match="predictor must be"):
        Accountant(predictor="yes")  # type: ignore[arg-type]


def test_a_restarted_accountant_reserves_from_what_its_ledger_kept(tmp_path):
    path = str(tmp_path / "ledger.db")
    budgets = [Budget("p", limit_tokens=10**9, reserve="predicted")]
    with Accountant(ledger=path, budgets=budgets) as first:
        assert first.predictor is not None and first.predictor.state is first.ledger
        for i in range(60):  # the default min_samples is 50
            first.preflight(f"r{i}", MODEL, prompt_tokens=100, max_output_tokens=16_000)
            first.settle(f"r{i}", Usage(input=100, output=80))
    with Accountant(
        ledger=path, budgets=[Budget("p", limit_tokens=10**9, reserve="predicted")]
    ) as second:
        second.preflight("n", MODEL, prompt_tokens=100, max_output_tokens=16_000)
        assert second.run("n").reservation.applied[0].amount < 200
        second.release("n")


@pytest.mark.parametrize("reserve", ["max_tokens", "predicted"])
@pytest.mark.parametrize("shape", ["prompt_tokens", "messages"])
def test_the_forecast_last_call_is_admitted_and_the_next_denied(reserve, shape):
    acc = _acc(Budget("b", limit_tokens=60_000, reserve=reserve))
    messages = [{"role": "user", "content": "Summarize the ticket in one line, please."}]
    kw = {"prompt_tokens": 300} if shape == "prompt_tokens" else {"messages": messages}
    output = 120

    def one(rid: str) -> None:
        acc.preflight(rid, MODEL, max_output_tokens=2_000, dims={"agent": "a"}, **kw)
        acc.settle(rid, Usage(input=acc.pending(rid).prompt_tokens, output=output))

    for i in range(6):  # some history: the average and (predicted) the p99
        one(f"warm{i}")
    status = acc.status("b", model=MODEL, max_output_tokens=2_000, dims={"agent": "a"}, **kw)
    n = status.forecast_remaining_calls
    assert n is not None and n > 3
    assert status.next_call_reserve is not None and status.next_call_reserve > 0
    for i in range(n):
        one(f"c{i}")
    with pytest.raises(BudgetExceededError):
        one("over")
    again = acc.status("b", model=MODEL, max_output_tokens=2_000, dims={"agent": "a"}, **kw)
    assert again.forecast_remaining_calls == 0


def test_predicted_forecasts_count_more_calls_than_max_tokens_ones():
    def forecast(reserve: str) -> int:
        acc = _acc(Budget("b", limit_tokens=100_000, reserve=reserve))
        for i in range(6):
            _call(acc, f"w{i}", 100)
        s = acc.status("b", model=MODEL, prompt_tokens=100, max_output_tokens=16_000)
        assert s.forecast_remaining_calls is not None
        return s.forecast_remaining_calls

    # the first call reserves 16,100 instead of ~200: ~80 fewer calls of 200 tokens admitted
    assert forecast("predicted") >= forecast("max_tokens") + 75


def test_status_without_a_shape_keeps_remaining_over_average():
    acc = _acc(Budget("b", limit_tokens=10_000))
    assert acc.status("b").forecast_remaining_calls is None  # nothing committed yet
    _call(acc, "r", 200, cap=1_000)  # 300 tokens
    s = acc.status("b")
    assert s.forecast_remaining_calls == (10_000 - 300) // 300
    assert s.next_call_reserve == 300
    with pytest.raises(ConfigurationError):
        acc.status("b", prompt_tokens=10)
    with pytest.raises(ConfigurationError):
        acc.status("b", model=MODEL)
    with pytest.raises(ConfigurationError, match="needs budgets"):
        Accountant().status("b")


def test_calendar_windows_report_pacing_rolling_ones_do_not():
    acc = _acc(
        Budget("day", limit_tokens=24_000),
        Budget("roll", limit_tokens=24_000, window=timedelta(hours=1)),
    )
    _call(acc, "r", 1_100, cap=2_000)  # 1,200 tokens by noon
    day = acc.status("day")
    assert day.pacing is not None
    assert day.pacing.allowed_per_day == 24_000 - 1_200
    assert day.pacing.spent_per_day == 2_400 and day.pacing.on_track
    assert acc.status("roll").pacing is None
