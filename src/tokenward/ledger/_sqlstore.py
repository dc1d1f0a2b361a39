"""What the SQL stores share: the write path, dead letters, state documents, read-only mode.

Writing (both stores): ``record()`` hands the event to the background writer (or, with
``batch=False``, stores it at once); rows are built in the writer thread. A batch is
stored with **per-event isolation**: when the database refuses a value
(:class:`~tokenward.errors.LedgerValueError`), the batch is split in halves until the
refused events are alone; they go to the dead-letter table (or the dead-letter file if
the table refuses them too) and every other event is written. Only connectivity
(:class:`~tokenward.errors.LedgerUnavailableError`) makes the writer keep a batch and
retry it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

from tokenward.errors import LedgerError, LedgerUnavailableError, LedgerValueError
from tokenward.ledger._base import check_state
from tokenward.ledger._deadletter import (
    DeadLetter,
    DeadLetterFile,
    dead_letter_row,
    describe,
    from_row,
)
from tokenward.ledger._event import UsageEvent, event_to_row, to_micros
from tokenward.ledger._sqlcommon import DEAD_LETTERS, STATE, _SQLQueries
from tokenward.ledger._writer import BatchWriter

__all__ = ["SQLStore"]

logger = logging.getLogger("tokenward.ledger")

Row = tuple[Any, ...]


class SQLStore(_SQLQueries):
    """Base of :class:`SQLiteLedger` and :class:`SQLLedger`.

    Subclasses call :meth:`_setup_writing` at the end of ``__init__`` and implement
    ``_insert_rows(rows)`` (one transaction: the rows and their rollups; raises
    ``LedgerValueError`` when the database refused a value), ``_insert_dead_letters``,
    ``_upsert_state``, ``_release()`` (close connections) and the query plumbing of
    :class:`_SQLQueries`.
    """

    _writer: BatchWriter | None = None
    _closed: bool = False
    _read_only: bool = False
    _dead_file: DeadLetterFile

    def _setup_writing(
        self,
        *,
        name: str,
        batch: bool,
        batch_size: int,
        flush_interval: float,
        max_queue: int,
        block_timeout: float,
        drain_timeout: float,
        dead_letter_path: str,
    ) -> None:
        self._dead_file = DeadLetterFile(dead_letter_path)
        self._writer = None
        if batch and not self._read_only:
            self._writer = BatchWriter(
                self._store,
                self._spill,
                name=name,
                max_batch=batch_size,
                max_delay=flush_interval,
                max_queue=max_queue,
                block_timeout=block_timeout,
                drain_timeout=drain_timeout,
            )

    @property
    def dead_letter_path(self) -> str:
        """Where events go that could not be written at all (JSON lines)."""
        return self._dead_file.path

    @property
    def read_only(self) -> bool:
        """Whether this store was opened with ``read_only=True``."""
        return self._read_only

    # -- writing --------------------------------------------------------------------------

    def record(self, event: UsageEvent) -> None:
        """Store one event (queued for the background writer when ``batch=True``)."""
        writer = self._writer
        if writer is not None and type(event) is UsageEvent and not self._closed:
            writer.submit_one(event)
        else:
            self.record_many((event,))

    def record_many(self, events: Iterable[UsageEvent]) -> None:
        """Store several events (one transaction per batch when ``batch=False``)."""
        batch = list(events)
        for e in batch:
            if not isinstance(e, UsageEvent):
                raise TypeError(f"expected UsageEvent, got {type(e).__name__}")
        self._check_writable("record events")
        if self._writer is not None:
            self._writer.submit(batch)
        elif batch:
            self._store(batch)

    def flush(self) -> None:
        """Wait until every queued event is committed (no-op in synchronous mode)."""
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        """Write what is queued, stop the writer and release the connections. Idempotent.

        Raises :class:`~tokenward.errors.LedgerUnavailableError` when the database could
        not take everything in time; what it did not take is in the dead-letter file.
        """
        if self._closed:
            return
        self._closed = True
        spilled = 0
        try:
            if self._writer is not None:
                spilled = self._writer.close()
        finally:
            self._release()
        if spilled:
            raise LedgerUnavailableError(
                f"{spilled} ledger events could not be written before close(); they are in "
                f"the dead-letter file {self.dead_letter_path}. Replay them with "
                "ledger.replay_dead_letters() once the database is back."
            )

    def _check_writable(self, action: str) -> None:
        if self._closed:
            raise LedgerError(f"this ledger is closed; open a new one to {action}")
        if self._read_only:
            raise LedgerError(
                f"this ledger was opened read-only; it cannot {action}. "
                "Open it without read_only=True to write."
            )

    def _store(self, events: Sequence[UsageEvent]) -> None:
        """Write a batch with per-event isolation (the writer's ``write``)."""
        unique: dict[str, UsageEvent] = {}
        for e in events:
            unique.setdefault(e.id, e)
        accepted: list[UsageEvent] = []
        rows: list[Row] = []
        rejected: list[tuple[UsageEvent, BaseException]] = []
        for e in unique.values():
            try:
                rows.append(event_to_row(e))
            except Exception as exc:  # noqa: BLE001 - whatever the codec refuses is dead-lettered
                rejected.append((e, exc))
            else:
                accepted.append(e)
        if rows:
            self._insert_isolated(accepted, rows, rejected)
        if rejected:
            self._dead_letter(rejected)

    def _insert_isolated(
        self,
        events: list[UsageEvent],
        rows: list[Row],
        rejected: list[tuple[UsageEvent, BaseException]],
    ) -> None:
        try:
            self._insert_rows(rows)
        except LedgerValueError as exc:
            if len(rows) == 1:
                rejected.append((events[0], exc))
                return
            mid = len(rows) // 2
            self._insert_isolated(events[:mid], rows[:mid], rejected)
            self._insert_isolated(events[mid:], rows[mid:], rejected)

    def _dead_letter(self, rejected: list[tuple[UsageEvent, BaseException]]) -> None:
        now = datetime.now(timezone.utc)
        # the driver's own words: "UnicodeEncodeError: ... surrogates not allowed"
        entries = [(e, describe(exc.__cause__ or exc)) for e, exc in rejected]
        where = "the dead-letter table"
        try:
            self._insert_dead_letters([dead_letter_row(e, reason, now) for e, reason in entries])
        except Exception as exc:  # noqa: BLE001 - the table refused them: the file keeps them
            where = f"the dead-letter file {self.dead_letter_path}"
            note = f"; the dead-letter table refused it too: {describe(exc)}"
            self._dead_file.append([(e, r + note) for e, r in entries], retryable=False)
        first, reason = entries[0]
        logger.warning(
            "tokenward: the database refused %d ledger event(s); kept in %s with the reason "
            "(first: id=%r: %s). Every other event was written; see ledger.dead_letters().",
            len(entries),
            where,
            first.id,
            reason,
        )

    def _spill(self, events: Sequence[UsageEvent], reason: str, durable: bool) -> bool:
        entries = [(e, reason) for e in events]
        return self._dead_file.append(entries, retryable=True, durable=durable)

    # -- dead letters -----------------------------------------------------------------------

    def dead_letters(self) -> list[DeadLetter]:
        """Events this ledger set aside, oldest first: refused ones (from the dead-letter
        table) and those in the dead-letter file."""
        if not self._read_only and self._writer is not None:
            self.flush()
        rows = self._fetch(
            f"SELECT at_us, event_id, reason, event FROM {DEAD_LETTERS} ORDER BY at_us", {}
        )
        letters = [from_row(r) for r in rows] + self._dead_file.read()
        return sorted(letters, key=lambda d: d.at)

    def replay_dead_letters(self) -> int:
        """Record again the retryable events of the dead-letter file (those set aside
        because the database was unavailable or slow) and remove them from it. Returns
        how many were replayed. Refused events stay where they are: fix them first."""
        self._check_writable("replay dead letters")
        entries = self._dead_file.take_retryable()
        if not entries:
            return 0
        events = [d.to_event() for d in entries]
        try:
            self.record_many(events)
            self.flush()
        except BaseException:
            self._dead_file.append([(d.to_event(), d.reason) for d in entries], retryable=True)
            raise
        return len(events)

    # -- state documents --------------------------------------------------------------------

    def put_state(self, namespace: str, key: str, value: Mapping[str, Any]) -> None:
        """Store ``value`` (a JSON object) under ``namespace``/``key`` (replacing it)."""
        text = check_state(namespace, key, value)
        self._check_writable("store state")
        self._upsert_state(namespace, key, text, to_micros(datetime.now(timezone.utc)))

    def get_state(self, namespace: str) -> dict[str, dict[str, Any]]:
        """Every ``key -> value`` stored under ``namespace``."""
        check_state(namespace, None)
        rows = self._fetch(
            f"SELECT key, value FROM {STATE} WHERE namespace = :ns", {"ns": namespace}
        )
        return {key: json.loads(value) for key, value in rows}

    # -- plumbing supplied by subclasses ------------------------------------------------------

    def _insert_rows(self, rows: list[Row]) -> None:
        raise NotImplementedError

    def _insert_dead_letters(self, rows: list[tuple[int, str, str, str]]) -> None:
        raise NotImplementedError

    def _upsert_state(self, namespace: str, key: str, value: str, updated_us: int) -> None:
        raise NotImplementedError

    def _release(self) -> None:
        raise NotImplementedError
