"""Pack 60 retrieved chunks into the model's window by relevance, in one LLM call.

Without a budget, LlamaIndex's compact synthesizer splits an oversized context
into several LLM calls (a "refine" round per extra chunk), each paying for the
prompt again. ``TokenBudgetPostprocessor`` keeps the nodes that maximize total
relevance within the budget derived from the LLM's window (minus the prompt
template and the reserved output), so the answer takes one call.

Runs offline: MockLLM with a small (4k) window, MockEmbedding, scored nodes.

    python examples/llamaindex_context_packer.py
"""

from __future__ import annotations

import random
from typing import Any

from llama_index.core import Settings
from llama_index.core.base.llms.types import LLMMetadata
from llama_index.core.embeddings import MockEmbedding
from llama_index.core.llms import MockLLM
from llama_index.core.query_engine import RetrieverQueryEngine
from llama_index.core.retrievers import BaseRetriever
from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode

from tokenward.accountant import Accountant
from tokenward.llama_index import TokenBudgetPostprocessor, instrument


class SmallWindowLLM(MockLLM):
    """MockLLM (answers 'text text ...') behind a 4k-token window, priced as gpt-5.4-mini."""

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(model_name="gpt-5.4-mini", context_window=4096, num_output=256)


class ScoredRetriever(BaseRetriever):
    """Returns a fixed list of scored nodes (a vector store's top-60)."""

    def __init__(self, nodes: list[NodeWithScore]) -> None:
        super().__init__()
        self._nodes = nodes

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        return [NodeWithScore(node=n.node, score=n.score) for n in self._nodes]


def make_nodes(n: int = 60, seed: int = 7) -> list[NodeWithScore]:
    rng = random.Random(seed)
    nodes = []
    for i in range(n):
        words = rng.choice([20, 40, 80, 160, 320])
        text = (
            f"Passage {i} about the Seine. "
            + " ".join(
                rng.choice(["river", "bridge", "Paris", "barge", "quay", "flood", "island"])
                for _ in range(words)
            )
            + "."
        )
        score = round(rng.uniform(0.2, 0.95), 3)
        nodes.append(
            NodeWithScore(node=TextNode(text=text, metadata={"doc": f"d{i % 7}"}), score=score)
        )
    # the same passage indexed twice (a re-ingested file): a duplicate with the same score
    nodes[3] = NodeWithScore(
        node=TextNode(text=nodes[2].node.text, metadata=nodes[2].node.metadata),
        score=nodes[2].score,
    )
    nodes.sort(key=lambda x: -(x.score or 0))
    return nodes


def llm_calls(accountant: Accountant) -> list[Any]:
    return [e for e in accountant.ledger.events() if e.kind != "embedding"]


def main() -> None:
    Settings.llm = SmallWindowLLM(max_tokens=40)
    Settings.embed_model = MockEmbedding(embed_dim=8)
    nodes = make_nodes()
    query = "How do floods affect the quays of the Seine?"

    plain_acc, packed_acc = Accountant(), Accountant()
    with instrument(plain_acc):
        RetrieverQueryEngine.from_args(ScoredRetriever(nodes)).query(query)
    plain = llm_calls(plain_acc)

    packer = TokenBudgetPostprocessor(order="edges")  # budget from Settings.llm
    engine = RetrieverQueryEngine.from_args(ScoredRetriever(nodes), node_postprocessors=[packer])
    with instrument(packed_acc):
        response = engine.query(query)
    packed = llm_calls(packed_acc)
    report = packer.last_report

    print(f"retrieved: {len(nodes)} nodes, relevance {report.relevance_offered:.2f}")
    print(f"budget: {report.max_tokens} tokens (4096 window - 256 output - prompt - padding)")
    print(
        f"without packing: {len(plain)} LLM calls, {sum(e.usage.input for e in plain)} input tokens, "
        f"${sum(e.cost for e in plain):.6f}"
    )
    print(
        f"with TokenBudgetPostprocessor: {len(packed)} LLM call, "
        f"{sum(e.usage.input for e in packed)} input tokens, ${sum(e.cost for e in packed):.6f}"
    )
    print(
        f"kept {len(response.source_nodes)} nodes, {report.tokens_used} tokens, relevance "
        f"{report.relevance_kept:.2f} ({report.relevance_kept / report.relevance_candidates:.0%} "
        f"of the non-duplicate relevance, certified >= {report.bound:.0%} of the optimum)"
    )
    reasons: dict[str, int] = {}
    for d in response.source_nodes[0].node.metadata["tokenward_pack"]["dropped"]:
        reasons[d["reason"]] = reasons.get(d["reason"], 0) + 1
    print("dropped:", ", ".join(f"{k}={v}" for k, v in sorted(reasons.items())))
    scores = [round(n.score, 2) for n in response.source_nodes]
    print("order (best at the edges):", scores[:3], "...", scores[-3:])
    partial = [n for n in response.source_nodes if n.node.metadata.get("tokenward_partial")]
    if partial:
        meta = partial[0].node.metadata
        print(
            f"partial fill: one node cut to {meta['tokenward_tokens']} of "
            f"{meta['tokenward_original_tokens']} tokens"
        )


if __name__ == "__main__":
    main()
