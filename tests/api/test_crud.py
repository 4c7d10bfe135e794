"""The FHIR RESTful interactions over real HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

import itertools

import httpx

from bevan.clinical.nhs_number import nhs_check_digit

NHS = "https://fhir.nhs.uk/Id/nhs-number"
FHIR_JSON = {"Content-Type": "application/fhir+json"}
_SERIAL = itertools.count(943_476_600)


def fresh_nhs_number() -> str:
    """Return a valid NHS number no other Patient here holds (one Patient per number)."""
    while (check := nhs_check_digit(first_nine := str(next(_SERIAL)))) is None:
        pass
    return f"{first_nine}{check}"


def patient(nhs_number: str | None = None, family: str = "Jones", **extra: object) -> dict:
    return {
        "resourceType": "Patient",
        "identifier": [{"system": NHS, "value": nhs_number or fresh_nhs_number()}],
        "name": [{"family": family, "given": ["Aneurin"]}],
        **extra,
    }


def create(fhir: httpx.Client, resource: dict) -> httpx.Response:
    response = fhir.post(f"/{resource['resourceType']}", json=resource, headers=FHIR_JSON)
    assert response.status_code == 201, response.text
    return response


def test_create_assigns_an_id_and_answers_with_location_and_etag(fhir: httpx.Client) -> None:
    response = create(fhir, patient(id="client-chosen"))
    body = response.json()
    assert body["id"] != "client-chosen"  # POST ignores a client id
    assert response.headers["etag"] == 'W/"1"'
    assert response.headers["location"].endswith(f"/Patient/{body['id']}/_history/1")
    assert body["meta"]["versionId"] == "1"
    assert body["meta"]["lastUpdated"].endswith("Z")
    assert response.headers["content-type"].startswith("application/fhir+json")


def test_read_returns_what_was_created(fhir: httpx.Client) -> None:
    created = create(fhir, patient(family="Bevan")).json()
    read = fhir.get(f"/Patient/{created['id']}")
    assert read.status_code == 200
    assert read.json() == created
    assert read.headers["etag"] == 'W/"1"'
    assert "last-modified" in read.headers


def test_update_makes_a_new_version_and_keeps_the_old_one(fhir: httpx.Client) -> None:
    created = create(fhir, patient()).json()
    changed = {**created, "gender": "female"}
    updated = fhir.put(f"/Patient/{created['id']}", json=changed, headers=FHIR_JSON)
    assert updated.status_code == 200, updated.text
    assert updated.json()["meta"]["versionId"] == "2"
    assert updated.headers["etag"] == 'W/"2"'
    first = fhir.get(f"/Patient/{created['id']}/_history/1").json()
    assert "gender" not in first
    assert fhir.get(f"/Patient/{created['id']}").json()["gender"] == "female"


def test_update_with_a_client_id_creates_the_resource(fhir: httpx.Client) -> None:
    response = fhir.put(
        "/Patient/nhs-9434765919-a", json={**patient(), "id": "nhs-9434765919-a"}, headers=FHIR_JSON
    )
    assert response.status_code == 201, response.text
    assert fhir.get("/Patient/nhs-9434765919-a").json()["meta"]["versionId"] == "1"


def test_if_match_with_a_stale_version_is_refused_with_412(fhir: httpx.Client) -> None:
    created = create(fhir, patient()).json()
    pid = created["id"]
    ok = fhir.put(
        f"/Patient/{pid}",
        json={**created, "gender": "male"},
        headers={**FHIR_JSON, "If-Match": 'W/"1"'},
    )
    assert ok.status_code == 200
    stale = fhir.put(
        f"/Patient/{pid}",
        json={**created, "gender": "other"},
        headers={**FHIR_JSON, "If-Match": 'W/"1"'},
    )
    assert stale.status_code == 412
    assert stale.json()["resourceType"] == "OperationOutcome"
    assert fhir.get(f"/Patient/{pid}").json()["gender"] == "male"


def test_delete_leaves_a_tombstone_and_read_answers_410(fhir: httpx.Client) -> None:
    created = create(fhir, patient()).json()
    pid = created["id"]
    assert fhir.delete(f"/Patient/{pid}").status_code == 204
    gone = fhir.get(f"/Patient/{pid}")
    assert gone.status_code == 410
    assert gone.json()["issue"][0]["code"] == "deleted"
    # The version before the delete is still there.
    assert fhir.get(f"/Patient/{pid}/_history/1").status_code == 200
    history = fhir.get(f"/Patient/{pid}/_history").json()
    assert [e["request"]["method"] for e in history["entry"]] == ["DELETE", "POST"]
    # Deleting again changes nothing.
    assert fhir.delete(f"/Patient/{pid}").status_code == 204
    assert fhir.get(f"/Patient/{pid}/_history").json()["total"] == 2


def test_delete_with_a_stale_if_match_is_refused(fhir: httpx.Client) -> None:
    created = create(fhir, patient()).json()
    assert (
        fhir.delete(f"/Patient/{created['id']}", headers={"If-Match": 'W/"7"'}).status_code == 412
    )
    assert fhir.get(f"/Patient/{created['id']}").status_code == 200


def test_read_of_an_unknown_id_is_404_with_an_outcome(fhir: httpx.Client) -> None:
    response = fhir.get("/Patient/no-such-patient")
    assert response.status_code == 404
    assert response.json()["issue"][0]["code"] == "not-found"


def test_json_patch_changes_one_field(fhir: httpx.Client) -> None:
    created = create(fhir, patient()).json()
    ops = [{"op": "add", "path": "/birthDate", "value": "1948-07-05"}]
    response = fhir.patch(
        f"/Patient/{created['id']}",
        json=ops,
        headers={"Content-Type": "application/json-patch+json"},
    )
    assert response.status_code == 200, response.text
    assert response.json()["birthDate"] == "1948-07-05"
    assert response.json()["meta"]["versionId"] == "2"


def test_a_patch_that_makes_the_resource_invalid_is_refused(fhir: httpx.Client) -> None:
    created = create(fhir, patient()).json()
    ops = [{"op": "add", "path": "/gender", "value": "sometimes"}]
    response = fhir.patch(
        f"/Patient/{created['id']}",
        json=ops,
        headers={"Content-Type": "application/json-patch+json"},
    )
    assert response.status_code == 400
    assert response.json()["issue"][0]["expression"] == ["Patient.gender"]
    assert fhir.get(f"/Patient/{created['id']}").json()["meta"]["versionId"] == "1"


def test_history_pages_newest_first_with_next_links(fhir: httpx.Client) -> None:
    created = create(fhir, patient()).json()
    pid = created["id"]
    for n in range(4):
        fhir.put(
            f"/Patient/{pid}", json={**created, "name": [{"family": f"Name{n}"}]}, headers=FHIR_JSON
        )
    first = fhir.get(f"/Patient/{pid}/_history", params={"_count": 2}).json()
    assert first["total"] == 5
    assert [e["resource"]["meta"]["versionId"] for e in first["entry"]] == ["5", "4"]
    next_url = next(link["url"] for link in first["link"] if link["relation"] == "next")
    second = fhir.get(next_url).json()
    assert [e["resource"]["meta"]["versionId"] for e in second["entry"]] == ["3", "2"]


def test_type_and_system_history_honour_since(fhir: httpx.Client) -> None:
    created = create(fhir, patient()).json()
    since = created["meta"]["lastUpdated"]
    later = create(
        fhir, {"resourceType": "Observation", "status": "final", "code": {"text": "pulse"}}
    ).json()
    system = fhir.get("/_history", params={"_since": since, "_count": 100}).json()
    ids = {e["resource"]["id"] for e in system["entry"]}
    assert {created["id"], later["id"]} <= ids
    typed = fhir.get("/Observation/_history", params={"_since": since}).json()
    assert all(e["resource"]["resourceType"] == "Observation" for e in typed["entry"])


def test_conditional_create_returns_the_existing_match(fhir: httpx.Client) -> None:
    body = patient("9990000018")
    first = fhir.post(
        "/Patient",
        json=body,
        headers={**FHIR_JSON, "If-None-Exist": f"identifier={NHS}|9990000018"},
    )
    assert first.status_code == 201
    second = fhir.post(
        "/Patient",
        json=body,
        headers={**FHIR_JSON, "If-None-Exist": f"identifier={NHS}|9990000018"},
    )
    assert second.status_code == 200
    assert second.json()["id"] == first.json()["id"]
    found = fhir.get("/Patient", params={"identifier": f"{NHS}|9990000018"}).json()
    assert found["total"] == 1


def test_conditional_update_updates_the_one_match_or_creates(fhir: httpx.Client) -> None:
    query = f"identifier={NHS}|9990000026"
    created = fhir.put(f"/Patient?{query}", json=patient("9990000026"), headers=FHIR_JSON)
    assert created.status_code == 201, created.text
    updated = fhir.put(
        f"/Patient?{query}", json=patient("9990000026", family="Changed"), headers=FHIR_JSON
    )
    assert updated.status_code == 200
    assert updated.json()["id"] == created.json()["id"]
    assert updated.json()["name"][0]["family"] == "Changed"


def test_conditional_delete_removes_the_one_match(fhir: httpx.Client) -> None:
    created = create(fhir, patient("9990000034")).json()
    response = fhir.delete(f"/Patient?identifier={NHS}|9990000034")
    assert response.status_code == 204
    assert fhir.get(f"/Patient/{created['id']}").status_code == 410


def test_conditional_operations_matching_several_are_refused_with_412(fhir: httpx.Client) -> None:
    for _ in range(2):
        create(
            fhir,
            {
                "resourceType": "Observation",
                "status": "final",
                "code": {"text": "x"},
                "identifier": [{"system": "urn:test:dup", "value": "twin"}],
            },
        )
    response = fhir.delete("/Observation?identifier=urn:test:dup|twin")
    assert response.status_code == 412
    assert response.json()["issue"][0]["code"] == "multiple-matches"
    assert fhir.get("/Observation", params={"identifier": "urn:test:dup|twin"}).json()["total"] == 2


def test_search_by_subject_and_patient(fhir: httpx.Client) -> None:
    pid = create(fhir, patient("9990000042")).json()["id"]
    for n in range(3):
        create(
            fhir,
            {
                "resourceType": "Observation",
                "status": "final",
                "code": {"text": f"o{n}"},
                "subject": {"reference": f"Patient/{pid}"},
            },
        )
    assert fhir.get("/Observation", params={"subject": f"Patient/{pid}"}).json()["total"] == 3
    assert fhir.get("/Observation", params={"patient": pid}).json()["total"] == 3
    paged = fhir.get("/Observation", params={"patient": pid, "_count": 2}).json()
    assert len(paged["entry"]) == 2
    assert any(link["relation"] == "next" for link in paged["link"])


def test_prefer_return_minimal_and_operation_outcome(fhir: httpx.Client) -> None:
    minimal = fhir.post(
        "/Patient", json=patient(), headers={**FHIR_JSON, "Prefer": "return=minimal"}
    )
    assert minimal.status_code == 201
    assert minimal.content == b""
    assert "location" in minimal.headers
    outcome = fhir.post(
        "/Patient", json=patient(), headers={**FHIR_JSON, "Prefer": "return=OperationOutcome"}
    )
    assert outcome.json()["resourceType"] == "OperationOutcome"


def test_pretty_output_is_indented_and_equal(fhir: httpx.Client) -> None:
    created = create(fhir, patient()).json()
    pretty = fhir.get(f"/Patient/{created['id']}", params={"_pretty": "true"})
    assert "\n  " in pretty.text
    assert pretty.json() == created


def test_metadata_is_public_and_lists_what_works(server) -> None:  # type: ignore[no-untyped-def]
    response = httpx.get(f"{server.base_url}/metadata")
    assert response.status_code == 200
    statement = response.json()
    assert statement["fhirVersion"] == "4.0.1"
    rest = statement["rest"][0]
    assert {i["code"] for i in rest["interaction"]} == {"transaction", "batch", "history-system"}
    patient_entry = next(r for r in rest["resource"] if r["type"] == "Patient")
    assert {p["name"] for p in patient_entry["searchParam"]} >= {"_id", "identifier"}


def test_total_is_given_when_free_or_asked_for(fhir: httpx.Client) -> None:
    for n in range(3):
        create(
            fhir,
            {
                "resourceType": "Observation",
                "status": "final",
                "code": {"text": "t"},
                "identifier": [{"system": "urn:test:totals", "value": str(n)}],
            },
        )
    params = {"identifier": "urn:test:totals|0,urn:test:totals|1,urn:test:totals|2"}
    assert fhir.get("/Observation", params=params).json()["total"] == 3  # one page holds all
    paged = fhir.get("/Observation", params={**params, "_count": 2}).json()
    assert "total" not in paged  # counting every match is not free
    assert (
        fhir.get("/Observation", params={**params, "_count": 2, "_total": "accurate"}).json()[
            "total"
        ]
        == 3
    )
    assert "total" not in fhir.get("/Observation", params={**params, "_total": "none"}).json()


def test_a_pretty_searchset_indents_the_resources_inside_it_too(fhir: httpx.Client) -> None:
    created = create(fhir, patient()).json()
    query = {"_id": created["id"]}
    plain = fhir.get("/Patient", params=query)
    pretty = fhir.get("/Patient", params={**query, "_pretty": "true"})
    # Stored resources go into a searchset as they are stored; pretty output re-indents them.
    assert "\n  " not in plain.text
    lines = pretty.text.splitlines()
    assert any(line.startswith(" " * 8 + '"resourceType": "Patient"') for line in lines)
    assert pretty.json()["entry"] == plain.json()["entry"]
    assert plain.json()["entry"][0]["resource"] == created


def test_a_decimal_keeps_its_digits_through_create_read_search_and_patch(
    fhir: httpx.Client,
) -> None:
    body = (
        b'{"resourceType":"Observation","status":"final","code":{"text":"Potassium"},'
        b'"valueQuantity":{"value":4.50,"unit":"mmol/L","system":"http://unitsofmeasure.org",'
        b'"code":"mmol/L"}}'
    )
    created = fhir.post("/Observation", content=body, headers=FHIR_JSON)
    assert created.status_code == 201, created.text
    assert b'"value":4.50' in created.content
    id = created.json()["id"]
    assert b'"value":4.50' in fhir.get(f"/Observation/{id}").content
    assert b'"value": 4.50' in fhir.get(f"/Observation/{id}?_pretty=true").content
    found = fhir.get(f"/Observation?value-quantity=4.5&_elements=valueQuantity&_id={id}")
    assert found.json()["total"] == 1, found.text
    assert b'"value":4.50' in found.content
    patched = fhir.patch(
        f"/Observation/{id}",
        content=b'[{"op":"replace","path":"/status","value":"amended"}]',
        headers={"Content-Type": "application/json-patch+json"},
    )
    assert patched.status_code == 200, patched.text
    assert b'"value":4.50' in fhir.get(f"/Observation/{id}").content
