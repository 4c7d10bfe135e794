"""FHIR date, dateTime and instant values as UTC ranges at their precision."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta
from functools import lru_cache

_DATE = re.compile(
    r"(?P<y>\d{4})(?:-(?P<m>\d{2})(?:-(?P<d>\d{2})"
    r"(?:T(?P<H>\d{2}):(?P<M>\d{2})(?::(?P<S>\d{2})(?P<f>\.\d+)?)?(?P<tz>Z|[+-]\d{2}:\d{2})?)?)?)?"
)


EARLIEST = datetime.min.replace(tzinfo=UTC)
LATEST = datetime.max.replace(tzinfo=UTC)

# The last instant formatted, by its millisecond: a Bundle's entries mostly share one.
_LAST_NOW: tuple[int, str] = (-1, "")


def now_instant() -> str:
    """Return the current time as a FHIR instant in UTC with milliseconds."""
    global _LAST_NOW
    millisecond = time.time_ns() // 1_000_000
    last, text = _LAST_NOW
    if millisecond != last:
        seconds, thousandths = divmod(millisecond, 1000)
        moment = datetime.fromtimestamp(seconds, UTC).replace(microsecond=thousandths * 1000)
        text = format_instant(moment)
        _LAST_NOW = (millisecond, text)
    return text


def format_instant(moment: datetime) -> str:
    """Return a UTC datetime as 2026-11-24T05:33:59.123Z (fixed width, so it sorts)."""
    text = moment.astimezone(UTC).isoformat(timespec="milliseconds")
    return text[:-6] + "Z"  # "+00:00" -> "Z"


def date_range(text: str) -> tuple[datetime, datetime]:
    """Return [low, high) in UTC for a FHIR date/dateTime/instant at its precision.

    Raises ValueError naming what is wrong.
    """
    match = _DATE.fullmatch(text)
    if match is None:
        raise ValueError(f"{text!r} is not a FHIR date, dateTime or instant")
    year = int(match["y"])
    month = int(match["m"] or 1)
    day = int(match["d"] or 1)
    hour = int(match["H"] or 0)
    minute = int(match["M"] or 0)
    second = int(match["S"] or 0)
    fraction = match["f"] or ""
    micro = int((fraction[1:] + "000000")[:6]) if fraction else 0
    tz = match["tz"]
    if match["H"] is not None and tz is None:
        tz = "Z"  # a time without a zone: the server's zone, which is UTC
    offset = timedelta(0)
    if tz and tz != "Z":
        sign = 1 if tz[0] == "+" else -1
        offset = sign * timedelta(hours=int(tz[1:3]), minutes=int(tz[4:6]))
    try:
        local = datetime(year, month, day, hour, minute, second, micro, tzinfo=UTC)
    except ValueError as error:
        raise ValueError(f"{text!r} is not a real date: {error}") from None
    low = shifted(local, -offset)
    try:
        if match["m"] is None:
            high = low.replace(year=low.year + 1)
        elif match["d"] is None:
            high = (low.replace(day=28) + timedelta(days=4)).replace(day=1)
        elif match["H"] is None:
            high = low + timedelta(days=1)
        elif match["S"] is None:
            high = low + timedelta(minutes=1)
        elif not fraction:
            high = low + timedelta(seconds=1)
        else:
            high = low + timedelta(microseconds=10 ** (6 - min(len(fraction) - 1, 6)))
    except (OverflowError, ValueError):
        high = LATEST  # the end of the year 9999 is past the last moment a datetime holds
    return low, high


def shifted(moment: datetime, by: timedelta) -> datetime:
    """Return moment + by, held between the first moment of the year 1 and the last of
    the year 9999 (the range every FHIR date falls in)."""
    try:
        return moment + by
    except OverflowError:
        return LATEST if by > timedelta(0) else EARLIEST


@lru_cache(maxsize=65_536)
def instant_range(text: str) -> tuple[str, str]:
    """Return date_range(text) as sortable UTC instants (format_instant).

    Remembered: a record repeats its dates (an encounter's time is on each of its
    observations, reports and claims), and working one out costs several microseconds.
    Raises ValueError as date_range does.
    """
    low, high = date_range(text)
    return format_instant(low), format_instant(high)
