"""R4 Subscriptions: a user's standing search, and where to tell them of its new matches.

A Subscription names a search (`criteria`, such as `Task?status=requested&priority=stat`)
and a channel: `rest-hook` to an endpoint (the full resource with payload
`application/fhir+json`, or only its id with no payload), or `websocket`. Each is kept
beside the record with its owner, the user whose token created it (store/subscriptions.py):
what it delivers is judged at delivery time as a read by that user (monitoring/delivery.py).

Status: a client creates a subscription `requested` (or `off`); the server makes it
`active` once the handshake succeeds (a rest-hook endpoint answered it, a websocket was
bound to it), and `error`, with the reason in `error`, when an endpoint keeps failing or
the owner may no longer read what it asks for. Asking for `requested` again (an update)
starts over; `active` and `error` are the server's to set.

Only endpoints an operator allowed are ever called: `BEVAN_SUBSCRIPTION_ENDPOINTS`, URL
prefixes matched at a path boundary (none by default, so no rest-hook is accepted).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlsplit

import orjson

from bevan.fhir.dates import now_instant
from bevan.fhir.errors import (
    BusinessRuleViolation,
    Conflict,
    InvalidRequest,
    Issue,
    MethodNotAllowed,
    NotFound,
    PreconditionFailed,
)
from bevan.fhir.ids import is_valid_id, new_id
from bevan.fhir.search import SearchQuery, parse_search
from bevan.fhir.validation import validate_resource
from bevan.store.subscriptions import StoredSubscription, SubscriptionOwner, SubscriptionTable

CHANNELS = ("rest-hook", "websocket")
FULL_PAYLOADS = ("application/fhir+json", "application/json")
# What a client may ask for; active and error are set by the server alone.
CLIENT_STATUSES = ("requested", "off")
LIVE_STATUSES = ("requested", "active")
# Parameters that shape a page, not which resources match: meaningless in criteria.
PAGE_PARAMETERS = frozenset(
    {"_count", "_sort", "_include", "_revinclude", "_summary", "_elements", "_total"}
)
ENDPOINTS_SETTING = "BEVAN_SUBSCRIPTION_ENDPOINTS"


@dataclass(frozen=True)
class Subscription:
    """A stored subscription, read for delivery."""

    id: str
    version_id: int
    status: str
    criteria: str
    query: SearchQuery  # the criteria, parsed
    channel: str  # rest-hook | websocket
    endpoint: str | None
    full_payload: bool  # False: id-only
    headers: tuple[tuple[str, str], ...]
    owner: SubscriptionOwner

    @property
    def resource_type(self) -> str:
        return self.query.resource_type

    @property
    def fingerprint(self) -> tuple[Any, ...]:
        """What a handshake vouches for: a change to any of it needs another."""
        return (self.criteria, self.channel, self.endpoint, self.headers)


def endpoint_allowed(endpoint: str, prefixes: Sequence[str]) -> bool:
    """Return True if endpoint is one of prefixes or lies under one at a path boundary
    (`https://hooks.example/ward` allows `https://hooks.example/ward/7`, not
    `https://hooks.example/wardrobe`)."""
    return any(
        endpoint == prefix or endpoint.startswith(prefix.rstrip("/") + "/") for prefix in prefixes
    )


def parse_criteria(criteria: Any, base_url: str | None = None) -> SearchQuery:
    """Return the search a Subscription's criteria names; InvalidRequest if it is not one."""
    where = ("Subscription.criteria",)
    if not isinstance(criteria, str) or "?" not in criteria:
        raise InvalidRequest(
            Issue(
                "criteria must be a search such as Task?status=requested&priority=stat "
                f"(a resource type, '?', parameters), not {criteria!r}",
                expression=where,
            )
        )
    resource_type, _, text = criteria.partition("?")
    try:
        query = parse_search(resource_type, text, strict=True, base_url=base_url)
    except InvalidRequest as error:
        raise InvalidRequest(
            *(Issue(i.diagnostics, i.code, i.severity, where) for i in error.issues)
        ) from None
    shaping = sorted({name for name, _ in query.applied if name in PAGE_PARAMETERS})
    if shaping:
        raise InvalidRequest(
            Issue(
                f"criteria choose which resources match; {', '.join(shaping)} shapes a page "
                "of results and has no place in them",
                expression=where,
            )
        )
    return query


