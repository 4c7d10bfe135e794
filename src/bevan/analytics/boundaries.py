"""FHIRPath lowBoundary() and highBoundary(): the range a value of some precision stands for.

A decimal's precision is the digits it was written with (1.0 stands for 0.95 to 1.05);
a partial date, dateTime or time stands for every instant it does not rule out, and a
dateTime without a time zone for every zone (+14:00 at the earliest, -12:00 at the
latest).
"""

from __future__ import annotations

import calendar
import re
from decimal import Decimal

_DATE = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?$")
_DATETIME = re.compile(
    r"^(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?"
    r"(?:T(\d{2})(?::(\d{2})(?::(\d{2})(?:\.(\d+))?)?)?)?(Z|[+-]\d{2}:\d{2})?$"
)
_TIME = re.compile(r"^(\d{2})(?::(\d{2})(?::(\d{2})(?:\.(\d+))?)?)?$")


def decimal_boundary(value: int | float, high: bool) -> float | None:
    """Return the lowest or highest decimal that value, as written, may stand for."""
    if isinstance(value, bool):
        return None
    text = repr(value) if isinstance(value, float) else str(value)
    if "e" in text or "E" in text:
        return float(value)
    number = Decimal(text)
    digits = len(text.partition(".")[2])
    half = Decimal(5) / (Decimal(10) ** (digits + 1))
    return float(number + half if high else number - half)


def date_boundary(value: str, high: bool) -> str | None:
    """Return the first or last day a (partial) date stands for."""
    match = _DATE.match(value)
    if not match:
        return None
    year, month, day = match.groups()
    month = month or ("12" if high else "01")
    if day is None:
        day = f"{calendar.monthrange(int(year), int(month))[1]:02d}" if high else "01"
    return f"{year}-{month}-{day}"


def datetime_boundary(value: str, high: bool) -> str | None:
    """Return the first or last millisecond a (partial) dateTime stands for."""
    match = _DATETIME.match(value)
    if not match:
        return None
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    date = date_boundary("-".join(p for p in (year, month, day) if p), high)
    hour = hour or ("23" if high else "00")
    minute = minute or ("59" if high else "00")
    second = second or ("59" if high else "00")
    fraction = _fraction(fraction, high)
    zone = zone or ("-12:00" if high else "+14:00")
    return f"{date}T{hour}:{minute}:{second}.{fraction}{zone}"


def time_boundary(value: str, high: bool) -> str | None:
    """Return the first or last millisecond a (partial) time stands for."""
    match = _TIME.match(value)
    if not match:
        return None
    hour, minute, second, fraction = match.groups()
    minute = minute or ("59" if high else "00")
    second = second or ("59" if high else "00")
    return f"{hour}:{minute}:{second}.{_fraction(fraction, high)}"


def _fraction(fraction: str | None, high: bool) -> str:
    if fraction is None:
        return "999" if high else "000"
    return (fraction + ("9" if high else "0") * 3)[:3] if len(fraction) < 3 else fraction


def boundary(value: object, fhir_type: str | None, high: bool) -> object | None:
    """Return value's boundary by its FHIR type (inferred from its form when unknown)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return decimal_boundary(value, high)
    if not isinstance(value, str):
        return None
    if fhir_type is None:
        if _TIME.match(value) and ":" in value:
            fhir_type = "time"
        elif _DATE.match(value):
            fhir_type = "date"
        else:
            fhir_type = "dateTime"
    if fhir_type == "date":
        return date_boundary(value, high)
    if fhir_type in ("dateTime", "instant"):
        return datetime_boundary(value, high)
    if fhir_type == "time":
        return time_boundary(value, high)
    return None
