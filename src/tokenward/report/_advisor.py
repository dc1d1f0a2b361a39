"""The advisor: concrete, quantified suggestions to spend less, each with its evidence.

:func:`advise` reads the ledger's events once (time order), groups them into workloads
(``agent`` + ``model``; calls without an agent are one workload per model) and conversations,
and applies five rules. Every rule is a plain formula over recorded usage and catalog prices;
the numbers it used are in :attr:`Suggestion.evidence` so a reader can check them.

Savings are what the observed period would have cost less, scaled to 30 days:
``savings x 30 / period_days`` where the period is ``until - since`` (``until`` defaults to
``now`` when ``since`` is given; without ``since`` the period is the span of the events), at
least one day. Money is ``Decimal`` rounded to cents.

Rules (thresholds are keyword arguments of :func:`advise`):

``prompt_caching``
    Multi-turn conversations re-send their history: call *k* starts with call *k-1*'s input
    and output. When call *k* follows within the cache TTL (5 minutes) and that prefix is at
    least ``min_cacheable_tokens`` (1,024, the providers' minimum), the prefix could have been
    read from the prompt cache. Savings = (prefix - tokens already read from the cache) x
    (input price - cache read price), minus the write premium: the tokens of each prefix the
    previous call did not itself read, written once at (cache write price - input price)
    (zero for automatic caching, e.g. OpenAI). Suggested when the workload's cache hit rate is
    below ``max_cache_hit_rate``. For models with a 1-hour cache price, a second suggestion
    ("extend") compares the same computation with a 1-hour lifetime when turns come more than
    5 minutes apart; it reports only the additional net savings. When prompts are stored
    (opt-in), calls outside conversations that start with the same text (system prompt, tools,
    few-shot examples) count too: the common prefix in characters, converted to tokens in
    proportion to the call's input.
``cheaper_model``
    Reprices every call of a workload at a cheaper model of the same provider (other providers
    only when none fits) whose context window holds the largest observed prompt plus the
    largest output, whose max output holds the largest output, that is not an older generation
    (version numbers in the name) of the same provider, that matches the workload's use of
    reasoning models (o-series, gpt-5, "reasoner"/"thinking" names), and that is at least
    ``min_model_savings`` (20 %) cheaper on this workload's token mix. The closest step down in
    price is proposed (least quality risk). Risk grows with the price gap, the share of the
    candidate's window the largest prompt uses, reasoning usage and a provider change.
``batch``
    Calls marked as offline (tag ``batch`` or ``offline`` = true/1/yes, tag ``mode`` or
    ``interactive`` saying so, an agent listed in ``offline_agents``, or an agent whose name
    says so: batch, nightly, cron, offline, etl, backfill, scheduled, bulk, job; risk "medium"
    when only the name said so) on a model with a batch discount: savings = their cost x the
    discount.
``max_tokens``
    The ledger does not store the requested ``max_tokens`` (unless every call of the workload
    carries a ``max_tokens`` tag, which is then used); otherwise this rule compares the p99 of
    observed output tokens (nearest rank) with the model's max output, and says so. When p99 is
    below ``max_output_ratio`` (25 %) of that reference, a cap of p99 x 1.25 rounded up to a
    multiple of 256 is proposed. Savings = output tokens above that cap x output price
    (runaway generations it would have stopped); ``None`` when no call exceeded it (the gain is
    then tighter budget reservations, not spend).
``trim_history``
    Conversations with at least ``min_conversation_calls`` calls whose input/output ratio is at
    least ``min_history_ratio`` and whose last prompt is at least twice the first ("history
    dominates input and grows"). Savings = input tokens above a cap of twice the first prompt,
    valued at the average input price each call paid (cache reads at the read price).
"""

from __future__ import annotations

import math
import os
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any, Literal

from tokenward.report._format import plain, usd

__all__ = ["Suggestion", "SuggestionKind", "advise"]

SuggestionKind = Literal["prompt_caching", "cheaper_model", "batch", "max_tokens", "trim_history"]
Risk = Literal["low", "medium", "high"]

