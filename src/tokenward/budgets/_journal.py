"""The fail-open journal: spend that could not be written to the budget store, kept until it is.

While the store is unreachable, calls that already happened still have to count. Their
commits are journaled here and replayed (``Budgets.reconcile``, also automatic) once the
store answers again. With a ``path`` the journal is a small SQLite file (``synchronous=FULL``:
every entry is on disk before ``commit`` returns), so spend journaled by a process that then
exits or crashes is replayed by the next process that opens the same journal. Replays are
idempotent by run id (stores ignore a second commit of the same reservation id).
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from tokenward.errors import BudgetStoreUnavailableError

__all__ = ["Journal", "JournalEntry"]

logger = logging.getLogger("tokenward.budgets")

_SCHEMA = """CREATE TABLE IF NOT EXISTS tw_budget_journal (
    id TEXT PRIMARY KEY, actuals TEXT NOT NULL, expires TEXT NOT NULL, at REAL NOT NULL)"""


@dataclass
class JournalEntry:
    """One commit waiting for the store: amounts per counter key and their expiry times."""

    id: str
    actuals: dict[str, int]
    expires: dict[str, float | None]
    at: float = field(default_factory=time.time)


class Journal:
    """Entries in arrival order, in memory and (with ``path``) in a SQLite file."""

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self._lock = threading.Lock()
        #: id -> entry, oldest first; read-only outside this class (``Budgets`` tests it for
        #: emptiness on every call, without a method call)
        self.entries: dict[str, JournalEntry] = {}
        self._path = os.fspath(path) if path is not None else None
        self._conn: sqlite3.Connection | None = None
        self._warned_memory_only = False
        if self._path is not None and os.path.exists(self._path):
            self._load()

    @property
    def path(self) -> str | None:
        """The file the journal persists to (``None``: memory only)."""
        return self._path

    def use_path(self, path: str | os.PathLike[str]) -> None:
        """Persist to ``path`` from now on (entries already journaled are written there too)."""
        with self._lock:
            if self._path is not None:
                return
            self._path = os.fspath(path)
            pending = list(self.entries.values())
        if os.path.exists(self._path):
            self._load()
        for entry in pending:
            self._persist(entry)

    def __len__(self) -> int:
        return len(self.entries)

    def add(self, entry: JournalEntry) -> None:
        with self._lock:
            self.entries[entry.id] = entry
        if self._path is None:
            if not self._warned_memory_only:
                self._warned_memory_only = True
                logger.warning(
                    "tokenward budgets: spend journaled in memory only (lost if the process "
                    "exits before the store is back); set Budgets(..., journal_path='...') to "
                    "keep it on disk"
                )
            return
        self._persist(entry)

    def first(self) -> JournalEntry | None:
        with self._lock:
            return next(iter(self.entries.values()), None)

    def remove(self, entry: JournalEntry) -> None:
        with self._lock:
            if self.entries.get(entry.id) is entry:
                del self.entries[entry.id]
            conn = self._connect() if self._path is not None else None
            if conn is not None:
                with conn:
                    conn.execute("DELETE FROM tw_budget_journal WHERE id = ?", (entry.id,))

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    # -- file -------------------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        # called with self._lock held
        if self._conn is None:
            assert self._path is not None
            try:
                Path(self._path).parent.mkdir(parents=True, exist_ok=True)
                conn = sqlite3.connect(self._path, timeout=30, check_same_thread=False)
                conn.execute("PRAGMA synchronous=FULL")
                conn.execute(_SCHEMA)
                conn.commit()
            except (OSError, sqlite3.Error) as exc:
                raise BudgetStoreUnavailableError(
                    f"cannot open the budget journal {self._path!r} ({exc}); journaled spend "
                    f"is kept in memory only. Point Budgets(journal_path=...) at a writable file."
                ) from exc
            self._conn = conn
        return self._conn

    def _persist(self, entry: JournalEntry) -> None:
        try:
            with self._lock:
                conn = self._connect()
                with conn:
                    conn.execute(
                        "INSERT OR REPLACE INTO tw_budget_journal VALUES (?, ?, ?, ?)",
                        (entry.id, json.dumps(entry.actuals), json.dumps(entry.expires), entry.at),
                    )
        except (BudgetStoreUnavailableError, sqlite3.Error) as exc:
            logger.error("tokenward budgets: could not persist journal entry %s: %s", entry.id, exc)

    def _load(self) -> None:
        try:
            with self._lock:
                rows = (
                    self._connect()
                    .execute("SELECT id, actuals, expires, at FROM tw_budget_journal ORDER BY at")
                    .fetchall()
                )
                for rid, actuals, expires, at in rows:
                    if rid not in self.entries:
                        self.entries[rid] = JournalEntry(
                            rid, json.loads(actuals), json.loads(expires), at
                        )
        except (BudgetStoreUnavailableError, sqlite3.Error, ValueError) as exc:
            logger.error("tokenward budgets: could not read the journal %s: %s", self._path, exc)
            return
        if rows:
            logger.info(
                "tokenward budgets: %d journaled commit(s) from an earlier run will be replayed",
                len(rows),
            )
