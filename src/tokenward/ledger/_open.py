"""open_ledger: pick a store from a URL or a path."""

from __future__ import annotations

import os
from typing import Any

from tokenward.errors import ConfigurationError
from tokenward.ledger._base import LedgerStore

__all__ = ["open_ledger"]


def open_ledger(url_or_path: str | os.PathLike[str] | LedgerStore, **kwargs: Any) -> LedgerStore:
    """Open a ledger store.

    * ``":memory:"`` or ``"memory://"`` -> :class:`MemoryLedger`
    * a file path, or ``"sqlite:///relative/path.db"`` / ``"sqlite:////abs/path.db"``
      -> :class:`SQLiteLedger` (``sqlite://`` with no path or ``:memory:`` -> memory)
    * ``"postgresql://..."`` / ``"postgres://..."`` (optionally ``+driver``) ->
      :class:`SQLLedger` using psycopg 3 unless a driver is named
    * an object that already is a store is returned unchanged.

    ``kwargs`` go to the store's constructor (e.g. ``batch=False``).
    """
    from tokenward.ledger._memory import MemoryLedger

    if not isinstance(url_or_path, (str, os.PathLike)):
        if isinstance(url_or_path, LedgerStore):
            return url_or_path
        raise ConfigurationError(
            f"open_ledger needs a path, a URL or a ledger store, got {type(url_or_path).__name__}"
        )
    target = os.fspath(url_or_path)
    if isinstance(target, bytes):  # pragma: no cover
        target = target.decode()
    if target in (":memory:", "memory://", "memory:", "sqlite://", "sqlite:///:memory:"):
        return MemoryLedger(**kwargs)
    lowered = target.lower()
    if lowered.startswith(("postgresql", "postgres")) and "://" in target:
        from tokenward.ledger._postgres import SQLLedger

        return SQLLedger(target, **kwargs)
    if lowered.startswith("sqlite:///"):
        path = target[len("sqlite:///") :]
        if not path:
            return MemoryLedger(**kwargs)
        from tokenward.ledger._sqlite import SQLiteLedger

        return SQLiteLedger(path, **kwargs)
    if "://" in target:
        scheme = target.split("://", 1)[0]
        raise ConfigurationError(
            f"unsupported ledger URL scheme {scheme!r}; use a file path, 'sqlite:///path', "
            "'postgresql://...' or ':memory:'"
        )
    from tokenward.ledger._sqlite import SQLiteLedger

    return SQLiteLedger(target, **kwargs)
