"""Who may see and change what: roles, SMART scopes, legitimate relationships,
break-glass and sensitive records. Every FHIR interaction asks this module first.

- system accounts act for the service: everything their scopes allow.
- clinicians and nurses open a patient's record only with a legitimate relationship
  (the patient is registered at, referred to, booked with, under the care team or the
  episode of care of the user's organisation) or by breaking the glass, which grants
  four hours on that one patient and queues the grant for a privacy officer's review.
- receptionists see demographics and bookings of related patients, not clinical records.
- patients see only their own compartment and write only what the patient app allows.
- devices write readings for the patient they are linked to.
- analysts and privacy officers get no patient data through the clinical API; analysts
  run population views (SQL on FHIR) over the stored record, read-only, without
  restricted records; patients and devices may not.
- restricted (R) and very restricted (V) records need a role that permits them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from bevan.fhir.dates import format_instant, now_instant
from bevan.fhir.errors import Forbidden, Issue
from bevan.fhir.patient_references import holds_patient_data
from bevan.fhir.search import (
    AnyOf,
    Chain,
    Criterion,
    Has,
    IdMatch,
    ReferenceMatch,
    ReferenceValue,
    Restriction,
    SearchQuery,
    TokenMatch,
    TokenValue,
    parse_criterion,
    parse_search,
)
from bevan.fhir.search_parameters import compartment_parameters, in_patient_compartment
from bevan.security.booking_rights import check_patient_booking, patient_slot_restrictions
from bevan.security.patient_writes import check_device_write, check_patient_write
from bevan.security.record_patients import record_patients
from bevan.security.scopes import parse_scopes, require_scope
from bevan.security.tokens import Principal
from bevan.security.unconfirmed_relationships import (
    RELATIONSHIP_TYPES,
    check_written_under_break_glass,
    confirmed_only,
)

CONFIDENTIALITY = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
ODS = "https://fhir.nhs.uk/Id/ods-organization-code"
BREAK_GLASS_HOURS = 4
RELATIONSHIP_CACHE_SECONDS = 30.0

CLINICAL_ROLES = frozenset({"clinician", "nurse"})
# Which confidentiality codes each role may see (absent codes: anyone with access).
SENSITIVE_ROLES = {"R": frozenset({"clinician", "system"}), "V": frozenset({"system"})}
# What receptionists may touch: identity and bookings.
RECEPTION_TYPES = frozenset(
    {
        "Patient",
        "Appointment",
        "AppointmentResponse",
        "Slot",
        "Schedule",
        "RelatedPerson",
        "Coverage",
    }
)
# What the patient app may write about its own patient, and devices for theirs.
PATIENT_WRITES = {
    "Observation": {"create"},
    "Appointment": {"create", "update", "patch"},
    "Patient": {"update", "patch"},
    # Answering a slot offered from a waiting list (booking_rights).
    "Task": {"update", "patch"},
}
DEVICE_WRITES = {"Observation": {"create"}}
# Types outside the Patient compartment that clinicians may still write, for their patients.
CLINICAL_WRITES = frozenset({"Task"})
NO_PATIENT_DATA = frozenset({"analyst", "privacy-officer"})
# Search parameters naming the patient of types outside the Patient compartment that
# still carry patient data (Binary and Bundle have none: their matches are filtered).
PATIENT_PARAMETERS = {"Task": ("patient",)}
# Types whose search no criterion can keep to the caller's patients: only a system
# account searches them (a count would otherwise include what others may not see).
UNRESTRICTED_SEARCH_TYPES = frozenset({"Binary", "Bundle"})
PATIENT_EDITABLE = frozenset({"telecom", "address", "contact", "meta", "text"})


@dataclass
class AccessContext:
    """One request's caller, and what access was used (for the audit entry)."""

    principal: Principal
    break_glass_reason: str | None = None
    broke_glass_for: set[str] = field(default_factory=set)
    patients: set[str] = field(default_factory=set)
    # The one patient this request broke the glass for: a reason opens one record, so
    # one request cannot sweep up many patients under a single emergency.
    opened_glass_for: str | None = None
    # What a successful answer held, for its audit entry (a view's name and row count).
    summary: str | None = None

    @property
    def role(self) -> str:
        return self.principal.role


