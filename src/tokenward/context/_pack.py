"""Pack retrieved chunks into a token budget by relevance (RAG context packing)."""

from __future__ import annotations

import inspect
import re
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import compress, filterfalse, islice, repeat
from operator import attrgetter, not_
from typing import Any, ClassVar, Literal, NamedTuple, cast

# _SKETCHES: the sketch cache under its old name (benchmarks clear it for cold runs)
from tokenward.context._dedupe import _SKETCHES, _TwoGen, near_duplicates  # noqa: F401
from tokenward.context._knapsack import lp_bound, solve
from tokenward.errors import ConfigurationError
from tokenward.messages import Chunk

__all__ = ["DroppedChunk", "PackReport", "PackResult", "pack_context"]

Reason = Literal["duplicate", "below_min_score", "did_not_fit", "empty"]

_SENTENCE_END = re.compile(r"[.!?\u3002\uff01\uff1f](?=\s|$)")


class DroppedChunk(NamedTuple):
    """A candidate that is not in the packed context, and why."""

    index: int  # type: ignore[assignment]  # position in the input (shadows tuple.index)
    chunk: Chunk
    reason: Reason
    tokens: int | None = None  # its size (None when it was not counted)
    duplicate_of: int | None = None  # input index of the kept near-duplicate


@dataclass(frozen=True, slots=True)
class PackReport:
    """What :func:`pack_context` kept, what it cost and what it dropped."""

    strategy: str
    max_tokens: int
    tokens_used: int  # tokens of the joined context, separators included
    separator_tokens: int  # tokens of one separator
    chunks_offered: int
    chunks_kept: int  # full chunks kept (the partial one not included)
    relevance_offered: float  # sum of positive scores of all input chunks
    relevance_candidates: float  # ... after dropping duplicates and low scores
    relevance_kept: float  # sum of positive scores of the fully kept chunks
    exact: bool  # the knapsack was solved exactly
    bound: float  # certified: relevance_kept >= bound * optimum
    dropped: tuple[DroppedChunk, ...] = ()
    partial: Chunk | None = None  # the truncated chunk, if one was added

    @property
    def relevance_ratio(self) -> float:
        """Kept relevance as a fraction of the relevance offered."""
        return self.relevance_kept / self.relevance_offered if self.relevance_offered else 1.0

    def dropped_by(self, reason: Reason) -> list[DroppedChunk]:
        return [d for d in self.dropped if d.reason == reason]


@dataclass(frozen=True, slots=True)
class PackResult:
    """The packed chunks (in the requested order) and the report."""

    chunks: list[Chunk]
    report: PackReport
    separator: str = field(default="\n\n---\n\n", repr=False)

    @property
    def text(self) -> str:
        """The chunks joined with the separator: exactly what was counted."""
        return self.separator.join(c.text for c in self.chunks)


_new_dropped = tuple.__new__  # DroppedChunk without the Python-level __new__ (hot path)
_text_of = attrgetter("text")
_score_of = attrgetter("score")
_is_positive = (0.0).__lt__


def _positive_sum(values: Iterable[float]) -> float:
    return sum(filter(_is_positive, values))


def _scores(raw: list[Any]) -> list[float]:
    if set(map(type, raw)) <= {float}:
        return raw
    return [float(x) if x is not None else 0.0 for x in raw]


# -- inputs ---------------------------------------------------------------------------


