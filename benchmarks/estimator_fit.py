"""Fit the estimator coefficients against o200k_base on the ``fit`` split of the corpus.

Usage: ``python benchmarks/estimator_fit.py`` prints a ``COEFFICIENTS = (...)`` tuple to
paste into ``src/tokenward/counting/_estimator.py`` and the accuracy on the ``eval`` split.

Method: weighted least squares minimising the *relative* error (each sample's row divided by
its exact token count), so short and long samples weigh alike and every corpus kind gets the
same total weight. Needs numpy (a dev dependency only; the estimator itself is pure Python).
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import statistics
import sys

sys.path.insert(0, os.path.dirname(__file__))

from _corpus import EXTRA_KINDS, KINDS, corpus

from tokenward.counting._estimator import CJK_CLASS, FEATURE_NAMES, MIN_WORD, features
from tokenward.counting._loader import get_encoding

# Relative weight of each corpus kind in the fit. The extra kind only anchors the
# other-script coefficient; CJK gets more weight because its per-sample spread is widest.
_WEIGHT = {"other": 0.05, "cjk": 2.0}


def load(split: str, extra: bool = False) -> list[tuple[str, str]]:
    with contextlib.redirect_stdout(io.StringIO()):
        return corpus(split, extra=extra)


def fit(target: str = "o200k_base") -> tuple[float, ...]:
    import numpy as np

    enc = get_encoding(target)
    data = load("fit", extra=True)
    rows, ys, ws = [], [], []
    per_kind = {k: sum(1 for kk, _ in data if kk == k) for k in KINDS + EXTRA_KINDS}
    for kind, text in data:
        y = len(enc.encode_ordinary(text))
        rows.append(features(text))
        ys.append(y)
        ws.append(_WEIGHT.get(kind, 1.0) / max(1, per_kind[kind]))
    X = np.array(rows, dtype=float)
    y = np.array(ys, dtype=float)
    w = np.sqrt(np.array(ws)) / y
    A = X * w[:, None]
    b = y * w
    # non-negative least squares by active-set elimination: a negative weight would make
    # long inputs of that kind count below zero
    active = list(range(X.shape[1]))
    coef = np.zeros(X.shape[1])
    while True:
        sol, *_ = np.linalg.lstsq(A[:, active], b, rcond=None)
        if (sol >= 0).all():
            coef[:] = 0
            coef[active] = sol
            break
        active.pop(int(np.argmin(sol)))
    return tuple(round(float(c), 4) for c in coef)


def evaluate(
    coef: tuple[float, ...], target: str = "o200k_base", split: str = "eval"
) -> dict[str, tuple[float, float]]:
    enc = get_encoding(target)
    out = {}
    errs_all: list[float] = []
    data = load(split, extra=True)
    for kind in KINDS + EXTRA_KINDS:
        errs = []
        for k, text in data:
            if k != kind:
                continue
            y = len(enc.encode_ordinary(text))
            est = max(1, int(sum(a * b for a, b in zip(coef, features(text))) + 0.5))
            errs.append(abs(est - y) / y)
        errs.sort()
        if kind in KINDS:
            errs_all += errs
        out[kind] = (statistics.median(errs), errs[int(0.95 * (len(errs) - 1))])
    errs_all.sort()
    out["all"] = (statistics.median(errs_all), errs_all[int(0.95 * (len(errs_all) - 1))])
    return out


def _wrap(chars: str, width: int = 60) -> str:
    parts = [f"    {chars[i : i + width]!r}" for i in range(0, len(chars), width)]
    return "(\n" + "\n".join(parts) + "\n)"


def cjk_tokens(target: str = "o200k_base") -> list[str]:
    """Every token of ``target`` that is a CJK piece (Han/kana/Hangul letters, optionally
    after one space or punctuation mark), in rank order. Derived from the vocabulary alone,
    not from the corpus."""
    enc = get_encoding(target)
    piece = re.compile(f"(?:[^\\w\\r\\n]|_)?[{CJK_CLASS}]+")
    out = []
    for rank in range(enc.n_vocab):
        try:
            tok = enc.decode_single_token_bytes(rank).decode("utf-8")
        except (KeyError, UnicodeDecodeError):
            continue
        if piece.fullmatch(tok):
            assert "|" not in tok
            out.append(tok)
    return out


def common_words(target: str = "o200k_base", n: int = 8000) -> list[str]:
    """The ``n`` lowest-rank (most frequently merged) lower-case ASCII words of at least
    ``MIN_WORD`` letters that are one token of ``target``, bare or after a space."""
    enc = get_encoding(target)
    seen: dict[str, None] = {}
    for rank in range(enc.n_vocab):
        try:
            tok = enc.decode_single_token_bytes(rank).decode("utf-8")
        except (KeyError, UnicodeDecodeError):
            continue
        w = tok[1:] if tok[:1] == " " else tok
        if len(w) >= MIN_WORD and w.isascii() and w.isalpha() and w.islower():
            seen.setdefault(w)
            if len(seen) == n:
                break
    return list(seen)


def write_tables(target: str = "o200k_base") -> str:
    """Regenerate ``_estimator_tables.py`` from the vocabulary of ``target``."""
    toks = cjk_tokens(target)
    words = common_words(target)
    path = os.path.join(
        os.path.dirname(__file__), "..", "src", "tokenward", "counting", "_estimator_tables.py"
    )
    body = [
        "# Generated by benchmarks/estimator_fit.py --tables; do not edit.",
        f'"""Vocabulary tables of the token estimator, taken from {target} alone.',
        "",
        f"``CJK_TOKENS``: the {len(toks)} tokens that are CJK pieces (Han, kana, Hangul,",
        "optionally after one space or punctuation mark), ``|``-separated, in rank order; a",
        "greedy longest match over them reproduces the BPE count of CJK text within 1-2 %.",
        "",
        f"``WORDS``: the {len(words)} most frequently merged (lowest-rank) lower-case ASCII words",
        f"of at least {MIN_WORD} letters that are one token, bare or after a space;",
        "space-separated.",
        '"""',
        "",
        f"CJK_TOKENS = {_wrap('|'.join(toks))}",
        "",
        f"WORDS = {_wrap(' '.join(words), 80)}",
        "",
    ]
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(body))
    return path


if __name__ == "__main__":
    if "--tables" in sys.argv:
        print("wrote", write_tables())
    coef = fit()
    print("COEFFICIENTS = (")
    for name, c in zip(FEATURE_NAMES, coef):
        print(f"    {c},  # {name}")
    print(")")
    for kind, (med, p95) in evaluate(coef).items():
        print(f"{kind:6s} median {med:6.2%}  p95 {p95:6.2%}")
