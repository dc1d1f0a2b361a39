"""UsageEvent: one model call, as the ledger stores it, and its storage row codec."""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from types import EllipsisType, MappingProxyType
from typing import Any, Literal

from tokenward._memo import remember
from tokenward.cost import from_nanos, to_nanos
from tokenward.usage import TOKEN_FIELDS, Usage

__all__ = ["EventKind", "EventStatus", "UsageEvent", "event_tags", "from_nanos", "to_nanos"]

EventStatus = Literal["ok", "error", "cancelled"]
EventKind = Literal["chat", "completion", "embedding"]

_STATUSES = ("ok", "error", "cancelled")
_KINDS = ("chat", "completion", "embedding")
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MICRO = timedelta(microseconds=1)
_EMPTY: Mapping[str, str] = MappingProxyType({})

# Usage token fields, in storage order (the ``estimated`` flag is stored separately).
USAGE_FIELDS = TOKEN_FIELDS

#: Optional text fields: ``""`` is stored as ``None`` (dimensions a report groups by).
_OPTIONAL_TEXT = (
    "provider",
    "user_id",
    "conversation_id",
    "session_id",
    "agent",
    "parent_id",
    "price_source",
)
#: Optional text fields kept exactly as given (content and error text).
_FREE_TEXT = ("error", "prompt", "output")


def to_micros(ts: datetime) -> int:
    """A tz-aware datetime -> integer microseconds since the Unix epoch (UTC)."""
    return (ts - _EPOCH) // _MICRO


def from_micros(us: int) -> datetime:
    """Integer microseconds since the Unix epoch -> tz-aware UTC datetime."""
    return _EPOCH + timedelta(microseconds=us)


class _Carried:
    """What an event carries beside its fields: ``cost`` in integer nano-USD as the call
    was priced (``...``: not known yet, derived from ``cost`` on first read of
    ``cost_nanos``), so the ledger stores the integer it was computed from."""

    __slots__ = ("_nanos",)
    _nanos: int | EllipsisType | None


