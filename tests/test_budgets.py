"""Budget rules, windows, reservations, alerts, fail modes and degradation (in-process store).

Store-specific behaviour (SQLite, Postgres, Redis), multi-process contention, crashes and
outages are in test_budgets_stores.py.
"""

from __future__ import annotations

import itertools
import logging
import math
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tokenward.budgets import (
    Alert,
    Budget,
    Budgets,
    CommitItem,
    CounterStatus,
    Degrade,
    LoggingAlertSink,
    MemoryBudgetStore,
    ReserveItem,
    ReserveResult,
    Window,
    calendar_span,
    suggest_degradation,
)
from tokenward.errors import BudgetExceededError, BudgetStoreUnavailableError, ConfigurationError

UTC = timezone.utc
T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
USD = 1_000_000_000  # nanos per dollar


def make(*budgets: Budget, **kw: object) -> tuple[Budgets, list[Alert]]:
    alerts: list[Alert] = []
    kw.setdefault("alert_sinks", [alerts.append])
    return Budgets(*budgets, **kw), alerts  # type: ignore[arg-type]


# -- validation ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        ({"limit_usd": Decimal("-1")}, "greater than zero"),
        ({"limit_usd": Decimal("0")}, "greater than zero"),
        ({"limit_usd": Decimal("NaN")}, "finite"),
        ({"limit_usd": float("inf")}, "finite"),
        ({"limit_usd": "abc"}, "Decimal amount"),
        ({"limit_usd": Decimal("0.0000000001")}, "nano-USD"),
        ({"limit_tokens": 0}, "greater than zero"),
        ({"limit_tokens": -5}, "greater than zero"),
        ({"limit_tokens": 1.5}, "whole number"),
        ({"limit_tokens": True}, "whole number"),
        ({}, "neither"),
        ({"limit_usd": "1", "limit_tokens": 10}, "both"),
        ({"limit_usd": "1", "window": "fortnight"}, "Unknown budget window"),
        ({"limit_usd": "1", "window": timedelta(0)}, "positive timedelta"),
        ({"limit_usd": "1", "window": timedelta(seconds=-5)}, "positive timedelta"),
        ({"limit_usd": "1", "timezone": "Mars/Olympus"}, "Unknown timezone"),
        ({"limit_usd": "1", "thresholds": (0.5, 1.5)}, "(0, 1]"),
        ({"limit_usd": "1", "thresholds": (0,)}, "(0, 1]"),
        ({"limit_usd": "1", "thresholds": (float("nan"),)}, "(0, 1]"),
        ({"limit_usd": "1", "mode": "warn"}, "'hard' or 'soft'"),
        ({"limit_usd": "1", "scope": "user|id"}, "scope dimensions"),
        ({"limit_usd": "1", "scope": ("user_id", "agent"), "overrides": {"u1": 5}}, "ambiguous"),
        ({"limit_usd": "1", "overrides": {"user_id=u1": -1}}, "greater than zero"),
        ({"limit_usd": "1", "missing": "deny"}, "'shared' or 'skip'"),
    ],
)
def test_invalid_budgets_raise_configuration_error_saying_what_to_do(
    kwargs: dict, fragment: str
) -> None:
    with pytest.raises(ConfigurationError) as e:
        Budget("b", **kwargs)
    assert fragment in str(e.value)
    assert isinstance(e.value, ValueError)


def test_budgets_rejects_duplicate_names_and_bad_fail_mode() -> None:
    with pytest.raises(ConfigurationError, match="unique"):
        Budgets(Budget("a", limit_usd="1"), Budget("a", limit_tokens=5))
    with pytest.raises(ConfigurationError, match="fail_mode"):
        Budgets(Budget("a", limit_usd="1"), fail_mode="maybe")  # type: ignore[arg-type]


def test_limits_are_exact_decimal_nanos() -> None:
    b = Budget("b", limit_usd=Decimal("0.123456789"))
    assert b.limit_for("*") == 123_456_789
    assert Budget("f", limit_usd=0.1).limit_for("*") == 100_000_000  # float converted via repr


# -- scope, where, overrides --------------------------------------------------------------------
def test_scope_keys_filters_tags_and_missing_dimensions() -> None:
    b = Budget("b", limit_usd="1", scope=("user_id", "agent"))
    assert b.scope_key({"user_id": "u1", "agent": "support"}) == "user_id=u1|agent=support"
    assert b.scope_key({"user_id": "a|b=c"}) == "user_id=a%7Cb%3Dc|agent=<none>"
    assert Budget("g", limit_usd="1").scope_key({"user_id": "x"}) == "*"
    w = Budget("w", limit_usd="1", where={"agent": "support"})
    assert (
        w.applies({"agent": "support"}) and not w.applies({"agent": "sales"}) and not w.applies({})
    )
    assert w.applies({"tags": {"agent": "support"}})
    multi = Budget("m", limit_usd="1", where={"team": ["a", "b"]})
    assert multi.applies({"team": "b"}) and not multi.applies({"team": "c"})
    skip = Budget("s", limit_usd="1", scope="user_id", missing="skip")
    assert not skip.applies({}) and skip.applies({"user_id": "u"})


