"""trim_history vs langchain_core.messages.trim_messages (issues 9 and 18).

Same 2,000-message mixed conversations (prose, code, tool calls), same budget (8,000
tokens), same options (strategy="last", include_system=True, start_on="human"), the same
counter object on both sides; identical output is asserted for every row. Counters:

* per-message: tiktoken o200k_base + 3 per message (annotated ``BaseMessage``, so
  LangChain sums it per message; no cache of its own);
* approximate: LangChain's ``count_tokens_approximately`` (a list counter);
* ChatOpenAI: ``token_counter=ChatOpenAI("gpt-4o")``, i.e. its
  ``get_num_tokens_from_messages`` (a list counter, tiktoken inside);
* not additive: ``count_tokens_approximately`` with ``extra_tokens_per_message=2.5``
  (rounded once per list, so tokenward cannot decompose it and searches).

Cold: no cache anywhere (LangChain has none; tokenward's per-call cache starts empty).
Warm: the history grew by one message; *both* sides get a ``cached_counter`` (content-keyed
LRU) around the per-message counter that saw the previous history, so the ratio measures
the trimming, not the cache. Timings are medians of interleaved runs (LangChain, then
tokenward, repeated) so load on the shared machine hits both alike.
"""

# No ``from __future__ import annotations`` here: LangChain recognizes a per-message
# counter only when the annotation *is* the BaseMessage class (see ANCHORS.md).

import functools
import json
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
    trim_messages,
)
from langchain_core.messages.utils import count_tokens_approximately

from tokenward.context import cached_counter, trim_history
from tokenward.integrations.langchain._messages import to_core, trim_messages_compat

GOAL_COLD = 50.0
GOAL_WARM_MS = 0.5
GOAL_NEVER_SLOWER = 1.0


def _encoding() -> Any:
    try:
        from tokenward.counting import get_encoding

        return get_encoding("o200k_base")
    except Exception:  # pragma: no cover - counting module missing
        import tiktoken

        return tiktoken.get_encoding("o200k_base")


def _code_snippets() -> list[str]:
    import inspect
    import json as json_mod
    import textwrap

    src = inspect.getsource(json_mod.encoder) + inspect.getsource(textwrap)
    lines = src.splitlines()
    return [
        "\n".join(lines[i : i + n])
        for i, n in zip(range(0, len(lines) - 40, 17), [8, 12, 20, 30] * 200, strict=False)
    ]


_PROSE = [
    "The",
    "quarterly",
    "report",
    "shows",
    "steady",
    "growth",
    "in",
    "every",
    "region,",
    "although",
    "the",
    "margins",
    "in",
    "the",
    "northern",
    "markets",
    "narrowed",
    "because",
    "of",
    "higher",
    "shipping",
    "costs.",
    "Our",
    "team",
    "reviewed",
    "the",
    "customer",
    "feedback",
    "and",
    "found",
    "that",
    "most",
    "requests",
    "concern",
    "faster",
    "onboarding,",
    "clearer",
    "pricing",
    "and",
    "better",
    "export",
    "options.",
    "We",
    "propose",
    "to",
    "prioritize",
    "the",
    "onboarding",
    "flow,",
    "then",
    "revisit",
    "pricing",
    "with",
    "the",
    "finance",
    "group",
    "next",
    "month.",
]


