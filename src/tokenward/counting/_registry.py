"""The tokenizer registry: which counter counts which model names.

``register_tokenizer("my-llama-*", "/models/llama/tokenizer.json")`` makes every lookup by
model name -- :func:`~tokenward.counting.get_counter`, ``count_text``, ``count_messages``,
trimming and packing by model name, the Accountant's pre-flight counts -- use that tokenizer
for matching models. Patterns are shell-style (``fnmatch``), case-insensitive, matched
against the model name as given and without its provider prefix (``openai/``,
``anthropic.``...); the most recent registration that matches wins.

Accepted tokenizers:

* a Hugging Face ``tokenizers.Tokenizer``, or the path of its ``tokenizer.json``;
* a mistral-common ``MistralTokenizer`` (or ``Tekkenizer``), or the path of a ``tekken.json``:
  exact chat-template counts;
* a callable ``str -> int`` or ``str -> list[int]``;
* a ready counter (anything with ``count_text``/``count_message``/``count_messages``), e.g.
  :class:`~tokenward.counting.AnthropicCountTokens` for provider-side exact counts; an object
  with ``for_model(model, provider)`` is asked for a counter per model name.
"""

from __future__ import annotations

import fnmatch
import json
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tokenward.counting._counter import TokenCounter
from tokenward.errors import ConfigurationError

__all__ = ["is_registered", "register_tokenizer", "registered_tokenizers", "unregister_tokenizer"]

_Factory = Callable[[str, str], TokenCounter]


@dataclass(frozen=True, slots=True)
class _Registration:
    pattern: str
    factory: _Factory
    provider: str | None


_lock = threading.Lock()
_REGISTRY: list[_Registration] = []  # newest first
_listeners: list[Callable[[], None]] = []


def _is_tekken_file(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError as exc:
        raise ConfigurationError(f"Cannot read tokenizer file {path!r}: {exc}.") from None
    if b'"config"' not in head:
        return False
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except ValueError:
        return False
    return isinstance(data, dict) and "config" in data and "vocab" in data


def _factory(tokenizer: Any) -> _Factory:
    from tokenward.counting._mistral import (
        MistralCounter,
        as_mistral_tokenizer,
        is_mistral_tokenizer,
        mistral_from_file,
    )
    from tokenward.counting._text_tokenizer import TextTokenizerCounter, load_tokenizer_json

    if hasattr(tokenizer, "for_model"):
        return lambda model, provider: tokenizer.for_model(model, provider)
    if all(hasattr(tokenizer, a) for a in ("count_text", "count_message", "count_messages")):
        return lambda model, provider: tokenizer
    if isinstance(tokenizer, (str, os.PathLike)):
        path = os.fspath(tokenizer)
        if _is_tekken_file(path):
            try:
                mistral = mistral_from_file(path)
            except ImportError:
                raise ConfigurationError(
                    f"{path!r} is a tekken tokenizer; counting with it needs mistral-common: "
                    'pip install "tokenward[mistral]".'
                ) from None
            return lambda model, provider: MistralCounter(mistral, model=model, provider=provider)
        hf = load_tokenizer_json(path)
        return lambda model, provider: TextTokenizerCounter.from_hf(
            hf, model=model, provider=provider
        )
    if is_mistral_tokenizer(tokenizer):
        mistral = as_mistral_tokenizer(tokenizer)
        return lambda model, provider: MistralCounter(mistral, model=model, provider=provider)
    if type(tokenizer).__module__.startswith("tokenizers") and hasattr(tokenizer, "encode"):
        return lambda model, provider: TextTokenizerCounter.from_hf(
            tokenizer, model=model, provider=provider
        )
    if callable(tokenizer):
        return lambda model, provider: TextTokenizerCounter.from_callable(
            tokenizer, model=model, provider=provider
        )
    raise ConfigurationError(
        f"register_tokenizer() got a {type(tokenizer).__name__}; pass a tokenizers.Tokenizer, "
        f"a tokenizer.json/tekken.json path, a mistral-common MistralTokenizer, a callable "
        f"str -> int / list[int], or a TokenCounter."
    )


def register_tokenizer(pattern: str, tokenizer: Any, *, provider: str | None = None) -> None:
    """Count models whose name matches ``pattern`` (``fnmatch``, case-insensitive) with
    ``tokenizer`` (see the module docstring for what it may be). ``provider`` overrides the
    provider the catalog gives those models (it picks image/document formulas). Registering
    the same pattern again replaces it."""
    if not isinstance(pattern, str) or not pattern.strip():
        raise ConfigurationError(
            "register_tokenizer() needs a model name pattern like 'my-llama-*'."
        )
    reg = _Registration(pattern.strip().lower(), _factory(tokenizer), provider)
    with _lock:
        _REGISTRY[:] = [r for r in _REGISTRY if r.pattern != reg.pattern]
        _REGISTRY.insert(0, reg)
    _changed()


def unregister_tokenizer(pattern: str) -> bool:
    """Remove a registration; True if there was one."""
    p = pattern.strip().lower()
    with _lock:
        before = len(_REGISTRY)
        _REGISTRY[:] = [r for r in _REGISTRY if r.pattern != p]
        removed = len(_REGISTRY) != before
    if removed:
        _changed()
    return removed


def registered_tokenizers() -> list[str]:
    """Registered patterns, the one that wins first."""
    with _lock:
        return [r.pattern for r in _REGISTRY]


def is_registered(model: str) -> bool:
    """Whether a registered tokenizer counts ``model`` (as given or without its prefix)."""
    bare = model.strip().lower().rsplit("/", 1)[-1]
    return match(model, bare) is not None


def match(*names: str) -> _Registration | None:
    """The winning registration for any of ``names`` (lower-cased), or None."""
    with _lock:
        regs = list(_REGISTRY)
    for reg in regs:
        for name in names:
            if fnmatch.fnmatchcase(name.lower(), reg.pattern):
                return reg
    return None


def on_change(listener: Callable[[], None]) -> None:
    """Call ``listener()`` after every (un)registration (counter caches reset themselves)."""
    _listeners.append(listener)


def _changed() -> None:
    for listener in list(_listeners):
        listener()
