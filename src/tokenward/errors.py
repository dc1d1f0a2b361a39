"""One error tree for tokenward.

Every error carries a stable ``code`` and a message that ends with what to do
about it. Errors that resemble a builtin also subclass it (``UnknownModelError``
is a ``KeyError``, ``UsageParseError`` a ``ValueError``), so generic handlers
keep working.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from tokenward._version import __version__

__all__ = [
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

_DOCS_URL = "https://tokenward.readthedocs.io/en/{version}/errors/#{code}"


class TokenwardError(Exception):
    """Base class of every error tokenward raises on purpose."""

    code: str = "tokenward-error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        if code is not None:
            self.code = code
        self.message = message
        super().__init__(message)

    def __str__(self) -> str:
        return self.message

    @property
    def docs_url(self) -> str:
        """Where this error is explained, for the installed version."""
        version = ".".join(__version__.split(".")[:2])
        return _DOCS_URL.format(version=version, code=self.code)


class ConfigurationError(TokenwardError, ValueError):
    """A setting or argument is invalid (negative limit, unknown window, bad timezone...)."""

    code = "configuration"


class UnknownModelError(TokenwardError, KeyError):
    """A model name is not in the catalog and no fallback was chosen."""

    code = "unknown-model"

    def __init__(self, model: str, suggestions: Sequence[str] = ()) -> None:
        self.model = model
        self.suggestions = list(suggestions)
        hint = f" Did you mean: {', '.join(self.suggestions)}?" if self.suggestions else ""
        super().__init__(
            f"Unknown model {model!r}.{hint} If it is new, run `tokenward models update` "
            f"(fresh genai-prices data), or find its catalog name with "
            f"`tokenward models --search <part of the name>`. To price it yourself: "
            f"`catalog.override({model!r}, input=..., output=..., context_window=...)` or "
            f"`catalog.register(ModelInfo(...))`; to price unknown models as another one: "
            f"`Catalog(fallback='<model>')`."
        )

    def __str__(self) -> str:  # KeyError would quote the message otherwise
        return self.message


class PricingMissingError(TokenwardError, LookupError):
    """Usage contains a token kind the model has no price for (e.g. audio on a text model)."""

    code = "pricing-missing"


class PriceDataError(TokenwardError):
    """Updating the price data failed (download, truncation, validation, cache write).

    The prices in use before the update stay in use.
    """

    code = "price-data"


class UsageParseError(TokenwardError, ValueError):
    """A provider usage payload is malformed; ``field`` names the offending field."""

    code = "usage-parse"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        self.field = field
        super().__init__(message)


class TokenizerUnavailableError(TokenwardError, LookupError):
    """No exact tokenizer could be loaded and estimation was not allowed."""

    code = "tokenizer-unavailable"


class ContextBudgetError(TokenwardError, ValueError):
    """Content that must be kept (system message, pinned messages) exceeds the token budget."""

    code = "context-budget"


class BudgetExceededError(TokenwardError):
    """A hard budget denied a call before it was sent to the provider."""

    code = "budget-exceeded"

    def __init__(
        self,
        message: str,
        *,
        budget: str,
        scope_key: str,
        unit: str,
        limit: Decimal | int,
        spent: Decimal | int,
        reserved: Decimal | int,
        attempted: Decimal | int,
        reset_at: datetime | None = None,
        suggestion: str | None = None,
    ) -> None:
        self.budget = budget
        self.scope_key = scope_key
        self.unit = unit
        self.limit = limit
        self.spent = spent
        self.reserved = reserved
        self.attempted = attempted
        self.reset_at = reset_at
        self.suggestion = suggestion
        super().__init__(message)

    def retry_after_seconds(self, now: datetime | None = None) -> int | None:
        """Seconds until the budget window resets, or ``None`` if it never resets."""
        if self.reset_at is None:
            return None
        from datetime import timezone

        now = now or datetime.now(timezone.utc)
        return max(1, int((self.reset_at - now).total_seconds() + 0.999))

    def to_http(self, now: datetime | None = None) -> tuple[int, dict[str, str], dict[str, Any]]:
        """``(429, headers, json_body)`` for web apps; ``Retry-After`` set when the window resets."""
        headers: dict[str, str] = {}
        retry = self.retry_after_seconds(now)
        if retry is not None:
            headers["Retry-After"] = str(retry)
        body: dict[str, Any] = {
            "error": {
                "type": self.code,
                "message": self.message,
                "budget": self.budget,
                "scope": self.scope_key,
                "unit": self.unit,
                "limit": str(self.limit),
                "spent": str(self.spent),
                "reserved": str(self.reserved),
                "attempted": str(self.attempted),
                "reset_at": self.reset_at.isoformat() if self.reset_at else None,
            }
        }
        return 429, headers, body


class UnpricedModelError(BudgetExceededError):
    """A USD budget applies to a call on a model with no known price (``Budget(unpriced="deny")``).

    A :class:`BudgetExceededError`, so it reaches the caller like a denial, before the model
    runs. ``model`` names the model; the message says how to price it or exempt it.
    """

    code = "unpriced-model"

    def __init__(self, model: str, *, budget: str, scope_key: str, limit: Decimal) -> None:
        self.model = model
        super().__init__(
            f"Model {model!r} has no known price, and the USD budget {budget!r} ({scope_key}) "
            f"needs one to decide whether the call fits, so the call was not made. Price it with "
            f"`catalog.register(ModelInfo({model!r}, ..., prices=Prices(...)))` or "
            f"`tokenward models update`; or set Budget({budget!r}, ..., price_as='<a priced "
            f"model>') to price it like another model, or unpriced='tokens' to let this budget "
            f"skip calls whose cost is unknown.",
            budget=budget,
            scope_key=scope_key,
            unit="usd",
            limit=limit,
            spent=Decimal(0),
            reserved=Decimal(0),
            attempted=Decimal(0),
            suggestion=f"Budget({budget!r}, ..., price_as='<a priced model>')",
        )


class TokenBudgetExceededError(BudgetExceededError, ValueError):
    """The ``token_budget=`` of a LlamaIndex ``TokenwardCallbackHandler`` is used up.

    A ``ValueError`` too, as LlamaIndex's ``TokenCountingHandler`` raises, so
    ``except ValueError`` written for it still works.
    """

    code = "token-budget-exceeded"


class BudgetStoreUnavailableError(TokenwardError):
    """The budget store (Postgres, Redis...) cannot be reached: connection refused, reset or
    timed out, server shutting down, SQLite file locked. Concerns every call, so ``Budgets``
    applies its ``fail_mode``."""

    code = "budget-store-unavailable"


class BudgetStoreError(TokenwardError):
    """The budget store rejected this call's values (an amount out of range, a value the
    database cannot hold) or failed for a reason that is not connectivity. Concerns this call
    only: the store is not considered unavailable for other calls."""

    code = "budget-store"


class LedgerError(TokenwardError):
    """The ledger cannot be read or written (corrupted file, wrong schema version...)."""

    code = "ledger"


class LedgerUnavailableError(LedgerError):
    """The ledger's database cannot be reached or written right now (connection refused,
    locked past its busy timeout, disk full, read-only): connectivity, never a bad value."""

    code = "ledger-unavailable"


class LedgerValueError(LedgerError, ValueError):
    """The database refused a value (a lone surrogate, an integer beyond 64 bits, a NUL
    byte on PostgreSQL, a key too long for an index): in an event it is dead-lettered."""

    code = "ledger-bad-value"


class IntegrationUnavailableError(TokenwardError, ImportError):
    """An optional framework integration was imported without its extra installed."""

    code = "integration-unavailable"

    def __init__(self, package: str, extra: str) -> None:
        super().__init__(
            f'{package} is not installed; install it with: pip install "tokenward[{extra}]"'
        )
