"""TokenwardCallbackHandler / tracking against LangChain's real callback machinery."""

from __future__ import annotations

import asyncio
import logging
import threading
import uuid
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import pytest
from langchain_core.callbacks import UsageMetadataCallbackHandler
from langchain_core.language_models.fake_chat_models import (
    FakeListChatModel,
    GenericFakeChatModel,
)
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage, SystemMessage
from langchain_core.outputs import ChatGenerationChunk
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableLambda, RunnableParallel
from langchain_core.tools import tool
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import Field

from tokenward.accountant import Accountant
from tokenward.errors import BudgetExceededError
from tokenward.langchain import AsyncTokenwardCallbackHandler, TokenwardCallbackHandler, tracking
from tokenward.usage import Usage


# --------------------------------------------------------------------------- fakes
class FakeAccountant:
    """Records the adapter's calls exactly as the Accountant contract receives them, and
    keeps the one call table the handler reads (``run``)."""

    def __init__(self, deny_users: set[str] = frozenset()) -> None:
        self.deny_users = set(deny_users)
        self.preflights: list[dict[str, Any]] = []
        self.settles: list[dict[str, Any]] = []
        self.releases: list[dict[str, Any]] = []
        self.keepalives: list[str] = []
        self.open: set[str] = set()
        self._lock = threading.Lock()

    def preflight(self, run_id, model, **kw):
        if callable(kw.get("messages")):  # a lazy prompt: what a count would see
            kw["messages"] = kw["messages"]()
        if (kw.get("dims") or {}).get("user_id") in self.deny_users:
            raise BudgetExceededError(
                "denied",
                budget="per-user",
                scope_key="user_id=" + kw["dims"]["user_id"],
                unit="usd",
                limit=Decimal("1"),
                spent=Decimal("1"),
                reserved=Decimal(0),
                attempted=Decimal("0.01"),
            )
        with self._lock:
            self.preflights.append({"run_id": run_id, "model": model, **kw})
            self.open.add(run_id)

    def run(self, run_id):
        return run_id if run_id in self.open else None

    @property
    def pending_calls(self) -> int:
        return len(self.open)

    def keepalive(self, run_id):
        self.keepalives.append(run_id)

    def settle(self, run_id, usage, **kw):
        with self._lock:
            self.open.discard(run_id)
            self.settles.append({"run_id": run_id, "usage": usage, **kw})

    def release(self, run_id, **kw):
        with self._lock:
            self.open.discard(run_id)
            self.releases.append({"run_id": run_id, **kw})

    def track(self, **dims):
        from contextlib import nullcontext

        return nullcontext(SimpleNamespace(dims=dims))


class UsageChatModel(GenericFakeChatModel):
    """LangChain's GenericFakeChatModel reporting usage and a model name like a provider."""

    model_name: str = "gpt-4o-mini"
    usage: dict[str, Any] | None = None
    stream_usage: bool = True
    report_model: bool = True
    counter: dict[str, Any] = Field(default_factory=lambda: {"calls": 0})

    def _generate(self, messages, stop=None, run_manager=None, **kwargs):
        self.counter["calls"] += 1
        self.counter["max_tokens"] = kwargs.get("max_tokens")
        result = super()._generate(messages, stop=stop, run_manager=run_manager, **kwargs)
        msg = result.generations[0].message
        if self.usage is not None:
            msg.usage_metadata = dict(self.usage)
        if self.report_model:
            msg.response_metadata = {"model_name": self.model_name}
        return result

    def _stream(self, messages, stop=None, run_manager=None, **kwargs):
        yield from super()._stream(messages, stop=stop, run_manager=run_manager, **kwargs)
        if self.stream_usage and self.usage is not None:
            yield ChatGenerationChunk(
                message=AIMessageChunk(
                    content="",
                    usage_metadata=dict(self.usage),
                    response_metadata={"model_name": self.model_name} if self.report_model else {},
                )
            )

    def bind_tools(self, tools, **kwargs):
        return self.bind(tools=[convert_to_openai_tool(t) for t in tools], **kwargs)


USAGE = {"input_tokens": 12, "output_tokens": 5, "total_tokens": 17}


def make_model(*replies: Any, **kw: Any) -> UsageChatModel:
    return UsageChatModel(messages=iter(list(replies) * 50), usage=dict(USAGE), **kw)


