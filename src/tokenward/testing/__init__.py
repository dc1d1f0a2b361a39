"""Test suites for implementations of tokenward's extension points (pytest required).

``BudgetStoreConformance``: subclass it to check a budget store against the protocol.
"""

from __future__ import annotations

from tokenward.testing._budget_stores import BudgetStoreConformance

__all__ = ["BudgetStoreConformance"]
