"""Pack retrieved chunks into a token budget by relevance (RAG context packing)."""

from __future__ import annotations

import inspect
import re
import weakref
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

from tokenward.errors import ConfigurationError
from tokenward.messages import Chunk

__all__ = ["pack_context", "PackResult", "PackReport", "DroppedChunk"]

Reason = Literal["duplicate", "below_min_score", "did_not_fit", "empty"]

_SENTENCE_END = re.compile(r"[.!?\u3002\uff01\uff1f](?=\s|$)")
_EXACT_CELLS = 2_000_000  # exact DP when items x capacity is at most this (numpy)
_CORE_CELLS = 1_500_000  # core DP size in the hybrid solver (numpy)
_PARETO_LIMIT = 20_000  # pure-Python exact solver: give up above this many states


class DroppedChunk(NamedTuple):
    """A candidate that is not in the packed context, and why."""

    index: int  # position in the input
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


def _positive_sum(values: list[float]) -> float:
    return sum([x for x in values if x > 0.0])


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
    """tokens(text) with bounded caches per counter (shared across calls): one for chunk
    texts, a small one for assembled contexts."""

    _caches: weakref.WeakKeyDictionary[
        Any, dict[Any, tuple[OrderedDict[str, int], OrderedDict[str, int]]]
    ] = weakref.WeakKeyDictionary()
    _maxsize = 200_000

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
                caches = per_key[name] = (OrderedDict(), OrderedDict())
        except TypeError:  # not weak-referenceable: per-call only
            caches = (OrderedDict(), OrderedDict())
        self.cache, self._joined = caches

    def __call__(self, text: str) -> int:
        cache = self.cache
        n = cache.get(text)  # type: ignore[union-attr]
        if n is None:
            n = int(self.fn(text))
            cache[text] = n  # type: ignore[index]
            if len(cache) > self._maxsize:  # type: ignore[arg-type]
                cache.popitem(last=False)  # type: ignore[union-attr]
        return n

    def many(self, texts: list[str]) -> list[int]:
        """Counts for many texts (cache hits resolved in C)."""
        out = list(map(self.cache.get, texts))
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
        return n


# -- near duplicates ------------------------------------------------------------------

_SKETCHES: OrderedDict[str, tuple[frozenset[int], list[int]]] = OrderedDict()
_PUNCT = str.maketrans({c: " " for c in "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~\u2019\u201c\u201d"})


def _sketch(text: str) -> tuple[frozenset[int], list[int]]:
    """Hashed word 3-gram shingles of the normalized text, and its 4 smallest hashes."""
    sk = _SKETCHES.get(text)
    if sk is None:
        words = text.lower().translate(_PUNCT).split()
        if len(words) >= 3:
            shingles = frozenset(map(hash, zip(words, words[1:], words[2:], strict=False)))
        else:
            shingles = frozenset((hash(" ".join(words)),))
        sk = (shingles, sorted(shingles)[:4])
        _SKETCHES[text] = sk
        if len(_SKETCHES) > 100_000:
            _SKETCHES.popitem(last=False)
    return sk


def _dedupe(order: list[int], texts: list[str], threshold: float) -> dict[int, int]:
    """Map duplicate index -> kept index. ``order`` is the priority (best first).

    Normalized text (lower case, punctuation removed), word 3-gram shingles; Jaccard
    similarity >= ``threshold`` is a duplicate. Candidate pairs come from the 4 smallest
    shingle hashes (a pair at Jaccard 0.9 shares at least one with probability > 0.999);
    every reported pair is verified exactly. Sketches are cached per text.
    """
    index: dict[int, list[int]] = {}
    sets: dict[int, frozenset[int]] = {}
    dup: dict[int, int] = {}
    for i in order:
        s, keys = _sketch(texts[i])
        found = None
        ls = len(s)
        for h in keys:
            for j in index.get(h, ()):
                t = sets[j]
                lt = len(t)
                if min(ls, lt) < threshold * max(ls, lt):
                    continue
                inter = len(s & t)
                if inter >= threshold * (ls + lt - inter):
                    found = j
                    break
            if found is not None:
                break
        if found is not None:
            dup[i] = found
            continue
        sets[i] = s
        for h in keys:
            index.setdefault(h, []).append(i)
    return dup


# -- knapsack -------------------------------------------------------------------------


def _numpy() -> Any:
    try:
        import numpy
    except ImportError:  # pragma: no cover - numpy is almost always present
        return None
    return numpy