# --------------------------------------------------------------------------- tests
def test_invoke_preflights_then_settles_with_provider_usage():
    acc = FakeAccountant()
    handler = TokenwardCallbackHandler(acc, agent="support")
    prompt = ChatPromptTemplate.from_messages([("system", "Be brief."), ("human", "{q}")])
    chain = prompt | make_model("Paris.")
    out = chain.invoke(
        {"q": "Capital of France?"},
        config={
            "callbacks": [handler],
            "metadata": {"user_id": "u1", "conversation_id": "c9"},
            "tags": ["team:search", "beta"],
        },
    )
    assert out.content == "Paris."
    [pre] = acc.preflights
    assert pre["model"] == "gpt-4o-mini"
    assert pre["kind"] == "chat"
    assert [m.to_openai() for m in pre["messages"]] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Capital of France?"},
    ]
    assert pre["dims"] == {
        "agent": "support",
        "user_id": "u1",
        "conversation_id": "c9",
        "tags": {"team": "search", "beta": "true"},
    }
    assert pre["parent_id"] is not None  # the chain run
    [settle] = acc.settles
    assert settle["run_id"] == pre["run_id"]
    assert settle["usage"] == Usage(input=12, output=5)
    assert settle["model"] == "gpt-4o-mini"
    assert settle["output_text"] is None  # usage reported: nothing to estimate
    # the run's dims, model and start time live in the accountant's call table, not here
    assert "dims" not in settle and "latency_ms" not in settle
    assert handler.pending_runs == 0


def test_denied_preflight_stops_the_call_before_the_model_runs(caplog):
    acc = FakeAccountant(deny_users={"u-broke"})
    model = make_model("never")
    chain = ChatPromptTemplate.from_messages([("human", "{q}")]) | model
    handler = TokenwardCallbackHandler(acc)
    with pytest.raises(BudgetExceededError) as info:
        chain.invoke(
            {"q": "hi"}, config={"callbacks": [handler], "metadata": {"user_id": "u-broke"}}
        )
    assert info.value.budget == "per-user"
    assert model.counter["calls"] == 0
    # LangChain's "Error in ... callback" warning is not emitted for an intended denial
    assert not [r for r in caplog.records if "callback" in r.getMessage()]
    assert acc.settles == [] and acc.releases == []
    assert handler.pending_runs == 0
    # another user is not affected
    chain.invoke({"q": "hi"}, config={"callbacks": [handler], "metadata": {"user_id": "u2"}})
    assert model.counter["calls"] == 1


async def test_async_denied_preflight_stops_the_call():
    acc = FakeAccountant(deny_users={"u-broke"})
    model = make_model("never")
    with pytest.raises(BudgetExceededError):
        await model.ainvoke(
            "hi",
            config={
                "callbacks": [AsyncTokenwardCallbackHandler(acc)],
                "metadata": {"user_id": "u-broke"},
            },
        )
    assert model.counter["calls"] == 0
    # the sync handler inside an async chain denies too
    with pytest.raises(BudgetExceededError):
        await model.ainvoke(
            "hi",
            config={
                "callbacks": [TokenwardCallbackHandler(acc)],
                "metadata": {"user_id": "u-broke"},
            },
        )
    assert model.counter["calls"] == 0


def test_bound_tools_and_max_tokens_reach_preflight():
    @tool
    def get_weather(city: str) -> str:
        """Weather for a city."""
        return "sunny"

    acc = FakeAccountant()
    model = make_model(
        AIMessage(
            content="",
            tool_calls=[{"name": "get_weather", "args": {"city": "Oslo"}, "id": "call_1"}],
        )
    )
    bound = model.bind_tools([get_weather]).bind(max_tokens=256)
    msg = bound.invoke("Weather in Oslo?", config={"callbacks": [TokenwardCallbackHandler(acc)]})
    assert msg.tool_calls[0]["name"] == "get_weather"
    [pre] = acc.preflights
    assert pre["tools"] == [convert_to_openai_tool(get_weather)]
    assert pre["max_output_tokens"] == 256
    [settle] = acc.settles
    assert settle["tool_names"] == ("get_weather",)


def test_model_name_from_invocation_params_and_fallback_when_response_has_none():
    acc = FakeAccountant()
    model = make_model("ok", report_model=False).bind(model="gpt-4.1")
    model.invoke("hi", config={"callbacks": [TokenwardCallbackHandler(acc)]})
    assert acc.preflights[0]["model"] == "gpt-4.1"
    # the response names no model: the accountant keeps the start-time model of the run
    assert acc.settles[0]["model"] is None
    assert acc.settles[0]["usage"] == Usage(input=12, output=5)
    real = Accountant()
    model.invoke("hi", config={"callbacks": [TokenwardCallbackHandler(real)]})
    (event,) = real.ledger.events()
    assert event.model == "gpt-4.1" and event.usage == Usage(input=12, output=5)

    # LangChain's own handler drops this usage entirely
    lc = UsageMetadataCallbackHandler()
    make_model("ok", report_model=False).invoke("hi", config={"callbacks": [lc]})
    assert lc.usage_metadata == {}