def read_subscription(
    resource: dict[str, Any], prefixes: Sequence[str], base_url: str | None = None
) -> tuple[SearchQuery, str, str | None, bool, tuple[tuple[str, str], ...]]:
    """Return a Subscription's parsed criteria, channel type, endpoint, whether it wants
    the full resource, and its headers; refuse (400/422, naming the element) what this
    server cannot deliver or may not deliver to."""
    query = parse_criteria(resource.get("criteria"), base_url)
    channel = resource.get("channel") or {}
    kind = channel.get("type")
    if kind not in CHANNELS:
        raise BusinessRuleViolation(
            Issue(
                f"this server delivers through {' or '.join(CHANNELS)} channels, not {kind!r}",
                code="not-supported",
                expression=("Subscription.channel.type",),
            )
        )
    payload = channel.get("payload")
    if payload not in (None, *FULL_PAYLOADS):
        raise BusinessRuleViolation(
            Issue(
                f"the payload is application/fhir+json (the whole resource) or absent (its id "
                f"only), not {payload!r}",
                code="not-supported",
                expression=("Subscription.channel.payload",),
            )
        )
    headers: list[tuple[str, str]] = []
    for index, header in enumerate(channel.get("header") or []):
        name, colon, value = header.partition(":")
        if not colon or not name.strip() or not name.strip().isascii() or " " in name.strip():
            raise InvalidRequest(
                Issue(
                    f"each header is 'Name: value', not {header!r}",
                    expression=(f"Subscription.channel.header[{index}]",),
                )
            )
        headers.append((name.strip(), value.strip()))
    endpoint = channel.get("endpoint")
    if kind == "rest-hook":
        check_endpoint(endpoint, prefixes)
    return query, kind, endpoint, payload is not None, tuple(headers)


def check_endpoint(endpoint: Any, prefixes: Sequence[str]) -> None:
    """Refuse (422) a rest-hook endpoint that is missing, not http(s), or not allowed."""
    where = ("Subscription.channel.endpoint",)
    if not isinstance(endpoint, str) or urlsplit(endpoint).scheme not in ("http", "https"):
        raise BusinessRuleViolation(
            Issue(
                f"a rest-hook needs an http or https endpoint, not {endpoint!r}",
                expression=where,
            )
        )
    if not endpoint_allowed(endpoint, prefixes):
        allowed = ", ".join(prefixes) if prefixes else "none are allowed"
        raise BusinessRuleViolation(
            Issue(
                f"the endpoint {endpoint} is not one this server may deliver to: the operator "
                f"allows endpoints under the prefixes in the setting {ENDPOINTS_SETTING} "
                f"({allowed})",
                code="business-rule",
                expression=where,
            )
        )


class SubscriptionsBesideTheRecord:
    """The write rule that keeps Subscriptions out of the record: one in a Bundle (or any
    other door to the record) is refused, pointing to where subscriptions are made."""

    resource_types = frozenset({"Subscription"})

    def preparing(self, resource_type: str, resource: dict[str, Any]) -> None:
        raise MethodNotAllowed(
            Issue(
                "Subscriptions are kept beside the record, each with the user who made it: "
                "create one with POST [base]/Subscription, not in a Bundle",
                code="not-supported",
                expression=("Subscription",),
            )
        )

    def written(self, service: Any, written: Any) -> None:
        """Nothing: no Subscription is written to the record."""