def conversation(n: int, seed: int = 0, scale: float = 1.0) -> list[BaseMessage]:
    """Mixed conversation. ``scale`` multiplies the prose/code lengths."""
    rng = random.Random(seed)
    code = _code_snippets()

    def prose(lo: int, hi: int) -> str:
        k = rng.randint(int(lo * scale), int(hi * scale))
        start = rng.randrange(len(_PROSE))
        return " ".join(_PROSE[(start + i) % len(_PROSE)] for i in range(k))

    def snippet() -> str:
        parts = [rng.choice(code) for _ in range(max(1, round(scale)))]
        return "\n".join(parts)

    msgs: list[BaseMessage] = [
        SystemMessage("You are a careful assistant for an analytics team. " * 4)
    ]
    i = 0
    while len(msgs) < n:
        msgs.append(HumanMessage(prose(8, 60), id=f"h{i}"))
        kind = rng.random()
        if kind < 0.25:
            call_id = f"call_{i}"
            msgs.append(
                AIMessage(
                    "",
                    id=f"a{i}",
                    tool_calls=[
                        {
                            "name": "run_query",
                            "args": {
                                "sql": "select region, sum(revenue) from sales group by 1",
                                "limit": rng.randint(5, 50),
                            },
                            "id": call_id,
                            "type": "tool_call",
                        }
                    ],
                )
            )
            rows = [
                {"region": r, "revenue": rng.randint(1000, 99999), "quarter": q}
                for r in ("north", "south", "east", "west")
                for q in range(1, 1 + max(1, round(scale * 1.5)))
            ]
            msgs.append(ToolMessage(json.dumps(rows), tool_call_id=call_id, id=f"t{i}"))
            msgs.append(AIMessage(prose(20, 80), id=f"b{i}"))
        elif kind < 0.55:
            msgs.append(
                AIMessage("Here is the code:\n```python\n" + snippet() + "\n```", id=f"a{i}")
            )
        else:
            msgs.append(AIMessage(prose(20, 120), id=f"a{i}"))
        i += 1
    return msgs[:n]


def make_counter(enc: Any, calls: list[int]) -> Any:
    encode = enc.encode_ordinary

    def count(message: BaseMessage) -> int:  # annotated: LangChain treats it as per-message
        calls[0] += 1
        content = message.content
        text = (
            content
            if isinstance(content, str)
            else " ".join(b.get("text", "") if isinstance(b, dict) else str(b) for b in content)
        )
        n = 3 + len(encode(text))
        if isinstance(message, AIMessage) and message.tool_calls:
            n += sum(len(encode(json.dumps(tc["args"]))) + 3 for tc in message.tool_calls)
        return n

    return count


def _interleaved(fns: list[Any], reps: int, inner: list[int]) -> list[float]:
    """Median seconds per call of each function, measured in interleaved rounds."""
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(reps):
        for k, fn in enumerate(fns):
            t0 = time.perf_counter()
            for _ in range(inner[k]):
                fn()
            times[k].append((time.perf_counter() - t0) / inner[k])
    return [statistics.median(t) for t in times]


def _chat_openai() -> Any:
    """ChatOpenAI("gpt-4o"); tiktoken gets tokenward's shipped o200k encoding (offline)."""
    try:
        import tiktoken.registry
        from langchain_openai import ChatOpenAI
    except ImportError:  # pragma: no cover - langchain-openai is a test extra
        return None
    from tokenward.counting import get_encoding

    tiktoken.registry.ENCODINGS.setdefault("o200k_base", get_encoding("o200k_base"))
    return ChatOpenAI(model="gpt-4o", api_key="benchmark-no-network")


class _ListCalls:
    """Wraps a list counter, recording the lengths of the lists it is called with (for
    LangChain's side of the call statistics; not used in the timed runs)."""

    def __init__(self, fn: Any) -> None:
        self.fn, self.lengths = fn, []

    def __call__(self, messages: list[BaseMessage]) -> int:
        self.lengths.append(len(messages))
        return int(self.fn(messages))


def _cold(
    msgs: list[BaseMessage], budget: int, counter: Any, reps: int, enc: Any
) -> dict[str, Any]:
    kw: dict[str, Any] = dict(
        max_tokens=budget, strategy="last", include_system=True, start_on="human"
    )
    lc_run = lambda: trim_messages(msgs, token_counter=counter, **kw)  # noqa: E731
    tw_run = lambda: trim_messages_compat(msgs, token_counter=counter, **kw)  # noqa: E731
    expected, ours = lc_run(), tw_run()
    assert ours == expected, "tokenward and trim_messages disagree"
    t0 = time.perf_counter()
    tw_run()
    inner = max(1, min(50, int(0.01 / max(time.perf_counter() - t0, 1e-6))))
    lc, tw = _interleaved([lc_run, tw_run], reps, [1, inner])
    return dict(lc=lc, tw=tw, kept=len(ours))


