"""The LedgerStore protocol, result rows, and helpers shared by every store."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, Literal, Protocol, runtime_checkable

from tokenward.errors import ConfigurationError
from tokenward.ledger._event import UsageEvent, from_micros, from_nanos, to_micros
from tokenward.usage import TOKEN_FIELDS

__all__ = [
    "AGG_FIELDS",
    "DIMENSIONS",
    "Bucket",
    "LedgerStore",
    "Metric",
    "SummaryRow",
    "WhereValue",
]

Bucket = Literal["hour", "day", "week", "month"]
Metric = Literal["cost", "tokens", "calls"]
WhereValue = str | None | Sequence[str | None]

#: Plain column dimensions usable in ``by=`` and ``where=``; plus ``"tag:<key>"``.
DIMENSIONS = (
    "model",
    "provider",
    "user_id",
    "conversation_id",
    "session_id",
    "agent",
    "status",
    "kind",
)

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_DAY_US = 86_400_000_000
_HOUR_US = 3_600_000_000

# Aggregate vector layout (shared by all stores): integer sums, then the float latency
# sum and the integer latency count. ``cost_nanos`` sums the priced events only;
# ``unpriced`` counts the events whose cost is NULL.
AGG_FIELDS = (
    "calls",
    "errors",
    "cancelled",
    "estimated",
    *TOKEN_FIELDS,
    "tool_calls",
    "cost_nanos",
    "unpriced",
    "latency_sum",
    "latency_count",
)
N_AGG = len(AGG_FIELDS)
_CALLS = AGG_FIELDS.index("calls")
_COST = AGG_FIELDS.index("cost_nanos")
_LATENCY_SUM = AGG_FIELDS.index("latency_sum")


@dataclass(frozen=True)
class SummaryRow:
    """Totals for one group of events (one row of a report).

    ``dims`` maps each requested ``by`` dimension to its value (``None`` when
    the events had none); ``bucket`` is the UTC start of the time bucket for
    :meth:`LedgerStore.timeseries` rows and ``None`` for :meth:`~LedgerStore.summary`.
    Token fields follow :class:`~tokenward.Usage` (``input`` includes cached
    tokens, ``output`` includes reasoning). ``errors`` counts ``status="error"``,
    ``cancelled`` counts ``status="cancelled"``. ``cost`` sums the priced events;
    ``unpriced_calls`` counts events whose cost is unknown (a model nobody could price).
    """

    dims: Mapping[str, str | None]
    calls: int
    errors: int
    cancelled: int
    estimated: int
    input: int
    output: int
    cache_read: int
    cache_write_5m: int
    cache_write_1h: int
    reasoning: int
    audio_input: int
    audio_output: int
    image_input: int
    tool_calls: int
    cost: Decimal
    latency_ms_total: float
    latency_count: int
    bucket: datetime | None = None
    unpriced_calls: int = 0

    @property
    def tokens(self) -> int:
        """Input plus output tokens."""
        return self.input + self.output

    @property
    def cache_write(self) -> int:
        """Tokens written to the prompt cache (both TTLs)."""
        return self.cache_write_5m + self.cache_write_1h

    @property
    def ok(self) -> int:
        """Calls that succeeded."""
        return self.calls - self.errors - self.cancelled

    @property
    def avg_latency_ms(self) -> float | None:
        """Mean latency over the calls that reported one."""
        return self.latency_ms_total / self.latency_count if self.latency_count else None

    def __getitem__(self, dim: str) -> str | None:
        """``row["model"]`` is ``row.dims["model"]``."""
        return self.dims[dim]

    def metric(self, metric: Metric) -> Decimal | int:
        """The value of ``metric`` ("cost", "tokens" or "calls")."""
        if metric == "cost":
            return self.cost
        if metric == "tokens":
            return self.tokens
        if metric == "calls":
            return self.calls
        raise ConfigurationError(f"metric must be 'cost', 'tokens' or 'calls', got {metric!r}")


@runtime_checkable
class LedgerStore(Protocol):
    """Where UsageEvents are kept and queried. Every store gives the same answers.

    Time ranges are half-open: ``since <= timestamp < until`` (both optional,
    tz-aware). ``where`` maps a dimension (see :data:`DIMENSIONS`, or
    ``"tag:<key>"``) to a value, ``None`` (dimension absent) or a list of
    accepted values. Recording is idempotent on ``event.id``. Queries first
    flush pending writes of this store object (read-your-writes).

    Besides events, a store keeps small named state documents for tokenward's
    learned values (estimator calibration, output-length sketches):
    :meth:`put_state` / :meth:`get_state`, JSON objects keyed by namespace and key.

    Optional (not part of the protocol; tokenward's stores have it, and callers fall back
    to :meth:`events` without it): ``events_with_input(min_input, since, until, where)``,
    the events of :meth:`events` with at least ``min_input`` input tokens, in the same order.

    Third-party stores plug in through the ``tokenward.ledgers`` entry-point group
    (see :func:`~tokenward.ledger.open_ledger`) and prove themselves with
    :class:`tokenward.testing.LedgerStoreConformance`.
    """

    def record(self, event: UsageEvent) -> None:
        """Store one event (no-op if an event with the same id is stored)."""
        ...

    def record_many(self, events: Iterable[UsageEvent]) -> None:
        """Store several events (each idempotent on its id)."""
        ...

    def flush(self) -> None:
        """Block until every event recorded so far is durably stored."""
        ...

    def close(self) -> None:
        """Flush and release resources; the store cannot be used afterwards."""
        ...

    def events(
        self,
        since: datetime | None = None,
        until: datetime | None = None,
        where: Mapping[str, WhereValue] | None = None,
        limit: int | None = None,
    ) -> Iterator[UsageEvent]:
        """Stored events in time order (then id)."""
        ...

    def summary(
        self,
        since: datetime | None = None,
        until: datetime | None = None,
        by: Sequence[str] = (),
        where: Mapping[str, WhereValue] | None = None,
    ) -> list[SummaryRow]:
        """Totals grouped by ``by`` (one row when ``by`` is empty), most expensive first."""
        ...

    def timeseries(
        self,
        bucket: Bucket = "day",
        since: datetime | None = None,
        until: datetime | None = None,
        by: Sequence[str] = (),
        where: Mapping[str, WhereValue] | None = None,
    ) -> list[SummaryRow]:
        """Totals per UTC time bucket (and ``by`` group), oldest first."""
        ...

    def top(
        self,
        n: int,
        by: str,
        metric: Metric = "cost",
        since: datetime | None = None,
        until: datetime | None = None,
        where: Mapping[str, WhereValue] | None = None,
    ) -> list[SummaryRow]:
        """The ``n`` groups of ``by`` with the largest ``metric``."""
        ...

    def count(
        self,
        since: datetime | None = None,
        until: datetime | None = None,
        where: Mapping[str, WhereValue] | None = None,
    ) -> int:
        """Number of stored events matching the filter."""
        ...

    def put_state(self, namespace: str, key: str, value: Mapping[str, Any]) -> None:
        """Store ``value`` (a JSON object) under ``namespace``/``key``, replacing what was there."""
        ...

    def get_state(self, namespace: str) -> dict[str, dict[str, Any]]:
        """Every ``key -> value`` stored under ``namespace`` (``{}`` when there is none)."""
        ...


# -- validation --------------------------------------------------------------------------


def check_state(namespace: str, key: str | None, value: Mapping[str, Any] | None = None) -> str:
    """Validate a state namespace/key/value; returns the value as compact JSON text
    (``""`` when no value is given)."""
    for name, text in (("namespace", namespace), ("key", key)):
        if text is None and name == "key":
            continue
        if not isinstance(text, str) or not text:
            raise ConfigurationError(f"state {name} must be a non-empty str, got {text!r}")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise ConfigurationError(f"state {name} {text!r} is not valid text") from None
        if "\x00" in text:
            raise ConfigurationError(f"state {name} {text!r} contains a NUL character")
    if value is None:
        return ""
    if not isinstance(value, Mapping):
        raise ConfigurationError(
            f"state values are JSON objects (a mapping), got {type(value).__name__}"
        )
    try:
        # ASCII JSON: every database stores it unchanged (no NUL byte, no lone surrogate)
        return json.dumps(dict(value), ensure_ascii=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(
            f"state value for {namespace}/{key} is not JSON-serializable: {exc}; "
            "store plain dicts, lists, str, int, float (finite), bool and None"
        ) from None


def check_dim(dim: str) -> str:
    """Validate a dimension name; returns it. Tag dimensions are ``"tag:<key>"``."""
    if not isinstance(dim, str):
        raise ConfigurationError(f"dimension names are strings, got {dim!r}")
    if dim in DIMENSIONS:
        return dim
    if dim.startswith("tag:") and len(dim) > 4:
        key = dim[4:]
        if '"' in key or "\\" in key:
            raise ConfigurationError(f"tag keys used in queries cannot contain quotes: {dim!r}")
        return dim
    raise ConfigurationError(
        f"unknown dimension {dim!r}; use one of {', '.join(DIMENSIONS)} or 'tag:<key>'"
    )


def check_by(by: Sequence[str] | str | None) -> tuple[str, ...]:
    if by is None:
        return ()
    if isinstance(by, str):
        by = [p.strip() for p in by.split(",") if p.strip()]
    out = tuple(check_dim(d) for d in by)
    if len(set(out)) != len(out):
        raise ConfigurationError(f"duplicate dimension in by={list(out)}")
    return out


def check_where(where: Mapping[str, WhereValue] | None) -> dict[str, tuple[str | None, ...]]:
    """Normalize ``where`` to ``{dim: (accepted values...)}``."""
    if not where:
        return {}
    out: dict[str, tuple[str | None, ...]] = {}
    for dim, value in where.items():
        check_dim(dim)
        if value is None or isinstance(value, str):
            values: tuple[str | None, ...] = (value,)
        elif isinstance(value, (list, tuple, set, frozenset)):
            values = tuple(value)
            if not values:
                raise ConfigurationError(f"where[{dim!r}] is an empty list; nothing could match")
            for v in values:
                if v is not None and not isinstance(v, str):
                    raise ConfigurationError(f"where[{dim!r}] values must be strings or None")
            values = tuple(dict.fromkeys(values))
        else:
            raise ConfigurationError(
                f"where[{dim!r}] must be a string, None or a list of strings, got {value!r}"
            )
        # empty strings are stored as None
        out[dim] = tuple(None if v == "" else v for v in values)
    return out


def check_range(
    since: datetime | date | None, until: datetime | date | None
) -> tuple[int | None, int | None]:
    """Validate a time range; returns it as epoch microseconds."""
    lo = None if since is None else to_micros(_aware(since, "since"))
    hi = None if until is None else to_micros(_aware(until, "until"))
    if lo is not None and hi is not None and hi < lo:
        raise ConfigurationError(f"until ({until}) is before since ({since})")
    return lo, hi


def check_min_input(min_input: int) -> int:
    """Validate ``events_with_input``'s token threshold (an int >= 0)."""
    if isinstance(min_input, bool) or not isinstance(min_input, int) or min_input < 0:
        raise ConfigurationError(f"min_input must be an int >= 0, got {min_input!r}")
    return min_input


