"""Issue 14 item 5 (journal) and item 6: nothing journaled is lost; ``close()`` reconciles.

Fail-open spend recorded while Redis is down is journaled in a file beside the ledger
(SQLite, fsync'd at every entry). A process that dies before Redis is back leaves it there;
the next process replays it once Redis answers. ``Accountant.close()`` reconciles the
journal with the store and closes the budgets (before the fix: the journal was memory-only
and ``close()`` never touched the budgets). ``Accountant(budgets=[Budget(...)])`` enforces.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from tests._faults import RedisProcess
from tokenward import BudgetExceededError
from tokenward.accountant import Accountant
from tokenward.budgets import Budget, Budgets, RedisBudgetStore
from tokenward.usage import Usage

pytestmark = pytest.mark.slow
CALL = Usage(input=1000, output=100)  # gpt-4o-mini: $0.00015 + $0.00006
CALL_COST = Decimal("0.00021")


def _budgets(url: str, **kw: object) -> Budgets:
    return Budgets(
        Budget("per-user", limit_usd="1", scope="user_id"),
        store=RedisBudgetStore(url, socket_timeout=1.0),
        fail_mode="open",
        retry_interval=timedelta(0),
        alert_sinks=(),
        **kw,  # type: ignore[arg-type]
    )


def _spend_while_down(url: str, ledger: Path, calls: int, *, close: bool) -> None:
    """Another process: spends with the store down, then exits (abruptly unless ``close``)."""
    script = textwrap.dedent(
        f"""
        import os
        from datetime import timedelta
        from tokenward.accountant import Accountant
        from tokenward.budgets import Budget, Budgets, RedisBudgetStore
        from tokenward.usage import Usage

        budgets = Budgets(
            Budget("per-user", limit_usd="1", scope="user_id"),
            store=RedisBudgetStore({url!r}, socket_timeout=1.0),
            fail_mode="open", retry_interval=timedelta(0), alert_sinks=(),
        )
        acc = Accountant(ledger={str(ledger)!r}, budgets=budgets)
        for i in range({calls}):
            acc.preflight(f"run-{{i}}", "gpt-4o-mini", prompt_tokens=1000, dims={{"user_id": "u1"}})
            acc.settle(f"run-{{i}}", Usage(input=1000, output=100))
        assert budgets.journal_size == {calls}, budgets.journal_size
        if {close!r}:
            acc.close()
        else:
            os._exit(0)  # no close, no atexit: as if the container was killed
        """
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    subprocess.run([sys.executable, "-c", script], check=True, env=env, timeout=120)


@pytest.mark.parametrize("close", [False, True])
def test_journal_survives_a_process_exit_and_is_replayed_at_next_start(
    redis_process: RedisProcess, tmp_path: Path, close: bool
):
    ledger = tmp_path / "ledger.db"
    redis_process.stop()
    try:
        _spend_while_down(redis_process.url, ledger, 3, close=close)
    finally:
        redis_process.start()
    assert (tmp_path / "ledger.db-budget-journal").exists()
    budgets = _budgets(redis_process.url)
    acc = Accountant(ledger=str(ledger), budgets=budgets)
    assert budgets.journal_size == 3  # loaded from the file at start
    assert budgets.reconcile() == 3
    status = budgets.status("per-user", user_id="u1")
    assert status.spent == 3 * CALL_COST and status.calls == 3
    if close:
        assert acc.ledger.count() == 3  # the ledger kept every event too
    acc.close()
    # replayed once: a third process finds nothing left to replay
    again = _budgets(redis_process.url)
    Accountant(ledger=str(ledger), budgets=again).close()
    assert again.journal_size == 0
    fresh = _budgets(redis_process.url)
    assert fresh.status("per-user", user_id="u1").spent == 3 * CALL_COST
    fresh.close()
    # clean the shared Redis db for the other tests of this module
    import redis

    redis.Redis.from_url(redis_process.url).flushdb()


def test_accountant_close_reconciles_and_closes_the_budgets(
    redis_process: RedisProcess, tmp_path: Path
):
    budgets = _budgets(redis_process.url, journal_path=tmp_path / "journal.db")
    acc = Accountant(budgets=budgets)
    redis_process.stop()
    try:
        for i in range(2):
            acc.preflight(f"c{i}", "gpt-4o-mini", prompt_tokens=1000, dims={"user_id": "u2"})
            acc.settle(f"c{i}", CALL)
        acc.preflight("pending", "gpt-4o-mini", prompt_tokens=1000, dims={"user_id": "u2"})
        assert budgets.journal_size == 2
    finally:
        redis_process.start()
    acc.close()
    assert budgets.journal_size == 0
    check = _budgets(redis_process.url, journal_path=tmp_path / "other.db")
    status = check.status("per-user", user_id="u2")
    assert status.spent == 2 * CALL_COST and status.reserved == 0
    check.close()
    acc.close()  # idempotent
    import redis

    redis.Redis.from_url(redis_process.url).flushdb()


def test_budgets_given_as_a_list_are_enforced():
    acc = Accountant(budgets=[Budget("tiny", limit_tokens=100)])
    acc.preflight("a", "gpt-4o-mini", prompt_tokens=50, max_output_tokens=10)
    with pytest.raises(BudgetExceededError):
        acc.preflight("b", "gpt-4o-mini", prompt_tokens=50, max_output_tokens=10)
    assert Accountant(budgets=Budget("one", limit_tokens=5)).budgets is not None


@pytest.mark.parametrize("wrong", ["per-user", {"b": Budget("b", limit_tokens=1)}, [1, 2], 42])
def test_any_other_budgets_type_is_a_type_error_at_construction(wrong):
    with pytest.raises(TypeError, match=r"budgets=\[Budget"):
        Accountant(budgets=wrong)