def _calls(msgs: list[BaseMessage], budget: int, name: str, counter: Any) -> str:
    """Counter work on both sides: calls and messages counted."""
    kw: dict[str, Any] = dict(
        max_tokens=budget, strategy="last", include_system=True, start_on="human"
    )
    if name == "per-message":
        lc_n, tw_n = [0], [0]
        enc = _encoding()
        trim_messages(msgs, token_counter=make_counter(enc, lc_n), **kw)
        trim_messages_compat(msgs, token_counter=make_counter(enc, tw_n), **kw)
        return f"{lc_n[0]:,} / {tw_n[0]:,} messages counted"
    lc_side = _ListCalls(getattr(counter, "get_num_tokens_from_messages", counter))
    trim_messages(msgs, token_counter=lc_side.__call__, **kw)
    # tokenward: the same counter, recognized; count what the decomposition asks
    from tokenward.context._counters import MessageCounts

    seen: list[int] = []
    many, one = MessageCounts.many, MessageCounts.one
    of = MessageCounts.of

    def rec_many(self: Any, items: list[Any]) -> int:
        seen.append(len(items))
        return many(self, items)

    def rec_one(self: Any, i: int) -> int:
        if i not in self._cache:
            seen.append(1)
        return one(self, i)

    def rec_of(self: Any, items: list[Any]) -> int:
        seen.append(len(items))
        return of(self, items)

    MessageCounts.many, MessageCounts.one, MessageCounts.of = rec_many, rec_one, rec_of  # type: ignore[method-assign]
    try:
        trim_messages_compat(msgs, token_counter=counter, **kw)
    finally:
        MessageCounts.many, MessageCounts.one, MessageCounts.of = many, one, of  # type: ignore[method-assign]
    return (
        f"{len(lc_side.lengths)} lists, {sum(lc_side.lengths):,} messages / "
        f"{len(seen)} lists, {sum(seen):,} messages"
    )


def _warm(msgs: list[BaseMessage], budget: int, reps: int, enc: Any) -> dict[str, Any]:
    """History + 1 message; both sides use a cached_counter that saw the old history."""
    kw: dict[str, Any] = dict(
        max_tokens=budget, strategy="last", include_system=True, start_on="human"
    )
    grown = msgs + [HumanMessage("One more question about the northern margins, please.", id="new")]
    lc_cache = cached_counter(make_counter(enc, [0]))
    tw_cache = cached_counter(make_counter(enc, [0]))

    def lc_counter(message: BaseMessage) -> int:  # annotated: LangChain sums it per message
        return lc_cache(message)

    uncached = make_counter(enc, [0])
    trim_messages(msgs, token_counter=lc_counter, **kw)
    trim_messages_compat(msgs, token_counter=tw_cache, **kw)
    lc_run = lambda: trim_messages(grown, token_counter=lc_counter, **kw)  # noqa: E731
    tw_run = lambda: trim_messages_compat(grown, token_counter=tw_cache, **kw)  # noqa: E731
    lc_plain = lambda: trim_messages(grown, token_counter=uncached, **kw)  # noqa: E731
    assert lc_run() == tw_run() == lc_plain()
    lc, tw, plain = _interleaved([lc_run, tw_run, lc_plain], max(reps * 3, 3), [1, 20, 1])
    return dict(lc=lc, tw=tw, plain=plain)


def _loop_speed() -> float:
    """Seconds for 1,000,000 iterations of a trivial Python loop (machine load indicator)."""
    t0 = time.perf_counter()
    s = 0
    for i in range(1_000_000):
        s += i
    return time.perf_counter() - t0


