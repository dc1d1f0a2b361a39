"""trim_history vs langchain_core.messages.trim_messages (issue 9, item 1).

Same 2,000-message mixed conversation (prose, code, tool calls), same budget (8,000
tokens), same per-message counter (tiktoken o200k_base, no cache of its own), same
options (strategy="last", include_system=True, start_on="human"); identical output is
asserted. Cold: every call starts with empty caches (LangChain has none; tokenward's
per-call cache starts empty). Warm: the history grew by one message and tokenward's
counter is wrapped in ``cached_counter`` (content-keyed LRU) that saw the previous
history; LangChain is measured on the same grown history.
"""

# No ``from __future__ import annotations`` here: LangChain recognizes a per-message
# counter only when the annotation *is* the BaseMessage class (see ANCHORS.md).

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

from tokenward.context import cached_counter, trim_history
from tokenward.integrations.langchain._messages import to_core, trim_messages_compat

GOAL_COLD = 50.0
GOAL_WARM_MS = 0.5


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


_PROSE = ["The", "quarterly", "report", "shows", "steady", "growth", "in", "every", "region,", "although", "the", "margins", "in", "the", "northern", "markets", "narrowed", "because", "of", "higher", "shipping", "costs.", "Our", "team", "reviewed", "the", "customer", "feedback", "and", "found", "that", "most", "requests", "concern", "faster", "onboarding,", "clearer", "pricing", "and", "better", "export", "options.", "We", "propose", "to", "prioritize", "the", "onboarding", "flow,", "then", "revisit", "pricing", "with", "the", "finance", "group", "next", "month."]


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


def _time(fn: Any, reps: int) -> tuple[float, Any]:
    times, out = [], None
    for _ in range(reps):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def _measure(msgs: list[BaseMessage], budget: int, reps: int, enc: Any) -> dict[str, Any]:
    kw: dict[str, Any] = dict(
        max_tokens=budget, strategy="last", include_system=True, start_on="human"
    )
    lc_calls, tw_calls = [0], [0]
    lc_counter, tw_counter = make_counter(enc, lc_calls), make_counter(enc, tw_calls)
    lc_cold, expected = _time(lambda: trim_messages(msgs, token_counter=lc_counter, **kw), reps)
    tw_cold, ours = _time(lambda: trim_messages_compat(msgs, token_counter=tw_counter, **kw), reps)
    assert ours == expected, "tokenward and trim_messages disagree"
    calls = (lc_calls[0] // reps, tw_calls[0] // reps)

    # warm: history grew by one message; tokenward's content-keyed cache saw the old history
    grown = msgs + [HumanMessage("One more question about the northern margins, please.", id="new")]
    cached = cached_counter(make_counter(enc, [0]))
    trim_messages_compat(msgs, token_counter=cached, **kw)

    def warm_once() -> list[BaseMessage]:
        return trim_messages_compat(grown, token_counter=cached, **kw)

    warm_once()
    tw_warm, ours_warm = _time(warm_once, max(reps * 3, 3))
    lc_warm, expected_warm = _time(
        lambda: trim_messages(grown, token_counter=lc_counter, **kw), reps
    )
    assert ours_warm == expected_warm
    tokens = [lc_counter(m) for m in msgs]
    return dict(
        lc_cold=lc_cold,
        tw_cold=tw_cold,
        lc_calls=calls[0],
        tw_calls=calls[1],
        lc_warm=lc_warm,
        tw_warm=tw_warm,
        kept=len(ours),
        grown=grown,
        avg=statistics.mean(tokens),
        tools=sum(isinstance(m, ToolMessage) for m in msgs),
    )


def _loop_speed() -> float:
    """Seconds for 1,000,000 iterations of a trivial Python loop (machine load indicator)."""
    t0 = time.perf_counter()
    s = 0
    for i in range(1_000_000):
        s += i
    return time.perf_counter() - t0


def run(quick: bool = False) -> str:
    n, budget = (150, 1_500) if quick else (2_000, 8_000)
    reps = 1 if quick else 5
    enc = _encoding()
    loop = _loop_speed()
    main = _measure(conversation(n, scale=3.0), budget, reps, enc)
    short = _measure(conversation(n, scale=1.0), budget, reps, enc)

    core_line = ""
    try:
        from tokenward.counting import get_counter

        core_msgs = to_core(main["grown"])
        tc = get_counter("gpt-4o")
        if hasattr(tc, "clear_cache"):
            tc.clear_cache()
        t0 = time.perf_counter()
        trim_history(core_msgs, budget, tc)
        core_cold = time.perf_counter() - t0
        core_warm, _ = _time(lambda: trim_history(core_msgs, budget, tc), max(reps * 3, 3))
        core_line = (
            f"| A, `trim_history` on core `Message`s with `get_counter('gpt-4o')` | — | "
            f"{core_cold * 1e3:.2f} ms first call, {core_warm * 1e3:.3f} ms warm | — |\n"
        )
    except Exception as exc:  # pragma: no cover - counting module unavailable
        core_line = f"| core path | not measured ({type(exc).__name__}) | | |\n"

    def rows(label: str, r: dict[str, Any]) -> str:
        return (
            f"| {label}, cold | {r['lc_cold'] * 1e3:.1f} ms, {r['lc_calls']:,} counter calls | "
            f"{r['tw_cold'] * 1e3:.2f} ms, {r['tw_calls']:,} counter calls | **{r['lc_cold'] / r['tw_cold']:.0f}x** |\n"
            f"| {label}, warm (+1 message, `cached_counter`) | {r['lc_warm'] * 1e3:.1f} ms | "
            f"{r['tw_warm'] * 1e3:.3f} ms | {r['lc_warm'] / r['tw_warm']:.0f}x |\n"
        )

    ratio = main["lc_cold"] / main["tw_cold"]
    warm_ms = main["tw_warm"] * 1e3
    return (
        "### Trim history: `trim_history` vs LangChain `trim_messages`\n\n"
        f"{n:,}-message conversations (prose, code, tool calls) trimmed to {budget:,} tokens with "
        "strategy=last, include_system, start_on=human; the same per-message counter for both "
        "(tiktoken o200k_base + 3 per message, no cache of its own), output identical (asserted). "
        f"Workload A (the anchor's shape): {main['avg']:.0f} tokens/message on average, {main['tools']} tool "
        f"results, {main['kept']} messages kept. Workload B (short messages): {short['avg']:.0f} "
        f"tokens/message, {short['kept']} kept. Median of {reps} runs (warm: {max(reps * 3, 3)}). "
        f"Machine load indicator: a 1M-iteration Python loop took {loop * 1e3:.0f} ms in this run.\n\n"
        "| case | LangChain `trim_messages` | tokenward | ratio |\n|---|---:|---:|---:|\n"
        + rows("A", main)
        + rows("B", short)
        + core_line
        + f"\nCold, tokenward counts each kept message once plus the system message and the first one "
        "that does not fit; `trim_messages` counts every message then whole prefixes, so the ratio "
        "follows (calls of LangChain) / (kept + 2) and is lower when many short messages fit.\n\n"
        f"Goal cold >= {GOAL_COLD:.0f}x (workload A): **{'met' if ratio >= GOAL_COLD else 'missed'}** "
        f"({ratio:.0f}x; workload B {short['lc_cold'] / short['tw_cold']:.0f}x). "
        f"Goal warm < {GOAL_WARM_MS} ms: **{'met' if warm_ms < GOAL_WARM_MS else 'missed'}** ({warm_ms:.3f} ms).\n"
    )


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    print(run(quick="--quick" in sys.argv))