def test_response_model_name_wins_over_request():
    acc = FakeAccountant()
    make_model("ok", model_name="gpt-4o-2024-08-06").bind(model="gpt-4o").invoke(
        "hi", config={"callbacks": [TokenwardCallbackHandler(acc)]}
    )
    assert acc.preflights[0]["model"] == "gpt-4o"
    assert acc.settles[0]["model"] == "gpt-4o-2024-08-06"


def test_default_model_when_run_names_none(caplog):
    acc = FakeAccountant()
    model = FakeListChatModel(responses=["a"])
    model.invoke(
        "hi", config={"callbacks": [TokenwardCallbackHandler(acc, default_model="gpt-4o")]}
    )
    assert acc.preflights[0]["model"] == "gpt-4o"
    assert acc.settles[0]["model"] is None  # the run keeps gpt-4o in the call table
    assert acc.settles[0]["usage"] is None  # FakeListChatModel reports no usage
    assert acc.settles[0]["output_text"] == "a"


def test_stream_without_usage_settles_with_text_for_estimation():
    acc = FakeAccountant()
    model = make_model("one two three", stream_usage=False)
    chunks = list(model.stream("count", config={"callbacks": [TokenwardCallbackHandler(acc)]}))
    assert "".join(c.content for c in chunks) == "one two three"
    [settle] = acc.settles
    assert settle["usage"] is None
    assert settle["output_text"] == "one two three"


def test_stream_with_usage_settles_with_reported_usage():
    acc = FakeAccountant()
    model = make_model("one two three")
    list(model.stream("count", config={"callbacks": [TokenwardCallbackHandler(acc)]}))
    [settle] = acc.settles
    assert settle["usage"] == Usage(input=12, output=5)
    assert settle["model"] == "gpt-4o-mini"


async def test_astream_and_ainvoke_with_async_handler():
    acc = FakeAccountant()
    handler = AsyncTokenwardCallbackHandler(acc, user_id="u7")
    model = make_model("a b")
    chunks = [c async for c in model.astream("x", config={"callbacks": [handler]})]
    assert "".join(c.content for c in chunks) == "a b"
    await model.ainvoke("y", config={"callbacks": [handler]})
    assert len(acc.preflights) == 2 and len(acc.settles) == 2
    assert all(s["usage"] == Usage(input=12, output=5) for s in acc.settles)
    assert all(p["dims"] == {"user_id": "u7"} for p in acc.preflights)
    assert handler.pending_runs == 0


async def test_concurrent_async_runs_are_kept_apart():
    acc = FakeAccountant()
    handler = AsyncTokenwardCallbackHandler(acc)
    model = make_model("ok")
    await asyncio.gather(
        *[
            model.ainvoke("q", config={"callbacks": [handler], "metadata": {"user_id": f"u{i}"}})
            for i in range(20)
        ]
    )
    assert len(acc.settles) == 20
    by_run = {p["run_id"]: p["dims"]["user_id"] for p in acc.preflights}
    assert sorted(by_run.values()) == sorted(f"u{i}" for i in range(20))
    assert {s["run_id"] for s in acc.settles} == set(by_run)


def test_batch_with_max_concurrency_and_parallel_branches():
    acc = FakeAccountant()
    handler = TokenwardCallbackHandler(acc)
    model = make_model("ok")
    chain = ChatPromptTemplate.from_messages([("human", "{q}")]) | model
    chain.batch(
        [{"q": str(i)} for i in range(40)], config={"callbacks": [handler], "max_concurrency": 8}
    )
    assert len(acc.preflights) == 40 and len(acc.settles) == 40
    assert sorted(p["messages"][0].content for p in acc.preflights) == sorted(
        str(i) for i in range(40)
    )
    par = RunnableParallel(a=chain, b=chain, c=chain)
    par.invoke({"q": "x"}, config={"callbacks": [handler]})
    assert len(acc.settles) == 43
    assert len({s["run_id"] for s in acc.settles}) == 43
    assert handler.pending_runs == 0


