"""The Accountant lifecycle against the real catalog, counting, cost, ledger and budgets."""

from __future__ import annotations

import asyncio
import logging
from datetime import date, datetime, timezone
from decimal import Decimal

import pytest

from tokenward.accountant import (
    Accountant,
    Estimate,
    get_default_accountant,
    set_default_accountant,
)
from tokenward.budgets import Budget, Budgets
from tokenward.catalog import Catalog, ModelInfo, Prices, PriceTier
from tokenward.counting import get_counter
from tokenward.errors import (
    BudgetExceededError,
    ConfigurationError,
    UsageParseError,
)
from tokenward.ledger import MemoryLedger
from tokenward.usage import Usage

M = Decimal(1_000_000)

# $1 / $2 per 1M tokens, cache read $0.50; above 1,000 input tokens the whole call costs double.
ACME = ModelInfo(
    name="acme-chat",
    provider="openai",
    context_window=128_000,
    max_output=4_000,
    prices=Prices(input=Decimal("1"), output=Decimal("2"), cache_read=Decimal("0.5")),
    tiers=(
        PriceTier(1_000, Prices(input=Decimal("2"), output=Decimal("4"), cache_read=Decimal("1"))),
    ),
    tokenizer="o200k_base",
    as_of=date(2026, 11, 1),
    source="https://example.test/prices",
)
SMALL = ModelInfo(
    name="acme-small",
    provider="anthropic",
    context_window=200_000,
    max_output=512,
    prices=Prices(input=Decimal("3"), output=Decimal("15")),
    as_of=date(2026, 11, 1),
    source="https://example.test/prices",
)
T0 = datetime(2026, 11, 20, 12, 0, tzinfo=timezone.utc)


@pytest.fixture
def catalog() -> Catalog:
    return Catalog([ACME, SMALL])


@pytest.fixture
def acct(catalog: Catalog) -> Accountant:
    return Accountant(catalog=catalog, ledger=MemoryLedger(), clock=lambda: T0)


HELLO = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Say hello."}]


# ----------------------------------------------------------------------------- preflight
def test_preflight_counts_messages_exactly_and_prices_expected_output(
    acct: Accountant, catalog: Catalog
):
    est = acct.preflight("r1", "acme-chat", messages=HELLO)
    expected_prompt = get_counter("acme-chat", catalog=catalog).count_messages(HELLO)
    assert isinstance(est, Estimate)
    assert est.prompt_tokens == expected_prompt
    # OpenAI chat formula: 3 per message + role + content, + 3 reply priming
    assert est.prompt_tokens == 3 + 1 + 4 + 3 + 1 + 3 + 3
    assert est.exact is True
    assert est.expected_output == 1024  # expected_output_tokens default, below max_output 4000
    assert est.cost == (Decimal(est.prompt_tokens) * 1 + 1024 * 2) / M
    assert est.provider == "openai"
    assert acct.pending("r1") == est


def test_expected_output_is_capped_by_model_max_output_and_overridden_by_max_tokens(
    acct: Accountant,
):
    assert acct.preflight("a", "acme-small", prompt_tokens=100).expected_output == 512
    est = acct.preflight("b", "acme-small", prompt_tokens=100, max_output_tokens=50)
    assert est.expected_output == 50
    assert est.cost == (Decimal(100) * 3 + 50 * 15) / M
    assert acct.preflight("c", "acme-chat", prompt_tokens=0, kind="embedding").expected_output == 0


def test_estimate_uses_the_same_tiered_prices_as_the_bill(acct: Accountant):
    est = acct.preflight("big", "acme-chat", prompt_tokens=2_000, max_output_tokens=100)
    assert est.cost == (Decimal(2_000) * 2 + 100 * 4) / M  # tier prices, not base prices
    event = acct.settle("big", Usage(input=2_000, output=100))
    assert event is not None and event.cost == est.cost


