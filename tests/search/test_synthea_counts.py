"""Searches over the 14 Synthea patients count what a plain scan of the bundle files counts.

The bundles reference patients by urn:uuid and practitioners, organisations and locations
by conditional references (`Practitioner?identifier=...`); the server rewrites both to
`Type/<id>`, so the scans below follow the urn:uuid inside the files instead.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import httpx
import orjson
import pytest

from tests.conftest import RunningServer, database_url, start_server
from tests.search.reference import compare_ranges, date_range, normalise, stored_date_range

SYNTHEA = Path(__file__).resolve().parents[3] / "shared" / "data" / "synthea-small"
LOINC = "http://loinc.org"
CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
CVX = "http://hl7.org/fhir/sid/cvx"
# Synthea's codes in this sample are padded local codes, under the LOINC/SNOMED systems.
WEIGHT_LIKE = "1271" + "A" * 32
TUBERCULOSIS = "112141" + "A" * 30
SNOMED = "http://snomed.info/sct"
# The most common coded answer in the sample: a question (code) and its answer (value).
QUESTION, ANSWER = "1088" + "A" * 32, "84795" + "A" * 31

Resource = dict[str, Any]


@cache
def patient_bundle_resources() -> tuple[Resource, ...]:
    """Return every resource of the 14 patient bundles, with its fullUrl under `_fullUrl`."""
    out = []
    for path in sorted(SYNTHEA.glob("*.json")):
        if path.name.startswith(("hospitalInformation", "practitionerInformation")):
            continue
        for entry in orjson.loads(path.read_bytes())["entry"]:
            out.append({**entry["resource"], "_fullUrl": entry["fullUrl"]})
    return tuple(out)


def of_type(resource_type: str) -> Iterator[Resource]:
    return (r for r in patient_bundle_resources() if r["resourceType"] == resource_type)


def by_full_url() -> dict[str, Resource]:
    return {r["_fullUrl"]: r for r in patient_bundle_resources()}


def has_coding(concept: Any, system: str | None, code: str) -> bool:
    concepts = concept if isinstance(concept, list) else [concept]
    return any(
        c.get("code") == code and (system is None or c.get("system") == system)
        for item in concepts
        if isinstance(item, dict)
        for c in item.get("coding", [])
    )


def date_matches(prefix: str, search: str, stored: Any) -> bool:
    target = stored_date_range(stored) if stored is not None else None
    return target is not None and compare_ranges(prefix, date_range(search), target)


def subject_patient(resource: Resource, field: str = "subject") -> Resource | None:
    reference = resource.get(field, {}).get("reference", "")
    target = by_full_url().get(reference)
    return target if target and target["resourceType"] == "Patient" else None


@dataclass(frozen=True)
class CountCase:
    name: str
    resource_type: str
    query: str
    scan: Callable[[], int]


def count(resources: Iterator[Resource], keep: Callable[[Resource], bool]) -> int:
    return sum(1 for r in resources if keep(r))


def _patient_ids_with(resource_type: str, field: str, keep: Callable[[Resource], bool]) -> int:
    ids = {
        patient["_fullUrl"]
        for r in of_type(resource_type)
        if keep(r) and (patient := subject_patient(r, field)) is not None
    }
    return len(ids)


def _elements(observation: Resource) -> list[Resource]:
    """The observation itself and each of its components: where code and value pair up."""
    return [observation, *observation.get("component", [])]


def _asks(element: Resource, code: str) -> bool:
    return has_coding(element.get("code", {}), None, code)


def _answers(element: Resource, value: str) -> bool:
    answer = element.get("valueCodeableConcept")
    return answer is not None and has_coding(answer, None, value)


def _pairs(element: Resource, code: str, value: str) -> bool:
    return _asks(element, code) and _answers(element, value)


def _name_starts(patient: Resource, text: str) -> bool:
    parts = [
        s
        for name in patient.get("name", [])
        for key in ("family", "given", "prefix", "suffix", "text")
        for s in (name.get(key) if isinstance(name.get(key), list) else [name.get(key)])
        if isinstance(s, str)
    ]
    return any(normalise(p).startswith(normalise(text)) for p in parts)


CASES = [
    CountCase("observation_code_with_system", "Observation", f"code={LOINC}|{WEIGHT_LIKE}",
              lambda: count(of_type("Observation"), lambda r: has_coding(r["code"], LOINC, WEIGHT_LIKE))),
    CountCase("observation_code_absent_from_the_data", "Observation", f"code={LOINC}|8302-2",
              lambda: count(of_type("Observation"), lambda r: has_coding(r["code"], LOINC, "8302-2"))),
    CountCase("observation_category_code", "Observation", "category=exam",
              lambda: count(of_type("Observation"), lambda r: has_coding(r.get("category", []), None, "exam"))),
    CountCase("observation_category_system_and_code", "Observation", f"category={CATEGORY}|survey",
              lambda: count(of_type("Observation"), lambda r: has_coding(r.get("category", []), CATEGORY, "survey"))),
    CountCase("observation_code_and_coded_value", "Observation", f"code-value-concept={QUESTION}${SNOMED}|{ANSWER}",
              lambda: count(of_type("Observation"), lambda r: _pairs(r, QUESTION, ANSWER))),
    CountCase("observation_code_and_coded_value_in_any_element", "Observation",
              f"combo-code-value-concept={QUESTION}${ANSWER}",
              lambda: count(of_type("Observation"), lambda r: any(_pairs(e, QUESTION, ANSWER) for e in _elements(r)))),
    CountCase("observation_coded_value_in_any_element", "Observation", f"combo-value-concept={ANSWER}",
              lambda: count(of_type("Observation"), lambda r: any(_answers(e, ANSWER) for e in _elements(r)))),
    CountCase("observation_code_in_any_element", "Observation", f"combo-code={QUESTION}",
              lambda: count(of_type("Observation"), lambda r: any(_asks(e, QUESTION) for e in _elements(r)))),
    CountCase("encounter_class", "Encounter", "class=AMB",
              lambda: count(of_type("Encounter"), lambda r: r["class"].get("code") == "AMB")),
    CountCase("encounter_class_with_system", "Encounter", f"class={ACT_CODE}|IMP",
              lambda: count(of_type("Encounter"), lambda r: r["class"] == {"system": ACT_CODE, "code": "IMP"})),
    CountCase("condition_code", "Condition", f"code=http://snomed.info/sct|{TUBERCULOSIS}",
              lambda: count(of_type("Condition"), lambda r: has_coding(r["code"], "http://snomed.info/sct", TUBERCULOSIS))),
    CountCase("patient_gender", "Patient", "gender=female",
              lambda: count(of_type("Patient"), lambda r: r.get("gender") == "female")),
    CountCase("patient_birthdate_before_1970", "Patient", "birthdate=lt1970",
              lambda: count(of_type("Patient"), lambda r: date_matches("lt", "1970", r.get("birthDate")))),
    CountCase("patient_name_prefix", "Patient", "name=hand",
              lambda: count(of_type("Patient"), lambda r: _name_starts(r, "hand"))),
    CountCase("patient_phonetic_as_name_prefix", "Patient", "phonetic=hand",
              lambda: count(of_type("Patient"), lambda r: _name_starts(r, "hand"))),
    CountCase("observation_value_quantity_gt", "Observation", "value-quantity=gt100",
              lambda: count(of_type("Observation"), lambda r: r.get("valueQuantity", {}).get("value", 0) > 100)),
    CountCase("observation_date_from_2015", "Observation", "date=ge2015",
              lambda: count(of_type("Observation"), lambda r: date_matches("ge", "2015", r.get("effectiveDateTime")))),
    CountCase("immunization_vaccine_code", "Immunization", f"vaccine-code={CVX}|140",
              lambda: count(of_type("Immunization"), lambda r: has_coding(r["vaccineCode"], CVX, "140"))),
    CountCase("immunization_date_before_2000", "Immunization", "date=lt2000",
              lambda: count(of_type("Immunization"), lambda r: date_matches("lt", "2000", r.get("occurrenceDateTime")))),
    CountCase("encounter_period_overlapping_2019", "Encounter", "date=ge2019-01-01&date=lt2020-01-01",
              lambda: count(of_type("Encounter"), lambda r: date_matches("ge", "2019-01-01", r.get("period"))
                            and date_matches("lt", "2020-01-01", r.get("period")))),
    CountCase("diagnostic_report_code_and_date", "DiagnosticReport", f"code={LOINC}|34117-2&date=ge2018",
              lambda: count(of_type("DiagnosticReport"), lambda r: has_coding(r["code"], LOINC, "34117-2")
                            and date_matches("ge", "2018", r.get("effectiveDateTime")))),
    CountCase("observation_chained_patient_gender", "Observation", "patient.gender=female",
              lambda: count(of_type("Observation"), lambda r: (p := subject_patient(r)) is not None
                            and p.get("gender") == "female")),
    CountCase("patient_reverse_chained_immunization", "Patient", "_has:Immunization:patient:vaccine-code=140",
              lambda: _patient_ids_with("Immunization", "patient", lambda r: has_coding(r["vaccineCode"], None, "140"))),
]  # fmt: skip


def synthea_bundles() -> list[Path]:
    """Return the hospital and practitioner bundles, then the 14 patients' bundles."""
    seeds = sorted(SYNTHEA.glob("hospitalInformation*.json")) + sorted(
        SYNTHEA.glob("practitionerInformation*.json")
    )
    patients = sorted(p for p in SYNTHEA.glob("*.json") if p not in seeds and p.name != "LICENSE")
    return seeds + patients


