"""$meta-add: tags, security labels and profiles added to a resource, as a new version
(with the same access checks as an update)."""

from __future__ import annotations

from starlette.responses import Response

from bevan.api.context import FhirRequest
from bevan.api.operations.meta import change_meta


def meta_add(fhir: FhirRequest) -> Response:
    """POST [type]/[id]/$meta-add: a Parameters holding the resource's meta afterwards."""
    return change_meta(fhir, adding=True)