def test_unknown_model_runs_and_is_recorded_with_its_tokens_and_cost_unknown(
    acct: Accountant, caplog
):
    with caplog.at_level(logging.WARNING, logger="tokenward"):
        est = acct.preflight("r", "acme-chatt-unknown", prompt_tokens=10)
        acct.preflight("r2", "acme-chatt-unknown", prompt_tokens=10)
    assert est.cost is None and est.prompt_tokens == 10
    event = acct.settle("r", Usage(input=10, output=5))
    assert event is not None
    assert event.model == "acme-chatt-unknown" and event.cost is None
    assert event.usage == Usage(input=10, output=5) and event.price_source is None
    # one warning per model per process, not per call
    assert caplog.text.count("'acme-chatt-unknown' has no known price") == 1
    assert acct.ledger.count() == 1


def test_fallback_catalog_prices_unknown_model_but_records_its_name():
    acct = Accountant(catalog=Catalog([ACME], fallback="acme-chat"), ledger=MemoryLedger())
    acct.preflight("r", "brand-new-model", prompt_tokens=10, max_output_tokens=10)
    event = acct.settle("r", Usage(input=10, output=10))
    assert event is not None
    assert event.model == "brand-new-model"
    assert event.cost == Decimal(10 * 1 + 10 * 2) / M


def test_preflight_needs_messages_or_prompt_tokens(acct: Accountant):
    with pytest.raises(ConfigurationError, match="messages"):
        acct.preflight("r", "acme-chat")
    with pytest.raises(ConfigurationError):
        acct.preflight("r", "acme-chat", prompt_tokens=-1)


# ----------------------------------------------------------------------------- settle
def test_settle_records_priced_event_with_dims(acct: Accountant):
    acct.preflight(
        "r1",
        "acme-chat",
        messages=HELLO,
        parent_id="p0",
        dims={"user_id": "u1", "agent": "bot", "tags": {"team": "a"}, "tenant": "t9"},
    )
    event = acct.settle(
        "r1", Usage(input=500, output=200, cache_read=100), tool_names=["search", "search"]
    )
    assert event is not None
    assert event.id == "r1"
    assert event.timestamp == T0
    assert event.model == "acme-chat" and event.provider == "openai"
    # 400 uncached at $1, 100 cached at $0.5, 200 output at $2
    assert event.cost == Decimal("0.00085")
    assert event.estimated is False and event.status == "ok"
    assert event.user_id == "u1" and event.agent == "bot"
    assert dict(event.tags) == {"team": "a", "tenant": "t9"}
    assert event.tool_calls == 2 and event.tool_names == ("search", "search")
    assert event.parent_id == "p0"
    assert event.latency_ms is not None and event.latency_ms >= 0
    assert event.prompt is None and event.output is None
    assert acct.pending("r1") is None
    assert [e.id for e in acct.ledger.events()] == ["r1"]


def test_same_run_settled_twice_is_recorded_once(acct: Accountant):
    acct.preflight("r1", "acme-chat", prompt_tokens=10)
    first = acct.settle("r1", Usage(input=10, output=5))
    second = acct.settle("r1", Usage(input=99, output=99))
    assert first is not None and second is None
    assert acct.release("r1", error="late error") is None
    assert acct.ledger.count() == 1
    assert next(iter(acct.ledger.events())).usage == Usage(input=10, output=5)


def test_settle_without_usage_estimates_from_preflight_and_output_text(
    acct: Accountant, catalog: Catalog
):
    est = acct.preflight("r1", "acme-chat", messages=HELLO)
    text = "Hello there, nice to meet you."
    event = acct.settle("r1", None, output_text=text)
    out = get_counter("acme-chat", catalog=catalog).count_text(text)
    assert event is not None
    assert event.usage == Usage(input=est.prompt_tokens, output=out, estimated=True)
    assert event.estimated is True
    assert event.cost == (Decimal(est.prompt_tokens) * 1 + out * 2) / M
    # an empty Usage counts as "no usage" too
    acct.preflight("r2", "acme-chat", prompt_tokens=7)
    e2 = acct.settle("r2", Usage())
    assert e2 is not None and e2.usage == Usage(input=7, output=0, estimated=True)


def test_settle_fills_missing_input_from_the_preflight_count(acct: Accountant):
    acct.preflight("r1", "acme-chat", prompt_tokens=300)
    event = acct.settle("r1", Usage(output=40))
    assert event is not None
    assert event.usage == Usage(input=300, output=40, estimated=True)


