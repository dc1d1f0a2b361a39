"""Budget definition files (TOML/JSON) and ``tokenward budget show|set``."""

from __future__ import annotations

import json
import sys
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from typer.testing import CliRunner

from tokenward._budget_config import (
    BudgetConfig,
    load_budget_config,
    open_budget_store,
    save_budget_config,
    to_toml,
)
from tokenward.budgets import Budgets, SQLiteBudgetStore
from tokenward.cli import get_app
from tokenward.errors import ConfigurationError

runner = CliRunner()
APP = get_app()


def run(*args: str):  # type: ignore[no-untyped-def]
    return runner.invoke(APP, list(args))


# ----------------------------------------------------------------------------- file format
@pytest.mark.parametrize("suffix", [".toml", ".json"])
def test_round_trip_keeps_every_setting(tmp_path, suffix: str) -> None:
    cfg = BudgetConfig(
        {
            "per-user daily": {  # a name that needs quoting in TOML
                "limit_usd": "5.10",
                "window": "day",
                "scope": "user_id",
                "mode": "soft",
                "thresholds": [0.5, 0.9],
                "timezone": "Europe/Berlin",
                "overrides": {'vip "gold"\\x': "50"},
                "where": {"agent": "support"},
            },
            "rolling": {"limit_tokens": 100_000, "window": "24h", "scope": ["user_id", "agent"]},
        },
        store="sqlite:///tmp/b.db",
    )
    path = tmp_path / f"budgets{suffix}"
    save_budget_config(path, cfg)
    back = load_budget_config(path)
    assert back.store == "sqlite:///tmp/b.db"
    assert back.budgets == cfg.budgets
    b1, b2 = back.build()
    assert b1.name == "per-user daily" and b1.limit_usd == Decimal("5.10") and b1.mode == "soft"
    assert b1.thresholds == (0.5, 0.9) and b1.scope == ("user_id",)
    assert b1.limit_for('user_id=vip "gold"\\x') == 50_000_000_000
    assert b2.limit_tokens == 100_000 and b2.window.length == timedelta(hours=24)
    assert b2.scope == ("user_id", "agent")


def test_toml_strings_are_escaped() -> None:
    text = to_toml(BudgetConfig({"b": {"limit_usd": "1", "where": {"agent": 'a"\n\\b'}}}))
    assert 'agent = "a\\"\\n\\\\b"' in text
    import tomllib

    assert tomllib.loads(text)["budgets"]["b"]["where"]["agent"] == 'a"\n\\b'


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('[budgets.b]\nlimit_usd = "-1"\n', "limit_usd"),
        ('[budgets.b]\nlimit_usd = "1"\nwindow = "fortnight"\n', "fortnight"),
        ('[budgets.b]\nlimit_usd = "1"\ncolour = "red"\n', "unknown setting"),
        ('[budgets.b]\nwindow = "day"\n', "exactly one of"),
        ("[budgetz.b]\n", "unknown section"),
        ("[budgets.b\n", "not valid TOML"),
    ],
)
def test_bad_files_fail_clearly(tmp_path, body: str, message: str) -> None:
    path = tmp_path / "b.toml"
    path.write_text(body, encoding="utf-8")
    with pytest.raises(ConfigurationError, match=message) as info:
        load_budget_config(path)
    assert str(path) in str(info.value)


def test_toml_without_a_reader_says_what_to_do(tmp_path, monkeypatch) -> None:
    path = tmp_path / "b.toml"
    path.write_text('[budgets.b]\nlimit_usd = "1"\n', encoding="utf-8")
    monkeypatch.setitem(sys.modules, "tomllib", None)
    monkeypatch.setitem(sys.modules, "tomli", None)
    with pytest.raises(ConfigurationError, match=r"tomli.*json"):
        load_budget_config(path)
    json_path = tmp_path / "b.json"
    json_path.write_text('{"budgets": {"b": {"limit_usd": "1"}}}', encoding="utf-8")
    assert load_budget_config(json_path).build()[0].limit_usd == Decimal(1)


def test_open_budget_store_urls(tmp_path) -> None:
    with pytest.raises(ConfigurationError, match="unknown scheme"):
        open_budget_store("ftp://x")
    with pytest.raises(ConfigurationError, match="no budget store"):
        open_budget_store(str(tmp_path / "missing.db"))
    s = open_budget_store(f"sqlite:///{tmp_path / 'b.db'}")
    assert isinstance(s, SQLiteBudgetStore) and s.path == str(tmp_path / "b.db")
    s.close()


