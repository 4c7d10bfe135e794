"""The demo's sign-ins for the web app: a clinician at a demo patient's GP practice and
that patient, each given a fresh password every time the demo starts."""

from __future__ import annotations

import secrets
from collections import Counter
from dataclasses import dataclass

import orjson
from sqlalchemy import Engine

from bevan.fhir.errors import FhirError
from bevan.fhir.search import parse_search
from bevan.records.service import RecordService
from bevan.security.users import UserDirectory

ODS = "https://fhir.nhs.uk/Id/ods-organization-code"
CLINICIAN = "demo-clinician"
PATIENT = "demo-patient"


@dataclass(frozen=True)
class DemoSignIn:
    role: str
    username: str
    password: str
    about: str  # whom the account is, in a few words


def demo_sign_ins(engine: Engine, records: RecordService) -> list[DemoSignIn]:
    """Return sign-ins for a demo clinician and a demo patient (one with vital signs
    recorded, registered at the clinician's practice); none if there is no such patient."""
    # The patient with most readings among the first few hundred: a summary with trends.
    found = records.search(parse_search("Observation", "category=vital-signs&_count=500")).matches
    if not found:
        return []
    subjects = Counter(
        orjson.loads(o.content or b"{}").get("subject", {}).get("reference", "") for o in found
    )
    patient_id = subjects.most_common(1)[0][0].removeprefix("Patient/")
    try:
        patient = orjson.loads(records.read("Patient", patient_id).content or b"{}")
        practice_ref = patient["generalPractitioner"][0]["reference"].removeprefix("Organization/")
        practice = orjson.loads(records.read("Organization", practice_ref).content or b"{}")
    except (FhirError, KeyError, IndexError):
        return []
    ods = next((i["value"] for i in practice.get("identifier", []) if i.get("system") == ODS), None)
    if ods is None:
        return []
    name = patient.get("name", [{}])[0]
    who = " ".join([*name.get("given", []), name.get("family", "")]).strip()
    users = UserDirectory.on(engine)
    sign_ins = [
        DemoSignIn(
            "clinician",
            _account(users, CLINICIAN, "clinician", organisation=ods),
            "",
            f"a GP at {practice.get('name', ods)} ({ods})",
        ),
        DemoSignIn(
            "patient",
            _account(users, PATIENT, "patient", patient_id=patient_id),
            "",
            f"{who}, registered there",
        ),
    ]
    out = []
    for sign_in in sign_ins:
        password = secrets.token_urlsafe(12)
        users.set_password(sign_in.username, password)
        out.append(DemoSignIn(sign_in.role, sign_in.username, password, sign_in.about))
    return out


def _account(
    users: UserDirectory,
    username: str,
    role: str,
    *,
    organisation: str | None = None,
    patient_id: str | None = None,
) -> str:
    """Return the username of the demo account, made if it is not there (or not as wanted)."""
    existing = users.by_username(username)
    if existing is not None and (
        existing.organisation == organisation and existing.patient_id == patient_id
    ):
        return username
    if existing is not None:
        username = f"{username}-{secrets.token_hex(2)}"
    users.add(
        username,
        role,
        password=secrets.token_urlsafe(16),
        organisation=organisation,
        patient_id=patient_id,
        display_name=f"Demo {role}",
    )
    return username
