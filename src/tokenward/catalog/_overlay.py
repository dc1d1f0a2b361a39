"""tokenward's overlay on genai-prices: facts it lacks, models it lacks, cited corrections.

The overlay is ``data/overlay.json``, validated with pydantic:

* ``facts`` complete a genai-prices model (``provider`` + its ``model`` id): max output tokens,
  a context window where genai-prices has none, a batch discount, extra names (``aliases``)
  users send for it. Prices stay genai-prices'.
* ``models`` are whole models, priced by the overlay (``price_source`` "tokenward overlay"):
  current models genai-prices lacks, and corrections (``corrects: "provider:model-id"``)
  where the provider's own page disagrees with genai-prices; every one cites its ``source``.
"""

from __future__ import annotations

import os
from datetime import date, datetime, time, timezone
from decimal import Decimal
from functools import lru_cache
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PositiveInt, model_validator

from tokenward.catalog._models import ModelInfo, PricePeriod, Prices, PriceTier, as_utc

__all__ = ["OVERLAY_PATH", "Overlay", "load_overlay"]

# os.path, not pathlib: keeps `import tokenward.catalog` cheap
OVERLAY_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "overlay.json")
OVERLAY_SOURCE = "tokenward overlay"


def _no_float(value: Any) -> Any:
    if isinstance(value, float):
        raise ValueError(f'write prices as decimal strings ("{value}"), not floats')
    return value


Price = Annotated[Decimal, BeforeValidator(_no_float), Field(ge=0, allow_inf_nan=False)]
Tokenizer = Literal["o200k_base", "cl100k_base", "mistral", "mistral-common", "tekken"] | None
Url = Annotated[str, Field(pattern=r"^(https?://|urn:)")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PricesIn(_Strict):
    input: Price
    output: Price
    cache_read: Price | None = None
    cache_write_5m: Price | None = None
    cache_write_1h: Price | None = None
    reasoning: Price | None = None
    audio_input: Price | None = None
    audio_output: Price | None = None
    image_input: Price | None = None

    def prices(self) -> Prices:
        return Prices(**self.model_dump())


class TierIn(_Strict):
    above_input_tokens: PositiveInt
    prices: PricesIn

    def tier(self) -> PriceTier:
        return PriceTier(self.above_input_tokens, self.prices.prices())


class PeriodIn(_Strict):
    prices: PricesIn
    tiers: list[TierIn] = []
    batch: PricesIn | None = None
    start: datetime | date | None = None
    end: datetime | date | None = None
    daily: tuple[time, time] | None = None

    def period(self) -> PricePeriod:
        return PricePeriod(
            self.prices.prices(),
            tuple(t.tier() for t in self.tiers),
            None if self.batch is None else self.batch.prices(),
            start=as_utc(self.start),
            end=as_utc(self.end),
            daily=self.daily,
        )


class FactIn(_Strict):
    """Facts about a genai-prices model; its prices are left alone."""

    provider: str
    model: str
    context_window: PositiveInt | None = None
    max_output: PositiveInt | None = None
    tokenizer: Tokenizer = None
    batch_discount: Price | None = None
    aliases: list[str] = []
    source: Url
    notes: str = ""

    def apply(self, info: ModelInfo) -> ModelInfo:
        from dataclasses import replace

        changes: dict[str, Any] = {"notes": " ".join(x for x in (info.notes, self.notes) if x)}
        if self.context_window is not None:
            changes["context_window"] = self.context_window
        if self.max_output is not None:
            changes["max_output"] = self.max_output
        if self.tokenizer is not None:
            changes["tokenizer"] = self.tokenizer
        if self.batch_discount is not None and info.batch_discount is None:
            changes["batch_discount"] = self.batch_discount
        return replace(info, **changes)


class ModelIn(_Strict):
    """A whole model priced by the overlay (a model genai-prices lacks, or a correction)."""

    name: str
    provider: str
    mode: Literal["chat", "embedding", "completion"] = "chat"
    context_window: PositiveInt
    max_output: PositiveInt | None = None
    prices: PricesIn | None = None  # or periods: prices that changed over time
    tiers: list[TierIn] = []
    batch_discount: Price | None = None
    tokenizer: Tokenizer = None
    aliases: list[str] = []
    periods: list[PeriodIn] = []
    corrects: str | None = Field(default=None, pattern=r"^[a-z0-9_.\-]+:.+$")
    as_of: date
    source: Url
    notes: str

    @model_validator(mode="after")
    def _prices_or_periods(self) -> ModelIn:
        if (self.prices is None) == (not self.periods):
            raise ValueError("give either 'prices' (and 'tiers') or 'periods', not both")
        return self

    def model_info(self, now: datetime | None = None) -> ModelInfo:
        periods = tuple(p.period() for p in self.periods)
        if periods:  # show the period in force now
            moment = now or datetime.now(timezone.utc)
            current = next((p for p in reversed(periods) if p.applies(moment)), periods[0])
            prices, tiers = current.prices, current.tiers
        else:
            assert self.prices is not None
            prices, tiers = self.prices.prices(), tuple(t.tier() for t in self.tiers)
        return ModelInfo(
            name=self.name,
            provider=self.provider,
            context_window=self.context_window,
            max_output=self.max_output,
            prices=prices,
            tiers=tiers,
            batch_discount=self.batch_discount,
            tokenizer=self.tokenizer,
            aliases=tuple(self.aliases),
            as_of=self.as_of,
            source=self.source,
            mode=self.mode,
            notes=self.notes,
            price_source=OVERLAY_SOURCE,
            periods=periods,
        )


class Overlay(_Strict):
    schema_version: Literal[1]
    description: str = ""
    facts: list[FactIn] = []
    models: list[ModelIn] = []


@lru_cache(maxsize=1)
def load_overlay() -> Overlay:
    """The shipped overlay (validated once per process)."""
    with open(OVERLAY_PATH, "rb") as fh:
        return Overlay.model_validate_json(fh.read())
