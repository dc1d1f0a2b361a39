"""LedgerStoreConformance: the behaviour every ledger store shares, as a pytest suite.

Expected numbers come from a plain Python reference computed over the same events, so
a store is checked against an independent implementation, not against another store.
"""

from __future__ import annotations

import contextlib
import random
import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tokenward.errors import ConfigurationError, LedgerError
from tokenward.ledger import LedgerStore, SummaryRow, UsageEvent
from tokenward.ledger._event import EventStatus
from tokenward.usage import Usage

__all__ = ["QUERIES", "T0", "LedgerStoreConformance", "as_dict", "dataset", "ev", "reference"]

UTC = timezone.utc
_STATUSES: list[EventStatus] = ["ok", "error", "cancelled"]
T0 = datetime(2026, 11, 20, 0, 0, tzinfo=UTC)  # a Friday

_TOTALS = (
    "calls",
    "errors",
    "cancelled",
    "estimated",
    "input",
    "output",
    "cache_read",
    "cache_write_5m",
    "cache_write_1h",
    "reasoning",
    "tool_calls",
    "cost",
    "unpriced_calls",
    "latency_ms_total",
    "latency_count",
)


def ev(i: int | str, ts: datetime, **kw: Any) -> UsageEvent:
    """A small event: gpt-4o by openai, 100 in / 20 out, $0.001 unless given."""
    usage = kw.pop("usage", Usage(input=100, output=20))
    cost = kw.pop("cost", Decimal("0.001"))
    model = kw.pop("model", "gpt-4o")
    provider = kw.pop("provider", "openai")
    return UsageEvent(
        id=str(i), timestamp=ts, model=model, provider=provider, usage=usage, cost=cost, **kw
    )


