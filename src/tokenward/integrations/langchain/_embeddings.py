"""Accounting for LangChain ``Embeddings`` (LangChain has no callbacks for them)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from langchain_core.embeddings import Embeddings

from tokenward.integrations.langchain._common import swallow_internal_errors

if TYPE_CHECKING:
    from tokenward.accountant import Accountant

__all__ = ["TrackedEmbeddings"]


class TrackedEmbeddings(Embeddings):
    """Wraps any ``Embeddings`` and records one ``kind="embedding"`` event per call.

    Input tokens are counted by the core counter for ``model`` before the call
    (so a hard budget can deny it: :class:`~tokenward.BudgetExceededError` is
    raised and the wrapped object is not called); LangChain embeddings report no
    usage, so events are marked ``estimated=True``. A failed call is released.

    Args:
        embeddings: the object to wrap (``OpenAIEmbeddings``, ``FakeEmbeddings``...).
        accountant: the Accountant (default: ``get_default_accountant()``).
        model: the catalog name of the embedding model; default: the wrapped
            object's ``model`` / ``model_name`` attribute.
        **dims: dimensions for every event (``user_id``, ``tags``...).
    """

    def __init__(
        self,
        embeddings: Embeddings,
        accountant: Accountant | None = None,
        model: str | None = None,
        **dims: Any,
    ) -> None:
        if accountant is None:
            from tokenward.accountant import get_default_accountant

            accountant = get_default_accountant()
        model = (
            model or getattr(embeddings, "model", None) or getattr(embeddings, "model_name", None)
        )
        if not model or not isinstance(model, str):
            from tokenward.errors import ConfigurationError

            raise ConfigurationError(
                f"cannot tell which model {type(embeddings).__name__} uses; pass "
                f"TrackedEmbeddings(embeddings, accountant, model='text-embedding-3-small')"
            )
        self.embeddings = embeddings
        self.accountant = accountant
        self.model = model
        self.dims = {k: v for k, v in dims.items() if v is not None}

    def __repr__(self) -> str:
        return f"TrackedEmbeddings({self.embeddings!r}, model={self.model!r})"

    # -- accounting ---------------------------------------------------------------------
    def _begin(self, texts: Sequence[str]) -> str:
        run_id = uuid.uuid4().hex
        tokens = 0
        with swallow_internal_errors():
            from tokenward.counting import get_counter

            counter = get_counter(self.model, catalog=self.accountant.catalog)
            tokens = sum(counter.count_text(t) for t in texts)
        with swallow_internal_errors():
            self.accountant.preflight(
                run_id, self.model, prompt_tokens=tokens, dims=self.dims, kind="embedding"
            )
        return run_id

    def _done(self, run_id: str) -> None:
        with swallow_internal_errors():
            self.accountant.settle(run_id, None, model=self.model, dims=self.dims)

    def _failed(self, run_id: str, error: BaseException) -> None:
        with swallow_internal_errors():
            self.accountant.release(run_id, error=error)

    # -- Embeddings API -----------------------------------------------------------------
    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        run_id = self._begin(texts)
        try:
            result = self.embeddings.embed_documents(texts)
        except BaseException as exc:
            self._failed(run_id, exc)
            raise
        self._done(run_id)
        return result

    def embed_query(self, text: str) -> list[float]:
        run_id = self._begin([text])
        try:
            result = self.embeddings.embed_query(text)
        except BaseException as exc:
            self._failed(run_id, exc)
            raise
        self._done(run_id)
        return result

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        run_id = self._begin(texts)
        try:
            result = await self.embeddings.aembed_documents(texts)
        except BaseException as exc:
            self._failed(run_id, exc)
            raise
        self._done(run_id)
        return result

    async def aembed_query(self, text: str) -> list[float]:
        run_id = self._begin([text])
        try:
            result = await self.embeddings.aembed_query(text)
        except BaseException as exc:
            self._failed(run_id, exc)
            raise
        self._done(run_id)
        return result