def test_settle_without_preflight_needs_a_model(acct: Accountant):
    with pytest.raises(ConfigurationError, match="model="):
        acct.settle("nope", Usage(input=1, output=1))
    event = acct.settle("nope", Usage(input=1000, output=100), model="acme-chat", latency_ms=12.5)
    assert event is not None and event.cost == Decimal("0.0012") and event.latency_ms == 12.5


def test_settle_with_response_snapshot_name_uses_canonical_model():
    acct = Accountant(ledger=MemoryLedger())  # default catalog
    acct.preflight("r", "gpt-4o", prompt_tokens=1000, max_output_tokens=100)
    event = acct.settle("r", Usage(input=1000, output=100), model="gpt-4o-2024-08-06")
    assert event is not None and event.model == "gpt-4o"
    # a response model the catalog does not know keeps the preflight pricing
    acct.preflight("s", "gpt-4o", prompt_tokens=1000, max_output_tokens=100)
    event = acct.settle("s", Usage(input=1000, output=100), model="totally-unknown-model")
    assert event is not None and event.model == "gpt-4o"
    assert event.cost == Decimal("0.0035")  # 1000 * $2.50 + 100 * $10 per 1M


def test_failed_ledger_write_leaves_the_run_retryable(catalog: Catalog):
    class FlakyLedger(MemoryLedger):
        fail = True

        def record(self, event):  # type: ignore[no-untyped-def]
            if self.fail:
                self.fail = False
                raise OSError("disk full")
            super().record(event)

    acct = Accountant(catalog=catalog, ledger=FlakyLedger())
    acct.preflight("r", "acme-chat", prompt_tokens=10)
    with pytest.raises(OSError):
        acct.settle("r", Usage(input=10, output=10))
    assert acct.pending("r") is not None
    assert acct.settle("r", Usage(input=10, output=10)) is not None
    assert acct.ledger.count() == 1


# ----------------------------------------------------------------------------- release
def test_release_records_an_error_event_and_keeps_partial_usage(acct: Accountant):
    acct.preflight("r1", "acme-chat", prompt_tokens=100, dims={"user_id": "u"})
    event = acct.release(
        "r1", partial_usage=Usage(input=100, output=20), error=TimeoutError("slow")
    )
    assert event is not None
    assert event.status == "error" and event.error == "TimeoutError: slow"
    assert event.usage == Usage(input=100, output=20)
    assert event.cost == Decimal(100 * 1 + 20 * 2) / M
    assert event.user_id == "u"
    assert acct.settle("r1", Usage(input=1, output=1)) is None  # already ended


def test_release_of_cancelled_call_without_usage(acct: Accountant):
    acct.preflight("r1", "acme-chat", prompt_tokens=100)
    event = acct.release("r1", error=asyncio.CancelledError())
    assert event is not None and event.status == "cancelled"
    assert event.usage == Usage() and event.cost == 0
    acct.preflight("r2", "acme-chat", prompt_tokens=100)
    assert acct.release("r2", error="cancelled").status == "cancelled"  # type: ignore[union-attr]
    assert acct.release("never-started") is None
    assert acct.ledger.count() == 2


def test_settle_with_error_status(acct: Accountant):
    acct.preflight("r1", "acme-chat", prompt_tokens=10)
    event = acct.settle("r1", None, status="error", output_text="partial", error="stream broke")
    assert event is not None and event.status == "error" and event.error == "stream broke"
    assert event.estimated is True


# ----------------------------------------------------------------------------- budgets
def _budgets(limit: str = "0.002") -> Budgets:
    return Budgets(
        Budget("per-user", limit_usd=limit, window="day", scope="user_id"), alert_sinks=()
    )


