"""Schedule/[id]/$generate-slots: a diary's free slots made in bulk from a template (a
week of 15-minute slots, say), all in one transaction."""

from __future__ import annotations

from starlette.responses import Response

from bevan.api.context import FhirRequest
from bevan.api.parameters import operation_inputs, unknown_inputs
from bevan.api.responses import fhir_json
from bevan.fhir.bundles import bundle, entry_for
from bevan.scheduling.slot_generation import TEMPLATE_PARAMETERS, generate_slots, template_from


def generate_slots_operation(fhir: FhirRequest) -> Response:
    """POST Schedule/[id]/$generate-slots (Parameters: start, days, session, minutes,
    weekdays, patientBookable): 201 and a collection Bundle of the Slots made."""
    schedule_id = fhir.path("id")
    fhir.allow("Slot", "create")
    pairs = operation_inputs(fhir)
    unknown_inputs(fhir, pairs, TEMPLATE_PARAMETERS, "Schedule/$generate-slots")
    template = template_from(p for p in pairs if p[0] in TEMPLATE_PARAMETERS)
    made = generate_slots(fhir.records, schedule_id, template, guard=fhir.write_guard())
    entries = [entry_for(f"{fhir.base_url}/Slot/{v.id}", v.content) for v in made]
    return fhir_json(bundle("collection", entries, total=len(made)), 201, pretty=fhir.pretty)
