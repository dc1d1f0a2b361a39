"""The one place numbers become text, for every front end (CLI tables, CSV/JSON, HTML).

Two audiences, two forms:

* **machine formats** (CSV, JSON) get :func:`plain`: the exact decimal string, fixed-point
  (``Decimal("7.5E-7")`` -> ``"0.00000075"``), never scientific notation, nothing rounded;
* **people** get :func:`usd`, :func:`price`, :func:`number`, :func:`percent`, :func:`ms`:
  fixed-point, thousands separators, cents for dollars and more, four decimals under a dollar,
  three significant digits for tiny amounts (``$0.00000125``), fractions as percentages, and
  :data:`NA` for a value that is unknown (never a misleading ``0``).

Money never passes through ``float``.
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal

__all__ = ["NA", "ms", "number", "percent", "plain", "price", "ratio", "usd"]

#: Shown for a value that is unknown or does not apply.
NA = "\u2014"

_SIGNIFICANT = 3  #: digits kept for amounts under a cent


def plain(value: Decimal | int | None) -> str | None:
    """The exact value as a fixed-point decimal string (machine formats); ``None`` stays None."""
    if value is None:
        return None
    if isinstance(value, int):
        return str(value)
    return format(abs(value) if value == 0 else value, "f")  # no "-0.00"


def _quantize(value: Decimal, places: int) -> Decimal:
    return value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_EVEN)


def _places_for(value: Decimal) -> int:
    """Decimals a person needs: 2 from $1, 4 under $1, three significant digits under a cent."""
    magnitude = abs(value)
    if magnitude >= 1 or magnitude == 0:
        return 2
    if magnitude >= Decimal("0.01"):
        return 4
    first = -magnitude.adjusted()  # position of the first significant decimal digit
    return max(4, first + _SIGNIFICANT - 1)


def usd(value: Decimal | int | None, places: int | None = None) -> str:
    """``$1,234.57``, ``$0.0480``, ``$0.00000125``: exact (half-even), fixed-point.

    ``places`` forces a number of decimals; by default dollars get cents, amounts under a dollar
    four decimals and amounts under a cent three significant digits (trailing zeros past the
    fourth decimal dropped).
    """
    if value is None:
        return NA
    d = Decimal(value)
    auto = places is None
    q = _quantize(d, _places_for(d) if places is None else places)
    whole, _, decimals = f"{abs(q):,f}".partition(".")
    if auto and len(decimals) > 4:  # significant digits only, but never fewer than 4 decimals
        decimals = decimals.rstrip("0").ljust(4, "0")
    sign = "-" if q < 0 else ""
    return f"{sign}${whole}.{decimals}" if decimals else f"{sign}${whole}"


def price(value: Decimal | int | None) -> str:
    """A unit price (USD per 1M tokens) as listed: at least cents, every digit it has
    (``$2.50``, ``$0.075``, ``$0.0375``)."""
    if value is None:
        return NA
    d = Decimal(value).normalize()
    places = max(2, -d.as_tuple().exponent)  # type: ignore[operator]
    return f"${_quantize(d, places):,f}"


def number(value: int | float | None, places: int = 0) -> str:
    """``12,345`` (or ``12,345.6`` with ``places=1``)."""
    if value is None:
        return NA
    return f"{value:,.{places}f}"


def percent(fraction: float | Decimal | None, places: int = 1) -> str:
    """A fraction as a percentage: ``0.0094`` -> ``0.9%``; a tiny non-zero share reads
    ``<0.1%`` rather than a misleading ``0.0%``."""
    if fraction is None:
        return NA
    pct = float(fraction) * 100
    smallest = 10.0**-places
    if 0 < abs(pct) < smallest / 2:
        return f"<{smallest:.{places}f}%"
    return f"{pct:,.{places}f}%"


def ratio(value: float | None) -> str:
    """``2.9:1`` (input tokens per output token)."""
    return NA if value is None else f"{value:,.1f}:1"


def ms(value: float | None) -> str:
    """A latency: ``1,640 ms``, ``<1 ms``, or :data:`NA` when none was recorded."""
    if value is None:
        return NA
    if 0 < value < 1:
        return "<1 ms"
    return f"{value:,.0f} ms"
