"""Split a context window into per-section token budgets."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from tokenward.errors import ConfigurationError, ContextBudgetError

__all__ = ["DEFAULT_SHARES", "Plan", "plan"]

DEFAULT_SHARES: Mapping[str, float] = MappingProxyType(
    {"system": 0.10, "history": 0.40, "rag": 0.50}
)


@dataclass(frozen=True, slots=True)
class Plan:
    """Token budgets per section; ``sum(budgets) <= window - reserve_output`` always."""

    window: int
    reserve_output: int
    budgets: Mapping[str, int]
    shares: Mapping[str, float] = field(default_factory=dict)
    fixed: Mapping[str, int] = field(default_factory=dict)
    model: str | None = None

    @property
    def available(self) -> int:
        """Tokens for the prompt: ``window - reserve_output``."""
        return self.window - self.reserve_output

    @property
    def total(self) -> int:
        return sum(self.budgets.values())

    def __getitem__(self, section: str) -> int:
        try:
            return self.budgets[section]
        except KeyError:
            raise KeyError(
                f"no section {section!r} in this plan; sections: {sorted(self.budgets)}"
            ) from None

    def fits(self, used: int | Mapping[str, int]) -> bool:
        """True when ``used`` (a total, or tokens per section) is within the plan.

        Per section: each section within its budget and the total within ``available``.
        """
        if isinstance(used, Mapping):
            for name, n in used.items():
                if name not in self.budgets or n > self.budgets[name]:
                    return False
            return sum(used.values()) <= self.available
        return used <= self.available

    def remaining(self, used: int | Mapping[str, int] | None = None) -> Any:
        """Tokens left: an int for a total (or None), a dict per section for a mapping."""
        if used is None:
            return self.available
        if isinstance(used, Mapping):
            return {name: b - int(used.get(name, 0)) for name, b in self.budgets.items()}
        return self.available - used

    def with_fixed(self, **sizes: int) -> Plan:
        """Re-plan with the actual sizes of some sections: their slack flows to the others."""
        return plan(
            self.window,
            self.reserve_output,
            shares=self.shares,
            fixed={**self.fixed, **sizes},
            model=self.model,
        )


def _window_of(model: str) -> tuple[int, int | None]:
    from tokenward.catalog import default_catalog  # lazy: parallel module

    info = default_catalog().get(model)
    return int(info.context_window), info.max_output


def plan(
    model_or_window: str | int,
    reserve_output: int | None = None,
    *,
    shares: Mapping[str, float] = DEFAULT_SHARES,
    fixed: Mapping[str, int] | None = None,
    model: str | None = None,
) -> Plan:
    """Split ``window - reserve_output`` tokens into section budgets.

    Args:
        model_or_window: a context window in tokens, or a model name (its
            ``context_window`` from the catalog).
        reserve_output: tokens kept free for the answer. Default: the model's
            ``max_output`` capped at a quarter of the window (0 for a bare window).
        shares: fraction of the prompt tokens per section (normalized if they do not
            sum to 1).
        fixed: exact sizes of sections already known (the system prompt, tool schemas,
            the question). A fixed section gets exactly that many tokens.

    How the tokens flow: fixed sections are served first; what is left is split among
    the other share sections in proportion to their shares, so a fixed section that
    needs less than its share gives the rest to the others (proportionally), and one
    that needs more takes it from them. Integer rounding leftovers go one token at a
    time to the sections with the largest fractional parts (ties: ``shares`` order).
    ``sum(budgets) <= window - reserve_output``
    always; if the fixed sizes alone exceed it, :class:`~tokenward.ContextBudgetError`.
    """
    max_output: int | None = None
    if isinstance(model_or_window, str):
        model = model_or_window
        window, max_output = _window_of(model_or_window)
    elif isinstance(model_or_window, int) and not isinstance(model_or_window, bool):
        window = model_or_window
    else:
        raise ConfigurationError(
            f"model_or_window must be a model name or an int; got {model_or_window!r}"
        )
    if window <= 0:
        raise ConfigurationError(f"context window must be > 0; got {window}")
    if reserve_output is None:
        reserve_output = min(max_output, window // 4) if max_output else 0
    if reserve_output < 0 or reserve_output >= window:
        raise ConfigurationError(
            f"reserve_output must be >= 0 and below the window ({window}); got {reserve_output}"
        )
    fixed = dict(fixed or {})
    for name, n in fixed.items():
        if not isinstance(n, int) or n < 0:
            raise ConfigurationError(f"fixed[{name!r}] must be an int >= 0; got {n!r}")
    for name, s in shares.items():
        if s < 0:
            raise ConfigurationError(f"shares[{name!r}] must be >= 0; got {s!r}")
    available = window - reserve_output
    need = sum(fixed.values())
    if need > available:
        raise ContextBudgetError(
            f"fixed sections need {need} tokens ({fixed}) but only {available} are available "
            f"(window {window} - reserve_output {reserve_output}). Shorten them, lower "
            f"reserve_output or use a model with a larger window."
        )
    budgets: dict[str, int] = {}
    for name in shares:
        if name in fixed:
            budgets[name] = fixed[name]
    for name, size in fixed.items():
        budgets.setdefault(name, size)
    flexible = [name for name in shares if name not in fixed]
    rest = available - need
    weight = sum(shares[n] for n in flexible)
    if flexible:
        if weight > 0:
            exact = {n: rest * shares[n] / weight for n in flexible}
        else:
            exact = {n: rest / len(flexible) for n in flexible}
        for part in flexible:
            budgets[part] = int(exact[part])
        leftover = rest - sum(budgets[n] for n in flexible)
        # largest fractional part first; sorted() is stable, so ties keep shares order
        by_remainder = sorted(flexible, key=lambda n: -(exact[n] - budgets[n]))
        k = 0
        while leftover > 0:
            budgets[by_remainder[k % len(by_remainder)]] += 1
            leftover -= 1
            k += 1
    ordered = {n: budgets[n] for n in list(shares) + [f for f in fixed if f not in shares]}
    return Plan(
        window=window,
        reserve_output=reserve_output,
        budgets=MappingProxyType(ordered),
        shares=MappingProxyType(dict(shares)),
        fixed=MappingProxyType(fixed),
        model=model,
    )
