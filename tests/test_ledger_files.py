"""Ledger files: refused before any write, read-only opens that create nothing, a report
that never touches a foreign database, and permission problems as LedgerError."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tokenward.errors import LedgerError
from tokenward.ledger import SQLiteLedger, SQLLedger, open_ledger
from tokenward.testing._ledger import T0, ev


def _journal_mode(path: Path) -> str:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return str(conn.execute("PRAGMA journal_mode").fetchone()[0])
    finally:
        conn.close()


def _rollback_journal_db(path: Path, *statements: str) -> bytes:
    with sqlite3.connect(path) as conn:  # the default journal mode: "delete", not WAL
        for stmt in statements:
            conn.execute(stmt)
    conn.close()
    return path.read_bytes()


@pytest.mark.parametrize(
    ("statements", "match"),
    [
        (
            (
                "CREATE TABLE tokenward_schema_version (version INTEGER PRIMARY KEY, "
                "applied_at TEXT NOT NULL, note TEXT)",
                "INSERT INTO tokenward_schema_version VALUES (99, 'later', 'future')",
            ),
            "newer tokenward",
        ),
        (("CREATE TABLE tokenward_events (x INTEGER)",), "not created by tokenward"),
    ],
    ids=["newer-schema", "foreign-events-table"],
)
def test_refused_file_is_refused_before_any_write(
    tmp_path: Path, statements: tuple[str, ...], match: str
) -> None:
    """If this fails, a file tokenward refuses was modified first (e.g. switched to WAL
    mode, which rewrites its header) before being refused."""
    path = tmp_path / "refused.db"
    before = _rollback_journal_db(path, *statements)
    with pytest.raises(LedgerError, match=match):
        SQLiteLedger(path)
    assert path.read_bytes() == before
    assert _journal_mode(path) == "delete"


def test_read_only_never_creates_a_file(tmp_path: Path) -> None:
    """If this fails, a read-only open created the file it was asked to read."""
    path = tmp_path / "missing" / "ledger.db"
    with pytest.raises(LedgerError, match="no ledger at") as info:
        open_ledger(path, read_only=True)
    assert info.value.code == "ledger-missing"
    assert not path.exists() and not path.parent.exists()


def test_read_only_never_creates_tables_in_a_foreign_database(tmp_path: Path) -> None:
    """If this fails, opening another app's SQLite file read-only created tokenward's
    tables in it (the report did: 15 tables in a foreign database)."""
    path = tmp_path / "other_app.db"
    before = _rollback_journal_db(path, "CREATE TABLE orders (id INTEGER PRIMARY KEY)")
    with pytest.raises(LedgerError, match="not a tokenward ledger") as info:
        open_ledger(path, read_only=True)
    assert info.value.code == "ledger-schema-unknown"
    assert path.read_bytes() == before
    with sqlite3.connect(path) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
    assert tables == {"orders"}


def test_read_only_store_reads_and_refuses_writes(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    with SQLiteLedger(path) as led:
        led.record_many([ev(1, T0), ev(2, T0, cost=None)])
        led.put_state("calibration", "m", {"ratio": 1.5})
    before = path.read_bytes()
    ro = open_ledger(path, read_only=True)
    assert isinstance(ro, SQLiteLedger) and ro.read_only
    (total,) = ro.summary()
    assert (total.calls, total.unpriced_calls) == (2, 1)
    assert [e.id for e in ro.events()] == ["1", "2"]
    assert ro.get_state("calibration") == {"m": {"ratio": 1.5}}
    assert ro.dead_letters() == []
    for write in (
        lambda: ro.record(ev(3, T0)),
        lambda: ro.record_many([ev(3, T0)]),
        lambda: ro.put_state("calibration", "m", {}),
        lambda: ro.rebuild_rollups(),
        lambda: ro.replay_dead_letters(),
    ):
        with pytest.raises(LedgerError, match="read-only"):
            write()
    ro.flush()
    ro.close()
    assert path.read_bytes() == before


def test_report_on_a_foreign_database_creates_nothing(tmp_path: Path) -> None:
    """If this fails, ``tokenward report --db other_app.db`` created tables in another
    application's database (it must open the ledger read-only)."""
    path = tmp_path / "other_app.db"
    before = _rollback_journal_db(path, "CREATE TABLE orders (id INTEGER PRIMARY KEY)")
    result = subprocess.run(
        [sys.executable, "-m", "tokenward.cli", "report", "--db", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode != 0
    assert "not a tokenward ledger" in result.stderr + result.stdout
    assert path.read_bytes() == before


@pytest.mark.postgres
def test_postgres_read_only_creates_nothing(make_postgres_db: Callable[[], str]) -> None:
    """If this fails, a read-only PostgreSQL open created tables, or its queries could
    write."""
    url = make_postgres_db()
    with pytest.raises(LedgerError, match="no tokenward ledger"):
        SQLLedger(url, read_only=True)
    import psycopg

    with psycopg.connect(url) as conn:
        count = "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
        assert conn.execute(count).fetchone()[0] == 0
    with SQLLedger(url) as led:
        led.record(ev(1, T0))
    ro = open_ledger(url, read_only=True)
    assert ro.count() == 1
    with pytest.raises(LedgerError, match="read-only"):
        ro.record(ev(2, T0))
    assert isinstance(ro, SQLLedger)
    with pytest.raises(LedgerError, match="read-only transaction"):
        ro._fetch("INSERT INTO tokenward_state VALUES ('a', 'b', '{}', 0)", {})
    ro.close()


# -- permissions ----------------------------------------------------------------------------


@pytest.fixture
def make_read_only() -> Iterator[Callable[[Path], None]]:
    """Make a file or directory unwritable for this process, for real: ``chmod`` as a
    normal user; as root (which ignores modes) the immutable attribute (``chattr +i``)."""
    locked: list[Path] = []

    def lock(path: Path) -> None:
        if os.geteuid() != 0:
            os.chmod(path, 0o555 if path.is_dir() else 0o444)
        else:
            done = subprocess.run(["chattr", "+i", str(path)], capture_output=True, check=False)
            if done.returncode != 0:
                pytest.skip(f"chattr +i unavailable here: {done.stderr.decode()[-200:]}")
        locked.append(path)

    yield lock
    for path in reversed(locked):
        if os.geteuid() != 0:
            os.chmod(path, 0o755 if path.is_dir() else 0o644)
        else:
            subprocess.run(["chattr", "-i", str(path)], capture_output=True, check=False)


def test_read_only_directory_is_a_ledger_error_with_the_fix(
    tmp_path: Path, make_read_only: Callable[[Path], None]
) -> None:
    """If this fails, a ledger path in a directory the process cannot write raised a raw
    PermissionError / sqlite3 error instead of a LedgerError naming the fix."""
    locked = tmp_path / "locked"
    locked.mkdir()
    make_read_only(locked)
    for path in (locked / "ledger.db", locked / "sub" / "ledger.db"):
        with pytest.raises(LedgerError, match="Fix:") as info:
            SQLiteLedger(path)
        assert info.value.code == "ledger-read-only"
        assert not path.exists()


def test_read_only_file_is_a_ledger_error_with_the_fix(
    tmp_path: Path, make_read_only: Callable[[Path], None]
) -> None:
    """If this fails, a read-only ledger file was opened for writing (its writes would
    fail later) instead of refused with the fix; reading it read-only must still work."""
    path = tmp_path / "ro.db"
    with SQLiteLedger(path) as led:
        led.record(ev(1, T0))
    make_read_only(path)
    with pytest.raises(LedgerError, match="read_only=True") as info:
        SQLiteLedger(path)
    assert info.value.code == "ledger-read-only"
    ro = open_ledger(path, read_only=True)
    assert ro.count() == 1
    ro.close()
