"""Vital signs for the summary page: the latest of each, and trend charts drawn on the
server as inline SVG (no script, no chart library in the browser).

Each chart is an accessible image: `role="img"` with a title and a description that
says, in words, the range and the latest reading; the points carry their value and
time as `<title>` tooltips.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from markupsafe import Markup, escape

from bevan.web import presentation as shown

LOINC = "http://loinc.org"
BLOOD_PRESSURE = "85354-9"


@dataclass(frozen=True)
class VitalSign:
    """One kind of vital sign the summary charts: its LOINC codes and how it is shown."""

    key: str
    label: str
    codes: tuple[str, ...]
    unit: str
    component: str | None = None  # the component of a panel (blood pressure)


VITAL_SIGNS = (
    VitalSign("respiration", "Respiration rate", ("9279-1",), "breaths/min"),
    VitalSign("oxygen", "Oxygen saturation", ("2708-6", "59408-5"), "%"),
    VitalSign("systolic", "Systolic blood pressure", (BLOOD_PRESSURE, "8480-6"), "mmHg", "8480-6"),
    VitalSign(
        "diastolic", "Diastolic blood pressure", (BLOOD_PRESSURE, "8462-4"), "mmHg", "8462-4"
    ),
    VitalSign("pulse", "Pulse rate", ("8867-4",), "beats/min"),
    VitalSign("temperature", "Temperature", ("8310-5", "8331-1"), "°C"),
    VitalSign("weight", "Body weight", ("29463-7",), "kg"),
    VitalSign("bmi", "Body mass index", ("39156-5",), "kg/m²"),
)
CHARTED = ("respiration", "oxygen", "systolic", "pulse", "temperature", "weight")
MAX_POINTS = 20


@dataclass(frozen=True)
class Reading:
    when: str
    value: float


@dataclass(frozen=True)
class VitalSignSeries:
    sign: VitalSign
    readings: tuple[Reading, ...]  # oldest first

    @property
    def latest(self) -> Reading | None:
        return self.readings[-1] if self.readings else None


def _codes(concept: Any) -> set[str]:
    if not isinstance(concept, dict):
        return set()
    return {
        str(c.get("code"))
        for c in concept.get("coding") or []
        if isinstance(c, dict) and c.get("system") == LOINC
    }


def _value(element: dict[str, Any]) -> float | None:
    quantity = element.get("valueQuantity")
    if isinstance(quantity, dict) and isinstance(quantity.get("value"), int | float):
        return float(quantity["value"])
    return None


def series_of(observations: list[dict[str, Any]]) -> list[VitalSignSeries]:
    """Return each vital sign's readings (oldest first, the latest MAX_POINTS) from
    Observations in any order; signs with no readings are left out."""
    found: dict[str, list[Reading]] = {sign.key: [] for sign in VITAL_SIGNS}
    for observation in observations:
        when = shown.when(observation, "effectiveDateTime", "effectivePeriod", "issued")
        if when is None or observation.get("status") in ("entered-in-error", "cancelled"):
            continue
        codes = _codes(observation.get("code"))
        for sign in VITAL_SIGNS:
            if not codes & set(sign.codes):
                continue
            value = None
            if sign.component:
                for component in observation.get("component") or []:
                    if isinstance(component, dict) and sign.component in _codes(
                        component.get("code")
                    ):
                        value = _value(component)
                if value is None and sign.component in codes:
                    value = _value(observation)
            else:
                value = _value(observation)
            if value is not None:
                found[sign.key].append(Reading(when, value))
    out = []
    for sign in VITAL_SIGNS:
        readings = sorted(found[sign.key], key=lambda r: _moment(r.when))[-MAX_POINTS:]
        if readings:
            out.append(VitalSignSeries(sign, tuple(readings)))
    return out


def _moment(text: str) -> float:
    moment = shown.instant_moment(text if "T" in text else f"{text[:10]}T00:00:00+00:00")
    if moment is None:
        return 0.0
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.now().astimezone().tzinfo)
    return moment.timestamp()


def number(value: float) -> str:
    """Return a reading as people write it: no trailing .0, at most one decimal place."""
    return f"{value:.0f}" if value == int(value) else f"{value:.1f}"


# The drawing: a fixed viewBox the page scales to its width.
WIDTH, HEIGHT = 320, 140
LEFT, RIGHT, TOP, BOTTOM = 40, 10, 12, 28


def trend_chart(series: VitalSignSeries) -> Markup:
    """Return an inline SVG line chart of one vital sign's readings over time."""
    readings = series.readings
    sign = series.sign
    times = [_moment(r.when) for r in readings]
    values = [r.value for r in readings]
    low, high = min(values), max(values)
    if high == low:
        low, high = low - 1, high + 1
    pad = (high - low) * 0.1
    low, high = low - pad, high + pad
    start, end = min(times), max(times)
    span = (end - start) or 1.0
    inner_w, inner_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(t: float) -> float:
        return LEFT + (inner_w * (t - start) / span if len(readings) > 1 else inner_w / 2)

    def y(v: float) -> float:
        return TOP + inner_h * (1 - (v - low) / (high - low))

    points = [(x(t), y(v)) for t, v in zip(times, values, strict=True)]
    path = " ".join(
        f"{'M' if i == 0 else 'L'}{px:.1f},{py:.1f}" for i, (px, py) in enumerate(points)
    )
    latest = readings[-1]
    chart_id = f"chart-{sign.key}"
    description = (
        f"{len(readings)} readings from {shown.day(readings[0].when)} to "
        f"{shown.day(latest.when)}, between {number(min(values))} and {number(max(values))} "
        f"{sign.unit}; latest {number(latest.value)} {sign.unit}."
    )
    parts = [
        f'<svg class="bevan-chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-labelledby="{chart_id}-title {chart_id}-desc" focusable="false">',
        f'<title id="{chart_id}-title">{escape(sign.label)} ({escape(sign.unit)})</title>',
        f'<desc id="{chart_id}-desc">{escape(description)}</desc>',
        f'<line class="bevan-chart__axis" x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{HEIGHT - BOTTOM}"/>',
        f'<line class="bevan-chart__axis" x1="{LEFT}" y1="{HEIGHT - BOTTOM}" '
        f'x2="{WIDTH - RIGHT}" y2="{HEIGHT - BOTTOM}"/>',
    ]
    for value in (high - pad, low + pad):
        parts.append(
            f'<text class="bevan-chart__label" x="{LEFT - 4}" y="{y(value) + 4:.1f}" '
            f'text-anchor="end">{escape(number(value))}</text>'
        )
    parts.append(
        f'<text class="bevan-chart__label" x="{LEFT}" y="{HEIGHT - 8}">'
        f"{escape(shown.day(readings[0].when))}</text>"
    )
    parts.append(
        f'<text class="bevan-chart__label" x="{WIDTH - RIGHT}" y="{HEIGHT - 8}" '
        f'text-anchor="end">{escape(shown.day(latest.when))}</text>'
    )
    parts.append(f'<path class="bevan-chart__line" d="{path}"/>')
    for (px, py), reading in zip(points, readings, strict=True):
        parts.append(
            f'<circle class="bevan-chart__point" cx="{px:.1f}" cy="{py:.1f}" r="3">'
            f"<title>{escape(number(reading.value))} {escape(sign.unit)}, "
            f"{escape(shown.day_and_time(reading.when))}</title></circle>"
        )
    parts.append("</svg>")
    return Markup("".join(parts))
