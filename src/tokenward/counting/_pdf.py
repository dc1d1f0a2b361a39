"""Page count of a PDF, read from the document itself (no dependency).

A PDF's page tree root is a ``/Type /Pages`` dictionary whose ``/Count`` is the number of
pages below it; intermediate nodes count only their subtree, so the largest ``/Count`` of a
``/Pages`` node is the document's page count. PDF 1.5+ files often keep those dictionaries
in compressed object streams (``/Type /ObjStm``, FlateDecode), so every Flate stream is
inflated and searched too. When no page tree is found (a damaged file), the ``/Type /Page``
leaf objects are counted instead. Encrypted PDFs keep their page tree readable (only strings
and streams are encrypted), except in encrypted object streams, where the leaf count of the
uncompressed part is all there is.

Pulling in a PDF library (pypdf, ~1 MB) for one integer was not worth a core dependency; this
reader handles the files produced by browsers, office suites, LaTeX and scanners in the tests.
"""

from __future__ import annotations

import base64
import binascii
import re
import zlib

__all__ = ["pdf_page_count", "pdf_page_count_base64"]

_COUNT = re.compile(rb"/Type\s*/Pages\b[^>]*?/Count\s+(\d+)|/Count\s+(\d+)[^>]*?/Type\s*/Pages\b")
_LEAF = re.compile(rb"/Type\s*/Page(?![a-zA-Z])")
_STREAM = re.compile(rb"stream\r?\n")
_MAX_INFLATE = 64 << 20  # never inflate more than this per document


def _streams(data: bytes) -> list[bytes]:
    """Every stream body of ``data`` that inflates (Flate), bounded in total size."""
    out: list[bytes] = []
    budget = _MAX_INFLATE
    for m in _STREAM.finditer(data):
        start = m.end()
        end = data.find(b"endstream", start)
        if end < 0:
            break
        d = zlib.decompressobj()
        try:
            body = d.decompress(data[start:end], budget)
        except zlib.error:
            continue
        budget -= len(body)
        out.append(body)
        if budget <= 0:
            break
    return out


def _pages_in(chunks: list[bytes]) -> tuple[int, int]:
    """``(largest /Count of a /Pages node, number of /Page leaves)`` over ``chunks``."""
    largest = 0
    leaves = 0
    for chunk in chunks:
        for m in _COUNT.finditer(chunk):
            largest = max(largest, int(m.group(1) or m.group(2)))
        leaves += len(_LEAF.findall(chunk))
    return largest, leaves


def pdf_page_count(data: bytes) -> int | None:
    """Pages of the PDF ``data``, or None when it is not a PDF we can read."""
    if not data.lstrip()[:5].startswith(b"%PDF"):
        return None
    largest, leaves = _pages_in([data])
    if largest:
        return largest
    deep_largest, deep_leaves = _pages_in(_streams(data))
    if deep_largest:
        return deep_largest
    return (leaves + deep_leaves) or None


def pdf_page_count_base64(payload: str) -> int | None:
    """Pages of a base64 PDF (bare or a ``data:application/pdf;base64,`` URL), or None."""
    if payload.startswith("data:"):
        comma = payload.find(",")
        if comma < 0 or ";base64" not in payload[:comma]:
            return None
        payload = payload[comma + 1 :]
    try:
        raw = base64.b64decode(payload + "=" * (-len(payload) % 4), validate=False)
    except (binascii.Error, ValueError):
        return None
    return pdf_page_count(raw)
