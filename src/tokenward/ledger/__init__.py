"""The ledger: where priced usage events are stored and reported from.

Three stores implement one protocol (:class:`LedgerStore`) and give identical
answers: :class:`MemoryLedger`, :class:`SQLiteLedger` (the default: one file,
WAL, batched background writes) and :class:`SQLLedger` (PostgreSQL via
SQLAlchemy Core + psycopg 3). :func:`open_ledger` picks one from a URL or path;
other stores plug in through the ``tokenward.ledgers`` entry-point group
(:func:`register_ledger` at run time). Events a database refuses or cannot take in
time are kept as :class:`DeadLetter` entries, never dropped.
"""

from tokenward.ledger._analytics import (
    CacheModelRow,
    CacheReport,
    ModelBreakdown,
    PeakHour,
    Trend,
    UsageStats,
    cache_break_even,
    cache_report,
    model_breakdown,
    peak_hour,
    trend,
    usage_stats,
)
from tokenward.ledger._base import DIMENSIONS, LedgerStore, SummaryRow
from tokenward.ledger._deadletter import DeadLetter
from tokenward.ledger._event import UsageEvent
from tokenward.ledger._memory import MemoryLedger
from tokenward.ledger._open import open_ledger
from tokenward.ledger._postgres import SQLLedger
from tokenward.ledger._registry import ledger_schemes, register_ledger
from tokenward.ledger._sqlite import SQLiteLedger

__all__ = [
    "DIMENSIONS",
    "CacheModelRow",
    "CacheReport",
    "DeadLetter",
    "LedgerStore",
    "MemoryLedger",
    "ModelBreakdown",
    "PeakHour",
    "SQLLedger",
    "SQLiteLedger",
    "SummaryRow",
    "Trend",
    "UsageEvent",
    "UsageStats",
    "cache_break_even",
    "cache_report",
    "ledger_schemes",
    "model_breakdown",
    "open_ledger",
    "peak_hour",
    "register_ledger",
    "trend",
    "usage_stats",
]
