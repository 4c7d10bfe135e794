"""The SMART on FHIR Python client reads our CapabilityStatement and a Patient."""

from __future__ import annotations

import httpx
from fhirclient import client
from fhirclient.models.patient import Patient


def test_fhirclient_reads_metadata_and_a_patient(server, fhir: httpx.Client) -> None:  # type: ignore[no-untyped-def]
    created = fhir.post(
        "/Patient",
        json={
            "resourceType": "Patient",
            "name": [{"family": "Bevan", "given": ["Aneurin"]}],
            "birthDate": "1897-11-15",
            "identifier": [{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9990000069"}],
        },
        headers={"Content-Type": "application/fhir+json"},
    ).json()
    smart = client.FHIRClient(settings={"app_id": "bevan-test", "api_base": server.base_url})
    smart.server.session.headers["Authorization"] = f"Bearer {server.token}"
    smart.prepare()  # reads /metadata
    assert smart.server.capabilityStatement.fhirVersion == "4.0.1"
    patient = Patient.read(created["id"], smart.server)
    assert patient.name[0].family == "Bevan"
    assert patient.birthDate.isostring == "1897-11-15"
    assert patient.identifier[0].value == "9990000069"
