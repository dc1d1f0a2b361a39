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

from tokenward.counting._cjk_tables import HAN_SINGLE, HANGUL_SINGLE

__all__ = ["estimate_tokens", "features", "COEFFICIENTS", "FEATURE_NAMES"]

# Groups, in order: lower-case-run words by length (13+, 9-12, 6-8, shorter; an optional
# capital and leading space as in o200k, so camelCase splits), ALL-CAPS runs, Han characters
# that are one o200k token / other Han, kana, single-token / other Hangul, other-script
# letters, digit groups of <= 3, punctuation runs, newline runs, runs of 2+ spaces/tabs.
_UP = "A-Z\u00c0-\u00de"
_LO = "a-z\u00df-\u00ff"
_SPAN = re.compile(
    rf"( ?[{_UP}]?[{_LO}]{{13,}})"
    rf"|( ?[{_UP}]?[{_LO}]{{9,12}})"
    rf"|( ?[{_UP}]?[{_LO}]{{6,8}})"
    rf"|( ?[{_UP}]?[{_LO}]+| ?[{_UP}](?![{_UP}{_LO}]))"
    rf"|( ?[{_UP}]+(?![{_LO}]))"
    r"|([" + HAN_SINGLE + r"]+)"
    r"|([\u4e00-\u9fff\u3400-\u4dbf\uf900-\ufaff]+)"
    r"|([\u3040-\u30ff\u31f0-\u31ff\uff66-\uff9f]+)"
    r"|([" + HANGUL_SINGLE + r"]+)"
    r"|([\uac00-\ud7af\u1100-\u11ff\u3130-\u318f]+)"
    r"|([^\W\d_A-Za-z\u00c0-\u00ff\u4e00-\u9fff\u3400-\u4dbf\uf900-\ufaff\u3040-\u30ff\uac00-\ud7af]+)"
    r"|(\d{1,3})"
    r"|( ?[^\w\s]+|_+)"
    r"|(\s*[\r\n]+)"
    r"|([ \t]{2,})"
)

# Group indices whose matches are counted / whose characters are counted.
_GROUPS = ("w13", "w9", "w6", "word", "caps", "han1", "han", "kana", "hangul1", "hangul",
           "other", "digits", "punct", "newlines", "spaces")
_COUNTED = (1, 2, 3, 4, 11, 12, 13, 14)
_MEASURED = (0, 4, 5, 6, 7, 8, 9, 10, 12)
FEATURE_NAMES = tuple(
    [f"{_GROUPS[i]}_runs" for i in _COUNTED] + [f"{_GROUPS[i]}_chars" for i in _MEASURED]
)

# Fitted by benchmarks/estimator_fit.py against o200k_base (relative-error NNLS); held-out
# error of that run (median / p95):
#   prose  median  3.18%  p95  7.61%
#   code   median  3.37%  p95 10.43%
#   json   median  1.70%  p95  7.63%
#   cjk    median  4.38%  p95 12.44%
#   other  median 13.41%  p95 29.34%
#   all    median  3.11%  p95 10.13%
COEFFICIENTS: tuple[float, ...] = (
    1.4841,  # w9_runs
    1.2055,  # w6_runs
    0.8729,  # word_runs
    1.0198,  # caps_runs
    1.3811,  # digits_runs
    0.5577,  # punct_runs
    0.7945,  # newlines_runs
    0.6222,  # spaces_runs
    0.1865,  # w13_chars
    0.0,  # caps_chars
    0.768,  # han1_chars
    1.572,  # han_chars
    0.6672,  # kana_chars
    0.7082,  # hangul1_chars
    1.3383,  # hangul_chars
    0.3353,  # other_chars
    0.1993,  # punct_chars
)


def features(text: str) -> tuple[int, ...]:
    """Span features of ``text`` (see FEATURE_NAMES); one regex pass, C-level aggregation."""
    spans = _SPAN.findall(text)
    if not spans:
        return (0,) * len(FEATURE_NAMES)
    cols = list(zip(*spans))
    out: list[int] = []
    for i in _COUNTED:
        col = cols[i]
        out.append(len(col) - col.count(""))
    for i in _MEASURED:
        out.append(sum(map(len, cols[i])))
    return tuple(out)


def estimate_tokens(text: str) -> int:
    """Estimated o200k-equivalent token count of ``text`` (approximate, >= 1 if non-empty)."""
    if not text:
        return 0
    f = features(text)
    c = COEFFICIENTS
    est = sum(a * b for a, b in zip(c, f))
    return max(1, int(est + 0.5))
