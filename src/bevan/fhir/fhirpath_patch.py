"""FHIRPath Patch (R4 fhirpatch.html): a Parameters body applied to a resource, purely.

Paths are evaluated by a small evaluator over the subset a patch needs (element names,
indexes ``[n]``, ``where(...)`` with equality, ``first()``, ``last()``), because an
operation must know each element's parent and position, which a general FHIRPath engine
does not give back.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from typing import Any

from bevan.fhir import schema
from bevan.fhir.errors import InvalidRequest, Issue

OPERATION_TYPES = ("add", "insert", "delete", "replace", "move")
_INDEX = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)?((?:\[\d+\])*)$")
_FUNCTION = re.compile(r"^([A-Za-z]+)\((.*)\)$", re.DOTALL)


@dataclass(frozen=True)
class Node:
    """Where one element sits: its parent object, its JSON name and list position."""

    parent: dict[str, Any]
    name: str
    index: int | None
    type_name: str

    @property
    def value(self) -> Any:
        held = self.parent[self.name]
        return held if self.index is None else held[self.index]


@dataclass(frozen=True)
class Operation:
    """One `operation` parameter, read and checked."""

    where: str  # FHIRPath of the operation in the Parameters body
    type: str
    path: str
    name: str | None = None
    value: Any = None
    index: int | None = None
    source: int | None = None
    destination: int | None = None


class PatchError(Exception):
    """A path or operation that cannot be applied; the caller places it."""


def apply(resource: dict[str, Any], parameters: Any) -> dict[str, Any]:
    """Return a patched copy of resource; every bad part is an InvalidRequest naming it."""
    operations = read_operations(parameters)
    patched = copy.deepcopy(resource)
    for operation in operations:
        try:
            _apply_one(patched, operation)
        except PatchError as error:
            raise InvalidRequest(
                Issue(
                    f"the {operation.type} operation could not be applied: {error}",
                    code="processing",
                    expression=(operation.where,),
                )
            ) from None
    return patched


def read_operations(parameters: Any) -> list[Operation]:
    """Return the operations of a Parameters body, refusing any malformed part."""
    if not isinstance(parameters, dict) or parameters.get("resourceType") != "Parameters":
        raise InvalidRequest(Issue("a FHIRPath Patch body must be a Parameters resource"))
    parts = parameters.get("parameter")
    if not isinstance(parts, list) or not parts:
        raise InvalidRequest(
            Issue("a FHIRPath Patch names no operation", expression=("Parameters.parameter",))
        )
    return [_read_operation(part, f"Parameters.parameter[{i}]") for i, part in enumerate(parts)]


def _refuse(message: str, where: str) -> InvalidRequest:
    return InvalidRequest(Issue(message, expression=(where,)))


def _read_operation(part: Any, where: str) -> Operation:
    if not isinstance(part, dict) or part.get("name") != "operation":
        raise _refuse("each parameter of a FHIRPath Patch must be named 'operation'", where)
    fields: dict[str, tuple[Any, str]] = {}
    for i, sub in enumerate(part.get("part") or []):
        sub_where = f"{where}.part[{i}]"
        if not isinstance(sub, dict) or not isinstance(sub.get("name"), str):
            raise _refuse("an operation part must have a name", sub_where)
        if sub["name"] in fields:
            raise _refuse(f"the operation names {sub['name']!r} twice", sub_where)
        fields[sub["name"]] = (sub, sub_where)
    kind = _primitive(fields, "type", where, "valueCode")
    if kind not in OPERATION_TYPES:
        raise _refuse(
            f"the operation type {kind!r} is not one of {', '.join(OPERATION_TYPES)}",
            fields["type"][1],
        )
    path = _primitive(fields, "path", where, "valueString")
    allowed = {
        "add": {"type", "path", "name", "value"},
        "insert": {"type", "path", "index", "value"},
        "delete": {"type", "path"},
        "replace": {"type", "path", "value"},
        "move": {"type", "path", "source", "destination"},
    }[kind]
    for extra in sorted(set(fields) - allowed):
        raise _refuse(f"a {kind} operation takes no {extra!r} part", fields[extra][1])
    return Operation(
        where=where,
        type=kind,
        path=path,
        name=_primitive(fields, "name", where, "valueString") if "name" in allowed else None,
        value=_value(fields, where) if "value" in allowed else None,
        index=_integer(fields, "index", where) if "index" in allowed else None,
        source=_integer(fields, "source", where) if "source" in allowed else None,
        destination=_integer(fields, "destination", where) if "destination" in allowed else None,
    )


def _primitive(fields: dict[str, tuple[Any, str]], name: str, where: str, key: str) -> str:
    if name not in fields:
        raise _refuse(f"the operation has no {name!r} part", where)
    sub, sub_where = fields[name]
    value = sub.get(key, sub.get("valueString", sub.get("valueCode")))
    if not isinstance(value, str) or not value:
        raise _refuse(f"the {name!r} part must carry a {key}", sub_where)
    return value


def _integer(fields: dict[str, tuple[Any, str]], name: str, where: str) -> int:
    if name not in fields:
        raise _refuse(f"the operation has no {name!r} part", where)
    sub, sub_where = fields[name]
    value = sub.get("valueInteger")
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _refuse(f"the {name!r} part must carry a valueInteger of 0 or more", sub_where)
    return value


def _value(fields: dict[str, tuple[Any, str]], where: str) -> Any:
    if "value" not in fields:
        raise _refuse("the operation has no 'value' part", where)
    sub, sub_where = fields["value"]
    return _part_value(sub, sub_where)


def _part_value(sub: dict[str, Any], where: str) -> Any:
    values = [k for k in sub if k.startswith("value") and k[5:6].isupper()]
    if len(values) == 1 and "part" not in sub:
        return copy.deepcopy(sub[values[0]])
    if "resource" in sub and not values and "part" not in sub:
        return copy.deepcopy(sub["resource"])
    if isinstance(sub.get("part"), list) and not values:
        built: dict[str, Any] = {}
        for i, child in enumerate(sub["part"]):
            child_where = f"{where}.part[{i}]"
            if not isinstance(child, dict) or not isinstance(child.get("name"), str):
                raise _refuse("a value part must have a name", child_where)
            value = _part_value(child, child_where)
            name = child["name"]
            if name in built:
                built[name] = [*_as_list(built[name]), value]
            else:
                built[name] = value
        return built
    raise _refuse("the 'value' part must carry exactly one value[x], or parts", where)


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


# -- applying -------------------------------------------------------------------------


def _apply_one(resource: dict[str, Any], operation: Operation) -> None:
    if operation.type == "add":
        _add(resource, operation)
    elif operation.type == "insert":
        _insert(resource, operation)
    elif operation.type == "delete":
        _delete(resource, operation)
    elif operation.type == "replace":
        _replace(resource, operation)
    else:
        _move(resource, operation)


def _one(nodes: list[Node], path: str) -> Node:
    if len(nodes) != 1:
        raise PatchError(f"the path {path!r} matches {len(nodes)} elements, not one")
    return nodes[0]


def _add(resource: dict[str, Any], operation: Operation) -> None:
    target = _one(evaluate(resource, operation.path), operation.path)
    holder = target.value
    name = operation.name or ""
    if not isinstance(holder, dict):
        raise PatchError(f"the path {operation.path!r} is a primitive; nothing can be added to it")
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", name):
        raise PatchError(f"{name!r} is not an element name")
    if _is_list(target.type_name, name):
        existing = holder.get(name)
        holder[name] = (
            [*_as_list(existing), operation.value] if existing is not None else [operation.value]
        )
    elif name in holder:
        raise PatchError(f"{name!r} holds one value and already has it; use replace")
    else:
        holder[name] = operation.value


def _list_at(resource: dict[str, Any], path: str) -> tuple[dict[str, Any], str]:
    # insert and move act on a list: the path's last step names it and the rest its owner
    steps = _split(path)
    last_step = steps[-1]
    if len(steps) < 2 or not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", last_step):
        raise PatchError(f"the path {path!r} must end in the name of a list element")
    owner = _one(_evaluate_steps(resource, steps[:-1], path), ".".join(steps[:-1]))
    holder = owner.value
    if not isinstance(holder, dict):
        raise PatchError(f"the path {path!r} does not lead into an element")
    if not _is_list(owner.type_name, last_step) and last_step in schema.element_types(
        owner.type_name
    ):
        raise PatchError(f"{last_step!r} is not a list")
    return holder, last_step


def _insert(resource: dict[str, Any], operation: Operation) -> None:
    holder, name = _list_at(resource, operation.path)
    items = list(_as_list(holder.get(name, [])))
    index = operation.index or 0
    if index > len(items):
        raise PatchError(f"index {index} is past the end of a list of {len(items)}")
    items.insert(index, operation.value)
    holder[name] = items


def _move(resource: dict[str, Any], operation: Operation) -> None:
    holder, name = _list_at(resource, operation.path)
    items = list(_as_list(holder.get(name, [])))
    source, destination = operation.source or 0, operation.destination or 0
    if source >= len(items):
        raise PatchError(f"source {source} is past the end of a list of {len(items)}")
    moved = items.pop(source)
    if destination > len(items):
        raise PatchError(f"destination {destination} is past the end of the list")
    items.insert(destination, moved)
    holder[name] = items


def _delete(resource: dict[str, Any], operation: Operation) -> None:
    nodes = evaluate(resource, operation.path)
    if not nodes:
        return  # the specification makes deleting nothing a success
    node = _one(nodes, operation.path)
    if node.index is None:
        del node.parent[node.name]
        return
    items = node.parent[node.name]
    del items[node.index]
    if not items:
        del node.parent[node.name]


def _replace(resource: dict[str, Any], operation: Operation) -> None:
    node = _one(evaluate(resource, operation.path), operation.path)
    if node.index is None:
        node.parent[node.name] = operation.value
    else:
        node.parent[node.name][node.index] = operation.value


def _is_list(type_name: str, name: str) -> bool:
    properties = schema.definitions().get(type_name, {}).get("properties", {})
    return "items" in properties.get(name, {})


# -- the path subset ------------------------------------------------------------------


def evaluate(resource: dict[str, Any], path: str) -> list[Node]:
    """Return the elements path selects in resource, each with its parent and position."""
    return _evaluate_steps(resource, _split(path), path)


def _evaluate_steps(resource: dict[str, Any], steps: list[str], path: str) -> list[Node]:
    if not steps or steps[0] != resource.get("resourceType"):
        raise PatchError(f"the path {path!r} must start with {resource.get('resourceType')}")
    root = Node({"": resource}, "", None, str(resource["resourceType"]))
    nodes = [root]
    for step in steps[1:]:
        nodes = _step(nodes, step, path)
    return nodes


def _split(path: str) -> list[str]:
    steps, depth, quoted, start = [], 0, False, 0
    for i, char in enumerate(path):
        if char == "'" and (i == 0 or path[i - 1] != "\\"):
            quoted = not quoted
        elif quoted:
            continue
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == "." and depth == 0:
            steps.append(path[start:i].strip())
            start = i + 1
    steps.append(path[start:].strip())
    if quoted or depth != 0 or any(not s for s in steps):
        raise PatchError(f"{path!r} is not a FHIRPath this server can apply")
    return steps


def _step(nodes: list[Node], step: str, path: str) -> list[Node]:
    function = _FUNCTION.match(step)
    if function:
        name, argument = function.group(1), function.group(2).strip()
        if name == "first" and not argument:
            return nodes[:1]
        if name == "last" and not argument:
            return nodes[-1:]
        if name == "where" and argument:
            return [n for n in nodes if _holds(n, argument, path)]
        raise PatchError(f"{step!r} in {path!r} is not supported (only where, first, last)")
    match = _INDEX.match(step)
    if not match:
        raise PatchError(f"{step!r} in {path!r} is not an element name or index")
    name, indexes = match.group(1), [int(i) for i in re.findall(r"\d+", match.group(2))]
    found = _children(nodes, name) if name else nodes
    for index in indexes:
        found = found[index : index + 1]
    return found


def _children(nodes: list[Node], name: str) -> list[Node]:
    found: list[Node] = []
    for node in nodes:
        value = node.value
        if not isinstance(value, dict):
            continue
        types = schema.element_types(node.type_name)
        # A choice element (value[x]) is named without its type in FHIRPath
        keys = (
            [name]
            if name in value
            else [k for k in value if k.startswith(name) and k[len(name) : len(name) + 1].isupper()]
        )
        for key in keys:
            held = value[key]
            type_name = types.get(key, key[len(name) :] if key != name else "Element")
            if isinstance(held, list):
                found.extend(Node(value, key, i, type_name) for i in range(len(held)))
            else:
                found.append(Node(value, key, None, type_name))
    return found


def _holds(node: Node, condition: str, path: str) -> bool:
    left, operator, right = _comparison(condition, path)
    literal = _literal(right.strip(), path)
    # the left side is evaluated from the element itself, as FHIRPath's $this is
    current = [Node({"": node.value}, "", None, node.type_name)]
    for step in _split(left.strip()):
        current = _step(current, step, path)
    values = [n.value for n in current]
    equal = literal in values
    return equal if operator == "=" else not equal


def _comparison(condition: str, path: str) -> tuple[str, str, str]:
    match = re.fullmatch(r"(.+?)\s*(!=|=)\s*(.+)", condition, re.DOTALL)
    if not match:
        raise PatchError(f"where({condition}) in {path!r} must compare an element with '=' ")
    return match.group(1), match.group(2), match.group(3)


def _literal(text: str, path: str) -> Any:
    if len(text) >= 2 and text[0] == text[-1] == "'":
        return text[1:-1].replace("\\'", "'")
    if text in ("true", "false"):
        return text == "true"
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        raise PatchError(f"{text!r} in {path!r} is not a literal this server compares") from None
