"""Latency samples per operation, their percentiles, and the refusals seen under load."""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass
from typing import Any

import orjson


@dataclass(frozen=True)
class LatencySummary:
    count: int
    mean_ms: float
    p50_ms: float
    p95_ms: float
    p99_ms: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def percentile(ordered: list[float], fraction: float) -> float:
    """Return the nearest-rank percentile of already sorted samples (0.0 if there are none)."""
    if not ordered:
        return 0.0
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


class Latencies:
    """Seconds taken by each request, kept per operation name (create, read, ...)."""

    def __init__(self) -> None:
        self._samples: defaultdict[str, list[float]] = defaultdict(list)

    def add(self, operation: str, seconds: float) -> None:
        self._samples[operation].append(seconds)

    def count(self, operation: str | None = None) -> int:
        if operation is not None:
            return len(self._samples.get(operation, ()))
        return sum(len(samples) for samples in self._samples.values())

    def seconds(self) -> float:
        """Return the summed duration of every sample."""
        return sum(sum(samples) for samples in self._samples.values())

    def samples(self, operation: str) -> list[float]:
        return list(self._samples.get(operation, ()))

    def operations(self) -> list[str]:
        return list(self._samples)

    def summary(self, operation: str) -> LatencySummary:
        """Return count, mean and p50/p95/p99 in milliseconds for one operation."""
        ordered = sorted(self._samples.get(operation, ()))
        mean = sum(ordered) / len(ordered) if ordered else 0.0
        return LatencySummary(
            count=len(ordered),
            mean_ms=mean * 1000,
            p50_ms=percentile(ordered, 0.50) * 1000,
            p95_ms=percentile(ordered, 0.95) * 1000,
            p99_ms=percentile(ordered, 0.99) * 1000,
        )


def outcome_text(body: bytes) -> str:
    """Return the diagnostics of an OperationOutcome body, else the start of the body."""
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body[:300].decode(errors="replace")
    if isinstance(parsed, dict) and parsed.get("resourceType") == "OperationOutcome":
        texts = [
            f"{issue.get('code', '?')}: {issue.get('diagnostics', '')}"
            + (f" at {', '.join(issue['expression'])}" if issue.get("expression") else "")
            for issue in parsed.get("issue", [])
        ]
        return "; ".join(texts)
    return body[:300].decode(errors="replace")


class Refusals:
    """Non-2xx answers: counted by (request, status), with the first OperationOutcome of each."""

    def __init__(self) -> None:
        self.counts: Counter[tuple[str, int]] = Counter()
        self.examples: dict[tuple[str, int], str] = {}

    def add(self, request: str, status: int, body: bytes) -> None:
        key = (request, status)
        self.counts[key] += 1
        if key not in self.examples:
            self.examples[key] = outcome_text(body)

    def add_failure(self, request: str, error: BaseException) -> None:
        """Count a request that got no HTTP answer at all (status 0)."""
        key = (request, 0)
        self.counts[key] += 1
        self.examples.setdefault(key, f"{type(error).__name__}: {error}")

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def lines(self) -> list[str]:
        """Return one line per (request, status): count and the first OperationOutcome text."""
        return [
            f"{count} x {request} -> {status or 'no answer'}: {self.examples[(request, status)]}"
            for (request, status), count in self.counts.most_common()
        ]
