"""calls_left and pacing: the arithmetic of forecasts (the budget wiring is tested with the
Accountant in test_predict_budgets.py)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from tokenward.predict import calls_left, pacing


def test_the_reported_case_forecasts_zero_calls():
    # 85 left, the next call reserves 102: denied, so no call is left (it said 1 before)
    assert calls_left(85, 102, 60) == 0


@given(
    st.integers(min_value=0, max_value=10_000),
    st.integers(min_value=1, max_value=500),
    st.integers(min_value=1, max_value=500),
)
def test_the_forecast_last_call_is_admitted_and_the_next_denied(remaining, reserve, spend):
    n = calls_left(remaining, reserve, spend)
    assert n is not None
    left = remaining
    admitted = 0
    while left >= reserve:  # what enforcement does: reserve, then keep the spend
        left -= spend
        admitted += 1
    assert admitted == n


def test_calls_that_spend_nothing_are_unbounded():
    assert calls_left(10, 0, 0) is None
    assert calls_left(10, 20, 0) == 0


T = datetime(2026, 3, 11, 0, 0, tzinfo=timezone.utc)  # 10 days into March


def test_monthly_budget_pacing():
    start, end = (
        datetime(2026, 3, 1, tzinfo=timezone.utc),
        datetime(2026, 4, 1, tzinfo=timezone.utc),
    )
    p = pacing(limit=31_000, spent=15_000, reserved=0, start=start, end=end, now=T)
    assert p.days_elapsed == 10 and p.days_left == 21
    assert p.spent_per_day == 1_500  # 15,000 in 10 days
    assert p.allowed_per_day == 16_000 // 21  # what is left over the 21 days left
    assert p.projected_spend == 15_000 + 21 * 1_500
    assert not p.on_track
    # at 1,500/day the remaining 16,000 last 10.67 days
    assert p.exhausted_at == T + timedelta(days=16_000 / 1_500)


def test_a_budget_on_pace_is_not_exhausted_before_the_reset():
    start, end = (
        datetime(2026, 3, 1, tzinfo=timezone.utc),
        datetime(2026, 4, 1, tzinfo=timezone.utc),
    )
    p = pacing(limit=31_000, spent=5_000, reserved=1_000, start=start, end=end, now=T)
    assert p.on_track and p.exhausted_at is None
    assert p.allowed_per_day == 25_000 // 21


def test_the_last_day_allows_all_that_is_left_and_amounts_convert():
    start, end = (
        datetime(2026, 3, 1, tzinfo=timezone.utc),
        datetime(2026, 4, 1, tzinfo=timezone.utc),
    )
    now = end - timedelta(hours=6)
    p = pacing(
        limit=10_000_000_000,
        spent=4_000_000_000,
        reserved=0,
        start=start,
        end=end,
        now=now,
        to_unit=lambda n: Decimal(n).scaleb(-9),
    )
    assert p.allowed_per_day == Decimal(6)  # $6 left, one (partial) day left
    assert p.days_left == 0.25


def test_a_fresh_window_does_not_extrapolate_one_call():
    start = T
    p = pacing(
        limit=1_000, spent=10, reserved=0, start=start, end=start + timedelta(days=30), now=T
    )
    assert p.spent_per_day == 240  # 10 over at least an hour, not 10 over a second
