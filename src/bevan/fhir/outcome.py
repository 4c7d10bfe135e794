"""OperationOutcome resources built from Issues."""

from __future__ import annotations

from typing import Any

from bevan.fhir.errors import Issue


def operation_outcome(*issues: Issue) -> dict[str, Any]:
    """Return an OperationOutcome resource listing issues (at least one)."""
    if not issues:
        issues = (Issue("All OK", code="informational", severity="information"),)
    return {
        "resourceType": "OperationOutcome",
        "issue": [_issue_json(i) for i in issues],
    }


def _issue_json(issue: Issue) -> dict[str, Any]:
    out: dict[str, Any] = {
        "severity": issue.severity,
        "code": issue.code,
        "diagnostics": issue.diagnostics,
    }
    if issue.expression:
        out["expression"] = list(issue.expression)
    return out


def information(text: str) -> dict[str, Any]:
    """Return an OperationOutcome with one informational issue."""
    return operation_outcome(Issue(text, code="informational", severity="information"))
