"""Reading catalogs: tokenward's ``models.json`` format and LiteLLM's price map."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import date, datetime, time
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from tokenward.catalog._models import PRICE_FIELDS, ModelInfo, PricePeriod, Prices, PriceTier
from tokenward.catalog._names import tokenizer_family
from tokenward.errors import ConfigurationError

if TYPE_CHECKING:
    from os import PathLike

__all__ = ["guess_tokenizer", "load_json_file", "parse_litellm", "parse_models_json"]

_MODEL_KEYS = {
    "name",
    "provider",
    "mode",
    "context_window",
    "max_output",
    "prices",
    "tiers",
    "batch_discount",
    "tokenizer",
    "aliases",
    "as_of",
    "source",
    "notes",
    "price_source",
    "periods",
}
_REQUIRED_KEYS = ("name", "provider", "context_window", "prices", "as_of", "source")
# what counting understands (tokenward.counting.tokenizer_names(): tiktoken and mistral-common)
_TOKENIZERS = (None, "o200k_base", "cl100k_base", "mistral", "mistral-common", "tekken")


def _fail(where: str, message: str) -> ConfigurationError:
    return ConfigurationError(
        f"Invalid model catalog {where}: {message}. Fix the entry or remove it."
    )


def _prices(raw: Any, where: str) -> Prices:
    if not isinstance(raw, Mapping):
        raise _fail(where, "'prices' must be an object of price field -> decimal string")
    for key, value in raw.items():
        if key not in PRICE_FIELDS:
            raise _fail(where, f"unknown price field {key!r} (known: {', '.join(PRICE_FIELDS)})")
        if isinstance(value, float):
            raise _fail(
                where,
                f'price {key!r} is a float; write it as a string ("{value}") to keep it exact',
            )
    for key in ("input", "output"):
        if raw.get(key) is None:
            raise _fail(where, f"price {key!r} is required")
    try:
        return Prices(**{k: v for k, v in raw.items()})
    except (TypeError, ValueError) as exc:
        raise _fail(where, str(exc)) from None


def _tiers(raw: Any, where: str) -> tuple[PriceTier, ...]:
    tiers_raw = raw or []
    if not isinstance(tiers_raw, list):
        raise _fail(where, "'tiers' must be a list")
    tiers = []
    last = 0
    for t in tiers_raw:
        if not isinstance(t, Mapping) or "above_input_tokens" not in t or "prices" not in t:
            raise _fail(where, "each tier needs 'above_input_tokens' and 'prices'")
        threshold = t["above_input_tokens"]
        if isinstance(threshold, bool) or not isinstance(threshold, int) or threshold <= last:
            raise _fail(where, "tier thresholds must be positive integers in ascending order")
        last = threshold
        tiers.append(PriceTier(threshold, _prices(t["prices"], f"{where} tier >{threshold}")))
    return tuple(tiers)


def _period(raw: Any, where: str) -> PricePeriod:
    if not isinstance(raw, Mapping) or "prices" not in raw:
        raise _fail(where, "each period needs 'prices'")
    unknown = set(raw) - {"prices", "tiers", "batch", "batch_tiers", "start", "end", "daily"}
    if unknown:
        raise _fail(where, f"unknown key(s) {', '.join(sorted(unknown))}")
    try:
        bounds = {}
        for name in ("start", "end"):
            value = raw.get(name)
            bounds[name] = None if value is None else datetime.fromisoformat(value)
        daily = raw.get("daily")
        window = None
        if daily is not None:
            begin, stop = (time.fromisoformat(t) for t in daily)
            window = (begin, stop)
        batch = raw.get("batch")
        return PricePeriod(
            _prices(raw["prices"], where),
            _tiers(raw.get("tiers"), where),
            None if batch is None else _prices(batch, f"{where} batch"),
            _tiers(raw.get("batch_tiers"), f"{where} batch"),
            start=bounds["start"],
            end=bounds["end"],
            daily=window,
        )
    except (TypeError, ValueError) as exc:
        if isinstance(exc, ConfigurationError):
            raise
        raise _fail(where, f"invalid period: {exc}") from None


def _model(raw: Any, index: int, origin: str) -> ModelInfo:
    where = f"{origin} entry #{index}"
    if not isinstance(raw, Mapping):
        raise _fail(where, "each model must be an object")
    name = raw.get("name")
    if isinstance(name, str):
        where = f"{origin} model {name!r}"
    unknown = set(raw) - _MODEL_KEYS
    if unknown:
        raise _fail(where, f"unknown key(s) {', '.join(sorted(unknown))}")
    for key in _REQUIRED_KEYS:
        if raw.get(key) in (None, ""):
            raise _fail(where, f"missing required key {key!r}")
    if not isinstance(name, str):
        raise _fail(where, "'name' must be a string")
    ctx = raw["context_window"]
    if isinstance(ctx, bool) or not isinstance(ctx, int) or ctx < 0:
        raise _fail(
            where, f"'context_window' must be a positive integer (0 = unknown), got {ctx!r}"
        )
    source = raw["source"]
    if not isinstance(source, str) or not source.startswith(
        ("https://", "http://", "file:", "urn:")
    ):
        raise _fail(where, f"'source' must be a URL, got {source!r}")
    try:
        as_of = date.fromisoformat(raw["as_of"])
    except (TypeError, ValueError):
        raise _fail(
            where, f"'as_of' must be an ISO date (YYYY-MM-DD), got {raw['as_of']!r}"
        ) from None
    tokenizer = raw.get("tokenizer")
    if tokenizer not in _TOKENIZERS:
        raise _fail(where, f"'tokenizer' must be one of {_TOKENIZERS}, got {tokenizer!r}")
    tiers = _tiers(raw.get("tiers"), where)
    periods_raw = raw.get("periods") or []
    if not isinstance(periods_raw, list):
        raise _fail(where, "'periods' must be a list")
    periods = tuple(_period(p, f"{where} period #{i}") for i, p in enumerate(periods_raw))
    aliases = raw.get("aliases") or []
    if not isinstance(aliases, list) or not all(isinstance(a, str) and a for a in aliases):
        raise _fail(where, "'aliases' must be a list of non-empty strings")
    batch = raw.get("batch_discount")
    if isinstance(batch, float):
        raise _fail(where, "'batch_discount' must be a decimal string, not a float")
    try:
        return ModelInfo(
            name=name,
            provider=str(raw["provider"]),
            context_window=ctx,
            max_output=raw.get("max_output"),
            prices=_prices(raw["prices"], where),
            tiers=tuple(tiers),
            batch_discount=None if batch is None else Decimal(str(batch)),
            tokenizer=tokenizer,
            aliases=tuple(aliases),
            as_of=as_of,
            source=source,
            mode=raw.get("mode", "chat"),
            notes=str(raw.get("notes") or ""),
            price_source=str(raw.get("price_source") or "user"),
            periods=periods,
        )
    except (TypeError, ValueError) as exc:
        if isinstance(exc, ConfigurationError):
            raise
        raise _fail(where, str(exc)) from None


def parse_models_json(data: Any, origin: str = "models.json") -> list[ModelInfo]:
    """Validate and convert a parsed ``models.json`` document (``{"models": [...]}`` or a list)."""
    if isinstance(data, Mapping):
        models = data.get("models")
    else:
        models = data
    if not isinstance(models, list):
        raise _fail(origin, "expected an object with a 'models' list")
    result = [_model(raw, i, origin) for i, raw in enumerate(models)]
    seen: dict[str, str] = {}
    for info in result:
        for key in (info.name, *info.aliases):
            low = key.lower()
            if low in seen and seen[low] != info.name:
                raise _fail(
                    origin, f"name/alias {key!r} is used by both {seen[low]!r} and {info.name!r}"
                )
            seen[low] = info.name
    return result


def load_json_file(path: str | PathLike[str]) -> Any:
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except json.JSONDecodeError as exc:
        raise ConfigurationError(
            f"Model catalog {path} is not valid JSON: {exc}. Fix the file."
        ) from None


# --------------------------------------------------------------------------- LiteLLM

_LITELLM_FIELDS = {
    "input_cost_per_token": "input",
    "output_cost_per_token": "output",
    "cache_read_input_token_cost": "cache_read",
    "cache_creation_input_token_cost": "cache_write_5m",
    "cache_creation_input_token_cost_above_1hr": "cache_write_1h",
    "output_cost_per_reasoning_token": "reasoning",
    "input_cost_per_audio_token": "audio_input",
    "output_cost_per_audio_token": "audio_output",
    "input_cost_per_image_token": "image_input",
}
_ABOVE = re.compile(r"^(?P<base>.+)_above_(?P<n>\d+)k_tokens$")
_LITELLM_MODES = {
    "chat": "chat",
    "completion": "completion",
    "embedding": "embedding",
    "responses": "chat",
}
_LITELLM_URL = "https://github.com/BerriAI/litellm/blob/main/model_prices_and_context_window.json"


def per_token_to_per_million(value: Any) -> Decimal:
    """LiteLLM per-token float -> exact USD per 1M tokens (``Decimal(str(x)) * 1_000_000``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str, Decimal)):
        raise TypeError(f"not a price: {value!r}")
    result = Decimal(str(value)) * 1_000_000
    return _clean(result)


