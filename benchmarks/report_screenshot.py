"""``make report-screenshot``: build the demo ledger, write report.html and a PNG of it.

Runs the offline demo session into a temporary SQLite ledger at a fixed date (so the picture
is the same on every run), renders the self-contained HTML report (with the demo's trial
budget and a global monthly budget, so the budget gauges show), and screenshots it in headless
Chromium (Debian's ``chromium`` at /usr/bin/chromium, driven by Playwright's Python client;
nothing is downloaded). Outputs go to ``--out`` (default ``build/report/``); ``--png PATH``
also writes the PNG there (``make report-screenshot`` writes ``docs/report.png``, the picture
in the README).

    python benchmarks/report_screenshot.py [--out DIR] [--png PATH] [--chromium PATH]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

#: The demo's "now" for the picture (its traffic is the week before).
FIXED_NOW = datetime(2026, 11, 30, 18, tzinfo=timezone.utc)

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


def find_chromium(explicit: str | None = None) -> str | None:
    """The Chromium binary: ``explicit``, ``$CHROMIUM``, /usr/bin/chromium, or on PATH."""
    for cand in (explicit, os.environ.get("CHROMIUM"), "/usr/bin/chromium"):
        if cand and os.path.exists(cand):
            return cand
    return shutil.which("chromium") or shutil.which("chromium-browser")


def build_html(out_dir: Path) -> Path:
    """Run the demo and write ``report.html`` into ``out_dir``."""
    from tokenward import _demo
    from tokenward.budgets import Budget
    from tokenward.ledger import open_ledger
    from tokenward.report import build_report_data, render_html

    tmp = tempfile.mkdtemp(prefix="tokenward-shot-")
    result = _demo.run_demo(os.path.join(tmp, "ledger.db"), now=FIXED_NOW)
    ledger = open_ledger(result.db_path)
    try:
        assert result.report is not None
        since = FIXED_NOW - timedelta(days=7)
        budgets = [
            Budget(
                "trial-daily",
                limit_usd="0.02",
                window="day",
                scope="user_id",
                where={"plan": "trial"},
            ),
            Budget("all-monthly", limit_usd="1.00", window="month", mode="soft"),
        ]
        data = build_report_data(
            ledger,
            since=since,
            until=FIXED_NOW,
            now=FIXED_NOW,
            by=("user_id",),
            source="tokenward demo",
            budgets=budgets,
        )
        data.generated_at = FIXED_NOW
    finally:
        ledger.close()
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "report.html"
    path.write_text(render_html(data), encoding="utf-8")
    return path


def screenshot(
    html: Path, png: Path, chromium: str, width: int = 1280, height: int | None = None
) -> None:
    """PNG of ``html`` (a local file; the page makes no requests): the full page, or its top
    ``height`` pixels."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": 900})
            page.goto(html.resolve().as_uri())
            clip = None if height is None else {"x": 0, "y": 0, "width": width, "height": height}
            page.screenshot(path=str(png), full_page=True, clip=clip)
        finally:
            browser.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="build/report", help="output directory")
    ap.add_argument("--chromium", default=None, help="path to the chromium binary")
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument("--png", default=None, help="also write the PNG here (e.g. docs/report.png)")
    args = ap.parse_args(argv)
    out = Path(args.out)
    html = build_html(out)
    print(f"wrote {html}")
    chromium = find_chromium(args.chromium)
    if chromium is None:
        print("no chromium found (apt-get install -y chromium); skipped the PNG", file=sys.stderr)
        return 1
    png = out / "report.png"
    screenshot(html, png, chromium, args.width)
    print(f"wrote {png}")
    if args.png:  # the README's picture: the top of the page (cards, charts, budgets)
        Path(args.png).parent.mkdir(parents=True, exist_ok=True)
        screenshot(html, Path(args.png), chromium, args.width, height=2000)
        print(f"wrote {args.png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
