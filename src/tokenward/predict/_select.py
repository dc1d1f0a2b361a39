"""Model selection by requirements: context window, output size, price, provider, capabilities.

One function, :func:`select_models`, answers "which models could take this call, cheapest
first" for every part of tokenward that switches models: the context-limit helper
(:func:`tokenward.context.can_add` proposes a larger window), the degradation ladder
(:meth:`tokenward.budgets.Degrade.cheaper`) and the advisor's cheaper-model rule.

Capabilities come from the price data only (no capability table to keep by hand): a model
``caches`` when it has a cache-read price, supports ``cache_1h`` with a one-hour cache-write
price, ``batch`` with a batch price, ``audio`` with an audio-input price and ``vision`` with
an image-input price. A model without such a price may still have the capability; asking
for it only ever excludes models the price data does not vouch for.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING

from tokenward.errors import ConfigurationError

if TYPE_CHECKING:
    from tokenward.catalog import Catalog, ModelInfo

__all__ = ["CAPABILITIES", "ModelChoice", "capabilities_of", "mix_price", "select_models"]

#: Capabilities :func:`select_models` can require (see the module docs for their source).
CAPABILITIES = ("audio", "batch", "cache_1h", "caching", "vision")
_MILLION = Decimal(1_000_000)


def capabilities_of(info: ModelInfo) -> frozenset[str]:
    """What the price data says ``info`` supports (a subset of :data:`CAPABILITIES`)."""
    p = info.prices
    if p is None:
        return frozenset()
    out = set()
    if p.cache_read is not None:
        out.add("caching")
    if p.cache_write_1h is not None:
        out.add("cache_1h")
    if info.batch_discount is not None:
        out.add("batch")
    if p.audio_input is not None:
        out.add("audio")
    if p.image_input is not None:
        out.add("vision")
    return frozenset(out)


@dataclass(frozen=True, slots=True)
class ModelChoice:
    """One model that meets the requirements, with ``cost``: the price of the requested
    token mix (``input_tokens`` x input price + ``output_tokens`` x output price, tier-aware,
    in USD) on it."""

    info: ModelInfo
    cost: Decimal

    @property
    def name(self) -> str:
        return self.info.name


def mix_price(
    info: ModelInfo, input_tokens: int = 3_000_000, output_tokens: int = 1_000_000
) -> Decimal:
    """USD for ``input_tokens`` + ``output_tokens`` on ``info`` (one call's tier, base
    prices otherwise): how :func:`select_models` ranks models."""
    prices = info.prices_for(input_tokens)
    return (
        Decimal(input_tokens) * prices.input + Decimal(output_tokens) * prices.output
    ) / _MILLION


def select_models(
    catalog: Catalog | None = None,
    *,
    min_context: int = 0,
    min_output: int = 0,
    input_tokens: int = 3_000_000,
    output_tokens: int = 1_000_000,
    max_cost: Decimal | str | None = None,
    provider: str | Sequence[str] | None = None,
    capabilities: Iterable[str] = (),
    mode: str = "chat",
    exclude: Iterable[str] = (),
) -> list[ModelChoice]:
    """Priced models meeting every requirement, cheapest first (then by name).

    ``min_context``: the context window must hold this many tokens (prompt plus output:
    pass both); ``min_output``: the max output must allow this many (models without a
    stated max output pass); ``input_tokens``/``output_tokens``: the token mix that ranks
    models (default 3:1 per million, the usual blend) and that ``max_cost`` (USD) bounds;
    ``provider``: one provider or several; ``capabilities``: names from
    :data:`CAPABILITIES`; ``mode``: ``"chat"``, ``"completion"`` or ``"embedding"``;
    ``exclude``: model names to leave out (e.g. the current model).
    """
    if catalog is None:
        from tokenward.catalog import default_catalog

        catalog = default_catalog()
    wanted = frozenset(capabilities)
    unknown = wanted - set(CAPABILITIES)
    if unknown:
        raise ConfigurationError(
            f"unknown capabilities {sorted(unknown)}; choose from {list(CAPABILITIES)}"
        )
    for name, value in (
        ("min_context", min_context),
        ("min_output", min_output),
        ("input_tokens", input_tokens),
        ("output_tokens", output_tokens),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ConfigurationError(f"{name} must be an int >= 0, got {value!r}")
    bound = None if max_cost is None else Decimal(str(max_cost))
    providers = {provider} if isinstance(provider, str) else set(provider or ())
    skip = set(exclude)
    out = []
    for info in catalog.models():
        if info.prices is None or info.mode != mode or info.name in skip:
            continue
        if providers and info.provider not in providers:
            continue
        if info.context_window < min_context:
            continue
        if min_output and info.max_output is not None and info.max_output < min_output:
            continue
        if wanted and not wanted <= capabilities_of(info):
            continue
        price = mix_price(info, input_tokens, output_tokens)
        if bound is not None and price > bound:
            continue
        out.append(ModelChoice(info, price))
    out.sort(key=lambda c: (c.cost, c.info.name))
    return out
