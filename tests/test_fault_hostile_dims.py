"""Issue 14 item 3: hostile input is normalized or refused at the boundary, once.

Before the fix a ``user_id`` with a lone surrogate (``"m\\ud800"``) made every store raise
``UnicodeEncodeError``, which the adapter swallowed: calls ran past their budget and nothing
was recorded. A ~3 kB ``user_id`` hit PostgreSQL's btree limit (``ProgramLimitExceeded``),
taken for "store unavailable" for every user of the process. Now dimension values are
cleaned (U+FFFD for lone surrogates, NUL removed) and bounded (a prefix and a hash, the
original kept in ``tags["<name>.original"]``) before any store sees them; counts beyond
64 bits and non-finite Decimals get a ``TokenwardError`` naming the fix.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from langchain_core.prompts import ChatPromptTemplate

from tests.test_langchain_callbacks import make_model
from tokenward import BudgetExceededError, ConfigurationError, TokenwardError, UsageParseError
from tokenward._hygiene import MAX_KEY
from tokenward.accountant import Accountant
from tokenward.budgets import Budget, Budgets, SQLiteBudgetStore
from tokenward.langchain import TokenwardCallbackHandler
from tokenward.ledger import open_ledger
from tokenward.usage import Usage

SURROGATE = "m\ud800"
LONG = "attacker-" + "x" * 3000


def _store(kind: str, request: Any, tmp_path: Any) -> Any:
    if kind == "sqlite":
        return SQLiteBudgetStore(tmp_path / "budgets.db")
    if kind == "redis":
        from tokenward.budgets import RedisBudgetStore

        return RedisBudgetStore(request.getfixturevalue("redis_url"))
    from tokenward.budgets import PostgresBudgetStore

    return PostgresBudgetStore(request.getfixturevalue("make_postgres_db")())


def _ledger(kind: str, request: Any, tmp_path: Any) -> Any:
    if kind == "postgres":
        return open_ledger(request.getfixturevalue("make_postgres_db")())
    return open_ledger(str(tmp_path / "ledger.db"))


def _run(acc: Accountant, user_id: str, calls: int) -> tuple[int, int]:
    """(calls that ran, calls denied) for ``calls`` invocations by ``user_id``."""
    model = make_model("ok")  # reports 12 in + 5 out per call
    chain = ChatPromptTemplate.from_messages([("human", "{q}")]) | model
    handler = TokenwardCallbackHandler(acc)
    denied = 0
    for _ in range(calls):
        try:
            chain.invoke(
                {"q": "hi"}, config={"callbacks": [handler], "metadata": {"user_id": user_id}}
            )
        except BudgetExceededError:
            denied += 1
    return model.counter["calls"], denied


def _accountant(kind: str, request: Any, tmp_path: Any) -> Accountant:
    budgets = Budgets(
        Budget("per-user", limit_tokens=50, scope="user_id"),
        store=_store(kind, request, tmp_path),
        alert_sinks=(),
    )
    return Accountant(
        budgets=budgets, ledger=_ledger(kind, request, tmp_path), expected_output_tokens=5
    )


@pytest.mark.parametrize("kind", ["sqlite", "redis", "postgres"])
def test_lone_surrogate_user_is_bounded_by_its_budget_and_recorded(kind, request, tmp_path):
    acc = _accountant(kind, request, tmp_path)
    ran, denied = _run(acc, SURROGATE, 5)
    # 17 tokens a call: after 34, a third call's estimate (13) still fits 50; then none
    assert (ran, denied) == (3, 2)
    acc.flush()
    events = list(acc.ledger.events())
    assert [e.user_id for e in events] == ["m\ufffd"] * 3
    assert acc.budgets is not None
    assert acc.budgets.status("per-user", user_id=SURROGATE).spent == 51
    acc.close()


@pytest.mark.parametrize("kind", ["sqlite", "redis", "postgres"])
def test_3kb_user_id_is_bounded_and_other_users_are_unaffected(kind, request, tmp_path):
    acc = _accountant(kind, request, tmp_path)
    assert _run(acc, LONG, 4) == (3, 1)
    assert _run(acc, "victim", 2) == (2, 0)  # the attacker's key never breaks the store
    acc.flush()
    long_events = [e for e in acc.ledger.events() if e.user_id != "victim"]
    assert len(long_events) == 3
    stored = long_events[0].user_id
    assert stored is not None and len(stored) <= MAX_KEY and stored.startswith("attacker-x")
    assert long_events[0].tags["user_id.original"] == LONG  # kept for display
    acc.close()


def test_nul_bytes_and_surrogates_in_every_dimension_and_tag(postgres_url):
    acc = Accountant(ledger=open_ledger(postgres_url))
    acc.record(
        "gpt-4o-mini",
        Usage(input=10, output=2),
        user_id="u\x00ser",
        agent="a\udfff",
        tags={"k\x00": "v\ud83d", "x" * 500: "y"},
        tool_names=["to\x00ol"],
        error="bad \ud800 text",
        status="error",
    )
    acc.flush()
    [event] = acc.ledger.events()
    assert event.user_id == "user" and event.agent == "a\ufffd"
    assert event.tags["k"] == "v\ufffd"
    assert event.tool_names == ("tool",) and event.error == "bad \ufffd text"
    assert all(len(k) <= MAX_KEY for k in event.tags)
    acc.close()


@pytest.mark.parametrize(
    "usage",
    [
        Usage(input=2**63, output=1),
        Usage(input=1, output=10**40),
        {"prompt_tokens": 2**64, "completion_tokens": 1},
        {"prompt_tokens": Decimal("NaN"), "completion_tokens": 1},
        {"prompt_tokens": float("inf"), "completion_tokens": 1},
    ],
)
def test_counts_beyond_64_bits_and_non_finite_numbers_are_usage_parse_errors(usage, tmp_path):
    acc = Accountant(ledger=str(tmp_path / "l.db"))
    with pytest.raises(UsageParseError) as info:
        acc.record("gpt-4o-mini", usage)
    assert "usage" in str(info.value).lower()
    acc.preflight("r", "gpt-4o-mini", prompt_tokens=1)
    with pytest.raises(UsageParseError):
        acc.settle("r", usage)
    assert acc.state("r") == "pending"  # nothing recorded; still settleable with good usage
    assert acc.settle("r", Usage(input=1, output=1)) is not None
    acc.close()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"prompt_tokens": 2**63},
        {"prompt_tokens": -1},
        {"prompt_tokens": 1.5},
        {"prompt_tokens": 1, "max_output_tokens": 2**70},
        {"prompt_tokens": 1, "dims": {"tags": "not a mapping"}},
    ],
)
def test_bad_preflight_arguments_are_configuration_errors(kwargs):
    acc = Accountant(budgets=[Budget("b", limit_tokens=100)])
    with pytest.raises(ConfigurationError):
        acc.preflight("r", "gpt-4o-mini", **kwargs)
    assert acc.pending_calls == 0


def test_no_raw_driver_error_reaches_the_caller(tmp_path, request):
    """Every hostile value of the issue, through every store: only TokenwardErrors."""
    acc = _accountant("postgres", request, tmp_path)
    hostile = [SURROGATE, "\x00", LONG, "\udfff" * 2000, "=HYPERLINK(x)", "|user_id=admin"]
    for value in hostile:
        try:
            _run(acc, value, 2)
            acc.record("gpt-4o-mini", Usage(input=1, output=1), user_id=value, tags={value: value})
        except TokenwardError:
            pass
    acc.flush()
    assert acc.ledger.count() >= len(hostile)
    acc.close()
