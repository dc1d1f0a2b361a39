"""The process-wide Accountant adapters use when none is given."""

from __future__ import annotations

import os
import threading

from tokenward.accountant._facade import Accountant

__all__ = ["get_default_accountant", "set_default_accountant"]

_default_lock = threading.Lock()
_default: Accountant | None = None


def get_default_accountant() -> Accountant:
    """The process-wide Accountant adapters use when none is given.

    Created on first use: a SQLite ledger at ``$TOKENWARD_DB`` when that variable is
    set, otherwise an in-memory ledger (nothing written to disk unless asked).
    Replace it with :func:`set_default_accountant`.
    """
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                _default = Accountant.default() if os.environ.get("TOKENWARD_DB") else Accountant()
    return _default


def set_default_accountant(accountant: Accountant | None) -> Accountant | None:
    """Install ``accountant`` as the default (``None`` resets); returns the previous one."""
    global _default
    if accountant is not None and not isinstance(accountant, Accountant):
        raise TypeError(f"expected an Accountant, got {type(accountant).__name__}")
    with _default_lock:
        previous, _default = _default, accountant
    return previous
