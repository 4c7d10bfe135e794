"""How one patient's resources are named and point at each other.

Every resource carries a stable id (UUID5 of seed, patient index and a kind). Standalone
resources (NDJSON, the generator's output) refer to each other as Type/id; inside a
transaction Bundle they refer to fullUrls, urn:uuid:<id>, and the server assigns ids.
Shared resources (practices, trusts, staff, sites) are always Type/id.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from bevan.synth.seeds import stable_uuid


@dataclass(frozen=True, slots=True)
class RecordContext:
    """What every builder of one patient's resources needs to agree on."""

    seed: int
    index: int
    transaction: bool
    as_at: datetime
    patient_id: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "patient_id", self.new_id("Patient"))

    @property
    def today(self) -> date:
        return self.as_at.date()

    def new_id(self, kind: str) -> str:
        """Return the stable id of this patient's resource named by kind."""
        return stable_uuid(self.seed, self.index, kind)

    def ref(self, resource_type: str, id_: str) -> dict[str, Any]:
        """Return a Reference to one of this patient's own resources."""
        if self.transaction:
            return {"reference": f"urn:uuid:{id_}"}
        return {"reference": f"{resource_type}/{id_}"}

    @property
    def patient(self) -> dict[str, Any]:
        return self.ref("Patient", self.patient_id)


def shared_ref(resource_type: str, id_: str) -> dict[str, Any]:
    """Return a Reference to a shared resource (always Type/id)."""
    return {"reference": f"{resource_type}/{id_}"}


def instant(moment: datetime) -> str:
    """Return a FHIR instant/dateTime in UTC with seconds, e.g. 2025-06-01T08:00:00Z."""
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
