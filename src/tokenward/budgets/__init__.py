"""Budgets that hold under concurrency: rules, windows, reservations, alerts, degradation.

Quick start::

    from decimal import Decimal
    from tokenward.budgets import Budget, Budgets, SQLiteBudgetStore

    budgets = Budgets(
        Budget("per-user-daily", limit_usd=Decimal("5"), window="day", scope="user_id",
               timezone="Europe/Berlin", overrides={"vip": Decimal("50")}),
        Budget("support-agent", limit_tokens=2_000_000, window=timedelta(hours=24),
               where={"agent": "support"}, mode="soft"),
        store=SQLiteBudgetStore("budgets.db"),
    )
    budgets.reserve("run-1", {"user_id": "u1"}, cost_nanos=12_000_000, tokens=3_000)
    ...  # call the model
    budgets.commit("run-1", cost_nanos=9_500_000, tokens=2_400)

Stores: ``MemoryBudgetStore`` (one process), ``SQLiteBudgetStore`` (processes on one machine),
``PostgresBudgetStore`` and ``RedisBudgetStore`` (several machines). Postgres and Redis
import their drivers lazily (``pip install "tokenward[postgres]"`` / ``"tokenward[redis]"``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tokenward.budgets._budgets import Alert, AlertSink, Budgets, BudgetStatus, LoggingAlertSink
from tokenward.budgets._degrade import Degradation, Degrade, suggest_degradation
from tokenward.budgets._rules import Budget
from tokenward.budgets._sqlite import SQLiteBudgetStore
from tokenward.budgets._store import (
    BudgetStore,
    CounterStatus,
    MemoryBudgetStore,
    ReserveItem,
    ReserveResult,
)
from tokenward.budgets._windows import Window, calendar_span

if TYPE_CHECKING:
    from tokenward.budgets._postgres import PostgresBudgetStore
    from tokenward.budgets._redis import RedisBudgetStore

__all__ = [
    "Alert",
    "AlertSink",
    "Budget",
    "BudgetStatus",
    "BudgetStore",
    "Budgets",
    "CounterStatus",
    "Degradation",
    "Degrade",
    "LoggingAlertSink",
    "MemoryBudgetStore",
    "PostgresBudgetStore",
    "RedisBudgetStore",
    "ReserveItem",
    "ReserveResult",
    "SQLiteBudgetStore",
    "Window",
    "calendar_span",
    "suggest_degradation",
]


def __getattr__(name: str) -> Any:  # lazy: the drivers are optional extras
    if name == "PostgresBudgetStore":
        from tokenward.budgets._postgres import PostgresBudgetStore

        return PostgresBudgetStore
    if name == "RedisBudgetStore":
        from tokenward.budgets._redis import RedisBudgetStore

        return RedisBudgetStore
    raise AttributeError(f"module 'tokenward.budgets' has no attribute {name!r}")
