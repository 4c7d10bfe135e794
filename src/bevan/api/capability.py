"""The CapabilityStatement: what this server does, generated from the same tables that
route requests (operations) and compile searches (search parameters)."""

from __future__ import annotations

import importlib.metadata
from datetime import UTC, datetime
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

from bevan import __version__
from bevan.api.operations import OPERATIONS, Operation
from bevan.fhir import json_text
from bevan.fhir.resource_types import RESOURCE_TYPES
from bevan.fhir.search_parameters import parameter_definitions, search_parameters

# What every resource type answers (api/routes.py): the test of this statement tries each.
TYPE_INTERACTIONS = (
    "read",
    "vread",
    "update",
    "patch",
    "delete",
    "history-instance",
    "history-type",
    "create",
    "search-type",
)
SYSTEM_INTERACTIONS = ("transaction", "batch", "history-system")
PATCH_FORMATS = ("application/json-patch+json", "application/fhir+json")
# Searches by the resource row, not by index rows: every type has them.
COLUMN_PARAMETERS = (
    ("_id", "token", "http://hl7.org/fhir/SearchParameter/Resource-id", "Resource.id"),
    (
        "_lastUpdated",
        "date",
        "http://hl7.org/fhir/SearchParameter/Resource-lastUpdated",
        "Resource.meta.lastUpdated",
    ),
)


