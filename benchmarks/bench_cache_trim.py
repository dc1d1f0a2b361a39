"""Trimming that keeps the prompt cache warm: a simulated 200-turn conversation (issue 19, item 5).

One seeded conversation (a 1,500-token system prompt; each turn a user message, in a
third of the turns a tool call with its result, and a reply) is sent turn by turn under
four history policies, and every request is priced with the provider's cache rules:

* no trimming: the whole history every turn;
* last 20 messages (tool groups kept whole, starts on a user turn);
* trim to 16,000 tokens every turn (``trim_history``: the cut moves with every turn);
* cache-aware: ``trim_history(..., cache_aware=CacheAwareTrim(low_water=0.6))``: the cut
  holds until the history passes 16,000 tokens, then goes back to 9,600.

Cache model (turns are assumed to come within the cache lifetime, 5 minutes):

* Anthropic (claude-sonnet-4, tokenward's calibrated estimate for counting): a
  ``cache_control`` breakpoint after the system prompt and on the last message (what
  ``CacheAwareTrim.breakpoints`` says; the same two for the other policies); a request
  reads the longest prefix that an earlier request wrote at one of its breakpoints and
  that ends at a breakpoint of this request or up to 20 blocks before one, if it has at
  least 1,024 tokens; everything from there to the last breakpoint is written (1.25x),
  the rest is plain input.
* OpenAI (gpt-4o, exact tiktoken counts): automatic; the longest prefix shared with the
  previous request is read from cache if it has at least 1,024 tokens, in 128-token steps.

Prices come from ``tokenward.cost`` with the catalog's prices for both models (cache read,
cache write 5 min, input, output). Output tokens are the same under every policy.
"""

from __future__ import annotations

import random
import sys
import time
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from tokenward import Usage, cost
from tokenward.context import CACHE_RULES, CacheAwareTrim, per_message, trim_history
from tokenward.counting import get_counter
from tokenward.messages import Message, ToolCall

TURNS = 200
HIGH = 16_000
LOW = 0.6
LAST_N = 20
MODELS = {"claude-sonnet-4": "anthropic", "gpt-4o": "openai"}

_PROSE = (
    "the quarterly report shows steady growth in every region although margins in the "
    "northern markets narrowed because of higher shipping costs our team reviewed customer "
    "feedback and found that most requests concern faster onboarding clearer pricing and "
    "better export options we propose to prioritize the onboarding flow then revisit pricing "
    "with the finance group next month"
)
_WORDS = _PROSE.split()


def conversation(seed: int = 0) -> tuple[Message, list[tuple[list[Message], Message]]]:
    """The system prompt and, per turn, (messages the user side adds, the reply)."""
    rng = random.Random(seed)

    def prose(lo: int, hi: int) -> str:
        return " ".join(rng.choice(_WORDS) for _ in range(rng.randint(lo, hi)))

    system = Message("system", "You are the analytics assistant. " + prose(1100, 1100))
    turns = []
    for k in range(TURNS):
        asked = [Message("user", prose(15, 120), id=f"u{k}")]
        if rng.random() < 1 / 3:
            call = ToolCall(f"call{k}", "run_query", '{"sql": "select region, revenue"}')
            asked.append(Message("assistant", "", tool_calls=(call,), id=f"t{k}"))
            asked.append(Message("tool", prose(150, 900), tool_call_id=call.id, id=f"r{k}"))
        turns.append((asked, Message("assistant", prose(40, 350), id=f"a{k}")))
    return system, turns


@dataclass
class Totals:
    usage: Usage = field(default_factory=Usage)
    usd: Decimal = Decimal(0)  # each request priced on its own (long-context tiers apply per call)
    cuts: int = 0
    prompt_tokens: int = 0
    requests: int = 0
    seconds: float = 0.0


def _prefix_tokens(prompt: list[Message], counter: Any) -> list[int]:
    out, acc = [], 0
    for m in prompt:
        acc += counter.count_message(m)
        out.append(acc)
    return out


class _Cache:
    """Cache entries written so far, keyed by the identity of the prefix."""

    def __init__(self, provider: str) -> None:
        self.rules = CACHE_RULES[provider]
        self.written: set[tuple[int, ...]] = set()
        self.previous: list[Message] = []

    def request(
        self, prompt: list[Message], tokens: int, breakpoints: tuple[int, ...], counter: Any
    ) -> Usage:
        prefix = _prefix_tokens(prompt, counter)
        if self.rules.max_breakpoints == 0:  # OpenAI: automatic, against the previous request
            same = 0
            for a, b in zip(self.previous, prompt):
                if a is not b:
                    break
                same += 1
            self.previous = prompt
            read = min(self.rules.cacheable(prefix[same - 1]) if same else 0, tokens)
            return Usage(input=tokens, cache_read=read)
        ids = tuple(id(m) for m in prompt)
        read_at = -1
        for b in breakpoints:  # the longest earlier entry at or up to 20 blocks before one
            for pos in range(b, max(-1, b - 1 - self.rules.lookback), -1):
                if pos > read_at and ids[: pos + 1] in self.written:
                    read_at = pos
                    break
        read = prefix[read_at] if read_at >= 0 else 0
        last = breakpoints[-1] if breakpoints else -1
        write = 0
        for b in breakpoints:
            if prefix[b] >= self.rules.min_tokens:
                self.written.add(ids[: b + 1])
        if last > read_at and prefix[last] >= self.rules.min_tokens:
            write = prefix[last] - read
        return Usage(input=tokens, cache_read=read, cache_write_5m=write)


