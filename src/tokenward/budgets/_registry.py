"""Budget stores by URL: ``open_budget_store("redis://…")``.

Every store, ours included, is found through the ``tokenward.budget_stores`` entry-point
group: the entry point's name is a URL scheme, its value a callable ``(url, **options)``
returning a :class:`~tokenward.budgets.BudgetStore`. A third-party package registers its own
in its ``pyproject.toml``::

    [project.entry-points."tokenward.budget_stores"]
    dynamo = "mypkg.budgets:DynamoBudgetStore.from_url"

and ``open_budget_store("dynamo://table")`` opens it. Entry points are read once per process
and again when a scheme is not found (a package installed since).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from tokenward.budgets._store import BudgetStore
from tokenward.errors import ConfigurationError

__all__ = ["GROUP", "budget_store_schemes", "open_budget_store"]

GROUP = "tokenward.budget_stores"

_lock = threading.Lock()
_found: dict[str, list[EntryPoint]] | None = None


def _scan() -> dict[str, list[EntryPoint]]:
    found: dict[str, list[EntryPoint]] = {}
    for ep in entry_points(group=GROUP):
        same = found.setdefault(ep.name.lower(), [])
        if all(e.value != ep.value for e in same):  # one package seen twice on sys.path
            same.append(ep)
    return found


def _entry_points(scheme: str) -> list[EntryPoint]:
    global _found
    with _lock:
        if _found is None or scheme not in _found:
            _found = _scan()
        return _found.get(scheme, [])


def budget_store_schemes() -> list[str]:
    """URL schemes of every installed budget store (ours and third-party)."""
    global _found
    with _lock:
        _found = _scan()
        return sorted(_found)


def open_budget_store(url: str, **options: Any) -> BudgetStore:
    """Open the budget store a URL names: ``memory://``, ``sqlite:///relative.db`` /
    ``sqlite:////absolute.db``, ``postgresql://user:pass@host/db``, ``redis://host:6379/0``
    (also ``rediss://``, ``unix:///path/redis.sock``), or any scheme a package registers in
    the ``tokenward.budget_stores`` entry-point group. ``options`` go to the store (e.g.
    ``table_prefix=`` for PostgreSQL, ``prefix=`` for Redis)."""
    if not isinstance(url, str) or "://" not in url:
        raise ConfigurationError(
            f"budget store URL {url!r} has no scheme; use memory://, sqlite:///path.db, "
            f"postgresql://…, redis://… or a scheme registered under {GROUP!r}."
        )
    scheme = url.split("://", 1)[0].lower()
    found = _entry_points(scheme) or _entry_points(scheme.split("+", 1)[0])
    if not found:
        raise ConfigurationError(
            f"budget store {url!r}: unknown scheme {scheme!r}, no store registered for "
            f"{scheme}:// (known: {', '.join(budget_store_schemes())}); install the package "
            f"that provides it, or register a factory under the {GROUP!r} entry-point group."
        )
    if len(found) > 1:
        raise ConfigurationError(
            f"budget store scheme {scheme}:// is registered more than once "
            f"({', '.join(ep.value for ep in found)}); uninstall one of the packages."
        )
    factory: Callable[..., Any] = found[0].load()
    store = factory(url, **options)
    if not isinstance(store, BudgetStore):
        raise ConfigurationError(
            f"{found[0].value} returned {type(store).__name__}, which is not a BudgetStore "
            f"(reserve, commit, release, extend, status, expire, close); fix the entry point."
        )
    return store
