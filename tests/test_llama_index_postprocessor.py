"""TokenBudgetPostprocessor: optimal packing of NodeWithScore into a token budget, in real engines."""

from __future__ import annotations

import itertools

import pytest

pytest.importorskip("llama_index.core")

from llama_index.core import Document, Settings, VectorStoreIndex
from llama_index.core.base.llms.types import LLMMetadata
from llama_index.core.embeddings import MockEmbedding
from llama_index.core.llms import MockLLM
from llama_index.core.prompts.default_prompts import DEFAULT_REFINE_PROMPT, DEFAULT_TEXT_QA_PROMPT
from llama_index.core.query_engine import RetrieverQueryEngine
from llama_index.core.schema import MetadataMode, NodeWithScore, TextNode

from tokenward.accountant import Accountant
from tokenward.counting import get_counter
from tokenward.llama_index import TokenBudgetPostprocessor, instrument

MODEL = "gpt-4o-mini"
COUNTER = get_counter(MODEL)


class WindowMockLLM(MockLLM):
    """Echoes its prompt (MockLLM without max_tokens); a small priced window."""

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(num_output=200, model_name=MODEL, context_window=1200)


def node(text: str, score: float, **metadata: str) -> NodeWithScore:
    return NodeWithScore(node=TextNode(text=text, metadata=metadata), score=score)


def render(nodes: list[NodeWithScore]) -> str:
    return "\n\n".join(n.node.get_content(metadata_mode=MetadataMode.LLM) for n in nodes)


def test_keeps_the_optimal_set_not_the_greedy_prefix():
    # greedy by score takes the 0.9 giant and then nothing fits; the optimum takes four smaller ones
    nodes = [
        node("alpha " * 150, 0.90),
        node("bravo " * 45, 0.80),
        node("kilo " * 45, 0.75),
        node("delta " * 45, 0.70),
        node("echo " * 45, 0.65),
    ]
    budget = 200
    pp = TokenBudgetPostprocessor(max_tokens=budget, model=MODEL, allow_partial=False, dedupe=None)
    kept = pp.postprocess_nodes(nodes)
    tokens = [COUNTER.count_text(n.node.get_content(metadata_mode=MetadataMode.LLM)) for n in nodes]
    sep = COUNTER.count_text("\n\n")
    best = max(
        (
            combo
            for r in range(len(nodes) + 1)
            for combo in itertools.combinations(range(len(nodes)), r)
            if sum(tokens[i] for i in combo) + sep * max(0, len(combo) - 1) <= budget
        ),
        key=lambda combo: sum(nodes[i].score for i in combo),
    )
    assert {n.node.text for n in kept} == {nodes[i].node.text for i in best}
    assert len(kept) == 4 and nodes[0].node.text not in {n.node.text for n in kept}
    assert COUNTER.count_text(render(kept)) <= budget
    info = kept[0].node.metadata["tokenward_pack"]
    assert info["budget"] == budget and info["kept"] == 4 and info["offered"] == 5
    assert info["dropped"] == [
        {
            "node_id": nodes[0].node.node_id,
            "reason": "did_not_fit",
            "tokens": tokens[0],
            "score": 0.90,
        }
    ]
    assert pp.last_report.relevance_kept == pytest.approx(0.80 + 0.75 + 0.70 + 0.65)
    # bookkeeping is hidden from the prompt and the originals are untouched
    assert "tokenward" not in kept[0].node.get_content(metadata_mode=MetadataMode.LLM)
    assert "tokenward_pack" not in nodes[1].node.metadata


