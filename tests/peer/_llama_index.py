"""The constructor line of the LlamaIndex peer tests: LlamaIndex's own class, or tokenward's.

Every peer test runs twice: against LlamaIndex's class at the installed (pinned)
llama-index-core version, which shows what the upstream test expects of the peer, and
against tokenward's drop-in built the way a user swapping one line would build it.
"""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("llama_index.core")

from llama_index.core.callbacks.token_counting import TokenCountingHandler
from llama_index.core.memory import ChatMemoryBuffer

from tokenward import Accountant
from tokenward.llama_index import TokenwardCallbackHandler, TokenwardChatMemory

IMPLEMENTATIONS = ["llama_index", "tokenward"]


def token_counting_handler(implementation: str, **kwargs: Any) -> Any:
    """``TokenCountingHandler(**kwargs)``, or ``TokenwardCallbackHandler(Accountant(), **kwargs)``."""
    if implementation == "llama_index":
        return TokenCountingHandler(**kwargs)
    return TokenwardCallbackHandler(Accountant(), **kwargs)


def chat_memory_class(implementation: str) -> Any:
    """``ChatMemoryBuffer``, or ``TokenwardChatMemory``."""
    return ChatMemoryBuffer if implementation == "llama_index" else TokenwardChatMemory


def xfail_for(implementation: str, which: str, reason: str) -> Any:
    """A ``pytest.param`` for ``implementation``, marked xfail (strict) when it is ``which``."""
    marks = [pytest.mark.xfail(reason=reason, strict=True)] if implementation == which else []
    return pytest.param(implementation, marks=marks, id=implementation)
