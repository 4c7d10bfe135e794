"""Random data, random searches: the server finds exactly what the reference evaluator finds.

Each example loads 20-40 Patients, Observations and Encounters into a namespace of its own
(a unique meta.tag, added to every search as `_tag`), then runs a few searches of one
family (string, token, date, quantity, reference and chains, composite, mixed AND/OR) and
compares the set of ids with `reference.matching_ids`.
"""

from __future__ import annotations

import os
import uuid
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.search.reference import matching_ids
from tests.search.searching import load, matched_ids, tag_parameter, tagged

if TYPE_CHECKING:
    from tests.conftest import RunningServer

EXAMPLES_PER_FAMILY = int(os.environ.get("BEVAN_SEARCH_EXAMPLES", "8"))
QUERIES_PER_EXAMPLE = 6

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"

FAMILIES = ["Chalmers", "Müller", "MÜLLER", "O'Brien", "van der Berg", "Núñez", "Nunez", "Smith"]
GIVENS = ["Peter", "Eve", "Evelyn", "Sévérine", "eve", "José", "Jose", "Jim", "Ève"]
PREFIXES_OF_NAMES = ["Dr", "Mrs"]
CITIES = ["Leeds", "LEEDS", "Lédsham", "York", "Bath"]
IDENTIFIER_SYSTEMS = ["http://acme.org/patient", "https://example.org/Id/local-number", None]
IDENTIFIER_VALUES = ["2345", "1234", "abc", "ABC"]
GENDERS = ["male", "female", "other", "unknown"]
DATES = [
    "1970",
    "1970-06",
    "1970-06-15",
    "1971-01-01",
    "2012",
    "2012-12",
    "2012-12-31",
    "2013",
    "2013-01",
    "2013-01-14",
    "2013-01-15",
    "2013-02-01",
]
DATE_TIMES = [
    "2012-12-31T23:30:00Z",
    "2013-01-14T10:00:00Z",
    "2013-01-14T10:00:30Z",
    "2013-01-14T23:59:59Z",
    "2013-01-15T00:00:00Z",
    "2013-01-14T10:00:00.250Z",
]
# code, display, (unit codes), values
VITALS: dict[str, tuple[str, tuple[str, ...], tuple[float, ...]]] = {
    "8302-2": ("Body height", ("cm", "m"), (1.7, 150, 170, 170.4, 180)),
    "29463-7": ("Body weight", ("kg", "g"), (5.4, 70, 72.5, 100, 5400, 70000)),
    "8867-4": ("Heart rate", ("/min",), (60, 72, 100, 101)),
    "59408-5": ("Oxygen saturation", ("%",), (88, 95, 99.5, 100)),
}
BP = "85354-9"
SYSTOLIC, DIASTOLIC = "8480-6", "8462-4"
SNOMED = "http://snomed.info/sct"
BP_METHOD = "8357-6"  # a component whose value is a concept: how the pressure was taken
METHODS = ["37931006", "17146006"]  # auscultation, oscillometry
FINDINGS = ["17621005", "281302008", "281300000"]  # normal, above range, below range


# -- data ------------------------------------------------------------------------------


def _name() -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {
            "family": st.sampled_from(FAMILIES),
            "given": st.lists(st.sampled_from(GIVENS), max_size=2),
        },
        optional={"prefix": st.lists(st.sampled_from(PREFIXES_OF_NAMES), min_size=1, max_size=1)},
    )


def _identifier() -> st.SearchStrategy[dict[str, Any]]:
    return st.builds(
        lambda system, value: {"value": value} | ({"system": system} if system else {}),
        st.sampled_from(IDENTIFIER_SYSTEMS),
        st.sampled_from(IDENTIFIER_VALUES),
    )


