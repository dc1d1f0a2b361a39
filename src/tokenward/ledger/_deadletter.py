"""Dead letters: events a ledger could not put in its events table, kept with the reason.

Two places hold them:

* the store's ``tokenward_dead_letters`` table, for an event the database refused
  (a value it cannot store: a lone surrogate, an integer beyond 64 bits, a NUL byte on
  PostgreSQL). Replaying such an event would fail again: it needs fixing first.
* a JSON-lines *dead-letter file*, for events the database could not take at all (it
  was unavailable when the process had to stop, or slower than the app for longer
  than the writer's ``block_timeout``), and for refused events whose dead-letter row
  the database refused too. Those marked ``retryable`` go back into the ledger with
  :meth:`replay_dead_letters`.

Everything is written as ASCII JSON, so a value that poisoned the events table cannot
poison the dead letters.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from tokenward.ledger._event import UsageEvent, from_micros, to_micros

try:  # POSIX: serialize appends and replays across processes
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["DeadLetter", "DeadLetterFile", "dead_letter_row", "describe"]

logger = logging.getLogger("tokenward.ledger")


@dataclass(frozen=True)
class DeadLetter:
    """One event the ledger kept aside instead of storing it, and why.

    ``event`` is the event as :meth:`UsageEvent.to_dict` gives it (exact, whatever
    it contains); :meth:`to_event` rebuilds it. ``retryable`` events were set aside
    because the database was unavailable or too slow, not because of their values;
    ``location`` is ``"table"`` or the dead-letter file's path.
    """

    event_id: str
    reason: str
    at: datetime
    event: dict[str, Any]
    retryable: bool
    location: str

    def to_event(self) -> UsageEvent:
        """The event as it was recorded."""
        return UsageEvent.from_dict(self.event)


def _ascii_json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=True, separators=(",", ":"))


def describe(exc: BaseException) -> str:
    """A one-line, ASCII-only reason for ``exc`` (safe to store anywhere)."""
    text = str(exc).splitlines()[0] if str(exc) else ""
    reason = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return reason.encode("ascii", "backslashreplace").decode("ascii").replace("\x00", "\\x00")


def dead_letter_row(event: UsageEvent, reason: str, at: datetime) -> tuple[int, str, str, str]:
    """``(at_us, event_id, reason, event_json)`` for the dead-letter table, all ASCII."""
    event_id = _ascii_json(event.id)[1:-1]
    return (to_micros(at), event_id, reason, _ascii_json(event.to_dict()))


def from_row(row: Sequence[Any]) -> DeadLetter:
    at_us, _event_id, reason, text = row
    event = json.loads(text)
    return DeadLetter(
        event_id=event["id"],
        reason=reason,
        at=from_micros(int(at_us)),
        event=event,
        retryable=False,
        location="table",
    )


class DeadLetterFile:
    """An append-only JSON-lines file of events set aside, one object per line.

    Appends are serialized by a lock in this process and ``flock`` across processes.
    A ``durable`` append is synced to disk (a drain at exit); the others reach the OS
    (they survive the process being killed, like a WAL commit with
    ``synchronous=NORMAL``) without a disk sync per event.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.path.abspath(os.fspath(path))
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"DeadLetterFile({self.path!r})"

    def append(
        self, entries: Sequence[tuple[UsageEvent, str]], *, retryable: bool, durable: bool = True
    ) -> bool:
        """Append ``(event, reason)`` entries; ``False`` (and the loss logged) if the file
        cannot be written."""
        if not entries:
            return True
        at = datetime.now(timezone.utc).isoformat()
        lines = "".join(
            _ascii_json({"at": at, "reason": reason, "retryable": retryable, "event": e.to_dict()})
            + "\n"
            for e, reason in entries
        )
        try:
            with self._lock, self._locked("a") as fh:
                fh.write(lines)
                fh.flush()
                if durable:
                    os.fsync(fh.fileno())
        except OSError as exc:
            logger.critical(
                "tokenward: %d ledger events (%s) could not be written to the dead-letter "
                "file %s either (%s); they are lost. Make that path writable, or pass "
                "dead_letter_path= to the ledger.",
                len(entries),
                entries[0][1],
                self.path,
                exc,
            )
            return False
        return True

    def read(self) -> list[DeadLetter]:
        """Every entry in the file (``[]`` when there is no file)."""
        try:
            with self._lock, self._locked("r") as fh:
                return [_parse(line, self.path) for line in fh if line.strip()]
        except FileNotFoundError:
            return []

    def take_retryable(self) -> list[DeadLetter]:
        """Remove the retryable entries from the file and return them."""
        try:
            with self._lock, self._locked("r+") as fh:
                entries = [_parse(line, self.path) for line in fh if line.strip()]
                keep = [e for e in entries if not e.retryable]
                fh.seek(0)
                fh.writelines(_line(e) for e in keep)
                fh.truncate()
                fh.flush()
                os.fsync(fh.fileno())
        except FileNotFoundError:
            return []
        return [e for e in entries if e.retryable]

    @contextlib.contextmanager
    def _locked(self, mode: str) -> Iterator[Any]:
        if "a" in mode:
            os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        with open(self.path, mode, encoding="ascii") as fh:
            if fcntl is not None:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            yield fh


def _parse(line: str, path: str) -> DeadLetter:
    data = json.loads(line)
    event = data["event"]
    return DeadLetter(
        event_id=event["id"],
        reason=data["reason"],
        at=datetime.fromisoformat(data["at"]),
        event=event,
        retryable=bool(data["retryable"]),
        location=path,
    )


def _line(entry: DeadLetter) -> str:
    return (
        _ascii_json(
            {
                "at": entry.at.isoformat(),
                "reason": entry.reason,
                "retryable": entry.retryable,
                "event": entry.event,
            }
        )
        + "\n"
    )
