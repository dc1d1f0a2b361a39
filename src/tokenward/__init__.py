"""tokenward: count, price and bound LLM token usage in LangChain and LlamaIndex apps.

Everything public is importable from here. Framework integrations live in
``tokenward.langchain`` and ``tokenward.llama_index`` (never imported from here).
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from tokenward._version import __version__
from tokenward.accountant import (
    Accountant,
    Estimate,
    Tracker,
    current_dims,
    get_default_accountant,
    set_default_accountant,
    track,
)
from tokenward.budgets import (
    Alert,
    Budget,
    Budgets,
    BudgetStatus,
    BudgetStore,
    Degradation,
    Degrade,
    MemoryBudgetStore,
    SQLiteBudgetStore,
    Window,
    suggest_degradation,
)
from tokenward.catalog import (
    Catalog,
    ModelInfo,
    PricePeriod,
    Prices,
    PriceTier,
    default_catalog,
    provider_for_class,
)
from tokenward.context import (
    CacheAwareTrim,
    PackReport,
    PackResult,
    Plan,
    can_add,
    pack_context,
    plan,
    session_summary,
    trim_history,
    window_status,
)
from tokenward.cost import CostBreakdown, cost, from_nanos, to_nanos
from tokenward.counting import (
    Calibrator,
    TokenCount,
    TokenCounter,
    count_messages,
    count_text,
    get_counter,
    get_encoding,
    image_tokens,
    register_tokenizer,
)
from tokenward.errors import (
    BudgetExceededError,
    BudgetStoreError,
    BudgetStoreUnavailableError,
    ConfigurationError,
    ContextBudgetError,
    IntegrationUnavailableError,
    LedgerError,
    LedgerUnavailableError,
    LedgerValueError,
    PriceDataError,
    PricingMissingError,
    TokenBudgetExceededError,
    TokenizerUnavailableError,
    TokenwardError,
    UnknownModelError,
    UnpricedModelError,
    UsageParseError,
)
from tokenward.ledger import (
    DeadLetter,
    LedgerStore,
    MemoryLedger,
    SQLiteLedger,
    SQLLedger,
    SummaryRow,
    UsageEvent,
    open_ledger,
)
from tokenward.messages import Chunk, Message, ToolCall
from tokenward.predict import (
    OutputPredictor,
    Replay,
    Scenario,
    replay,
    select_models,
)
from tokenward.usage import Usage

if TYPE_CHECKING:
    from tokenward.budgets import PostgresBudgetStore, RedisBudgetStore

__all__ = [
    "__version__",
    # accounting
    "Accountant",
    "Estimate",
    "Tracker",
    "current_dims",
    "get_default_accountant",
    "set_default_accountant",
    "track",
    # usage, catalog, cost
    "Usage",
    "Catalog",
    "ModelInfo",
    "PricePeriod",
    "Prices",
    "PriceTier",
    "default_catalog",
    "provider_for_class",
    "CostBreakdown",
    "cost",
    "from_nanos",
    "to_nanos",
    # counting
    "Calibrator",
    "TokenCount",
    "TokenCounter",
    "count_messages",
    "count_text",
    "get_counter",
    "get_encoding",
    "image_tokens",
    "register_tokenizer",
    # context
    "CacheAwareTrim",
    "Chunk",
    "Message",
    "ToolCall",
    "PackReport",
    "PackResult",
    "Plan",
    "pack_context",
    "plan",
    "trim_history",
    "window_status",
    "can_add",
    "session_summary",
    # plan ahead
    "OutputPredictor",
    "Replay",
    "Scenario",
    "replay",
    "select_models",
    # ledger
    "DeadLetter",
    "LedgerStore",
    "MemoryLedger",
    "SQLiteLedger",
    "SQLLedger",
    "SummaryRow",
    "UsageEvent",
    "open_ledger",
    # budgets
    "Alert",
    "Budget",
    "Budgets",
    "BudgetStatus",
    "BudgetStore",
    "Degradation",
    "Degrade",
    "MemoryBudgetStore",
    "PostgresBudgetStore",
    "RedisBudgetStore",
    "SQLiteBudgetStore",
    "Window",
    "suggest_degradation",
    # errors
    "BudgetExceededError",
    "BudgetStoreError",
    "BudgetStoreUnavailableError",
    "ConfigurationError",
    "ContextBudgetError",
    "IntegrationUnavailableError",
    "LedgerError",
    "LedgerUnavailableError",
    "LedgerValueError",
    "PriceDataError",
    "PricingMissingError",
    "TokenBudgetExceededError",
    "TokenizerUnavailableError",
    "TokenwardError",
    "UnknownModelError",
    "UnpricedModelError",
    "UsageParseError",
]

_LAZY = {"PostgresBudgetStore", "RedisBudgetStore"}  # their drivers are optional extras


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import tokenward.budgets

        return getattr(tokenward.budgets, name)
    raise AttributeError(f"module 'tokenward' has no attribute {name!r}")


# Show `tokenward.Usage`, not `tokenward.usage.Usage`, in reprs, tracebacks and docs.
for _name in __all__:
    _obj = globals().get(_name)
    if isinstance(_obj, type) or callable(_obj):
        with contextlib.suppress(AttributeError, TypeError):
            _obj.__module__ = "tokenward"
del _name, _obj
