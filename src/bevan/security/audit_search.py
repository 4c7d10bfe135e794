"""AuditEvent search parameters (IHE RESTful ATNA, as BALP uses them) as a query of the
audit trail: patient, agent, entity, date (with prefixes), outcome, type, subtype,
action, _count, and the _before cursor of the next page."""

from __future__ import annotations

from collections.abc import Sequence

from bevan.fhir.dates import instant_range
from bevan.fhir.errors import InvalidRequest, Issue
from bevan.fhir.paging import DEFAULT_COUNT, parse_count
from bevan.store.audit import AuditQuery

# Parameters that shape the answer rather than choose entries.
PRESENTATION = frozenset({"_format", "_pretty"})
_DATE_PREFIXES = ("eq", "ge", "gt", "le", "lt", "sa", "eb")


def _invalid(text: str, parameter: str) -> InvalidRequest:
    return InvalidRequest(Issue(text, code="invalid", expression=(f"AuditEvent?{parameter}",)))


def _reference(value: str, resource_type: str | None = None) -> str:
    """Return "Type/id" of a reference given absolute, relative, or (for patient) as an id."""
    parts = value.rstrip("/").split("/")
    if len(parts) >= 2 and parts[-2] and parts[-1]:
        return f"{parts[-2]}/{parts[-1]}"
    if resource_type is not None and value:
        return f"{resource_type}/{value}"
    return value


def _token(value: str) -> tuple[str | None, str]:
    system, bar, code = value.rpartition("|")
    return (system if bar else None), code


def _fragments(values: list[str], element: str) -> tuple[str, ...]:
    """Return the texts of a type or subtype coding, as the stored AuditEvent spells it."""
    texts = []
    for value in values:
        system, code = _token(value)
        if system:
            texts.append(f'{{"system":"{system}","code":"{code}"')
        else:
            texts.append(f'"code":"{code}"')
    return tuple(texts)


def audit_query(pairs: Sequence[tuple[str, str]]) -> AuditQuery:
    """Return the audit query of AuditEvent search parameters; InvalidRequest names any
    parameter it cannot honour (an unknown one is refused, not ignored: a filter
    silently dropped would show an auditor more than they asked for, or less)."""
    users: set[str] | None = None
    entities: list[tuple[str, ...]] = []
    low: str | None = None
    high: str | None = None
    outcomes: set[str] | None = None
    actions: set[str] | None = None
    fragments: list[tuple[str, ...]] = []
    count = DEFAULT_COUNT
    before: int | None = None
    for name, value in pairs:
        values = [v for v in value.split(",") if v]
        if name in PRESENTATION:
            continue
        if not values:
            raise _invalid(f"{name} has no value", name)
        if name == "patient":
            entities.append(tuple(_reference(v, "Patient") for v in values))
        elif name == "entity":
            entities.append(tuple(_reference(v) for v in values))
        elif name == "agent":
            # An agent is named by the user id it signed in as, or a reference ending in it.
            given = {v.rstrip("/").rsplit("/", 1)[-1] for v in values}
            users = given if users is None else users & given
        elif name == "date":
            for text in values:
                prefix, rest = (text[:2], text[2:]) if text[:2] in _DATE_PREFIXES else ("eq", text)
                try:
                    start, end = instant_range(rest)
                except ValueError as error:
                    raise _invalid(str(error), name) from None
                if prefix in ("ge", "eq"):
                    low = max(low or start, start)
                if prefix in ("gt", "sa"):
                    low = max(low or end, end)
                if prefix in ("lt", "eb"):
                    high = min(high or start, start)
                if prefix in ("le", "eq"):
                    high = min(high or end, end)
        elif name == "outcome":
            codes = {_token(v)[1] for v in values}
            outcomes = codes if outcomes is None else outcomes & codes
        elif name == "action":
            codes = {_token(v)[1] for v in values}
            actions = codes if actions is None else actions & codes
        elif name in ("type", "subtype"):
            fragments.append(_fragments(values, name))
        elif name == "_count":
            count = parse_count(value, f"AuditEvent?{name}")
        elif name == "_before":
            if not value.isdigit():
                raise _invalid("_before must be an audit entry's number", name)
            before = int(value)
        else:
            raise InvalidRequest(
                Issue(
                    f"AuditEvent cannot be searched by {name!r}; use patient, agent, entity, "
                    "date, outcome, action, type, subtype or _count",
                    code="not-supported",
                    expression=(f"AuditEvent?{name}",),
                )
            )
    if any(chosen is not None and not chosen for chosen in (users, outcomes, actions)):
        before = 0  # repeated parameters that no entry can meet at once: nothing comes before 0
    return AuditQuery(
        user_ids=tuple(sorted(users)) if users is not None else (),
        entities=tuple(entities),
        recorded_from=low,
        recorded_before=high,
        outcomes=tuple(sorted(outcomes)) if outcomes is not None else (),
        actions=tuple(sorted(actions)) if actions is not None else (),
        fragments=tuple(fragments),
        before_seq=before,
        limit=count,
    )
