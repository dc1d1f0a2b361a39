"""Tokens of message content parts: OpenAI, Anthropic and LangChain standard blocks.

Text is tokenized wherever a block carries it; everything else follows the rule that counts
the text the model reads:

* ``text`` / ``input_text`` / ``output_text`` / ``refusal``: the text;
* ``tool_use`` / ``server_tool_use`` (Anthropic) and ``tool_call`` (LangChain v1): the name and
  the JSON input, plus the per-call overhead of the chat formula;
* ``tool_result`` and the server tools' ``*_tool_result`` blocks: their content, recursively
  (text, images, documents, search results);
* ``thinking`` / ``reasoning``: the thinking text; ``redacted_thinking``: its encrypted payload
  sized like the text it hides (flagged approximate);
* ``document`` / ``file`` / ``input_file``: a PDF counts its pages (read from the base64 data
  itself) times the provider's per-page figure, a plain-text source counts its text, a content
  source its blocks; title and context count as text;
* ``search_result``: source, title and content text;
* images: the provider's image formula (:mod:`._images`).

A count that used a published range (document pages) or a size it could not read (a remote
image or PDF) is flagged approximate.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from tokenward.counting._images import document_tokens, image_part_info, image_tokens
from tokenward.counting._pdf import pdf_page_count_base64

__all__ = ["TOOL_CALL_OVERHEAD", "PartsCount", "count_parts", "json_text"]

#: tokens around one tool call besides its name and arguments (OpenAI's function-call
#: formula, hmarr/openai-chat-tokens); used for every provider's tool call blocks.
TOOL_CALL_OVERHEAD = 3
#: encrypted thinking is base64 of ciphertext about as long as the UTF-8 text; English text
#: runs ~4 bytes per token, so ~5.3 base64 characters per hidden token.
_REDACTED_CHARS_PER_TOKEN = 5.3

TEXT_PARTS = frozenset({"text", "input_text", "output_text", "refusal"})
IMAGE_PARTS = frozenset({"image_url", "image", "input_image"})
DOC_PARTS = frozenset({"file", "document", "input_file"})
TOOL_CALL_PARTS = frozenset({"tool_use", "server_tool_use", "tool_call", "mcp_tool_use"})
THINKING_PARTS = frozenset({"thinking", "reasoning"})


@dataclass(slots=True)
class PartsCount:
    tokens: int = 0
    approx: bool = False
    #: ids of tool calls carried as content blocks (a message's ``tool_calls`` with the same
    #: id are the same calls, as LangChain keeps both)
    call_ids: tuple[str, ...] = ()


def json_text(value: Any) -> str:
    """Compact JSON of a tool call's input (a string is taken as already serialized)."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)


def count_parts(
    parts: Iterable[Any], length: Callable[[str], int], provider: str, model: str
) -> PartsCount:
    """Tokens of a list of content parts with ``length(text)`` as the text tokenizer."""
    out = PartsCount()
    ids: list[str] = []
    _add_parts(parts, length, provider, model, out, ids)
    out.call_ids = tuple(ids)
    return out


def _text(length: Callable[[str], int], value: Any) -> int:
    return length(value) if isinstance(value, str) and value else 0


def _add_parts(
    parts: Iterable[Any],
    length: Callable[[str], int],
    provider: str,
    model: str,
    out: PartsCount,
    ids: list[str],
) -> None:
    for part in parts or ():
        if isinstance(part, str):
            out.tokens += _text(length, part)
        elif isinstance(part, Mapping):
            _add_part(part, length, provider, model, out, ids)
        else:
            dump = getattr(part, "model_dump", None)  # SDK block objects (anthropic, openai)
            if dump is not None:
                _add_part(dump(), length, provider, model, out, ids)
            else:
                out.approx = True


def _add_part(
    part: Mapping[str, Any],
    length: Callable[[str], int],
    provider: str,
    model: str,
    out: PartsCount,
    ids: list[str],
) -> None:
    ptype = part.get("type")
    if ptype in TEXT_PARTS or (ptype is None and "text" in part):
        out.tokens += _text(length, part.get("text") or part.get("refusal"))
    elif ptype in TOOL_CALL_PARTS:
        args = part.get("input", part.get("args", part.get("arguments")))
        out.tokens += (
            TOOL_CALL_OVERHEAD + _text(length, part.get("name")) + _text(length, json_text(args))
        )
        if part.get("id"):
            ids.append(str(part["id"]))
    elif ptype == "tool_result" or (isinstance(ptype, str) and ptype.endswith("_tool_result")):
        out.tokens += TOOL_CALL_OVERHEAD
        _add_content(part.get("content"), length, provider, model, out, ids)
    elif ptype in THINKING_PARTS:
        text = part.get("thinking") or part.get("reasoning") or part.get("text")
        if isinstance(text, str):
            out.tokens += _text(length, text)
        else:  # OpenAI Responses reasoning items carry a summary list
            _add_content(part.get("summary"), length, provider, model, out, ids)
    elif ptype == "redacted_thinking":
        data = part.get("data")
        if isinstance(data, str) and data:
            out.tokens += max(1, round(len(data) / _REDACTED_CHARS_PER_TOKEN))
        out.approx = True
    elif ptype in IMAGE_PARTS:
        w, h, detail = image_part_info(part)
        if w is None or h is None:
            out.approx = True
        out.tokens += image_tokens(provider, w, h, detail, model=model)
    elif ptype in DOC_PARTS:
        _add_document(part, length, provider, model, out, ids)
    elif ptype == "search_result" or ptype == "web_search_result":
        for key in ("source", "url", "title"):
            out.tokens += _text(length, part.get(key))
        _add_content(part.get("content"), length, provider, model, out, ids)
        if part.get("encrypted_content"):
            out.approx = True  # the page text the search tool read is not ours to see
    else:  # audio, video, containers...: no size-independent formula
        out.approx = True


def _add_content(
    content: Any,
    length: Callable[[str], int],
    provider: str,
    model: str,
    out: PartsCount,
    ids: list[str],
) -> None:
    if isinstance(content, str):
        out.tokens += _text(length, content)
    elif isinstance(content, Mapping):
        _add_part(content, length, provider, model, out, ids)
    elif content:
        _add_parts(content, length, provider, model, out, ids)


def _add_document(
    part: Mapping[str, Any],
    length: Callable[[str], int],
    provider: str,
    model: str,
    out: PartsCount,
    ids: list[str],
) -> None:
    for key in ("title", "context"):
        out.tokens += _text(length, part.get(key))
    src = part.get("source")
    file = part.get("file")
    data: Any = None
    if isinstance(src, Mapping):
        kind = src.get("type")
        if kind == "text":  # plain-text document: tokenized like any text
            out.tokens += _text(length, src.get("data"))
            return
        if kind == "content":
            _add_content(src.get("content"), length, provider, model, out, ids)
            return
        data = src.get("data") if kind == "base64" else None
    elif isinstance(file, Mapping):  # OpenAI chat {"type": "file", "file": {"file_data"}}
        data = file.get("file_data")
    else:
        data = part.get("file_data") or part.get("data") or part.get("base64")
    pages = part.get("pages") or part.get("page_count")
    meta = part.get("metadata")
    if not pages and isinstance(meta, Mapping):
        pages = meta.get("pages")
    if not pages and isinstance(data, str) and data:
        pages = pdf_page_count_base64(data)
    out.approx = True  # per-page figures are published ranges, never exact
    out.tokens += document_tokens(provider, int(pages) if pages else 1)
    out.tokens += _text(length, part.get("text"))
