"""Fit content into a context window: plan the window, trim history, pack RAG chunks.

Framework-free: works on :class:`tokenward.Message` / :class:`tokenward.Chunk` (the
LangChain and LlamaIndex adapters convert). ``counter`` arguments accept a model name,
a ``TokenCounter`` (``tokenward.counting``), or a callable.
"""

from tokenward.context._counters import cached_counter, per_list, per_message
from tokenward.context._trim import trim_history

__all__ = [
    "cached_counter",
    "per_list",
    "per_message",
    "trim_history",
]
