"""0/1 knapsack for context packing: core search around the break item, certified.

Pure Python (no numpy) and deterministic: the same input gives the same selection on
every platform, whether or not numpy is installed.

Method (after Pisinger's "minimal core" algorithm):

1. Items by value density, best first (ties keep input order); the *break* item is the
   first that no longer fits. The LP relaxation gives the upper bound ``U`` (Dantzig);
   the greedy fill (break solution, then every later item that still fits) and the best
   single item give the first lower bound ``z``.
2. Reduction (Dembo-Hammer): with ``d`` the break item's density, ``r = v - w * d``
   bounds what flipping an item can achieve: an item after the break can only be in a
   better solution if ``U + r > z``; one before it can only be left out of a better
   solution if ``U - r > z``. Every other item stays fixed. When chunks are small next to
   the budget only a few dozen items stay free, and fewer as ``z`` improves.
3. The free items are enumerated from the break outwards (nearest densities first) as
   Pareto states ``(weight, value)``. Dominated states are dropped; a state is pruned when
   its bound (value + slack x density of the next addable item, or value - overload x
   density of the next removable item) does not beat ``z`` by more than a tolerance.
   Short passes on the items nearest the break come first: they find a near-optimal ``z``
   cheaply, which then prunes the full pass.

Every pruning step is a proof, so when the search ends the result is certified:

* with tolerance 0 and the search complete, the selection is optimal (``exact``);
* with tolerance ``tol`` the optimum is at most ``value + tol`` (the search is
  ``tol``-optimal); the solver uses ``tol = TOLERANCE x U`` (relative gap 1e-4, the usual
  MIP-solver default) and then tries to close the gap exactly within a work budget;
* if a work budget runs out, the LP bound ``U`` still certifies the result.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from itertools import accumulate, compress
from operator import sub, truediv

__all__ = ["TOLERANCE", "lp_bound", "solve"]

TOLERANCE = 1e-4  # relative optimality gap accepted before the exact proof is attempted
_PROBES = (2, 4, 8)  # items on each side of the break in the first, cheap passes
_FILL_SCAN = 256  # items after the break tried by the greedy fill

_Ctx = tuple[list[int], list[float], int, int, float, float, list[float]]


def _order(w: list[int], v: list[float], idx: list[int]) -> list[int]:
    """``idx`` by value density, best first; zero weights first; ties keep index order."""
    dens = {i: (v[i] / w[i] if w[i] else float("inf")) for i in idx}
    return sorted(idx, key=dens.__getitem__, reverse=True)  # stable with reverse=True


def lp_bound(w: list[int], v: list[float], cap: int) -> float:
    """LP-relaxation (Dantzig) bound on the 0/1 knapsack optimum; positive values only."""
    idx = [i for i in range(len(w)) if w[i] <= cap and v[i] > 0]
    room, total = cap, 0.0
    for i in _order(w, v, idx):
        if w[i] <= room:
            room -= w[i]
            total += v[i]
        else:
            total += v[i] * room / w[i]
            break
    return total


def _search(
    ctx: _Ctx, adds: list[int], rems: list[int], z: float, tol: float, work_limit: int
) -> tuple[float, list[int] | None, int, bool]:
    """Enumerate flips of ``adds`` (outside the break solution) and ``rems`` (inside it),
    nearest the break first, as Pareto states with bound pruning.

    Returns ``(best value, its flipped positions or None if nothing beat z, work,
    proven)``: ``proven`` means no selection of these flips is worth more than
    ``best value + tol`` (False when the work limit stopped the search).
    """
    wo, vo, cap, wb, pb, upper, red = ctx
    na, nr = len(adds), len(rems)
    add_min = list(accumulate(reversed([wo[k] for k in adds]), min))[::-1]
    add_min.append(cap + 1)
    states: list[tuple[int, float, int]] = [(wb, -pb, 0)]  # (weight, -value, flip mask)
    bits: list[int] = []  # bit number -> density position
    zmask: int | None = None
    ia = ir = 0
    work = 0
    side = 1
    while True:
        # skip items that cannot be flipped in a better solution (monotone in z)
        while ia < na and upper + red[adds[ia]] <= z + tol:
            ia += 1
        while ir < nr and upper - red[rems[ir]] <= z + tol:
            ir += 1
        if ia >= na and ir >= nr:
            break
        side = 1 - side if (ia < na and ir < nr) else (0 if ia < na else 1)
        if side == 0:
            k = adds[ia]
            ia += 1
            wk, vk = wo[k], vo[k]
            while ia < na and upper + red[adds[ia]] <= z + tol:
                ia += 1
        else:
            k = rems[ir]
            ir += 1
            wk, vk = -wo[k], -vo[k]
            while ir < nr and upper - red[rems[ir]] <= z + tol:
                ir += 1
        bit = 1 << len(bits)
        bits.append(k)
        merged = states + [(sw + wk, sp - vk, sm | bit) for sw, sp, sm in states]
        merged.sort()
        work += len(merged)
        # bounds from the next items that can still matter
        d_add = vo[adds[ia]] / wo[adds[ia]] if ia < na else 0.0
        min_add = add_min[ia]
        more_rems = ir < nr
        d_rem = vo[rems[ir]] / wo[rems[ir]] if more_rems else -1.0
        states = []
        keep = states.append
        best = float("inf")  # smallest -value so far (states are sorted by weight)
        for st in merged:
            sw, sp, sm = st
            if sp >= best:  # dominated: a lighter-or-equal state is worth at least as much
                continue
            best = sp
            if sw <= cap:
                p = -sp
                if p > z:
                    z, zmask = p, sm
                slack = cap - sw
                # nothing fits the slack and nothing is left to swap out: final
                ub = p if slack < min_add and not more_rems else p + slack * d_add
            elif d_rem < 0:
                continue
            else:
                ub = -sp - (sw - cap) * d_rem
            if ub > z + tol:
                keep(st)
        if not states:
            return z, _flips(bits, zmask), work, True
        if work > work_limit:
            return z, _flips(bits, zmask), work, False
    return z, _flips(bits, zmask), work, True


def _flips(bits: list[int], mask: int | None) -> list[int] | None:
    if mask is None:
        return None
    return [bits[j] for j in range(len(bits)) if mask >> j & 1]


def solve(w: list[int], v: list[float], cap: int, work: int = 400) -> tuple[list[int], bool, float]:
    """Maximize ``sum(v)`` subject to ``sum(w) <= cap`` over 0/1 choices.

    Returns ``(chosen positions ascending, exact, upper)``. ``exact`` means the selection
    is proven optimal; ``upper`` is a proven upper bound on the optimum (the selection's
    value when exact), so ``value >= value / upper * optimum``. Items with ``v <= 0`` or
    ``w > cap`` are never chosen. ``work`` bounds the search in state visits (a few
    microseconds each); the first lower bounds also include the longest prefix of the
    input order that fits (the score-greedy selection when items come best first), so
    the result is never worth less than that.
    """
    n = len(w)
    if n and min(v) > 0 and max(w) <= cap:
        idx: range | list[int] = range(n)
        total = sum(w)
    else:
        idx = [i for i in range(n) if w[i] <= cap and v[i] > 0]
        total = sum(map(w.__getitem__, idx))
    if not idx:
        return [], True, 0.0
    if total <= cap:
        return list(idx), True, sum(map(v.__getitem__, idx))
    if isinstance(idx, range):  # every item is a candidate: no copies
        if min(w) > 0:
            dens = list(map(truediv, v, w))
            order = sorted(idx, key=dens.__getitem__, reverse=True)  # stable
        else:
            order = _order(w, v, list(idx))
    elif min(map(w.__getitem__, idx)) > 0:
        dens = list(map(truediv, map(v.__getitem__, idx), map(w.__getitem__, idx)))
        ranked = sorted(range(len(idx)), key=dens.__getitem__, reverse=True)  # stable
        order = list(map(idx.__getitem__, ranked))
    else:
        order = _order(w, v, idx)
    m = len(order)
    wo = list(map(w.__getitem__, order))
    vo = list(map(v.__getitem__, order))
    cum = list(accumulate(wo))
    b = bisect_right(cum, cap)  # order[:b] fits, order[b] does not (b < m here)
    wb = cum[b - 1] if b else 0
    pb = sum(vo[:b])
    db = vo[b] / wo[b]  # wo[b] > 0: it does not fit
    upper = pb + (cap - wb) * db

    # lower bounds: greedy fill after the break item, the best single item, and the
    # input-order prefix
    room, z, fill = cap - wb, pb, []
    k, stop = b + 1, min(m, b + 1 + _FILL_SCAN)
    while k < stop and room:
        if wo[k] <= room:
            room -= wo[k]
            z += vo[k]
            fill.append(k)
        k += 1
    incumbent: list[int] | None = None  # a better heuristic selection (input positions)
    vmax = max(vo)
    if vmax > z:
        z, incumbent = vmax, [order[vo.index(vmax)]]
    g = bisect_right(list(accumulate(map(w.__getitem__, idx))), cap)
    prefix = list(idx[:g])
    gv = sum(map(v.__getitem__, prefix))
    if gv > z:
        z, incumbent = gv, prefix

    # reduction against the first lower bound: the rest stays fixed
    # (reduced value r = w * (density - d); only items with |r| < gap can be free, and
    # |r| >= w_min * |density - d|: the window of candidate densities is found by bisection)
    gap = upper - z
    lo, hi = 0, m
    wmin = min(wo)
    if wmin > 0:
        margin = gap * (1 + 1e-9) / wmin

        def neg_density(k: int) -> float:  # ascending along the order
            return -vo[k] / wo[k]

        lo = bisect_right(range(m), -(db + margin), 0, b, key=neg_density)
        hi = bisect_left(range(m), -(db - margin), b, m, key=neg_density)
    red = [0.0] * lo + list(map(sub, vo[lo:hi], map(db.__mul__, wo[lo:hi])))
    adds = [b + k for k in compress(range(hi - b), map((-gap).__lt__, red[b:hi]))]
    rems = [lo + k for k in compress(range(b - lo), map(gap.__gt__, red[lo:b])) if wo[lo + k]]
    rems.reverse()  # nearest the break first

    flips: list[int] | None = None  # density positions flipped from the break solution
    exact = not adds and not rems
    bound = z if exact else upper
    if not exact:
        ctx = (wo, vo, cap, wb, pb, upper, red)
        tol = TOLERANCE * upper
        left = work
        for probe in _PROBES:  # the items nearest the break first: a good z cheaply
            z1, f1, used, _ = _search(ctx, adds[:probe], rems[:probe], z, tol, left)
            left -= used
            if f1 is not None:
                z, flips = z1, f1
        if left > 0:  # all free items, gap tolerance TOLERANCE
            z1, f1, used, proven = _search(ctx, adds, rems, z, tol, left)
            left -= used
            if f1 is not None:
                z, flips = z1, f1
            if proven:
                bound = min(upper, z + tol)
        if left > 0:  # close the remaining gap exactly if that is cheap
            z1, f1, _, exact = _search(ctx, adds, rems, z, 0.0, left)
            if f1 is not None:
                z, flips = z1, f1
            if exact:
                bound = z

    if flips is not None:
        out = set(order[:b])
        for k in flips:
            if k < b:
                out.discard(order[k])
            else:
                out.add(order[k])
        chosen = sorted(out)
    elif incumbent is not None:
        chosen = incumbent
    else:
        chosen = sorted(order[:b] + [order[k] for k in fill])
    return chosen, exact, max(bound, z)