@st.composite
def patients(draw: st.DrawFn, ids: list[str]) -> list[dict[str, Any]]:
    out = []
    for id_ in ids:
        patient: dict[str, Any] = {"resourceType": "Patient", "id": id_}
        names = draw(st.lists(_name(), max_size=2))
        if names:
            patient["name"] = names
        if draw(st.booleans()):
            patient["gender"] = draw(st.sampled_from(GENDERS))
        if draw(st.integers(0, 4)):
            patient["birthDate"] = draw(st.sampled_from(DATES))
        identifiers = draw(st.lists(_identifier(), max_size=2))
        if identifiers:
            patient["identifier"] = identifiers
        if draw(st.booleans()):
            patient["address"] = [{"city": draw(st.sampled_from(CITIES)), "country": "UK"}]
        if draw(st.booleans()):
            patient["active"] = draw(st.booleans())
        out.append(patient)
    return out


def _quantity(value: float, unit: str) -> dict[str, Any]:
    number: float | int = int(value) if float(value).is_integer() else value
    return {"value": number, "unit": unit, "system": UCUM, "code": unit}


def _effective(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(["date", "dateTime", "period", "none"]))
    if kind == "date":
        return {"effectiveDateTime": draw(st.sampled_from(DATES[4:]))}
    if kind == "dateTime":
        return {"effectiveDateTime": draw(st.sampled_from(DATE_TIMES))}
    if kind == "period":
        period = {}
        if draw(st.integers(0, 3)):
            period["start"] = draw(
                st.sampled_from(["2012-12-31", "2013-01-14T10:00:00Z", "2013-01"])
            )
        if draw(st.integers(0, 3)):
            period["end"] = draw(st.sampled_from(["2013-01-14T12:00:00Z", "2013-01-16", "2013-02"]))
        if period.get("start", "") > period.get("end", "9"):
            period.pop("end")
        return {"effectivePeriod": period} if period else {}
    return {}


@st.composite
def observations(draw: st.DrawFn, ids: list[str], patient_ids: list[str]) -> list[dict[str, Any]]:
    out = []
    for id_ in ids:
        code = draw(st.sampled_from([*VITALS, BP]))
        observation: dict[str, Any] = {
            "resourceType": "Observation",
            "id": id_,
            "status": draw(st.sampled_from(["final", "amended", "preliminary"])),
            "code": {"coding": [{"system": LOINC, "code": code}]},
        }
        if draw(st.booleans()):
            observation["category"] = [
                {"coding": [{"system": CATEGORY, "code": "vital-signs"}], "text": "Vital Signs"}
            ]
        if code == BP:
            observation["code"]["text"] = draw(st.sampled_from(["Blood pressure", "BP panel"]))
            observation["component"] = [
                {
                    "code": {"coding": [{"system": LOINC, "code": SYSTOLIC}]},
                    "valueQuantity": _quantity(
                        draw(st.sampled_from([110, 139, 140, 141, 180])), "mm[Hg]"
                    ),
                },
                {
                    "code": {"coding": [{"system": LOINC, "code": DIASTOLIC}]},
                    "valueQuantity": _quantity(draw(st.sampled_from([55, 60, 80, 95])), "mm[Hg]"),
                },
            ]
            if draw(st.booleans()):
                method = draw(st.sampled_from(METHODS))
                observation["component"].append(
                    {
                        "code": {"coding": [{"system": LOINC, "code": BP_METHOD}]},
                        "valueCodeableConcept": {"coding": [{"system": SNOMED, "code": method}]},
                    }
                )
        else:
            display, units, values = VITALS[code]
            observation["code"]["coding"][0]["display"] = display
            kind = draw(st.integers(0, 6))
            if kind > 1:
                observation["valueQuantity"] = _quantity(
                    draw(st.sampled_from(values)), draw(st.sampled_from(units))
                )
            elif kind == 1:
                finding = draw(st.sampled_from(FINDINGS))
                observation["valueCodeableConcept"] = {
                    "coding": [{"system": SNOMED, "code": finding}]
                }
        if draw(st.integers(0, 5)):
            observation["subject"] = {"reference": f"Patient/{draw(st.sampled_from(patient_ids))}"}
        observation.update(_effective(draw))
        out.append(observation)
    return out


