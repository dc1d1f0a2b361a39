"""Budgets that hold under concurrency: rules, windows, reservations, alerts, degradation.

Quick start::

    from datetime import timedelta
    from decimal import Decimal
    from tokenward.budgets import Budget, Budgets, SQLiteBudgetStore

    budgets = Budgets(
        Budget("per-user-daily", limit_usd=Decimal("5"), window="day", scope="user_id",
               timezone="Europe/Berlin", overrides={"vip": Decimal("50")}),
        Budget("support-agent", limit_tokens=2_000_000, window=timedelta(hours=24),
               where={"agent": "support"}, mode="soft"),
        store=SQLiteBudgetStore("budgets.db"),
    )
    held = budgets.reserve("run-1", {"user_id": "u1"}, cost_nanos=12_000_000, tokens=3_000)
    ...  # call the model
    budgets.commit(held, cost_nanos=9_500_000, tokens=2_400)

Semantics worth knowing:

* Every budget whose ``where`` matches a call applies; a reservation is all-or-nothing over
  all of them. No budget applies -> nothing is reserved and nothing is ever denied.
* A call without a scope dimension (e.g. no ``user_id`` for ``scope="user_id"``) counts under
  ``user_id=<none>``, one counter shared by anonymous calls (``Budget(missing="skip")`` to
  exempt them). Users seen for the first time get the budget's own limit; ``overrides`` set
  per-key limits (``0`` blocks a key).
* Spend is attributed to the window (bucket) in which the call was reserved, even if it
  finishes after the window reset.
* A reservation holds budget until commit/release or its TTL (``reservation_ttl``, default 10
  min): a crashed process's reservations stop counting after the TTL; committed spend stays.
* Thresholds (default 50/75/90 %) fire one :class:`Alert` per (budget, scope key, window,
  threshold) across every process sharing the store; soft budgets also fire ``exceeded``.
* ``fail_mode="closed"`` (default) denies calls with ``BudgetStoreUnavailableError`` while the
  budgets cannot be checked (store unreachable or erroring); ``"open"`` allows them and journals
  their spend (in ``journal_path``, replayed at the next start) until the store is back
  (``Budgets.reconcile()``; also automatic). Commits never raise for an outage.
* A USD budget needs a price: a call on a model with no known price is denied with
  ``UnpricedModelError`` (``Budget(unpriced="deny")``, the default), skipped by that budget
  (``unpriced="tokens"``) or priced as another model (``price_as="gpt-4o"``).

Stores: ``MemoryBudgetStore`` (one process), ``SQLiteBudgetStore`` (processes on one machine),
``PostgresBudgetStore`` and ``RedisBudgetStore`` (several machines), or any store by URL:
``open_budget_store("postgresql://…")`` (third-party stores register a URL scheme under the
``tokenward.budget_stores`` entry-point group; ``tokenward.testing.BudgetStoreConformance``
checks them). Each budget check is one round trip to the store. Postgres and Redis import
their drivers lazily (``pip install "tokenward[postgres]"`` / ``"tokenward[redis]"``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tokenward.budgets._budgets import (
    Alert,
    AlertSink,
    Budgets,
    BudgetStatus,
    LoggingAlertSink,
    Quote,
    Reservation,
)
from tokenward.budgets._degrade import Degradation, Degrade, suggest_degradation
from tokenward.budgets._registry import budget_store_schemes, open_budget_store
from tokenward.budgets._rules import Budget
from tokenward.budgets._sqlite import SQLiteBudgetStore
from tokenward.budgets._store import (
    MAX_AMOUNT,
    BudgetStore,
    CommitItem,
    CommitResult,
    CounterStatus,
    MemoryBudgetStore,
    ReserveItem,
    ReserveResult,
    store_key,
)
from tokenward.budgets._windows import Window, calendar_span

if TYPE_CHECKING:
    from tokenward.budgets._postgres import PostgresBudgetStore
    from tokenward.budgets._redis import RedisBudgetStore

__all__ = [
    "MAX_AMOUNT",
    "Alert",
    "AlertSink",
    "Budget",
    "BudgetStatus",
    "BudgetStore",
    "Budgets",
    "CommitItem",
    "CommitResult",
    "CounterStatus",
    "Degradation",
    "Degrade",
    "LoggingAlertSink",
    "MemoryBudgetStore",
    "PostgresBudgetStore",
    "RedisBudgetStore",
    "Quote",
    "Reservation",
    "ReserveItem",
    "ReserveResult",
    "SQLiteBudgetStore",
    "Window",
    "budget_store_schemes",
    "calendar_span",
    "open_budget_store",
    "store_key",
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