# ----------------------------------------------------------------------------- budget set
def test_budget_set_creates_then_updates(tmp_path) -> None:
    path = tmp_path / "budgets.toml"
    r = run(
        "budget",
        "set",
        "per-user",
        "--limit-usd",
        "5",
        "--window",
        "day",
        "--scope",
        "user_id",
        "--config",
        str(path),
    )
    assert r.exit_code == 0, r.output
    assert "added budget 'per-user'" in r.stdout
    r = run(
        "budget",
        "set",
        "team",
        "--limit-tokens",
        "200000",
        "--window",
        "7d",
        "--where",
        "agent=support",
        "--mode",
        "soft",
        "--threshold",
        "0.8",
        "--config",
        str(path),
    )
    assert r.exit_code == 0, r.output
    r = run(
        "budget",
        "set",
        "per-user",
        "--limit-usd",
        "7.50",
        "--scope",
        "user_id",
        "--config",
        str(path),
    )
    assert "updated budget 'per-user'" in r.stdout
    cfg = load_budget_config(path)
    assert list(cfg.budgets) == ["per-user", "team"]
    assert cfg.budgets["per-user"]["limit_usd"] == "7.50"
    team = cfg.build()[1]
    assert team.limit_tokens == 200_000 and team.window.length == timedelta(days=7)
    assert (
        team.mode == "soft" and team.thresholds == (0.8,) and team.where == {"agent": {"support"}}
    )


def test_budget_set_validates_before_writing(tmp_path) -> None:
    path = tmp_path / "budgets.json"
    r = run("budget", "set", "b", "--limit-usd", "-3", "--config", str(path))
    assert r.exit_code == 2 and "--limit-usd '-3': must be an amount greater than 0" in r.stderr
    r = run("budget", "set", "b", "--limit-usd", "abc", "--config", str(path))
    assert r.exit_code == 2 and "--limit-usd 'abc': must be an amount in USD" in r.stderr
    r = run(
        "budget", "set", "b", "--limit-usd", "1", "--window", "fortnight", "--config", str(path)
    )
    assert r.exit_code == 2 and "fortnight" in r.stderr
    assert not path.exists()
    r = run("budget", "set", "b", "--limit-usd", "1", "--config", str(path))
    assert r.exit_code == 0
    assert json.loads(path.read_text())["budgets"]["b"]["limit_usd"] == "1"


# ----------------------------------------------------------------------------- budget show
@pytest.fixture
def live_store(tmp_path):  # type: ignore[no-untyped-def]
    """A budgets file and a SQLite store where u1 spent $1.25 and holds a $0.50 reservation."""
    path = tmp_path / "budgets.toml"
    assert (
        run(
            "budget",
            "set",
            "per-user",
            "--limit-usd",
            "5",
            "--window",
            "day",
            "--scope",
            "user_id",
            "--config",
            str(path),
        ).exit_code
        == 0
    )
    assert (
        run(
            "budget",
            "set",
            "global",
            "--limit-tokens",
            "10000",
            "--window",
            "month",
            "--config",
            str(path),
        ).exit_code
        == 0
    )
    store_path = tmp_path / "budgets.db"
    budgets = Budgets(*load_budget_config(path).build(), store=SQLiteBudgetStore(store_path))
    h_r1 = budgets.reserve("r1", {"user_id": "u1"}, cost_nanos=1_250_000_000, tokens=3_000)
    budgets.commit(h_r1, cost_nanos=1_250_000_000, tokens=3_000)
    budgets.reserve("r2", {"user_id": "u1"}, cost_nanos=500_000_000, tokens=1_000)
    # r2 stays reserved (a call in flight); the store is not closed so it is not reconciled
    return path, store_path


def test_budget_show_json_has_live_numbers(live_store) -> None:  # type: ignore[no-untyped-def]
    path, store_path = live_store
    r = run(
        "budget",
        "show",
        "--config",
        str(path),
        "--store",
        str(store_path),
        "--user",
        "u1",
        "--format",
        "json",
    )
    assert r.exit_code == 0, r.output
    rows = {row["budget"]: row for row in json.loads(r.stdout)}
    u = rows["per-user"]
    assert u["scope_key"] == "user_id=u1"
    assert Decimal(u["spent"]) == Decimal("1.25")
    assert Decimal(u["reserved"]) == Decimal("0.5")
    assert Decimal(u["remaining"]) == Decimal("3.25")
    assert Decimal(u["limit"]) == Decimal(5)
    assert u["utilization"] == 0.25 and u["calls"] == 1
    tomorrow = (datetime.now(timezone.utc) + timedelta(days=1)).date().isoformat()
    assert u["reset_at"].startswith(tomorrow)
    g = rows["global"]
    assert (g["spent"], g["reserved"], g["remaining"]) == (3_000, 1_000, 6_000)