@st.composite
def encounters(draw: st.DrawFn, ids: list[str], patient_ids: list[str]) -> list[dict[str, Any]]:
    out = []
    for id_ in ids:
        klass = draw(st.sampled_from(["AMB", "IMP", "EMER"]))
        encounter: dict[str, Any] = {
            "resourceType": "Encounter",
            "id": id_,
            "status": draw(st.sampled_from(["finished", "in-progress"])),
            "class": {"system": ACT_CODE, "code": klass},
            "subject": {"reference": f"Patient/{draw(st.sampled_from(patient_ids))}"},
        }
        period = draw(_effective_period())
        if period:
            encounter["period"] = period
        out.append(encounter)
    return out


@st.composite
def _effective_period(draw: st.DrawFn) -> dict[str, Any]:
    effective = _effective(draw)
    if "effectivePeriod" in effective:
        return dict(effective["effectivePeriod"])
    return {}


@st.composite
def data_sets(draw: st.DrawFn) -> tuple[str, list[dict[str, Any]]]:
    """Return a fresh tag and 20-40 resources carrying it."""
    tag = uuid.uuid4().hex[:12]
    n_patients = draw(st.integers(6, 10))
    n_observations = draw(st.integers(12, 26))
    n_encounters = draw(st.integers(2, 4))
    patient_ids = [f"{tag}-p{i}" for i in range(n_patients)]
    resources = (
        draw(patients(patient_ids))
        + draw(observations([f"{tag}-o{i}" for i in range(n_observations)], patient_ids))
        + draw(encounters([f"{tag}-e{i}" for i in range(n_encounters)], patient_ids))
    )
    return tag, [tagged(r, tag) for r in resources]


# -- searches --------------------------------------------------------------------------

Search = tuple[str, list[tuple[str, str]]]
DATE_PREFIXES = ["", "eq", "ne", "gt", "lt", "ge", "le", "sa", "eb"]
NUMBER_PREFIXES = ["", "eq", "ne", "gt", "lt", "ge", "le"]


def _or(values: st.SearchStrategy[str], max_size: int = 3) -> st.SearchStrategy[str]:
    return st.lists(values, min_size=1, max_size=max_size).map(",".join)


def string_searches() -> st.SearchStrategy[Search]:
    fragments = ["pe", "Pe", "eve", "EVE", "Eve", "sev", "sév", "jos", "JOSÉ", "mull", "müller",
                 "o'b", "van d", "nun", "nú", "ch", "e", "er", "lee", "léd", "dr"]  # fmt: skip
    name_search = st.tuples(
        st.sampled_from(
            [
                "name",
                "family",
                "given",
                "name:exact",
                "given:exact",
                "family:exact",
                "name:contains",
                "given:contains",
                "family:contains",
                "phonetic",
            ]
        ),  # fmt: skip
        _or(st.sampled_from(fragments + FAMILIES + GIVENS)),
    )
    address = st.tuples(
        st.sampled_from(["address", "address-city", "address:contains", "address-city:exact"]),
        _or(st.sampled_from(["le", "LEEDS", "Leeds", "léd", "led", "york", "uk", "ath"])),
    )
    return st.lists(st.one_of(name_search, address), min_size=1, max_size=2).map(
        lambda params: ("Patient", params)
    )


