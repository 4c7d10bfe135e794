"""Subscription over HTTP: create, read, list, replace and remove one's own subscriptions
(monitoring/subscriptions.py says what they are); the websocket they are bound to is
api/subscription_websocket.py.

A subscription belongs to the user whose token created it: others are told it is not
known (404), so nobody learns another's criteria or endpoint. A system account whose
scopes allow everything sees and changes them all.
"""

from __future__ import annotations

from starlette.responses import Response

from bevan.api.context import FhirRequest, json_body
from bevan.api.negotiation import check_body_type
from bevan.api.responses import fhir_json, version_headers
from bevan.fhir.bundles import bundle, entry_for
from bevan.fhir.errors import InvalidRequest, Issue, NotFound
from bevan.fhir.ids import is_valid_id
from bevan.monitoring.delivery import SubscriptionDelivery
from bevan.monitoring.subscriptions import SubscriptionService
from bevan.records.bundles import parse_etag
from bevan.security.subscriber_access import (
    check_subscriber,
    manages_every_subscription,
    may_manage,
    owner_of,
)
from bevan.security.tokens import Principal
from bevan.store.subscriptions import StoredSubscription
from bevan.store.versions import StoredVersion


def _service(fhir: FhirRequest) -> SubscriptionService:
    service = fhir.services.subscriptions
    assert service is not None
    return service


def _changed(fhir: FhirRequest) -> None:
    delivery: SubscriptionDelivery | None = fhir.services.delivery
    if delivery is not None:
        delivery.changed()


def _caller(fhir: FhirRequest, interaction: str) -> Principal:
    principal = fhir.caller.principal
    check_subscriber(principal, interaction)
    return principal


def _owned(fhir: FhirRequest, principal: Principal) -> StoredSubscription:
    """Return the subscription the path names, if the caller may manage it; NotFound
    otherwise, as if it did not exist."""
    id = fhir.path("id")
    stored = _service(fhir).get(id)
    if not may_manage(principal, stored.owner):
        raise NotFound(f"Subscription/{id} is not known")
    return stored


def _version(stored: StoredSubscription) -> StoredVersion:
    return StoredVersion(
        "Subscription", stored.id, stored.version_id, stored.last_updated, False, stored.content, 0
    )


def _answer(fhir: FhirRequest, stored: StoredSubscription, status: int) -> Response:
    headers = version_headers(_version(stored), fhir.base_url, location=status == 201)
    return fhir_json(stored.content, status, pretty=fhir.pretty, headers=headers)


def create_subscription(fhir: FhirRequest) -> Response:
    """POST /Subscription: a new subscription of the caller's, status requested."""
    principal = _caller(fhir, "create")
    check_body_type(fhir.request)
    stored = _service(fhir).create(json_body(fhir), owner_of(principal))
    _changed(fhir)
    return _answer(fhir, stored, 201)


def read_subscription(fhir: FhirRequest) -> Response:
    """GET /Subscription/[id]: one of the caller's subscriptions, with its status."""
    principal = _caller(fhir, "read")
    return _answer(fhir, _owned(fhir, principal), 200)


def search_subscriptions(fhir: FhirRequest) -> Response:
    """GET /Subscription: the caller's subscriptions (every one, for a system account)."""
    principal = _caller(fhir, "search-type")
    owner = None if manages_every_subscription(principal) else principal.subject
    found = _service(fhir).listed(owner)
    entries = [
        entry_for(f"{fhir.base_url}/Subscription/{s.id}", s.content, search={"mode": "match"})
        for s in found
    ]
    links = [("self", f"{fhir.base_url}/Subscription")]
    return fhir_json(
        bundle("searchset", entries, total=len(found), links=links), pretty=fhir.pretty
    )


def update_subscription(fhir: FhirRequest) -> Response:
    """PUT /Subscription/[id]: replace one of the caller's subscriptions (it is asked
    for again, status requested, and needs a new handshake), or create it with this id."""
    principal = _caller(fhir, "update")
    check_body_type(fhir.request)
    id = fhir.path("id")
    if not is_valid_id(id):
        raise InvalidRequest(
            Issue(
                f"{id!r} is not a valid id: 1-64 letters, digits, '-' or '.'",
                expression=("Subscription.id",),
            )
        )
    resource = json_body(fhir)
    if isinstance(resource, dict) and resource.get("id") not in (None, id):
        raise InvalidRequest(
            Issue(
                f"the body's id {resource.get('id')!r} is not the id in the URL ({id})",
                expression=("Subscription.id",),
            )
        )
    if _service(fhir).table.get(id) is None:
        check_subscriber(principal, "create")
        stored = _service(fhir).create(resource, owner_of(principal), id)
        _changed(fhir)
        return _answer(fhir, stored, 201)
    current = _owned(fhir, principal)
    header = fhir.request.headers.get("if-match")
    stored = _service(fhir).update(
        current.id,
        resource,
        owner_of(principal),
        if_match=parse_etag(header) if header else None,
    )
    _changed(fhir)
    return _answer(fhir, stored, 200)


def delete_subscription(fhir: FhirRequest) -> Response:
    """DELETE /Subscription/[id]: stop and remove one of the caller's subscriptions. As
    for any resource, deleting one that does not exist (or is another's, which to the
    caller is the same) answers 204 and changes nothing."""
    principal = _caller(fhir, "delete")
    id = fhir.path("id")
    stored = _service(fhir).table.get(id) if is_valid_id(id) else None
    if stored is not None and may_manage(principal, stored.owner):
        _service(fhir).delete(id)
        _changed(fhir)
    return Response(status_code=204)
