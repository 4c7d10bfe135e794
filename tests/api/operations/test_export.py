"""$export (Bulk Data Access 2.0): the asynchronous pattern, the manifest and its NDJSON
files read back as a Bulk Data client reads them, _type, _since and _typeFilter, cancel
and expiry, and that every caller's export holds exactly what they could search."""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bevan.bulk.jobs import STALE_SECONDS, BulkJobs, JobCancelled, JobRun
from bevan.fhir.validation import validate_resource
from bevan.security.tokens import TokenAuthority
from bevan.store.bulk_jobs import BulkJobTable
from tests.api.operations.bulk import RESPOND_ASYNC, export, files, finished, ids, kick_off
from tests.api.operations.people import client_for, observation, put_all
from tests.conftest import RunningServer, database_url, start_server
from tests.people import PEOPLE

HEART_RATE, SYSTOLIC = "8867-4", "8480-6"

READINGS = [
    observation("hr-1", "related", HEART_RATE, "2026-01-01T09:00:00Z", 70),
    observation("bp-1", "related", SYSTOLIC, "2026-01-15T09:00:00Z", 120),
    observation("hr-unrelated", "unrelated", HEART_RATE, "2026-03-02T09:00:00Z", 60),
    observation("bp-unrelated", "unrelated", SYSTOLIC, "2026-03-02T09:00:00Z", 140),
    observation(
        "hr-sensitive", "sensitive", HEART_RATE, "2026-03-03T09:00:00Z", 65, restricted=True
    ),
]
GROUP = {
    "resourceType": "Group",
    "id": "ward-round",
    "type": "person",
    "actual": True,
    "member": [{"entity": {"reference": "Patient/related"}}],
}


@pytest.fixture(scope="module")
def loaded(server: RunningServer) -> RunningServer:
    with server.client() as fhir:
        put_all(fhir, [*PEOPLE, *READINGS, GROUP])
    return server


def searched(client: httpx.Client, resource_type: str) -> set[str]:
    """Return the ids a caller finds by searching the type, page after page (none if
    they may not search it)."""
    found: set[str] = set()
    url: str | None = f"/{resource_type}?_count=1000"
    while url is not None:
        response = client.get(url)
        if response.status_code == 403:
            return set()
        assert response.status_code == 200, response.text
        page = response.json()
        found |= {
            e["resource"]["id"] for e in page.get("entry", []) if e["search"]["mode"] == "match"
        }
        url = next(
            (link["url"] for link in page.get("link", []) if link["relation"] == "next"), None
        )
    return found


def stored_types(fhir: httpx.Client) -> dict[str, int]:
    counts = {}
    for resource_type in ("Organization", "Patient", "Observation", "Group"):
        counts[resource_type] = fhir.get(f"/{resource_type}", params={"_summary": "count"}).json()[
            "total"
        ]
    return counts


def test_a_system_export_is_read_back_by_the_bulk_data_conventions(loaded: RunningServer) -> None:
    with loaded.client() as fhir:
        kicked = fhir.get("/$export", headers=RESPOND_ASYNC)
        assert kicked.status_code == 202
        status_url = kicked.headers["content-location"]
        response = finished(fhir, status_url)
        assert response.status_code == 200, response.text
        manifest = response.json()
        assert manifest["request"] == f"{loaded.base_url}/$export"
        assert manifest["requiresAccessToken"] is True
        assert manifest["transactionTime"].endswith("Z")
        assert manifest["error"] == []
        found = files(fhir, manifest)
        assert {t: len(r) for t, r in found.items()} == stored_types(fhir)
    for resources in found.values():
        for resource in resources:
            validate_resource(resource)
    assert ids(found)["Observation"] == {r["id"] for r in READINGS}


def test_type_since_and_type_filter_are_honoured(loaded: RunningServer) -> None:
    with loaded.client() as fhir:
        typed = files(fhir, export(fhir, _type="Patient,Group"))
        assert set(typed) == {"Patient", "Group"}
        assert ids(typed)["Group"] == {"ward-round"}

        filtered = files(
            fhir,
            export(fhir, _type="Observation", _typeFilter=f"Observation?code={HEART_RATE}"),
        )
        assert ids(filtered) == {"Observation": {"hr-1", "hr-unrelated", "hr-sensitive"}}

        since = fhir.get("/Group/ward-round").json()["meta"]["lastUpdated"]  # written last
        time.sleep(0.01)
        changed = {**READINGS[1], "status": "amended"}
        assert fhir.put("/Observation/bp-1", json=changed).status_code == 200
        recent = files(fhir, export(fhir, _since=since))
        assert ids(recent) == {"Observation": {"bp-1"}}
        assert recent["Observation"][0]["status"] == "amended"


