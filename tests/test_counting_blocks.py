"""Anthropic-native content blocks are counted like text: tool_use, tool_result, thinking,
redacted_thinking, document (PDF pages read from the file), search_result, images -- in
count_messages, through the LangChain and LlamaIndex converters, and in trimming."""

from __future__ import annotations

import base64
import json
import struct
import zlib
from pathlib import Path

import pytest

from tokenward.counting import count_messages, get_counter, get_encoding, pdf_page_count
from tokenward.counting._anthropic import tool_prompt_tokens
from tokenward.counting._images import DOCUMENT_TOKENS_PER_PAGE, image_tokens
from tokenward.messages import Message

DATA = Path(__file__).parent / "data"
CLAUDE = "claude-sonnet-4-5"
O200K = get_encoding("o200k_base")


def n(text: str) -> int:
    return len(O200K.encode_ordinary(text))


def tokens(content, model=CLAUDE, role="user") -> int:
    return count_messages([{"role": role, "content": content}], model).tokens


EMPTY = tokens([])  # a message with no content: per-message overhead + priming

TOOL_INPUT = {"location": "San Francisco, CA", "unit": "celsius", "days": [1, 2, 3]}
LONG_RESULT = "Forecast: " + "sunny and mild with a light breeze from the west; " * 60


def test_tool_use_counts_name_and_json_input():
    block = {"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": TOOL_INPUT}
    got = tokens([block], role="assistant") - tokens([], role="assistant")
    assert got == 3 + n("get_weather") + n(json.dumps(TOOL_INPUT, separators=(",", ":")))


def test_tool_result_counts_its_text_and_blocks():
    as_text = {"type": "tool_result", "tool_use_id": "toolu_01", "content": LONG_RESULT}
    as_blocks = {
        "type": "tool_result",
        "tool_use_id": "toolu_01",
        "content": [{"type": "text", "text": LONG_RESULT}],
    }
    assert tokens([as_text]) - EMPTY == 3 + n(LONG_RESULT) > 600
    assert tokens([as_blocks]) == tokens([as_text])


def test_thinking_counts_its_text():
    thought = "The user wants a proof. Primes of the form 4k+3: assume finitely many... " * 5
    block = {"type": "thinking", "thinking": thought, "signature": "EuYBCkQYAiJA" * 20}
    assert tokens([block], role="assistant") - tokens([], role="assistant") == n(thought)


def test_redacted_thinking_counts_its_hidden_size_flagged():
    data = base64.b64encode(b"\x8f" * 3000).decode()  # ~3 KB of ciphertext
    res = count_messages(
        [{"role": "assistant", "content": [{"type": "redacted_thinking", "data": data}]}], CLAUDE
    )
    hidden = res.tokens - tokens([], role="assistant")
    assert 600 <= hidden <= 900 and res.exact is False


# -- PDFs ---------------------------------------------------------------------------------


def _pdf(pages: int, compressed: bool) -> bytes:
    """A minimal valid PDF; with ``compressed`` its page tree sits in a Flate object stream
    (PDF 1.5 style), where a byte search for ``/Count`` finds nothing."""
    objs = {1: b"<< /Type /Catalog /Pages 2 0 R >>"}
    kids = " ".join(f"{3 + i} 0 R" for i in range(pages))
    objs[2] = f"<< /Type /Pages /Kids [{kids}] /Count {pages} >>".encode()
    for i in range(pages):
        objs[3 + i] = b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] >>"
    out = bytearray(b"%PDF-1.5\n%\xe2\xe3\xcf\xd3\n")
    if compressed:
        inner = sorted(k for k in objs if k != 1)
        header, body = [], b""
        for k in inner:
            header.append(f"{k} {len(body)}")
            body += objs[k] + b"\n"
        head = " ".join(header).encode() + b"\n"
        stream = zlib.compress(head + body)
        out += b"1 0 obj\n" + objs[1] + b"\nendobj\n"
        out += (
            f"{len(objs) + 1} 0 obj\n<< /Type /ObjStm /N {len(inner)} /First {len(head)} "
            f"/Filter /FlateDecode /Length {len(stream)} >>\nstream\n"
        ).encode()
        out += stream + b"\nendstream\nendobj\n"
    else:
        for k, v in sorted(objs.items()):
            out += f"{k} 0 obj\n".encode() + v + b"\nendobj\n"
    out += b"trailer\n<< /Root 1 0 R >>\n%%EOF\n"
    return bytes(out)


