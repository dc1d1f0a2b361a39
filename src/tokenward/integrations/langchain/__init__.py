"""LangChain integration: account, bound and fit every model call of a LangChain app.

Install with ``pip install "tokenward[langchain]"``. Also importable as
``tokenward.langchain``.

* :class:`TokenwardCallbackHandler` / :class:`AsyncTokenwardCallbackHandler` and
  :func:`tracking`: usage, cost and budgets for every chat/LLM call.
* :class:`TrackedEmbeddings`: the same for an ``Embeddings`` object.
* :class:`HistoryTrimmer`: a ``Runnable`` that trims chat history to a token budget.
* :class:`ContextPacker` and :func:`scored_retriever`: pack retrieved documents
  into a token budget by relevance.
* :class:`TokenBudgetMiddleware`: budgets, trimming and fallback for ``create_agent``
  (needs the ``langchain`` package >= 1.0, imported on first use).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tokenward.errors import IntegrationUnavailableError

try:
    import langchain_core  # noqa: F401
except ImportError:  # pragma: no cover - exercised only without the extra
    raise IntegrationUnavailableError("langchain-core", "langchain") from None

from tokenward.integrations.langchain._callbacks import (
    AsyncTokenwardCallbackHandler,
    TokenwardCallbackHandler,
    tracking,
)

if TYPE_CHECKING:
    from tokenward.integrations.langchain._embeddings import TrackedEmbeddings
    from tokenward.integrations.langchain._middleware import TokenBudgetMiddleware
    from tokenward.integrations.langchain._packer import ContextPacker, scored_retriever
    from tokenward.integrations.langchain._trimmer import HistoryTrimmer

__all__ = [
    "AsyncTokenwardCallbackHandler",
    "ContextPacker",
    "HistoryTrimmer",
    "TokenBudgetMiddleware",
    "TokenwardCallbackHandler",
    "TrackedEmbeddings",
    "scored_retriever",
    "tracking",
]

_LAZY = {
    "TrackedEmbeddings": "_embeddings",
    "HistoryTrimmer": "_trimmer",
    "ContextPacker": "_packer",
    "scored_retriever": "_packer",
    "TokenBudgetMiddleware": "_middleware",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
