"""Image and document formulas, and the pure-Python image header parser."""

from __future__ import annotations

import base64
import struct
import zlib

import pytest

from tokenward.counting import (
    count_messages,
    document_tokens,
    get_counter,
    image_size_from_bytes,
    image_size_from_data_url,
    image_tokens,
)


def _png(w: int, h: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
        + chunk(b"IEND", b"")
    )


def _jpeg(w: int, h: int, exif: int = 0) -> bytes:
    app1 = b"\xff\xe1" + struct.pack(">H", exif + 2) + b"\x00" * exif if exif else b""
    sof = b"\xff\xc0" + struct.pack(">HBHHB", 11, 8, h, w, 1) + b"\x01\x11\x00"
    return b"\xff\xd8" + app1 + b"\xff\xdb\x00\x04\x00\x00" + sof + b"\xff\xd9"


def _gif(w: int, h: int) -> bytes:
    return b"GIF89a" + struct.pack("<HH", w, h) + b"\x00" * 10


@pytest.mark.parametrize(
    ("w", "h", "detail", "expected"),
    [
        (1024, 1024, "high", 765),  # OpenAI docs example
        (2048, 4096, "high", 1105),  # OpenAI docs example
        (4096, 8192, "low", 85),  # low detail: base only
        (512, 512, "high", 255),
        (513, 500, "high", 425),
        (100, 100, "auto", 255),  # auto counted as high (upper bound)
    ],
)
def test_openai_tile_formula(w, h, detail, expected):
    assert image_tokens("openai", w, h, detail) == expected


def test_openai_per_model_constants():
    assert image_tokens("openai", 1024, 1024, "high", model="gpt-4o-mini") == 2833 + 4 * 5667
    assert image_tokens("openai", 1024, 1024, "low", model="gpt-4o-mini") == 2833
    assert image_tokens("openai", 1024, 1024, "high", model="o1") == 75 + 4 * 150
    # patch models: 32px patches capped at 1536, times the model multiplier
    assert image_tokens("openai", 1024, 1024, model="gpt-4.1-mini") == 1659  # ceil(1024 * 1.62)
    assert image_tokens("openai", 1800, 2400, model="gpt-4.1-nano") == 3572  # ceil(1452 * 2.46)
    assert image_tokens("openai", None, None, "high") == 85 + 8 * 170  # unknown size: upper bound


def test_anthropic_and_gemini_formulas():
    assert image_tokens("anthropic", 200, 200) == 54  # docs: ~54
    assert image_tokens("anthropic", 1000, 1000) == 1334  # docs: ~1334
    assert image_tokens("anthropic", 1092, 1092) == 1590  # docs: ~1590 (max 1:1 size)
    assert image_tokens("anthropic", 4000, 3000) <= 1600  # scaled down to ~1.15 MP
    assert image_tokens("gemini", 300, 300) == 258
    assert image_tokens("google", 1000, 1000) == 258 * 4


def test_documents_by_page():
    assert document_tokens("gemini", 10) == 2580
    assert document_tokens("anthropic", 2) == 6000


def test_header_parser():
    assert image_size_from_bytes(_png(640, 480)) == (640, 480)
    assert image_size_from_bytes(_jpeg(1920, 1080)) == (1920, 1080)
    assert image_size_from_bytes(_gif(32, 16)) == (32, 16)
    assert image_size_from_bytes(b"not an image") is None
    big_exif = base64.b64encode(_jpeg(800, 600, exif=20000)).decode()
    assert image_size_from_data_url("data:image/jpeg;base64," + big_exif) == (800, 600)
    assert image_size_from_data_url("data:image/png;base64,%%%") is None


def test_image_parts_in_messages():
    url = "data:image/png;base64," + base64.b64encode(_png(1024, 1024)).decode()
    msg = {
        "role": "user",
        "content": [
            {"type": "text", "text": "What is this?"},
            {"type": "image_url", "image_url": {"url": url, "detail": "high"}},
        ],
    }
    c = get_counter("gpt-4o")
    text_only = c.count_message({"role": "user", "content": "What is this?"})
    assert c.count_message(msg) == text_only + 765
    res = count_messages([msg], "gpt-4o")
    assert res.tokens == text_only + 765 + 3 and res.exact is True
    # gpt-4o-mini multipliers
    assert get_counter("gpt-4o-mini").count_message(msg) == text_only + 2833 + 4 * 5667
    # size from part metadata; remote URL without size -> upper bound, flagged inexact
    meta = {
        "type": "image_url",
        "image_url": {"url": "https://x/y.png", "detail": "low"},
        "width": 10,
        "height": 10,
    }
    assert c.count_message({"role": "user", "content": [meta]}) == 3 + 1 + 85
    remote = [
        {
            "role": "user",
            "content": [{"type": "image_url", "image_url": {"url": "https://x/y.png"}}],
        }
    ]
    res = count_messages(remote, "gpt-4o")
    assert res.exact is False and res.tokens == 3 + 1 + 85 + 8 * 170 + 3
    # cached approximate message stays flagged on re-count
    assert count_messages(remote, "gpt-4o").exact is False


def test_anthropic_image_block_in_estimated_counter():
    data = base64.b64encode(_png(1000, 1000)).decode()
    msg = {
        "role": "user",
        "content": [
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": data}}
        ],
    }
    c = get_counter("claude-3-5-sonnet-20241022")
    assert c.count_message(msg) == 3 + c.count_text("user") + 1334