@cache
def build_date() -> str:
    """Return when this installation of Bevan was built (its package metadata's date)."""
    try:
        distribution = importlib.metadata.distribution("bevan")
        found = [f.locate() for f in distribution.files or () if f.name == "METADATA"]
        path = Path(str(found[0])) if found else Path(__file__)
    except importlib.metadata.PackageNotFoundError:
        path = Path(__file__)
    return datetime.fromtimestamp(path.stat().st_mtime, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@cache
def software_version() -> str:
    """Return the installed package's version (the source's, when not installed)."""
    try:
        return importlib.metadata.version("bevan")
    except importlib.metadata.PackageNotFoundError:
        return __version__


def _documentation(resource_type: str, expression: str) -> str:
    own = [p for p in expression.split(" | ") if p.strip("( ").startswith(f"{resource_type}.")]
    return f"matches {' | '.join(own) or expression}"


def _search_params(resource_type: str) -> list[dict[str, Any]]:
    definitions = parameter_definitions(resource_type)
    params = [
        {
            "name": code,
            "definition": url,
            "type": kind,
            "documentation": _documentation(
                resource_type, path.replace("Resource.", f"{resource_type}.")
            ),
        }
        for code, kind, url, path in COLUMN_PARAMETERS
    ]
    for code, param in sorted(search_parameters(resource_type).items()):
        # A special parameter is listed only where it has a search of its own (near).
        if not param.compiled or (param.type == "special" and param.special is None):
            continue
        url, expression = definitions[code]
        params.append(
            {
                "name": code,
                "definition": url,
                "type": param.type,
                "documentation": _documentation(resource_type, expression),
            }
        )
    return params


@cache
def _references_to() -> dict[str, list[str]]:
    """Return, by target type, the Source:parameter references that can point at it."""
    found: dict[str, list[str]] = {t: [] for t in RESOURCE_TYPES}
    for source in sorted(RESOURCE_TYPES):
        for code, param in sorted(search_parameters(source).items()):
            if param.type != "reference" or not param.compiled:
                continue
            for target in param.targets or sorted(RESOURCE_TYPES):
                if target in found:
                    found[target].append(f"{source}:{code}")
    return found


def _operations(
    operation_levels: tuple[str, ...], resource_type: str | None
) -> list[dict[str, Any]]:
    return [
        _operation_entry(operation)
        for operation in OPERATIONS
        if any(level in operation.handlers for level in operation_levels)
        and (resource_type is None or operation.applies_to(resource_type))
    ]


def _operation_entry(operation: Operation) -> dict[str, Any]:
    text = operation.documentation
    if operation.parameters:
        text += " Parameters: " + "; ".join(f"{n}: {d}" for n, d in operation.parameters) + "."
    text += f" Answered to {' and '.join(operation.methods)}."
    return {"name": operation.name, "definition": operation.definition, "documentation": text}


# AuditEvent is answered by the audit trail, read and searched only (api/audit_events.py):
# the trail is the only source of AuditEvents.
AUDIT_EVENT_PARAMETERS = (
    ("patient", "reference", "the patient whose data was accessed"),
    ("agent", "reference", "who accessed it (a user id, or a reference ending in one)"),
    ("entity", "reference", "what was accessed"),
    ("date", "date", "when it was recorded (ge, gt, le, lt, eq, sa, eb)"),
    ("outcome", "token", "0 success, 4 refused, 8 failed, 12 server error"),
    ("action", "token", "C, R, U, D or E"),
    ("type", "token", "the kind of event (rest, ...)"),
    ("subtype", "token", "the interaction (read, search-type, ...)"),
)


def _audit_event_entry() -> dict[str, Any]:
    return {
        "type": "AuditEvent",
        "profile": "http://hl7.org/fhir/StructureDefinition/AuditEvent",
        "documentation": "The audit trail: read and searched by privacy officers and system "
        "accounts; never created, changed or deleted through the API.",
        "interaction": [{"code": "read"}, {"code": "search-type"}],
        "versioning": "no-version",
        "readHistory": False,
        "updateCreate": False,
        "conditionalCreate": False,
        "conditionalRead": "not-supported",
        "conditionalUpdate": False,
        "conditionalDelete": "not-supported",
        "searchInclude": [],
        "searchRevInclude": [],
        "searchParam": [
            {
                "name": name,
                "definition": f"http://hl7.org/fhir/SearchParameter/AuditEvent-{name}",
                "type": kind,
                "documentation": text,
            }
            for name, kind, text in AUDIT_EVENT_PARAMETERS
        ],
    }


def _subscription_entry() -> dict[str, Any]:
    """Subscriptions are kept beside the record, each with its owner (api/subscriptions.py):
    created, read, listed, replaced and removed, with no history and no conditions."""
    return {
        "type": "Subscription",
        "profile": "http://hl7.org/fhir/StructureDefinition/Subscription",
        "documentation": "Your own subscriptions: rest-hook (to endpoints the operator "
        "allows, BEVAN_SUBSCRIPTION_ENDPOINTS) or websocket (bind at $subscription-websocket); "
        "each delivers only what its creator may read. GET lists your own, without search "
        "parameters.",
        "interaction": [
            {"code": code} for code in ("read", "update", "delete", "create", "search-type")
        ],
        "versioning": "versioned",
        "readHistory": False,
        "updateCreate": True,
        "conditionalCreate": False,
        "conditionalRead": "not-supported",
        "conditionalUpdate": False,
        "conditionalDelete": "not-supported",
        "searchInclude": [],
        "searchRevInclude": [],
        "searchParam": [],
    }


@cache
def _resources() -> list[dict[str, Any]]:
    out = []
    references_to = _references_to()
    for resource_type in sorted(RESOURCE_TYPES):
        if resource_type == "AuditEvent":
            out.append(_audit_event_entry())
            continue
        if resource_type == "Subscription":
            out.append(_subscription_entry())
            continue
        includes = sorted(
            f"{resource_type}:{code}"
            for code, p in search_parameters(resource_type).items()
            if p.type == "reference" and p.compiled
        )
        entry: dict[str, Any] = {
            "type": resource_type,
            "profile": f"http://hl7.org/fhir/StructureDefinition/{resource_type}",
            "interaction": [{"code": code} for code in TYPE_INTERACTIONS],
            "versioning": "versioned-update",
            "readHistory": True,
            "updateCreate": True,
            "conditionalCreate": True,
            "conditionalRead": "full-support",  # If-None-Match and If-Modified-Since: 304
            "conditionalUpdate": True,
            "conditionalDelete": "single",
            "searchInclude": ["*", *includes],
            "searchRevInclude": references_to[resource_type],
            "searchParam": _search_params(resource_type),
        }
        operations = _operations(("type", "instance"), resource_type)
        if operations:
            entry["operation"] = operations
        out.append(entry)
    return out


@lru_cache(maxsize=16)
def capability_text(base_url: str, cors: bool = False) -> str:
    """Return the CapabilityStatement as JSON text, kept for the few base URLs clients
    use: it lists every type's parameters, and building it anew for each request would
    make an unauthenticated GET cost the server far more than it costs the client."""
    return json_text.dumps(capability_statement(base_url, cors)).decode()


def capability_statement(base_url: str, cors: bool = False) -> dict[str, Any]:
    """Return the CapabilityStatement for a server answering at base_url (cors: whether
    it answers browsers of other origins, BEVAN_CORS_ORIGINS)."""
    root = base_url.rsplit("/fhir", 1)[0]
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": build_date(),
        "publisher": "Bevan",
        "kind": "instance",
        "software": {"name": "Bevan", "version": software_version(), "releaseDate": build_date()},
        "implementation": {"description": "Bevan FHIR R4 server", "url": base_url},
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "json"],
        "patchFormat": list(PATCH_FORMATS),
        "rest": [
            {
                "mode": "server",
                "security": {
                    "cors": cors,
                    "service": [
                        {
                            "coding": [
                                {
                                    "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                                    "code": "SMART-on-FHIR",
                                }
                            ]
                        }
                    ],
                    "extension": [
                        {
                            "url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
                            "extension": [
                                {"url": "authorize", "valueUri": f"{root}/auth/authorize"},
                                {"url": "token", "valueUri": f"{root}/auth/token"},
                                {"url": "revoke", "valueUri": f"{root}/auth/revoke"},
                            ],
                        }
                    ],
                    "description": "Every request except GET /metadata needs an "
                    "Authorization: Bearer token signed by this server (SMART on FHIR: see "
                    ".well-known/smart-configuration). Every access is audited.",
                },
                "resource": _resources(),
                "interaction": [{"code": code} for code in SYSTEM_INTERACTIONS],
                "operation": _operations(("system",), None),
            }
        ],
    }
