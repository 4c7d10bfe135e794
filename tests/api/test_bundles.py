"""Transaction and batch Bundles through POST to the base URL."""

from __future__ import annotations

import base64

import httpx
import orjson

NHS = "https://fhir.nhs.uk/Id/nhs-number"
FHIR_JSON = {"Content-Type": "application/fhir+json"}


def post_bundle(fhir: httpx.Client, bundle: dict) -> httpx.Response:
    return fhir.post("", json=bundle, headers=FHIR_JSON)


def transaction(*entries: dict) -> dict:
    return {"resourceType": "Bundle", "type": "transaction", "entry": list(entries)}


def test_transaction_resolves_urn_uuid_references(fhir: httpx.Client) -> None:
    bundle = transaction(
        {
            "fullUrl": "urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a",
            "resource": {
                "resourceType": "Patient",
                "identifier": [{"system": NHS, "value": "9990000050"}],
            },
            "request": {"method": "POST", "url": "Patient"},
        },
        {
            "fullUrl": "urn:uuid:88f151c0-a954-468a-88bd-5ae15c08e059",
            "resource": {
                "resourceType": "Observation",
                "status": "final",
                "code": {"text": "heart rate"},
                "subject": {"reference": "urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a"},
            },
            "request": {"method": "POST", "url": "Observation"},
        },
    )
    response = post_bundle(fhir, bundle)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["type"] == "transaction-response"
    statuses = [e["response"]["status"] for e in answer["entry"]]
    assert statuses == ["201 Created", "201 Created"]
    patient_location = answer["entry"][0]["response"]["location"]
    patient_id = patient_location.split("/")[1]
    observation_id = answer["entry"][1]["response"]["location"].split("/")[1]
    observation = fhir.get(f"/Observation/{observation_id}").json()
    assert observation["subject"]["reference"] == f"Patient/{patient_id}"


def test_transaction_with_one_bad_entry_stores_nothing(fhir: httpx.Client) -> None:
    bundle = transaction(
        {
            "fullUrl": "urn:uuid:0e4f4c2a-6a0e-4d0a-9f7e-9a1b2c3d4e5f",
            "resource": {
                "resourceType": "Patient",
                "identifier": [{"system": "urn:test:atomic", "value": "one"}],
            },
            "request": {"method": "POST", "url": "Patient"},
        },
        {
            "resource": {
                "resourceType": "Patient",
                "identifier": [{"system": NHS, "value": "9434765918"}],
            },
            "request": {"method": "POST", "url": "Patient"},
        },
    )
    response = post_bundle(fhir, bundle)
    assert response.status_code == 422
    issue = response.json()["issue"][0]
    assert issue["expression"] == ["Bundle.entry[1].resource.identifier[0].value"]
    assert fhir.get("/Patient", params={"identifier": "urn:test:atomic|one"}).json()["total"] == 0


def test_transaction_failing_at_write_time_rolls_back_earlier_writes(fhir: httpx.Client) -> None:
    bundle = transaction(
        {
            "resource": {
                "resourceType": "Patient",
                "identifier": [{"system": "urn:test:atomic", "value": "two"}],
            },
            "request": {"method": "POST", "url": "Patient"},
        },
        {
            "resource": {"resourceType": "Patient", "id": "p-never", "gender": "male"},
            "request": {"method": "PUT", "url": "Patient/p-never", "ifMatch": 'W/"3"'},
        },
    )
    response = post_bundle(fhir, bundle)
    assert response.status_code == 412
    assert fhir.get("/Patient", params={"identifier": "urn:test:atomic|two"}).json()["total"] == 0


def test_transaction_if_none_exist_reuses_the_match(fhir: httpx.Client) -> None:
    entry = {
        "fullUrl": "urn:uuid:4b0b5a66-6d29-4a3e-8e0e-9f5f0c4e1a11",
        "resource": {
            "resourceType": "Organization",
            "name": "Tredegar Medical Aid Society",
            "identifier": [
                {"system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": "W99001"}
            ],
        },
        "request": {
            "method": "POST",
            "url": "Organization",
            "ifNoneExist": "identifier=https://fhir.nhs.uk/Id/ods-organization-code|W99001",
        },
    }
    first = post_bundle(fhir, transaction(entry)).json()
    second = post_bundle(fhir, transaction(entry)).json()
    assert first["entry"][0]["response"]["status"] == "201 Created"
    assert second["entry"][0]["response"]["status"] == "200 OK"
    assert first["entry"][0]["response"]["location"] == second["entry"][0]["response"]["location"]


def test_transaction_resolves_conditional_references(fhir: httpx.Client) -> None:
    fhir.post(
        "/Practitioner",
        json={
            "resourceType": "Practitioner",
            "identifier": [
                {"system": "https://fhir.hl7.org.uk/Id/gmc-number", "value": "C1234567"}
            ],
        },
        headers=FHIR_JSON,
    )
    bundle = transaction(
        {
            "resource": {
                "resourceType": "Encounter",
                "status": "finished",
                "class": {
                    "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                    "code": "AMB",
                },
                "participant": [
                    {
                        "individual": {
                            "reference": "Practitioner?identifier=https://fhir.hl7.org.uk/Id/gmc-number|C1234567"
                        }
                    }
                ],
            },
            "request": {"method": "POST", "url": "Encounter"},
        }
    )
    response = post_bundle(fhir, bundle)
    assert response.status_code == 200, response.text
    location = response.json()["entry"][0]["response"]["location"]
    encounter = fhir.get("/" + location.rsplit("/_history", 1)[0]).json()
    assert encounter["participant"][0]["individual"]["reference"].startswith("Practitioner/")


