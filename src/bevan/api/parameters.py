"""An operation's parameters as one list: the query string's, then a POSTed Parameters
body's; and what to say about the ones an operation does not know."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from bevan.api.context import FhirRequest, json_body
from bevan.api.negotiation import check_body_type
from bevan.fhir.errors import InvalidRequest, Issue
from bevan.fhir.outcome import operation_outcome
from bevan.fhir.parameters import parameter_pairs

# Parameters every interaction accepts and no operation need know.
GENERAL = frozenset({"_format", "_pretty", "_cursor"})


def operation_inputs(fhir: FhirRequest) -> list[tuple[str, Any]]:
    """Return an operation's parameters: the query's, then a POST's Parameters body's."""
    pairs: list[tuple[str, Any]] = list(fhir.request.query_params.multi_items())
    if fhir.request.method == "POST" and fhir.body.strip():
        check_body_type(fhir.request)
        pairs += parameter_pairs(json_body(fhir))
    return pairs


def unknown_inputs(
    fhir: FhirRequest, pairs: Iterable[tuple[str, Any]], known: Iterable[str], operation: str
) -> tuple[str, ...]:
    """Return the parameters an operation does not know, to be reported as search
    reports them; with Prefer: handling=strict, refuse them (400) instead."""
    allowed = GENERAL | set(known)
    unknown = tuple(dict.fromkeys(name for name, _ in pairs if name not in allowed))
    if unknown and fhir.prefer.strict:
        raise InvalidRequest(
            *(
                Issue(
                    f"parameter {name!r} is not supported by {operation}",
                    code="not-supported",
                    expression=(f"{operation}?{name}",),
                )
                for name in unknown
            )
        )
    return unknown


def ignored_entry(unknown: tuple[str, ...], operation: str) -> dict[str, Any]:
    """Return the searchset entry (mode outcome) saying which parameters were ignored."""
    outcome = operation_outcome(
        Issue(
            f"these parameters are not supported and were ignored: {', '.join(unknown)}",
            code="not-supported",
            severity="warning",
            expression=tuple(f"{operation}?{name}" for name in unknown),
        )
    )
    return {"resource": outcome, "search": {"mode": "outcome"}}


def single(pairs: Iterable[tuple[str, Any]], name: str) -> Any:
    """Return the one value of a parameter (None if absent); refuse it given twice."""
    values = [value for key, value in pairs if key == name]
    if len(values) > 1:
        raise InvalidRequest(Issue(f"{name} may be given only once", expression=(name,)))
    return values[0] if values else None


def text(pairs: Iterable[tuple[str, Any]], name: str) -> str | None:
    """Return the one value of a parameter as text (None if absent)."""
    value = single(pairs, name)
    if value is not None and not isinstance(value, str):
        raise InvalidRequest(Issue(f"{name} must be a simple value", expression=(name,)))
    return value