def synthea_as_ndjson(directory: Path) -> list[Path]:
    """Write the bundles' resources as one NDJSON file per type, as an extract would
    hold them: each with its urn:uuid as its id, every reference as Type/id (a
    conditional one resolved to the resource its condition names), each resource once.
    The files are returned in name order, so many refer to files after them."""
    entries = [e for path in synthea_bundles() for e in orjson.loads(path.read_bytes())["entry"]]
    target: dict[str, str] = {}  # urn:uuid or Type?condition -> Type/id
    kept: list[Resource] = []
    for entry in entries:
        resource_type = entry["resource"]["resourceType"]
        condition = entry["request"].get("ifNoneExist")
        key = f"{resource_type}?{condition}"
        if condition and key in target:  # the server keeps one per condition
            target[entry["fullUrl"]] = target[key]
            continue
        reference = f"{resource_type}/{entry['fullUrl'].removeprefix('urn:uuid:')}"
        target[entry["fullUrl"]] = reference
        if condition:
            target[key] = reference
        kept.append({**entry["resource"], "id": reference.split("/")[1]})

    def resolved(value: Any) -> Any:
        if isinstance(value, dict):
            return {
                k: target.get(v, v) if k == "reference" and isinstance(v, str) else resolved(v)
                for k, v in value.items()
            }
        if isinstance(value, list):
            return [resolved(v) for v in value]
        return value

    by_type: dict[str, list[bytes]] = {}
    for resource in kept:
        by_type.setdefault(resource["resourceType"], []).append(orjson.dumps(resolved(resource)))
    files = []
    for resource_type, lines in sorted(by_type.items()):
        path = directory / f"{resource_type}.ndjson"
        path.write_bytes(b"\n".join(lines) + b"\n")
        files.append(path)
    return files