def test_bad_kick_offs_are_refused_with_an_outcome(loaded: RunningServer) -> None:
    with loaded.client() as fhir:
        without_prefer = fhir.get("/$export")
        assert without_prefer.status_code == 400
        assert without_prefer.json()["issue"][0]["expression"] == ["Prefer"]
        for params, where in (
            ({"_type": "Nonsense"}, "$export?_type"),
            ({"_outputFormat": "text/csv"}, "$export?_outputFormat"),
            ({"_since": "last tuesday"}, "$export?_since"),
            ({"_typeFilter": "Observation?bogus=1"}, None),
            ({"_typeFilter": "Observation?_sort=date"}, "$export?_typeFilter"),
            ({"_type": "Patient", "_typeFilter": "Observation?code=1"}, "$export?_typeFilter"),
            ({"includeAssociatedData": "LatestProvenanceResources"}, None),
        ):
            response = fhir.get("/$export", params=params, headers=RESPOND_ASYNC)
            assert response.status_code == 400, (params, response.text)
            outcome = response.json()
            assert outcome["resourceType"] == "OperationOutcome"
            if where is not None:
                assert outcome["issue"][0]["expression"] == [where], outcome
        assert fhir.get("/Observation/$export", headers=RESPOND_ASYNC).status_code == 404
        assert fhir.get("/Group/nobody/$export", headers=RESPOND_ASYNC).status_code == 404


def test_cancelling_removes_the_request_and_its_files(loaded: RunningServer) -> None:
    with loaded.client() as fhir:
        status_url = kick_off(fhir, "/$export")
        manifest = finished(fhir, status_url).json()
        job = status_url.rsplit("/", 1)[1]
        assert (loaded.data_dir / "bulk" / job).is_dir()
        assert fhir.delete(status_url).status_code == 202
        assert fhir.get(status_url).status_code == 404
        assert fhir.get(manifest["output"][0]["url"]).status_code == 404
        assert not (loaded.data_dir / "bulk" / job).exists()
        assert fhir.delete(status_url).status_code == 404

        # Cancelled as soon as it is asked for: nothing is left of it either.
        status_url = kick_off(fhir, "/$export")
        assert fhir.delete(status_url).status_code == 202
        assert fhir.get(status_url).status_code == 404
    time.sleep(0.2)
    assert not (loaded.data_dir / "bulk" / status_url.rsplit("/", 1)[1]).exists()


def test_another_client_learns_nothing_of_an_export(loaded: RunningServer) -> None:
    with loaded.client() as fhir:
        status_url = kick_off(fhir, "/$export")
        manifest = finished(fhir, status_url).json()
    other = TokenAuthority.in_directory(loaded.data_dir).issue("another-system", "system")
    with loaded.client(other) as stranger:
        assert stranger.get(status_url).status_code == 404
        for output in manifest["output"]:
            assert stranger.get(output["url"]).status_code == 404
        assert stranger.delete(status_url).status_code == 404
    with httpx.Client(timeout=30) as anonymous:
        assert anonymous.get(manifest["output"][0]["url"]).status_code == 401
    with loaded.client() as fhir:  # still there for the one who asked
        assert fhir.get(status_url).status_code == 200


@pytest.mark.parametrize("role", ["clinician", "nurse", "receptionist", "analyst", "patient"])
def test_a_roles_patient_export_holds_exactly_what_it_could_search(
    loaded: RunningServer, role: str
) -> None:
    with client_for(loaded, role) as client:
        found = ids(files(client, export(client, "/Patient/$export")))
        for resource_type in ("Patient", "Observation"):
            assert found.get(resource_type, set()) == searched(client, resource_type), resource_type
    exported = found.get("Patient", set())
    assert "unrelated" not in exported  # registered elsewhere: no relationship
    assert ("sensitive" in exported) == (role == "clinician")  # restricted (R)
    assert ("related" in exported) == (role != "analyst")


