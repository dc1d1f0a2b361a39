"""track(): live totals per block (context manager and decorator), dims, isolation; concurrency."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from decimal import Decimal

import pytest

from tokenward.accountant import Accountant, Tracker, current_dims, track
from tokenward.catalog import Catalog, ModelInfo, Prices
from tokenward.ledger import MemoryLedger
from tokenward.usage import Usage

M = Decimal(1_000_000)
ACME = ModelInfo(
    name="acme-chat",
    provider="openai",
    context_window=128_000,
    max_output=4_000,
    prices=Prices(input=Decimal("1"), output=Decimal("2")),
    tokenizer="o200k_base",
    as_of=date(2026, 11, 1),
    source="https://example.test",
)


@pytest.fixture
def acct() -> Accountant:
    return Accountant(catalog=Catalog([ACME]), ledger=MemoryLedger())


def call(acct: Accountant, run_id: str, inp: int, out: int, **dims) -> None:  # type: ignore[no-untyped-def]
    acct.preflight(run_id, "acme-chat", prompt_tokens=inp, dims=dims or None)
    acct.settle(run_id, Usage(input=inp, output=out))


def test_track_totals_for_a_block(acct: Accountant):
    call(acct, "before", 1, 1)
    with track(user_id="u1", tags={"team": "a"}) as t:
        assert current_dims() == {
            "user_id": "u1",
            "conversation_id": None,
            "session_id": None,
            "agent": None,
            "tags": {"team": "a"},
        }
        call(acct, "r1", 1000, 100)
        call(acct, "r2", 2000, 200)
        acct.preflight("r3", "acme-chat", prompt_tokens=50)
        acct.release("r3", error="boom")
        acct.preflight("r4", "acme-chat", prompt_tokens=10)
        acct.settle("r4", None, output_text="hi")
    call(acct, "after", 1, 1)
    assert isinstance(t, Tracker)
    assert t.calls == 4 and t.errors == 1
    assert t.usage.input == 3010 and t.usage.output == 300 + t.events[-1].usage.output
    assert t.estimated is True
    assert t.cost == sum((e.cost for e in t.events), Decimal(0))
    assert t.cost == (Decimal(3010) + 2 * t.usage.output) / M
    assert [e.id for e in t.events] == ["r1", "r2", "r3", "r4"]
    assert all(e.user_id == "u1" and dict(e.tags) == {"team": "a"} for e in t.events)
    assert current_dims()["user_id"] is None
    summary = t.summary()
    assert summary["calls"] == 4 and summary["cost"] == str(t.cost)


def test_nested_tracks_merge_dims_and_both_count(acct: Accountant):
    with track(user_id="u1", agent="outer") as outer:
        call(acct, "a", 10, 1)
        with track(agent="inner", conversation_id="c1") as inner:
            call(acct, "b", 20, 2)
            call(acct, "c", 30, 3, agent="explicit")  # explicit dims win over track dims
        call(acct, "d", 40, 4)
    assert (outer.calls, inner.calls) == (4, 2)
    assert outer.usage.input == 100 and inner.usage.input == 50
    events = {e.id: e for e in acct.ledger.events()}
    assert (events["a"].agent, events["a"].conversation_id) == ("outer", None)
    assert (events["b"].user_id, events["b"].agent, events["b"].conversation_id) == (
        "u1",
        "inner",
        "c1",
    )
    assert events["c"].agent == "explicit"
    assert events["d"].agent == "outer"


def test_accountant_track_counts_only_its_own_events(acct: Accountant):
    other = Accountant(catalog=Catalog([ACME]), ledger=MemoryLedger())
    with acct.track() as mine, track() as everything:
        call(acct, "a", 10, 1)
        call(other, "b", 10, 1)
    assert mine.calls == 1 and everything.calls == 2


def test_settle_outside_the_block_still_counts_for_the_block_that_started_it(acct: Accountant):
    with track() as t:
        acct.preflight("r", "acme-chat", prompt_tokens=5)
    acct.settle("r", Usage(input=5, output=5))
    assert t.calls == 1


def test_decorator_sync_gives_each_call_a_fresh_tracker(acct: Accountant):
    @track(agent="worker")
    def work(n: int) -> str:
        call(acct, f"w{n}", 100 * n, 1)
        return current_dims()["agent"]

    assert work(1) == "worker"
    assert work.tracker.last.calls == 1  # type: ignore[attr-defined]
    assert work(2) == "worker"
    last = work.tracker.last  # type: ignore[attr-defined]
    assert last.calls == 1 and last.usage.input == 200
    assert work.__name__ == "work"


async def test_decorator_async_and_concurrent_tasks_do_not_bleed(acct: Accountant):
    trackers: dict[str, Tracker] = {}

    async def session(user: str, n: int) -> None:
        with track(user_id=user) as t:
            trackers[user] = t
            for i in range(n):
                acct.preflight(f"{user}-{i}", "acme-chat", prompt_tokens=10)
                await asyncio.sleep(0)  # interleave with the other tasks
                acct.settle(f"{user}-{i}", Usage(input=10, output=1))

    await asyncio.gather(session("a", 3), session("b", 5), session("c", 7))
    assert {u: t.calls for u, t in trackers.items()} == {"a": 3, "b": 5, "c": 7}
    for user, t in trackers.items():
        assert {e.user_id for e in t.events} == {user}

    @track(agent="async-agent")
    async def agent() -> None:
        await asyncio.sleep(0)
        call(acct, "z", 1, 1)

    await agent()
    assert agent.tracker.last.calls == 1  # type: ignore[attr-defined]
    events = {e.id: e for e in acct.ledger.events()}
    assert events["z"].agent == "async-agent"


async def test_async_with(acct: Accountant):
    async with track(session_id="s1") as t:
        call(acct, "r", 3, 3)
    assert t.calls == 1 and t.events[0].session_id == "s1"


def test_threads_record_each_run_exactly_once(acct: Accountant):
    n_threads, per_thread = 8, 150
    barrier = threading.Barrier(n_threads)

    def worker(k: int) -> int:
        barrier.wait()
        settled = 0
        for i in range(per_thread):
            rid = f"t{k}-{i}"
            acct.preflight(rid, "acme-chat", prompt_tokens=10, dims={"user_id": f"u{k}"})
            if acct.settle(rid, Usage(input=10, output=i)) is not None:
                settled += 1
            # a second settle of a neighbour's run (shared ids): only one wins
            shared = f"shared-{i}"
            if acct.settle(shared, Usage(input=1, output=1), model="acme-chat") is not None:
                settled += 1
        return settled

    with ThreadPoolExecutor(n_threads) as pool:
        results = list(pool.map(worker, range(n_threads)))
    assert sum(results) == n_threads * per_thread + per_thread
    assert acct.ledger.count() == n_threads * per_thread + per_thread
    assert acct.pending("t0-0") is None


def test_bad_tags_rejected_early():
    with pytest.raises(ValueError):
        track(tags="not-a-mapping")


def test_generator_functions_are_refused_with_a_hint():
    with pytest.raises(TypeError, match="with track"):

        @track(agent="x")
        def gen():  # type: ignore[no-untyped-def]
            yield 1


def test_concurrent_preflights_never_overspend_a_hard_budget():
    from tokenward.budgets import Budget, Budgets
    from tokenward.errors import BudgetExceededError

    # each call reserves 1,000 input * $1 + 1,000 output * $2 per 1M = $0.003: 5 fit in $0.015
    budgets = Budgets(Budget("team", limit_usd="0.015", window="day"), alert_sinks=())
    acct = Accountant(catalog=Catalog([ACME]), ledger=MemoryLedger(), budgets=budgets)
    n = 16
    barrier = threading.Barrier(n)

    def attempt(k: int) -> bool:
        barrier.wait()
        try:
            acct.preflight(f"c{k}", "acme-chat", prompt_tokens=1000, max_output_tokens=1000)
        except BudgetExceededError:
            return False
        return True

    with ThreadPoolExecutor(n) as pool:
        granted = [k for k, ok in enumerate(pool.map(attempt, range(n))) if ok]
    assert len(granted) == 5
    # the granted calls settle cheaper than reserved: room for more appears
    for k in granted:
        acct.settle(f"c{k}", Usage(input=1000, output=0))  # $0.001 each
    assert budgets.status("team").spent == Decimal("0.005")
    acct.preflight("after", "acme-chat", prompt_tokens=1000, max_output_tokens=1000)


def test_calls_with_the_same_dims_share_one_resolved_form(acct: Accountant):
    """Dimensions are cleaned and bounded once per distinct content, not per call."""
    from tokenward.accountant._tracking import resolve_dims

    a = resolve_dims({"user_id": "u1", "tags": {"team": "search"}})
    assert resolve_dims({"user_id": "u1", "tags": {"team": "search"}}) is a
    assert resolve_dims({"user_id": "u2", "tags": {"team": "search"}}) is not a
    # values that hash alike but read differently are never confused
    assert resolve_dims({"user_id": 1}).user_id == "1"
    assert resolve_dims({"user_id": True}).user_id == "True"
    with track(user_id="outer"):
        inside = resolve_dims({"conversation_id": "c"})
        assert (inside.user_id, inside.conversation_id) == ("outer", "c")
    outside = resolve_dims({"conversation_id": "c"})
    assert (outside.user_id, outside.conversation_id) == (None, "c")
    acct.preflight("r1", "acme-chat", prompt_tokens=3, dims={"user_id": "u1", "x": "y"})
    acct.preflight("r2", "acme-chat", prompt_tokens=3, dims={"user_id": "u1", "x": "y"})
    e1, e2 = acct.settle("r1", Usage(3, 1)), acct.settle("r2", Usage(3, 1))
    assert e1 is not None and e2 is not None
    assert dict(e1.tags) == dict(e2.tags) == {"x": "y"}
    assert e1.tags is e2.tags  # the event keeps the resolved tags as they are
