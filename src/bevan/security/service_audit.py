"""Audit entries for what the server's own services do, acting as a named system
principal (an offer ended when its window passed), so their writes are audited like
anyone's."""

from __future__ import annotations

from bevan.fhir.dates import now_instant
from bevan.security.audit import AuditRecord

SCHEDULER = "bevan-scheduler"


def service_update(
    subject: str,
    resources: tuple[str, ...],
    patient_id: str | None,
    outcome_text: str,
    source: str = "",
) -> AuditRecord:
    """Return the audit entry of an update a service made as subject (a system principal)."""
    return AuditRecord(
        recorded=now_instant(),
        user_id=subject,
        role="system",
        organisation=None,
        client_address=None,
        action="U",
        interaction="update",
        outcome="0",
        outcome_text=outcome_text,
        http_status=200,
        resources=resources,
        patient_id=patient_id,
        source=source,
    )
