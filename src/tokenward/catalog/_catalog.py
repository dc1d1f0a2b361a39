"""The model registry: genai-prices data + tokenward's overlay + user registrations."""

from __future__ import annotations

import difflib
import functools
import logging
import os
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import replace
from datetime import date
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from tokenward.catalog._loader import load_json_file, parse_litellm, parse_models_json
from tokenward.catalog._models import PRICE_FIELDS, ModelInfo, Prices, PriceTier
from tokenward.catalog._names import (
    LOCAL_PROVIDERS,
    is_local_url,
    normalize_provider,
    parse_name,
    tokenizer_family,
)
from tokenward.errors import ConfigurationError, UnknownModelError

if TYPE_CHECKING:
    from os import PathLike

    from tokenward.catalog._genai import PriceData
    from tokenward.catalog._update import PriceUpdate

__all__ = ["Catalog", "default_catalog", "normalize_name"]

logger = logging.getLogger("tokenward.catalog")

# Regional / vendor prefixes of Bedrock model ids: "us.anthropic.claude-...", "meta.llama3-...".
_REGION = re.compile(r"^(us|eu|apac|ap|jp|au|ca|us-gov|global)\.")
_VENDOR = re.compile(r"^(anthropic|meta|mistral|amazon|cohere|ai21|deepseek|openai|google|qwen)\.")
_VERSION_COLON = re.compile(r":\d+$")  # bedrock "...-v2:0"
_AT_SUFFIX = re.compile(r"@.*$")  # vertex "claude-3-5-sonnet-v2@20241022"
_V_SUFFIX = re.compile(r"-v\d+$")  # bedrock "-v1" / "-v2"
# snapshot suffixes that never change the price family: ISO dates, compact dates, "-latest",
# Gemini's "-001"/"-002" revisions.
_SNAPSHOT = re.compile(r"(-\d{4}-\d{2}-\d{2}|-20\d{6}|-latest|-00\d)$")

_PRICE_KEYS = set(PRICE_FIELDS)
_INFO_KEYS = {
    "context_window",
    "max_output",
    "batch_discount",
    "tiers",
    "provider",
    "tokenizer",
    "notes",
    "source",
}
_LOCAL_RUNTIMES = set(LOCAL_PROVIDERS.values())


def normalize_name(name: str) -> str:
    """Lower-case, trimmed model name (the catalog's case-insensitive key)."""
    return name.strip().lower()


def _prefix_forms(name: str) -> list[str]:
    """``name`` and the forms left after removing its path prefixes, most specific first."""
    current = normalize_name(name)
    out = [current]
    while "/" in current:
        current = current.split("/", 1)[1]
        out.append(current)
    return out


def _candidates(name: str) -> list[str]:
    """Progressively simplified forms of ``name`` (prefixes, Bedrock/Vertex decorations,
    snapshot suffixes removed), most specific first."""
    out = _prefix_forms(name)
    current = out[-1]

    def push(value: str) -> None:
        if value and value not in out:
            out.append(value)

    for pattern in (_REGION, _VENDOR, _VERSION_COLON, _AT_SUFFIX, _V_SUFFIX):
        stripped = pattern.sub("", current)
        if stripped != current:
            current = stripped
            push(current)
    while True:
        stripped = _SNAPSHOT.sub("", current)
        if stripped == current or not stripped:
            break
        current = stripped
        push(current)
    return out


_MISS: Any = object()