@pytest.mark.parametrize("compressed", [False, True])
def test_pdf_page_count_from_the_file(compressed):
    assert pdf_page_count(_pdf(3, compressed)) == 3
    assert pdf_page_count(_pdf(1, compressed)) == 1
    assert pdf_page_count(b"not a pdf") is None


def test_pdf_page_count_of_a_real_browser_pdf():
    assert pdf_page_count((DATA / "three_pages_chromium.pdf").read_bytes()) == 3


def test_document_block_counts_pages_from_the_pdf():
    pdf = base64.b64encode((DATA / "three_pages_chromium.pdf").read_bytes()).decode()
    block = {
        "type": "document",
        "source": {"type": "base64", "media_type": "application/pdf", "data": pdf},
        "title": "Quarterly report",
    }
    res = count_messages([{"role": "user", "content": [block]}], CLAUDE)
    assert res.tokens - EMPTY == 3 * DOCUMENT_TOKENS_PER_PAGE["anthropic"] + n("Quarterly report")
    assert res.exact is False  # per-page figures are a published range
    # OpenAI's file part reads the same file
    part = {"type": "file", "file": {"file_data": f"data:application/pdf;base64,{pdf}"}}
    got = count_messages([{"role": "user", "content": [part]}], "gpt-4o").tokens
    assert got - count_messages([{"role": "user", "content": []}], "gpt-4o").tokens == 3 * 3000


def test_plain_text_document_is_tokenized():
    text = "Section 1. The lessee shall maintain the premises in good repair. " * 20
    block = {
        "type": "document",
        "source": {"type": "text", "media_type": "text/plain", "data": text},
    }
    res = count_messages([{"role": "user", "content": [block]}], CLAUDE)
    assert res.tokens - EMPTY == n(text)


def test_search_result_counts_source_title_and_content():
    block = {
        "type": "search_result",
        "source": "https://docs.example.com/api/auth",
        "title": "Authentication",
        "content": [{"type": "text", "text": "All requests need a bearer token in the header."}],
        "citations": {"enabled": True},
    }
    expected = n(block["source"]) + n("Authentication") + n(block["content"][0]["text"])
    assert tokens([block]) - EMPTY == expected


def _png(w: int, h: int) -> str:
    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    raw = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
    return base64.b64encode(raw + chunk(b"IEND", b"")).decode()


def test_image_inside_a_tool_result_counts_by_the_image_formula():
    image = {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/png", "data": _png(800, 600)},
    }
    block = {"type": "tool_result", "tool_use_id": "toolu_02", "content": [image]}
    assert tokens([block]) - EMPTY == 3 + image_tokens("anthropic", 800, 600) == 3 + 640


# -- the Anthropic docs' examples (docs: build-with-claude/token-counting) --------------------


def test_docs_basic_example_count():
    msgs = [
        {"role": "system", "content": "You are a scientist"},
        {"role": "user", "content": "Hello, Claude"},
    ]
    assert count_messages(msgs, "claude-opus-4-20250514").tokens == 14  # docs: 14


def test_docs_tool_use_example_within_the_documented_tool_prompt():
    tools = [
        {
            "name": "get_weather",
            "description": "Get the current weather in a given location",
            "input_schema": {
                "type": "object",
                "properties": {
                    "location": {
                        "type": "string",
                        "description": "The city and state, e.g. San Francisco, CA",
                    }
                },
                "required": ["location"],
            },
        }
    ]
    msgs = [{"role": "user", "content": "What's the weather like in San Francisco?"}]
    got = count_messages(msgs, "claude-opus-4-20250514", tools=tools).tokens
    # docs: 403 = content + definitions + the tool-use system prompt (313-346 for Opus 4,
    # depending on the revision of the docs' table)
    without = count_messages(msgs, "claude-opus-4-20250514").tokens
    assert tool_prompt_tokens("claude-opus-4-20250514") == 313
    assert got - without == 313 + n(json.dumps(tools[0], separators=(",", ":")))
    assert 403 - 33 <= got <= 403 + 33


