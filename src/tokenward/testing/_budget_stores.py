"""``BudgetStoreConformance``: the contract of a budget store, as a pytest suite.

Subclass it in a test module (the class name must start with ``Test``) and implement
:meth:`~BudgetStoreConformance.make_store`: the store on the storage called ``name`` (every
call with the same name opens the same storage; a new name is new, empty storage)::

    from tokenward.testing import BudgetStoreConformance

    class TestMyStore(BudgetStoreConformance):
        def make_store(self, tmp_path, name):
            return MyStore(tmp_path / f"{name}.db")

When building the store needs other fixtures (a server URL), override the
``budget_store_factory`` fixture instead: it returns ``name -> store``. A store that keeps its
data inside the object sets ``shares_storage = False``, one that shares it between handles of
one process only ``shares_between_processes = False``; the tests that need such a second
handle then skip. Each test's docstring says how to fix the store when the test fails.
"""

from __future__ import annotations

import multiprocessing
import random
import string
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tokenward.budgets import (
    MAX_AMOUNT,
    BudgetStore,
    CommitItem,
    ReserveItem,
)
from tokenward.errors import BudgetStoreError

__all__ = ["BudgetStoreConformance"]

NOW = 1_790_000_000.0
Factory = Callable[[str], BudgetStore]

_rng = random.Random(3000)
HOSTILE_KEYS = (
    "".join(
        _rng.choice(string.ascii_letters) for _ in range(3000)
    ),  # > a btree row, incompressible
    "lone surrogate \ud800",
    "nul \x00 byte",
    "separators \x1e \x1f | = %",
    "naïve 用户 🚀",
    "",
)


def _commit(key: str, amount: int, **kw: object) -> CommitItem:
    return CommitItem(key, amount, **kw)  # type: ignore[arg-type]


def _process_worker(factory: Factory, name: str, seed: int, barrier: object, out: object) -> None:
    store = factory(name)
    rng = random.Random(seed)
    committed = 0
    barrier.wait()  # type: ignore[attr-defined]
    for i in range(60):
        amount = rng.randint(1, 50)
        rid = f"p{seed}-{i}"
        if store.reserve([ReserveItem("k", amount, 1000)], rid, 60, NOW).ok:
            store.commit(rid, [_commit("k", amount)], NOW)
            committed += amount
    store.close()
    out.put(committed)  # type: ignore[attr-defined]


