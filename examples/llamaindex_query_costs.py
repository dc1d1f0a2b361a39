"""What each user's RAG queries cost, and a hard budget that stops a query before the model.

LlamaIndex in three lines:

    from tokenward.llama_index import instrument
    instrument(accountant)                      # every LLM and embedding call, priced
    index.as_query_engine().query("...")        # application code unchanged

Runs offline: the LLM is a LlamaIndex CustomLLM that reports OpenAI-style usage in
``response.raw`` (like llama-index-llms-openai does), embeddings are MockEmbedding.

    python examples/llamaindex_query_costs.py
"""

from __future__ import annotations

import logging
import re
import sys
from typing import Any

from llama_index.core import Document, Settings, VectorStoreIndex
from llama_index.core.base.llms.types import CompletionResponse, LLMMetadata
from llama_index.core.embeddings import MockEmbedding
from llama_index.core.llms import CustomLLM
from llama_index.core.llms.callbacks import llm_completion_callback

from tokenward.accountant import Accountant
from tokenward.budgets import Budget, Budgets
from tokenward.errors import BudgetExceededError
from tokenward.llama_index import BudgetedLLM, dims, instrument


class FakeOpenAI(CustomLLM):
    """Answers with the context line closest to the query; reports usage (1 token per word)."""

    calls: int = 0

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(model_name="gpt-5.4-mini", context_window=128_000, num_output=64)

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        self.calls += 1
        context, _, query = prompt.rpartition("Query:")
        words = set(re.findall(r"\w+", query.lower()))
        facts = [ln.strip() for ln in context.splitlines() if ln.strip().endswith(".")]
        answer = max(
            facts,
            key=lambda f: len(words & set(re.findall(r"\w+", f.lower()))),
            default="I don't know.",
        )
        usage = {"prompt_tokens": len(prompt.split()), "completion_tokens": len(answer.split())}
        return CompletionResponse(
            text=answer, raw={"model": "gpt-5.4-mini-2026-03-17", "usage": usage}
        )

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> Any:
        raise NotImplementedError


DOCS = [
    "Paris is the capital of France and sits on the Seine.",
    "Berlin is the capital of Germany and has over 170 museums.",
    "Madrid is the capital of Spain, at the centre of the Iberian peninsula.",
    "Rome is the capital of Italy; its historic centre is a World Heritage Site.",
]


def main() -> None:
    # budget alerts (50/75/90 %) are logged: show them inline
    logging.basicConfig(level=logging.WARNING, format="alert: %(message)s", stream=sys.stdout)
    llm = FakeOpenAI()
    Settings.llm = llm
    Settings.embed_model = MockEmbedding(embed_dim=16, model_name="text-embedding-3-small")

    # ---- LlamaIndex in three lines: record every call, priced, with dimensions
    accountant = Accountant()  # in-memory ledger; ledger="usage.db" for SQLite
    handle = instrument(accountant, agent="geo-rag")
    index = VectorStoreIndex.from_documents([Document(text=t) for t in DOCS])
    engine = index.as_query_engine(similarity_top_k=4)

    for user, question in [
        ("alice", "What is the capital of France?"),
        ("alice", "Which capital has many museums?"),
        ("bob", "What is the capital of Italy?"),
    ]:
        with dims(user_id=user):
            answer = engine.query(question)
        print(f"{user}: {question} -> {answer}")

    print("\ncost by user and kind:")
    for row in accountant.ledger.summary(by=["user_id", "kind"]):
        print(
            f"  {row.dims['user_id'] or '(indexing)':10} {row.dims['kind']:9} calls={row.calls} "
            f"input={row.input} output={row.output} cost=${row.cost:.8f}"
        )
    total = sum(row.cost for row in accountant.ledger.summary())
    print(f"total recorded: {len(list(accountant.ledger.events()))} events, ${total:.8f}")
    handle.detach()

    # ---- hard budget: BudgetedLLM checks BEFORE the model runs
    guarded = Accountant(
        budgets=Budgets(Budget("daily-per-user", limit_tokens=400, window="day", scope="user_id"))
    )
    engine = index.as_query_engine(llm=BudgetedLLM(llm, guarded), similarity_top_k=4)
    before = llm.calls
    for i in range(5):
        try:
            with dims(user_id="carol"):
                engine.query(f"Question {i}: what is the capital of Spain?")
            print(f"carol query {i}: answered")
        except BudgetExceededError as exc:
            print(
                f"carol query {i}: denied before the model ({exc.budget}: spent {exc.spent} "
                f"of {exc.limit} tokens)"
            )
    status = guarded.budgets.status("daily-per-user", user_id="carol")
    print(
        f"model calls made: {llm.calls - before}; carol spent {status.spent} of {status.limit} tokens"
    )


if __name__ == "__main__":
    main()
