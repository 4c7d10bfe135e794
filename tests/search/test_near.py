"""Location?near=latitude|longitude|distance|units over real HTTP, on SQLite and PostgreSQL.

Every expected answer is worked out here with an independent haversine distance.
"""

from __future__ import annotations

import math
import random
import uuid
from typing import Any

import httpx

FHIR_JSON = {"Content-Type": "application/fhir+json"}
MARK = "urn:bevan-test:near"
EARTH_RADIUS_KM = 6371.0088

CARDIFF = (51.4816, -3.1791)
PLACES = {
    "Cardiff": CARDIFF,
    "Newport": (51.5842, -2.9977),
    "Bridgend": (51.5043, -3.5769),
    "Swansea": (51.6214, -3.9436),
    "Bristol": (51.4545, -2.5879),
    "Aberystwyth": (52.4153, -4.0829),
    "London": (51.5072, -0.1276),
    "Edinburgh": (55.9533, -3.1883),
}


def haversine_km(a: tuple[float, float], b: tuple[float, float]) -> float:
    (lat1, lon1), (lat2, lon2) = a, b
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(math.sqrt(h))


def store(fhir: httpx.Client, places: dict[str, tuple[float, float]]) -> str:
    """Create one Location per place, marked with a fresh identifier; return it."""
    mark = uuid.uuid4().hex
    for name, (latitude, longitude) in places.items():
        body = {
            "resourceType": "Location",
            "name": name,
            "identifier": [{"system": MARK, "value": mark}],
            "position": {"latitude": latitude, "longitude": longitude},
        }
        response = fhir.post("/Location", json=body, headers=FHIR_JSON)
        assert response.status_code == 201, response.text
    return mark


def names(fhir: httpx.Client, mark: str | None, **params: Any) -> list[str]:
    query: dict[str, Any] = {"_count": 100, **params}
    if mark is not None:
        query["identifier"] = f"{MARK}|{mark}"
    response = fhir.get("/Location", params=query)
    assert response.status_code == 200, response.text
    bundle = response.json()
    return [
        e["resource"]["name"] for e in bundle.get("entry", []) if e["search"]["mode"] == "match"
    ]


def within(
    places: dict[str, tuple[float, float]], point: tuple[float, float], km: float
) -> set[str]:
    return {n for n, p in places.items() if haversine_km(point, p) <= km}


def test_locations_within_a_distance_are_found_and_no_others(fhir: httpx.Client) -> None:
    mark = store(fhir, PLACES)
    for km in (1, 20, 40, 60, 150, 200, 500):
        found = names(fhir, mark, near=f"{CARDIFF[0]}|{CARDIFF[1]}|{km}|km")
        assert set(found) == within(PLACES, CARDIFF, km), km


def test_distance_units_are_honoured_and_km_is_the_default(fhir: httpx.Client) -> None:
    mark = store(fhir, PLACES)
    expected = within(PLACES, CARDIFF, 65)  # Swansea is 55.1 km away, Bristol 41
    point = f"{CARDIFF[0]}|{CARDIFF[1]}"
    assert set(names(fhir, mark, near=f"{point}|65")) == expected
    assert set(names(fhir, mark, near=f"{point}|65000|m")) == expected
    miles = 65 / 1.609344
    assert set(names(fhir, mark, near=f"{point}|{miles:.4f}|mi")) == expected
    assert set(names(fhir, mark, near=f"{point}|{miles:.4f}|[mi_i]")) == expected
    assert "Swansea" not in names(fhir, mark, near=f"{point}|55000|m")


def test_without_a_distance_only_the_point_itself_is_near(fhir: httpx.Client) -> None:
    mark = store(fhir, PLACES)
    assert names(fhir, mark, near=f"{CARDIFF[0]}|{CARDIFF[1]}") == ["Cardiff"]
    assert names(fhir, mark, near=f"{CARDIFF[0]}|{CARDIFF[1] + 0.001}") == []


def test_sort_by_near_puts_the_nearest_first_and_pages_in_that_order(fhir: httpx.Client) -> None:
    mark = store(fhir, PLACES)
    by_distance = sorted(PLACES, key=lambda n: haversine_km(CARDIFF, PLACES[n]))
    near = f"{CARDIFF[0]}|{CARDIFF[1]}|1000|km"
    assert names(fhir, mark, near=near, _sort="near") == by_distance
    assert names(fhir, mark, near=near, _sort="-near") == by_distance[::-1]
    pages: list[str] = []
    response = fhir.get(
        "/Location",
        params={"near": near, "_sort": "near", "_count": 3, "identifier": f"{MARK}|{mark}"},
    )
    while True:
        assert response.status_code == 200, response.text
        bundle = response.json()
        pages.extend(e["resource"]["name"] for e in bundle.get("entry", []))
        following = [link["url"] for link in bundle["link"] if link["relation"] == "next"]
        if not following:
            break
        response = fhir.get(following[0])
    assert pages == by_distance