def token_searches() -> st.SearchStrategy[Search]:
    identifier_values = [
        *IDENTIFIER_VALUES,
        *(f"{s}|{v}" for s in IDENTIFIER_SYSTEMS if s for v in IDENTIFIER_VALUES),
        *(f"|{v}" for v in IDENTIFIER_VALUES),
        *(f"{s}|" for s in IDENTIFIER_SYSTEMS if s),
    ]
    codes = [*VITALS, BP, SYSTOLIC, *(f"{LOINC}|{c}" for c in [*VITALS, BP]), f"{LOINC}|",
             f"http://snomed.info/sct|{BP}", f"|{BP}"]  # fmt: skip
    patient = st.tuples(
        st.sampled_from(
            ["identifier", "gender", "gender:not", "active", "identifier:missing", "gender:missing"]
        ),  # fmt: skip
        st.just(""),
    ).flatmap(
        lambda pair: st.tuples(
            st.just(pair[0]),
            st.sampled_from(["true", "false"])
            if pair[0] in ("active", "identifier:missing", "gender:missing")
            else _or(st.sampled_from(identifier_values))
            if pair[0] == "identifier"
            else _or(st.sampled_from(GENDERS), 2),
        )
    )
    observation = st.one_of(
        st.tuples(st.sampled_from(["code", "code:not", "combo-code", "component-code"]), _or(st.sampled_from(codes))),
        st.tuples(st.just("category"), st.sampled_from(["vital-signs", f"{CATEGORY}|vital-signs", "laboratory"])),
        st.tuples(st.sampled_from(["status", "status:not"]), _or(st.sampled_from(["final", "amended", "preliminary"]), 2)),
        st.tuples(st.just("code:text"), st.sampled_from(["blood", "Body", "bp", "heart r", "vital", "oxygen"])),
        st.tuples(st.just("category:text"), st.sampled_from(["vital", "VITAL S"])),
        st.tuples(st.sampled_from(["value-concept", "component-value-concept", "combo-value-concept", "combo-value-concept:not"]),
                  _or(st.sampled_from([*FINDINGS, *METHODS, f"{SNOMED}|{METHODS[0]}"]))),
    )  # fmt: skip
    encounter = st.tuples(
        st.sampled_from(["class", "class:not", "status"]),
        _or(st.sampled_from(["AMB", "IMP", f"{ACT_CODE}|EMER", "finished", "in-progress"])),
    )
    return st.one_of(
        st.lists(patient, min_size=1, max_size=2).map(lambda p: ("Patient", p)),
        st.lists(observation, min_size=1, max_size=2).map(lambda p: ("Observation", p)),
        st.lists(encounter, min_size=1, max_size=2).map(lambda p: ("Encounter", p)),
    )


def _dates() -> st.SearchStrategy[str]:
    return st.builds(
        lambda prefix, date: prefix + date,
        st.sampled_from(DATE_PREFIXES),
        st.sampled_from(DATES + DATE_TIMES + ["2013-01-14T10:00:00+01:00"]),
    )


def date_searches() -> st.SearchStrategy[Search]:
    return st.one_of(
        st.lists(st.tuples(st.just("birthdate"), _or(_dates(), 2)), min_size=1, max_size=2).map(
            lambda p: ("Patient", p)
        ),
        st.lists(st.tuples(st.just("date"), _or(_dates(), 2)), min_size=1, max_size=2).map(
            lambda p: ("Observation", p)
        ),
        st.lists(st.tuples(st.just("date"), _or(_dates(), 2)), min_size=1, max_size=2).map(
            lambda p: ("Encounter", p)
        ),
    )


def quantity_searches() -> st.SearchStrategy[Search]:
    numbers = [
        "5.4",
        "70",
        "72.5",
        "72",
        "100",
        "1e2",
        "150",
        "170",
        "1.7",
        "5400",
        "70000",
        "0.07",
        "95",
    ]
    units = ["", f"|{UCUM}|kg", f"|{UCUM}|g", f"|{UCUM}|cm", f"|{UCUM}|m", "||kg", "||/min",
             f"|{UCUM}|%", f"|{UCUM}|/min", "|http://example.org/units|kg"]  # fmt: skip
    value = st.builds(
        lambda p, n, u: p + n + u,
        st.sampled_from(NUMBER_PREFIXES),
        st.sampled_from(numbers),
        st.sampled_from(units),
    )
    return st.lists(
        st.tuples(st.sampled_from(["value-quantity", "combo-value-quantity"]), _or(value, 2)),
        min_size=1,
        max_size=2,
    ).map(lambda p: ("Observation", p))