def _dp_numpy(np: Any, w: list[int], v: list[float], cap: int) -> list[int]:
    """Exact 0/1 knapsack over integer weights; returns chosen positions."""
    dp = np.zeros(cap + 1)
    keep = np.zeros((len(w), cap + 1), dtype=bool)
    for k, (wk, vk) in enumerate(zip(w, v, strict=True)):
        if wk > cap:
            continue
        if wk == 0:
            keep[k, :] = True
            dp += vk
            continue
        cand = dp[: cap + 1 - wk] + vk  # a new array: safe to update dp in place below
        tail = dp[wk:]
        np.greater(cand, tail, out=keep[k, wk:])
        np.maximum(tail, cand, out=tail)
    out, c = [], cap
    for k in range(len(w) - 1, -1, -1):
        if keep[k, c]:
            out.append(k)
            c -= w[k]
    return out[::-1]


def _dp_pareto(w: list[int], v: list[float], cap: int) -> list[int] | None:
    """Exact 0/1 knapsack by Pareto states (pure Python); None when too many states."""
    states: list[tuple[int, float, int]] = [(0, 0.0, 0)]
    for k, (wk, vk) in enumerate(zip(w, v, strict=True)):
        bit = 1 << k
        shifted = [(sw + wk, sv + vk, sm | bit) for sw, sv, sm in states if sw + wk <= cap]
        if not shifted:
            continue
        merged = sorted(states + shifted, key=lambda s: (s[0], -s[1]))
        states = []
        best = -1.0
        for s in merged:
            if s[1] > best:
                states.append(s)
                best = s[1]
        if len(states) > _PARETO_LIMIT:
            return None
    mask = states[-1][2]
    return [k for k in range(len(w)) if mask >> k & 1]


def _lp_bound(w: list[int], v: list[float], order: list[int], cap: int) -> float:
    room, total = cap, 0.0
    for i in order:
        if w[i] <= room:
            room -= w[i]
            total += v[i]
        else:
            total += v[i] * room / w[i] if w[i] else v[i]
            break
    return total


def _density_order(w: list[int], v: list[float], idx: list[int]) -> list[int]:
    """Indices by value density, best first (stable: ties keep index order)."""
    neg = {i: (-(v[i] / w[i]) if w[i] else float("-inf")) for i in idx}
    return sorted(idx, key=neg.__getitem__)


def upper_bound(w: list[int], v: list[float], cap: int) -> float:
    """LP-relaxation bound on the optimum of the 0/1 knapsack (positive values only)."""
    idx = [i for i in range(len(w)) if w[i] <= cap and v[i] > 0]
    return _lp_bound(w, v, _density_order(w, v, idx), cap)


