"""Forecasts that agree with enforcement: calls left under a budget, and daily pacing.

A budget admits a call when what it *reserves* fits in what is left, then keeps what
the call *spends*. So "how many more calls" is not ``remaining // average spend``
(that said one call was left when the next call needed 102 and 85 were left): the
*k*-th call from now is admitted when ``remaining - (k - 1) x spend >= reserve``.
:func:`calls_left` counts exactly those calls, from the same reservation the
pre-flight makes.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

__all__ = ["Pacing", "calls_left", "pacing"]

_DAY_S = 86_400.0


def calls_left(remaining: int, reserve: int, spend: int) -> int | None:
    """How many calls, made one after another, a budget still admits.

    ``remaining`` is what the budget has left (limit - spent - reserved), ``reserve`` what
    the next call reserves before it runs, ``spend`` what a call keeps once settled (all in
    the budget's integer unit). The last call counted is admitted and the one after it is
    denied, as long as calls reserve and spend those amounts. ``None``: unbounded (calls
    that reserve and spend nothing)."""
    if remaining < reserve:
        return 0
    if spend <= 0:
        return None
    return 1 + (remaining - reserve) // spend


@dataclass(frozen=True)
class Pacing:
    """How spend in a calendar window is pacing. Amounts in the budget's unit.

    ``spent_per_day`` is the average so far (spent / days elapsed);
    ``allowed_per_day`` spreads what is left over the days left, today included
    (whole days: the last day of a month allows all that is left);
    ``projected_spend`` is where the window ends at the current pace;
    ``exhausted_at`` is when the budget runs out at that pace (``None``: it does not before
    the window resets); ``on_track`` says whether the pace stays within the limit."""

    window_start: datetime
    window_end: datetime
    days_elapsed: float
    days_left: float
    spent_per_day: Decimal | int
    allowed_per_day: Decimal | int
    projected_spend: Decimal | int
    exhausted_at: datetime | None
    on_track: bool


def pacing(
    *,
    limit: int,
    spent: int,
    reserved: int,
    start: datetime,
    end: datetime,
    now: datetime,
    to_unit: Callable[[int], Decimal | int] = int,
) -> Pacing:
    """The :class:`Pacing` of a window ``[start, end)`` at ``now`` (integer amounts in the
    budget's unit; ``to_unit`` converts them for display, e.g. nano-USD to Decimal USD)."""
    total = max((end - start).total_seconds(), 1.0)
    elapsed = min(max((now - start).total_seconds(), 0.0), total)
    left = total - elapsed
    remaining = max(0, limit - spent - reserved)
    # a rate over less than an hour says more about one call than about a pace
    rate = spent / max(elapsed, 3_600.0)  # per second
    days_left_whole = max(1, math.ceil(left / _DAY_S - 1e-9))
    projected = spent + reserved + int(rate * left)
    exhausted = None
    if rate > 0 and remaining < rate * left:
        exhausted = now + timedelta(seconds=remaining / rate)
    return Pacing(
        window_start=start,
        window_end=end,
        days_elapsed=elapsed / _DAY_S,
        days_left=left / _DAY_S,
        spent_per_day=to_unit(int(rate * _DAY_S)),
        allowed_per_day=to_unit(remaining // days_left_whole),
        projected_spend=to_unit(projected),
        exhausted_at=exhausted,
        on_track=projected <= limit,
    )
