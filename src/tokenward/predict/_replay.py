"""What-if replay: what the ledger's calls would have cost under another model, cache hit
rate or batch pricing.

:func:`replay` reads the ledger's daily totals per model (the rollup tables, so a million
events replay in milliseconds), rewrites each day's tokens for the :class:`Scenario` and
prices them with the same function as every bill (:func:`tokenward.cost.cost`):

* **another model**: token counts are multiplied by the ratio of the two models'
  tokenizers, measured on the ledger's stored prompts and outputs of the source model
  (when content storing is on) or else on a fixed sample text covering prose, code, JSON
  and non-Latin script. :attr:`Replay.ratios` says which, and the result is flagged
  ``estimated`` unless both models count exactly and the ratio came from stored content.
  Embedding calls keep their model.
* **cache hits**: a fraction ``cache_hit`` of every prompt is read from the cache; the
  uncached rest is written to it (what caching a growing conversation does) on models
  that charge for writes, unless ``cache_write`` says otherwise.
* **batch**: the model's batch prices (models without any keep their prices, listed in
  :attr:`Replay.notes`).

A price tier applies to a whole call, so a day's total can be priced at one tier only when
every call of it is known to fall in that tier: when the target model has tiers and the
source model's context window (times the tokenizer ratio) could reach one, the calls of
such a day that can (their input above the first tier, over the ratio) are read one by one
and summed per tier before pricing, the rest of the day taken from its total (stores
without ``events_with_input``: every call of the day is read). The recorded cost is the baseline;
groups with calls nobody could price have no baseline and are left out of the deltas.
"""

from __future__ import annotations

import dataclasses
import math
import operator
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from tokenward._memo import remember
from tokenward.errors import ConfigurationError, PricingMissingError
from tokenward.usage import TOKEN_FIELDS, Usage

if TYPE_CHECKING:
    from tokenward.catalog import Catalog, ModelInfo, Prices, PriceTier
    from tokenward.cost import CostBreakdown
    from tokenward.counting import TokenCounter

__all__ = ["Replay", "ReplayRow", "Scenario", "TokenRatio", "replay"]

_ZERO = Decimal(0)
_NANO = Decimal("1e-9")
_DAY = timedelta(days=1)
_PRICE_FIELDS = ("input", "output", "cache_read", "cache_write_5m", "cache_write_1h", "reasoning")
_RATIO_SAMPLE_EVENTS = 200  # events whose stored content measures a tokenizer ratio
_RATIO_PROBE = 20  # events read before concluding that a model's content is not stored
_DAYS_READ_APART = 4  # tiered days whose large calls are read day by day, else at once
#: Text the tokenizer ratio is measured on when the ledger stores no content: prose, code,
#: JSON, numbers and non-Latin script in roughly the shares chat traffic has.
SAMPLE_TEXT = (
    "Thanks for reaching out! I looked into your order #48213 and the refund was issued on "
    "March 3rd; banks usually take 5-10 business days to show it. If it has not arrived by "
    "then, reply here and I will escalate it to our payments team.\n"
    "Summary of the meeting: the team agreed to ship the migration in two phases, first the "
    "read path behind a feature flag, then the writes once error rates stay below 0.1 %.\n"
    "def moving_average(values: list[float], window: int = 7) -> list[float]:\n"
    "    if window <= 0:\n        raise ValueError('window must be positive')\n"
    "    out = []\n    for i in range(len(values) - window + 1):\n"
    "        out.append(sum(values[i : i + window]) / window)\n    return out\n"
    '{"id": "call_7f3a", "type": "function", "function": {"name": "search_flights", '
    '"arguments": {"from": "BER", "to": "SFO", "date": "2026-05-14", "passengers": 2}}}\n'
    "SELECT user_id, SUM(cost) AS spend FROM events WHERE ts >= '2026-01-01' GROUP BY 1;\n"
    "Die Lieferung verzögert sich um zwei Tage. 配送が2日遅れます。 Доставка задерживается.\n"
    "Totals: 1,284 calls, 3.2M input tokens, 410k output tokens, $18.73 (p99 latency 2.4 s)."
)


