"""``tokenward demo``: a realistic, offline, deterministic session through the Accountant.

Several simulated users hold conversations with different agents on OpenAI, Anthropic and
Gemini models over the last week. Every call goes through the real lifecycle
(``preflight`` -> exact count, estimate, budget reservation; ``settle`` / ``release``)
into a SQLite ledger, and exercises what production traffic does: prompt-cache writes and
reads, reasoning tokens, a tool call, a stream without usage (estimated), embeddings, a
provider error, a cancelled stream with partial usage, and a trial user stopped by a
hard budget before the provider is called. Nothing touches the network; the same seed
gives the same events (timestamps are relative to now so ``--since 7d`` shows them).
"""

from __future__ import annotations

import os
import random
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from tokenward.usage import Usage

if TYPE_CHECKING:
    from tokenward.report._tables import ReportData

__all__ = ["DemoResult", "run_demo"]


@dataclass
class DemoResult:
    """What the demo did: where the ledger is, what was denied, and the report data."""

    db_path: str
    calls: int
    users: int
    conversations: int
    models: list[str]
    denied: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    tracked: dict[str, Any] = field(default_factory=dict)
    report: ReportData | None = None


@dataclass(frozen=True)
class _Persona:
    name: str
    agent: str
    model: str
    team: str
    plan: str = "pro"
    cache: str | None = None  # "anthropic" (explicit cache_control) | "openai" (automatic)
    reasoning: bool = False
    tool: str | None = None
    stream_without_usage: bool = False
    rag: bool = False
    trial: bool = False


_PERSONAS = (
    _Persona("alice", "support-bot", "gpt-5.4-mini", "support", cache="openai"),
    _Persona(
        "bob",
        "research-agent",
        "claude-sonnet-4-6",
        "research",
        cache="anthropic",
        tool="web_search",
    ),
    _Persona("carol", "code-assistant", "gpt-5.4", "platform", reasoning=True, cache="openai"),
    _Persona("dave", "summarizer", "gemini-3.5-flash", "content", stream_without_usage=True),
    _Persona("erin", "rag-qa", "gemini-3.1-pro-preview", "research", rag=True),
    _Persona("frank", "support-bot", "gpt-5.4", "support", plan="trial", trial=True),
)
_EMBEDDING_MODEL = "text-embedding-3-small"

_SYSTEM = {
    "support-bot": "You are Acme Cloud's support assistant. Answer briefly, cite the help-center "
    "article when you can, and never promise refunds.",
    "research-agent": "You are a careful research assistant. Use the web_search tool for facts "
    "newer than your training data and cite sources.",
    "code-assistant": "You are a senior Python engineer. Think step by step, then answer with "
    "tested code and a short explanation.",
    "summarizer": "Summarize the user's document in five bullet points for an executive.",
    "rag-qa": "Answer only from the provided context. Say 'not in the documents' otherwise.",
}
_MANUAL = (
    "Acme Cloud handbook, section {n}: projects contain environments; each environment has "
    "its own API keys, quotas and audit log. Keys rotate every ninety days and can be revoked "
    "from the console. Billing is monthly per organization, with usage alerts at 50, 75 and "
    "90 percent of the committed spend. Support tiers: community, business, enterprise. "
)
_QUESTIONS = {
    "support-bot": [
        "How do I rotate the API key of my staging environment?",
        "My invoice shows two charges for November, why?",
        "Can I move a project to another organization?",
        "What happens when I reach 90% of my committed spend?",
        "Where is the audit log for deleted keys?",
    ],
    "research-agent": [
        "What changed in the EU AI Act implementation timeline this year?",
        "Compare the latest open-weight models on coding benchmarks.",
        "Summarize recent results on speculative decoding.",
        "Which cloud regions added GPU capacity last quarter?",
    ],
    "code-assistant": [
        "Write a thread-safe LRU cache with a TTL in Python.",
        "Why does this asyncio code deadlock when I call run_until_complete twice?",
        "Refactor this SQL query builder to use parameters instead of f-strings.",
        "Add type hints and tests to a function that merges interval lists.",
    ],
    "summarizer": [
        "Summarize the attached quarterly report on customer churn.",
        "Summarize this incident post-mortem for the leadership team.",
        "Summarize the meeting transcript about the pricing change.",
    ],
    "rag-qa": [
        "What is the retention period for audit logs?",
        "Which support tier includes a named account manager?",
        "How are usage alerts configured?",
    ],
}
_WORDS = [
    "the",
    "key",
    "rotation",
    "policy",
    "applies",
    "to",
    "every",
    "environment",
    "and",
    "you",
    "can",
    "trigger",
    "it",
    "from",
    "the",
    "console",
    "or",
    "the",
    "API;",
    "billing",
    "alerts",
    "fire",
    "once",
    "per",
    "threshold;",
    "cached",
    "prompts",
    "reduce",
    "cost",
    "while",
    "long",
    "contexts",
    "increase",
    "latency;",
    "tests",
    "cover",
    "the",
    "edge",
    "cases",
    "and",
    "the",
    "function",
    "returns",
    "a",
    "sorted",
    "list;",
    "according",
    "to",
    "recent",
    "sources",
    "the",
    "timeline",
    "moved",
    "by",
    "six",
    "months",
]


