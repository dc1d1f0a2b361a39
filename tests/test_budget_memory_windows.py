"""MemoryBudgetStore keeps running totals of rolling windows: they must always equal the sum
of the window's buckets, whatever happens to the buckets (reservations held, replaced,
released, expired; commits; counters expiring; the window moving on)."""

from __future__ import annotations

import random

from tokenward.budgets import CommitItem, MemoryBudgetStore, ReserveItem


def _sums(store: MemoryBudgetStore, keys: tuple[str, ...], now: float) -> tuple[int, int]:
    statuses = store.status(list(keys), now)
    return sum(s.spent for s in statuses), sum(s.reserved for s in statuses)


def test_running_totals_equal_the_bucket_sums_under_random_operations() -> None:
    rng = random.Random(17)
    store = MemoryBudgetStore(commit_retention=50.0)
    scopes = ["a", "b"]
    now = 1000.0
    held: dict[str, tuple[tuple[str, ...], str]] = {}  # id -> (read keys, scope)
    for step in range(3000):
        now += rng.choice((0.0, 0.5, 3.0, 40.0))
        scope = rng.choice(scopes)
        bucket = int(now // 10)
        keys = tuple(f"{scope}|{i}" for i in range(bucket - 5, bucket + 1))
        if rng.random() < 0.1:  # an item from an older window (a call that straddled buckets)
            keys = tuple(f"{scope}|{i}" for i in range(bucket - 6, bucket))
        rid = f"r{rng.randrange(40)}"
        lock = f"{scope}|lock" if rng.random() < 0.8 else ""  # "": each key its own lock
        op = rng.random()
        if op < 0.45:
            expected = _sums(store, keys, now)
            mine = store._res.get(rid)
            amount = rng.randrange(0, 50)
            limit = rng.choice((None, 10_000, 300))
            item = ReserveItem(keys[-1], amount, limit, keys, lock, now + 60)
            res = store.reserve([item], rid, rng.choice((5.0, 30.0)), now)
            spent, reserved = res.totals[0]
            if mine is not None and mine[0] > now:  # its own live reservation is replaced
                reserved += sum(it.amount for it in mine[1] if it.key in keys)
            assert (spent, reserved) == expected, step
            if res.ok:
                held[rid] = (keys, scope)
        elif op < 0.8:
            keys, scope = held.get(rid, (keys, scope))
            amount = rng.randrange(0, 50)
            item = CommitItem(keys[-1], amount, keys, lock, now + 60)
            before = _sums(store, keys, now)[0]  # (after the sweep reading it may do)
            result = store.commit(rid, [item], now)
            if result.applied:
                assert result.spent == (before + amount,), step
        elif op < 0.9:
            store.release(rid, now)
        elif op < 0.95:
            store.extend(rid, 20.0, now)
        else:
            store.expire(now)
    assert store._windows  # the running totals were used


def test_a_window_summing_a_key_twice_counts_it_twice() -> None:
    store = MemoryBudgetStore()
    keys = ("k", "k", "j")
    assert store.reserve([ReserveItem("k", 5, 100, keys, "lock")], "a", 60, 0).ok
    res = store.reserve([ReserveItem("k", 1, 100, keys, "lock")], "b", 60, 0)
    assert res.totals == ((0, 10),)
    assert store.commit("a", [CommitItem("k", 7, keys, "lock")], 1).spent == (14,)
    assert store.reserve([ReserveItem("j", 1, 100, keys, "lock")], "c", 60, 2).totals == ((14, 2),)


def test_windows_under_different_locks_sharing_buckets_see_each_others_writes() -> None:
    store = MemoryBudgetStore()
    first, second = ("b0", "b1"), ("b1", "b2")  # no lock keys: each item locks its own key
    assert store.reserve([ReserveItem("b1", 5, 100, first)], "a", 60, 0).ok
    assert store.reserve([ReserveItem("b2", 3, 100, second)], "b", 60, 0).totals == ((0, 5),)
    assert store.commit("a", [CommitItem("b1", 7, first)], 1).spent == (7,)
    assert store.reserve([ReserveItem("b2", 1, 100, second)], "c", 60, 2).totals == ((7, 3),)
    assert store.commit("b", [CommitItem("b2", 2, second)], 3).spent == (9,)
    assert store.reserve([ReserveItem("b1", 1, 100, first)], "d", 60, 4).totals == ((7, 0),)
    assert store.reserve([ReserveItem("b2", 0, 100, second)], "g", 60, 4).totals == ((9, 2),)
    store.release("c", 5)
    store.release("d", 5)
    assert store.reserve([ReserveItem("b2", 0, 100, second)], "e", 60, 6).totals == ((9, 0),)
    assert store.reserve([ReserveItem("b1", 0, 100, first)], "f", 60, 6).totals == ((7, 0),)