def test_anonymous_calls_share_one_counter_by_default() -> None:
    budgets, _ = make(Budget("per-user", limit_usd="1", scope="user_id"))
    budgets.reserve("a", {}, 600_000_000, 0, now=T0)
    with pytest.raises(BudgetExceededError) as e:
        budgets.reserve("b", {"user_id": None}, 600_000_000, 0, now=T0)
    assert e.value.scope_key == "user_id=<none>"
    budgets.reserve("c", {"user_id": "known"}, 600_000_000, 0, now=T0)  # a real user is separate


def test_a_scope_dimension_given_as_a_tag_gets_its_own_counter_per_value() -> None:
    budgets, _ = make(Budget("per-team", limit_tokens=100, scope="team"))
    a = budgets.reserve("a", {"tags": {"team": "a"}}, None, 80, now=T0)
    b = budgets.reserve("b", {"tags": {"team": "b"}}, None, 80, now=T0)  # not team a's counter
    assert a is not None and b is not None
    assert [x.scope_key for x in (*a.applied, *b.applied)] == ["team=a", "team=b"]
    with pytest.raises(BudgetExceededError) as e:
        budgets.reserve("c", {"tags": {"team": "a"}}, None, 80, now=T0)
    assert e.value.scope_key == "team=a"


def test_default_limit_for_unknown_users_and_overrides() -> None:
    budgets, _ = make(
        Budget(
            "per-user",
            limit_usd="1",
            scope="user_id",
            overrides={"vip": Decimal("10"), "user_id=banned": 0},
        )
    )
    budgets.reserve("r1", {"user_id": "vip"}, 9 * USD, 0, now=T0)
    with pytest.raises(BudgetExceededError):
        budgets.reserve("r2", {"user_id": "new-user"}, 2 * USD, 0, now=T0)
    budgets.reserve("r3", {"user_id": "new-user"}, USD, 0, now=T0)
    with pytest.raises(BudgetExceededError) as e:
        budgets.reserve("r4", {"user_id": "banned"}, 1, 0, now=T0)
    assert e.value.limit == 0
    assert budgets.status("per-user", user_id="vip", now=T0).limit == Decimal("10")


# -- reserve / commit / release -----------------------------------------------------------------
def test_reserve_commit_release_arithmetic_and_error_fields() -> None:
    budgets, _ = make(Budget("daily", limit_usd="1", scope="user_id"))
    d = {"user_id": "u1"}
    h_r1 = budgets.reserve("r1", d, 400_000_000, 10, now=T0)
    h_r2 = budgets.reserve("r2", d, 300_000_000, 10, now=T0)
    s = budgets.status("daily", user_id="u1", now=T0)
    assert (s.spent, s.reserved, s.remaining) == (Decimal(0), Decimal("0.7"), Decimal("0.3"))
    budgets.commit(h_r1, 350_000_000, 10, now=T0)
    budgets.release(h_r2, now=T0)
    s = budgets.status("daily", user_id="u1", now=T0)
    assert (s.spent, s.reserved, s.remaining, s.calls) == (Decimal("0.35"), 0, Decimal("0.65"), 1)
    assert s.utilization == pytest.approx(0.35)
    assert s.reset_at == datetime(2026, 11, 24, tzinfo=UTC)
    budgets.reserve("r3", d, 650_000_000, 10, now=T0)  # exactly the limit is allowed
    with pytest.raises(BudgetExceededError) as e:
        budgets.reserve("r4", d, 1, 10, now=T0)
    err = e.value
    assert (err.budget, err.scope_key, err.unit) == ("daily", "user_id=u1", "usd")
    assert (err.spent, err.reserved, err.limit, err.attempted) == (
        Decimal("0.35"),
        Decimal("0.65"),
        Decimal("1"),
        Decimal("1E-9"),
    )
    assert err.reset_at == datetime(2026, 11, 24, tzinfo=UTC)
    assert "Retry after" in err.suggestion
    status, headers, body = err.to_http(now=T0)
    assert status == 429 and headers["Retry-After"] == str(12 * 3600)
    assert body["error"]["budget"] == "daily"


def test_all_or_nothing_across_budgets() -> None:
    budgets, _ = make(
        Budget("global", limit_usd="100"),
        Budget("per-user", limit_tokens=1000, scope="user_id"),
    )
    with pytest.raises(BudgetExceededError) as e:
        budgets.reserve("r", {"user_id": "u"}, USD, 1001, now=T0)
    assert e.value.budget == "per-user" and e.value.unit == "tokens"
    assert budgets.status("global", now=T0).reserved == 0  # nothing held on the global budget


