"""Reports over the ledger: one data builder, table/JSON/CSV/HTML renderings, and the advisor.

``build_report_data(ledger, ...)`` -> :class:`ReportData`; ``render_html(data)`` -> one
self-contained HTML document; ``advise(ledger, ...)`` -> quantified :class:`Suggestion` list.
The table/JSON/CSV renderers live in ``tokenward.report._tables`` (``render(data, fmt)``).
"""

from tokenward.report._advisor import Suggestion, advise
from tokenward.report._data import BudgetRow, ReportData, budget_rows, build_report_data
from tokenward.report._html import render_html

__all__ = [
    "BudgetRow",
    "ReportData",
    "Suggestion",
    "advise",
    "budget_rows",
    "build_report_data",
    "render_html",
]
