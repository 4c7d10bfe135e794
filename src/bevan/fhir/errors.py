"""Typed errors that carry their place, turned into OperationOutcomes by the API."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Issue:
    """One OperationOutcome.issue: what went wrong, where (FHIRPath), how badly."""

    diagnostics: str
    code: str = "invalid"
    severity: str = "error"
    expression: tuple[str, ...] = ()

    def at(self, prefix: str) -> Issue:
        """Return this issue with every expression placed under prefix."""
        if not self.expression:
            return Issue(self.diagnostics, self.code, self.severity, (prefix,))
        moved = tuple(_join(prefix, e) for e in self.expression)
        return Issue(self.diagnostics, self.code, self.severity, moved)


def _join(prefix: str, expression: str) -> str:
    # An expression starts with a resource type ("Patient.name[0]"); under a Bundle entry
    # the type stays, as FHIRPath allows: Bundle.entry[2].resource.name[0]
    head, _, rest = expression.partition(".")
    if head[:1].isupper():
        return f"{prefix}.{rest}" if rest else prefix
    return f"{prefix}.{expression}"


class FhirError(Exception):
    """An error the API answers with its status and an OperationOutcome."""

    status = 400

    def __init__(self, *issues: Issue | str, status: int | None = None) -> None:
        self.issues: tuple[Issue, ...] = tuple(
            Issue(i, code=self.default_code) if isinstance(i, str) else i for i in issues
        )
        if status is not None:
            self.status = status
        super().__init__("; ".join(i.diagnostics for i in self.issues))

    default_code = "invalid"

    def at(self, prefix: str) -> FhirError:
        """Return a copy of this error with every issue placed under prefix."""
        moved = type(self)(*(i.at(prefix) for i in self.issues), status=self.status)
        return moved


class InvalidRequest(FhirError):
    status = 400


class InvalidResource(FhirError):
    """The body is not a valid FHIR R4 resource (schema or structure)."""

    status = 400


class BusinessRuleViolation(FhirError):
    """Valid FHIR that breaks a rule of ours or UK Core (e.g. a bad NHS number)."""

    status = 422
    default_code = "business-rule"


class NotFound(FhirError):
    status = 404
    default_code = "not-found"


class Gone(FhirError):
    status = 410
    default_code = "deleted"


class Conflict(FhirError):
    status = 409
    default_code = "conflict"


class NhsNumberHeld(Conflict):
    """Another active Patient holds this NHS number. Says only that, unless the API,
    knowing the caller may read the holder, asks for naming_holder()."""

    def __init__(
        self,
        *issues: Issue | str,
        status: int | None = None,
        holder_id: str = "",
        holder: dict[str, object] | None = None,
    ) -> None:
        super().__init__(*issues, status=status)
        self.holder_id = holder_id
        self.holder = holder

    def at(self, prefix: str) -> NhsNumberHeld:
        moved = NhsNumberHeld(
            *(i.at(prefix) for i in self.issues),
            status=self.status,
            holder_id=self.holder_id,
            holder=self.holder,
        )
        return moved

    def naming_holder(self) -> Conflict:
        """Return the same refusal, naming the Patient that holds the number."""
        return Conflict(
            *(
                Issue(
                    f"{i.diagnostics}: Patient/{self.holder_id}",
                    i.code,
                    i.severity,
                    i.expression,
                )
                for i in self.issues
            ),
            status=self.status,
        )


class PreconditionFailed(FhirError):
    status = 412
    default_code = "conflict"


class MultipleMatches(FhirError):
    """A conditional operation's search matched more than one resource."""

    status = 412
    default_code = "multiple-matches"


class Unauthorized(FhirError):
    status = 401
    default_code = "login"


class Forbidden(FhirError):
    status = 403
    default_code = "forbidden"


class MethodNotAllowed(FhirError):
    status = 405
    default_code = "not-supported"


class NotAcceptable(FhirError):
    status = 406
    default_code = "not-supported"


class PayloadTooLarge(FhirError):
    status = 413
    default_code = "too-costly"


class TooCostly(FhirError):
    """The request would do more work than the server takes on in one go."""

    status = 400
    default_code = "too-costly"


class UnsupportedMediaType(FhirError):
    status = 415
    default_code = "not-supported"


class NotSupported(FhirError):
    status = 400
    default_code = "not-supported"
