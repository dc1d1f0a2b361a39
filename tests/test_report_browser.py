"""The HTML report in a real headless Chromium (Debian's ``chromium``, driven by Playwright).

Checks what a user opening the file sees: it loads from file:// with no console errors and no
request other than the file itself, the charts render with the expected points and labels,
and hostile labels stay inert text. Without a browser the module skips with a one-line reason;
under ``CI=true`` it fails instead (CI installs ``chromium``: ``apt-get install -y chromium``).
No browser is ever downloaded (no ``playwright install``).
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from typing import Any

import pytest

from tests.test_report_html import ATTR_USER, XSS_AGENT, XSS_CONV, XSS_USER, make_data
from tokenward.report import render_html

pytestmark = pytest.mark.browser

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}; the browser test is required under CI=true")
    pytest.skip(f"{reason}: browser test skipped")


def _chromium() -> str | None:
    for cand in (os.environ.get("CHROMIUM"), "/usr/bin/chromium"):
        if cand and os.path.exists(cand):
            return cand
    return shutil.which("chromium")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    exe = _chromium()
    if exe is None:
        _unavailable("chromium not installed (apt-get install -y chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("playwright (Python package) not installed")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture(scope="module")
def report_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Any]:
    data = make_data()
    html = render_html(data)
    # Without the Content-Security-Policy, so the XSS checks test the escaping itself (the
    # policy would block inline scripts anyway; it is checked in test_report_html).
    csp = re.search(r'<meta http-equiv="Content-Security-Policy"[^>]*>', html)
    assert csp is not None
    path = tmp_path_factory.mktemp("browser") / "report.html"
    path.write_text(html.replace(csp.group(0), ""), encoding="utf-8")
    return path.resolve().as_uri(), data


@pytest.fixture
def page(browser: Any, report_file: tuple[str, Any]) -> Iterator[dict[str, Any]]:
    url, data = report_file
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    pg = context.new_page()
    pg.set_default_timeout(15_000)
    seen: dict[str, Any] = {"console": [], "errors": [], "requests": [], "dialogs": []}
    pg.on("console", lambda m: seen["console"].append((m.type, m.text)))
    pg.on("pageerror", lambda e: seen["errors"].append(str(e)))
    pg.on("request", lambda r: seen["requests"].append(r.url))

    def dialog(d: Any) -> None:
        seen["dialogs"].append(d.message)
        d.dismiss()

    pg.on("dialog", dialog)
    pg.goto(url, wait_until="load")
    seen.update(page=pg, url=url, data=data)
    try:
        yield seen
    finally:
        context.close()


def test_loads_offline_without_errors(page: dict[str, Any]) -> None:
    pg = page["page"]
    assert pg.title() == "tokenward report"
    assert page["requests"] == [page["url"]]  # nothing but the file itself
    assert [c for c in page["console"] if c[0] in ("error", "warning")] == []
    assert page["errors"] == []
    assert pg.locator("script").count() == 0


def test_charts_render_with_expected_points(page: dict[str, Any]) -> None:
    pg = page["page"]
    data = page["data"]
    expected = {
        "spend-over-time": 4,
        "by-model": 2,
        "by-user": 4,
        "by-agent": 3,
        "token-composition": 3,
    }
    for name, n in expected.items():
        svg = pg.locator(f'svg[data-chart="{name}"]')
        assert svg.count() == 1, name
        box = svg.bounding_box()
        assert box is not None and box["width"] > 300 and box["height"] > 40, (name, box)
        assert svg.locator(".point").count() == n, name
    bars = pg.locator('svg[data-chart="spend-over-time"] rect.point')
    heights = [bars.nth(i).bounding_box()["height"] for i in range(4)]
    costs = [r.cost for r in data.series]
    assert [h > 0 for h in heights] == [c > 0 for c in costs]  # the empty day has no bar
    tallest = max(range(4), key=lambda i: costs[i])
    assert heights[tallest] == max(heights)
    ticks = pg.locator('svg[data-chart="spend-over-time"] text.tick').all_text_contents()
    assert ticks == ["2026-01-01", "2026-01-02", "2026-01-03", "2026-01-04"]
    models = pg.locator('svg[data-chart="by-model"] .point')
    assert sorted(models.nth(i).get_attribute("data-label") for i in range(2)) == [
        "claude-sonnet-4-5",
        "gpt-4o",
    ]
    segments = pg.locator('svg[data-chart="token-composition"] rect.segment')
    assert segments.count() > 0 and segments.first.bounding_box()["width"] > 0
    gauges = pg.locator('svg[data-chart="budget"]')
    assert gauges.count() == len(data.budgets) == 5
    assert gauges.first.locator("line.threshold").count() == 2  # 50 % and 90 % marks


def test_hostile_labels_stay_inert_text(page: dict[str, Any]) -> None:
    pg = page["page"]
    points = pg.locator(".point")
    for i in range(points.count()):  # fire mouse events everywhere: no handler may run
        points.nth(i).dispatch_event("mouseover")
        points.nth(i).dispatch_event("click")
    users = pg.locator('svg[data-chart="by-user"] .point')
    for i in range(users.count()):  # and real pointer hovers over the hostile user bars
        users.nth(i).hover()
    leaked = pg.evaluate(
        "() => [window.__xss, window.__xss2, window.__xss3, window.__xss4]"
        ".map(v => v === undefined ? null : v)"
    )
    assert leaked == [None, None, None, None]
    assert page["dialogs"] == []
    labels = pg.locator('svg[data-chart="by-user"] .point')
    got = {labels.nth(i).get_attribute("data-label") for i in range(labels.count())}
    assert {XSS_USER, ATTR_USER} <= got  # attributes round-trip exactly
    agents = pg.locator('svg[data-chart="by-agent"] title').all_text_contents()
    assert any(t.startswith(XSS_AGENT + ":") for t in agents)  # shown literally
    assert XSS_CONV in pg.locator("table.conversations").inner_text()
    assert pg.locator("img").count() == 0


def test_report_as_shipped_with_its_policy_loads_cleanly(browser: Any, tmp_path: Any) -> None:
    path = tmp_path / "report.html"
    path.write_text(render_html(make_data()), encoding="utf-8")  # CSP included
    pg = browser.new_page()
    try:
        console: list[tuple[str, str]] = []
        requests: list[str] = []
        pg.on("console", lambda m: console.append((m.type, m.text)))
        pg.on("request", lambda r: requests.append(r.url))
        pg.goto(path.resolve().as_uri(), wait_until="load")
        assert requests == [path.resolve().as_uri()]
        assert console == []
        assert pg.locator("svg.chart").count() > 5
        # styles still apply under the policy (inline <style> is allowed)
        colour = pg.evaluate(
            "() => getComputedStyle(document.querySelector('.card')).backgroundColor"
        )
        assert colour == "rgb(246, 248, 250)"
    finally:
        pg.close()


def test_spend_chart_axis_and_value_labels_are_visible(page: dict[str, Any]) -> None:
    """The y-axis ticks read as dollars from $0.00 upwards (top to bottom on screen), each bar's
    value sits above it inside the chart, and a screenshot is kept under build/ to look at."""
    from pathlib import Path

    pg = page["page"]
    svg = pg.locator('svg[data-chart="spend-over-time"]')
    chart = svg.bounding_box()
    ticks = svg.locator("text.ytick")
    assert ticks.count() >= 3
    labels = ticks.all_text_contents()
    assert labels[0] == "$0.00" and all(t.startswith("$") for t in labels)
    ys = [ticks.nth(i).bounding_box()["y"] for i in range(ticks.count())]
    assert ys == sorted(ys, reverse=True)  # larger values higher up
    values = svg.locator("text.value")
    costs = [r.cost for r in page["data"].series]
    assert values.count() == sum(1 for c in costs if c)  # the empty day has no label
    bars = svg.locator("rect.point")
    for i in range(values.count()):
        box = values.nth(i).bounding_box()
        assert box is not None and box["width"] > 0
        assert chart["y"] <= box["y"] and box["y"] + box["height"] <= chart["y"] + chart["height"]
    tallest = max(range(len(costs)), key=lambda i: costs[i])
    label = svg.locator(f'text.value[data-label="{bars.nth(tallest).get_attribute("data-label")}"]')
    assert label.bounding_box()["y"] < bars.nth(tallest).bounding_box()["y"]  # above its bar
    out = Path(__file__).resolve().parents[1] / "build" / "test-report"
    out.mkdir(parents=True, exist_ok=True)
    svg.screenshot(path=str(out / "spend-over-time.png"))
    pg.screenshot(path=str(out / "report.png"), full_page=True)
    assert (out / "report.png").stat().st_size > 10_000