class Catalog:
    """Models, their prices and windows, and the names users call them by.

    The default catalog (:meth:`default`) prices with `genai-prices
    <https://github.com/pydantic/genai-prices>`_ (the data installed with it, or a newer copy
    fetched by :meth:`update`), completed by tokenward's overlay (max output tokens, models it
    lacks, cited corrections). Models you :meth:`register` or :meth:`override` win over both.

    Names are resolved the way users send them: canonical names and aliases, provider prefixes
    (``openai/``, ``anthropic/``, ``azure/``, ``vertex_ai/``, ``bedrock/``, ``openai:``), dated
    snapshots (``gpt-5.4-2026-03-05``), Bedrock ids (``us.anthropic.claude-sonnet-4-6-v1:0``),
    Vertex ``@`` versions, OpenRouter slugs (``anthropic/claude-sonnet-4.6``), in any case, with
    genai-prices' own provider and model matching rules. A model a provider serves at its own
    price is named ``provider/model`` (``google/claude-sonnet-4-6`` on Vertex). Local and
    self-hosted models (``ollama/…``, ``provider="vllm"``, a ``base_url`` on localhost) cost $0.

    :meth:`lookup` never raises: an unknown name gets an unpriced placeholder (its calls are
    recorded with tokens and cost unknown). :meth:`get` raises
    :class:`~tokenward.errors.UnknownModelError` listing close matches, unless ``fallback``
    was given explicitly. Thread-safe: writes take an ``RLock``; resolutions are cached and
    the cache is cleared on every change. Nothing here touches the network except
    :meth:`update`.
    """

    def __init__(
        self,
        models: Iterable[ModelInfo] | None = None,
        *,
        fallback: str | ModelInfo | None = None,
        prices: PriceData | None = None,
    ) -> None:
        self._lock = threading.RLock()
        self._models: dict[str, ModelInfo] = {}  # normalized name -> info (registered here)
        self._index: dict[str, str] = {}  # normalized name/alias -> normalized name
        self._weak: dict[str, str] = {}  # simplified forms (no prefix / snapshot), lower priority
        self._cache: dict[tuple[str, str | None, str | None], ModelInfo | None] = {}
        self._generation = 0
        self._warned: set[str] = set()
        self._prices = prices
        for info in models or ():
            if normalize_name(info.name) not in self._models:  # the first of a name is kept
                self._add(info)
        self._fallback: ModelInfo | None = None
        if fallback is not None:
            self.set_fallback(fallback)

    # ------------------------------------------------------------------ constructors
    @classmethod
    def default(cls) -> Catalog:
        """A new catalog priced by genai-prices (bundled or updated data) and the overlay.

        The price data is loaded once per process (the first call takes ≈0.5 s: it imports
        genai-prices); every default catalog shares it.
        """
        from tokenward.catalog._update import load_price_data

        return cls(prices=load_price_data())

    @classmethod
    def from_json(
        cls, path: str | PathLike[str], *, fallback: str | ModelInfo | None = None
    ) -> Catalog:
        """Load a catalog in tokenward's ``models.json`` format; invalid entries raise ``ConfigurationError``."""
        return cls(
            parse_models_json(load_json_file(path), origin=os.fspath(path)), fallback=fallback
        )

    @classmethod
    def from_litellm(
        cls,
        path_or_dict: str | PathLike[str] | Mapping[str, Any],
        *,
        fallback: str | ModelInfo | None = None,
    ) -> Catalog:
        """Load LiteLLM's ``model_prices_and_context_window.json`` (a path or the parsed dict).

        Per-token float prices are converted exactly: ``Decimal(str(x)) * 1_000_000``.
        ``*_above_<N>k_tokens`` fields become tiers; ``*_batches`` prices a batch discount.
        """
        if isinstance(path_or_dict, Mapping):
            return cls(parse_litellm(path_or_dict), fallback=fallback)
        from pathlib import Path  # lazy: only file imports need it

        path = Path(path_or_dict)
        source = path.resolve().as_uri()
        return cls(parse_litellm(load_json_file(path), source=source), fallback=fallback)

    def to_json(self, path: str | PathLike[str]) -> None:
        """Write the catalog in ``models.json`` format (loadable with :meth:`from_json`).

        Handy to freeze the prices an application was billed at, or to edit them by hand.
        """
        import json

        doc = {"schema_version": 1, "models": [m.to_dict() for m in self.models()]}
        with open(path, "w", encoding="utf-8") as fh:
            json.dump(doc, fh, indent=1)
            fh.write("\n")

    # ------------------------------------------------------------------ price data
    @property
    def price_data(self) -> PriceData | None:
        """The genai-prices data this catalog prices with (``None`` for an explicit catalog)."""
        return self._prices

    def update(
        self,
        url: str | None = None,
        *,
        timeout: float = 30.0,
        progress: Callable[[int, int | None], None] | None = None,
    ) -> PriceUpdate:
        """Fetch genai-prices' current price data, validate it, cache it, and price with it.

        The only method that touches the network. The data is cached atomically in the cache
        directory (``TOKENWARD_CACHE_DIR``, else the user cache dir), so later processes start
        with it; this catalog and the process-wide default catalog switch to it now. A failed,
        truncated or invalid download raises :class:`~tokenward.errors.PriceDataError` and
        leaves the current prices in use. ``progress(received_bytes, total_bytes_or_None)``
        is called while downloading.
        """
        from tokenward.catalog._update import update_price_data

        result = update_price_data(url, timeout=timeout, progress=progress)
        self._set_prices(result.data)
        default = _default
        if default is not None and default is not self and default._prices is not None:
            default._set_prices(result.data)
        return result

    def _set_prices(self, prices: PriceData) -> None:
        with self._lock:
            self._prices = prices
            self._changed()

    # ------------------------------------------------------------------ internals
    def _changed(self) -> None:
        self._generation += 1
        self._cache = {}

    def _add(self, info: ModelInfo) -> None:
        key = normalize_name(info.name)
        old = self._models.get(key)
        if old is not None:
            for alias in old.aliases:
                if self._index.get(normalize_name(alias)) == key:
                    del self._index[normalize_name(alias)]
        self._models[key] = info
        self._index[key] = key
        for alias in info.aliases:
            self._index[normalize_name(alias)] = key
        # weaker keys: the name without provider prefix / snapshot suffix, so that a catalog keyed
        # by dated or prefixed names (LiteLLM) still answers "claude-sonnet-4-5" or "gemini-2.5-pro"
        for form in (info.name, *info.aliases):
            for simpler in _candidates(form)[1:]:
                self._weak.setdefault(simpler, key)
        self._changed()

    def _registered_exact(self, name: str) -> ModelInfo | None:
        for form in _prefix_forms(name):
            key = self._index.get(form)
            if key is not None:
                return self._models[key]
        return None

    def _registered_weak(self, name: str) -> ModelInfo | None:
        for form in _candidates(name):
            key = self._index.get(form) or self._weak.get(form)
            if key is not None:
                return self._models[key]
        return None

    def _local(self, name: str, provider: str | None, base_url: str | None) -> ModelInfo | None:
        parsed = parse_name(name)
        runtime = parsed.local
        if runtime is None:
            hinted = normalize_provider(provider)
            if hinted in _LOCAL_RUNTIMES:
                runtime = hinted
            elif is_local_url(base_url):
                runtime = "local"
        if runtime is None:
            return None
        stripped = name.strip()
        display = stripped[len(stripped) - len(parsed.ref) :] if parsed.ref else stripped
        return _local_model(display or stripped, runtime)

    def _search(self, name: str, provider: str | None, base_url: str | None) -> ModelInfo | None:
        info = self._registered_exact(name)
        if info is not None:
            return info
        info = self._local(name, provider, base_url)
        if info is not None:
            return info
        if self._prices is not None:
            info = self._prices.find(name, provider, base_url)
            if info is not None:
                return self._models.get(normalize_name(info.name), info)  # user overrides win
        return self._registered_weak(name)

    def _suggestions(self, name: str) -> list[str]:
        cands = _candidates(name)
        target = cands[-1] if cands else normalize_name(name)
        keys = list(self._index) + list(self._weak)
        if self._prices is not None:
            keys += [n.lower() for n in self._prices.names()]
        matches = difflib.get_close_matches(target, keys, n=8, cutoff=0.6)
        result: list[str] = []
        for m in matches:
            info = self.find(m)
            if info is not None and info.name not in result:
                result.append(info.name)
        return result[:5]

    # ------------------------------------------------------------------ lookup API
    def find(
        self, name: str, *, provider: str | None = None, base_url: str | None = None
    ) -> ModelInfo | None:
        """The model for ``name``, or ``None`` if unknown (fallback not applied).

        ``provider`` (e.g. implied by a framework's model class, see
        :func:`~tokenward.catalog.provider_for_class`) and ``base_url`` (where the client sends
        requests) narrow the provider: Claude on Vertex, GPT on Azure, a localhost server.
        """
        if not isinstance(name, str) or not name.strip():
            return None
        # Reads are lock-free; a result is cached only if no write happened meanwhile, so a
        # stale miss can never hide a model registered concurrently.
        key = (name, provider, base_url)
        cache = self._cache
        hit = cache.get(key, _MISS)
        if hit is not _MISS:
            return hit  # type: ignore[no-any-return]
        generation = self._generation
        found = self._search(name, provider, base_url)
        if found is None:
            with self._lock:
                generation = self._generation
                found = self._search(name, provider, base_url)
        with self._lock:
            if self._generation == generation:
                if len(self._cache) > 4096:
                    self._cache.clear()
                self._cache[key] = found
        return found

    def lookup(
        self, name: str, *, provider: str | None = None, base_url: str | None = None
    ) -> ModelInfo:
        """The model for ``name``, never raising for an unknown one.

        Returns the catalog's model, else its explicit fallback, else an unpriced placeholder
        (``info.priced is False``) named ``name`` with the best-guess provider and tokenizer
        family, so a call on a model nobody can price is still recorded with its tokens.
        ``provider`` and ``base_url`` as in :meth:`find`.
        """
        info = self.find(name, provider=provider, base_url=base_url)
        if info is not None:
            return info
        if self._fallback is not None:
            return self.get(name)
        text = name.strip() if isinstance(name, str) and name.strip() else "unknown"
        return _unpriced(text, self._guess_provider(text, provider, base_url))

    def _guess_provider(self, name: str, provider: str | None, base_url: str | None) -> str:
        if self._prices is not None:
            guessed = self._prices.provider_of(name, provider, base_url)
            if guessed is not None:
                return guessed
        hinted = parse_name(name).provider or normalize_provider(provider)
        if hinted is not None:
            return hinted
        return name.split("/", 1)[0].lower() if "/" in name else "unknown"

    def get(
        self, name: str, *, provider: str | None = None, base_url: str | None = None
    ) -> ModelInfo:
        """The model for ``name``; unknown -> explicit fallback if set, else ``UnknownModelError``."""
        info = self.find(name, provider=provider, base_url=base_url)
        if info is not None:
            return info
        if self._fallback is not None:
            if name not in self._warned:
                self._warned.add(name)
                logger.warning(
                    "tokenward: unknown model %r priced as fallback %r", name, self._fallback.name
                )
            return self._fallback
        raise UnknownModelError(
            str(name), self._suggestions(str(name)) if isinstance(name, str) else ()
        )

    def resolve(self, name: str) -> str:
        """Canonical catalog name for ``name``; raises ``UnknownModelError`` (fallback not applied)."""
        if not isinstance(name, str) or not name.strip():
            raise UnknownModelError(repr(name), ())
        info = self.find(name)
        if info is None:
            raise UnknownModelError(name, self._suggestions(name))
        return info.name

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.find(name) is not None

    def _all(self) -> list[ModelInfo]:
        with self._lock:
            registered = dict(self._models)
        if self._prices is None:
            return list(registered.values())
        base = [m for m in self._prices.models.values() if normalize_name(m.name) not in registered]
        return base + list(registered.values())

    def __len__(self) -> int:
        return len(self._all())

    def __iter__(self) -> Iterator[ModelInfo]:
        return iter(self._all())

    def __repr__(self) -> str:
        source = f", {self._prices.source}" if self._prices is not None else ""
        return f"<Catalog {len(self)} models{source}>"

    def models(self, provider: str | None = None, search: str | None = None) -> list[ModelInfo]:
        """Models sorted by name, optionally filtered by provider and a case-insensitive substring
        (with ``search``, the name equal to it first, then names starting with it)."""
        items = self._all()
        if provider is not None:
            wanted = normalize_provider(provider) or provider.lower()
            items = [m for m in items if m.provider.lower() in (wanted, provider.lower())]
        if search:
            s = search.lower()
            items = [
                m for m in items if s in m.name.lower() or any(s in a.lower() for a in m.aliases)
            ]
            return sorted(
                items,
                key=lambda m: (
                    m.name.lower() != s,
                    not m.name.lower().startswith(s),
                    m.name.lower(),
                    m.provider,
                ),
            )
        return sorted(items, key=lambda m: (m.name.lower(), m.provider))

    @property
    def fallback(self) -> ModelInfo | None:
        """The model used for unknown names, or ``None`` (unknown names raise)."""
        return self._fallback

    def set_fallback(self, fallback: str | ModelInfo | None) -> None:
        """Choose (or clear with ``None``) the model that prices unknown names."""
        with self._lock:
            if fallback is None or isinstance(fallback, ModelInfo):
                self._fallback = fallback
            else:
                info = self.find(fallback)
                if info is None:
                    raise UnknownModelError(fallback, self._suggestions(fallback))
                self._fallback = info
            self._warned.clear()
            self._changed()

    # ------------------------------------------------------------------ mutation API
    def register(self, info: ModelInfo) -> None:
        """Add or replace a model (matched by name, case-insensitive); its aliases win over older ones.

        A registered model wins over the genai-prices data and the overlay, for its name and
        every form that resolves to that name.
        """
        if not isinstance(info, ModelInfo):
            raise TypeError("register() expects a ModelInfo")
        with self._lock:
            self._add(info)

    def extend(self, models: Iterable[ModelInfo]) -> None:
        """Register many models (e.g. ``catalog.extend(Catalog.from_litellm(path))``)."""
        with self._lock:
            for info in models:
                self.register(info)

    def override(self, name: str, **fields: Any) -> ModelInfo:
        """Change prices (or other facts) of a model and return the new :class:`ModelInfo`.

        Price fields: ``input``, ``output``, ``cache_read``, ``cache_write_5m``, ``cache_write_1h``,
        ``reasoning``, ``audio_input``, ``audio_output``, ``image_input`` (Decimal/int/str; ``None``
        clears an optional price). Other fields: ``context_window``, ``max_output``,
        ``batch_discount``, ``tiers``, ``provider``, ``tokenizer``, ``notes``, ``source``.
        Tiers are kept unless ``tiers=`` is passed (``tiers=()`` removes them). Changing a
        price replaces the model's dated prices (its ``periods``) with the new fixed prices.

        For a name the catalog does not know, a custom model is created when ``input``,
        ``output`` and ``context_window`` are all given; otherwise ``UnknownModelError``.
        """
        unknown = set(fields) - _PRICE_KEYS - _INFO_KEYS
        if unknown:
            raise ConfigurationError(
                f"override() got unknown field(s) {', '.join(sorted(unknown))}; "
                f"use price fields {', '.join(PRICE_FIELDS)} or {', '.join(sorted(_INFO_KEYS))}."
            )
        price_updates = {k: v for k, v in fields.items() if k in _PRICE_KEYS}
        info_updates = {k: v for k, v in fields.items() if k in _INFO_KEYS}
        if "tiers" in info_updates:
            info_updates["tiers"] = tuple(info_updates["tiers"])
            if not all(isinstance(t, PriceTier) for t in info_updates["tiers"]):
                raise ConfigurationError("override(tiers=...) expects PriceTier objects")
        with self._lock:
            current = self.find(name)
            try:
                if current is None or current.prices is None:
                    if not {"input", "output", "context_window"} <= set(fields):
                        raise UnknownModelError(name, self._suggestions(name))
                    info = ModelInfo(
                        name=name,
                        provider=str(info_updates.pop("provider", "custom")),
                        context_window=info_updates.pop("context_window"),
                        max_output=info_updates.pop("max_output", None),
                        prices=Prices(**price_updates),
                        as_of=date.today(),
                        source=str(info_updates.pop("source", "urn:tokenward:user-defined")),
                        notes=str(info_updates.pop("notes", "user-defined model")),
                        price_source="user",
                        **info_updates,
                    )
                else:
                    prices = (
                        replace(current.prices, **price_updates)
                        if price_updates
                        else current.prices
                    )
                    info_updates.setdefault(
                        "notes", f"{current.notes} [overridden by user]".strip()
                    )
                    repriced = bool(
                        price_updates or {"tiers", "batch_discount"} & set(info_updates)
                    )
                    if repriced:
                        info_updates["periods"] = ()
                        info_updates["price_source"] = "user"
                    info = replace(current, prices=prices, as_of=date.today(), **info_updates)
            except (TypeError, ValueError) as exc:
                if isinstance(exc, (ConfigurationError, UnknownModelError)):
                    raise
                raise ConfigurationError(f"override({name!r}) is invalid: {exc}") from None
            self._add(info)
            if self._fallback is not None and normalize_name(self._fallback.name) == normalize_name(
                info.name
            ):
                self._fallback = info
            return info