@dataclass(frozen=True)
class Scenario:
    """What to change when replaying the ledger.

    ``model``: re-price every chat call on this model (token counts converted by the
    tokenizer ratio, or by ``token_ratio`` when given); ``cache_hit``: the fraction of
    prompt tokens read from the prompt cache (0..1); ``cache_write``: the fraction written
    to it (default: the uncached rest, on models that charge for cache writes); ``batch``:
    batch prices."""

    model: str | None = None
    cache_hit: float | None = None
    cache_write: float | None = None
    batch: bool = False
    token_ratio: float | None = None

    def __post_init__(self) -> None:
        for name in ("cache_hit", "cache_write"):
            value = getattr(self, name)
            if value is not None and not (0.0 <= value <= 1.0):
                raise ConfigurationError(f"{name} must be between 0 and 1, got {value!r}")
        hit, write = self.cache_hit or 0.0, self.cache_write or 0.0
        if hit + write > 1.0:
            raise ConfigurationError(
                f"cache_hit + cache_write cannot exceed 1 (got {hit} + {write}): a prompt token "
                "is either read from the cache, written to it, or neither"
            )
        if self.token_ratio is not None and not (
            self.token_ratio > 0 and math.isfinite(self.token_ratio)
        ):
            raise ConfigurationError(f"token_ratio must be > 0, got {self.token_ratio!r}")

    def describe(self) -> str:
        """The scenario in a few words (``"claude-sonnet-4-6, 80 % cache hits, batch"``)."""
        parts = []
        if self.model:
            parts.append(f"on {self.model}")
        if self.cache_hit is not None:
            parts.append(f"{self.cache_hit:.0%} cache hits")
        if self.cache_write is not None:
            parts.append(f"{self.cache_write:.0%} cache writes")
        if self.batch:
            parts.append("batch prices")
        return ", ".join(parts) or "as recorded"


@dataclass(frozen=True)
class TokenRatio:
    """How token counts were converted from ``source`` to ``target``: ``ratio`` target
    tokens per source token, measured on ``basis`` (``"same tokenizer"``, ``"stored
    content"``, ``"sample text"`` or ``"given"``); ``exact``: both tokenizers are the models'
    own and the ratio comes from the ledger's content (or needs none)."""

    source: str
    target: str
    ratio: float
    basis: str
    exact: bool


@dataclass(frozen=True)
class ReplayRow:
    """One group (``dims`` as requested with ``by``): recorded vs replayed.

    ``cost_before`` is the recorded cost (``None`` when some of the group's calls could not
    be priced: no baseline to compare with); ``cost_after`` the replayed one; ``delta`` =
    after - before; tokens as recorded and as replayed; ``components_after`` the replayed
    cost per component (input, cache_read, cache_write_5m, output...)."""

    dims: Mapping[str, str | None]
    calls: int
    unpriced_calls: int
    tokens_before: int
    tokens_after: int
    cost_before: Decimal | None
    cost_after: Decimal
    components_after: Mapping[str, Decimal]

    @property
    def delta(self) -> Decimal | None:
        return None if self.cost_before is None else self.cost_after - self.cost_before


@dataclass(frozen=True)
class Replay:
    """The result of :func:`replay`: totals over the groups that have a baseline, the
    groups themselves, how tokens were converted and what could not be applied.

    ``cost_before``/``cost_after``/``delta``/``delta_pct`` compare only groups with a
    recorded cost; ``unpriced_calls`` counts calls left out of that comparison;
    ``estimated`` is true when a token conversion was estimated."""

    scenario: Scenario
    since: datetime | None
    until: datetime | None
    by: tuple[str, ...]
    rows: list[ReplayRow]
    calls: int
    unpriced_calls: int
    cost_before: Decimal
    cost_after: Decimal
    components_after: Mapping[str, Decimal]
    ratios: list[TokenRatio]
    estimated: bool
    per_call_groups: int = 0  #: (day, model) groups priced call by call for price tiers
    notes: list[str] = field(default_factory=list)

    @property
    def delta(self) -> Decimal:
        return self.cost_after - self.cost_before

    @property
    def delta_pct(self) -> float | None:
        """The change in percent of the recorded cost (``None`` without a recorded cost)."""
        if not self.cost_before:
            return None
        return float(self.delta / self.cost_before * 100)


# ----------------------------------------------------------------------------- tokens
def _content_stored(ledger: Any, since: datetime | None, until: datetime | None) -> bool:
    """Whether the ledger keeps prompts or outputs in this window (content storing is
    opt-in): a look at a few events of its last day, then of its first (the time index)."""
    end = until if until is not None else datetime.now(timezone.utc)
    recent = end - _DAY if since is None else max(since, end - _DAY)
    for lo in (recent, since):
        for e in ledger.events(since=lo, until=until, limit=_RATIO_PROBE):
            if e.prompt or e.output:
                return True
    return False


