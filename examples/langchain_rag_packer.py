"""Spend a RAG context budget on relevance: scored_retriever + ContextPacker.

An in-memory vector store (LangChain's InMemoryVectorStore with deterministic fake
embeddings, tracked by TrackedEmbeddings) returns 12 candidates of very different
sizes; ContextPacker keeps the set with the highest total relevance that fits 260
tokens (exact knapsack), where sort-by-score-and-stop keeps much less. The packed
context then goes to a (fake) chat model; every call is accounted per user.

    python examples/langchain_rag_packer.py
"""

from __future__ import annotations

from langchain_core.documents import Document
from langchain_core.embeddings import DeterministicFakeEmbedding
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableLambda, RunnablePassthrough
from langchain_core.vectorstores import InMemoryVectorStore

from tokenward.accountant import Accountant
from tokenward.integrations.langchain import TrackedEmbeddings
from tokenward.langchain import ContextPacker, TokenwardCallbackHandler, scored_retriever

TOPICS = ["billing", "quotas", "regions", "latency", "backups", "security"]


def corpus() -> list[Document]:
    docs = []
    for i in range(24):
        topic = TOPICS[i % len(TOPICS)]
        body = " ".join(
            f"Fact {j} about {topic}: the limit is {10 * (j + 1)} units."
            for j in range(1 + (i * 7) % 11)
        )
        docs.append(
            Document(
                page_content=f"[{topic} #{i}] {body}", id=f"doc-{i}", metadata={"topic": topic}
            )
        )
    return docs


def main() -> None:
    accountant = Accountant()
    embeddings = TrackedEmbeddings(
        DeterministicFakeEmbedding(size=64),
        accountant,
        model="text-embedding-3-small",
        user_id="indexer",
    )
    store = InMemoryVectorStore(embeddings)
    store.add_documents(corpus())

    retriever = scored_retriever(store, k=12)
    packer = ContextPacker(max_tokens=260, model="gpt-5.4-mini", order="edges")
    greedy = ContextPacker(max_tokens=260, model="gpt-5.4-mini", strategy="greedy")

    question = "What are the quota limits?"
    candidates = retriever.invoke(question)
    packed = packer.invoke(candidates)
    report = packed[0].metadata["tokenward_pack"]
    print(
        f"{len(candidates)} candidates -> kept {report['kept']} "
        f"({report['tokens_used']} of {report['max_tokens']} tokens, "
        f"{100 * report['relevance_ratio']:.0f}% of the offered relevance, exact={report['exact']})"
    )
    print("kept (best at the edges):", ", ".join(d.id for d in packed))
    print(
        "dropped:",
        ", ".join(f"{d['id']} ({d['reason']}, {d['tokens']} tok)" for d in report["dropped"]),
    )
    g = greedy.invoke(candidates)[0].metadata["tokenward_pack"]
    print(
        f"greedy by score would keep {g['kept']} documents, "
        f"{100 * g['relevance_ratio']:.0f}% of the offered relevance"
    )

    model = GenericFakeChatModel(messages=iter(["Quotas are 10 to 110 units per resource."] * 10))
    prompt = ChatPromptTemplate.from_messages(
        [("system", "Answer from the context.\n\n{context}"), ("human", "{question}")]
    )
    chain = (
        RunnablePassthrough.assign(
            context=(lambda x: x["question"])
            | retriever
            | packer
            | RunnableLambda(lambda docs: "\n\n".join(d.page_content for d in docs))
        )
        | prompt
        | model
    )
    handler = TokenwardCallbackHandler(accountant, default_model="gpt-5.4-mini")
    for user in ("erin", "frank", "erin"):  # query embeddings are accounted to "indexer"
        chain.invoke(
            {"question": question}, config={"callbacks": [handler], "metadata": {"user_id": user}}
        )

    accountant.flush()
    print()
    print(f"{'user':<8} {'kind':<10} {'calls':>5} {'input':>6} {'output':>6} {'cost (USD)':>12}")
    for row in accountant.ledger.summary(by=["user_id", "kind"]):
        print(
            f"{row.dims['user_id']:<8} {row.dims['kind']:<10} {row.calls:>5} {row.input:>6} "
            f"{row.output:>6} {row.cost:>12.7f}"
        )


if __name__ == "__main__":
    main()
