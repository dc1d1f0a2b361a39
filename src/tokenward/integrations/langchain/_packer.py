"""ContextPacker: spend a RAG context budget on the most relevant documents."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from langchain_core.callbacks import (
    AsyncCallbackManagerForRetrieverRun,
    CallbackManagerForRetrieverRun,
    Callbacks,
)
from langchain_core.documents import BaseDocumentCompressor, Document
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import RunnableConfig, RunnableSerializable
from langchain_core.vectorstores import VectorStore
from pydantic import ConfigDict, Field

from tokenward.errors import ConfigurationError
from tokenward.messages import Chunk

__all__ = ["ContextPacker", "scored_retriever"]

#: metadata key under which the packer reports what it did (on every returned document)
REPORT_KEY = "tokenward_pack"


class ContextPacker(
    BaseDocumentCompressor, RunnableSerializable[Sequence[Document], list[Document]]
):
    """Packs retrieved documents into a token budget, maximizing total relevance.

    Runs core :func:`tokenward.context.pack_context` (exact 0/1 knapsack on token sizes,
    separators counted, near-duplicates dropped, optional truncated filler, ordering
    against lost-in-the-middle). Usable two ways:

    * as a ``Runnable[list[Document], list[Document]]``:
      ``retriever | ContextPacker(max_tokens=3000, model="gpt-4o") | format_docs``;
    * as a ``BaseDocumentCompressor`` (``compress_documents(docs, query)``), e.g. for
      ``ContextualCompressionRetriever(base_compressor=packer, base_retriever=...)``.

    Scores come from ``Document.metadata[score_key]`` (higher = more relevant), e.g.
    set by :func:`scored_retriever`. When no document has one, retrieval order is used
    (first = best). The budget is ``max_tokens``, else ``plan[plan_section]`` of a
    ``tokenward.context.plan(...)`` (or any mapping), else the model's window minus
    its reserved output.

    Returned documents are copies (the input is not modified) whose metadata carry
    ``tokenward_pack``: ``{"rank", "tokens_used", "max_tokens", "kept",
    "relevance_ratio", "exact", "partial", "dropped": [{"id", "reason", "tokens"}]}``
    (reasons: ``did_not_fit``, ``duplicate``, ``low_score``...); a document cut to fill the
    remaining room has ``tokenward_partial=True``. The full core report of the last
    call is also in :attr:`last_report` (per instance; not for concurrent use).
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    max_tokens: int | None = None
    model: str | None = None
    counter: Any = None
    plan: Any = None
    plan_section: str = "rag"
    score_key: str = "score"
    strategy: Literal["optimal", "greedy"] = "optimal"
    separator: str = "\n\n"
    min_score: float | None = None
    dedupe: float | None = 0.9
    allow_partial: bool = False
    min_partial_tokens: int = 100
    order: Literal["score", "original", "edges"] = "score"
    last_report: Any = Field(default=None, exclude=True)

    def __init__(self, **data: Any) -> None:
        super().__init__(**data)
        self._resolve_budget()  # outside pydantic validation: raises ConfigurationError as is

    def _resolve_budget(self) -> None:
        if self.max_tokens is None:
            if self.plan is not None:
                try:
                    self.max_tokens = int(self.plan[self.plan_section])
                except (KeyError, TypeError, IndexError):
                    raise ConfigurationError(
                        f"plan has no {self.plan_section!r} section; pass plan_section=... "
                        f"or max_tokens=..."
                    ) from None
            elif self.model is not None:
                from tokenward.context import plan

                self.max_tokens = plan(self.model).available
            else:
                raise ConfigurationError(
                    "ContextPacker needs a budget: max_tokens=N, plan=..., or model='...'"
                )
        if self.counter is None and self.model is None:
            raise ConfigurationError(
                "ContextPacker needs counter=... or model='...' to count tokens"
            )
        if self.max_tokens is not None and self.max_tokens < 0:
            raise ConfigurationError(f"max_tokens must be >= 0, got {self.max_tokens}")

    @classmethod
    def is_lc_serializable(cls) -> bool:
        return False

    # -- the work ------------------------------------------------------------------------------
    def pack(self, documents: Sequence[Document]) -> list[Document]:
        """Choose, order and annotate the documents that fit the budget."""
        from tokenward.context import pack_context

        docs = list(documents)
        scored = any(self.score_key in d.metadata for d in docs)
        chunks = [
            Chunk(
                text=d.page_content,
                score=float(d.metadata.get(self.score_key) or 0.0)
                if scored
                else float(len(docs) - i),
                metadata=dict(d.metadata),
                id=d.id,
                source=d,
            )
            for i, d in enumerate(docs)
        ]
        result = pack_context(
            chunks,
            int(self.max_tokens or 0),
            self.counter if self.counter is not None else self.model,
            strategy=self.strategy,
            separator=self.separator,
            min_score=self.min_score,
            dedupe=self.dedupe,
            allow_partial=self.allow_partial,
            min_partial_tokens=self.min_partial_tokens,
            order=self.order,
        )
        report = result.report
        self.last_report = report
        summary = {
            "tokens_used": report.tokens_used,
            "max_tokens": report.max_tokens,
            "kept": report.chunks_kept,
            "relevance_ratio": round(report.relevance_ratio, 6),
            "exact": report.exact,
            "partial": report.partial is not None,
            "dropped": [
                {
                    "id": d.chunk.id if d.chunk.id is not None else d.index,
                    "reason": d.reason,
                    "tokens": d.tokens,
                }
                for d in report.dropped
            ],
        }
        out: list[Document] = []
        for rank, chunk in enumerate(result.chunks):
            src = chunk.source if isinstance(chunk.source, Document) else None
            metadata = dict(src.metadata if src is not None else chunk.metadata)
            if chunk.metadata.get("tokenward_partial"):
                metadata["tokenward_partial"] = True
            metadata[REPORT_KEY] = {"rank": rank, **summary}
            out.append(
                Document(
                    page_content=chunk.text,
                    metadata=metadata,
                    id=src.id if src is not None else chunk.id,
                )
            )
        return out

    # -- BaseDocumentCompressor ----------------------------------------------------------------
    def compress_documents(
        self,
        documents: Sequence[Document],
        query: str,
        callbacks: Callbacks | None = None,
    ) -> Sequence[Document]:
        return self.pack(documents)

    # -- Runnable ------------------------------------------------------------------------------
    def invoke(
        self, input: Sequence[Document], config: RunnableConfig | None = None, **kwargs: Any
    ) -> list[Document]:
        return self._call_with_config(self.pack, input, config)

    def as_retriever(self, retriever: BaseRetriever) -> BaseRetriever:
        """A retriever that packs ``retriever``'s results: a real ``BaseRetriever``, usable
        where ``retriever | packer`` is not (``create_retriever_tool``, retriever
        parameters). ``invoke(query, k=20)`` passes ``k`` (and any other keyword) on to
        ``retriever``: how many candidates to retrieve before packing::

            retriever = ContextPacker(max_tokens=2000, model="gpt-4o").as_retriever(
                scored_retriever(vectorstore, k=20)
            )
        """
        return _PackedRetriever(retriever=retriever, packer=self)


