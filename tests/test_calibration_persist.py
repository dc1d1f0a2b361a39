"""Estimator calibration kept in the ledger: loaded when an Accountant starts, written off the
hot path, merged across processes, its accuracy over time shown by
``tokenward models --calibration``; and the Accountant's counts flagged exact per count."""

from __future__ import annotations

import json
import logging
import sqlite3
import subprocess
import sys
import threading
import uuid
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from typer.testing import CliRunner

from tokenward import Accountant, Catalog, ModelInfo, Prices, Usage
from tokenward.cli import get_app
from tokenward.counting import (
    CalibrationRecord,
    CalibrationSync,
    Calibrator,
    default_calibrator,
    get_counter,
    merge_records,
    read_calibration,
    register_tokenizer,
    unregister_tokenizer,
)
from tokenward.counting._persist import NAMESPACE, state_key
from tokenward.counting._provider import _ProviderCountTokens
from tokenward.ledger import SQLiteLedger, open_ledger

MESSAGES = [
    {
        "role": "user",
        "content": "Summarize the quarterly report in three bullet points, and list the risks "
        "the board should discuss at the next meeting.",
    }
]


@pytest.fixture
def model() -> Any:
    """A fresh model without a local tokenizer (estimated), forgotten by the process-wide
    calibrator afterwards."""
    name = f"calib-test-{uuid.uuid4().hex[:8]}"
    catalog = Catalog.default()
    catalog.register(
        ModelInfo(
            name=name,
            provider="acme",
            context_window=100_000,
            max_output=4096,
            prices=Prices(input=Decimal("1"), output=Decimal("2")),
            tokenizer=None,
            as_of=date(2026, 11, 23),
            source="https://example.com/pricing",
        )
    )
    yield name, catalog
    default_calibrator().reset(name)


def _teach(acct: Accountant, name: str, factor: float, n: int = 6) -> int:
    """Settle ``n`` calls the provider counts as ``factor`` x our raw estimate; the raw one."""
    raw = get_counter(name, catalog=acct.catalog).raw_count_messages(MESSAGES)
    for _ in range(n):
        rid = uuid.uuid4().hex
        acct.preflight(rid, name, messages=MESSAGES, max_output_tokens=10)
        acct.settle(rid, Usage(input=round(raw * factor), output=5))
    return raw


def _estimate(acct: Accountant, name: str) -> int:
    rid = uuid.uuid4().hex
    est = acct.preflight(rid, name, messages=MESSAGES, max_output_tokens=10)
    tokens = est.prompt_tokens
    acct.release(rid)
    return tokens


class CountingLedger(SQLiteLedger):
    """A real SQLite ledger that counts its calibration state-document calls and their threads
    (the output predictor keeps its own documents in another namespace)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.puts: list[str] = []
        self.gets = 0
        self.put_done = threading.Event()

    def put_state(self, namespace: str, key: str, value: Any) -> None:
        super().put_state(namespace, key, value)
        if namespace == "calibration":
            self.puts.append(threading.current_thread().name)
            self.put_done.set()

    def get_state(self, namespace: str) -> dict[str, dict[str, Any]]:
        self.gets += namespace == "calibration"
        return super().get_state(namespace)


# ----------------------------------------------------------------------------- restart
def test_learned_calibration_survives_a_restart(model, tmp_path):
    name, catalog = model
    db = str(tmp_path / "ledger.db")
    with Accountant(catalog=catalog, ledger=db) as acct:
        raw = _teach(acct, name, 1.5)
        assert _estimate(acct, name) == pytest.approx(1.5 * raw, abs=1)
    reader = open_ledger(db, read_only=True)
    docs = reader.get_state(NAMESPACE)
    reader.close()
    assert state_key(("acme", name, "*")) in docs
    assert docs[state_key(("acme", name, "*"))]["observations"] == 6

    default_calibrator().reset(name)  # what a new process knows
    with Accountant(catalog=catalog, ledger=db) as fresh:
        assert _estimate(fresh, name) == pytest.approx(1.5 * raw, abs=1)


def test_a_new_process_estimates_with_the_persisted_ratio(model, tmp_path):
    name, catalog = model
    db = str(tmp_path / "ledger.db")
    with Accountant(catalog=catalog, ledger=db) as acct:
        raw = _teach(acct, name, 1.25)
    script = f"""
