"""pack_context: knapsack optimum vs greedy, separators, duplicates, partial fill, order."""

from __future__ import annotations

import random
import sys
from itertools import combinations
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tokenward.context import _dedupe, _knapsack, _pack, pack_context
from tokenward.errors import ConfigurationError
from tokenward.messages import Chunk


def wc(text: str) -> int:
    """Word counter: one token per whitespace-separated word."""
    return len(text.split())


def words(n: int, tag: str) -> str:
    return " ".join(f"{tag}{i}" for i in range(n))


def brute_force(sizes: list[int], scores: list[float], cap: int, sep: int) -> float:
    best = 0.0
    for r in range(len(sizes) + 1):
        for combo in combinations(range(len(sizes)), r):
            cost = sum(sizes[i] for i in combo) + sep * max(0, len(combo) - 1)
            if cost <= cap:
                best = max(best, sum(scores[i] for i in combo))
    return best


def test_optimal_beats_stop_at_first_miss_greedy() -> None:
    chunks = [Chunk(words(60, "a"), 0.9), Chunk(words(50, "b"), 0.8), Chunk(words(50, "c"), 0.7)]
    opt = pack_context(chunks, 100, wc, separator=" ", allow_partial=False, dedupe=None)
    assert [c.text[:2] for c in opt.chunks] == ["b0", "c0"]
    assert opt.report.relevance_kept == pytest.approx(1.5)
    assert opt.report.exact and opt.report.bound == 1.0
    greedy = pack_context(
        chunks, 100, wc, separator=" ", strategy="greedy", allow_partial=False, dedupe=None
    )
    assert [c.text[:2] for c in greedy.chunks] == ["a0"]
    assert greedy.report.relevance_kept == pytest.approx(0.9)
    assert [(d.index, d.reason) for d in greedy.report.dropped] == [
        (1, "did_not_fit"),
        (2, "did_not_fit"),
    ]


def test_separators_are_counted() -> None:
    chunks = [Chunk(words(10, t), 1.0) for t in "abc"]
    # three chunks need 30 words + 2 separators of 3 words = 36
    r = pack_context(chunks, 35, wc, separator=" x y z ", allow_partial=False, dedupe=None)
    assert len(r.chunks) == 2 and r.report.tokens_used == 23 == wc(r.text)
    assert r.report.separator_tokens == 3
    r = pack_context(chunks, 36, wc, separator=" x y z ", allow_partial=False, dedupe=None)
    assert len(r.chunks) == 3 and r.report.tokens_used == 36


def test_matches_brute_force_on_small_instances() -> None:
    rng = random.Random(7)
    for _ in range(30):
        n = rng.randint(1, 9)
        sizes = [rng.randint(1, 40) for _ in range(n)]
        scores = [round(rng.random(), 3) for _ in range(n)]
        cap = rng.randint(10, 120)
        chunks = [
            Chunk(words(s, f"t{i}_"), sc)
            for i, (s, sc) in enumerate(zip(sizes, scores, strict=True))
        ]
        r = pack_context(chunks, cap, wc, separator=" | ", allow_partial=False, dedupe=None)
        # " | " is one word for wc
        assert r.report.relevance_kept == pytest.approx(brute_force(sizes, scores, cap, 1))
        assert wc(r.text) <= cap