def _aware(ts: datetime | date, name: str) -> datetime:
    if isinstance(ts, datetime):
        if ts.tzinfo is None or ts.utcoffset() is None:
            raise ConfigurationError(
                f"{name} must be timezone-aware (e.g. datetime(..., tzinfo=timezone.utc))"
            )
        return ts
    if isinstance(ts, date):
        return datetime(ts.year, ts.month, ts.day, tzinfo=timezone.utc)
    raise ConfigurationError(f"{name} must be a datetime, got {type(ts).__name__}")


def check_bucket(bucket: str) -> str:
    if bucket not in ("hour", "day", "week", "month"):
        raise ConfigurationError(f"bucket must be 'hour', 'day', 'week' or 'month', got {bucket!r}")
    return bucket


def check_metric(metric: str) -> str:
    if metric not in ("cost", "tokens", "calls"):
        raise ConfigurationError(f"metric must be 'cost', 'tokens' or 'calls', got {metric!r}")
    return metric


# -- buckets (UTC) -----------------------------------------------------------------------


def day_to_bucket(day: int, bucket: str) -> datetime:
    """Map a day number (days since 1970-01-01 UTC) to the UTC start of its bucket.

    Weeks start on Monday (ISO 8601); months on the 1st.
    """
    start = _EPOCH + timedelta(days=day)
    if bucket == "day":
        return start
    if bucket == "week":
        return start - timedelta(days=start.weekday())
    if bucket == "month":
        return start.replace(day=1)
    raise AssertionError(bucket)


