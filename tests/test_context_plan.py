"""plan: section budgets, flow of unused shares, model windows."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tokenward.context import plan
from tokenward.errors import ConfigurationError, ContextBudgetError


def test_default_shares_split_the_prompt_tokens() -> None:
    p = plan(10_000, 2_000)
    assert p.available == 8_000
    assert dict(p.budgets) == {"system": 800, "history": 3_200, "rag": 4_000}
    assert p["rag"] == 4_000 and p.total == 8_000


def test_fixed_section_gives_its_unused_share_to_the_others() -> None:
    p = plan(10_000, 2_000, fixed={"system": 300})
    # 7,700 left, split 40:50 between history and rag
    assert dict(p.budgets) == {"system": 300, "history": 3_422, "rag": 4_278}
    assert p.total == 8_000
    # a fixed section that needs more than its share takes it from the others
    p = plan(10_000, 2_000, fixed={"system": 2_000, "tools": 500})
    assert dict(p.budgets) == {"system": 2_000, "history": 2_444, "rag": 3_056, "tools": 500}
    assert p.total == 8_000
    # re-plan with actual sizes
    q = plan(10_000, 2_000).with_fixed(history=1_000)
    assert dict(q.budgets) == {"system": 1_167, "history": 1_000, "rag": 5_833}


def test_fits_and_remaining() -> None:
    p = plan(1_000, 200)
    assert p.fits(800) and not p.fits(801)
    assert p.fits({"system": 80, "history": 320}) and not p.fits({"system": 81})
    assert not p.fits({"unknown": 1})
    assert p.remaining() == 800 and p.remaining(750) == 50
    assert p.remaining({"history": 100}) == {"system": 80, "history": 220, "rag": 400}
    with pytest.raises(KeyError, match="sections"):
        p["nope"]


def test_model_name_uses_catalog_window() -> None:
    pytest.importorskip("tokenward.catalog")
    p = plan("gpt-4o", 4_096)
    assert p.window == 128_000 and p.model == "gpt-4o"
    assert p.total == 128_000 - 4_096
    q = plan("gpt-4o")  # default reserve: max_output capped at a quarter of the window
    assert 0 < q.reserve_output <= 32_000


def test_errors() -> None:
    with pytest.raises(ConfigurationError):
        plan(1_000, 1_000)
    with pytest.raises(ConfigurationError):
        plan(0, 0)
    with pytest.raises(ConfigurationError):
        plan(1_000, 0, shares={"a": -1})
    with pytest.raises(ContextBudgetError, match="fixed sections need 900"):
        plan(1_000, 200, fixed={"system": 900})


@given(
    window=st.integers(1, 10**6),
    reserve_frac=st.floats(0, 0.99),
    shares=st.dictionaries(st.sampled_from(["a", "b", "c", "d"]), st.floats(0, 5), min_size=1),
    fixed=st.dictionaries(st.sampled_from(["a", "x"]), st.integers(0, 1000)),
)
def test_never_exceeds_window_minus_reserve(
    window: int, reserve_frac: float, shares: dict[str, float], fixed: dict[str, int]
) -> None:
    reserve = int(window * reserve_frac)
    try:
        p = plan(window, reserve, shares=shares, fixed=fixed)
    except ContextBudgetError:
        assert sum(fixed.values()) > window - reserve
        return
    assert p.total <= window - reserve
    assert all(v >= 0 for v in p.budgets.values())
    for name, n in fixed.items():
        assert p[name] == n
    if any(name not in fixed for name in shares):
        assert p.total == window - reserve  # nothing is wasted
