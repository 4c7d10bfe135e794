"""How the pages write FHIR values for people: names, dates, ages, NHS numbers and
concepts, as the NHS Common User Interface (CUI) guidance shows them.

- Names: FAMILY name in capitals, then Given name, then (Title): `SMITH, John (Mr)`.
- Dates: DD-Mmm-YYYY (`09-Mar-1984`); ages in years from 2, months under 2, weeks
  under 4 months... shortened to `40y`, `18m`, `6w`, `3d`.
- NHS numbers in groups of 3, 3 and 4 digits.
- "Not known" for anything missing.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

NOT_KNOWN = "Not known"
NHS_NUMBER_SYSTEM = "https://fhir.nhs.uk/Id/nhs-number"
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
GENDERS = {"male": "Male", "female": "Female", "other": "Other", "unknown": NOT_KNOWN}


def official_name(patient: dict[str, Any]) -> dict[str, Any]:
    """Return the name to show: the official (or usual) one in use, else the first."""
    names = [n for n in patient.get("name") or [] if isinstance(n, dict)]
    for use in ("official", "usual", None):
        for name in names:
            if (use is None or name.get("use") == use) and "period" not in name:
                return name
    return names[0] if names else {}


def banner_name(patient: dict[str, Any]) -> str:
    """Return `FAMILY, Given (Title)` for a patient, or "Not known"."""
    name = official_name(patient)
    family = (name.get("family") or "").strip()
    given = " ".join(g for g in name.get("given") or [] if g)
    title = " ".join(p for p in name.get("prefix") or [] if p)
    if not family and not given:
        return NOT_KNOWN
    text = f"{family.upper()}, {given}" if family and given else (family.upper() or given)
    return f"{text} ({title})" if title else text


def _parse_day(text: str | None) -> date | None:
    if not text or len(text) < 10:
        return None
    try:
        return date.fromisoformat(text[:10])
    except ValueError:
        return None


def day(text: str | None) -> str:
    """Return a FHIR date or dateTime as DD-Mmm-YYYY, or "Not known"."""
    found = _parse_day(text)
    if found is None:
        if text and len(text) == 4 and text.isdigit():
            return text
        if text and len(text) == 7 and text[:4].isdigit():
            return f"{MONTHS[int(text[5:7]) - 1]}-{text[:4]}"
        return NOT_KNOWN
    return f"{found.day:02d}-{MONTHS[found.month - 1]}-{found.year}"


def time_of_day(text: str | None) -> str:
    """Return the HH:MM of a FHIR dateTime, or an empty string if it has no time."""
    if not text or "T" not in text:
        return ""
    return text.split("T", 1)[1][:5]


def day_and_time(text: str | None) -> str:
    """Return DD-Mmm-YYYY HH:MM for a FHIR dateTime (the day alone if it has no time)."""
    shown = day(text)
    clock = time_of_day(text)
    return f"{shown} {clock}" if clock and shown != NOT_KNOWN else shown


def age(birth: str | None, on: date | None = None) -> str:
    """Return an age as the CUI writes it: years from 2, months from 4 months (`18m`),
    weeks from 4 weeks (`6w`), days below that (`3d`); "" if not known."""
    born = _parse_day(birth)
    if born is None:
        return ""
    today = on or date.today()
    years = today.year - born.year - ((today.month, today.day) < (born.month, born.day))
    if years >= 2:
        return f"{years}y"
    months = (today.year - born.year) * 12 + today.month - born.month - (today.day < born.day)
    days = (today - born).days
    if days >= 122:
        return f"{months}m"
    if days >= 28:
        return f"{days // 7}w"
    return f"{max(days, 0)}d"


def born(patient: dict[str, Any], on: date | None = None) -> str:
    """Return `DD-Mmm-YYYY (age)`, or "Not known"."""
    birth = patient.get("birthDate")
    shown = day(birth)
    if shown == NOT_KNOWN:
        return NOT_KNOWN
    end = _parse_day(patient.get("deceasedDateTime")) if is_deceased(patient) else None
    years = age(birth, end or on)
    return f"{shown} ({years})" if years else shown


def gender(patient: dict[str, Any]) -> str:
    return GENDERS.get(patient.get("gender") or "unknown", NOT_KNOWN)


def nhs_number(patient: dict[str, Any]) -> str | None:
    """Return the patient's NHS number (digits only), if they have one."""
    for identifier in patient.get("identifier") or []:
        if isinstance(identifier, dict) and identifier.get("system") == NHS_NUMBER_SYSTEM:
            value = str(identifier.get("value") or "").replace(" ", "")
            if value:
                return value
    return None


def spaced_nhs_number(value: str | None) -> str:
    """Return an NHS number as 3-3-4 digits (`943 476 5919`), or "Not known"."""
    if not value:
        return NOT_KNOWN
    digits = value.replace(" ", "")
    if len(digits) != 10:
        return digits
    return f"{digits[:3]} {digits[3:6]} {digits[6:]}"


def is_deceased(patient: dict[str, Any]) -> bool:
    return bool(patient.get("deceasedBoolean") or patient.get("deceasedDateTime"))


def postcode(patient: dict[str, Any]) -> str:
    for address in patient.get("address") or []:
        if isinstance(address, dict) and address.get("postalCode"):
            return str(address["postalCode"])
    return NOT_KNOWN


def address_line(patient: dict[str, Any]) -> str:
    """Return the first address on one line, or "Not known"."""
    for address in patient.get("address") or []:
        if isinstance(address, dict):
            parts = [*(address.get("line") or []), address.get("city"), address.get("postalCode")]
            text = ", ".join(p for p in parts if p)
            if text:
                return text
    return NOT_KNOWN


def concept_text(concept: Any) -> str:
    """Return what a CodeableConcept says in words: its text, else its first display."""
    if not isinstance(concept, dict):
        return NOT_KNOWN
    if concept.get("text"):
        return str(concept["text"])
    for coding in concept.get("coding") or []:
        if isinstance(coding, dict) and coding.get("display"):
            return str(coding["display"])
    return NOT_KNOWN


def when(resource: dict[str, Any], *paths: str) -> str | None:
    """Return the first of the resource's date elements that is present (a Period's start)."""
    for path in paths:
        value = resource.get(path)
        if isinstance(value, dict):
            value = value.get("start")
        if isinstance(value, str):
            return value
    return None


def instant_moment(text: str) -> datetime | None:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