_MILLION = Decimal(1_000_000)
_ZERO = Decimal(0)
_CENT = Decimal("0.01")
_DAY = timedelta(days=1)
_HOUR = timedelta(hours=1)
_TRUE = ("true", "1", "yes", "y", "on")
_OFFLINE_MODES = ("batch", "offline", "background", "async", "cron")
_OFFLINE_AGENT = re.compile(
    r"batch|nightly|cron|offline|etl|backfill|scheduled|bulk|(^|[-_ ])jobs?($|[-_ ])", re.I
)
_REASONING_NAME = re.compile(r"^(o\d|gpt-5)|reasoner|thinking", re.IGNORECASE)


@dataclass(frozen=True)
class Suggestion:
    """One piece of advice.

    ``kind`` is the rule that produced it; ``title`` a one-line summary; ``detail`` what to do
    and why; ``estimated_monthly_savings_usd`` the quantified gain (``None`` when the rule
    cannot put a USD figure on it); ``evidence`` the numbers the rule used (JSON-friendly:
    ints, floats, strings, Decimals); ``risk`` ``"low" | "medium" | "high"``.
    """

    kind: str
    title: str
    detail: str
    estimated_monthly_savings_usd: Decimal | None
    evidence: dict[str, Any] = field(default_factory=dict)
    risk: str = "low"
    workload: str = ""  #: e.g. ``"agent=support / gpt-4o"`` (empty for ledger-wide advice)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (Decimals as strings)."""

        def conv(v: Any) -> Any:
            if isinstance(v, Decimal):
                return plain(v)
            if isinstance(v, float):
                return round(v, 6)
            if isinstance(v, Mapping):
                return {str(k): conv(x) for k, x in v.items()}
            if isinstance(v, (list, tuple)):
                return [conv(x) for x in v]
            return v

        return {
            "kind": self.kind,
            "title": self.title,
            "detail": self.detail,
            "estimated_monthly_savings_usd": conv(self.estimated_monthly_savings_usd),
            "risk": self.risk,
            "workload": self.workload,
            "evidence": conv(self.evidence),
        }


# ----------------------------------------------------------------------------- helpers
def _cents(value: Decimal) -> Decimal:
    return value.quantize(_CENT, rounding=ROUND_HALF_EVEN)


def _money(value: Decimal) -> str:
    """Money in the advice text: the report's one formatter (cents from $1, then 4 decimals)."""
    return usd(value)


def _version(name: str) -> tuple[int, ...]:
    """Numbers in a model name, dates dropped.

    gpt-4.1-mini -> (4, 1); claude-sonnet-4-5 -> (4, 5).
    """
    return tuple(int(n) for n in re.findall(r"\d+", name) if len(n) < 4)


def _p(price: Decimal | None, fallback: Decimal) -> Decimal:
    return fallback if price is None else price


def p99(values: Sequence[int]) -> int:
    """99th percentile by the nearest-rank method (an observed value; 0 for no values)."""
    if not values:
        return 0
    s = sorted(values)
    rank = max(1, math.ceil(0.99 * len(s)))
    return s[rank - 1]


def _offline_reason(event: Any, offline_agents: frozenset[str]) -> str | None:
    """Why a call counts as offline (``"tag"``, ``"offline_agents"``, ``"agent name"``) or None."""
    tags = event.tags
    if tags:
        for key in ("batch", "offline"):
            if str(tags.get(key, "")).strip().lower() in _TRUE:
                return "tag"
        if str(tags.get("mode", "")).strip().lower() in _OFFLINE_MODES:
            return "tag"
        if str(tags.get("interactive", "")).strip().lower() in ("false", "0", "no", "n", "off"):
            return "tag"
    agent = event.agent
    if agent is not None:
        if agent in offline_agents:
            return "offline_agents"
        if _OFFLINE_AGENT.search(agent):
            return "agent name"
    return None


def _workload_label(agent: str | None, model: str) -> str:
    return f"agent={agent} / {model}" if agent else model


@dataclass
class _Workload:
    agent: str | None
    model: str
    calls: int = 0
    cost: Decimal = _ZERO
    input: int = 0
    output: int = 0
    cache_read: int = 0
    reasoning: int = 0
    max_input: int = 0
    outputs: list[int] = field(default_factory=list)
    events: list[Any] = field(default_factory=list)
    offline_calls: int = 0
    offline_cost: Decimal = _ZERO
    offline_reasons: set[str] = field(default_factory=set)

    @property
    def label(self) -> str:
        return _workload_label(self.agent, self.model)


