"""What a new user sees: exact CLI output for each case of issue 20 ("first contact").

Each test pins the whole text of one fixed case (snapshot), so a regression shows as a diff:
literal text for ``count``, plain flag help, money without scientific notation, batch prices,
errors phrased as commands, "errors" counted alike in every format, ``--budgets`` in every
format, budget rows without duplicates, "—" for latency never recorded, zero days in the
per-day table, the demo's narration.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tokenward.accountant import Accountant
from tokenward.cli import get_app
from tokenward.usage import Usage

APP = get_app()
ENV = {"COLUMNS": "120", "TOKENWARD_DB": "", "TOKENWARD_BUDGET_STORE": ""}
T0 = datetime(2026, 3, 2, 9, tzinfo=timezone.utc)


def run(*args: str, input: str | None = None):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(APP, list(args), input=input, env=ENV)


def ok(*args: str, input: str | None = None) -> str:
    result = run(*args, input=input)
    assert result.exit_code == 0, result.output
    return result.stdout


def error(*args: str) -> str:
    result = run(*args)
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    return result.stderr


def snapshot(text: str) -> str:
    """Rich pads table titles with spaces: compare the lines without trailing blanks."""
    return "\n".join(line.rstrip() for line in text.splitlines()) + "\n"


def priced(text: str) -> str:
    """A ``cost`` table without its last line, which names the price data (date and source)."""
    *table, source = text.rstrip("\n").splitlines()
    assert source.startswith("prices as of ")
    return snapshot("\n".join(table))


@pytest.fixture
def ledger(tmp_path: Path) -> str:
    """Four calls on Mar 2 and Mar 4 2026 (none on Mar 3): one failed, one cancelled, one with
    a formula-like user id, latency recorded only for gpt-4o-mini."""
    path = str(tmp_path / "ledger.db")
    clock = [T0]
    acct = Accountant(ledger=path, clock=lambda: clock[0])
    acct.record("gpt-4o", Usage(input=1000, output=100), user_id="u1", agent="bot")
    acct.record(
        "gpt-4o",
        Usage(input=2000, output=200, cache_read=1024),
        user_id="u2",
        agent="bot",
        error="RateLimitError",
    )
    clock[0] = T0 + timedelta(days=2)
    acct.record(
        "gpt-4o-mini",
        Usage(input=10, output=5),
        user_id='=HYPERLINK("http://x")',
        agent="bot",
        latency_ms=850.0,
    )
    acct.record(
        "gpt-4o-mini", Usage(input=0, output=0), user_id="u1", status="cancelled", latency_ms=1.5
    )
    acct.close()
    return path


RANGE = ("--since", "2026-03-01", "--until", "2026-03-05")


# ----------------------------------------------------------------------------- count
def test_count_literal_text() -> None:
    assert snapshot(ok("count", "hello world", "--model", "gpt-4o")) == snapshot("""\
                     Token count (gpt-4o)
┏━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━┳━━━━━━━┳━━━━━━━━━━━━━━━━━━━━━┓
┃ input               ┃ tokens ┃ count ┃ method              ┃
┡━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━╇━━━━━━━╇━━━━━━━━━━━━━━━━━━━━━┩
│ text, 11 characters │      2 │ exact │ tiktoken:o200k_base │
└─────────────────────┴────────┴───────┴─────────────────────┘
""")


def test_count_file_stdin_and_a_path_that_is_not_there(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("p.txt").write_text("hello world", encoding="utf-8")
    assert "file p.txt, 11 characters" in ok("count", "p.txt")
    assert "file p.txt, 11 characters" in ok("count", "--file", "p.txt")
    assert "stdin, 11 characters" in ok("count", "-", input="hello world")
    result = run("count", "notes/missing.txt")
    assert result.exit_code == 0 and "text, 17 characters" in result.stdout
    assert result.stderr == (
        "note: no file named notes/missing.txt; counted it as text (--file PATH reads a file)\n"
    )
    assert error("count", "--file", "nope.txt") == "error: no such file: nope.txt\n"


# ----------------------------------------------------------------------------- help and flags
def test_flag_help_has_no_bool_placeholder() -> None:
    assert (
        ok("cost", "--help")
        == """\
Usage: tokenward cost [OPTIONS]

  Price one call: a breakdown by component with amounts and shares.