def test_a_clinicians_system_export_holds_exactly_what_they_could_search(
    loaded: RunningServer,
) -> None:
    with client_for(loaded, "clinician") as client:
        found = ids(files(client, export(client)))
        for resource_type in ("Organization", "Patient", "Observation", "Group"):
            assert found.get(resource_type, set()) == searched(client, resource_type)
    assert found["Observation"] == {"hr-1", "bp-1", "hr-sensitive"}  # not hr-unrelated


def test_patients_and_devices_may_not_export_the_system(loaded: RunningServer) -> None:
    authority = TokenAuthority.in_directory(loaded.data_dir)
    patient = authority.issue("patient-user", "patient", patient_id="related")
    device = authority.issue("device-1", "device", patient_id="related", device_id="d1")
    with loaded.client(patient) as client:
        refused = client.get("/$export", headers=RESPOND_ASYNC)
        assert refused.status_code == 403
        assert refused.json()["resourceType"] == "OperationOutcome"
    with loaded.client(device) as client:
        for path in ("/$export", "/Patient/$export", "/Group/ward-round/$export"):
            assert client.get(path, headers=RESPOND_ASYNC).status_code == 403
    with client_for(loaded, "receptionist") as client:  # asked by name, refused by name
        refused = client.get("/$export", params={"_type": "Observation"}, headers=RESPOND_ASYNC)
        assert refused.status_code == 403


def test_a_group_export_holds_its_members_records_only(loaded: RunningServer) -> None:
    with loaded.client() as fhir:
        found = ids(files(fhir, export(fhir, "/Group/ward-round/$export")))
    assert found["Patient"] == {"related"}
    assert found["Observation"] == {"hr-1", "bp-1"}
    assert "Organization" not in found
    with loaded.client() as fhir:
        one = ids(files(fhir, export(fhir, "/Patient/unrelated/$export", _type="Observation")))
    assert one == {"Observation": {"hr-unrelated", "bp-unrelated"}}
    with client_for(loaded, "nurse") as nurse:  # no relationship with this patient
        refused = nurse.get("/Patient/unrelated/$export", headers=RESPOND_ASYNC)
        assert refused.status_code == 403
    with client_for(loaded, "analyst") as analyst:  # may not read the Group at all
        refused = analyst.get("/Group/ward-round/$export", headers=RESPOND_ASYNC)
        assert refused.status_code == 403
        assert refused.json()["resourceType"] == "OperationOutcome"


def test_a_posted_export_takes_parameters_and_patients(loaded: RunningServer) -> None:
    parameters = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "_type", "valueString": "Patient,Observation"},
            {"name": "patient", "valueReference": {"reference": "Patient/unrelated"}},
        ],
    }
    with loaded.client() as fhir:
        kicked = fhir.post("/Patient/$export", json=parameters, headers=RESPOND_ASYNC)
        assert kicked.status_code == 202, kicked.text
        manifest = finished(fhir, kicked.headers["content-location"]).json()
        found = ids(files(fhir, manifest))
        assert found == {"Patient": {"unrelated"}, "Observation": {"hr-unrelated", "bp-unrelated"}}
        lenient = {**RESPOND_ASYNC, "Prefer": "respond-async, handling=lenient"}
        ignored = fhir.get(
            "/$export", params={"_elements": "id", "_type": "Group"}, headers=lenient
        )
        assert ids(files(fhir, finished(fhir, ignored.headers["content-location"]).json())) == {
            "Group": {"ward-round"}
        }
        assert fhir.get("/Group/$export", headers=RESPOND_ASYNC).status_code == 404


def test_an_export_is_audited_once_with_its_types_and_counts(loaded: RunningServer) -> None:
    nurse = TokenAuthority.in_directory(loaded.data_dir).issue(
        "audited-nurse", "nurse", organisation="A81001"
    )
    with loaded.client(nurse) as client:
        export(client, "/Patient/$export", _type="Patient,Observation", _since="2000-01-01")
    with loaded.client() as fhir:
        events = fhir.get("/AuditEvent", params={"agent": "audited-nurse", "_count": "200"})
        assert events.status_code == 200, events.text
    audited = [
        e["resource"]
        for e in events.json().get("entry", [])
        if e["resource"].get("outcomeDesc", "").startswith("exported")
    ]
    assert len(audited) == 1
    assert audited[0]["outcomeDesc"] == "exported Patient: 1, Observation: 2"
    entities = audited[0]["entity"]
    assert {"reference": "Patient/related"} in [e.get("what") for e in entities]
    query = next(base64.b64decode(e["query"]).decode() for e in entities if "query" in e)
    assert query == "_type=Patient%2CObservation&_since=2000-01-01"


