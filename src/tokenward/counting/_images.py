"""Image and document token formulas (published by the providers; formulas, not tokenizers).

* OpenAI, tile models (gpt-4o, gpt-4.1, gpt-4.5, o1, o3, gpt-5...): ``detail="low"`` costs the
  base tokens; ``"high"``/``"auto"`` scales the image to fit 2048x2048, then so the shortest
  side is at most 768 px, and costs ``base + tile * number_of_512px_tiles``. Base/tile are
  85/170 for gpt-4o/4.1/4.5, 2833/5667 for gpt-4o-mini (same dollar price as gpt-4o at the
  mini's lower token price), 75/150 for o1/o3, 70/140 for gpt-5.
  Source: https://platform.openai.com/docs/guides/images-vision#calculating-costs
  Examples there: 1024x1024 high = 765, 2048x4096 high = 1105, any low = 85.
  ``"auto"`` is counted as ``"high"`` (an upper bound: the API may pick low for small images).
* OpenAI, patch models (gpt-4.1-mini/nano, o4-mini, gpt-5-mini/nano): 32x32 px patches, capped
  at 1536 (image scaled down to fit), times a per-model multiplier (1.62, 2.46, 1.72).
* Anthropic: ``ceil(width * height / 750)`` after scaling so the long edge is <= 1568 px and
  the image is <= ~1.15 megapixels (about 1,600 tokens).
  Source: https://docs.anthropic.com/en/docs/build-with-claude/vision#calculate-image-costs
* Gemini: 258 tokens per image (images up to 384x384; Gemini 2.x tiles larger images into
  768x768 crops of 258 each, which we approximate by counting those tiles).
  Source: https://ai.google.dev/gemini-api/docs/tokens (media tokens).

Documents (PDF) are counted per page with :data:`DOCUMENT_TOKENS_PER_PAGE` (see its comment).

Image sizes come from the part's metadata (``width``/``height``) or from the PNG/JPEG/GIF/WebP
header of a base64 ``data:`` URL, parsed in pure Python (no Pillow). When the size is unknown
(a remote URL), :func:`image_tokens` is called with ``width=height=None`` and returns the
formula's upper bound; callers flag such counts ``exact=False``.
"""

from __future__ import annotations

import base64
import binascii
import math
import struct
from collections.abc import Mapping
from typing import Any

__all__ = [
    "DOCUMENT_TOKENS_PER_PAGE",
    "document_tokens",
    "image_size_from_bytes",
    "image_size_from_data_url",
    "image_tokens",
]

# (base, per-tile) for OpenAI tile-based models; first matching prefix wins (longest first).
_OPENAI_TILES: tuple[tuple[str, int, int], ...] = (
    ("gpt-4o-mini", 2833, 5667),
    ("computer-use", 65, 129),
    ("gpt-5-chat", 70, 140),
    ("gpt-5", 70, 140),
    ("o1", 75, 150),
    ("o3", 75, 150),
)
_OPENAI_DEFAULT_TILE = (85, 170)  # gpt-4o, gpt-4.1, gpt-4.5, gpt-4-turbo vision
# patch-based models: multiplier applied to min(patches, 1536)
_OPENAI_PATCHES: tuple[tuple[str, float], ...] = (
    ("gpt-4.1-mini", 1.62),
    ("gpt-4.1-nano", 2.46),
    ("gpt-5-mini", 1.62),
    ("gpt-5-nano", 2.46),
    ("o4-mini", 1.72),
)

#: Tokens per document page by provider.
#: * gemini: 258 per page ("each document page is equivalent to 258 tokens",
#:   https://ai.google.dev/gemini-api/docs/document-processing).
#: * anthropic: 1,500-3,000 tokens per page for text plus page image
#:   (https://docs.anthropic.com/en/docs/build-with-claude/pdf-support#estimate-your-costs);
#:   we use the upper end so budgets are not under-reserved.
#: * openai: the API sends extracted text plus an image of each page; no published figure,
#:   we use the same conservative 3,000.
DOCUMENT_TOKENS_PER_PAGE: dict[str, int] = {"gemini": 258, "anthropic": 3000, "openai": 3000}


