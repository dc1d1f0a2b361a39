"""Issue 14 item 5: a cancelled call is ``cancelled`` and gives its reservation back at once;
a call that outlives its reservation TTL keeps it while it streams.

Before the fix a cancelled task or an early-closed stream was recorded as ``error`` (and the
reservation of a cancelled call without output waited for its TTL); a stream longer than
the reservation TTL lost its hold half-way, so concurrent calls could overspend.
"""

from __future__ import annotations

import asyncio
import itertools
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from langchain_core.embeddings import DeterministicFakeEmbedding
from langchain_core.messages import AIMessageChunk
from langchain_core.outputs import ChatGenerationChunk
from langchain_core.prompts import ChatPromptTemplate
from llama_index.core.base.llms.types import LLMMetadata
from llama_index.core.llms import MockLLM

from tests.test_langchain_callbacks import UsageChatModel, make_model
from tokenward.accountant import Accountant
from tokenward.budgets import Budget, Budgets
from tokenward.langchain import TokenwardCallbackHandler, TrackedEmbeddings

T0 = datetime(2026, 12, 4, 12, 0, tzinfo=timezone.utc)


def budgets(ttl: timedelta = timedelta(minutes=10)) -> Budgets:
    return Budgets(
        Budget("per-user", limit_usd="1", scope="user_id"), reservation_ttl=ttl, alert_sinks=()
    )


def reserved(b: Budgets, now: datetime | None = None) -> Decimal:
    return b.status("per-user", user_id="u1", now=now).reserved  # type: ignore[return-value]


class SlowModel(UsageChatModel):
    """Answers after a while (the task is cancelled meanwhile)."""

    async def _agenerate(self, messages: Any, stop: Any = None, run_manager: Any = None, **kw: Any):
        await asyncio.sleep(30)
        raise AssertionError("never reached")


async def test_cancelled_task_is_recorded_cancelled_and_releases_at_once():
    b = budgets()
    acc = Accountant(budgets=b)
    model = SlowModel(messages=iter(["x"]))
    chain = ChatPromptTemplate.from_messages([("human", "{q}")]) | model
    config = {"callbacks": [TokenwardCallbackHandler(acc, user_id="u1")]}
    task = asyncio.ensure_future(chain.ainvoke({"q": "hi"}, config=config))
    for _ in range(100):
        await asyncio.sleep(0.01)
        if acc.pending_calls:
            break
    assert reserved(b) > 0
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert reserved(b) == 0  # given back now, not after the 10-minute TTL
    [event] = list(acc.ledger.events())
    assert event.status == "cancelled" and event.error == "CancelledError"


def test_stream_closed_early_is_cancelled_and_bills_what_was_streamed():
    b = budgets()
    acc = Accountant(budgets=b)
    model = make_model("one two three four five six")
    model.usage = None  # no usage in the stream: the streamed text is counted
    chain = ChatPromptTemplate.from_messages([("human", "{q}")]) | model
    stream = chain.stream(
        {"q": "hi"}, config={"callbacks": [TokenwardCallbackHandler(acc, user_id="u1")]}
    )
    next(stream)
    next(stream)
    stream.close()  # the consumer stops reading
    assert reserved(b) == 0
    [event] = list(acc.ledger.events())
    assert event.status == "cancelled"
    assert event.estimated and event.usage.output > 0
    assert b.status("per-user", user_id="u1").spent == event.cost


def test_llama_index_stream_closed_early_is_cancelled():
    from tokenward.llama_index import BudgetedLLM

    class Named(MockLLM):
        @property
        def metadata(self) -> LLMMetadata:
            return LLMMetadata(num_output=self.max_tokens or -1, model_name="gpt-4o-mini")

    b = budgets()
    acc = Accountant(budgets=b)
    stream = BudgetedLLM(Named(max_tokens=20), acc, user_id="u1").stream_complete("hello world")
    next(stream)
    stream.close()
    assert reserved(b) == 0
    [event] = list(acc.ledger.events())
    assert event.status == "cancelled"


async def test_cancelled_embedding_is_cancelled():
    class Slow(DeterministicFakeEmbedding):
        async def aembed_query(self, text: str) -> list[float]:
            await asyncio.sleep(30)
            return []

    b = budgets()
    acc = Accountant(budgets=b)
    emb = TrackedEmbeddings(Slow(size=4), acc, model="text-embedding-3-small", user_id="u1")
    task = asyncio.ensure_future(emb.aembed_query("hello"))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert reserved(b) == 0
    assert [e.status for e in acc.ledger.events()] == ["cancelled"]


def test_a_stream_longer_than_the_reservation_ttl_keeps_its_reservation():
    clock = itertools.count()
    now = [T0]

    def tick() -> datetime:
        return now[0]

    b = budgets(ttl=timedelta(seconds=10))
    acc = Accountant(budgets=b, clock=tick)
    held: list[Decimal] = []

    class LongStream(UsageChatModel):
        def _stream(self, messages: Any, stop: Any = None, run_manager: Any = None, **kw: Any):
            for i in range(12):  # 12 chunks, 4 s apart: 48 s, well past the 10 s TTL
                now[0] = T0 + timedelta(seconds=4 * next(clock))
                held.append(reserved(b, now[0]))
                chunk = ChatGenerationChunk(message=AIMessageChunk(content=f"w{i} "))
                if run_manager:
                    run_manager.on_llm_new_token(chunk.text, chunk=chunk)
                yield chunk

    model = LongStream(messages=iter(["unused"]), usage=None)
    chain = ChatPromptTemplate.from_messages([("human", "{q}")]) | model
    config = {"callbacks": [TokenwardCallbackHandler(acc, user_id="u1")]}
    assert "".join(c.content for c in chain.stream({"q": "hi"}, config=config))
    assert all(h > 0 for h in held), held  # never lapsed while streaming
    assert reserved(b, now[0]) == 0  # settled at the end
    [event] = list(acc.ledger.events())
    assert event.status == "ok" and event.usage.output > 0