class _ScoredRetriever(BaseRetriever):
    """Vector-store retriever that keeps the relevance score in ``metadata[score_key]``."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    vectorstore: VectorStore
    k: int = 20
    score_key: str = "score"
    relevance_score_fn: Any = None
    search_kwargs: dict[str, Any] = Field(default_factory=dict)

    def _docs(self, pairs: Sequence[tuple[Document, float]], raw: bool) -> list[Document]:
        fn = self.relevance_score_fn if raw else None
        return [
            Document(
                page_content=d.page_content,
                metadata={**d.metadata, self.score_key: fn(s) if fn else s},
                id=d.id,
            )
            for d, s in pairs
        ]

    def _search(self, kwargs: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """``(k, search kwargs)`` of one call: ``invoke(q, k=3, filter=...)`` overrides the
        constructor's values for that call only."""
        k = kwargs.pop("k", self.k)
        return k, {**self.search_kwargs, **kwargs}

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun, **kwargs: Any
    ) -> list[Document]:
        vs = self.vectorstore
        k, search = self._search(kwargs)
        if self.relevance_score_fn is None:
            try:
                return self._docs(
                    vs.similarity_search_with_relevance_scores(query, k=k, **search), raw=False
                )
            except NotImplementedError:  # store has no relevance function: raw similarity
                pass
        return self._docs(vs.similarity_search_with_score(query, k=k, **search), raw=True)

    async def _aget_relevant_documents(
        self, query: str, *, run_manager: AsyncCallbackManagerForRetrieverRun, **kwargs: Any
    ) -> list[Document]:
        vs = self.vectorstore
        k, search = self._search(kwargs)
        if self.relevance_score_fn is None:
            try:
                return self._docs(
                    await vs.asimilarity_search_with_relevance_scores(query, k=k, **search),
                    raw=False,
                )
            except NotImplementedError:
                pass
        return self._docs(await vs.asimilarity_search_with_score(query, k=k, **search), raw=True)


class _PackedRetriever(BaseRetriever):
    """A retriever whose results go through a :class:`ContextPacker` (see ``as_retriever``)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    retriever: BaseRetriever
    packer: ContextPacker

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun, **kwargs: Any
    ) -> list[Document]:
        docs = self.retriever.invoke(query, {"callbacks": run_manager.get_child()}, **kwargs)
        return self.packer.pack(docs)

    async def _aget_relevant_documents(
        self, query: str, *, run_manager: AsyncCallbackManagerForRetrieverRun, **kwargs: Any
    ) -> list[Document]:
        docs = await self.retriever.ainvoke(query, {"callbacks": run_manager.get_child()}, **kwargs)
        return self.packer.pack(docs)


def scored_retriever(
    vectorstore: VectorStore,
    *,
    k: int = 20,
    score_key: str = "score",
    relevance_score_fn: Any = None,
    **search_kwargs: Any,
) -> BaseRetriever:
    """A retriever over ``vectorstore`` that puts each hit's relevance score into
    ``metadata[score_key]`` (higher = more relevant).

    Scores come from ``similarity_search_with_relevance_scores`` (0..1). A store that
    has no relevance function (e.g. ``InMemoryVectorStore``) gives its raw
    ``similarity_search_with_score`` value instead (cosine similarity there); for a
    distance-based store pass ``relevance_score_fn`` (raw score -> relevance), which
    is then always applied to the raw scores.

    ``k`` and ``search_kwargs`` are defaults: ``retriever.invoke(query, k=5, filter=...)``
    overrides them for one call (LangChain's retriever convention).

    Retrieve generously (``k`` larger than what fits) and let :class:`ContextPacker`
    choose: ``scored_retriever(vs, k=20) | ContextPacker(max_tokens=2000, model="gpt-4o")``,
    or ``ContextPacker(...).as_retriever(scored_retriever(vs, k=20))`` for a retriever.
    """
    return _ScoredRetriever(
        vectorstore=vectorstore,
        k=k,
        score_key=score_key,
        relevance_score_fn=relevance_score_fn,
        search_kwargs=search_kwargs,
    )
