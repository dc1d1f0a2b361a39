"""The shared accounting core: estimate -> reserve -> settle -> record -> notify.

* :mod:`._tracking`: dimensions (normalized once, at the boundary), ``track()`` and
  :class:`Tracker`;
* :mod:`._table`: the call table, the one record of every call in flight;
* :mod:`._estimate`: what a call is expected to cost, counted only when needed;
* :mod:`._enforce`: checking a call against the budgets before it is made;
* :mod:`._finish`: the one path by which a call ends;
* :mod:`._facade`: :class:`Accountant`, the object adapters use.
"""

from __future__ import annotations

from tokenward.accountant._default import get_default_accountant, set_default_accountant
from tokenward.accountant._estimate import Estimate, LazyMessages
from tokenward.accountant._facade import Accountant
from tokenward.accountant._table import Run, RunState
from tokenward.accountant._tracking import DIMENSION_KEYS, Tracker, current_dims, track

__all__ = [
    "DIMENSION_KEYS",
    "Accountant",
    "Estimate",
    "LazyMessages",
    "Run",
    "RunState",
    "Tracker",
    "current_dims",
    "get_default_accountant",
    "set_default_accountant",
    "track",
]
