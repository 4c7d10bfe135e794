"""The FHIR route table under the base path (default /fhir)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route, WebSocketRoute

from bevan.api import audit_events, bulk_jobs, operations, subscription_websocket
from bevan.api import interactions as i
from bevan.api import subscriptions as subs
from bevan.api.capability import capability_text
from bevan.api.context import (
    FhirRequest,
    audit_record,
    audited,
    authenticate,
    base_url_of,
    fhir_endpoint,
)
from bevan.api.operations import audit, break_glass
from bevan.api.responses import error_response, fhir_json
from bevan.fhir.errors import FhirError, MethodNotAllowed, NotFound
from bevan.security.access import AccessContext


def metadata(fhir: FhirRequest) -> Response:
    cors = bool(fhir.request.app.state.settings.cors_origins)
    return fhir_json(capability_text(fhir.base_url, cors), pretty=fhir.pretty)


# A search naming the resources it wants (by id, business identifier or patient) reads a
# few index entries: it runs on the event loop, like a read, because handing it to a
# thread costs more than the search. Anything that can fan out goes to the thread pool.
PINPOINTING = frozenset({"_id", "identifier", "patient", "subject"})
FANNING_OUT = frozenset({"_include", "_revinclude", "_has", "_total", "_text", "_content"})


def fans_out(request: Request) -> bool:
    """Return True if the search includes, chains, reverse-chains or counts everything
    (a chain of one link to a business identifier names its target, so it does not)."""
    for name, _ in request.query_params.multi_items():
        if name.split(":", 1)[0] in FANNING_OUT:
            return True
        if "." in name and not _chained_to_identifier(name):
            return True
    return False


def _chained_to_identifier(name: str) -> bool:
    """subject:Patient.identifier, patient.identifier: one link, ending at an identifier."""
    link, _, last = name.partition(".")
    return last == "identifier" and link.split(":", 1)[0] in PINPOINTING


def broad_search(request: Request) -> bool:
    """Return True unless the search is pinned to named resources and cannot fan out."""
    if fans_out(request):
        return True
    return not any(
        name in PINPOINTING or _chained_to_identifier(name)
        for name, _ in request.query_params.multi_items()
    )


# A Bundle up to this size joins the group commit of single writes: for a few entries the
# commit is much of the cost. A larger one brings its own transaction, processed in the
# thread pool, where its validation runs beside other work: small Bundles store more
# resources a second through the writer, large ones fewer (benchmarks/bundle_import.py,
# with its own patient bundles and with `--source synthea`).
SMALL_BUNDLE_BYTES = 128 * 1024


def small_bundle(request: Request) -> bool:
    declared = request.headers.get("content-length", "")
    return declared.isascii() and declared.isdigit() and int(declared) <= SMALL_BUNDLE_BYTES


def subscription_routes(base_path: str) -> list[Route]:
    """Return the routes of Subscriptions, kept beside the record (api/subscriptions.py);
    they come before the record's own routes, which would otherwise take them."""
    b, e = base_path, fhir_endpoint
    return [
        Route(
            f"{b}/Subscription",
            e(subs.search_subscriptions, interaction="search-type", offload=True),
            methods=["GET"],
        ),
        Route(
            f"{b}/Subscription",
            e(subs.create_subscription, interaction="create", offload=True),
            methods=["POST"],
        ),
        Route(
            f"{b}/Subscription/{{id}}",
            e(subs.read_subscription, interaction="read", offload=True),
            methods=["GET"],
        ),
        Route(
            f"{b}/Subscription/{{id}}",
            e(subs.update_subscription, interaction="update", offload=True),
            methods=["PUT"],
        ),
        Route(
            f"{b}/Subscription/{{id}}",
            e(subs.delete_subscription, interaction="delete", offload=True),
            methods=["DELETE"],
        ),
    ]


def websocket_routes(base_path: str) -> list[BaseRoute]:
    """Return the websocket routes: the one subscriptions are bound to."""
    return [
        WebSocketRoute(
            f"{base_path}/{subscription_websocket.PATH}",
            subscription_websocket.subscription_websocket,
        )
    ]


