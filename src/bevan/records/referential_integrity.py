"""Referential integrity: a reference to a resource on this server must resolve, and a
resource others still reference is not deleted from under them.

Every write in a transaction is checked at the transaction's end, in one lookup for all
its references: an entry may refer to one written after it, and a Bundle may delete a
resource together with everything that points at it. Single writes are checked as they
are made. An operator loading partial data turns the checks off
(BEVAN_REFERENTIAL_INTEGRITY=off).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from bevan.fhir.errors import BusinessRuleViolation, Conflict, Issue
from bevan.fhir.references import LiteralReference
from bevan.store.writing import WriteSession


@dataclass(frozen=True)
class Reference:
    """One reference made by a write: who made it, where (FHIRPath), to what."""

    source: tuple[str, str]
    path: str
    text: str
    target: LiteralReference


@dataclass
class PendingChecks:
    """What a transaction's writes ask to be checked before it commits."""

    references: list[Reference] = field(default_factory=list)
    deleted: list[tuple[str, str]] = field(default_factory=list)


UNRESOLVED = "does not exist on this server"


def only_unresolved_references(issues: Iterable[Issue]) -> bool:
    """Return True if every issue is a reference to a resource not (yet) stored: what a
    load may try again once the rest of its files are in."""
    issues = list(issues)
    return bool(issues) and all(
        i.code == "not-found" and UNRESOLVED in i.diagnostics for i in issues
    )


def check_references(
    session: WriteSession,
    references: list[Reference],
    where: Callable[[tuple[str, str]], str | None] = lambda source: None,
) -> None:
    """Refuse (422) if any reference names a resource that does not exist here now.

    where(source) gives the place of a source resource's writing (a Bundle entry) that
    each issue's FHIRPath is put under, or None to leave it as it is.
    """
    if not references:
        return
    live = session.live_keys((r.target.resource_type, r.target.id) for r in references)
    issues = []
    for reference in references:
        if (reference.target.resource_type, reference.target.id) in live:
            continue
        issue = Issue(
            f"{reference.path} refers to {reference.text!r}, which {UNRESOLVED} (or was "
            "deleted); create it first, or refer to it in the same transaction",
            code="not-found",
            expression=(reference.path,),
        )
        prefix = where(reference.source)
        issues.append(issue.at(prefix) if prefix else issue)
    if issues:
        raise BusinessRuleViolation(*issues)


def check_deletes(
    session: WriteSession,
    deleted: list[tuple[str, str]],
    where: Callable[[tuple[str, str]], str | None] = lambda source: None,
) -> None:
    """Refuse (409) deleting a resource that current resources still reference.

    Says how many refer to it, never which: the caller may not be allowed to see them.
    """
    issues = []
    for resource_type, id in deleted:
        count = len(session.referrers(resource_type, id))
        if not count:
            continue
        who = "1 other resource refers" if count == 1 else f"{count} other resources refer"
        prefix = where((resource_type, id))
        issues.append(
            Issue(
                f"{resource_type}/{id} cannot be deleted: {who} to it. Change or delete "
                "them first; a system account may delete them with it (_cascade=delete)",
                code="conflict",
                expression=(prefix or resource_type,),
            )
        )
    if issues:
        raise Conflict(*issues)
