"""``Budget``: one spending rule (limit, unit, window, scope, filter, mode, thresholds)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta, timezone
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Any, Literal
from zoneinfo import ZoneInfo

from tokenward._hygiene import bounded, clean
from tokenward.budgets._windows import Window, WindowSpan, resolve_timezone
from tokenward.errors import ConfigurationError

__all__ = ["GLOBAL_SCOPE", "NONE_VALUE", "Budget", "nanos_to_usd", "usd_to_nanos"]

GLOBAL_SCOPE = "*"
NONE_VALUE = "<none>"
_NANO = Decimal(1_000_000_000)


def usd_to_nanos(usd: Decimal) -> int:
    """Integer nano-USD, ROUND_HALF_EVEN (same rounding as ``tokenward.cost.to_nanos``)."""
    return int((usd * _NANO).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


def nanos_to_usd(nanos: int) -> Decimal:
    """Decimal USD from integer nano-USD (exact)."""
    return (Decimal(nanos) / _NANO).normalize() if nanos else Decimal(0)


def _escape(value: str) -> str:
    return value.replace("%", "%25").replace("|", "%7C").replace("=", "%3D")


def _usd(value: object, what: str, *, allow_zero: bool = False) -> Decimal:
    if isinstance(value, bool):
        raise ConfigurationError(f"{what} must be a Decimal amount in USD, got {value!r}.")
    try:
        if isinstance(value, float):
            d = Decimal(repr(value))
        else:
            d = Decimal(value)  # type: ignore[arg-type]
    except (InvalidOperation, TypeError, ValueError):
        raise ConfigurationError(
            f"{what} must be a Decimal amount in USD such as Decimal('5.00') or '5.00', got {value!r}."
        ) from None
    if not d.is_finite():
        raise ConfigurationError(f"{what} must be a finite amount in USD, got {value!r}.")
    if d < 0 or (d == 0 and not allow_zero):
        raise ConfigurationError(
            f"{what} must be greater than zero, got {value!r}. To block a scope entirely use "
            f"overrides={{key: 0}}; to only watch spend use mode='soft'."
        )
    if usd_to_nanos(d) == 0 and d != 0:
        raise ConfigurationError(f"{what} {value!r} is below one nano-USD; use a larger amount.")
    return d


def _tokens(value: object, what: str, *, allow_zero: bool = False) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigurationError(f"{what} must be a whole number of tokens, got {value!r}.")
    if value < 0 or (value == 0 and not allow_zero):
        raise ConfigurationError(
            f"{what} must be greater than zero, got {value!r}. To block a scope entirely use "
            f"overrides={{key: 0}}; to only watch usage use mode='soft'."
        )
    return value


class Budget:
    """A spending rule.

    Args:
        name: unique name (appears in errors, alerts and counter keys).
        limit_usd: limit in USD (``Decimal`` or a string like ``"5.00"``); or
        limit_tokens: limit in tokens (input + output). Exactly one of the two.
        window: ``"request"``, ``"conversation"``, ``"day"`` (default), ``"week"``, ``"month"``,
            a ``timedelta`` (rolling) or a :class:`Window`.
        scope: dimension name(s) that get their own counter: ``"user_id"`` gives every user
            their own counter, ``("user_id", "agent")`` every (user, agent) pair; ``None`` or
            ``"*"`` is one global counter.
        where: only calls whose dimensions match apply, e.g. ``{"agent": "support"}``; a value
            may also be a collection of accepted values. Tags (``dims["tags"]``) are matched too.
        mode: ``"hard"`` denies calls that would exceed the limit (``BudgetExceededError``);
            ``"soft"`` never denies, it only alerts (thresholds and an ``exceeded`` alert).
        thresholds: utilisation fractions in (0, 1] that fire one :class:`Alert` each per scope
            key and window.
        timezone: IANA name for calendar windows (``"Europe/Berlin"``).
        overrides: per scope key limits, e.g. ``{"u1": Decimal("50")}`` (bare value, for a
            single-dimension scope) or ``{"user_id=u1|agent=a": 100_000}``. ``0`` blocks that key.
            Every other key (including users seen for the first time) gets ``limit_*``.
        missing: what to do with a call that lacks a scope dimension: ``"shared"`` (default)
            counts it under ``<dim>=<none>``, one counter shared by all such calls, so anonymous
            traffic is bounded too; ``"skip"`` does not apply the budget to it.
        unpriced: what a USD budget does with a call whose model has no known price:
            ``"deny"`` (default) refuses it with :class:`~tokenward.errors.UnpricedModelError`
            (a ``BudgetExceededError`` naming the model and the fix); ``"tokens"`` lets it through
            without counting it against this budget (token budgets still count it). Token
            budgets ignore this setting.
        price_as: for a USD budget, price calls on unpriced models as this model instead
            (e.g. ``"gpt-4o"``); takes precedence over ``unpriced``.
        reserve: what a call holds on this budget for its output before it runs.
            ``"max_tokens"`` (default): the worst case, the call's ``max_tokens`` (or the
            Accountant's ``expected_output_tokens``), so a hard limit is never passed, at the
            price of denying calls that would have fit. ``"predicted"``: ``min(max_tokens,
            p99 of the outputs this model produced on this route)`` once the Accountant's
            :class:`~tokenward.predict.OutputPredictor` has seen ``min_samples`` such calls
            (the worst case before); the settle step replaces it by the actual usage, so a
            call that outgrows its prediction overspends by at most its own prediction error
            (counted in ``predictor.stats``).

    Per-conversation windows key each counter by ``conversation_id`` (in addition to
    ``scope``); a call without a ``conversation_id`` is checked as a conversation of its own.
    """

    def __init__(
        self,
        name: str,
        *,
        limit_usd: Decimal | str | int | None = None,
        limit_tokens: int | None = None,
        window: str | timedelta | Window = "day",
        scope: str | Iterable[str] | None = None,
        where: Mapping[str, Any] | None = None,
        mode: Literal["hard", "soft"] = "hard",
        thresholds: Iterable[float | Decimal] = (0.5, 0.75, 0.9),
        timezone: str | ZoneInfo = "UTC",
        overrides: Mapping[str, Decimal | str | int] | None = None,
        missing: Literal["shared", "skip"] = "shared",
        unpriced: Literal["deny", "tokens"] = "deny",
        price_as: str | None = None,
        reserve: Literal["max_tokens", "predicted"] = "max_tokens",
    ) -> None:
        if not isinstance(name, str) or not name.strip():
            raise ConfigurationError(f"Budget name must be a non-empty string, got {name!r}.")
        self.name = name
        if (limit_usd is None) == (limit_tokens is None):
            raise ConfigurationError(
                f"Budget {name!r}: give exactly one of limit_usd=Decimal('5.00') or "
                f"limit_tokens=100_000 (got {'both' if limit_usd is not None else 'neither'})."
            )
        self.unit: Literal["usd", "tokens"] = "usd" if limit_usd is not None else "tokens"
        if limit_usd is not None:
            self.limit_usd: Decimal | None = _usd(limit_usd, f"Budget {name!r}: limit_usd")
            self.limit_tokens: int | None = None
            self._limit = usd_to_nanos(self.limit_usd)
        else:
            self.limit_usd = None
            self.limit_tokens = _tokens(limit_tokens, f"Budget {name!r}: limit_tokens")
            self._limit = self.limit_tokens
        self.window = Window.parse(window)
        self.timezone = resolve_timezone(timezone)
        if scope is None or scope == GLOBAL_SCOPE:
            self.scope: tuple[str, ...] = ()
        elif isinstance(scope, str):
            self.scope = (scope,)
        else:
            self.scope = tuple(scope)
        for dim in self.scope:
            if not isinstance(dim, str) or not dim or any(c in dim for c in "|="):
                raise ConfigurationError(
                    f"Budget {name!r}: scope dimensions must be names like 'user_id', got {dim!r}."
                )
        self.where: dict[str, frozenset[str]] = {}
        for k, v in (where or {}).items():
            vals = [v] if isinstance(v, str) else list(v)
            if not vals or not all(isinstance(x, str) for x in vals):
                raise ConfigurationError(
                    f"Budget {name!r}: where={{{k!r}: ...}} must be a string or strings."
                )
            self.where[k] = frozenset(vals)
        if mode not in ("hard", "soft"):
            raise ConfigurationError(
                f"Budget {name!r}: mode must be 'hard' or 'soft', got {mode!r}."
            )
        self.mode = mode
        ths = []
        for t in thresholds:
            try:
                f = float(t)
            except (TypeError, ValueError):
                f = math.nan
            if isinstance(t, bool) or not (0 < f <= 1):
                raise ConfigurationError(
                    f"Budget {name!r}: thresholds must be fractions in (0, 1] such as 0.5, 0.9; "
                    f"got {t!r}."
                )
            ths.append(f)
        self.thresholds: tuple[float, ...] = tuple(sorted(set(ths)))
        if missing not in ("shared", "skip"):
            raise ConfigurationError(
                f"Budget {name!r}: missing must be 'shared' or 'skip', got {missing!r}."
            )
        self.missing = missing
        if unpriced not in ("deny", "tokens"):
            raise ConfigurationError(
                f"Budget {name!r}: unpriced must be 'deny' or 'tokens', got {unpriced!r}."
            )
        if price_as is not None and (not isinstance(price_as, str) or not price_as.strip()):
            raise ConfigurationError(
                f"Budget {name!r}: price_as must be a model name such as 'gpt-4o', got "
                f"{price_as!r}."
            )
        self.unpriced: Literal["deny", "tokens"] = unpriced
        self.price_as = price_as
        if reserve not in ("max_tokens", "predicted"):
            raise ConfigurationError(
                f"Budget {name!r}: reserve must be 'max_tokens' or 'predicted', got {reserve!r}."
            )
        self.reserve: Literal["max_tokens", "predicted"] = reserve
        self._span_cache: tuple[float, float, list[WindowSpan]] | None = None
        self.overrides: dict[str, int] = {}
        for key, lim in (overrides or {}).items():
            skey = self._normalize_key(key)
            what = f"Budget {name!r}: override for {key!r}"
            if self.unit == "usd":
                self.overrides[skey] = usd_to_nanos(_usd(lim, what, allow_zero=True))
            else:
                self.overrides[skey] = _tokens(lim, what, allow_zero=True)

    def _normalize_key(self, key: str) -> str:
        if not isinstance(key, str) or not key:
            raise ConfigurationError(f"Budget {self.name!r}: override keys must be strings.")
        if key == GLOBAL_SCOPE or "=" in key:
            return key
        if len(self.scope) != 1:
            raise ConfigurationError(
                f"Budget {self.name!r}: override key {key!r} is ambiguous; write full scope keys "
                f"such as 'user_id=u1|agent=support'."
            )
        return f"{self.scope[0]}={_escape(bounded(clean(key)))}"

    def __repr__(self) -> str:
        lim = (
            f"limit_usd={self.limit_usd}"
            if self.unit == "usd"
            else f"limit_tokens={self.limit_tokens}"
        )
        return (
            f"Budget({self.name!r}, {lim}, window={self.window.describe()!r}, "
            f"scope={self.scope or GLOBAL_SCOPE!r}, mode={self.mode!r})"
        )

    # -- resolution -------------------------------------------------------------------------
    @staticmethod
    def _dim(dims: Mapping[str, Any], key: str) -> str | None:
        v = dims.get(key)
        if v is None:
            tags = dims.get("tags")
            if isinstance(tags, Mapping):
                v = tags.get(key)
        if v is None:
            return None
        # the same normalization as the Accountant's (a no-op for values it already cleaned),
        # so a store never sees a key it cannot encode or index
        return bounded(clean(v if type(v) is str else str(v)))

    def applies(self, dims: Mapping[str, Any]) -> bool:
        """Whether a call with these dimensions is subject to this budget."""
        for k, accepted in self.where.items():
            if self._dim(dims, k) not in accepted:
                return False
        return not (self.missing == "skip" and any(self._dim(dims, d) is None for d in self.scope))

    def scope_key(self, dims: Mapping[str, Any]) -> str:
        """``"*"``, ``"user_id=u1"`` or ``"user_id=u1|agent=support"`` for these dimensions."""
        if not self.scope:
            return GLOBAL_SCOPE
        parts = []
        for d in self.scope:
            v = self._dim(dims, d)
            parts.append(f"{d}={NONE_VALUE if v is None else _escape(v)}")
        return "|".join(parts)

    def limit_for(self, scope_key: str) -> int:
        """Limit (nano-USD or tokens) for a scope key: its override, else the budget's limit."""
        return self.overrides.get(scope_key, self._limit)

    def amount(self, cost_nanos: int, tokens: int) -> int:
        """What a call counts against this budget (nano-USD or tokens)."""
        return cost_nanos if self.unit == "usd" else tokens

    def to_unit(self, amount: int) -> Decimal | int:
        """Convert a stored amount to the public unit (Decimal USD or int tokens)."""
        return nanos_to_usd(amount) if self.unit == "usd" else amount

    def spans(self, now: datetime) -> list[WindowSpan]:
        """Counter buckets of this budget's window at ``now`` (last = current), cached until
        the current bucket ends."""
        cached = self._span_cache
        if cached is not None:
            lo, hi, spans = cached
            ts = now.timestamp()
            if lo <= ts < hi:
                return spans
        spans = self.window.spans(now, self.timezone)
        cur = spans[-1]
        if cur.start is None:
            self._span_cache = (float("-inf"), float("inf"), spans)
        elif self.window.kind == "rolling":
            g = self.window.granularity_ms / 1000
            self._span_cache = (cur.start.timestamp(), cur.start.timestamp() + g, spans)
        else:
            assert cur.end is not None
            self._span_cache = (cur.start.timestamp(), cur.end.timestamp(), spans)
        return spans


def _now(now: datetime | None) -> datetime:
    if now is None:
        return datetime.now(timezone.utc)
    if now.tzinfo is None:
        raise ConfigurationError("now must be timezone-aware, e.g. datetime.now(timezone.utc).")
    return now