def _period_days(
    since: datetime | None, until: datetime | None, first: datetime, last: datetime
) -> Decimal:
    lo = since or first
    hi = until or last
    span = max(hi - lo, _DAY)
    return Decimal(int(span.total_seconds() * 1_000_000)) / Decimal(86_400_000_000)


# ----------------------------------------------------------------------------- advise
def advise(
    ledger: Any,
    *,
    catalog: Any = None,
    since: datetime | None = None,
    until: datetime | None = None,
    where: Mapping[str, Any] | None = None,
    offline_agents: Iterable[str] = (),
    min_monthly_savings_usd: Decimal | str = Decimal("0.01"),
    min_cacheable_tokens: int = 1024,
    cache_ttl: timedelta = timedelta(minutes=5),
    max_cache_hit_rate: float = 0.5,
    min_model_savings: float = 0.2,
    max_output_ratio: float = 0.25,
    min_calls: int = 20,
    min_conversation_calls: int = 4,
    min_history_ratio: float = 20.0,
    now: datetime | None = None,
) -> list[Suggestion]:
    """Quantified suggestions from the ledger's events in ``[since, until)``.

    ``catalog`` (default: the shipped catalog) prices the alternatives; events whose model is
    not in it are skipped by the price-based rules (never guessed). Suggestions with a USD
    figure below ``min_monthly_savings_usd`` are dropped. The result is sorted by estimated
    monthly savings (largest first; suggestions without a figure last), then kind and workload,
    so the same ledger always gives the same list.
    """
    if catalog is None:
        from tokenward.catalog import default_catalog

        catalog = default_catalog()
    floor = Decimal(str(min_monthly_savings_usd))
    offline = frozenset(offline_agents)
    workloads: dict[tuple[str | None, str], _Workload] = {}
    conversations: dict[str, list[Any]] = defaultdict(list)
    first: datetime | None = None
    last: datetime | None = None
    for e in ledger.events(since=since, until=until, where=dict(where) if where else None):
        if e.kind == "embedding":
            continue
        if first is None:
            first = e.timestamp
        last = e.timestamp
        key = (e.agent, e.model)
        w = workloads.get(key)
        if w is None:
            w = workloads[key] = _Workload(e.agent, e.model)
        u = e.usage
        w.calls += 1
        w.cost += e.cost
        w.input += u.input
        w.output += u.output
        w.cache_read += u.cache_read
        w.reasoning += u.reasoning
        w.max_input = max(w.max_input, u.input)
        w.outputs.append(u.output)
        w.events.append(e)
        reason = _offline_reason(e, offline)
        if reason is not None:
            w.offline_calls += 1
            w.offline_cost += e.cost
            w.offline_reasons.add(reason)
        if e.conversation_id and e.status == "ok":
            conversations[e.conversation_id].append(e)
    if first is None or last is None:
        return []
    end = until
    if end is None and since is not None:  # "the last 7 days" ends now, not at the last call
        end = max(now or datetime.now(timezone.utc), last)
    days = _period_days(since, end, first, last)
    scale = Decimal(30) / days
    common = {"period_days": _cents(days) if days % 1 else int(days)}

    short = _cache_scenarios(workloads, conversations, cache_ttl, min_cacheable_tokens)
    long = _cache_scenarios(workloads, conversations, max(cache_ttl, _HOUR), min_cacheable_tokens)
    out: list[Suggestion] = []
    for key, w in sorted(workloads.items(), key=lambda kw: (kw[0][0] or "", kw[0][1])):
        info = catalog.find(w.model)
        if info is None:
            continue
        out.extend(
            _caching(
                w,
                info,
                short[key],
                long[key],
                scale,
                common,
                cache_ttl,
                max_cache_hit_rate,
            )
        )
        period = _Period(ledger, since, until, where)
        out.extend(_cheaper(w, info, catalog, period, scale, common, min_model_savings))
        out.extend(_batch(w, info, scale, common))
        out.extend(_max_tokens(w, info, scale, common, max_output_ratio, min_calls))
    out.extend(
        _trim(
            workloads,
            conversations,
            catalog,
            scale,
            common,
            min_conversation_calls,
            min_history_ratio,
        )
    )
    out = [
        s
        for s in out
        if s.estimated_monthly_savings_usd is None or s.estimated_monthly_savings_usd >= floor
    ]
    out.sort(
        key=lambda s: (
            s.estimated_monthly_savings_usd is None,
            -(s.estimated_monthly_savings_usd or _ZERO),
            s.kind,
            s.workload,
        )
    )
    return out


