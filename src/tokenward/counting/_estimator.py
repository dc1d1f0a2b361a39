"""Content-aware token estimator for models without a local tokenizer.

One regular-expression pass splits the text into spans the way BPE pre-tokenizers do
(o200k/cl100k): words (a capitalised or lower-case run), other-script letter runs, CJK
ideographs, kana and hangul, digit groups of up to three, punctuation runs, newline runs and
indentation runs. The span counts and character counts are aggregated in C
(``zip``/``map(len)``) and combined linearly with coefficients fitted against ``o200k_base``
on a mixed corpus of English prose, source code, JSON and CJK text
(``benchmarks/estimator_fit.py``; accuracy in ``benchmarks/bench_estimator.py``).

Every estimate is approximate (``exact=False``); per-model calibration from reported usage
is applied by :class:`~tokenward.counting.EstimatorCounter` through the ``Calibrator``.
"""

from __future__ import annotations

import re

__all__ = ["estimate_tokens", "features", "COEFFICIENTS", "FEATURE_NAMES"]

# Groups (in order):
#   1 word: optional leading space + letters, camelCase splits like o200k ("getElement" -> 2)
#   2 long word tail chars counted separately through the "word" lengths
#   3 han ideographs, 4 kana, 5 hangul, 6 other letters (accented/Cyrillic/Greek...)
#   7 digits (groups of <= 3), 8 punctuation/symbol runs, 9 newline runs, 10 space runs (2+)
_SPAN = re.compile(
    r"( ?[A-Z\u00c0-\u00de]?[a-z\u00df-\u00ff]{10,})"
    r"|( ?[A-Z\u00c0-\u00de]?[a-z\u00df-\u00ff]+|[A-Z\u00c0-\u00de]+(?![a-z\u00df-\u00ff]))"
    r"|([\u4e00-\u9fff\u3400-\u4dbf\uf900-\ufaff]+)"
    r"|([\u3040-\u30ff\u31f0-\u31ff\uff66-\uff9f]+)"
    r"|([\uac00-\ud7af\u1100-\u11ff\u3130-\u318f]+)"
    r"|([^\W\d_A-Za-z\u00c0-\u00ff\u4e00-\u9fff\u3400-\u4dbf\uf900-\ufaff\u3040-\u30ff\uac00-\ud7af]+)"
    r"|(\d{1,3})"
    r"|( ?[^\w\s]+|_+)"
    r"|(\s*[\r\n]+)"
    r"|([ \t]{2,})"
)

FEATURE_NAMES = (
    "words", "word_chars", "long_words", "long_word_chars", "han", "kana", "hangul", "other_letters",
    "digit_groups", "punct_runs", "punct_chars", "newline_runs", "space_runs",
)

# Fitted by benchmarks/estimator_fit.py against o200k_base (see its docstring for the run).
COEFFICIENTS: tuple[float, ...] = (
    0.93, 0.02, 1.0, 0.1, 0.75, 0.6, 0.6, 0.45, 1.0, 0.6, 0.4, 1.0, 1.0,
)


def features(text: str) -> tuple[int, ...]:
    """Span features of ``text`` (see FEATURE_NAMES); one regex pass."""
    spans = _SPAN.findall(text)
    if not spans:
        return (0,) * len(FEATURE_NAMES)
    longw, words, han, kana, hangul, other, digits, punct, nl, sp = zip(*spans)
    nl_ = len(longw) - longw.count("")
    nw = len(words) - words.count("")
    np_ = len(punct) - punct.count("")
    return (
        nw,
        sum(map(len, words)),
        nl_,
        sum(map(len, longw)),
        sum(map(len, han)),
        sum(map(len, kana)),
        sum(map(len, hangul)),
        sum(map(len, other)),
        len(digits) - digits.count(""),
        np_,
        sum(map(len, punct)),
        len(nl) - nl.count(""),
        len(sp) - sp.count(""),
    )


def estimate_tokens(text: str) -> int:
    """Estimated o200k-equivalent token count of ``text`` (approximate, >= 1 if non-empty)."""
    if not text:
        return 0
    f = features(text)
    c = COEFFICIENTS
    est = sum(a * b for a, b in zip(c, f))
    return max(1, int(est + 0.5))
