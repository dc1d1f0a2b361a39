"""``tokenward whatif`` and the HTML report's "What if" section."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from typer.testing import CliRunner

from tokenward.cli import get_app
from tokenward.cost import cost
from tokenward.ledger import SQLiteLedger, UsageEvent
from tokenward.predict import Scenario, replay
from tokenward.report import build_report_data, render_html
from tokenward.report._whatif import parse_scenario
from tokenward.usage import Usage

runner = CliRunner()
APP = get_app()
NOW = datetime.now(timezone.utc)


@pytest.fixture
def ledger_db(tmp_path) -> str:
    path = str(tmp_path / "ledger.db")
    ledger = SQLiteLedger(path)
    for i in range(12):
        model = ("gpt-4o", "claude-sonnet-4-5", "gpt-4.1")[i % 3]
        usage = Usage(input=2_000 + 100 * i, output=300)
        ledger.record(
            UsageEvent(
                id=f"e{i}",
                timestamp=NOW - timedelta(days=2, hours=i),
                model=model,
                provider="openai" if model.startswith("gpt") else "anthropic",
                usage=usage,
                cost=cost(usage, model).total,
                agent="support" if i % 2 else "writer",
            )
        )
    ledger.close()
    return path


def run(*args: str):  # type: ignore[no-untyped-def]
    return runner.invoke(APP, list(args))


def test_whatif_json_equals_replay(ledger_db):
    result = run("whatif", "--db", ledger_db, "--model", "gpt-4o-mini", "-f", "json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    ledger = SQLiteLedger(ledger_db)
    expected = replay(ledger, Scenario(model="gpt-4o-mini"))
    ledger.close()
    assert Decimal(data["cost_before"]) == expected.cost_before
    assert Decimal(data["cost_after"]) == expected.cost_after
    assert Decimal(data["delta"]) < 0 and data["calls"] == 12
    assert {r["model"] for r in data["rows"]} == {"gpt-4o", "claude-sonnet-4-5", "gpt-4.1"}
    assert data["scenario"]["description"] == "on gpt-4o-mini"
    bases = {t["source"]: t["basis"] for t in data["token_ratios"]}
    assert bases["gpt-4o"] == "same tokenizer" and bases["claude-sonnet-4-5"] == "sample text"
    assert data["estimated"] is True


def test_whatif_table_by_agent_with_cache_and_batch(ledger_db):
    result = run(
        "whatif", "--db", ledger_db, "--cache-hit", "0.8", "--batch", "--by", "agent"
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "What if: 80% cache hits, batch prices" in out
    assert "support" in out and "writer" in out and "total" in out
    assert "replayed cost by component" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "say what to change"),
        (("--model", "gpt-4o-mni"), "unknown model"),
        (("--cache-hit", "1.5"), "cache_hit must be between 0 and 1"),
        (("--batch", "--by", "colour"), "unknown dimension"),
        (("--batch", "-f", "csv"), "choose table or json"),
    ],
)
def test_whatif_usage_errors(ledger_db, args, message):
    result = run("whatif", "--db", ledger_db, *args)
    assert result.exit_code == 2
    assert message in result.stderr


def test_report_html_has_a_what_if_section(ledger_db, tmp_path):
    out = tmp_path / "r.html"
    result = run(
        "report", "--db", ledger_db, "-f", "html", "-o", str(out),
        "--whatif", "model=gpt-4o-mini", "--whatif", "cache-hit=0.8,batch",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    html = out.read_text()
    assert "<h2>What if</h2>" in html
    assert "data-scenario='on gpt-4o-mini'" in html
    assert "data-scenario='80% cache hits, batch prices'" in html
    refused = run("report", "--db", ledger_db, "--whatif", "batch")
    assert refused.exit_code == 2 and "tokenward whatif" in refused.stderr


def test_report_data_replays_each_scenario_once(ledger_db):
    ledger = SQLiteLedger(ledger_db)
    data = build_report_data(ledger, scenarios=[Scenario(batch=True)], advice=False)
    ledger.close()
    (r,) = data.whatif
    assert r.cost_after < r.cost_before
    assert "What if" in render_html(data)


def test_scenarios_parse_from_text():
    assert parse_scenario("model=gpt-4o-mini, cache-hit=0.8,batch") == Scenario(
        model="gpt-4o-mini", cache_hit=0.8, batch=True
    )
    with pytest.raises(ValueError, match="model=NAME"):
        parse_scenario("colour=blue")