def test_hard_budget_denies_before_the_call_and_reserves_the_estimate(catalog: Catalog):
    budgets = _budgets()
    acct = Accountant(catalog=catalog, budgets=budgets, ledger=MemoryLedger(), clock=lambda: T0)
    est = acct.preflight(
        "r1", "acme-chat", prompt_tokens=200, max_output_tokens=400, dims={"user_id": "u1"}
    )
    assert est.reserved is True
    st = budgets.status("per-user", user_id="u1", now=T0)
    assert st.reserved == est.cost == Decimal("0.001")
    assert st.spent == 0
    # a second call of the same size would exceed $0.002 once the first is committed
    acct.settle("r1", Usage(input=200, output=700))  # actual: 0.0016
    st = budgets.status("per-user", user_id="u1", now=T0)
    assert (st.spent, st.reserved) == (Decimal("0.0016"), 0)
    with pytest.raises(BudgetExceededError) as info:
        acct.preflight(
            "r2", "acme-chat", prompt_tokens=200, max_output_tokens=400, dims={"user_id": "u1"}
        )
    assert info.value.budget == "per-user" and info.value.scope_key == "user_id=u1"
    assert acct.pending("r2") is None
    # another user has their own counter
    acct.preflight(
        "r3", "acme-chat", prompt_tokens=200, max_output_tokens=400, dims={"user_id": "u2"}
    )
    assert acct.ledger.count() == 1


def test_preflight_of_a_pending_run_replaces_its_reservation(catalog: Catalog):
    budgets = _budgets("1")
    acct = Accountant(catalog=catalog, budgets=budgets, ledger=MemoryLedger(), clock=lambda: T0)
    acct.preflight("r", "acme-chat", prompt_tokens=100, max_output_tokens=0, dims={"user_id": "u"})
    acct.preflight("r", "acme-chat", prompt_tokens=300, max_output_tokens=0, dims={"user_id": "u"})
    assert budgets.status("per-user", user_id="u", now=T0).reserved == Decimal(300) / M


def test_release_returns_the_reservation_or_commits_partial_cost(catalog: Catalog):
    budgets = _budgets("1")
    acct = Accountant(catalog=catalog, budgets=budgets, ledger=MemoryLedger(), clock=lambda: T0)
    acct.preflight("r1", "acme-chat", prompt_tokens=1000, dims={"user_id": "u1"})
    acct.release("r1", error=RuntimeError("boom"))
    st = budgets.status("per-user", user_id="u1", now=T0)
    assert (st.spent, st.reserved) == (0, 0)
    acct.preflight("r2", "acme-chat", prompt_tokens=1000, dims={"user_id": "u1"})
    acct.release("r2", partial_usage=Usage(input=1000, output=10), error=RuntimeError("cut"))
    st = budgets.status("per-user", user_id="u1", now=T0)
    assert (st.spent, st.reserved) == (Decimal("0.00102"), 0)


def test_record_one_shot_commits_on_budgets_and_uses_track_dims(catalog: Catalog):
    budgets = _budgets("1")
    acct = Accountant(catalog=catalog, budgets=budgets, ledger=MemoryLedger(), clock=lambda: T0)
    with acct.track(user_id="u7"):
        event = acct.record("acme-chat", Usage(input=1000, output=500), agent="batch", team="x")
    assert event.user_id == "u7" and event.agent == "batch" and dict(event.tags) == {"team": "x"}
    assert event.cost == Decimal("0.002")
    assert budgets.status("per-user", user_id="u7", now=T0).spent == Decimal("0.002")
    with pytest.raises(ConfigurationError):
        acct.record("acme-chat", Usage(input=1), run_id=event.id)
    with pytest.raises(UsageParseError):
        acct.record("acme-chat", {"input": 1})


def test_provider_payloads_are_parsed(acct: Accountant):
    openai_usage = {
        "prompt_tokens": 1000,
        "completion_tokens": 100,
        "prompt_tokens_details": {"cached_tokens": 800},
    }
    acct.preflight("r", "acme-chat", prompt_tokens=990)
    event = acct.settle("r", openai_usage)
    assert event is not None
    assert event.usage == Usage(input=1000, output=100, cache_read=800)
    assert event.cost == (Decimal(200) * 1 + Decimal(800) * Decimal("0.5") + 100 * 2) / M
    anthropic = {"input_tokens": 50, "output_tokens": 5, "cache_read_input_tokens": 100}
    assert acct.record("acme-chat", anthropic).usage == Usage(input=150, output=5, cache_read=100)
    acct.preflight("bad", "acme-chat", prompt_tokens=1)
    with pytest.raises(UsageParseError):
        acct.settle("bad", {"tokens": "many"})
    assert acct.pending("bad") is not None  # nothing consumed: the caller can settle again