# ----------------------------------------------------------------------------- rules
@dataclass
class _CacheScenario:
    reads: int = 0  #: prefix tokens that could have been read from the cache (not already read)
    written: int = 0  #: tokens that must be written to the cache for those reads
    calls: int = 0
    conversations: int = 0
    prompt_calls: int = 0  #: calls found through stored prompts sharing a prefix


def _cache_scenarios(
    workloads: Mapping[tuple[str | None, str], _Workload],
    conversations: Mapping[str, list[Any]],
    ttl: timedelta,
    min_tokens: int,
) -> dict[tuple[str | None, str], _CacheScenario]:
    """What caching with lifetime ``ttl`` would read and write, per workload (one pass).

    In a conversation, call *k*'s prefix is ``min(input + output of call k-1, input of call
    k)``; it is readable when call *k* uses the same model, follows within ``ttl`` and the
    prefix has at least ``min_tokens``. Writes: the part of that prefix call *k-1* did not
    itself read (a chain writes each token once).
    """
    out: dict[tuple[str | None, str], _CacheScenario] = {k: _CacheScenario() for k in workloads}
    for evs in conversations.values():
        prev = None
        prev_read = 0
        used: set[tuple[str | None, str]] = set()
        for e in evs:
            read = 0
            if prev is not None and prev.model == e.model and e.timestamp - prev.timestamp <= ttl:
                prefix = min(prev.usage.input + prev.usage.output, e.usage.input)
                if prefix >= min_tokens:
                    read = prefix
                    extra = max(0, prefix - e.usage.cache_read)
                    if extra:
                        key = (e.agent, e.model)
                        sc = out[key]
                        sc.reads += extra
                        sc.written += min(extra, max(0, prefix - prev_read))
                        sc.calls += 1
                        used.add(key)
            prev, prev_read = e, read
        for key in used:
            out[key].conversations += 1
    # Calls outside conversations whose stored prompts (opt-in) start alike: the shared
    # prefix (system prompt, tools, few-shot examples) in tokens, in proportion to characters.
    for key, w in workloads.items():
        sc = out[key]
        prev = None
        prev_read = 0
        for e in w.events:
            if e.conversation_id or not e.prompt:
                continue
            read = 0
            if prev is not None and e.timestamp - prev.timestamp <= ttl:
                common = len(os.path.commonprefix([prev.prompt, e.prompt]))  # noqa: RUF071 - a string prefix, not a path
                prefix = e.usage.input * common // len(e.prompt)
                if prefix >= min_tokens:
                    read = prefix
                    extra = max(0, prefix - e.usage.cache_read)
                    if extra:
                        sc.reads += extra
                        sc.written += min(extra, max(0, prefix - prev_read))
                        sc.calls += 1
                        sc.prompt_calls += 1
            prev, prev_read = e, read
    return out


def _how_to_cache(provider: str) -> str:
    if provider == "anthropic":
        return (
            "Add cache_control breakpoints after the system prompt/tools and on the last "
            "message so each turn reads the previous turns from the cache."
        )
    if provider == "openai":
        return (
            "OpenAI caches prompts of 1,024+ tokens automatically when the prefix is "
            "identical: keep system prompt and tools first and unchanged, append history "
            "without rewriting earlier turns, and pass a stable prompt_cache_key."
        )
    if provider == "google":
        return (
            "Use Gemini context caching (implicit or an explicit cached content) for the history."
        )
    return "Enable the provider's prompt caching for the repeated conversation prefix."