def _ratio(
    ledger: Any,
    source: ModelInfo,
    target: ModelInfo,
    catalog: Catalog,
    window: tuple[datetime | None, datetime | None],
    stored: bool,
) -> TokenRatio:
    from tokenward.counting import get_counter

    src = get_counter(source.name, catalog=catalog)
    dst = get_counter(target.name, catalog=catalog)
    if src.name == dst.name:
        return TokenRatio(source.name, target.name, 1.0, "same tokenizer", bool(src.exact))
    texts: list[str] = []
    if stored:
        events = ledger.events(
            since=window[0],
            until=window[1],
            where={"model": source.name},
            limit=_RATIO_SAMPLE_EVENTS,
        )
        for i, e in enumerate(events):
            texts.extend(t for t in (e.prompt, e.output) if t)
            if i >= _RATIO_PROBE and not texts:  # not stored for this model
                break
    if not texts:
        ratio = _sample_ratio(src, dst)
        return TokenRatio(source.name, target.name, ratio, "sample text", False)
    ratio = _text_ratio(src, dst, texts)
    exact = bool(src.exact) and bool(dst.exact)
    return TokenRatio(source.name, target.name, ratio, "stored content", exact)


def _text_ratio(src: TokenCounter, dst: TokenCounter, texts: Sequence[str]) -> float:
    n_src = sum(src.count_text(t) for t in texts)
    return sum(dst.count_text(t) for t in texts) / n_src if n_src else 1.0


_SAMPLE_RATIOS: dict[tuple[int, int], tuple[TokenCounter, TokenCounter, float]] = {}


def _sample_ratio(src: TokenCounter, dst: TokenCounter) -> float:
    """The ratio on :data:`SAMPLE_TEXT`, once per pair of counters (they are process-wide)."""
    key = (id(src), id(dst))
    hit = _SAMPLE_RATIOS.get(key)
    if hit is not None and hit[0] is src and hit[1] is dst:
        return hit[2]
    ratio = _text_ratio(src, dst, [SAMPLE_TEXT])
    remember(_SAMPLE_RATIOS, key, (src, dst, ratio), 1024)
    return ratio


def _scaled(usage: Usage, ratio: float) -> Usage:
    if ratio == 1.0:
        return usage
    values = {f: round(getattr(usage, f) * ratio) for f in TOKEN_FIELDS}
    return Usage(**values, estimated=True)


def _with_cache(usage: Usage, scenario: Scenario, target: ModelInfo, at: datetime | None) -> Usage:
    if scenario.cache_hit is None and scenario.cache_write is None:
        return usage
    prompt = usage.input
    hit = scenario.cache_hit if scenario.cache_hit is not None else 0.0
    write = scenario.cache_write
    if write is None:
        charges_writes = (
            target.prices is not None and target.period_at(at).prices.cache_write_5m is not None
        )
        write = (1.0 - hit) if charges_writes else 0.0
    read_tokens = round(prompt * hit)
    write_tokens = min(prompt - read_tokens, round(prompt * write))
    return dataclasses.replace(
        usage, cache_read=read_tokens, cache_write_5m=write_tokens, cache_write_1h=0
    )


def _usage_of(row: Any) -> Usage:
    return Usage(**{f: getattr(row, f) for f in TOKEN_FIELDS})


# ----------------------------------------------------------------------------- pricing
def _price(
    usage: Usage, info: ModelInfo, tier: int | None, batch: bool, at: datetime | None
) -> CostBreakdown:
    """``usage`` (a sum of calls) at ``info``'s prices in force at ``at``: its base prices, or
    those of the tier above ``tier`` tokens, batch prices if asked (``PricingMissingError``
    when the model has none)."""
    from tokenward.cost import cost

    prices = info.prices_for(0 if tier is None else tier + 1, at=at, batch=batch)
    return cost(usage, _flat(info, prices))


_FLAT: dict[tuple[int, Prices], tuple[ModelInfo, ModelInfo]] = {}


