"""One bounded memo policy for the caches on hot paths."""

from __future__ import annotations

from typing import TypeVar

__all__ = ["remember"]

K = TypeVar("K")
V = TypeVar("V")


def remember(cache: dict[K, V], key: K, value: V, limit: int) -> V:
    """Store ``value`` under ``key`` and return it; a ``cache`` holding ``limit`` entries is
    emptied first. Forgetting everything at once is cheaper than an LRU on the hot paths
    these caches serve, and every entry is cheap to compute again."""
    if len(cache) >= limit:
        cache.clear()
    cache[key] = value
    return value
