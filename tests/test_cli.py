"""The ``tokenward`` command, through typer's CliRunner: exit codes, output, parseable formats."""

from __future__ import annotations

import csv
import io
import json
import sys
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from typer.testing import CliRunner

from tokenward.accountant import Accountant
from tokenward.cli import get_app, main
from tokenward.cost import cost
from tokenward.counting import count_messages, count_text
from tokenward.ledger import open_ledger
from tokenward.report._format import usd
from tokenward.usage import Usage

runner = CliRunner()
APP = get_app()


def run(*args: str, input: str | None = None):  # type: ignore[no-untyped-def]
    return runner.invoke(APP, list(args), input=input)


def one_line_error(result) -> str:  # type: ignore[no-untyped-def]
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


# ----------------------------------------------------------------------------- count
def test_count_text_file(tmp_path):
    text = "The quick brown fox jumps over the lazy dog. " * 20
    path = tmp_path / "prompt.txt"
    path.write_text(text, encoding="utf-8")
    result = run("count", str(path), "--model", "gpt-4o")
    assert result.exit_code == 0, result.output
    expected = count_text(text, model="gpt-4o")
    assert expected.exact
    assert f"{expected.tokens:,}" in result.stdout
    assert "exact" in result.stdout and "o200k" in result.stdout


def test_count_chat_messages_from_stdin():
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello!"}]
    result = run("count", "-", input=json.dumps({"messages": messages}))
    assert result.exit_code == 0, result.output
    tokens = count_messages(messages, model="gpt-4o").tokens
    assert "2 chat messages" in result.stdout
    assert f"│ {tokens:>6} │" in result.stdout or f" {tokens} " in result.stdout