def run(quick: bool = False) -> str:
    n, budget = (300, 2_000) if quick else (2_000, 8_000)
    reps = 1 if quick else 5
    enc = _encoding()
    loop = _loop_speed()
    workloads = {"A": conversation(n, scale=3.0), "B": conversation(n, scale=1.0)}
    counters: dict[str, Any] = {
        "per-message": make_counter(enc, [0]),
        "approximate": count_tokens_approximately,
        "ChatOpenAI": _chat_openai(),
        "not additive": functools.partial(count_tokens_approximately, extra_tokens_per_message=2.5),
    }
    rows, verdicts = [], []
    for name, counter in counters.items():
        if counter is None:
            rows.append(f"| {name} | — | not measured (langchain-openai not installed) | | | |")
            continue
        for wl, msgs in workloads.items():
            # the fast rows (approximate counters, milliseconds) get more rounds: a load
            # burst on the shared machine moves a median of 5 a lot
            rounds = {"ChatOpenAI": max(1, reps - 2), "per-message": reps}.get(name, reps * 4)
            r = _cold(msgs, budget, counter, rounds, enc)
            ratio = r["lc"] / r["tw"]
            goal = GOAL_NEVER_SLOWER if name == "not additive" else GOAL_COLD
            ok = ratio >= goal
            if wl == "A" or name == "not additive":
                verdicts.append(
                    f"{name} (workload {wl}) >= {goal:.0f}x: **{'met' if ok else 'missed'}** ({ratio:.1f}x)"
                )
            rows.append(
                f"| {name} | {wl} | {r['lc'] * 1e3:.1f} ms | {r['tw'] * 1e3:.3f} ms | "
                f"**{ratio:.0f}x** | {_calls(msgs, budget, name, counter)} |"
            )
    warm = _warm(workloads["A"], budget, reps, enc)
    warm_ms = warm["tw"] * 1e3

    core_line = ""
    try:
        from tokenward.counting import get_counter

        core_msgs = to_core(workloads["A"])
        tc = get_counter("gpt-4o")
        if hasattr(tc, "clear_cache"):
            tc.clear_cache()
        t0 = time.perf_counter()
        trim_history(core_msgs, budget, tc)
        core_cold = time.perf_counter() - t0
        (core_warm,) = _interleaved(
            [lambda: trim_history(core_msgs, budget, tc)], max(reps * 3, 3), [20]
        )
        core_line = (
            f"\n`trim_history` on core `Message`s (workload A) with `get_counter('gpt-4o')` "
            f"(its own content-keyed cache): {core_cold * 1e3:.2f} ms first call, "
            f"{core_warm * 1e3:.3f} ms warm.\n"
        )
    except Exception as exc:  # pragma: no cover - counting module unavailable
        core_line = f"\ncore path not measured ({type(exc).__name__})\n"

    a = workloads["A"]
    avg = statistics.mean(make_counter(enc, [0])(m) for m in a)
    return (
        "### Trim history: `trim_history` vs LangChain `trim_messages`\n\n"
        f"{n:,}-message conversations (prose, code, tool calls) trimmed to {budget:,} tokens with "
        "strategy=last, include_system, start_on=human, through `trim_messages_compat` (the "
        "`trim_messages` signature); the same counter object on both sides, output identical "
        f"(asserted). Workload A: {avg:.0f} tokens/message (o200k); workload B: short messages. "
        f"Medians of {reps} interleaved runs. Machine load indicator: a 1M-iteration Python loop "
        f"took {loop * 1e3:.0f} ms in this run.\n\n"
        "Cold (no cache on either side):\n\n"
        "| counter | workload | LangChain `trim_messages` | tokenward | ratio | counter work (LangChain / tokenward) |\n"
        "|---|---|---:|---:|---:|---|\n"
        + "\n".join(rows)
        + "\n\nPer-message counters are counted message by message from the end (the kept "
        "messages, the system message and the first that does not fit). Additive list counters "
        "(`count_tokens_approximately`, ChatOpenAI's and the default `get_num_tokens_from_messages`, "
        "`per_list(fn, additive=True)`) are decomposed: each message counted once, in a few "
        "batched calls. Other list counters are searched from the short side (interpolating on "
        "the counts seen): lists about as long as the answer, where `trim_messages` counts the "
        "whole history and then halves.\n\n"
        "Warm (history grew by one message, workload A, the same `cached_counter` on both sides):\n\n"
        "| LangChain `trim_messages`, cached counter | tokenward, cached counter | ratio | "
        "`trim_messages` uncached (previous anchor) |\n|---:|---:|---:|---:|\n"
        f"| {warm['lc'] * 1e3:.2f} ms | {warm['tw'] * 1e3:.3f} ms | **{warm['lc'] / warm['tw']:.1f}x** | "
        f"{warm['plain'] * 1e3:.1f} ms ({warm['plain'] / warm['tw']:.0f}x) |\n"
        + core_line
        + "\nGoals: cold "
        + "; ".join(verdicts)
        + f". Warm < {GOAL_WARM_MS} ms: **{'met' if warm_ms < GOAL_WARM_MS else 'missed'}** "
        f"({warm_ms:.3f} ms; {warm['lc'] / warm['tw']:.1f}x an equally cached `trim_messages`).\n"
    )


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    print(run(quick="--quick" in sys.argv))
