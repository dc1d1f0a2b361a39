"""Near-duplicate detection for context packing: cached sketches, candidate keys, exact check.

Similarity is the Jaccard index of the sets of word 3-grams ("shingles") of the
normalized text (lower case, punctuation removed, split on whitespace); a text of fewer
than three words is one shingle. Two chunks are near-duplicates when it is at least the
threshold. Everything here is deterministic (words are hashed with CRC-32, not with
Python's per-process string hash), so the same input gives the same answer in every
process.

Per text (cached by text in a bounded two-generation LRU shared by all calls, about 1 KB
each):

* the number of distinct shingles (for the size filter: ``J(A, B) <= min/max size``);
* a hash of the shingle set (texts with equal sets, e.g. identical after normalization,
  are duplicates without any similarity work);
* the 9 smallest shingle hashes (a bottom-k sketch), and candidate keys: below a
  threshold of 0.85 the 9 values themselves (a pair is missed with probability about
  ``(1 - threshold) ** 9``); from 0.85 on, for a text of 11 or more shingles the 8 pairs
  of consecutive values (two near-duplicates share one unless the first several
  shingles of their union alternate between the two sets; measured on 20,000 edited
  pairs at Jaccard 0.85-0.91: 1-2 misses), and for a text of at most 11 shingles its
  exact neighbourhood: the XOR of its shingle hashes and, from 7 shingles on, that XOR
  without each shingle. At a threshold >= 0.85 two sets of at most 11 shingles are
  near-duplicates only if they are equal or one is the other plus one shingle (their
  union has at most 12, and 15 % of 12 is less than 2), so such pairs always share a
  key, and unrelated short texts never do, whatever words they share (short chunks
  with a common prefix cost nothing). A text of at most 10 shingles and one of 12 or
  more are never near-duplicates at 0.85 (10/12 < 0.85): 11 gets both kinds.

The store also indexes the pair keys of every cached text and flags, when a text is
sketched, every cached text that shares a pair key with another. Per call (thresholds
>= 0.85), only flagged texts are looked at (plus a text given twice): texts are visited
best first; one sharing no key with a kept text is kept at the cost of a few dictionary
operations, otherwise each kept candidate is checked exactly (equal set hashes, then the
size filter, then the shingle-set intersection, cached per pair of texts) and the text
is a duplicate of the best-ranked kept text that reaches the threshold. From 0.85 on, a
key held by 4 kept texts none of which duplicates another is retired for the rest of the
call: every key then costs at most a few checks, so texts that overlap without being
near-duplicates (short chunks sharing words) cost linear work; a near-duplicate pair is
still found through its other shared keys (measured: identical results to the pairwise
definition on the test and benchmark corpora). Below 0.85 the texts sharing keys are
found per call (two C calls per text) and nothing is retired; texts of at most 16
shingles keep their whole set as sketch and are compared with each other only when they
share one of their rarest values (prefix filtering: exact, and short chunks that share a
prefix are not compared). A warm call therefore
computes no similarity and no sketch; its cost is a few C-level passes over the list plus
Python work for the flagged texts only. The result of a call is also kept (a small
two-generation LRU keyed by the threshold and the record ids of the texts in call order;
a record id names one text for the life of the process): the same texts in the same
order again (a repeated retrieval) cost one tuple of ids and one dictionary lookup, and
give the same answer as the first call by construction.
"""

from __future__ import annotations

import math
import threading
from collections import Counter
from collections.abc import Iterable
from functools import reduce
from itertools import chain, compress, count, pairwise
from operator import itemgetter, not_, or_, xor
from typing import Any, Final, cast
from zlib import crc32

__all__ = ["clear_caches", "near_duplicates", "sketch_cache_info"]

