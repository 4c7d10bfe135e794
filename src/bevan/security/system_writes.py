"""Audit entries for what a service writes on its own, as a named system principal
(the virtual ward's overdue look, run by the app or by `bevan ward overdue`): each write
is recorded as a create by that principal, like anyone's."""

from __future__ import annotations

from collections.abc import Iterable

from bevan.fhir.dates import now_instant
from bevan.security.audit import AuditRecord, action_for


def system_write_records(
    principal: str, writes: Iterable[tuple[str, str | None]], source: str, why: str
) -> list[AuditRecord]:
    """Return one audit entry per (resource "Type/id", patient id) a principal created."""
    return [
        AuditRecord(
            recorded=now_instant(),
            user_id=principal,
            role="system",
            organisation=None,
            client_address=None,
            action=action_for("create"),
            interaction="create",
            outcome="0",
            outcome_text=why,
            http_status=201,
            resources=(resource,),
            patient_id=patient,
            source=source,
        )
        for resource, patient in writes
    ]