def _openai_image_tokens(width: int | None, height: int | None, detail: str, model: str) -> int:
    m = model.lower().rsplit("/", 1)[-1]
    for prefix, mult in _OPENAI_PATCHES:
        if m.startswith(prefix):
            if width is None or height is None:
                return math.ceil(1536 * mult)
            return math.ceil(_patches(width, height) * mult)
    base, tile = _OPENAI_DEFAULT_TILE
    for prefix, b, t in _OPENAI_TILES:
        if m.startswith(prefix):
            base, tile = b, t
            break
    if detail == "low":
        return base
    if width is None or height is None:
        return base + tile * 8  # 768x2048 after scaling: the most tiles an image can use
    w, h = float(width), float(height)
    if w > 2048 or h > 2048:
        s = 2048 / max(w, h)
        w, h = w * s, h * s
    if min(w, h) > 768:
        s = 768 / min(w, h)
        w, h = w * s, h * s
    tiles = math.ceil(w / 512) * math.ceil(h / 512)
    return base + tile * tiles


def _patches(width: int, height: int) -> int:
    """OpenAI 32px patch count, capped at 1536 by scaling the image down."""
    w, h = float(width), float(height)
    raw = math.ceil(w / 32) * math.ceil(h / 32)
    if raw <= 1536:
        return raw
    r = math.sqrt(32 * 32 * 1536 / (w * h))
    r *= min(math.floor(w * r / 32) / (w * r / 32), math.floor(h * r / 32) / (h * r / 32))
    return min(1536, math.ceil(w * r / 32) * math.ceil(h * r / 32))


def _anthropic_image_tokens(width: int | None, height: int | None) -> int:
    if width is None or height is None:
        return 1600
    w, h = float(width), float(height)
    if max(w, h) > 1568:
        s = 1568 / max(w, h)
        w, h = w * s, h * s
    max_px = 1600 * 750  # ~1.15-1.2 MP, the documented ~1,600 token ceiling
    if w * h > max_px:
        s = math.sqrt(max_px / (w * h))
        w, h = w * s, h * s
    return max(1, math.ceil(int(w) * int(h) / 750))


def _gemini_image_tokens(width: int | None, height: int | None) -> int:
    if width is None or height is None or (width <= 384 and height <= 384):
        return 258
    # Gemini 2.x: larger images are cropped into 768x768 tiles, 258 tokens each.
    return 258 * math.ceil(width / 768) * math.ceil(height / 768)


def image_tokens(
    provider: str,
    width: int | None,
    height: int | None,
    detail: str = "auto",
    *,
    model: str = "",
) -> int:
    """Input tokens for one image by the provider's published formula.

    ``provider`` is ``"openai"``, ``"anthropic"`` or ``"gemini"`` (``"google"``/
    ``"vertex_ai"`` accepted). ``model`` selects OpenAI's per-model constants
    (e.g. gpt-4o-mini). Unknown size (``None``) gives the formula's upper bound.

    >>> image_tokens("openai", 1024, 1024, "high")
    765
    >>> image_tokens("openai", 2048, 4096, "high")
    1105
    """
    p = provider.lower()
    detail = (detail or "auto").lower()
    if p in ("openai", "azure", "azure_openai"):
        return _openai_image_tokens(width, height, detail, model or "gpt-4o")
    if p in ("anthropic", "bedrock", "claude"):
        return _anthropic_image_tokens(width, height)
    if p in ("gemini", "google", "vertex_ai", "vertex"):
        return _gemini_image_tokens(width, height)
    # Unknown provider: OpenAI's tile formula is the most widely copied one.
    return _openai_image_tokens(width, height, detail, model or "gpt-4o")


def document_tokens(provider: str, pages: int) -> int:
    """Input tokens for a document (PDF) of ``pages`` pages; see DOCUMENT_TOKENS_PER_PAGE."""
    p = provider.lower()
    p = {"google": "gemini", "vertex_ai": "gemini", "claude": "anthropic"}.get(p, p)
    return max(0, pages) * DOCUMENT_TOKENS_PER_PAGE.get(p, 3000)