def reference_searches(patient_ids: list[str], base_url: str) -> st.SearchStrategy[Search]:
    some_patient = st.sampled_from(patient_ids)
    forms = st.one_of(
        some_patient.map(lambda i: ("subject", f"Patient/{i}")),
        some_patient.map(lambda i: ("subject", i)),
        some_patient.map(lambda i: ("subject:Patient", i)),
        some_patient.map(lambda i: ("patient", i)),
        some_patient.map(lambda i: ("patient", f"{base_url}/Patient/{i}")),
        st.lists(some_patient, min_size=2, max_size=3).map(lambda ids: ("patient", ",".join(ids))),
        st.sampled_from([("subject:missing", "true"), ("subject:missing", "false")]),
        st.tuples(st.sampled_from(["subject:Patient.name", "patient.family", "subject:Patient.given:exact"]),
                  st.sampled_from(["pe", "eve", "Eve", "müller", "nunez", "Chalmers"])),
        st.tuples(st.just("patient.gender"), st.sampled_from(GENDERS)),
        st.tuples(st.just("patient.birthdate"), _dates()),
        st.tuples(st.just("patient.identifier"), st.sampled_from(["2345", "http://acme.org/patient|abc"])),
    )  # fmt: skip
    observation = st.lists(forms, min_size=1, max_size=2).map(lambda p: ("Observation", p))
    encounter = st.lists(
        st.one_of(
            some_patient.map(lambda i: ("patient", i)),
            st.tuples(st.just("subject:Patient.gender"), st.sampled_from(GENDERS)),
        ),
        min_size=1,
        max_size=2,
    ).map(lambda p: ("Encounter", p))
    reverse = st.lists(
        st.one_of(
            st.tuples(st.just("_has:Observation:patient:code"), st.sampled_from([*VITALS, BP])),
            st.tuples(st.just("_has:Observation:subject:value-quantity"), st.sampled_from(["gt70", "lt100", "ge100|http://unitsofmeasure.org|g"])),
            st.tuples(st.just("_has:Encounter:patient:class"), st.sampled_from(["AMB", "IMP"])),
            st.tuples(st.just("_has:Observation:patient:date"), st.sampled_from(["ge2013-01-14", "lt2013"])),
        ),
        min_size=1,
        max_size=2,
    ).map(lambda p: ("Patient", p))  # fmt: skip
    return st.one_of(observation, encounter, reverse)


def composite_searches() -> st.SearchStrategy[Search]:
    def pair(code: str, values: list[str]) -> st.SearchStrategy[str]:
        return st.builds(
            lambda system, prefix, value: f"{system}{code}${prefix}{value}",
            st.sampled_from([f"{LOINC}|", ""]),
            st.sampled_from(NUMBER_PREFIXES),
            st.sampled_from(values),
        )

    component = st.tuples(
        st.sampled_from(["component-code-value-quantity", "combo-code-value-quantity"]),
        _or(
            st.one_of(pair(SYSTOLIC, ["140", "60", "180"]), pair(DIASTOLIC, ["60", "140", "90"])), 2
        ),
    )
    root = st.tuples(
        st.sampled_from(["code-value-quantity", "combo-code-value-quantity"]),
        _or(st.one_of(pair("29463-7", ["70", "5.4", "100"]), pair("8867-4", ["72", "100"]))),
    )
    concept = st.builds(
        lambda code, system, value: f"{code}${system}{value}",
        st.sampled_from([*VITALS, BP_METHOD, f"{LOINC}|{BP_METHOD}"]),
        st.sampled_from([f"{SNOMED}|", ""]),
        st.sampled_from([*FINDINGS, *METHODS]),
    )
    concepts = st.tuples(
        st.sampled_from(
            ["code-value-concept", "component-code-value-concept", "combo-code-value-concept"]
        ),
        _or(concept, 2),
    )
    present = st.tuples(
        st.sampled_from(
            [
                "code-value-concept:missing",
                "combo-code-value-concept:missing",
                "code-value-quantity:missing",
                "component-code-value-quantity:missing",
                "combo-code:missing",
            ]
        ),
        st.sampled_from(["true", "false"]),
    )
    return st.lists(st.one_of(component, root, concepts, present), min_size=1, max_size=2).map(
        lambda p: ("Observation", p)
    )


