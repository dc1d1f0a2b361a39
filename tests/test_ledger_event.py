"""UsageEvent: one constructor that validates and normalizes, and the row codec that
decodes through it."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from tokenward.ledger import UsageEvent
from tokenward.ledger._event import EVENT_COLUMNS, event_to_row, row_to_event
from tokenward.testing._ledger import T0, dataset, ev
from tokenward.usage import Usage

UTC = timezone.utc


class _Str(str):
    """A str subclass (some frameworks hand those over)."""


def test_validation_errors_name_the_field() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        ev(1, datetime(2026, 1, 1))
    with pytest.raises(TypeError, match="never a float"):
        ev(1, T0, cost=0.5)
    with pytest.raises(TypeError, match="never a float"):
        ev(1, T0, provider_cost=0.5)
    with pytest.raises(ValueError, match="status"):
        ev(1, T0, status="failed")
    with pytest.raises(ValueError, match="kind"):
        ev(1, T0, kind="image")
    with pytest.raises(ValueError, match="run id"):
        ev("", T0)
    with pytest.raises(ValueError, match="model"):
        ev(1, T0, model="")
    with pytest.raises(TypeError, match="Usage"):
        ev(1, T0, usage={"input": 1})
    with pytest.raises(TypeError, match="finite"):
        ev(1, T0, cost=Decimal("NaN"))
    with pytest.raises(ValueError, match="tool_calls"):
        ev(1, T0, tool_calls=-1)
    with pytest.raises(TypeError, match="tags"):
        ev(1, T0, tags={"a": 1})
    with pytest.raises(TypeError, match="tool_names"):
        ev(1, T0, tool_names=("a", 2))
    with pytest.raises(ValueError, match="latency_ms must be finite"):
        ev(1, T0, latency_ms=float("inf"))
    with pytest.raises(TypeError, match="user_id"):
        ev(1, T0, user_id=42)
    with pytest.raises(TypeError, match="error"):
        ev(1, T0, error=RuntimeError("boom"))


def test_normalization() -> None:
    plus2 = datetime(2026, 1, 1, 12, tzinfo=timezone(timedelta(hours=2)))
    e = ev(
        _Str("run"),
        plus2,
        model=_Str("gpt-4o"),
        user_id="",
        agent=_Str("a"),
        tags={"b": "2", "a": "1"},
        tool_names=["x"],
        usage=Usage(input=1, estimated=True),
        cost="0.25",
        provider_cost=3,
        latency_ms=7,
    )
    assert e.timestamp == datetime(2026, 1, 1, 10, tzinfo=UTC) and e.timestamp.tzinfo is UTC
    assert type(e.id) is str and type(e.model) is str and type(e.agent) is str
    assert e.user_id is None and list(e.tags) == ["a", "b"] and e.tool_names == ("x",)
    assert e.estimated is True and e.cost == Decimal("0.25") and e.cost_nanos == 250_000_000
    assert e.provider_cost == Decimal(3) and e.latency_ms == 7.0 and type(e.latency_ms) is float
    with pytest.raises(TypeError):
        e.tags["c"] = "3"  # type: ignore[index]
    fresh = UsageEvent.create("gpt-4o", Usage(input=1), Decimal("0"))
    assert len(fresh.id) == 32 and fresh.timestamp.tzinfo is UTC


def test_unpriced_event_is_none_not_zero() -> None:
    e = ev(1, T0, cost=None)
    assert e.cost is None and e.cost_nanos is None and not e.priced
    assert e.stored() is e
    assert e.to_dict()["cost"] is None
    assert UsageEvent.from_dict(e.to_dict()) == e


def test_reported_cost_becomes_provider_cost() -> None:
    """If this fails, the provider's own figure (Usage.reported_cost) is not kept as the
    event's provider_cost, or disagreeing figures are silently accepted."""
    e = ev(1, T0, usage=Usage(input=5, reported_cost=Decimal("0.002")))
    assert e.provider_cost == Decimal("0.002") and e.usage.reported_cost is None
    assert e.usage == Usage(input=5)
    same = ev(1, T0, usage=Usage(input=5, reported_cost=Decimal("0.002")), provider_cost="0.002")
    assert same == e
    with pytest.raises(ValueError, match="differs"):
        ev(1, T0, usage=Usage(input=5, reported_cost=Decimal("0.002")), provider_cost="0.003")


def test_dict_round_trip_and_old_dicts() -> None:
    e = ev(
        "d",
        T0,
        cost=Decimal("0.5"),
        price_source="genai-prices 0.2.3",
        provider_cost=Decimal("0.49"),
        tags={"t": "1"},
    )
    assert UsageEvent.from_dict(e.to_dict()) == e
    old = e.to_dict()
    del old["price_source"], old["provider_cost"]  # written before those fields existed
    assert UsageEvent.from_dict(old) == replace(e, price_source=None, provider_cost=None)


