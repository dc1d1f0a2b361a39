"""An unknown model is never silently dropped by the LangChain handlers.

Without a fallback, ``UnknownModelError`` (telling the user to register the model or choose
``Catalog(fallback=...)``) reaches the caller of ``invoke``/``ainvoke`` before the model is
called, like a budget denial. With an explicit fallback, the call is recorded at the
fallback's prices under the name the run used.
"""

from __future__ import annotations

import logging
from decimal import Decimal

import pytest
from langchain_core.prompts import ChatPromptTemplate

from tests.test_langchain_callbacks import make_model
from tokenward.accountant import Accountant
from tokenward.budgets import Budget, Budgets
from tokenward.catalog import Catalog
from tokenward.errors import UnknownModelError
from tokenward.langchain import AsyncTokenwardCallbackHandler, TokenwardCallbackHandler
from tokenward.usage import Usage

UNKNOWN = "acme-reasoner-9000"
MINI_CALL = Decimal("0.0000048")  # gpt-4o-mini: 12 in x $0.15/M + 5 out x $0.60/M


def chain_of(model):
    return ChatPromptTemplate.from_messages([("system", "Be brief."), ("human", "{q}")]) | model


def test_unknown_model_raises_before_the_model_is_called(caplog):
    budgets = Budgets(Budget("per-user", limit_usd="10", window="day", scope="user_id"))
    acc = Accountant(budgets=budgets)
    model = make_model("ok", model_name=UNKNOWN)
    handler = TokenwardCallbackHandler(acc)
    with caplog.at_level(logging.WARNING), pytest.raises(UnknownModelError) as info:
        chain_of(model).invoke(
            {"q": "hi"}, config={"callbacks": [handler], "metadata": {"user_id": "u1"}}
        )
    err = info.value
    assert err.model == UNKNOWN
    assert "Catalog(fallback=" in str(err) and "catalog.register(" in str(err)
    assert model.counter["calls"] == 0  # the provider was never called
    assert handler.pending_runs == 0
    assert acc.ledger.count() == 0
    assert budgets.status("per-user", user_id="u1").reserved == 0
    # the error reaches the caller; it is not also logged as a swallowed internal error or
    # as LangChain's "Error in ... callback" warning
    assert [
        r.getMessage()
        for r in caplog.records
        if "tokenward" in r.getMessage() or "TokenwardCallbackHandler" in r.getMessage()
    ] == []


async def test_unknown_model_raises_before_the_model_is_called_async():
    acc = Accountant()
    model = make_model("ok", model_name=UNKNOWN)
    handler = AsyncTokenwardCallbackHandler(acc)
    with pytest.raises(UnknownModelError) as info:
        await chain_of(model).ainvoke({"q": "hi"}, config={"callbacks": [handler]})
    assert info.value.model == UNKNOWN
    assert model.counter["calls"] == 0
    assert handler.pending_runs == 0
    assert acc.ledger.count() == 0


def test_unknown_model_with_explicit_fallback_is_recorded_at_fallback_prices():
    catalog = Catalog.default()
    catalog.set_fallback("gpt-4o-mini")
    acc = Accountant(catalog=catalog)
    model = make_model("ok", model_name=UNKNOWN)
    out = chain_of(model).invoke(
        {"q": "hi"},
        config={"callbacks": [TokenwardCallbackHandler(acc)], "metadata": {"user_id": "u1"}},
    )
    assert out.content == "ok"
    assert model.counter["calls"] == 1
    [ev] = list(acc.ledger.events())
    assert ev.model == UNKNOWN  # the name the call used, priced as the chosen fallback
    assert ev.usage == Usage(input=12, output=5)
    assert ev.cost == MINI_CALL
    assert ev.status == "ok" and ev.user_id == "u1"


async def test_unknown_model_with_explicit_fallback_async():
    catalog = Catalog.default()
    catalog.set_fallback("gpt-4o-mini")
    acc = Accountant(catalog=catalog)
    model = make_model("ok", model_name=UNKNOWN)
    await chain_of(model).ainvoke(
        {"q": "hi"}, config={"callbacks": [AsyncTokenwardCallbackHandler(acc)]}
    )
    assert model.counter["calls"] == 1
    [ev] = list(acc.ledger.events())
    assert ev.model == UNKNOWN and ev.cost == MINI_CALL


def test_registering_the_model_after_the_error_makes_the_next_call_work():
    catalog = Catalog.default()
    acc = Accountant(catalog=catalog)
    model = make_model("ok", model_name=UNKNOWN)
    handler = TokenwardCallbackHandler(acc)
    with pytest.raises(UnknownModelError):
        chain_of(model).invoke({"q": "hi"}, config={"callbacks": [handler]})
    catalog.override(UNKNOWN, input="1", output="2", context_window=128_000)
    chain_of(model).invoke({"q": "hi"}, config={"callbacks": [handler]})
    assert model.counter["calls"] == 1
    [ev] = list(acc.ledger.events())
    assert ev.model == UNKNOWN
    assert ev.cost == Decimal("0.000022")  # 12 x $1/M + 5 x $2/M