class AccessPolicy:
    """Decides each interaction; built once per app over the record and the grants."""

    def __init__(self, records: Any, break_glass: Any) -> None:
        self.records = records  # RecordService
        self.break_glass = break_glass  # BreakGlassLedger
        self._cache: dict[tuple[str, str], tuple[float, bool]] = {}
        self._org_cache: dict[str, tuple[float, tuple[str, ...]]] = {}
        self._lock = threading.Lock()

    # --- type level -------------------------------------------------------------------------

    def check_type(self, context: AccessContext, resource_type: str, interaction: str) -> None:
        """Refuse an interaction the role or the token's scopes never allow on this type."""
        principal = context.principal
        require_scope(parse_scopes(principal.scope), resource_type, interaction)
        role = principal.role
        if role == "system":
            return
        patient_data = in_patient_compartment(resource_type)
        writing = interaction in ("create", "update", "patch", "delete")
        if role in NO_PATIENT_DATA and holds_patient_data(resource_type):
            raise _forbidden(f"a {role} has no access to patient records through the clinical API")
        if (
            role == "receptionist"
            and holds_patient_data(resource_type)
            and resource_type not in RECEPTION_TYPES
        ):
            raise _forbidden(f"a receptionist may not see {resource_type} records")
        if (
            role == "patient"
            and writing
            and interaction not in PATIENT_WRITES.get(resource_type, ())
        ):
            raise _forbidden(f"the patient app may not {interaction} {resource_type} resources")
        if role == "device" and (
            writing and interaction not in DEVICE_WRITES.get(resource_type, ())
        ):
            raise _forbidden(f"a device may not {interaction} {resource_type} resources")
        if role == "device" and not writing:
            raise _forbidden("a device may only send readings")
        # Clinicians act on the Tasks raised about their patients (a virtual ward's
        # escalations): judged, like any record, by the patients each one names.
        clinical_task = resource_type in CLINICAL_WRITES and role in CLINICAL_ROLES
        patient_answer = role == "patient" and interaction in PATIENT_WRITES.get(resource_type, ())
        if (
            writing
            and not patient_data
            and not clinical_task
            and not patient_answer
            and role not in ("system",)
        ):
            raise _forbidden(f"only system accounts change {resource_type} resources")
        if interaction == "search-type" and resource_type in UNRESTRICTED_SEARCH_TYPES:
            raise _forbidden(
                f"searching {resource_type} resources is for system accounts; read one by its id"
            )
        if interaction in ("history-type", "history-system"):
            raise _forbidden("history across many records is for system accounts")

    # --- population analytics ----------------------------------------------------------------

    def check_analytics(self, context: AccessContext, resource_type: str) -> None:
        """Refuse a view over the stored record of resource_type to a caller who may not
        run one: patients and devices never; analysts for any type whose search their
        scopes allow (a population, read-only); everyone else as for a search of it."""
        principal = context.principal
        require_scope(parse_scopes(principal.scope), resource_type, "search-type")
        role = principal.role
        if role in ("patient", "device"):
            raise _forbidden(
                "views over the stored record are population analytics; the patient app "
                "and devices may not run them (send the resources inline instead)"
            )
        if role == "analyst":
            if resource_type in UNRESTRICTED_SEARCH_TYPES:
                raise _forbidden(f"{resource_type} resources are read by system accounts only")
            return
        self.check_type(context, resource_type, "search-type")

    def analytics_restrictions(
        self, context: AccessContext, resource_type: str
    ) -> tuple[Criterion, ...]:
        """Return the criteria keeping a view over the stored record to what the caller
        may analyse: for an analyst, every record but the restricted ones; for anyone
        else, what their search would find."""
        if context.principal.role == "analyst":
            return _hidden_labels(context.principal.role)
        return self.search_restrictions(context, resource_type)

    def may_analyse(self, context: AccessContext, resource: dict[str, Any]) -> bool:
        """Return True if a view over the stored record may read this resource."""
        role = context.principal.role
        if role == "analyst":
            return not any(
                role not in SENSITIVE_ROLES.get(code, (role,))
                for code in _confidentiality(resource)
            )
        return self.may_see(context, resource)

    # --- one resource -----------------------------------------------------------------------

    def check_resource(
        self, context: AccessContext, resource: dict[str, Any], interaction: str
    ) -> None:
        """Refuse access to this resource (its patients, its sensitivity) if not allowed:
        every patient it names, anywhere and however, must be one the caller may see."""
        role = context.principal.role
        labels = _confidentiality(resource)
        for code in labels:
            allowed = SENSITIVE_ROLES.get(code)
            if allowed is not None and role not in allowed:
                raise _forbidden(
                    f"this record is marked {code} (restricted) and a {role} may not open it"
                )
        named = record_patients(self.records, resource)
        if role == "system":
            context.patients |= set(named.ids)
            return
        if named.unknown:
            raise _forbidden("this record names a patient you may not see")
        if not named.ids:
            if holds_patient_data(resource["resourceType"]) and role in ("patient", "device"):
                raise _forbidden("this record belongs to no patient you may see")
            return
        context.patients |= set(named.ids)
        # Only a Patient is named in the refusal: anything else would tell the caller
        # whose record a resource they may not see belongs to.
        shown = resource["resourceType"] == "Patient"
        for patient_id in sorted(named.ids):
            self.check_patient(context, patient_id, shown=shown)

    def check_patient(self, context: AccessContext, patient_id: str, *, shown: bool = True) -> None:
        """Refuse unless the caller may open this patient's record (break-glass may grant it);
        the refusal names the patient only when shown."""
        principal = context.principal
        role = principal.role
        if role == "system":
            return
        if role in ("patient", "device"):
            if principal.patient_id != patient_id:
                raise _forbidden("you may see only your own record")
            return
        if role in NO_PATIENT_DATA:
            raise _forbidden(f"a {role} has no access to patient records through the clinical API")
        if self.related(principal.organisation, patient_id):
            return
        if patient_id in self._granted(principal):
            context.broke_glass_for.add(patient_id)
            return
        if context.break_glass_reason and role in CLINICAL_ROLES:
            self.open_break_glass(context, patient_id)
            return
        hint = (
            " If this is an emergency, repeat the request with the header "
            "X-Bevan-Break-Glass: <your reason>; the access will be reviewed."
            if role in CLINICAL_ROLES
            else ""
        )
        whom = f"patient {patient_id}" if shown else "the patient this record belongs to"
        raise _forbidden(
            f"you have no legitimate relationship with {whom}: they are not registered "
            f"with, referred to, booked with or under the care of your organisation.{hint}"
        )

    def _granted(self, principal: Principal) -> frozenset[str]:
        """Return the patients this user, acting for this organisation, holds grants on."""
        granted: frozenset[str] = self.break_glass.active_patients(
            principal.subject, now_instant(), principal.organisation
        )
        return granted

    def open_break_glass(self, context: AccessContext, patient_id: str) -> None:
        """Grant the caller this one patient for BREAK_GLASS_HOURS, or refuse a second
        patient in the same request (the first grant stands)."""
        reason = (context.break_glass_reason or "").strip()
        if len(reason) < 5:
            raise _forbidden("breaking the glass needs a reason (at least a few words)")
        opened = context.opened_glass_for
        if opened is not None and opened != patient_id:
            raise _forbidden(
                f"breaking the glass opens one patient's record per request, and this request "
                f"has opened patient {opened}'s; ask for patient {patient_id} in a request of "
                "its own, with its own reason"
            )
        now = datetime.now(UTC)
        self.break_glass.grant(
            context.principal.subject,
            patient_id,
            reason,
            format_instant(now),
            format_instant(now + timedelta(hours=BREAK_GLASS_HOURS)),
            organisation=context.principal.organisation,
        )
        context.broke_glass_for.add(patient_id)
        context.opened_glass_for = patient_id

    def check_edit(
        self, context: AccessContext, old: dict[str, Any] | None, new: dict[str, Any] | None
    ) -> None:
        """Refuse a patient's change to their own Patient beyond their contact details,
        what patients and devices may not claim (see `patient_writes`), and mark (or
        refuse) what a user under break-glass writes that would make a relationship
        (see `unconfirmed_relationships`)."""
        if new is not None and context.role in CLINICAL_ROLES:
            reached_by_glass = record_patients(self.records, new).ids & context.broke_glass_for
            check_written_under_break_glass(old, new, bool(reached_by_glass))
        if new is not None and context.role == "patient":
            check_patient_write(context.principal, old, new)
            check_patient_booking(self.records, old, new)
        if new is not None and context.role == "device":
            check_device_write(context.principal, old, new)
        written = new or old
        if written is not None and written.get("resourceType") in RELATIONSHIP_TYPES:
            # A relationship made, confirmed or ended counts at once in this process.
            self.forget_relationships(record_patients(self.records, written).ids)
        if context.principal.role != "patient" or old is None or new is None:
            return
        if new.get("resourceType") != "Patient":
            return
        changed = {k for k in set(old) | set(new) if old.get(k) != new.get(k)} - PATIENT_EDITABLE
        if changed:
            raise _forbidden(
                "the patient app may change only contact details (telecom, address, contact), "
                f"not {', '.join(sorted(changed))}"
            )

    # --- relationships ----------------------------------------------------------------------

    def organisation_ids(self, ods_code: str | None) -> tuple[str, ...]:
        """Return the ids of the Organization resources carrying this ODS code."""
        if not ods_code:
            return ()
        now = time.monotonic()
        with self._lock:
            cached = self._org_cache.get(ods_code)
        if cached and now - cached[0] < RELATIONSHIP_CACHE_SECONDS:
            return cached[1]
        page = self.records.search(
            parse_search(
                "Organization",
                [("identifier", f"{ODS}|{ods_code}"), ("_count", "50"), ("_total", "none")],
            )
        )
        ids = tuple(v.id for v in page.matches)
        with self._lock:
            self._org_cache[ods_code] = (now, ids)
        return ids

    def relationship_criterion(self, ods_code: str | None) -> Criterion | None:
        """Return the criterion selecting the Patients related to an organisation."""
        orgs = self.organisation_ids(ods_code)
        if not orgs:
            return None
        refs = ",".join(f"Organization/{o}" for o in orgs)
        # Relationships written under break-glass count only once confirmed.
        confirmed = (confirmed_only(),)
        return AnyOf(
            (
                parse_criterion("Patient", "general-practitioner", refs),
                parse_criterion("Patient", "organization", refs),
                *(
                    Has(source, "patient", parse_criterion(source, param, refs), limits=confirmed)
                    for source, param in (
                        ("EpisodeOfCare", "organization"),
                        ("CareTeam", "participant"),
                        ("ServiceRequest", "performer"),
                        ("Appointment", "actor"),
                    )
                ),
            )
        )

    def forget_relationships(self, patient_ids: Iterable[str]) -> None:
        """Drop cached answers about these patients' relationships."""
        patients = set(patient_ids)
        if not patients:
            return
        with self._lock:
            for key in [k for k in self._cache if k[1] in patients]:
                del self._cache[key]

    def related(self, ods_code: str | None, patient_id: str) -> bool:
        """Return True if the patient has a legitimate relationship with the organisation."""
        if not ods_code:
            return False
        key = (ods_code, patient_id)
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(key)
        if cached and now - cached[0] < RELATIONSHIP_CACHE_SECONDS:
            return cached[1]
        criterion = self.relationship_criterion(ods_code)
        answer = False
        if criterion is not None:
            query = SearchQuery(
                "Patient", (IdMatch((patient_id,)), criterion), count=0, total="accurate"
            )
            answer = bool(self.records.search(query).total)
        with self._lock:
            self._cache[key] = (now, answer)
            if len(self._cache) > 50_000:
                self._cache.clear()
        return answer

    # --- searches ---------------------------------------------------------------------------

    def search_restrictions(
        self, context: AccessContext, resource_type: str
    ) -> tuple[Criterion, ...]:
        """Return the criteria that keep a search to what the caller may see, so results,
        totals and pages never include anything else."""
        principal = context.principal
        role = principal.role
        out: list[Criterion] = list(_hidden_labels(role))
        if role == "patient" and resource_type == "Slot":
            out.extend(patient_slot_restrictions())
        if role == "system" or not holds_patient_data(resource_type):
            return tuple(out)
        params = _patient_parameters(resource_type)
        if resource_type != "Patient" and not params:
            return tuple(out)  # no parameter names the patient: matches are filtered one by one
        if role in ("patient", "device"):
            out.append(Restriction(_compartment(resource_type, principal.patient_id or "", None)))
            return tuple(out)
        relation = self.relationship_criterion(principal.organisation)
        granted = self._granted(principal)
        alternatives: list[Criterion] = []
        if resource_type == "Patient":
            if relation is not None:
                alternatives.append(relation)
            if granted:
                alternatives.append(IdMatch(tuple(sorted(granted))))
        else:
            for param in params:
                if relation is not None:
                    alternatives.append(Chain(param, ("Patient",), relation))
                if granted:
                    references = tuple(
                        ReferenceValue(id=p, resource_type="Patient") for p in sorted(granted)
                    )
                    alternatives.append(ReferenceMatch(param, references))
        if not alternatives:
            alternatives.append(IdMatch(("-",)))  # nothing: no relationship at all
        out.append(Restriction(AnyOf(tuple(alternatives))))
        return tuple(out)

    @staticmethod
    def under_current_labels(stored: Any, current: Any) -> dict[str, Any]:
        """Return a stored version's content carrying the current version's
        confidentiality labels as well as its own."""
        resource: dict[str, Any] = orjson.loads(stored.content)
        if current is None or current.content is None or current is stored:
            return resource
        now = (orjson.loads(current.content).get("meta") or {}).get("security") or []
        labels = [label for label in now if label.get("system") == CONFIDENTIALITY]
        if labels:
            meta = dict(resource.get("meta") or {})
            meta["security"] = [*(meta.get("security") or []), *labels]
            resource["meta"] = meta
        return resource

    def may_see(self, context: AccessContext, resource: dict[str, Any]) -> bool:
        """Return True if the caller may read this resource: its type (role and scopes),
        its patients and its sensitivity (included resources, $everything, history)."""
        try:
            self.check_type(context, resource["resourceType"], "read")
            self.check_resource(_without_break_glass(context), resource, "read")
        except Forbidden:
            return False
        return True


