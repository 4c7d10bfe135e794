"""FHIRPath expressions of SearchParameters compiled to JSON paths, once, at start-up.

The official expressions use a small part of FHIRPath: member access, unions (`|`),
`as` / `.as()` / `.ofType()` to pick a choice type, `.where(resolve() is Type)` to keep
references to one type, `.where(child = 'literal')`, and a first-item index `[0]`.
Each part is resolved against the R4 schema, so a choice element such as
`Observation.effective` becomes the JSON keys effectiveDateTime, effectivePeriod, ...
with their types known. Expressions outside this subset are reported as not compiled.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from bevan.fhir.schema import definitions, element_types, is_resource_list


@dataclass(frozen=True)
class Step:
    """One member access: the JSON keys that may hold it, each with its FHIR type."""

    keys: tuple[tuple[str, str], ...]  # (json key, FHIR type)
    index: int | None = None  # [n]: keep only the nth item
    where_equals: tuple[str, str] | None = None  # .where(child = 'literal')
    reference_type: str | None = None  # .where(resolve() is Type)


@dataclass(frozen=True)
class CompiledPath:
    """A path from a resource root to the values of one expression part."""

    root: str
    steps: tuple[Step, ...]


class NotCompiled(ValueError):
    """The expression uses FHIRPath outside the subset compiled here."""


_AS_SUFFIX = re.compile(r"^\((?P<inner>.+) as (?P<type>\w+)\)(?P<rest>(\.\w+)*)$")
_TOKEN = re.compile(
    r"\.(?:where\(resolve\(\) is (?P<resolve>\w+)\)"
    r"|where\((?P<field>\w+)\s*=\s*'(?P<literal>[^']*)'\)"
    r"|as\((?P<as>\w+)\)|ofType\((?P<oftype>\w+)\)"
    r"|(?P<name>\w+)(?:\[(?P<index>\d+)\])?)"
)


def split_union(expression: str) -> list[str]:
    """Split an expression on top-level `|` (not inside parentheses or quotes)."""
    parts, depth, quoted, current = [], 0, False, ""
    for char in expression:
        if char == "'":
            quoted = not quoted
        elif not quoted and char == "(":
            depth += 1
        elif not quoted and char == ")":
            depth -= 1
        if char == "|" and depth == 0 and not quoted:
            parts.append(current.strip())
            current = ""
        else:
            current += char
    parts.append(current.strip())
    return [p for p in parts if p]


def compile_part(part: str, root_type: str) -> CompiledPath | None:
    """Return the compiled path for one union part if it starts at root_type, else None.

    Raises NotCompiled for shapes outside the subset.
    """
    match = _AS_SUFFIX.match(part)
    if match:  # (A.b as T).c -> A.b.as(T).c
        part = f"{match['inner']}.as({match['type']}){match['rest']}"
    head, dot, rest = part.partition(".")
    if head[:1].islower() and head.isidentifier():  # a bare element name: relative to the root
        head, dot, rest = root_type, ".", part
    if head != root_type:
        if head[:1].isupper():
            return None  # a part for another resource type
        raise NotCompiled(part)
    return CompiledPath(root_type, _compile_steps(root_type, "." + rest if dot else "", part))


def compile_relative(expression: str, context_type: str) -> tuple[CompiledPath, ...]:
    """Compile a composite component's expression, relative to an element of context_type."""
    paths = []
    for part in split_union(expression):
        match = _AS_SUFFIX.match(f"({part})") if " as " in part else None
        if match:
            part = f"{match['inner']}.as({match['type']}){match['rest']}"
        paths.append(CompiledPath(context_type, _compile_steps(context_type, "." + part, part)))
    return tuple(paths)


def _compile_steps(root_type: str, text: str, whole: str) -> tuple[Step, ...]:
    steps: list[Step] = []
    types = {root_type}
    position = 0
    while position < len(text):
        token = _TOKEN.match(text, position)
        if token is None:
            raise NotCompiled(whole)
        position = token.end()
        if token["name"]:
            keys = _member(types, token["name"])
            if not keys:
                raise NotCompiled(whole)
            index = int(token["index"]) if token["index"] is not None else None
            steps.append(Step(keys, index))
            types = {t for _, t in keys}
        elif token["as"] or token["oftype"]:
            wanted = token["as"] or token["oftype"]
            if not steps:
                raise NotCompiled(whole)
            last = steps[-1]
            keys = tuple((k, t) for k, t in last.keys if t.lower() == wanted.lower())
            if not keys:
                raise NotCompiled(whole)
            steps[-1] = Step(keys, last.index, last.where_equals, last.reference_type)
            types = {t for _, t in keys}
        elif token["resolve"]:
            if not steps:
                raise NotCompiled(whole)
            last = steps[-1]
            steps[-1] = Step(last.keys, last.index, last.where_equals, token["resolve"])
        else:
            if not steps:
                raise NotCompiled(whole)
            last = steps[-1]
            steps[-1] = Step(
                last.keys, last.index, (token["field"], token["literal"]), last.reference_type
            )
    return tuple(steps)


def _member(types: set[str], name: str) -> tuple[tuple[str, str], ...]:
    keys: list[tuple[str, str]] = []
    for type_name in sorted(types):
        if is_resource_list(type_name):
            continue
        elements = element_types(type_name)
        if name in elements:
            keys.append((name, elements[name]))
            continue
        # A choice element: valueQuantity, valueString, ... for `value`; the suffix names
        # the type (sourceCanonical and sourceUri share one schema, not one type).
        for key in elements:
            suffix = key[len(name) :]
            if key.startswith(name) and suffix[:1].isupper():
                keys.append((key, _type_named(suffix)))
    return tuple(dict.fromkeys(keys))


def _type_named(suffix: str) -> str:
    primitive = suffix[:1].lower() + suffix[1:]
    return primitive if primitive in definitions() else suffix


def evaluate(node: Any, steps: tuple[Step, ...]) -> list[tuple[Any, str]]:
    """Return (value, FHIR type) for every value the steps reach below node.

    A list built by one recursive walk (every write evaluates dozens of paths; a chain
    of generators, one a step, costs more for the same answer).
    """
    found: list[tuple[Any, str]] = []
    if steps:
        _walk(node, steps, 0, found)
    return found


def _walk(node: Any, steps: tuple[Step, ...], depth: int, found: list[tuple[Any, str]]) -> None:
    if not isinstance(node, dict):
        return
    step = steps[depth]
    last = depth + 1 == len(steps)
    filtered = step.where_equals is not None or step.reference_type is not None
    for key, key_type in step.keys:
        child = node.get(key)
        if child is None:
            continue
        items = child if isinstance(child, list) else (child,)
        if step.index is not None:
            items = items[step.index : step.index + 1]
        for item in items:
            if filtered and not _passes(item, step):
                continue
            if last:
                found.append((item, key_type))
            else:
                _walk(item, steps, depth + 1, found)


def _passes(item: Any, step: Step) -> bool:
    if step.where_equals is not None:
        field, literal = step.where_equals
        if not isinstance(item, dict) or item.get(field) != literal:
            return False
    return step.reference_type is None or _refers_to(item, step.reference_type)


def _refers_to(item: Any, resource_type: str) -> bool:
    if not isinstance(item, dict):
        return False
    reference = item.get("reference")
    if isinstance(reference, str):
        path = reference.split("?", 1)[0].split("/_history", 1)[0]
        parts = path.split("/")
        return len(parts) >= 2 and parts[-2] == resource_type
    return item.get("type") == resource_type