def _flat(info: ModelInfo, prices: Prices) -> ModelInfo:
    """``info`` at fixed ``prices`` (one object per model and prices: the cost function
    compiles a model's prices once per object)."""
    key = (id(info), prices)
    hit = _FLAT.get(key)
    if hit is not None and hit[0] is info:
        return hit[1]
    flat = dataclasses.replace(info, prices=prices, tiers=(), periods=(), batch_discount=None)
    remember(_FLAT, key, (info, flat), 4096)
    return flat


def _tiers(info: ModelInfo, at: datetime | None) -> tuple[PriceTier, ...]:
    return info.period_at(at).tiers if info.prices is not None else ()


def _steady(info: ModelInfo, day: datetime | None) -> bool:
    """Whether one set of prices holds for ``info`` all ``day`` (no time-of-day prices, no
    price change inside it), so a day's total can be priced at once."""
    if day is None:
        return not info.periods
    end = day + _DAY
    for period in info.periods:
        if period.daily is not None:
            return False
        for edge in (period.start, period.end):
            if edge is not None and day < edge < end:
                return False
    return True


def _tier_reachable(
    source: ModelInfo, target: ModelInfo, ratio: float, at: datetime | None
) -> bool:
    """Whether a call of ``source`` could reach one of ``target``'s price tiers."""
    tiers = _tiers(target, at)
    if not tiers:
        return False
    if not source.context_window:
        return True  # unknown window: cannot rule it out
    return source.context_window * ratio > tiers[0].above_input_tokens


def _tiers_cost_more(base: Prices, tiers: tuple[PriceTier, ...]) -> bool:
    """Every tier prices every component the base prices above them, so a call in a tier
    always costs more than the same tokens at base prices."""
    for tier in tiers:
        for name in _PRICE_FIELDS:
            low, high = getattr(base, name), getattr(tier.prices, name)
            if (low is None) != (high is None) or (low is not None and not high > low):
                return False
    return bool(tiers)


def _recorded_below_tiers(
    row: Any, source: ModelInfo, target: ModelInfo, ratio: float, day: datetime | None
) -> bool:
    """Whether the group's recorded cost proves that none of its calls reached a tier of
    ``source`` (it equals the base-price cost of its tokens to within the per-call rounding
    of stored costs), and so, replayed, none reaches a tier of ``target``."""
    if row.unpriced_calls or source.prices is None or not _steady(source, day):
        return False
    period = source.period_at(day)
    if not _tiers_cost_more(period.prices, period.tiers):
        return False
    if period.tiers[0].above_input_tokens * ratio > _tiers(target, day)[0].above_input_tokens:
        return False
    try:
        base = _price(_usage_of(row), source, None, False, day).total
    except PricingMissingError:
        return False
    return bool(abs(base - row.cost) <= row.calls * _NANO)


def _from_rollup(
    row: Any, source: ModelInfo, dest: ModelInfo, ratio: float, day: datetime | None
) -> bool:
    """Whether the row's total can be priced at once, exactly: one set of prices all day,
    and no call can reach a price tier (or the recorded cost proves none did)."""
    if not _steady(dest, day):
        return False
    if not _tier_reachable(source, dest, ratio, day):
        return True
    if row.input * ratio <= _tiers(dest, day)[0].above_input_tokens:
        return True  # no call holds more input than its whole day
    return _recorded_below_tiers(row, source, dest, ratio, day)


# ----------------------------------------------------------------------------- replay
@dataclass
class _Group:
    calls: int = 0
    unpriced: int = 0
    tokens_before: int = 0
    tokens_after: int = 0
    cost_before: Decimal = _ZERO
    cost_after: Decimal = _ZERO
    components: dict[str, Decimal] = field(default_factory=lambda: defaultdict(Decimal))


