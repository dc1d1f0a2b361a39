"""Content-aware token estimator for models without a local tokenizer.

One ``str.translate`` pass maps the text to character classes the way BPE pre-tokenizers
see it (o200k/cl100k): lower/upper-case letters, digits, punctuation, spaces, newlines, Han
(split into characters that are a single o200k token and the rest), kana, Hangul, other
scripts. Run counts (words, camelCase splits, digit groups, punctuation runs, indentation)
and length chunks come from C-level ``str.count`` calls on that class string -- no Python
loop over characters or tokens -- and are combined linearly with coefficients fitted against
``o200k_base``
on a mixed corpus of English prose, source code, JSON and CJK text
(``benchmarks/estimator_fit.py``; accuracy in ``benchmarks/bench_estimator.py``).

Every estimate is approximate (``exact=False``); per-model calibration from reported usage
is applied by :class:`~tokenward.counting.EstimatorCounter` through the ``Calibrator``.
"""

from __future__ import annotations

from tokenward.counting._cjk_tables import HAN_SINGLE, HANGUL_SINGLE

__all__ = ["COEFFICIENTS", "FEATURE_NAMES", "estimate_tokens", "features"]

# Character classes. ``str.translate`` maps every character to a one-letter class (C speed;
# ASCII text takes CPython's cached ASCII fast path) and ``str.count`` on the class string
# gives character counts, and -- counting two-letter "boundary" substrings -- run counts:
# runs(X) = sum over classes Y != X of count(Y + X) (+1 if the string starts with X); such
# occurrences never overlap, so the non-overlapping ``count`` is exact.
#   a lower-case letter   A upper-case letter   0 digit   . punctuation/symbol (and "_")
#   space/tab -> " "      newline -> "\n"
#   H Han char that is one o200k token   h other Han   k kana
#   G Hangul syllable that is one token  g other Hangul
# Other characters (Cyrillic, Greek, emoji...) are left as they are and counted as "other".
_ASCII_TABLE: dict[int, str] = {}
for _c in range(128):
    _ch = chr(_c)
    if "a" <= _ch <= "z":
        _ASCII_TABLE[_c] = "a"
    elif "A" <= _ch <= "Z":
        _ASCII_TABLE[_c] = "A"
    elif _ch.isdigit():
        _ASCII_TABLE[_c] = "0"
    elif _ch in " \t\f\v":
        _ASCII_TABLE[_c] = " "
    elif _ch in "\r\n":
        _ASCII_TABLE[_c] = "\n"
    else:
        _ASCII_TABLE[_c] = "."
del _c, _ch

_FULL_TABLE: dict[int, str] | None = None


def _full_table() -> dict[int, str]:
    global _FULL_TABLE
    if _FULL_TABLE is None:
        t = dict(_ASCII_TABLE)
        upd = t.update
        upd(dict.fromkeys(range(0xC0, 0xDF), "A"))
        upd(dict.fromkeys(range(0xDF, 0x100), "a"))
        del t[0xD7], t[0xF7]  # multiplication / division signs stay "other"
        for lo, hi in ((0x4E00, 0xA000), (0x3400, 0x4DC0), (0xF900, 0xFB00)):
            upd(dict.fromkeys(range(lo, hi), "h"))
        upd(dict.fromkeys(map(ord, HAN_SINGLE), "H"))
        for lo, hi in ((0x3040, 0x3100), (0x31F0, 0x3200), (0xFF66, 0xFFA0)):
            upd(dict.fromkeys(range(lo, hi), "k"))
        for lo, hi in ((0xAC00, 0xD7B0), (0x1100, 0x1200), (0x3130, 0x3190)):
            upd(dict.fromkeys(range(lo, hi), "g"))
        upd(dict.fromkeys(map(ord, HANGUL_SINGLE), "G"))
        for lo, hi in ((0x3000, 0x3040), (0xFF00, 0xFF66), (0x2000, 0x2070)):
            upd(dict.fromkeys(range(lo, hi), "."))
        _FULL_TABLE = t
    return _FULL_TABLE


_NONWORD = (".", "0", " ", "\n", "H", "h", "k", "G", "g")
_WORD_STARTS = tuple(y + x for y in _NONWORD for x in ("a", "A"))
_DIGIT_STARTS = tuple(y + "0" for y in (".", " ", "\n", "a", "A"))
_PUNCT_STARTS = tuple(y + "." for y in ("0", " ", "\n", "a", "A", "H", "h", "k", "G", "g"))
_NL_STARTS = tuple(y + "\n" for y in (".", "0", " ", "a", "A", "H", "h", "k", "G", "g"))
_SPACE_RUNS = tuple(y + "  " for y in (".", "0", "\n", "a", "A"))

