"""What the Accountant resolves from its arguments: models (catalog lookups, cached) and budgets."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from tokenward._hygiene import count_ok, key
from tokenward._memo import remember
from tokenward.errors import ConfigurationError

if TYPE_CHECKING:
    from tokenward.budgets import Budgets
    from tokenward.catalog import Catalog, ModelInfo

__all__ = ["Models", "as_budgets", "check_count"]

logger = logging.getLogger("tokenward")
_warned_unpriced: set[str] = set()


class Models:
    """Model names -> catalog entries, resolved once per name while the catalog is unchanged."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        #: (model, provider, base_url) -> (catalog generation, fallback, info, name to record)
        self._infos: dict[tuple[Any, ...], tuple[Any, Any, ModelInfo, str]] = {}
        self._exact: dict[str, bool] = {}  # model name -> counted by its own tokenizer

    def info(
        self, model: str, provider: str | None = None, base_url: str | None = None
    ) -> tuple[ModelInfo, str]:
        """``(info, name to record)``: the catalog's model (its canonical name), its explicit
        fallback, or an unpriced placeholder (the requested name, cleaned and bounded; warned
        about once per model and process). Valid while the catalog keeps its generation and
        fallback."""
        catalog = self.catalog
        generation = getattr(catalog, "_generation", None)
        fallback = getattr(catalog, "_fallback", None)
        asked = (model, provider, base_url)
        hit = self._infos.get(asked)
        if hit is not None and hit[0] == generation and hit[1] is fallback:
            return hit[2], hit[3]
        model = key(model)
        info = catalog.lookup(model, provider=provider, base_url=base_url)
        name = info.name if info.name != model and catalog.find(model) is not None else model
        if not info.priced and model not in _warned_unpriced:
            _warned_unpriced.add(model)
            logger.warning(
                "tokenward: model %r has no known price; its calls are recorded with their "
                "tokens and cost unknown. Price it with catalog.register(...) or "
                "`tokenward models update` (logged once per model)",
                model,
            )
        if generation is not None:
            remember(self._infos, asked, (generation, fallback, info, name), 1024)
        return info, name

    def counts_exactly(self, info: ModelInfo) -> bool:
        """Whether the model's prompts are counted by its own tokenizer."""
        exact = self._exact.get(info.name)
        if exact is None:
            from tokenward.counting import get_counter

            counter = get_counter(info.name, catalog=self.catalog)
            # a counter that learns from reported usage (estimator, provider counter with its
            # estimating fallback) is not exact for every prompt, whatever it said last
            exact = bool(counter.exact) and not callable(getattr(counter, "observe", None))
            self._exact[info.name] = exact
        return exact


def as_budgets(budgets: object) -> Budgets | None:
    """``Accountant(budgets=...)``: a ``Budgets``, a list of ``Budget`` rules (wrapped), a single
    ``Budget``, or ``None``; anything else is a ``TypeError`` at construction."""
    from tokenward.budgets import Budget, Budgets

    if budgets is None or isinstance(budgets, Budgets):
        return budgets
    if isinstance(budgets, Budget):
        return Budgets(budgets)
    if isinstance(budgets, (list, tuple)) and all(isinstance(b, Budget) for b in budgets):
        return Budgets(*budgets)
    raise TypeError(
        f"Accountant(budgets=...) takes a Budgets object or a list of Budget rules, got "
        f"{type(budgets).__name__}: use budgets=[Budget('daily', limit_usd='5')] or "
        f"budgets=Budgets(Budget(...), store=...)"
    )


def check_count(name: str, value: int | None) -> None:
    """A count argument is an int in ``[0, 2**63)`` (or ``None``)."""
    if value is not None and not count_ok(value):
        raise ConfigurationError(f"{name} must be a whole number >= 0 below 2**63, got {value!r}")
