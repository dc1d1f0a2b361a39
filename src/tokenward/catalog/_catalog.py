"""The model registry: name resolution, overrides, custom models."""

from __future__ import annotations

import difflib
import functools
import logging
import os
import re
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import replace
from datetime import date
from typing import TYPE_CHECKING, Any

from tokenward.catalog._loader import load_json_file, parse_litellm, parse_models_json
from tokenward.catalog._models import PRICE_FIELDS, ModelInfo, Prices, PriceTier
from tokenward.errors import ConfigurationError, UnknownModelError

if TYPE_CHECKING:
    from os import PathLike

__all__ = ["Catalog", "default_catalog", "normalize_name"]

logger = logging.getLogger("tokenward.catalog")

# os.path, not pathlib: keeps `import tokenward.catalog` cheap
_DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "models.json")

# Regional / vendor prefixes of Bedrock model ids: "us.anthropic.claude-...", "meta.llama3-...".
_REGION = re.compile(r"^(us|eu|apac|ap|jp|au|ca|us-gov|global)\.")
_VENDOR = re.compile(r"^(anthropic|meta|mistral|amazon|cohere|ai21|deepseek|openai|google|qwen)\.")
_VERSION_COLON = re.compile(r":\d+$")  # bedrock "...-v2:0"
_AT_SUFFIX = re.compile(r"@.*$")  # vertex "claude-3-5-sonnet-v2@20241022"
_V_SUFFIX = re.compile(r"-v\d+$")  # bedrock "-v1" / "-v2"
# snapshot suffixes that never change the price family: ISO dates, compact dates, "-latest",
# Gemini's "-001"/"-002" revisions. Four-digit OpenAI snapshots (gpt-3.5-turbo-1106) are NOT
# stripped: some were priced differently; known same-price ones are listed as aliases.
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


def normalize_name(name: str) -> str:
    """Lower-case, trimmed model name (the catalog's case-insensitive key)."""
    return name.strip().lower()


def _candidates(name: str) -> list[str]:
    """Progressively simplified forms of ``name``, most specific first."""
    out: list[str] = []

    def push(value: str) -> None:
        if value and value not in out:
            out.append(value)

    current = normalize_name(name)
    push(current)
    # provider path prefixes: openai/, azure/, bedrock/, vertex_ai/, gemini/, models/, openrouter/openai/ ...
    while "/" in current:
        current = current.split("/", 1)[1]
        push(current)
    for pattern in (_REGION, _VENDOR, _VERSION_COLON, _AT_SUFFIX, _V_SUFFIX):
        stripped = pattern.sub("", current)
        if stripped != current:
            current = stripped
            push(current)
    # snapshot suffixes, possibly stacked ("-20241022-v2" handled above, "-latest")
    while True:
        stripped = _SNAPSHOT.sub("", current)
        if stripped == current or not stripped:
            break
        current = stripped
        push(current)
    return out


