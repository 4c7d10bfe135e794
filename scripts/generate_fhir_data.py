"""Generate the compact FHIR R4 facts Bevan needs at run time from ../shared/fhir-r4.

Writes into src/bevan/fhir/data/:
- r4.schema.json: the official R4 JSON Schema reduced to R4 definitions only (the shipped
  file also carries one vendor's own resource types), with descriptions removed and its
  two dangling references (`Resource`, `integer64`) made whole.
- search_parameters.json: for every R4 SearchParameter, its code, type, bases, FHIRPath
  expression and targets (facts only).
- compartments.json: for each compartment (Patient, Encounter, ...), the parameters that
  put a resource of each type in it.
- cardinality.json: from the StructureDefinitions (profiles-resources.json,
  profiles-types.json), for each resource and complex data type, the elements the
  validator must look at: {path: [min, max, [types]]} for every element that is required
  or that leads to one that is (a backbone element, a data type with required parts, a
  contentReference written "#Type.path"). Extensions are left out: the validator checks
  every `extension` it meets, wherever it is.

Run: python scripts/generate_fhir_data.py [--shared ../shared]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "src" / "bevan" / "fhir" / "data"


def r4_resource_types(schema: dict[str, Any]) -> list[str]:
    """Return the R4 resource type names from the schema's discriminator.

    The mapping lists the R4 types in alphabetical order and then appends the vendor's
    own; the R4 block ends where alphabetical order breaks.
    """
    names = list(schema["discriminator"]["mapping"])
    r4: list[str] = []
    for name in names:
        if r4 and name < r4[-1]:
            break
        r4.append(name)
    return r4


def strip_descriptions(node: Any) -> Any:
    if isinstance(node, dict):
        return {
            key: strip_descriptions(value)
            for key, value in node.items()
            if not (key == "description" and isinstance(value, str))
        }
    if isinstance(node, list):
        return [strip_descriptions(item) for item in node]
    return node


def referenced_definitions(definitions: dict[str, Any], roots: list[str]) -> set[str]:
    """Return the names of every definition reachable from roots through $ref."""
    seen: set[str] = set()
    stack = list(roots)
    while stack:
        name = stack.pop()
        if name in seen or name not in definitions:
            continue
        seen.add(name)
        text = json.dumps(definitions[name])
        marker = '"#/definitions/'
        start = 0
        while (index := text.find(marker, start)) != -1:
            end = text.index('"', index + len(marker))
            stack.append(text[index + len(marker) : end])
            start = end
    return seen


def build_schema(shared: Path) -> tuple[dict[str, Any], list[str]]:
    schema = json.loads((shared / "fhir-r4" / "fhir.schema.json").read_text())
    types = r4_resource_types(schema)
    definitions = schema["definitions"]
    definitions["ResourceList"] = {"oneOf": [{"$ref": f"#/definitions/{t}"} for t in types]}
    # `contained` points at an abstract Resource the file never defines: any R4 resource.
    definitions["Resource"] = {"$ref": "#/definitions/ResourceList"}
    keep = referenced_definitions(definitions, [*types, "ResourceList", "Resource"])
    reduced = {
        "$schema": schema["$schema"],
        "definitions": {name: strip_descriptions(definitions[name]) for name in sorted(keep)},
    }
    return reduced, types


def build_search_parameters(shared: Path) -> list[dict[str, Any]]:
    bundle = json.loads((shared / "fhir-r4" / "search-parameters.json").read_text())
    rows = []
    for entry in bundle["entry"]:
        resource = entry["resource"]
        row = {
            "code": resource["code"],
            "type": resource["type"],
            "base": resource["base"],
            "expression": resource.get("expression"),
        }
        if resource.get("target"):
            row["target"] = resource["target"]
        if resource.get("component"):
            row["component"] = [
                {"definition": c["definition"], "expression": c["expression"]}
                for c in resource["component"]
            ]
        row["url"] = resource["url"]
        rows.append(row)
    return rows


def build_compartments(shared: Path) -> dict[str, dict[str, list[str]]]:
    """Return {compartment type: {resource type: [search parameter codes]}}."""
    out: dict[str, dict[str, list[str]]] = {}
    for path in sorted((shared / "fhir-r4").glob("CompartmentDefinition-*.json")):
        definition = json.loads(path.read_text())
        out[definition["code"]] = {
            item["code"]: item["param"] for item in definition["resource"] if item.get("param")
        }
    return out


_SYSTEM_TYPE = "http://hl7.org/fhirpath/System."
_EXTENSIONS = ("extension", "modifierExtension")


def _element_rows(definition: dict[str, Any]) -> dict[str, tuple[int, str, list[str]]]:
    """Return {path below the type: (min, max, types)} from a snapshot."""
    rows: dict[str, tuple[int, str, list[str]]] = {}
    root = definition["type"]
    for element in definition["snapshot"]["element"]:
        path = element["path"]
        if path == root:
            continue
        relative = path[len(root) + 1 :]
        if relative.rsplit(".", 1)[-1] in _EXTENSIONS or relative == "id":
            continue
        if "contentReference" in element:
            types = [element["contentReference"]]
        else:
            types = [t["code"] for t in element.get("type", [])]
            types = ["string" if t.startswith(_SYSTEM_TYPE) else t for t in types]
        rows[relative] = (int(element["min"]), str(element["max"]), types)
    return rows


def build_cardinality(shared: Path) -> dict[str, dict[str, list[Any]]]:
    """Return, per resource and complex data type, the rows the validator walks."""
    all_rows: dict[str, dict[str, tuple[int, str, list[str]]]] = {}
    for name in ("profiles-types.json", "profiles-resources.json"):
        bundle = json.loads((shared / "fhir-r4" / name).read_text())
        for entry in bundle["entry"]:
            definition = entry["resource"]
            if definition.get("resourceType") != "StructureDefinition":
                continue
            if definition["kind"] not in ("resource", "complex-type"):
                continue
            if definition.get("derivation") == "constraint" or definition.get("abstract"):
                continue
            all_rows[definition["type"]] = _element_rows(definition)

    def kept_paths(rows: dict[str, tuple[int, str, list[str]]], walked: set[str]) -> set[str]:
        keep = {p for p, (low, _, types) in rows.items() if low > 0 or set(types) & walked}
        # A contentReference leads wherever its target does; a backbone element is kept
        # when anything below it is, and so are its ancestors.
        changed = True
        while changed:
            changed = False
            for path, (_, _, types) in rows.items():
                if path in keep:
                    continue
                target = types[0][1:].split(".", 1)[1] if types and types[0][:1] == "#" else None
                below = any(k.startswith(path + ".") for k in keep)
                if below or (target is not None and target in keep):
                    keep.add(path)
                    changed = True
        for path in list(keep):
            parts = path.split(".")
            keep.update(".".join(parts[:i]) for i in range(1, len(parts)))
        return keep

    # A data type is walked when it has required parts, directly or through another type.
    walked: set[str] = set()
    while True:
        found = {t for t, rows in all_rows.items() if t[:1].isupper() and kept_paths(rows, walked)}
        found -= {t for t in found if t[:1].islower()}
        if found == walked:
            break
        walked = found
    walked.add("Resource")  # contained and Bundle resources are validated by their own type
    out: dict[str, dict[str, list[Any]]] = {}
    for type_name, rows in all_rows.items():
        keep = kept_paths(rows, walked)
        if keep:
            out[type_name] = {p: list(rows[p]) for p in rows if p in keep}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    schema, types = build_schema(args.shared)
    (OUT / "r4.schema.json").write_text(json.dumps(schema, separators=(",", ":"), sort_keys=True))
    (OUT / "resource_types.json").write_text(json.dumps(types, indent=0) + "\n")
    params = build_search_parameters(args.shared)
    (OUT / "search_parameters.json").write_text(
        json.dumps(params, separators=(",", ":"), sort_keys=True)
    )
    compartments = build_compartments(args.shared)
    (OUT / "compartments.json").write_text(
        json.dumps(compartments, indent=1, sort_keys=True) + "\n"
    )
    cardinality = build_cardinality(args.shared)
    (OUT / "cardinality.json").write_text(
        json.dumps(cardinality, separators=(",", ":"), sort_keys=True)
    )
    print(
        f"{len(types)} resource types, {len(schema['definitions'])} definitions, "
        f"{len(params)} search parameters -> {OUT}"
    )


if __name__ == "__main__":
    main()
