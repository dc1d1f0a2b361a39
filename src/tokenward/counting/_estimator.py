"""Content-aware token estimator for models without a local tokenizer.

One ``str.translate`` pass maps the text to character classes the way BPE pre-tokenizers
see it (o200k/cl100k): lower/upper-case letters, digits, punctuation, spaces, newlines,
CJK letters (split into those that are a single o200k token and the rest), other scripts.
Run counts (words, camelCase splits, digit groups, punctuation runs, indentation) come
from C-level ``str.count`` calls on that class string. Two features use o200k's own
vocabulary (tables in ``_estimator_tables.py``, generated from the vocabulary alone):

* CJK: o200k's pre-tokenizer makes one piece of each run of Han/kana/Hangul letters and
  BPE merges frequent words inside it; a greedy longest match over o200k's 10,561 CJK
  tokens reproduces that count within 1-2 % (character-class counts cannot: the number
  of characters per token varies with the words used, the script and Traditional vs
  Simplified Chinese);
* rare words: letters of lower-case words (5+ letters) that are not among o200k's 8,000
  most common single-token words -- identifiers such as ``getnchannels`` or ``sampwidth``
  and rare prose words split into several tokens.

Features are combined linearly with coefficients fitted against ``o200k_base`` on the fit
split of a mixed corpus of English prose, source code, JSON and CJK text
(``benchmarks/estimator_fit.py``; held-out accuracy in ``benchmarks/bench_estimator.py``).

Every estimate is approximate (``exact=False``); per-model calibration from reported usage
is applied by :class:`~tokenward.counting.EstimatorCounter` through the ``Calibrator``.
"""

from __future__ import annotations

import re
from itertools import filterfalse

from tokenward.counting._estimator_tables import CJK_TOKENS, WORDS

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

# Han, kana and Hangul: the letters o200k's pre-tokenizer joins into one piece (with one
# optional leading space or punctuation mark) before its BPE merges words inside the piece.
CJK_CLASS = (
    "\u3041-\u30fa\u30fc-\u30ff\u31f0-\u31ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
    "\uff66-\uff9f\uac00-\ud7af\u1100-\u11ff\u3130-\u318f"
)
_CJK_RANGES = (
    (0x3041, 0x30FB),
    (0x30FC, 0x3100),
    (0x31F0, 0x3200),
    (0x3400, 0x4DC0),
    (0x4E00, 0xA000),
    (0xF900, 0xFB00),
    (0xFF66, 0xFFA0),
    (0xAC00, 0xD7B0),
    (0x1100, 0x1200),
    (0x3130, 0x3190),
)
_CJK_PIECE = re.compile(f"(?:[^\\w\\r\\n]|_)?[{CJK_CLASS}]+")

# Lower-case words of MIN_WORD+ letters outside o200k's most common single-token words cost
# about one token per few letters (``getnchannels``, ``sampwidth``, rare prose words): the
# ``rare_word_letters`` feature. Shorter words are nearly always one token.
MIN_WORD = 5
_LONG_WORD = re.compile("[a-z]{%d,}" % MIN_WORD)
_is_common = frozenset(WORDS.split()).__contains__

_FULL_TABLE: dict[int, str] | None = None
# o200k's CJK tokens, and every prefix (>= 2 chars) of one: the trie of the greedy match
_CJK_VOCAB: frozenset[str] = frozenset()
_CJK_PREFIXES: frozenset[str] = frozenset()


def _full_table() -> dict[int, str]:
    global _FULL_TABLE, _CJK_VOCAB, _CJK_PREFIXES
    if _FULL_TABLE is None:
        vocab = frozenset(CJK_TOKENS.split("|"))
        _CJK_PREFIXES = frozenset(tok[:k] for tok in vocab for k in range(2, len(tok) + 1))
        _CJK_VOCAB = vocab
        t = dict(_ASCII_TABLE)
        upd = t.update
        upd(dict.fromkeys(range(0xC0, 0xDF), "A"))
        upd(dict.fromkeys(range(0xDF, 0x100), "a"))
        del t[0xD7], t[0xF7]  # multiplication / division signs stay "other"
        for lo, hi in ((0x3000, 0x3040), (0xFF00, 0xFF66), (0x2000, 0x2070), (0x30FB, 0x30FC)):
            upd(dict.fromkeys(range(lo, hi), "."))
        for lo, hi in _CJK_RANGES:
            upd(dict.fromkeys(range(lo, hi), "h"))
        upd(dict.fromkeys((ord(tok) for tok in vocab if len(tok) == 1), "H"))
        _FULL_TABLE = t
    return _FULL_TABLE


def _cjk_tokens(text: str) -> int:
    """o200k tokens of the CJK pieces of ``text`` by greedy longest match over o200k's own
    CJK tokens (within 1 % of the BPE count on the benchmark corpus). A leading space counts
    with its token; a leading punctuation mark is left to the character features whether
    it merges or not (one token either way); a character that is no token (rare Han) counts
    1 here and its extra byte tokens through the ``cjk_rare`` feature."""
    vocab, prefixes = _CJK_VOCAB, _CJK_PREFIXES
    n = 0
    for p in _CJK_PIECE.findall(text):
        size = len(p)
        if p[0] != " " and not p[0].isalpha():
            n -= 1  # the punctuation features count the mark: alone, or merged into a token
        n += size  # one token per character, minus the characters each merge saves
        i = 0
        last = size - 1
        while i < last:
            j = i + 2
            s = p[i:j]
            if s in prefixes:  # walk the trie to the longest token starting at i
                end = j if s in vocab else i + 1
                while j < size:
                    j += 1
                    s = p[i:j]
                    if s not in prefixes:
                        break
                    if s in vocab:
                        end = j
                n -= end - i - 1
                i = end
            else:
                i += 1
    return n