def test_pure_python_solver_is_exact(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(3)
    sizes = [rng.randint(5, 60) for _ in range(14)]
    scores = [rng.random() for _ in range(14)]
    chunks = [
        Chunk(words(s, f"p{i}_"), sc) for i, (s, sc) in enumerate(zip(sizes, scores, strict=True))
    ]
    with_numpy = pack_context(chunks, 200, wc, separator=" ", allow_partial=False, dedupe=None)
    monkeypatch.setitem(sys.modules, "numpy", None)  # any numpy import now raises ImportError
    without = pack_context(chunks, 200, wc, separator=" ", allow_partial=False, dedupe=None)
    assert without.report.exact
    assert without.report.relevance_kept == pytest.approx(with_numpy.report.relevance_kept)
    assert without.report.relevance_kept == pytest.approx(brute_force(sizes, scores, 200, 1))
    assert without == with_numpy


def test_identical_with_and_without_numpy_on_a_large_instance(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rng = random.Random(21)
    chunks = [
        Chunk(
            " ".join(f"w{rng.randrange(300)}" for _ in range(rng.randint(10, 300))) + ".",
            round(rng.random(), 3),
            id=str(i),
        )
        for i in range(600)
    ]
    chunks += [Chunk(c.text + " extra", 0.5, id=f"d{k}") for k, c in enumerate(chunks[:30])]
    with_numpy = pack_context(chunks, 4000, wc)
    monkeypatch.setitem(sys.modules, "numpy", None)
    _dedupe.clear_caches()
    without = pack_context(chunks, 4000, wc)
    assert without == with_numpy
    assert without.report.dropped == with_numpy.report.dropped
    assert len(without.report.dropped_by("duplicate")) == 30


def test_hybrid_solver_is_certified_and_near_optimal(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(11)
    n = 400
    sizes = [rng.randint(20, 200) for _ in range(n)]
    scores = [rng.random() for _ in range(n)]
    chunks = [
        Chunk(words(s, f"h{i}_"), sc) for i, (s, sc) in enumerate(zip(sizes, scores, strict=True))
    ]
    exact = pack_context(chunks, 3000, wc, separator="", allow_partial=False, dedupe=None)
    assert exact.report.exact
    monkeypatch.setattr(_pack, "_SOLVER_WORK", 10)  # stop the search early: certified only
    monkeypatch.setattr(_pack, "_SMALL_CELLS", 0)  # and no exact retry for small instances
    approx = pack_context(chunks, 3000, wc, separator="", allow_partial=False, dedupe=None)
    assert not approx.report.exact
    opt = exact.report.relevance_kept
    assert approx.report.relevance_kept <= opt + 1e-9
    assert approx.report.relevance_kept >= approx.report.bound * opt - 1e-9
    assert approx.report.bound >= 0.99
    assert approx.report.relevance_kept >= 0.99 * opt


def test_near_duplicates_are_dropped_with_reason() -> None:
    base = "The quick brown fox jumps over the lazy dog near the river bank today. " * 4
    near = base.replace("today", "Today!")  # same words after normalization except nothing
    other = "Completely different content about tokenizers and budgets in production systems."
    chunks = [
        Chunk(near, 0.5, id="near"),
        Chunk(base, 0.9, id="base"),
        Chunk(other, 0.3, id="other"),
    ]
    r = pack_context(chunks, 1000, wc)
    assert [c.id for c in r.chunks] == ["base", "other"]
    (d,) = r.report.dropped
    assert (d.index, d.reason, d.duplicate_of) == (0, "duplicate", 1)
    r = pack_context(chunks, 1000, wc, dedupe=None)
    assert len(r.chunks) == 3
    # a chunk that shares half its text is not a duplicate at 0.9
    half = base[: len(base) // 2] + other * 3
    r = pack_context([Chunk(base, 0.9), Chunk(half, 0.8)], 1000, wc)
    assert len(r.chunks) == 2


def test_min_score_and_empty() -> None:
    chunks = [Chunk("keep me", 0.8), Chunk("too weak", 0.1), Chunk("   ", 0.9)]
    r = pack_context(chunks, 100, wc, min_score=0.5)
    assert [c.text for c in r.chunks] == ["keep me"]
    assert [(d.index, d.reason) for d in r.report.dropped] == [(1, "below_min_score"), (2, "empty")]
    assert r.report.relevance_offered == pytest.approx(1.8)
    assert r.report.relevance_candidates == pytest.approx(0.8)


def test_partial_fill_cuts_on_sentence_boundary() -> None:
    long = " ".join(f"Sentence number {i} has five words." for i in range(40))  # 6 words each
    small = words(30, "s")
    r = pack_context(
        [Chunk(small, 0.9, metadata={"src": "a"}), Chunk(long, 0.5, metadata={"src": "b"})],
        150,
        wc,
        separator=" ",
        min_partial_tokens=50,
    )
    assert len(r.chunks) == 2
    part = r.chunks[1]
    assert part.metadata["tokenward_partial"] is True and part.metadata["src"] == "b"
    assert part.text.endswith(".") and long.startswith(part.text)
    assert (
        part.metadata["tokenward_tokens"] == wc(part.text) == 120
    )  # 20 sentences x 6 (" " is 0 words)
    assert part.metadata["tokenward_original_tokens"] == 240
    assert r.report.partial is part
    assert r.report.tokens_used == wc(r.text) <= 150
    assert r.report.chunks_kept == 1
    # not enough room: no partial
    r = pack_context(
        [Chunk(small, 0.9), Chunk(long, 0.5)], 150, wc, separator=" ", min_partial_tokens=200
    )
    assert len(r.chunks) == 1 and r.report.partial is None


def test_single_huge_chunk() -> None:
    huge = "Alpha beta gamma. " * 3000
    r = pack_context([huge], 100, wc)
    assert len(r.chunks) == 1 and r.chunks[0].metadata["tokenward_partial"]
    assert wc(r.text) <= 100
    r = pack_context([huge], 100, wc, allow_partial=False)
    assert r.chunks == [] and r.report.dropped[0].reason == "did_not_fit"
    assert r.report.dropped[0].tokens == 9000


def test_orders() -> None:
    chunks = [Chunk(f"chunk {i}", s, id=str(i)) for i, s in enumerate([0.1, 0.9, 0.5, 0.7, 0.3])]
    by = {
        o: [c.id for c in pack_context(chunks, 100, wc, order=o, dedupe=None).chunks]
        for o in ("score", "original", "edges")
    }
    assert by["score"] == ["1", "3", "2", "4", "0"]
    assert by["original"] == ["0", "1", "2", "3", "4"]
    assert by["edges"] == ["1", "2", "0", "4", "3"]  # best first, 2nd best last, weakest middle


def test_inputs_and_errors() -> None:
    r = pack_context(
        [
            "plain text",
            ("pair text", 0.5),
            {"text": "dict text", "score": 0.7},
            {"page_content": "doc", "metadata": {"score": 0.2}},
        ],
        100,
        wc,
    )
    assert [c.text for c in r.chunks] == ["dict text", "pair text", "doc", "plain text"]
    assert pack_context([], 100, wc).chunks == []
    with pytest.raises(ConfigurationError):
        pack_context(["x"], 10, wc, strategy="best")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError):
        pack_context(["x"], 10, wc, order="random")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError):
        pack_context([object()], 10, wc)
    with pytest.raises(ConfigurationError, match="counter"):
        pack_context(["x"], 10)


def test_model_name_counter_counts_the_joined_text() -> None:
    counting = pytest.importorskip("tokenward.counting")
    enc = counting.get_counter("gpt-4o")
    rng = random.Random(5)
    chunks = [
        Chunk(
            " ".join(
                rng.choice(["alpha", "beta", "gamma", "delta", "x", "\n"])
                for _ in range(rng.randint(5, 80))
            ),
            rng.random(),
        )
        for _ in range(60)
    ]
    r = pack_context(chunks, 500, "gpt-4o")
    assert r.report.tokens_used == enc.count_text(r.text) <= 500


# -- properties ---------------------------------------------------------------------

_chunk = st.builds(
    lambda n, tag, score: Chunk(
        " ".join(f"{tag}{i}." if i % 7 == 6 else f"{tag}{i}" for i in range(n)), score
    ),
    st.integers(0, 60),
    st.sampled_from(["a", "b", "c", "d", "e"]),
    st.one_of(st.none(), st.floats(-1, 1, allow_nan=False)),
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    chunks=st.lists(_chunk, max_size=25),
    budget=st.integers(0, 300),
    strategy=st.sampled_from(["optimal", "greedy"]),
    order=st.sampled_from(["score", "original", "edges"]),
    partial=st.booleans(),
    sep=st.sampled_from(["", " ", " --- sep --- "]),
)
def test_pack_invariants(
    chunks: list[Chunk], budget: int, strategy: Any, order: Any, partial: bool, sep: str
) -> None:
    r = pack_context(
        chunks,
        budget,
        wc,
        strategy=strategy,
        order=order,
        allow_partial=partial,
        separator=sep,
        min_partial_tokens=5,
    )
    # never over budget, counted on the joined text
    assert wc(r.text) == r.report.tokens_used <= budget
    # every input is either kept (maybe as the partial) or dropped, once
    kept = [c for c in r.chunks if c is not r.report.partial]
    assert len(kept) + len(r.report.dropped) + (r.report.partial is not None) == len(chunks)
    # order rules
    scores = [c.score or 0.0 for c in r.chunks]
    if order == "score":
        assert scores == sorted(scores, reverse=True)
    if order == "original":
        pos = [next(i for i, c in enumerate(chunks) if c is k or c is k.source) for k in r.chunks]
        assert pos == sorted(pos)
    # optimal keeps at least as much relevance as greedy
    if strategy == "optimal":
        g = pack_context(chunks, budget, wc, strategy="greedy", separator=sep, allow_partial=False)
        assert r.report.relevance_kept >= g.report.relevance_kept - 1e-9
        # idempotent: packing the packed chunks keeps them all
        full = [c for c in r.chunks if c is not r.report.partial]
        again = pack_context(
            full, budget, wc, order=order, separator=sep, allow_partial=False, dedupe=None
        )
        assert (
            again.text
            == pack_context(full, budget, wc, order=order, separator=sep, allow_partial=False).text
        )
        assert len(again.chunks) == len(full)


def test_counts_are_cached_per_counter_across_calls() -> None:
    calls: list[str] = []

    def counting(text: str) -> int:
        calls.append(text)
        return len(text.split())

    chunks = [Chunk(words(10, t), 0.5) for t in "abcd"]
    pack_context(chunks, 25, counting, separator=" ")
    first = len(calls)
    assert first >= 5  # four chunks + separator (+ the joined context)
    pack_context(chunks, 25, counting, separator=" ")
    assert len(calls) == first  # everything came from the cache


# -- caches, near-duplicates, solver --------------------------------------------------


def _corpus(seed: int, n: int, dups: int) -> list[Chunk]:
    """Random texts over a large vocabulary plus planted near-duplicates at various
    similarities (1-6 word edits, exact copies, reordered punctuation/case)."""
    rng = random.Random(seed)
    out = [
        Chunk(
            " ".join(f"v{rng.randrange(5000)}" for _ in range(rng.randint(3, 120))) + ".",
            round(rng.random(), 4),
            id=f"t{i}",
        )
        for i in range(n)
    ]
    for k in range(dups):
        src = rng.choice(out).text.split()
        kind = rng.random()
        if kind < 0.2:
            text = " ".join(src).upper().replace(".", "!")  # same after normalization
        else:
            for _ in range(rng.randint(1, 6)):
                src[rng.randrange(len(src))] = f"e{rng.randrange(10**6)}"
            text = " ".join(src)
        out.append(Chunk(text, round(rng.random(), 4), id=f"d{k}"))
    rng.shuffle(out)
    return out


def _brute_force_duplicates(texts: list[str], threshold: float) -> dict[int, int]:
    sets = [_dedupe.shingles(t) for t in texts]
    kept: list[int] = []
    dup: dict[int, int] = {}
    for i, s in enumerate(sets):
        for j in kept:
            t = sets[j]
            if len(s & t) >= threshold * len(s | t):
                dup[i] = j
                break
        else:
            kept.append(i)
    return dup


@pytest.mark.parametrize("threshold", [0.5, 0.7, 0.85, 0.9, 1.0])
def test_near_duplicates_match_the_pairwise_definition(threshold: float) -> None:
    chunks = _corpus(4, 300, 120)
    texts = [c.text for c in sorted(chunks, key=lambda c: -(c.score or 0))]
    expected = _brute_force_duplicates(texts, threshold)
    assert len(expected) >= 20  # the corpus has duplicates at every threshold
    _dedupe.clear_caches()
    assert _dedupe.near_duplicates(texts, threshold) == expected
    assert _dedupe.near_duplicates(texts, threshold) == expected  # warm: cached sketches/pairs
    assert _dedupe.near_duplicates(texts, 1.01) == {}


@pytest.mark.parametrize("threshold", [0.7, 0.9])
def test_near_duplicates_repeated_call_is_memoized_and_identical(
    threshold: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    chunks = _corpus(4, 300, 120)
    texts = [c.text for c in sorted(chunks, key=lambda c: -(c.score or 0))]
    _dedupe.clear_caches()
    first = _dedupe.near_duplicates(texts, threshold)
    assert first == _brute_force_duplicates(texts, threshold)
    first[-1] = -1  # the caller's copy: the memo is not changed
    calls: list[int] = []
    real = _dedupe._near_duplicates
    monkeypatch.setattr(_dedupe, "_near_duplicates", lambda *a: calls.append(1) or real(*a))
    again = _dedupe.near_duplicates(list(texts), threshold)  # equal texts, same order
    assert calls == [] and again == _brute_force_duplicates(texts, threshold)
    reordered = texts[::-1]  # another order is another input: computed, not served
    assert _dedupe.near_duplicates(reordered, threshold) == _brute_force_duplicates(
        reordered, threshold
    )
    assert calls == [1]
    _dedupe.clear_caches()  # cold again: computed
    assert _dedupe.near_duplicates(texts, threshold) == again
    assert calls == [1, 1]


def test_exact_duplicates_need_no_similarity_work(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    real = _dedupe.shingles
    monkeypatch.setattr(_dedupe, "shingles", lambda t: calls.append(t) or real(t))
    text = " ".join(f"word{i}" for i in range(50)) + "."
    chunks = [Chunk(text, 0.9), Chunk(text.upper(), 0.8), Chunk("other text here", 0.5)]
    r = pack_context(chunks, 1000, wc)
    assert [(d.index, d.reason, d.duplicate_of) for d in r.report.dropped] == [(1, "duplicate", 0)]
    assert calls == []  # identical normalized text: no shingle sets built


def test_warm_calls_do_not_retokenize_or_resketch(monkeypatch: pytest.MonkeyPatch) -> None:
    counted: list[str] = []
    sketched: list[str] = []
    shingled: list[str] = []

    def counter(text: str) -> int:
        counted.append(text)
        return len(text.split())

    real_record, real_shingles = _dedupe._record, _dedupe.shingles
    monkeypatch.setattr(_dedupe, "_record", lambda t: sketched.append(t) or real_record(t))
    monkeypatch.setattr(_dedupe, "shingles", lambda t: shingled.append(t) or real_shingles(t))
    _dedupe.clear_caches()
    chunks = _corpus(8, 200, 40)
    first = pack_context(chunks, 1500, counter)
    assert len(first.report.dropped_by("duplicate")) >= 10
    n_live = len(chunks) - len(first.report.dropped_by("duplicate"))
    assert len(sketched) == len(chunks)  # every text sketched once
    assert n_live <= len(counted) <= n_live + 12  # live chunks + separator + joined/partial
    assert shingled  # some candidate pairs were checked exactly
    counted.clear()
    sketched.clear()
    shingled.clear()
    again = pack_context(list(reversed(chunks)), 1500, counter)  # same texts, new order
    assert (counted, sketched, shingled) == ([], [], [])
    assert again.report.relevance_kept == pytest.approx(first.report.relevance_kept)
    assert {d.chunk.id for d in again.report.dropped} == {d.chunk.id for d in first.report.dropped}


def test_two_generation_cache_is_bounded() -> None:
    cache = _dedupe._TwoGen(4)
    for i in range(20):
        cache.put(f"k{i}", i)
        assert len(cache) <= 8
    assert cache.get("k19") == 19 and cache.get("k0") is None
    cache.get("k16")  # a hit in the old generation is promoted
    for i in range(20, 24):
        cache.put(f"k{i}", i)
    assert cache.get("k16") == 16 and cache.get("k17") is None


def test_near_duplicate_sketches_do_not_depend_on_the_hash_seed() -> None:
    import os
    import subprocess

    texts = [c.text for c in _corpus(5, 60, 30)]
    code = (
        "import json, sys\n"
        "from tokenward.context import _dedupe\n"
        "texts = json.load(sys.stdin)\n"
        "print(json.dumps([_dedupe._record(t)[1:] for t in texts]))\n"
    )
    outs = []
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        proc = subprocess.run(
            [sys.executable, "-c", code],
            input=__import__("json").dumps(texts),
            capture_output=True,
            text=True,
            env=env,
            check=True,
        )
        outs.append(proc.stdout)
    assert outs[0] == outs[1]


def _dp_optimum(w: list[int], v: list[float], cap: int) -> float:
    best = [0.0] * (cap + 1)
    for wk, vk in zip(w, v, strict=True):
        if vk <= 0 or wk > cap:
            continue
        for c in range(cap, wk - 1, -1):
            cand = best[c - wk] + vk
            if cand > best[c]:
                best[c] = cand
    return best[cap]


def test_knapsack_is_exact_without_a_work_limit_and_certified_with_one() -> None:
    rng = random.Random(17)
    for trial in range(60):
        n = rng.randint(5, 120)
        w = [rng.randint(1, rng.choice([20, 80, 300])) for _ in range(n)]
        kind = trial % 3
        if kind == 0:
            v = [rng.random() for _ in range(n)]
        elif kind == 1:
            v = [round(rng.random(), 1) for _ in range(n)]  # many ties
        else:
            v = [x / 100 + rng.random() * 0.01 for x in w]  # value ~ weight: hard
        cap = rng.randint(max(w), max(max(w), sum(w) // 2))
        opt = _dp_optimum(w, v, cap)
        sel, exact, upper = _knapsack.solve(w, v, cap, work=10**9)
        assert exact and sum(w[i] for i in sel) <= cap
        assert sum(v[i] for i in sel) == pytest.approx(opt, rel=1e-12)
        for work in (0, 20, 200):
            sel, exact, upper = _knapsack.solve(w, v, cap, work=work)
            value = sum(v[i] for i in sel)
            assert sum(w[i] for i in sel) <= cap
            assert value <= opt + 1e-9 and upper >= opt - 1e-9  # the bound is a proof
            prefix, room = 0.0, cap  # never worse than the input-order prefix that fits
            for wk, vk in zip(w, v, strict=True):
                if wk > room:
                    break
                room -= wk
                prefix += vk
            assert value >= prefix - 1e-9


@pytest.mark.parametrize("size", [7, 40])
def test_small_sketch_store_keeps_flags_across_generations(
    monkeypatch: pytest.MonkeyPatch, size: int
) -> None:
    # a tiny store rotates and promotes constantly; results must not change
    monkeypatch.setattr(_dedupe, "_SKETCHES", _dedupe._SketchStore(size))
    chunks = _corpus(6, 80, 50)
    ranked = [c.text for c in sorted(chunks, key=lambda c: -(c.score or 0))]
    rng = random.Random(2)
    for _ in range(25):
        k = rng.randint(2, len(ranked))
        subset = sorted(rng.sample(range(len(ranked)), k))
        texts = [ranked[i] for i in subset]
        assert _dedupe.near_duplicates(texts, 0.9) == _brute_force_duplicates(texts, 0.9)


def test_the_same_text_twice_in_one_call_is_a_duplicate() -> None:
    text = " ".join(f"same{i}" for i in range(40)) + "."
    for dedupe in (0.9, 0.5):
        r = pack_context(
            [Chunk(text, 0.4), Chunk("a b c d", 0.3), Chunk(text, 0.8)], 500, wc, dedupe=dedupe
        )
        assert [(d.index, d.reason, d.duplicate_of) for d in r.report.dropped] == [
            (0, "duplicate", 2)
        ]


def test_concurrent_first_calls_leave_consistent_sketches() -> None:
    import threading

    chunks = _corpus(12, 150, 60)
    ranked = [c.text for c in sorted(chunks, key=lambda c: -(c.score or 0))]
    _dedupe.clear_caches()
    parts = [ranked[k::4] for k in range(4)]  # near-duplicates land in different threads
    threads = [threading.Thread(target=_dedupe.near_duplicates, args=(p, 0.9)) for p in parts]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert _dedupe.near_duplicates(ranked, 0.9) == _brute_force_duplicates(ranked, 0.9)


def test_small_instances_are_solved_exactly_even_when_the_default_search_budget_is_short():
    """ "Exact when small": the 400-visit default budget alone leaves some small instances
    certified only by the LP bound; pack_context must still prove them optimal."""
    import random

    from tokenward.context import _pack
    from tokenward.context._knapsack import solve

    rng = random.Random(7)
    short_budget_failed = 0
    for _ in range(40):
        n = rng.randint(40, 80)
        w = [rng.randint(20, 400) for _ in range(n)]
        v = [round(rng.random(), 3) + 0.001 for _ in range(n)]
        cap = sum(w) // 3
        assert n * cap <= _pack._SMALL_CELLS
        if not solve(w, v, cap, _pack._SOLVER_WORK)[1]:
            short_budget_failed += 1
        sel, exact, upper = _pack._solve(w, v, cap)
        assert exact
        assert sum(w[i] for i in sel) <= cap
        assert abs(sum(v[i] for i in sel) - upper) < 1e-9
    assert short_budget_failed > 0  # the instances exercise the retry


# -- issue 18: worst cases ------------------------------------------------------------


def _density_greedy_relevance(chunks: list[Chunk], budget: int, sep: int) -> float:
    """Sort by score per token, take what fits, skip misses (separators counted)."""
    order = sorted(chunks, key=lambda c: (c.score or 0) / max(1, wc(c.text)), reverse=True)
    room, kept = budget + sep, 0.0
    for c in order:
        if wc(c.text) + sep <= room and (c.score or 0) > 0:
            room -= wc(c.text) + sep
            kept += c.score or 0
    return kept


def _score_greedy_relevance(chunks: list[Chunk], budget: int, sep: int) -> float:
    """Sort by score, stop at the first chunk that does not fit."""
    used, kept = -sep, 0.0
    for c in sorted(chunks, key=lambda c: c.score or 0, reverse=True):
        if used + sep + wc(c.text) > budget:
            break
        used += sep + wc(c.text)
        kept += c.score or 0
    return kept


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    sizes=st.lists(st.integers(1, 60), min_size=1, max_size=40),
    levels=st.integers(1, 6),
    seed=st.integers(0, 10**6),
    budget=st.integers(0, 400),
    short_search=st.booleans(),
)
def test_pack_is_never_below_density_greedy(
    sizes: list[int], levels: int, seed: int, budget: int, short_search: bool
) -> None:
    rng = random.Random(seed)
    # few score levels: many ties in score and in score per token
    chunks = [
        Chunk(words(n, f"c{k}x"), round(rng.randrange(levels + 1) / levels, 3))
        for k, n in enumerate(sizes)
    ]
    sep = wc("\n\n---\n\n")
    with pytest.MonkeyPatch.context() as mp:
        if short_search:  # the solver stops early: the guarantee must not depend on it
            mp.setattr(_pack, "_SOLVER_WORK", 3)
            mp.setattr(_pack, "_SMALL_CELLS", 0)
        rep = pack_context(chunks, budget, wc, dedupe=None, allow_partial=False).report
    assert rep.tokens_used <= budget
    assert rep.relevance_kept >= _density_greedy_relevance(chunks, budget, sep) - 1e-9
    assert rep.relevance_kept >= _score_greedy_relevance(chunks, budget, sep) - 1e-9


def shared_prefix_chunks(n: int, seed: int, vocab: int = 5) -> list[Chunk]:
    """Short chunks that share a prefix: "chunk NNNN seed S kind K" + 6 random tokens,
    scores on a coarse grid (ties). The issue-18 worst case of the sketch keys."""
    rng = random.Random(seed)
    tokens = [f"tok{j}" for j in range(vocab)]
    return [
        Chunk(
            f"chunk {i:04d} seed {seed} kind {rng.randrange(4)} "
            + " ".join(rng.choice(tokens) for _ in range(6)),
            rng.randrange(10) / 10,
        )
        for i in range(n)
    ]


@pytest.mark.parametrize(
    ("vocab", "threshold"), [(3, 0.9), (20, 0.9), (10_000, 0.9), (10_000, 0.7), (10_000, 0.5)]
)
def test_shared_prefix_short_chunks_cost_no_similarity_checks(
    vocab: int, threshold: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    checks: list[int] = []
    real = _dedupe._intersection
    monkeypatch.setattr(_dedupe, "_intersection", lambda *a: checks.append(1) or real(*a))
    chunks = shared_prefix_chunks(1000, seed=7, vocab=vocab)
    # one near-duplicate of each kind: a word appended, the last word changed, same words
    chunks.append(Chunk(chunks[10].text + " extra", 0.0))
    chunks.append(Chunk(chunks[20].text.upper() + "!", 0.0))
    _dedupe.clear_caches()
    for _ in range(2):  # cold, then warm
        checks.clear()
        rep = pack_context(chunks, 2000, wc, allow_partial=False, dedupe=threshold).report
        dups = {(d.index, d.duplicate_of) for d in rep.dropped_by("duplicate")}
        assert dups == {(1000, 10), (1001, 20)}
        # unrelated chunks sharing a prefix are never compared; the appended word is
        # found by key and verified once
        assert len(checks) <= 1


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    base=st.lists(st.lists(st.sampled_from("abcdefgh"), min_size=1, max_size=13), max_size=12),
    edits=st.lists(st.tuples(st.integers(0, 11), st.sampled_from(["add", "drop", "swap"]))),
    threshold=st.sampled_from([0.3, 0.5, 0.7, 0.85, 0.9, 0.95, 1.0]),
)
def test_short_text_near_duplicates_match_the_pairwise_definition(
    base: list[list[str]], edits: list[tuple[int, str]], threshold: float
) -> None:
    texts = [" ".join(ws) for ws in base]
    for k, op in edits:  # near-duplicates of short texts (exact-neighbourhood keys)
        if not base:
            break
        ws = list(base[k % len(base)])
        if op == "add":
            ws.append("z")
        elif op == "drop" and len(ws) > 1:
            ws.pop()
        else:
            ws[-1] = "y"
        texts.append(" ".join(ws))
    _dedupe.clear_caches()
    assert _dedupe.near_duplicates(texts, threshold) == _brute_force_duplicates(texts, threshold)


def test_dense_overlap_costs_a_bounded_number_of_checks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Longer chunks (sketched) from a 5-word vocabulary share many keys with many others
    without being near-duplicates: a key shared by a few kept chunks is retired, so the
    exact checks stay linear in the number of chunks, and the answer stays exact."""
    rng = random.Random(3)
    texts = [
        f"chunk {i:04d} seed 3 kind {rng.randrange(4)} "
        + " ".join(rng.choice(["ta", "tb", "tc", "td", "te"]) for _ in range(rng.randint(8, 12)))
        for i in range(600)
    ]
    texts += [t + " tail" for t in texts[:30]]  # near-duplicates: one word appended
    checks: list[int] = []
    real = _dedupe._intersection
    monkeypatch.setattr(_dedupe, "_intersection", lambda *a: checks.append(1) or real(*a))
    _dedupe.clear_caches()
    assert _dedupe.near_duplicates(texts, 0.9) == _brute_force_duplicates(texts, 0.9)
    assert len(checks) <= 4 * len(texts)
