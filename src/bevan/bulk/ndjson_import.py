"""$import: uploaded NDJSON files loaded through the record's loader, with a report of
what each file stored and which of its lines were refused, and why."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from bevan.bulk.jobs import JobRun
from bevan.records.loader import load_files
from bevan.records.service import RecordService


@dataclass(frozen=True)
class UploadedFile:
    name: str  # as the client named it
    path: Path  # where it was written in the job's directory


@dataclass(frozen=True)
class RefusedLine:
    file: str
    line: int | None  # None when the refusal is not of one line
    diagnostics: str


@dataclass
class ImportResult:
    stored: dict[str, int] = field(default_factory=dict)
    refused: list[RefusedLine] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.stored.values())


# How the loader places a refusal: "<path>: line <n>[, column <c>]: <why>".
_PLACED = re.compile(r"^(?P<path>.+?): line (?P<line>\d+)(?:, column \d+)?: (?P<why>.*)$", re.S)


def run_import(records: RecordService, files: list[UploadedFile], run: JobRun) -> ImportResult:
    """Load the files (every line validated, each file's references resolved at the end)
    and return what was stored and refused, by file and line."""
    handled = 0

    def progress(n: int) -> None:
        nonlocal handled
        handled += n
        run.progress(f"{handled} resources read")

    report = load_files(records, [f.path for f in files], progress)
    names = {str(f.path): f.name for f in files}
    result = ImportResult(stored=dict(report.stored))
    for text in report.refused:
        result.refused.append(_refused_line(text, names))
    return result


def _refused_line(text: str, names: dict[str, str]) -> RefusedLine:
    placed = _PLACED.match(text)
    if placed is not None and placed["path"] in names:
        return RefusedLine(names[placed["path"]], int(placed["line"]), placed["why"])
    for path, name in names.items():  # a refusal of a whole file, or placed otherwise
        if text.startswith(f"{path}: "):
            return RefusedLine(name, None, text[len(path) + 2 :])
    return RefusedLine("", None, text)