Options:
  -m, --model MODEL        Model name (aliases and prefixes work).  [required]
  --input N                Prompt tokens, including cached ones.  [default: 0]
  --output N               Generated tokens, including reasoning.  [default: 0]
  --cache-read N           Prompt tokens read from the cache.  [default: 0]
  --cache-write N          Prompt tokens written to the 5-minute cache.
                           [default: 0]
  --cache-write-1h N       Prompt tokens written to the 1-hour cache.  [default:
                           0]
  --reasoning N            Reasoning tokens (part of --output).  [default: 0]
  --batch                  Price at the provider's batch rate.
  -f, --format table|json  Output format.  [default: table]
  --help                   Show this message and exit.
"""
    )
    assert "--budget / --no-budget" in ok("demo", "--help")
    for command in (
        ["count"],
        ["cost"],
        ["report"],
        ["demo"],
        ["budget", "show"],
        ["budget", "set"],
    ):
        assert "<bool>" not in ok(*command, "--help"), command


def test_boolean_flags_take_no_value() -> None:
    assert error("cost", "-m", "gpt-4o", "--batch", "true") == (
        "error: Got unexpected extra argument(s) (true) (see: tokenward cost --help)\n"
    )


def test_budget_show_help_keeps_its_words() -> None:
    assert (
        ok("budget", "show", "--help")
        == """\
Usage: tokenward budget show [OPTIONS]

  Show each budget's live status: spent, reserved, remaining, utilization, reset
  time.

Options:
  -c, --config FILE        Budgets file (default budgets.toml; .toml or .json).
  --store URL              Budget store: a SQLite path, postgresql://... or
                           redis://... (default: the [store] url in the budgets
                           file, then $TOKENWARD_BUDGET_STORE).
  -u, --user ID            Show this user's counters (repeatable).
  --dim KEY=VALUE          Another scope dimension, e.g. agent=support
                           (repeatable).
  -n, --name NAME          Only this budget (repeatable).
  --all-scopes             One row per scope key the ledger has seen in each
                           budget's current window.
  --db PATH_OR_URL         Ledger for --all-scopes (default $TOKENWARD_DB or
                           .tokenward/ledger.db).
  -f, --format table|json  Output format.  [default: table]
  --help                   Show this message and exit.
"""
    )


# ----------------------------------------------------------------------------- money
def test_cost_of_nothing_is_zero_dollars_not_scientific() -> None:
    assert priced(ok("cost", "-m", "gpt-4o")) == snapshot("""\
       Cost of one call: gpt-4o (openai)
┏━━━━━━━━━━━┳━━━━━━━━┳━━━━━━━━┳━━━━━━━━┳━━━━━━━┓
┃ component ┃ tokens ┃ $ / 1M ┃ amount ┃ share ┃
┡━━━━━━━━━━━╇━━━━━━━━╇━━━━━━━━╇━━━━━━━━╇━━━━━━━┩
│ total     │      0 │        │  $0.00 │     — │
└───────────┴────────┴────────┴────────┴───────┘
""")
    data = json.loads(ok("cost", "-m", "gpt-4o", "-f", "json"))
    assert data["total"] == "0"  # exact and fixed-point for machines (was "0E-8")


def test_cost_batch_shows_the_batch_price_next_to_the_batch_amount() -> None:
    out = ok("cost", "-m", "gpt-4o", "--input", "1000", "--output", "500", "--batch")
    assert priced(out) == snapshot("""\
 Cost of one call: gpt-4o (openai), batch price (50% off)