import uuid
from datetime import date
from decimal import Decimal
from tokenward import Accountant, Catalog, ModelInfo, Prices
catalog = Catalog.default()
catalog.register(ModelInfo(name={name!r}, provider="acme", context_window=100_000,
    max_output=4096, prices=Prices(input=Decimal("1"), output=Decimal("2")), tokenizer=None,
    as_of=date(2026, 11, 23), source="https://example.com/pricing"))
msgs = {MESSAGES!r}
with Accountant(catalog=catalog, ledger={db!r}) as acct:
    est = acct.preflight("r", {name!r}, messages=msgs, max_output_tokens=10)
    print(est.prompt_tokens, est.exact)
    acct.release("r")
"""
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True
    ).stdout.split()
    assert int(out[0]) == pytest.approx(1.25 * raw, abs=1) and out[1] == "False"


def test_postgres_ledger_keeps_the_calibration(model, postgres_url):
    name, catalog = model
    from tokenward.ledger import SQLLedger

    ledger = SQLLedger(postgres_url)
    ledger.put_state(NAMESPACE, "stale", {"provider": "x", "model": "y", "log_ratios": []})
    with Accountant(catalog=catalog, ledger=ledger) as acct:
        raw = _teach(acct, name, 0.8)
    default_calibrator().reset(name)
    with Accountant(catalog=catalog, ledger=SQLLedger(postgres_url)) as fresh:
        assert _estimate(fresh, name) == pytest.approx(0.8 * raw, abs=1)


# ----------------------------------------------------------------------------- hot path
def test_no_state_write_while_calls_settle_only_at_close(model, tmp_path):
    name, catalog = model
    ledger = CountingLedger(str(tmp_path / "ledger.db"))
    acct = Accountant(catalog=catalog, ledger=ledger)
    assert ledger.gets == 1  # loaded once, at construction
    _teach(acct, name, 1.5, n=12)
    assert ledger.puts == [] and ledger.gets == 1  # no state round trip per call
    acct.close()
    reader = open_ledger(str(tmp_path / "ledger.db"), read_only=True)
    records = read_calibration(reader)[0]
    reader.close()
    assert len(ledger.puts) == len(records) >= 1
    assert [r.samples for r in records if r.content_class == "*"] == [12]


def test_background_write_happens_off_the_calling_thread(model, tmp_path):
    name, _ = model
    ledger = CountingLedger(str(tmp_path / "ledger.db"))
    cal = Calibrator()
    sync = CalibrationSync(ledger, cal, interval=0.01)
    try:
        for _ in range(3):
            cal.observe(1000, 1300, model=name, provider="acme")  # a ratio appears: snapshot
        assert ledger.put_done.wait(30)
        assert threading.current_thread().name not in ledger.puts
        assert read_calibration(ledger)[0][0].ratio == pytest.approx(1.3)
    finally:
        sync.close()
        ledger.close()


# ----------------------------------------------------------------------------- failures
def test_unreadable_records_are_skipped_with_a_warning(model, tmp_path, caplog):
    name, catalog = model
    db = str(tmp_path / "ledger.db")
    with Accountant(catalog=catalog, ledger=db) as acct:
        raw = _teach(acct, name, 1.5)
        acct.ledger.put_state(NAMESPACE, "broken", {"log_ratios": "not numbers"})
    default_calibrator().reset(name)
    with caplog.at_level(logging.WARNING, logger="tokenward"):
        fresh = Accountant(catalog=catalog, ledger=db)
    assert "skipped 1 unreadable calibration record" in caplog.text
    assert _estimate(fresh, name) == pytest.approx(1.5 * raw, abs=1)  # the others loaded
    fresh.close()


def test_an_unreadable_state_table_leaves_the_accountant_uncalibrated(model, tmp_path, caplog):
    name, catalog = model
    db = str(tmp_path / "ledger.db")
    with Accountant(catalog=catalog, ledger=db) as acct:
        raw = _teach(acct, name, 1.5)
    with sqlite3.connect(db) as conn:
        conn.execute(
            "UPDATE tokenward_state SET value = '{not json' WHERE namespace = ?", (NAMESPACE,)
        )
    default_calibrator().reset(name)
    with caplog.at_level(logging.WARNING, logger="tokenward"):
        fresh = Accountant(catalog=catalog, ledger=db)
    assert "could not load the estimator calibration" in caplog.text
    assert _estimate(fresh, name) == raw  # uncalibrated, and calls still work
    rid = uuid.uuid4().hex
    fresh.preflight(rid, name, messages=MESSAGES)
    assert fresh.settle(rid, Usage(input=raw, output=3)) is not None
    fresh.close()


def test_a_ledger_that_cannot_store_state_never_breaks_the_calls(model, caplog):
    name, catalog = model

    from tokenward.ledger import MemoryLedger

    class Broken(MemoryLedger):
        def get_state(self, namespace: str) -> dict[str, dict[str, Any]]:
            raise OSError("disk on fire")

        def put_state(self, namespace: str, key: str, value: Any) -> None:
            raise OSError("disk on fire")

    with caplog.at_level(logging.WARNING, logger="tokenward"):
        acct = Accountant(catalog=catalog, ledger=Broken())
        _teach(acct, name, 1.5)
        acct.flush()
        acct.close()  # never raises
    assert "could not load the estimator calibration" in caplog.text
    assert caplog.text.count("could not write the estimator calibration") == 1  # logged once


# ----------------------------------------------------------------------------- merging, accuracy
class _Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 1, 12, tzinfo=timezone.utc)

    def __call__(self) -> datetime:
        return self.now


def test_accuracy_is_kept_per_day_before_and_after_calibration():
    clock = _Clock()
    seen: list[CalibrationRecord] = []
    cal = Calibrator(clock=clock, on_snapshot=seen.append)
    for _ in range(5):
        cal.observe(1000, 1200, model="m", provider="p")
    clock.now += timedelta(days=1)
    n = len(seen)
    cal.observe(1000, 1200, model="m", provider="p")  # same ratio, new day: news for a store
    assert len(seen) == n + 1
    day1, day2 = cal.accuracy("m", provider="p")
    assert (day1.day, day1.samples, day2.samples) == (date(2026, 11, 1), 5, 1)
    assert day1.error_before == pytest.approx(1 - 1 / 1.2)  # raw estimate 1000 vs 1200
    assert day2.error_after == pytest.approx(0.0)  # calibrated: 1000 x 1.2
    assert 0 < day1.error_after < day1.error_before  # first 3 uncalibrated, then exact
    rec = CalibrationRecord.from_dict(json.loads(json.dumps(cal.state()[0].to_dict())))
    assert rec.accuracy == (day1, day2) and rec.samples == 6


def test_records_from_two_processes_merge():
    clock = _Clock()
    a, b = Calibrator(clock=clock), Calibrator(clock=clock)
    for _ in range(4):
        a.observe(1000, 1100, model="m", provider="p")
    clock.now += timedelta(days=1)
    for _ in range(8):
        b.observe(1000, 1300, model="m", provider="p")
    merged = merge_records(a.state()[0], b.state()[0])
    assert merged.ratio == pytest.approx(1.3) and merged.samples == 8  # the larger window
    assert [p.day.day for p in merged.accuracy] == [1, 2]  # both histories
    assert {round(s.ratio, 2) for s in merged.history} == {1.1, 1.3}
    # merge_state keeps what a calibrator learned, with the stored history
    a.merge_state([b.state()[0].to_dict()])
    assert a.ratio("m", provider="p") == pytest.approx(1.3)
    assert len(a.accuracy("m", provider="p")) == 2


def test_writes_merge_with_what_another_process_stored(model, tmp_path):
    name, _ = model
    ledger = SQLiteLedger(str(tmp_path / "ledger.db"))
    clock = _Clock()
    other = Calibrator(clock=clock)
    for _ in range(10):
        other.observe(1000, 1200, model=name, provider="acme")
    for rec in other.state():
        ledger.put_state(NAMESPACE, state_key(rec.key), rec.to_dict())
    clock.now += timedelta(days=3)
    mine = Calibrator(clock=clock)
    sync = CalibrationSync(ledger, mine, load=False, interval=0)
    for _ in range(3):
        mine.observe(1000, 1250, model=name, provider="acme")
    sync.close()
    (stored,) = read_calibration(ledger)[0]
    assert stored.samples == 10 and stored.ratio == pytest.approx(1.2)  # the larger window
    assert [p.samples for p in stored.accuracy] == [10, 3]  # and both days of accuracy
    ledger.close()


# ----------------------------------------------------------------------------- CLI
def _ledger_with_calibration(path: str, model: str) -> None:
    clock = _Clock()
    cal = Calibrator(clock=clock)
    ledger = SQLiteLedger(path)
    sync = CalibrationSync(ledger, cal, interval=0)
    for day in range(3):
        for _ in range(4):
            cal.observe({"code": 1000}, 1000 + 100 * (day + 1), model=model, provider="acme")
        clock.now += timedelta(days=1)
    sync.close()
    ledger.close()


def test_cli_shows_calibration_and_its_drift(tmp_path):
    db = str(tmp_path / "ledger.db")
    _ledger_with_calibration(db, "acme-large")
    runner = CliRunner()
    result = runner.invoke(get_app(), ["models", "--calibration", "--db", db])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "Estimator calibration (2)" in out and "acme-large" in out
    assert "code" in out and "all" in out and "12" in out  # samples
    assert "Estimation accuracy over time" in out and "2026-11-03" in out
    assert "1.100 > 1.149 > 1.200" in out  # the drift of the ratio (log-space medians)

    data = json.loads(
        runner.invoke(get_app(), ["models", "--calibration", "--db", db, "-f", "json"]).stdout
    )
    code = next(r for r in data if r["content_class"] == "code")
    assert code["samples"] == 12 and code["ratio"] == pytest.approx(1.2)  # median of 1.1-1.3
    assert [p["day"] for p in code["accuracy"]] == ["2026-11-01", "2026-11-02", "2026-11-03"]
    assert code["accuracy"][-1]["error_before"] == pytest.approx(1 - 1 / 1.3)
    assert code["error_after"] < code["error_before"]
    assert code["history"][0]["ratio"] == pytest.approx(1.1)

    only = runner.invoke(
        get_app(), ["models", "--calibration", "--db", db, "-s", "nothing", "-f", "json"]
    )
    assert json.loads(only.stdout) == []


def test_cli_calibration_on_an_empty_ledger_and_usage_errors(tmp_path):
    db = str(tmp_path / "empty.db")
    SQLiteLedger(db).close()
    runner = CliRunner()
    result = runner.invoke(get_app(), ["models", "--calibration", "--db", db])
    assert result.exit_code == 0 and "No estimator calibration" in result.stdout
    assert runner.invoke(get_app(), ["models", "--db", db]).exit_code == 2
    missing = runner.invoke(get_app(), ["models", "--calibration", "--db", str(tmp_path / "no")])
    assert missing.exit_code == 2 and "no ledger" in missing.stderr


# ----------------------------------------------------------------------------- exact flags
def test_estimate_exactness_comes_from_the_detailed_count():
    acct = Accountant()
    image = {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}
    est = acct.preflight(
        "img", "gpt-4o", messages=[{"role": "user", "content": [image]}], max_output_tokens=5
    )
    assert est.exact is False  # tiktoken counted the text, the image size is unknown
    text = acct.preflight("txt", "gpt-4o", messages=MESSAGES, max_output_tokens=5)
    assert text.exact is True


class _StubCountTokens(_ProviderCountTokens):
    provider = "anthropic"

    def __init__(self, answer: bool) -> None:
        super().__init__(timeout=1.0, cache_size=64, cooldown=0.0)
        self.answer = answer
        self.calls = 0

    def _count(self, model: str, msgs: Any, tools: Any, tool_choice: Any) -> tuple[int, bool]:
        self.calls += 1
        if not self.answer:
            raise ConnectionError("endpoint down")
        return 100, True


@pytest.mark.parametrize("answer", [True, False])
def test_provider_counted_prompts_are_flagged_per_count(model, answer):
    name, catalog = model
    stub = _StubCountTokens(answer)
    register_tokenizer(name, stub)
    try:
        acct = Accountant(catalog=catalog)
        est = acct.preflight("p1", name, messages=MESSAGES, max_output_tokens=5)
        assert (est.prompt_tokens == 100) is answer and est.exact is answer
        assert acct.counts_exactly(acct.model_info(name)[0]) is False  # it may fall back
        acct.settle("p1", Usage(input=120, output=5))
        # a call whose prompt was never counted is not counted at settle (no request then)
        other = [{"role": "user", "content": "A different prompt, never counted. " * 4}]
        acct.preflight("p2", name, messages=other, max_output_tokens=5)
        before = stub.calls
        acct.settle("p2", Usage(input=120, output=5))
        assert stub.calls == before
        acct.close()
    finally:
        unregister_tokenizer(name)