@dataclass(frozen=True, slots=True, init=False)
class UsageEvent(_Carried):
    """One model call, priced: what it used, what it cost, and who it belongs to.

    ``id`` is the call's run id; ledgers store each id once (recording the same
    event twice is a no-op). ``timestamp`` must be timezone-aware (converted to
    UTC). ``cost`` is a :class:`~decimal.Decimal` in USD, or ``None`` when nobody
    could price the call (an unknown model): stored as NULL, never as $0, and
    counted by reports as unpriced. Costs are stored as integer nano-USD, so
    precision below 1e-9 USD is rounded half-even on storage. ``price_source``
    names the price data that priced it; ``provider_cost`` is what the provider
    itself reported (e.g. OpenRouter's ``usage.cost``), kept beside ``cost`` and
    never mixed into it (a ``usage.reported_cost`` becomes ``provider_cost``).
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

    def __init__(
        self,
        id: str,
        timestamp: datetime,
        model: str,
        provider: str | None,
        usage: Usage,
        cost: Decimal | None,
        estimated: bool = False,
        status: EventStatus = "ok",
        kind: EventKind = "chat",
        user_id: str | None = None,
        conversation_id: str | None = None,
        session_id: str | None = None,
        agent: str | None = None,
        tags: Mapping[str, str] = _EMPTY,
        tool_calls: int = 0,
        tool_names: tuple[str, ...] = (),
        latency_ms: float | None = None,
        parent_id: str | None = None,
        error: str | None = None,
        prompt: str | None = None,
        output: str | None = None,
        price_source: str | None = None,
        provider_cost: Decimal | None = None,
        *,
        cost_nanos: int | None = None,
    ) -> None:
        # The one constructor. Each field is checked once; a value already in its normal form
        # (what the Accountant and the ledgers pass) costs one type test, anything else is
        # normalized or refused by the helpers below. Fields are stored through the slots'
        # own setters (_SET), as object.__setattr__ would, at half its cost.
        if type(id) is not str or not id:
            id = _required_text("id", id, "the run id")
        if type(model) is not str or not model:
            model = _required_text("model", model, "the model name")
        if type(timestamp) is not datetime or timestamp.tzinfo is not timezone.utc:
            timestamp = _utc(timestamp)
        if type(usage) is not Usage and not isinstance(usage, Usage):
            raise TypeError(f"UsageEvent.usage must be a Usage, got {type(usage).__name__}")
        nanos: int | EllipsisType | None = ...
        if cost_nanos is not None:
            # priced in integer nano-USD (the Accountant): the Decimal is derived from it, and
            # the integer is carried to the ledger, which stores it as it is
            if cost is not None or type(cost_nanos) is not int:
                _nanos_refused(cost, cost_nanos)
            nanos = cost_nanos
            cost = Decimal(cost_nanos).scaleb(-9)
        elif cost is not None and (type(cost) is not Decimal or not cost.is_finite()):
            cost = _money("cost", cost)
        if provider_cost is not None and (
            type(provider_cost) is not Decimal or not provider_cost.is_finite()
        ):
            provider_cost = _money("provider_cost", provider_cost)
        if usage.reported_cost is not None:
            # one home for the provider's own figure: the event's provider_cost
            if provider_cost is not None and provider_cost != usage.reported_cost:
                raise ValueError(
                    f"UsageEvent.provider_cost ({provider_cost}) differs from "
                    f"usage.reported_cost ({usage.reported_cost}); pass one of them"
                )
            provider_cost = usage.reported_cost
            usage = replace(usage, reported_cost=None)
        if status not in _STATUSES:
            raise ValueError(f"UsageEvent.status must be one of {_STATUSES}, got {status!r}")
        if kind not in _KINDS:
            raise ValueError(f"UsageEvent.kind must be one of {_KINDS}, got {kind!r}")
        if provider is not None and (type(provider) is not str or not provider):
            provider = _optional_text("provider", provider)
        if user_id is not None and (type(user_id) is not str or not user_id):
            user_id = _optional_text("user_id", user_id)
        if conversation_id is not None and (
            type(conversation_id) is not str or not conversation_id
        ):
            conversation_id = _optional_text("conversation_id", conversation_id)
        if session_id is not None and (type(session_id) is not str or not session_id):
            session_id = _optional_text("session_id", session_id)
        if agent is not None and (type(agent) is not str or not agent):
            agent = _optional_text("agent", agent)
        if parent_id is not None and (type(parent_id) is not str or not parent_id):
            parent_id = _optional_text("parent_id", parent_id)
        if price_source is not None and (type(price_source) is not str or not price_source):
            price_source = _optional_text("price_source", price_source)
        if error is not None and type(error) is not str:
            error = _free_text("error", error)
        if prompt is not None and type(prompt) is not str:
            prompt = _free_text("prompt", prompt)
        if output is not None and type(output) is not str:
            output = _free_text("output", output)
        if tags is not _EMPTY:
            tags = _tags(tags)
        if tool_names:
            if type(tool_names) is not tuple or any(type(n) is not str for n in tool_names):
                tool_names = _names(tool_names)
        elif tool_names != ():
            tool_names = ()
        if type(tool_calls) is not int or tool_calls < 0:
            raise ValueError(f"UsageEvent.tool_calls must be an int >= 0, got {tool_calls!r}")
        if latency_ms is not None and (
            type(latency_ms) is not float or not math.isfinite(latency_ms)
        ):
            latency_ms = _latency(latency_ms)
        if type(estimated) is not bool:
            if type(estimated) is not int:
                raise TypeError(f"UsageEvent.estimated must be a bool, got {estimated!r}")
            estimated = bool(estimated)
        if usage.estimated:
            estimated = True
        (
            set_id, set_timestamp, set_model, set_provider, set_usage, set_cost, set_estimated,
            set_status, set_kind, set_user_id, set_conversation_id, set_session_id, set_agent,
            set_tags, set_tool_calls, set_tool_names, set_latency_ms, set_parent_id, set_error,
            set_prompt, set_output, set_price_source, set_provider_cost,
        ) = _SET  # fmt: skip
        set_id(self, id)
        set_timestamp(self, timestamp)
        set_model(self, model)
        set_provider(self, provider)
        set_usage(self, usage)
        set_cost(self, cost)
        set_estimated(self, estimated)
        set_status(self, status)
        set_kind(self, kind)
        set_user_id(self, user_id)
        set_conversation_id(self, conversation_id)
        set_session_id(self, session_id)
        set_agent(self, agent)
        set_tags(self, tags)
        set_tool_calls(self, tool_calls)
        set_tool_names(self, tool_names)
        set_latency_ms(self, latency_ms)
        set_parent_id(self, parent_id)
        set_error(self, error)
        set_prompt(self, prompt)
        set_output(self, output)
        set_price_source(self, price_source)
        set_provider_cost(self, provider_cost)
        _SET_NANOS(self, nanos)

    # -- convenience ---------------------------------------------------------------

    @classmethod
    def create(
        cls,
        model: str,
        usage: Usage,
        cost: Decimal | int | str | None,
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
            cost=cost,  # type: ignore[arg-type]  # normalized by the constructor
            **fields,
        )

    @property
    def cost_nanos(self) -> int | None:
        """The cost in integer nano-USD, as stored (``None`` when unpriced): the integer the
        call was priced in when the event was built from it, else ``cost`` rounded half-even
        (computed once)."""
        try:
            nanos = self._nanos
        except AttributeError:  # a copy or an unpickled event: only its fields were copied
            nanos = ...
        if nanos is ...:
            nanos = None if self.cost is None else to_nanos(self.cost)
            _SET_NANOS(self, nanos)
        return nanos

    @property
    def priced(self) -> bool:
        """Whether the call has a cost (``False`` for a model nobody could price)."""
        return self.cost is not None

    def stored(self) -> UsageEvent:
        """This event as a ledger returns it (money rounded to whole nano-USD)."""
        cost, provider_cost = self.cost, self.provider_cost
        whole = getattr(self, "_nanos", ...) is not ... or _whole_nanos(cost)  # nanos: whole
        if whole and (provider_cost is None or _whole_nanos(provider_cost)):
            return self
        return replace(
            self,
            cost=None if cost is None else from_nanos(to_nanos(cost)),
            provider_cost=None if provider_cost is None else from_nanos(to_nanos(provider_cost)),
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict (money as strings or ``None``, timestamp ISO 8601)."""
        return {
            "id": self.id,
            "timestamp": self.timestamp.isoformat(),
            "model": self.model,
            "provider": self.provider,
            "usage": self.usage.to_dict(),
            "cost": None if self.cost is None else str(self.cost),
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
            "price_source": self.price_source,
            "provider_cost": None if self.provider_cost is None else str(self.provider_cost),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> UsageEvent:
        """Inverse of :meth:`to_dict` (also reads dicts written before a field existed)."""
        d = dict(data)
        d["timestamp"] = datetime.fromisoformat(d["timestamp"])
        usage = dict(d["usage"])
        if usage.get("reported_cost") is not None:
            usage["reported_cost"] = Decimal(str(usage["reported_cost"]))
        d["usage"] = Usage(**usage)
        for name in ("cost", "provider_cost"):
            if d.get(name) is not None:
                d[name] = Decimal(str(d[name]))
        d.setdefault("cost", None)
        d["tool_names"] = tuple(d.get("tool_names") or ())
        d["tags"] = d.get("tags") or {}
        return cls(**d)


#: The slots' setters, in field order (what UsageEvent.__init__ stores through).
_SET: tuple[Callable[[UsageEvent, Any], None], ...] = tuple(
    getattr(UsageEvent, f.name).__set__ for f in fields(UsageEvent)
)
_SET_NANOS: Callable[[UsageEvent, int | EllipsisType | None], None] = _Carried.__dict__[
    "_nanos"
].__set__


# -- normalizers (called only for a value not already in normal form) ---------------------


def _nanos_refused(cost: object, cost_nanos: object) -> None:
    if cost is not None:
        raise ValueError("UsageEvent: pass cost (USD) or cost_nanos (nano-USD), not both")
    raise TypeError(f"UsageEvent.cost_nanos must be an int or None, got {cost_nanos!r}")


def _required_text(name: str, value: object, what: str) -> str:
    if isinstance(value, str) and value:
        return str(value)
    raise ValueError(f"UsageEvent.{name} must be a non-empty str ({what}), got {value!r}")


def _optional_text(name: str, value: object) -> str | None:
    if value == "":
        return None
    if isinstance(value, str):
        return str(value)
    raise TypeError(f"UsageEvent.{name} must be a str or None, got {type(value).__name__}")


def _free_text(name: str, value: object) -> str:
    if isinstance(value, str):
        return str(value)
    raise TypeError(f"UsageEvent.{name} must be a str or None, got {type(value).__name__}")


def _utc(ts: object) -> datetime:
    if not isinstance(ts, datetime):
        raise TypeError(f"UsageEvent.timestamp must be a datetime, got {type(ts).__name__}")
    if ts.tzinfo is None or ts.utcoffset() is None:
        raise ValueError(
            "UsageEvent.timestamp must be timezone-aware; "
            "use datetime.now(timezone.utc) or attach tzinfo=timezone.utc"
        )
    utc = ts.astimezone(timezone.utc)
    return datetime(
        utc.year,
        utc.month,
        utc.day,
        utc.hour,
        utc.minute,
        utc.second,
        utc.microsecond,
        tzinfo=timezone.utc,
    )


def _money(name: str, value: object) -> Decimal:
    if isinstance(value, (float, bool)):
        raise TypeError(f"UsageEvent.{name} must be a Decimal (money is never a float)")
    if isinstance(value, (int, str)):
        try:
            value = Decimal(value)
        except ArithmeticError:
            raise ValueError(f"UsageEvent.{name} is not a number: {value!r}") from None
    if not isinstance(value, Decimal) or not value.is_finite():
        raise TypeError(f"UsageEvent.{name} must be a finite Decimal or None, got {value!r}")
    return value


def _whole_nanos(value: Decimal | None) -> bool:
    if value is None:
        return True
    exponent = value.as_tuple().exponent
    return isinstance(exponent, int) and exponent >= -9


# read-only tag mappings made by event_tags, by id: handed to a new event, they are kept as
# they are (bounded like the JSON caches; the entries keep them alive, so an id is never reused)
_made_tags: dict[int, Mapping[str, str]] = {}


def _tags(tags: object) -> Mapping[str, str]:
    if type(tags) is MappingProxyType and _made_tags.get(id(tags)) is tags:
        return tags  # made by event_tags: already checked, sorted and read-only
    if tags is None:
        return _EMPTY
    if not isinstance(tags, Mapping):
        raise TypeError("UsageEvent.tags must be a mapping of str -> str")
    if not tags:
        return _EMPTY
    for k, v in tags.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise TypeError(f"UsageEvent.tags must map str -> str, got {k!r}: {v!r}")
    return MappingProxyType({str(k): str(tags[k]) for k in sorted(tags)})


def event_tags(tags: Mapping[str, str] | None) -> Mapping[str, str]:
    """``tags`` as events keep them: sorted, read-only, checked to map str to str (raises
    ``TypeError`` otherwise). An event given the result keeps it without a copy: for tags
    shared by many events (a call's resolved dimensions)."""
    made = _tags(tags)
    if made is not _EMPTY and _made_tags.get(id(made)) is not made:
        remember(_made_tags, id(made), made, _CACHE_MAX)
    return made


def _names(names: object) -> tuple[str, ...]:
    if isinstance(names, (str, bytes)) or not isinstance(names, Sequence):
        raise TypeError(f"UsageEvent.tool_names must be a sequence of str, got {names!r}")
    for n in names:
        if not isinstance(n, str):
            raise TypeError(f"UsageEvent.tool_names must contain str, got {n!r}")
    return tuple(str(n) for n in names)


def _latency(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"UsageEvent.latency_ms must be a number or None, got {value!r}")
    latency = float(value)
    if not math.isfinite(latency):
        raise ValueError(f"UsageEvent.latency_ms must be finite, got {value!r}")
    return latency


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
    "price_source",
    "provider_cost_nanos",
)