def _clean(d: Decimal) -> Decimal:
    """Drop trailing zeros without switching to exponent notation."""
    if d == d.to_integral_value():
        return d.quantize(Decimal(1))
    return d.normalize()


def guess_tokenizer(name: str) -> str | None:
    """tiktoken encoding for OpenAI model names, else ``None`` (see ``tokenizer_family``)."""
    return tokenizer_family(name)


def _tiered_pricing(spec: Mapping[str, Any]) -> dict[int, dict[str, Decimal]]:
    """LiteLLM ``tiered_pricing``: ``[{"range": [lo, hi], "input_cost_per_token": ...}, ...]``.

    Returns ``{lo: {field: price per 1M}}``; ``lo == 0`` holds the base prices. Entries of any
    other shape are ignored (the flat fields still apply).
    """
    raw = spec.get("tiered_pricing")
    result: dict[int, dict[str, Decimal]] = {}
    if not isinstance(raw, list):
        return result
    for item in raw:
        if not isinstance(item, Mapping):
            continue
        rng = item.get("range")
        if not isinstance(rng, (list, tuple)) or not rng or not isinstance(rng[0], (int, float)):
            continue
        lo = int(rng[0])
        fields = {
            _LITELLM_FIELDS[k]: per_token_to_per_million(v)
            for k, v in item.items()
            if k in _LITELLM_FIELDS and isinstance(v, (int, float)) and not isinstance(v, bool)
        }
        if lo >= 0 and fields:
            result.setdefault(lo, {}).update(fields)
    return result


