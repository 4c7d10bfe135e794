"""What a subscription may deliver: judged, at delivery time, exactly as a read by the
user whose token created it, and audited as that user's read.

The subscription's owner is rebuilt as the Principal their token carried (role,
scopes, organisation, patient); its searches are limited as theirs would be
(`limited_search`), and each match must pass the same decision as a read
(`AccessPolicy.may_see`: type and scopes, patients, sensitivity, never break-glass).
An owner whose account has been disabled, or whose token has been revoked, is delivered
nothing.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from bevan.fhir.dates import now_instant
from bevan.fhir.errors import Forbidden, Issue
from bevan.fhir.patient_references import patients_named
from bevan.fhir.search import SearchQuery
from bevan.monitoring.delivery import Disclosure
from bevan.security.access import AccessContext, AccessPolicy
from bevan.security.audit import AuditRecord
from bevan.security.scopes import parse_scopes, require_scope
from bevan.security.search_limits import limited_search
from bevan.security.tokens import Principal
from bevan.security.trail import AuditTrail
from bevan.store.subscriptions import SubscriptionOwner

# Roles that never subscribe: a device only sends readings.
NON_SUBSCRIBERS = frozenset({"device"})
UNLIMITED_SCOPES = frozenset({"system/*.*", "system/*.cruds", "system/*.cruds*"})


def check_subscriber(principal: Principal, interaction: str) -> None:
    """Refuse (403) a caller whose role or scopes do not allow interaction on their
    Subscriptions (any user may subscribe, a device may not; the scopes must name
    Subscription, as for any resource type)."""
    if principal.role in NON_SUBSCRIBERS:
        raise Forbidden(Issue("a device may only send readings", code="forbidden"))
    require_scope(parse_scopes(principal.scope), "Subscription", interaction)


def manages_every_subscription(principal: Principal) -> bool:
    """Return True for a system account whose scopes allow everything: it sees and
    changes every subscription; anyone else sees and changes only their own."""
    return principal.role == "system" and bool(UNLIMITED_SCOPES & set(principal.scope.split()))


def may_manage(principal: Principal, owner: SubscriptionOwner) -> bool:
    """Return True if principal may see and change a subscription owner created."""
    return owner.subject == principal.subject or manages_every_subscription(principal)


def principal_of(owner: SubscriptionOwner) -> Principal:
    """Return the principal a subscription acts as: its owner's, without expiry."""
    return Principal(
        owner.subject,
        owner.role,
        owner.scope,
        math.inf,
        organisation=owner.organisation,
        patient_id=owner.patient_id,
        token_id=owner.token_id,
    )


def owner_of(principal: Principal) -> SubscriptionOwner:
    """Return the owner a subscription created by principal records."""
    return SubscriptionOwner(
        principal.subject,
        principal.role,
        principal.scope,
        principal.organisation,
        principal.patient_id,
        principal.token_id,
    )


class SubscriberAccess:
    """The access decision and the audit trail, as subscription delivery asks them."""

    def __init__(
        self,
        policy: AccessPolicy,
        trail: AuditTrail,
        *,
        disabled: Callable[[str], bool],
        revoked: Callable[[str], bool],
        source: str,
    ) -> None:
        self.policy = policy
        self.trail = trail
        self.disabled = disabled
        self.revoked = revoked
        self.source = source

    def refusal(self, owner: SubscriptionOwner) -> str | None:
        """Return why nothing may be delivered for owner any more, or None."""
        if self.disabled(owner.subject):
            return f"the account of {owner.subject}, who created this subscription, is disabled"
        if owner.token_id and self.revoked(owner.token_id):
            return "the token that created this subscription has been revoked"
        return None

    def visible(self, owner: SubscriptionOwner, query: SearchQuery) -> SearchQuery:
        """Return query as owner may run it (Forbidden if they may not search its type)."""
        return limited_search(self.policy, AccessContext(principal_of(owner)), query)

    def may_read(self, owner: SubscriptionOwner, resource: dict[str, Any]) -> bool:
        """Return True if owner may read resource, as a read would decide."""
        return self.policy.may_see(AccessContext(principal_of(owner)), resource)

    def disclosing(self, disclosures: list[Disclosure]) -> None:
        """Audit, in one transaction, each resource about to be sent to a subscriber as
        a read by the subscription's owner (before it is sent, as an answer is)."""
        now = now_instant()
        records = []
        for disclosure in disclosures:
            owner, resource = disclosure.owner, disclosure.resource
            patients = sorted(patients_named(resource, self.source).ids)
            one = patients[0] if len(patients) == 1 else None
            records.append(
                AuditRecord(
                    recorded=now,
                    user_id=owner.subject,
                    role=owner.role,
                    organisation=owner.organisation,
                    client_address=None,
                    action="R",
                    interaction="read",
                    outcome="0",
                    outcome_text=(
                        f"sent by {disclosure.channel} for Subscription/"
                        f"{disclosure.subscription_id}"
                    ),
                    http_status=200,
                    resources=(f"{resource['resourceType']}/{resource['id']}",),
                    patient_id=one,
                    other_patients=tuple(patients) if one is None else (),
                    source=self.source,
                    method="PUT" if disclosure.channel == "rest-hook" else "WEBSOCKET",
                    path=disclosure.where,
                )
            )
        self.trail.record_sync(records)