def test_budget_from_the_llm_window_minus_template_and_output():
    llm = WindowMockLLM()
    query = "What is the capital of France?"
    # counted like LlamaIndex's PromptHelper: Settings.tokenizer over the formatted text
    qa = len(Settings.tokenizer(DEFAULT_TEXT_QA_PROMPT.format(context_str="", query_str=query)))
    refine = len(
        Settings.tokenizer(
            DEFAULT_REFINE_PROMPT.format(context_msg="", existing_answer="", query_str=query)
        )
    )
    assert refine > qa  # LlamaIndex compacts for the bigger of the two; so do we
    pad = 500  # LlamaIndex's response_padding_size
    assert TokenBudgetPostprocessor(llm=llm).budget(query) == 1200 - 200 - refine - pad
    assert TokenBudgetPostprocessor(llm=llm, reserve_output=500).budget(query) == (
        1200 - 500 - refine - pad
    )
    custom = TokenBudgetPostprocessor(llm=llm, prompt_template=DEFAULT_TEXT_QA_PROMPT, padding=0)
    assert custom.budget(query) == 1200 - 200 - qa
    half = TokenBudgetPostprocessor(llm=llm, context_share=0.5).budget(query)
    assert half == -(-(1200 - 200 - refine - pad) // 2)  # plan() gives the odd token to "rag"
    # with model=..., the model's own tokenizer counts the template
    exact = TokenBudgetPostprocessor(llm=llm, model=MODEL, prompt_template=DEFAULT_TEXT_QA_PROMPT)
    assert exact.budget(query) == 1200 - 200 - pad - COUNTER.count_text(
        DEFAULT_TEXT_QA_PROMPT.format(context_str="", query_str=query)
    )


def test_edges_order_dedupe_and_partial_fill():
    nodes = [
        node(f"Fact number {i}. " + "detail " * 20 + f"End of fact {i}.", 1 - i / 10)
        for i in range(6)
    ]
    nodes.append(node(nodes[0].node.text, 0.95))  # a duplicate of the best node
    pp = TokenBudgetPostprocessor(max_tokens=10_000, model=MODEL, order="edges")
    kept = pp.postprocess_nodes(nodes)
    assert [round(n.score, 2) for n in kept] == [1.0, 0.8, 0.6, 0.5, 0.7, 0.9]
    dropped = kept[0].node.metadata["tokenward_pack"]["dropped"]
    assert dropped == [
        {
            "node_id": nodes[6].node.node_id,
            "reason": "duplicate",
            "tokens": None,
            "score": 0.95,
            "duplicate_of": nodes[0].node.node_id,
        }
    ]

    long_doc = node(
        ". ".join(f"Sentence {i} is about Paris" for i in range(80)) + ".", 0.5, source="guide.txt"
    )
    small = node("Paris is the capital of France.", 0.9)
    pp = TokenBudgetPostprocessor(max_tokens=300, model=MODEL, min_partial_tokens=50)
    kept = pp.postprocess_nodes([small, long_doc])
    assert kept[0].node.text == small.node.text
    partial = kept[1].node
    assert (
        partial.metadata["tokenward_partial"] is True and partial.metadata["source"] == "guide.txt"
    )
    assert long_doc.node.text.startswith(partial.text) and len(partial.text) < len(
        long_doc.node.text
    )
    assert partial.text.endswith(".")
    assert partial.metadata["tokenward_original_tokens"] == COUNTER.count_text(
        long_doc.node.get_content(metadata_mode=MetadataMode.LLM)
    )
    assert COUNTER.count_text(render(kept)) <= 300
    assert "tokenward" not in partial.get_content(metadata_mode=MetadataMode.LLM)


DOCS = [
    Document(text=f"Document {i}: " + ("filler words here " * (10 + 7 * i)) + f"MARKER{i}")
    for i in range(8)
]


@pytest.fixture
def index():
    old = Settings._llm, Settings._embed_model
    Settings.llm = WindowMockLLM()
    Settings.embed_model = MockEmbedding(embed_dim=8)
    try:
        yield VectorStoreIndex.from_documents(DOCS)
    finally:
        Settings._llm, Settings._embed_model = old


def test_in_as_query_engine_the_llm_sees_only_the_packed_nodes(index):
    pp = TokenBudgetPostprocessor(max_tokens=250, model=MODEL, allow_partial=False)
    engine = index.as_query_engine(similarity_top_k=8, node_postprocessors=[pp])
    response = engine.query("Which marker?")
    prompt = str(response)  # MockLLM echoes the prompt it was sent
    kept = {n.node.node_id for n in response.source_nodes}
    assert 0 < len(kept) < 8 and pp.last_report.tokens_used <= 250
    for doc_node in index.docstore.docs.values():
        marker = doc_node.text.split()[-1]
        assert (marker in prompt) == (doc_node.node_id in kept)
    assert all("tokenward_pack" in n.node.metadata for n in response.source_nodes)
    assert all("tokenward_pack" not in n.metadata for n in index.docstore.docs.values())


def test_in_retriever_query_engine_with_budget_from_settings_llm(index):
    pp = TokenBudgetPostprocessor()  # budget from Settings.llm: 1200 window, 200 output
    engine = RetrieverQueryEngine.from_args(
        index.as_retriever(similarity_top_k=8), node_postprocessors=[pp]
    )
    acc = Accountant()
    with instrument(acc):
        response = engine.query("Which marker?")
    assert pp.last_report.max_tokens == pp.budget("Which marker?") < 500
    assert pp.last_report.chunks_kept < 8
    # packed to the synthesizer's own limit: one LLM call, no refine round
    assert len([e for e in acc.ledger.events() if e.kind != "embedding"]) == 1
    assert pp.last_report.tokens_used <= pp.last_report.max_tokens
    assert len(response.source_nodes) == pp.last_report.chunks_kept + (
        1 if pp.last_report.partial is not None else 0
    )
