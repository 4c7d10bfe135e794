"""One synthetic patient's whole record, deterministic by (seed, index)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from bevan.synth import codes
from bevan.synth.conditions import condition_resource, draw_diagnoses
from bevan.synth.medicines import draw_prescriptions, medication_request
from bevan.synth.observations import laboratory_results, routine_vital_signs
from bevan.synth.organisations import ServiceDirectory
from bevan.synth.people import draw_person, patient_resource
from bevan.synth.primary_care import allergies, consultations, immunisations, national_data_opt_out
from bevan.synth.references import RecordContext
from bevan.synth.seeds import patient_random
from bevan.synth.virtual_ward import draw_admission, monitoring_resources

# The moment the synthetic records describe: fixed, so output never depends on the clock.
AS_AT = datetime(2025, 6, 30, 12, 0, tzinfo=UTC)

RESTRICTED_RECORD_SHARE = 0.005  # whole records marked restricted (e.g. protected people)
AT_RISK_CONDITIONS = {
    "type-2-diabetes",
    "heart-failure",
    "chronic-kidney-disease",
    "copd",
    "asthma",
}


def patient_record(
    seed: int, index: int, directory: ServiceDirectory, *, transaction: bool = False
) -> list[dict[str, Any]]:
    """Return patient index's resources, the Patient first, every one carrying its id.

    With transaction=True references between the patient's own resources are
    urn:uuid:<id> (for a transaction Bundle); otherwise they are Type/id.
    """
    rng = patient_random(seed, index)
    context = RecordContext(seed=seed, index=index, transaction=transaction, as_at=AS_AT)
    today = context.today
    person = draw_person(rng, directory, seed, index, today)
    age = person.demographics.age
    sex = person.demographics.sex
    practice = person.practice
    trust = directory.trust(practice.trust_code)
    restricted = rng.random() < RESTRICTED_RECORD_SHARE

    resources: list[dict[str, Any]] = [patient_resource(person, context)]
    diagnoses = draw_diagnoses(rng, age, sex, person.birth_date, today, context)
    resources.extend(condition_resource(d, context, person.gp_id) for d in diagnoses)
    prescriptions = draw_prescriptions(rng, diagnoses, today, context)
    resources.extend(
        medication_request(p, context, person.gp_id, authored=p.started) for p in prescriptions
    )
    keys = {d.condition.key for d in diagnoses}
    on_statin = any(p.medicine.key == "atorvastatin" for p in prescriptions)
    resources.extend(consultations(rng, context, age, diagnoses, practice))
    resources.extend(allergies(rng, context, person.birth_date, person.gp_id))
    resources.extend(immunisations(rng, context, age, bool(keys & AT_RISK_CONDITIONS), practice))
    resources.extend(laboratory_results(rng, context, age, diagnoses, on_statin, trust.ods_code))
    resources.extend(
        routine_vital_signs(rng, context, age, sex, "hypertension" in keys, person.gp_id)
    )
    admission = draw_admission(rng, context, age, diagnoses)
    if admission is not None:
        resources.extend(monitoring_resources(rng, context, admission, trust))
    resources.extend(national_data_opt_out(rng, context))
    if restricted:
        for resource in resources:
            resource["meta"] = {"security": [codes.RESTRICTED]}
    return resources