def dataset(n: int = 400, seed: int = 7, days: int = 10) -> list[UsageEvent]:
    """Deterministic, varied events over ``days`` days (models, users, agents, tags, and
    about one in twelve unpriced)."""
    rnd = random.Random(seed)
    models = [("gpt-4o", "openai"), ("claude-sonnet-4", "anthropic"), ("gemini-2.5-pro", None)]
    out = []
    for i in range(n):
        model, provider = rnd.choice(models)
        inp = rnd.randint(0, 5000)
        cr = rnd.randint(0, inp // 2)
        cw5 = rnd.randint(0, (inp - cr) // 2)
        cw1 = rnd.choice([0, 0, rnd.randint(0, (inp - cr - cw5))])
        out_t = rnd.randint(0, 800)
        tags: dict[str, str] = {}
        if rnd.random() < 0.7:
            tags["team"] = rnd.choice(["search", "support"])
        if rnd.random() < 0.3:
            tags["env"] = "prod"
        unpriced = rnd.random() < 0.08
        out.append(
            UsageEvent(
                id=f"e{i:05d}",
                timestamp=T0 + timedelta(microseconds=rnd.randint(0, days * 86_400_000_000)),
                model="acme-llm-9" if unpriced else model,
                provider=None if unpriced else provider,
                usage=Usage(
                    input=inp,
                    output=out_t,
                    cache_read=cr,
                    cache_write_5m=cw5,
                    cache_write_1h=cw1,
                    reasoning=rnd.randint(0, out_t),
                    estimated=rnd.random() < 0.1,
                ),
                cost=None if unpriced else Decimal(rnd.randint(0, 50_000_000)).scaleb(-9),
                status=rnd.choices(_STATUSES, [8, 1, 1])[0],
                kind=rnd.choice(["chat", "chat", "embedding"]),
                user_id=rnd.choice(["alice", "bob", "carol", None]),
                conversation_id=f"c{rnd.randint(0, 9)}",
                session_id=rnd.choice([None, "s1"]),
                agent=rnd.choice([None, "planner", "coder"]),
                tags=tags,
                tool_calls=rnd.randint(0, 3),
                tool_names=tuple(rnd.sample(["search", "calc", "sql"], rnd.randint(0, 2))),
                latency_ms=rnd.choice([None, rnd.randint(1, 4000) * 0.25]),
                parent_id=rnd.choice([None, "root"]),
                price_source=None if unpriced else "genai-prices 0.2.3",
            )
        )
    return out


# -- an independent reference implementation of the queries --------------------------------


def _dim(e: UsageEvent, d: str) -> str | None:
    value: str | None = e.tags.get(d[4:]) if d.startswith("tag:") else getattr(e, d)
    return value


def _match(e: UsageEvent, since: Any, until: Any, where: dict[str, Any]) -> bool:
    if since is not None and e.timestamp < since:
        return False
    if until is not None and e.timestamp >= until:
        return False
    for d, v in where.items():
        accepted = list(v) if isinstance(v, list) else [v]
        if _dim(e, d) not in accepted:
            return False
    return True


def reference(
    events: list[UsageEvent],
    since: datetime | None = None,
    until: datetime | None = None,
    by: Any = (),
    where: dict[str, Any] | None = None,
) -> dict[tuple[Any, ...], dict[str, Any]]:
    """Totals per group of ``by``, computed the obvious way."""
    groups: dict[tuple[Any, ...], dict[str, Any]] = {}
    for e in events:
        if not _match(e, since, until, where or {}):
            continue
        g = groups.setdefault(
            tuple(_dim(e, d) for d in by),
            {
                k: Decimal(0) if k == "cost" else 0.0 if k == "latency_ms_total" else 0
                for k in _TOTALS
            },
        )
        g["calls"] += 1
        g["errors"] += e.status == "error"
        g["cancelled"] += e.status == "cancelled"
        g["estimated"] += e.estimated
        for f in ("input", "output", "cache_read", "cache_write_5m", "cache_write_1h", "reasoning"):
            g[f] += getattr(e.usage, f)
        g["tool_calls"] += e.tool_calls
        if e.cost is None:
            g["unpriced_calls"] += 1
        else:
            g["cost"] += e.cost
        if e.latency_ms is not None:
            g["latency_ms_total"] += e.latency_ms
            g["latency_count"] += 1
    return groups


def as_dict(rows: list[SummaryRow], by: Any) -> dict[tuple[Any, ...], dict[str, Any]]:
    """Summary rows in :func:`reference`'s shape."""
    return {tuple(r.dims[d] for d in by): {k: getattr(r, k) for k in _TOTALS} for r in rows}


QUERIES: list[dict[str, Any]] = [
    {},
    {"by": ["model"]},
    {"by": ["model", "user_id"]},
    {"by": ["provider", "agent", "status", "kind"]},
    {"by": ["conversation_id"]},
    {"by": ["session_id", "tag:team"]},
    {"by": ["tag:env"], "where": {"tag:team": "search"}},
    {"by": ["user_id"], "where": {"user_id": None}},
    {"by": ["user_id"], "where": {"user_id": ["alice", None]}},
    {"by": ["model"], "where": {"agent": "planner", "status": ["ok", "cancelled"]}},
    {"by": ["agent"], "since": T0 + timedelta(days=2), "until": T0 + timedelta(days=5)},
    {
        "by": ["agent"],
        "since": T0 + timedelta(days=2, hours=5, microseconds=3),
        "until": T0 + timedelta(days=7, hours=1),
    },
    {
        "by": ["model"],
        "since": T0 + timedelta(days=3, hours=1),
        "until": T0 + timedelta(days=3, hours=20),
    },
    {"by": ["user_id"], "since": T0 + timedelta(days=4, hours=12)},
    {"by": ["user_id"], "until": T0 + timedelta(days=4, hours=12)},
    {"by": ["provider"], "where": {"provider": None}},
    {"where": {"model": "no-such-model"}},
]


class LedgerStoreConformance:
    """What every :class:`~tokenward.ledger.LedgerStore` must do.

    Subclass it in a test module (the class name must start with ``Test``) and implement
    :meth:`make_store`, or override the ``store`` fixture when building the store needs
    other fixtures. Each test gets a fresh, empty store and closes it afterwards.
    """

    def make_store(self, tmp_path: Path) -> LedgerStore:
        """A new, empty store (files, if any, under ``tmp_path``)."""
        raise NotImplementedError("implement make_store(tmp_path) or override the store fixture")

    @pytest.fixture
    def store(self, tmp_path: Path) -> Iterator[LedgerStore]:
        s = self.make_store(tmp_path)
        yield s
        with contextlib.suppress(Exception):
            s.close()

    # -- the protocol -----------------------------------------------------------------------

    def test_is_a_ledger_store(self, store: LedgerStore) -> None:
        """If this fails, a method of the LedgerStore protocol is missing (record,
        record_many, flush, close, events, summary, timeseries, top, count, put_state,
        get_state)."""
        assert isinstance(store, LedgerStore)

    # -- queries ------------------------------------------------------------------------------

    @pytest.mark.parametrize("q", QUERIES, ids=[str(i) for i in range(len(QUERIES))])
    def test_summary_matches_reference(self, store: LedgerStore, q: dict[str, Any]) -> None:
        """If this fails, the store aggregates, filters or splits time ranges differently
        from the reference (half-open ranges, None dimensions, tag filters)."""
        events = dataset()
        store.record_many(events)
        by = q.get("by", ())
        got = store.summary(q.get("since"), q.get("until"), by=by, where=q.get("where"))
        expected = reference(events, q.get("since"), q.get("until"), by, q.get("where"))
        assert as_dict(got, by) == expected
        assert [r.cost for r in got] == sorted((r.cost for r in got), reverse=True)
        if expected:
            assert sum(r.calls for r in got) == store.count(
                q.get("since"), q.get("until"), where=q.get("where")
            )

    def test_summary_exact_small_example(self, store: LedgerStore) -> None:
        """If this fails, a total (tokens, errors, cost, latency) or the cost-descending
        order of summary rows is wrong on three hand-checked events."""
        store.record_many(
            [
                ev(
                    1,
                    T0,
                    user_id="u1",
                    usage=Usage(input=1000, output=200, cache_read=400),
                    cost=Decimal("0.012345678"),
                    latency_ms=100.0,
                ),
                ev(
                    2,
                    T0 + timedelta(hours=1),
                    user_id="u1",
                    status="error",
                    usage=Usage(input=10, output=0),
                    cost=Decimal("0"),
                ),
                ev(
                    3,
                    T0 + timedelta(hours=2),
                    user_id="u2",
                    model="claude-sonnet-4",
                    provider="anthropic",
                    usage=Usage(input=50, output=5, reasoning=3),
                    cost=Decimal("0.5"),
                    latency_ms=50.5,
                ),
            ]
        )
        rows = store.summary(by=["user_id"])
        assert [r["user_id"] for r in rows] == ["u2", "u1"]
        u1 = rows[1]
        assert (u1.calls, u1.errors, u1.input, u1.output, u1.cache_read, u1.tokens) == (
            2,
            1,
            1010,
            200,
            400,
            1210,
        )
        assert u1.cost == Decimal("0.012345678") and u1.ok == 1 and u1.avg_latency_ms == 100.0
        assert rows[0].cost == Decimal("0.5") and rows[0].reasoning == 3
        (total,) = store.summary()
        assert total.calls == 3 and total.cost == Decimal("0.512345678") and total.dims == {}
        assert total.unpriced_calls == 0
        assert store.summary(where={"user_id": "nobody"}) == []

    def test_unpriced_events_are_null_never_zero(self, store: LedgerStore) -> None:
        """If this fails, an event whose cost is unknown (cost=None) was stored as $0, lost
        its tokens, or is not counted in ``unpriced_calls`` by summary/timeseries/top."""
        store.record_many(
            [
                ev("p1", T0, cost=Decimal("0.25"), user_id="a"),
                ev("u1", T0 + timedelta(hours=1), cost=None, model="acme-llm-9", user_id="a"),
                ev("u2", T0 + timedelta(days=1), cost=None, model="acme-llm-9", user_id="b"),
                ev("z1", T0 + timedelta(days=1), cost=Decimal("0"), user_id="b"),
            ]
        )
        (total,) = store.summary()
        assert (total.calls, total.unpriced_calls, total.cost, total.input) == (
            4,
            2,
            Decimal("0.25"),
            400,
        )
        by_model = {r["model"]: r for r in store.summary(by=["model"])}
        assert by_model["acme-llm-9"].unpriced_calls == 2
        assert by_model["acme-llm-9"].cost == Decimal(0)
        assert by_model["acme-llm-9"].tokens == 240
        assert by_model["gpt-4o"].unpriced_calls == 0
        days = store.timeseries("day")
        assert [(r.calls, r.unpriced_calls, r.cost) for r in days] == [
            (2, 1, Decimal("0.25")),
            (2, 1, Decimal("0")),
        ]
        top = store.top(5, "user_id")
        assert [(r["user_id"], r.unpriced_calls) for r in top] == [("a", 1), ("b", 1)]
        got = {e.id: e for e in store.events()}
        assert got["u1"].cost is None and got["u1"].priced is False
        assert got["z1"].cost == Decimal(0) and got["z1"].priced is True

    def test_price_provenance_round_trips(self, store: LedgerStore) -> None:
        """If this fails, price_source or provider_cost (the provider's own figure, never
        mixed into cost) is not stored, or a usage.reported_cost does not land in it."""
        a = ev(
            "a",
            T0,
            price_source="genai-prices 0.2.3",
            provider_cost=Decimal("0.00123"),
            cost=Decimal("0.001"),
        )
        b = ev("b", T0, usage=Usage(input=5, output=1, reported_cost=Decimal("0.0004")), cost=None)
        store.record_many([a, b])
        got = {e.id: e for e in store.events()}
        assert got["a"] == a.stored() and got["a"].provider_cost == Decimal("0.00123")
        assert got["a"].price_source == "genai-prices 0.2.3"
        assert got["b"].provider_cost == Decimal("0.0004") and got["b"].cost is None
        (total,) = store.summary()
        assert total.cost == Decimal("0.001")  # the provider's figures are not summed in

    def test_timeseries_buckets_are_utc_and_iso_weeks(self, store: LedgerStore) -> None:
        """If this fails, hour/day/week (Monday start)/month buckets are not UTC, or empty
        buckets are returned."""
        sun = datetime(2026, 11, 29, 23, 59, 59, 999999, tzinfo=UTC)
        mon = datetime(2026, 11, 30, 0, 0, tzinfo=UTC)
        dec = datetime(2026, 12, 1, 10, 30, tzinfo=timezone(timedelta(hours=5)))
        store.record_many(
            [
                ev("a", sun, cost=Decimal("1")),
                ev("b", mon, cost=Decimal("2")),
                ev("c", mon + timedelta(minutes=59), cost=Decimal("4")),
                ev("d", dec, cost=Decimal("8"), user_id="x"),
            ]
        )
        hours = store.timeseries("hour")
        assert [(r.bucket, r.calls, r.cost) for r in hours] == [
            (datetime(2026, 11, 29, 23, tzinfo=UTC), 1, Decimal(1)),
            (datetime(2026, 11, 30, 0, tzinfo=UTC), 2, Decimal(6)),
            (datetime(2026, 12, 1, 5, tzinfo=UTC), 1, Decimal(8)),
        ]
        days = store.timeseries("day")
        assert [(r.bucket.day, r.calls) for r in days if r.bucket] == [(29, 1), (30, 2), (1, 1)]
        weeks = store.timeseries("week")
        assert [(r.bucket, r.calls) for r in weeks] == [
            (datetime(2026, 11, 23, tzinfo=UTC), 1),
            (datetime(2026, 11, 30, tzinfo=UTC), 3),
        ]
        months = store.timeseries("month", by=["user_id"])
        assert [(r.bucket.month, r["user_id"], r.cost) for r in months if r.bucket] == [
            (11, None, Decimal(7)),
            (12, "x", Decimal(8)),
        ]
        part = store.timeseries("day", since=mon + timedelta(minutes=30))
        assert [(r.bucket.day, r.calls) for r in part if r.bucket] == [(30, 1), (1, 1)]

    @pytest.mark.parametrize("bucket", ["hour", "day", "week", "month"])
    def test_timeseries_matches_reference(self, store: LedgerStore, bucket: str) -> None:
        """If this fails, a time bucket's totals differ from the reference's over the same
        bucket-sized range."""
        events = dataset(300, seed=3)
        store.record_many(events)
        since, until = T0 + timedelta(days=1, hours=3), T0 + timedelta(days=8, hours=2)
        rows = store.timeseries(bucket, since, until, by=["model"])  # type: ignore[arg-type]
        assert sum(r.calls for r in rows) == store.count(since, until)
        for r in rows:
            start = r.bucket
            assert start is not None
            if bucket == "hour":
                end = start + timedelta(hours=1)
            elif bucket == "day":
                end = start + timedelta(days=1)
            elif bucket == "week":
                assert start.weekday() == 0
                end = start + timedelta(days=7)
            else:
                assert start.day == 1
                end = start.replace(
                    month=start.month % 12 + 1, year=start.year + (start.month == 12)
                )
            exp = reference(events, max(start, since), min(end, until), ["model"])
            assert as_dict([r], ["model"]) == {(r["model"],): exp[(r["model"],)]}

    def test_top_by_metric(self, store: LedgerStore) -> None:
        """If this fails, top() ranks groups by the wrong metric or in the wrong order."""
        store.record_many(
            [
                ev(1, T0, user_id="a", cost=Decimal("3"), usage=Usage(input=1, output=1)),
                ev(2, T0, user_id="b", cost=Decimal("1.5"), usage=Usage(input=500, output=500)),
                ev(3, T0, user_id="b", cost=Decimal("1"), usage=Usage(input=1, output=1)),
                ev(4, T0, user_id="c", cost=Decimal("2"), usage=Usage(input=10, output=10)),
                ev(5, T0, user_id="c", cost=Decimal("0"), usage=Usage(input=1, output=1)),
                ev(6, T0, user_id="c", cost=Decimal("0"), usage=Usage(input=1, output=1)),
            ]
        )
        assert [r["user_id"] for r in store.top(2, "user_id")] == ["a", "b"]
        assert [r["user_id"] for r in store.top(5, "user_id", metric="tokens")] == ["b", "c", "a"]
        assert [r["user_id"] for r in store.top(1, "user_id", metric="calls")] == ["c"]
        assert store.top(0, "user_id") == []

    # -- events ------------------------------------------------------------------------------

    def test_events_round_trip_exactly(self, store: LedgerStore) -> None:
        """If this fails, a stored event does not come back equal to ``event.stored()``
        (every field, money rounded to whole nano-USD), in time-then-id order."""
        e1 = ev(
            "z",
            T0 + timedelta(seconds=1),
            tags={"team": "x", "env": "dev"},
            tool_calls=2,
            tool_names=("search", "calc"),
            latency_ms=12.75,
            prompt="hi",
            output="hello",
            parent_id="p",
            session_id="s",
            usage=Usage(
                input=9,
                output=8,
                cache_read=1,
                cache_write_5m=2,
                cache_write_1h=3,
                reasoning=4,
                audio_input=1,
                audio_output=2,
                image_input=1,
            ),
            cost=Decimal("0.0000000015"),  # stored half-even -> 0.000000002
            price_source="user",
            provider_cost=Decimal("0.0000000025"),  # -> 0.000000002
        )
        e2 = ev("a", T0 + timedelta(seconds=1), kind="embedding", estimated=True)
        e3 = ev("m", T0, status="cancelled", error="user hit stop", conversation_id="c")
        e4 = ev("n", T0, cost=None, tags={"ü": 'é"q'}, user_id="ü-ser")
        store.record_many([e1, e2, e3, e4])
        got = list(store.events())
        assert [e.id for e in got] == ["m", "n", "a", "z"]
        assert got == [e3.stored(), e4.stored(), e2.stored(), e1.stored()]
        assert got[3].cost == Decimal("0.000000002") and got[3].tags == {"env": "dev", "team": "x"}
        assert got[3].provider_cost == Decimal("0.000000002")
        assert all(e.timestamp.tzinfo is UTC for e in got)
        assert [e.id for e in store.events(limit=2)] == ["m", "n"]
        assert [e.id for e in store.events(where={"tag:team": "x"})] == ["z"]
        assert [e.id for e in store.events(since=T0 + timedelta(microseconds=1))] == ["a", "z"]
        assert list(store.events(until=T0)) == []

    def test_events_pagination_past_page_size(self, store: LedgerStore) -> None:
        """If this fails, events() drops or repeats events across its internal pages."""
        events = [ev(f"p{i:04d}", T0 + timedelta(seconds=i // 3)) for i in range(4500)]
        store.record_many(events)
        got = [e.id for e in store.events()]
        assert got == [e.id for e in events]
        assert [e.id for e in store.events(limit=2001)] == got[:2001]

    def test_events_with_input_filters_like_events(self, store: LedgerStore) -> None:
        """If this fails, the optional ``events_with_input`` (what-if replay reads the calls
        that can reach a price tier with it) returns other events than :meth:`events`
        filtered to ``usage.input >= min_input``, or in another order."""
        method = getattr(store, "events_with_input", None)
        if method is None:
            pytest.skip("the store has no events_with_input (optional)")
        events = dataset()
        store.record_many(events)
        since, until = T0 + timedelta(days=2), T0 + timedelta(days=7, hours=5)
        for where in (None, {"model": ["gpt-4o", "gemini-2.5-pro"]}, {"user_id": None}):
            for threshold in (0, 2500, 4999, 10**9):
                narrow = (T0 + timedelta(days=3), T0 + timedelta(days=3, hours=3))
                for lo, hi in ((None, None), (since, until), narrow):
                    got = [e.id for e in method(threshold, lo, hi, where)]
                    want = [
                        e.id
                        for e in store.events(since=lo, until=hi, where=where)
                        if e.usage.input >= threshold
                    ]
                    assert got == want, (threshold, where, lo)
        assert [e.id for e in method(2500)] and not list(method(10**9))
        with pytest.raises(ConfigurationError):
            list(method(-1))

    def test_recording_is_idempotent_on_id(self, store: LedgerStore) -> None:
        """If this fails, recording an event id twice stores or counts it twice."""
        first = ev("run-1", T0, cost=Decimal("1"))
        store.record(first)
        store.record(replace(first, cost=Decimal("99")))
        store.record_many([first, first, ev("run-2", T0)])
        assert store.count() == 2
        (total,) = store.summary()
        assert total.cost == Decimal("1.001") and total.calls == 2
        assert next(iter(store.events())).cost == Decimal("1")

    def test_threads_record_concurrently_nothing_lost(self, store: LedgerStore) -> None:
        """If this fails, events recorded from several threads at once are lost or
        duplicated."""

        def work(t: int) -> None:
            for i in range(250):
                store.record(ev(f"t{t}-{i}", T0 + timedelta(seconds=i), cost=Decimal("0.000001")))
                if i % 50 == 0:
                    store.record(
                        ev(
                            f"t{(t + 1) % 8}-{i}",
                            T0 + timedelta(seconds=i),
                            cost=Decimal("0.000001"),
                        )
                    )

        threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        store.flush()
        assert store.count() == 2000
        (total,) = store.summary()
        assert total.calls == 2000 and total.cost == Decimal("0.002")

    def test_poison_values_never_stop_the_store(self, store: LedgerStore) -> None:
        """If this fails, one event with a value the backend cannot store (a lone
        surrogate, an integer beyond 64 bits, a NUL byte) stopped other events from being
        stored. The store may keep it or set it aside (dead letters), never lose the rest."""
        poison = [
            ev("bad-surrogate", T0, user_id="m\ud800"),
            ev("bad-int", T0, usage=Usage(input=2**63, output=1)),
            ev("bad-nul", T0, agent="a\x00b", tags={"k": "v\x00"}),
        ]
        good = [ev(f"good-{i}", T0 + timedelta(seconds=i)) for i in range(50)]
        store.record_many(good[:25] + poison + good[25:])
        store.record(ev("after", T0 + timedelta(minutes=5)))
        store.flush()
        ids = {e.id for e in store.events()}
        assert {e.id for e in good} | {"after"} <= ids
        set_aside = {d.event_id for d in getattr(store, "dead_letters", list)()}
        assert {p.id for p in poison} <= ids | set_aside

    def test_query_validation(self, store: LedgerStore) -> None:
        """If this fails, a bad query argument is not refused with ConfigurationError."""
        with pytest.raises(ConfigurationError, match="unknown dimension"):
            store.summary(by=["colour"])
        with pytest.raises(ConfigurationError, match="timezone-aware"):
            store.summary(since=datetime(2026, 1, 1))
        with pytest.raises(ConfigurationError, match="bucket"):
            store.timeseries("minute")  # type: ignore[arg-type]
        with pytest.raises(ConfigurationError, match="metric"):
            store.top(3, "model", metric="latency")  # type: ignore[arg-type]
        with pytest.raises(ConfigurationError, match="before since"):
            store.summary(since=T0, until=T0 - timedelta(days=1))
        with pytest.raises(ConfigurationError, match="empty list"):
            store.summary(where={"model": []})
        with pytest.raises(ConfigurationError):
            store.summary(by=["model; DROP TABLE tokenward_events"])

    def test_closed_store_refuses_writes(self, store: LedgerStore) -> None:
        """If this fails, a closed store accepts events it will never write (they must be
        refused with LedgerError), or close() is not idempotent."""
        store.record(ev(1, T0))
        store.close()
        with pytest.raises(LedgerError, match="closed"):
            store.record(ev(2, T0))
        store.close()

    # -- state documents ------------------------------------------------------------------

    def test_state_documents(self, store: LedgerStore) -> None:
        """If this fails, put_state/get_state do not keep JSON objects per namespace and
        key (replace on put, namespaces kept apart, values returned as plain JSON)."""
        assert store.get_state("calibration") == {}
        store.put_state("calibration", "gpt-4o", {"ratio": 1.0625, "n": 12, "tags": ["a"]})
        store.put_state("calibration", "claude", {"ratio": 0.97, "nested": {"x": None}})
        store.put_state("sketch", "gpt-4o", {"q": [1, 2, 3], "ü": "é"})
        store.put_state("calibration", "gpt-4o", {"ratio": 1.125, "n": 13, "ok": True})
        assert store.get_state("calibration") == {
            "gpt-4o": {"ratio": 1.125, "n": 13, "ok": True},
            "claude": {"ratio": 0.97, "nested": {"x": None}},
        }
        assert store.get_state("sketch") == {"gpt-4o": {"q": [1, 2, 3], "ü": "é"}}
        got = store.get_state("calibration")
        got["claude"]["ratio"] = 0  # a copy: changing it changes nothing stored
        assert store.get_state("calibration")["claude"]["ratio"] == 0.97

    def test_state_rejects_what_is_not_a_json_object(self, store: LedgerStore) -> None:
        """If this fails, put_state accepted a value it cannot store faithfully (not a
        mapping, not JSON-serializable, NaN) or an empty namespace/key."""
        for bad in ([1, 2], {"x": object()}, {"x": float("nan")}):
            with pytest.raises(ConfigurationError):
                store.put_state("ns", "k", bad)  # type: ignore[arg-type]
        with pytest.raises(ConfigurationError):
            store.put_state("", "k", {})
        with pytest.raises(ConfigurationError):
            store.put_state("ns", "", {})
        assert store.get_state("ns") == {}