# The simulated provider counts with our *raw* (uncalibrated) counts: the demo must not feed
# its own calibrated estimates back to the calibrator, and must stay deterministic.
def _provider_prompt_tokens(model: str, messages: Any, counted: int) -> int:
    from tokenward.counting import get_counter

    raw = getattr(get_counter(model), "raw_count_messages", None)
    return int(raw(messages)) if raw is not None else counted


def _provider_text_tokens(model: str, text: str) -> int:
    from tokenward.counting import estimate_tokens, get_counter

    counter = get_counter(model)
    return counter.count_text(text) if counter.exact else estimate_tokens(text)


def _reply(rng: random.Random, n_words: int) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(n_words)).capitalize() + "."


def _persona_for(i: int) -> tuple[str, _Persona]:
    p = _PERSONAS[i % len(_PERSONAS)]
    k = i // len(_PERSONAS)
    return (p.name if k == 0 else f"{p.name}-{k + 1}"), p


def run_demo(
    db: str | os.PathLike[str] | None = None,
    *,
    users: int = 6,
    seed: int = 7,
    with_budget: bool = True,
    progress: Any = None,
    now: datetime | None = None,
) -> DemoResult:
    """Run the session into the SQLite file ``db`` (a temporary one when ``None``).

    ``progress`` (e.g. the CLI's progress bar) gets ``set_total(turns)`` once and
    ``advance()`` after each simulated turn.

    Returns a :class:`DemoResult` whose ``report`` is the data ``tokenward report`` shows.
    Re-running with the same seed into the same file adds nothing (event ids are stable
    and the ledger is idempotent).
    """
    from tokenward.accountant import Accountant, track
    from tokenward.budgets import Budget, Budgets
    from tokenward.catalog import default_catalog
    from tokenward.counting import count_text
    from tokenward.errors import BudgetExceededError
    from tokenward.ledger import open_ledger
    from tokenward.report._tables import build_report

    if db is None:
        db_path = os.path.join(tempfile.mkdtemp(prefix="tokenward-demo-"), "ledger.db")
    else:
        db_path = os.fspath(db)
        parent = os.path.dirname(os.path.abspath(db_path))
        os.makedirs(parent, exist_ok=True)
    rng = random.Random(seed)
    end = (now or datetime.now(timezone.utc)).replace(minute=0, second=0, microsecond=0)
    start = end - timedelta(days=6, hours=12)
    catalog = default_catalog()

    # -- plan the sessions (who talks when), deterministic
    sessions: list[tuple[datetime, str, _Persona, int]] = []
    for i in range(users):
        user, persona = _persona_for(i)
        n_conv = 1 if persona.trial else rng.randint(2, 3)
        for c in range(n_conv):
            if persona.trial:  # the trial user works in one burst (one budget day)
                when = end - timedelta(hours=5, minutes=rng.randint(0, 59))
            else:
                when = start + timedelta(
                    minutes=rng.randint(0, int((end - start).total_seconds() // 60) - 90)
                )
            sessions.append((when, user, persona, c))
    sessions.sort(key=lambda s: (s[0], s[1], s[3]))

    clock_now = [start]
    budgets = None
    if with_budget:
        budgets = Budgets(
            Budget(
                "trial-daily",
                limit_usd="0.02",
                window="day",
                scope="user_id",
                where={"plan": "trial"},
            ),
            alert_sinks=(),
        )
    ledger = open_ledger(db_path)
    accountant = Accountant(
        catalog=catalog,
        ledger=ledger,
        budgets=budgets,
        clock=lambda: clock_now[0],
    )
    result = DemoResult(
        db_path=db_path,
        calls=0,
        users=users,
        conversations=len(sessions),
        models=sorted({p.model for _, _, p, _ in sessions}),
    )
    n_call = [0]
    special = {"error": False, "cancel": False}

    def next_id() -> str:
        n_call[0] += 1
        return f"demo-{seed}-{n_call[0]:05d}"

    # the trial user keeps asking until the budget says no
    turn_plan = [12 if s[2].trial else rng.randint(3, 6) for s in sessions]
    if progress is not None:
        progress.set_total(sum(turn_plan))

    def tick(seconds: float) -> None:
        clock_now[0] = clock_now[0] + timedelta(seconds=seconds)

    try:
        with track() as tracker:
            for (when, user, persona, conv_no), n_turns in zip(sessions, turn_plan, strict=True):
                clock_now[0] = when
                conv_id = f"{user}-c{conv_no + 1}"
                dims = {
                    "user_id": user,
                    "conversation_id": conv_id,
                    "agent": persona.agent,
                    "session_id": f"{user}-s{conv_no + 1}",
                    "tags": {"team": persona.team, "plan": persona.plan, "env": "demo"},
                }
                system = _SYSTEM[persona.agent]
                if persona.cache is not None or persona.trial:  # long, cacheable prefix
                    system += "\n\n" + "".join(_MANUAL.format(n=k) for k in range(1, 14))
                history: list[dict[str, Any]] = [{"role": "system", "content": system}]
                prev_prompt = 0
                for turn in range(n_turns):
                    if progress is not None:
                        progress.advance()
                    question = rng.choice(_QUESTIONS[persona.agent])
                    if persona.rag:
                        # embed the question, then answer from retrieved chunks
                        eid = next_id()
                        q_tokens = count_text(question, model=_EMBEDDING_MODEL).tokens
                        accountant.preflight(
                            eid,
                            _EMBEDDING_MODEL,
                            prompt_tokens=q_tokens,
                            dims=dims,
                            kind="embedding",
                        )
                        tick(0.2)
                        accountant.settle(eid, Usage(input=q_tokens), latency_ms=180.0)
                        result.calls += 1
                        chunks = " ".join(_MANUAL.format(n=rng.randint(1, 40)) for _ in range(6))
                        question = f"Context:\n{chunks}\n\nQuestion: {question}"
                    history.append({"role": "user", "content": question})
                    tick(rng.randint(20, 120))
                    rid = next_id()
                    try:
                        est = accountant.preflight(
                            rid,
                            persona.model,
                            messages=history,
                            max_output_tokens=2048 if persona.reasoning else 800,
                            dims=dims,
                        )
                    except BudgetExceededError as exc:
                        result.denied.append(f"{user} ({persona.model}): {exc}")
                        break  # the app shows the user a limit message and stops
                    result.calls += 1
                    answer = _reply(rng, rng.randint(40, 220))
                    visible = _provider_text_tokens(persona.model, answer)
                    prompt = _provider_prompt_tokens(persona.model, history, est.prompt_tokens)
                    if not est.exact:  # providers' own tokenizers differ a little from ours
                        prompt = int(prompt * rng.uniform(0.98, 1.06))
                    cache_read = cache_write = 0
                    if persona.cache == "anthropic":
                        sys_tokens = _provider_text_tokens(persona.model, system)
                        if turn == 0:
                            cache_write = sys_tokens
                        else:
                            cache_read = sys_tokens
                    elif persona.cache == "openai" and turn > 0 and prev_prompt >= 1024:
                        cache_read = (prev_prompt // 128) * 128
                    reasoning = rng.randint(300, 1800) if persona.reasoning else 0
                    usage = Usage(
                        input=prompt,
                        output=visible + reasoning,
                        cache_read=cache_read,
                        cache_write_5m=cache_write,
                        reasoning=reasoning,
                    )
                    latency = 250.0 + (visible + reasoning) * rng.uniform(8, 14)
                    tick(latency / 1000)

                    if (
                        persona.agent == "support-bot"
                        and not persona.trial
                        and conv_no == 1
                        and turn == 1
                        and not special["error"]
                    ):
                        special["error"] = True
                        accountant.release(
                            rid, error="RateLimitError: 429 Too Many Requests (retry after 20s)"
                        )
                        result.errors.append(f"{user}: provider error, reservation released")
                        history.pop()
                        continue
                    if persona.reasoning and turn == n_turns - 1 and not special["cancel"]:
                        special["cancel"] = True
                        partial = Usage(
                            input=prompt, output=reasoning // 2, reasoning=reasoning // 2
                        )
                        import asyncio

                        accountant.release(
                            rid, partial_usage=partial, error=asyncio.CancelledError()
                        )
                        result.errors.append(f"{user}: stream cancelled, partial usage recorded")
                        history.pop()
                        continue
                    if persona.tool and turn == 0:
                        # the model asks for a tool; the app runs it and calls the model again
                        call_out = Usage(
                            input=prompt,
                            output=38,
                            cache_read=cache_read,
                            cache_write_5m=cache_write,
                        )
                        accountant.settle(
                            rid, call_out, latency_ms=latency / 2, tool_names=(persona.tool,)
                        )
                        history.append(
                            {
                                "role": "assistant",
                                "content": "",
                                "tool_calls": [
                                    {
                                        "id": f"call_{rid}",
                                        "type": "function",
                                        "function": {
                                            "name": persona.tool,
                                            "arguments": '{"query": "latest"}',
                                        },
                                    }
                                ],
                            }
                        )
                        history.append(
                            {
                                "role": "tool",
                                "tool_call_id": f"call_{rid}",
                                "content": _reply(rng, 120),
                            }
                        )
                        rid = next_id()
                        est = accountant.preflight(
                            rid,
                            persona.model,
                            messages=history,
                            max_output_tokens=800,
                            dims=dims,
                            parent_id=f"demo-{seed}-{n_call[0] - 1:05d}",
                        )
                        result.calls += 1
                        usage = Usage(
                            input=int(
                                _provider_prompt_tokens(persona.model, history, est.prompt_tokens)
                                * 1.02
                            ),
                            output=visible,
                            cache_read=_provider_text_tokens(persona.model, system),
                        )
                    if persona.stream_without_usage:
                        # a stream that reported no usage: counted locally, flagged estimated
                        accountant.settle(rid, None, output_text=answer, latency_ms=latency)
                    else:
                        accountant.settle(rid, usage, latency_ms=latency)
                    prev_prompt = usage.input
                    history.append({"role": "assistant", "content": answer})
        result.tracked = tracker.summary()
    finally:
        accountant.flush()

    result.report = build_report(
        ledger,
        since=None,
        until=None,
        by=("user_id",),
        source=db_path,
        catalog=catalog,
    )
    accountant.close()
    return result


def describe(result: DemoResult) -> list[str]:
    """Human-readable lines about what the session did (printed before the report)."""
    from decimal import Decimal

    tracked_cost = Decimal(result.tracked.get("cost", "0")).quantize(Decimal("0.000001"))
    estimated = " (some counts estimated)" if result.tracked.get("estimated") else ""
    lines = [
        f"Simulated {result.users} users, {result.conversations} conversations, "
        f"{result.calls} model calls (offline): {', '.join(result.models)}",
        f"track() live totals: {result.tracked.get('calls', 0)} calls, ${tracked_cost}{estimated}",
    ]
    # narration of what was simulated: not "error:", which reads as the demo itself failing
    lines.extend(f"simulated failure: {e}" for e in result.errors)
    lines.extend(f"denied: {d}" for d in result.denied)
    return lines
