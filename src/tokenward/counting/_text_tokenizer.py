"""Counters over a user's own tokenizer: a Hugging Face ``tokenizers.Tokenizer`` (or its
``tokenizer.json``) or any callable ``str -> int`` / ``str -> list[int]``.

Text is counted exactly by that tokenizer. A ``tokenizer.json`` carries no chat template, so
messages use the OpenAI chat formula (role + content + 3 per message, 3 of reply priming) and
``count_messages`` results are flagged ``exact=False``; ``count_text`` results are exact.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

from tokenward.counting._counter import _ChatCounter
from tokenward.errors import ConfigurationError

__all__ = ["TextTokenizerCounter", "load_tokenizer_json"]


def load_tokenizer_json(path: str | os.PathLike[str]) -> Any:
    """A Hugging Face ``tokenizers.Tokenizer`` from a ``tokenizer.json`` file."""
    try:
        from tokenizers import Tokenizer
    except ImportError:
        raise ConfigurationError(
            "Loading a tokenizer.json needs the `tokenizers` package; "
            'pip install "tokenward[tokenizers]".'
        ) from None
    try:
        return Tokenizer.from_file(os.fspath(path))
    except Exception as exc:  # noqa: BLE001 - the Rust side raises plain Exceptions
        raise ConfigurationError(
            f"Cannot load tokenizer file {os.fspath(path)!r}: {exc}. Pass the path of a "
            f"Hugging Face tokenizer.json (or a mistral-common tekken.json)."
        ) from None


class TextTokenizerCounter(_ChatCounter):
    """Exact text counts from a user-supplied tokenizer; chat overhead by the OpenAI formula."""

    exact = False  # messages: the chat template is not known
    text_exact = True

    def __init__(
        self,
        length: Callable[[str], int],
        *,
        name: str,
        model: str,
        provider: str = "unknown",
        encode: Callable[[str], list[int]] | None = None,
        decode: Callable[[list[int]], str] | None = None,
    ) -> None:
        super().__init__(model=model, provider=provider)
        self.name = name
        self._length = length
        self._encode_fn = encode
        self._decode_fn = decode

    @classmethod
    def from_hf(
        cls, tokenizer: Any, *, model: str, provider: str = "unknown"
    ) -> TextTokenizerCounter:
        """Counter over a ``tokenizers.Tokenizer`` (special tokens not added, as in a chat
        template's content slot)."""

        def encode(text: str) -> list[int]:
            return list(tokenizer.encode(text, add_special_tokens=False).ids)

        def length(text: str) -> int:
            return len(tokenizer.encode(text, add_special_tokens=False).ids)

        def decode(ids: list[int]) -> str:
            return str(tokenizer.decode(ids, skip_special_tokens=False))

        return cls(
            length, name="tokenizers", model=model, provider=provider, encode=encode, decode=decode
        )

    @classmethod
    def from_callable(
        cls, fn: Callable[[str], Any], *, model: str, provider: str = "unknown"
    ) -> TextTokenizerCounter:
        """Counter over ``fn(text)`` returning a token count or a list of token ids."""

        def length(text: str) -> int:
            out = fn(text)
            if isinstance(out, (bool, str, bytes)) or not isinstance(out, (int, Sequence)):
                raise ConfigurationError(
                    f"the tokenizer registered for {model!r} returned {type(out).__name__}; "
                    f"it must return an int or a list of token ids."
                )
            return out if isinstance(out, int) else len(out)

        name = getattr(fn, "__qualname__", None) or type(fn).__name__
        return cls(length, name=f"callable:{name}", model=model, provider=provider)

    def _len(self, text: str) -> int:
        return self._length(text)

    def encode(self, text: str) -> list[int] | None:
        return self._encode_fn(text) if self._encode_fn is not None else None

    def decode(self, tokens: Sequence[int]) -> str | None:
        return self._decode_fn(list(tokens)) if self._decode_fn is not None else None

    def truncate(self, text: str, max_tokens: int) -> str:
        """Longest prefix of ``text`` with at most ``max_tokens`` tokens (binary search)."""
        if max_tokens <= 0 or not text:
            return ""
        if self._len(text) <= max_tokens:
            return text
        lo, hi = 0, len(text)  # prefix of length lo fits, hi does not
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if self._len(text[:mid]) <= max_tokens:
                lo = mid
            else:
                hi = mid
        return text[:lo]
