"""Validation of every write: the official R4 JSON Schema, then UK Core essentials.

The schema check uses jsonschema-rs (compiled Rust). Measured on the official examples:
one validator over all resource types answers in about 16 us for an Observation, where
fastjsonschema took 600 us and 10 s to compile. The all-types validator answers yes/no;
only when it says no do we compile (once per type, about 60 ms) a validator for that one
type, whose errors name the offending element precisely.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from importlib import resources
from typing import Any

import jsonschema_rs
import orjson

from bevan.clinical.nhs_number import NHS_NUMBER_SYSTEM, nhs_number_problem
from bevan.fhir import json_text
from bevan.fhir.errors import BusinessRuleViolation, InvalidResource, Issue
from bevan.fhir.resource_types import RESOURCE_TYPES

MAX_ISSUES = 20
_NHS_MARKER = NHS_NUMBER_SYSTEM.encode()


class _Schemas:
    """Compiled validators, built on first use and shared (they are thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._definitions: dict[str, Any] | None = None
        self._any: Any = None
        self._by_type: dict[str, Any] = {}

    def _schema_for(self, definition: str) -> dict[str, Any]:
        if self._definitions is None:
            text = resources.files("bevan.fhir").joinpath("data/r4.schema.json").read_text()
            self._definitions = json.loads(text)["definitions"]
        return {
            "$schema": "http://json-schema.org/draft-06/schema#",
            "definitions": self._definitions,
            "$ref": f"#/definitions/{definition}",
        }

    def any_resource(self) -> Any:
        if self._any is None:
            with self._lock:
                if self._any is None:
                    self._any = jsonschema_rs.Draft6Validator(self._schema_for("ResourceList"))
        return self._any

    def for_type(self, resource_type: str) -> Any:
        validator = self._by_type.get(resource_type)
        if validator is None:
            with self._lock:
                validator = self._by_type.get(resource_type)
                if validator is None:
                    validator = jsonschema_rs.Draft6Validator(self._schema_for(resource_type))
                    self._by_type[resource_type] = validator
        return validator


_SCHEMAS = _Schemas()


def warm_up() -> None:
    """Compile the all-types validator now rather than on the first write."""
    _SCHEMAS.any_resource()


def check_resource_type(resource: Any, expected: str | None = None) -> str:
    """Return the resource's type, or raise InvalidResource saying what is wrong."""
    if not isinstance(resource, dict):
        raise InvalidResource(
            Issue(f"expected a JSON object holding a FHIR resource, got {_json_kind(resource)}")
        )
    resource_type = resource.get("resourceType")
    if resource_type is None:
        raise InvalidResource(
            Issue("the resource has no resourceType", code="required", expression=("resourceType",))
        )
    if not isinstance(resource_type, str) or resource_type not in RESOURCE_TYPES:
        raise InvalidResource(
            Issue(
                f"resourceType {resource_type!r} is not an R4 resource type",
                code="not-supported",
                expression=("resourceType",),
            )
        )
    if expected is not None and resource_type != expected:
        raise InvalidResource(
            Issue(
                f"resourceType {resource_type!r} does not match the {expected!r} in the URL",
                expression=(f"{resource_type}.resourceType",),
            )
        )
    return resource_type


def validate_resource(resource: Any, expected_type: str | None = None) -> str:
    """Return the resource's type if it is valid R4 and meets UK Core rules, else raise.

    Raises InvalidResource (400) for structure and BusinessRuleViolation (422) for rules
    such as the NHS number check digit; each issue names the FHIRPath of the element.
    """
    resource_type = check_resource_type(resource, expected_type)
    structure, rules = _problems(resource, resource_type, MAX_ISSUES)
    if structure:
        raise InvalidResource(*structure)
    if rules:
        raise BusinessRuleViolation(*rules[:MAX_ISSUES])
    return resource_type


def resource_problems(resource: Any, expected_type: str | None = None) -> list[Issue]:
    """Return every problem with a resource (structure, then rules), not only the first:
    what $validate reports. An empty list means the resource would be accepted."""
    try:
        resource_type = check_resource_type(resource, expected_type)
    except InvalidResource as error:
        return list(error.issues)
    structure, rules = _problems(resource, resource_type, None)
    return structure + rules


def _problems(
    resource: dict[str, Any], resource_type: str, limit: int | None
) -> tuple[list[Issue], list[Issue]]:
    """Return (structure problems, rule problems); limit caps the structure problems."""
    structure: list[Issue] = []
    if not _is_valid(resource):
        # The validator refuses a Decimal (fhir/json_text) too: ask again with plain floats.
        plain = orjson.loads(json_text.dumps(resource))
        if not _SCHEMAS.any_resource().is_valid(plain):
            structure = _schema_issues(resource_type, plain, limit)
    # Walk the tree only when an NHS number is there to check (a C-speed scan first).
    if _NHS_MARKER not in json_text.dumps(resource):
        return structure, []
    return structure, list(_nhs_number_issues(resource, resource_type))


def _is_valid(resource: dict[str, Any]) -> bool:
    try:
        valid: bool = _SCHEMAS.any_resource().is_valid(resource)
    except ValueError:  # a Decimal, in some places, is an error rather than invalid
        return False
    return valid


def _schema_issues(
    resource_type: str, resource: dict[str, Any], limit: int | None = MAX_ISSUES
) -> list[Issue]:
    issues: list[Issue] = []
    validator = _SCHEMAS.for_type(resource_type)
    for error in validator.iter_errors(resource):
        path = list(error.instance_path)
        nested = _nested_resource_issues(resource, path, resource_type, limit)
        if nested is not None:
            issues.extend(nested)
        else:
            issues.append(
                Issue(
                    _describe(error, path),
                    code=_issue_code(error),
                    expression=(fhirpath(resource_type, path),),
                )
            )
        if limit is not None and len(issues) >= limit:
            break
    if not issues:  # the all-types validator disagreed; say so rather than pass silently
        issues.append(Issue(f"the {resource_type} does not conform to the R4 schema"))
    return issues[:limit]


def _nested_resource_issues(
    root: dict[str, Any], path: list[str | int], root_type: str, limit: int | None = MAX_ISSUES
) -> list[Issue] | None:
    """Explain a failure inside a contained or Bundle resource by validating it by type."""
    node: Any = root
    for step in path:
        node = node[step]
    if not path or not isinstance(node, dict) or "resourceType" not in node:
        return None
    prefix = fhirpath(root_type, path)
    try:
        inner_type = check_resource_type(node)
    except InvalidResource as error:
        return [i.at(prefix) for i in error.issues]
    return [i.at(prefix) for i in _schema_issues(inner_type, node, limit)]


def _describe(error: Any, path: list[str | int]) -> str:
    message = str(error.message)
    if len(message) > 300:
        message = message[:297] + "..."
    return message


def _issue_code(error: Any) -> str:
    kind = type(error.kind).__name__
    if kind == "Required":
        return "required"
    if kind == "AdditionalProperties":
        return "structure"
    if kind in ("Type", "Pattern", "Enum", "Const"):
        return "value"
    return "invalid"


def fhirpath(resource_type: str, path: list[str | int]) -> str:
    """Return a FHIRPath for a JSON path: ['name', 0, 'given'] -> Patient.name[0].given."""
    out = resource_type
    for step in path:
        if isinstance(step, int):
            out += f"[{step}]"
        else:
            out += f".{step.lstrip('_')}"
    return out


def _nhs_number_issues(resource: dict[str, Any], resource_type: str) -> Iterator[Issue]:
    for path, identifier in _identifiers_with_system(resource, NHS_NUMBER_SYSTEM, []):
        value = identifier.get("value")
        where = fhirpath(resource_type, [*path, "value"])
        if not isinstance(value, str):
            yield Issue(
                "an NHS number identifier must have a value",
                code="required",
                expression=(where,),
            )
            continue
        problem = nhs_number_problem(value)
        if problem is not None:
            yield Issue(problem, code="business-rule", expression=(where,))


def _identifiers_with_system(
    node: Any, system: str, path: list[str | int]
) -> Iterator[tuple[list[str | int], dict[str, Any]]]:
    if isinstance(node, dict):
        if node.get("system") == system:
            yield path, node
            return
        for key, value in node.items():
            if isinstance(value, dict | list):
                yield from _identifiers_with_system(value, system, [*path, key])
    elif isinstance(node, list):
        for index, item in enumerate(node):
            if isinstance(item, dict | list):
                yield from _identifiers_with_system(item, system, [*path, index])


def _json_kind(value: Any) -> str:
    if isinstance(value, list):
        return "a JSON array"
    if value is None:
        return "null"
    return f"a JSON {type(value).__name__}"