def _as_chunk(x: Any) -> Chunk:
    if isinstance(x, Chunk):
        return x
    if isinstance(x, str):
        return Chunk(text=x)
    if isinstance(x, tuple) and len(x) == 2 and isinstance(x[0], str):
        return Chunk(text=x[0], score=x[1])
    if isinstance(x, Mapping):
        text = x.get("text", x.get("page_content", x.get("content")))
        if not isinstance(text, str):
            raise ConfigurationError(f"chunk dict needs a 'text' string; got keys {sorted(x)}")
        md = x.get("metadata") or {}
        score = x.get("score", md.get("score") if isinstance(md, Mapping) else None)
        return Chunk(text=text, score=score, metadata=dict(md), id=x.get("id"), source=x)
    text = getattr(x, "page_content", None)
    if text is None:
        text = getattr(x, "text", None)
    if isinstance(text, str):
        md = getattr(x, "metadata", None) or {}
        score = getattr(x, "score", None)
        if score is None and isinstance(md, Mapping):
            score = md.get("score")
        return Chunk(text=text, score=score, metadata=dict(md), id=getattr(x, "id", None), source=x)
    raise ConfigurationError(
        f"cannot pack {type(x).__name__}: pass tokenward.Chunk, str, (text, score) or a dict"
    )


class _TextCounter:
    """tokens(text) with bounded caches per counter, shared across calls: a two-generation
    LRU for chunk texts and a small one for assembled contexts."""

    _caches: ClassVar[
        weakref.WeakKeyDictionary[Any, dict[Any, tuple[_TwoGen, OrderedDict[str, int]]]]
    ] = weakref.WeakKeyDictionary()
    _maxsize = 100_000  # texts per generation (two generations)

    def __init__(self, counter: Any) -> None:
        if counter is None:
            raise ConfigurationError(
                "no token counter given: pass counter=<model name>, a TokenCounter or a "
                "callable str -> int"
            )
        if isinstance(counter, str):
            from tokenward.counting import get_counter

            counter = get_counter(counter)
        if hasattr(counter, "count_text"):
            fn = counter.count_text
        elif callable(counter):
            fn = counter
        else:
            raise ConfigurationError(
                "counter must be a model name, TokenCounter or callable; "
                f"got {type(counter).__name__}"
            )
        self.fn: Callable[[str], int] = fn
        # a bound method is a new object on every attribute access: key by its owner
        owner = getattr(counter, "__self__", None)
        key = owner if owner is not None and inspect.ismethod(counter) else counter
        try:
            per_key = self._caches.get(key)
            if per_key is None:
                per_key = self._caches[key] = {}
            name = getattr(counter, "__func__", None) if key is not counter else None
            caches = per_key.get(name)
            if caches is None:
                caches = per_key[name] = (_TwoGen(self._maxsize), OrderedDict())
        except TypeError:  # not weak-referenceable: per-call only
            caches = (_TwoGen(self._maxsize), OrderedDict())
        self.cache, self._joined = caches

    def __call__(self, text: str) -> int:
        cache = self.cache
        n = cache.get(text)
        if n is None:
            n = int(self.fn(text))
            cache.put(text, n)
        return n  # type: ignore[no-any-return]

    def many(self, texts: list[str]) -> list[int]:
        """Counts for many texts (hits in the young generation resolved in C)."""
        out = list(map(self.cache.young.get, texts))
        if None in out:
            out = [n if n is not None else self(t) for n, t in zip(out, texts, strict=True)]
        return out  # type: ignore[return-value]

    def raw(self, text: str) -> int:
        """Count a long assembled text (the joined context): small separate LRU."""
        cache = self._joined
        n = cache.get(text)
        if n is None:
            n = int(self.fn(text))
            cache[text] = n
            if len(cache) > 32:
                cache.popitem(last=False)
        else:
            cache.move_to_end(text)
        return n


# -- knapsack -------------------------------------------------------------------------

_SOLVER_WORK = 400  # state visits the knapsack search may spend (a few microseconds each)
# "Exact when small": an instance a DP table of this many cells would solve gets a larger
# search budget when the default one did not prove optimality.
_SMALL_CELLS = 2_000_000
_SMALL_WORK = 100_000


def _solve(w: list[int], v: list[float], cap: int) -> tuple[list[int], bool, float]:
    """0/1 knapsack: (chosen positions, exact?, proven upper bound on the optimum)."""
    result = solve(w, v, cap, _SOLVER_WORK)
    if not result[1] and len(w) * cap <= _SMALL_CELLS:
        result = solve(w, v, cap, _SMALL_WORK)
    return result


