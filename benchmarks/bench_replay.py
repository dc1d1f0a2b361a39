"""What-if replay over 1,000,000 events: ``tokenward.predict.replay`` reads the daily rollups.

The ledger is bulk-loaded the way ``bench_ledger.py`` does it (``bulk_load_sqlite``: rows
generated inside SQLite, then ``rebuild_rollups()``): 6 models (gpt-4o, gpt-4o-mini,
claude-sonnet-4, claude-haiku-4, gemini-2.5-pro, o3), 500 users, 4 agents, 90 days; then
costs are set to the catalog's prices (see :func:`load`).

Scenarios, each timed as the median of 3 (cold caches the first time: the tokenizer ratios
are measured once per model pair and process):

* ``model=gpt-4o-mini``: every chat call re-priced on gpt-4o-mini;
* ``cache-hit=0.8``: 80 % of every prompt read from the cache;
* ``batch``: batch prices;
* ``model=claude-sonnet-4-5, cache-hit=0.8``: Claude's >200k tier is reachable from
  gemini-2.5-pro's 1M window.

A tier applies to a whole call, so a day whose calls might reach one is priced from its
rollup only when its recorded cost proves that none did (it equals the base-price cost of
its tokens); the days holding one of the loaded >200k gemini calls are read call by call
(the "days read call by call" column).
* ``model=gpt-4o-mini`` by agent (another rollup).

Anchor (same run): the naive replay, every event read back and priced with ``cost()``, timed on
the first 100,000 events (quick: all) and scaled to the whole ledger. The rollup replay's total
is checked against the naive one on the quick ledger: equal to the nano-dollar, or within the
rounding of the cache split (the naive replay rounds 80 % of each prompt to whole tokens, the
rollup replay 80 % of each day's).

Run: ``python benchmarks/bench_replay.py`` (about a minute, most of it the 1M-event load)
or ``run(quick=True)`` (20,000 events).
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_ledger import bulk_load_sqlite

from tokenward.catalog import default_catalog
from tokenward.cost import cost
from tokenward.errors import PricingMissingError
from tokenward.ledger import SQLiteLedger
from tokenward.predict import Scenario, replay
from tokenward.predict._replay import _scaled, _with_cache

GOAL_S = 1.0
SCENARIOS: list[tuple[str, Scenario, tuple[str, ...]]] = [
    ("model=gpt-4o-mini", Scenario(model="gpt-4o-mini"), ("model",)),
    ("cache-hit=0.8", Scenario(cache_hit=0.8), ("model",)),
    ("batch", Scenario(batch=True), ("model",)),
    (
        "model=claude-sonnet-4-5, cache-hit=0.8",
        Scenario(model="claude-sonnet-4-5", cache_hit=0.8),
        ("model",),
    ),
    ("model=gpt-4o-mini, by agent", Scenario(model="gpt-4o-mini"), ("agent",)),
]


def _median(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    times, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def naive_replay(led: SQLiteLedger, scenario: Scenario, limit: int | None) -> tuple[Decimal, int]:
    """Every event read back and re-priced on its own (the anchor)."""
    catalog = default_catalog()
    ratios = replay(led, scenario, catalog=catalog).ratios  # the same token conversion
    by_source = {t.source: t.ratio for t in ratios}
    target = catalog.find(scenario.model) if scenario.model else None
    total, n = Decimal(0), 0
    for e in led.events(limit=limit):
        source = catalog.lookup(e.model)
        dest = target if target is not None and e.kind != "embedding" else source
        if dest.prices is None:  # an unknown model replayed as itself
            continue
        ratio = by_source.get(source.name, 1.0)
        usage = _with_cache(_scaled(e.usage, ratio), scenario, dest, e.timestamp)
        try:
            total += cost(usage, dest, batch=scenario.batch, at=e.timestamp).total
        except PricingMissingError:  # no batch price: replay keeps the normal one
            total += cost(usage, dest, at=e.timestamp).total
        n += 1
    return total, n


def _nanos_sql(info: Any) -> str:
    """SQL for a row's cost in nano-USD at ``info``'s prices (tier above 200k included)."""

    def at(prices: Any) -> str:
        def p(value: Any) -> int:
            return int((value if value is not None else prices.input) * 2000)  # half-nanos

        return (
            f"((input - cache_read) * {p(prices.input)} + cache_read * {p(prices.cache_read)}"
            f" + output * {p(prices.output)} + 1) / 2"
        )

    if not info.tiers:
        return at(info.prices)
    tier = info.tiers[0]
    return f"CASE WHEN input > {tier.above_input_tokens} THEN {at(tier.prices)} ELSE {at(info.prices)} END"


def load(path: str, n: int) -> None:
    """``bench_ledger``'s bulk load, made to look like a real ledger: cache reads capped at the
    prompt (its generator can draw more, which no provider reports), one gemini-2.5-pro call
    every tenth day above the 200k-token tier, every priced model's cost set to its catalog
    price (to the half nano-dollar; the generator draws random costs), rollups rebuilt."""
    bulk_load_sqlite(path, n)
    catalog = default_catalog()
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("UPDATE tokenward_events SET cache_read = input WHERE cache_read > input")
        conn.execute(
            "UPDATE tokenward_events SET input = 300000, cache_read = 100000 WHERE id IN ("
            "SELECT min(id) FROM tokenward_events WHERE model = 'gemini-2.5-pro' "
            "GROUP BY ts_us / 86400000000 HAVING (ts_us / 86400000000) % 10 = 0)"
        )
        for (model,) in conn.execute("SELECT DISTINCT model FROM tokenward_events").fetchall():
            info = catalog.find(model)
            if info is not None and info.prices is not None:
                conn.execute(
                    f"UPDATE tokenward_events SET cost_nanos = {_nanos_sql(info)} WHERE model = ?",
                    (model,),
                )
    conn.close()
    led = SQLiteLedger(path)
    led.rebuild_rollups()
    led.close()


def run(quick: bool = False) -> str:
    n = 20_000 if quick else 1_000_000
    n_anchor = n if quick else 100_000
    repeat = 3
    load_before = os.getloadavg()[0]
    tmp = tempfile.mkdtemp(prefix="tw-bench-replay-")
    rows = []
    try:
        path = os.path.join(tmp, "ledger.db")
        t = time.perf_counter()
        load(path, n)
        load_s = time.perf_counter() - t
        led = SQLiteLedger(path)
        for label, scenario, by in SCENARIOS:
            replay(led, scenario, by=by)  # measure tokenizer ratios once (cached per pair)
            took, result = _median(lambda s=scenario, b=by: replay(led, s, by=b), repeat)
            check = ""
            if quick and by == ("model",):
                naive_total, _ = naive_replay(led, scenario, None)
                priced = result.cost_after
                gap = abs(naive_total - priced) / naive_total if naive_total else Decimal(0)
                check = "equal" if gap == 0 else f"within {gap * 100:.4f} %"
            rows.append((label, took, result, check))
        anchor_s, (_, anchor_n) = _median(
            lambda: naive_replay(led, Scenario(model="gpt-4o-mini"), n_anchor), 1
        )
        led.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    anchor_full = anchor_s / max(anchor_n, 1) * n
    load_after = os.getloadavg()[0]
    lines = [
        "### What-if replay over the ledger (issue 19)",
        "",
        f"{n:,} events in SQLite (bulk-loaded in {load_s:.1f} s), 6 models, 90 days; load "
        f"average {load_before:.1f} before / {load_after:.1f} after. `replay()` reads the daily "
        f"rollups (median of {repeat}, tokenizer ratios already measured). Anchor: every event "
        f"read back and priced with `cost()`, {anchor_s:.2f} s for {anchor_n:,} events, "
        f"{anchor_full:.1f} s scaled to {n:,}. Goal: <= {GOAL_S:.0f} s.",
        "",
        "| scenario | replay | vs naive | (day, model) groups read call by call | recorded | replayed "
        "| change | goal |" + (" naive total |" if quick else ""),
        "|---|---:|---:|---:|---:|---:|---:|---|" + ("---|" if quick else ""),
    ]
    for label, took, r, check in rows:
        pct = f"{r.delta_pct:+.1f} %" if r.delta_pct is not None else "-"
        lines.append(
            f"| {label} | {took * 1000:,.1f} ms | {anchor_full / took:,.0f}x | "
            f"{r.per_call_groups} | ${r.cost_before:,.2f} | ${r.cost_after:,.2f} | {pct} | "
            f"{'met' if took <= GOAL_S else 'MISSED'} |" + (f" {check} |" if quick else "")
        )
    lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    print(run(quick="--quick" in sys.argv))
