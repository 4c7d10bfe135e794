"""Relationships written under break-glass, which count only once someone confirms them.

Breaking the glass grants one user four hours on one patient. Without this module that
user could write a CareTeam, EpisodeOfCare, ServiceRequest (referral) or Appointment
naming their own organisation, and the next request would find a "legitimate
relationship": the emergency grant turned into standing access for everyone in the
organisation, with no review.

So a write of one of those types, by a user who reached the patient only through
break-glass, is marked with the security label `UNCONFIRMED`
(`https://fhir.bevan.nhs.uk/CodeSystem/access|break-glass-unconfirmed`), added by the
server whatever the client sent. The relationship criterion (`AccessPolicy.
relationship_criterion`) ignores resources carrying the label, so it grants nothing.
It is confirmed when someone with an existing relationship (reached without
break-glass) updates the resource without the label, or when a privacy officer
reviewing the grant confirms it (`POST /fhir/$break-glass/{id}` with `"confirm": true`).
A user under break-glass cannot take the label off, since every write they make puts it
back; nor can they register the patient with their organisation by changing the
Patient's general practitioner or managing organisation.
"""

from __future__ import annotations

from typing import Any

from bevan.fhir import json_text
from bevan.fhir.errors import Forbidden, Issue
from bevan.fhir.search import Criterion, TokenMatch, TokenValue, parse_search

ACCESS_SYSTEM = "https://fhir.bevan.nhs.uk/CodeSystem/access"
UNCONFIRMED_CODE = "break-glass-unconfirmed"
UNCONFIRMED = {
    "system": ACCESS_SYSTEM,
    "code": UNCONFIRMED_CODE,
    "display": "Written under break-glass; not yet confirmed as a relationship",
}
# The resource types whose existence makes a legitimate relationship.
RELATIONSHIP_TYPES = frozenset({"CareTeam", "EpisodeOfCare", "ServiceRequest", "Appointment"})
# Patient elements that make one (registration), which break-glass may not change.
REGISTRATION_ELEMENTS = ("generalPractitioner", "managingOrganization")


def is_unconfirmed(resource: dict[str, Any] | None) -> bool:
    """Return True if the resource carries the unconfirmed break-glass label."""
    if resource is None:
        return False
    labels = (resource.get("meta") or {}).get("security") or []
    return any(
        label.get("system") == ACCESS_SYSTEM and label.get("code") == UNCONFIRMED_CODE
        for label in labels
        if isinstance(label, dict)
    )


def mark_unconfirmed(resource: dict[str, Any]) -> None:
    """Add the unconfirmed label to resource (in place), once."""
    if is_unconfirmed(resource):
        return
    meta = resource.setdefault("meta", {})
    meta["security"] = [*(meta.get("security") or []), dict(UNCONFIRMED)]


def confirmed(resource: dict[str, Any]) -> dict[str, Any]:
    """Return a copy of resource without the unconfirmed label."""
    meta = dict(resource.get("meta") or {})
    kept = [
        label
        for label in meta.get("security") or []
        if not (label.get("system") == ACCESS_SYSTEM and label.get("code") == UNCONFIRMED_CODE)
    ]
    if kept:
        meta["security"] = kept
    else:
        meta.pop("security", None)
    copy = {**resource, "meta": meta}
    if not meta:
        del copy["meta"]
    return copy


def confirmed_only() -> Criterion:
    """Return the criterion that leaves out resources still awaiting confirmation."""
    return TokenMatch("_security", (TokenValue(UNCONFIRMED_CODE, ACCESS_SYSTEM),), "not")


def check_written_under_break_glass(
    old: dict[str, Any] | None, new: dict[str, Any], under_break_glass: bool
) -> None:
    """Label a relationship written under break-glass as unconfirmed (in place), and
    refuse a break-glass change to the patient's registration."""
    if not under_break_glass:
        return
    resource_type = new.get("resourceType")
    if resource_type in RELATIONSHIP_TYPES:
        mark_unconfirmed(new)
        return
    if resource_type == "Patient":
        changed = [name for name in REGISTRATION_ELEMENTS if (old or {}).get(name) != new.get(name)]
        if changed:
            raise Forbidden(
                Issue(
                    "access through break-glass cannot register the patient with an "
                    f"organisation: {', '.join(changed)} may not be changed under it",
                    code="forbidden",
                    expression=tuple(f"Patient.{name}" for name in changed),
                )
            )


def confirm_relationships(records: Any, patient_id: str) -> list[str]:
    """Return the references of the patient's unconfirmed relationships, each now
    confirmed (written again without the label) on a privacy officer's review."""
    done: list[str] = []
    label = f"{ACCESS_SYSTEM}|{UNCONFIRMED_CODE}"
    for resource_type in sorted(RELATIONSHIP_TYPES):
        query = parse_search(
            resource_type,
            [("patient", patient_id), ("_security", label), ("_count", "1000")],
        )
        for stored in records.search(query).matches:
            resource = json_text.loads(stored.content)
            records.update(resource_type, stored.id, confirmed(resource))
            done.append(f"{resource_type}/{stored.id}")
    return done
