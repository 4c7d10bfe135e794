"""SMART on FHIR scopes (v2 `patient/Observation.rs`, and v1 `.read` / `.write` / `.*`)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from bevan.fhir.errors import Forbidden, Issue

_SCOPE = re.compile(
    r"^(?P<context>patient|user|system)/(?P<type>\*|[A-Z][A-Za-z]+)\.(?P<permissions>[cruds]+|read|write|\*)$"
)
_V1 = {"read": "rs", "write": "cud", "*": "cruds"}

# What each FHIR interaction needs.
PERMISSION = {
    "create": "c",
    "read": "r",
    "vread": "r",
    "history-instance": "r",
    "update": "u",
    "patch": "u",
    "delete": "d",
    "search-type": "s",
    "search-system": "s",
    "history-type": "s",
    "history-system": "s",
    "operation": "r",
}


@dataclass(frozen=True)
class Scope:
    context: str  # patient | user | system
    resource_type: str  # a type or *
    permissions: frozenset[str]

    def grants(self, resource_type: str, permission: str) -> bool:
        return self.resource_type in ("*", resource_type) and permission in self.permissions


def parse_scopes(text: str) -> tuple[Scope, ...]:
    """Return the resource scopes in a space-separated scope string (others are ignored:
    openid, launch, offline_access ...)."""
    found = []
    for item in text.split():
        match = _SCOPE.match(item)
        if match is None:
            continue
        permissions = _V1.get(match["permissions"], match["permissions"])
        found.append(Scope(match["context"], match["type"], frozenset(permissions)))
    return tuple(found)


def require_scope(scopes: tuple[Scope, ...], resource_type: str, interaction: str) -> None:
    """Raise Forbidden unless some scope grants interaction on resource_type."""
    permission = PERMISSION.get(interaction, "r")
    if not any(scope.grants(resource_type, permission) for scope in scopes):
        raise Forbidden(
            Issue(
                f"the token's scopes do not allow {interaction} on {resource_type} "
                f"(it needs a scope such as user/{resource_type}.{permission})",
                code="forbidden",
            )
        )