def replay(
    ledger: Any,
    scenario: Scenario,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    where: Mapping[str, Any] | None = None,
    by: Sequence[str] = ("model",),
    catalog: Catalog | None = None,
) -> Replay:
    """Re-price the ledger's calls in ``[since, until)`` (filtered by ``where``) under
    ``scenario``; one :class:`ReplayRow` per ``by`` group, costliest replay first.

    Raises ``ConfigurationError`` when ``scenario.model`` has no known price.
    """
    if catalog is None:
        from tokenward.catalog import default_catalog

        catalog = default_catalog()
    by = tuple(by)
    target: ModelInfo | None = None
    if scenario.model is not None:
        target = catalog.find(scenario.model)
        if target is None or target.prices is None:
            raise ConfigurationError(
                f"cannot replay on {scenario.model!r}: the catalog has no price for it; pick a "
                "model from `tokenward models`, or register its prices with catalog.register(...)"
            )
    group_dims = tuple(dict.fromkeys((*by, "model", "kind")))
    where_d = dict(where) if where else None
    rows = ledger.timeseries("day", since=since, until=until, by=group_dims, where=where_d)

    infos: dict[str, ModelInfo] = {}
    ratios: dict[tuple[str, str], TokenRatio] = {}
    no_batch: set[str] = set()
    per_call: dict[tuple[str, ...], list[Any]] = {}
    stored: list[bool] = []  # whether the ledger keeps content, looked at once

    def info_of(model: str) -> ModelInfo:
        info = infos.get(model)
        if info is None:
            info = infos[model] = catalog.lookup(model)
        return info

    def plan(row: Any) -> tuple[ModelInfo, ModelInfo, TokenRatio]:
        source = info_of(row.dims["model"] or "unknown")
        dest = source if target is None or row.dims["kind"] == "embedding" else target
        key = (source.name, dest.name)
        r = ratios.get(key)
        if r is None:
            if source.name == dest.name:
                r = TokenRatio(source.name, dest.name, 1.0, "same model", True)
            elif scenario.token_ratio is not None:
                r = TokenRatio(source.name, dest.name, scenario.token_ratio, "given", True)
            else:
                if not stored:
                    stored.append(_content_stored(ledger, since, until))
                r = _ratio(ledger, source, dest, catalog, (since, until), stored[0])
            ratios[key] = r
        return source, dest, r

    groups: dict[tuple[str | None, ...], _Group] = {}
    for row in rows:
        source, dest, r = plan(row)
        gkey = tuple(row.dims[d] for d in by)
        g = groups.get(gkey)
        if g is None:
            g = groups[gkey] = _Group()
        g.calls += row.calls
        g.unpriced += row.unpriced_calls
        g.cost_before += row.cost
        g.tokens_before += row.tokens
        if dest.prices is None:  # unknown source model replayed as itself: cannot price
            continue
        if not _from_rollup(row, source, dest, r.ratio, row.bucket):
            key = (row.bucket, row.dims["model"] or "unknown", row.dims["kind"])
            per_call.setdefault(key, []).append(row)
            continue
        _add(g, _scaled(_usage_of(row), r.ratio), dest, None, scenario, no_batch, row.bucket)

    if per_call:
        _replay_per_call(
            ledger, scenario, per_call, groups, by, since, until, where_d, plan, no_batch
        )

    out_rows = []
    total_before = total_after = _ZERO
    calls = unpriced = 0
    components: dict[str, Decimal] = defaultdict(Decimal)
    for gkey, g in groups.items():
        comparable = g.unpriced == 0
        out_rows.append(
            ReplayRow(
                dims=dict(zip(by, gkey)),
                calls=g.calls,
                unpriced_calls=g.unpriced,
                tokens_before=g.tokens_before,
                tokens_after=g.tokens_after,
                cost_before=g.cost_before if comparable else None,
                cost_after=g.cost_after,
                components_after=dict(g.components),
            )
        )
        calls += g.calls
        unpriced += g.unpriced
        if comparable:
            total_before += g.cost_before
            total_after += g.cost_after
            for k, v in g.components.items():
                components[k] += v
    out_rows.sort(key=lambda r: (-r.cost_after, tuple(str(v) for v in r.dims.values())))
    notes = []
    if no_batch:
        notes.append(
            f"no batch prices for {', '.join(sorted(no_batch))}: priced at their normal prices"
        )
    if unpriced:
        notes.append(
            f"{unpriced:,} calls on models without a known price have no recorded cost: "
            "their groups are shown but left out of the totals"
        )
    used = sorted(ratios.values(), key=lambda t: (t.source, t.target))
    return Replay(
        scenario=scenario,
        since=since,
        until=until,
        by=by,
        rows=out_rows,
        calls=calls,
        unpriced_calls=unpriced,
        cost_before=total_before,
        cost_after=total_after,
        components_after=dict(components),
        ratios=[t for t in used if t.basis != "same model"],
        estimated=any(not t.exact for t in used),
        per_call_groups=len(per_call),
        notes=notes,
    )