def test_scattered_positions_agree_with_an_independent_haversine(fhir: httpx.Client) -> None:
    chance = random.Random(18)
    # A region of the South Atlantic no other test uses, so near alone chooses the rows.
    centre = (-48.0, -20.0)
    places = {
        f"buoy-{i}": (
            round(centre[0] + chance.uniform(-3, 3), 5),
            round(centre[1] + chance.uniform(-4, 4), 5),
        )
        for i in range(40)
    }
    store(fhir, places)
    for km in (50, 120, 250, 400):
        near = f"{centre[0]}|{centre[1]}|{km}|km"
        found = names(fhir, None, near=near, _sort="near")
        expected = sorted(within(places, centre, km), key=lambda n: haversine_km(centre, places[n]))
        assert found == expected, km


def test_a_circle_across_the_antimeridian_finds_both_sides(fhir: httpx.Client) -> None:
    places = {"west of the line": (-17.0, 179.95), "east of the line": (-17.0, -179.95)}
    mark = store(fhir, places)
    assert set(names(fhir, mark, near="-17.0|179.99|20|km")) == set(places)
    assert names(fhir, mark, near="-17.0|179.99|6|km") == ["west of the line"]


def test_a_moved_location_is_found_where_it_now_is(fhir: httpx.Client) -> None:
    mark = store(fhir, {"Mobile unit": CARDIFF})
    found = fhir.get("/Location", params={"identifier": f"{MARK}|{mark}"}).json()
    location = found["entry"][0]["resource"]
    location["position"] = {"latitude": 55.9533, "longitude": -3.1883}
    updated = fhir.put(f"/Location/{location['id']}", json=location, headers=FHIR_JSON)
    assert updated.status_code == 200, updated.text
    assert names(fhir, mark, near=f"{CARDIFF[0]}|{CARDIFF[1]}|10|km") == []
    assert names(fhir, mark, near="55.95|-3.19|10|km") == ["Mobile unit"]
    assert fhir.delete(f"/Location/{location['id']}").status_code in (200, 204)
    assert names(fhir, mark, near="55.95|-3.19|10|km") == []


def test_a_location_without_a_position_is_never_near_and_is_missing(fhir: httpx.Client) -> None:
    mark = store(fhir, {"Cardiff": CARDIFF})
    body = {
        "resourceType": "Location",
        "name": "Nowhere in particular",
        "identifier": [{"system": MARK, "value": mark}],
    }
    assert fhir.post("/Location", json=body, headers=FHIR_JSON).status_code == 201
    assert names(fhir, mark, near=f"{CARDIFF[0]}|{CARDIFF[1]}|20000|m") == ["Cardiff"]
    assert names(fhir, mark, **{"near:missing": "true"}) == ["Nowhere in particular"]
    assert names(fhir, mark, **{"near:missing": "false"}) == ["Cardiff"]


def test_bad_near_values_are_refused_naming_the_parameter(fhir: httpx.Client) -> None:
    for value in (
        "91|0|1|km",
        "0|181|1|km",
        "north|0|1|km",
        "51.4",
        "51.4|-3.1|ten|km",
        "51.4|-3.1|-1|km",
        "51.4|-3.1|1|furlongs",
        "51.4|-3.1|20000|km",
        "51.4|-3.1|1|km|extra",
    ):
        response = fhir.get("/Location", params={"near": value})
        assert response.status_code == 400, (value, response.text)
        issue = response.json()["issue"][0]
        assert issue["expression"] == ["Location?near"], (value, issue)
    unsorted = fhir.get("/Location", params={"_sort": "near"})
    assert unsorted.status_code == 400
    assert unsorted.json()["issue"][0]["expression"] == ["_sort"]


def test_the_capability_statement_claims_near_and_no_uncompiled_composite(
    fhir: httpx.Client,
) -> None:
    statement = fhir.get("/metadata").json()
    resources = {r["type"]: r for r in statement["rest"][0]["resource"]}
    location = {p["name"]: p["type"] for p in resources["Location"]["searchParam"]}
    assert location["near"] == "special"
    sequence = {p["name"] for p in resources["MolecularSequence"]["searchParam"]}
    claimed = sequence & {
        "chromosome-variant-coordinate",
        "chromosome-window-coordinate",
        "referenceseqid-variant-coordinate",
        "referenceseqid-window-coordinate",
    }
    for code in claimed:
        response = fhir.get(
            "/MolecularSequence",
            params={code: "1$ge1$le10"},
            headers={"Prefer": "handling=strict"},
        )
        assert response.status_code == 200, (code, response.text)