# ---------------------------------------------------------------- image headers


def image_size_from_bytes(data: bytes) -> tuple[int, int] | None:
    """``(width, height)`` from a PNG, JPEG, GIF or WebP header, or None."""
    if len(data) >= 24 and data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR":
        w, h = struct.unpack(">II", data[16:24])
        return int(w), int(h)
    if len(data) >= 10 and data[:6] in (b"GIF87a", b"GIF89a"):
        w, h = struct.unpack("<HH", data[6:10])
        return int(w), int(h)
    if len(data) >= 30 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        kind = data[12:16]
        if kind == b"VP8X":
            w = 1 + int.from_bytes(data[24:27], "little")
            h = 1 + int.from_bytes(data[27:30], "little")
            return w, h
        if kind == b"VP8L" and data[20] == 0x2F:
            b = int.from_bytes(data[21:25], "little")
            return (b & 0x3FFF) + 1, ((b >> 14) & 0x3FFF) + 1
        if kind == b"VP8 " and data[23:26] == b"\x9d\x01\x2a":
            w, h = struct.unpack("<HH", data[26:30])
            return int(w & 0x3FFF), int(h & 0x3FFF)
        return None
    if len(data) >= 4 and data[:2] == b"\xff\xd8":
        i, n = 2, len(data)
        while i + 4 <= n:
            if data[i] != 0xFF:
                i += 1
                continue
            marker = data[i + 1]
            if marker == 0xFF:  # fill byte
                i += 1
                continue
            if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
                i += 2
                continue
            seg_len = int.from_bytes(data[i + 2 : i + 4], "big")
            if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
                if i + 9 > n:
                    return None
                h = int.from_bytes(data[i + 5 : i + 7], "big")
                w = int.from_bytes(data[i + 7 : i + 9], "big")
                return w, h
            i += 2 + seg_len
        return None
    return None


def image_size_from_data_url(url: str) -> tuple[int, int] | None:
    """Decode just enough of a ``data:image/...;base64,`` URL (or bare base64) to read the size."""
    if url.startswith("data:"):
        comma = url.find(",")
        if comma < 0 or ";base64" not in url[:comma]:
            return None
        payload = url[comma + 1 :]
    else:
        payload = url
    # A JPEG's SOF marker can sit after a large EXIF block: widen the window if needed.
    for chars in (4096, 65536, 1 << 20, len(payload)):
        chunk = payload[: chars - chars % 4] if chars < len(payload) else payload
        try:
            raw = base64.b64decode(chunk + "=" * (-len(chunk) % 4), validate=False)
        except (binascii.Error, ValueError):
            return None
        size = image_size_from_bytes(raw)
        if size is not None or chars >= len(payload):
            return size
        if raw[:2] != b"\xff\xd8":  # only JPEG benefits from reading further
            return None
    return None


def image_part_info(part: Mapping[str, Any]) -> tuple[int | None, int | None, str]:
    """``(width, height, detail)`` of an image content part in OpenAI, Anthropic or
    LangChain standard shape; sizes None when unknown."""
    detail = "auto"
    width = part.get("width")
    height = part.get("height")
    url: str | None = None
    iu = part.get("image_url")
    if isinstance(iu, Mapping):
        url = iu.get("url")
        detail = iu.get("detail") or detail
        width = width or iu.get("width")
        height = height or iu.get("height")
    elif isinstance(iu, str):
        url = iu
    src = part.get("source")
    if isinstance(src, Mapping):  # Anthropic {"type": "base64", "data": ...}
        if src.get("type") == "base64":
            url = src.get("data")
        else:
            url = src.get("url")
    if url is None:
        url = part.get("base64") or part.get("data") or part.get("url")
    detail = part.get("detail") or detail
    meta = part.get("metadata")
    if isinstance(meta, Mapping):
        width = width or meta.get("width")
        height = height or meta.get("height")
    if (width is None or height is None) and isinstance(url, str) and not url.startswith("http"):
        size = image_size_from_data_url(url)
        if size is not None:
            width, height = size
    w = int(width) if width is not None else None
    h = int(height) if height is not None else None
    return w, h, str(detail)
