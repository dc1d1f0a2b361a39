"""DecayedSketch: quantiles within its relative error, decay, exact merge, persistence."""

from __future__ import annotations

import json
import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tokenward.errors import ConfigurationError
from tokenward.predict import DecayedSketch

DAY = 86_400.0


def exact_quantile(values: list[float], q: float) -> float:
    """Inverted-CDF quantile: the smallest value whose rank reaches q x n."""
    s = sorted(values)
    rank = max(1, math.ceil(q * len(s)))
    return s[rank - 1]


def within(estimate: float | None, exact: float, alpha: float) -> bool:
    assert estimate is not None
    return abs(estimate - exact) <= alpha * exact * (1 + 1e-9)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("alpha", [0.01, 0.05])
def test_quantiles_are_within_the_relative_error_on_heavy_tailed_data(seed, alpha):
    rng = random.Random(seed)
    values = [round(rng.lognormvariate(5, 1.5)) + 1 for _ in range(5_000)]
    values += [round(rng.paretovariate(1.2) * 40) for _ in range(2_000)]
    sketch = DecayedSketch(relative_accuracy=alpha)
    for v in values:
        sketch.add(v, at=0.0)
    for q in (0.01, 0.25, 0.5, 0.9, 0.95, 0.99, 0.999, 1.0):
        assert within(sketch.quantile(q), exact_quantile(values, q), alpha), q
    assert sketch.count == len(values)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.integers(min_value=0, max_value=2_000_000), min_size=1, max_size=300),
    st.floats(min_value=0.0, max_value=1.0),
)
def test_any_data_any_quantile_within_one_percent(values, q):
    sketch = DecayedSketch()
    for v in values:
        sketch.add(v, at=1_000.0)
    exact = exact_quantile(values, q) if q > 0 else min(values)
    assert within(sketch.quantile(q), exact, 0.01)


def test_empty_sketch_has_no_quantile_and_zero_is_exact():
    sketch = DecayedSketch()
    assert sketch.quantile(0.99) is None and sketch.weight(0.0) == 0.0
    sketch.add(0, at=0.0)
    sketch.add(0, at=0.0)
    sketch.add(10, at=0.0)
    assert sketch.quantile(0.5) == 0.0
    assert within(sketch.quantile(0.99), 10, 0.01)


def test_old_observations_fade_by_half_every_half_life():
    sketch = DecayedSketch(half_life=DAY)
    for _ in range(1_000):
        sketch.add(100, at=0.0)  # yesterday: replies of ~100 tokens
    assert within(sketch.quantile(0.5), 100, 0.01)
    for _ in range(600):
        sketch.add(1_000, at=DAY)  # today: 600 replies of ~1000 tokens weigh 600 vs 500
    assert within(sketch.quantile(0.5), 1_000, 0.01)
    assert sketch.weight(DAY) == pytest.approx(500 + 600)
    assert sketch.weight(2 * DAY) == pytest.approx((500 + 600) / 2)
    assert sketch.count == 1_600  # the number of observations is not decayed


def test_a_long_quiet_period_rescales_without_overflow():
    sketch = DecayedSketch(half_life=1.0)
    sketch.add(5, at=0.0)
    for i in range(1, 2_000):
        sketch.add(7, at=float(i))  # 2**1999 would overflow a float without rescaling
    assert within(sketch.quantile(0.5), 7, 0.01)
    assert all(math.isfinite(w) for w in sketch.buckets.values())


def test_merge_equals_the_sketch_of_both_streams():
    rng = random.Random(7)
    a, b, both = DecayedSketch(), DecayedSketch(), DecayedSketch()
    for i in range(3_000):
        v, t = rng.randint(1, 20_000), rng.uniform(0, 5 * DAY)
        (a if i % 3 else b).add(v, at=t)
        both.add(v, at=t)
    merged = a.copy()
    merged.merge(b)
    assert merged.count == both.count
    for q in (0.5, 0.9, 0.99):
        assert merged.quantile(q) == both.quantile(q)
    assert merged.weight(6 * DAY) == pytest.approx(both.weight(6 * DAY))
    # merging in the other order (landmarks differ) gives the same sketch
    other = b.copy()
    other.merge(a)
    assert other.quantile(0.99) == both.quantile(0.99)


def test_merge_refuses_sketches_with_other_settings():
    with pytest.raises(ConfigurationError, match="same OutputPredictor settings"):
        DecayedSketch(half_life=DAY).merge(DecayedSketch(half_life=2 * DAY))


def test_persistence_round_trip_through_json():
    rng = random.Random(3)
    sketch = DecayedSketch(relative_accuracy=0.02, half_life=3_600.0)
    for _ in range(500):
        sketch.add(rng.randint(0, 5_000), at=rng.uniform(0, 7_200))
    restored = DecayedSketch.from_dict(json.loads(json.dumps(sketch.to_dict())))
    assert restored.count == sketch.count
    assert restored.buckets == sketch.buckets and restored.zero == sketch.zero
    assert [restored.quantile(q) for q in (0.5, 0.99)] == [sketch.quantile(q) for q in (0.5, 0.99)]
    restored.add(10, at=8_000.0)  # still usable
    assert restored.count == sketch.count + 1


def test_the_sketch_stays_small():
    sketch = DecayedSketch()
    for v in range(1, 20_001):
        sketch.add(v, at=0.0)
    assert len(sketch) <= 500  # 10..20,000 tokens at 1 %: ~380 buckets


@pytest.mark.parametrize(
    "data",
    [{"format": 9}, {"format": 1, "relative_accuracy": 0.01}, {"format": 1, "buckets": "x"}],
)
def test_a_corrupt_document_is_a_configuration_error(data):
    with pytest.raises(ConfigurationError, match="not a tokenward output sketch"):
        DecayedSketch.from_dict(data)


@pytest.mark.parametrize("bad", [-1, float("nan"), float("inf")])
def test_bad_values_are_refused(bad):
    with pytest.raises(ConfigurationError):
        DecayedSketch().add(bad, at=0.0)


def test_add_batch_is_the_sketch_of_the_same_adds() -> None:
    rng = random.Random(7)
    values = [rng.choice([0, 1, 3, 8, 40, 41, 900]) for _ in range(300)]
    times = [1_700_000_000.0 + i * 37.0 for i in range(300)]
    one_by_one = DecayedSketch(half_life=DAY)
    for v, t in zip(values, times):
        one_by_one.add(v, t)
    batched = DecayedSketch(half_life=DAY)
    weights: dict[int | None, float] = {}
    for v, t in zip(values, times):
        b = batched.bucket(v)
        weights[b] = weights.get(b, 0.0) + 2.0 ** ((t - times[0]) / DAY)
    batched.add_batch(weights, times[0], len(values))
    assert batched.count == one_by_one.count == 300
    assert batched._keys == one_by_one._keys
    for q in (0.0, 0.1, 0.5, 0.9, 0.99, 1.0):
        assert batched.quantile(q) == one_by_one.quantile(q)
    assert math.isclose(batched.weight(times[-1]), one_by_one.weight(times[-1]), rel_tol=1e-12)
