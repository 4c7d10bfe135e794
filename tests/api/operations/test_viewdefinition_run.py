"""$viewdefinition-run: a view's rows over inline resources or the stored record, in
every format, within exactly what the caller may analyse, audited and dated."""

from __future__ import annotations

import base64
import csv
import io
from typing import Any

import httpx
import orjson
import pyarrow.parquet as pq
import pytest

from bevan.security.tokens import TokenAuthority
from bevan.store.audit import AuditLog
from tests.api.operations.people import FHIR_JSON, client_for, observation, put_all
from tests.conftest import RunningServer
from tests.people import PEOPLE

HEART_RATE = "8867-4"
READINGS = [
    observation("vr-1", "related", HEART_RATE, "2026-01-01T09:00:00Z", 70),
    observation("vr-2", "related", HEART_RATE, "2026-02-01T09:00:00Z", 80.5),
    observation("vr-3", "unrelated", HEART_RATE, "2026-03-01T09:00:00Z", 60),
    observation("vr-4", "sensitive", HEART_RATE, "2026-03-03T09:00:00Z", 65, restricted=True),
]
VIEW: dict[str, Any] = {
    "resourceType": "ViewDefinition",
    "name": "heart_rates",
    "resource": "Observation",
    "status": "active",
    "select": [
        {
            "column": [
                {"name": "id", "path": "getResourceKey()"},
                {"name": "patient", "path": "subject.getReferenceKey(Patient)"},
                {"name": "code", "path": "code.coding.first().code"},
                {"name": "value", "path": "value.ofType(Quantity).value", "type": "decimal"},
                {"name": "final", "path": "status = 'final'", "type": "boolean"},
            ]
        }
    ],
    "where": [{"path": "id.startsWith('vr-')"}],
}


@pytest.fixture(scope="module")
def loaded(server: RunningServer) -> RunningServer:
    with server.client() as fhir:
        put_all(fhir, PEOPLE + READINGS)
    return server