┏━━━━━━━━━━━┳━━━━━━━━┳━━━━━━━━━━━━━━━━┳━━━━━━━━━━┳━━━━━━━━┓
┃ component ┃ tokens ┃ $ / 1M (batch) ┃   amount ┃  share ┃
┡━━━━━━━━━━━╇━━━━━━━━╇━━━━━━━━━━━━━━━━╇━━━━━━━━━━╇━━━━━━━━┩
│ input     │  1,000 │          $1.25 │ $0.00125 │  33.3% │
│ output    │    500 │          $5.00 │  $0.0025 │  66.7% │
├───────────┼────────┼────────────────┼──────────┼────────┤
│ total     │  1,500 │                │ $0.00375 │ 100.0% │
└───────────┴────────┴────────────────┴──────────┴────────┘
""")
    comps = {
        c["component"]: c
        for c in json.loads(
            ok(
                "cost",
                "-m",
                "gpt-4o",
                "--input",
                "1000",
                "--output",
                "500",
                "--batch",
                "-f",
                "json",
            )
        )["components"]
    }
    # genai-prices' batch price for gpt-4o input: $1.25 per 1M tokens
    assert (comps["input"]["price_per_1m"], comps["input"]["amount"]) == ("1.25", "0.00125")


# ----------------------------------------------------------------------------- errors
def test_errors_are_phrased_as_commands(tmp_path: Path) -> None:
    assert error("count", "hi", "-m", "zzz-model") == (
        "error: unknown model 'zzz-model'; list the known ones with "
        "`tokenward models --search zzz`\n"
    )
    assert error(
        "budget",
        "set",
        "b",
        "--limit-usd",
        "1",
        "--window",
        "fortnight",
        "--config",
        str(tmp_path / "b.toml"),
    ) == (
        "error: --window 'fortnight': must be request, conversation, day, week, month or a "
        "rolling length like 24h, 30m, 7d, 1w; e.g. --window day\n"
    )
    assert error("budget", "set", "b", "--config", str(tmp_path / "b.toml")) == (
        "error: tokenward budget set: budget 'b' needs exactly one of --limit-usd or "
        "--limit-tokens (got neither)\n"
    )


def test_since_too_far_back(ledger: str) -> None:
    assert error("report", "--db", ledger, "--since", "999999999d") == (
        "error: --since 999999999d: too far back (before the year 1); give a shorter duration "
        "such as 3650d, or a date such as 2020-01-01\n"
    )


def test_budget_store_without_budgets(ledger: str) -> None:
    assert error("report", "--db", ledger, "--budget-store", "memory") == (
        "error: --budget-store reads the live status of the budgets in --budgets FILE; add "
        "--budgets budgets.toml (create it with `tokenward budget set NAME --limit-usd 5 "
        "--scope user_id`)\n"
    )


# ----------------------------------------------------------------------------- report
def test_report_table(ledger: str) -> None:
    """errors = failed + cancelled; "—" where no latency was recorded; Mar 3 shown as zero."""
    out = ok("report", "--db", ledger, *RANGE, "--by", "user_id")
    assert snapshot(out.replace(ledger, "LEDGER")) == snapshot("""\