def hour_to_bucket(hour: int) -> datetime:
    return _EPOCH + timedelta(hours=hour)


# -- aggregation helpers -----------------------------------------------------------------

Key = tuple[Any, ...]


def merge_into(acc: dict[Key, list[Any]], key: Key, agg: Sequence[Any]) -> None:
    """Add an aggregate vector (AGG_FIELDS order) into ``acc[key]``."""
    cur = acc.get(key)
    if cur is None:
        acc[key] = [
            float(v or 0.0) if i == _LATENCY_SUM else int(v or 0) for i, v in enumerate(agg)
        ]
        return
    for i, v in enumerate(agg):
        if v:
            cur[i] += float(v) if i == _LATENCY_SUM else int(v)


def event_agg(e: UsageEvent) -> list[Any]:
    """The aggregate vector of a single event."""
    u = e.usage
    nanos = e.cost_nanos
    return [
        1,
        1 if e.status == "error" else 0,
        1 if e.status == "cancelled" else 0,
        1 if e.estimated else 0,
        u.input,
        u.output,
        u.cache_read,
        u.cache_write_5m,
        u.cache_write_1h,
        u.reasoning,
        u.audio_input,
        u.audio_output,
        u.image_input,
        e.tool_calls,
        nanos or 0,
        1 if nanos is None else 0,
        e.latency_ms or 0.0,
        0 if e.latency_ms is None else 1,
    ]