_json = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode

# Encoded and decoded tags / tool-name JSON, keyed by content: a ledger sees the same few
# tag sets and tool lists over and over. Bounded: cleared when one grows past _CACHE_MAX.
_CACHE_MAX = 4096
_tags_json: dict[tuple[tuple[str, str], ...], str] = {}
_names_json: dict[tuple[str, ...], str] = {}
_tags_decoded: dict[str, dict[str, str]] = {}
_names_decoded: dict[str, tuple[str, ...]] = {}


def _encode_tags(tags: Mapping[str, str]) -> str:
    key = tuple(tags.items())
    text = _tags_json.get(key)
    if text is None:
        text = remember(_tags_json, key, _json(dict(tags)), _CACHE_MAX)
    return text


def _encode_names(names: tuple[str, ...]) -> str:
    text = _names_json.get(names)
    if text is None:
        text = remember(_names_json, names, _json(list(names)), _CACHE_MAX)
    return text


def _decode_tags(text: str | None) -> Mapping[str, str]:
    if not text or text == "{}":
        return _EMPTY
    tags = _tags_decoded.get(text)
    if tags is None:
        tags = remember(_tags_decoded, text, json.loads(text), _CACHE_MAX)
    return tags


def _decode_names(text: str | None) -> tuple[str, ...]:
    if not text or text == "[]":
        return ()
    names = _names_decoded.get(text)
    if names is None:
        names = remember(_names_decoded, text, tuple(json.loads(text)), _CACHE_MAX)
    return names