# ----------------------------------------------------------------------------- sinks
def test_failing_sink_is_logged_and_never_breaks_the_call(acct: Accountant, caplog):
    seen: list[str] = []

    def bad(event):  # type: ignore[no-untyped-def]
        raise RuntimeError("sink down")

    acct.add_sink(bad)
    acct.add_sink(lambda e: seen.append(e.id))
    with caplog.at_level(logging.ERROR, logger="tokenward"):
        acct.preflight("r1", "acme-chat", prompt_tokens=1)
        event = acct.settle("r1", Usage(input=1, output=1))
    assert event is not None and seen == ["r1"]
    assert "sink" in caplog.text and "sink down" in caplog.text
    assert acct.ledger.count() == 1
    acct.remove_sink(bad)
    acct.record("acme-chat", Usage(input=1, output=1))
    assert len(seen) == 2


def test_store_content_is_opt_in(catalog: Catalog):
    acct = Accountant(catalog=catalog, ledger=MemoryLedger(), store_content=True)
    acct.preflight("r", "acme-chat", messages=HELLO)
    event = acct.settle("r", Usage(input=5, output=2), output_text="Hello!")
    assert event is not None
    assert event.prompt == "system: You are terse.\nuser: Say hello."
    assert event.output == "Hello!"


# ----------------------------------------------------------------------------- ledgers / defaults
def test_sqlite_ledger_by_path(tmp_path, catalog: Catalog):
    path = tmp_path / "ledger.db"
    with Accountant(catalog=catalog, ledger=str(path)) as acct:
        acct.preflight("r", "acme-chat", prompt_tokens=10)
        acct.settle("r", Usage(input=10, output=10))
        acct.settle("r", Usage(input=10, output=10))
    from tokenward.ledger import open_ledger

    ledger = open_ledger(str(path))
    try:
        events = list(ledger.events())
    finally:
        ledger.close()
    assert [(e.id, e.cost) for e in events] == [("r", Decimal("0.00003"))]


def test_default_accountant_and_env_db(tmp_path, monkeypatch):
    previous = set_default_accountant(None)
    try:
        monkeypatch.delenv("TOKENWARD_DB", raising=False)
        a = get_default_accountant()
        assert isinstance(a.ledger, MemoryLedger)
        assert get_default_accountant() is a
        custom = Accountant(ledger=MemoryLedger())
        assert set_default_accountant(custom) is a
        assert get_default_accountant() is custom
        set_default_accountant(None)
        db = tmp_path / "sub" / "env.db"
        monkeypatch.setenv("TOKENWARD_DB", str(db))
        b = get_default_accountant()
        b.record("gpt-4o", Usage(input=1, output=1))
        b.close()
        assert db.exists()
        with pytest.raises(TypeError):
            set_default_accountant("nope")  # type: ignore[arg-type]
    finally:
        set_default_accountant(previous)


def test_default_classmethod_uses_dot_tokenward(tmp_path, monkeypatch):
    monkeypatch.delenv("TOKENWARD_DB", raising=False)
    monkeypatch.chdir(tmp_path)
    acct = Accountant.default()
    acct.record("gpt-4o", Usage(input=1, output=1))
    acct.close()
    assert (tmp_path / ".tokenward" / "ledger.db").exists()


def test_close_releases_pending_reservations(catalog: Catalog):
    budgets = _budgets("1")
    acct = Accountant(catalog=catalog, budgets=budgets, ledger=MemoryLedger(), clock=lambda: T0)
    acct.preflight("r", "acme-chat", prompt_tokens=100, dims={"user_id": "u"})
    assert budgets.status("per-user", user_id="u", now=T0).reserved > 0
    acct.close()
    assert budgets.status("per-user", user_id="u", now=T0).reserved == 0


def test_bad_settings(catalog: Catalog):
    with pytest.raises(ConfigurationError):
        Accountant(catalog=catalog, expected_output_tokens=-1)
    with pytest.raises(ConfigurationError, match="tags"):
        Accountant(catalog=catalog).preflight("r", "acme-chat", prompt_tokens=1, dims={"tags": "x"})


