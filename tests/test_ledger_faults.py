"""Ledger fault injection: poison events, an unavailable or locked database, a full
queue, SIGTERM, interpreter exit and fork, with real processes and real servers.

Each test is a failure the previous writer had (issue 14): one poison event stopped the
writer for good; SIGTERM lost up to every queued event; an exit while another process
held the SQLite write lock gave up after 10 s (or at the first failure); fork-started
workers lost every event; raw driver errors reached the caller.
"""

from __future__ import annotations

import mmap
import multiprocessing
import os
import signal
import sqlite3
import struct
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests._servers import DedicatedPostgres
from tokenward.errors import LedgerError, LedgerUnavailableError, LedgerValueError
from tokenward.ledger import LedgerStore, SQLiteLedger, SQLLedger
from tokenward.testing._ledger import T0, ev
from tokenward.usage import Usage

# -- helpers ------------------------------------------------------------------------------

_STREAM = textwrap.dedent(
    """
    import mmap, os, struct, sys
    from datetime import datetime, timezone
    from decimal import Decimal
    from tokenward.ledger import UsageEvent, open_ledger
    from tokenward.usage import Usage

    target, ack_path = sys.argv[1], sys.argv[2]
    led = open_ledger(target, dead_letter_path=ack_path + ".dead.jsonl")
    fd = os.open(ack_path, os.O_RDWR)
    acks = mmap.mmap(fd, 8)
    usage = Usage(input=10, output=2)
    one = Decimal("0.000001")
    i = 0
    while True:
        led.record(UsageEvent(id=f"e{i}", timestamp=datetime.now(timezone.utc), model="m",
                              provider=None, usage=usage, cost=one))
        i += 1
        struct.pack_into("q", acks, 0, i)  # acknowledged: record() returned
    """
)


def _stream_until(target: str, tmp: Path, n: int, sig: int) -> tuple[int, int]:
    """Run a child that records events as fast as it can; once ``n`` are acknowledged send
    it ``sig``. Returns (events acknowledged, exit code)."""
    ack = tmp / "acks"
    ack.write_bytes(b"\0" * 8)
    proc = subprocess.Popen([sys.executable, "-c", _STREAM, target, str(ack)])
    fd = os.open(ack, os.O_RDWR)
    acks = mmap.mmap(fd, 8)
    try:
        deadline = time.monotonic() + 120
        while struct.unpack_from("q", acks, 0)[0] < n:
            assert proc.poll() is None, "the streaming child died"
            assert time.monotonic() < deadline, "the streaming child is too slow"
            time.sleep(0.005)
        proc.send_signal(sig)
        code = proc.wait(60)
        return struct.unpack_from("q", acks, 0)[0], code
    finally:
        acks.close()
        os.close(fd)
        if proc.poll() is None:
            proc.kill()


def _ids(store: LedgerStore) -> set[str]:
    return {e.id for e in store.events()}