def test_a_conditional_reference_with_no_match_fails_the_transaction(fhir: httpx.Client) -> None:
    bundle = transaction(
        {
            "resource": {
                "resourceType": "Observation",
                "status": "final",
                "code": {"text": "x"},
                "subject": {"reference": "Patient?identifier=urn:test:nobody|0"},
            },
            "request": {"method": "POST", "url": "Observation"},
        }
    )
    response = post_bundle(fhir, bundle)
    assert response.status_code == 404
    assert response.json()["issue"][0]["expression"] == ["Bundle.entry[0].resource"]


def test_transaction_put_delete_and_get(fhir: httpx.Client) -> None:
    fhir.put("/Patient/tx-old", json={"resourceType": "Patient", "id": "tx-old"}, headers=FHIR_JSON)
    bundle = transaction(
        {"request": {"method": "GET", "url": "Patient/tx-new"}},
        {
            "resource": {"resourceType": "Patient", "id": "tx-new", "gender": "female"},
            "request": {"method": "PUT", "url": "Patient/tx-new"},
        },
        {"request": {"method": "DELETE", "url": "Patient/tx-old"}},
    )
    response = post_bundle(fhir, bundle)
    assert response.status_code == 200, response.text
    entries = response.json()["entry"]
    # GETs run last, so the read sees the PUT made in the same transaction.
    assert entries[0]["resource"]["gender"] == "female"
    assert entries[1]["response"]["status"] == "201 Created"
    assert entries[2]["response"]["status"] == "204 No Content"
    assert fhir.get("/Patient/tx-old").status_code == 410


def test_transaction_patch_entry(fhir: httpx.Client) -> None:
    fhir.put(
        "/Patient/tx-patch", json={"resourceType": "Patient", "id": "tx-patch"}, headers=FHIR_JSON
    )
    operations = [{"op": "add", "path": "/active", "value": True}]
    bundle = transaction(
        {
            "resource": {
                "resourceType": "Binary",
                "contentType": "application/json-patch+json",
                "data": base64.b64encode(orjson.dumps(operations)).decode(),
            },
            "request": {"method": "PATCH", "url": "Patient/tx-patch"},
        }
    )
    assert post_bundle(fhir, bundle).status_code == 200
    assert fhir.get("/Patient/tx-patch").json()["active"] is True


def test_batch_answers_each_entry_on_its_own(fhir: httpx.Client) -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {
                "resource": {
                    "resourceType": "Patient",
                    "identifier": [{"system": "urn:test:batch", "value": "a"}],
                },
                "request": {"method": "POST", "url": "Patient"},
            },
            {
                "resource": {"resourceType": "Patient", "gender": "sometimes"},
                "request": {"method": "POST", "url": "Patient"},
            },
            {"request": {"method": "GET", "url": "Patient/never-was"}},
            {
                "resource": {
                    "resourceType": "Patient",
                    "identifier": [{"system": "urn:test:batch", "value": "b"}],
                },
                "request": {"method": "POST", "url": "Patient"},
            },
        ],
    }
    response = post_bundle(fhir, bundle)
    assert response.status_code == 200
    answer = response.json()
    assert answer["type"] == "batch-response"
    statuses = [e["response"]["status"] for e in answer["entry"]]
    assert statuses[0] == "201 Created" and statuses[3] == "201 Created"
    assert statuses[1].startswith("400")
    assert statuses[2].startswith("404")
    bad = answer["entry"][1]["response"]["outcome"]["issue"][0]
    assert bad["expression"] == ["Bundle.entry[1].resource.gender"]
    assert (
        fhir.get("/Patient", params={"identifier": "urn:test:batch|a,urn:test:batch|b"}).json()[
            "total"
        ]
        == 2
    )


def test_a_bundle_that_is_not_a_transaction_or_batch_is_refused(fhir: httpx.Client) -> None:
    response = post_bundle(fhir, {"resourceType": "Bundle", "type": "collection"})
    assert response.status_code == 400
    assert response.json()["issue"][0]["expression"] == ["Bundle.type"]
    response = post_bundle(fhir, {"resourceType": "Patient"})
    assert response.status_code == 400


def test_an_entry_without_a_request_is_placed(fhir: httpx.Client) -> None:
    response = post_bundle(fhir, transaction({"resource": {"resourceType": "Patient"}}))
    assert response.status_code == 400
    assert response.json()["issue"][0]["expression"] == ["Bundle.entry[0].request"]


def test_a_resource_changed_twice_in_one_transaction_is_refused(fhir: httpx.Client) -> None:
    entry = {
        "resource": {"resourceType": "Patient", "id": "twice"},
        "request": {"method": "PUT", "url": "Patient/twice"},
    }
    response = post_bundle(fhir, transaction(entry, entry))
    assert response.status_code == 400
    assert fhir.get("/Patient/twice").status_code == 404


def test_a_transaction_keeps_each_decimal_s_digits(fhir: httpx.Client) -> None:
    body = (
        b'{"resourceType":"Bundle","type":"transaction","entry":[{"request":{"method":"POST",'
        b'"url":"Observation"},"resource":{"resourceType":"Observation","status":"final",'
        b'"code":{"text":"Creatinine"},"valueQuantity":{"value":0.10,"unit":"mg/dL"}}}]}'
    )
    response = fhir.post("", content=body, headers={"Content-Type": "application/fhir+json"})
    assert response.status_code == 200, response.text
    location = response.json()["entry"][0]["response"]["location"]
    stored = fhir.get("/" + location.split("/_history")[0])
    assert b'"value":0.10' in stored.content