class BudgetStoreConformance:
    """The behaviour every :class:`~tokenward.budgets.BudgetStore` must have. Subclass it and
    provide the ``budget_store_factory`` fixture (see the module docstring)."""

    shares_storage: bool = True
    """Two handles opened with the same name in this process see one storage."""

    shares_between_processes: bool = True
    """Handles opened with the same name in different processes see one storage."""

    def make_store(self, tmp_path: Path, name: str) -> BudgetStore:
        """The store on the storage called ``name`` (files, if any, under ``tmp_path``)."""
        raise NotImplementedError(
            "implement make_store(tmp_path, name) or override the budget_store_factory fixture"
        )

    @pytest.fixture
    def budget_store_factory(self, tmp_path: Path) -> Factory:
        """``name -> store``, the same storage for the same name."""
        return lambda name: self.make_store(tmp_path, name)

    @pytest.fixture
    def storage_name(self) -> str:
        return f"tw{uuid.uuid4().hex[:12]}"

    @pytest.fixture
    def store(self, budget_store_factory: Factory, storage_name: str) -> Iterator[BudgetStore]:
        s = budget_store_factory(storage_name)
        yield s
        s.close()

    def test_is_a_budget_store(self, store: BudgetStore) -> None:
        """If this fails, a method of the BudgetStore protocol is missing (reserve, commit,
        release, extend, status, expire, close)."""
        assert isinstance(store, BudgetStore)

    # -- reserve -----------------------------------------------------------------------------
    def test_reserve_is_all_or_nothing_and_reports_totals(self, store: BudgetStore) -> None:
        """If this fails, make ``reserve`` check every item before writing anything, and
        return per item the (spent, reserved) it saw, up to and including the item that did
        not fit (``failed`` is its index)."""
        assert store.reserve(
            [ReserveItem("a", 60, 100), ReserveItem("b", 10, 15)], "r1", 60, NOW
        ).ok
        res = store.reserve([ReserveItem("a", 30, 100), ReserveItem("b", 10, 15)], "r2", 60, NOW)
        assert (res.ok, res.failed, res.totals) == (False, 1, ((0, 60), (0, 10)))
        statuses = store.status(["a", "b"], NOW)
        assert [(s.spent, s.reserved) for s in statuses] == [(0, 60), (0, 10)]

    def test_a_limit_of_none_records_without_denying(self, store: BudgetStore) -> None:
        """If this fails, skip the limit check for items whose ``limit`` is None (soft
        budgets) while still holding their amount."""
        assert store.reserve([ReserveItem("s", 10**9, None)], "r", 60, NOW).ok
        assert store.status(["s"], NOW)[0].reserved == 10**9

    def test_release_returns_the_budget_and_is_idempotent(self, store: BudgetStore) -> None:
        """If this fails, make ``release`` delete the reservation's holds on every key, and
        do nothing for an id without a live reservation."""
        assert store.reserve([ReserveItem("a", 100, 100)], "r", 60, NOW).ok
        store.release("r", NOW)
        store.release("r", NOW)
        store.release("never-reserved", NOW)
        assert store.status(["a"], NOW)[0].reserved == 0
        assert store.reserve([ReserveItem("a", 100, 100)], "r2", 60, NOW).ok

    def test_rolling_windows_sum_every_read_key(self, store: BudgetStore) -> None:
        """If this fails, check each item against spent + reserved summed over all of its
        ``read_keys`` (rolling-window buckets), not just over ``key``."""
        keys = ("w|1", "w|2", "w|3")

        def item(amount: int) -> ReserveItem:
            return ReserveItem("w|3", amount, 100, read_keys=keys, lock_key="w|lock")

        store.commit("old", [_commit("w|1", 40), _commit("w|2", 30)], NOW)
        assert store.reserve([item(30)], "r", 60, NOW).ok
        res = store.reserve([item(1)], "r2", 60, NOW)
        assert not res.ok and res.totals == ((70, 30),)

    def test_reserving_an_id_again_replaces_its_reservation(self, store: BudgetStore) -> None:
        """If this fails, exclude the id's own live reservation from the check, replace it
        when the new one fits and keep it when it does not; after a commit, reserving the id
        again must let its next commit count."""
        assert store.reserve([ReserveItem("a", 80, 100)], "r", 60, NOW).ok
        assert store.reserve([ReserveItem("a", 90, 100)], "r", 60, NOW).ok  # 90, not 170
        assert store.status(["a"], NOW)[0].reserved == 90
        assert not store.reserve([ReserveItem("a", 101, 100)], "r", 60, NOW).ok
        assert store.status(["a"], NOW)[0].reserved == 90  # kept on denial
        assert store.commit("r", [_commit("a", 5)], NOW).applied
        assert store.reserve([ReserveItem("a", 10, 100)], "r", 60, NOW).ok
        assert store.commit("r", [_commit("a", 7)], NOW).applied
        s = store.status(["a"], NOW)[0]
        assert (s.spent, s.reserved, s.calls) == (12, 0, 2)

    # -- expiry ------------------------------------------------------------------------------
    def test_expired_reservations_stop_counting(self, store: BudgetStore) -> None:
        """If this fails, count a reservation only while ``now < reserved_at + ttl``, on
        every read (reserve and status), without waiting for ``expire``."""
        assert store.reserve([ReserveItem("k", 90, 100)], "dead", 5, NOW).ok
        assert not store.reserve([ReserveItem("k", 20, 100)], "x", 5, NOW + 4).ok
        assert store.status(["k"], NOW + 6)[0].reserved == 0
        assert store.reserve([ReserveItem("k", 20, 100)], "y", 5, NOW + 6).ok

    def test_a_late_commit_still_counts(self, store: BudgetStore) -> None:
        """If this fails, record a commit's spend even when its reservation has expired (the
        call happened), without dropping other reservations."""
        assert store.reserve([ReserveItem("k", 90, 100)], "slow", 5, NOW).ok
        assert store.reserve([ReserveItem("k", 20, 100)], "y", 5, NOW + 6).ok
        store.commit("slow", [_commit("k", 70)], NOW + 7)
        s = store.status(["k"], NOW + 7)[0]
        assert (s.spent, s.reserved, s.calls) == (70, 20, 1)

    def test_expire_keeps_counters_without_expiry(self, store: BudgetStore) -> None:
        """If this fails, make ``expire`` delete only reservations past their TTL, counters
        past their ``expires_at`` (a store may also let them expire on its own clock) and
        remembered ids past their retention: counters with ``expires_at=None`` stay."""
        store.commit("c1", [_commit("forever", 7), _commit("daily", 5, expires_at=NOW + 50)], NOW)
        assert store.reserve([ReserveItem("r", 3, 10)], "r1", 5, NOW).ok
        assert isinstance(store.expire(NOW + 100), int)
        st = store.status(["forever", "r"], NOW + 100)
        assert [(s.spent, s.reserved) for s in st] == [(7, 0), (0, 0)]

    def test_extend_keeps_a_streaming_reservation_alive(self, store: BudgetStore) -> None:
        """If this fails, implement ``extend(id, ttl, now)``: move a live reservation's
        expiry to ``now + ttl`` on every key (never shorten it) and return True; return
        False and hold nothing for an id that is not alive (expired, committed, released)."""
        assert store.reserve([ReserveItem("a", 60, 100), ReserveItem("b", 5, 10)], "s", 10, NOW).ok
        assert store.extend("s", 10, NOW + 8) is True
        assert [s.reserved for s in store.status(["a", "b"], NOW + 15)] == [60, 5]
        assert not store.reserve([ReserveItem("a", 50, 100)], "x", 10, NOW + 15).ok
        assert store.extend("s", 1, NOW + 16) is True  # shorter: kept until NOW + 18
        assert store.status(["a"], NOW + 17.5)[0].reserved == 60
        assert [s.reserved for s in store.status(["a", "b"], NOW + 18.5)] == [0, 0]
        assert store.extend("s", 10, NOW + 19) is False
        assert store.status(["a"], NOW + 19)[0].reserved == 0
        assert store.reserve([ReserveItem("a", 1, 100)], "c", 10, NOW).ok
        store.commit("c", [_commit("a", 1)], NOW)
        assert store.extend("c", 10, NOW) is False
        assert store.extend("never", 10, NOW) is False

    # -- commit ------------------------------------------------------------------------------
    def test_commit_replaces_the_reservation_and_returns_new_spend(
        self, store: BudgetStore
    ) -> None:
        """If this fails, make ``commit`` drop the reservation, add each amount to its key's
        spent (one call per key) and return per item the spent summed over its read keys."""
        assert store.reserve([ReserveItem("a", 60, 100), ReserveItem("b", 10, 15)], "r", 60, NOW).ok
        store.commit("w", [_commit("w|1", 40)], NOW)
        result = store.commit(
            "r", [_commit("a", 55), _commit("w|2", 12, read_keys=("w|1", "w|2"))], NOW
        )
        assert result.applied and result.spent == (55, 52) and not result.fired
        st = store.status(["a", "b", "w|2", "zz"], NOW)
        assert [(s.spent, s.reserved, s.calls) for s in st] == [
            (55, 0, 1),
            (0, 0, 0),
            (12, 0, 1),
            (0, 0, 0),
        ]

    def test_commit_is_idempotent_on_the_reservation_id(
        self, store: BudgetStore, budget_store_factory: Factory, storage_name: str
    ) -> None:
        """If this fails, remember committed reservation ids (for the store's
        ``commit_retention``) and make a second commit of one change nothing and return
        ``applied=False``: a fail-open journal replays commits that may have reached the
        store before the connection broke."""
        assert store.reserve([ReserveItem("a", 50, 100)], "r", 60, NOW).ok
        assert store.commit("r", [_commit("a", 40)], NOW).applied
        again = store.commit("r", [_commit("a", 40)], NOW + 1)
        assert not again.applied and again.spent == () and not again.fired
        assert store.commit("journaled", [_commit("a", 3)], NOW).applied  # never reserved
        assert not store.commit("journaled", [_commit("a", 3)], NOW + 2).applied
        s = store.status(["a"], NOW + 2)[0]
        assert (s.spent, s.reserved, s.calls) == (43, 0, 2)
        if self.shares_storage:  # a replay from another process after a restart
            other = budget_store_factory(storage_name)
            try:
                assert not other.commit("r", [_commit("a", 40)], NOW + 3).applied
            finally:
                other.close()
            assert store.status(["a"], NOW + 3)[0].spent == 43

    def test_threshold_marks_fire_once(
        self, store: BudgetStore, budget_store_factory: Factory, storage_name: str
    ) -> None:
        """If this fails, make ``commit`` record each ``(at, marker)`` of an item once its
        summed spend reaches ``at``, and report the marker in ``fired`` only to the commit
        that recorded it first (across every handle on the storage)."""
        marks = ((50, "m|50"), (90, "m|90"))
        r1 = store.commit("c1", [_commit("m", 40, marks=marks, expires_at=NOW + 60)], NOW)
        assert r1.spent == (40,) and r1.fired == frozenset()
        r2 = store.commit("c2", [_commit("m", 20, marks=marks, expires_at=NOW + 60)], NOW)
        assert r2.spent == (60,) and r2.fired == {"m|50"}
        other = budget_store_factory(storage_name) if self.shares_storage else store
        try:
            r3 = other.commit("c3", [_commit("m", 40, marks=marks, expires_at=NOW + 60)], NOW)
        finally:
            if other is not store:
                other.close()
        assert r3.spent == (100,) and r3.fired == {"m|90"}
        r4 = store.commit("c4", [_commit("m", 1, marks=marks, expires_at=NOW + 60)], NOW)
        assert r4.fired == frozenset()

    # -- values ------------------------------------------------------------------------------
    def test_large_amounts_are_exact(self, store: BudgetStore) -> None:
        """If this fails, store amounts as 64-bit integers (never floats): the largest amount
        (``MAX_AMOUNT``, about $9 million in nano-USD) must add up exactly."""
        big = MAX_AMOUNT - 10
        assert store.reserve([ReserveItem("big", big, MAX_AMOUNT)], "b", 60, NOW).ok
        assert store.status(["big"], NOW)[0].reserved == big
        assert not store.reserve([ReserveItem("big", 11, MAX_AMOUNT)], "b2", 60, NOW).ok
        assert store.commit("b", [_commit("big", big - 1)], NOW).spent == (big - 1,)
        assert store.status(["big"], NOW)[0].spent == big - 1

    @pytest.mark.parametrize(
        "amount",
        [-1, MAX_AMOUNT + 1, 2**64, 1.5, None],
        ids=["neg", "max+1", "2^64", "float", "none"],
    )
    def test_out_of_range_amounts_raise_budget_store_error(
        self, store: BudgetStore, amount: object
    ) -> None:
        """If this fails, reject amounts that are not integers in ``0..MAX_AMOUNT`` (and
        limits outside a 64-bit integer) with ``tokenward.errors.BudgetStoreError`` before
        touching storage, never with a driver error or ``BudgetStoreUnavailableError``; and
        keep serving other calls."""
        with pytest.raises(BudgetStoreError):
            store.reserve([ReserveItem("k", amount, 100)], "r", 60, NOW)  # type: ignore[arg-type]
        with pytest.raises(BudgetStoreError):
            store.commit("c", [_commit("k", amount)], NOW)  # type: ignore[arg-type]
        with pytest.raises(BudgetStoreError):
            store.reserve([ReserveItem("k", 1, 2**63)], "r", 60, NOW)
        assert store.reserve([ReserveItem("k", 1, 100)], "ok", 60, NOW).ok
        assert store.commit("c", [_commit("k", 1)], NOW).applied  # the failed one left no trace
        assert store.status(["k"], NOW)[0].spent == 1

    def test_hostile_keys_work_and_stay_distinct(self, store: BudgetStore) -> None:
        """If this fails, accept any ``str`` as key, reservation id and marker: long ones,
        lone surrogates, NUL bytes (``tokenward.budgets.store_key`` maps them to short,
        storable stand-ins); distinct keys must keep distinct counters."""
        for n, key in enumerate(HOSTILE_KEYS):
            rid = f"{key}#rid"
            assert store.reserve([ReserveItem(key, 10 + n, 100)], rid, 60, NOW).ok, key
            result = store.commit(rid, [_commit(key, n + 1, marks=((1, f"{key}#m"),))], NOW)
            assert result.spent == (n + 1,) and result.fired == {f"{key}#m"}, key
            assert store.extend(rid, 60, NOW) is False
        statuses = store.status(list(HOSTILE_KEYS), NOW)
        assert [(s.spent, s.reserved, s.calls) for s in statuses] == [
            (n + 1, 0, 1) for n in range(len(HOSTILE_KEYS))
        ]
        assert store.status([HOSTILE_KEYS[0][:-1] + "!"], NOW)[0].spent == 0

    # -- concurrency -------------------------------------------------------------------------
    def test_threads_sharing_a_store_never_overspend(self, store: BudgetStore) -> None:
        """If this fails, make the store safe to call from many threads at once, with the
        check and the hold of ``reserve`` atomic."""
        committed: list[int] = []
        errors: list[Exception] = []
        barrier = threading.Barrier(8)

        def worker(t: int) -> None:
            try:
                barrier.wait()
                for i in range(40):
                    rid = f"t{t}-{i}"
                    if store.reserve([ReserveItem("g", 7, 1000)], rid, 60, NOW).ok:
                        store.commit(rid, [_commit("g", 7)], NOW)
                        committed.append(7)
            except Exception as exc:  # noqa: BLE001 - reported by the assertion below
                errors.append(exc)

        threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors
        assert sum(committed) == store.status(["g"], NOW)[0].spent == 994  # 142 x 7

    def test_processes_sharing_storage_never_overspend(
        self, budget_store_factory: Factory, storage_name: str
    ) -> None:
        """If this fails, make ``reserve`` atomic across processes (a database transaction
        or lock, a server-side script), not only across threads."""
        if not (self.shares_storage and self.shares_between_processes):
            pytest.skip("the store does not share storage between processes")
        if "fork" not in multiprocessing.get_all_start_methods():
            pytest.skip("needs the fork start method")
        budget_store_factory(storage_name).close()  # create the storage once
        ctx = multiprocessing.get_context("fork")
        barrier, out = ctx.Barrier(4), ctx.Queue()
        procs = [
            ctx.Process(
                target=_process_worker, args=(budget_store_factory, storage_name, s, barrier, out)
            )
            for s in range(4)
        ]
        for p in procs:
            p.start()
        totals = [out.get(timeout=120) for _ in procs]
        for p in procs:
            p.join(30)
            assert p.exitcode == 0
        store = budget_store_factory(storage_name)
        try:
            spent = store.status(["k"], NOW)[0].spent
        finally:
            store.close()
        assert spent == sum(totals) <= 1000
        assert spent > 1000 - 50  # not wrongly blocked either
