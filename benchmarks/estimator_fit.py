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
import statistics
import sys

sys.path.insert(0, os.path.dirname(__file__))

from _corpus import KINDS, corpus  # noqa: E402

from tokenward.counting._estimator import FEATURE_NAMES, features  # noqa: E402
from tokenward.counting._loader import get_encoding  # noqa: E402


def load(split: str) -> list[tuple[str, str]]:
    with contextlib.redirect_stdout(io.StringIO()):
        return corpus(split)


def fit(target: str = "o200k_base") -> tuple[float, ...]:
    import numpy as np

    enc = get_encoding(target)
    data = load("fit")
    rows, ys, ws = [], [], []
    per_kind = {k: sum(1 for kk, _ in data if kk == k) for k in KINDS}
    for kind, text in data:
        y = len(enc.encode_ordinary(text))
        rows.append(features(text))
        ys.append(y)
        ws.append(1.0 / max(1, per_kind[kind]))
    X = np.array(rows, dtype=float)
    y = np.array(ys, dtype=float)
    w = np.sqrt(np.array(ws)) / y
    A = X * w[:, None]
    b = y * w
    coef, *_ = np.linalg.lstsq(A, b, rcond=None)
    return tuple(round(float(c), 4) for c in coef)


def evaluate(coef: tuple[float, ...], target: str = "o200k_base", split: str = "eval") -> dict[str, tuple[float, float]]:
    enc = get_encoding(target)
    out = {}
    errs_all: list[float] = []
    for kind in KINDS:
        errs = []
        for k, text in load(split):
            if k != kind:
                continue
            y = len(enc.encode_ordinary(text))
            est = max(1, int(sum(a * b for a, b in zip(coef, features(text))) + 0.5))
            errs.append(abs(est - y) / y)
        errs.sort()
        errs_all += errs
        out[kind] = (statistics.median(errs), errs[int(0.95 * (len(errs) - 1))])
    errs_all.sort()
    out["all"] = (statistics.median(errs_all), errs_all[int(0.95 * (len(errs_all) - 1))])
    return out


if __name__ == "__main__":
    coef = fit()
    print("COEFFICIENTS = (")
    for name, c in zip(FEATURE_NAMES, coef):
        print(f"    {c},  # {name}")
    print(")")
    for kind, (med, p95) in evaluate(coef).items():
        print(f"{kind:6s} median {med:6.2%}  p95 {p95:6.2%}")
