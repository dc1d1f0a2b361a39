"""tokenward for LlamaIndex: count, price and bound every LLM and embedding call.

Install with ``pip install "tokenward[llama-index]"``. Also importable as
``tokenward.llama_index``.

Which piece to use
------------------
* :func:`instrument` -- **recording**. Attaches an event handler to LlamaIndex's
  root instrumentation dispatcher: every LLM call (chat, completion, streaming,
  predict, structured predict, agents) and every embedding request in the
  process lands in the accountant's ledger with cost and dimensions. It cannot
  stop a call: LlamaIndex's dispatcher swallows every exception an event handler
  raises (proved in ``tests/test_llama_index_instrument.py``), so a hard budget
  that says no is only logged there.
* :class:`BudgetedLLM` -- **enforcement**. Wrap any ``LLM``; the budget check
  runs before the wrapped model is called and raises ``BudgetExceededError``
  when a hard budget denies it. Use it as ``Settings.llm`` or pass it as
  ``llm=`` to query/chat engines and agents. It records its calls too, so on
  its own it is enough; combined with :func:`instrument` for the same
  accountant each call is still recorded once.
* :class:`TokenwardCallbackHandler` -- for apps on the legacy
  ``CallbackManager`` (today's ``TokenCountingHandler`` users): same ledger,
  same counters as ``TokenCountingHandler``, plus cost; it can also deny a call
  before it is sent (callback exceptions do propagate). Use it *or*
  :func:`instrument`, not both.
* :func:`dims` -- per-request dimensions (``user_id``, ``conversation_id``,
  ``agent``, ``tags``) for everything called inside a ``with`` block, since
  LlamaIndex events carry no metadata. Returns a live tracker of the block's
  calls, tokens and cost.
* :class:`TokenBudgetPostprocessor` -- a node postprocessor that packs retrieved
  nodes into a token budget by relevance (optimal, not first-fit).
* :class:`TokenwardChatMemory` -- a ``ChatMemoryBuffer`` drop-in whose trimming
  keeps the system message, never splits a tool call from its results, and
  counts with the model's real tokenizer.

LlamaIndex in three lines::

    from tokenward.llama_index import instrument
    handle = instrument(accountant)            # every call now priced in the ledger
    index.as_query_engine().query("...")       # unchanged application code
"""

from __future__ import annotations

try:
    import llama_index.core  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised without the extra
    from tokenward.errors import IntegrationUnavailableError

    raise IntegrationUnavailableError("llama-index-core", "llama-index") from exc

from typing import Any

from tokenward.accountant import Tracker, track
from tokenward.integrations.llama_index._budgeted import BudgetedLLM
from tokenward.integrations.llama_index._callback import TokenwardCallbackHandler
from tokenward.integrations.llama_index._instrument import (
    InstrumentHandle,
    TokenwardEventHandler,
    instrument,
)
from tokenward.integrations.llama_index._memory import TokenwardChatMemory, trim_chat_history
from tokenward.integrations.llama_index._postprocessor import TokenBudgetPostprocessor

__all__ = [
    "BudgetedLLM",
    "InstrumentHandle",
    "TokenBudgetPostprocessor",
    "TokenwardCallbackHandler",
    "TokenwardChatMemory",
    "TokenwardEventHandler",
    "dims",
    "instrument",
    "trim_chat_history",
]


def dims(**dimensions: Any) -> Tracker:
    """Dimensions for every LlamaIndex call made inside the block, plus live totals.

    ::

        with tokenward.llama_index.dims(user_id="u1", conversation_id="c9") as t:
            chat_engine.chat("hello")
        print(t.calls, t.usage.total, t.cost)

    Keys ``user_id``, ``conversation_id``, ``session_id``, ``agent`` and
    ``tags={...}`` (any other key becomes a tag). The same as
    :func:`tokenward.accountant.track`; ``accountant.track(...)`` works as well.
    Nested blocks merge, innermost wins; threads and asyncio tasks each see their
    own blocks.
    """
    return track(**dimensions)