_PUNCT = str.maketrans({c: " " for c in "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~\u2019\u201c\u201d"})
# whitespace that str.split() splits on but bytes.split() does not: made a space first
_PUNCT.update(
    dict.fromkeys(map(ord, "\x1c\x1d\x1e\x1f\x85\xa0\u1680\u2028\u2029\u202f\u205f\u3000"), " ")
)
_PUNCT.update(dict.fromkeys(range(0x2000, 0x200B), " "))
_BOTTOM = 9  # sketch size
_WHOLE_UP_TO = 16  # shingles up to which the "sketch" is the whole set (exact)
_PAIRS_FROM = 11  # shingles from which a text gets consecutive-pair keys (thresholds >= 0.85)
_EXACT_UP_TO = 11  # ... up to which it gets its exact neighbourhood keys
_NEIGHBOURS_FROM = 7  # ... from which the neighbourhood includes the set minus one shingle
_RETIRE = 4  # kept texts sharing a key after which it is retired (thresholds >= 0.85)
_PAIR_KEYS_FROM = 0.85  # thresholds from here on use consecutive-pair keys
_SKETCH_MAX = 16_384  # texts per cache generation (two generations; ~1 KB per text)
_PAIR_MAX = 16_384  # cached pair intersections per generation
_RESULT_MAX = 32  # memoized call results per generation (same texts, same order, threshold)
_RESULT_TEXTS = 20_000  # ... for calls of at most this many texts

# record: (uid, shingle count, shingle-set hash, single keys, pair keys)
_Record = tuple[int, int, int, tuple[int, ...], tuple[int, ...]]
_UID = count()
_N: Final = 1  # record fields (Final: mypy reads them as literal indices)
_SEQ: Final = 2
_SINGLE: Final = 3
_PAIRS: Final = 4
_get_uid = itemgetter(0)
_get_single = itemgetter(_SINGLE)
_get_pairs = itemgetter(_PAIRS)


class _TwoGen:
    """Bounded mapping approximating LRU with one dict lookup per hit: hits in ``young``
    are free; hits in ``old`` are promoted; when ``young`` is full it becomes ``old``."""

    __slots__ = ("maxsize", "old", "young")

    def __init__(self, maxsize: int) -> None:
        self.young: dict[Any, Any] = {}
        self.old: dict[Any, Any] = {}
        self.maxsize = maxsize

    def get(self, key: Any) -> Any:
        value = self.young.get(key)
        if value is None:
            value = self.old.pop(key, None)
            if value is not None:
                self.put(key, value)
        return value

    def put(self, key: Any, value: Any) -> None:
        young = self.young
        if len(young) >= self.maxsize:
            self.old = young
            self.young = young = {}
        young[key] = value

    def clear(self) -> None:
        self.young = {}
        self.old = {}

    def __len__(self) -> int:
        return len(self.young) + len(self.old)


class _SketchStore:
    """text -> sketch record in two generations (like :class:`_TwoGen`), plus an index of
    the pair keys of every cached record and the ids of the records that share a pair
    key with another cached record ("flagged"). Any two cached texts sharing a pair key
    are both flagged, so a call only has to look at its flagged texts."""

    __slots__ = (
        "index",
        "lock",
        "maxsize",
        "old",
        "old_index",
        "old_shared",
        "rotations",
        "shared",
        "young",
    )

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self.rotations = 0
        self.lock = threading.Lock()  # inserts (cold path) only: keys and flags stay paired
        self.clear()

    def clear(self) -> None:
        self.young: dict[str, _Record] = {}
        self.old: dict[str, _Record] = {}
        self.index: dict[int, int] = {}  # pair key -> id of a young record holding it
        self.old_index: dict[int, int] = {}
        self.shared: set[int] = set()  # flagged ids, young generation
        self.old_shared: set[int] = set()
        _PAIRS_CACHE.clear()
        _RESULTS.clear()

    def get(self, text: str) -> _Record | None:
        rec = self.young.get(text)
        if rec is None:
            rec = self.old.pop(text, None)
            if rec is not None:  # promote, with its keys and its flag
                flagged = rec[0] in self.old_shared
                self.put(text, rec)
                if flagged:
                    self.shared.add(rec[0])
        return rec

    def put(self, text: str, rec: _Record) -> None:
        with self.lock:
            self._put(text, rec)

    def _put(self, text: str, rec: _Record) -> None:
        if len(self.young) >= self.maxsize:
            self.old, self.young = self.young, {}
            self.old_index, self.index = self.index, {}
            self.old_shared, self.shared = self.shared, set()
            self.rotations += 1
        self.young[text] = rec
        uid = rec[0]
        index, old_index = self.index, self.old_index
        for h in rec[_PAIRS]:
            j = index.get(h)
            if j is None:
                index[h] = uid
                j = old_index.get(h)
                if j is not None and j != uid:  # held by a record of the old generation
                    self.shared.add(uid)
                    self.old_shared.add(j)
            elif j != uid:
                self.shared.add(uid)
                self.shared.add(j)

    def __len__(self) -> int:
        return len(self.young) + len(self.old)


