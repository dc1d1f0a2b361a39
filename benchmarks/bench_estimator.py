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

# CPU time of this process: the benchmark machine is shared (other suites run alongside),
# and everything measured here (tiktoken included) runs on this thread.
_clock = time.process_time

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


def _shared_lines(data: list[tuple[str, str]], fit: list[tuple[str, str]]) -> tuple[int, int]:
    """Lines (> 30 chars) of the eval samples that also occur in the fit split."""
    seen = {line for _, t in fit for line in t.splitlines() if len(line.strip()) > 30}
    lines = [line for _, t in data for line in t.splitlines() if len(line.strip()) > 30]
    return sum(line in seen for line in lines), len(lines)


def run(quick: bool = False) -> str:
    with contextlib.redirect_stdout(io.StringIO()):
        data = corpus("eval", per_kind=25 if quick else 300, quick=quick)
        fit = corpus("fit", per_kind=25 if quick else 300, quick=quick)
    shared, total = _shared_lines(data, fit)
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
    lines += [
        "",
        "Held out: the coefficients are fitted (`benchmarks/estimator_fit.py`) on the `fit` "
        "split only; the `eval` split measured here shares no prose paragraph, source file, "
        "UI string (catalogs split by family: gtk20/gtk30 together) or hand-written CJK "
        f"sentence with it ({shared} of {total} eval lines longer than 30 characters also "
        "occur in the fit split: lines repeated across different stdlib files or multi-line "
        "UI strings, and generated-JSON lines). The CJK token and common-word tables come "
        "from o200k's vocabulary alone, not from the corpus.",
    ]
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
    # speed: estimator vs exact encode over the whole eval set; warm-up, then interleaved
    # rounds (the machine is shared) and the median per-round ratio
    texts = [t for _, t in data]
    enc = get_encoding("o200k_base")
    for t in texts[:: max(1, len(texts) // 50)]:  # every kind (lazy tables load once)
        estimate_tokens(t), enc.encode_ordinary(t)
    est_times, enc_times, ratios = [], [], []
    for _ in range(3 if quick else 5):
        t0 = _clock()
        for t in texts:
            estimate_tokens(t)
        t1 = _clock()
        for t in texts:
            enc.encode_ordinary(t)
        t2 = _clock()
        est_times.append(t1 - t0)
        enc_times.append(t2 - t1)
        ratios.append((t1 - t0) / (t2 - t1))
    t_est, t_enc = statistics.median(est_times), statistics.median(enc_times)
    speed_ratio = statistics.median(ratios)
    ours = summary["o200k_base"]
    keys = (*KINDS, "all")
    med_ok = [k for k in keys if ours[k][0] <= 0.03]
    p95_ok = [k for k in keys if ours[k][1] <= 0.08]
    med_miss = [f"{k} {ours[k][0]:.1%}" for k in keys if k not in med_ok]
    p95_miss = [f"{k} {ours[k][1]:.1%}" for k in keys if k not in p95_ok]
    lines += [
        "",
        f"Speed on the same texts: estimator {t_est * 1e3:.1f} ms vs o200k `encode_ordinary` "
        f"{t_enc * 1e3:.1f} ms (median per-round ratio {speed_ratio:.2f}x).",
        "",
        "- Goal median <= 3 % vs o200k: "
        + (
            "**met** on every corpus and overall"
            if not med_miss
            else f"**missed** on {', '.join(med_miss)}"
        )
        + ".",
        "- Goal p95 <= 8 % vs o200k: "
        + (
            "**met** on every corpus and overall"
            if not p95_miss
            else f"met on {', '.join(p95_ok) or 'none'}; **missed** on {', '.join(p95_miss)}"
        )
        + ".",
        "- The estimator is fitted to o200k; against cl100k its CJK error is large (cl100k "
        "spends more tokens per CJK character), which does not matter in practice: cl100k "
        "models are counted exactly. For non-OpenAI models the per-model `Calibrator` learns "
        "the remaining ratio from reported usage.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    print(run())
