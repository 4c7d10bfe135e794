from __future__ import annotations

from datetime import datetime
from statistics import median
from typing import Any

from bevan.synth.codes import CONFIDENTIALITY, NATIONAL_DATA_OPT_OUT_POLICY

Record = list[dict[str, Any]]
HYPERTENSION = "38341003"
TYPE_2_DIABETES = "44054006"
METFORMIN = "325278007"
HBA1C = "59261-8"
VITAL_SIGN_CODES = {
    "heart rate": "8867-4",
    "respiratory rate": "9279-1",
    "oxygen saturation": "2708-6",
    "blood pressure": "85354-9",
    "temperature": "8310-5",
    "consciousness": "1104441000000107",
}


def _age(record: Record) -> int:
    return 2025 - int(record[0]["birthDate"][:4])


def _of_type(record: Record, kind: str) -> list[dict[str, Any]]:
    return [r for r in record if r["resourceType"] == kind]


def _codes(resource: dict[str, Any], field: str = "code") -> set[str]:
    return {c["code"] for c in resource.get(field, {}).get("coding", [])}


def _has_condition(record: Record, snomed: str) -> bool:
    return any(snomed in _codes(c) for c in _of_type(record, "Condition"))


def _value(observation: dict[str, Any], loinc: str = "8480-6") -> float | None:
    if "valueQuantity" in observation:
        return float(observation["valueQuantity"]["value"])
    for component in observation.get("component", []):
        if loinc in _codes(component):
            return float(component["valueQuantity"]["value"])
    return None


