"""The self-contained HTML report: one file, inline CSS and inline SVG, no scripts, no network.

``render_html(data)`` takes the :class:`~tokenward.report._data.ReportData` built by
:func:`~tokenward.report._data.build_report_data` (the plain table-report data works too; the
sections it lacks are left out). Every user-provided string (user ids, agents, models, tags,
conversation ids, budget names, the ledger path) is escaped with :func:`html.escape`, so a
label such as ``<script>alert(1)</script>`` renders as text. Money is formatted from
``Decimal`` without passing through floats. The Content-Security-Policy forbids scripts and
any network fetch, as a second line of defence.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from html import escape
from typing import Any

from tokenward.report import _charts
from tokenward.report._format import NA, number, percent, usd
from tokenward.report._tables import unpriced_note
from tokenward.report._whatif import whatif_html

__all__ = ["render_html"]

_CSS = """
:root{--fg:#1b2733;--muted:#5b6b7b;--line:#dde3ea;--card:#f6f8fa;--accent:#0072B2}
*{box-sizing:border-box}
body{font:14px/1.45 -apple-system,BlinkMacSystemFont,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;
color:var(--fg);margin:0;background:#fff}
main{max-width:1100px;margin:0 auto;padding:24px}
h1{font-size:22px;margin:0 0 4px}
h2{font-size:17px;margin:28px 0 10px;border-bottom:1px solid var(--line);padding-bottom:4px}
.meta{color:var(--muted);margin:0 0 16px}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(160px,1fr));gap:10px}
.card{background:var(--card);border:1px solid var(--line);border-radius:6px;padding:10px 12px}
.card .k{color:var(--muted);font-size:12px;text-transform:uppercase;letter-spacing:.04em}
.card .v{font-size:20px;font-weight:600;margin-top:2px}
.card .s{color:var(--muted);font-size:12px}
.grid2{display:grid;grid-template-columns:1fr 1fr;gap:24px}
@media (max-width:800px){.grid2{grid-template-columns:1fr}}
table{border-collapse:collapse;width:100%;font-size:13px}
th,td{padding:5px 8px;border-bottom:1px solid var(--line);text-align:left;vertical-align:top}
th{color:var(--muted);font-weight:600}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
.chart{display:block;max-width:100%}
.chart .tick,.chart .label,.chart .value,.chart .ytick,.chart .axis-label{font-size:11px;fill:var(--fg)}
.chart .ytick,.chart .axis-label{fill:var(--muted)}
.chart .value{font-size:10px}
.chart .seg-label{font-size:10px;fill:#fff}
.chart .axis{stroke:var(--muted)}
.chart .grid{stroke:var(--line);stroke-dasharray:2,3}
.legend span{display:inline-block;margin-right:14px;font-size:12px}
.legend i{display:inline-block;width:10px;height:10px;margin-right:4px;border-radius:2px}
.sugg{border:1px solid var(--line);border-left:4px solid var(--accent);border-radius:4px;
padding:8px 12px;margin:8px 0}
.sugg h3{font-size:14px;margin:0 0 4px}
.sugg .risk{font-size:11px;padding:1px 6px;border-radius:8px;background:var(--card);
border:1px solid var(--line);margin-left:6px}
.sugg .risk-high{background:#fde2e0}.sugg .risk-medium{background:#fff1d6}
.sugg dl{display:flex;flex-wrap:wrap;gap:2px 16px;margin:6px 0 0;font-size:12px;color:var(--muted)}
.sugg dt{font-weight:600}.sugg dd{margin:0 0 0 4px}
.empty{color:var(--muted)}
.unpriced{background:#fff1d6;border:1px solid #E69F00;border-radius:4px;padding:8px 12px}
footer{color:var(--muted);font-size:12px;margin-top:32px}
"""

_MAX_SUGGESTIONS = 25  #: the rest are summarized in one line

_COMPONENT_LABELS = {
    "input": "input (uncached)",
    "cache_read": "cache read",
    "cache_write": "cache write",
    "output": "output",
    "reasoning": "reasoning",
}


def _e(text: object) -> str:
    return escape(str(text), quote=True)


def _pct(value: float | None, places: int = 1) -> str:
    return percent(value, places)


def _n(value: int) -> str:
    return number(value)


def _dt(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value else NA


def _dim(value: str | None) -> str:
    return "(none)" if value is None else value


def _card(key: str, value: str, sub: str = "", test: str = "") -> str:
    attr = f' data-card="{_e(test)}"' if test else ""
    s = f'<div class="s">{_e(sub)}</div>' if sub else ""
    return (
        f'<div class="card"{attr}><div class="k">{_e(key)}</div>'
        f'<div class="v">{_e(value)}</div>{s}</div>'
    )


def _composition(row: Any) -> dict[str, int]:
    output = row.output - row.reasoning
    return {
        "input": max(0, row.input - row.cache_read - row.cache_write),
        "cache_read": row.cache_read,
        "cache_write": row.cache_write,
        "output": max(0, output),
        "reasoning": row.reasoning,
    }


def _cards(data: Any) -> str:
    t = data.totals
    a = data.analytics or {}
    trend = a.get("trend_cost_pct")
    prev = a.get("previous_period_cost")
    trend_txt = NA if trend is None else f"{trend:+.1f}%"
    if prev is None:
        trend_sub = "no previous period (give --since)"
    elif not prev:
        trend_sub = "no spend in the previous period"
    else:
        trend_sub = f"previous period {usd(prev)}"
    hit = None if not t.input else t.cache_read / t.input
    err = (t.errors + t.cancelled) / t.calls if t.calls else None
    cards = [
        _card("total cost", usd(t.cost), f"avg {usd(a.get('avg_cost_per_call'))} / call", "cost"),
        _card("calls", _n(t.calls), f"{_n(t.tool_calls)} tool calls", "calls"),
        _card("tokens", _n(t.tokens), f"{_n(t.input)} in / {_n(t.output)} out", "tokens"),
        _card(
            "error rate",
            _pct(err),
            f"{_n(t.errors)} failed, {_n(t.cancelled)} cancelled",
            "error-rate",
        ),
        _card(
            "cache hit rate",
            _pct(hit),
            f"saved {usd(a.get('cache_net_savings_usd'))}",
            "cache-hit-rate",
        ),
        _card("trend vs previous", trend_txt, trend_sub, "trend"),
    ]
    if a.get("peak_hour_utc") is not None:
        share = a.get("peak_hour_share")
        cards.append(
            _card(
                "peak hour (UTC)",
                f"{a['peak_hour_utc']:02d}:00",
                f"{usd(a.get('peak_hour_cost'))}" + (f", {_pct(share)} of spend" if share else ""),
                "peak-hour",
            )
        )
    return f'<section class="cards">{"".join(cards)}</section>'


def _unpriced(data: Any) -> str:
    note = unpriced_note(data)
    if note is None:
        return ""
    return f'<p class="unpriced" data-unpriced="{data.totals.unpriced_calls}">{_e(note)}</p>'


def _series(data: Any) -> str:
    rows = getattr(data, "series", None) or data.daily
    bucket = getattr(data, "series_bucket", "day")
    fmt = "%m-%d %H:00" if bucket == "hour" else "%Y-%m-%d"
    points = [(r.bucket.strftime(fmt), r.cost, usd(r.cost)) for r in rows]
    if not points:
        return '<p class="empty">No spend in this period.</p>'
    return _charts.bar_chart(
        "spend-over-time", points, axis_label=f"USD per {bucket}", tick_format=_tick_usd
    )


def _tick_usd(value: Decimal) -> str:
    """An axis value with the digits it has (``$0.02``, ``$0.0025``), at least cents."""
    exponent = value.normalize().as_tuple().exponent
    return usd(value, max(2, -exponent if isinstance(exponent, int) else 2))


def _hbars(name: str, rows: Sequence[Any], dim: str, limit: int = 12) -> str:
    if not rows:
        return '<p class="empty">No data.</p>'
    shown = list(rows[:limit])
    pts = [(_dim(r.dims.get(dim)), r.cost, usd(r.cost)) for r in shown]
    rest = rows[limit:]
    if rest:
        other = sum((r.cost for r in rest), Decimal(0))
        pts.append((f"{len(rest)} others", other, usd(other)))
    return _charts.hbar_chart(name, pts)


def _legend() -> str:
    items = "".join(
        f'<span><i style="background:{c}"></i>{_e(_COMPONENT_LABELS[k])}</span>'
        for k, c in _charts.PALETTE.items()
    )
    return f'<div class="legend">{items}</div>'


def _composition_section(data: Any) -> str:
    rows = [("all models", _composition(data.totals))]
    rows += [(_dim(r.dims.get("model")), _composition(r)) for r in data.models]
    t = _composition(data.totals)
    total = sum(t.values())
    cells = "".join(
        f'<td class="n">{_n(v)}</td><td class="n">{_pct(v / total if total else None)}</td>'
        for v in t.values()
    )
    heads = "".join(
        f'<th class="n">{_e(_COMPONENT_LABELS[k])}</th><th class="n">share</th>' for k in t
    )
    return (
        _charts.stacked_bars("token-composition", rows)
        + _legend()
        + f'<table class="composition"><tr>{heads}</tr><tr>{cells}</tr></table>'
    )


def _models_table(data: Any) -> str:
    total = data.totals.cost
    body = []
    for r in data.models:
        share = float(r.cost / total) if total else None
        hit = r.cache_read / r.input if r.input else None
        body.append(
            f"<tr><td>{_e(_dim(r.dims.get('model')))}</td><td class='n'>{_n(r.calls)}</td>"
            f"<td class='n'>{_n(r.input)}</td><td class='n'>{_n(r.output)}</td>"
            f"<td class='n'>{_pct(hit)}</td><td class='n'>{usd(r.cost)}</td>"
            f"<td class='n'>{_pct(share)}</td></tr>"
        )
    return (
        "<table><tr><th>model</th><th class='n'>calls</th><th class='n'>input</th>"
        "<th class='n'>output</th><th class='n'>cache hit</th><th class='n'>cost</th>"
        f"<th class='n'>share</th></tr>{''.join(body)}</table>"
    )


def _grouped(data: Any) -> str:
    """The rows grouped by ``--by`` when that is more than the charts already show."""
    if not data.by or tuple(data.by) in (("model",), ("user_id",), ("agent",)):
        return ""
    total = data.totals.cost
    heads = "".join(f"<th>{_e(d)}</th>" for d in data.by)
    body = []
    for r in data.rows[:50]:
        cells = "".join(f"<td>{_e(_dim(r.dims.get(d)))}</td>" for d in data.by)
        share = float(r.cost / total) if total else None
        body.append(
            f"<tr>{cells}<td class='n'>{_n(r.calls)}</td><td class='n'>{_n(r.tokens)}</td>"
            f"<td class='n'>{usd(r.cost)}</td><td class='n'>{_pct(share)}</td></tr>"
        )
    more = len(data.rows) - 50
    note = f"<p class='meta'>and {more} more groups</p>" if more > 0 else ""
    return (
        f"<h2>By {_e(', '.join(data.by))}</h2><table class='grouped'><tr>{heads}"
        "<th class='n'>calls</th><th class='n'>tokens</th><th class='n'>cost</th>"
        f"<th class='n'>share</th></tr>{''.join(body)}</table>{note}"
    )


def _conversations(data: Any) -> str:
    rows = getattr(data, "top_conversations", [])
    if not rows:
        return '<p class="empty">No conversations recorded (events without conversation_id).</p>'
    body = "".join(
        f"<tr><td>{_e(r.dims.get('conversation_id'))}</td><td class='n'>{_n(r.calls)}</td>"
        f"<td class='n'>{_n(r.input)}</td><td class='n'>{_n(r.output)}</td>"
        f"<td class='n'>{usd(r.cost)}</td></tr>"
        for r in rows
    )
    return (
        "<table class='conversations'><tr><th>conversation</th><th class='n'>calls</th>"
        "<th class='n'>input</th><th class='n'>output</th><th class='n'>cost</th></tr>"
        f"{body}</table>"
    )


def _amount(value: Any, unit: str) -> str:
    return usd(value) if unit == "usd" else f"{_n(int(value))} tokens"


def _budgets(data: Any) -> str:
    rows = getattr(data, "budgets", [])
    if not rows:
        if getattr(data, "budgets_requested", False):
            return "<h2>Budgets</h2><p class='empty'>No budget has spend in its current window.</p>"
        return ""
    body = []
    for r in rows:
        label = f"{r.budget} {r.scope_key}"
        marks = ", ".join(f"{t:.0%}" for t in r.thresholds)
        body.append(
            f"<tr data-budget='{_e(r.budget)}'><td>{_e(r.budget)}<br><small>{_e(r.mode)}, "
            f"{_e(r.window)}</small></td><td>{_e(r.scope_key)}</td>"
            f"<td>{_charts.utilization_bar(label, r.utilization, r.thresholds)}"
            f"<small>{_pct(r.utilization)} used; alerts at {_e(marks or 'none')}</small></td>"
            f"<td class='n'>{_amount(r.spent, r.unit)}</td>"
            f"<td class='n'>{_amount(r.reserved, r.unit)}</td>"
            f"<td class='n'>{_amount(r.remaining, r.unit)}</td>"
            f"<td class='n'>{_amount(r.limit, r.unit)}</td><td>{_e(_dt(r.reset_at))}</td></tr>"
        )
    sources = sorted({r.source for r in rows})
    note = (
        "live status from the budget store"
        if sources == ["store"]
        else "recomputed from the ledger over each budget's current window "
        "(pass --budget-store for live reservations)"
    )
    return (
        f"<h2>Budgets</h2><p class='meta'>{_e(note)}</p>"
        "<table class='budgets'><tr><th>budget</th><th>scope</th><th>utilization</th>"
        "<th class='n'>spent</th><th class='n'>reserved</th><th class='n'>remaining</th>"
        f"<th class='n'>limit</th><th>resets</th></tr>{''.join(body)}</table>"
    )


_PERCENT_EVIDENCE = ("_rate", "_share", "batch_discount")


def _evidence_value(key: str, v: Any) -> str:
    """One evidence number for people: money in dollars, fractions as percentages."""
    if v is None:
        return NA
    if isinstance(v, bool):
        return "yes" if v else "no"
    if key.endswith("_usd") and isinstance(v, (Decimal, int)):
        return usd(v)
    if key.endswith(_PERCENT_EVIDENCE) and isinstance(v, (Decimal, float, int)):
        return percent(v)
    if isinstance(v, Decimal):
        return f"{v:,f}" if v != v.to_integral_value() else number(int(v))
    if isinstance(v, float):
        return f"{v:,.2f}".rstrip("0").rstrip(".")
    if isinstance(v, int):
        return number(v)
    if isinstance(v, (list, tuple, set, frozenset)):
        return ", ".join(str(x) for x in v)
    return str(v)


def _suggestions(data: Any) -> str:
    items = getattr(data, "suggestions", [])
    if not items:
        return (
            '<p class="empty">No suggestions: nothing in this period crossed the '
            "advisor's thresholds.</p>"
        )
    out = []
    shown, rest = items[:_MAX_SUGGESTIONS], items[_MAX_SUGGESTIONS:]
    for s in shown:
        saving = s.estimated_monthly_savings_usd
        ev = "".join(
            f"<div><dt>{_e(k.replace('_', ' '))}</dt><dd>{_e(_evidence_value(k, v))}</dd></div>"
            for k, v in s.evidence.items()
        )
        out.append(
            f'<article class="sugg" data-kind="{_e(s.kind)}"><h3>{_e(s.title)}'
            f'<span class="risk risk-{_e(s.risk)}">risk: {_e(s.risk)}</span></h3>'
            f"<p>{_e(s.detail)}</p>"
            f"<p><strong>Estimated monthly savings:</strong> "
            f"{_e(usd(saving, 2) if saving is not None else 'not quantified')}</p>"
            f"<dl>{ev}</dl></article>"
        )
    if rest:
        more = sum((x.estimated_monthly_savings_usd or Decimal(0) for x in rest), Decimal(0))
        out.append(
            f"<p class='meta'>{len(rest)} smaller suggestions not shown "
            f"(together ~{_e(usd(more, 2))}/month); see <code>advise()</code>.</p>"
        )
    return "".join(out)


def render_html(data: Any) -> str:
    """The whole report as one self-contained HTML document (UTF-8 text)."""
    period_lo = _dt(data.since) if data.since else "beginning"
    period_hi = _dt(data.until) if data.until else "now"
    filters = ", ".join(f"{k}={v}" for k, v in (data.where or {}).items())
    meta = f"{period_lo} \u2192 {period_hi}"
    if filters:
        meta += f" \u00b7 where {filters}"
    if data.source:
        meta += f" \u00b7 {data.source}"
    head = (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "style-src 'unsafe-inline'; img-src data:\">"
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>tokenward report</title><style>{_CSS}</style></head><body><main>"
        f'<h1>tokenward report</h1><p class="meta">{_e(meta)}</p>'
    )
    foot = (
        f"<footer>Generated {_e(_dt(data.generated_at))} by tokenward. Costs are recorded "
        "prices (Decimal, exact); savings are estimates from catalog prices.</footer>"
        "</main></body></html>\n"
    )
    if data.totals is None:
        return head + '<p class="empty">No events in this period.</p>' + foot
    users = getattr(data, "users", [])
    agents = getattr(data, "agents", [])
    body = [
        _cards(data),
        _unpriced(data),
        "<h2>Spend over time</h2>",
        _series(data),
        "<div class='grid2'><section><h2>By model</h2>",
        _hbars("by-model", data.models, "model"),
        "</section><section><h2>By user</h2>",
        _hbars("by-user", users, "user_id") if users else '<p class="empty">No data.</p>',
        "</section></div>",
        "<div class='grid2'><section><h2>By agent</h2>",
        _hbars("by-agent", agents, "agent") if agents else '<p class="empty">No data.</p>',
        "</section><section><h2>Models</h2>",
        _models_table(data),
        "</section></div>",
        _grouped(data),
        "<h2>Token composition</h2>",
        _composition_section(data),
        _budgets(data),
        "<h2>Top conversations</h2>",
        _conversations(data),
        "<h2>Suggestions</h2>",
        _suggestions(data),
        whatif_html(getattr(data, "whatif", [])),
    ]
    return head + "".join(body) + foot
