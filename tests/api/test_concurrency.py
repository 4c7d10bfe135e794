"""Concurrent writers never lose an update, and If-Match lets exactly one win."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

FHIR_JSON = {"Content-Type": "application/fhir+json"}


def test_concurrent_updates_each_get_their_own_version(server) -> None:  # type: ignore[no-untyped-def]
    with server.client() as fhir:
        fhir.put("/Patient/busy", json={"resourceType": "Patient", "id": "busy"}, headers=FHIR_JSON)

    def update(n: int) -> str:
        with server.client() as fhir:
            body = {"resourceType": "Patient", "id": "busy", "name": [{"family": f"Writer{n}"}]}
            response = fhir.put("/Patient/busy", json=body, headers=FHIR_JSON)
            assert response.status_code == 200, response.text
            return str(response.json()["meta"]["versionId"])

    with ThreadPoolExecutor(max_workers=8) as pool:
        versions = list(pool.map(update, range(40)))
    assert sorted(int(v) for v in versions) == list(range(2, 42))
    with server.client() as fhir:
        assert fhir.get("/Patient/busy/_history", params={"_count": 0}).json()["total"] == 41


def test_if_match_lets_exactly_one_concurrent_writer_win(server) -> None:  # type: ignore[no-untyped-def]
    with server.client() as fhir:
        fhir.put(
            "/Patient/contended",
            json={"resourceType": "Patient", "id": "contended"},
            headers=FHIR_JSON,
        )

    def update(n: int) -> int:
        with server.client() as fhir:
            body = {
                "resourceType": "Patient",
                "id": "contended",
                "gender": "female" if n % 2 else "male",
            }
            return fhir.put(
                "/Patient/contended", json=body, headers={**FHIR_JSON, "If-Match": 'W/"1"'}
            ).status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(update, range(16)))
    assert statuses.count(200) == 1
    assert statuses.count(412) == 15


def test_concurrent_conditional_creates_make_one_resource(server) -> None:  # type: ignore[no-untyped-def]
    body = {
        "resourceType": "Organization",
        "name": "Ebbw Vale",
        "identifier": [
            {"system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": "W99999"}
        ],
    }

    def create(_: int) -> int:
        with server.client() as fhir:
            headers = {
                **FHIR_JSON,
                "If-None-Exist": "identifier=https://fhir.nhs.uk/Id/ods-organization-code|W99999",
            }
            return fhir.post("/Organization", json=body, headers=headers).status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(create, range(16)))
    assert statuses.count(201) == 1
    with server.client() as fhir:
        found = fhir.get(
            "/Organization",
            params={"identifier": "https://fhir.nhs.uk/Id/ods-organization-code|W99999"},
        )
        assert found.json()["total"] == 1


def test_reads_continue_during_a_large_transaction(server) -> None:  # type: ignore[no-untyped-def]
    entries = [
        {
            "resource": {
                "resourceType": "Observation",
                "status": "final",
                "code": {"text": f"n{n}"},
            },
            "request": {"method": "POST", "url": "Observation"},
        }
        for n in range(3000)
    ]
    with server.client() as fhir:
        fhir.put(
            "/Patient/reader", json={"resourceType": "Patient", "id": "reader"}, headers=FHIR_JSON
        )

    def big() -> int:
        with server.client() as fhir:
            return fhir.post(
                "",
                json={"resourceType": "Bundle", "type": "transaction", "entry": entries},
                headers=FHIR_JSON,
            ).status_code

    with ThreadPoolExecutor(max_workers=2) as pool:
        pending = pool.submit(big)
        reads = 0
        with server.client() as fhir:
            while not pending.done():
                assert fhir.get("/Patient/reader").status_code == 200
                reads += 1
        assert pending.result() == 200
    assert reads > 0