def test_commit_is_idempotent_and_records_spend_without_reservation() -> None:
    budgets, _ = make(Budget("g", limit_tokens=1000))
    held = budgets.reserve("r", {}, 0, 100, now=T0)
    assert held is not None and held.budgets == ["g"]
    budgets.commit(held, 0, 80, now=T0)
    budgets.commit(held, 0, 80, now=T0)
    budgets.commit(held, 0, 80, dims={}, now=T0)
    budgets.release(held, now=T0)  # after a commit: nothing to give back
    assert budgets.status("g", now=T0).spent == 80
    # e.g. a one-shot record(): no reservation, spend recorded on what applies to ``dims``
    budgets.commit(None, 0, 5, dims={}, run_id="unreserved", now=T0)
    budgets.commit(None, 0, 5, now=T0)  # nothing to attribute it to: ignored
    assert budgets.status("g", now=T0).spent == 85


def test_no_budget_applies_no_reservation() -> None:
    budgets, _ = make(Budget("support", limit_tokens=100, where={"agent": "support"}))
    assert budgets.reserve("r", {"agent": "sales"}, 0, 1000, now=T0) is None
    assert budgets.enforces({"agent": "support"}) and not budgets.enforces({"agent": "sales"})


def test_reservations_expire_after_ttl_and_commit_after_expiry_still_counts() -> None:
    budgets, _ = make(Budget("g", limit_usd="1"), reservation_ttl=timedelta(seconds=30))
    h_r = budgets.reserve("r", {}, 900_000_000, 0, now=T0)
    with pytest.raises(BudgetExceededError):
        budgets.reserve("r2", {}, 200_000_000, 0, now=T0 + timedelta(seconds=29))
    later = T0 + timedelta(seconds=31)
    assert budgets.status("g", now=later).reserved == 0
    budgets.reserve("r3", {}, 200_000_000, 0, now=later)
    budgets.commit(h_r, 500_000_000, 0, now=later)  # the slow call finished after all
    s = budgets.status("g", now=later)
    assert (s.spent, s.reserved) == (Decimal("0.5"), Decimal("0.2"))


def test_memory_store_drops_each_reservation_when_it_expires() -> None:
    """The store sweeps only once the earliest live reservation can have expired: that
    instant must follow commits, extensions and sweeps."""
    store, now = MemoryBudgetStore(), T0.timestamp()
    for rid, ttl in (("a", 5), ("b", 50), ("c", 20)):
        assert store.reserve([ReserveItem("k", 10, 100)], rid, ttl, now).ok
    store.commit("a", [CommitItem("k", 1)], now + 1)  # the earliest one leaves early
    assert store.status(["k"], now + 6)[0].reserved == 20
    assert store.status(["k"], now + 21)[0].reserved == 10  # c expired
    assert store.extend("b", 100, now + 30)
    assert store.status(["k"], now + 51)[0].reserved == 10  # b extended to now + 130
    assert store.reserve([ReserveItem("k", 89, 100)], "d", 5, now + 52).ok
    assert not store.reserve([ReserveItem("k", 1, 100)], "e", 5, now + 56.5).ok
    assert store.reserve([ReserveItem("k", 80, 100)], "e", 5, now + 57).ok  # d expired
    assert store.status(["k"], now + 61)[0].reserved == 90
    assert store.status(["k"], now + 129)[0].reserved == 10
    assert store.status(["k"], now + 131)[0] == CounterStatus(spent=1, reserved=0, calls=1)


def test_memory_store_zero_amount_reservations_come_and_go() -> None:
    store, now = MemoryBudgetStore(), T0.timestamp()
    assert store.reserve([ReserveItem("k", 5, 100)], "a", 60, now).ok
    assert store.reserve([ReserveItem("k", 0, 100)], "b", 60, now).ok  # a free model
    assert store.reserve([ReserveItem("k", 0, 100)], "c", 60, now).ok
    store.release("a", now)
    store.release("b", now)
    store.commit("c", [CommitItem("k", 0)], now)
    assert store.status(["k"], now)[0] == CounterStatus(spent=0, reserved=0, calls=1)


def test_request_window_checks_each_call_alone() -> None:
    budgets, _ = make(Budget("per-call", limit_usd="0.10", window="request"))
    for i in range(5):
        held = budgets.reserve(f"r{i}", {}, 100_000_000, 0, now=T0)
        budgets.commit(held, 100_000_000, 0, now=T0)
    with pytest.raises(BudgetExceededError) as e:
        budgets.reserve("big", {}, 100_000_001, 0, now=T0)
    assert e.value.reset_at is None and "alone" in e.value.suggestion


