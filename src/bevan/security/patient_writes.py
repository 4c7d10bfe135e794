"""What the patient app and home devices may say in what they write.

`AccessPolicy.check_type` decides which types a patient or device may write at all;
these rules decide what such a write may claim, because a clinician reading the record
trusts what it says about where a result came from:

- A patient records only what a patient can measure or report at home: an Observation's
  categories are `PATIENT_CATEGORIES` of the HL7 observation-category system (or none),
  and its performer is the patient themselves (or no one). A laboratory result
  "performed" by a practitioner is not theirs to write.
- Neither patients nor devices write narrative (`text`, which the web app would show
  as HTML), contained resources, or `meta.tag` / `meta.security` (labels that decide
  who sees a record, and whether a relationship is confirmed). An update may send back
  unchanged what is already there; any change is refused (422, with the FHIRPath).
- A device writes as itself, for its own patient: `Observation.device` is set to its
  own Device if absent and refused if it names another, and `Observation.subject` must
  be its patient.
"""

from __future__ import annotations

from typing import Any

from bevan.fhir.errors import BusinessRuleViolation, Forbidden, Issue
from bevan.security.tokens import Principal

OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
# Home readings and questionnaires: what a patient can measure or report themselves.
PATIENT_CATEGORIES = frozenset({"vital-signs", "survey", "activity"})
# Elements only staff and systems write: the server's and the record's own voice.
STAFF_ONLY = ("text", "contained")
STAFF_ONLY_META = ("tag", "security")


def check_patient_write(
    principal: Principal, old: dict[str, Any] | None, new: dict[str, Any]
) -> None:
    """Refuse what the patient app may not say in a write (see the module docstring)."""
    _refuse_staff_only_changes(principal.role, old, new)
    if new.get("resourceType") != "Observation":
        return
    for index, category in enumerate(new.get("category") or []):
        codings = (category.get("coding") or []) if isinstance(category, dict) else []
        for place, coding in enumerate(codings):
            if (
                coding.get("system") != OBSERVATION_CATEGORY
                or coding.get("code") not in PATIENT_CATEGORIES
            ):
                raise BusinessRuleViolation(
                    Issue(
                        "the patient app records home readings and questionnaires only "
                        f"(categories {', '.join(sorted(PATIENT_CATEGORIES))} of "
                        f"{OBSERVATION_CATEGORY}), not {coding.get('code')!r}",
                        code="business-rule",
                        expression=(f"Observation.category[{index}].coding[{place}]",),
                    )
                )
    _check_performer(new, principal.patient_id, "a patient")


def check_device_write(
    principal: Principal, old: dict[str, Any] | None, new: dict[str, Any]
) -> None:
    """Refuse what a device may not say in a write, and sign its readings with its own
    Device (in place) when they do not name one."""
    _refuse_staff_only_changes(principal.role, old, new)
    if new.get("resourceType") != "Observation":
        return
    own = f"Device/{principal.device_id}"
    device = new.get("device")
    if device is None:
        new["device"] = {"reference": own}
    elif not isinstance(device, dict) or device.get("reference") != own:
        raise Forbidden(
            Issue(
                f"a device sends readings as itself ({own}), not as another device",
                code="forbidden",
                expression=("Observation.device",),
            )
        )
    subject = (new.get("subject") or {}).get("reference")
    if subject != f"Patient/{principal.patient_id}":
        raise Forbidden(
            Issue(
                f"a device sends readings about its own patient (Patient/{principal.patient_id})",
                code="forbidden",
                expression=("Observation.subject",),
            )
        )
    _check_performer(new, principal.patient_id, "a device")


def _check_performer(new: dict[str, Any], patient_id: str | None, who: str) -> None:
    own = f"Patient/{patient_id}"
    for index, performer in enumerate(new.get("performer") or []):
        if not isinstance(performer, dict) or performer.get("reference") != own:
            raise BusinessRuleViolation(
                Issue(
                    f"{who} records readings performed by the patient ({own}) or by no one "
                    "named, not by anyone else",
                    code="business-rule",
                    expression=(f"Observation.performer[{index}]",),
                )
            )


def _refuse_staff_only_changes(role: str, old: dict[str, Any] | None, new: dict[str, Any]) -> None:
    resource_type = new.get("resourceType", "Resource")
    before = old or {}
    for name in STAFF_ONLY:
        if new.get(name) != before.get(name):
            raise BusinessRuleViolation(_staff_only(role, f"{resource_type}.{name}"))
    new_meta, old_meta = new.get("meta") or {}, before.get("meta") or {}
    for name in STAFF_ONLY_META:
        if (new_meta.get(name) or None) != (old_meta.get(name) or None):
            raise BusinessRuleViolation(_staff_only(role, f"{resource_type}.meta.{name}"))


def _staff_only(role: str, expression: str) -> Issue:
    who = "the patient app" if role == "patient" else "a device"
    return Issue(
        f"{who} may not write {expression.split('.', 1)[1]}: narrative, contained resources, "
        "tags and security labels are written by staff and the server",
        code="business-rule",
        expression=(expression,),
    )