def _policies() -> dict[str, Any]:
    def none(history: list[Message], counter: Any, state: Any) -> list[Message]:
        return history

    def last_n(history: list[Message], counter: Any, state: Any) -> list[Message]:
        return trim_history(history, LAST_N + 1, per_message(lambda m: 1))

    def plain(history: list[Message], counter: Any, state: Any) -> list[Message]:
        return trim_history(history, HIGH, counter)

    def aware(history: list[Message], counter: Any, state: Any) -> list[Message]:
        return trim_history(history, HIGH, counter, cache_aware=state)

    return {
        "no trimming": none,
        f"last {LAST_N} messages": last_n,
        f"trim to {HIGH:,} tokens every turn": plain,
        f"cache-aware ({HIGH:,} high, {int(HIGH * LOW):,} low)": aware,
    }


def simulate(model: str, provider: str, turns: int, seed: int = 0) -> dict[str, Totals]:
    counter = get_counter(model)
    system, convo = conversation(seed)
    results: dict[str, Totals] = {}
    for name, policy in _policies().items():
        state = CacheAwareTrim(low_water=LOW, rules=provider)
        cache = _Cache(provider)
        totals = Totals()
        history = [system]
        first: int | None = None
        for asked, reply in convo[:turns]:
            history += asked
            t0 = time.perf_counter()
            prompt = policy(history, counter, state)
            totals.seconds += time.perf_counter() - t0
            window = next((id(m) for m in prompt if m.role != "system"), None)
            totals.cuts += first is not None and window != first
            first = window
            tokens = counter.count_messages(prompt)
            breakpoints = state.breakpoints if "cache-aware" in name else (0, len(prompt) - 1)
            usage = cache.request(prompt, tokens, breakpoints, counter)
            out = counter.count_message(reply) - 3
            call = Usage(
                input=usage.input,
                cache_read=usage.cache_read,
                cache_write_5m=usage.cache_write_5m,
                output=out,
            )
            totals.usage = totals.usage + call
            totals.usd += cost(call, model).total
            totals.prompt_tokens += tokens
            totals.requests += 1
            history.append(reply)
        results[name] = totals
    return results


def run(quick: bool = False) -> str:
    turns = 60 if quick else TURNS
    aware = f"cache-aware ({HIGH:,} high, {int(HIGH * LOW):,} low)"
    plain = f"trim to {HIGH:,} tokens every turn"
    sections, summary, verdicts = [], [], []
    for model, provider in MODELS.items():
        results = simulate(model, provider, turns)
        base = results["no trimming"].usd
        rows = []
        for name, t in results.items():
            hit = t.usage.cache_read / t.usage.input if t.usage.input else 0.0
            rows.append(
                f"| {name} | ${t.usd:.2f} | {t.usd / base:.0%} | {hit:.1%} | "
                f"{t.prompt_tokens / t.requests:,.0f} | {t.usage.cache_write_5m:,} | {t.cuts} | "
                f"{t.seconds / t.requests * 1e3:.2f} ms |"
            )
        sections.append(
            f"**{model}** ({provider} caching; per million tokens: input ${_per_m(model, 'input')}, "
            f"cache read ${_per_m(model, 'cache_read')}, "
            + (
                f"cache write ${_per_m(model, 'cache_write_5m')}, "
                if provider == "anthropic"
                else "no cache-write surcharge, "
            )
            + f"output ${_per_m(model, 'output')}):\n\n"
            "| history policy | cost of the conversation | vs no trimming | cache hit rate "
            "(read / input tokens) | mean prompt tokens | tokens written to cache | times the "
            "oldest kept message changed | trimming time per turn |\n"
            "|---|---:|---:|---:|---:|---:|---:|---:|\n" + "\n".join(rows)
        )
        c_aware, c_plain, c_none = results[aware].usd, results[plain].usd, base
        summary.append(
            f"{model}: cache-aware costs {c_aware / c_plain:.0%} of trimming every turn and "
            f"{c_aware / c_none:.0%} of no trimming"
        )
        verdicts.append(c_aware < c_plain and c_aware < c_none)
    return (
        "### Cache-aware trimming: a simulated conversation priced with cache reads and writes\n\n"
        f"{turns} turns (a 1,500-token system prompt; user messages of 15-120 words; a tool call "
        "with a 150-900-word result in a third of the turns; replies of 40-350 words), each "
        "request priced on its own with `tokenward.cost` from the catalog; see "
        "`bench_cache_trim.py` for the cache model (Anthropic breakpoints after the system prompt "
        "and on the last message, 20-block lookback, 1,024-token minimum; OpenAI automatic prefix "
        "caching in 128-token steps from 1,024). Turns are assumed to come within the 5-minute "
        "cache lifetime.\n\n"
        + "\n\n".join(sections)
        + "\n\n"
        + "; ".join(summary)
        + ". Goal (cache-aware cheaper than both trimming every turn and no trimming, on both "
        f"providers): **{'met' if all(verdicts) else 'missed'}**.\n"
    )


def _per_m(model: str, kind: str) -> str:
    """Price per million tokens of one kind (from a small call: no long-context tier)."""
    n = 10_000
    usage = Usage(**({"input": n, kind: n} if kind.startswith("cache") else {kind: n}))
    value = getattr(cost(usage, model), kind) * (1_000_000 // n)
    return f"{Decimal(value).normalize():f}"


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    print(run(quick="--quick" in sys.argv))