def _solve(w: list[int], v: list[float], cap: int) -> tuple[list[int], bool, float]:
    """0/1 knapsack: (chosen positions, exact?, upper bound on the optimum)."""
    idx = [i for i in range(len(w)) if w[i] <= cap and v[i] > 0]
    if not idx:
        return [], True, 0.0
    np = _numpy()
    if sum(w[i] for i in idx) <= cap:
        return idx, True, sum(v[i] for i in idx)
    if np is not None and len(idx) * (cap + 1) <= _EXACT_CELLS:
        sel = [idx[k] for k in _dp_numpy(np, [w[i] for i in idx], [v[i] for i in idx], cap)]
        return sel, True, sum(v[i] for i in sel)
    if np is None and len(idx) <= 24:
        sel2 = _dp_pareto([w[i] for i in idx], [v[i] for i in idx], cap)
        if sel2 is not None:
            sel = [idx[k] for k in sel2]
            return sel, True, sum(v[i] for i in sel)
    # hybrid: greedy by density, exact DP on a core of items around the break item
    order = _density_order(w, v, idx)
    upper = _lp_bound(w, v, order, cap)
    room, b = cap, len(order)
    for pos, i in enumerate(order):
        if w[i] > room:
            b = pos
            break
        room -= w[i]
    half = 40 if np is not None else 8
    while True:
        lo, hi = max(0, b - half), min(len(order), b + half)
        fixed = order[:lo]
        core = order[lo:hi]
        res = cap - sum(w[i] for i in fixed)
        if np is None or half <= 2 or len(core) * (res + 1) <= _CORE_CELLS:
            break
        half //= 2
    if np is not None:
        sel = _dp_numpy(np, [w[i] for i in core], [v[i] for i in core], res)
    else:
        sel = _dp_pareto([w[i] for i in core], [v[i] for i in core], res) or []
        if not sel:  # too many states: greedy on the core
            r = res
            for k, i in enumerate(core):
                if w[i] <= r:
                    sel.append(k)
                    r -= w[i]
    chosen = fixed + [core[k] for k in sel]
    room = cap - sum(w[i] for i in chosen)
    for i in order[hi:]:
        if w[i] <= room:
            chosen.append(i)
            room -= w[i]
    value = sum(v[i] for i in chosen)
    best_single = max(idx, key=lambda i: v[i])
    if v[best_single] > value:
        chosen, value = [best_single], v[best_single]
    return sorted(chosen), False, max(upper, value)


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
            are cached per counter and text across calls.
        strategy: ``"optimal"``: 0/1 knapsack on (tokens + one separator) per chunk with
            capacity ``max_tokens`` + one separator (n chunks need n - 1 separators).
            Solved exactly by dynamic programming over integer token weights when
            items x capacity <= 2,000,000 (numpy; without numpy, exact for <= 24 items);
            otherwise greedy by relevance density plus an exact DP over the ~80 items
            around the greedy break point, then a fill pass. The result is certified
            against the LP relaxation: ``report.bound = kept / LP bound``, and
            ``relevance_kept >= report.bound * optimum`` (always >= 1/2, because the
            best single chunk is also considered; in practice >= 0.99 when chunks are
            small next to the budget). ``"greedy"``: the common sort-by-score,
            stop-at-first-miss strategy (seed 003), with separators counted.
        separator: joins the chunks; counted.
        min_score: drop chunks scoring below this.
        dedupe: drop a chunk whose word-3-gram Jaccard similarity with a better-scored
            kept chunk is at least this (``None`` or 0 disables; 1.0 = exact text only
            after normalization).
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
    items = [c if type(c) is Chunk else _as_chunk(c) for c in chunks]
    n = len(items)
    count = _TextCounter(counter)
    scores = [float(c.score) if c.score is not None else 0.0 for c in items]
    texts = [c.text for c in items]
    dropped: dict[int, DroppedChunk] = {}
    neg_scores = [-x for x in scores]
    rank = sorted(range(n), key=neg_scores.__getitem__)  # stable: ties keep input order

    live: list[int] = []
    for i in rank:
        if min_score is not None and scores[i] < min_score:
            dropped[i] = DroppedChunk(i, items[i], "below_min_score")
        elif not texts[i].strip():
            dropped[i] = DroppedChunk(i, items[i], "empty", 0)
        else:
            live.append(i)
    if dedupe:
        for i, j in _dedupe(live, texts, float(dedupe)).items():
            dropped[i] = DroppedChunk(i, items[i], "duplicate", duplicate_of=j)
        live = [i for i in live if i not in dropped]
    relevance_candidates = _positive_sum([scores[i] for i in live])
    tokens = dict(zip(live, count.many([texts[i] for i in live]), strict=True))
    sep_t = count(separator) if separator else 0

    exact = True
    w = [tokens[i] + sep_t for i in live]
    v = [scores[i] for i in live]
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
        chosen = [live[k] for k in sel]
        # chunks with no positive score add no relevance: add them, best first, while room remains
        room = max_tokens + sep_t - sum(tokens[i] + sep_t for i in chosen)
        chosen_set = set(chosen)
        for i in live:
            if i not in chosen_set and scores[i] <= 0 and tokens[i] + sep_t <= room:
                chosen.append(i)
                room -= tokens[i] + sep_t

    def arrange(ids: list[int]) -> list[int]:
        if order == "original":
            return sorted(ids)
        ranked = sorted(ids, key=lambda i: (-scores[i], i))
        return _edges(ranked) if order == "edges" else ranked

    # exact re-count of the joined text (token merges across separators)
    used = 0
    while chosen:
        used = count.raw(separator.join(texts[i] for i in arrange(chosen)))
        if used <= max_tokens:
            break
        worst = min(chosen, key=lambda i: (scores[i] / max(1, tokens[i]), -i))
        chosen.remove(worst)
        exact = False
        used = 0

    partial: Chunk | None = None
    partial_index: int | None = None
    if allow_partial:
        chosen_set = set(chosen)
        room = max_tokens - used - (sep_t if chosen else 0)
        if room >= min_partial_tokens:
            if strategy == "greedy":
                cands = [partial_of] if partial_of is not None else []
            else:
                cands = [i for i in live if i not in chosen_set][:3]
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
                trial = separator.join(cut if k == i else texts[k] for k in ids)
                t = count.raw(trial)
                if t <= max_tokens:
                    partial, partial_index, used = part, i, t
                    break

    ids = arrange(chosen + ([partial_index] if partial_index is not None else []))
    out = [partial if i == partial_index else items[i] for i in ids]
    chosen_set = set(chosen)
    for i in live:
        if i not in chosen_set and i != partial_index:
            dropped[i] = _new_dropped(DroppedChunk, (i, items[i], "did_not_fit", tokens[i], None))
    kept = _positive_sum([scores[i] for i in chosen])
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
        dropped=tuple(dropped[i] for i in sorted(dropped)),
        partial=partial,
    )
    return PackResult(out, report, separator)