upper_bound = lp_bound  # LP-relaxation bound (kept under its old name)


def density_greedy(tokens: list[int], values: list[float], sep: int, max_tokens: int) -> list[int]:
    """Positions chosen by score per token, best first (ties in input order), taking
    every chunk that still fits and skipping the ones that do not (separators counted)."""
    dens = [v / t if t else float("inf") for v, t in zip(values, tokens, strict=True)]
    room = max_tokens + sep  # n chunks need n - 1 separators
    chosen = []
    for i in sorted(range(len(tokens)), key=dens.__getitem__, reverse=True):
        cost = tokens[i] + sep
        if cost <= room and values[i] > 0:
            chosen.append(i)
            room -= cost
    return sorted(chosen)


# -- partial fill ---------------------------------------------------------------------


def _cut_sentences(text: str, room: int, count: Callable[[str], int]) -> str:
    """Longest prefix ending on a sentence boundary with at most ``room`` tokens."""
    if room <= 0:
        return ""
    ends = [m.end() for m in _SENTENCE_END.finditer(text)]
    lo, hi, best = 0, len(ends) - 1, ""
    while lo <= hi:
        mid = (lo + hi) // 2
        cand = text[: ends[mid]].rstrip()
        if count(cand) <= room:
            best, lo = cand, mid + 1
        else:
            hi = mid - 1
    return best


# -- ordering -------------------------------------------------------------------------


def _edges(ranked: list[int]) -> list[int]:
    """Best first, second best last, third second, ... (weakest in the middle)."""
    front: list[int] = []
    back: list[int] = []
    for k, i in enumerate(ranked):
        (front if k % 2 == 0 else back).append(i)
    return front + back[::-1]