FEATURE_NAMES = (
    "letter_runs",
    "camel_splits",
    "lower_6chunks",
    "lower_9chunks",
    "upper_chars",
    "upper_3chunks",
    "upper_lower",
    "digit_runs",
    "digit_3chunks",
    "punct_runs",
    "punct_chars",
    "newline_runs",
    "space_runs",
    "space_punct",
    "punct_letter",
    "punct_space",
    "punct_pairs",
    "newline_indent",
    "space_lower",
    "lower_digit",
    "digit_lower",
    "punct_digit",
    "digit_punct",
    "blank_lines",
    "indent4_chunks",
    "upper_punct",
    "punct_upper",
    "upper_5chunks",
    "upper_underscore_upper",
    "digit_4chunks",
    "han_common",
    "han",
    "kana",
    "hangul_common",
    "hangul",
    "other",
    "han_pairs",
    "kana_pairs",
    "hangul_pairs",
    "han_kana",
    "kana_han",
    "hangul_space",
    "han_quads",
)
# boundary bigrams that BPE merges differently (JSON '": "', code '", ', '\n    ')
_BIGRAMS = (
    " .",
    ".a",
    ". ",
    "..",
    "\n ",
    " a",
    "a0",
    "0a",
    ".0",
    "0.",
    "\n\n",
    "    ",
    "A.",
    ".A",
    "AAAAA",
    "A_A",
    "0000",
)
_CJK_BIGRAMS = ("HH", "kk", "GG", "Hk", "kH", "G ", "HHHH")
_NO_CJK = (0,) * (6 + len(_CJK_BIGRAMS))


def features(text: str) -> tuple[int, ...]:
    """Content features of ``text`` (see FEATURE_NAMES): one translate + C-level counts."""
    if text.isascii():
        t = text.translate(_ASCII_TABLE)
        cjk = False
    else:
        t = text.translate(_full_table())
        cjk = True
    n = t.count
    first = t[:1]
    letter_runs = sum(map(n, _WORD_STARTS)) + (first in ("a", "A"))
    digit_runs = sum(map(n, _DIGIT_STARTS)) + (first == "0")
    punct_runs = sum(map(n, _PUNCT_STARTS)) + (first == ".")
    nl_runs = sum(map(n, _NL_STARTS)) + (first == "\n")
    if cjk:
        han1, han, kana, hangul1, hangul = n("H"), n("h"), n("k"), n("G"), n("g")
        known = (
            n("a")
            + n("A")
            + n("0")
            + n(".")
            + n(" ")
            + n("\n")
            + han1
            + han
            + kana
            + hangul1
            + hangul
        )
        cjk_part: tuple[int, ...] = (
            han1,
            han,
            kana,
            hangul1,
            hangul,
            len(t) - known,
            *map(n, _CJK_BIGRAMS),
        )
    else:
        cjk_part = _NO_CJK
    return (
        letter_runs,
        n("aA"),
        n("aaaaaa"),
        n("aaaaaaaaa"),
        n("A"),
        n("AAA"),
        n("Aa"),
        digit_runs,
        n("000"),
        punct_runs,
        n("."),
        nl_runs,
        sum(map(n, _SPACE_RUNS)) + t.startswith("  "),
        *map(n, _BIGRAMS),
        *cjk_part,
    )


# Fitted by benchmarks/estimator_fit.py against o200k_base (relative-error NNLS); held-out
# error of that run (median / p95):
#   prose  median  1.69%  p95  6.30%
#   code   median  2.67%  p95  9.17%
#   json   median  0.98%  p95  4.44%
#   cjk    median  4.29%  p95 12.75%
#   other  median 12.72%  p95 37.50%
#   all    median  2.12%  p95  9.68%
COEFFICIENTS: tuple[float, ...] = (
    0.8331,  # letter_runs
    0.0,  # camel_splits
    0.2556,  # lower_6chunks
    0.2096,  # lower_9chunks
    0.0,  # upper_chars
    0.2094,  # upper_3chunks
    0.7729,  # upper_lower
    1.7242,  # digit_runs
    0.0,  # digit_3chunks
    0.0,  # punct_runs
    0.2553,  # punct_chars
    0.8713,  # newline_runs
    0.7757,  # space_runs
    0.3201,  # space_punct
    0.2991,  # punct_letter
    0.692,  # punct_space
    0.0,  # punct_pairs
    0.0,  # newline_indent
    0.0,  # space_lower
    0.0,  # lower_digit
    0.0,  # digit_lower
    0.098,  # punct_digit
    0.0,  # digit_punct
    0.8486,  # blank_lines
    0.0,  # indent4_chunks
    0.2703,  # upper_punct
    0.0,  # punct_upper
    0.0,  # upper_5chunks
    0.0,  # upper_underscore_upper
    1.2104,  # digit_4chunks
    0.7038,  # han_common
    4.0221,  # han
    0.5615,  # kana
    0.3315,  # hangul_common
    2.8696,  # hangul
    0.3387,  # other
    0.0,  # han_pairs
    0.0,  # kana_pairs
    0.5068,  # hangul_pairs
    0.5543,  # han_kana
    0.0,  # kana_han
    0.4777,  # hangul_space
    0.0,  # han_quads
)


def estimate_tokens(text: str) -> int:
    """Estimated o200k-equivalent token count of ``text`` (approximate, >= 1 if non-empty)."""
    if not text:
        return 0
    f = features(text)
    c = COEFFICIENTS
    est = sum(a * b for a, b in zip(c, f))
    return max(1, int(est + 0.5))
