"""The patients a resource names, wherever it names them: by literal reference in any
element (not only the Patient compartment's parameters), by NHS number in a
reference's identifier, inside the resources a Bundle carries, and through the resources
a Binary's securityContext and a Provenance's targets point to. Access decisions start from this."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bevan.fhir.references import parse_reference
from bevan.fhir.search_parameters import in_patient_compartment

NHS_NUMBER = "https://fhir.nhs.uk/Id/nhs-number"

# Types outside the Patient compartment that still carry a patient's record: a Binary
# (a scanned letter), a Bundle (a document or message) and a Task (work about a patient).
PATIENT_BEARING_TYPES = frozenset({"Binary", "Bundle", "Task"})


# Elements pointing at the resources whose record this one is part of: a Binary is the
# content of its securityContext, and a Provenance tells of its targets.
_CONTEXT_ELEMENTS = {"Binary": ("securityContext",), "Provenance": ("target",)}


@dataclass(frozen=True)
class NamedPatients:
    """What a resource says about whose record it is."""

    ids: frozenset[str] = frozenset()  # Patient/{id} referenced (or the Patient itself)
    nhs_numbers: frozenset[str] = frozenset()  # patients named only by NHS number
    # Resources whose patients this one shares (a Binary's securityContext, a
    # Provenance's targets).
    contexts: frozenset[tuple[str, str]] = frozenset()

    @property
    def empty(self) -> bool:
        return not (self.ids or self.nhs_numbers or self.contexts)


def holds_patient_data(resource_type: str) -> bool:
    """Return True if resources of this type may be part of a patient's record."""
    return in_patient_compartment(resource_type) or resource_type in PATIENT_BEARING_TYPES


def patients_named(resource: dict[str, Any], local_base: str | None = None) -> NamedPatients:
    """Return every patient resource names, in any element, by id or by NHS number."""
    ids: set[str] = set()
    nhs_numbers: set[str] = set()
    contexts: set[tuple[str, str]] = set()
    if resource.get("resourceType") == "Patient" and isinstance(resource.get("id"), str):
        ids.add(resource["id"])
    for element in _CONTEXT_ELEMENTS.get(resource.get("resourceType", ""), ()):
        value = resource.get(element)
        for each in value if isinstance(value, list) else [value]:
            target = _local_target(each, local_base) if isinstance(each, dict) else None
            if target is not None and target[0] != "Patient":
                contexts.add(target)
    if resource.get("resourceType") == "Bundle":
        for entry in resource.get("entry") or []:
            carried = entry.get("resource") if isinstance(entry, dict) else None
            if isinstance(carried, dict) and carried.get("resourceType") == "Patient":
                ids.update(i for i in (carried.get("id"),) if isinstance(i, str))
    _walk(resource, local_base, ids, nhs_numbers, top=True)
    return NamedPatients(frozenset(ids), frozenset(nhs_numbers), frozenset(contexts))


def _walk(
    node: Any, local_base: str | None, ids: set[str], nhs_numbers: set[str], top: bool = False
) -> None:
    if isinstance(node, list):
        for item in node:
            if isinstance(item, dict | list):
                _walk(item, local_base, ids, nhs_numbers)
        return
    if not isinstance(node, dict):
        return
    target = _local_target(node, local_base)
    if target is not None and target[0] == "Patient":
        ids.add(target[1])
    identifier = node.get("identifier")
    if isinstance(identifier, dict):  # Reference.identifier (a resource's is a list)
        number = _nhs_number(identifier)
        if number:
            nhs_numbers.add(number)
    # A Patient carried in a Bundle, or contained, names whoever holds its NHS number; a
    # Patient's own NHS number is itself (a second holder is refused as a duplicate).
    if node.get("resourceType") == "Patient" and not top:
        for each in node.get("identifier") or []:
            number = _nhs_number(each) if isinstance(each, dict) else None
            if number:
                nhs_numbers.add(number)
    for value in node.values():
        if isinstance(value, dict | list):
            _walk(value, local_base, ids, nhs_numbers)


def _local_target(node: dict[str, Any], local_base: str | None) -> tuple[str, str] | None:
    text = node.get("reference")
    if not isinstance(text, str):
        return None
    found = parse_reference(text)
    if found is None:
        return None
    if found.base is not None and (local_base is None or found.base.rstrip("/") != local_base):
        return None  # another server's resource: not a patient of this record
    return found.resource_type, found.id


def _nhs_number(identifier: dict[str, Any]) -> str | None:
    value = identifier.get("value")
    if identifier.get("system") == NHS_NUMBER and isinstance(value, str) and value.strip():
        return value.strip()
    return None