class SubscriptionService:
    """Creates, changes, lists and removes subscriptions, and records what their delivery
    found (status active or error)."""

    def __init__(
        self, table: SubscriptionTable, endpoints: Sequence[str], base_url: str | None = None
    ) -> None:
        self.table = table
        self.endpoints = tuple(endpoints)
        self.base_url = base_url

    def create(
        self, resource: Any, owner: SubscriptionOwner, id: str | None = None
    ) -> StoredSubscription:
        """Store a new subscription for owner, status requested (or off); id when the
        client chose it (an update that creates)."""
        validate_resource(resource, "Subscription")
        stored = self._made(id or new_id(), 1, resource, owner)
        self.table.add(stored)
        return stored

    def update(
        self, id: str, resource: Any, owner: SubscriptionOwner, *, if_match: int | None = None
    ) -> StoredSubscription:
        """Replace a subscription; its owner becomes owner, and it needs a handshake again."""
        validate_resource(resource, "Subscription")
        if resource.get("id") not in (None, id):
            raise InvalidRequest(
                Issue(
                    f"the body's id {resource.get('id')!r} is not the id in the URL ({id})",
                    expression=("Subscription.id",),
                )
            )
        current = self.get(id)
        if if_match is not None and if_match != current.version_id:
            raise PreconditionFailed(
                f"Subscription/{id} is at version {current.version_id}, not {if_match}"
            )
        stored = self._made(id, current.version_id + 1, resource, owner)
        if not self.table.replace(stored, was_version=current.version_id):
            raise Conflict(f"Subscription/{id} was changed meanwhile; read it and try again")
        return stored

    def get(self, id: str) -> StoredSubscription:
        stored = self.table.get(id) if is_valid_id(id) else None
        if stored is None:
            raise NotFound(f"Subscription/{id} is not known")
        return stored

    def listed(self, owner_subject: str | None) -> list[StoredSubscription]:
        return self.table.listed(owner_subject)

    def delete(self, id: str) -> bool:
        """Remove a subscription; return False if there was none."""
        return is_valid_id(id) and self.table.remove(id)

    def live(self) -> list[Subscription]:
        """Return the subscriptions that are requested or active, read for delivery."""
        found = (self.live_one(s) for s in self.table.listed(statuses=LIVE_STATUSES))
        return [subscription for subscription in found if subscription is not None]

    def live_one(self, stored: StoredSubscription) -> Subscription | None:
        """Return a stored subscription read for delivery, or None if it is not live; one
        that can no longer be delivered (the operator has since withdrawn its endpoint)
        is marked error, saying why."""
        if stored.status not in LIVE_STATUSES:
            return None
        resource = orjson.loads(stored.content)
        try:
            query, kind, endpoint, full, headers = read_subscription(
                resource, self.endpoints, self.base_url
            )
        except (InvalidRequest, BusinessRuleViolation) as refused:
            self.mark(stored.id, stored.version_id, "error", _reasons(refused))
            return None
        return Subscription(
            stored.id,
            stored.version_id,
            stored.status,
            resource["criteria"],
            query,
            kind,
            endpoint,
            full,
            headers,
            stored.owner,
        )

    def mark(self, id: str, version_id: int, status: str, error: str | None = None) -> bool:
        """Set a subscription's status (and error) as the server, if it is still the
        version that was judged; return False if it was changed or removed meanwhile."""
        current = self.table.get(id)
        if current is None or current.version_id != version_id:
            return False
        resource = orjson.loads(current.content)
        resource["status"] = status
        resource.pop("error", None)
        if error is not None:
            resource["error"] = error
        stored = _stamped(current, resource, current.version_id + 1)
        return self.table.replace(stored, was_version=current.version_id)

    def _made(
        self, id: str, version: int, resource: dict[str, Any], owner: SubscriptionOwner
    ) -> StoredSubscription:
        status = resource.get("status")
        if status not in CLIENT_STATUSES:
            raise BusinessRuleViolation(
                Issue(
                    f"a client asks for status requested (or off), not {status!r}: this "
                    "server sets active once the endpoint answers its handshake, and error",
                    code="business-rule",
                    expression=("Subscription.status",),
                )
            )
        if status == "requested":
            read_subscription(resource, self.endpoints, self.base_url)
        else:
            parse_criteria(resource.get("criteria"), self.base_url)
        resource = {k: v for k, v in resource.items() if k != "error"}
        stored = StoredSubscription(id, version, "", status, owner, "")
        return _stamped(stored, resource, version)


def _stamped(
    stored: StoredSubscription, resource: dict[str, Any], version: int
) -> StoredSubscription:
    """Return stored as version, its resource carrying its id and meta."""
    updated = now_instant()
    meta = dict(resource.get("meta") or {})
    meta["versionId"] = str(version)
    meta["lastUpdated"] = updated
    shown: dict[str, Any] = {"resourceType": "Subscription", "id": stored.id, "meta": meta}
    shown.update((k, v) for k, v in resource.items() if k not in shown)
    return replace(
        stored,
        version_id=version,
        last_updated=updated,
        status=str(shown["status"]),
        content=orjson.dumps(shown).decode(),
    )


def _reasons(error: Exception) -> str:
    issues = getattr(error, "issues", ())
    return "; ".join(issue.diagnostics for issue in issues) or str(error)
