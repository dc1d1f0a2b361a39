"""A cheap content class for a text, the key under which estimates are calibrated.

Providers' tokenizers differ from o200k by different ratios on different content (code and
data are split differently from prose; CJK and other scripts have their own vocabularies), so
calibration learns one ratio per class. The class is decided from the first few thousand
characters with C-level regex counts; a wrong call only means a ratio learned under a
neighbouring key.
"""

from __future__ import annotations

import re

__all__ = ["CONTENT_CLASSES", "content_class"]

#: the classes :func:`content_class` returns
CONTENT_CLASSES = ("prose", "code", "data", "cjk", "script")

_SAMPLE = 4000
_CJK = re.compile("[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]")
# Greek, Cyrillic, Armenian, Hebrew, Arabic, Indic, Thai, Georgian... (letters outside Latin)
_SCRIPT = re.compile("[\u0370-\u058f\u0590-\u08ff\u0900-\u0dff\u0e00-\u0eff\u10a0-\u10ff]")
_CODE_MARKS = re.compile(
    r"[{}();=<>\[\]]|^\s{2,}\S|^\s*(?:def|class|import|return|fn|func|#include)\b", re.M
)
_DATA_MARKS = re.compile(r'"\s*:|^\s*[\w-]+:\s|^\s*-\s|,\s*"|^\|.*\|\s*$|,[^,\n]*,', re.M)


def content_class(text: str) -> str:
    """``"prose"``, ``"code"``, ``"data"`` (JSON/YAML/CSV/tables), ``"cjk"`` or ``"script"``
    (other non-Latin scripts) for ``text``."""
    s = text[:_SAMPLE]
    n = len(s)
    if not n:
        return "prose"
    if not s.isascii():
        if len(_CJK.findall(s)) * 4 >= n:
            return "cjk"
        if len(_SCRIPT.findall(s)) * 3 >= n:
            return "script"
    head = s.lstrip()[:1]
    data = len(_DATA_MARKS.findall(s))
    code = len(_CODE_MARKS.findall(s))
    lines = sum(1 for line in s.splitlines() if line.strip())
    if head in ("{", "[") and data >= code / 2:
        return "data"
    if data >= lines and data >= code:
        return "data"
    if code * 20 >= n:
        return "code"
    return "prose"