def test_budget_show_table_and_missing_scope_hint(live_store) -> None:  # type: ignore[no-untyped-def]
    path, store_path = live_store
    r = run("budget", "show", "--config", str(path), "--store", str(store_path))
    assert r.exit_code == 0, r.output
    assert "pass --user ID" in r.stdout  # per-user needs a user to show
    assert "3,000" in r.stdout and "30.0%" in r.stdout  # the global token budget
    r = run(
        "budget",
        "show",
        "--config",
        str(path),
        "--store",
        str(store_path),
        "-u",
        "u1",
        "--name",
        "per-user",
    )
    assert "$1.25" in r.stdout and "$3.25" in r.stdout and "25.0%" in r.stdout
    assert "global" not in r.stdout.replace("Budgets (", "")


def test_budget_show_errors(tmp_path, live_store) -> None:  # type: ignore[no-untyped-def]
    path, store_path = live_store
    r = run("budget", "show", "--config", str(tmp_path / "nope.toml"))
    assert r.exit_code == 2 and "budget set" in r.stderr
    r = run("budget", "show", "--config", str(path))
    assert r.exit_code == 2 and "--store" in r.stderr
    r = run("budget", "show", "--config", str(path), "--store", str(store_path), "--name", "zzz")
    assert r.exit_code == 2 and "no budget named zzz" in r.stderr


def test_store_url_from_the_file(live_store) -> None:  # type: ignore[no-untyped-def]
    path, store_path = live_store
    assert (
        run(
            "budget",
            "set",
            "per-user",
            "--limit-usd",
            "5",
            "--scope",
            "user_id",
            "--store",
            str(store_path),
            "--config",
            str(path),
        ).exit_code
        == 0
    )
    r = run("budget", "show", "--config", str(path), "-u", "u1", "-f", "json")
    assert r.exit_code == 0, r.output
    assert Decimal(json.loads(r.stdout)[0]["spent"]) == Decimal("1.25")


def test_file_errors_name_the_file_the_budget_and_the_fix(tmp_path) -> None:
    """Budget files are validated by pydantic models; one sentence per problem."""
    path = tmp_path / "budgets.toml"
    path.write_text(
        '[budgets.daily]\nlimit_usd = "-1"\nwindow = "fortnight"\n'
        '[budgets.team]\nlimit_tokens = 10\nmode = "strict"\n',
        encoding="utf-8",
    )
    with pytest.raises(ConfigurationError) as info:
        load_budget_config(path)
    assert str(info.value) == (
        f"{path}: budget 'daily': limit_usd must be an amount greater than 0 (at least "
        f"0.000000001) (got '-1'); write e.g. limit_usd = \"5.00\" in {path}, or run "
        f"`tokenward budget set daily --limit-usd 5`; "
        f"{path}: budget 'daily': window must be request, conversation, day, week, month or a "
        f"rolling length like 24h, 30m, 7d, 1w (got 'fortnight'); write e.g. window = \"day\" "
        f"(or week, month, request, conversation, 24h, 30m) in {path}, or run "
        f"`tokenward budget set daily --window day`; "
        f"{path}: budget 'team': mode must be 'hard' or 'soft' (got 'strict'); write e.g. "
        f'mode = "hard" (or "soft") in {path}, or run `tokenward budget set team --mode hard`'
    )
    r = run("budget", "show", "--config", str(path), "--store", "memory")
    assert r.exit_code == 2 and r.stderr.startswith(f"error: {path}: budget 'daily': limit_usd")


def test_budget_file_is_written_by_tomli_w(tmp_path) -> None:
    import tomllib

    path = tmp_path / "budgets.toml"
    save_budget_config(
        path, BudgetConfig({"b": {"limit_usd": Decimal("2.50"), "window": timedelta(hours=24)}})
    )
    text = path.read_text(encoding="utf-8")
    assert text.startswith("# tokenward budget definitions")
    assert tomllib.loads(text) == {"budgets": {"b": {"limit_usd": "2.50", "window": "1d"}}}
