"""ContextPacker as a Runnable and a BaseDocumentCompressor; scored_retriever over a real
in-memory vector store."""

from __future__ import annotations

import pytest
from langchain_core.documents import Document
from langchain_core.embeddings import DeterministicFakeEmbedding
from langchain_core.runnables import RunnableLambda
from langchain_core.vectorstores import InMemoryVectorStore

from tokenward.context import plan
from tokenward.errors import ConfigurationError
from tokenward.langchain import ContextPacker, scored_retriever


def tokens(text: str) -> int:
    """One token per word: makes the budgets in these tests easy to read."""
    return len(text.split())


def doc(id_: str, words: int, score: float | None, **meta) -> Document:
    md = dict(meta)
    if score is not None:
        md["score"] = score
    return Document(page_content=" ".join(f"{id_}{i}" for i in range(words)), metadata=md, id=id_)


def test_maximizes_relevance_not_greedy_prefix():
    # greedy by score takes A (80 words) and stops at B, which no longer fits in 100;
    # the optimum is B + C + D (3 x 30 words, relevance 2.1 > 0.9)
    docs = [doc("A", 80, 0.9), doc("B", 30, 0.7), doc("C", 30, 0.7), doc("D", 30, 0.7)]
    packer = ContextPacker(max_tokens=100, counter=tokens, separator=" ")
    out = packer.invoke(docs)
    assert [d.id for d in out] == ["B", "C", "D"]
    report = out[0].metadata["tokenward_pack"]
    assert report["kept"] == 3 and report["tokens_used"] == 90  # " " separators: 0 words
    assert report["dropped"] == [{"id": "A", "reason": "did_not_fit", "tokens": 80}]
    assert [d.metadata["tokenward_pack"]["rank"] for d in out] == [0, 1, 2]
    greedy = ContextPacker(max_tokens=100, counter=tokens, separator=" ", strategy="greedy")
    assert [d.id for d in greedy.invoke(docs)] == ["A"]
    assert docs[1].metadata == {"score": 0.7}  # inputs are not modified


def test_compressor_interface_and_custom_score_key():
    docs = [
        doc("x", 10, None, relevance=0.1),
        doc("y", 10, None, relevance=0.8),
        doc("z", 10, None, relevance=0.5),
    ]
    packer = ContextPacker(max_tokens=21, counter=tokens, separator=" ", score_key="relevance")
    out = packer.compress_documents(docs, query="anything")
    assert [d.id for d in out] == ["y", "z"]
    assert packer.last_report.chunks_kept == 2


async def test_async_compress_and_ainvoke():
    docs = [doc("a", 5, 0.2), doc("b", 5, 0.9)]
    packer = ContextPacker(max_tokens=6, counter=tokens, separator=" ")
    assert [d.id for d in await packer.acompress_documents(docs, "q")] == ["b"]
    assert [d.id for d in await packer.ainvoke(docs)] == ["b"]


def test_without_scores_retrieval_order_is_relevance():
    docs = [doc("first", 10, None), doc("second", 10, None), doc("third", 10, None)]
    out = ContextPacker(max_tokens=21, counter=tokens, separator=" ").invoke(docs)
    assert [d.id for d in out] == ["first", "second"]