def test_conversation_window_is_keyed_by_conversation_and_never_resets() -> None:
    budgets, _ = make(Budget("conv", limit_tokens=1000, window="conversation"))
    h_a = budgets.reserve("a", {"conversation_id": "c1"}, 0, 900, now=T0)
    budgets.commit(h_a, 0, 900, now=T0)
    far = T0 + timedelta(days=400)
    with pytest.raises(BudgetExceededError) as e:
        budgets.reserve("b", {"conversation_id": "c1"}, 0, 101, now=far)
    assert e.value.scope_key == "conversation_id=c1" and e.value.reset_at is None
    budgets.reserve("c", {"conversation_id": "c2"}, 0, 1000, now=far)
    budgets.reserve("d", {}, 0, 1000, now=far)  # no conversation id: a conversation of its own
    with pytest.raises(BudgetExceededError):
        budgets.reserve("e", {}, 0, 1001, now=far)
    assert budgets.status("conv", conversation_id="c1", now=far).spent == 900


def test_rolling_window_spend_leaves_bucket_by_bucket() -> None:
    w = Window.rolling(timedelta(hours=1), buckets=60)  # 1-minute buckets
    budgets, _ = make(Budget("hourly", limit_tokens=100, window=w))
    t = datetime(2026, 1, 1, 10, 0, 30, tzinfo=UTC)
    for i, minute in enumerate((0, 10, 20)):
        now = t + timedelta(minutes=minute)
        held = budgets.reserve(f"r{i}", {}, 0, 30, now=now)
        budgets.commit(held, 0, 30, now=now)
    now = t + timedelta(minutes=59)
    with pytest.raises(BudgetExceededError) as e:
        budgets.reserve("x", {}, 0, 40, now=now)
    # 40 more fits once the 10:00 bucket (30 tokens) leaves at 11:00
    assert e.value.reset_at == datetime(2026, 1, 1, 11, 0, tzinfo=UTC)
    assert budgets.status("hourly", now=now).reset_at == datetime(2026, 1, 1, 11, 0, tzinfo=UTC)
    budgets.reserve("y", {}, 0, 40, now=datetime(2026, 1, 1, 11, 0, tzinfo=UTC))
    assert budgets.status("hourly", now=t + timedelta(minutes=90)).spent == 0


def test_timedelta_window_defaults_to_60_buckets() -> None:
    w = Budget("b", limit_tokens=5, window=timedelta(hours=24)).window
    assert (w.kind, w.buckets, w.granularity_ms) == ("rolling", 60, 24 * 60_000)
    assert len(w.spans(T0)) == 60 and w.spans(T0)[-1].start <= T0 < w.spans(T0)[-1].end - timedelta(
        hours=23
    )


# -- calendar windows ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "tz, instant, kind, start, end",
    [
        # New York spring forward 2026-03-08 02:00 -> 03:00: a 23 h day
        (
            "America/New_York",
            datetime(2026, 3, 8, 15, 0, tzinfo=UTC),
            "day",
            datetime(2026, 3, 8, 5, 0, tzinfo=UTC),
            datetime(2026, 3, 9, 4, 0, tzinfo=UTC),
        ),
        # Berlin fall back 2026-10-25: a 25 h day
        (
            "Europe/Berlin",
            datetime(2026, 10, 25, 12, 0, tzinfo=UTC),
            "day",
            datetime(2026, 10, 24, 22, 0, tzinfo=UTC),
            datetime(2026, 10, 25, 23, 0, tzinfo=UTC),
        ),
        # Lord Howe: half-hour DST shift on 2026-10-04 02:00 -> 02:30 (+10:30 -> +11)
        (
            "Australia/Lord_Howe",
            datetime(2026, 10, 4, 5, 0, tzinfo=UTC),
            "day",
            datetime(2026, 10, 3, 13, 30, tzinfo=UTC),
            datetime(2026, 10, 4, 13, 0, tzinfo=UTC),
        ),
        # Berlin week of Monday 2026-03-23 contains the spring-forward Sunday 2026-03-29
        (
            "Europe/Berlin",
            datetime(2026, 3, 29, 12, 0, tzinfo=UTC),
            "week",
            datetime(2026, 3, 22, 23, 0, tzinfo=UTC),
            datetime(2026, 3, 29, 22, 0, tzinfo=UTC),
        ),
        # December -> January and a leap February
        (
            "UTC",
            datetime(2026, 12, 31, 23, 59, tzinfo=UTC),
            "month",
            datetime(2026, 12, 1, tzinfo=UTC),
            datetime(2027, 1, 1, tzinfo=UTC),
        ),
        (
            "America/New_York",
            datetime(2028, 3, 1, 3, 0, tzinfo=UTC),
            "month",
            datetime(2028, 2, 1, 5, 0, tzinfo=UTC),
            datetime(2028, 3, 1, 5, 0, tzinfo=UTC),
        ),
        # Santiago: DST starts at local midnight (2026-09-06 00:00 does not exist)
        (
            "America/Santiago",
            datetime(2026, 9, 6, 12, 0, tzinfo=UTC),
            "day",
            datetime(2026, 9, 6, 4, 0, tzinfo=UTC),
            datetime(2026, 9, 7, 3, 0, tzinfo=UTC),
        ),
    ],
)
def test_calendar_windows_across_dst_and_month_ends(
    tz: str, instant: datetime, kind: str, start: datetime, end: datetime
) -> None:
    _, s, e = calendar_span(kind, instant, ZoneInfo(tz) if tz != "UTC" else UTC)
    assert (s, e) == (start, end)


