"""Inline SVG charts generated in Python (no JavaScript, no external resources).

Every chart is an ``<svg class="chart" data-chart=NAME data-points=N>`` element; each data
point is an element with ``class="point"`` and ``data-label`` / ``data-value`` attributes and
a ``<title>`` tooltip, so the HTML report stays inspectable (and testable) without scripts.
All labels pass through :func:`html.escape` (text and attributes). Values are ``Decimal`` or
``int``; only pixel geometry uses floats.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from html import escape

from tokenward.report._format import plain

__all__ = ["PALETTE", "bar_chart", "hbar_chart", "nice_ticks", "stacked_bars", "utilization_bar"]

Number = Decimal | int

#: Colours of token components (colour-blind friendly, Okabe-Ito).
PALETTE = {
    "input": "#0072B2",
    "cache_read": "#009E73",
    "cache_write": "#E69F00",
    "output": "#CC79A7",
    "reasoning": "#D55E00",
}
_BAR = "#0072B2"


def _e(text: object) -> str:
    if isinstance(text, Decimal):
        text = plain(text)  # attributes carry the exact value, never "1E-7"
    return escape(str(text), quote=True)


def _f(x: float) -> str:
    return f"{x:.2f}".rstrip("0").rstrip(".")


def _frac(value: Number, peak: Number) -> float:
    return float(Decimal(value) / Decimal(peak)) if peak else 0.0


def nice_ticks(peak: Number, count: int = 4) -> list[Decimal]:
    """Round axis values from 0 up to at least ``peak``: steps of 1, 2, 2.5 or 5 x 10^k, about
    ``count`` of them (``0.048`` -> 0, 0.02, 0.04, 0.06)."""
    top = Decimal(peak)
    if top <= 0:
        return [Decimal(0)]
    raw = top / count
    exp = raw.adjusted()
    step = next(
        m * Decimal(10) ** exp
        for m in (Decimal(1), Decimal(2), Decimal("2.5"), Decimal(5), Decimal(10))
        if m * Decimal(10) ** exp >= raw
    )
    n = int((top / step).to_integral_value(rounding="ROUND_CEILING"))
    return [step * i for i in range(n + 1)]


def bar_chart(
    name: str,
    points: Sequence[tuple[str, Number, str]],
    *,
    width: int = 720,
    height: int = 240,
    axis_label: str = "",
    tick_format: Callable[[Decimal], str] = str,
    max_value_labels: int = 16,
) -> str:
    """Vertical bars with a y-axis: ``points`` are ``(label, value, formatted value)``.

    The y-axis has round ticks (:func:`nice_ticks`, labelled by ``tick_format``) and gridlines;
    each bar carries its formatted value above it when there are at most ``max_value_labels``
    bars (otherwise only the tallest one does); x labels at most ~12.
    """
    n = len(points)
    pad_l, pad_r, pad_t, pad_b = 64, 8, 22, 34
    inner_w = width - pad_l - pad_r
    inner_h = height - pad_t - pad_b
    peak = max((v for _, v, _ in points), default=0)
    ticks = nice_ticks(peak)
    top = ticks[-1] or Decimal(1)
    slot = inner_w / n if n else inner_w
    bar_w = max(2.0, slot * 0.72)
    every = max(1, n // 12)  # label at most ~12 ticks
    base = pad_t + inner_h
    parts = [
        f'<svg class="chart" data-chart="{_e(name)}" data-points="{n}" role="img" '
        f'aria-label="{_e(axis_label or name)}" viewBox="0 0 {width} {height}" '
        f'width="100%" preserveAspectRatio="xMidYMid meet" xmlns="http://www.w3.org/2000/svg">',
        '<g class="y-axis" data-axis="y">',
    ]
    for t in ticks:
        y = base - inner_h * _frac(t, top)
        parts.append(
            f'<line class="grid" x1="{pad_l}" y1="{_f(y)}" x2="{width - pad_r}" y2="{_f(y)}"/>'
            f'<text class="ytick" data-value="{_e(t)}" x="{pad_l - 6}" y="{_f(y + 4)}" '
            f'text-anchor="end">{_e(tick_format(t))}</text>'
        )
    parts.append(
        f'<line class="axis" x1="{pad_l}" y1="{pad_t}" x2="{pad_l}" y2="{base}"/></g>'
        f'<line class="axis" x1="{pad_l}" y1="{base}" x2="{width - pad_r}" y2="{base}"/>'
    )
    if axis_label:
        parts.append(
            f'<text class="axis-label" x="12" y="{_f(pad_t + inner_h / 2)}" text-anchor="middle" '
            f'transform="rotate(-90 12 {_f(pad_t + inner_h / 2)})">{_e(axis_label)}</text>'
        )
    label_all = n <= max_value_labels
    for i, (label, value, shown) in enumerate(points):
        h = inner_h * _frac(value, top)
        if value and h < 1:
            h = 1.0
        x = pad_l + i * slot + (slot - bar_w) / 2
        y = base - h
        parts.append(
            f'<rect class="point bar" data-label="{_e(label)}" data-value="{_e(value)}" '
            f'x="{_f(x)}" y="{_f(y)}" width="{_f(bar_w)}" height="{_f(h)}" fill="{_BAR}">'
            f"<title>{_e(label)}: {_e(shown)}</title></rect>"
        )
        if value and (label_all or value == peak):
            parts.append(
                f'<text class="value" data-label="{_e(label)}" x="{_f(x + bar_w / 2)}" '
                f'y="{_f(y - 4)}" text-anchor="middle">{_e(shown)}</text>'
            )
        if i % every == 0:
            parts.append(
                f'<text class="tick" x="{_f(x + bar_w / 2)}" y="{height - 18}" '
                f'text-anchor="middle">{_e(label)}</text>'
            )
    parts.append("</svg>")
    return "".join(parts)


def hbar_chart(
    name: str,
    rows: Sequence[tuple[str, Number, str]],
    *,
    width: int = 520,
    row_height: int = 24,
    label_width: int = 190,
) -> str:
    """Horizontal bars, one row per ``(label, value, formatted value)``, largest first as given."""
    n = len(rows)
    height = max(row_height, n * row_height) + 4
    value_w = 96
    inner = width - label_width - value_w
    peak = max((v for _, v, _ in rows), default=0)
    parts = [
        f'<svg class="chart" data-chart="{_e(name)}" data-points="{n}" role="img" '
        f'aria-label="{_e(name)}" viewBox="0 0 {width} {height}" width="100%" '
        f'xmlns="http://www.w3.org/2000/svg">',
        f'<line class="axis" x1="{label_width}" y1="2" x2="{label_width}" y2="{height - 2}"/>',
    ]
    for i, (label, value, shown) in enumerate(rows):
        y = 2 + i * row_height
        w = inner * _frac(value, peak)
        if value and w < 1:
            w = 1.0
        short = label if len(label) <= 28 else label[:27] + "\u2026"
        parts.append(
            f'<text class="label" x="{label_width - 6}" y="{y + row_height * 0.68:.1f}" '
            f'text-anchor="end">{_e(short)}</text>'
            f'<rect class="point bar" data-label="{_e(label)}" data-value="{_e(value)}" '
            f'x="{label_width}" y="{y + 3}" width="{_f(w)}" height="{row_height - 6}" '
            f'fill="{_BAR}"><title>{_e(label)}: {_e(shown)}</title></rect>'
            f'<text class="value" x="{_f(label_width + w + 4)}" y="{y + row_height * 0.68:.1f}">'
            f"{_e(shown)}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def stacked_bars(
    name: str,
    rows: Sequence[tuple[str, Mapping[str, int]]],
    *,
    width: int = 720,
    row_height: int = 26,
    label_width: int = 190,
) -> str:
    """One 100 % bar per row split into token components (keys of :data:`PALETTE`)."""
    n = len(rows)
    height = n * row_height + 4
    inner = width - label_width - 8
    parts = [
        f'<svg class="chart" data-chart="{_e(name)}" data-points="{n}" role="img" '
        f'aria-label="{_e(name)}" viewBox="0 0 {width} {height}" width="100%" '
        f'xmlns="http://www.w3.org/2000/svg">'
    ]
    for i, (label, comps) in enumerate(rows):
        y = 2 + i * row_height
        total = sum(comps.values())
        short = label if len(label) <= 28 else label[:27] + "\u2026"
        parts.append(
            f'<g class="point stack" data-label="{_e(label)}" data-value="{total}">'
            f'<text class="label" x="{label_width - 6}" y="{y + row_height * 0.68:.1f}" '
            f'text-anchor="end">{_e(short)}</text>'
        )
        x = float(label_width)
        for comp, colour in PALETTE.items():
            tokens = comps.get(comp, 0)
            if not tokens or not total:
                continue
            w = inner * tokens / total
            parts.append(
                f'<rect class="segment" data-component="{comp}" data-value="{tokens}" '
                f'x="{_f(x)}" y="{y + 3}" width="{_f(w)}" height="{row_height - 6}" '
                f'fill="{colour}"><title>{_e(label)}: {comp.replace("_", " ")} '
                f"{tokens:,} tokens ({tokens / total:.1%})</title></rect>"
            )
            if w >= 40:  # room for the share inside the segment
                parts.append(
                    f'<text class="seg-label" x="{_f(x + w / 2)}" y="{y + row_height * 0.68:.1f}" '
                    f'text-anchor="middle">{tokens / total:.0%}</text>'
                )
            x += w
        parts.append("</g>")
    parts.append("</svg>")
    return "".join(parts)


def utilization_bar(
    label: str,
    utilization: float,
    thresholds: Sequence[float],
    *,
    width: int = 360,
    height: int = 18,
) -> str:
    """A budget gauge: filled to ``utilization`` (capped at 100 % wide; red from 100 %), with a
    tick at each alert threshold."""
    shown = min(max(utilization, 0.0), 1.0)
    crossed = [t for t in thresholds if utilization >= t]
    colour = "#c0392b" if utilization >= 1 else ("#E69F00" if crossed else "#009E73")
    parts = [
        f'<svg class="chart gauge" data-chart="budget" data-label="{_e(label)}" '
        f'data-value="{utilization:.4f}" data-points="1" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" role="img" aria-label="{_e(label)} '
        f'{utilization:.0%}" xmlns="http://www.w3.org/2000/svg">'
        f'<rect x="0" y="0" width="{width}" height="{height}" rx="3" fill="#e8ecf1"/>'
        f'<rect class="point fill" x="0" y="0" width="{_f(width * shown)}" height="{height}" '
        f'rx="3" fill="{colour}"><title>{_e(label)}: {utilization:.1%} used</title></rect>'
    ]
    for t in thresholds:
        x = width * min(t, 1.0)
        parts.append(
            f'<line class="threshold" data-threshold="{t:g}" x1="{_f(x)}" y1="0" x2="{_f(x)}" '
            f'y2="{height}" stroke="#1b2733" stroke-width="2" stroke-dasharray="3,2">'
            f"<title>alert at {t:.0%}</title></line>"
        )
    parts.append("</svg>")
    return "".join(parts)
