"""Operation parameters: a Parameters resource read as (name, value) pairs, as a query is."""

from __future__ import annotations

from typing import Any

from bevan.fhir.errors import InvalidRequest, Issue

# value[x] types whose value a query string could carry as text.
_PRIMITIVES = frozenset(
    {
        "valueBase64Binary",
        "valueBoolean",
        "valueCanonical",
        "valueCode",
        "valueDate",
        "valueDateTime",
        "valueDecimal",
        "valueId",
        "valueInstant",
        "valueInteger",
        "valueMarkdown",
        "valueOid",
        "valuePositiveInt",
        "valueString",
        "valueTime",
        "valueUnsignedInt",
        "valueUri",
        "valueUrl",
        "valueUuid",
    }
)


def parameter_pairs(body: Any) -> list[tuple[str, Any]]:
    """Return a Parameters resource's parameters as (name, value) pairs, in order.

    A primitive value comes as the text a query string would carry ("true", "3"); a
    resource as its JSON object; any other value[x] (a Meta, a Coding) as its JSON
    object. Raises InvalidRequest, naming the place, for anything else.
    """
    if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
        raise InvalidRequest(
            Issue(
                "an operation's body must be a Parameters resource",
                expression=("Parameters",),
            )
        )
    parameters = body.get("parameter", [])
    if not isinstance(parameters, list):
        raise InvalidRequest(
            Issue("Parameters.parameter must be a list", expression=("Parameters.parameter",))
        )
    pairs: list[tuple[str, Any]] = []
    for index, parameter in enumerate(parameters):
        where = f"Parameters.parameter[{index}]"
        name = parameter.get("name") if isinstance(parameter, dict) else None
        if not isinstance(name, str) or not name:
            raise InvalidRequest(
                Issue(
                    "every parameter needs a name", code="required", expression=(f"{where}.name",)
                )
            )
        values = [key for key in parameter if key.startswith("value")]
        if "resource" in parameter:
            pairs.append((name, parameter["resource"]))
        elif len(values) == 1:
            key = values[0]
            pairs.append((name, _text(parameter[key]) if key in _PRIMITIVES else parameter[key]))
        else:
            raise InvalidRequest(
                Issue(
                    f"parameter {name!r} needs exactly one value[x] or a resource",
                    expression=(where,),
                )
            )
    return pairs


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
