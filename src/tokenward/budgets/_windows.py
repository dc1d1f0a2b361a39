"""Budget windows: which counter a call falls into and when that counter resets.

Five kinds:

* ``request`` -- the reservation itself is checked against the limit; nothing accumulates.
* ``conversation`` -- one counter per ``conversation_id``; it never resets.
* ``rolling`` -- the last ``length`` of time, bucketed. The window is split into ``buckets``
  (default 60) equal buckets of ``length / buckets`` (rounded down to whole milliseconds);
  spend = sum of the last ``buckets`` buckets including the current one. So the window
  covers between ``(buckets - 1) * granularity`` and ``buckets * granularity`` (= ``length``
  when it divides evenly into whole milliseconds) of history, and spend leaves it one
  bucket at a time: the reset time reported is when the oldest non-empty bucket leaves.
* ``day`` / ``week`` / ``month`` -- calendar windows in an IANA timezone (``zoneinfo``):
  they start at local midnight, on Monday at local midnight, on the first of the month at
  local midnight. Where local midnight does not exist (a DST gap at 00:00), the window starts
  at the first instant of that local date. Days can be 23, 23.5, 24, 24.5 or 25 hours long.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from tokenward.errors import ConfigurationError

__all__ = ["Window", "WindowSpan", "calendar_span", "resolve_timezone"]

WindowKind = Literal["request", "conversation", "rolling", "day", "week", "month"]
_CALENDAR = ("day", "week", "month")
_UTC = timezone.utc


def resolve_timezone(name: str | ZoneInfo | timezone) -> ZoneInfo | timezone:
    """An IANA timezone by name (``"Europe/Berlin"``); ``ConfigurationError`` if unknown."""
    if isinstance(name, (ZoneInfo, timezone)):
        return name
    if not isinstance(name, str) or not name:
        raise ConfigurationError(
            f"timezone must be an IANA name such as 'UTC' or 'Europe/Berlin', got {name!r}."
        )
    if name.upper() == "UTC":
        return _UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ConfigurationError(
            f"Unknown timezone {name!r}. Use an IANA name such as 'UTC', 'Europe/Berlin' or "
            f"'America/New_York' (install the `tzdata` package if your system has no tz database)."
        ) from None


def _local_start(d: date, tz: ZoneInfo | timezone) -> datetime:
    """The first UTC instant whose local date is ``d`` (local midnight, or the end of a DST gap)."""
    naive = datetime(d.year, d.month, d.day)
    # fold=0 on a nonexistent time uses the pre-transition offset, which maps 00:00 to the
    # instant of the transition itself: exactly the first instant of the day.
    utc = naive.replace(tzinfo=tz).astimezone(_UTC)
    local = utc.astimezone(tz)
    if local.date() < d:  # pragma: no cover - defensive (never observed with zoneinfo)
        utc += timedelta(hours=1)
    # If the previous day ran past midnight (a fold at 00:00, fold=0 = first occurrence), the
    # first occurrence is still the first instant of the local date: nothing to do.
    return utc


def calendar_span(
    kind: str, now: datetime, tz: ZoneInfo | timezone
) -> tuple[date, datetime, datetime]:
    """``(local start date, start UTC, end UTC)`` of the calendar window containing ``now``."""
    local = now.astimezone(tz)
    d = local.date()
    if kind == "day":
        start_d, end_d = d, d + timedelta(days=1)
    elif kind == "week":
        start_d = d - timedelta(days=d.weekday())
        end_d = start_d + timedelta(days=7)
    elif kind == "month":
        start_d = d.replace(day=1)
        end_d = date(d.year + (d.month == 12), d.month % 12 + 1, 1)
    else:  # pragma: no cover - guarded by Window
        raise ConfigurationError(f"{kind!r} is not a calendar window")
    start, end = _local_start(start_d, tz), _local_start(end_d, tz)
    if now.astimezone(_UTC) < start:  # pragma: no cover - defensive
        return calendar_span(kind, now + timedelta(hours=1), tz)
    return start_d, start, end


@dataclass(frozen=True)
class WindowSpan:
    """One counter bucket of a window: its key suffix and the instants it covers (UTC)."""

    key: str
    start: datetime | None
    end: datetime | None  # when this bucket leaves the window / the window resets; None = never


@dataclass(frozen=True)
class Window:
    """How spend accumulates over time. Build with the classmethods or pass a string/timedelta
    to ``Budget(window=...)``: ``"request"``, ``"conversation"``, ``"day"``, ``"week"``,
    ``"month"``, or a ``timedelta`` for a rolling window."""

    kind: WindowKind
    length: timedelta | None = None
    buckets: int = 60

    # -- constructors -------------------------------------------------------------------
    @classmethod
    def request(cls) -> Window:
        """Each call on its own: the call's reservation must fit the limit."""
        return cls("request")

    @classmethod
    def conversation(cls) -> Window:
        """One counter per ``conversation_id`` that never resets."""
        return cls("conversation")

    @classmethod
    def rolling(cls, length: timedelta, buckets: int = 60) -> Window:
        """The last ``length`` of time in ``buckets`` buckets (granularity ``length/buckets``)."""
        return cls("rolling", length, buckets)

    @classmethod
    def day(cls) -> Window:
        """Calendar day, reset at local midnight in the budget's timezone."""
        return cls("day")

    @classmethod
    def week(cls) -> Window:
        """Calendar week, reset on Monday at local midnight."""
        return cls("week")

    @classmethod
    def month(cls) -> Window:
        """Calendar month, reset on the first at local midnight."""
        return cls("month")

    @classmethod
    def parse(cls, value: object) -> Window:
        """Accept a ``Window``, one of the kind names, or a ``timedelta`` (rolling)."""
        if isinstance(value, Window):
            return value
        if isinstance(value, timedelta):
            return cls.rolling(value)
        if isinstance(value, str) and value in ("request", "conversation", *_CALENDAR):
            return cls(value)  # type: ignore[arg-type]
        raise ConfigurationError(
            f"Unknown budget window {value!r}. Use 'request', 'conversation', 'day', 'week', "
            f"'month', a datetime.timedelta for a rolling window (e.g. timedelta(hours=24)), "
            f"or Window.rolling(length, buckets=60)."
        )

    def __post_init__(self) -> None:
        if self.kind not in ("request", "conversation", "rolling", *_CALENDAR):
            raise ConfigurationError(f"Unknown window kind {self.kind!r}.")
        if self.kind == "rolling":
            if not isinstance(self.length, timedelta) or self.length <= timedelta(0):
                raise ConfigurationError(
                    f"A rolling window needs a positive timedelta length, got {self.length!r}."
                )
            if (
                not isinstance(self.buckets, int)
                or isinstance(self.buckets, bool)
                or self.buckets < 1
            ):
                raise ConfigurationError(f"buckets must be a positive int, got {self.buckets!r}.")
            if self.granularity_ms < 1:
                raise ConfigurationError(
                    f"Rolling window {self.length} split into {self.buckets} buckets gives "
                    f"buckets shorter than 1 ms; use fewer buckets or a longer window."
                )

    # -- arithmetic ---------------------------------------------------------------------
    @property
    def accumulates(self) -> bool:
        """False for per-request windows (no counter is stored)."""
        return self.kind != "request"

    @property
    def granularity_ms(self) -> int:
        """Bucket length in whole milliseconds (rolling windows only)."""
        assert self.length is not None
        return (self.length // timedelta(milliseconds=1)) // self.buckets

    def spans(self, now: datetime, tz: ZoneInfo | timezone = _UTC) -> list[WindowSpan]:
        """Buckets whose sum is the spend of the window at ``now``; the LAST one is the current
        bucket (where new spend goes). Conversation windows return one span with key ``""``."""
        if self.kind in ("request", "conversation"):
            return [WindowSpan("", None, None)]
        if self.kind == "rolling":
            g = self.granularity_ms
            ms = (
                int(now.timestamp() * 1000)
                if now.tzinfo
                else int(now.replace(tzinfo=_UTC).timestamp() * 1000)
            )
            idx = ms // g
            out = []
            for i in range(idx - self.buckets + 1, idx + 1):
                start = datetime.fromtimestamp(i * g / 1000, _UTC)
                leaves = datetime.fromtimestamp((i + self.buckets) * g / 1000, _UTC)
                out.append(WindowSpan(f"r{g}:{i}", start, leaves))
            return out
        start_d, start, end = calendar_span(self.kind, now, tz)
        prefix = {"day": "d", "week": "w", "month": "m"}[self.kind]
        return [WindowSpan(f"{prefix}{start_d.isoformat()}", start, end)]

    def describe(self) -> str:
        """Human-readable name used in messages ('rolling 1 day, 0:00:00', 'day', ...)."""
        if self.kind == "rolling":
            return f"rolling {self.length}"
        return self.kind
