"""Graceful degradation: instead of a hard deny, find a smaller call that still fits.

Framework-free: the caller passes a pricing function ``price(model, input_tokens,
output_tokens) -> nano-USD`` (int) or USD (Decimal), usually a thin wrapper over
``tokenward.cost.cost``. The LangChain middleware applies the suggestion (lower
``max_tokens`` or swap the model) where the framework allows.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from tokenward.budgets._budgets import Budgets
from tokenward.budgets._rules import usd_to_nanos

__all__ = ["Degradation", "Degrade", "suggest_degradation"]

PriceFn = Callable[[str, int, int], "int | Decimal"]


@dataclass(frozen=True)
class Degradation:
    """What to change so the call fits: ``action`` is ``"none"`` (fits as is),
    ``"max_output_tokens"`` (same model, fewer output tokens) or ``"model"`` (cheaper model,
    possibly with fewer output tokens too). ``cost_nanos``/``tokens`` are what to reserve."""

    action: Literal["none", "max_output_tokens", "model"]
    model: str
    max_output_tokens: int
    cost_nanos: int
    tokens: int
    reason: str


def _nanos(v: int | Decimal) -> int:
    return usd_to_nanos(v) if isinstance(v, Decimal) else int(v)


def _fits(
    price: PriceFn, model: str, prompt: int, out: int, room_usd: int | None, room_tok: int | None
) -> bool:
    if room_tok is not None and prompt + out > room_tok:
        return False
    return room_usd is None or _nanos(price(model, prompt, out)) <= room_usd


def _max_output(
    price: PriceFn,
    model: str,
    prompt: int,
    lo: int,
    hi: int,
    room_usd: int | None,
    room_tok: int | None,
) -> int | None:
    """Largest output in [lo, hi] that fits (price is assumed non-decreasing in output)."""
    if hi < lo or not _fits(price, model, prompt, lo, room_usd, room_tok):
        return None
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if _fits(price, model, prompt, mid, room_usd, room_tok):
            lo = mid
        else:
            hi = mid - 1
    return lo


@dataclass(frozen=True)
class Degrade:
    """A degradation policy: ``ladder`` lists cheaper models to try in order (after lowering
    the output limit of the requested model down to ``min_output_tokens`` did not fit).
    ``reduce_output=False`` skips the output-limit step."""

    ladder: Sequence[str] = ()
    min_output_tokens: int = 256
    reduce_output: bool = True

    @classmethod
    def cheaper(
        cls,
        model: str,
        *,
        min_context: int = 0,
        steps: int = 3,
        same_provider: bool = True,
        catalog: Any = None,
        min_output_tokens: int = 256,
    ) -> Degrade:
        """A policy whose ladder is up to ``steps`` models cheaper than ``model``, closest in
        price first (the smallest step down in quality), each with a window of at least
        ``min_context`` tokens (default: ``model``'s own), from ``model``'s provider unless
        ``same_provider=False``. Chosen by :func:`tokenward.predict.select_models`."""
        from tokenward.catalog import default_catalog
        from tokenward.predict import mix_price, select_models

        catalog = catalog if catalog is not None else default_catalog()
        info = catalog.get(model)
        choices = select_models(
            catalog,
            min_context=min_context or info.context_window,
            provider=info.provider if same_provider else None,
            mode=info.mode,
            exclude=(info.name,),
        )
        price = mix_price(info)
        below = [c for c in choices if c.cost < price]
        ladder = tuple(c.name for c in reversed(below))[:steps]
        return cls(ladder, min_output_tokens)

    def suggest(
        self,
        budgets: Budgets,
        dims: Mapping[str, Any] | None,
        *,
        model: str,
        prompt_tokens: int,
        max_output_tokens: int,
        price: PriceFn,
        now: datetime | None = None,
    ) -> Degradation | None:
        """The first degradation that fits every hard budget right now, or ``None``."""
        room_usd, room_tok = budgets.headroom(dims, now=now)

        def made(
            action: Literal["none", "max_output_tokens", "model"], m: str, out: int, why: str
        ) -> Degradation:
            return Degradation(
                action, m, out, _nanos(price(m, prompt_tokens, out)), prompt_tokens + out, why
            )

        if _fits(price, model, prompt_tokens, max_output_tokens, room_usd, room_tok):
            return made("none", model, max_output_tokens, "fits as requested")
        floor = min(self.min_output_tokens, max_output_tokens)
        if self.reduce_output:
            out = _max_output(
                price, model, prompt_tokens, floor, max_output_tokens, room_usd, room_tok
            )
            if out is not None:
                return made("max_output_tokens", model, out, f"lower max_output_tokens to {out}")
        for m in self.ladder:
            if m == model:
                continue
            if _fits(price, m, prompt_tokens, max_output_tokens, room_usd, room_tok):
                return made("model", m, max_output_tokens, f"switch to cheaper model {m}")
            if self.reduce_output:
                out = _max_output(
                    price, m, prompt_tokens, floor, max_output_tokens, room_usd, room_tok
                )
                if out is not None:
                    return made("model", m, out, f"switch to {m} with max_output_tokens={out}")
        return None


def suggest_degradation(
    budgets: Budgets,
    dims: Mapping[str, Any] | None,
    *,
    model: str,
    prompt_tokens: int,
    max_output_tokens: int,
    price: PriceFn,
    ladder: Sequence[str] = (),
    min_output_tokens: int = 256,
    now: datetime | None = None,
) -> Degradation | None:
    """Shortcut for ``Degrade(ladder, min_output_tokens).suggest(...)``.

    Example::

        d = suggest_degradation(budgets, {"user_id": "u1"}, model="gpt-4o", prompt_tokens=1200,
                                max_output_tokens=4096, ladder=["gpt-4o-mini"],
                                price=lambda m, i, o: to_nanos(cost(Usage(input=i, output=o), m).total))
        if d is None: raise  # nothing fits: deny
    """
    return Degrade(tuple(ladder), min_output_tokens).suggest(
        budgets,
        dims,
        model=model,
        prompt_tokens=prompt_tokens,
        max_output_tokens=max_output_tokens,
        price=price,
        now=now,
    )
