"""SMART on FHIR scopes (v2 `patient/Observation.rs`, and v1 `.read` / `.write` / `.*`):
what each permits, and what a token is granted of what it asked for."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from bevan.fhir.errors import Forbidden, Issue
from bevan.security.users import ROLE_SCOPES, User

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


_RESOURCE_SCOPE = re.compile(
    r"^(?P<context>patient|user|system)/(?P<type>[A-Z][A-Za-z]*|\*)"
    r"\.(?P<permissions>read|write|\*|c?r?u?d?s?)$"
)
_V1_PERMISSIONS = {"read": "rs", "write": "cud", "*": "cruds"}


@dataclass(frozen=True)
class ResourceScope:
    """A SMART resource scope: context/Type.permissions, in v1 or v2 syntax.

    v2 scopes with search constraints (`patient/Observation.rs?category=...`) are not
    parsed, so they are never granted: access checks do not enforce the constraint.
    """

    context: str  # patient | user | system
    type: str  # a resource type, or * for all
    permissions: frozenset[str]  # letters of "cruds"
    v1: bool = False  # written as .read / .write / .* (kept when narrowed, where it can be)

    @classmethod
    def parse(cls, text: str) -> ResourceScope | None:
        found = _RESOURCE_SCOPE.match(text)
        if not found or not found["permissions"]:
            return None
        written = found["permissions"]
        v1 = written in _V1_PERMISSIONS
        letters = _V1_PERMISSIONS.get(written, written)
        return cls(found["context"], found["type"], frozenset(letters), v1)

    def __str__(self) -> str:
        letters = "".join(p for p in "cruds" if p in self.permissions)
        suffix = letters
        if self.v1:
            suffix = next((w for w, ls in _V1_PERMISSIONS.items() if ls == letters), letters)
        return f"{self.context}/{self.type}.{suffix}"

    def grants(self, resource_type: str, permission: str) -> bool:
        """Return True if this scope allows permission (one of c r u d s) on the type."""
        return self.type in ("*", resource_type) and permission in self.permissions

    def within(self, other: ResourceScope) -> bool:
        """Return True if other allows everything this scope does."""
        return (
            self.context == other.context
            and other.type in ("*", self.type)
            and self.permissions <= other.permissions
        )

    def meet(self, other: ResourceScope) -> ResourceScope | None:
        """Return what both scopes allow (in this scope's syntax), or None if nothing."""
        if self.context != other.context:
            return None
        if other.type in ("*", self.type):
            kind = self.type
        elif self.type == "*":
            kind = other.type
        else:
            return None
        permissions = self.permissions & other.permissions
        if not permissions:
            return None
        return ResourceScope(self.context, kind, permissions, self.v1)


@lru_cache(maxsize=1024)
def parse_scopes(text: str) -> tuple[ResourceScope, ...]:
    """Return the resource scopes in a space-separated scope string (others are ignored:
    openid, launch, offline_access ...). Remembered: every request asks, with the few
    scope strings its tokens carry."""
    return tuple(s for s in map(ResourceScope.parse, text.split()) if s is not None)


def require_scope(scopes: tuple[ResourceScope, ...], resource_type: str, interaction: str) -> None:
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


SCOPES_SUPPORTED = [
    "launch/patient",
    "offline_access",
    "online_access",
    "patient/*.rs",
    "patient/*.cruds",
    "patient/*.read",
    "user/*.rs",
    "user/*.cruds",
    "user/*.read",
    "user/*.*",
    "system/*.rs",
    "system/*.cruds",
    "system/*.read",
    "system/*.*",
]


def intersect_scopes(requested: str, allowed: str) -> str:
    """Return the scopes of requested that allowed permits, narrowed to what it permits.

    Resource scopes meet pairwise (`user/*.cruds` and `user/Patient.rs` give
    `user/Patient.rs`); other scopes (launch/patient, offline_access) must appear in both.
    """
    allowed_words = allowed.split()
    allowed_resources = [s for s in map(ResourceScope.parse, allowed_words) if s]
    granted: list[str] = []
    resources: list[ResourceScope] = []
    for word in requested.split():
        asked = ResourceScope.parse(word)
        if asked is None:
            if word in allowed_words and word not in granted:
                granted.append(word)
            continue
        for permitted in allowed_resources:
            met = asked.meet(permitted)
            if met is not None:
                resources.append(met)
    # Drop scopes another granted scope already covers.
    kept: list[ResourceScope] = []
    for index, scope in enumerate(resources):
        covered = any(
            scope.within(other) and (not other.within(scope) or later < index)
            for later, other in enumerate(resources)
            if later != index
        )
        if not covered:
            kept.append(scope)
    for scope in kept:
        if str(scope) not in granted:
            granted.append(str(scope))
    return " ".join(granted)


def scope_for_role(requested: str, user: User) -> str:
    """Return the part of requested that user's role may be granted."""
    return intersect_scopes(requested, ROLE_SCOPES.get(user.role, ""))