@pytest.fixture
def short_lived(backend: str, tmp_path: Path) -> Iterator[RunningServer]:
    """A server keeping bulk requests for two seconds."""
    yield from start_server(
        database_url(backend, tmp_path), tmp_path, bulk_retention_hours=2 / 3600
    )


def test_an_expired_export_is_gone(short_lived: RunningServer) -> None:
    with short_lived.client() as fhir:
        put_all(fhir, PEOPLE)
        status_url = kick_off(fhir, "/$export")
        manifest: dict[str, Any] = finished(fhir, status_url).json()
        assert manifest["output"]
        time.sleep(2.1)
        assert fhir.get(status_url).status_code == 404
        assert fhir.get(manifest["output"][0]["url"]).status_code == 404
    assert not (short_lived.data_dir / "bulk" / status_url.rsplit("/", 1)[1]).exists()


def test_another_worker_answers_the_poll_and_serves_the_files(
    loaded: RunningServer, tmp_path: Path
) -> None:
    url = loaded.store.engine.url.render_as_string(hide_password=False)
    with loaded.client() as fhir:
        status_url = kick_off(fhir, "/$export", _type="Patient")
        finished(fhir, status_url)
    job = status_url.rsplit("/", 1)[1]
    for other in start_server(url, loaded.data_dir):
        with other.client(loaded.token) as fhir:
            manifest = finished(fhir, f"{other.base_url}/$bulk-status/{job}").json()
            exported = files(fhir, manifest)
            assert ids(exported)["Patient"] == {"related", "unrelated", "sensitive"}


def test_a_job_whose_worker_stopped_is_reported_failed(loaded: RunningServer) -> None:
    # A worker whose clock says it last beat long ago: as the poll sees it, one that
    # stopped (a restart, a crash) with the job half done.
    gone = BulkJobs(
        BulkJobTable(loaded.store),
        loaded.data_dir / "bulk",
        retention_seconds=3600,
        clock=lambda: time.time() - STALE_SECONDS - 5,
    )
    never = threading.Event()
    row = gone.start(
        "export",
        "test-system",
        f"{loaded.base_url}/$export",
        lambda run: {"waited": never.wait(30)},
    )
    try:
        with loaded.client() as fhir:
            response = fhir.get(f"/$bulk-status/{row.id}")
            assert response.status_code == 500
            outcome = response.json()
            assert outcome["resourceType"] == "OperationOutcome"
            assert "stopped before it finished" in outcome["issue"][0]["diagnostics"]
            assert fhir.get(f"/$bulk-status/{row.id}").status_code == 500  # and stays so
    finally:
        never.set()


def test_cancelling_a_running_job_stops_it_and_removes_its_files(loaded: RunningServer) -> None:
    # A job of this server's database run by a worker of its own, mid-way through writing.
    worker = BulkJobs(BulkJobTable(loaded.store), loaded.data_dir / "bulk", retention_seconds=3600)
    stopped = threading.Event()

    def writing(run: JobRun) -> dict[str, Any]:
        (run.directory / "Observation.ndjson").write_bytes(b"{}\n")
        try:
            for _ in range(400):
                run.progress("writing", force=True)
                time.sleep(0.025)
        except JobCancelled:
            stopped.set()
            raise
        return {}

    row = worker.start("export", "test-system", f"{loaded.base_url}/$export", writing)
    with loaded.client() as fhir:
        polled = fhir.get(f"/$bulk-status/{row.id}")
        assert polled.status_code == 202 and polled.headers["x-progress"]
        assert fhir.delete(f"/$bulk-status/{row.id}").status_code == 202
        assert stopped.wait(5), "the running job did not stop"
        assert fhir.get(f"/$bulk-status/{row.id}").status_code == 404
    deadline = time.monotonic() + 5
    while (loaded.data_dir / "bulk" / row.id).exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not (loaded.data_dir / "bulk" / row.id).exists()
