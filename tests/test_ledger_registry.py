"""Ledger stores resolved by URL scheme through the ``tokenward.ledgers`` entry points: a
third-party store installed as a real distribution (a ``*.dist-info`` with
``entry_points.txt`` on ``sys.path``) is found by ``open_ledger`` and passes the same
conformance suite as tokenward's own stores."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tokenward.errors import ConfigurationError
from tokenward.ledger import (
    LedgerStore,
    MemoryLedger,
    _registry,
    ledger_schemes,
    open_ledger,
    register_ledger,
)
from tokenward.testing import LedgerStoreConformance
from tokenward.testing._ledger import T0, ev

_ACME = '''
"""acme_ledger: a third-party tokenward ledger keeping its events in a JSON-lines file."""

import json
import os

from tokenward.ledger import MemoryLedger, UsageEvent


class JsonlLedger(MemoryLedger):
    """MemoryLedger's queries over events persisted one JSON object per line."""

    def __init__(self, path):
        super().__init__()
        self.path = path
        if os.path.exists(path):
            with open(path, encoding="ascii") as fh:
                events = [UsageEvent.from_dict(json.loads(line)) for line in fh]
            super().record_many(events)

    def record(self, event):
        self.record_many([event])

    def record_many(self, events):
        events = list(events)
        super().record_many(events)
        with open(self.path, "a", encoding="ascii") as fh:
            fh.writelines(json.dumps(e.to_dict()) + "\\n" for e in events)


def open_jsonl(url, **kwargs):
    return JsonlLedger(url[len("jsonl://"):], **kwargs)
'''


def _install(site: Path, name: str, entry_points: str, module: str | None = None) -> None:
    """A distribution as pip leaves it: the module, and its dist-info metadata."""
    site.mkdir(parents=True, exist_ok=True)
    if module is not None:
        (site / f"{name}.py").write_text(textwrap.dedent(module))
    info = site / f"{name}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(textwrap.dedent(entry_points))


@pytest.fixture
def acme_site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    site = tmp_path / "site-packages"
    _install(site, "acme_ledger", "[tokenward.ledgers]\njsonl = acme_ledger:open_jsonl\n", _ACME)
    monkeypatch.syspath_prepend(str(site))
    _registry._forget()
    yield site
    _registry._forget()
    sys.modules.pop("acme_ledger", None)


class TestThirdPartyStoreByEntryPoint(LedgerStoreConformance):
    """A store nobody at tokenward wrote, opened by URL, passes the whole suite."""

    @pytest.fixture
    def store(self, acme_site: Path, tmp_path: Path) -> Iterator[LedgerStore]:
        s = open_ledger(f"jsonl://{tmp_path}/events.jsonl")
        assert type(s).__module__ == "acme_ledger"
        yield s
        s.close()


def test_third_party_store_persists_through_its_own_format(acme_site: Path, tmp_path: Path) -> None:
    url = f"jsonl://{tmp_path}/x.jsonl"
    led = open_ledger(url)
    led.record_many([ev(1, T0), ev(2, T0, cost=None)])
    again = open_ledger(url)
    (total,) = again.summary()
    assert (total.calls, total.unpriced_calls) == (2, 1)
    assert "jsonl" in ledger_schemes()


def test_builtin_schemes_are_declared_as_entry_points() -> None:
    """If this fails, pyproject.toml's [project.entry-points."tokenward.ledgers"] and the
    registry's fallback table (used without installed metadata) disagree."""
    import tomllib

    pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
    declared = tomllib.loads(pyproject.read_text())["project"]["entry-points"]["tokenward.ledgers"]
    assert declared == _registry.BUILTIN_LEDGERS


def test_builtins_work_without_installed_metadata(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(_registry, "entry_points", lambda group: [])
    _registry._forget()
    try:
        assert isinstance(open_ledger(":memory:"), MemoryLedger)
        led = open_ledger(tmp_path / "a.db")
        assert type(led).__name__ == "SQLiteLedger"
        led.close()
    finally:
        _registry._forget()


def test_a_scheme_claimed_twice_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    site = tmp_path / "site-packages"
    _install(site, "one_store", "[tokenward.ledgers]\nduck = one_store:open\n")
    _install(site, "two_store", "[tokenward.ledgers]\nduck = two_store:open\n")
    monkeypatch.syspath_prepend(str(site))
    _registry._forget()
    try:
        with pytest.raises(ConfigurationError, match="claimed by several stores") as info:
            open_ledger("duck://x")
        assert "one_store" in str(info.value) and "two_store" in str(info.value)
    finally:
        _registry._forget()


def test_register_ledger_at_run_time() -> None:
    opened: list[Any] = []

    def factory(url: str, **kwargs: Any) -> MemoryLedger:
        opened.append((url, kwargs))
        return MemoryLedger()

    register_ledger("scratch", factory)
    try:
        assert isinstance(open_ledger("scratch://a", read_only=True), MemoryLedger)
        assert opened == [("scratch://a", {"read_only": True})]
        with pytest.raises(ConfigurationError):
            register_ledger("not a scheme", factory)
    finally:
        _registry._forget()
