"""What-if replays for people and machines: the ``tokenward whatif`` table, its JSON, and the
HTML report's "What if" section. Numbers go through :mod:`tokenward.report._format`.

A scenario is written ``model=claude-sonnet-4-6,cache-hit=0.8,batch`` on the command line
(:func:`parse_scenario`).
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from html import escape
from typing import TYPE_CHECKING, Any

from tokenward.errors import ConfigurationError
from tokenward.report._format import NA, number, percent, plain, usd

if TYPE_CHECKING:
    from rich.table import Table

    from tokenward.predict import Replay, Scenario

__all__ = ["parse_scenario", "whatif_dict", "whatif_html", "whatif_table"]


def parse_scenario(text: str) -> Scenario:
    """``"model=gpt-5.4-mini,cache-hit=0.8,batch"`` -> :class:`~tokenward.predict.Scenario`."""
    from tokenward.predict import Scenario

    kwargs: dict[str, Any] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        key, eq, value = part.partition("=")
        key = key.strip().replace("_", "-")
        try:
            if key == "model" and value:
                kwargs["model"] = value.strip()
            elif key in ("cache-hit", "cache-write", "token-ratio") and value:
                kwargs[key.replace("-", "_")] = float(value)
            elif key == "batch" and not eq:
                kwargs["batch"] = True
            else:
                raise ValueError(part)
        except ValueError:
            raise ConfigurationError(
                f"cannot read the scenario part {part!r}; write scenarios as "
                "model=NAME,cache-hit=0.8,cache-write=0.1,batch (any of them)"
            ) from None
    return Scenario(**kwargs)


def _delta(value: Decimal | None) -> str:
    if value is None:
        return NA
    return ("+" if value > 0 else "") + usd(value)


def _pct(before: Decimal | None, after: Decimal) -> str:
    if not before:
        return NA
    change = (after - before) / before
    return ("+" if change > 0 else "") + percent(change)


def whatif_dict(r: Replay) -> dict[str, Any]:
    """The replay as JSON-ready data (money as exact decimal strings)."""
    s = r.scenario
    return {
        "scenario": {
            "model": s.model,
            "cache_hit": s.cache_hit,
            "cache_write": s.cache_write,
            "batch": s.batch,
            "token_ratio": s.token_ratio,
            "description": s.describe(),
        },
        "since": r.since.isoformat() if r.since else None,
        "until": r.until.isoformat() if r.until else None,
        "calls": r.calls,
        "unpriced_calls": r.unpriced_calls,
        "cost_before": plain(r.cost_before),
        "cost_after": plain(r.cost_after),
        "delta": plain(r.delta),
        "delta_pct": None if r.delta_pct is None else round(r.delta_pct, 4),
        "estimated": r.estimated,
        "components_after": {k: plain(v) for k, v in r.components_after.items()},
        "token_ratios": [
            {
                "source": t.source,
                "target": t.target,
                "ratio": round(t.ratio, 6),
                "basis": t.basis,
                "exact": t.exact,
            }
            for t in r.ratios
        ],
        "rows": [
            {
                **dict(row.dims),
                "calls": row.calls,
                "unpriced_calls": row.unpriced_calls,
                "tokens_before": row.tokens_before,
                "tokens_after": row.tokens_after,
                "cost_before": plain(row.cost_before),
                "cost_after": plain(row.cost_after),
                "delta": plain(row.delta),
            }
            for row in r.rows
        ],
        "notes": list(r.notes),
    }


def _ratio_lines(r: Replay) -> list[str]:
    return [
        f"tokens {t.source} -> {t.target}: x{t.ratio:.3f} ({t.basis}"
        + ("" if t.exact else ", estimated")
        + ")"
        for t in r.ratios
    ]


def whatif_table(r: Replay) -> tuple[Table, list[str]]:
    """A rich table of the groups plus a total row, and the lines to print under it."""
    from rich.table import Table

    table = Table(title=f"What if: {r.scenario.describe()}")
    for d in r.by:
        table.add_column(d)
    table.add_column("calls", justify="right")
    table.add_column("tokens recorded", justify="right")
    table.add_column("tokens replayed", justify="right")
    table.add_column("recorded", justify="right")
    table.add_column("replayed", justify="right")
    table.add_column("change", justify="right")
    table.add_column("%", justify="right")
    for row in r.rows:
        table.add_row(
            *(str(row.dims.get(d) or NA) for d in r.by),
            number(row.calls),
            number(row.tokens_before),
            number(row.tokens_after),
            usd(row.cost_before),
            usd(row.cost_after),
            _delta(row.delta),
            _pct(row.cost_before, row.cost_after),
        )
    table.add_section()
    table.add_row(
        *(["total"] + [""] * (len(r.by) - 1) if r.by else []),
        number(r.calls),
        "",
        "",
        usd(r.cost_before),
        usd(r.cost_after),
        _delta(r.delta),
        _pct(r.cost_before, r.cost_after),
    )
    lines = _ratio_lines(r)
    if r.components_after:
        parts = ", ".join(f"{k} {usd(v)}" for k, v in sorted(r.components_after.items()))
        lines.append(f"replayed cost by component: {parts}")
    lines.extend(r.notes)
    return table, lines


def whatif_html(replays: Sequence[Replay]) -> str:
    """The HTML report's "What if" section (empty string without replays)."""
    if not replays:
        return ""
    body = []
    for r in replays:
        flags = "; ".join([*_ratio_lines(r), *r.notes])
        body.append(
            f"<tr data-scenario='{escape(r.scenario.describe())}'>"
            f"<td>{escape(r.scenario.describe())}"
            + (f"<br><small>{escape(flags)}</small>" if flags else "")
            + f"</td><td class='n'>{number(r.calls)}</td>"
            f"<td class='n'>{usd(r.cost_before)}</td><td class='n'>{usd(r.cost_after)}</td>"
            f"<td class='n'>{_delta(r.delta)}</td>"
            f"<td class='n'>{_pct(r.cost_before, r.cost_after)}</td></tr>"
        )
    return (
        "<h2>What if</h2><p class='meta'>The same calls re-priced under each scenario "
        "(tokenward.predict.replay): token counts converted by the tokenizer ratio when the "
        "model changes, recorded cost as the baseline.</p>"
        "<table class='whatif'><tr><th>scenario</th><th class='n'>calls</th>"
        "<th class='n'>recorded</th><th class='n'>replayed</th><th class='n'>change</th>"
        f"<th class='n'>%</th></tr>{''.join(body)}</table>"
    )