def _add(
    g: _Group,
    usage: Usage,
    dest: ModelInfo,
    tier: int | None,
    scenario: Scenario,
    no_batch: set[str],
    at: datetime | None,
) -> None:
    usage = _with_cache(usage, scenario, dest, at)
    try:
        breakdown = _price(usage, dest, tier, scenario.batch, at)
    except PricingMissingError:
        if not scenario.batch:
            raise
        no_batch.add(dest.name)
        breakdown = _price(usage, dest, tier, False, at)
    g.tokens_after += usage.input + usage.output
    g.cost_after += breakdown.total
    for k, v in breakdown.components().items():
        if v:
            g.components[k] += v


def _replay_per_call(
    ledger: Any,
    scenario: Scenario,
    per_call: Mapping[tuple[Any, ...], list[Any]],
    groups: dict[tuple[str | None, ...], _Group],
    by: tuple[str, ...],
    since: datetime | None,
    until: datetime | None,
    where: dict[str, Any] | None,
    plan: Callable[[Any], tuple[ModelInfo, ModelInfo, TokenRatio]],
    no_batch: set[str],
) -> None:
    """Sum the calls of ``per_call``'s (day, model, kind) groups per replayed price tier and
    price period, then price each sum at once (pricing is linear within a tier).

    Where the target's prices hold all day and the store can filter on input tokens
    (``events_with_input``), only the calls whose replayed input could exceed the first
    tier are read; the rest of the group (its summary row minus those calls) is at base
    prices. Otherwise every call of the group's day is read; per call, only its tier is
    decided. Both give the same sums, so the same costs."""
    plans: dict[tuple[str, str], tuple[ModelInfo, float]] = {}
    sums: dict[tuple[Any, ...], list[int]] = {}
    moments: dict[tuple[Any, ...], tuple[ModelInfo, datetime]] = {}

    def planned(model: str, kind: str) -> tuple[ModelInfo, float]:
        p = plans.get((model, kind))
        if p is None:
            _, dest, r = plan(_Dims({"model": model, "kind": kind}))
            p = plans[(model, kind)] = (dest, r.ratio)
        return p

    def accumulate(
        key: tuple[Any, ...], counts: Sequence[int], dest: ModelInfo, at: datetime
    ) -> None:
        acc = sums.get(key)
        if acc is None:
            acc = sums[key] = [0] * len(TOKEN_FIELDS)
            moments[key] = (dest, at)  # a moment of that price period
        for i, n in enumerate(counts):
            acc[i] += n

    def tier_key(e: Any, group: tuple[str | None, ...]) -> tuple[tuple[Any, ...], ModelInfo]:
        dest, ratio = planned(e.model, e.kind)
        period = dest.period_at(e.timestamp)
        tier = None
        scaled_input = round(e.usage.input * ratio)
        for t in period.tiers:  # ascending: the highest exceeded applies
            if scaled_input > t.above_input_tokens:
                tier = t.above_input_tokens
        return (group, dest.name, tier, period, ratio), dest

    # the rows read call by call: a (day, model, kind) of ``per_call`` may also have rows of
    # other ``by`` groups, priced from their totals already
    wanted = {
        (*gkey, tuple(row.dims[d] for d in by)) for gkey, rows in per_call.items() for row in rows
    }

    filtered: Callable[..., Iterable[Any]] | None = getattr(ledger, "events_with_input", None)
    split: dict[tuple[Any, ...], list[Any]] = {}  # read only the calls that may reach a tier
    whole: dict[datetime, set[str]] = defaultdict(set)  # days read call by call
    for gkey, rows in per_call.items():
        day, model, kind = gkey
        if (
            filtered is not None
            and rows[0].dims["model"] is not None
            and kind is not None
            and _steady(planned(model, kind)[0], day)
        ):
            split[gkey] = rows
        else:
            whole[day].add(model)

    def window(day: datetime) -> tuple[datetime, datetime, dict[str, Any]]:
        lo = day if since is None or since < day else since
        hi = day + _DAY if until is None or until > day + _DAY else until
        return lo, hi, dict(where or {})

    for day in sorted(whole):
        lo, hi, query = window(day)
        query["model"] = sorted(whole[day])
        for e in ledger.events(since=lo, until=hi, where=query):
            group = _group_of(e, by)
            if (day, e.model, e.kind, group) not in wanted or (day, e.model, e.kind) in split:
                continue
            key, dest = tier_key(e, group)
            accumulate(key, _counts(e.usage), dest, e.timestamp)

    if split:
        # per (day, model, kind, by group): [calls, *token counts] read one by one
        taken: dict[tuple[Any, ...], list[int]] = {}
        days: dict[datetime, dict[str, int]] = defaultdict(dict)
        for day, model, kind in split:
            dest, ratio = planned(model, kind)
            tiers = _tiers(dest, day)
            if tiers:  # else no call of it reaches a tier: its row holds them all
                need = _min_input(tiers[0].above_input_tokens, ratio)
                days[day][model] = min(need, days[day].get(model, need))
        assert filtered is not None  # split is empty without it
        reads: list[tuple[datetime, datetime, dict[str, Any], int]] = []
        if len(days) <= _DAYS_READ_APART:
            for day in sorted(days):
                lo, hi, query = window(day)
                query["model"] = sorted(days[day])
                reads.append((lo, hi, query, min(days[day].values())))
        elif days:  # one read from the first of those days to the last (the store may scan)
            lo, _, query = window(min(days))
            hi = window(max(days))[1]
            query["model"] = sorted({m for needs in days.values() for m in needs})
            reads.append((lo, hi, query, min(n for needs in days.values() for n in needs.values())))
        for lo, hi, query, need in reads:
            for e in filtered(need, lo, hi, query):
                utc = e.timestamp.astimezone(timezone.utc)
                day = utc.replace(hour=0, minute=0, second=0, microsecond=0)
                row_key = (day, e.model, e.kind)
                group = _group_of(e, by)
                if row_key not in split or (*row_key, group) not in wanted:
                    continue
                key, dest = tier_key(e, group)
                counts: Sequence[int] = _counts(e.usage)
                accumulate(key, counts, dest, e.timestamp)
                t = taken.setdefault((*row_key, key[0]), [0] * (1 + len(TOKEN_FIELDS)))
                t[0] += 1
                for i, n in enumerate(counts, 1):
                    t[i] += n
        for (day, model, kind), rows in split.items():
            dest, ratio = planned(model, kind)
            period = dest.period_at(day)
            for row in rows:
                group = tuple(row.dims[d] for d in by)
                read = taken.get((day, model, kind, group))
                if read is not None and read[0] == row.calls:
                    continue  # every call of the row was read one by one
                rest = [getattr(row, f) for f in TOKEN_FIELDS]
                if read is not None:
                    rest = [n - m for n, m in zip(rest, read[1:], strict=True)]
                accumulate((group, dest.name, None, period, ratio), rest, dest, row.bucket)

    for key, acc in sums.items():
        dest, at = moments[key]
        usage = _scaled(_usage_from(acc), key[4])
        _add(groups[key[0]], usage, dest, key[2], scenario, no_batch, at)


