"""Report data and its table / JSON / CSV renderings (used by ``tokenward report`` and the demo).

:func:`build_report` queries a ledger once and returns a plain :class:`ReportData`
(totals, rows grouped by the requested dimensions, per-model rows, a daily series,
analytics). Renderers only format that object, so other formats (HTML) can reuse it:
``render(data, "table" | "json" | "csv")``; :func:`report_dict` is the JSON-ready form.

Analytics are derived from ledger aggregates; every money figure that needs prices
(cache savings, cache-write break-even) goes through :func:`tokenward.cost.cost`.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta, timezone
from decimal import ROUND_HALF_EVEN, Decimal
from typing import TYPE_CHECKING, Any

from tokenward.ledger._base import DIMENSIONS
from tokenward.report._format import NA, ms, number, percent, plain, ratio, usd
from tokenward.usage import TOKEN_FIELDS

if TYPE_CHECKING:
    from rich.console import Console

    from tokenward.catalog import Catalog
    from tokenward.ledger import LedgerStore

__all__ = [
    "FORMATS",
    "GROUP_KEYS",
    "BudgetRow",
    "ReportData",
    "budget_table",
    "build_report",
    "csv_safe",
    "render",
    "report_dict",
    "rows_csv",
]

#: Output formats the renderers here support.
FORMATS = ("table", "json", "csv")
#: Formats rendered by other modules, imported on first use: ``name -> "module:function"``;
#: the function takes a :class:`ReportData` and returns the whole document as text.
LAZY_FORMATS: dict[str, str] = {"html": "tokenward.report._html:render_html"}
_RENDERERS: dict[str, Callable[[ReportData], str]] = {}


def register_format(name: str, render_fn: Callable[[ReportData], str]) -> None:
    """Add an output format (``render_fn(data) -> text``) to ``render`` and the CLI."""
    _RENDERERS[name] = render_fn


def available_formats() -> tuple[str, ...]:
    """Every format :func:`render` can produce in this installation."""
    import importlib.util

    out = list(FORMATS) + [n for n in _RENDERERS if n not in FORMATS]
    for name, target in LAZY_FORMATS.items():
        if name in out:
            continue
        try:
            if importlib.util.find_spec(target.split(":")[0]) is not None:
                out.append(name)
        except ImportError:
            pass
    return tuple(out)


def _renderer(fmt: str) -> Callable[[ReportData], str] | None:
    if fmt in _RENDERERS:
        return _RENDERERS[fmt]
    target = LAZY_FORMATS.get(fmt)
    if target is None:
        return None
    import importlib

    module, _, func = target.partition(":")
    fn: Callable[[ReportData], str] = getattr(importlib.import_module(module), func)
    _RENDERERS[fmt] = fn
    return fn


#: Dimensions a report can be grouped by (plus ``tag:<key>``): the ledger's columns.
GROUP_KEYS = DIMENSIONS
_TOKEN_FIELDS = TOKEN_FIELDS
_MILLION = 1_000_000
_PEAK_WINDOW = timedelta(days=7)


def valid_group_key(key: str) -> bool:
    """True for a dimension :func:`build_report` can group by."""
    return key in GROUP_KEYS or (key.startswith("tag:") and len(key) > 4)


@dataclass(frozen=True)
class BudgetRow:
    """Utilization of one budget for one scope key."""

    budget: str
    scope_key: str
    unit: str  #: "usd" or "tokens"
    mode: str
    window: str
    limit: Decimal | int
    spent: Decimal | int
    reserved: Decimal | int
    remaining: Decimal | int
    utilization: float  #: spent / limit (may exceed 1 for soft budgets)
    thresholds: tuple[float, ...]
    reset_at: datetime | None
    source: str  #: "store" (live status) or "ledger" (recomputed from recorded events)
    near_limit: bool = False  #: an alert threshold is crossed
    calls: int | None = None  #: calls counted in this window (live status only)


@dataclass
class ReportData:
    """Everything a report shows, as plain data (``SummaryRow`` objects from the ledger).

    ``daily`` has one row per day from the first day with events to the end of the range,
    days without events included (zero). ``budgets`` is filled when budgets were asked for
    (``budgets_requested``).
    """

    source: str
    since: datetime | None
    until: datetime | None
    by: tuple[str, ...]
    where: dict[str, str]
    generated_at: datetime
    totals: Any | None  # SummaryRow, or None when the range has no event
    rows: list[Any]
    models: list[Any]
    daily: list[Any]
    analytics: dict[str, Any] = field(default_factory=dict)
    budgets: list[BudgetRow] = field(default_factory=list)
    budgets_requested: bool = False


def _q(value: Decimal, places: int = 6) -> Decimal:
    return value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_EVEN)


def _ratio(num: float, den: float) -> float | None:
    return num / den if den else None


def build_report(
    ledger: LedgerStore,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    by: Sequence[str] = ("model",),
    where: Mapping[str, str] | None = None,
    source: str = "",
    catalog: Catalog | None = None,
    progress: Callable[[str], None] | None = None,
) -> ReportData:
    """Query ``ledger`` and compute the report (``progress(step)`` is called per query)."""
    step = progress or (lambda _s: None)
    where_d = dict(where or {})
    by_t = tuple(by)
    now = datetime.now(timezone.utc)
    step("totals")
    total_rows = ledger.summary(since=since, until=until, by=(), where=where_d)
    totals = total_rows[0] if total_rows else None
    step(f"by {','.join(by_t) or 'all'}")
    rows = ledger.summary(since=since, until=until, by=by_t, where=where_d) if by_t else total_rows
    step("by model")
    models = ledger.summary(since=since, until=until, by=("model",), where=where_d)
    step("daily series")
    daily = ledger.timeseries("day", since=since, until=until, where=where_d)
    if daily:
        last_day = (until or now) - timedelta(microseconds=1)
        daily = fill_buckets(daily, timedelta(days=1), end=last_day)
    step("analytics")
    data = ReportData(
        source=source,
        since=since,
        until=until,
        by=by_t,
        where=where_d,
        generated_at=now,
        totals=totals,
        rows=rows,
        models=models,
        daily=daily,
    )
    data.analytics = _analytics(ledger, data, catalog, now)
    return data


def fill_buckets(rows: list[Any], step: timedelta, end: datetime | None = None) -> list[Any]:
    """``rows`` (time buckets, ascending) with a zero row for every empty bucket from the first
    row up to the bucket holding ``end`` (default: the last row), so gaps show as zero."""
    if not rows:
        return rows
    from tokenward.ledger import SummaryRow

    zero: dict[str, Any] = {}
    for f in fields(SummaryRow):
        if f.name == "dims":
            zero[f.name] = {}
        elif f.name == "cost":
            zero[f.name] = Decimal(0)
        elif f.name != "bucket":
            zero[f.name] = 0.0 if f.name == "latency_ms_total" else 0
    by_start = {r.bucket: r for r in rows}
    out = []
    t = rows[0].bucket
    stop = rows[-1].bucket
    if end is not None:
        while stop + step <= end:
            stop += step
    while t <= stop:
        out.append(by_start.get(t) or SummaryRow(**zero, bucket=t))
        t += step
    return out


def _analytics(
    ledger: LedgerStore, data: ReportData, catalog: Catalog | None, now: datetime
) -> dict[str, Any]:
    """Derived figures, from the ledger's analytics helpers (one place for the maths)."""
    from tokenward.ledger import UsageStats, cache_report, peak_hour, trend

    totals = data.totals
    if totals is None or not totals.calls:
        return {"calls": 0}
    stats = UsageStats.from_row(totals)
    out: dict[str, Any] = {
        "calls": stats.calls,
        "success_rate": stats.success_rate,
        "error_rate": _ratio(totals.errors + totals.cancelled, totals.calls),
        "estimated_share": stats.estimated_share,
        "avg_cost_per_call": None
        if stats.avg_cost_per_call is None
        else _q(stats.avg_cost_per_call, 9),
        "avg_input_per_call": stats.avg_input_per_call,
        "avg_output_per_call": stats.avg_output_per_call,
        "input_output_ratio": stats.input_output_ratio,
        "avg_latency_ms": stats.avg_latency_ms,
        "cache_hit_rate": stats.cache_hit_rate,
        "reasoning_share_of_output": _ratio(totals.reasoning, totals.output),
        "tool_calls": totals.tool_calls,
    }
    where = data.where or None
    cache = cache_report(ledger, data.since, data.until, where, catalog=catalog)
    out["cache_savings_usd"] = _q(cache.read_savings, 6)
    out["cache_write_premium_usd"] = _q(cache.write_premium, 6)
    out["cache_net_savings_usd"] = _q(cache.net_savings, 6)
    out["cache_write_break_even_reads"] = {
        r.model: (None if r.break_even_reads is None else math.ceil(r.break_even_reads))
        for r in cache.per_model
        if r.cache_write_5m or r.cache_write_1h
    }
    if cache.unpriced_models:
        out["unpriced_models"] = list(cache.unpriced_models)
    # The busiest hour of the day over the most recent week of the range: hourly buckets
    # come from raw events (no rollup), so a bounded window keeps big reports fast.
    end = data.until or now
    peak_since = end - _PEAK_WINDOW
    if data.since is not None and data.since > peak_since:
        peak_since = data.since
    peak = peak_hour(ledger, peak_since, data.until, where, metric="cost")
    if peak is not None:
        out["peak_hour_window_days"] = round((end - peak_since).total_seconds() / 86400, 1)
        out["peak_hour_utc"] = peak.hour
        out["peak_hour_cost"] = _q(Decimal(peak.value))
        out["peak_hour_share"] = peak.share
    out["trend_cost_pct"] = None
    if data.since is not None:
        end = data.until or now
        if end > data.since:
            t = trend(ledger, end - data.since, "cost", now=end, where=where)
            out["trend_cost_pct"] = None if t.change_pct is None else round(t.change_pct * 100, 1)
            out["previous_period_cost"] = _q(Decimal(t.previous))
    return out


