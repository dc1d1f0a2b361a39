"""open_ledger: pick a store from a URL or a path, through the scheme registry."""

from __future__ import annotations

import os
from typing import Any

from tokenward.errors import ConfigurationError
from tokenward.ledger._base import LedgerStore
from tokenward.ledger._registry import ledger_factory

__all__ = ["open_ledger", "open_memory", "open_postgres", "open_sqlite"]

_MEMORY = (":memory:", "memory://", "memory:", "sqlite://", "sqlite:///:memory:")


def open_ledger(
    url_or_path: str | os.PathLike[str] | LedgerStore, *, read_only: bool = False, **kwargs: Any
) -> LedgerStore:
    """Open a ledger store.

    * ``":memory:"`` or ``"memory://"`` -> :class:`MemoryLedger`
    * a file path, or ``"sqlite:///relative/path.db"`` / ``"sqlite:////abs/path.db"``
      -> :class:`SQLiteLedger` (``sqlite://`` with no path or ``:memory:`` -> memory)
    * ``"postgresql://..."`` / ``"postgres://..."`` (optionally ``+driver``) ->
      :class:`SQLLedger` using psycopg 3 unless a driver is named
    * ``"<scheme>://..."`` -> the store registered for ``scheme`` in the
      ``tokenward.ledgers`` entry-point group (or with :func:`register_ledger`)
    * an object that already is a store is returned unchanged.

    ``read_only=True`` opens an existing ledger for queries only: nothing is created,
    migrated or written (SQLite opens the file with ``mode=ro``; PostgreSQL runs every
    query in a read-only transaction). ``kwargs`` go to the store's constructor
    (e.g. ``batch=False``).
    """
    if not isinstance(url_or_path, (str, os.PathLike)):
        if isinstance(url_or_path, LedgerStore):
            return url_or_path
        raise ConfigurationError(
            f"open_ledger needs a path, a URL or a ledger store, got {type(url_or_path).__name__}"
        )
    target = os.fspath(url_or_path)
    if target in _MEMORY:
        scheme = "memory"
    elif "://" in target:
        scheme = target.split("://", 1)[0].split("+", 1)[0]
    else:
        scheme = "sqlite"
    if read_only:
        kwargs["read_only"] = True
    store: LedgerStore = ledger_factory(scheme)(target, **kwargs)
    return store


# -- tokenward's own stores, declared as entry points in pyproject.toml ---------------------


def open_memory(url: str, *, read_only: bool = False, **kwargs: Any) -> LedgerStore:
    """``memory://`` (and ``:memory:``): a fresh, empty :class:`MemoryLedger`."""
    from tokenward.ledger._memory import MemoryLedger

    return MemoryLedger(**kwargs)


def open_sqlite(url: str, **kwargs: Any) -> LedgerStore:
    """A file path or ``sqlite:///path``: :class:`SQLiteLedger`."""
    path = url
    if url.lower().startswith("sqlite:"):
        if not url.lower().startswith("sqlite:///"):
            raise ConfigurationError(
                f"SQLite ledger URLs look like 'sqlite:///relative.db' or "
                f"'sqlite:////absolute.db', got {url!r}"
            )
        path = url[len("sqlite:///") :]
        if not path or path == ":memory:":
            return open_memory(url, **kwargs)
    from tokenward.ledger._sqlite import SQLiteLedger

    return SQLiteLedger(path, **kwargs)


def open_postgres(url: str, **kwargs: Any) -> LedgerStore:
    """``postgresql://...`` / ``postgres://...``: :class:`SQLLedger`."""
    from tokenward.ledger._postgres import SQLLedger

    return SQLLedger(url, **kwargs)