def fhir_routes(base_path: str) -> list[Route]:
    """Return the routes of the FHIR REST API.

    The first route whose path and method both match answers, so among the routes of
    one method a specific path comes before a general one that would also match it
    (`metadata` before `{type}`, `{type}/_history` before `{type}/{id}`). Searches
    and reads come as early as that allows: every route tried before the one that
    answers costs a pattern match, and trying the whole list was a noticeable share
    of the server's time on a search (benchmarks/search.py).
    """
    b = base_path
    e = fhir_endpoint
    # Every operation, at every level, is answered through the one table of them.
    operation = e(
        operations.dispatch,
        interaction="operation",
        offload=operations.offloaded,
        writes=operations.writes,
        names_patients=operations.names_patients,
    )
    bundles = e(
        i.system_bundle,
        interaction="transaction",
        writes=small_bundle,
        offload=True,
        one_at_a_time=True,
    )
    return [
        Route(f"{b}/metadata", e(metadata, interaction="operation", public=True), methods=["GET"]),
        *subscription_routes(b),
        Route(
            f"{b}/_history",
            e(i.system_history, interaction="history-system", offload=True),
            methods=["GET"],
        ),
        Route(f"{b}/${{operation}}", operation, methods=["GET", "POST"]),
        # Bulk requests' status URLs and files: before Type/id, which they would match.
        Route(
            f"{b}/{bulk_jobs.STATUS_PATH}/{{job}}",
            e(bulk_jobs.job_status, interaction="operation", names_patients=False),
            methods=["GET"],
        ),
        Route(
            f"{b}/{bulk_jobs.STATUS_PATH}/{{job}}",
            e(bulk_jobs.cancel_job, interaction="operation", names_patients=False),
            methods=["DELETE"],
        ),
        Route(
            f"{b}/{bulk_jobs.OUTPUT_PATH}/{{job}}/{{name}}",
            e(
                bulk_jobs.job_file,
                interaction="operation",
                names_patients=False,
                serves=frozenset({bulk_jobs.NDJSON, "application/ndjson"}),
            ),
            methods=["GET"],
        ),
        # The audit trail, not the record store, answers for AuditEvent.
        Route(
            f"{b}/AuditEvent",
            e(
                audit_events.search_audit_events,
                interaction="search-type",
                offload=True,
                names_patients=False,
            ),
            methods=["GET"],
        ),
        Route(
            f"{b}/{{type}}",
            e(i.search, interaction="search-type", offload=broad_search),
            methods=["GET"],
        ),
        Route(f"{b}/{{type}}/${{operation}}", operation, methods=["GET", "POST"]),
        Route(
            f"{b}/{{type}}/_history",
            e(i.type_history, interaction="history-type", offload=True),
            methods=["GET"],
        ),
        Route(
            f"{b}/AuditEvent/{{id}}",
            e(audit_events.read_audit_event, interaction="read", names_patients=False),
            methods=["GET"],
        ),
        Route(f"{b}/{{type}}/{{id}}", e(i.read, interaction="read"), methods=["GET"]),
        # $audit is in the table of operations too; its answer names patients without
        # touching their records, so its audit entry does not list them.
        Route(
            f"{b}/Patient/{{id}}/$audit",
            e(audit.access_log, interaction="operation", names_patients=False),
            methods=["GET"],
        ),
        Route(f"{b}/{{type}}/{{id}}/${{operation}}", operation, methods=["GET", "POST"]),
        Route(
            f"{b}/AuditEvent/_search",
            e(
                audit_events.search_audit_events,
                interaction="search-type",
                offload=True,
                names_patients=False,
            ),
            methods=["POST"],
        ),
        Route(
            f"{b}/{{type}}/_search",
            e(i.search, interaction="search-type", offload=True),
            methods=["POST"],
        ),
        Route(
            f"{b}/{{type}}/{{id}}/_history/{{version}}",
            e(i.vread, interaction="vread"),
            methods=["GET"],
        ),
        Route(
            f"{b}/{{type}}/{{id}}/_history",
            e(i.instance_history, interaction="history-instance", offload=True),
            methods=["GET"],
        ),
        Route(
            f"{b}/{{type}}/{{id}}/{{target}}",
            e(i.compartment_search, interaction="search-type", offload=fans_out),
            methods=["GET"],
        ),
        Route(
            f"{b}/$break-glass/{{grant}}",
            e(break_glass.review_break_glass, interaction="operation"),
            methods=["POST"],
        ),
        Route(b, bundles, methods=["POST"]),
        Route(f"{b}/", bundles, methods=["POST"]),
        Route(f"{b}/{{type}}", e(i.create, interaction="create", writes=True), methods=["POST"]),
        Route(
            f"{b}/{{type}}/{{id}}", e(i.update, interaction="update", writes=True), methods=["PUT"]
        ),
        Route(
            f"{b}/{{type}}/{{id}}", e(i.patch, interaction="patch", writes=True), methods=["PATCH"]
        ),
        Route(
            f"{b}/{{type}}/{{id}}",
            e(i.delete, interaction="delete", writes=True),
            methods=["DELETE"],
        ),
        Route(
            f"{b}/{{type}}",
            e(i.conditional_update, interaction="update", writes=True),
            methods=["PUT"],
        ),
        Route(
            f"{b}/{{type}}",
            e(i.conditional_delete, interaction="delete", writes=True),
            methods=["DELETE"],
        ),
    ]


# What a request to no route was attempting, by its method, for its audit entry.
_ATTEMPTED = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}


async def _audited_unrouted(request: Request, error: FhirError) -> Response:
    """Return the answer to a request no route took, once it is audited like any other."""
    response = error_response(error)
    try:
        access = AccessContext(authenticate(request, request.app.state.services.tokens))
    except FhirError:
        access = None
    record = audit_record(
        request,
        _ATTEMPTED.get(request.method, "read"),
        access,
        response,
        "; ".join(i.diagnostics for i in error.issues),
        names_patients=False,
    )
    return await audited(request, record, response)


async def not_found(request: Request, exc: Exception) -> Response:
    return await _audited_unrouted(
        request,
        NotFound(
            f"there is nothing at {request.url.path}; the FHIR API is at {base_url_of(request)}"
        ),
    )


async def method_not_allowed(request: Request, exc: Exception) -> Response:
    return await _audited_unrouted(
        request, MethodNotAllowed(f"{request.method} is not allowed on {request.url.path}")
    )
