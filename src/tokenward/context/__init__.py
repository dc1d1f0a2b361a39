"""Fit content into a context window: plan the window, trim history, pack RAG chunks.

Framework-free: works on :class:`tokenward.Message` / :class:`tokenward.Chunk` (the
LangChain and LlamaIndex adapters convert). ``counter`` arguments accept a model name,
a ``TokenCounter`` (``tokenward.counting``), or a callable.

* :func:`plan` splits ``window - reserve_output`` into section budgets (:class:`Plan`).
* :func:`trim_history` trims a chat history (LangChain ``trim_messages`` semantics,
  tool-call groups kept whole, pinned messages, optional summary); with
  ``cache_aware=CacheAwareTrim(...)`` the cut point holds across turns so the provider's
  prompt cache keeps hitting.
* :func:`pack_context` chooses RAG chunks maximizing total relevance in a budget
  (:class:`PackResult` with a :class:`PackReport`).
* :func:`window_status`, :func:`can_add` and :func:`session_summary` manage the window's
  limit: how full it is, whether a message fits and the cheapest remedy when it does not.
"""

from tokenward.context._cache import CACHE_RULES, CacheAwareTrim, CacheRules
from tokenward.context._counters import cached_counter, per_list, per_message
from tokenward.context._limits import (
    AddCheck,
    Remedy,
    SessionSummary,
    WindowStatus,
    can_add,
    session_summary,
    window_status,
)
from tokenward.context._pack import DroppedChunk, PackReport, PackResult, pack_context
from tokenward.context._plan import DEFAULT_SHARES, Plan, plan
from tokenward.context._trim import trim_history

__all__ = [
    "CACHE_RULES",
    "DEFAULT_SHARES",
    "AddCheck",
    "CacheAwareTrim",
    "CacheRules",
    "DroppedChunk",
    "PackReport",
    "PackResult",
    "Plan",
    "Remedy",
    "SessionSummary",
    "WindowStatus",
    "cached_counter",
    "can_add",
    "pack_context",
    "per_list",
    "per_message",
    "plan",
    "session_summary",
    "trim_history",
    "window_status",
]
