from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bevan.fhir.dates import date_range, format_instant, instant_range, now_instant


@pytest.mark.parametrize(
    ("text", "low", "high"),
    [
        ("2026", "2026-01-01T00:00:00.000Z", "2027-01-01T00:00:00.000Z"),
        ("2026-02", "2026-02-01T00:00:00.000Z", "2026-03-01T00:00:00.000Z"),
        ("2026-12", "2026-12-01T00:00:00.000Z", "2027-01-01T00:00:00.000Z"),
        ("2026-11-24", "2026-11-24T00:00:00.000Z", "2026-11-25T00:00:00.000Z"),
        ("2026-11-24T10:00+01:00", "2026-11-24T09:00:00.000Z", "2026-11-24T09:01:00.000Z"),
        ("2026-11-24T10:00:05Z", "2026-11-24T10:00:05.000Z", "2026-11-24T10:00:06.000Z"),
        ("2026-11-24T10:00:05.1Z", "2026-11-24T10:00:05.100Z", "2026-11-24T10:00:05.200Z"),
    ],
)
def test_a_date_is_a_range_at_its_precision(text: str, low: str, high: str) -> None:
    start, end = date_range(text)
    assert (format_instant(start), format_instant(end)) == (low, high)
    assert instant_range(text) == (low, high)
    assert instant_range(text) == (low, high)  # remembered, the same


def test_now_is_a_utc_instant_to_the_millisecond() -> None:
    before = datetime.now(UTC)
    text = now_instant()
    after = datetime.now(UTC)
    assert len(text) == len("2026-11-24T05:33:59.123Z") and text.endswith("Z")
    moment = datetime.fromisoformat(text)
    assert before.replace(microsecond=before.microsecond // 1000 * 1000) <= moment <= after


@pytest.mark.parametrize("text", ["yesterday", "2026-13-01", "2026-02-30", "26-11-24"])
def test_bad_dates_say_why(text: str) -> None:
    with pytest.raises(ValueError, match=text):
        date_range(text)
    with pytest.raises(ValueError, match=text):
        instant_range(text)


def test_instants_sort_as_text() -> None:
    a = format_instant(datetime(2026, 1, 2, 3, 4, 5, 6000, tzinfo=UTC))
    b = format_instant(datetime(2026, 1, 2, 3, 4, 5, 7000, tzinfo=UTC))
    assert a < b and len(a) == len(b) == 24