_PAIRS_CACHE = _TwoGen(_PAIR_MAX)  # uid pair -> shingle intersection size
# (threshold, record ids in call order) -> the call's result: a record id names one text
# for the life of the process (never reused), so equal keys mean equal inputs
_RESULTS = _TwoGen(_RESULT_MAX)
_SKETCHES = _SketchStore(_SKETCH_MAX)  # text -> _Record; clear() clears everything


def _words(text: str) -> list[int]:
    """CRC-32 of each word of the normalized text (the same as ``str.split()`` words)."""
    norm = text.lower().translate(_PUNCT).encode("utf-8", "surrogatepass")
    return list(map(crc32, norm.split()))


def shingles(text: str) -> frozenset[int]:
    """The set of hashed word 3-grams of the normalized text."""
    ids = _words(text)
    if len(ids) >= 3:
        return frozenset(map(hash, zip(ids, ids[1:], ids[2:])))
    return frozenset((hash(tuple(ids)),))


def _record(text: str) -> _Record:
    ids = _words(text)
    if len(ids) >= 3:
        sh = frozenset(map(hash, zip(ids, ids[1:], ids[2:])))
        ranked = sorted(sh)
        low = tuple(ranked if len(ranked) <= _WHOLE_UP_TO else ranked[:_BOTTOM])
    else:
        sh = frozenset((hash(tuple(ids)),))
        low = tuple(sh)
    n = len(sh)
    keys: tuple[int, ...] = tuple(map(hash, pairwise(low[:_BOTTOM]))) if n >= _PAIRS_FROM else ()
    if n <= _EXACT_UP_TO:
        whole = reduce(xor, sh, 0)
        keys += (whole,)
        if n >= _NEIGHBOURS_FROM:
            keys += tuple(map(whole.__xor__, sh))
    return (next(_UID), n, hash(sh), low, keys)


def records(texts: list[str]) -> list[_Record]:
    """Sketch records for ``texts`` (cached)."""
    young = _SKETCHES.young
    found: list[_Record | None] = list(map(young.get, texts))
    if None not in found:
        return found  # type: ignore[return-value]
    get = _SKETCHES.get
    out: list[_Record] = []
    for rec, text in zip(found, texts, strict=True):
        if rec is None:
            rec = get(text)
            if rec is None:
                rec = _record(text)
                _SKETCHES.put(text, rec)
        out.append(rec)
    return out


def _intersection(a: _Record, b: _Record, ta: str, tb: str, sets: dict[str, frozenset[int]]) -> int:
    key = a[0] << 40 | b[0] if a[0] < b[0] else b[0] << 40 | a[0]
    inter = _PAIRS_CACHE.get(key)
    if inter is None:
        sa = sets.get(ta)
        if sa is None:
            sa = sets[ta] = shingles(ta)
        sb = sets.get(tb)
        if sb is None:
            sb = sets[tb] = shingles(tb)
        inter = len(sa & sb) if len(sa) <= len(sb) else len(sb & sa)
        _PAIRS_CACHE.put(key, inter)
    return inter  # type: ignore[no-any-return]


