"""The settings one benchmark run is given on the command line."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
CACHE_DIR = REPO_ROOT / "benchmarks" / ".cache"


@dataclass(frozen=True)
class RunOptions:
    quick: bool = False
    workers: int = 1
    duration: float | None = None
    clients: int | None = None
    database: str | None = None
    patients: int | None = None
    seed: int = 1948
    source: str = "synth"

    def crud_duration(self) -> float:
        """Return the timed CRUD duration in seconds: given, else 10 (quick) or 60."""
        if self.duration is not None:
            return self.duration
        return 10.0 if self.quick else 60.0

    def crud_clients(self) -> int:
        return self.clients if self.clients is not None else 50

    def import_clients(self) -> int:
        return self.clients if self.clients is not None else 20

    def import_patients(self) -> int:
        """Return how many patient bundles to import: given, else a default for the source."""
        if self.patients is not None:
            return self.patients
        if self.source == "synthea":
            return 14 if self.quick else 100
        return 200 if self.quick else 1000