def mixed_searches() -> st.SearchStrategy[Search]:
    """AND across families on one type: the pieces must combine."""

    def both(a: Search, b: Search) -> Search:
        return (a[0], [*a[1], *b[1]])

    observation_dates = st.lists(
        st.tuples(st.just("date"), _or(_dates(), 2)), min_size=1, max_size=1
    ).map(lambda p: ("Observation", p))
    patient_dates = st.lists(
        st.tuples(st.just("birthdate"), _or(_dates(), 2)), min_size=1, max_size=1
    ).map(lambda p: ("Patient", p))
    observation_pieces = st.one_of(quantity_searches(), composite_searches(), observation_dates)
    return st.one_of(
        st.builds(both, observation_pieces, observation_pieces),
        st.builds(both, string_searches(), patient_dates),
    )


def _searches_for(family: str, patient_ids: list[str], base_url: str) -> st.SearchStrategy[Search]:
    return {
        "string": string_searches,
        "token": token_searches,
        "date": date_searches,
        "quantity": quantity_searches,
        "composite": composite_searches,
        "reference": lambda: reference_searches(patient_ids, base_url),
        "mixed": mixed_searches,
    }[family]()


# -- the test --------------------------------------------------------------------------


def _check(
    fhir: httpx.Client, base_url: str, tag: str, resources: list[dict[str, Any]], search: Search
) -> None:
    resource_type, params = search
    everything = {(r["resourceType"], r["id"]): r for r in resources}
    query = [*params, tag_parameter(tag)]
    expected = matching_ids(resource_type, query, everything, base_url)
    found = matched_ids(fhir, f"/{resource_type}", [*query, ("_count", "1000")])
    assert len(found) == len(set(found)), f"{resource_type}?{query}: duplicate ids {found}"
    missing, extra = expected - set(found), set(found) - expected
    assert not missing and not extra, (
        f"\nGET /{resource_type}?{httpx.QueryParams(query)}\n"
        f"  the spec matches {len(expected)}, the server returned {len(found)}\n"
        f"  missing (should match): {sorted(missing)}\n"
        f"  extra (should not match): {sorted(extra)}\n"
        + "".join(
            f"  {key}: {everything.get((resource_type, key), '(not in this data set)')}\n"
            for key in sorted(missing | extra)[:4]
        )
    )


FAMILY_NAMES = ["string", "token", "date", "quantity", "reference", "composite", "mixed"]


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_search_matches_the_reference_evaluator(server: RunningServer, family: str) -> None:
    phases = [Phase.explicit, Phase.generate]
    if os.environ.get("BEVAN_SEARCH_SHRINK"):
        phases.append(Phase.shrink)

    @settings(
        max_examples=EXAMPLES_PER_FAMILY,
        deadline=None,
        phases=phases,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(data=st.data(), data_set=data_sets())
    def run(data: st.DataObject, data_set: tuple[str, list[dict[str, Any]]]) -> None:
        tag, resources = data_set
        patient_ids = [r["id"] for r in resources if r["resourceType"] == "Patient"]
        with server.client() as fhir:
            load(fhir, resources)
            for _ in range(QUERIES_PER_EXAMPLE):
                search = data.draw(_searches_for(family, patient_ids, server.base_url))
                _check(fhir, server.base_url, tag, resources, search)

    run()
