"""Estimator accuracy vs exact tokenizers on prose, code, JSON and CJK.

Corpora: ``benchmarks/_corpus.py`` (``eval`` split, disjoint from the split used by
``estimator_fit.py``). Reference: exact o200k_base (goal) and cl100k_base (reported).
Compared: our estimator, chars/4, LangChain's ``count_tokens_approximately`` (text part
only: a message with the text minus an empty message) and the seed heuristic
``max(words * 1.3, chars / 4)``.

Goal (issue 9, item 3): our median relative error <= 3 % and p95 <= 8 % against o200k on
every corpus and overall.
"""

from __future__ import annotations

import contextlib
import io
import os
import statistics
import sys
import time
from collections.abc import Callable

sys.path.insert(0, os.path.dirname(__file__))

from _corpus import KINDS, corpus

from tokenward.counting import estimate_tokens, get_encoding


def _langchain() -> Callable[[str], float] | None:
    try:
        from langchain_core.messages import HumanMessage
        from langchain_core.messages.utils import count_tokens_approximately
    except ImportError:
        return None
    empty = count_tokens_approximately([HumanMessage("")], extra_tokens_per_message=0)

    def f(text: str) -> float:
        return count_tokens_approximately([HumanMessage(text)], extra_tokens_per_message=0) - empty

    return f


def _seed(text: str) -> float:
    return max(len(text.split()) * 1.3, len(text) / 4)


def _stats(errs: list[float]) -> tuple[float, float]:
    errs = sorted(errs)
    return statistics.median(errs), errs[int(0.95 * (len(errs) - 1))]


def run(quick: bool = False) -> str:
    with contextlib.redirect_stdout(io.StringIO()):
        data = corpus("eval", per_kind=25 if quick else 300, quick=quick)
    methods: dict[str, Callable[[str], float]] = {
        "tokenward estimator": estimate_tokens,
        "chars / 4": lambda t: len(t) / 4,
        "seed max(words*1.3, chars/4)": _seed,
    }
    lc = _langchain()
    if lc is not None:
        methods["LangChain count_tokens_approximately"] = lc
    lines = ["### Estimator accuracy vs exact tokenizers", ""]
    sizes = {k: sum(1 for kk, _ in data if kk == k) for k in KINDS}
    lines.append(
        "Held-out samples per corpus: "
        + ", ".join(f"{k} {n}" for k, n in sizes.items())
        + ". Cells: median / p95 of |estimate - exact| / exact."
    )
    summary: dict[str, dict[str, tuple[float, float]]] = {}
    for target in ("o200k_base", "cl100k_base"):
        enc = get_encoding(target)
        exact = [len(enc.encode_ordinary(t)) for _, t in data]
        lines += [
            "",
            f"**Reference: {target}**",
            "",
            "| method | " + " | ".join(KINDS) + " | all |",
            "|---|" + "---:|" * (len(KINDS) + 1),
        ]
        for name, fn in methods.items():
            per: dict[str, list[float]] = {k: [] for k in KINDS}
            for (kind, text), y in zip(data, exact):
                per[kind].append(abs(round(fn(text)) - y) / y)
            cells = {k: _stats(v) for k, v in per.items()}
            cells["all"] = _stats([e for v in per.values() for e in v])
            summary.setdefault(target, {})
            if name == "tokenward estimator":
                summary[target] = cells
            lines.append(
                f"| {name} | "
                + " | ".join(f"{cells[k][0]:.1%} / {cells[k][1]:.1%}" for k in (*KINDS, "all"))
                + " |"
            )
    # speed: estimator vs exact encode over the whole eval set
    texts = [t for _, t in data]
    enc = get_encoding("o200k_base")
    t0 = time.perf_counter()
    for t in texts:
        estimate_tokens(t)
    t_est = time.perf_counter() - t0
    t0 = time.perf_counter()
    for t in texts:
        enc.encode_ordinary(t)
    t_enc = time.perf_counter() - t0
    ours = summary["o200k_base"]
    met = [k for k in (*KINDS, "all") if ours[k][0] <= 0.03 and ours[k][1] <= 0.08]
    missed = [k for k in (*KINDS, "all") if k not in met]
    lines += [
        "",
        f"Speed on the same texts: estimator {t_est * 1e3:.1f} ms vs o200k `encode_ordinary` "
        f"{t_enc * 1e3:.1f} ms ({t_est / t_enc:.2f}x).",
        "",
        "- Goal median <= 3 % and p95 <= 8 % vs o200k: "
        + (f"**met** on {', '.join(met)}" if met else "**met** on none")
        + (
            f"; **missed** on {', '.join(f'{k} ({ours[k][0]:.1%} / {ours[k][1]:.1%})' for k in missed)}"
            if missed
            else ""
        )
        + ".",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    print(run())