def _when(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_age_structure_is_like_englands(population) -> None:
    ages = [_age(record) for record in population]
    over_65 = sum(age >= 65 for age in ages) / len(ages)
    under_16 = sum(age < 16 for age in ages) / len(ages)
    assert 0.15 < over_65 < 0.24
    assert 0.15 < under_16 < 0.24
    assert max(ages) >= 90


def test_hypertension_is_far_commoner_in_older_people(population) -> None:
    older = [r for r in population if _age(r) >= 65]
    younger = [r for r in population if 18 <= _age(r) < 40]
    older_rate = sum(_has_condition(r, HYPERTENSION) for r in older) / len(older)
    younger_rate = sum(_has_condition(r, HYPERTENSION) for r in younger) / len(younger)
    assert 0.3 < older_rate < 0.7
    assert younger_rate < 0.06
    assert older_rate > 5 * younger_rate


def test_children_have_no_adult_cardiometabolic_disease(population) -> None:
    children = [r for r in population if _age(r) < 16]
    assert not any(
        _has_condition(r, HYPERTENSION) or _has_condition(r, TYPE_2_DIABETES) for r in children
    )


def test_diabetics_on_metformin_have_hba1c_results_higher_than_others(population) -> None:
    on_metformin = [
        r
        for r in population
        if _has_condition(r, TYPE_2_DIABETES)
        and any(
            METFORMIN in _codes(m, "medicationCodeableConcept")
            for m in _of_type(r, "MedicationRequest")
        )
    ]
    assert len(on_metformin) > 40
    diabetic_values: list[float] = []
    for record in on_metformin:
        results = [o for o in _of_type(record, "Observation") if HBA1C in _codes(o)]
        assert results, record[0]["id"]
        diabetic_values.extend(v for o in results if (v := _value(o)) is not None)
    other_values = [
        v
        for record in population
        if not _has_condition(record, TYPE_2_DIABETES)
        for o in _of_type(record, "Observation")
        if HBA1C in _codes(o) and (v := _value(o)) is not None
    ]
    assert median(diabetic_values) > median(other_values) + 10


def test_metformin_is_only_prescribed_for_diabetes(population) -> None:
    for record in population:
        if any(
            METFORMIN in _codes(m, "medicationCodeableConcept")
            for m in _of_type(record, "MedicationRequest")
        ):
            assert _has_condition(record, TYPE_2_DIABETES)


def test_about_five_percent_have_a_national_data_opt_out(population) -> None:
    opted_out = 0
    for record in population:
        consents = _of_type(record, "Consent")
        if consents:
            (consent,) = consents
            assert consent["status"] == "active"
            assert consent["provision"]["type"] == "deny"
            assert consent["policy"][0]["uri"] == NATIONAL_DATA_OPT_OUT_POLICY
            opted_out += 1
    assert 0.035 < opted_out / len(population) < 0.075


def test_a_few_records_are_marked_restricted(population) -> None:
    restricted = [
        r
        for record in population
        for r in record
        if any(
            s["system"] == CONFIDENTIALITY and s["code"] == "R"
            for s in r.get("meta", {}).get("security", [])
        )
    ]
    total = sum(len(record) for record in population)
    assert restricted
    assert len(restricted) < 0.05 * total


def test_every_patient_is_registered_at_a_gp_practice_in_the_shared_directory(
    population, shared
) -> None:
    practices = {
        f"Organization/{o['id']}"
        for o in shared
        if o["resourceType"] == "Organization"
        and o["identifier"][0]["system"] == "https://fhir.nhs.uk/Id/ods-organization-code"
    }
    registered = {record[0]["generalPractitioner"][0]["reference"] for record in population}
    assert registered <= practices
    assert len(registered) > 50  # patients are spread across many practices


def _virtual_ward(population) -> list[Record]:
    return [r for r in population if _of_type(r, "EpisodeOfCare")]


def test_a_few_percent_are_on_a_virtual_ward_mostly_copd_and_heart_failure(population) -> None:
    ward = _virtual_ward(population)
    assert 0.01 < len(ward) / len(population) < 0.06
    copd_or_hf = [
        r for r in population if _has_condition(r, "13645005") or _has_condition(r, "84114007")
    ]
    rate_with = sum(bool(_of_type(r, "EpisodeOfCare")) for r in copd_or_hf) / len(copd_or_hf)
    assert rate_with > 2 * len(ward) / len(population)


def test_virtual_ward_patients_have_a_monitoring_plan_and_vital_sign_time_series(
    population,
) -> None:
    for record in _virtual_ward(population):
        (plan,) = _of_type(record, "CarePlan")
        per_day = plan["activity"][0]["detail"]["scheduledTiming"]["repeat"]["frequency"]
        assert 2 <= per_day <= 4
        readings = [
            o
            for o in _of_type(record, "Observation")
            if o.get("basedOn") == [{"reference": f"CarePlan/{plan['id']}"}]
        ]
        found = {
            name
            for name, code in VITAL_SIGN_CODES.items()
            if any(code in _codes(o) for o in readings)
        }
        assert found == set(VITAL_SIGN_CODES)
        assert any(o["code"].get("text") == "Air or oxygen" for o in readings)
        times = sorted({_when(o["effectiveDateTime"]) for o in readings})
        start = _when(plan["period"]["start"])
        end = _when(plan["period"].get("end", "2025-06-30T12:00:00Z"))
        if (end - start).days >= 3:  # a new admission has only a set or two so far
            assert len(times) >= 6
        if len(times) >= 3:
            gaps = [(b - a).total_seconds() / 3600 for a, b in zip(times, times[1:], strict=False)]
            assert 2 < median(gaps) < 14


def test_virtual_ward_readings_include_artefacts_late_arrivals_and_deterioration(
    population,
) -> None:
    implausible = late = deteriorating = 0
    for record in _virtual_ward(population):
        spo2_by_time: dict[datetime, float] = {}
        for o in _of_type(record, "Observation"):
            if not o.get("basedOn"):
                continue
            value = _value(o)
            codes = _codes(o)
            if value is not None and (
                ("8867-4" in codes and not 20 <= value <= 250)
                or ("2708-6" in codes and value < 50)
                or ("8310-5" in codes and not 30 <= value <= 43)
                or ("9279-1" in codes and not 3 <= value <= 70)
                or ("85354-9" in codes and not 50 <= value <= 280)
            ):
                implausible += 1
            if (_when(o["issued"]) - _when(o["effectiveDateTime"])).total_seconds() > 4 * 3600:
                late += 1
            if "2708-6" in codes and value is not None and value >= 50:
                spo2_by_time[_when(o["effectiveDateTime"])] = value
        ordered = [spo2_by_time[t] for t in sorted(spo2_by_time)]
        if len(ordered) >= 6 and median(ordered[-3:]) <= median(ordered[:3]) - 4:
            deteriorating += 1
    assert implausible > 0
    assert late > 0
    assert deteriorating > 0


def test_copd_patients_on_scale_2_have_an_88_to_92_percent_target(population) -> None:
    on_scale_2 = [r for r in _virtual_ward(population) if _of_type(r, "Goal")]
    assert on_scale_2
    for record in on_scale_2:
        (goal,) = _of_type(record, "Goal")
        target = goal["target"][0]["detailRange"]
        assert (target["low"]["value"], target["high"]["value"]) == (88, 92)
        assert _has_condition(record, "13645005")
        spo2 = [
            v
            for o in _of_type(record, "Observation")
            if "2708-6" in _codes(o) and (v := _value(o)) is not None and v >= 50
        ]
        assert median(spo2) < 93