def parameters(*parameter: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Parameters", "parameter": list(parameter)}


def run(client: httpx.Client, *parameter: dict[str, Any]) -> httpx.Response:
    return client.post(
        "/$viewdefinition-run", content=orjson.dumps(parameters(*parameter)), headers=FHIR_JSON
    )


def view_of(view: dict[str, Any] = VIEW) -> dict[str, Any]:
    return {"name": "viewResource", "resource": view}


def json_format() -> dict[str, Any]:
    return {"name": "_format", "valueCode": "json"}


def rows_by_id(response: httpx.Response) -> dict[str, dict[str, Any]]:
    assert response.status_code == 200, response.text
    return {row["id"]: row for row in response.json()}


def test_an_analyst_runs_a_view_over_the_whole_population_but_restricted_records(
    loaded: RunningServer,
) -> None:
    with client_for(loaded, "analyst") as analyst:
        answer = run(analyst, view_of(), json_format())
    rows = rows_by_id(answer)
    assert set(rows) == {"vr-1", "vr-2", "vr-3"}
    assert rows["vr-2"] == {
        "id": "vr-2",
        "patient": "related",
        "code": HEART_RATE,
        "value": 80.5,
        "final": True,
    }
    assert answer.headers["X-Bevan-Row-Count"] == "3"


def test_every_answer_says_the_change_and_the_time_it_reflects(loaded: RunningServer) -> None:
    with client_for(loaded, "analyst") as analyst:
        before = run(analyst, view_of()).headers["X-Bevan-As-Of"]
        with loaded.client() as system:
            put_all(system, [observation("vr-5", "unrelated", HEART_RATE, "2026-04-01", 61)])
        after = run(analyst, view_of(), json_format())
    seq_before = int(before.split(";")[0].removeprefix("seq="))
    seq_after = int(after.headers["X-Bevan-As-Of"].split(";")[0].removeprefix("seq="))
    assert seq_after > seq_before
    assert "time=20" in after.headers["X-Bevan-As-Of"]
    assert "vr-5" in rows_by_id(after)
    assert all(set(row) == {"id", "patient", "code", "value", "final"} for row in after.json())


def test_a_clinician_sees_only_the_rows_their_search_would(loaded: RunningServer) -> None:
    with client_for(loaded, "clinician") as clinician:
        rows = rows_by_id(run(clinician, view_of(), json_format()))
        searched = clinician.get("/Observation", params={"_count": 100}).json()
    found = {e["resource"]["id"] for e in searched.get("entry", [])}
    # Their own practice's patients, the restricted one included (clinicians may see R).
    assert set(rows) == {"vr-1", "vr-2", "vr-4"} == {i for i in found if i.startswith("vr-")}


@pytest.mark.parametrize("role", ["patient", "device", "receptionist", "privacy-officer"])
def test_patients_devices_and_non_clinical_staff_learn_nothing_from_the_stored_record(
    loaded: RunningServer, role: str
) -> None:
    token = TokenAuthority.in_directory(loaded.data_dir).issue(
        f"{role}-user", role, patient_id="related", device_id="d1", organisation="A81001"
    )
    with loaded.client(token) as caller:
        answer = run(caller, view_of(), json_format())
    assert answer.status_code == 403
    outcome = answer.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert "vr-1" not in answer.text and "X-Bevan-Row-Count" not in answer.headers


def test_anyone_may_run_a_view_over_resources_they_send(loaded: RunningServer) -> None:
    mine = observation("mine", "related", HEART_RATE, "2026-05-01T09:00:00Z", 99)
    mine["id"] = "vr-mine"
    with client_for(loaded, "patient") as patient:
        answer = run(patient, view_of(), json_format(), {"name": "resource", "resource": mine})
    assert list(rows_by_id(answer)) == ["vr-mine"]
    assert answer.headers["X-Bevan-As-Of"].startswith("time=")


def test_a_run_is_audited_with_the_view_and_its_row_count(loaded: RunningServer) -> None:
    with client_for(loaded, "analyst") as analyst:
        assert run(analyst, view_of(), json_format()).status_code == 200
    event = orjson.loads(AuditLog(loaded.store.engine).find(limit=1)[0].content)
    assert "view heart_rates over Observation" in event["outcomeDesc"]
    assert "rows" in event["outcomeDesc"] and "seq=" in event["outcomeDesc"]


def test_csv_has_a_header_unless_asked_not_to(loaded: RunningServer) -> None:
    with client_for(loaded, "analyst") as analyst:
        with_header = run(analyst, view_of(), {"name": "_format", "valueCode": "csv"})
        without = run(
            analyst,
            view_of(),
            {"name": "_format", "valueCode": "csv"},
            {"name": "header", "valueBoolean": False},
        )
    assert with_header.headers["content-type"].startswith("text/csv")
    table = list(csv.reader(io.StringIO(with_header.text)))
    assert table[0] == ["id", "patient", "code", "value", "final"]
    assert ["vr-2", "related", HEART_RATE, "80.5", "true"] in table
    assert list(csv.reader(io.StringIO(without.text))) == table[1:]


def test_ndjson_is_the_default_one_row_a_line(loaded: RunningServer) -> None:
    with client_for(loaded, "analyst") as analyst:
        answer = run(analyst, view_of())
    lines = [orjson.loads(line) for line in answer.text.splitlines()]
    assert answer.headers["content-type"].startswith("application/x-ndjson")
    assert {row["id"] for row in lines} >= {"vr-1", "vr-2", "vr-3"}


def test_parquet_columns_carry_the_views_types(loaded: RunningServer) -> None:
    with client_for(loaded, "analyst") as analyst:
        answer = run(analyst, view_of(), {"name": "_format", "valueCode": "parquet"})
    assert answer.status_code == 200, answer.text
    table = pq.read_table(io.BytesIO(answer.content))
    assert table.column_names == ["id", "patient", "code", "value", "final"]
    assert str(table.schema.field("value").type) == "double"
    assert str(table.schema.field("final").type) == "bool"
    rows = {r["id"]: r for r in table.to_pylist()}
    assert rows["vr-2"]["value"] == 80.5


def test_patient_since_and_limit_narrow_the_run(loaded: RunningServer) -> None:
    with loaded.client() as system:
        for_patient = run(
            system,
            view_of(),
            json_format(),
            {"name": "patient", "valueReference": {"reference": "Patient/unrelated"}},
        )
        by_id = run(system, view_of(), json_format(), {"name": "patient", "valueId": "unrelated"})
        since = run(
            system,
            view_of(),
            json_format(),
            {"name": "_since", "valueInstant": "2100-01-01T00:00:00Z"},
        )
        limited = run(system, view_of(), json_format(), {"name": "_limit", "valueInteger": 2})
    assert {r["patient"] for r in for_patient.json()} == {"unrelated"}
    assert by_id.json() == for_patient.json()
    assert since.json() == []
    assert len(limited.json()) == 2


def test_a_view_stored_as_a_library_runs_by_reference_and_by_url(loaded: RunningServer) -> None:
    library = {
        "resourceType": "Library",
        "id": "heart-rates-view",
        "url": "https://views.example.nhs.uk/heart-rates",
        "status": "active",
        "type": {"coding": [{"code": "logic-library"}]},
        "content": [
            {
                "contentType": "application/json",
                "data": base64.b64encode(orjson.dumps(VIEW)).decode(),
            }
        ],
    }
    with loaded.client() as system:
        put_all(system, [library])
    with client_for(loaded, "analyst") as analyst:
        by_id = run(
            analyst,
            {"name": "viewReference", "valueReference": {"reference": "Library/heart-rates-view"}},
            json_format(),
        )
        by_url = run(
            analyst,
            {"name": "viewReference", "valueCanonical": "https://views.example.nhs.uk/heart-rates"},
            json_format(),
        )
        missing = run(
            analyst, {"name": "viewReference", "valueReference": {"reference": "Library/none"}}
        )
    assert set(rows_by_id(by_id)) >= {"vr-1", "vr-2", "vr-3"}
    assert rows_by_id(by_url) == rows_by_id(by_id)
    assert missing.status_code == 404


@pytest.mark.parametrize(
    ("parameter", "where"),
    [
        ((), "viewResource"),
        (
            (
                view_of(
                    {
                        "resource": "Observation",
                        "select": [{"column": [{"name": "x", "path": "("}]}],
                    }
                ),
            ),
            "viewResource.select[0].column[0].path",
        ),
        ((view_of(), {"name": "_format", "valueCode": "xlsx"}), "_format"),
        (
            (view_of(), {"name": "colour", "valueCode": "red"}),
            "Parameters.parameter.where(name='colour')",
        ),
        ((view_of(), {"name": "_limit", "valueInteger": 0}), "_limit"),
        ((view_of(), {"name": "patient", "valueReference": {"reference": "Group/x"}}), "patient"),
    ],
)
def test_bad_input_is_answered_with_an_outcome_saying_where(
    loaded: RunningServer, parameter: tuple[dict[str, Any], ...], where: str
) -> None:
    with client_for(loaded, "analyst") as analyst:
        answer = run(analyst, *parameter)
    assert answer.status_code == 400, answer.text
    issue = answer.json()["issue"][0]
    assert where in issue["expression"][0], issue


def test_a_view_that_finds_several_values_for_one_column_says_which(loaded: RunningServer) -> None:
    view = {
        "resource": "Patient",
        "select": [{"column": [{"name": "practice", "path": "generalPractitioner.reference"}]}],
    }
    two = {
        "resourceType": "Patient",
        "generalPractitioner": [{"reference": "Organization/a"}, {"reference": "Organization/b"}],
    }
    with loaded.client() as system:
        answer = run(system, view_of(view), {"name": "resource", "resource": two})
    assert answer.status_code == 422
    assert "practice" in answer.json()["issue"][0]["diagnostics"]


def test_the_capability_statement_lists_the_operation(loaded: RunningServer) -> None:
    with loaded.client() as fhir:
        statement = fhir.get("/metadata").json()
    operations = {op["name"] for op in statement["rest"][0].get("operation", [])}
    assert "viewdefinition-run" in operations


def test_a_group_narrows_the_run_to_its_patients(loaded: RunningServer) -> None:
    group = {
        "resourceType": "Group",
        "id": "vr-cohort",
        "type": "person",
        "actual": True,
        "member": [{"entity": {"reference": "Patient/unrelated"}}],
    }
    with loaded.client() as system:
        put_all(system, [group])
    with client_for(loaded, "analyst") as analyst:
        rows = run(
            analyst,
            view_of(),
            json_format(),
            {"name": "group", "valueReference": {"reference": "Group/vr-cohort"}},
        )
        missing = run(
            analyst, view_of(), {"name": "group", "valueReference": {"reference": "Group/none"}}
        )
    assert {r["patient"] for r in rows.json()} == {"unrelated"}
    assert missing.status_code == 404