def test_docs_thinking_example_within_tolerance():
    msgs = [
        {
            "role": "user",
            "content": "Are there an infinite number of prime numbers such that n mod 4 == 3?",
        },
        {
            "role": "assistant",
            "content": [
                {
                    "type": "thinking",
                    "thinking": "This is a nice number theory question. Let's think about it step by step...",
                    "signature": "EuYBCkQYAiJAgCs1le6/Pol5Z4/JMomVOouGrWdhYNsH3ukzUECbB6iWrSQtsQuRHJID6lWV...",
                },
                {
                    "type": "text",
                    "text": "Yes, there are infinitely many prime numbers p such that p mod 4 = 3...",
                },
            ],
        },
        {"role": "user", "content": "Can you write a formal proof?"},
    ]
    got = count_messages(msgs, "claude-opus-5").tokens
    assert abs(got - 88) <= 0.2 * 88  # docs: 88; o200k stands in for Claude's tokenizer


# -- through the converters and the trimmer --------------------------------------------------


def test_langchain_anthropic_message_counts_blocks_once():
    from langchain_core.messages import AIMessage, HumanMessage, ToolMessage

    from tokenward.integrations.langchain._convert import messages_for_preflight

    thought = "Weather lookups need a city; the user gave one. " * 10
    ai = AIMessage(
        content=[
            {"type": "thinking", "thinking": thought, "signature": "sig"},
            {"type": "text", "text": "Checking."},
            {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": TOOL_INPUT},
        ],
        tool_calls=[{"id": "toolu_1", "name": "get_weather", "args": TOOL_INPUT}],
    )
    tool = ToolMessage(content=[{"type": "text", "text": LONG_RESULT}], tool_call_id="toolu_1")
    core = messages_for_preflight([[HumanMessage("Weather in SF?"), ai, tool]])
    counter = get_counter(CLAUDE)
    call = 3 + n("get_weather") + n(json.dumps(TOOL_INPUT, separators=(",", ":")))
    ai_alone = counter.count_message(core[1])
    assert ai_alone == 3 + n("assistant") + n(thought) + n("Checking.") + call  # call once
    assert counter.count_message(core[2]) == 3 + n("tool") + n(LONG_RESULT)


def test_llama_index_blocks_reach_the_counter():
    from llama_index.core.base.llms.types import (
        ChatMessage,
        DocumentBlock,
        TextBlock,
        ThinkingBlock,
    )

    from tokenward.integrations.llama_index._common import to_message

    thought = "First check the units, then convert. " * 12
    pdf = (DATA / "three_pages_chromium.pdf").read_bytes()
    msg = ChatMessage(
        role="user",
        blocks=[
            TextBlock(text="Summarize."),
            DocumentBlock(data=pdf, document_mimetype="application/pdf", title="Report"),
        ],
    )
    reply = ChatMessage(
        role="assistant", blocks=[ThinkingBlock(content=thought), TextBlock(text="Done.")]
    )
    counter = get_counter(CLAUDE)
    assert counter.count_message(to_message(reply)) == 3 + n("assistant") + n(thought) + n("Done.")
    got = counter.count_message(to_message(msg))
    assert (
        got
        == 3 + n("user") + n("Summarize.") + n("Report") + 3 * DOCUMENT_TOKENS_PER_PAGE["anthropic"]
    )


def test_trimming_sees_tool_result_size():
    from tokenward.context import trim_history

    history = [
        Message(role="user", content="What's the forecast?"),
        Message(
            role="assistant",
            content=[{"type": "tool_use", "id": "t1", "name": "forecast", "input": {}}],
        ),
        Message(
            role="user",
            content=[{"type": "tool_result", "tool_use_id": "t1", "content": LONG_RESULT}],
        ),
        Message(role="assistant", content="Sunny all week."),
        Message(role="user", content="Thanks!"),
    ]
    kept = trim_history(history, 200, CLAUDE)
    assert all(
        not isinstance(m.content, list) or m.content[0]["type"] != "tool_result" for m in kept
    )
    assert len(trim_history(history, 2000, CLAUDE)) == 5