def test_release_without_preflight_keeps_partial_usage_when_model_is_known(
    acct: Accountant, caplog
):
    event = acct.release(
        "orphan",
        partial_usage=Usage(input=100, output=10),
        error=ValueError("x"),
        model="acme-chat",
    )
    assert event is not None and event.status == "error" and event.error == "ValueError: x"
    assert event.cost == Decimal(100 * 1 + 10 * 2) / M
    with caplog.at_level(logging.WARNING, logger="tokenward"):
        assert acct.release("orphan-2", partial_usage=Usage(input=5)) is None
    assert "could not be priced" in caplog.text
    assert acct.ledger.count() == 1


def test_expected_output_never_exceeds_what_is_left_of_the_window(acct: Accountant):
    est = acct.preflight("w", "acme-chat", prompt_tokens=127_500)
    assert est.expected_output == 500  # window 128,000; default expectation 1,024


def test_preflight_of_an_already_settled_run_is_refused(acct: Accountant):
    acct.preflight("r", "acme-chat", prompt_tokens=1)
    acct.settle("r", Usage(input=1, output=1))
    with pytest.raises(ConfigurationError, match="fresh id"):
        acct.preflight("r", "acme-chat", prompt_tokens=1)
    assert acct.pending("r") is None


def test_runs_never_ended_are_evicted_and_their_reservations_released(catalog: Catalog, caplog):
    budgets = _budgets("1")
    acct = Accountant(
        catalog=catalog, budgets=budgets, ledger=MemoryLedger(), clock=lambda: T0, max_pending=3
    )
    with caplog.at_level(logging.WARNING, logger="tokenward"):
        for i in range(5):
            acct.preflight(f"r{i}", "acme-chat", prompt_tokens=1000, dims={"user_id": "u"})
    assert [acct.pending(f"r{i}") is None for i in range(5)] == [True, True, False, False, False]
    assert "r0 was never settled" in caplog.text
    # only the three live runs still hold budget: 3 x (1000 x $1 + 1024 x $2) per 1M
    st = budgets.status("per-user", user_id="u", now=T0)
    assert st.reserved == 3 * (Decimal(1000) * 1 + 1024 * 2) / M


def test_reported_usage_calibrates_the_estimator_for_models_without_a_tokenizer():
    """DESIGN: the estimator learns a per-model ratio from reported usage over time."""
    from datetime import date
    from decimal import Decimal

    from tokenward import Accountant, Catalog, ModelInfo, Prices, Usage

    catalog = Catalog.default()
    catalog.register(
        ModelInfo(
            name="calibration-test-model",
            provider="acme",
            context_window=100_000,
            max_output=4096,
            prices=Prices(input=Decimal("1"), output=Decimal("2")),
            tokenizer=None,
            as_of=date(2026, 11, 23),
            source="https://example.com/pricing",
        )
    )
    acct = Accountant(catalog=catalog)
    messages = [
        {"role": "user", "content": "Summarize the quarterly report in three bullet points."}
    ]
    first = acct.preflight(
        "cal-0", "calibration-test-model", messages=messages, max_output_tokens=10
    )
    assert first.exact is False
    # the provider counts this prompt as twice our estimate, call after call
    acct.settle("cal-0", Usage(input=2 * first.prompt_tokens, output=5))
    for i in range(1, 6):
        acct.preflight(
            f"cal-{i}", "calibration-test-model", messages=messages, max_output_tokens=10
        )
        acct.settle(f"cal-{i}", Usage(input=2 * first.prompt_tokens, output=5))
    learned = acct.preflight(
        "cal-last", "calibration-test-model", messages=messages, max_output_tokens=10
    )
    assert abs(learned.prompt_tokens - 2 * first.prompt_tokens) <= 1
    # estimates (no provider usage) teach nothing
    acct.settle("cal-last", None, output_text="ok")
    again = acct.preflight(
        "cal-again", "calibration-test-model", messages=messages, max_output_tokens=10
    )
    assert again.prompt_tokens == learned.prompt_tokens