def make_row(
    dims: Sequence[str], key: Sequence[Any], agg: Sequence[Any], bucket: datetime | None = None
) -> SummaryRow:
    values = dict(zip(AGG_FIELDS, agg))
    return SummaryRow(
        dims=dict(zip(dims, key)),
        calls=values["calls"],
        errors=values["errors"],
        cancelled=values["cancelled"],
        estimated=values["estimated"],
        input=values["input"],
        output=values["output"],
        cache_read=values["cache_read"],
        cache_write_5m=values["cache_write_5m"],
        cache_write_1h=values["cache_write_1h"],
        reasoning=values["reasoning"],
        audio_input=values["audio_input"],
        audio_output=values["audio_output"],
        image_input=values["image_input"],
        tool_calls=values["tool_calls"],
        cost=from_nanos(values["cost_nanos"]),
        latency_ms_total=values["latency_sum"],
        latency_count=values["latency_count"],
        bucket=bucket,
        unpriced_calls=values["unpriced"],
    )


def _sort_key(key: Sequence[Any]) -> tuple[Any, ...]:
    return tuple((v is not None, v or "") for v in key)


def summary_rows(by: Sequence[str], acc: Mapping[Key, Sequence[Any]]) -> list[SummaryRow]:
    """Rows sorted by cost (desc), then calls (desc), then dimension values."""
    items = sorted(acc.items(), key=lambda kv: (-kv[1][_COST], -kv[1][_CALLS], _sort_key(kv[0])))
    return [make_row(by, k, a) for k, a in items if a[_CALLS] > 0]