def test_usage_from_every_generation_and_from_llm_output():
    from langchain_core.outputs import ChatGeneration, Generation, LLMResult

    acc = FakeAccountant()
    handler = TokenwardCallbackHandler(acc, default_model="gpt-4o")
    rid = uuid.uuid4()
    handler.on_llm_start({}, ["p1", "p2"], run_id=rid)
    assert acc.preflights[0]["kind"] == "completion"
    assert acc.preflights[0]["messages"] == [
        {"role": "user", "content": "p1"},
        {"role": "user", "content": "p2"},
    ]

    def gen(n_in, n_out):
        return ChatGeneration(
            message=AIMessage(
                "x",
                usage_metadata={
                    "input_tokens": n_in,
                    "output_tokens": n_out,
                    "total_tokens": n_in + n_out,
                },
            )
        )

    handler.on_llm_end(LLMResult(generations=[[gen(10, 1)], [gen(20, 2)]]), run_id=rid)
    assert acc.settles[0]["usage"] == Usage(input=30, output=3)

    # n=2 candidates repeating the same call-level usage are counted once
    rid = uuid.uuid4()
    handler.on_llm_start({}, ["p"], run_id=rid)
    handler.on_llm_end(LLMResult(generations=[[gen(7, 9), gen(7, 9)]]), run_id=rid)
    assert acc.settles[1]["usage"] == Usage(input=7, output=9)

    # plain LLM: usage only in llm_output["token_usage"], model in llm_output
    rid = uuid.uuid4()
    handler.on_llm_start({}, ["p"], run_id=rid)
    handler.on_llm_end(
        LLMResult(
            generations=[[Generation(text="hello")]],
            llm_output={
                "token_usage": {"prompt_tokens": 4, "completion_tokens": 2, "total_tokens": 6},
                "model_name": "gpt-3.5-turbo-instruct",
            },
        ),
        run_id=rid,
    )
    assert acc.settles[2]["usage"] == Usage(input=4, output=2)
    assert acc.settles[2]["model"] == "gpt-3.5-turbo-instruct"


def test_error_releases_with_partial_usage():
    class Boom(UsageChatModel):
        def _generate(self, *a, **k):
            self.counter["calls"] += 1
            raise RuntimeError("provider down")

    acc = FakeAccountant()
    model = Boom(messages=iter([]))
    with pytest.raises(RuntimeError, match="provider down"):
        model.invoke("hi", config={"callbacks": [TokenwardCallbackHandler(acc)]})
    [rel] = acc.releases
    assert rel["run_id"] == acc.preflights[0]["run_id"]
    assert isinstance(rel["error"], RuntimeError)
    assert rel["partial_usage"] is None
    assert acc.settles == []


def test_broken_stream_records_estimated_error_event():
    class BrokenStream(UsageChatModel):
        def _stream(self, messages, stop=None, run_manager=None, **kwargs):
            yield ChatGenerationChunk(message=AIMessageChunk(content="partial "))
            yield ChatGenerationChunk(message=AIMessageChunk(content="answer"))
            raise ConnectionError("stream cut")

    acc = FakeAccountant()
    model = BrokenStream(messages=iter([]))
    with pytest.raises(ConnectionError):
        list(model.stream("hi", config={"callbacks": [TokenwardCallbackHandler(acc)]}))
    [settle] = acc.settles
    assert settle["status"] == "error"
    assert settle["usage"] is None
    assert settle["output_text"] == "partial answer"
    assert acc.releases == []


def test_internal_errors_are_logged_not_raised(caplog):
    class Broken(FakeAccountant):
        def preflight(self, *a, **k):
            raise KeyError("store is on fire")

        def settle(self, *a, **k):
            raise RuntimeError("ledger is on fire")

    model = make_model("still works")
    with caplog.at_level(logging.ERROR, logger="tokenward.integrations.langchain"):
        out = model.invoke("hi", config={"callbacks": [TokenwardCallbackHandler(Broken())]})
    assert out.content == "still works"
    assert model.counter["calls"] == 1
    (record,) = caplog.records  # never opened: its end is not ours to settle
    assert record.getMessage().startswith("internal error in tokenward (chat model start)")
    assert "KeyError" in record.getMessage()


def test_tracking_attaches_to_nested_chains_and_tools():
    @tool
    def double(x: int) -> int:
        """Double x."""
        return 2 * x

    acc = FakeAccountant()
    model = make_model("ok")
    inner = ChatPromptTemplate.from_messages([("human", "{q}")]) | model
    outer = RunnableLambda(lambda q: inner.invoke({"q": q})) | RunnableLambda(lambda m: m.content)
    with tracking(acc, user_id="u1", tags={"env": "test"}):
        assert outer.invoke("deep") == "ok"
        double.invoke({"x": 2})
        with tracking(conversation_id="c2"):  # inherits accountant and dims
            model.invoke("inner block", config={"metadata": {"user_id": "u-meta"}})
    model.invoke("outside")  # not tracked any more
    assert [p["dims"] for p in acc.preflights] == [
        {"user_id": "u1", "tags": {"env": "test"}},
        {"user_id": "u-meta", "conversation_id": "c2", "tags": {"env": "test"}},
    ]
    assert len(acc.settles) == 2


