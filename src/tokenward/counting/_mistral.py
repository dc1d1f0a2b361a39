"""Exact Mistral counts through ``mistral-common`` (the ``mistral`` extra), offline.

``count_messages`` builds the same ``ChatCompletionRequest`` Mistral's API builds from an
OpenAI-style request (``ChatCompletionRequest.from_openai``) and counts the tokens of
``MistralTokenizer.encode_chat_completion``: the chat template, the system prompt's placement,
tool definitions and tool calls/results included, equal to mistral-common's own tokenization.

Built in, from the tokenizer files mistral-common ships (v1/v2/v3/v7 SentencePiece and the
2024 tekken files; the SentencePiece ones need ``sentencepiece``, installed by the extra):
the models of mistral-common's own model table count exactly. Newer Mistral models
(mistral-medium-3*, mistral-large-3*, magistral, devstral, ministral-3...) use tekken
tokenizers mistral-common does not ship; they are counted with the newest shipped tekken
(same vocabulary family) and flagged ``exact=False``; register the model's own
``tekken.json`` with :func:`tokenward.counting.register_tokenizer` for exact counts.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from tokenward.counting._content import IMAGE_PARTS, TEXT_PARTS, count_parts
from tokenward.counting._counter import TokenCount, longest_prefix
from tokenward.errors import ConfigurationError
from tokenward.messages import Message

__all__ = ["MistralCounter", "builtin_mistral_counter", "is_mistral_tokenizer"]

# model prefix -> mistral-common constructor (its MODEL_NAME_TO_TOKENIZER_CLS table)
_BUILTIN: tuple[tuple[str, str], ...] = (
    ("pixtral-large-2411", "v7m"),
    ("mistral-large-2411", "v7"),
    ("pixtral-12b", "v3tm"),
    ("open-mistral-nemo", "v3t"),
    ("mistral-small-2409", "v3t"),
    ("ministral-8b-2410", "v3t"),
    ("mistral-large-2407", "v3"),
    ("mistral-tiny-2407", "v3"),
    ("open-mixtral-8x22b", "v3"),
    ("codestral-mamba", "v3"),
    ("codestral-2405", "v3"),
    ("mistral-large-2402", "v2"),
    ("mistral-small-2402", "v2"),
    ("mistral-small-2312", "v2"),
    ("mistral-tiny-2312", "v2"),
    ("mistral-medium-2312", "v1"),
)
#: model name fragments of Mistral's families (counted approximately with tekken)
_FAMILY = re.compile(r"mistral|mixtral|codestral|devstral|magistral|ministral|pixtral|voxtral")
_APPROXIMATE = "v3tm"  # the newest tekken file mistral-common ships

_lock = threading.Lock()
_TOKENIZERS: dict[str, Any] = {}


def is_mistral_tokenizer(obj: Any) -> bool:
    """Whether ``obj`` is a mistral-common ``MistralTokenizer`` or raw ``Tekkenizer``."""
    return type(obj).__module__.startswith("mistral_common.") and (
        hasattr(obj, "encode_chat_completion") or hasattr(obj, "file_path")
    )


def _load(kind: str) -> Any:
    with _lock:
        tok = _TOKENIZERS.get(kind)
        if tok is None:
            from mistral_common.tokens.tokenizers.mistral import MistralTokenizer

            tok = {  # mistral-common's constructors are untyped
                "v1": MistralTokenizer.v1,
                "v2": MistralTokenizer.v2,
                "v3": MistralTokenizer.v3,
                "v3t": lambda: MistralTokenizer.v3(is_tekken=True),
                "v3tm": lambda: MistralTokenizer.v3(is_tekken=True, is_mm=True),
                "v7": MistralTokenizer.v7,
                "v7m": lambda: MistralTokenizer.v7(is_mm=True),
            }[kind]()  # type: ignore[no-untyped-call]
            _TOKENIZERS[kind] = tok
        return tok


def builtin_mistral_counter(model: str, provider: str = "mistral") -> MistralCounter | None:
    """The built-in counter for a Mistral model name, or None (not Mistral, or
    mistral-common not installed / missing ``sentencepiece`` for a legacy model)."""
    m = model.lower()
    kind = next((k for prefix, k in _BUILTIN if m.startswith(prefix)), None)
    exact = kind is not None
    if kind is None:
        if not _FAMILY.search(m):
            return None
        kind = _APPROXIMATE
    try:
        tok = _load(kind)
    except ImportError:  # mistral-common (or sentencepiece) not installed
        return None
    return MistralCounter(tok, model=model, provider=provider, exact=exact)


def mistral_from_file(path: str) -> Any:
    """``MistralTokenizer.from_file(path)`` (raises ImportError without mistral-common)."""
    from mistral_common.tokens.tokenizers.mistral import MistralTokenizer

    return MistralTokenizer.from_file(path)


def as_mistral_tokenizer(obj: Any) -> Any:
    """A ``MistralTokenizer`` from one, or from a raw ``Tekkenizer`` (via its file)."""
    if hasattr(obj, "encode_chat_completion"):
        return obj
    path = getattr(obj, "file_path", None)
    if path is None:
        raise ConfigurationError(
            "this mistral-common tokenizer has no file to build a MistralTokenizer from; "
            "pass MistralTokenizer.from_file(path) instead."
        )
    return mistral_from_file(str(path))


_VALID_ID = re.compile(r"^[a-zA-Z0-9]{9}$")


def _mistral_id(call_id: str) -> str:
    """Mistral requires 9-character alphanumeric tool call ids (its API issues them); other
    ids are mapped to a stable 9-character one, as a request to Mistral would need."""
    if _VALID_ID.match(call_id):
        return call_id
    return hashlib.sha1(call_id.encode()).hexdigest()[:9]


class MistralCounter:
    """Counts with a mistral-common ``MistralTokenizer`` (exact chat template and tools)."""

    def __init__(
        self, tokenizer: Any, *, model: str, provider: str = "mistral", exact: bool = True
    ) -> None:
        self.tokenizer = tokenizer
        self.model = model
        self.provider = provider
        self.exact = exact
        self.text_exact = exact
        raw = tokenizer.instruct_tokenizer.tokenizer
        self._raw = raw
        self.name = f"mistral-common:{getattr(raw, 'version', '')}".rstrip(":")
        if not exact:
            self.name += " (approximate)"
        self._bos = 1  # every encoded request starts with <s>
        self._cache: dict[Any, int] = {}

    # -- text ----------------------------------------------------------------------------
    def _len(self, text: str) -> int:
        return len(self._raw.encode(text, bos=False, eos=False)) if text else 0

    def count_text(self, text: str) -> int:
        return self._len(text)

    def encode(self, text: str) -> list[int]:
        return list(self._raw.encode(text, bos=False, eos=False))

    def decode(self, tokens: Sequence[int]) -> str:
        return str(self._raw.decode(list(tokens)))

    def truncate(self, text: str, max_tokens: int) -> str:
        if max_tokens <= 0 or not text:
            return ""
        toks = self.encode(text)
        if len(toks) <= max_tokens:
            return text
        return longest_prefix(
            toks,
            max_tokens,
            lambda head: self.decode(head).rstrip("\ufffd"),
            lambda out: text.startswith(out) and self._len(out) <= max_tokens,
        )

    # -- requests ------------------------------------------------------------------------
    def _request(
        self, messages: Iterable[Message | Mapping[str, Any]], tools: Sequence[Any] | None
    ) -> tuple[Any, int, bool]:
        """The ChatCompletionRequest, tokens of parts left out of it, and whether any were."""
        from mistral_common.protocol.instruct.request import ChatCompletionRequest

        extra = 0
        approx = False
        out: list[dict[str, Any]] = []
        for raw in messages:
            d = raw.to_openai() if isinstance(raw, Message) else dict(raw)
            d["role"] = Message.from_openai(d).role
            content = d.get("content")
            if content is not None and not isinstance(content, str):
                kept: list[Any] = []
                for part in content:
                    ptype = part.get("type") if isinstance(part, Mapping) else None
                    if ptype in TEXT_PARTS:
                        kept.append({"type": "text", "text": part.get("text") or ""})
                    elif ptype in IMAGE_PARTS and _is_data_url(part):
                        kept.append(part)
                    else:  # remote images (never fetched), documents, other blocks
                        counted = count_parts([part], self._len, self.provider, self.model)
                        extra += counted.tokens
                        approx = True
                d["content"] = kept if kept else ""
            if d.get("tool_calls"):
                d["tool_calls"] = [
                    {**c, "id": _mistral_id(str(c.get("id") or ""))} for c in d["tool_calls"]
                ]
            if d.get("tool_call_id"):
                d["tool_call_id"] = _mistral_id(str(d["tool_call_id"]))
            out.append(d)
        openai_tools = [
            t if "function" in t else {"type": "function", "function": t} for t in (tools or ())
        ]
        request = ChatCompletionRequest.from_openai(out, openai_tools or None)
        return request, extra, approx

    def count_messages_detailed(
        self,
        messages: Iterable[Message | Mapping[str, Any]],
        tools: Sequence[Any] | None = None,
        *,
        tool_choice: Any = None,
    ) -> TokenCount:
        """Exact prompt tokens of the request (mistral-common's tokenization)."""
        msgs = list(messages)
        if not msgs:
            return TokenCount(0, self.exact, self.name)
        request, extra, approx = self._request(msgs, tools)
        tokens = self.tokenizer.encode_chat_completion(request).tokens
        return TokenCount(len(tokens) + extra, self.exact and not approx, self.name)

    def count_messages(
        self,
        messages: Iterable[Message | Mapping[str, Any]],
        tools: Sequence[Any] | None = None,
        *,
        tool_choice: Any = None,
    ) -> int:
        return self.count_messages_detailed(messages, tools, tool_choice=tool_choice).tokens

    def count_message(self, message: Message | Mapping[str, Any]) -> int:
        """One message's share of a request: its content and tool calls plus its template
        tokens (``[INST]``/``[/INST]``, ``</s>``, ``[TOOL_RESULTS]``...), measured as the
        difference it makes to a request. Additive up to the system prompt's placement."""
        m = message if isinstance(message, Message) else Message.from_openai(message)
        key = (m.role, str(m.content), m.tool_calls, m.tool_call_id)
        n = self._cache.get(key)
        if n is None:
            n = self._message_tokens(m)
            if len(self._cache) > 8192:
                self._cache.clear()
            self._cache[key] = n
        return n

    def _message_tokens(self, m: Message) -> int:
        # mistral-common's v3+ rendering: [INST]user[/INST], assistant</s>,
        # [TOOL_CALLS][{"name", "arguments", "id"}]</s>, [TOOL_RESULTS]{"content", "call_id"}
        # [/TOOL_RESULTS]; the system prompt joins the last user turn with "\n\n" (or sits
        # in [SYSTEM_PROMPT] ... [/SYSTEM_PROMPT] from v7 on).
        content = self._len(m.text)
        if m.role in ("system", "developer"):
            return content + 2
        if m.role == "assistant":
            if not m.tool_calls:
                return content + 1
            calls = [
                {"name": c.name, "arguments": _json_or_text(c.arguments), "id": _mistral_id(c.id)}
                for c in m.tool_calls
            ]
            return content + 2 + self._len(json.dumps(calls, ensure_ascii=False))
        if m.role in ("tool", "function"):
            result = {
                "content": _json_or_text(m.text),
                "call_id": _mistral_id(m.tool_call_id or ""),
            }
            return 2 + self._len(json.dumps(result, ensure_ascii=False))
        return content + 2


def _json_or_text(value: str) -> Any:
    try:
        return json.loads(value)
    except ValueError:
        return value


def _is_data_url(part: Mapping[str, Any]) -> bool:
    iu = part.get("image_url")
    url = iu.get("url") if isinstance(iu, Mapping) else iu
    return isinstance(url, str) and url.startswith("data:")