def pack_context(
    chunks: Sequence[Chunk | str | Mapping[str, Any] | tuple[str, float] | Any],
    max_tokens: int,
    counter: Any = None,
    *,
    strategy: Literal["optimal", "greedy"] = "optimal",
    separator: str = "\n\n---\n\n",
    min_score: float | None = None,
    dedupe: float | None = 0.9,
    allow_partial: bool = True,
    min_partial_tokens: int = 100,
    order: Literal["score", "original", "edges"] = "score",
) -> PackResult:
    """Choose the chunks that maximize total relevance within ``max_tokens``.

    Args:
        chunks: :class:`~tokenward.Chunk` objects, strings, ``(text, score)`` pairs,
            dicts with ``text``/``page_content`` and ``score``, or objects with
            ``page_content``/``text`` and ``score`` (or ``metadata["score"]``).
            A missing score counts as 0.
        max_tokens: budget for the joined context (``separator.join(texts)``).
        counter: a model name, a ``TokenCounter`` or a callable ``str -> int``. Counts
            are cached per counter and text across calls (bounded, least recently used
            dropped first), like the near-duplicate sketches.
        strategy: ``"optimal"``: 0/1 knapsack on (tokens + one separator) per chunk with
            capacity ``max_tokens`` + one separator (n chunks need n - 1 separators),
            solved in pure Python (no numpy; deterministic): items by relevance density,
            the items that cannot change the optimum fixed by bounds (reduction around
            the greedy break point), the rest searched as Pareto states with bound
            pruning under a work budget (a few milliseconds at most), first to a 1e-4
            relative gap, then exactly if that is cheap. ``report.exact`` says the
            selection is proven optimal; otherwise ``report.bound`` is certified:
            ``relevance_kept >= report.bound * optimum`` (from the LP relaxation or the
            search; never below 1/2 because the best single chunk is considered, and
            typically >= 0.999). The selection is never worth less than the score-greedy one
            nor than density-greedy (score per token, skip what does not fit).
            ``"greedy"``: the common sort-by-score, stop-at-first-miss strategy
            (seed 003), with separators counted.
        separator: joins the chunks; counted.
        min_score: drop chunks scoring below this.
        dedupe: drop a chunk whose word-3-gram Jaccard similarity with a better-scored
            kept chunk is at least this (``None`` or 0 disables; 1.0 = exact text only
            after normalization). Candidate pairs come from cached keys, verified
            exactly: from 0.85 on, short chunks (at most 11 word 3-grams) are matched
            exactly by their neighbourhood (no miss, and unrelated chunks sharing a prefix
            are never compared) and longer ones by bottom-k sketches (recall > 0.999 at the
            threshold, measured), with linear work on any input; below 0.85 chunks of
            at most 16 word 3-grams by their rarest 3-grams (exact) and longer ones by
            sketch values (work grows with the pairs sharing one); see
            ``tokenward.context._dedupe``.
        allow_partial: fill the leftover room with the best remaining chunk cut on a
            sentence boundary (``metadata["tokenward_partial"] = True``).
        min_partial_tokens: only cut when at least this many tokens are free.
        order: ``"score"`` (best first), ``"original"`` (input order) or ``"edges"``
            (best at both ends, weakest in the middle, against lost-in-the-middle).

    The joined text is re-counted at the end; if token merges across a separator make
    it exceed ``max_tokens``, the lowest-density chunk is dropped until it fits.
    """
    if strategy not in ("optimal", "greedy"):
        raise ConfigurationError(f"strategy must be 'optimal' or 'greedy'; got {strategy!r}")
    if order not in ("score", "original", "edges"):
        raise ConfigurationError(f"order must be 'score', 'original' or 'edges'; got {order!r}")
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 0:
        raise ConfigurationError(f"max_tokens must be an int >= 0; got {max_tokens!r}")
    items: list[Chunk]
    if set(map(type, chunks)) <= {Chunk}:
        items = cast(list[Chunk], list(chunks))
    else:
        items = [c if type(c) is Chunk else _as_chunk(c) for c in chunks]
    n = len(items)
    count = _TextCounter(counter)
    texts: list[str] = list(map(_text_of, items))
    scores = _scores(list(map(_score_of, items)))
    dropped: dict[int, DroppedChunk] = {}
    rank = sorted(range(n), key=scores.__getitem__, reverse=True)  # stable: ties keep order

    if min_score is None and "" not in texts and not any(map(str.isspace, texts)):
        live = rank
    else:
        live = []
        for i in rank:
            if min_score is not None and scores[i] < min_score:
                dropped[i] = DroppedChunk(i, items[i], "below_min_score")
            elif not texts[i].strip():
                dropped[i] = DroppedChunk(i, items[i], "empty", 0)
            else:
                live.append(i)
    if dedupe:
        dup = near_duplicates(list(map(texts.__getitem__, live)), float(dedupe))
        if dup:
            for p, q in dup.items():
                i = live[p]
                dropped[i] = DroppedChunk(i, items[i], "duplicate", duplicate_of=live[q])
            live = list(compress(live, map(not_, map(dup.__contains__, range(len(live))))))
    live_tokens = count.many(list(map(texts.__getitem__, live)))
    tokens = dict(zip(live, live_tokens))
    sep_t = count(separator) if separator else 0

    exact = True
    w = list(map(sep_t.__add__, live_tokens))
    v = list(map(scores.__getitem__, live))
    relevance_candidates = _positive_sum(v)
    chosen: list[int]
    partial_of: int | None = None
    if strategy == "greedy":
        chosen, used = [], 0
        for i in live:  # already by score, best first
            cost = tokens[i] + (sep_t if chosen else 0)
            if used + cost > max_tokens:
                partial_of = i
                break
            chosen.append(i)
            used += cost
        exact = False
        upper = upper_bound(w, v, max_tokens + sep_t)
    else:
        sel, exact, upper = _solve(w, v, max_tokens + sep_t)
        if not exact:  # never worth less than the usual density heuristic
            greedy = density_greedy(live_tokens, v, sep_t, max_tokens)
            if sum(map(v.__getitem__, greedy)) > sum(map(v.__getitem__, sel)):
                sel = greedy
        chosen = list(map(live.__getitem__, sel))
        if v and min(v) <= 0.0:
            # chunks with no positive score add no relevance: add them, best first, while
            # room remains
            room = max_tokens + sep_t - sum(tokens[i] + sep_t for i in chosen)
            chosen_set = set(chosen)
            for i in live:
                if i not in chosen_set and scores[i] <= 0 and tokens[i] + sep_t <= room:
                    chosen.append(i)
                    room -= tokens[i] + sep_t

    def arrange(ids: list[int]) -> list[int]:
        if order == "original":
            return sorted(ids)
        ranked = sorted(sorted(ids), key=scores.__getitem__, reverse=True)  # (-score, index)
        return _edges(ranked) if order == "edges" else ranked

    # exact re-count of the joined text (token merges across separators)
    used = 0
    while chosen:
        used = count.raw(separator.join(map(texts.__getitem__, arrange(chosen))))
        if used <= max_tokens:
            break
        worst = min(chosen, key=lambda i: (scores[i] / max(1, tokens[i]), -i))
        chosen.remove(worst)
        exact = False
        used = 0

    partial: Chunk | None = None
    partial_index: int | None = None
    chosen_set = set(chosen)
    if allow_partial:
        room = max_tokens - used - (sep_t if chosen else 0)
        if room >= min_partial_tokens:
            if strategy == "greedy":
                cands = [partial_of] if partial_of is not None else []
            else:
                cands = list(islice(filterfalse(chosen_set.__contains__, live), 3))
            for i in cands:
                cut = _cut_sentences(texts[i], room, count.raw)
                if not cut:
                    continue
                c = items[i]
                src = c.source if c.source is not None else c
                part = Chunk(
                    text=cut,
                    score=c.score,
                    id=c.id,
                    source=src,
                    metadata={
                        **c.metadata,
                        "tokenward_partial": True,
                        "tokenward_tokens": count.raw(cut),
                        "tokenward_original_tokens": tokens[i],
                    },
                )
                ids = arrange(chosen + [i])
                parts = list(map(texts.__getitem__, ids))
                parts[ids.index(i)] = cut
                trial = separator.join(parts)
                t = count.raw(trial)
                if t <= max_tokens:
                    partial, partial_index, used = part, i, t
                    break

    ids = arrange(chosen + ([partial_index] if partial_index is not None else []))
    out = [partial if partial is not None and i == partial_index else items[i] for i in ids]
    if partial_index is not None:
        chosen_set.add(partial_index)
    # every input index not kept, in input order: dropped earlier, or did not fit
    if dropped:
        gone = list(filterfalse(chosen_set.__contains__, range(n)))
        rest = list(filterfalse(dropped.__contains__, gone))
    else:
        rest = gone = list(filterfalse(chosen_set.__contains__, range(n)))
    did_not_fit = map(
        _new_dropped,
        repeat(DroppedChunk),
        zip(
            rest,
            map(items.__getitem__, rest),
            repeat("did_not_fit"),
            map(tokens.__getitem__, rest),
            repeat(None),
        ),
    )
    if dropped:  # merge by input index
        by_index = dict(zip(rest, did_not_fit))
        by_index.update(dropped)
        all_dropped = list(map(by_index.__getitem__, gone))
    else:
        all_dropped = list(did_not_fit)
    kept = _positive_sum(map(scores.__getitem__, chosen))
    bound = 1.0 if exact or upper <= 0 else min(1.0, max(0.0, kept) / upper)
    report = PackReport(
        strategy=strategy,
        max_tokens=max_tokens,
        tokens_used=used,
        separator_tokens=sep_t,
        chunks_offered=n,
        chunks_kept=len(chosen),
        relevance_offered=_positive_sum(scores),
        relevance_candidates=relevance_candidates,
        relevance_kept=kept,
        exact=exact,
        bound=bound,
        dropped=tuple(all_dropped),
        partial=partial,
    )
    return PackResult(out, report, separator)