def test_order_edges_and_original():
    docs = [doc(c, 3, s) for c, s in zip("abcde", [0.1, 0.9, 0.5, 0.7, 0.3])]
    orig = ContextPacker(max_tokens=100, counter=tokens, order="original").invoke(docs)
    assert [d.id for d in orig] == list("abcde")
    edges = ContextPacker(max_tokens=100, counter=tokens, order="edges").invoke(docs)
    ids = [d.id for d in edges]
    assert ids[0] == "b" and ids[-1] == "d" and ids[len(ids) // 2] == "a"


def test_budget_from_plan_and_model_and_real_counter():
    p = plan(10_000, 2_000, shares={"history": 0.5, "rag": 0.5})
    assert ContextPacker(plan=p, model="gpt-4o").max_tokens == p["rag"] == 4000
    assert ContextPacker(model="gpt-4o").max_tokens == plan("gpt-4o").available
    with pytest.raises(ConfigurationError):
        ContextPacker(counter=tokens)
    from tokenward.counting import get_counter

    docs = [
        Document(
            page_content=f"Paragraph {i}: " + "tokens cost money. " * (i + 1),
            metadata={"score": 1.0 / (i + 1)},
            id=str(i),
        )
        for i in range(30)
    ]
    out = ContextPacker(max_tokens=300, model="gpt-4o").invoke(docs)
    joined = "\n\n".join(d.page_content for d in out)
    assert (
        get_counter("gpt-4o").count_text(joined) == out[0].metadata["tokenward_pack"]["tokens_used"]
    )
    assert out[0].metadata["tokenward_pack"]["tokens_used"] <= 300


def test_partial_fill_marks_the_cut_document():
    big = Document(
        page_content=" ".join(f"Sentence {i} is here." for i in range(12)),
        metadata={"score": 0.9},
        id="big",
    )  # 48 words
    docs = [big, doc("small", 10, 0.5)]
    packer = ContextPacker(
        max_tokens=40, counter=tokens, separator=" ", allow_partial=True, min_partial_tokens=5
    )
    out = packer.invoke(docs)
    assert sorted(d.id for d in out) == ["big", "small"]
    cut = [d for d in out if d.metadata.get("tokenward_partial")]
    assert len(cut) == 1 and cut[0].id == "big"
    assert 0 < tokens(cut[0].page_content) <= 30
    assert cut[0].page_content.endswith(".") and big.page_content.startswith(cut[0].page_content)


def test_scored_retriever_then_packer_in_a_chain():
    emb = DeterministicFakeEmbedding(size=32)
    store = InMemoryVectorStore(emb)
    texts = [f"document number {i} " + "filler " * (5 * (i % 4) + 1) for i in range(12)]
    store.add_documents([Document(page_content=t, id=str(i)) for i, t in enumerate(texts)])
    retriever = scored_retriever(store, k=8)
    hits = retriever.invoke("document number 3")
    assert len(hits) == 8
    # InMemoryVectorStore has no relevance function: its cosine similarity is used
    raw = store.similarity_search_with_score("document number 3", k=8)
    assert [(d.id, d.metadata["score"]) for d in hits] == [(d.id, s) for d, s in raw]
    shifted = scored_retriever(store, k=3, relevance_score_fn=lambda s: (s + 1) / 2)
    assert [d.metadata["score"] for d in shifted.invoke("document number 3")] == [
        (s + 1) / 2 for _, s in raw[:3]
    ]

    chain = (
        retriever
        | ContextPacker(max_tokens=40, counter=tokens)
        | RunnableLambda(lambda docs: "\n\n".join(d.page_content for d in docs))
    )
    context = chain.invoke("document number 3")
    assert 0 < tokens(context) <= 40


def vector_store(n: int = 12) -> InMemoryVectorStore:
    store = InMemoryVectorStore(DeterministicFakeEmbedding(size=32))
    texts = [f"document number {i} " + "filler " * (5 * (i % 4) + 1) for i in range(n)]
    store.add_documents(
        [Document(page_content=t, id=str(i), metadata={"part": i % 2}) for i, t in enumerate(texts)]
    )
    return store


async def test_scored_retriever_honours_runtime_k_and_search_kwargs():
    retriever = scored_retriever(vector_store(), k=8)
    assert len(retriever.invoke("document number 3", k=2)) == 2
    assert len(await retriever.ainvoke("document number 3", k=5)) == 5
    assert len(retriever.invoke("document number 3")) == 8  # the constructor's k again
    even = retriever.invoke("document number 3", k=4, filter=lambda d: d.metadata["part"] == 0)
    assert len(even) == 4 and all(d.metadata["part"] == 0 for d in even)


async def test_packer_as_retriever_packs_and_passes_k_to_the_base():
    from langchain_core.retrievers import BaseRetriever

    packer = ContextPacker(max_tokens=25, counter=tokens)
    retriever = packer.as_retriever(scored_retriever(vector_store(), k=8))
    assert isinstance(retriever, BaseRetriever)
    packed = retriever.invoke("document number 3")
    assert 0 < sum(tokens(d.page_content) for d in packed) <= 25
    assert all("tokenward_pack" in d.metadata for d in packed)
    assert len(retriever.invoke("document number 3", k=1)) == 1
    assert len(await retriever.ainvoke("document number 3", k=2)) <= 2