def _run(code: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


# -- SIGTERM: a container stop loses no acknowledged event ----------------------------------


@pytest.mark.slow
def test_sigterm_mid_stream_loses_no_acknowledged_event_sqlite(tmp_path: Path) -> None:
    """If this fails, a SIGTERM (container stop) killed the process with acknowledged
    events still queued (the previous writer lost up to 1,815 of 5,000)."""
    path = str(tmp_path / "term.db")
    SQLiteLedger(path).close()
    acked, code = _stream_until(path, tmp_path, 5_000, signal.SIGTERM)
    assert code == -signal.SIGTERM  # the default action ran after the flush
    led = SQLiteLedger(path)
    stored = _ids(led)
    led.close()
    assert {f"e{i}" for i in range(acked)} <= stored


@pytest.mark.slow
@pytest.mark.postgres
def test_sigterm_mid_stream_loses_no_acknowledged_event_postgres(
    make_postgres_db: Callable[[], str], tmp_path: Path
) -> None:
    """If this fails, a SIGTERM lost acknowledged events on PostgreSQL (the previous
    writer lost up to 3,000 of 3,000)."""
    url = make_postgres_db()
    SQLLedger(url).close()
    acked, code = _stream_until(url, tmp_path, 3_000, signal.SIGTERM)
    assert code == -signal.SIGTERM
    led = SQLLedger(url)
    stored = _ids(led)
    led.close()
    assert {f"e{i}" for i in range(acked)} <= stored


def test_sigterm_handler_only_when_the_app_has_none(tmp_path: Path) -> None:
    """If this fails, the ledger replaced a SIGTERM handler the app installed (or did not
    install its flush handler when SIGTERM was at its default action)."""
    code = """
    import signal, sys
    from tokenward.ledger import SQLiteLedger
    def app_handler(signum, frame):
        pass
    if sys.argv[2] == "app":
        signal.signal(signal.SIGTERM, app_handler)
    led = SQLiteLedger(sys.argv[1])
    h = signal.getsignal(signal.SIGTERM)
    print("app" if h is app_handler else "default" if h is signal.SIG_DFL else h.__module__)
    led.close()
    """
    assert _run(code, str(tmp_path / "a.db"), "app").stdout.strip() == "app"
    assert _run(code, str(tmp_path / "b.db"), "none").stdout.strip() == "tokenward.ledger._writer"


# -- interpreter exit -----------------------------------------------------------------------

_RECORD_AND_EXIT = """
import sys
from datetime import datetime, timezone
from decimal import Decimal
from tokenward.ledger import SQLiteLedger, UsageEvent
from tokenward.usage import Usage
led = SQLiteLedger(sys.argv[1], **eval(sys.argv[2]))
led.record_many([UsageEvent(id=str(i), timestamp=datetime.now(timezone.utc), model="m",
                            provider=None, usage=Usage(input=1), cost=Decimal(1))
                 for i in range(1000)])
# no flush, no close: a normal interpreter exit must write them
"""


def _exit_while_locked(tmp_path: Path, hold: float, options: str) -> tuple[int, str]:
    path = tmp_path / "locked.db"
    SQLiteLedger(path).close()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    child = subprocess.Popen(
        [sys.executable, "-c", _RECORD_AND_EXIT, str(path), options],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(hold)
        holder.execute("COMMIT")
        _, err = child.communicate(timeout=120)
    finally:
        holder.close()
        if child.poll() is None:
            child.kill()
    led = SQLiteLedger(path)
    n = led.count()
    led.close()
    return n, err


def test_exit_retries_instead_of_giving_up_at_the_first_failure(tmp_path: Path) -> None:
    """If this fails, the exit flush gave up when a write timed out on the lock once
    (busy_timeout 1 s, lock held 3 s) instead of retrying within its drain timeout."""
    n, err = _exit_while_locked(tmp_path, 3.0, "{'busy_timeout': 1.0}")
    assert n == 1000, err


@pytest.mark.slow
def test_exit_waits_as_long_as_the_busy_timeout(tmp_path: Path) -> None:
    """If this fails, the exit flush stopped waiting before the database's busy timeout
    (the previous writer gave up after 10 s < 30 s busy_timeout and lost 1,000 of 1,000)."""
    n, err = _exit_while_locked(tmp_path, 12.0, "{}")
    assert n == 1000, err


def test_exit_puts_what_it_cannot_write_in_the_dead_letter_file(tmp_path: Path) -> None:
    """If this fails, events the database never took before the exit deadline were lost
    instead of kept (retryable) in the dead-letter file."""
    opts = "{'busy_timeout': 0.2, 'drain_timeout': 1.0}"
    n, err = _exit_while_locked(tmp_path, 4.0, opts)
    assert n == 0
    assert "dead-letter file" in err
    led = SQLiteLedger(tmp_path / "locked.db")
    letters = led.dead_letters()
    assert len(letters) == 1000 and all(d.retryable for d in letters)
    assert led.replay_dead_letters() == 1000
    assert led.count() == 1000 and led.dead_letters() == []
    led.close()


# -- fork -----------------------------------------------------------------------------------

_FORK_LEDGER: Any = None


def _fork_worker(worker: int) -> int:
    for i in range(200):
        _FORK_LEDGER.record(ev(f"w{worker}-{i}", T0 + timedelta(seconds=i)))
    return worker  # returns normally: no flush, no close


def _fork_workers_keep_their_events(led: LedgerStore) -> None:
    global _FORK_LEDGER
    _FORK_LEDGER = led
    led.record_many([ev(f"parent-{i}", T0) for i in range(50)])  # queued when forking
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(3) as pool:
        assert sorted(pool.map(_fork_worker, range(6))) == list(range(6))
        pool.close()
        pool.join()
    procs = [ctx.Process(target=_fork_worker, args=(w,)) for w in (6, 7)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0]
    led.flush()
    expected = {f"w{w}-{i}" for w in range(8) for i in range(200)}
    expected |= {f"parent-{i}" for i in range(50)}
    assert _ids(led) == expected
    (total,) = led.summary()
    assert total.calls == len(expected)  # no duplicates counted in the rollups


@pytest.mark.slow
def test_fork_workers_that_return_normally_keep_their_events_sqlite(tmp_path: Path) -> None:
    """If this fails, events recorded in fork-started multiprocessing workers were lost
    when the workers returned (they leave through os._exit, skipping atexit)."""
    led = SQLiteLedger(tmp_path / "fork.db")
    try:
        _fork_workers_keep_their_events(led)
    finally:
        led.close()


@pytest.mark.slow
@pytest.mark.postgres
def test_fork_workers_that_return_normally_keep_their_events_postgres(
    make_postgres_db: Callable[[], str], tmp_path: Path
) -> None:
    """If this fails, fork-started workers lost their events on PostgreSQL, or shared
    the parent's pooled connections."""
    led = SQLLedger(make_postgres_db(), dead_letter_path=tmp_path / "dead.jsonl")
    try:
        _fork_workers_keep_their_events(led)
    finally:
        led.close()


# -- poison events: isolated, dead-lettered, the writer keeps going ---------------------------


def _poison() -> list[Any]:
    return [
        ev("surrogate", T0, user_id="m\ud800"),
        ev("huge-int", T0, usage=Usage(input=2**63, output=1)),
        ev("huge-cost", T0, cost=Decimal(2**70)),
    ]


def _isolates_poison(led: Any) -> None:
    good = [ev(f"g{i}", T0 + timedelta(seconds=i)) for i in range(300)]
    for e in good[:150] + _poison() + good[150:]:
        led.record(e)  # no flush in between: the writer must not stop at the poison
    deadline = time.monotonic() + 30
    while led.count() < 300 and time.monotonic() < deadline:
        time.sleep(0.05)
    led.flush()
    ids = _ids(led)
    assert {e.id for e in good} <= ids
    letters = {d.event_id: d for d in led.dead_letters()}
    assert {"surrogate", "huge-int", "huge-cost"} <= set(letters) | ids
    rejected = {p.id for p in _poison()} - ids
    for event_id in rejected:
        d = letters[event_id]
        assert d.location == "table" and not d.retryable and d.reason
        assert d.to_event().id == event_id  # kept exactly, whatever it contains
    assert letters["surrogate"].to_event().user_id == "m\ud800"
    (total,) = led.summary()
    assert total.calls == len(ids)


def test_poison_events_are_dead_lettered_and_the_writer_keeps_going_sqlite(
    tmp_path: Path,
) -> None:
    """If this fails, a poison event stopped the SQLite writer (every later event was
    lost) or was dropped without a dead letter and its reason."""
    led = SQLiteLedger(tmp_path / "poison.db")
    try:
        _isolates_poison(led)
    finally:
        led.close()


@pytest.mark.postgres
def test_poison_events_are_dead_lettered_and_the_writer_keeps_going_postgres(
    make_postgres_db: Callable[[], str], tmp_path: Path
) -> None:
    """If this fails, a poison event (also a NUL byte, which PostgreSQL text refuses)
    stopped the PostgreSQL writer, or a too-long key in an index was not isolated."""
    led = SQLLedger(make_postgres_db(), dead_letter_path=tmp_path / "dead.jsonl")
    try:
        led.record(ev("nul", T0, agent="a\x00b"))
        led.record(ev("long-key", T0, user_id=os.urandom(3000).hex()))
        _isolates_poison(led)
        letters = {d.event_id: d for d in led.dead_letters()}
        assert "nul" in letters and "long-key" in letters
        assert letters["nul"].to_event().agent == "a\x00b"
    finally:
        led.close()


def test_dead_letters_go_to_the_file_when_the_table_refuses_them(tmp_path: Path) -> None:
    """If this fails, an event refused by the events table was lost because the
    dead-letter table could not take it either."""
    path = tmp_path / "nodl.db"
    led = SQLiteLedger(path, batch=False)
    with sqlite3.connect(path) as conn:
        conn.execute("DROP TABLE tokenward_dead_letters")
    led.record_many([ev("ok", T0), ev("bad", T0, user_id="\udfff")])
    assert _ids(led) == {"ok"}
    (letter,) = led._dead_file.read()
    assert letter.event_id == "bad" and not letter.retryable
    assert "surrogates not allowed" in letter.reason and "refused it too" in letter.reason
    led.close()


# -- backpressure -----------------------------------------------------------------------------


def test_full_queue_spills_to_the_dead_letter_file_never_drops(tmp_path: Path) -> None:
    """If this fails, a database slower than the app (here: locked) made the queue grow
    without bound or dropped events, instead of waiting block_timeout once and then
    spilling to the dead-letter file until the writer catches up."""
    path = tmp_path / "slow.db"
    led = SQLiteLedger(path, busy_timeout=0.1, block_timeout=0.3, max_queue=1_000)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        events = [ev(f"b{i}", T0) for i in range(5_000)]
        for e in events:
            led.record(e)
        assert led._writer is not None and led._writer.pending() <= 1_000
    finally:
        holder.execute("COMMIT")
        holder.close()
    deadline = time.monotonic() + 30
    while True:  # the writer retries with backoff; flush raises while it still fails
        try:
            led.flush()
            break
        except LedgerUnavailableError:
            assert time.monotonic() < deadline
            time.sleep(0.2)
    spilled = led.dead_letters()
    assert spilled and all(d.retryable for d in spilled)
    assert led.count() + len(spilled) == 5_000
    assert led.replay_dead_letters() == len(spilled)
    assert _ids(led) == {e.id for e in events}
    led.close()


# -- an unavailable database: connectivity errors, kept and retried -------------------------


@pytest.mark.slow
@pytest.mark.postgres
def test_postgres_stopped_and_restarted_loses_nothing(
    dedicated_postgres: DedicatedPostgres, tmp_path: Path
) -> None:
    """If this fails, events recorded while PostgreSQL was down were lost, or the outage
    surfaced as a raw driver error instead of LedgerUnavailableError."""
    server = dedicated_postgres
    led = SQLLedger(server.url, dead_letter_path=tmp_path / "dead.jsonl", drain_timeout=60)
    try:
        with led._engine.begin() as conn:  # the module's server is shared by its tests
            conn.exec_driver_sql("TRUNCATE tokenward_events")
        led.record_many([ev(f"before-{i}", T0) for i in range(100)])
        led.flush()
        server.stop()
        led.record_many([ev(f"during-{i}", T0) for i in range(100)])
        with pytest.raises(LedgerUnavailableError, match="server is up"):
            led.flush()
        with pytest.raises(LedgerUnavailableError):
            led.count()
        server.start()
        deadline = time.monotonic() + 60
        while True:
            try:
                led.flush()
                break
            except LedgerUnavailableError:
                assert time.monotonic() < deadline
                time.sleep(0.2)
        assert len(_ids(led)) == 200 and led.dead_letters() == []
    finally:
        server.start()
        led.close()


# -- driver errors are mapped into the TokenwardError tree -----------------------------------


def test_sqlite_locked_is_unavailable_with_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "busy.db"
    led = SQLiteLedger(path, batch=False, busy_timeout=0.1)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(LedgerUnavailableError, match="busy_timeout") as info:
            led.record(ev(1, T0))
        assert isinstance(info.value.__cause__, sqlite3.OperationalError)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    led.record(ev(1, T0))  # nothing was lost or poisoned: it works once the lock is gone
    assert led.count() == 1
    led.close()


def test_bad_query_values_are_value_errors_not_unavailable(tmp_path: Path) -> None:
    """If this fails, a bad value in a query reached the caller as a raw driver error
    (UnicodeEncodeError) or was reported as the store being unavailable."""
    led = SQLiteLedger(tmp_path / "q.db")
    with pytest.raises(LedgerValueError) as info:
        led.summary(where={"user_id": "m\ud800"})
    assert not isinstance(info.value, LedgerUnavailableError)
    assert isinstance(info.value, ValueError) and info.value.code == "ledger-bad-value"
    led.close()


@pytest.mark.postgres
def test_postgres_bad_query_values_are_value_errors(postgres_url: str, tmp_path: Path) -> None:
    led = SQLLedger(postgres_url, dead_letter_path=tmp_path / "d.jsonl")
    try:
        for bad in ("a\x00b", "m\ud800"):
            with pytest.raises(LedgerValueError):
                led.summary(where={"agent": bad})
        assert led.summary(where={"agent": "fine"}) == []  # the store still works
    finally:
        led.close()


def test_postgres_unreachable_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(LedgerUnavailableError, match="schema setup") as info:
        SQLLedger(f"postgresql://nobody@/nodb?host={tmp_path}&connect_timeout=2")
    assert isinstance(info.value, LedgerError)
