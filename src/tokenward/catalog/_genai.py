"""genai-prices as the catalog's price source: converted once, matched by its own rules.

``genai_prices`` is imported here only, lazily (≈0.3 s), the first time a catalog needs price
data; nothing touches the network. Its data becomes tokenward :class:`ModelInfo` objects once
(:class:`PriceData`), with our overlay applied; names are resolved with genai-prices' own
provider and model matching rules and each resolution is cached, so pricing never calls
genai-prices.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Iterable, Mapping
from dataclasses import replace
from datetime import date, datetime, time, timezone
from decimal import Decimal
from typing import Any

from tokenward.catalog._models import ModelInfo, PricePeriod, Prices, PriceTier, as_utc
from tokenward.catalog._names import normalize_provider, parse_name, tokenizer_family
from tokenward.catalog._overlay import Overlay, load_overlay

__all__ = ["GENAI_PRICES_URL", "PriceData", "convert_providers", "genai_prices_version"]

logger = logging.getLogger("tokenward.catalog")

GENAI_PRICES_URL = "https://github.com/pydantic/genai-prices"

# genai-prices price keys (USD per 1M tokens) -> tokenward price fields. Other keys are units
# tokenward's Usage does not carry (web searches, audio seconds, cached audio, image output…):
# genai-prices bills them only when a usage reports them, which ours never does.
_KEYS = {
    "input_mtok": "input",
    "output_mtok": "output",
    "cache_read_mtok": "cache_read",
    "cache_write_mtok": "cache_write_5m",
    "cache_write_5m_mtok": "cache_write_5m",
    "cache_write_1h_mtok": "cache_write_1h",
    "input_audio_mtok": "audio_input",
    "output_audio_mtok": "audio_output",
    "input_image_mtok": "image_input",
    "output_reasoning_mtok": "reasoning",
}
# Units billed on every call whatever the usage says: a model priced with one cannot be
# priced exactly from tokens (genai-prices 0.2.3: Perplexity's per-request fee).
_ALWAYS_BILLED = {"requests_kcount"}
_BATCH = {"processing": "batch"}


def genai_prices_version() -> str:
    """The installed genai-prices version (without importing the package)."""
    from importlib.metadata import version

    return version("genai-prices")


# ----------------------------------------------------------------------------- conversion
def _price_map(model_price: Any) -> dict[str, Any]:
    """A genai-prices ``ModelPrice`` as ``{price key: Decimal | TieredPrices}`` (set keys only)."""
    return {k: v for k, v in vars(model_price).items() if not k.startswith("_") and v is not None}


def _table(prices: Mapping[str, Any]) -> tuple[Prices, tuple[PriceTier, ...]] | None:
    """genai price keys -> (base Prices, whole-call tiers); None when no token key is priced.

    genai-prices tiers each price separately ("above N input tokens, this key costs X"); a
    tokenward tier holds every price of the call above its threshold, so the thresholds of all
    keys are merged: above T, each key costs its own tier with the highest start <= T.
    """
    base: dict[str, Decimal] = {}
    tiered: dict[str, list[tuple[int, Decimal]]] = {}
    for key, value in prices.items():
        field = _KEYS.get(key)
        if field is None or (key == "cache_write_mtok" and "cache_write_5m_mtok" in prices):
            continue
        if isinstance(value, Decimal):
            base[field] = value
        else:  # TieredPrices
            base[field] = value.base
            tiered[field] = [(int(t.start), t.price) for t in value.tiers]
    if not base:
        return None
    base.setdefault("input", Decimal(0))
    base.setdefault("output", Decimal(0))
    thresholds = sorted({start for steps in tiered.values() for start, _ in steps})
    if thresholds and thresholds[0] <= 0:
        raise ValueError("a price tier starting at 0 input tokens")
    tiers = []
    for threshold in thresholds:
        fields = dict(base)
        for field, steps in tiered.items():
            for start, price in steps:
                if start <= threshold:
                    fields[field] = price
        tiers.append(PriceTier(threshold, Prices(**fields)))
    return Prices(**base), tuple(tiers)


def _constraint(constraint: Any) -> tuple[date | None, tuple[time, time] | None]:
    if constraint is None:
        return None, None
    start = getattr(constraint, "start_date", None)
    if start is not None:
        return start, None
    return None, (constraint.start_time, constraint.end_time)


def _periods(model: Any) -> list[tuple[date | None, tuple[time, time] | None, dict[str, Any]]]:
    """genai's conditional prices as ``(start date, daily window, price map)``.

    genai-prices uses the first price whenever no later one applies, so the first one's own
    condition never matters: it becomes unconditional.
    """
    if not isinstance(model.prices, list):
        return [(None, None, _price_map(model.prices))]
    out = []
    for i, conditional in enumerate(model.prices):
        start, daily = (None, None) if i == 0 else _constraint(conditional.constraint)
        out.append((start, daily, _price_map(conditional.prices)))
    return out


def _batch_epochs(
    variants: list[tuple[date | None, dict[str, Any]]],
) -> list[tuple[date | None, date | None, list[dict[str, Any]]]]:
    """Batch variants as ``(from, to, overrides active then)`` epochs, in time order.

    A variant applies from its start date; before the earliest one, the earliest applies
    (genai-prices' batch history starts when its data started recording it, not when the
    provider started offering batch).
    """
    dates = sorted({d for d, _ in variants if d is not None})
    if not dates:
        return [(None, None, [p for _, p in variants])]
    epochs = []
    for j, day in enumerate(dates):
        begin = None if j == 0 else day
        end = dates[j + 1] if j + 1 < len(dates) else None
        active = [p for d, p in variants if d is None or d <= day]
        epochs.append((begin, end, active))
    return epochs


def _later(a: date | None, b: date | None) -> date | None:
    if a is None:
        return b
    if b is None:
        return a
    return max(a, b)


def _schedule(model: Any) -> list[PricePeriod] | None:
    """All price periods of a genai model; None when it has no token price tokenward can use."""
    periods = _periods(model)
    variants: list[tuple[date | None, dict[str, Any]]] = []
    for variant in model.price_variants or ():
        if variant.when != _BATCH:
            continue  # service tiers (priority, flex), regions, speed: not modelled
        start, daily = _constraint(variant.constraint)
        if daily is None:
            variants.append((start, _price_map(variant.prices)))
    epochs = _batch_epochs(variants) if variants else [(None, None, [])]
    out: list[PricePeriod] = []
    for start, daily, prices in periods:
        std = _table(prices)
        if std is None:
            return None
        for begin, end, active in epochs:
            lower = _later(start, begin)
            if lower is not None and end is not None and lower >= end:
                continue  # this price changed before the epoch ended
            batch = None
            if variants:
                merged = dict(prices)
                for key in {k for overrides in active for k in overrides}:
                    merged[key] = next(o[key] for o in active if key in o)
                batch = _table(merged)
            out.append(
                PricePeriod(
                    std[0],
                    std[1],
                    None if batch is None else batch[0],
                    () if batch is None else batch[1],
                    start=as_utc(lower),
                    end=as_utc(end),
                    daily=daily,
                )
            )
    return out


def _current(periods: list[PricePeriod], now: datetime) -> PricePeriod:
    for period in reversed(periods):
        if period.applies(now):
            return period
    return periods[0]


def _discount(period: PricePeriod) -> Decimal | None:
    """The batch discount when every batch price is one and the same fraction of its standard
    price (shown as ``ModelInfo.batch_discount``; batch calls are priced from the batch prices)."""
    thresholds = [t.above_input_tokens for t in period.tiers]
    if period.batch is None or [t.above_input_tokens for t in period.batch_tiers] != thresholds:
        return None
    pairs = [(period.prices, period.batch)]
    pairs += [(t.prices, b.prices) for t, b in zip(period.tiers, period.batch_tiers, strict=True)]
    ratios = set()
    for std, batch in pairs:
        for name in ("input", "output", "cache_read", "cache_write_5m", "cache_write_1h"):
            a, b = getattr(std, name), getattr(batch, name)
            if a is None and b is None:
                continue
            if a is None or b is None or a == 0:
                return None
            ratios.add(b / a)
    if len(ratios) != 1:
        return None
    (ratio,) = ratios
    return 1 - ratio if 0 < ratio < 1 else None


def _names(providers: list[Any]) -> dict[tuple[str, str], str]:
    """The catalog name of every model: its id, or ``provider/id`` when the bare id resolves to
    another model (several providers list it at their own prices, genai-prices' provider
    detection sends it elsewhere, or its head reads as another provider: OpenRouter's
    ``anthropic/…`` slugs), so that every listed name resolves to itself."""
    owners: dict[str, list[str]] = {}
    for provider in providers:
        for model in provider.models:
            owners.setdefault(model.id.lower(), []).append(provider.id)
    first_party = [p for p in providers if p.model_match is not None]
    first_party_ids = {p.id for p in first_party}
    provider_ids = {p.id for p in providers}
    names: dict[tuple[str, str], str] = {}
    for model_id, listed in owners.items():
        home: str | None
        detector = next((p for p in first_party if p.model_match.is_match(model_id)), None)
        if detector is not None and detector.id in listed:
            home = detector.id
        elif detector is not None and detector.find_model(model_id) is not None:
            home = None  # the bare id is another model's name
        else:
            home = next((p for p in listed if p in first_party_ids), listed[0])
        for provider_id in listed:
            name = model_id
            if provider_id != home or _head_provider(model_id, provider_ids) not in (
                None,
                provider_id,
            ):
                name = f"{provider_id}/{model_id}"
            names[(provider_id, model_id)] = name
    taken: dict[str, int] = {}
    for name in names.values():
        taken[name] = taken.get(name, 0) + 1
    for key, name in names.items():
        if taken[name] > 1 and name != key[1]:  # "perplexity/x" is also an OpenRouter slug
            names[key] = f"{key[0]}:{key[1]}"
    return names


def _head_provider(name: str, provider_ids: set[str]) -> str | None:
    """The provider the head of a name reads as (``anthropic/…`` -> anthropic), if any."""
    parsed = parse_name(name)
    if parsed.provider is not None:
        return parsed.provider
    head = parsed.ref.split("/", 1)[0] if "/" in parsed.ref else None
    return head if head in provider_ids else None


def convert_providers(
    providers: list[Any], *, source: str, as_of: date, now: datetime | None = None
) -> dict[tuple[str, str], ModelInfo]:
    """genai-prices providers -> ``{(provider id, model id): ModelInfo}`` (models it cannot
    price from tokens are left out: their calls are recorded unpriced)."""
    now = now or datetime.now(timezone.utc)
    names = _names(providers)
    out: dict[tuple[str, str], ModelInfo] = {}
    for provider in providers:
        url = (provider.pricing_urls or [GENAI_PRICES_URL])[0]
        for model in provider.models:
            model_id = model.id.lower()
            try:
                periods = _schedule(model)
            except (ValueError, TypeError, ArithmeticError) as exc:
                logger.debug("genai-prices %s:%s skipped: %s", provider.id, model.id, exc)
                continue
            if periods is None:
                if any(_price_map(p) for p in _price_maps(model)):
                    continue  # priced only in units tokenward cannot count (audio hours, pages)
                periods = [
                    PricePeriod(Prices(input=Decimal(0), output=Decimal(0)))
                ]  # no price at all: free
            keys = {k for p in _price_maps(model) for k in _price_map(p)}
            name = names[(provider.id, model_id)]
            if name == model_id:
                name = model.id  # keep the id's own spelling
            current = _current(periods, now)
            notes = model.price_comments or ""
            if keys & _ALWAYS_BILLED:
                notes = (notes + " " if notes else "") + (
                    "[tokenward: its per-request fee is not included]"
                )
            single = len(periods) == 1 and current.batch is None
            out[(provider.id, model_id)] = ModelInfo(
                name=name,
                provider=provider.id,
                context_window=int(model.context_window or 0),
                max_output=None,
                prices=current.prices,
                tiers=current.tiers,
                batch_discount=_discount(current),
                tokenizer=tokenizer_family(model.id),
                as_of=as_of,
                source=url,
                mode="embedding" if "embed" in model_id else "chat",
                notes=notes,
                price_source=source,
                periods=() if single else tuple(periods),
            )
    return out


def _price_maps(model: Any) -> Iterable[Any]:
    if isinstance(model.prices, list):
        return [c.prices for c in model.prices]
    return [model.prices]


# ----------------------------------------------------------------------------- the data
class PriceData:
    """One genai-prices snapshot converted, with tokenward's overlay applied (immutable).

    ``find(name, provider, base_url)`` resolves what users send to one of its models with
    genai-prices' own matching rules (cached per argument triple).
    """

    def __init__(
        self,
        providers: list[Any],
        *,
        source: str,
        as_of: date,
        origin: str,
        overlay: Overlay | None = None,
    ) -> None:
        self.source = source  #: e.g. "genai-prices 0.2.3"
        self.as_of = as_of
        self.origin = origin  #: "bundled" or the cache file path
        self._providers = providers
        self._by_id = {p.id: p for p in providers}
        # providers that own their models first: aggregators list the same ids again
        self._search_order = [p for p in providers if p.model_match is not None] + [
            p for p in providers if p.model_match is None
        ]
        self.models = convert_providers(providers, source=source, as_of=as_of)
        self._keys: dict[int, tuple[str, str]] = {}
        for provider in providers:
            for model in provider.models:
                self._keys[id(model)] = (provider.id, model.id.lower())
        self._names = {m.name.lower(): key for key, m in self.models.items()}
        self._aliases: dict[str, tuple[str, str]] = {}
        self.overridden: dict[tuple[str, str], ModelInfo] = {}  #: genai's entry, replaced
        self._apply(overlay if overlay is not None else load_overlay())
        self._cache: dict[tuple[str, str | None, str | None], ModelInfo | None] = {}
        self._served: dict[tuple[str, str], ModelInfo] = {}  # a model served by another provider
        self._lock = threading.Lock()

    def _apply(self, overlay: Overlay) -> None:
        for fact in overlay.facts:
            key = (fact.provider, fact.model.lower())
            info = self.models.get(key)
            if info is None:
                logger.debug("overlay fact for %s:%s: not in this data", *key)
                continue
            self.models[key] = fact.apply(info)
            for alias in fact.aliases:
                self._aliases[alias.lower()] = key
        for entry in overlay.models:
            info = entry.model_info()
            if entry.corrects is not None:
                provider, _, model_id = entry.corrects.partition(":")
                key = (provider, model_id.lower())
                if key in self.models:  # genai-prices' matching rules keep pointing here
                    self.overridden[key] = self.models[key]
                    info = replace(info, name=self.models[key].name)
                else:
                    self._aliases[info.name.lower()] = key
            else:
                key = (info.provider, info.name.lower())
                self._aliases[info.name.lower()] = key  # wins over genai-prices' matching
            self._names[info.name.lower()] = key
            self.models[key] = info
            for alias in info.aliases:
                self._aliases[alias.lower()] = key

    # ------------------------------------------------------------------ resolution
    def find(
        self, name: str, provider: str | None = None, base_url: str | None = None
    ) -> ModelInfo | None:
        """The model ``name`` refers to (``provider``/``base_url`` narrow it), or ``None``."""
        cache_key = (name, provider, base_url)
        try:
            return self._cache[cache_key]
        except KeyError:
            pass
        key = self._resolve(name, provider, base_url)
        found = None if key is None else self.models.get(key) or self._served.get(key)
        with self._lock:
            if len(self._cache) > 8192:
                self._cache.clear()
            self._cache[cache_key] = found
        return found

    def provider_of(
        self, name: str, provider: str | None = None, base_url: str | None = None
    ) -> str | None:
        """Best guess of the provider of a model this data does not price."""
        hinted = self._hint(name, provider, base_url)[1]
        if hinted is not None:
            return hinted
        ref = parse_name(name).ref
        for candidate in self._providers:
            if candidate.model_match is not None and candidate.model_match.is_match(ref):
                return str(candidate.id)
        return None

    def names(self) -> list[str]:
        return [m.name for m in self.models.values()] + list(self._aliases)

    def _hint(
        self, name: str, provider: str | None, base_url: str | None
    ) -> tuple[str, str | None]:
        parsed = parse_name(name)
        ref, hint = parsed.ref, parsed.provider
        if hint is None and "/" in ref:  # a provider of the data: "github-copilot/claude-…"
            head, tail = ref.split("/", 1)
            if head in self._by_id:
                ref, hint = tail, head
        hint = hint or normalize_provider(provider)
        if base_url:
            for candidate in self._providers:
                try:
                    if re.match(candidate.api_pattern, base_url):
                        hint = candidate.id
                        break
                except re.error:  # pragma: no cover - a broken pattern in the data
                    continue
        return ref, hint

    def _provider(self, hint: str | None) -> Any:
        if hint is None:
            return None
        found = self._by_id.get(hint)
        if found is not None:
            return found
        for candidate in self._providers:
            match = candidate.provider_match
            if match is not None and match.is_match(hint):
                return candidate
        return None

    def _key(self, model: Any) -> tuple[str, str] | None:
        return None if model is None else self._keys.get(id(model))

    def _resolve(
        self, name: str, provider: str | None, base_url: str | None
    ) -> tuple[str, str] | None:
        ref, hint = self._hint(name, provider, base_url)
        full = name.strip().lower()
        for form in (ref, full):
            key = self._aliases.get(form)
            if key is not None and (hint is None or hint == key[0]):
                return key
        key = self._names.get(full)  # a catalog name resolves to itself
        if key is not None and (hint is None or hint == key[0]):
            return key
        refs = _ref_forms(ref)
        hinted = self._provider(hint)
        if hinted is not None:
            for form in (ref, full):  # its exact id ("fireworks/deepseek-v4-flash")
                if (hinted.id, form) in self.models:
                    return (hinted.id, form)
            if full not in refs:  # the whole name: an OpenRouter slug through OpenRouter
                refs.append(full)
            for form in refs:
                key = self._key(hinted.find_model(form, all_providers=self._providers))
                if key is not None:
                    return key if key[0] == hinted.id else self._serve(hinted.id, key)
        # genai-prices' own provider detection: the provider whose model_match claims the name
        for candidate in self._search_order:
            match = candidate.model_match
            if match is None or not match.is_match(ref):
                continue
            for form in refs:
                key = self._key(candidate.find_model(form, all_providers=self._providers))
                if key is not None:
                    return key
        key = self._names.get(ref)
        if key is not None:
            return key
        for candidate in self._search_order:  # any provider that lists the model
            for form in refs:
                key = self._key(candidate.find_model(form))
                if key is not None:
                    return key
        return None

    def _serve(self, provider: str, key: tuple[str, str]) -> tuple[str, str]:
        """``key``'s model as ``provider`` serves it at the same price (genai-prices'
        ``fallback_model_providers``: Azure serving OpenAI's models, Vertex Anthropic's)."""
        served = (provider, key[1])
        if served not in self._served and served not in self.models:
            info = self.models[key]
            with self._lock:
                self._served[served] = replace(
                    info, provider=provider, name=f"{provider}/{info.name.rsplit('/', 1)[-1]}"
                )
        return served


def _ref_forms(ref: str) -> list[str]:
    forms = [ref]
    if "@" in ref:  # Vertex "claude-opus-4-1@20250805"
        forms.append(ref.split("@", 1)[0])
    return forms


# ----------------------------------------------------------------------------- loading
def _install_date() -> date:
    """When the bundled genai-prices data was installed (its data module's mtime)."""
    import importlib.util

    spec = importlib.util.find_spec("genai_prices")
    origin = spec.origin if spec is not None else None
    if origin:
        path = os.path.join(os.path.dirname(origin), "data.py")
        try:
            return datetime.fromtimestamp(os.path.getmtime(path), timezone.utc).date()
        except OSError:
            pass
    return date.today()


def bundled_data() -> PriceData:
    """The snapshot installed with genai-prices (imports it: ≈0.3 s)."""
    from genai_prices.data import providers

    version = genai_prices_version()
    return PriceData(
        list(providers),
        source=f"genai-prices {version}",
        as_of=_install_date(),
        origin="bundled",
    )


def providers_from_json(raw: Any) -> list[Any]:
    """Validate genai-prices' JSON data with its own pydantic types (raises ``ValueError``)."""
    from genai_prices.types import _providers_from_raw

    if not isinstance(raw, list) or not raw:
        raise ValueError("expected a non-empty list of providers")
    providers = list(_providers_from_raw(raw))
    ids = {p.id for p in providers}
    missing = {"openai", "anthropic", "google"} - ids
    if missing:
        raise ValueError(f"providers {', '.join(sorted(missing))} are missing")
    return providers
