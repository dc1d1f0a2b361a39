"""tokenward: count, price and bound LLM token usage in LangChain and LlamaIndex apps."""

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
from tokenward.catalog import Catalog, ModelInfo, Prices, PriceTier, default_catalog
from tokenward.context import PackReport, PackResult, Plan, pack_context, plan, trim_history
from tokenward.counting import (
    Calibrator,
    TokenCount,
    TokenCounter,
    count_messages,
    count_text,
    get_counter,
    get_encoding,
    image_tokens,
)
from tokenward.cost import CostBreakdown, cost, from_nanos, to_nanos
from tokenward.errors import (
    BudgetExceededError,
    BudgetStoreUnavailableError,
    ConfigurationError,
    ContextBudgetError,
    IntegrationUnavailableError,
    LedgerError,
    PricingMissingError,
    TokenizerUnavailableError,
    TokenwardError,
    UnknownModelError,
    UsageParseError,
)
from tokenward.messages import Chunk, Message, ToolCall
from tokenward.usage import Usage

__all__ = [
    "Calibrator",
    "TokenCount",
    "TokenCounter",
    "count_messages",
    "count_text",
    "get_counter",
    "get_encoding",
    "image_tokens",
    "Accountant",
    "Estimate",
    "Tracker",
    "current_dims",
    "get_default_accountant",
    "set_default_accountant",
    "track",
    "PackReport",
    "PackResult",
    "Plan",
    "pack_context",
    "plan",
    "trim_history",
    "__version__",
    "BudgetExceededError",
    "BudgetStoreUnavailableError",
    "Catalog",
    "Chunk",
    "CostBreakdown",
    "ModelInfo",
    "PriceTier",
    "Prices",
    "cost",
    "default_catalog",
    "from_nanos",
    "to_nanos",
    "ConfigurationError",
    "ContextBudgetError",
    "IntegrationUnavailableError",
    "LedgerError",
    "Message",
    "PricingMissingError",
    "TokenizerUnavailableError",
    "TokenwardError",
    "ToolCall",
    "UnknownModelError",
    "Usage",
    "UsageParseError",
]

for _name in __all__:
    _obj = globals()[_name]
    if hasattr(_obj, "__module__") and isinstance(_obj, type):
        try:
            _obj.__module__ = "tokenward"
        except (AttributeError, TypeError):
            pass
del _name, _obj
