"""Audit entries for what the server's own services write, acting as a named system
principal (the virtual ward's overdue look, an offer ended when its window passed), so
their writes are audited like anyone's."""

from __future__ import annotations

from collections.abc import Iterable

from bevan.fhir.dates import now_instant
from bevan.security.audit import AuditRecord, action_for

SCHEDULER = "bevan-scheduler"

_STATUS = {"create": 201, "update": 200}


def service_write(
    subject: str,
    interaction: str,
    resources: tuple[str, ...],
    patient_id: str | None,
    outcome_text: str,
    source: str = "",
) -> AuditRecord:
    """Return the audit entry of a create or update a service made as subject."""
    return AuditRecord(
        recorded=now_instant(),
        user_id=subject,
        role="system",
        organisation=None,
        client_address=None,
        action=action_for(interaction),
        interaction=interaction,
        outcome="0",
        outcome_text=outcome_text,
        http_status=_STATUS[interaction],
        resources=resources,
        patient_id=patient_id,
        source=source,
    )


def service_update(
    subject: str,
    resources: tuple[str, ...],
    patient_id: str | None,
    outcome_text: str,
    source: str = "",
) -> AuditRecord:
    """Return the audit entry of an update a service made as subject."""
    return service_write(subject, "update", resources, patient_id, outcome_text, source)


def system_write_records(
    principal: str, writes: Iterable[tuple[str, str | None]], source: str, why: str
) -> list[AuditRecord]:
    """Return one audit entry per (resource "Type/id", patient id) a principal created."""
    return [
        service_write(principal, "create", (resource,), patient, why, source)
        for resource, patient in writes
    ]
