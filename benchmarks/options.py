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
    rate: float | None = None  # subscriptions: writes per second (default 1,000)

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

    def search_patients(self) -> int:
        """Return the search data size: given, else 400 (quick, ~5k resources) or 90,000
        (about 1.02 million resources)."""
        if self.patients is not None:
            return self.patients
        return 400 if self.quick else 90_000

    def search_clients(self) -> int:
        """Return the concurrent clients of each named search: given, else 20."""
        return self.clients if self.clients is not None else 20

    def search_mix_clients(self) -> int:
        """Return the concurrent clients of the search mix: given, else 30."""
        return self.clients if self.clients is not None else 30

    def search_duration(self) -> float:
        """Return the seconds each named search is timed: given, else 3 (quick) or 10."""
        if self.duration is not None:
            return self.duration
        return 3.0 if self.quick else 10.0

    def search_mix_duration(self) -> float:
        """Return the seconds the search mix is timed: given, else 10 (quick) or 60."""
        if self.duration is not None:
            return self.duration
        return 10.0 if self.quick else 60.0
