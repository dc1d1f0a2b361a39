"""A cheap content class for a text, the key under which estimates are calibrated.

Providers' tokenizers differ from o200k by different ratios on different content: each
vocabulary splits each script its own way (Cyrillic, Arabic, Indic, CJK, accented Latin),
and code, structured data, emoji and base64 differently again. So calibration learns one
ratio per class. The class is decided from the first few thousand characters with C-level
regex counts; a wrong call only means a ratio learned under a neighbouring key.
"""

from __future__ import annotations

import re

__all__ = ["CONTENT_CLASSES", "content_class"]

#: the classes :func:`content_class` returns
CONTENT_CLASSES = (
    "prose",  # mostly ASCII letters: English and similar
    "latin",  # Latin script with diacritics: German, French, Polish, Vietnamese...
    "cyrillic",
    "arabic",
    "indic",  # Devanagari, Bengali, Tamil...
    "cjk",
    "script",  # other scripts: Greek, Hebrew, Thai, Georgian...
    "code",
    "json",
    "tabular",  # CSV, markdown tables
    "data",  # YAML and other key: value text
    "paths",  # URLs and file paths
    "emoji",
    "encoded",  # base64 and other long unbroken runs
)

_SAMPLE = 2000
_SCRIPTS = (
    ("cjk", re.compile("[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]")),
    ("cyrillic", re.compile("[\u0400-\u052f]")),
    ("arabic", re.compile("[\u0600-\u06ff\u0750-\u077f\ufb50-\ufdff\ufe70-\ufeff]")),
    ("indic", re.compile("[\u0900-\u0dff]")),
    ("script", re.compile("[\u0370-\u03ff\u0530-\u05ff\u0e00-\u0eff\u10a0-\u10ff]")),
)
_EMOJI = re.compile("[\U0001f000-\U0001faff\u2600-\u27bf\u200d\ufe0f]")
_ACCENTED = re.compile("[\u00c0-\u024f\u1e00-\u1eff]")
_ENCODED = re.compile(r"[A-Za-z0-9+/=_-]{60,}")
_CODE_MARKS = re.compile(
    r"[{}();=<>\[\]]|^\s{2,}\S|^\s*(?:def|class|import|from|return|fn|func|#include)\b", re.M
)
# JSON keys, YAML keys and list items; table rows, CSV rows (no space after the commas)
_DATA_MARKS = re.compile(r'"\s*:|^\s*[\w-]+:\s|^\s*-\s', re.M)
_TABLE_MARKS = re.compile(r"^\|.*\|\s*$|^[^,\n]*,[^ ,\n][^,\n]*,[^ \n]", re.M)
_PATHS = re.compile(r"(?:[a-z]+://|[A-Za-z]:\\|~?/)[^\s\"'<>]{4,}")


def content_class(text: str) -> str:
    """The class of ``text`` (one of :data:`CONTENT_CLASSES`)."""
    s = text[:_SAMPLE]
    n = len(s)
    if not n:
        return "prose"
    if not s.isascii():
        for name, pattern in _SCRIPTS:
            if len(pattern.findall(s)) * 4 >= n:
                return name
        if len(_EMOJI.findall(s)) * 8 >= n:
            return "emoji"
    # cheap counts first: the regexes below only run where they can match
    spaces = s.count(" ") + s.count("\n")
    if spaces * 20 < n and sum(map(len, _ENCODED.findall(s))) * 2 >= n:
        return "encoded"
    slashes = s.count("/") + s.count("\\")
    if slashes * 40 >= n and sum(map(len, _PATHS.findall(s))) * 2 >= n:
        return "paths"
    head = s.lstrip()[:1]
    data = len(_DATA_MARKS.findall(s))
    code = len(_CODE_MARKS.findall(s))
    lines = sum(1 for line in s.splitlines() if line.strip())
    if head in ("{", "[") and data >= code / 2:
        return "json"
    if ("," in s or "|" in s) and len(_TABLE_MARKS.findall(s)) * 2 >= lines >= 2:
        return "tabular"
    if data >= lines and data >= code:
        return "data"
    if code * 40 >= n:
        return "code"
    if not s.isascii() and len(_ACCENTED.findall(s)) * 100 >= n:
        return "latin"
    return "prose"
