"""Conformance suites for implementations of tokenward's extension points (needs pytest).

Subclass a suite in your own test module and say how to build your store; every test of
the suite then runs against it, with docstrings that start "If this fails, ..."::

    from tokenward.testing import LedgerStoreConformance

    class TestMyLedger(LedgerStoreConformance):
        def make_store(self, tmp_path):
            return MyLedger(tmp_path / "ledger.db")

``BudgetStoreConformance`` checks a budget store the same way. tokenward's own stores
pass the same suites.
"""

from __future__ import annotations

from tokenward.testing._budget_stores import BudgetStoreConformance
from tokenward.testing._ledger import LedgerStoreConformance

__all__ = ["BudgetStoreConformance", "LedgerStoreConformance"]
