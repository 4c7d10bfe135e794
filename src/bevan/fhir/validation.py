"""Validation of every write: the official R4 JSON Schema, the StructureDefinitions'
required elements, then UK Core essentials; every problem found is reported at once.

The schema check uses jsonschema-rs (compiled Rust): one validator over all resource
types answers many times sooner than fastjsonschema did, which was also slow to compile,
and every write pays it (benchmarks/crud.py, benchmarks/bundle_import.py). The all-types
validator answers yes/no; only when it says no do we compile (once per type, and not
cheaply, so not up front) a validator for that one type, whose errors name the offending element precisely, and are told in plain words
(a date's expected form rather than the schema's regular expression).
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
from bevan.fhir import json_text, schema
from bevan.fhir.cardinality import missing_elements
from bevan.fhir.errors import BusinessRuleViolation, InvalidResource, Issue
from bevan.fhir.resource_types import RESOURCE_TYPES

# Enough for every problem a person could mend in one go; a runaway Bundle stops here.
MAX_ISSUES = 200
_NHS_MARKER = NHS_NUMBER_SYSTEM.encode()
_EXTENSION_MARKER = b'xtension"'


class _Schemas:
    """Compiled validators, built on first use and shared (they are thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._definitions: dict[str, Any] | None = None
        self._any: Any = None
        self._by_type: dict[str, Any] = {}

    def definitions(self) -> dict[str, Any]:
        if self._definitions is None:
            text = resources.files("bevan.fhir").joinpath("data/r4.schema.json").read_text()
            self._definitions = json.loads(text)["definitions"]
        return self._definitions

    def _schema_for(self, definition: str) -> dict[str, Any]:
        return {
            "$schema": "http://json-schema.org/draft-06/schema#",
            "definitions": self.definitions(),
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

    Raises InvalidResource (400) for structure, missing required elements and malformed
    values, and BusinessRuleViolation (422) for rules such as the NHS number check digit
    when nothing else is wrong; each issue names the FHIRPath of the element, and every
    problem found is in the one error.
    """
    resource_type = check_resource_type(resource, expected_type)
    structure, rules = _problems(resource, resource_type, MAX_ISSUES)
    if structure:
        raise InvalidResource(*(structure + rules)[:MAX_ISSUES])
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
    issues: list[Issue] = []
    if not _is_valid(resource):
        # The validator refuses a Decimal (fhir/json_text) too: ask again with plain floats.
        plain = orjson.loads(json_text.dumps(resource))
        if not _SCHEMAS.any_resource().is_valid(plain):
            issues.extend(_schema_issues(resource_type, plain, limit))
            if not issues:  # the schema's own few required elements are told below
                issues.extend(missing_elements(resource, resource_type))
            if not issues:  # the all-types validator disagreed; say so, never pass silently
                issues.append(Issue(f"the {resource_type} does not conform to the R4 schema"))
            else:
                issues = _without_repeats([*issues, *missing_elements(resource, resource_type)])
    text = json_text.dumps(resource)
    if not issues:
        issues.extend(missing_elements(resource, resource_type, _EXTENSION_MARKER in text))
    # Walk the tree only when an NHS number is there to check (a C-speed scan first).
    rules = list(_nhs_number_issues(resource, resource_type)) if _NHS_MARKER in text else []
    return issues[:limit], rules


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
    told: set[str] = set()  # one sentence per element: a value can break a rule twice
    validator = _SCHEMAS.for_type(resource_type)
    for error in validator.iter_errors(resource):
        if type(error.kind).__name__ == "Required":
            continue  # the schema knows a few required elements; cardinality says them all
        path = list(error.instance_path)
        nested = _nested_resource_issues(resource, path, resource_type, limit)
        if nested is not None:
            issues.extend(nested)
        else:
            where = fhirpath(resource_type, path)
            if where in told:
                continue
            told.add(where)
            unexpected = getattr(error.kind, "unexpected", None)
            if type(error.kind).__name__ == "AdditionalProperties" and unexpected:
                issues.extend(
                    Issue(
                        f"{where} has no element named '{name}' in FHIR R4",
                        code="structure",
                        expression=(fhirpath(resource_type, [*path, name]),),
                    )
                    for name in unexpected
                )
            else:
                issues.append(
                    Issue(
                        _describe(error, where),
                        code=_issue_code(error),
                        expression=(where,),
                    )
                )
        if limit is not None and len(issues) >= limit:
            break
    return issues[:limit]


def _without_repeats(issues: list[Issue]) -> list[Issue]:
    seen: set[tuple[str, tuple[str, ...]]] = set()
    kept = []
    for issue in issues:
        key = (issue.diagnostics, issue.expression)
        if key not in seen:
            seen.add(key)
            kept.append(issue)
    return kept


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


# What a value of each primitive type looks like, said as a person would.
_EXPECTED_FORM = {
    "base64Binary": "base64-encoded bytes",
    "boolean": "true or false (a JSON boolean, not text)",
    "canonical": "a URI without whitespace",
    "code": "text without leading, trailing or repeated spaces",
    "date": "YYYY, YYYY-MM or YYYY-MM-DD",
    "dateTime": (
        "YYYY, YYYY-MM, YYYY-MM-DD or YYYY-MM-DDThh:mm:ss with a time zone "
        "(e.g. 2026-03-01T09:30:00Z)"
    ),
    "decimal": "a number (a JSON number, not text)",
    "id": "1 to 64 letters, digits, '-' or '.'",
    "instant": "YYYY-MM-DDThh:mm:ss with a time zone (e.g. 2026-03-01T09:30:00.000Z)",
    "integer": "a whole number (a JSON number, not text)",
    "markdown": "non-empty text",
    "oid": "urn:oid: followed by dotted digits",
    "positiveInt": "a whole number of 1 or more",
    "string": "non-empty text",
    "time": "hh:mm:ss",
    "unsignedInt": "a whole number of 0 or more",
    "uri": "a URI without whitespace",
    "url": "a URL without whitespace",
    "uuid": "urn:uuid: followed by a UUID",
    "xhtml": "XHTML text",
}


def _describe(error: Any, where: str) -> str:
    """Return a sentence a person can act on, naming the element and the value."""
    kind = type(error.kind).__name__
    value = _shown(error.instance)
    if isinstance(error.instance, list) and kind in ("Type", "Enum", "Pattern"):
        return f"{where} holds one value at most, so it must not be a JSON array"
    primitive = _primitive_of(error)
    form = _EXPECTED_FORM.get(primitive or "")
    if form is not None and kind in ("Type", "Pattern"):
        return f"{where} {value} is not a valid {primitive}: expected {form}"
    if kind == "Enum":
        allowed = getattr(error.kind, "options", None)
        if isinstance(allowed, list):
            return f"{where} {value} is not one of the codes allowed: {', '.join(allowed)}"
        return f"{where} {value} is not one of the codes allowed"
    if kind == "Type":
        wanted = getattr(error.kind, "types", None)
        expected = wanted if isinstance(wanted, str) else _schema_type(error)
        if expected == "array":
            return f"{where} repeats, so it must be a JSON array, not {_json_kind(error.instance)}"
        if expected == "object":
            return f"{where} must be a JSON object, not {_json_kind(error.instance)}"
    message = str(error.message)
    if len(message) > 300:
        message = message[:297] + "..."
    return f"{where}: {message}"


def _schema_node(error: Any, drop_last: int = 0) -> Any:
    schema_path = [str(step) for step in error.schema_path]
    if schema_path[:1] != ["definitions"]:
        return None
    node: Any = _SCHEMAS.definitions()
    for step in schema_path[1 : len(schema_path) - drop_last]:
        if isinstance(node, dict):
            node = node.get(step)
        elif isinstance(node, list) and step.isdigit() and int(step) < len(node):
            node = node[int(step)]
        else:
            return None
    return node


def _schema_type(error: Any) -> str | None:
    node = _schema_node(error)
    return node if isinstance(node, str) else None


def _primitive_of(error: Any) -> str | None:
    """Return the primitive type whose rule the value broke (named or inlined)."""
    schema_path = [str(step) for step in error.schema_path]
    if len(schema_path) == 3 and schema_path[0] == "definitions" and schema_path[1][:1].islower():
        return schema_path[1]
    node = _schema_node(error, drop_last=1)
    if not isinstance(node, dict) or "properties" in node or "enum" in node:
        return None
    name = schema.type_of(node)
    return name if name[:1].islower() else None


def _shown(value: Any) -> str:
    if isinstance(value, str):
        text = value if len(value) <= 80 else value[:77] + "..."
        return f"'{text}'"
    text = json_text.dumps(value).decode()
    return text if len(text) <= 80 else text[:77] + "..."


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
    if isinstance(value, bool):
        return "a JSON boolean"
    kinds = {dict: "object", str: "string", int: "number", float: "number"}
    return f"a JSON {kinds.get(type(value), type(value).__name__)}"