# ----------------------------------------------------------------------------- plain data
def _unpriced(row: Any) -> int:
    return int(row.unpriced_calls)


def _row_dict(row: Any) -> dict[str, Any]:
    """One summary row for machine formats: "errors" is failed + cancelled (as in the tables),
    with both parts alongside; money as an exact plain decimal string."""
    d: dict[str, Any] = dict(row.dims)
    d.update(
        calls=row.calls,
        errors=row.errors + row.cancelled,
        failed=row.errors,
        cancelled=row.cancelled,
        estimated=row.estimated,
    )
    for f in _TOKEN_FIELDS:
        d[f] = getattr(row, f)
    d["total_tokens"] = row.tokens
    d["tool_calls"] = row.tool_calls
    d["cost"] = plain(row.cost)
    d["unpriced_calls"] = _unpriced(row)
    avg = row.avg_latency_ms
    d["avg_latency_ms"] = None if avg is None else round(avg, 3)
    if row.bucket is not None:
        d["bucket"] = row.bucket.isoformat()
    return d


def _jsonable(value: Any) -> Any:
    if isinstance(value, Decimal):
        return plain(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, float):
        return round(value, 6)
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def budget_dict(row: BudgetRow) -> dict[str, Any]:
    """One budget row, JSON-ready (amounts as plain decimal strings, tokens as integers)."""
    return {
        "budget": row.budget,
        "scope_key": row.scope_key,
        "unit": row.unit,
        "mode": row.mode,
        "window": row.window,
        "limit": _jsonable(row.limit),
        "spent": _jsonable(row.spent),
        "reserved": _jsonable(row.reserved),
        "remaining": _jsonable(row.remaining),
        "utilization": round(row.utilization, 6),
        "near_limit": row.near_limit,
        "calls": row.calls,
        "thresholds": list(row.thresholds),
        "reset_at": row.reset_at.isoformat() if row.reset_at else None,
        "source": row.source,
    }


