"""Input hygiene at the boundary: what a store may receive, decided once.

Every value that reaches a budget store or a ledger passes through here when it
enters tokenward (the Accountant for calls, ``Budget`` for scope keys):

* text: lone surrogates become U+FFFD (they cannot be encoded as UTF-8, so SQLite,
  PostgreSQL and Redis would refuse them), NUL characters are removed (PostgreSQL
  ``text`` cannot hold them);
* keys (dimension values, tag keys and values, model names, run ids) longer than
  :data:`MAX_KEY` characters are replaced by a bounded form (a prefix and a hash of the
  whole value) so no btree index or key limit is ever hit; the caller keeps the
  original for display;
* counts are ints in ``[0, 2**63)`` (every store keeps 64-bit signed integers).

The fast path (ASCII, short, no NUL) costs a few hundred nanoseconds per value.
"""

from __future__ import annotations

import hashlib

__all__ = ["MAX_COUNT", "MAX_KEY", "MAX_TEXT", "bounded", "clean", "count_ok", "key"]

#: Longest dimension value, tag or model name kept as is (characters).
MAX_KEY = 200
#: Longest original kept for display beside a bounded key (characters).
MAX_TEXT = 8192
#: Counts and amounts are below this (64-bit signed integers in every store).
MAX_COUNT = 2**63


def clean(text: str) -> str:
    """``text`` with lone surrogates replaced by U+FFFD and NUL characters removed."""
    if not text.isascii():  # O(1) in CPython: a flag of the string
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            # utf-16 with surrogatepass joins valid pairs; each lone one decodes to U+FFFD
            text = text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    if "\x00" in text:
        text = text.replace("\x00", "")
    return text


def bounded(text: str) -> str:
    """A cleaned ``text`` no longer than :data:`MAX_KEY`: long values become a prefix, ``#``
    and 16 hex digits of their SHA-256, so distinct values stay distinct."""
    if len(text) <= MAX_KEY:
        return text
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
    return f"{text[: MAX_KEY - 17]}#{digest}"


def key(text: str) -> str:
    """``bounded(clean(text))``: a key (run id, model name) as stores receive it. Clean short
    ASCII (almost every key) is returned as it is after two O(1) checks and one scan."""
    if text.isascii() and len(text) <= MAX_KEY and "\x00" not in text:
        return text
    return bounded(clean(text))


def count_ok(value: object) -> bool:
    """True for an int (not a bool) in ``[0, 2**63)``."""
    return type(value) is int and 0 <= value < MAX_COUNT