def _hidden_labels(role: str) -> tuple[Criterion, ...]:
    """Return the criterion leaving out records labelled too sensitive for role."""
    hidden = [code for code, roles in SENSITIVE_ROLES.items() if role not in roles]
    if not hidden:
        return ()
    values = tuple(TokenValue(code, CONFIDENTIALITY) for code in hidden)
    return (Restriction(TokenMatch("_security", values, "not")),)


def _compartment(resource_type: str, patient_id: str, relation: Criterion | None) -> Criterion:
    if resource_type == "Patient":
        return IdMatch((patient_id,))
    params = _patient_parameters(resource_type)
    reference = (ReferenceValue(id=patient_id, resource_type="Patient"),)
    return AnyOf(tuple(ReferenceMatch(p, reference) for p in params)) if params else IdMatch(("-",))


def _patient_parameters(resource_type: str) -> tuple[str, ...]:
    found = compartment_parameters("Patient").get(resource_type)
    return found if found else PATIENT_PARAMETERS.get(resource_type, ())


def _without_break_glass(context: AccessContext) -> AccessContext:
    # Included resources never open new break-glass grants on their own.
    return AccessContext(context.principal, None, context.broke_glass_for, context.patients)


def _confidentiality(resource: dict[str, Any]) -> set[str]:
    labels = (resource.get("meta") or {}).get("security") or []
    return {label.get("code") for label in labels if label.get("system") == CONFIDENTIALITY}


def _forbidden(text: str) -> Forbidden:
    return Forbidden(Issue(text, code="forbidden"))