def _caching(
    w: _Workload,
    info: Any,
    sc: _CacheScenario,
    long: _CacheScenario,
    scale: Decimal,
    common: dict[str, Any],
    ttl: timedelta,
    max_hit: float,
) -> list[Suggestion]:
    prices = info.prices
    inp: Decimal = prices.input
    read_price = _p(prices.cache_read, inp)
    saving_per_m = inp - read_price
    if saving_per_m <= 0:
        return []  # the model has no cheaper cache reads
    hit = w.cache_read / w.input if w.input else 0.0
    w5 = prices.cache_write_5m
    premium5 = max(w5 - inp, _ZERO) if w5 is not None else _ZERO
    gross = Decimal(sc.reads) * saving_per_m / _MILLION
    premium = Decimal(sc.written) * premium5 / _MILLION
    net = gross - premium
    out: list[Suggestion] = []
    minutes = int(ttl.total_seconds() // 60)
    if sc.reads and net > 0 and hit < max_hit:
        monthly = _cents(net * scale)
        out.append(
            Suggestion(
                kind="prompt_caching",
                title=(
                    f"Cache the repeated conversation prefix of {w.label}: save ~${monthly}/month"
                ),
                detail=(
                    f"{sc.calls:,} call(s) ({sc.prompt_calls:,} through stored prompts with a "
                    f"common start, the rest in {sc.conversations:,} conversation(s)) re-sent "
                    f"{sc.reads:,} prefix tokens within {minutes} minutes of the previous call, "
                    f"while only {hit:.1%} of this workload's input was read from the cache. "
                    f"Reading them at ${read_price}/1M instead of ${inp}/1M saves "
                    f"{_money(gross)}"
                    + (
                        f" minus {_money(premium)} for writing {sc.written:,} tokens"
                        if premium
                        else ""
                    )
                    + f" in the period. {_how_to_cache(info.provider)}"
                ),
                estimated_monthly_savings_usd=monthly,
                evidence={
                    **common,
                    "calls": w.calls,
                    "cache_hit_rate": round(hit, 4),
                    "calls_with_cacheable_prefix": sc.calls,
                    "conversations": sc.conversations,
                    "calls_sharing_a_stored_prompt_prefix": sc.prompt_calls,
                    "cacheable_prefix_tokens": sc.reads,
                    "cache_write_tokens": sc.written,
                    "input_price_per_1m": inp,
                    "cache_read_price_per_1m": read_price,
                    "cache_write_premium_per_1m": premium5,
                    "savings_in_period_usd": net,
                },
                risk="low",
                workload=w.label,
            )
        )
    w1 = prices.cache_write_1h
    if w1 is None or ttl >= _HOUR:
        return out
    premium1 = max(w1 - inp, _ZERO)
    net1 = (Decimal(long.reads) * saving_per_m - Decimal(long.written) * premium1) / _MILLION
    gain = net1 - max(net, _ZERO)
    if long.reads <= sc.reads or gain <= 0:
        return out
    monthly = _cents(gain * scale)
    out.append(
        Suggestion(
            kind="prompt_caching",
            title=f"Extend the prompt cache of {w.label} to 1 hour: save ~${monthly}/month",
            detail=(
                f"Turns often come more than {minutes} minutes apart: with the 1-hour cache "
                f"(write ${w1}/1M instead of ${w5 if w5 is not None else inp}/1M) "
                f"{long.reads:,} prefix tokens could be read instead of {sc.reads:,}, netting "
                f"{_money(net1)} instead of {_money(max(net, _ZERO))} in the period. Set the "
                f'cache_control ttl to "1h" on the history breakpoint.'
            ),
            estimated_monthly_savings_usd=monthly,
            evidence={
                **common,
                "cacheable_prefix_tokens_5m": sc.reads,
                "cacheable_prefix_tokens_1h": long.reads,
                "cache_write_tokens_1h": long.written,
                "cache_write_1h_price_per_1m": w1,
                "net_savings_5m_in_period_usd": max(net, _ZERO),
                "net_savings_1h_in_period_usd": net1,
            },
            risk="low",
            workload=w.label,
        )
    )
    return out


def _mix_cost(w: _Workload, prices: Any) -> Decimal:
    """The workload's tokens at ``prices`` (base tier; used only to rank candidates)."""
    uncached = max(0, w.input - w.cache_read)
    read = _p(prices.cache_read, prices.input)
    inp: Decimal = prices.input
    out: Decimal = prices.output
    return (
        Decimal(uncached) * inp + Decimal(w.cache_read) * read + Decimal(w.output) * out
    ) / _MILLION


@dataclass(frozen=True)
class _Period:
    """The ledger and the range :func:`advise` reads (what the replay re-prices)."""

    ledger: Any
    since: datetime | None
    until: datetime | None
    where: Mapping[str, Any] | None


def _cheaper(
    w: _Workload,
    info: Any,
    catalog: Any,
    period: _Period,
    scale: Decimal,
    common: dict[str, Any],
    min_savings: float,
) -> list[Suggestion]:
    from tokenward.predict import Scenario, replay, select_models

    if w.cost <= 0 or info.mode != "chat":
        return []
    max_out = max(w.outputs) if w.outputs else 0
    need = w.max_input + max_out
    current = _mix_cost(w, info.prices)
    if current <= 0:
        return []
    reasoning_workload = w.reasoning > 0 or bool(_REASONING_NAME.search(info.name))
    limit = current * Decimal(str(1 - min_savings))

    def fits(m: Any) -> bool:
        if bool(_REASONING_NAME.search(m.name)) != reasoning_workload:
            return False
        if m.provider == info.provider and _version(m.name) < _version(info.name):
            return False  # never an older generation of the same provider
        return _mix_cost(w, m.prices) <= limit

    choices = select_models(
        catalog, min_context=need, min_output=max_out, mode="chat", exclude=(info.name,)
    )
    pool = [c.info for c in choices if fits(c.info)]
    same = [m for m in pool if m.provider == info.provider]
    chosen_pool = same or pool
    if not chosen_pool:
        return []
    cand = max(chosen_pool, key=lambda m: (_mix_cost(w, m.prices), m.name))
    # the workload's calls re-priced on the candidate by the what-if replay (tokenizer ratio,
    # each call at its price tier)
    where = {**(period.where or {}), "agent": w.agent, "model": w.model}
    where["kind"] = ["chat", "completion"]
    try:
        replayed = replay(
            period.ledger,
            Scenario(model=cand.name),
            since=period.since,
            until=period.until,
            where=where,
            by=(),
            catalog=catalog,
        )
    except Exception:  # noqa: BLE001 - e.g. audio the candidate cannot price: no advice
        return []
    if replayed.unpriced_calls:
        return []
    new_cost = replayed.cost_after
    saved = w.cost - new_cost
    if saved <= 0:
        return []
    monthly = _cents(saved * scale)
    ratio = float(new_cost / w.cost)
    window_share = need / cand.context_window if cand.context_window else 1.0
    risk: Risk = "low"
    reasons = []
    if ratio < 0.25:
        risk = "medium"
        reasons.append(f"it costs {ratio:.0%} of the current model, a large capability step")
    if window_share > 0.8:
        risk = "high"
        reasons.append(f"the largest call uses {window_share:.0%} of its context window")
    elif window_share > 0.5 and risk == "low":
        risk = "medium"
        reasons.append(f"the largest call uses {window_share:.0%} of its context window")
    if cand.provider != info.provider:
        risk = "high"
        reasons.append(f"it is another provider ({cand.provider})")
    if w.reasoning:
        risk = "high" if risk == "medium" else ("medium" if risk == "low" else risk)
        reasons.append(f"the workload used {w.reasoning:,} reasoning tokens")
    evidence = {
        **common,
        "calls": w.calls,
        "current_model": info.name,
        "candidate_model": cand.name,
        "cost_in_period_usd": w.cost,
        "candidate_cost_in_period_usd": new_cost,
        "max_prompt_tokens": w.max_input,
        "max_output_tokens": max_out,
        "p99_output_tokens": p99(w.outputs),
        "candidate_context_window": cand.context_window,
        "candidate_max_output": cand.max_output,
        "context_window_share": round(window_share, 4),
    }
    for conversion in replayed.ratios:
        if conversion.ratio != 1.0:
            evidence["token_ratio"] = round(conversion.ratio, 4)
            evidence["token_ratio_basis"] = conversion.basis
    return [
        Suggestion(
            kind="cheaper_model",
            title=f"Try {cand.name} for {w.label}: save ~${monthly}/month",
            detail=(
                f"Repricing the {w.calls:,} calls of this workload at {cand.name} gives "
                f"{_money(new_cost)} instead of {_money(w.cost)} ({1 - ratio:.0%} less). Its "
                f"{cand.context_window:,}-token window holds the largest call "
                f"({w.max_input:,} prompt + {max_out:,} output tokens). Evaluate quality on a "
                f"sample of this workload first"
                + (f"; risk {risk}: " + "; ".join(reasons) if reasons else "")
                + "."
            ),
            estimated_monthly_savings_usd=monthly,
            evidence=evidence,
            risk=risk,
            workload=w.label,
        )
    ]


def _batch(w: _Workload, info: Any, scale: Decimal, common: dict[str, Any]) -> list[Suggestion]:
    if not w.offline_calls or info.batch_discount is None or w.offline_cost <= 0:
        return []
    saved = w.offline_cost * info.batch_discount
    monthly = _cents(saved * scale)
    guessed = w.offline_reasons == {"agent name"}
    return [
        Suggestion(
            kind="batch",
            title=(
                f"Run the offline calls of {w.label} through the batch API: save ~${monthly}/month"
            ),
            detail=(
                f"{w.offline_calls:,} offline calls cost {_money(w.offline_cost)} at "
                f"interactive prices; {info.provider}'s batch API bills {info.name} "
                f"{info.batch_discount:.0%} less, with results within 24 hours."
                + (
                    " They were recognized by the agent's name only: confirm nobody waits "
                    "for these answers (tag calls with batch=true or pass offline_agents)."
                    if guessed
                    else ""
                )
            ),
            estimated_monthly_savings_usd=monthly,
            evidence={
                **common,
                "identified_by": sorted(w.offline_reasons),
                "offline_calls": w.offline_calls,
                "offline_cost_in_period_usd": w.offline_cost,
                "batch_discount": info.batch_discount,
                "savings_in_period_usd": saved,
            },
            risk="medium" if guessed else "low",
            workload=w.label,
        )
    ]


def _max_tokens(
    w: _Workload,
    info: Any,
    scale: Decimal,
    common: dict[str, Any],
    ratio: float,
    min_calls: int,
) -> list[Suggestion]:
    if w.calls < min_calls:
        return []
    requested = [_requested_max_tokens(e) for e in w.events]
    recorded = all(r is not None for r in requested)
    if recorded:
        reference = max(r for r in requested if r is not None)
        what = f"the max_tokens you request (up to {reference:,}, from the max_tokens tag)"
    elif info.max_output is not None:
        reference = info.max_output
        what = (
            f"{info.name}'s {reference:,}-token maximum. The ledger does not record the "
            f"max_tokens you requested (tag calls with max_tokens to compare with that), so "
            f"this compares the observed p99 with the model's maximum"
        )
    else:
        return []
    q = p99(w.outputs)
    if q >= reference * ratio:
        return []
    cap = max(256, math.ceil(q * 1.25 / 256) * 256)
    if cap >= reference:
        return []
    over_calls = [e for e in w.events if e.usage.output > cap]
    over_tokens = sum(e.usage.output - cap for e in over_calls)
    out_price = info.prices.output
    saved = Decimal(over_tokens) * out_price / _MILLION
    monthly = _cents(saved * scale) if over_tokens else None
    if monthly is not None and monthly <= 0:
        monthly = None
    detail = (
        f"99% of the {w.calls:,} calls produced at most {q:,} output tokens, "
        f"{q / reference:.1%} of {what}: set max_tokens={cap:,}. "
    )
    if over_tokens:
        detail += (
            f"{len(over_calls):,} calls generated {over_tokens:,} tokens beyond that cap "
            f"({_money(saved)} in the period)."
        )
    else:
        detail += (
            "No call exceeded it, so spend barely changes; the gain is tighter budget "
            "reservations (preflight reserves max_tokens) and a bound on runaway outputs."
        )
    return [
        Suggestion(
            kind="max_tokens",
            title=f"Lower max_tokens to {cap:,} for {w.label}"
            + (f": save ~${monthly}/month" if monthly is not None else ""),
            detail=detail,
            estimated_monthly_savings_usd=monthly,
            evidence={
                **common,
                "calls": w.calls,
                "p99_output_tokens": q,
                "max_output_tokens": max(w.outputs),
                "model_max_output": info.max_output,
                "compared_with_max_tokens": reference,
                "suggested_max_tokens": cap,
                "calls_above_cap": len(over_calls),
                "tokens_above_cap": over_tokens,
                "requested_max_tokens_recorded": recorded,
            },
            risk="medium" if over_tokens else "low",
            workload=w.label,
        )
    ]


def _requested_max_tokens(e: Any) -> int | None:
    """The ``max_tokens`` tag of an event (the limit the app requested), if it has one."""
    raw = (e.tags or {}).get("max_tokens")
    try:
        value = int(str(raw).strip()) if raw is not None else None
    except ValueError:
        return None
    return value if value is not None and value > 0 else None


def _avg_input_price(e: Any, prices: Any) -> Decimal:
    u = e.usage
    if not u.input:
        return _ZERO
    read = _p(prices.cache_read, prices.input)
    w5 = _p(prices.cache_write_5m, prices.input)
    w1 = _p(prices.cache_write_1h, w5)
    uncached = max(0, u.input - u.cache_read - u.cache_write_5m - u.cache_write_1h)
    inp: Decimal = prices.input
    paid = (
        Decimal(uncached) * inp
        + Decimal(u.cache_read) * read
        + Decimal(u.cache_write_5m) * w5
        + Decimal(u.cache_write_1h) * w1
    )
    return paid / Decimal(u.input)


def _trim(
    workloads: Mapping[tuple[str | None, str], _Workload],
    conversations: Mapping[str, list[Any]],
    catalog: Any,
    scale: Decimal,
    common: dict[str, Any],
    min_calls: int,
    min_ratio: float,
) -> list[Suggestion]:
    per_agent: dict[str | None, dict[str, Any]] = {}
    for cid in sorted(conversations):
        evs = conversations[cid]
        if len(evs) < min_calls:
            continue
        inp = sum(e.usage.input for e in evs)
        outp = sum(e.usage.output for e in evs)
        if not outp or inp / outp < min_ratio:
            continue
        first_in, last_in = evs[0].usage.input, evs[-1].usage.input
        if not first_in or last_in < 2 * first_in:
            continue
        cap = 2 * first_in
        excess_tokens = 0
        value = _ZERO
        for e in evs:
            over = e.usage.input - cap
            if over <= 0:
                continue
            info = catalog.find(e.model)
            if info is None:
                continue
            excess_tokens += over
            value += Decimal(over) * _avg_input_price(e, info.prices_for(e.usage.input)) / _MILLION
        if not excess_tokens:
            continue
        agent = evs[0].agent
        a = per_agent.setdefault(
            agent,
            {
                "conversations": 0,
                "calls": 0,
                "input": 0,
                "output": 0,
                "first": 0,
                "last": 0,
                "excess": 0,
                "value": _ZERO,
                "models": set(),
            },
        )
        a["conversations"] += 1
        a["calls"] += len(evs)
        a["input"] += inp
        a["output"] += outp
        a["first"] += first_in
        a["last"] += last_in
        a["excess"] += excess_tokens
        a["value"] += value
        a["models"].update(e.model for e in evs)
    out = []
    for agent in sorted(per_agent, key=lambda x: x or ""):
        a = per_agent[agent]
        n = a["conversations"]
        monthly = _cents(a["value"] * scale)
        label = f"agent={agent}" if agent else "conversations without an agent"
        ratio = a["input"] / a["output"]
        out.append(
            Suggestion(
                kind="trim_history",
                title=f"Trim or summarize the history of {label}: save ~${monthly}/month",
                detail=(
                    f"In {n:,} conversations ({a['calls']:,} calls) the prompt grew from "
                    f"{a['first'] // n:,} to {a['last'] // n:,} tokens on average and input was "
                    f"{ratio:.0f}x the output: the history dominates the cost. Keeping prompts "
                    f"under "
                    f"twice the first turn (tokenward.context.trim_history, or a running summary) "
                    f"would have sent {a['excess']:,} fewer input tokens ({_money(a['value'])} in "
                    f"the period). Risk: the model sees less of the early conversation."
                ),
                estimated_monthly_savings_usd=monthly,
                evidence={
                    **common,
                    "conversations": n,
                    "calls": a["calls"],
                    "input_output_ratio": round(ratio, 2),
                    "avg_first_prompt_tokens": a["first"] // n,
                    "avg_last_prompt_tokens": a["last"] // n,
                    "tokens_above_cap": a["excess"],
                    "savings_in_period_usd": a["value"],
                    "models": sorted(a["models"]),
                },
                risk="medium",
                workload=label,
            )
        )
    return out
