"""Numbers for people: the API's exact decimal strings grouped and rounded by magnitude.

The portfolio API answers amounts as exact decimal strings ("61333.366666666666666667");
a page shows "61,333.37" and keeps the exact value for a `title` attribute.
"""

from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation

MINUS = "\u2212"  # a real minus sign: as wide as the plus, read out as "minus"


def to_decimal(value: object) -> Decimal | None:
    """Read an amount the API sent (decimal string or number), or None."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


def _places(number: Decimal, *, large: int, unit: int, significant: int, most: int) -> int:
    """Decimal places worth showing: few for large amounts, enough digits for tiny ones."""
    size = number.copy_abs()
    if size >= 1000:
        return large
    if size >= 1 or size.is_zero():
        return unit
    # 0.000123 has adjusted() == -4: show `significant` digits from the first non-zero one.
    return min(most, -size.adjusted() - 1 + significant)


def _group(number: Decimal, places: int, *, keep_places: int) -> str:
    """Round to `places`, group thousands, drop trailing zeros down to `keep_places`."""
    rounded = number.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_EVEN)
    if rounded.is_zero():
        rounded = rounded.copy_abs()
    text = f"{rounded:,.{places}f}"
    if "." in text:
        whole, fraction = text.split(".")
        fraction = fraction.rstrip("0").ljust(keep_places, "0")
        text = f"{whole}.{fraction}" if fraction else whole
    return text.replace("-", MINUS)


def amount(value: object) -> str:
    """Format a price or a money amount: 61,333.37 · 1.25 · 0.0001235."""
    number = to_decimal(value)
    if number is None:
        return "—"
    places = _places(number, large=2, unit=2, significant=4, most=10)
    return _group(number, places, keep_places=min(places, 2))


def quantity(value: object) -> str:
    """Format a quantity of units: 1,250.5 · 0.5 · 0.00012345 (no padding zeros)."""
    number = to_decimal(value)
    if number is None:
        return "—"
    places = _places(number, large=2, unit=4, significant=4, most=8)
    return _group(number, places, keep_places=0)


def signed(value: object) -> str:
    """Format a P&L amount with its sign (a real minus): +1,250.00 · 0.00."""
    number = to_decimal(value)
    if number is None:
        return "—"
    text = amount(number)
    return f"+{text}" if number > 0 and text.strip("0.,") else text


def percent(value: object) -> str:
    """Format a signed percentage to two places: +12.50 %."""
    number = to_decimal(value)
    if number is None:
        return "—"
    text = _group(number, 2, keep_places=2)
    return f"{'+' if number > 0 and text.strip('0.,') else ''}{text} %"


def exact(value: object) -> str:
    """Return the exact value as the API sent it, for a `title` attribute."""
    number = to_decimal(value)
    if number is None:
        return ""
    return "0" if number.is_zero() else format(number.normalize(), "f")


def sign_class(value: object) -> str:
    """Name the CSS class of a P&L amount: gain, loss or flat."""
    number = to_decimal(value)
    if number is None or number.is_zero():
        return "flat"
    return "gain" if number > 0 else "loss"


def ratio_percent(part: object, whole: object) -> Decimal | None:
    """Return part / whole * 100, or None when the whole is zero or missing."""
    top, bottom = to_decimal(part), to_decimal(whole)
    if top is None or bottom is None or bottom.is_zero():
        return None
    return top / bottom * 100
