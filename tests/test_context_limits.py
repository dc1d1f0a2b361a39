"""Context limit management: window_status, can_add (with priced remedies), session_summary."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from tokenward.catalog import Catalog, ModelInfo, Prices
from tokenward.context import can_add, session_summary, trim_history, window_status
from tokenward.counting import get_counter
from tokenward.errors import ConfigurationError
from tokenward.ledger import MemoryLedger, UsageEvent
from tokenward.usage import Usage

D = Decimal


def _model(name: str, window: int, inp: str, out: str, provider: str = "acme") -> ModelInfo:
    return ModelInfo(
        name=name,
        provider=provider,
        context_window=window,
        max_output=100,
        prices=Prices(input=D(inp), output=D(out)),
        tokenizer="o200k_base",
    )


@pytest.fixture
def catalog() -> Catalog:
    return Catalog(
        [
            _model("acme-small", 1_000, "1", "2"),
            _model("acme-wide", 20_000, "3", "6"),
            _model("acme-huge", 200_000, "9", "18"),
            _model("other-wide", 50_000, "0.5", "1", provider="other"),
        ]
    )


def history(n: int) -> list[dict[str, str]]:
    out = [{"role": "system", "content": "You are a helpful assistant."}]
    for i in range(n):
        role = "user" if i % 2 == 0 else "assistant"
        out.append({"role": role, "content": f"message {i}: " + "lorem ipsum dolor " * 10})
    return out


def test_window_status_counts_with_the_model_tokenizer(catalog):
    msgs = history(10)
    st = window_status(msgs, "acme-small", catalog=catalog)
    counter = get_counter("acme-small", catalog=catalog)
    assert st.used == counter.count_messages(msgs) and st.exact
    assert st.reserve_output == 100  # max output (a quarter of the window would be 250)
    assert st.remaining == 1_000 - 100 - st.used
    assert st.utilization == pytest.approx(st.used / 900)
    recent = [counter.count_message(m) for m in msgs[-10:]]
    assert st.average_message == round(sum(recent) / 10)
    assert st.messages_remaining == st.remaining // st.average_message
    assert st.approaching == (st.utilization > 0.8)


def test_window_status_flags_the_last_fifth_of_the_window(catalog):
    counter = get_counter("acme-small", catalog=catalog)
    n = 0
    while counter.count_messages(history(n + 1)) <= 0.8 * 900:
        n += 1
    assert not window_status(history(n), "acme-small", catalog=catalog).approaching
    assert window_status(history(n + 1), "acme-small", catalog=catalog).approaching


def test_a_message_that_fits_is_allowed(catalog):
    check = can_add(history(2), {"role": "user", "content": "hi"}, "acme-small", catalog=catalog)
    assert check.allowed and bool(check) and check.remedy is None
    assert check.total == check.used + check.new_tokens <= check.limit == 900


def test_a_message_that_does_not_fit_gets_priced_remedies_cheapest_first(catalog):
    msgs = history(22)
    new = {"role": "user", "content": "and now: " + "lorem ipsum dolor " * 20}
    check = can_add(msgs, new, "acme-small", catalog=catalog, summary_tokens=50)
    assert not check.allowed
    assert check.excess == check.total - 900 > 0
    kinds = [r.kind for r in check.remedies]
    assert kinds == ["trim", "summarize", "switch_model"]
    trim, summarize, switch = check.remedies
    assert check.remedy is trim and trim.cost == 0
    # trimming keeps what trim_history keeps for the room left by the new message
    counter = get_counter("acme-small", catalog=catalog)
    kept = trim_history(msgs, 900 - check.new_tokens, counter)
    assert trim.drop_messages == len(msgs) - len(kept) and trim.tokens_after <= 900
    # the summary call reads the dropped messages plus an instruction, writes 50 tokens
    assert summarize.model == "acme-small" and summarize.summary_tokens == 50
    assert summarize.cost is not None and summarize.cost > 0 and summarize.tokens_after <= 900
    # the cheapest same-provider model whose window holds everything, priced for this call
    assert switch.model == "acme-wide" and switch.context_window == 20_000
    assert switch.cost == (D(check.total) * 3 + D(100) * 6) / 1_000_000


def test_a_message_too_big_for_any_trim_only_offers_a_larger_model(catalog):
    huge = {"role": "user", "content": "lorem ipsum dolor " * 400}  # > 900 tokens by itself
    check = can_add(history(2), huge, "acme-small", catalog=catalog)
    assert [r.kind for r in check.remedies] == ["switch_model"]
    # too big for every acme model but one: the cheapest of those that fit
    assert check.remedy is not None and check.remedy.model == "acme-wide"


def test_the_larger_model_comes_from_another_provider_when_needed():
    cat = Catalog([_model("acme-small", 1_000, "1", "2"), _model("o", 50_000, "5", "5", "other")])
    huge = {"role": "user", "content": "lorem ipsum dolor " * 400}
    check = can_add([], huge, "acme-small", catalog=cat)
    assert check.remedy is not None and check.remedy.model == "o"


def test_unknown_window_is_a_configuration_error(catalog):
    with pytest.raises(ConfigurationError, match="context window"):
        window_status([], "no-such-model", catalog=catalog)


T0 = datetime(2026, 3, 1, tzinfo=timezone.utc)


def _events(n: int, cost: str, **usage: int) -> list[UsageEvent]:
    return [
        UsageEvent(
            id=f"e{i}",
            timestamp=T0 + timedelta(minutes=i),
            model="acme-small",
            provider="acme",
            usage=Usage(**usage),
            cost=D(cost),
            conversation_id="c1" if i % 2 == 0 else "c2",
        )
        for i in range(n)
    ]


def test_session_summary_from_the_ledger_with_warnings(catalog):
    ledger = MemoryLedger()
    for e in _events(8, "3", input=1_000, output=200, cache_read=400):
        ledger.record(e)
    s = session_summary(
        ledger, conversation_id="c1", messages=history(20), model="acme-small", catalog=catalog
    )
    assert s.calls == 4 and s.usage.input == 4_000 and s.usage.output == 800
    assert s.cost == D(12) and s.tokens_per_call == 1_200 and s.average_output == 200
    assert s.cache_hit_rate == pytest.approx(0.4)
    assert s.window is not None and s.window.approaching
    assert len(s.warnings) == 2
    assert s.warnings[0].startswith("context window") and "trim" in s.warnings[0]
    assert s.warnings[1].startswith("high cost session: $12.00 (above $10)")


def test_a_quiet_cheap_session_has_no_warnings():
    s = session_summary(_events(2, "0.01", input=10, output=5))
    assert s.calls == 2 and s.cost == D("0.02") and s.warnings == [] and s.window is None