def event_to_row(e: UsageEvent) -> tuple[Any, ...]:
    """Encode an event as a storage row (see :data:`EVENT_COLUMNS`)."""
    u = e.usage
    provider_cost = e.provider_cost
    tags, names = e.tags, e.tool_names  # most events have neither: no encoder call then
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
        e.cost_nanos,
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
        e.price_source,
        None if provider_cost is None else to_nanos(provider_cost),
    )


def row_to_event(r: Sequence[Any]) -> UsageEvent:
    """Decode a storage row (in :data:`EVENT_COLUMNS` order) through the constructor."""
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
        price_source,
        provider_nanos,
    ) = r
    return UsageEvent(
        id=id_,
        timestamp=_EPOCH + timedelta(microseconds=ts_us),
        model=model,
        provider=provider,
        usage=Usage(inp, out, cr, cw5, cw1, rsn, ai, ao, ii, bool(uest)),
        cost=None if nanos is None else from_nanos(nanos),
        estimated=bool(est),
        status=status,
        kind=kind,
        user_id=user_id,
        conversation_id=conv,
        session_id=sess,
        agent=agent,
        tags=_decode_tags(tags),
        tool_calls=tool_calls,
        tool_names=_decode_names(tool_names),
        latency_ms=latency,
        parent_id=parent,
        error=error,
        prompt=prompt,
        output=output,
        price_source=price_source,
        provider_cost=None if provider_nanos is None else from_nanos(provider_nanos),
    )
