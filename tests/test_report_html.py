"""The HTML report and its data: sections, chart data points, exact money, escaping, budgets."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from html import escape
from html.parser import HTMLParser

import pytest
from typer.testing import CliRunner

from tokenward.budgets import Budget, Budgets, MemoryBudgetStore
from tokenward.cli import get_app
from tokenward.cost import cost
from tokenward.ledger import MemoryLedger, UsageEvent, open_ledger
from tokenward.report import ReportData, build_report_data, render_html
from tokenward.report._charts import bar_chart
from tokenward.report._format import usd
from tokenward.report._tables import build_report
from tokenward.usage import Usage

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
NOW = T0 + timedelta(days=4)
XSS_USER = "<script>window.__xss = 1; alert(1)</script>"
ATTR_USER = '" onmouseover="window.__xss2=1" x="'
XSS_AGENT = '<img src=x onerror="window.__xss3=1">'
XSS_CONV = "</title><script>window.__xss4=1</script>"


def _event(
    i: int, day: int, model: str, user: str, agent: str, conv: str, usage: Usage, status: str = "ok"
) -> UsageEvent:
    return UsageEvent(
        id=f"e{i}",
        timestamp=T0 + timedelta(days=day, hours=i % 20),
        model=model,
        provider=None,
        usage=usage,
        cost=cost(usage, model).total,
        user_id=user,
        agent=agent,
        conversation_id=conv,
        status=status,  # type: ignore[arg-type]
    )


def make_events() -> list[UsageEvent]:
    """Events on Jan 1, 2 and 4 (none on Jan 3), two models, hostile labels."""
    gpt = "gpt-4o"
    claude = "claude-sonnet-4-5"
    return [
        _event(
            1,
            0,
            gpt,
            "alice",
            "support",
            "c-alice",
            Usage(input=10_000, output=1_000, cache_read=4_000),
        ),
        _event(2, 0, gpt, "alice", "support", "c-alice", Usage(input=12_000, output=500)),
        _event(
            3,
            1,
            claude,
            XSS_USER,
            XSS_AGENT,
            XSS_CONV,
            Usage(input=20_000, output=2_000, cache_read=5_000, cache_write_5m=3_000),
        ),
        _event(4, 1, claude, ATTR_USER, "research", "c-attr", Usage(input=8_000, output=800)),
        _event(
            5, 3, gpt, "bob", "support", "c-bob", Usage(input=5_000, output=3_000, reasoning=1_000)
        ),
        _event(6, 3, gpt, "bob", "support", "c-bob", Usage(input=1_000, output=0), status="error"),
    ]


def make_ledger() -> MemoryLedger:
    ledger = MemoryLedger()
    ledger.record_many(make_events())
    return ledger


BUDGETS = [
    Budget(
        "per-user-monthly", limit_usd="0.10", window="month", scope="user_id", thresholds=(0.5, 0.9)
    ),
    Budget("all-tokens", limit_tokens=200_000, window="month", mode="soft"),
    Budget("per-call", limit_usd="1", window="request"),  # no accumulated spend: not shown
]


def make_data(**kw: object) -> ReportData:
    return build_report_data(
        make_ledger(),
        since=T0,
        until=NOW,
        by=("user_id",),
        budgets=BUDGETS,
        now=NOW,
        source="test <ledger>",
        **kw,
    )  # type: ignore[arg-type]


def charts(html: str) -> dict[str, int]:
    return {
        m.group(1): int(m.group(2))
        for m in re.finditer(r'data-chart="([^"]+)" data-points="(\d+)"', html)
        if m.group(1) != "budget"
    }


def points(html: str, chart: str) -> list[tuple[str, str]]:
    """(data-label, data-value) of the points of one chart, in order."""
    start = html.index(f'data-chart="{chart}"')
    body = html[start : html.index("</svg>", start)]
    return re.findall(r'class="point[^"]*" data-label="([^"]*)" data-value="([^"]*)"', body)


def test_usd_is_exact_from_decimal() -> None:
    assert usd(Decimal("1234.565")) == "$1,234.56"  # half-even, no float
    assert usd(Decimal("1234.575")) == "$1,234.58"
    assert usd(Decimal("0.012345")) == "$0.0123"
    assert usd(Decimal(0)) == "$0.00"
    assert usd(Decimal("-2.5")) == "-$2.50"
    assert usd(Decimal("0.1") + Decimal("0.2")) == "$0.3000"  # under $1: four places
    assert usd(Decimal("0.3"), 2) == "$0.30"


def test_data_has_every_section() -> None:
    data = make_data()
    events = make_events()
    total = sum((e.cost for e in events), Decimal(0))
    assert data.totals.cost == total and data.totals.calls == 6
    assert data.series_bucket == "day"
    assert [r.bucket.day for r in data.series] == [1, 2, 3, 4]  # Jan 3 filled with zero
    assert data.series[2].cost == 0 and data.series[2].calls == 0
    assert [r.dims["user_id"] for r in data.users][:1] == [XSS_USER]  # costliest first
    assert {r.dims["agent"] for r in data.agents} == {"support", "research", XSS_AGENT}
    assert data.top_conversations[0].dims["conversation_id"] == XSS_CONV
    assert len(data.top_conversations) == 4
    assert all(isinstance(s.title, str) for s in data.suggestions)


def test_budget_rows_from_the_ledger() -> None:
    rows = make_data().budgets
    per_user = [r for r in rows if r.budget == "per-user-monthly"]
    assert next(r.scope_key for r in per_user).startswith("user_id=")
    assert len(per_user) == 4 and all(r.source == "ledger" for r in rows)
    alice = next(r for r in per_user if r.scope_key == "user_id=alice")
    alice_cost = sum((e.cost for e in make_events() if e.user_id == "alice"), Decimal(0))
    assert alice.spent == alice_cost and alice.limit == Decimal("0.10")
    assert alice.remaining == max(Decimal(0), Decimal("0.10") - alice_cost)
    assert alice.utilization == pytest.approx(float(alice_cost / Decimal("0.10")))
    assert alice.reset_at == datetime(2026, 2, 1, tzinfo=timezone.utc)
    assert alice.thresholds == (0.5, 0.9)
    tokens = next(r for r in rows if r.budget == "all-tokens")
    assert tokens.scope_key == "*" and tokens.spent == sum(e.usage.total for e in make_events())
    assert not [r for r in rows if r.budget == "per-call"]


def test_budget_rows_live_from_a_store() -> None:
    store = MemoryBudgetStore()
    live = Budgets(*BUDGETS, store=store)
    now = NOW
    h_r = live.reserve("r", {"user_id": "alice"}, cost_nanos=30_000_000, tokens=10, now=now)
    live.commit(h_r, cost_nanos=30_000_000, tokens=10, now=now)
    live.reserve("r2", {"user_id": "alice"}, cost_nanos=20_000_000, tokens=10, now=now)
    data = build_report_data(
        make_ledger(), since=T0, until=NOW, budgets=BUDGETS, budget_store=store, now=now
    )
    alice = next(r for r in data.budgets if r.scope_key == "user_id=alice")
    assert alice.source == "store"
    assert (alice.spent, alice.reserved, alice.remaining) == (
        Decimal("0.03"),
        Decimal("0.02"),
        Decimal("0.05"),
    )
    assert alice.utilization == pytest.approx(0.3)


def test_html_sections_and_chart_points() -> None:
    data = make_data()
    html = render_html(data)
    assert html.startswith("<!DOCTYPE html>") and html.rstrip().endswith("</html>")
    assert charts(html) == {
        "spend-over-time": 4,
        "by-model": 2,
        "by-user": 4,
        "by-agent": 3,
        "token-composition": 3,  # all models + 2 models
    }
    spend = points(html, "spend-over-time")
    assert [label for label, _ in spend] == ["2026-01-01", "2026-01-02", "2026-01-03", "2026-01-04"]
    assert [Decimal(v) for _, v in spend] == [r.cost for r in data.series]
    by_model = dict(points(html, "by-model"))
    assert {k: Decimal(v) for k, v in by_model.items()} == {
        r.dims["model"]: r.cost for r in data.models
    }
    for title in (
        "Spend over time",
        "By model",
        "By user",
        "By agent",
        "Token composition",
        "Budgets",
        "Top conversations",
        "Suggestions",
    ):
        assert f"<h2>{title}</h2>" in html
    total = data.totals.cost
    assert f'data-card="cost"><div class="k">total cost</div><div class="v">{usd(total)}<' in html
    assert '<div class="v">6</div>' in html  # calls
    assert 'data-card="error-rate"><div class="k">error rate</div><div class="v">16.7%<' in html
    # cache hit rate = (4000 + 5000) / 56000 input tokens
    assert (
        'data-card="cache-hit-rate"><div class="k">cache hit rate</div><div class="v">16.1%<'
        in html
    )


def test_peak_hour_card() -> None:
    data = make_data()
    html = render_html(data)
    hour = data.analytics["peak_hour_utc"]
    assert (
        f'data-card="peak-hour"><div class="k">peak hour (UTC)</div><div class="v">{hour:02d}:00<'
        in html
    )
    assert usd(data.analytics["peak_hour_cost"]) in html


def test_token_composition_numbers() -> None:
    html = render_html(make_data())
    start = html.index('data-chart="token-composition"')
    first = html[start : html.index("</g>", start)]
    segs = dict(re.findall(r'data-component="([a-z_]+)" data-value="(\d+)"', first))
    # input 56000 = uncached 44000 + cache read 9000 + cache write 3000;
    # output 7300 = 6300 + 1000 reasoning
    assert segs == {
        "input": "44000",
        "cache_read": "9000",
        "cache_write": "3000",
        "output": "6300",
        "reasoning": "1000",
    }


def test_every_label_is_escaped() -> None:
    html = render_html(make_data())
    for hostile in (XSS_USER, ATTR_USER, XSS_AGENT, XSS_CONV):
        assert hostile not in html
        assert escape(hostile, quote=True) in html
    assert "<script" not in html.lower()
    assert 'onmouseover="' not in html and 'onerror="' not in html
    assert escape("test <ledger>") in html


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def test_self_contained() -> None:
    html = render_html(make_data())
    parser = _Tags()
    parser.feed(html)
    names = {t for t, _ in parser.tags}
    assert not names & {"script", "img", "link", "iframe", "object", "embed", "image", "use"}
    for tag, attrs in parser.tags:
        assert not {"src", "href", "xlink:href"} & set(attrs), tag
        assert not [a for a in attrs if a.startswith("on")], (tag, attrs)
    assert parser.tags[0][0] == "html"
    assert "http://" not in html.replace("http://www.w3.org/2000/svg", "")
    assert "https://" not in html
    assert "@import" not in html and "url(" not in html
    assert "default-src 'none'" in html  # CSP: no scripts, no fetches


def test_suggestions_are_rendered_with_evidence() -> None:
    from tokenward.report import Suggestion

    data = make_data()
    data.suggestions = [
        Suggestion(
            kind="batch",
            title="Use <batch>",
            detail="because & so",
            risk="low",
            estimated_monthly_savings_usd=Decimal("12.345"),
            evidence={"calls": 1234, "x": Decimal("0.5")},
        ),
        Suggestion(kind="max_tokens", title="Cap", detail="d", estimated_monthly_savings_usd=None),
    ]
    html = render_html(data)
    assert (
        'data-kind="batch"' in html and "Use &lt;batch&gt;" in html and "because &amp; so" in html
    )
    assert "$12.34" in html  # half-even cents
    assert "<dt>calls</dt><dd>1,234</dd>" in html and "<dd>0.5</dd>" in html
    assert "not quantified" in html


def test_plain_table_report_data_renders_too() -> None:
    base = build_report(make_ledger(), since=T0, until=NOW)
    html = render_html(base)
    c = charts(html)
    assert c["spend-over-time"] == 4 and c["by-model"] == 2 and "by-user" not in c  # Jan 3: zero
    assert "<h2>Budgets</h2>" not in html


def test_empty_range() -> None:
    data = build_report_data(make_ledger(), since=NOW, until=NOW + timedelta(days=1))
    html = render_html(data)
    assert "No events in this period." in html and "<svg" not in html


def test_hourly_series_for_short_ranges() -> None:
    data = build_report_data(make_ledger(), since=T0, until=T0 + timedelta(days=1))
    assert data.series_bucket == "hour"
    hours = [r.bucket.hour for r in data.series]
    assert hours == list(range(hours[0], hours[-1] + 1))  # gaps filled


def test_bar_chart_geometry_is_proportional() -> None:
    svg = bar_chart(
        "t", [("a", Decimal(1), "$1"), ("b", Decimal(2), "$2"), ("c", 0, "$0")], height=220
    )
    heights = [float(h) for h in re.findall(r'class="point bar"[^>]* height="([\d.]+)"', svg)]
    assert heights[1] == 2 * heights[0] > 0 and heights[2] == 0
    # the y-axis: round ticks from 0 to the top bar, each with a gridline and its label
    ticks = re.findall(r'class="ytick" data-value="([^"]+)"[^>]*>([^<]+)<', svg)
    assert [v for v, _ in ticks] == ["0.0", "0.5", "1.0", "1.5", "2.0"]
    assert svg.count('class="grid"') == 5
    # values on the bars that have one
    assert re.findall(r'class="value" data-label="(\w)"[^>]*>([^<]+)<', svg) == [
        ("a", "$1"),
        ("b", "$2"),
    ]


def test_spend_chart_axis_is_in_dollars() -> None:
    html = render_html(make_data())
    start = html.index('data-chart="spend-over-time"')
    svg = html[start : html.index("</svg>", start)]
    labels = re.findall(r'class="ytick"[^>]*>([^<]+)<', svg)
    assert labels[0] == "$0.00" and all(label.startswith("$") for label in labels)
    assert "E-" not in svg and "E+" not in svg
    assert "USD per day" in svg


def test_cli_html_with_budgets_file(tmp_path) -> None:
    db = tmp_path / "ledger.db"
    ledger = open_ledger(str(db))
    ledger.record_many(make_events())
    ledger.close()
    budgets = tmp_path / "budgets.toml"
    # budget windows are "now": an unscoped one always has a row (spent 0 in this window)
    budgets.write_text('[budgets.team]\nlimit_usd = "0.10"\nwindow = "month"\n', encoding="utf-8")
    out = tmp_path / "report.html"
    r = CliRunner().invoke(
        get_app(),
        [
            "report",
            "--db",
            str(db),
            "--since",
            "2026-01-01",
            "--until",
            "2026-01-05",
            "--format",
            "html",
            "-o",
            str(out),
            "--budgets",
            str(budgets),
            "--model",
            "gpt-4o",
        ],
    )
    assert r.exit_code == 0, r.output
    html = out.read_text(encoding="utf-8")
    assert charts(html)["by-model"] == 1  # --model filter
    assert "model=gpt-4o" in html
    assert "<h2>Budgets</h2>" in html and "data-budget='team'" in html
    r = CliRunner().invoke(
        get_app(),
        ["report", "--db", str(db), "-f", "html", "-o", str(out), "--budget-store", "memory"],
    )
    assert r.exit_code == 2 and "--budgets" in r.stderr


def test_grouped_table_for_other_dimensions() -> None:
    data = build_report_data(make_ledger(), since=T0, until=NOW, by=("agent", "model"), now=NOW)
    html = render_html(data)
    assert "<h2>By agent, model</h2>" in html
    table = html[html.index("class='grouped'") :]
    table = table[: table.index("</table>")]
    assert table.count("<tr>") == 1 + len(data.rows) == 4
    assert escape(XSS_AGENT, quote=True) in table
    assert "<h2>By user_id" not in render_html(make_data())  # the by-user chart covers it


def test_extras_dict_is_json_ready() -> None:
    import json

    from tokenward.report._data import extras_dict

    d = json.loads(json.dumps(extras_dict(make_data())))
    assert {b["budget"] for b in d["budgets"]} == {"per-user-monthly", "all-tokens"}
    alice = next(b for b in d["budgets"] if b["scope_key"] == "user_id=alice")
    assert Decimal(alice["limit"]) == Decimal("0.10") and alice["source"] == "ledger"
    assert d["top_conversations"][0]["conversation_id"] == XSS_CONV
    assert Decimal(d["users"][0]["cost"]) == make_data().users[0].cost


def test_long_suggestion_lists_are_capped() -> None:
    from tokenward.report import Suggestion

    data = make_data()
    data.suggestions = [
        Suggestion(
            kind="batch", title=f"s{i}", detail="d", estimated_monthly_savings_usd=Decimal(1)
        )
        for i in range(30)
    ]
    html = render_html(data)
    assert html.count('class="sugg"') == 25
    assert "5 smaller suggestions not shown (together ~$5.00/month)" in html


def test_budget_rows_respect_where_and_missing() -> None:
    ledger = make_ledger()
    ledger.record(
        UsageEvent(
            id="anon",
            timestamp=T0 + timedelta(days=2),
            model="gpt-4o",
            provider=None,
            usage=Usage(input=1_000, output=10),
            cost=Decimal("0.5"),
            agent="support",
        )
    )
    budgets = [
        Budget(
            "support-users",
            limit_usd="1",
            window="month",
            scope="user_id",
            where={"agent": "support"},
            missing="skip",
        ),
        Budget(
            "support-shared",
            limit_usd="1",
            window="month",
            scope="user_id",
            where={"agent": "support"},
        ),
    ]
    from tokenward.report import budget_rows

    rows = budget_rows(ledger, budgets, now=NOW)
    skip = {r.scope_key for r in rows if r.budget == "support-users"}
    shared = {r.scope_key: r for r in rows if r.budget == "support-shared"}
    assert skip == {"user_id=alice", "user_id=bob"}  # research/XSS agents excluded by where
    assert set(shared) == skip | {"user_id=<none>"}
    assert shared["user_id=<none>"].spent == Decimal("0.5")