def test_count_estimated_for_models_without_tokenizer(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("Bonjour tout le monde", encoding="utf-8")
    result = run("count", str(path), "-m", "claude-sonnet-4-5")
    assert result.exit_code == 0
    assert "estimated" in result.stdout


def test_count_usage_errors(tmp_path):
    result = run("count", "--file", str(tmp_path / "missing.txt"))
    assert result.exit_code == 2
    assert "no such file" in one_line_error(result)
    f = tmp_path / "x.txt"
    f.write_text("hi")
    result = run("count", str(f), "--model", "gpt-4oo")
    assert result.exit_code == 2
    assert "unknown model 'gpt-4oo'" in one_line_error(result)
    result = run("count", str(tmp_path))
    assert result.exit_code == 2 and "directory" in one_line_error(result)
    result = run("count")
    assert result.exit_code == 2 and "nothing to count" in one_line_error(result)


# ----------------------------------------------------------------------------- cost
def test_cost_breakdown_table():
    result = run(
        "cost",
        "--model",
        "claude-sonnet-4-5",
        "--input",
        "10000",
        "--output",
        "2000",
        "--cache-read",
        "6000",
        "--cache-write",
        "2000",
        "--reasoning",
        "500",
    )
    assert result.exit_code == 0, result.output
    out = result.stdout
    for comp in ("input", "cache_read", "cache_write_5m", "output", "reasoning", "total"):
        assert comp in out
    bd = cost(
        Usage(input=10000, output=2000, cache_read=6000, cache_write_5m=2000, reasoning=500),
        "claude-sonnet-4-5",
    )
    assert usd(bd.total) in out
    assert "100.0%" in out and "prices as of" in out


def test_cost_json_matches_cost_function():
    result = run(
        "cost",
        "-m",
        "gpt-4o",
        "--input",
        "1200",
        "--output",
        "300",
        "--cache-read",
        "1024",
        "--format",
        "json",
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    bd = cost(Usage(input=1200, output=300, cache_read=1024), "gpt-4o")
    assert Decimal(data["total"]) == bd.total
    comps = {c["component"]: c for c in data["components"]}
    assert comps["input"]["tokens"] == 176 and comps["cache_read"]["tokens"] == 1024
    assert Decimal(comps["output"]["amount"]) == bd.output
    assert sum(Decimal(c["amount"]) for c in data["components"]) == bd.total


def test_cost_batch_and_tier():
    base = json.loads(
        run("cost", "-m", "gpt-4o", "--input", "1000", "--output", "1000", "-f", "json").stdout
    )
    batch = json.loads(
        run(
            "cost", "-m", "gpt-4o", "--input", "1000", "--output", "1000", "--batch", "-f", "json"
        ).stdout
    )
    assert batch["batch"] is True
    assert (
        Decimal(batch["total"]) == cost(Usage(input=1000, output=1000), "gpt-4o", batch=True).total
    )
    assert Decimal(batch["total"]) <= Decimal(base["total"])
    tier = json.loads(
        run(
            "cost", "-m", "gemini-2.5-pro", "--input", "250000", "--output", "10", "-f", "json"
        ).stdout
    )
    assert tier["tier_above_input_tokens"] == 200000


def test_cost_usage_errors():
    result = run("cost", "--model", "gpt-4o", "--input", "10", "--cache-read", "20")
    assert result.exit_code == 2 and "--cache-read" in one_line_error(result)
    result = run("cost", "--model", "gpt-4o", "--input", "ten")
    assert result.exit_code == 2 and "--input" in one_line_error(result)
    result = run("cost", "--model", "no-such-model", "--input", "1")
    assert result.exit_code == 2 and "unknown model" in one_line_error(result)
    result = run("cost", "--model", "gpt-4o", "--output", "1", "--reasoning", "5")
    assert result.exit_code == 2
    result = run("cost", "--input", "1")
    assert result.exit_code == 2 and "--model" in one_line_error(result)


# ----------------------------------------------------------------------------- models
def test_models_table_and_filters():
    result = run("models", "--provider", "anthropic")
    assert result.exit_code == 0
    assert "claude-sonnet-4-5" in result.stdout and "gpt-4o" not in result.stdout
    assert "200,000" in result.stdout  # context window
    data = json.loads(run("models", "--search", "mini", "-f", "json").stdout)
    assert data and all("mini" in m["name"].lower() for m in data)  # case-insensitive
    assert {"context_window", "input", "output", "as_of"} <= set(data[0])
    result = run("models", "--search", "zzzz-nothing")
    assert result.exit_code == 2 and "no model matches" in one_line_error(result)


# ----------------------------------------------------------------------------- report
NOW = datetime.now(timezone.utc).replace(microsecond=0)


@pytest.fixture
def ledger_db(tmp_path) -> str:
    path = str(tmp_path / "ledger.db")
    clock = [NOW - timedelta(days=2)]
    acct = Accountant(ledger=path, clock=lambda: clock[0])
    acct.record("gpt-4o", Usage(input=1000, output=100), user_id="u1", agent="bot")
    acct.record("gpt-4o", Usage(input=2000, output=200, cache_read=1024), user_id="u2", agent="bot")
    acct.record(
        "claude-sonnet-4-5",
        Usage(input=3000, output=300, cache_read=2000, cache_write_5m=500),
        user_id="u1",
        agent="research",
    )
    acct.record("gpt-4o-mini", Usage(input=10, output=0), user_id="u2", error="boom")
    clock[0] = NOW - timedelta(days=40)  # outside --since 7d
    acct.record("gpt-4o", Usage(input=99_999, output=1), user_id="old")
    acct.close()
    return path


def _expected_cost(*items: tuple[str, Usage]) -> Decimal:
    return sum((cost(u, m).total for m, u in items), Decimal(0))


def test_report_json(ledger_db: str):
    result = run("report", "--db", ledger_db, "--since", "7d", "--by", "user_id", "-f", "json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["totals"]["calls"] == 4 and data["totals"]["errors"] == 1
    expected_total = _expected_cost(
        ("gpt-4o", Usage(input=1000, output=100)),
        ("gpt-4o", Usage(input=2000, output=200, cache_read=1024)),
        ("claude-sonnet-4-5", Usage(input=3000, output=300, cache_read=2000, cache_write_5m=500)),
        ("gpt-4o-mini", Usage(input=10)),
    )
    assert Decimal(data["totals"]["cost"]) == expected_total
    rows = {r["user_id"]: r for r in data["rows"]}
    assert set(rows) == {"u1", "u2"}
    assert rows["u1"]["calls"] == 2 and rows["u1"]["input"] == 4000
    a = data["analytics"]
    assert a["calls"] == 4 and a["success_rate"] == 0.75
    assert Decimal(a["cache_savings_usd"]) > 0
    assert a["cache_write_break_even_reads"] == {"claude-sonnet-4-5": 1}
    assert {m["model"] for m in data["models"]} == {"gpt-4o", "claude-sonnet-4-5", "gpt-4o-mini"}


def test_report_csv_by_two_dims_with_where(ledger_db: str):
    result = run(
        "report",
        "--db",
        ledger_db,
        "--since",
        "7d",
        "--by",
        "user_id,model",
        "--where",
        "agent=bot",
        "--format",
        "csv",
    )
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert {(r["user_id"], r["model"]) for r in rows} == {("u1", "gpt-4o"), ("u2", "gpt-4o")}
    by_user = {r["user_id"]: r for r in rows}
    assert by_user["u2"]["cache_read"] == "1024"
    assert Decimal(by_user["u1"]["cost"]) == cost(Usage(input=1000, output=100), "gpt-4o").total


def test_report_table_and_since_everything(ledger_db: str, tmp_path):
    result = run("report", "--db", ledger_db, "--since", "90d", "--by", "user_id")
    assert result.exit_code == 0, result.output
    for text in (
        "Totals",
        "By user_id",
        "By model",
        "Analytics",
        "Per day",
        "old",
        "u1",
        "u2",
        "cache hit rate",
    ):
        assert text in result.stdout
    out = tmp_path / "r.json"
    result = run("report", "--db", ledger_db, "--since", "2000-01-01", "-f", "json", "-o", str(out))
    assert result.exit_code == 0
    assert json.loads(out.read_text())["totals"]["calls"] == 5


def test_report_empty_range(ledger_db: str):
    result = run("report", "--db", ledger_db, "--since", "2h")
    assert result.exit_code == 0
    assert "No events" in result.stdout
    data = json.loads(run("report", "--db", ledger_db, "--since", "2h", "-f", "json").stdout)
    assert data["totals"] is None and data["rows"] == []


def test_report_usage_errors(ledger_db: str, tmp_path):
    cases = [
        (["--db", str(tmp_path / "nope.db")], "no ledger at"),
        (["--db", ledger_db, "--since", "yesterday"], "--since"),
        (["--db", ledger_db, "--by", "colour"], "--by colour"),
        (["--db", ledger_db, "--where", "user_id"], "key=value"),
        (["--db", ledger_db, "--format", "xml"], "--format"),
    ]
    for args, needle in cases:
        result = run("report", *args)
        assert result.exit_code == 2, (args, result.output)
        assert needle in one_line_error(result)


def test_report_corrupted_db_is_a_clear_failure(tmp_path):
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"this is not a sqlite database" * 100)
    result = run("report", "--db", str(bad))
    assert result.exit_code in (1, 2)
    one_line_error(result)


# ----------------------------------------------------------------------------- demo
def test_demo_writes_sqlite_and_prints_report(tmp_path):
    db = tmp_path / "demo.db"
    result = run("demo", "--db", str(db), "--users", "6")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "denied: frank" in out and "trial-daily" in out
    assert "provider error" in out and "cancelled" in out
    for model in ("gpt-5.4-mini", "claude-sonnet-4-6", "gemini-3.5-flash", "gpt-5.4"):
        assert model in out
    for section in ("Totals", "By user_id", "By model", "Analytics"):
        assert section in out
    ledger = open_ledger(str(db))
    try:
        events = list(ledger.events())
    finally:
        ledger.close()
    assert len(events) > 40
    assert {e.provider for e in events} >= {"openai", "anthropic", "google"}
    assert any(e.estimated for e in events)
    assert any(e.usage.cache_read for e in events) and any(e.usage.cache_write_5m for e in events)
    assert any(e.usage.reasoning for e in events)
    assert any(e.tool_names == ("web_search",) for e in events)
    assert {e.status for e in events} == {"ok", "error", "cancelled"}
    assert any(e.kind == "embedding" for e in events)
    # re-running into the same file records nothing new (stable ids, idempotent ledger)
    assert run("demo", "--db", str(db)).exit_code == 0
    ledger = open_ledger(str(db))
    try:
        assert ledger.count() == len(events)
    finally:
        ledger.close()


def test_demo_is_deterministic(tmp_path):
    from tokenward._demo import run_demo

    now = datetime(2026, 11, 23, 12, tzinfo=timezone.utc)
    a = run_demo(tmp_path / "a.db", users=8, seed=3, now=now)
    b = run_demo(tmp_path / "b.db", users=8, seed=3, now=now)

    def dump(path):  # type: ignore[no-untyped-def]
        ledger = open_ledger(str(path))
        try:
            return [
                (e.id, e.timestamp, e.model, e.usage, e.cost, e.user_id, e.status)
                for e in ledger.events()
            ]
        finally:
            ledger.close()

    assert dump(tmp_path / "a.db") == dump(tmp_path / "b.db")
    assert a.calls == b.calls and a.denied == b.denied and a.denied
    assert a.report is not None and a.report.totals.calls == len(dump(tmp_path / "a.db"))
    assert Decimal(a.tracked["cost"]) == a.report.totals.cost


def test_demo_bad_users():
    result = run("demo", "--users", "0")
    assert result.exit_code == 2 and "--users" in one_line_error(result)


# ----------------------------------------------------------------------------- entry point
def test_main_without_cli_extra_prints_install_hint(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "typer", None)
    with pytest.raises(SystemExit) as info:
        main(["models"])
    assert info.value.code == 1
    assert 'pip install "tokenward[cli]"' in capsys.readouterr().err


def test_main_runs_the_app(capsys):
    with pytest.raises(SystemExit) as info:
        main(["models", "--search", "gpt-4o-mini", "-f", "json"])
    assert info.value.code == 0
    assert json.loads(capsys.readouterr().out)[0]["name"] == "gpt-4o-mini"


def test_report_formats_can_be_plugged_in(ledger_db: str, monkeypatch):
    from tokenward.report import _tables

    monkeypatch.setattr(_tables, "_RENDERERS", dict(_tables._RENDERERS))
    _tables.register_format("md", lambda data: f"# {data.totals.calls} calls\n")
    assert "md" in _tables.available_formats()
    result = run("report", "--db", ledger_db, "--since", "7d", "-f", "md")
    assert result.exit_code == 0, result.output
    assert result.stdout == "# 4 calls\n"


@pytest.mark.postgres
def test_accountant_into_postgres_and_report_from_its_url(make_postgres_db):  # type: ignore[no-untyped-def]
    url = make_postgres_db()
    acct = Accountant(ledger=url)
    acct.preflight("pg-1", "gpt-4o", prompt_tokens=1000, dims={"user_id": "u1"})
    acct.settle("pg-1", Usage(input=1000, output=100))
    acct.settle("pg-1", Usage(input=1000, output=100))  # idempotent
    acct.record("claude-sonnet-4-5", Usage(input=10, output=10), user_id="u2")
    acct.close()
    result = run("report", "--db", url, "--since", "1d", "--by", "user_id", "-f", "json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["totals"]["calls"] == 2
    rows = {r["user_id"]: r for r in data["rows"]}
    assert Decimal(rows["u1"]["cost"]) == cost(Usage(input=1000, output=100), "gpt-4o").total


def test_report_html_uses_the_full_report_builder(ledger_db: str, tmp_path):
    out = tmp_path / "report.html"
    result = run("report", "--db", ledger_db, "--since", "7d", "-f", "html", "-o", str(out))
    assert result.exit_code == 0, result.output
    html = out.read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>") and "u1" in html and "gpt-4o" in html
