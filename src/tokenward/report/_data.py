"""One report builder for every format: ledger (+ optional budgets) -> :class:`ReportData`.

:func:`build_report_data` runs :func:`tokenward.report._tables.build_report` (totals, grouped
rows, per-model rows, daily series, analytics — what the table/JSON/CSV formats show) and adds
what the HTML report draws: a spend series (hourly for ranges up to two days, else daily),
per-user and per-agent rows, the top conversations, budget utilization and the advisor's
suggestions. The result is a subclass of the table report's ``ReportData``, so every renderer
accepts it.

Budget utilization comes from the budget store when one is given (live: spent, reserved,
reset time, exactly what enforcement sees) and is otherwise recomputed from the ledger over
each budget's current window (calendar or rolling windows; ``source="ledger"``). Scoped
budgets (``scope="user_id"``) get one row per scope key seen in the ledger in that window,
most utilized first.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from tokenward.report._format import plain
from tokenward.report._tables import GROUP_KEYS, BudgetRow, budget_dict, build_report, fill_buckets
from tokenward.report._tables import ReportData as _BaseReportData

__all__ = ["BudgetRow", "ReportData", "budget_rows", "build_report_data"]

_COLUMN_DIMS = GROUP_KEYS  # plain ledger columns; anything else is a tag


@dataclass
class ReportData(_BaseReportData):
    """The table report's data plus what the HTML report draws."""

    series: list[Any] = field(default_factory=list)  #: SummaryRows per ``series_bucket``
    series_bucket: str = "day"
    users: list[Any] = field(default_factory=list)  #: SummaryRows by user_id, costliest first
    agents: list[Any] = field(default_factory=list)  #: SummaryRows by agent
    top_conversations: list[Any] = field(default_factory=list)
    suggestions: list[Any] = field(default_factory=list)  #: advisor ``Suggestion`` objects
    whatif: list[Any] = field(default_factory=list)  #: ``tokenward.predict.Replay`` per scenario
    notes: list[str] = field(default_factory=list)


