"""``TokenBudgetPostprocessor``: pack retrieved nodes into a token budget by relevance."""

from __future__ import annotations

from typing import Any, Literal

from llama_index.core.bridge.pydantic import Field, PrivateAttr
from llama_index.core.llms.llm import LLM
from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.prompts import BasePromptTemplate
from llama_index.core.response_synthesizers.refine import DEFAULT_RESPONSE_PADDING_SIZE
from llama_index.core.schema import MetadataMode, NodeWithScore, QueryBundle

from tokenward.context import PackReport, pack_context, plan
from tokenward.errors import ConfigurationError
from tokenward.integrations.llama_index._common import to_messages
from tokenward.messages import Chunk

__all__ = ["TokenBudgetPostprocessor"]

#: metadata keys this postprocessor adds; hidden from the LLM and the embedder
PACK_KEY = "tokenward_pack"
PARTIAL_KEY = "tokenward_partial"
_OWN_KEYS = (PACK_KEY, PARTIAL_KEY, "tokenward_tokens", "tokenward_original_tokens")


class TokenBudgetPostprocessor(BaseNodePostprocessor):
    """Keep the retrieved nodes that maximize total relevance within a token budget.

    Uses :func:`tokenward.context.pack_context` on ``NodeWithScore.score``: an
    optimal 0/1 knapsack (not stop-at-first-miss), separators counted, near
    duplicates dropped, the leftover room optionally filled with a truncated copy
    of the best remaining node (``metadata["tokenward_partial"] = True``).

    The budget is ``max_tokens`` when given; otherwise it is derived from the
    LLM (``llm=`` or ``Settings.llm``): ``context_window`` minus the reserved
    output (``reserve_output``, default ``llm.metadata.num_output``) minus the
    prompt template with the query (``prompt_template``; default: the bigger of
    LlamaIndex's QA and refine templates, as its synthesizers assume) and
    ``padding``, split with :func:`tokenward.context.plan` (``context_share`` of
    what is left goes to the retrieved context). A context packed to that budget
    is sent in one LLM call, without a refine round.

    ``order``: ``"score"`` (best first), ``"original"`` (retrieval order) or
    ``"edges"`` (best at both ends, weakest in the middle, like
    ``LongContextReorder``). Every kept node carries
    ``metadata["tokenward_pack"]``: the budget, tokens used, relevance kept and
    what was dropped and why (hidden from the LLM prompt);
    ``last_report`` holds the full :class:`~tokenward.context.PackReport`.

    ::

        engine = index.as_query_engine(similarity_top_k=50,
                                       node_postprocessors=[TokenBudgetPostprocessor(llm=llm)])
    """

    max_tokens: int | None = Field(default=None, description="Fixed budget for the context.")
    llm: LLM | None = Field(
        default=None, exclude=True, description="LLM whose window sets the budget."
    )
    model: str | None = Field(
        default=None,
        description="Count with this model's tokenizer. Default: the tokenizer "
        "LlamaIndex's synthesizers split with (Settings.tokenizer), so the packed context is "
        "sent in one call.",
    )
    prompt_template: BasePromptTemplate | None = Field(default=None, exclude=True)
    reserve_output: int | None = Field(default=None, description="Tokens kept for the answer.")
    context_share: float = Field(default=1.0, gt=0, le=1)
    order: Literal["score", "original", "edges"] = "score"
    strategy: Literal["optimal", "greedy"] = "optimal"
    dedupe: float | None = 0.9
    allow_partial: bool = True
    min_partial_tokens: int = 100
    min_score: float | None = None
    separator: str = Field(default="\n\n", description="How the synthesizer joins node texts.")
    padding: int = Field(
        default=DEFAULT_RESPONSE_PADDING_SIZE,
        ge=0,
        description="Tokens kept free, as LlamaIndex's refine/compact "
        "synthesizers do (their response_padding_size, 500).",
    )
    metadata_mode: MetadataMode = MetadataMode.LLM

    _last_report: PackReport | None = PrivateAttr(default=None)

    @classmethod
    def class_name(cls) -> str:
        return "TokenBudgetPostprocessor"

    @property
    def last_report(self) -> PackReport | None:
        """The report of the most recent call (what was kept, dropped and why)."""
        return self._last_report

    # ------------------------------------------------------------------ budget
    def _llm(self) -> LLM:
        if self.llm is not None:
            return self.llm
        from llama_index.core import Settings

        try:
            return Settings.llm
        except Exception as exc:
            raise ConfigurationError(
                "TokenBudgetPostprocessor needs max_tokens=N or an LLM (llm=... or Settings.llm) "
                "to derive the budget from its context window"
            ) from exc

    def _counter(self) -> Any:
        """``model``'s tokenizer, else the one LlamaIndex's synthesizers split with."""
        if self.model is not None:
            from tokenward.counting import get_counter

            return get_counter(self.model)
        return _llama_index_counter()

    def budget(self, query: str = "") -> int:
        """The token budget for the retrieved context of ``query``."""
        if self.max_tokens is not None:
            return self.max_tokens
        llm = self._llm()
        meta = llm.metadata
        reserve = self.reserve_output
        if reserve is None:
            reserve = meta.num_output if meta.num_output and meta.num_output > 0 else 0
        prompt_tokens = self._prompt_tokens(llm, query)
        shares = {"rag": self.context_share}
        if self.context_share < 1:
            shares["other"] = 1 - self.context_share
        return plan(meta.context_window, reserve, shares=shares, fixed={"prompt": prompt_tokens})[
            "rag"
        ]

    def _prompt_tokens(self, llm: LLM, query: str) -> int:
        """Tokens of the biggest prompt the synthesizer may wrap the context in, plus padding.

        Like LlamaIndex's own compact/refine synthesizers, the QA and the refine
        templates are both considered (the bigger wins), with the query filled in
        and every other variable empty.
        """
        from llama_index.core.prompts.default_prompt_selectors import (
            DEFAULT_REFINE_PROMPT_SEL,
            DEFAULT_TEXT_QA_PROMPT_SEL,
        )

        templates = (
            [self.prompt_template]
            if self.prompt_template is not None
            else [DEFAULT_TEXT_QA_PROMPT_SEL, DEFAULT_REFINE_PROMPT_SEL]
        )
        counter = self._counter()
        sizes = []
        for template in templates:
            values = {name: "" for name in template.template_vars}
            values["query_str"] = query
            if self.model is not None and llm.metadata.is_chat_model:
                sizes.append(
                    counter.count_messages(to_messages(template.format_messages(llm=llm, **values)))
                )
            else:  # how PromptHelper sizes it: the formatted prompt text
                text = template.format(llm=llm, **values)
                sizes.append(counter.count_text(text) if self.model is not None else counter(text))
        return int(max(sizes)) + self.padding

    # ------------------------------------------------------------------ packing
    def _postprocess_nodes(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None
    ) -> list[NodeWithScore]:
        if not nodes:
            self._last_report = None
            return []
        budget = self.budget(query_bundle.query_str if query_bundle is not None else "")
        chunks = [
            Chunk(
                text=n.node.get_content(metadata_mode=self.metadata_mode),
                score=n.score,
                id=n.node.node_id,
                source=n,
            )
            for n in nodes
        ]
        result = pack_context(
            chunks,
            budget,
            self._counter(),
            strategy=self.strategy,
            separator=self.separator,
            min_score=self.min_score,
            dedupe=self.dedupe,
            allow_partial=self.allow_partial,
            min_partial_tokens=self.min_partial_tokens,
            order=self.order,
        )
        report = result.report
        self._last_report = report
        summary = _summary(report, chunks)
        out: list[NodeWithScore] = []
        for chunk in result.chunks:
            original: NodeWithScore = (
                chunk.source if isinstance(chunk.source, NodeWithScore) else chunk.source.source
            )
            extra: dict[str, Any] = {PACK_KEY: summary}
            text: str | None = None
            if chunk.metadata.get(PARTIAL_KEY):
                text = _cut_node_text(original, chunk.text, self.metadata_mode)
                if text is None:
                    continue
                extra.update(
                    {
                        PARTIAL_KEY: True,
                        "tokenward_tokens": chunk.metadata.get("tokenward_tokens"),
                        "tokenward_original_tokens": chunk.metadata.get(
                            "tokenward_original_tokens"
                        ),
                    }
                )
            out.append(
                NodeWithScore(node=_annotated(original.node, extra, text), score=original.score)
            )
        return out


