"""Generate src/bevan/fhir/data/summary_elements.json: for each R4 resource type, the
top-level JSON elements that `_summary=true` keeps (the "isSummary" flags).

The R4 JSON Schema carries no summary flags, so they are read from the element
definitions packaged by `fhir.resources` (its R4B models; R4B kept R4's summary flags for
the resources both have). For the few R4 types R4B lacks, the schema's required elements
plus id, meta and implicitRules are used. Needs `pip install "fhir.resources==8.*"` in the
environment that runs it (not a dependency of Bevan itself).

Run: python scripts/generate_summary_elements.py
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "src" / "bevan" / "fhir" / "data"
ALWAYS = ["id", "meta", "implicitRules"]


def main() -> None:
    types = json.loads((DATA / "resource_types.json").read_text())
    schema = json.loads((DATA / "r4.schema.json").read_text())["definitions"]
    table: dict[str, list[str]] = {}
    fallback = []
    for name in types:
        try:
            module = importlib.import_module(f"fhir.resources.R4B.{name.lower()}")
            model = getattr(module, name)
        except (ImportError, AttributeError):
            required = schema[name].get("required", [])
            table[name] = sorted(set(ALWAYS + [r for r in required if r != "resourceType"]))
            fallback.append(name)
            continue
        known = set(schema[name]["properties"])
        summary = {
            field.alias or key
            for key, field in model.model_fields.items()
            if (field.json_schema_extra or {}).get("summary_element_property")
        }
        table[name] = sorted((summary | set(ALWAYS)) & known)
    (DATA / "summary_elements.json").write_text(json.dumps(table, indent=0, sort_keys=True) + "\n")
    print(
        f"{len(table)} types; from the schema's required elements: {', '.join(fallback) or 'none'}"
    )


if __name__ == "__main__":
    main()
