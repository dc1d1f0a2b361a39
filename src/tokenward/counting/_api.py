"""Model -> counter resolution and the one-call helpers."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from tokenward.counting import _registry
from tokenward.counting._counter import (
    EstimatorCounter,
    TiktokenCounter,
    TokenCount,
    TokenCounter,
)
from tokenward.counting._loader import get_encoding
from tokenward.counting._mistral import builtin_mistral_counter
from tokenward.errors import TokenizerUnavailableError
from tokenward.messages import Message

__all__ = [
    "count_messages",
    "count_text",
    "get_counter",
    "tokenizer_for_model",
    "tokenizer_names",
]

DEFAULT_MODEL = "gpt-4o"

_O200K = (
    "gpt-4o",
    "gpt-4.1",
    "gpt-4.5",
    "gpt-5",
    "chatgpt-4o",
    "o1",
    "o3",
    "o4",
    "gpt-oss",
    "codex-mini",
    "computer-use",
)
_CL100K = ("gpt-4", "gpt-3.5", "text-embedding-3", "text-embedding-ada-002", "ada-002")
_PROVIDER_HINTS = (
    ("claude", "anthropic"),
    ("gemini", "gemini"),
    ("gemma", "gemini"),
    ("mistral", "mistral"),
    ("llama", "meta"),
    ("deepseek", "deepseek"),
)

_MISTRAL_NAME = re.compile(r"mistral|mixtral|codestral|devstral|magistral|ministral|pixtral")

_lock = threading.Lock()
_COUNTERS: dict[tuple[str, int, bool], TokenCounter] = {}
_CATALOGS: dict[int, Any] = {}


def _bare(model: str) -> str:
    m = model.strip().lower()
    for sep in ("/", ":"):
        if sep in m and not m.startswith("ft:"):
            m = m.rsplit(sep, 1)[-1]
    if m.startswith("ft:"):  # fine-tunes: ft:gpt-4o-mini-2024-07-18:org::id
        m = m[3:].split(":", 1)[0]
    if m.startswith(("anthropic.", "openai.")):  # bedrock ids
        m = m.split(".", 1)[1]
    return m


def _by_name(model: str) -> tuple[str | None, str]:
    m = _bare(model)
    for p in _O200K:
        if m.startswith(p):
            return "o200k_base", "openai"
    for p in _CL100K:
        if m.startswith(p):
            return "cl100k_base", "openai"
    for hint, provider in _PROVIDER_HINTS:
        if hint in m:
            return None, provider
    return None, "unknown"


def _resolve(model: str, catalog: Any = None) -> tuple[str | None, str, str]:
    """``(encoding or None, provider, canonical model name)``."""
    info = None
    try:
        if catalog is None:
            from tokenward.catalog import default_catalog  # lazy: optional at import time

            catalog = default_catalog()
        info = catalog.find(model)
    except Exception:  # noqa: BLE001 - a missing/broken catalog must not break counting
        info = None
    if info is not None:
        name = str(getattr(info, "name", None) or _bare(model))
        tok = getattr(info, "tokenizer", None)
        provider = str(getattr(info, "provider", "") or "unknown").lower()
        if tok is None and provider == "openai":
            tok = _by_name(name)[0]
        return tok, provider, name
    tok, provider = _by_name(model)
    return tok, provider, _bare(model)


def tokenizer_for_model(model: str, catalog: Any = None) -> tuple[str | None, str]:
    """``(tiktoken encoding name or None, provider)`` for ``model``.

    Uses the catalog's ``tokenizer``/``provider`` fields when the model is in it, otherwise
    name rules (gpt-4o/4.1/4.5/5/o-series -> o200k_base; gpt-4/3.5/embeddings ->
    cl100k_base; anything else -> None, i.e. the estimator).
    """
    tok, provider, _ = _resolve(model, catalog)
    return tok, provider


#: tokenizer names the catalog may give a model (``ModelInfo.tokenizer``) besides tiktoken's
#: encoding names: Mistral's tokenizers through mistral-common, chosen by model name.
MISTRAL_TOKENIZER_NAMES = frozenset({"mistral", "mistral-common", "tekken"})


def tokenizer_names() -> frozenset[str]:
    """Every ``ModelInfo.tokenizer`` value counting understands: tiktoken's encoding names
    (``o200k_base``, ``cl100k_base``... ; those not shipped need a local file) and
    ``"mistral"``/``"mistral-common"``/``"tekken"`` (mistral-common, chosen by model name).
    Any other value, or None, means the model is estimated (flagged)."""
    from tokenward.counting._loader import list_encodings

    return frozenset(list_encodings()) | MISTRAL_TOKENIZER_NAMES


def _named_counter(tokenizer: str, model: str, provider: str) -> TokenCounter | None:
    """The counter for a catalog tokenizer name, or None when it cannot count offline."""
    if tokenizer in MISTRAL_TOKENIZER_NAMES:
        return builtin_mistral_counter(model, provider)
    try:
        return TiktokenCounter(get_encoding(tokenizer), model=model, provider=provider)
    except TokenizerUnavailableError:
        return None


def _build(model: str, catalog: Any, require_exact: bool) -> TokenCounter:
    tok, provider, canonical = _resolve(model, catalog)
    reg = _registry.match(model, _bare(model), canonical)
    if reg is not None:
        return reg.factory(canonical, reg.provider or provider)
    counter: TokenCounter | None = None
    if tok is not None:
        counter = _named_counter(tok, canonical, provider)
        if counter is None and require_exact and tok not in MISTRAL_TOKENIZER_NAMES:
            get_encoding(tok)  # raises the loader's error, which names the fix
    elif provider == "mistral" or _MISTRAL_NAME.search(canonical):
        # the name as sent first: its version picks the tokenizer ("mistral-large-2411" is v7,
        # while the catalog prices 2407 and 2411 as one "mistral-large")
        counter = builtin_mistral_counter(_bare(model), provider)
        if counter is None or not counter.exact:
            counter = builtin_mistral_counter(canonical, provider) or counter
    if counter is None:
        if require_exact:
            raise TokenizerUnavailableError(
                f"No local tokenizer for {model!r}; counts for it are estimates. For Mistral "
                f'models pip install "tokenward[mistral]"; otherwise register one with '
                f"tokenward.counting.register_tokenizer({model!r}, tokenizer) (a "
                f"tokenizer.json, a mistral-common tokenizer, a callable, or a provider counter "
                f"such as AnthropicCountTokens), or call without require_exact=True to accept "
                f"an estimate."
            )
        counter = EstimatorCounter(model=canonical, provider=provider)
    return counter


def get_counter(
    model: str | None = None, *, catalog: Any = None, require_exact: bool = False
) -> TokenCounter:
    """The counter for ``model`` (cached per model; thread-safe).

    In order: a tokenizer registered for the name (:func:`register_tokenizer`); the
    catalog's tokenizer for the model (tiktoken encodings ship in the wheel; Mistral models
    through mistral-common when installed); otherwise an :class:`EstimatorCounter`
    (``exact=False``). Nothing is ever downloaded. With ``require_exact=True`` a model that
    would be estimated raises :class:`~tokenward.errors.TokenizerUnavailableError` instead.
    """
    model = model or DEFAULT_MODEL
    key = (model, id(catalog) if catalog is not None else 0, require_exact)
    c = _COUNTERS.get(key)
    if c is not None:
        return c
    with _lock:
        c = _COUNTERS.get(key)
        if c is not None:
            return c
        counter = _build(model, catalog, require_exact)
        if catalog is not None:
            _CATALOGS[id(catalog)] = catalog  # keep it alive: its id is part of the key
        _COUNTERS[key] = counter
        return counter


def count_text(text: str, model: str = DEFAULT_MODEL, *, catalog: Any = None) -> TokenCount:
    """Tokens in ``text`` for ``model``; ``exact`` says whether a real tokenizer counted."""
    c = get_counter(model, catalog=catalog)
    return TokenCount(c.count_text(text), bool(getattr(c, "text_exact", c.exact)), c.name)


def count_messages(
    messages: Iterable[Message | Mapping[str, Any]],
    model: str = DEFAULT_MODEL,
    tools: Sequence[Any] | None = None,
    *,
    tool_choice: Any = None,
    catalog: Any = None,
) -> TokenCount:
    """Prompt tokens of a chat request (messages + reply priming + tool definitions)."""
    c = get_counter(model, catalog=catalog)
    detailed = getattr(c, "count_messages_detailed", None)
    if detailed is not None:
        result: TokenCount = detailed(messages, tools, tool_choice=tool_choice)
        return result
    return TokenCount(c.count_messages(messages, tools), c.exact, c.name)


def _clear_counters() -> None:
    """Forget cached counters (tests, and after a tokenizer (un)registration)."""
    with _lock:
        _COUNTERS.clear()
        _CATALOGS.clear()


_registry.on_change(_clear_counters)