ZONES = [
    "America/New_York",
    "Europe/Berlin",
    "Australia/Lord_Howe",
    "America/Santiago",
    "Asia/Kolkata",
    "Pacific/Chatham",
    "UTC",
]


@settings(max_examples=400, deadline=None)
@given(
    ts=st.integers(
        min_value=int(datetime(2020, 1, 1, tzinfo=UTC).timestamp()),
        max_value=int(datetime(2035, 12, 31, tzinfo=UTC).timestamp()),
    ),
    zone=st.sampled_from(ZONES),
    kind=st.sampled_from(["day", "week", "month"]),
)
def test_calendar_window_properties(ts: int, zone: str, kind: str) -> None:
    tz = ZoneInfo(zone)
    now = datetime.fromtimestamp(ts, UTC)
    start_d, start, end = calendar_span(kind, now, tz)
    assert start <= now < end
    local_now = now.astimezone(tz).date()
    assert start.astimezone(tz).date() == start_d <= local_now
    # the window starts at the first instant of its local date (local midnight or DST gap end)
    assert (start - timedelta(microseconds=1)).astimezone(tz).date() < start_d
    # windows tile time: the next window starts where this one ends
    nxt_d, nxt_start, _ = calendar_span(kind, end, tz)
    assert nxt_start == end and nxt_d > start_d
    hours = (end - start) / timedelta(hours=1)
    if kind == "day":
        assert start_d == local_now and 22.5 <= hours <= 25.5
    elif kind == "week":
        assert start_d.weekday() == 0 and (local_now - start_d).days < 7
        assert 7 * 24 - 1.5 <= hours <= 7 * 24 + 1.5
    else:
        assert start_d == local_now.replace(day=1)
        assert 28 * 24 - 1.5 <= hours <= 31 * 24 + 1.5


