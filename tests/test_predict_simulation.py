"""The seeded simulation of ``benchmarks/bench_predict.py``, smaller: predicted reservations
deny far fewer calls that the budget had room for, and overspend stays within the excess of
the calls in flight (counts, not timings)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_predict.py"


def _bench():
    spec = importlib.util.spec_from_file_location("bench_predict", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("bench_predict", module)
    spec.loader.exec_module(module)
    return module


def test_predicted_reservations_cut_false_denials_by_90_percent_with_bounded_overspend():
    bench = _bench()
    worst, pred = bench.compare(seed=7, callers=24, calls_per_caller=150, demand=0.6)
    assert worst.attempts == pred.attempts == 24 * 150
    assert worst.false_denials > 1_000  # max_tokens holds 16,000 per call in flight
    assert pred.false_denials <= 0.10 * worst.false_denials
    assert pred.admitted > worst.admitted
    assert worst.max_overspend == 0 and worst.under_reserved_calls == 0  # never past the limit
    assert pred.bound_held and pred.max_overspend <= pred.bound_at_max
    assert pred.under_reserved_calls > 0  # p99: some calls do outgrow their reservation


def test_under_contention_the_overspend_bound_holds_too():
    bench = _bench()
    worst, pred = bench.compare(seed=11, callers=24, calls_per_caller=60, demand=1.2)
    assert worst.bound_held and pred.bound_held
    assert worst.max_overspend == 0
    assert pred.admitted > worst.admitted
