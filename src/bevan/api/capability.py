"""The CapabilityStatement: only what this server really does."""

from __future__ import annotations

from functools import cache
from typing import Any

from bevan import __version__
from bevan.fhir.resource_types import RESOURCE_TYPES
from bevan.fhir.search_parameters import search_parameters

_TYPE_INTERACTIONS = (
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


@cache
def _resources() -> list[dict[str, Any]]:
    out = []
    for resource_type in sorted(RESOURCE_TYPES):
        params = [
            {"name": "_id", "type": "token"},
            {"name": "_lastUpdated", "type": "date"},
        ] + [
            {"name": code, "type": p.type}
            for code, p in sorted(search_parameters(resource_type).items())
            if p.compiled
        ]
        out.append(
            {
                "type": resource_type,
                "interaction": [{"code": code} for code in _TYPE_INTERACTIONS],
                "versioning": "versioned-update",
                "readHistory": True,
                "updateCreate": True,
                "conditionalCreate": True,
                "conditionalUpdate": True,
                "conditionalDelete": "single",
                "searchParam": params,
            }
        )
    return out


def capability_statement(base_url: str) -> dict[str, Any]:
    """Return the CapabilityStatement for a server answering at base_url."""
    root = base_url.rsplit("/fhir", 1)[0]
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-11-24",
        "kind": "instance",
        "software": {"name": "Bevan", "version": __version__},
        "implementation": {"description": "Bevan FHIR R4 server", "url": base_url},
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "json"],
        "patchFormat": ["application/json-patch+json", "application/fhir+json"],
        "rest": [
            {
                "mode": "server",
                "security": {
                    "cors": False,
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
                "interaction": [
                    {"code": "transaction"},
                    {"code": "batch"},
                    {"code": "history-system"},
                ],
            }
        ],
    }