def _summary(report: PackReport, chunks: list[Chunk]) -> dict[str, Any]:
    return {
        "budget": report.max_tokens,
        "tokens_used": report.tokens_used,
        "kept": report.chunks_kept + (1 if report.partial is not None else 0),
        "offered": report.chunks_offered,
        "relevance_kept": round(report.relevance_kept, 6),
        "relevance_offered": round(report.relevance_offered, 6),
        "exact": report.exact,
        "dropped": [
            {
                "node_id": d.chunk.id,
                "reason": d.reason,
                "tokens": d.tokens,
                "score": d.chunk.score,
                **(
                    {"duplicate_of": chunks[d.duplicate_of].id}
                    if d.duplicate_of is not None
                    else {}
                ),
            }
            for d in report.dropped
        ],
    }


def _annotated(node: Any, extra: dict[str, Any], text: str | None) -> Any:
    """A copy of ``node`` with tokenward metadata (hidden from LLM and embedder) and new text."""
    update: dict[str, Any] = {
        "metadata": {**node.metadata, **extra},
        "excluded_llm_metadata_keys": list(
            dict.fromkeys([*node.excluded_llm_metadata_keys, *extra])
        ),
        "excluded_embed_metadata_keys": list(
            dict.fromkeys([*node.excluded_embed_metadata_keys, *extra])
        ),
    }
    if text is not None:
        update["text"] = text
    return node.model_copy(update=update)


def _cut_node_text(original: NodeWithScore, cut_rendered: str, mode: MetadataMode) -> str | None:
    """The node text whose rendering is ``cut_rendered`` (a prefix of the full rendering)."""
    node = original.node
    full_text = node.get_content(metadata_mode=MetadataMode.NONE)
    rendered = node.get_content(metadata_mode=mode)
    if not rendered.endswith(full_text):
        return None
    header = len(rendered) - len(full_text)
    if len(cut_rendered) <= header:
        return None
    return full_text[: len(cut_rendered) - header]


_tokenizer_counters: dict[int, Any] = {}


def _llama_index_counter() -> Any:
    """A stable ``str -> int`` callable over ``Settings.tokenizer`` (pack_context caches per callable)."""
    from llama_index.core import Settings

    tokenizer = Settings.tokenizer
    counter = _tokenizer_counters.get(id(tokenizer))
    if counter is None or counter.tokenizer is not tokenizer:
        counter = _TokenizerCount(tokenizer)
        _tokenizer_counters[id(tokenizer)] = counter
    return counter


class _TokenizerCount:
    __slots__ = ("__weakref__", "tokenizer")

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer

    def __call__(self, text: str) -> int:
        return len(self.tokenizer(text))
