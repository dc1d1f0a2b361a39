"""Short import path for the LangChain integration.

``from tokenward.langchain import TokenwardCallbackHandler, tracking, HistoryTrimmer,
ContextPacker, TokenBudgetMiddleware`` is the same as importing them from
:mod:`tokenward.integrations.langchain`.
"""

from __future__ import annotations

from typing import Any

from tokenward.integrations import langchain as _impl

__all__ = list(_impl.__all__)


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(_impl, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
