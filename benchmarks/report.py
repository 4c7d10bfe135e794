"""Result tables: figure | ours | baseline (same run) | ratio, printed and saved as JSON."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from benchmarks.measure import LatencySummary
from benchmarks.options import CACHE_DIR

FAIRNESS_NOTE = (
    "Bevan ran with bearer-token auth and R4 schema validation on for every request; "
    "server and load generator shared the machine's 2 cores. Published servers had 8 CPUs "
    "each plus an 8-CPU PostgreSQL, mostly with auth off."
)


@dataclass(frozen=True)
class Figure:
    """One row: what was measured, our value, the baseline value, and ours / baseline."""

    name: str
    ours: str
    baseline: str
    ratio: float | None = None


@dataclass(frozen=True)
class ScenarioResult:
    scenario: str
    title: str
    figures: list[Figure]
    published: str
    target: str
    settings: dict[str, Any]
    details: dict[str, Any] = field(default_factory=dict)
    refusals: list[str] = field(default_factory=list)
    server_log_problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def table(self) -> str:
        """Return the result as a Markdown table followed by anchors, target and notes."""
        rows = [("figure", "ours", "baseline (same run)", "ratio")]
        rows += [
            (f.name, f.ours, f.baseline, "" if f.ratio is None else f"{f.ratio:.3f}")
            for f in self.figures
        ]
        widths = [max(len(row[i]) for row in rows) for i in range(4)]

        def line(cells: tuple[str, ...]) -> str:
            return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

        out = [f"## {self.title}", "", line(rows[0])]
        out.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
        out += [line(row) for row in rows[1:]]
        out += ["", f"Published: {self.published}", f"Target: {self.target}", FAIRNESS_NOTE]
        if self.notes:
            out += ["", *self.notes]
        if self.refusals:
            out += ["", "Non-2xx answers during the run:", *(f"  {r}" for r in self.refusals)]
        if self.server_log_problems:
            out += ["", "Server log problems:", *(f"  {p}" for p in self.server_log_problems[:20])]
        return "\n".join(out)

    def write_json(self) -> Path:
        """Write the result to benchmarks/.cache/results-<scenario>.json; return the path."""
        CACHE_DIR.mkdir(parents=True, exist_ok=True)
        path = CACHE_DIR / f"results-{self.scenario}.json"
        document = {
            "scenario": self.scenario,
            "title": self.title,
            "settings": self.settings,
            "figures": [
                {"figure": f.name, "ours": f.ours, "baseline": f.baseline, "ratio": f.ratio}
                for f in self.figures
            ],
            "details": self.details,
            "published": self.published,
            "target": self.target,
            "note": FAIRNESS_NOTE,
            "refusals": self.refusals,
            "server_log_problems": self.server_log_problems,
            "notes": self.notes,
        }
        path.write_bytes(orjson.dumps(document, option=orjson.OPT_INDENT_2))
        return path


def rate(value: float) -> str:
    return f"{value:,.0f}"


def ratio(ours: float, baseline: float) -> float | None:
    return ours / baseline if baseline else None


def latency_cell(summary: LatencySummary) -> str:
    """Return 'p50 / p95 / p99 ms' with enough decimals for sub-millisecond baselines."""
    digits = 1 if summary.p99_ms >= 10 else 2 if summary.p99_ms >= 0.1 else 3
    values = (summary.p50_ms, summary.p95_ms, summary.p99_ms)
    return " / ".join(f"{v:.{digits}f}" for v in values)