class Catalog:
    """A registry of :class:`ModelInfo` with forgiving, cached name resolution.

    ``get(name)`` accepts canonical names, aliases, provider prefixes (``openai/gpt-4o``,
    ``bedrock/anthropic.claude-3-5-sonnet-20241022-v2:0``, ``vertex_ai/…``, ``gemini/…``,
    ``azure/…``, ``models/gemini-…``), dated snapshots (``gpt-4o-2024-08-06``,
    ``claude-3-5-sonnet-20241022``, ``-latest``) in any case. A snapshot with its own prices
    (``gpt-4o-2024-05-13``) is its own entry and always wins over the family name.

    Unknown names raise :class:`~tokenward.errors.UnknownModelError` listing close matches,
    unless ``fallback`` was given explicitly, in which case the fallback model is returned
    (and a warning is logged once per name). Thread-safe: writes take an ``RLock``; resolutions
    are cached and the cache is cleared on every change.
    """

    def __init__(
        self,
        models: Iterable[ModelInfo] | None = None,
        *,
        fallback: str | ModelInfo | None = None,
    ) -> None:
        self._lock = threading.RLock()
        self._models: dict[str, ModelInfo] = {}  # normalized canonical name -> info
        self._index: dict[str, str] = {}  # normalized name/alias -> normalized canonical name
        self._weak: dict[str, str] = {}  # bare (prefix-less) forms, lower priority
        self._cache: dict[str, str | None] = {}
        self._generation = 0
        self._warned: set[str] = set()
        for info in models or ():
            self._add(info)
        self._fallback: ModelInfo | None = None
        if fallback is not None:
            self.set_fallback(fallback)

    # ------------------------------------------------------------------ constructors
    @classmethod
    def default(cls) -> Catalog:
        """A new catalog with the shipped ``data/models.json`` (dated, cited prices)."""
        return cls.from_json(_DATA)

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

    # ------------------------------------------------------------------ internals
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
        self._generation += 1
        self._cache = {}

    def _scan(self, name: str) -> str | None:
        for candidate in _candidates(name):
            found = self._index.get(candidate) or self._weak.get(candidate)
            if found is not None:
                return found
        return None

    def _lookup(self, name: str) -> str | None:
        # Reads are lock-free; a miss is confirmed under the lock (a writer may be half-way
        # through re-registering a model), and results are cached only if no write happened
        # in between, so a stale miss can never hide a model registered concurrently.
        cache = self._cache
        if name in cache:
            return cache[name]
        generation = self._generation
        found = self._scan(name)
        if found is None:
            with self._lock:
                generation = self._generation
                found = self._scan(name)
        with self._lock:
            if self._generation == generation:
                if len(self._cache) > 4096:
                    self._cache.clear()
                self._cache[name] = found
        return found

    def _suggestions(self, name: str) -> list[str]:
        cands = _candidates(name)
        target = cands[-1] if cands else normalize_name(name)
        keys = list(self._index) + list(self._weak)
        matches = difflib.get_close_matches(target, keys, n=8, cutoff=0.6)
        result: list[str] = []
        for m in matches:
            canonical = self._index.get(m) or self._weak.get(m)
            if canonical is None:
                continue
            display = self._models[canonical].name
            if display not in result:
                result.append(display)
        return result[:5]

    # ------------------------------------------------------------------ lookup API
    def resolve(self, name: str) -> str:
        """Canonical catalog name for ``name``; raises ``UnknownModelError`` (fallback not applied)."""
        if not isinstance(name, str) or not name.strip():
            raise UnknownModelError(repr(name), ())
        key = self._lookup(name)
        if key is None:
            raise UnknownModelError(name, self._suggestions(name))
        return self._models[key].name

    def find(self, name: str) -> ModelInfo | None:
        """The model for ``name``, or ``None`` if unknown (fallback not applied)."""
        if not isinstance(name, str) or not name.strip():
            return None
        key = self._lookup(name)
        return None if key is None else self._models.get(key)

    def lookup(
        self, name: str, *, provider: str | None = None, base_url: str | None = None
    ) -> ModelInfo:
        """The model for ``name``, never raising for an unknown one.

        Returns the catalog's model, else its explicit fallback, else an unpriced placeholder
        (``info.priced is False``) named ``name``, so a call on a model nobody can price is
        still recorded with its tokens. ``provider`` (e.g. implied by a framework's model
        class) and ``base_url`` (where the client sends requests) help recognise the model.
        """
        info = self.find(name) if isinstance(name, str) else None
        if info is not None:
            return info
        if self._fallback is not None:
            return self.get(name)
        return _unpriced(str(name) if name else "unknown", provider)

    def get(self, name: str) -> ModelInfo:
        """The model for ``name``; unknown -> explicit fallback if set, else ``UnknownModelError``."""
        info = self.find(name)
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

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.find(name) is not None

    def __len__(self) -> int:
        return len(self._models)

    def __iter__(self) -> Iterator[ModelInfo]:
        return iter(list(self._models.values()))

    def __repr__(self) -> str:
        return f"<Catalog {len(self._models)} models>"

    def models(self, provider: str | None = None, search: str | None = None) -> list[ModelInfo]:
        """Models sorted by name, optionally filtered by provider and a case-insensitive substring."""
        with self._lock:
            items = list(self._models.values())
        if provider is not None:
            items = [m for m in items if m.provider.lower() == provider.lower()]
        if search:
            s = search.lower()
            items = [
                m for m in items if s in m.name.lower() or any(s in a.lower() for a in m.aliases)
            ]
        return sorted(items, key=lambda m: m.name)

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

    # ------------------------------------------------------------------ mutation API
    def register(self, info: ModelInfo) -> None:
        """Add or replace a model (matched by name, case-insensitive); its aliases win over older ones."""
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
        Tiers are kept unless ``tiers=`` is passed (``tiers=()`` removes them).

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
                if current is None:
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
def _unpriced(name: str, provider: str | None) -> ModelInfo:
    """The placeholder of a model the catalog cannot price (cached: one object per name)."""
    guessed = provider or (name.split("/", 1)[0] if "/" in name else "unknown")
    return ModelInfo(
        name=name.strip() or "unknown",
        provider=guessed,
        context_window=0,
        max_output=None,
        prices=None,
        price_source="",
        notes="not in the catalog: tokens recorded, cost unknown",
    )


def default_catalog() -> Catalog:
    """The process-wide catalog (shipped prices), created on first use; thread-safe.

    Changes made with ``register``/``override`` on it are visible to every user of the default.
    """
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                _default = Catalog.default()
    return _default