@settings(max_examples=200, deadline=None)
@given(
    ts=st.integers(min_value=1_600_000_000_000, max_value=2_100_000_000_000),
    minutes=st.integers(min_value=1, max_value=7 * 24 * 60),
    buckets=st.integers(min_value=1, max_value=120),
)
def test_rolling_window_properties(ts: int, minutes: int, buckets: int) -> None:
    w = Window.rolling(timedelta(minutes=minutes), buckets)
    now = datetime.fromtimestamp(ts / 1000, UTC)
    spans = w.spans(now)
    g = timedelta(milliseconds=w.granularity_ms)
    assert len(spans) == buckets
    assert spans[-1].start <= now < spans[-1].start + g
    assert all(b.start - a.start == g for a, b in itertools.pairwise(spans))
    covered = now - spans[0].start  # history summed: between (buckets-1)*g and buckets*g <= length
    assert g * (buckets - 1) <= covered < g * buckets <= w.length
    if (w.length // timedelta(milliseconds=1)) % buckets == 0:
        assert g * buckets == w.length
    assert all(s.end == s.start + g * buckets for s in spans)


def test_calendar_budget_resets_at_local_midnight() -> None:
    budgets, _ = make(Budget("d", limit_tokens=10, window="day", timezone="Europe/Berlin"))
    before = datetime(2026, 11, 23, 22, 59, tzinfo=UTC)  # 23:59 in Berlin
    h_a = budgets.reserve("a", {}, 0, 10, now=before)
    budgets.commit(h_a, 0, 10, now=before)
    with pytest.raises(BudgetExceededError) as e:
        budgets.reserve("b", {}, 0, 1, now=before)
    assert e.value.reset_at == datetime(2026, 11, 23, 23, 0, tzinfo=UTC)
    budgets.reserve("c", {}, 0, 10, now=datetime(2026, 11, 23, 23, 0, tzinfo=UTC))


# -- thresholds and alerts ----------------------------------------------------------------------
def test_thresholds_fire_once_per_scope_and_window() -> None:
    budgets, alerts = make(Budget("d", limit_usd="1", scope="user_id"))
    for i in range(10):  # $0.10 each: crosses 50, 75, 90 %
        held = budgets.reserve(f"r{i}", {"user_id": "u"}, 100_000_000, 0, now=T0)
        budgets.commit(held, 100_000_000, 0, now=T0)
    assert [(a.threshold, a.kind, a.spent) for a in alerts] == [
        (0.5, "threshold", Decimal("0.5")),
        (0.75, "threshold", Decimal("0.8")),
        (0.9, "threshold", Decimal("0.9")),
    ]
    nxt = T0 + timedelta(days=1)  # a new window fires again
    h_n = budgets.reserve("n", {"user_id": "u"}, 600_000_000, 0, now=nxt)
    budgets.commit(h_n, 600_000_000, 0, now=nxt)
    assert [a.threshold for a in alerts[3:]] == [0.5]
    assert alerts[-1].window == "d2026-11-24" and alerts[-1].reset_at == datetime(
        2026, 11, 25, tzinfo=UTC
    )


def test_thresholds_fire_once_across_budgets_objects_sharing_a_store() -> None:
    store = MemoryBudgetStore()
    alerts: list[Alert] = []
    procs = [
        Budgets(Budget("g", limit_tokens=100), store=store, alert_sinks=[alerts.append])
        for _ in range(3)
    ]
    for i in range(9):
        b = procs[i % 3]
        held = b.reserve(f"r{i}", {}, 0, 10, now=T0)
        b.commit(held, 0, 10, now=T0)
    assert sorted(a.threshold for a in alerts) == [0.5, 0.75, 0.9]  # 90 of 100, once each


def test_soft_budget_never_denies_and_alerts_when_exceeded(
    caplog: pytest.LogCaptureFixture,
) -> None:
    budgets = Budgets(
        Budget("soft", limit_tokens=100, mode="soft", thresholds=(0.5,)),
        alert_sinks=[LoggingAlertSink()],
    )
    with caplog.at_level(logging.WARNING, logger="tokenward.budgets"):
        for i in range(3):
            held = budgets.reserve(f"r{i}", {}, 0, 60, now=T0)
            budgets.commit(held, 0, 60, now=T0)
    recs = [r for r in caplog.records if hasattr(r, "tokenward_alert")]
    assert [r.tokenward_alert["threshold"] for r in recs] == [0.5, 1.0]
    assert (
        recs[1].tokenward_alert["kind"] == "exceeded" and recs[1].tokenward_alert["spent"] == "120"
    )
    s = budgets.status("soft", now=T0)
    assert s.spent == 180 and s.remaining == 0 and s.near_limit


def test_a_failing_alert_sink_does_not_break_the_call() -> None:
    def boom(alert: Alert) -> None:
        raise RuntimeError("sink down")

    seen: list[Alert] = []
    budgets = Budgets(
        Budget("g", limit_tokens=10, thresholds=(0.5,)), alert_sinks=[boom, seen.append]
    )
    h_r = budgets.reserve("r", {}, 0, 6, now=T0)
    budgets.commit(h_r, 0, 6, now=T0)
    assert len(seen) == 1


def test_status_forecasts_remaining_calls_at_average_cost() -> None:
    budgets, _ = make(Budget("d", limit_usd="1"))
    for i, c in enumerate((100_000_000, 200_000_000)):
        held = budgets.reserve(f"r{i}", {}, c, 0, now=T0)
        budgets.commit(held, c, 0, now=T0)
    s = budgets.status("d", now=T0)
    assert s.average_per_call == Decimal("0.15") and s.forecast_remaining_calls == 4
    assert s.near_limit is False
    with pytest.raises(ConfigurationError, match="No budget named"):
        budgets.status("nope")


# -- fail modes ---------------------------------------------------------------------------------
class FlakyStore(MemoryBudgetStore):
    """A memory store that can be switched off like an unreachable server."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False
        self.calls = 0

    def _check(self) -> None:
        self.calls += 1
        if self.down:
            raise BudgetStoreUnavailableError("connection refused")

    def reserve(self, *a, **k):  # type: ignore[no-untyped-def]
        self._check()
        return super().reserve(*a, **k)

    def commit(self, *a, **k):  # type: ignore[no-untyped-def]
        self._check()
        return super().commit(*a, **k)

    def release(self, *a, **k):  # type: ignore[no-untyped-def]
        self._check()
        return super().release(*a, **k)

    def status(self, *a, **k):  # type: ignore[no-untyped-def]
        self._check()
        return super().status(*a, **k)

    def mark_once(self, *a, **k):  # type: ignore[no-untyped-def]
        self._check()
        return super().mark_once(*a, **k)


def test_fail_closed_denies_with_store_error_but_never_loses_committed_spend() -> None:
    store = FlakyStore()
    budgets, _ = make(
        Budget("g", limit_tokens=1000), store=store, fail_mode="closed", retry_interval=timedelta(0)
    )
    h_before = budgets.reserve("before", {}, 0, 100, now=T0)
    store.down = True
    with pytest.raises(BudgetStoreUnavailableError, match="fail_mode='closed'"):
        budgets.reserve("during", {}, 0, 10, now=T0)
    budgets.commit(h_before, 0, 100, now=T0)  # call already happened: journaled, no exception
    assert budgets.journal_size == 1
    store.down = False
    budgets.reserve("after", {}, 0, 10, now=T0)  # reconciles first
    assert budgets.journal_size == 0
    assert budgets.status("g", now=T0).spent == 100


def test_fail_open_allows_calls_journals_spend_and_reconciles() -> None:
    store = FlakyStore()
    budgets, _ = make(
        Budget("g", limit_tokens=1000),
        store=store,
        fail_mode="open",
        retry_interval=timedelta(seconds=60),
    )
    store.down = True
    for i in range(3):
        held = budgets.reserve(f"r{i}", {}, 0, 2000, now=T0)  # even over the limit: open means open
        budgets.commit(held, 0, 50, now=T0)
    calls_while_down = store.calls
    assert calls_while_down == 1  # after the first failure the store is not hammered
    assert budgets.degraded and budgets.journal_size == 3
    store.down = False
    assert budgets.reconcile(now=T0) == 3
    assert budgets.status("g", now=T0).spent == 150 and budgets.status("g", now=T0).calls == 3


def test_a_refusal_while_the_store_is_marked_down_does_not_extend_the_outage() -> None:
    store = FlakyStore()
    budgets, _ = make(
        Budget("g", limit_tokens=1000),
        store=store,
        fail_mode="open",
        retry_interval=timedelta(seconds=60),
    )
    store.down = True
    budgets.commit(budgets.reserve("a", {}, 0, 10, now=T0), 0, 5, now=T0)  # fails: marked down
    until = budgets._down_until
    budgets.commit(budgets.reserve("b", {}, 0, 10, now=T0), 0, 5, now=T0)  # refused, not tried
    with pytest.raises(BudgetStoreUnavailableError, match="marked unavailable"):
        budgets.expire(now=T0)
    assert store.calls == 1 and budgets._down_until == until and budgets.journal_size == 2


@pytest.mark.parametrize("failed", [None, 5, "0"])
def test_a_store_denial_that_names_no_item_is_a_broken_answer_under_the_fail_mode(
    failed: Any, caplog: pytest.LogCaptureFixture
) -> None:
    class Mute(MemoryBudgetStore):
        def reserve(self, *a, **k):  # type: ignore[no-untyped-def]
            return ReserveResult(False, (), failed)

    closed, _ = make(Budget("g", limit_tokens=1000), store=Mute(), fail_mode="closed")
    with pytest.raises(BudgetStoreUnavailableError, match="without naming the item"):
        closed.reserve("r1", {}, 0, 10, now=T0)
    opened, _ = make(Budget("g", limit_tokens=1000), store=Mute(), fail_mode="open")
    with caplog.at_level(logging.DEBUG, logger="tokenward.budgets"):  # warned once per process
        held = opened.reserve("r2", {}, 0, 10, now=T0)  # let through, like any broken answer
    assert "without naming the item" in caplog.text
    assert not held.stored


# -- degradation --------------------------------------------------------------------------------
PRICES = {"big": (10, 30), "small": (1, 2)}  # nano-USD per token (input, output)


def price(model: str, i: int, o: int) -> int:
    pi, po = PRICES[model]
    return i * pi + o * po


def test_suggest_degradation_lowers_output_then_switches_model() -> None:
    budgets, _ = make(Budget("g", limit_usd="0.0001"))  # 100,000 nanos
    dims: dict[str, str] = {}
    fits = suggest_degradation(
        budgets,
        dims,
        model="big",
        prompt_tokens=1000,
        max_output_tokens=2000,
        price=price,
        ladder=["small"],
        now=T0,
    )
    # 1000*10 + o*30 <= 100_000  ->  o <= 3000: fits as is
    assert fits is not None and fits.action == "none"
    lower = suggest_degradation(
        budgets,
        dims,
        model="big",
        prompt_tokens=1000,
        max_output_tokens=4000,
        price=price,
        ladder=["small"],
        now=T0,
    )
    assert lower is not None and (lower.action, lower.max_output_tokens, lower.cost_nanos) == (
        "max_output_tokens",
        3000,
        100_000,
    )
    h_r = budgets.reserve(
        "r", dims, lower.cost_nanos, lower.tokens, now=T0
    )  # the suggestion reserves
    budgets.release(h_r, now=T0)
    switch = suggest_degradation(
        budgets,
        dims,
        model="big",
        prompt_tokens=9500,
        max_output_tokens=4000,
        price=price,
        ladder=["small"],
        now=T0,
    )
    assert switch is not None and (switch.action, switch.model, switch.max_output_tokens) == (
        "model",
        "small",
        4000,
    )
    assert (
        suggest_degradation(
            budgets,
            dims,
            model="big",
            prompt_tokens=200_000,
            max_output_tokens=10,
            price=price,
            ladder=["small"],
            now=T0,
        )
        is None
    )


def test_degrade_respects_token_budgets_and_decimal_prices() -> None:
    budgets, _ = make(Budget("t", limit_tokens=1500))
    d = Degrade(min_output_tokens=100).suggest(
        budgets,
        {},
        model="big",
        prompt_tokens=1000,
        max_output_tokens=4096,
        price=lambda m, i, o: Decimal(i + o) / 10**6,
        now=T0,
    )
    assert (
        d is not None
        and d.max_output_tokens == 500
        and d.tokens == 1500
        and d.cost_nanos == 1_500_000
    )
    assert (
        Degrade(min_output_tokens=600).suggest(
            budgets,
            {},
            model="big",
            prompt_tokens=1000,
            max_output_tokens=4096,
            price=price,
            now=T0,
        )
        is None
    )


def test_decimal_thresholds_are_accepted() -> None:
    b = Budget("x", limit_usd="1", thresholds=[Decimal("0.5"), 0.9, Decimal("0.5")])
    assert b.thresholds == (0.5, 0.9) and not any(math.isnan(t) for t in b.thresholds)


def test_max_utilization_counts_reserved_and_only_applicable_budgets() -> None:
    budgets, _ = make(
        Budget("support", limit_tokens=100, where={"agent": "support"}),
        Budget("per-user", limit_tokens=1000, scope="user_id"),
    )
    budgets.reserve("r", {"agent": "support", "user_id": "u"}, 0, 70, now=T0)
    assert budgets.max_utilization({"agent": "support", "user_id": "u"}, now=T0) == pytest.approx(
        0.7
    )
    assert budgets.max_utilization({"agent": "sales", "user_id": "u"}, now=T0) == pytest.approx(
        0.07
    )


def test_sqlite_in_memory_store_is_shared_by_threads() -> None:
    import threading

    from tokenward.budgets import SQLiteBudgetStore

    budgets, _ = make(Budget("g", limit_tokens=100), store=SQLiteBudgetStore(":memory:"))
    budgets.reserve("a", {}, 0, 60, now=T0)
    denied: list[BaseException] = []

    def other() -> None:
        try:
            budgets.reserve("b", {}, 0, 60, now=T0)
        except BudgetExceededError as exc:
            denied.append(exc)

    t = threading.Thread(target=other)
    t.start()
    t.join()
    assert len(denied) == 1 and denied[0].reserved == 60


def test_no_applicable_budget_never_denies_and_reserves_nothing() -> None:
    budgets, _ = make(Budget("support-only", limit_tokens=1, where={"agent": "support"}))
    h_r = budgets.reserve("r", {"agent": "sales", "user_id": "u"}, 10**12, 10**9, now=T0)
    budgets.commit(h_r, 10**12, 10**9, now=T0)
    assert budgets.status("support-only", agent="support", now=T0).spent == 0
    empty, _ = make()
    h_r = empty.reserve("r", {}, 10**12, 10**9, now=T0)
    empty.commit(h_r, 10**12, 10**9, now=T0)


def test_release_then_retry_frees_the_budget_immediately() -> None:
    """A failed call's release returns its reservation at once (no false denials under load)."""
    budgets, _ = make(Budget("g", limit_tokens=100))
    for i in range(50):
        held = budgets.reserve(f"r{i}", {}, 0, 100, now=T0)
        budgets.release(held, now=T0)
    assert budgets.status("g", now=T0).reserved == 0


@pytest.mark.parametrize("interval", [timedelta(0), None])
def test_housekeeping_deletes_old_window_counters_from_the_store(
    interval: timedelta | None,
) -> None:
    from tokenward.budgets import SQLiteBudgetStore

    store = SQLiteBudgetStore(":memory:")  # deletes only when expire() is called
    budgets, _ = make(Budget("d", limit_tokens=10), store=store, housekeeping_interval=interval)
    h_a = budgets.reserve("a", {}, 0, 5, now=T0)
    budgets.commit(h_a, 0, 5, now=T0)
    assert store.status(["d|*|d2026-11-23"], T0.timestamp())[0].spent == 5
    later = T0 + timedelta(days=3)
    budgets.reserve("b", {}, 0, 5, now=later)  # triggers housekeeping at `later`
    left = store.status(["d|*|d2026-11-23"], later.timestamp())[0].spent
    assert left == (0 if interval is not None else 5)
    assert budgets.status("d", now=later).reserved == 5