# run starts: (letter, punctuation, newline) x (ASCII text, any text: CJK classes too)
_WORD_STARTS_ASCII = tuple(y + x for y in (".", "0", " ", "\n") for x in ("a", "A"))
_PUNCT_STARTS_ASCII = tuple(y + "." for y in ("0", " ", "\n", "a", "A"))
_NL_STARTS_ASCII = tuple(y + "\n" for y in (".", "0", " ", "a", "A"))
_STARTS_ASCII = (_WORD_STARTS_ASCII, _PUNCT_STARTS_ASCII, _NL_STARTS_ASCII)
_STARTS_ANY = (
    _WORD_STARTS_ASCII + ("Ha", "HA", "ha", "hA"),
    _PUNCT_STARTS_ASCII + ("H.", "h."),
    _NL_STARTS_ASCII + ("H\n", "h\n"),
)
_DIGIT_STARTS = tuple(y + "0" for y in (".", " ", "\n", "a", "A"))
_SPACE_RUNS = tuple(y + "  " for y in (".", "0", "\n", "a", "A"))

FEATURE_NAMES = (
    "letter_runs",
    "camel_splits",
    "upper_3chunks",
    "upper_lower",
    "digit_runs",
    "digit_3chunks",
    "punct_runs",
    "punct_chars",
    "newline_runs",
    "space_runs",
    "space_punct",
    "punct_space",
    "space_lower",
    "digit_lower",
    "blank_lines",
    "digit_4chunks",
    "rare_word_letters",
    "cjk_tokens",
    "cjk_rare",
    "other",
)
# boundary bigrams that BPE merges differently (JSON '": "', code '", ')
_BIGRAMS = (" .", ". ", " a", "0a", "\n\n", "0000")
_NO_CJK = (0, 0, 0)


def features(text: str) -> tuple[int, ...]:
    """Content features of ``text`` (see FEATURE_NAMES): one translate + C-level counts."""
    if text.isascii():
        t = text.translate(_ASCII_TABLE)
        cjk = False
        word_starts, punct_starts, nl_starts = _STARTS_ASCII
    else:
        t = text.translate(_full_table())
        cjk = True
        word_starts, punct_starts, nl_starts = _STARTS_ANY
    n = t.count
    first = t[:1]
    letter_runs = sum(map(n, word_starts)) + (first in ("a", "A"))
    digit_runs = sum(map(n, _DIGIT_STARTS)) + (first == "0")
    punct_runs = sum(map(n, punct_starts)) + (first == ".")
    nl_runs = sum(map(n, nl_starts)) + (first == "\n")
    if cjk:
        rare = n("h")
        cjk_chars = n("H") + rare
        known = n("a") + n("A") + n("0") + n(".") + n(" ") + n("\n") + cjk_chars
        cjk_part: tuple[int, ...] = (
            _cjk_tokens(text) if cjk_chars else 0,
            rare,
            len(t) - known,
        )
    else:
        cjk_part = _NO_CJK
    words = _LONG_WORD.findall(text)
    rare_letters = sum(map(len, filterfalse(_is_common, words)))
    return (
        letter_runs,
        n("aA"),
        n("AAA"),
        n("Aa"),
        digit_runs,
        n("000"),
        punct_runs,
        n("."),
        nl_runs,
        sum(map(n, _SPACE_RUNS)) + t.startswith("  "),
        *map(n, _BIGRAMS),
        rare_letters,
        *cjk_part,
    )


# Fitted by benchmarks/estimator_fit.py against o200k_base (relative-error NNLS) on the
# fit split; error of that run on the disjoint eval split (median / p95):
#   prose median 1.76% p95 4.87%
#   code median 2.36% p95 7.42%
#   json median 1.02% p95 4.27%
#   cjk median 1.98% p95 6.25%
#   other median 10.40% p95 30.70%
#   all median 1.68% p95 5.87%
COEFFICIENTS: tuple[float, ...] = (
    0.8239,  # letter_runs
    0.1474,  # camel_splits
    0.3871,  # upper_3chunks
    0.2052,  # upper_lower
    1.5911,  # digit_runs
    0.0265,  # digit_3chunks
    0.2881,  # punct_runs
    0.2618,  # punct_chars
    0.8818,  # newline_runs
    0.4475,  # space_runs
    0.3893,  # space_punct
    0.3226,  # punct_space
    0.1294,  # space_lower
    0.1503,  # digit_lower
    0.0979,  # blank_lines
    1.0992,  # digit_4chunks
    0.1074,  # rare_word_letters
    1.0309,  # cjk_tokens
    1.0266,  # cjk_rare
    0.3545,  # other
)


def estimate_tokens(text: str) -> int:
    """Estimated o200k-equivalent token count of ``text`` (approximate, >= 1 if non-empty)."""
    if not text:
        return 0
    f = features(text)
    c = COEFFICIENTS
    est = sum(a * b for a, b in zip(c, f))
    return max(1, int(est + 0.5))
