"""langchain-tests' standard retriever suite (``RetrieversIntegrationTests``, from the
``langchain-tests`` package, a test dependency) run on tokenward's retrievers.

Only the constructor is ours: ``scored_retriever`` over a real ``InMemoryVectorStore``,
and ``ContextPacker(...).as_retriever(...)`` (packing with a budget large enough to keep
what was retrieved, so the suite's counts hold).
"""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.documents import Document
from langchain_core.embeddings import DeterministicFakeEmbedding
from langchain_core.retrievers import BaseRetriever
from langchain_core.vectorstores import InMemoryVectorStore
from langchain_tests.integration_tests import RetrieversIntegrationTests

from tokenward.langchain import ContextPacker, scored_retriever

TOPICS = ["rivers", "mountains", "deserts", "forests", "glaciers", "islands", "volcanoes"]


@pytest.fixture(scope="module")
def store() -> InMemoryVectorStore:
    vs = InMemoryVectorStore(DeterministicFakeEmbedding(size=32))
    vs.add_documents(
        [Document(page_content=f"A short note about {topic}.", id=topic) for topic in TOPICS]
    )
    return vs


class _WithStore:
    @pytest.fixture(autouse=True)
    def _store(self, store: InMemoryVectorStore) -> None:
        self.vectorstore = store

    @property
    def retriever_query_example(self) -> str:
        return "notes about mountains"


class TestScoredRetriever(_WithStore, RetrieversIntegrationTests):
    @property
    def retriever_constructor(self) -> Any:
        return scored_retriever

    @property
    def retriever_constructor_params(self) -> dict[str, Any]:
        return {"vectorstore": self.vectorstore, "k": 4}


def packed_retriever(vectorstore: InMemoryVectorStore, k: int = 4) -> BaseRetriever:
    packer = ContextPacker(max_tokens=1000, model="gpt-4o-mini")
    return packer.as_retriever(scored_retriever(vectorstore, k=k))


class TestContextPackerRetriever(_WithStore, RetrieversIntegrationTests):
    @property
    def retriever_constructor(self) -> Any:
        return packed_retriever

    @property
    def retriever_constructor_params(self) -> dict[str, Any]:
        return {"vectorstore": self.vectorstore, "k": 4}