def timeseries_rows(
    by: Sequence[str], acc: Mapping[Key, Sequence[Any]], bucket: str
) -> list[SummaryRow]:
    """``acc`` keys are ``(unit, *dims)`` with unit an hour or day number."""
    out: dict[Key, list[Any]] = {}
    for key, agg in acc.items():
        unit, rest = key[0], key[1:]
        start = hour_to_bucket(unit) if bucket == "hour" else day_to_bucket(unit, bucket)
        merge_into(out, (start, *rest), agg)
    items = sorted(out.items(), key=lambda kv: (kv[0][0], _sort_key(kv[0][1:])))
    return [make_row(by, k[1:], a, bucket=k[0]) for k, a in items if a[_CALLS] > 0]


def top_rows(rows: list[SummaryRow], n: int, metric: str) -> list[SummaryRow]:
    if not isinstance(n, int) or n < 0:
        raise ConfigurationError(f"n must be an int >= 0, got {n!r}")
    check_metric(metric)
    ranked = sorted(
        rows,
        key=lambda r: (-r.metric(metric), -r.calls, _sort_key(tuple(r.dims.values()))),  # type: ignore[arg-type]
    )
    return ranked[:n]


def split_days(
    lo: int | None, hi: int | None
) -> tuple[list[tuple[int | None, int | None]], tuple[int | None, int | None] | None]:
    """Split ``[lo, hi)`` (microseconds) into raw edge ranges and a whole-day range.

    Returns ``(raw_ranges, (first_day, end_day))`` where the day range is half-open
    in day numbers (``None`` = unbounded) or ``None`` when no whole day is covered.
    """
    if lo is None:
        first_day = None
        head = None
    else:
        first_day = -(-lo // _DAY_US)  # ceil
        head = (lo, min(first_day * _DAY_US, hi) if hi is not None else first_day * _DAY_US)
    if hi is None:
        end_day = None
        tail = None
    else:
        end_day = hi // _DAY_US  # floor
        tail = (max(end_day * _DAY_US, lo) if lo is not None else end_day * _DAY_US, hi)
    if first_day is not None and end_day is not None and end_day <= first_day:
        # no whole day inside: everything is raw
        return [(lo, hi)], None
    raws: list[tuple[int | None, int | None]] = [
        r for r in (head, tail) if r is not None and r[0] < r[1]
    ]
    return raws, (first_day, end_day)


def _month_of_day(day: int) -> int:
    d = _EPOCH + timedelta(days=day)
    return (d.year - 1970) * 12 + d.month - 1


def _first_day_of_month(month: int) -> int:
    y, m = divmod(month, 12)
    return (datetime(1970 + y, m + 1, 1, tzinfo=timezone.utc) - _EPOCH).days


def split_months(
    first_day: int | None, end_day: int | None
) -> tuple[list[tuple[int | None, int | None]], tuple[int | None, int | None] | None]:
    """Split a half-open day range into daily edge ranges and whole calendar months.

    Returns ``(day_ranges, (first_month, end_month))`` (months since 1970-01,
    half-open, ``None`` = unbounded) or ``([the range], None)`` if no whole month fits.
    """
    if first_day is None:
        first_month = None
        head = None
    else:
        m = _month_of_day(first_day)
        first_month = m if _first_day_of_month(m) == first_day else m + 1
        head = (first_day, _first_day_of_month(first_month))
    if end_day is None:
        end_month = None
        tail = None
    else:
        end_month = _month_of_day(end_day)
        tail = (_first_day_of_month(end_month), end_day)
    if first_month is not None and end_month is not None and end_month <= first_month:
        return [(first_day, end_day)], None
    ranges: list[tuple[int | None, int | None]] = [
        r for r in (head, tail) if r is not None and r[0] < r[1]
    ]
    return ranges, (first_month, end_month)


def micros_to_datetime(us: int) -> datetime:
    return from_micros(us)