def report_dict(data: ReportData) -> dict[str, Any]:
    """The report as JSON-ready data (money as exact plain decimal strings)."""
    out = {
        "source": data.source,
        "since": data.since.isoformat() if data.since else None,
        "until": data.until.isoformat() if data.until else None,
        "generated_at": data.generated_at.isoformat(),
        "by": list(data.by),
        "where": dict(data.where),
        "totals": _row_dict(data.totals) if data.totals else None,
        "rows": [_row_dict(r) for r in data.rows],
        "models": [_row_dict(r) for r in data.models],
        "daily": [_row_dict(r) for r in data.daily],
        "analytics": _jsonable(data.analytics),
        "unpriced": unpriced_summary(data),
    }
    if data.budgets_requested:
        out["budgets"] = [budget_dict(b) for b in data.budgets]
    return out


#: A spreadsheet runs a cell starting with one of these as a formula (OWASP "CSV injection").
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_safe(value: Any) -> Any:
    """``value`` for a CSV cell: text that a spreadsheet would run as a formula is prefixed
    with ``'`` (so ``=HYPERLINK(...)`` stays text); numbers pass unchanged."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def rows_csv(data: ReportData) -> str:
    """The grouped rows as CSV (one header line, one line per group)."""
    buf = io.StringIO()
    dims = list(data.by)
    cols = [
        *dims,
        "calls",
        "errors",
        "failed",
        "cancelled",
        "estimated",
        *_TOKEN_FIELDS,
        "total_tokens",
        "tool_calls",
        "cost",
        "unpriced_calls",
        "avg_latency_ms",
    ]
    writer = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in data.rows:
        d = _row_dict(row)
        for k in dims:
            d[k] = "" if d.get(k) is None else csv_safe(str(d[k]))
        writer.writerow(d)
    return buf.getvalue()


def unpriced_summary(data: ReportData) -> dict[str, Any] | None:
    """``{"calls": N, "models": [...], "fix": "..."}`` when the range holds calls recorded
    without a price (cost unknown); ``None`` when every call was priced."""
    t = data.totals
    calls = _unpriced(t) if t is not None else 0
    if not calls:
        return None
    models = sorted(str(r.dims.get("model")) for r in data.models if _unpriced(r))
    return {"calls": calls, "models": models, "fix": UNPRICED_FIX}


#: What makes an unpriced model priced (shown wherever unpriced calls are reported).
UNPRICED_FIX = (
    "run `tokenward models update` for the latest prices, or register the model's price "
    "in a catalog overlay"
)


def unpriced_note(data: ReportData) -> str | None:
    """``"3 calls unpriced (models: a, b): run ..."`` or ``None``; costs shown exclude them."""
    u = unpriced_summary(data)
    if u is None:
        return None
    calls = u["calls"]
    return (
        f"{number(calls)} call{'s' if calls != 1 else ''} unpriced "
        f"(model{'s' if len(u['models']) != 1 else ''}: {', '.join(u['models'])}); "
        f"costs shown leave them out: {u['fix']}"
    )


# ----------------------------------------------------------------------------- rich tables
def _cost_cell(row: Any) -> str:
    """The priced cost, or n/a when no call of the row could be priced."""
    if _unpriced(row) and _unpriced(row) >= row.calls:
        return NA
    return usd(row.cost)


def _share(part: Decimal, whole: Decimal) -> str:
    return percent(part / whole) if whole else NA


def _period(data: ReportData) -> str:
    lo = data.since.strftime("%Y-%m-%d %H:%M") if data.since else "beginning"
    hi = data.until.strftime("%Y-%m-%d %H:%M") if data.until else "now"
    return f"{lo} -> {hi} UTC"


def _amount(value: Decimal | int, unit: str) -> str:
    return usd(value) if unit == "usd" else number(int(value))


def budget_table(rows: Sequence[BudgetRow], title: str = "Budgets") -> Any:
    """The rich table of budget rows (``tokenward report --budgets`` and ``budget show``)."""
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for col, j in (
        ("budget", "left"),
        ("scope", "left"),
        ("mode", "left"),
        ("window", "left"),
        ("spent", "right"),
        ("reserved", "right"),
        ("remaining", "right"),
        ("limit", "right"),
        ("used", "right"),
        ("resets (UTC)", "left"),
    ):
        table.add_column(col, justify=j)  # type: ignore[arg-type]
    for r in rows:
        used = percent(r.utilization) + (" !" if r.near_limit else "")
        reset = r.reset_at.strftime("%Y-%m-%d %H:%M") if r.reset_at else NA
        table.add_row(
            r.budget,
            r.scope_key,
            r.mode,
            r.window,
            _amount(r.spent, r.unit),
            _amount(r.reserved, r.unit),
            _amount(r.remaining, r.unit),
            _amount(r.limit, r.unit),
            used,
            reset,
        )
    return table


def tables(data: ReportData) -> list[Any]:
    """The rich renderables of the table report (for reuse by other front ends)."""
    from rich.table import Table
    from rich.text import Text

    out: list[Any] = []
    head = f"tokenward report  {_period(data)}"
    if data.source:
        head += f"  ({data.source})"
    if data.where:
        head += "  where " + ", ".join(f"{k}={v}" for k, v in data.where.items())
    out.append(Text(head, style="bold"))
    t = data.totals
    if t is None:
        out.append(Text("No events in this period."))
        if data.budgets:
            out.append(budget_table(data.budgets))
        return out

    totals = Table(title="Totals", title_justify="left")
    for col in (
        "calls",
        "errors",
        "input",
        "cache read",
        "cache write",
        "output",
        "reasoning",
        "tool calls",
        "cost",
    ):
        totals.add_column(col, justify="right")
    totals.add_row(
        number(t.calls),
        number(t.errors + t.cancelled),
        number(t.input),
        number(t.cache_read),
        number(t.cache_write),
        number(t.output),
        number(t.reasoning),
        number(t.tool_calls),
        _cost_cell(t),
    )
    out.append(totals)
    note = unpriced_note(data)
    if note:
        out.append(Text(note, style="yellow"))

    if data.by:
        grouped = Table(title=f"By {', '.join(data.by)}", title_justify="left")
        for d in data.by:
            grouped.add_column(d)
        for col in ("calls", "errors", "input", "output", "cache hit", "cost", "share"):
            grouped.add_column(col, justify="right")
        for r in data.rows:
            grouped.add_row(
                *(NA if r.dims.get(d) is None else str(r.dims[d]) for d in data.by),
                number(r.calls),
                number(r.errors + r.cancelled),
                number(r.input),
                number(r.output),
                percent(_ratio(r.cache_read, r.input)),
                _cost_cell(r),
                _share(r.cost, t.cost),
            )
        out.append(grouped)

    if data.by != ("model",) and data.models:
        per_model = Table(title="By model", title_justify="left")
        for col, j in (
            ("model", "left"),
            ("calls", "right"),
            ("input", "right"),
            ("cache read", "right"),
            ("output", "right"),
            ("reasoning", "right"),
            ("avg latency", "right"),
            ("cost", "right"),
            ("share", "right"),
        ):
            per_model.add_column(col, justify=j)  # type: ignore[arg-type]
        for r in data.models:
            per_model.add_row(
                str(r.dims.get("model") or NA),
                number(r.calls),
                number(r.input),
                number(r.cache_read),
                number(r.output),
                number(r.reasoning),
                ms(r.avg_latency_ms),
                _cost_cell(r),
                _share(r.cost, t.cost),
            )
        out.append(per_model)

    a = data.analytics
    ana = Table(title="Analytics", title_justify="left", show_header=False)
    ana.add_column("metric")
    ana.add_column("value", justify="right")
    ana.add_row("success rate", percent(a.get("success_rate")))
    ana.add_row("estimated events", percent(a.get("estimated_share")))
    ana.add_row("avg cost per call", usd(a.get("avg_cost_per_call")))
    ana.add_row(
        "avg input / output per call",
        f"{number(a.get('avg_input_per_call'))} / {number(a.get('avg_output_per_call'))}",
    )
    ana.add_row("input:output ratio", ratio(a.get("input_output_ratio")))
    ana.add_row("avg latency", ms(a.get("avg_latency_ms")))
    ana.add_row("cache hit rate (of input)", percent(a.get("cache_hit_rate")))
    ana.add_row("cache savings (reads)", usd(a.get("cache_savings_usd", Decimal(0))))
    if a.get("cache_write_premium_usd"):
        ana.add_row("cache write premium", usd(a["cache_write_premium_usd"]))
        ana.add_row("cache net savings", usd(a["cache_net_savings_usd"]))
    for model, hits in sorted(a.get("cache_write_break_even_reads", {}).items()):
        ana.add_row(
            f"cache write break-even ({model})",
            NA if hits is None else f"{hits} read{'s' if hits != 1 else ''}",
        )
    ana.add_row("reasoning share of output", percent(a.get("reasoning_share_of_output")))
    if "peak_hour_utc" in a:
        days = a.get("peak_hour_window_days")
        label = "peak hour (UTC)" if days is None else f"peak hour (UTC, last {days:g} days)"
        ana.add_row(label, f"{a['peak_hour_utc']:02d}:00 ({usd(a['peak_hour_cost'])})")
    trend = a.get("trend_cost_pct")
    if trend is not None:
        ana.add_row("cost vs previous period", f"{trend:+.1f}%")
    out.append(ana)

    if data.daily:
        peak = max(r.cost for r in data.daily) or Decimal(1)
        daily = Table(title="Per day", title_justify="left")
        for col, j in (
            ("day", "left"),
            ("calls", "right"),
            ("tokens", "right"),
            ("cost", "right"),
            ("", "left"),
        ):
            daily.add_column(col, justify=j)  # type: ignore[arg-type]
        for r in data.daily[-31:]:
            bar = "#" * max(1 if r.cost else 0, int(20 * r.cost / peak))
            daily.add_row(
                r.bucket.strftime("%Y-%m-%d"), number(r.calls), number(r.tokens), usd(r.cost), bar
            )
        out.append(daily)
    if data.budgets_requested:
        if data.budgets:
            out.append(
                budget_table(
                    data.budgets,
                    "Budgets (recomputed from the ledger)"
                    if all(b.source == "ledger" for b in data.budgets)
                    else "Budgets (live from the budget store)",
                )
            )
        else:
            out.append(Text("Budgets: no budget has spend in its current window."))
    return out


def render(data: ReportData, fmt: str = "table", *, console: Console | None = None) -> str | None:
    """Render ``data`` as ``fmt``.

    ``table`` prints to ``console`` when one is given (and returns None); every other
    case returns the text.
    """
    if fmt == "json":
        return json.dumps(report_dict(data), indent=2) + "\n"
    if fmt == "csv":
        return rows_csv(data)
    if fmt != "table":
        plug_in = _renderer(fmt)
        if plug_in is None:
            raise ValueError(
                f"unknown report format {fmt!r}; choose one of {', '.join(available_formats())}"
            )
        return plug_in(data)
    from rich.console import Console as _Console

    target = console or _Console(record=True, width=140, file=io.StringIO(), highlight=False)
    from rich.text import Text as _Text

    for part in tables(data):
        # lines of text are never broken by us (the header holds the ledger path, which is
        # copied into the next command); the terminal wraps them if it must
        target.print(part, soft_wrap=isinstance(part, _Text))
    if console is None:
        return target.export_text()
    return None
