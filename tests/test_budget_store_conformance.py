"""Every budget store we ship passes ``tokenward.testing.BudgetStoreConformance`` against a
real server, and so does a third-party store found by URL through its entry point."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tokenward.budgets import (
    BudgetStore,
    MemoryBudgetStore,
    SQLiteBudgetStore,
    budget_store_schemes,
    open_budget_store,
)
from tokenward.errors import ConfigurationError
from tokenward.testing import BudgetStoreConformance

Factory = Callable[[str], BudgetStore]


class TestMemoryBudgetStore(BudgetStoreConformance):
    shares_storage = False

    def make_store(self, tmp_path: Path, name: str) -> BudgetStore:
        return MemoryBudgetStore()


class TestSQLiteBudgetStore(BudgetStoreConformance):
    def make_store(self, tmp_path: Path, name: str) -> BudgetStore:
        return SQLiteBudgetStore(tmp_path / f"{name}.db", timeout=30)


@pytest.mark.postgres
class TestPostgresBudgetStore(BudgetStoreConformance):
    @pytest.fixture
    def budget_store_factory(self, postgres_url: str) -> Factory:
        from tokenward.budgets import PostgresBudgetStore

        return lambda name: PostgresBudgetStore(
            postgres_url, table_prefix=f"{name}_", connect_timeout=30
        )


@pytest.mark.redis
class TestRedisBudgetStore(BudgetStoreConformance):
    @pytest.fixture
    def budget_store_factory(self, redis_url: str) -> Factory:
        from tokenward.budgets import RedisBudgetStore

        return lambda name: RedisBudgetStore(redis_url, prefix=f"{name}:", socket_timeout=30)


# -- a third-party store, installed the way pip installs one ------------------------------------
_PLUGIN = '''
"""A budget store from another package: keeps counters in a MemoryBudgetStore per URL path."""
from tokenward.budgets import MemoryBudgetStore

_SHARED = {}


class ShelfBudgetStore:
    def __init__(self, name):
        self._inner = _SHARED.setdefault(name, MemoryBudgetStore())

    @classmethod
    def from_url(cls, url, **options):
        return cls(url.split("://", 1)[1])

    def reserve(self, items, reservation_id, ttl, now):
        return self._inner.reserve(items, reservation_id, ttl, now)

    def commit(self, reservation_id, items, now):
        return self._inner.commit(reservation_id, items, now)

    def release(self, reservation_id, now):
        self._inner.release(reservation_id, now)

    def extend(self, reservation_id, ttl, now):
        return self._inner.extend(reservation_id, ttl, now)

    def status(self, keys, now):
        return self._inner.status(keys, now)

    def expire(self, now):
        return self._inner.expire(now)

    def close(self):
        pass
'''


@pytest.fixture(scope="module")
def plugin_on_path(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """``shelfstore`` 1.0 "installed" into a directory on ``sys.path``: its module and a
    ``.dist-info`` with ``entry_points.txt``, as pip writes them."""
    root = tmp_path_factory.mktemp("site")
    (root / "shelfstore.py").write_text(textwrap.dedent(_PLUGIN))
    info = root / "shelfstore-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: shelfstore\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        "[tokenward.budget_stores]\nshelf = shelfstore:ShelfBudgetStore.from_url\n"
    )
    sys.path.insert(0, str(root))
    try:
        yield root
    finally:
        sys.path.remove(str(root))
        sys.modules.pop("shelfstore", None)


class TestThirdPartyStoreByURL(BudgetStoreConformance):
    """The plugin is found through importlib.metadata and opened by URL only."""

    shares_between_processes = False  # its counters live in the process

    @pytest.fixture(autouse=True)
    def _plugin(self, plugin_on_path: Path) -> None:
        """The plugin's dist-info is on sys.path for every test of this class."""

    def make_store(self, tmp_path: Path, name: str) -> BudgetStore:
        return open_budget_store(f"shelf://{tmp_path.name}-{name}")


def test_third_party_scheme_is_listed_and_opened(plugin_on_path: Path) -> None:
    assert "shelf" in budget_store_schemes()
    store = open_budget_store("shelf://x")
    assert type(store).__module__ == "shelfstore"


# -- URLs of the built-in stores ------------------------------------------------------------------
def test_builtin_stores_open_by_url(tmp_path: Path) -> None:
    assert isinstance(open_budget_store("memory://"), MemoryBudgetStore)
    s = open_budget_store(f"sqlite:///{tmp_path / 'b.db'}", timeout=3)
    assert isinstance(s, SQLiteBudgetStore) and s.path == str(tmp_path / "b.db") and s.timeout == 3
    s.close()
    assert {"memory", "sqlite", "postgresql", "postgres", "redis", "rediss", "unix"} <= set(
        budget_store_schemes()
    )


@pytest.mark.postgres
def test_postgres_and_redis_open_by_url(postgres_url: str, redis_url: str) -> None:
    from tokenward.budgets import PostgresBudgetStore, RedisBudgetStore

    pg = open_budget_store(postgres_url, table_prefix="tw_byurl_")
    assert isinstance(pg, PostgresBudgetStore)
    pg.close()
    sa_style = postgres_url.replace("postgresql://", "postgresql+psycopg://")
    pg2 = open_budget_store(sa_style, table_prefix="tw_byurl_")
    assert isinstance(pg2, PostgresBudgetStore)
    pg2.close()
    r = open_budget_store(redis_url, prefix="byurl:")
    assert isinstance(r, RedisBudgetStore)
    r.close()


@pytest.mark.parametrize(
    "url, fragment",
    [
        ("ftp://host/x", "unknown scheme 'ftp', no store registered for ftp://"),
        ("budgets.db", "has no scheme"),
        ("sqlite://", "has no path"),
        ("sqlite:///", "has no path"),
    ],
)
def test_bad_store_urls_say_what_to_use(url: str, fragment: str) -> None:
    with pytest.raises(ConfigurationError, match=fragment):
        open_budget_store(url)