def parse_litellm(data: Mapping[str, Any], source: str = _LITELLM_URL) -> list[ModelInfo]:
    """Convert LiteLLM's ``model_prices_and_context_window.json`` into models.

    Entries that are not chat/completion/embedding models, that lack an input or output
    price, or that have no context size are skipped (they cannot be priced or planned).
    """
    if not isinstance(data, Mapping):
        raise ConfigurationError("LiteLLM price map must be a JSON object of model name -> spec.")
    today = date.today()
    result: list[ModelInfo] = []
    for name, spec in data.items():
        if name == "sample_spec" or not isinstance(spec, Mapping):
            continue
        mode = _LITELLM_MODES.get(str(spec.get("mode", "chat")))
        if mode is None:
            continue
        tiered = _tiered_pricing(spec)
        if spec.get("input_cost_per_token") is None and "input" not in tiered.get(0, {}):
            continue
        if (
            spec.get("output_cost_per_token") is None
            and "output" not in tiered.get(0, {})
            and mode != "embedding"
        ):
            continue
        ctx = spec.get("max_input_tokens") or spec.get("max_tokens")
        if isinstance(ctx, str) or not isinstance(ctx, int) or ctx <= 0:
            continue
        try:
            base: dict[str, Decimal] = {}
            tiers: dict[int, dict[str, Decimal]] = {}
            for key, value in spec.items():
                if value is None:
                    continue
                if key in _LITELLM_FIELDS:
                    base[_LITELLM_FIELDS[key]] = per_token_to_per_million(value)
                    continue
                m = _ABOVE.match(key)
                if m and m.group("base") in _LITELLM_FIELDS:
                    threshold = int(m.group("n")) * 1000
                    tiers.setdefault(threshold, {})[_LITELLM_FIELDS[m.group("base")]] = (
                        per_token_to_per_million(value)
                    )
            for lo, fields in tiered.items():
                if lo == 0:
                    base = {**fields, **base}  # flat fields win over the first range
                else:
                    tiers.setdefault(lo, {}).update(fields)
            base.setdefault("output", Decimal(0))
            prices = Prices(**base)
            price_tiers = tuple(
                PriceTier(threshold, Prices(**{**base, **overrides}))
                for threshold, overrides in sorted(tiers.items())
            )
            batch = None
            batch_in = spec.get("input_cost_per_token_batches")
            if batch_in is not None and base["input"] > 0:
                ratio = per_token_to_per_million(batch_in) / base["input"]
                if 0 < ratio < 1:
                    batch = _clean(1 - ratio)
            max_out = spec.get("max_output_tokens")
            if not isinstance(max_out, int) or isinstance(max_out, bool) or max_out <= 0:
                max_out = None
            provider = str(spec.get("litellm_provider") or "unknown")
            result.append(
                ModelInfo(
                    name=name,
                    provider=provider,
                    context_window=ctx,
                    max_output=max_out,
                    prices=prices,
                    tiers=price_tiers,
                    batch_discount=batch,
                    tokenizer=guess_tokenizer(name)
                    if provider in ("openai", "azure", "text-completion-openai")
                    else None,
                    as_of=today,
                    source=source,
                    mode=mode,  # type: ignore[arg-type]
                    notes="imported from LiteLLM price map",
                    price_source="LiteLLM price map",
                )
            )
        except (TypeError, ValueError) as exc:
            raise ConfigurationError(
                f"LiteLLM price map entry {name!r} is invalid: {exc}."
            ) from None
    return result