@pytest.fixture(params=["one by one", "in bulk"], scope="module")
def loading(request: pytest.FixtureRequest) -> str:
    """How the Synthea data is loaded: its bundles POSTed one by one, or as NDJSON by
    `bevan load`; every search must answer the same either way."""
    return str(request.param)


@pytest.fixture(scope="module")
def server(
    backend: str, loading: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    """A server of this module's own for each backend and way of loading."""
    tmp = tmp_path_factory.mktemp(f"bevan-{backend}-{loading.replace(' ', '-')}")
    yield from start_server(database_url(backend, tmp), tmp)


@pytest.fixture(scope="module")
def synthea(server: RunningServer, loading: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Load the hospital and practitioner bundles, then the 14 patients, once per server."""
    if loading == "in bulk":
        from bevan.records.loader import load_files

        files = synthea_as_ndjson(tmp_path_factory.mktemp("synthea-ndjson"))
        report = load_files(server.records, files)
        assert report.refused == [] and report.unresolved == [], report.refused[:5]
        server.store.analyse()
        return
    with server.client() as fhir:
        for path in synthea_bundles():
            response = fhir.post(
                "", content=path.read_bytes(), headers={"Content-Type": "application/fhir+json"}
            )
            assert response.status_code == 200, f"{path.name}: {response.text[:500]}"


def test_scans_find_something_for_most_cases() -> None:
    # The cases are only a proof if most of them count more than nothing.
    assert sum(1 for c in CASES if c.scan() > 0) >= len(CASES) - 2


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_search_total_matches_a_scan_of_the_bundles(
    fhir: httpx.Client, synthea: None, case: CountCase
) -> None:
    params = [*parse_qsl(case.query), ("_total", "accurate"), ("_count", "0")]
    response = fhir.get(f"/{case.resource_type}", params=params)
    assert response.status_code == 200, response.text[:500]
    expected = case.scan()
    assert response.json().get("total") == expected, (
        f"GET /{case.resource_type}?{case.query}: the server counts "
        f"{response.json().get('total')}, the bundles hold {expected}"
    )


EVERYTHING_TYPES = ("Observation", "Condition", "Encounter", "Procedure", "Immunization",
                    "MedicationRequest", "DiagnosticReport", "Claim", "ExplanationOfBenefit")  # fmt: skip


def _bundle_of(path: Path) -> list[Resource]:
    return [entry["resource"] for entry in orjson.loads(path.read_bytes())["entry"]]


@pytest.mark.parametrize("index", [0, 7, 13])
def test_everything_holds_the_patients_whole_bundle(
    fhir: httpx.Client, synthea: None, index: int
) -> None:
    paths = sorted(
        p for p in SYNTHEA.glob("*_*.json") if not p.name.startswith(("hospital", "practitioner"))
    )
    resources = _bundle_of(paths[index])
    [patient] = [r for r in resources if r["resourceType"] == "Patient"]
    synthea_id = next(i["value"] for i in patient["identifier"] if "synthea" in i["system"])
    found = fhir.get("/Patient", params={"identifier": synthea_id}).json()["entry"]
    server_id = found[0]["resource"]["id"]

    response = fhir.get(f"/Patient/{server_id}/$everything", params={"_count": "1000"})
    pages = [response.json()]
    while (url := _next(pages[-1])) is not None:
        pages.append(fhir.get(url).json())
    entries = [e["resource"] for page in pages for e in page.get("entry", [])]

    for resource_type in EVERYTHING_TYPES:
        expected = sum(1 for r in resources if r["resourceType"] == resource_type)
        got = sum(1 for r in entries if r["resourceType"] == resource_type)
        assert got == expected, f"{resource_type}: $everything has {got}, the bundle {expected}"
    patients = [r["id"] for r in entries if r["resourceType"] == "Patient"]
    assert patients == [server_id]
    # what the record refers to comes too: the practitioners and organisations of its care
    assert any(r["resourceType"] == "Practitioner" for r in entries)
    assert any(r["resourceType"] == "Organization" for r in entries)


def _next(bundle: dict[str, Any]) -> str | None:
    return next(
        (link["url"] for link in bundle.get("link", []) if link["relation"] == "next"), None
    )


WALKED = [
    ("Patient", [("name", "R")]),
    ("Observation", [("category", "survey")]),
    ("Observation", [("code", WEIGHT_LIKE)]),
    ("Observation", [("date", "ge2015-01-01")]),
    ("Encounter", [("class", f"{ACT_CODE}|AMB"), ("date", "lt2018")]),
    ("Observation", [("subject:Patient.gender", "female"), ("category", "survey")]),
]


@pytest.mark.parametrize(("resource_type", "params"), WALKED, ids=lambda v: str(v))
def test_walking_a_dense_match_pages_the_same_as_listing_it(
    server: RunningServer,
    synthea: None,
    monkeypatch: pytest.MonkeyPatch,
    resource_type: str,
    params: list[tuple[str, str]],
) -> None:
    """Broad criteria are walked in row order instead of listed; every page must hold
    exactly what listing gives, none skipped or repeated."""
    from bevan.fhir.search import parse_search
    from bevan.store import plan_choice

    size = 3 if resource_type == "Patient" else 150

    def all_pages() -> list[str]:
        ids: list[str] = []
        cursor: list[tuple[str, str]] = []
        while True:
            query = parse_search(
                resource_type, [*params, ("_count", str(size)), *cursor], strict=True
            )
            page = server.records.search(query)
            ids += [m.id for m in page.matches]
            if page.next_cursor is None:
                return ids
            cursor = [("_cursor", page.next_cursor.encode())]

    listed = all_pages()
    monkeypatch.setattr(plan_choice, "MAX_LISTED_MATCHES", 1)
    monkeypatch.setattr(plan_choice, "MIN_DENSE_MATCHES", 1)
    walked = all_pages()
    assert len(listed) > size, "the case must span pages"
    assert walked == listed
    assert len(set(walked)) == len(walked)