def _ledger_where(where: Mapping[str, Iterable[str]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for key, values in where.items():
        dim = key if key in _COLUMN_DIMS or key.startswith("tag:") else f"tag:{key}"
        out[dim] = sorted(values)
    return out


def _dims_for(budget: Any, row_dims: Mapping[str, str | None]) -> dict[str, Any]:
    """Dimensions that make ``budget`` apply, for a ledger row of its scope."""
    dims: dict[str, Any] = {}
    tags: dict[str, str] = {}
    for key, values in budget.where.items():
        value = min(values)
        if key in _COLUMN_DIMS:
            dims[key] = value
        else:
            tags[key] = value
    for d in budget.scope:
        v = row_dims.get(d if d in _COLUMN_DIMS else f"tag:{d}")
        if d in _COLUMN_DIMS:
            dims[d] = v
        elif v is not None:
            tags[d] = v
    if tags:
        dims["tags"] = tags
    return dims


def budget_rows(
    ledger: Any,
    budgets: Sequence[Any],
    *,
    store: Any = None,
    now: datetime | None = None,
    max_keys: int = 20,
) -> list[BudgetRow]:
    """Utilization rows for ``budgets`` (``Budget`` objects): live from ``store`` when given,
    else recomputed from ``ledger`` over each budget's current window. Per-request budgets
    have no accumulated spend and are skipped; so are conversation windows without a store."""
    from tokenward.budgets import Budgets, MemoryBudgetStore

    now = now or datetime.now(timezone.utc)
    live = Budgets(*budgets, store=store) if store is not None else None
    calc = Budgets(*budgets, store=MemoryBudgetStore())  # spans and scope keys only
    out: list[BudgetRow] = []
    for b in budgets:
        kind = b.window.kind
        if kind == "request" or (kind == "conversation" and live is None):
            continue
        spans = b.spans(now)
        start = spans[0].start
        by = [d if d in _COLUMN_DIMS else f"tag:{d}" for d in b.scope]
        if kind == "conversation":
            by.append("conversation_id")
        where = _ledger_where(b.where)
        groups = ledger.summary(since=start, until=now, by=by, where=where or None)
        if not groups and not b.scope:
            groups = [None]
        rows: list[BudgetRow] = []
        for g in groups:
            dims = _dims_for(b, g.dims if g is not None else {})
            if b.missing == "skip" and not b.applies(dims):
                continue  # calls without the scope dimension are not subject to this budget
            if kind == "conversation" and g is not None:
                dims["conversation_id"] = g.dims.get("conversation_id")
            if live is not None:
                st = live.status(b.name, now=now, **dims)
                rows.append(
                    BudgetRow(
                        b.name,
                        st.scope_key,
                        st.unit,
                        st.mode,
                        st.window,
                        st.limit,
                        st.spent,
                        st.reserved,
                        st.remaining,
                        st.utilization,
                        b.thresholds,
                        st.reset_at,
                        "store",
                        near_limit=st.near_limit,
                        calls=st.calls,
                    )
                )
                continue
            key = b.scope_key(dims)
            limit = b.limit_for(key)
            spent_raw = (
                0
                if g is None
                else (
                    int((g.cost * Decimal(10) ** 9).to_integral_value())
                    if b.unit == "usd"
                    else g.tokens
                )
            )
            util = spent_raw / limit if limit else (1.0 if spent_raw else 0.0)
            reset = calc.status(b.name, now=now, **dims).reset_at
            rows.append(
                BudgetRow(
                    b.name,
                    key,
                    b.unit,
                    b.mode,
                    b.window.describe(),
                    b.to_unit(limit),
                    b.to_unit(spent_raw),
                    b.to_unit(0),
                    b.to_unit(max(0, limit - spent_raw)),
                    util,
                    b.thresholds,
                    reset,
                    "ledger",
                    near_limit=any(util >= t for t in b.thresholds),
                )
            )
        rows.sort(key=lambda r: (-r.utilization, r.scope_key))
        out.extend(rows[:max_keys])
    return out


def build_report_data(
    ledger: Any,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    by: Sequence[str] = ("model",),
    where: Mapping[str, str] | None = None,
    source: str = "",
    catalog: Any = None,
    budgets: Sequence[Any] = (),
    budget_store: Any = None,
    advice: bool = True,
    scenarios: Sequence[Any] = (),
    top_n: int = 10,
    now: datetime | None = None,
    progress: Callable[[str], None] | None = None,
) -> ReportData:
    """Query ``ledger`` once per section and return everything every format needs.

    ``budgets`` are ``Budget`` objects (e.g. from a budgets file); ``budget_store`` makes their
    utilization live. ``advice=False`` skips the advisor (it reads the events of the range).
    ``scenarios`` (``tokenward.predict.Scenario``) are replayed for the "What if" section.
    """
    step = progress or (lambda _s: None)
    base = build_report(
        ledger,
        since=since,
        until=until,
        by=by,
        where=where,
        source=source,
        catalog=catalog,
        progress=step,
    )
    data = ReportData(**{f.name: getattr(base, f.name) for f in fields(_BaseReportData)})
    where_d = dict(where or {})
    now = now or base.generated_at
    step("spend series")
    lo = since or (base.daily[0].bucket if base.daily else None)
    hi = until or now
    if lo is not None and hi - lo <= timedelta(days=2):
        data.series_bucket = "hour"
        data.series = fill_buckets(
            ledger.timeseries("hour", since=since, until=until, where=where_d), timedelta(hours=1)
        )
    else:
        data.series = list(base.daily)
    step("users and agents")
    data.users = ledger.summary(since=since, until=until, by=("user_id",), where=where_d)
    data.agents = ledger.summary(since=since, until=until, by=("agent",), where=where_d)
    step("top conversations")
    convs = ledger.top(
        top_n + 1, "conversation_id", "cost", since=since, until=until, where=where_d
    )
    data.top_conversations = [r for r in convs if r.dims.get("conversation_id")][:top_n]
    if budgets:
        step("budgets")
        data.budgets = budget_rows(ledger, budgets, store=budget_store, now=now)
        data.budgets_requested = True
    if scenarios and base.totals is not None:
        step("what if")
        from tokenward.predict import replay

        data.whatif = [
            replay(ledger, sc, since=since, until=until, where=where_d or None, catalog=catalog)
            for sc in scenarios
        ]
    if advice and base.totals is not None:
        step("advisor")
        from tokenward.report._advisor import advise

        data.suggestions = advise(
            ledger, catalog=catalog, since=since, until=until, where=where_d or None, now=now
        )
    return data


def extras_dict(data: ReportData) -> dict[str, Any]:
    """The sections this builder adds, JSON-ready (money as exact plain decimal strings):
    ``suggestions``, ``budgets``, ``top_conversations``, ``users``, ``agents``, ``whatif``."""
    from tokenward.report._whatif import whatif_dict

    def row(r: Any) -> dict[str, Any]:
        d: dict[str, Any] = dict(r.dims)
        d.update(calls=r.calls, input=r.input, output=r.output, tokens=r.tokens, cost=plain(r.cost))
        return d

    return {
        "suggestions": [s.to_dict() for s in data.suggestions],
        "budgets": [budget_dict(b) for b in data.budgets],
        "top_conversations": [row(r) for r in data.top_conversations],
        "users": [row(r) for r in data.users],
        "agents": [row(r) for r in data.agents],
        "whatif": [whatif_dict(r) for r in data.whatif],
    }
