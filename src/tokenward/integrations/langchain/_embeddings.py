"""Accounting for LangChain ``Embeddings`` (LangChain has no callbacks for them)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

from langchain_core.embeddings import Embeddings

from tokenward.integrations._common import guard
from tokenward.integrations.langchain._common import logger

if TYPE_CHECKING:
    from tokenward.accountant import Accountant

__all__ = ["TrackedEmbeddings"]


def _as_messages(texts: Sequence[str]) -> list[dict[str, str]]:
    return [{"role": "user", "content": t} for t in texts]


class TrackedEmbeddings(Embeddings):
    """Wraps any ``Embeddings`` and records one ``kind="embedding"`` event per call.

    A hard budget is checked before the call (:class:`~tokenward.BudgetExceededError`,
    or ``BudgetStoreUnavailableError`` when the budgets cannot be checked and their
    ``fail_mode`` is ``"closed"``, is raised and the wrapped object is not called).
    LangChain embeddings report no usage, so the input is counted by the core counter
    for ``model`` and events are marked ``estimated=True``. A failed call is released
    (``cancelled`` when the task was cancelled).

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
        with guard(logger, "embedding start"):
            self.accountant.preflight(
                run_id,
                self.model,
                messages=partial(_as_messages, texts),
                dims=self.dims,
                kind="embedding",
            )
        return run_id

    def _done(self, run_id: str) -> None:
        with guard(logger, "embedding end"):
            self.accountant.settle(run_id, None, model=self.model)

    def _failed(self, run_id: str, error: BaseException) -> None:
        with guard(logger, "embedding error"):
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