tokenward report  2026-03-01 00:00 -> 2026-03-05 00:00 UTC  (LEDGER)
Totals
┏━━━━━━━┳━━━━━━━━┳━━━━━━━┳━━━━━━━━━━━━┳━━━━━━━━━━━━━┳━━━━━━━━┳━━━━━━━━━━━┳━━━━━━━━━━━━┳━━━━━━━━━━┓
┃ calls ┃ errors ┃ input ┃ cache read ┃ cache write ┃ output ┃ reasoning ┃ tool calls ┃     cost ┃
┡━━━━━━━╇━━━━━━━━╇━━━━━━━╇━━━━━━━━━━━━╇━━━━━━━━━━━━━╇━━━━━━━━╇━━━━━━━━━━━╇━━━━━━━━━━━━╇━━━━━━━━━━┩
│     4 │      2 │ 3,010 │      1,024 │           0 │    305 │         0 │          0 │ $0.00922 │
└───────┴────────┴───────┴────────────┴─────────────┴────────┴───────────┴────────────┴──────────┘
By user_id
┏━━━━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━┳━━━━━━━━┳━━━━━━━┳━━━━━━━━┳━━━━━━━━━━━┳━━━━━━━━━━━━┳━━━━━━━┓
┃ user_id                ┃ calls ┃ errors ┃ input ┃ output ┃ cache hit ┃       cost ┃ share ┃
┡━━━━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━╇━━━━━━━━╇━━━━━━━╇━━━━━━━━╇━━━━━━━━━━━╇━━━━━━━━━━━━╇━━━━━━━┩
│ u2                     │     1 │      1 │ 2,000 │    200 │     51.2% │   $0.00572 │ 62.0% │
│ u1                     │     2 │      1 │ 1,000 │    100 │      0.0% │    $0.0035 │ 37.9% │
│ =HYPERLINK("http://x") │     1 │      0 │    10 │      5 │      0.0% │ $0.0000045 │ <0.1% │
└────────────────────────┴───────┴────────┴───────┴────────┴───────────┴────────────┴───────┘
By model
┏━━━━━━━━━━━━━┳━━━━━━━┳━━━━━━━┳━━━━━━━━━━━━┳━━━━━━━━┳━━━━━━━━━━━┳━━━━━━━━━━━━━┳━━━━━━━━━━━━┳━━━━━━━━┓
┃ model       ┃ calls ┃ input ┃ cache read ┃ output ┃ reasoning ┃ avg latency ┃       cost ┃  share ┃
┡━━━━━━━━━━━━━╇━━━━━━━╇━━━━━━━╇━━━━━━━━━━━━╇━━━━━━━━╇━━━━━━━━━━━╇━━━━━━━━━━━━━╇━━━━━━━━━━━━╇━━━━━━━━┩
│ gpt-4o      │     2 │ 3,000 │      1,024 │    300 │         0 │           — │   $0.00922 │ 100.0% │
│ gpt-4o-mini │     2 │    10 │          0 │      5 │         0 │      426 ms │ $0.0000045 │  <0.1% │
└─────────────┴───────┴───────┴────────────┴────────┴───────────┴─────────────┴────────────┴────────┘
Analytics
┌──────────────────────────────┬──────────────────┐
│ success rate                 │            50.0% │
│ estimated events             │             0.0% │
│ avg cost per call            │         $0.00231 │
│ avg input / output per call  │         752 / 76 │
│ input:output ratio           │            9.9:1 │
│ avg latency                  │           426 ms │
│ cache hit rate (of input)    │            34.0% │
│ cache savings (reads)        │         $0.00128 │
│ reasoning share of output    │             0.0% │
│ peak hour (UTC, last 4 days) │ 09:00 ($0.00922) │
└──────────────────────────────┴──────────────────┘
Per day
┏━━━━━━━━━━━━┳━━━━━━━┳━━━━━━━━┳━━━━━━━━━━━━┳━━━━━━━━━━━━━━━━━━━━━━┓
┃ day        ┃ calls ┃ tokens ┃       cost ┃                      ┃
┡━━━━━━━━━━━━╇━━━━━━━╇━━━━━━━━╇━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━━━━━━━┩
│ 2026-03-02 │     2 │  3,300 │   $0.00922 │ #################### │
│ 2026-03-03 │     0 │      0 │      $0.00 │                      │
│ 2026-03-04 │     2 │     15 │ $0.0000045 │ #                    │
└────────────┴───────┴────────┴────────────┴──────────────────────┘
""")


def test_errors_are_counted_alike_in_csv_and_json(ledger: str) -> None:
    text = ok("report", "--db", ledger, *RANGE, "--by", "user_id", "-f", "csv")
    assert text.splitlines()[0] == (
        "user_id,calls,errors,failed,cancelled,estimated,input,output,cache_read,"
        "cache_write_5m,cache_write_1h,reasoning,audio_input,audio_output,image_input,"
        "total_tokens,tool_calls,cost,unpriced_calls,avg_latency_ms"
    )
    rows = {r["user_id"]: r for r in csv.DictReader(io.StringIO(text))}
    assert (rows["u1"]["errors"], rows["u1"]["failed"], rows["u1"]["cancelled"]) == ("1", "0", "1")
    assert rows["u2"]["errors"] == "1" and rows["u2"]["cost"] == "0.00572"
    data = json.loads(ok("report", "--db", ledger, *RANGE, "-f", "json"))
    t = data["totals"]
    assert (t["errors"], t["failed"], t["cancelled"]) == (2, 1, 1)
    assert t["cost"] == "0.0092245" and data["unpriced"] is None
    assert [d["bucket"][:10] for d in data["daily"]] == ["2026-03-02", "2026-03-03", "2026-03-04"]


def test_csv_cells_cannot_become_formulas(ledger: str) -> None:
    text = ok("report", "--db", ledger, *RANGE, "--by", "user_id", "-f", "csv")
    assert text.splitlines()[-1].startswith('"\'=HYPERLINK(""http://x"")",1,')
    from tokenward.report._tables import csv_safe

    for bad in ("=1+1", "+1", "-1", "@SUM(A1)", "\tx", "\rx"):
        assert csv_safe(bad) == "'" + bad
    assert csv_safe("alice") == "alice" and csv_safe(5) == 5


# ----------------------------------------------------------------------------- budgets
@pytest.fixture
def budgets_file(tmp_path: Path, ledger: str) -> Path:
    path = tmp_path / "budgets.toml"
    for args in (
        ("per-user", "--limit-usd", "0.01", "--window", "month", "--scope", "user_id"),
        ("per-agent", "--limit-tokens", "5000", "--window", "month", "--scope", "agent"),
        ("everyone", "--limit-usd", "1", "--window", "month", "--mode", "soft"),
    ):
        ok("budget", "set", *args, "--config", str(path), "--store", str(tmp_path / "b.db"))
    return path


def test_report_budgets_in_table_and_json_not_csv(ledger: str, budgets_file: Path) -> None:
    """Utilization recomputed from the ledger; the windows are "now", so an empty range."""
    out = ok("report", "--db", ledger, "--since", "1d", "--budgets", str(budgets_file))
    assert "Budgets" in out and "everyone" in out
    data = json.loads(ok("report", "--db", ledger, "-f", "json", "--budgets", str(budgets_file)))
    assert [b["budget"] for b in data["budgets"]] == ["everyone"]  # no spend this month per key
    assert data["budgets"][0]["spent"] == "0" and data["budgets"][0]["source"] == "ledger"
    assert error("report", "--db", ledger, "-f", "csv", "--budgets", str(budgets_file)) == (
        "error: --budgets does not apply to -f csv (one table of grouped rows); use -f table, "
        "-f json or -f html to see budget utilization\n"
    )


def test_budget_show_has_no_duplicate_rows(budgets_file: Path) -> None:
    out = ok(
        "budget",
        "show",
        "--config",
        str(budgets_file),
        "-u",
        "a",
        "-u",
        "b",
        "--dim",
        "agent=x",
        "-f",
        "json",
    )
    rows = [(r["budget"], r["scope_key"]) for r in json.loads(out)]
    assert rows == [
        ("per-user", "user_id=a"),
        ("per-user", "user_id=b"),
        ("per-agent", "agent=x"),
        ("everyone", "*"),
    ]


def test_budget_show_lists_scope_keys_from_the_ledger(tmp_path: Path, budgets_file: Path) -> None:
    db = tmp_path / "now.db"
    acct = Accountant(ledger=str(db))
    acct.record("gpt-4o", Usage(input=100, output=10), user_id="alice", agent="bot")
    acct.record("gpt-4o", Usage(input=100, output=10), user_id="bob", agent="bot")
    acct.close()
    out = ok(
        "budget",
        "show",
        "--config",
        str(budgets_file),
        "--all-scopes",
        "--db",
        str(db),
        "-f",
        "json",
    )
    rows = sorted((r["budget"], r["scope_key"]) for r in json.loads(out))
    assert rows == [
        ("everyone", "*"),
        ("per-agent", "agent=bot"),
        ("per-user", "user_id=alice"),
        ("per-user", "user_id=bob"),
    ]
    table = ok("budget", "show", "--config", str(budgets_file))
    assert "per-user: counted per user_id; pass --user ID, or --all-scopes" in table


def test_budget_set_creates_the_store_that_show_reads(tmp_path: Path) -> None:
    path, store = tmp_path / "budgets.toml", tmp_path / "s" / "budgets.db"
    assert (
        run(
            "budget",
            "set",
            "daily",
            "--limit-usd",
            "5",
            "--config",
            str(path),
            "--store",
            str(store),
        ).stdout
        == f"added budget 'daily' in {path}, store {store} (created)\n"
    )
    shown = json.loads(ok("budget", "show", "--config", str(path), "-f", "json"))
    assert shown[0]["scope_key"] == "*" and shown[0]["spent"] == "0"


# ----------------------------------------------------------------------------- demo
def test_demo_narration_is_not_an_error(tmp_path: Path) -> None:
    result = run("demo", "--db", str(tmp_path / "d.db"))
    assert result.exit_code == 0 and result.stderr == ""  # no progress bar off a terminal
    lines = result.stdout.splitlines()
    assert not [line for line in lines if line.startswith("error")]
    assert "simulated failure: carol: stream cancelled, partial usage recorded" in lines
    assert "simulated failure: alice: provider error, reservation released" in lines
