"""Patient/$audit: who accessed a patient's record, newest first, for the patient
themselves (who see no other patient named) or a privacy officer."""

from __future__ import annotations

from starlette.responses import Response

from bevan.api.audit_events import audit_entries_bundle
from bevan.api.context import FhirRequest
from bevan.fhir.errors import Forbidden, Issue
from bevan.fhir.paging import PageRequest


def access_log(fhir: FhirRequest) -> Response:
    """GET /fhir/Patient/{id}/$audit: every access to this patient's record, newest first
    (the patient themselves, who see no other patient named, or a privacy officer)."""
    patient_id = fhir.path("id")
    caller = fhir.caller
    own = caller.role == "patient" and caller.principal.patient_id == patient_id
    if not own and caller.role != "privacy-officer":
        raise Forbidden(
            Issue("a record's access log is for its patient and privacy officers", code="forbidden")
        )
    caller.patients.add(patient_id)
    paging = PageRequest.parse(
        fhir.request.query_params.items(), default_count=100, cursor="_before", what="a page"
    )
    entries = fhir.services.trail.log.for_patient(
        patient_id, limit=paging.count + 1, before_seq=paging.position
    )
    return audit_entries_bundle(
        fhir,
        entries,
        paging.count,
        f"{fhir.base_url}/Patient/{patient_id}/$audit",
        paging.applied,
        patient_id=patient_id if own else None,
    )