def _min_input(threshold: int, ratio: float) -> int:
    """The fewest source input tokens ``n`` whose replayed count ``round(n * ratio)`` exceeds
    ``threshold`` (that count grows with ``n``, so every call with fewer stays below)."""
    lo, hi = 0, max(1, math.ceil((threshold + 1) / ratio))
    while round(hi * ratio) <= threshold:
        hi *= 2
    while lo < hi:  # the first n in [lo, hi] above the threshold
        mid = (lo + hi) // 2
        if round(mid * ratio) > threshold:
            hi = mid
        else:
            lo = mid + 1
    return lo


_counts = operator.attrgetter(*TOKEN_FIELDS)


def _usage_from(counts: list[int]) -> Usage:
    """The Usage of counts in ``TOKEN_FIELDS`` order."""
    i, o, cr, w5, w1, r, ai, ao, ii = counts
    return Usage(
        input=i, output=o, cache_read=cr, cache_write_5m=w5, cache_write_1h=w1, reasoning=r,
        audio_input=ai, audio_output=ao, image_input=ii,
    )  # fmt: skip


def _group_of(e: Any, by: tuple[str, ...]) -> tuple[str | None, ...]:
    """The ``by`` dimensions of an event, as a summary row states them."""
    out = []
    for dim in by:
        value = (e.tags or {}).get(dim[4:]) if dim.startswith("tag:") else getattr(e, dim)
        out.append(None if value is None else str(value))
    return tuple(out)


class _Dims:
    """A summary-row look-alike (``row.dims[...]``) for :func:`replay`'s ``plan``."""

    __slots__ = ("dims",)

    def __init__(self, dims: Mapping[str, str]) -> None:
        self.dims = dims
