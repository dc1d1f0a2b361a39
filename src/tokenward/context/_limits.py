"""Context limit management: how full a conversation's window is, whether a message still
fits, what to do when it does not, and a session's summary with warnings.

* :func:`window_status`: tokens used and remaining in the model's window (keeping room for
  the reply), and how many more messages fit at the recent average message size.
* :func:`can_add`: whether a new message fits; when it does not, every remedy that works
  with its price, cheapest first: drop the oldest messages (free), summarize them (one
  summary call), or move to a larger-context model chosen from the catalog
  (:func:`tokenward.predict.select_models`).
* :func:`session_summary`: a conversation's calls, tokens, cost and cache use from the
  ledger, with warnings past 80 % of the window or a cost threshold.

Counts use the model's own tokenizer (``tokenward.counting``), or the ``counter`` given.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal

from tokenward.errors import ConfigurationError, ContextBudgetError
from tokenward.messages import Message

if TYPE_CHECKING:
    from tokenward.catalog import Catalog, ModelInfo
    from tokenward.counting import TokenCounter
    from tokenward.usage import Usage

__all__ = [
    "AddCheck",
    "Remedy",
    "SessionSummary",
    "WindowStatus",
    "can_add",
    "session_summary",
    "window_status",
]

_RECENT = 10  # messages the average message size is taken over
_SUMMARY_PROMPT = 60  # tokens of the instruction that asks for a summary


@dataclass(frozen=True)
class WindowStatus:
    """How full ``model``'s context window is.

    ``used``: tokens of the messages (as the model counts them); ``reserve_output``: tokens
    kept free for the reply; ``remaining``: ``window - reserve_output - used`` (may be
    negative); ``utilization``: ``used / (window - reserve_output)``; ``messages_remaining``:
    how many more messages of the recent average size fit (``None`` without messages);
    ``approaching``: utilization above the threshold asked for (default 80 %)."""

    model: str
    window: int
    reserve_output: int
    used: int
    remaining: int
    utilization: float
    average_message: int | None
    messages_remaining: int | None
    approaching: bool
    exact: bool


@dataclass(frozen=True)
class Remedy:
    """One way to make a message fit: ``kind`` ``"trim"`` (drop the ``drop_messages``
    oldest messages), ``"summarize"`` (replace them with a summary of ``summary_tokens``,
    written by one call on ``model``) or ``"switch_model"`` (send everything to ``model``,
    whose window holds it). ``cost`` is what the remedy costs in USD now (the summary call,
    or this call on the larger model; ``0`` for trimming); ``tokens_after`` what the prompt
    holds afterwards."""

    kind: Literal["trim", "summarize", "switch_model"]
    detail: str
    cost: Decimal | None
    tokens_after: int
    drop_messages: int = 0
    model: str | None = None
    summary_tokens: int = 0
    context_window: int | None = None


@dataclass(frozen=True)
class AddCheck:
    """The answer of :func:`can_add`: ``allowed`` when ``total`` (messages + the new one)
    fits in ``limit`` (the window minus the reply's reserve); otherwise ``excess`` tokens too
    many, ``remedy`` the cheapest of ``remedies`` (``None``: nothing works)."""

    allowed: bool
    used: int
    new_tokens: int
    total: int
    limit: int
    excess: int
    remedy: Remedy | None = None
    remedies: list[Remedy] = field(default_factory=list)

    def __bool__(self) -> bool:
        return self.allowed


def _setup(
    model: str, catalog: Catalog | None, counter: TokenCounter | None
) -> tuple[ModelInfo, Catalog, TokenCounter]:
    if catalog is None:
        from tokenward.catalog import default_catalog

        catalog = default_catalog()
    info = catalog.lookup(model)
    if not info.context_window:
        raise ConfigurationError(
            f"the catalog does not know {model!r}'s context window; pass a known model, or "
            f"register it with catalog.register(ModelInfo(..., context_window=...))"
        )
    if counter is None:
        from tokenward.counting import get_counter

        counter = get_counter(info.name, catalog=catalog)
    return info, catalog, counter


def _reserve(info: ModelInfo, reserve_output: int | None) -> int:
    if reserve_output is None:  # the convention of context.plan(): max output, <= 1/4 window
        return min(info.max_output or 0, info.context_window // 4)
    if reserve_output < 0:
        raise ConfigurationError(f"reserve_output must be >= 0, got {reserve_output}")
    return reserve_output


def _as_messages(messages: Iterable[Any]) -> list[Message]:
    return [m if isinstance(m, Message) else Message.from_openai(m) for m in messages]


def window_status(
    messages: Sequence[Any],
    model: str,
    *,
    reserve_output: int | None = None,
    threshold: float = 0.8,
    counter: TokenCounter | None = None,
    catalog: Catalog | None = None,
) -> WindowStatus:
    """How full ``model``'s window is with ``messages`` (dicts or :class:`~tokenward.Message`).

    ``reserve_output`` keeps room for the reply (default: the model's max output, at most a
    quarter of the window, as :func:`plan` does)."""
    info, _, counter = _setup(model, catalog, counter)
    msgs = _as_messages(messages)
    reserve = _reserve(info, reserve_output)
    limit = info.context_window - reserve
    used = counter.count_messages(msgs) if msgs else 0
    recent = msgs[-_RECENT:]
    avg = None
    if recent:
        avg = max(1, round(sum(counter.count_message(m) for m in recent) / len(recent)))
    remaining = limit - used
    utilization = used / limit if limit > 0 else 1.0
    return WindowStatus(
        model=info.name,
        window=info.context_window,
        reserve_output=reserve,
        used=used,
        remaining=remaining,
        utilization=utilization,
        average_message=avg,
        messages_remaining=max(0, remaining // avg) if avg else None,
        approaching=utilization > threshold,
        exact=bool(counter.exact),
    )


def _price(info: ModelInfo, input_tokens: int, output_tokens: int) -> Decimal | None:
    from tokenward.cost import estimate_nanos, from_nanos

    nanos = estimate_nanos(info, input_tokens, output_tokens)
    return None if nanos is None else from_nanos(nanos)


def can_add(
    messages: Sequence[Any],
    new: Any,
    model: str,
    *,
    reserve_output: int | None = None,
    summary_tokens: int = 500,
    summary_model: str | None = None,
    counter: TokenCounter | None = None,
    catalog: Catalog | None = None,
) -> AddCheck:
    """Whether ``new`` (a message dict or :class:`~tokenward.Message`) fits after
    ``messages`` in ``model``'s window, keeping ``reserve_output`` for the reply.

    When it does not, the remedies that work, cheapest first: ``trim`` (drop the oldest
    messages: free, the model forgets them), ``summarize`` (a ``summary_tokens`` summary of
    them written by ``summary_model``, default ``model``; priced), ``switch_model`` (the
    cheapest larger-context model of the same provider, else of any provider, whose window
    holds everything; priced for this call). Counts are ``model``'s; another model's
    tokenizer may count somewhat differently.
    """
    info, catalog, counter = _setup(model, catalog, counter)
    msgs = _as_messages(messages)
    added = _as_messages([new])[0]
    reserve = _reserve(info, reserve_output)
    limit = info.context_window - reserve
    used = counter.count_messages(msgs) if msgs else 0
    total = counter.count_messages([*msgs, added])
    new_tokens = total - used
    if total <= limit:
        return AddCheck(True, used, new_tokens, total, limit, 0)
    remedies: list[Remedy] = []
    kept = _trimmed(msgs, limit - new_tokens, counter)
    after = counter.count_messages([*kept, added]) if kept is not None else total
    if kept is not None and len(kept) < len(msgs) and after <= limit:
        dropped = len(msgs) - len(kept)
        remedies.append(
            Remedy(
                "trim",
                f"drop the {dropped} oldest messages (the model no longer sees them)",
                Decimal(0),
                after,
                drop_messages=dropped,
            )
        )
    summarizer = catalog.lookup(summary_model) if summary_model else info
    room = limit - new_tokens - summary_tokens
    kept = _trimmed(msgs, room, counter) if room > 0 else None
    after = counter.count_messages([*kept, added]) + summary_tokens if kept is not None else total
    if kept is not None and len(kept) < len(msgs) and after <= limit:
        gone = _dropped(msgs, kept)
        read = counter.count_messages(gone) + _SUMMARY_PROMPT
        remedies.append(
            Remedy(
                "summarize",
                f"summarize the {len(gone)} oldest messages ({read - _SUMMARY_PROMPT:,} tokens) "
                f"into ~{summary_tokens} tokens with {summarizer.name}",
                _price(summarizer, read, summary_tokens),
                after,
                drop_messages=len(gone),
                model=summarizer.name,
                summary_tokens=summary_tokens,
            )
        )
    remedies.extend(_larger_models(info, catalog, total, reserve))
    remedies.sort(key=lambda r: (r.cost is None, r.cost or Decimal(0), r.kind))
    return AddCheck(
        False,
        used,
        new_tokens,
        total,
        limit,
        total - limit,
        remedies[0] if remedies else None,
        remedies,
    )


def _trimmed(msgs: list[Message], budget: int, counter: TokenCounter) -> list[Message] | None:
    """The newest messages that fit ``budget`` (system message kept), or ``None``."""
    from tokenward.context._trim import trim_history

    if budget <= 0:
        return None
    try:
        return trim_history(msgs, budget, counter)
    except ContextBudgetError:  # the system message alone does not fit
        return None


def _dropped(msgs: list[Message], kept: list[Message]) -> list[Message]:
    kept_ids = {id(m) for m in kept}
    return [m for m in msgs if id(m) not in kept_ids]


def _larger_models(info: ModelInfo, catalog: Catalog, total: int, reserve: int) -> list[Remedy]:
    from tokenward.predict import select_models

    def pick(provider: str | None) -> list[Remedy]:
        choices = select_models(
            catalog,
            min_context=total + reserve,
            min_output=reserve,
            input_tokens=total,
            output_tokens=reserve,
            provider=provider,
            mode=info.mode,
            exclude=(info.name,),
        )
        return [
            Remedy(
                "switch_model",
                f"switch to {c.name} ({c.info.context_window:,}-token window); this call "
                f"would cost about ${c.cost:.4f} there",
                c.cost,
                total,
                model=c.name,
                context_window=c.info.context_window,
            )
            for c in choices[:1]
        ]

    return pick(info.provider) or pick(None)


# ----------------------------------------------------------------------------- sessions
@dataclass(frozen=True)
class SessionSummary:
    """A session's (or conversation's) totals, efficiency and warnings.

    ``cost`` is ``None`` when a call could not be priced; ``cache_hit_rate`` is cache reads
    over input tokens; ``window`` is the current :class:`WindowStatus` when the session's
    messages and model were given; ``warnings`` are sentences naming what to do."""

    calls: int
    usage: Usage
    cost: Decimal | None
    tokens_per_call: int
    average_output: int
    cache_hit_rate: float
    window: WindowStatus | None
    warnings: list[str]


def session_summary(
    ledger_or_events: Any,
    *,
    conversation_id: str | None = None,
    session_id: str | None = None,
    messages: Sequence[Any] | None = None,
    model: str | None = None,
    window_warning: float = 0.8,
    cost_warning: Decimal | str | None = Decimal(10),
    counter: TokenCounter | None = None,
    catalog: Catalog | None = None,
) -> SessionSummary:
    """Summarize a session from a ledger (filtered by ``conversation_id`` / ``session_id``)
    or an iterable of events, with warnings: the window is past ``window_warning`` (when
    ``messages`` and ``model`` are given), the cost is above ``cost_warning`` USD."""
    from tokenward.usage import Usage

    if hasattr(ledger_or_events, "events"):
        where = {
            k: v
            for k, v in (("conversation_id", conversation_id), ("session_id", session_id))
            if v is not None
        }
        events = list(ledger_or_events.events(where=where or None))
    else:
        events = list(ledger_or_events)
    usage = Usage()
    total_cost: Decimal | None = Decimal(0)
    for e in events:
        usage = usage + e.usage
        if e.cost is None or total_cost is None:
            total_cost = None
        else:
            total_cost += e.cost
    calls = len(events)
    window = None
    warnings = []
    if messages is not None and model is not None:
        window = window_status(
            messages, model, threshold=window_warning, counter=counter, catalog=catalog
        )
        if window.approaching:
            warnings.append(
                f"context window {window.utilization:.0%} full ({window.used:,} of "
                f"{window.window - window.reserve_output:,} tokens, about "
                f"{window.messages_remaining} messages left): trim or summarize the history "
                "(tokenward.context.trim_history) or move to a larger-context model"
            )
    limit = None if cost_warning is None else Decimal(str(cost_warning))
    if limit is not None and total_cost is not None and total_cost > limit:
        warnings.append(
            f"high cost session: ${total_cost:.2f} (above ${limit}); check the advisor "
            "(tokenward report) for a cheaper model or prompt caching"
        )
    if total_cost is None:
        warnings.append(
            "some calls have no known price, so the cost is incomplete; price the model with "
            "catalog.register(...) or `tokenward models update`"
        )
    return SessionSummary(
        calls=calls,
        usage=usage,
        cost=total_cost,
        tokens_per_call=usage.total // calls if calls else 0,
        average_output=usage.output // calls if calls else 0,
        cache_hit_rate=usage.cache_read / usage.input if usage.input else 0.0,
        window=window,
        warnings=warnings,
    )