def test_tool_runs_are_counted():
    @tool
    def double(x: int) -> int:
        """Double x."""
        return 2 * x

    handler = TokenwardCallbackHandler(FakeAccountant())
    double.invoke({"x": 2}, config={"callbacks": [handler]})
    double.invoke({"x": 3}, config={"callbacks": [handler]})
    assert handler.tool_runs == {"double": 2}


async def test_tracking_in_async_code():
    acc = FakeAccountant()
    model = make_model("ok")
    with tracking(acc, user_id="ua"):
        await asyncio.gather(model.ainvoke("a"), model.ainvoke("b"))
    assert [p["dims"]["user_id"] for p in acc.preflights] == ["ua", "ua"]
    assert len(acc.settles) == 2


def test_messages_with_images_and_tool_results_are_converted():
    acc = FakeAccountant()
    model = make_model("seen")
    model.invoke(
        [
            SystemMessage("sys"),
            HumanMessage(
                content=[
                    {"type": "text", "text": "what is this?"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                ]
            ),
        ],
        config={"callbacks": [TokenwardCallbackHandler(acc)]},
    )
    msgs = [m.to_openai() for m in acc.preflights[0]["messages"]]
    assert msgs[0] == {"role": "system", "content": "sys"}
    assert msgs[1]["role"] == "user"
    assert msgs[1]["content"][0] == {"type": "text", "text": "what is this?"}
    assert msgs[1]["content"][1]["type"] == "image_url"


README_SNIPPET = """
from tokenward.langchain import tracking

with tracking(user_id="alice") as usage:       # every LangChain call inside is priced
    answer = chain.invoke({"question": "What does tokenward do?"})
print(usage.calls, usage.usage.total, usage.cost)  # 1 17 0.000004800
"""


def test_readme_three_lines_snippet_runs(capsys):
    """The "LangChain in three lines" README snippet, executed as written."""
    from tokenward.accountant import Accountant, set_default_accountant

    acc = Accountant()
    previous = set_default_accountant(acc)
    try:
        chain = ChatPromptTemplate.from_messages([("human", "{question}")]) | make_model("x")
        exec(README_SNIPPET, {"chain": chain})
    finally:
        set_default_accountant(previous)
    assert capsys.readouterr().out == "1 17 0.000004800\n"
    acc.flush()
    [event] = acc.ledger.events()
    assert event.user_id == "alice" and event.model == "gpt-4o-mini"


def test_runs_ending_out_of_order_or_with_an_equal_uuid_settle_under_their_own_ids():
    """The handler converts a run's UUID to text once per started run; runs that interleave,
    and an end callback handed an equal UUID object that is not the one the run started
    with, still settle under their own ids."""
    acc = Accountant()
    handler = TokenwardCallbackHandler(acc, default_model="gpt-4o-mini")
    from langchain_core.outputs import ChatGeneration, LLMResult

    def result() -> LLMResult:
        msg = AIMessage(
            content="ok", usage_metadata={"input_tokens": 3, "output_tokens": 1, "total_tokens": 4}
        )
        return LLMResult(generations=[[ChatGeneration(message=msg)]])

    a, b = uuid.uuid4(), uuid.uuid4()
    for rid in (a, b):
        handler.on_chat_model_start({}, [[HumanMessage("hi")]], run_id=rid)
    handler.on_llm_end(result(), run_id=a)  # not the run started last
    handler.on_llm_end(result(), run_id=uuid.UUID(str(b)))  # equal, not identical
    assert acc.state(str(a)) == "settled"
    assert acc.state(str(b)) == "settled"
    assert acc.pending_calls == 0


def test_an_end_that_cannot_be_read_is_logged_and_the_call_still_recorded(caplog, monkeypatch):
    import tokenward.integrations.langchain._callbacks as callbacks

    def broken(response: Any) -> Any:
        raise RuntimeError("unreadable result")

    monkeypatch.setattr(callbacks, "extract_result", broken)
    acc = Accountant()
    model = make_model("still works")
    handler = TokenwardCallbackHandler(acc, default_model="gpt-4o-mini")
    with caplog.at_level(logging.ERROR, logger="tokenward.integrations.langchain"):
        out = model.invoke("hi", config={"callbacks": [handler]})
    assert out.content == "still works"
    (record,) = caplog.records
    assert record.getMessage().startswith("internal error in tokenward (llm end)")
    (event,) = acc.ledger.events()
    assert event.estimated  # the fallback settled it without the usage
    assert acc.pending_calls == 0