def test_rows_decode_through_the_constructor_exactly() -> None:
    """If this fails, an event does not come back from its storage row equal (and of the
    same types) as ``event.stored()``: the one decoder and the one constructor disagree."""
    plus2 = timezone(timedelta(hours=2))
    events = [
        *dataset(300, seed=11),
        ev(
            "tz",
            datetime(2026, 1, 1, 12, tzinfo=plus2),
            user_id="",
            agent="",
            tags={"b": "2", "a": "1", "ü": 'é"q'},
            tool_names=["x", "y"],
            latency_ms=7,
            usage=Usage(input=1, estimated=True),
            cost="12.5000000009",
            error="boom",
            prompt="p",
            output="o",
            parent_id="root",
            session_id="s",
            price_source="user",
            provider_cost=Decimal("1.0000000004"),
        ),
        ev("old", datetime(1969, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC), cost=Decimal("3")),
        ev("zero", T0, cost=Decimal("0E-12"), latency_ms=0.0, tool_calls=5),
        ev("unpriced", T0, cost=None),
    ]
    for e in events:
        row = event_to_row(e)
        assert len(row) == len(EVENT_COLUMNS)
        decoded = row_to_event(row)
        assert decoded == e.stored()
        for name in UsageEvent.__dataclass_fields__:
            assert type(getattr(decoded, name)) is type(getattr(e.stored(), name)), name
        assert event_to_row(decoded) == row  # a decoded event re-encodes to the same row
    # what a database may hand back: an int in a REAL column, "" for a dimension
    row = list(event_to_row(events[-3]))
    row[EVENT_COLUMNS.index("latency_ms")] = 7
    row[EVENT_COLUMNS.index("user_id")] = ""
    decoded = row_to_event(tuple(row))
    assert decoded.latency_ms == 7.0 and type(decoded.latency_ms) is float
    assert decoded.user_id is None


def test_one_constructor_no_twin_paths() -> None:
    """If this fails, the event module grew a second way to build events (a trusted or
    fast path that skips validation) that must be kept in sync by hand."""
    import inspect

    from tokenward.ledger import _event

    source = inspect.getsource(_event)
    for twin in ("_trusted", "object.__new__", "__dict__.update", "_fill"):
        assert twin not in source, twin


def test_tags_from_event_tags_are_kept_others_are_copied_sorted_and_read_only() -> None:
    from types import MappingProxyType

    from tokenward.ledger._event import event_tags

    shared = event_tags({"b": "2", "a": "1"})
    assert list(shared) == ["a", "b"] and isinstance(shared, MappingProxyType)
    e1 = ev("t1", T0, tags=shared)
    e2 = replace(e1, id="t2")
    assert e1.tags is shared and e2.tags is shared
    given = {"b": "2", "a": "1"}
    e3 = ev("t3", T0, tags=given)
    assert e3.tags == given and e3.tags is not given and list(e3.tags) == ["a", "b"]
    given["c"] = "3"  # the caller's dict changing later does not change the event
    assert "c" not in e3.tags
    with pytest.raises(TypeError):
        event_tags({"a": 1})  # type: ignore[dict-item]


def test_cost_nanos_is_carried_to_the_row_and_derives_the_cost() -> None:
    """An event built from the integer nano-USD it was priced in (what the Accountant does)
    has the same cost as one built from the Decimal, and the ledger row stores that integer."""
    import copy

    u = Usage(input=10, output=5)
    e = UsageEvent("n", T0, "m", None, u, None, cost_nanos=123_456)
    same = UsageEvent("n", T0, "m", None, u, Decimal("0.000123456"))
    assert e == same and e.cost == Decimal("0.000123456") and e.cost_nanos == 123_456
    assert event_to_row(e) == event_to_row(same)
    assert e.stored() is e
    assert UsageEvent("u", T0, "m", None, u, None, cost_nanos=None).cost is None
    for other in (replace(e, cost=Decimal("1.5")), copy.copy(e)):
        assert other.cost_nanos == to_nanos_of(other.cost)
    with pytest.raises(ValueError, match="not both"):
        UsageEvent("n", T0, "m", None, u, Decimal(1), cost_nanos=1)
    with pytest.raises(TypeError, match="cost_nanos"):
        UsageEvent("n", T0, "m", None, u, None, cost_nanos=1.5)  # type: ignore[arg-type]


def to_nanos_of(cost: Decimal | None) -> int | None:
    from tokenward.cost import to_nanos

    return None if cost is None else to_nanos(cost)
