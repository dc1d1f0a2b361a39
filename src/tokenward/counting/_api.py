"""Model -> counter resolution and the one-call helpers."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from tokenward.counting._counter import (
    EstimatorCounter,
    TiktokenCounter,
    TokenCount,
    TokenCounter,
)
from tokenward.counting._loader import get_encoding
from tokenward.errors import TokenizerUnavailableError
from tokenward.messages import Message

__all__ = ["count_messages", "count_text", "get_counter", "tokenizer_for_model"]

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


def get_counter(
    model: str | None = None, *, catalog: Any = None, require_exact: bool = False
) -> TokenCounter:
    """The counter for ``model`` (cached per model; thread-safe).

    Exact tiktoken counter when the model's encoding is known and loadable offline (or
    downloadable); otherwise an :class:`EstimatorCounter` (``exact=False``). With
    ``require_exact=True`` a missing tokenizer raises
    :class:`~tokenward.errors.TokenizerUnavailableError` instead of estimating.
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
        enc_name, provider, canonical = _resolve(model, catalog)
        counter: TokenCounter
        if enc_name is None:
            if require_exact:
                raise TokenizerUnavailableError(
                    f"No local tokenizer for {model!r}; counts for it are estimates. Call "
                    f"get_counter({model!r}) without require_exact=True to accept an estimate."
                )
            counter = EstimatorCounter(model=canonical, provider=provider)
        else:
            try:
                enc = get_encoding(enc_name)
            except TokenizerUnavailableError:
                if require_exact:
                    raise
                counter = EstimatorCounter(model=canonical, provider=provider)
            else:
                counter = TiktokenCounter(enc, model=canonical, provider=provider)
        if catalog is not None:
            _CATALOGS[id(catalog)] = catalog  # keep it alive: its id is part of the key
        _COUNTERS[key] = counter
        return counter


def count_text(text: str, model: str = DEFAULT_MODEL, *, catalog: Any = None) -> TokenCount:
    """Tokens in ``text`` for ``model``; ``exact`` says whether a real tokenizer counted."""
    c = get_counter(model, catalog=catalog)
    return TokenCount(c.count_text(text), c.exact, c.name)


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
    """Forget cached counters (tests)."""
    with _lock:
        _COUNTERS.clear()