def near_duplicates(texts: list[str], threshold: float) -> dict[int, int]:
    """Map position -> position of the kept near-duplicate, for ``texts`` in priority
    order (best first). A text is a duplicate when its shingle Jaccard similarity with an
    earlier kept text is at least ``threshold``; it then points at the earliest such text.
    """
    if threshold > 1.0:  # no Jaccard index exceeds 1
        return {}
    rotations = _SKETCHES.rotations
    recs = records(texts)
    memo: tuple[float, tuple[int, ...]] | None = None
    if len(recs) <= _RESULT_TEXTS:
        memo = (threshold, tuple(map(_get_uid, recs)))
        done = _RESULTS.get(memo)
        if done is not None:
            return dict(done)
    dup = _near_duplicates(texts, recs, threshold, rotations)
    if memo is not None and _SKETCHES.rotations == rotations:
        _RESULTS.put(memo, dup)
        return dict(dup)
    return dup


def _near_duplicates(
    texts: list[str], recs: list[_Record], threshold: float, rotations: int
) -> dict[int, int]:
    if threshold >= _PAIR_KEYS_FROM and _SKETCHES.rotations - rotations < 2:
        # (two rotations during this call can have dropped some of its texts' flags)
        # texts sharing a pair key with any other cached text were flagged when sketched
        keys = list(map(_get_pairs, recs))
        uids = list(map(_get_uid, recs))
        shared, old_shared = _SKETCHES.shared, _SKETCHES.old_shared
        flags: Iterable[Any] = map(shared.__contains__, uids)
        if old_shared:
            flags = map(or_, flags, map(old_shared.__contains__, uids))
        involved = list(compress(range(len(recs)), flags))
        if len(set(uids)) < len(uids):  # the same text more than once in this call
            first: dict[int, int] = {}
            repeated = {p for p, u in enumerate(uids) if first.setdefault(u, p) != p}
            repeated.update(first[uids[p]] for p in list(repeated))
            involved = sorted(repeated.union(involved))
    else:
        keys = list(map(_get_single, recs))
        # 1. texts sharing a key with an earlier text (two C calls per text)
        seen: set[int] = set()
        isdisjoint, update = seen.isdisjoint, seen.update
        hits = []
        for pos, ks in enumerate(keys):
            if not isdisjoint(ks):
                hits.append(pos)
            update(ks)
        if not hits:
            return {}
        # 2. every text holding one of their keys; no other text can be or have a duplicate
        hit_keys = set().union(*map(keys.__getitem__, hits))
        involved = list(compress(range(len(keys)), map(not_, map(hit_keys.isdisjoint, keys))))
    if len(involved) < 2:
        return {}
    sets: dict[str, frozenset[int]] = {}
    if threshold < _PAIR_KEYS_FROM:
        return _by_values(involved, keys, recs, texts, threshold, sets)
    # 3. best first: compare with the kept texts sharing a key. A key held by _RETIRE kept
    # texts (none a duplicate of another) is retired for the rest of the call: it has
    # shown it tells nothing. Every key then costs at most a few checks, so the work stays
    # linear in the number of texts whatever they share. A near-duplicate pair is still
    # found through any of its other shared keys (it shares most of them).
    owner: dict[int, int] = {}  # key -> first kept position holding it
    more: dict[int, list[int]] = {}  # key -> further kept positions
    retired: set[int] = set()
    dup: dict[int, int] = {}
    owned = owner.keys()
    for pos in involved:
        ks = keys[pos]
        if owned.isdisjoint(ks):  # no kept text shares a key: kept
            if retired and not retired.isdisjoint(ks):
                ks = tuple(h for h in ks if h not in retired)
            owner.update(dict.fromkeys(ks, pos))
            continue
        held = set(map(owner.get, ks))
        held.discard(None)
        cands = cast("set[int]", held)
        if more:
            for h in more.keys() & ks:
                cands.update(more[h])
        found = _first_duplicate(pos, cands, recs, texts, threshold, sets)
        if found >= 0:
            dup[pos] = found
            continue
        for h in ks:
            if h in owner:
                holders = more.setdefault(h, [])
                holders.append(pos)
                if len(holders) + 1 >= _RETIRE:
                    del owner[h], more[h]
                    retired.add(h)
            elif h not in retired:
                owner[h] = pos
    return dup