_default: Catalog | None = None
_default_lock = threading.Lock()


@functools.lru_cache(maxsize=4096)
def _unpriced(name: str, provider: str) -> ModelInfo:
    """The placeholder of a model the catalog cannot price (cached: one object per name)."""
    return ModelInfo(
        name=name,
        provider=provider,
        context_window=0,
        max_output=None,
        prices=None,
        tokenizer=tokenizer_family(name),
        price_source="",
        notes=(
            "not in the catalog: tokens recorded, cost unknown. Run `tokenward models update`, "
            "or give it prices with catalog.override(name, input=..., output=..., "
            "context_window=...)"
        ),
    )


@functools.lru_cache(maxsize=1024)
def _local_model(name: str, runtime: str) -> ModelInfo:
    """A model served locally (Ollama, vLLM, llama.cpp, LM Studio, localhost): $0, tokens counted."""
    return ModelInfo(
        name=name,
        provider=runtime,
        context_window=0,
        max_output=None,
        prices=Prices(input=Decimal(0), output=Decimal(0)),
        tokenizer=tokenizer_family(name),
        source="urn:tokenward:local",
        notes="served locally: tokens counted, priced at $0",
        price_source="local",
    )


def default_catalog() -> Catalog:
    """The process-wide catalog (genai-prices data + overlay), created on first use; thread-safe.

    Changes made with ``register``/``override`` on it are visible to every user of the default.
    """
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                _default = Catalog.default()
    return _default
