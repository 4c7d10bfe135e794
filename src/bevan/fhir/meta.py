"""A resource's meta: its tags, security labels and profiles, added to and taken away."""

from __future__ import annotations

from typing import Any

from bevan.fhir.errors import InvalidRequest, Issue

# The parts of meta that $meta, $meta-add and $meta-delete work on.
CODED = ("tag", "security")
PARTS = (*CODED, "profile")


def meta_parts(meta: Any, where: str = "Meta") -> dict[str, list[Any]]:
    """Return the tags, security labels and profiles of a Meta, checked for shape."""
    if not isinstance(meta, dict):
        raise InvalidRequest(Issue("a meta must be a JSON object (a Meta)", expression=(where,)))
    parts: dict[str, list[Any]] = {}
    for part in PARTS:
        values = meta.get(part, [])
        if not isinstance(values, list):
            raise InvalidRequest(
                Issue(f"meta.{part} must be a list", expression=(f"{where}.{part}",))
            )
        for index, value in enumerate(values):
            wrong = not isinstance(value, str) if part == "profile" else not isinstance(value, dict)
            if wrong:
                kind = "a canonical URL" if part == "profile" else "a Coding"
                raise InvalidRequest(
                    Issue(
                        f"each meta.{part} must be {kind}",
                        expression=(f"{where}.{part}[{index}]",),
                    )
                )
        parts[part] = values
    return parts


def _key(part: str, value: Any) -> Any:
    if part == "profile":
        return value
    return (value.get("system"), value.get("code"))


def with_meta_added(meta: dict[str, Any], extra: dict[str, list[Any]]) -> dict[str, Any]:
    """Return meta with extra's tags, security labels and profiles added (each once)."""
    out = dict(meta)
    for part in PARTS:
        current = list(meta.get(part, []))
        seen = {_key(part, v) for v in current}
        for value in extra.get(part, []):
            if _key(part, value) not in seen:
                seen.add(_key(part, value))
                current.append(value)
        if current:
            out[part] = current
    return out


def with_meta_removed(meta: dict[str, Any], gone: dict[str, list[Any]]) -> dict[str, Any]:
    """Return meta without gone's tags, security labels and profiles (matched on system
    and code, or the profile's URL)."""
    out = dict(meta)
    for part in PARTS:
        remove = {_key(part, v) for v in gone.get(part, [])}
        kept = [v for v in meta.get(part, []) if _key(part, v) not in remove]
        if kept:
            out[part] = kept
        else:
            out.pop(part, None)
    return out


def meta_summary(meta: dict[str, Any]) -> dict[str, Any]:
    """Return the Meta $meta answers with: the tags, security labels and profiles alone."""
    return {part: meta[part] for part in PARTS if meta.get(part)}
