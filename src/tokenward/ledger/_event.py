"""UsageEvent: one priced model call, as the ledger stores it."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from types import MappingProxyType
from typing import Any, Literal

from tokenward.cost import from_nanos, to_nanos
from tokenward.usage import TOKEN_FIELDS, Usage

__all__ = ["EventKind", "EventStatus", "UsageEvent", "from_nanos", "to_nanos"]

EventStatus = Literal["ok", "error", "cancelled"]
EventKind = Literal["chat", "completion", "embedding"]

_STATUSES = ("ok", "error", "cancelled")
_KINDS = ("chat", "completion", "embedding")
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MICRO = timedelta(microseconds=1)
_EMPTY: Mapping[str, str] = MappingProxyType({})

# Usage token fields, in storage order (the ``estimated`` flag is stored separately).
USAGE_FIELDS = TOKEN_FIELDS


def to_micros(ts: datetime) -> int:
    """A tz-aware datetime -> integer microseconds since the Unix epoch (UTC)."""
    return (ts - _EPOCH) // _MICRO


def from_micros(us: int) -> datetime:
    """Integer microseconds since the Unix epoch -> tz-aware UTC datetime."""
    return _EPOCH + timedelta(microseconds=us)


def _normalized_opt(value: object) -> bool:
    """True when ``_opt_str`` would return ``value`` itself (None or a non-empty str)."""
    return value is None or (type(value) is str and value != "")


def _opt_str(name: str, value: object) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise TypeError(f"UsageEvent.{name} must be a str or None, got {type(value).__name__}")
    return value


@dataclass(frozen=True)
class UsageEvent:
    """One model call, priced: what it used, what it cost, and who it belongs to.

    ``id`` is the call's run id; ledgers store each id once (recording the same
    event twice is a no-op). ``timestamp`` must be timezone-aware (converted to
    UTC). ``cost`` is a :class:`~decimal.Decimal` in USD (stored as integer
    nano-USD, so precision below 1e-9 USD is rounded half-even on storage).
    ``estimated`` is true when any count was estimated locally (it is forced on
    when ``usage.estimated`` is).

    Dimensions (``user_id``, ``conversation_id``, ``session_id``, ``agent``,
    ``tags``) are what reports group and filter by; empty strings are treated
    as ``None``. ``prompt`` and ``output`` hold content only when the user
    opted in to storing it.
    """

    id: str
    timestamp: datetime
    model: str
    provider: str | None
    usage: Usage
    cost: Decimal | None
    estimated: bool = False
    status: EventStatus = "ok"
    kind: EventKind = "chat"
    user_id: str | None = None
    conversation_id: str | None = None
    session_id: str | None = None
    agent: str | None = None
    tags: Mapping[str, str] = field(default_factory=lambda: _EMPTY)
    tool_calls: int = 0
    tool_names: tuple[str, ...] = ()
    latency_ms: float | None = None
    parent_id: str | None = None
    error: str | None = None
    prompt: str | None = None
    output: str | None = None
    price_source: str | None = None
    provider_cost: Decimal | None = None

    def __post_init__(self) -> None:
        # NOTE: ``row_to_event`` builds events from stored rows without calling this;
        # a new normalization here must be mirrored there (tests/test_ledger.py checks both agree).
        setattr_ = object.__setattr__
        ts = self.timestamp
        latency = self.latency_ms
        if (
            # fast path: every scalar already in its normalized form (what the Accountant and
            # the stores build); the checks below would change nothing
            type(self.id) is str
            and self.id
            and type(self.model) is str
            and self.model
            and type(ts) is datetime
            and ts.tzinfo is timezone.utc
            and type(self.usage) is Usage
            and type(self.cost) is Decimal
            and self.cost.is_finite()
            and self.provider_cost is None
            and self.status in _STATUSES
            and self.kind in _KINDS
            and _normalized_opt(self.provider)
            and _normalized_opt(self.user_id)
            and _normalized_opt(self.conversation_id)
            and _normalized_opt(self.session_id)
            and _normalized_opt(self.agent)
            and _normalized_opt(self.parent_id)
            and type(self.tool_calls) is int
            and self.tool_calls >= 0
            and type(self.tool_names) is tuple
            and (latency is None or type(latency) is float)
        ):
            tags = self.tags
            if tags is None or (type(tags) is dict and not tags):
                setattr_(self, "tags", _EMPTY)
            elif tags is not _EMPTY:
                self._set_tags(tags)
            if self.usage.estimated and not self.estimated:
                setattr_(self, "estimated", True)
            return
        if not isinstance(self.id, str) or not self.id:
            raise ValueError("UsageEvent.id must be a non-empty str (the run id)")
        if not isinstance(self.model, str) or not self.model:
            raise ValueError("UsageEvent.model must be a non-empty str")
        ts = self.timestamp
        if not isinstance(ts, datetime):
            raise TypeError(f"UsageEvent.timestamp must be a datetime, got {type(ts).__name__}")
        if ts.tzinfo is None or ts.utcoffset() is None:
            raise ValueError(
                "UsageEvent.timestamp must be timezone-aware; "
                "use datetime.now(timezone.utc) or attach tzinfo=timezone.utc"
            )
        if ts.utcoffset() != timedelta(0) or ts.tzinfo is not timezone.utc:
            setattr_(self, "timestamp", ts.astimezone(timezone.utc))
        if not isinstance(self.usage, Usage):
            raise TypeError(f"UsageEvent.usage must be a Usage, got {type(self.usage).__name__}")
        cost = self.cost
        if isinstance(cost, float) or isinstance(cost, bool):
            raise TypeError("UsageEvent.cost must be a Decimal (money is never a float)")
        if isinstance(cost, (int, str)):
            cost = Decimal(cost)
            setattr_(self, "cost", cost)
        if cost is not None and (not isinstance(cost, Decimal) or not cost.is_finite()):
            raise TypeError(f"UsageEvent.cost must be a finite Decimal or None, got {cost!r}")
        provider_cost = self.provider_cost
        if provider_cost is not None and (
            not isinstance(provider_cost, Decimal) or not provider_cost.is_finite()
        ):
            raise TypeError(
                f"UsageEvent.provider_cost must be a finite Decimal or None, got {provider_cost!r}"
            )
        if self.status not in _STATUSES:
            raise ValueError(f"UsageEvent.status must be one of {_STATUSES}, got {self.status!r}")
        if self.kind not in _KINDS:
            raise ValueError(f"UsageEvent.kind must be one of {_KINDS}, got {self.kind!r}")
        for name in ("provider", "user_id", "conversation_id", "session_id", "agent", "parent_id"):
            value = getattr(self, name)
            norm = _opt_str(name, value)
            if norm is not value:
                setattr_(self, name, norm)
        tags = self.tags
        if tags is None or (isinstance(tags, Mapping) and not tags):
            setattr_(self, "tags", _EMPTY)
        else:
            self._set_tags(tags)
        if type(self.tool_calls) is not int or self.tool_calls < 0:
            raise ValueError(f"UsageEvent.tool_calls must be an int >= 0, got {self.tool_calls!r}")
        if not isinstance(self.tool_names, tuple):
            setattr_(self, "tool_names", tuple(self.tool_names))
        if self.latency_ms is not None:
            if isinstance(self.latency_ms, bool) or not isinstance(self.latency_ms, (int, float)):
                raise TypeError("UsageEvent.latency_ms must be a number or None")
            setattr_(self, "latency_ms", float(self.latency_ms))
        if self.usage.estimated and not self.estimated:
            setattr_(self, "estimated", True)

    def _set_tags(self, tags: object) -> None:
        if not isinstance(tags, Mapping):
            raise TypeError("UsageEvent.tags must be a mapping of str -> str")
        clean = {}
        for k, v in tags.items():
            if not isinstance(k, str) or not isinstance(v, str):
                raise TypeError(f"UsageEvent.tags must map str -> str, got {k!r}: {v!r}")
            clean[k] = v
        object.__setattr__(self, "tags", MappingProxyType(dict(sorted(clean.items()))))

    # -- convenience ---------------------------------------------------------------

    @classmethod
    def create(
        cls,
        model: str,
        usage: Usage,
        cost: Decimal | int | str,
        *,
        id: str | None = None,
        timestamp: datetime | None = None,
        provider: str | None = None,
        **fields: Any,
    ) -> UsageEvent:
        """Build an event with a fresh id (uuid4) and ``timestamp=now`` unless given."""
        return cls(
            id=id or uuid.uuid4().hex,
            timestamp=timestamp or datetime.now(timezone.utc),
            model=model,
            provider=provider,
            usage=usage,
            cost=cost,  # type: ignore[arg-type]  # normalized in __post_init__
            **fields,
        )

    @property
    def cost_nanos(self) -> int:
        """The cost in integer nano-USD, as stored."""
        return to_nanos(self.cost)

    def stored(self) -> UsageEvent:
        """This event as a ledger returns it (cost rounded to whole nano-USD)."""
        quantized = from_nanos(self.cost_nanos)
        if quantized == self.cost and str(quantized) == str(self.cost):
            return self
        if type(self) is not UsageEvent:
            return replace(self, cost=quantized)
        # a copy with the rounded cost: every other field is already normalized, so
        # re-running __post_init__ (what replace() does) would change nothing
        copy = object.__new__(UsageEvent)
        copy.__dict__.update(self.__dict__)
        copy.__dict__["cost"] = quantized
        return copy

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict (cost as a string, timestamp ISO 8601)."""
        return {
            "id": self.id,
            "timestamp": self.timestamp.isoformat(),
            "model": self.model,
            "provider": self.provider,
            "usage": self.usage.to_dict(),
            "cost": str(self.cost),
            "estimated": self.estimated,
            "status": self.status,
            "kind": self.kind,
            "user_id": self.user_id,
            "conversation_id": self.conversation_id,
            "session_id": self.session_id,
            "agent": self.agent,
            "tags": dict(self.tags),
            "tool_calls": self.tool_calls,
            "tool_names": list(self.tool_names),
            "latency_ms": self.latency_ms,
            "parent_id": self.parent_id,
            "error": self.error,
            "prompt": self.prompt,
            "output": self.output,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> UsageEvent:
        """Inverse of :meth:`to_dict`."""
        d = dict(data)
        d["timestamp"] = datetime.fromisoformat(d["timestamp"])
        d["usage"] = Usage(**d["usage"])
        d["cost"] = Decimal(str(d["cost"]))
        d["tool_names"] = tuple(d.get("tool_names") or ())
        d["tags"] = d.get("tags") or {}
        return cls(**d)


# -- storage row codec (shared by the SQL stores) ---------------------------------------

#: Column names of the events table, in row order.
EVENT_COLUMNS = (
    "id",
    "ts_us",
    "model",
    "provider",
    *USAGE_FIELDS,
    "usage_estimated",
    "cost_nanos",
    "estimated",
    "status",
    "kind",
    "user_id",
    "conversation_id",
    "session_id",
    "agent",
    "tags",
    "tool_calls",
    "tool_names",
    "latency_ms",
    "parent_id",
    "error",
    "prompt_text",
    "output_text",
)


_json = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_loads = json.loads
_new = object.__new__
_int = int
_bool = bool

# Encoded tags / tool-name JSON, keyed by content: a ledger sees the same few tag sets
# and tool lists over and over. Bounded: cleared when it grows past _CACHE_MAX.
_CACHE_MAX = 4096
_tags_json: dict[tuple[tuple[str, str], ...], str] = {}
_names_json: dict[tuple[str, ...], str] = {}
_tags_decoded: dict[str, Mapping[str, str]] = {}
_names_decoded: dict[str, tuple[str, ...]] = {}


def _encode_tags(tags: Mapping[str, str]) -> str:
    key = tuple(tags.items())
    text = _tags_json.get(key)
    if text is None:
        text = _json(dict(tags))
        if len(_tags_json) >= _CACHE_MAX:
            _tags_json.clear()
        _tags_json[key] = text
    return text


def _encode_names(names: tuple[str, ...]) -> str:
    text = _names_json.get(names)
    if text is None:
        text = _json(list(names))
        if len(_names_json) >= _CACHE_MAX:
            _names_json.clear()
        _names_json[names] = text
    return text


def _decode_tags(text: str) -> Mapping[str, str]:
    # shared read-only proxies: UsageEvent.tags is immutable, so equal rows may share one
    tags = _tags_decoded.get(text)
    if tags is None:
        raw = _loads(text)
        tags = MappingProxyType(dict(sorted(raw.items()))) if raw else _EMPTY
        if len(_tags_decoded) >= _CACHE_MAX:
            _tags_decoded.clear()
        _tags_decoded[text] = tags
    return tags


def _decode_names(text: str) -> tuple[str, ...]:
    names = _names_decoded.get(text)
    if names is None:
        names = tuple(_loads(text))
        if len(_names_decoded) >= _CACHE_MAX:
            _names_decoded.clear()
        _names_decoded[text] = names
    return names


def event_to_row(e: UsageEvent) -> tuple[Any, ...]:
    """Encode an event as a storage row (see :data:`EVENT_COLUMNS`)."""
    u = e.usage
    tags = e.tags
    names = e.tool_names
    return (
        e.id,
        (e.timestamp - _EPOCH) // _MICRO,
        e.model,
        e.provider,
        u.input,
        u.output,
        u.cache_read,
        u.cache_write_5m,
        u.cache_write_1h,
        u.reasoning,
        u.audio_input,
        u.audio_output,
        u.image_input,
        1 if u.estimated else 0,
        to_nanos(e.cost),
        1 if e.estimated else 0,
        e.status,
        e.kind,
        e.user_id,
        e.conversation_id,
        e.session_id,
        e.agent,
        _encode_tags(tags) if tags else "{}",
        e.tool_calls,
        _encode_names(names) if names else "[]",
        e.latency_ms,
        e.parent_id,
        e.error,
        e.prompt,
        e.output,
    )


def row_to_event(r: Iterable[Any]) -> UsageEvent:
    """Decode a storage row (in :data:`EVENT_COLUMNS` order) into an event.

    Rows come from a ledger table that only this codec writes (every value was
    validated by :class:`UsageEvent` before it was stored), so the event is built
    without re-running ``__post_init__``: the fields are set exactly as validation
    would have left them (UTC timestamp, ``Decimal`` cost, sorted read-only tags,
    tuple of tool names, float latency, ``estimated`` forced on by an estimated usage).
    """
    (
        id_,
        ts_us,
        model,
        provider,
        inp,
        out,
        cr,
        cw5,
        cw1,
        rsn,
        ai,
        ao,
        ii,
        uest,
        nanos,
        est,
        status,
        kind,
        user_id,
        conv,
        sess,
        agent,
        tags,
        tool_calls,
        tool_names,
        latency,
        parent,
        error,
        prompt,
        output,
    ) = r
    uest = _bool(uest)
    usage = _new_usage(
        _int(inp),
        _int(out),
        _int(cr),
        _int(cw5),
        _int(cw1),
        _int(rsn),
        _int(ai),
        _int(ao),
        _int(ii),
        uest,
    )
    ev = _new(UsageEvent)
    _fill(
        ev,
        id=id_,
        timestamp=_EPOCH + timedelta(0, 0, _int(ts_us)),
        model=model,
        provider=provider or None,
        usage=usage,
        cost=from_nanos(_int(nanos)),
        estimated=_bool(est) or uest,
        status=status,
        kind=kind,
        user_id=user_id or None,
        conversation_id=conv or None,
        session_id=sess or None,
        agent=agent or None,
        tags=_EMPTY if not tags or tags == "{}" else _decode_tags(tags),
        tool_calls=_int(tool_calls),
        tool_names=() if not tool_names or tool_names == "[]" else _decode_names(tool_names),
        latency_ms=None if latency is None else float(latency),
        parent_id=parent or None,
        error=error,
        prompt=prompt,
        output=output,
    )
    return ev


_new_usage = Usage._trusted


def _fill_slots(ev: UsageEvent, **values: Any) -> None:  # pragma: no cover - slots variant
    for name, value in values.items():
        object.__setattr__(ev, name, value)


def _fill_dict(ev: UsageEvent, **values: Any) -> None:
    ev.__dict__.update(values)


# a frozen dataclass blocks setattr; its instance dict (if it has one) is the fast way in
_fill = _fill_slots if hasattr(UsageEvent, "__slots__") else _fill_dict
