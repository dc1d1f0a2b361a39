"""Ledger URL schemes -> store factories, extensible through entry points.

A factory is ``factory(url: str, **kwargs) -> LedgerStore``: it receives the URL exactly
as given to :func:`~tokenward.ledger.open_ledger` plus its keyword arguments
(``read_only=True`` only when asked for). Stores are found in the
``tokenward.ledgers`` entry-point group, ``scheme = "module:factory"``; tokenward's own
stores are declared there the same way (``pyproject.toml``). A third-party package adds::

    [project.entry-points."tokenward.ledgers"]
    clickhouse = "tokenward_clickhouse:open_ledger"

and ``open_ledger("clickhouse://host/db")`` finds it. :func:`register_ledger` does the
same at run time (tests, apps that ship their own store).
"""

from __future__ import annotations

import importlib
import logging
import threading
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any

from tokenward.errors import ConfigurationError

__all__ = [
    "BUILTIN_LEDGERS",
    "GROUP",
    "LedgerFactory",
    "ledger_factory",
    "ledger_schemes",
    "register_ledger",
]

logger = logging.getLogger("tokenward.ledger")

GROUP = "tokenward.ledgers"
LedgerFactory = Callable[..., Any]

#: tokenward's own entry points, as ``pyproject.toml`` declares them; used as they are
#: when the installed metadata does not list them (running from a source tree).
BUILTIN_LEDGERS = {
    "memory": "tokenward.ledger._open:open_memory",
    "sqlite": "tokenward.ledger._open:open_sqlite",
    "postgresql": "tokenward.ledger._open:open_postgres",
    "postgres": "tokenward.ledger._open:open_postgres",
}

_lock = threading.RLock()
_found: dict[str, list[tuple[str, str]]] | None = None  # scheme -> [(distribution, "mod:attr")]
_loaded: dict[str, LedgerFactory] = {}


def _discover() -> dict[str, list[tuple[str, str]]]:
    found: dict[str, list[tuple[str, str]]] = {}
    for ep in entry_points(group=GROUP):
        dist = ep.dist.name if ep.dist is not None else "?"
        found.setdefault(ep.name.lower(), []).append((dist, ep.value))
    for scheme, value in BUILTIN_LEDGERS.items():
        if not any(v == value for _, v in found.get(scheme, [])):
            found.setdefault(scheme, []).insert(0, ("tokenward", value))
    return found


def _load(value: str) -> LedgerFactory:
    module, _, attr = value.partition(":")
    obj: Any = importlib.import_module(module.strip())
    for part in attr.strip().split("."):
        obj = getattr(obj, part)
    if not callable(obj):
        raise ConfigurationError(f"ledger entry point {value!r} is not callable")
    return obj  # type: ignore[no-any-return]


def ledger_factory(scheme: str) -> LedgerFactory:
    """The factory for URL ``scheme`` (e.g. ``"sqlite"``), loaded on first use."""
    global _found
    scheme = scheme.lower()
    with _lock:
        factory = _loaded.get(scheme)
        if factory is not None:
            return factory
        if _found is None:
            _found = _discover()
        sources = list(dict.fromkeys(_found.get(scheme, [])))
        if not sources:
            raise ConfigurationError(
                f"unsupported ledger URL scheme {scheme!r}; use a file path, 'sqlite:///path', "
                f"'postgresql://...' or ':memory:' (known schemes: {', '.join(ledger_schemes())}). "
                f"A store for {scheme!r} registers it in the {GROUP!r} entry-point group."
            )
        values = {v for _, v in sources}
        if len(values) > 1:
            listed = ", ".join(f"{v} (from {d})" for d, v in sources)
            raise ConfigurationError(
                f"ledger URL scheme {scheme!r} is claimed by several stores: {listed}; "
                "uninstall one of them"
            )
        factory = _load(sources[0][1])
        _loaded[scheme] = factory
        return factory


def register_ledger(scheme: str, factory: LedgerFactory) -> None:
    """Make ``open_ledger("<scheme>://...")`` call ``factory(url, **kwargs)``."""
    if not isinstance(scheme, str) or not scheme.isidentifier():
        raise ConfigurationError(
            f"a ledger scheme is a plain name like 'clickhouse', got {scheme!r}"
        )
    if not callable(factory):
        raise ConfigurationError(f"a ledger factory must be callable, got {factory!r}")
    with _lock:
        _loaded[scheme.lower()] = factory


def ledger_schemes() -> list[str]:
    """Every scheme :func:`open_ledger` knows (built-in, entry points, registered)."""
    global _found
    with _lock:
        if _found is None:
            _found = _discover()
        return sorted({*_found, *_loaded})


def _forget() -> None:
    """Rediscover entry points on next use (tests that install a store at run time)."""
    global _found
    with _lock:
        _found = None
        _loaded.clear()
