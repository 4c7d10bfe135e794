"""$import: NDJSON (one body, or several files uploaded together) loaded asynchronously
by system accounts alone, refused lines reported by file and line, every import audited
once; and a round trip: what one server exports, an empty one imports the same."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from bevan.security.tokens import TokenAuthority
from bevan.synth import generate_patients, shared_resources
from tests.api.operations.bulk import RESPOND_ASYNC, export, files, ids, manifest_of
from tests.api.operations.people import ROLES, client_for
from tests.conftest import RunningServer, database_url, start_server
from tests.nhs_numbers import fresh_nhs_number
from tests.people import PEOPLE

NDJSON = {**RESPOND_ASYNC, "Content-Type": "application/fhir+ndjson"}


def ndjson(resources: list[dict[str, Any]]) -> bytes:
    return b"".join(orjson.dumps(r) + b"\n" for r in resources)


def patient(id: str) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "id": id,
        "identifier": [
            {"system": "https://fhir.nhs.uk/Id/nhs-number", "value": fresh_nhs_number()}
        ],
        "name": [{"family": id.title()}],
        "generalPractitioner": [{"reference": "Organization/practice-a"}],
    }


def condition(id: str, subject: str) -> dict[str, Any]:
    return {
        "resourceType": "Condition",
        "id": id,
        "subject": {"reference": f"Patient/{subject}"},
        "code": {"text": "Asthma"},
    }


def imported(client: httpx.Client, response: httpx.Response) -> dict[str, Any]:
    """Return the final report of an import whose kick-off answered response."""
    assert response.status_code == 202, response.text
    return manifest_of(client, response.headers["content-location"])


def test_an_ndjson_body_is_imported_and_reported(fhir: httpx.Client, server: RunningServer) -> None:
    body = ndjson([*PEOPLE[:2], patient("imported-1"), condition("asthma-1", "imported-1")])
    report = imported(fhir, fhir.post("/$import", content=body, headers=NDJSON))
    assert report["output"] == [
        {"type": "Condition", "count": 1},
        {"type": "Organization", "count": 2},
        {"type": "Patient", "count": 1},
    ]
    assert report["error"] == [] and report["refused"] == []
    assert report["request"] == f"{server.base_url}/$import"
    stored = fhir.get("/Condition/asthma-1")
    assert stored.status_code == 200
    assert stored.json()["subject"] == {"reference": "Patient/imported-1"}


def test_refused_lines_are_reported_by_file_and_line(fhir: httpx.Client) -> None:
    patients = ndjson([patient("imported-2"), {"resourceType": "Patient", "gender": "sometimes"}])
    conditions = (
        ndjson([condition("asthma-2", "imported-2")])
        + b"{not json\n"
        + ndjson([condition("asthma-3", "nobody-at-all")])
    )
    # Conditions first: what refers to a Patient in a later file waits for it.
    response = fhir.post(
        "/$import",
        files=[
            ("file", ("conditions.ndjson", conditions, "application/fhir+ndjson")),
            ("file", ("patients.ndjson", patients, "application/fhir+ndjson")),
        ],
        headers=RESPOND_ASYNC,
    )
    report = imported(fhir, response)
    assert report["output"] == [{"type": "Condition", "count": 1}, {"type": "Patient", "count": 1}]
    refused = {(r["file"], r.get("line")): r["diagnostics"] for r in report["refused"]}
    assert set(refused) == {
        ("patients.ndjson", 2),
        ("conditions.ndjson", 2),
        ("conditions.ndjson", 3),
    }
    assert "gender" in refused[("patients.ndjson", 2)]
    assert "nobody-at-all" in refused[("conditions.ndjson", 3)]
    assert fhir.get("/Condition/asthma-2").status_code == 200
    assert fhir.get("/Condition/asthma-3").status_code == 404
    # The same refusals as OperationOutcomes, one a line, in the error file.
    assert report["error"][0]["type"] == "OperationOutcome" and report["error"][0]["count"] == 3
    outcomes = fhir.get(report["error"][0]["url"]).content.splitlines()
    assert len(outcomes) == 3
    assert all(orjson.loads(line)["resourceType"] == "OperationOutcome" for line in outcomes)


def test_only_a_system_account_may_import(server: RunningServer) -> None:
    body = ndjson([patient("never-imported")])
    authority = TokenAuthority.in_directory(server.data_dir)
    device = authority.issue("device-2", "device", patient_id="related", device_id="d2")
    clients = [client_for(server, role) for role in ROLES if role != "system"]
    clients.append(server.client(device))
    for client in clients:
        with client:
            refused = client.post("/$import", content=body, headers=NDJSON)
            assert refused.status_code == 403, refused.text
            assert refused.json()["resourceType"] == "OperationOutcome"
    with server.client() as fhir:
        assert fhir.get("/Patient/never-imported").status_code == 404


def test_bad_import_requests_are_refused_with_an_outcome(fhir: httpx.Client) -> None:
    body = ndjson([patient("imported-3")])
    without_prefer = fhir.post(
        "/$import", content=body, headers={"Content-Type": "application/fhir+ndjson"}
    )
    assert without_prefer.status_code == 400
    as_json = fhir.post(
        "/$import", content=body, headers={**RESPOND_ASYNC, "Content-Type": "application/json"}
    )
    assert as_json.status_code == 415
    empty = fhir.post("/$import", content=b"\n\n", headers=NDJSON)
    assert empty.status_code == 400
    assert fhir.get("/$import", headers=RESPOND_ASYNC).status_code == 405
    for response in (without_prefer, as_json, empty):
        assert response.json()["resourceType"] == "OperationOutcome"
    assert fhir.get("/Patient/imported-3").status_code == 404


def test_an_import_is_audited_once_naming_its_files_and_counts(server: RunningServer) -> None:
    importer = TokenAuthority.in_directory(server.data_dir).issue("audited-importer", "system")
    with server.client(importer) as client:
        response = client.post(
            "/$import",
            files=[
                (
                    "file",
                    ("people.ndjson", ndjson([patient("imported-4")]), "application/fhir+ndjson"),
                )
            ],
            headers=RESPOND_ASYNC,
        )
        imported(client, response)
        events = client.get("/AuditEvent", params={"agent": "audited-importer"}).json()
    ended = [
        e["resource"]
        for e in events["entry"]
        if e["resource"].get("outcomeDesc", "").startswith("imported")
    ]
    assert [e["outcomeDesc"] for e in ended] == [
        "imported from people.ndjson: Patient: 1; refused 0 lines"
    ]
    query = [e for e in ended[0]["entity"] if e.get("detail")]
    assert {"type": "path", "valueString": "/fhir/$import"} in query[0]["detail"]


@pytest.fixture
def empty_server(backend: str, tmp_path: Path) -> Iterator[RunningServer]:
    yield from start_server(database_url(backend, tmp_path), tmp_path)


def without_version(resource: dict[str, Any]) -> dict[str, Any]:
    meta = {
        k: v for k, v in resource.get("meta", {}).items() if k not in ("versionId", "lastUpdated")
    }
    return (
        {**resource, "meta": meta} if meta else {k: v for k, v in resource.items() if k != "meta"}
    )


def test_an_export_imported_into_an_empty_server_gives_the_same_resources(
    server: RunningServer, empty_server: RunningServer, tmp_path: Path
) -> None:
    population = [*shared_resources(11), *(r for p in generate_patients(8, 11) for r in p)]
    with server.client() as source:
        report = imported(
            source, source.post("/$import", content=ndjson(population), headers=NDJSON)
        )
        assert report["refused"] == []
        manifest = export(source)
        exported = files(source, manifest)
    wanted = {r["id"] for r in population}
    assert ids(exported)["Patient"] >= {
        r["id"] for r in population if r["resourceType"] == "Patient"
    }
    uploads = [
        ("file", (f"{t}.ndjson", ndjson(resources), "application/fhir+ndjson"))
        for t, resources in sorted(exported.items())  # in name order: referrers wait
    ]
    with empty_server.client() as target:
        report = imported(target, target.post("/$import", files=uploads, headers=RESPOND_ASYNC))
        assert report["refused"] == []
        assert {o["type"]: o["count"] for o in report["output"]} == {
            o["type"]: o["count"] for o in manifest["output"]
        }
        again = files(target, export(target))
    assert set(again) == set(exported)
    for resource_type, resources in exported.items():
        before = {r["id"]: without_version(r) for r in resources}
        after = {r["id"]: without_version(r) for r in again[resource_type]}
        assert after == before, resource_type
    assert wanted & ids(again)["Observation"]