def _first_duplicate(
    pos: int,
    cands: Iterable[int],
    recs: list[_Record],
    texts: list[str],
    threshold: float,
    sets: dict[str, frozenset[int]],
) -> int:
    """The best-ranked candidate that ``texts[pos]`` is a near-duplicate of, or -1."""
    rec = recs[pos]
    uid, n, seq = rec[0], rec[_N], rec[_SEQ]
    low = n * threshold  # the size filter: J <= smaller size / larger size
    pairs_seen = _PAIRS_CACHE.young.get  # checked pairs of this generation, looked up inline
    for j in sorted(cands):
        other = recs[j]
        if other[_SEQ] == seq:  # equal shingle sets (64-bit hash)
            return j
        m = other[_N]
        if m < low or n < threshold * m:
            continue  # sizes too different
        b = other[0]
        inter = pairs_seen(uid << 40 | b if uid < b else b << 40 | uid)
        if inter is None:
            inter = _intersection(rec, other, texts[pos], texts[j], sets)
        if inter >= threshold * (n + m - inter):
            return j
    return -1


def _by_values(
    involved: list[int],
    keys: list[tuple[int, ...]],
    recs: list[_Record],
    texts: list[str],
    threshold: float,
    sets: dict[str, frozenset[int]],
) -> dict[int, int]:
    """Step 3 below 0.85, where candidates share a sketch value.

    A text of at most 16 shingles keeps its whole set as sketch, so two such texts are
    compared only if they share one of their rarest values (prefix filtering, with the
    values ordered by how many texts of the call hold them): a pair at Jaccard >= t shares
    at least ``ceil(t * n)`` of a text's ``n`` values, so its first common value in that
    order is among each text's ``n - ceil(t * n) + 1`` rarest. Exact, and unrelated short
    texts that share common words (a prefix) are not compared. Other pairs are compared
    when they share any sketch value, as above 0.85.
    """
    short = [pos for pos in involved if recs[pos][_N] <= _WHOLE_UP_TO]
    prefix: dict[int, tuple[int, ...]] = {}
    if short:
        df = Counter(chain.from_iterable(map(keys.__getitem__, short)))
        rarity = df.__getitem__  # values come sorted, and sorted() is stable: ties by value
        for pos in short:
            n = recs[pos][_N]
            p = n - math.ceil(threshold * n - 1e-9) + 1
            prefix[pos] = tuple(sorted(keys[pos], key=rarity)[:p])
    by_prefix: dict[int, list[int]] = {}  # rarest values of kept short texts
    by_value_short: dict[int, list[int]] = {}  # every value of kept short texts
    by_value_long: dict[int, list[int]] = {}  # every sketch value of kept longer texts
    dup: dict[int, int] = {}
    for pos in involved:
        ks = keys[pos]
        pk = prefix.get(pos)
        cands: set[int] = set()
        if pk is not None:
            for h in pk:
                cands.update(by_prefix.get(h, ()))
            for h in ks:
                cands.update(by_value_long.get(h, ()))
        else:
            for h in ks:
                cands.update(by_value_long.get(h, ()))
                cands.update(by_value_short.get(h, ()))
        found = _first_duplicate(pos, cands, recs, texts, threshold, sets) if cands else -1
        if found >= 0:
            dup[pos] = found
        elif pk is not None:
            for h in pk:
                by_prefix.setdefault(h, []).append(pos)
            for h in ks:
                by_value_short.setdefault(h, []).append(pos)
        else:
            for h in ks:
                by_value_long.setdefault(h, []).append(pos)
    return dup


def sketch_cache_info() -> dict[str, int]:
    """Sizes of the shared caches (texts sketched, pair intersections)."""
    return {"sketches": len(_SKETCHES), "pairs": len(_PAIRS_CACHE)}


def clear_caches() -> None:
    """Empty the sketch and pair caches (e.g. to measure a cold call)."""
    _SKETCHES.clear()
