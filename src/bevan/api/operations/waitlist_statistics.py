"""Appointment/$waitlist-statistics: each service's waiting list (people waiting, their
median wait so far, offers open, slots wasted), counts only, for the statistics release."""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from bevan.api.context import FhirRequest
from bevan.api.parameters import operation_inputs, text, unknown_inputs
from bevan.api.responses import fhir_json
from bevan.scheduling.waiting_list import waiting_list_statistics
from bevan.security.booking_rights import check_waitlist_statistics


def waitlist_statistics(fhir: FhirRequest) -> Response:
    """GET Appointment/$waitlist-statistics[?service-type=system|code]: a Parameters with
    one `service` part per service type."""
    check_waitlist_statistics(fhir.caller)
    pairs = operation_inputs(fhir)
    unknown_inputs(fhir, pairs, ("service-type",), "Appointment/$waitlist-statistics")
    wanted = text(pairs, "service-type")
    found = waiting_list_statistics(fhir.records)
    parameters: list[dict[str, Any]] = []
    for each in found:
        if wanted is not None and each.service != wanted and each.service.split("|")[-1] != wanted:
            continue
        part: list[dict[str, Any]] = [
            {"name": "serviceType", "valueString": each.service},
            {"name": "waiting", "valueInteger": each.waiting},
            {"name": "offersOpen", "valueInteger": each.offers_open},
            {"name": "slotsWasted", "valueInteger": each.slots_wasted},
        ]
        if each.median_wait_days is not None:
            part.insert(2, {"name": "medianWaitDays", "valueDecimal": each.median_wait_days})
        parameters.append({"name": "service", "part": part})
    body: dict[str, Any] = {"resourceType": "Parameters"}
    if parameters:
        body["parameter"] = parameters
    return fhir_json(body, pretty=fhir.pretty)
