"""OutputPredictor: reservations from learned output lengths, shared across processes."""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Mapping
from typing import Any

import pytest

from tokenward.errors import ConfigurationError
from tokenward.predict import OutputPredictor


class Clock:
    def __init__(self, t: float = 1_700_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


class DictState:
    """The ledger state API's contract (put_state/get_state) over a dict shared by 'processes'."""

    def __init__(self) -> None:
        self.docs: dict[str, dict[str, dict[str, Any]]] = {}
        self.puts = 0
        self.down = False

    def put_state(self, namespace: str, key: str, value: Mapping[str, Any]) -> None:
        if self.down:
            raise ConnectionError("state store down")
        self.puts += 1
        self.docs.setdefault(namespace, {})[key] = dict(value)

    def get_state(self, namespace: str) -> dict[str, dict[str, Any]]:
        if self.down:
            raise ConnectionError("state store down")
        return {k: dict(v) for k, v in self.docs.get(namespace, {}).items()}


def feed(p: OutputPredictor, n: int, *, model="gpt-4o", route="support", seed=0, scale=50.0):
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        v = max(1, round(rng.lognormvariate(0, 0.6) * scale))
        p.observe(model, route, v)
        out.append(v)
    return out


def test_max_tokens_is_reserved_until_enough_samples_then_p99():
    p = OutputPredictor(min_samples=50)
    assert p.reserve_output("gpt-4o", "support", max_tokens=16_000, fallback=1024) == (
        16_000,
        False,
    )
    assert p.reserve_output("gpt-4o", "support", max_tokens=None, fallback=1024) == (1024, False)
    values = feed(p, 49)
    assert p.reserve_output("gpt-4o", "support", max_tokens=16_000, fallback=1024)[0] == 16_000
    values += feed(p, 1, seed=1)
    reserved, predicted = p.reserve_output("gpt-4o", "support", max_tokens=16_000, fallback=1024)
    assert predicted
    exact_p99 = sorted(values)[49]  # nearest rank of 50 values
    assert exact_p99 <= reserved <= exact_p99 * 1.01 + 1
    # never more than the caller's cap, and no cap at all falls back to the model's ceiling
    assert p.reserve_output("gpt-4o", "support", max_tokens=20, fallback=1024) == (20, False)
    assert (
        p.reserve_output("gpt-4o", "support", max_tokens=None, fallback=1024, ceiling=16_384)[0]
        == reserved
    )


def test_routes_are_learned_separately():
    p = OutputPredictor(min_samples=10)
    feed(p, 200, route="support", scale=50)
    feed(p, 200, route="writer", scale=2_000)
    support = p.predict("gpt-4o", "support")
    writer = p.predict("gpt-4o", "writer")
    assert support.ready and writer.ready
    assert support.p99 is not None and writer.p50 is not None
    assert support.p99 < writer.p50
    assert p.predict("gpt-4o", "unknown").samples == 0
    assert [(r.model, r.route) for r in p.routes()] == [
        ("gpt-4o", "support"),
        ("gpt-4o", "writer"),
    ]


def test_predictions_follow_drift():
    clock = Clock()
    p = OutputPredictor(min_samples=10, half_life=3_600, clock=clock)
    for _ in range(500):
        p.observe("gpt-4o", "a", 2_000)
    clock.t += 6 * 3_600  # six half-lives later the agent's prompt changed: short replies
    for _ in range(100):
        p.observe("gpt-4o", "a", 40)
    pred = p.predict("gpt-4o", "a")
    assert pred.p50 is not None and pred.p50 <= 41
    assert pred.p99 is not None and pred.p99 <= 2_000 * 1.01  # the old tail still weighs ~7 %


def test_under_reserved_calls_are_counted():
    p = OutputPredictor(min_samples=1)
    p.observe("m", None, 100, reserved=120)
    p.observe("m", None, 150, reserved=120)
    p.observe("m", None, 500, reserved=120)
    p.observe("m", None, 10)
    s = p.stats
    assert (s.observed, s.predicted_calls, s.under_reserved_calls) == (4, 3, 2)
    assert s.under_reserved_tokens == 30 + 380 and s.max_under_reserved == 380


def test_two_processes_share_what_they_learn_through_the_state_store():
    state = DictState()
    clock = Clock()
    a = OutputPredictor(state, min_samples=100, sync_every=None, clock=clock)
    b = OutputPredictor(state, min_samples=100, sync_every=None, clock=clock)
    feed(a, 60, seed=1)
    feed(b, 60, seed=2)
    assert not a.predict("gpt-4o", "support").ready  # 60 of its own
    a.sync()
    b.sync()
    a.sync()
    assert a.predict("gpt-4o", "support").samples == 120
    assert b.predict("gpt-4o", "support").samples == 120
    assert a.predict("gpt-4o", "support").p99 == b.predict("gpt-4o", "support").p99
    # each writer has its own document: nobody overwrites anybody
    assert len(state.docs["output_tokens"]) == 2


def test_a_restarted_process_starts_from_what_was_persisted():
    state = DictState()
    first = OutputPredictor(state, min_samples=50, sync_every=None)
    values = feed(first, 300)
    first.close()
    second = OutputPredictor(state, min_samples=50, sync_every=None)  # loads at start
    pred = second.predict("gpt-4o", "support")
    assert pred.ready and pred.samples == 300
    assert pred.p99 == first.predict("gpt-4o", "support").p99
    assert sorted(values)[296] <= pred.p99 <= sorted(values)[296] * 1.01 + 1


def test_observe_syncs_on_its_own_every_sync_every():
    """Due syncs run off the caller's thread: a slow store never delays a call."""

    class BlockingState(DictState):
        def __init__(self) -> None:
            super().__init__()
            self.release = threading.Event()
            self.threads: list[threading.Thread] = []

        def put_state(self, namespace: str, key: str, value: Mapping[str, Any]) -> None:
            self.threads.append(threading.current_thread())
            assert self.release.wait(10), "the test never released the store"
            super().put_state(namespace, key, value)

    state = BlockingState()
    clock = Clock()
    p = OutputPredictor(state, sync_every=30, clock=clock)
    p.observe("m", "r", 10)
    assert state.puts == 0
    clock.t += 31
    p.observe("m", "r", 10)  # returns while the store holds the write
    p.observe("m", "r", 11)  # no second sync while one is in flight
    state.release.set()
    p.close()
    assert state.threads and all(t is not threading.current_thread() for t in state.threads[:1])
    assert "output_tokens" in state.docs


def test_a_store_outage_never_breaks_a_call(caplog):
    state = DictState()
    p = OutputPredictor(state, min_samples=1, sync_every=None)
    state.down = True
    with caplog.at_level(logging.WARNING, logger="tokenward.predict"):
        p.observe("m", "r", 10)
        p.sync()
        p.sync()
    assert sum("could not sync" in r.message for r in caplog.records) == 1  # logged once
    assert p.predict("m", "r").ready
    state.down = False
    p.sync()  # what was learned during the outage is written now
    assert state.docs["output_tokens"][p.writer]["sketches"]


def test_silent_writers_are_forgotten_and_unreadable_ones_skipped(caplog):
    state = DictState()
    clock = Clock()
    old = OutputPredictor(state, half_life=60, sync_every=None, clock=clock)
    feed(old, 100)
    old.sync()
    clock.t += 11 * 60  # more than ten half-lives
    state.docs["output_tokens"]["garbage"] = {"format": 1, "updated": clock.t, "sketches": 3}
    with caplog.at_level(logging.WARNING, logger="tokenward.predict"):
        fresh = OutputPredictor(state, half_life=60, sync_every=None, clock=clock)
    assert fresh.predict("gpt-4o", "support").samples == 0
    assert state.docs["output_tokens"][old.writer] == {}  # emptied
    assert any("garbage" in r.message for r in caplog.records)


@pytest.mark.parametrize(
    "kwargs",
    [{"quantile": 0}, {"quantile": 1.5}, {"min_samples": 0}, {"half_life": -1}, {"state": 3}],
)
def test_bad_settings_are_configuration_errors(kwargs):
    with pytest.raises(ConfigurationError):
        OutputPredictor(**kwargs)


def test_bad_observations_are_configuration_errors():
    p = OutputPredictor()
    with pytest.raises(ConfigurationError):
        p.observe("m", None, -1)
    with pytest.raises(ConfigurationError):
        p.observe("m", None, 1.5)  # type: ignore[arg-type]


def test_observations_are_read_before_they_are_folded_in() -> None:
    """observe() only keeps the observation; every read sees it all the same."""
    clock = Clock()
    p = OutputPredictor(min_samples=3, clock=clock)
    for n in (10, 20, 30):
        p.observe("m", "r", n)
    assert p.predict("m", "r").samples == 3
    assert p.reserve_for("m", "r") is not None
    assert [r.route for r in p.routes()] == ["r"]
    for _ in range(1_000):  # past the batch size: folded in batches along the way
        p.observe("m", "r", 25)
    assert p.predict("m", "r").samples == 1_003
    assert p.stats.observed == 1_003


def test_batched_learning_equals_one_observation_at_a_time() -> None:
    rng = random.Random(3)
    clock = Clock()
    batched = OutputPredictor(min_samples=1, clock=clock)
    reference = OutputPredictor(min_samples=1, clock=clock)
    for _ in range(700):
        clock.t += rng.random() * 60
        n = int(rng.paretovariate(1.2) * 20)
        batched.observe("m", None, n)
        reference.observe("m", None, n)
        reference.predict("m")  # a read folds every observation in at once
    a, b = batched.predict("m"), reference.predict("m")
    assert (a.samples, a.p50, a.p95, a.p99) == (b.samples, b.p50, b.p95, b.p99)


def test_a_bad_observation_is_refused_when_it_is_made() -> None:
    p = OutputPredictor()
    for bad in (True, 1.5, "3", -1):
        with pytest.raises(ConfigurationError):
            p.observe("m", None, bad)  # type: ignore[arg-type]
    assert p.stats.observed == 0
