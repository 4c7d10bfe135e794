"""Content negotiation and request headers: formats, Prefer, media types."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request

from bevan.fhir.errors import NotAcceptable, UnsupportedMediaType

FHIR_JSON = "application/fhir+json"
JSON_TYPES = frozenset(
    {"application/fhir+json", "application/json", "application/json+fhir", "text/json"}
)
JSON_PATCH = "application/json-patch+json"
PATCH_TYPES = frozenset({JSON_PATCH, *JSON_TYPES})
_JSON_FORMATS = frozenset(
    {"json", "application/json", "application/fhir+json", "application/json+fhir"}
)


@dataclass(frozen=True)
class Prefer:
    """The parts of the Prefer header Bevan honours."""

    return_: str = "representation"  # minimal | representation | OperationOutcome
    strict: bool = False


def parse_prefer(request: Request) -> Prefer:
    header = request.headers.get("prefer")
    if not header:
        return Prefer()
    return_, strict = "representation", False
    for part in header.split(";"):
        for item in part.split(","):
            name, _, value = item.strip().partition("=")
            value = value.strip().strip('"')
            if name == "return" and value in ("minimal", "representation", "OperationOutcome"):
                return_ = value
            elif name == "handling":
                strict = value == "strict"
    return Prefer(return_, strict)


def check_response_format(request: Request, also: frozenset[str] = frozenset()) -> None:
    """Refuse (406) a request that will only accept a format other than FHIR JSON (or
    one of the media types also names, where the route serves them)."""
    fmt = request.query_params.get("_format")
    if fmt is not None:
        if fmt.split(";")[0].strip() not in _JSON_FORMATS:
            raise NotAcceptable(
                f"_format {fmt!r} is not served: Bevan speaks FHIR JSON ({FHIR_JSON})"
            )
        return
    accept = request.headers.get("accept")
    if not accept:
        return
    for item in accept.split(","):
        media = item.split(";")[0].strip().lower()
        if media in JSON_TYPES or media in also or media in ("*/*", "application/*", ""):
            return
    raise NotAcceptable(f"Accept {accept!r} names no format Bevan serves; ask for {FHIR_JSON}")


def check_body_type(request: Request, *, patch: bool = False) -> None:
    """Refuse (415) a body whose Content-Type is not FHIR JSON (or JSON Patch)."""
    header = request.headers.get("content-type")
    if header is None:
        return  # tolerate clients that omit it; the body must still parse as JSON
    media = header.split(";")[0].strip().lower()
    allowed = PATCH_TYPES if patch else JSON_TYPES
    if media not in allowed:
        expected = f"{JSON_PATCH} or {FHIR_JSON}" if patch else FHIR_JSON
        raise UnsupportedMediaType(
            f"Content-Type {media!r} is not accepted here; send {expected}"
            + (" (XML is not supported)" if "xml" in media else "")
        )


def wants_pretty(request: Request) -> bool:
    return request.query_params.get("_pretty") == "true"
