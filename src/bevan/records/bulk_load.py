"""NDJSON files loaded in bulk: lines prepared in worker processes, written by one writer.

Worker processes parse, validate and index chunks of lines (records/load_preparation.py)
while this process writes the chunks they finish, in file order, through the store's
bulk session (store/bulk.py): a transaction per file, so a file stands or falls whole
and a load stopped part way keeps only whole files. A resource already stored as it is
(a load run again) is left alone; one stored differently gets a new version. The
references every file makes are checked once all are in.
"""

from __future__ import annotations

import copy
import itertools
import multiprocessing
import os
from collections import Counter, deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bevan.fhir import json_text
from bevan.fhir.errors import FhirError
from bevan.records.load_preparation import (
    PreparedChunk,
    bulk_resource,
    describe,
    prepare_chunk,
    read_chunks,
    reference_path,
)
from bevan.records.service import prepare_version
from bevan.records.write_rules import Written
from bevan.store.bulk import BulkResource, BulkSession, CurrentResource, bulk_session
from bevan.store.versions import StoredVersion

if TYPE_CHECKING:
    from bevan.records.loader import LoadReport
    from bevan.records.service import RecordService

# Below this many bytes of NDJSON, starting worker processes costs more than it saves.
WORKERS_FROM_BYTES = 4 * 1024 * 1024
# Chunks each worker may have waiting: the writer never waits for work, and memory holds
# a few chunks per worker whatever the size of the files.
AHEAD_PER_WORKER = 3


class Preparer:
    """Prepares the chunks of a file, in worker processes or (workers 0) here, in order."""

    def __init__(self, base_url: str | None, workers: int) -> None:
        self.base_url = base_url
        self.workers = workers
        self._pool: ProcessPoolExecutor | None = None
        if workers > 0:
            # spawn: a fork would copy the writer's threads and open connections
            context = multiprocessing.get_context("spawn")
            self._pool = ProcessPoolExecutor(workers, mp_context=context)

    def prepared(self, paths: list[Path]) -> Iterator[tuple[int, PreparedChunk | None]]:
        """Return (file, chunk) for every chunk of every file in order, and (file, None)
        as each file ends. The workers run on into the next file while the writer
        finishes one, so none waits at a file's end."""
        jobs: Iterator[tuple[int, list[tuple[int, bytes]] | None]] = (
            (file, lines)
            for file, path in enumerate(paths)
            for lines in itertools.chain(read_chunks(path), [None])  # streamed, never whole
        )
        if self._pool is None:
            for file, lines in jobs:
                yield file, None if lines is None else prepare_chunk(file, self.base_url, lines)
            return
        ahead: deque[tuple[int, Future[PreparedChunk] | None]] = deque()
        for file, lines in jobs:
            future = (
                None
                if lines is None
                else self._pool.submit(prepare_chunk, file, self.base_url, lines)
            )
            ahead.append((file, future))
            if len(ahead) > self.workers * AHEAD_PER_WORKER:
                yield _done(ahead.popleft())
        while ahead:
            yield _done(ahead.popleft())

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)


def _done(job: tuple[int, Future[PreparedChunk] | None]) -> tuple[int, PreparedChunk | None]:
    file, future = job
    return file, None if future is None else future.result()


def _default_workers(paths: list[Path]) -> int:
    size = sum(p.stat().st_size for p in paths if p.exists())
    if size < WORKERS_FROM_BYTES:
        return 0
    return max(1, os.cpu_count() or 1)


def load_ndjson(
    service: RecordService,
    paths: list[Path],
    report: LoadReport,
    progress: Callable[[int], None],
    *,
    partial: bool = False,
    workers: int | None = None,
) -> None:
    """Load NDJSON files into service's store, adding what happened to report."""
    preparer = Preparer(service.base_url, _default_workers(paths) if workers is None else workers)
    try:
        with bulk_session(service.store) as bulk:
            counts: dict[int, Counter[str]] = {}
            loading: FileLoad | None = None
            rules = RulesAtLoad(service)
            for file, chunk in preparer.prepared(paths):
                if loading is None:
                    loading = FileLoad(bulk, file, paths[file], report, progress, partial, rules)
                if chunk is not None:
                    loading.write(chunk)
                    continue
                stored = loading.finish()
                loading = None
                if stored is not None:
                    counts[file] = stored
                    for resource_type, n in stored.items():
                        report.count(resource_type, n)
            _try_deferred_again(bulk, rules, paths, report, counts)
            _check_references(bulk, service, paths, report, counts, partial)
    finally:
        preparer.close()


class FileLoad:
    """One file's load: a transaction of its own, committed only if the file is whole
    (or partial), every refused line reported by file and line."""

    def __init__(
        self,
        bulk: BulkSession,
        file: int,
        path: Path,
        report: LoadReport,
        progress: Callable[[int], None],
        partial: bool,
        rules: RulesAtLoad,
    ) -> None:
        self.bulk, self.file, self.path = bulk, file, path
        self.report, self.progress, self.partial = report, progress, partial
        self.rules = rules
        self.stored: Counter[str] = Counter()
        self.unchanged = 0
        self.refused = False
        bulk.begin()

    def write(self, chunk: PreparedChunk) -> None:
        try:
            for line, why in chunk.refused:
                self.report.refuse(self.path, line, why)
            self.refused = self.refused or bool(chunk.refused)
            if not self.refused or self.partial:
                # once the file is refused, its other lines are still checked, not written
                written, kept, held = _write_chunk(
                    self.bulk, self.rules, self.file, chunk.resources
                )
                for resource, why in held:
                    self.report.refuse(self.path, resource.line, why)
                self.refused = self.refused or bool(held)
                self.stored.update(written)
                self.unchanged += kept
            self.progress(chunk.lines)
        except BaseException:
            self.bulk.rollback()
            raise

    def finish(self) -> Counter[str] | None:
        """Commit the file; return what it stored by type, or None if it was refused."""
        if self.refused and not self.partial:
            self.bulk.rollback()
            self.report.refuse(self.path, None, "nothing stored from this file (all or nothing)")
            return None
        try:
            self.bulk.commit()
        except BaseException:
            self.bulk.rollback()
            raise
        self.report.unchanged += self.unchanged
        return self.stored


def _write_chunk(
    bulk: BulkSession,
    rules: RulesAtLoad,
    file: int,
    resources: list[BulkResource],
) -> tuple[Counter[str], int, list[tuple[BulkResource, str]]]:
    """Write a chunk's resources; return what was stored by type, how many were found
    stored already as they are, and the resources refused with why."""
    stored: Counter[str] = Counter()
    refused: list[tuple[BulkResource, str]] = []
    resources = rules.prepared(resources, refused)
    first: dict[tuple[str, str], BulkResource] = {}
    again: list[BulkResource] = []  # a second line for one resource in this chunk
    for resource in resources:
        key = (resource.resource_type, resource.id)
        if key in first:
            again.append(resource)
        else:
            first[key] = resource
    existing = bulk.existing(first)
    fresh, allowed = _claim_nhs_numbers(bulk, list(first.values()), refused)
    new = [r for r in fresh if (r.resource_type, r.id) not in existing]
    # What a rule watches is written one resource at a time, each rule seeing what came
    # before it in the file and nothing after, as if each line had been sent alone.
    plain = [r for r in new if not rules.names(r.resource_type)]
    keys = bulk.insert(plain)
    bulk.note_stored(file, [rid for _, rid in keys])
    stored.update(r.resource_type for r in plain)
    undone: set[int] = set()
    for resource in new:
        if rules.names(resource.resource_type):
            if rules.putting_off(resource):
                continue
            ((seq, rid),) = bulk.insert([resource])
            bulk.note_stored(file, [rid])
            undone |= rules.written(bulk, [(resource, seq, rid, True)], refused)
            if rid not in undone:
                stored[resource.resource_type] += 1
    written: list[tuple[BulkResource, int, int, bool]] = []
    unchanged = 0
    for resource in [r for r in fresh if (r.resource_type, r.id) in existing] + again:
        if resource in again and not allowed(resource, refused):
            continue
        current = existing.get((resource.resource_type, resource.id))
        if current is None:
            current = bulk.existing([(resource.resource_type, resource.id)]).get(
                (resource.resource_type, resource.id)
            )
        if current is None:
            ((seq, rid),) = bulk.insert([resource])
            bulk.note_stored(file, [rid])
            written.append((resource, seq, rid, True))
        elif not current.deleted and _same_content(current, resource):
            bulk.note_references(resource, current.rid)
            stored[resource.resource_type] += 1
            unchanged += 1
        else:
            resource = _as_next_version(resource, current)
            seq = bulk.replace(resource, current)
            written.append((resource, seq, current.rid, False))
    for item in written:
        if item[2] not in rules.written(bulk, [item], refused):
            stored[item[0].resource_type] += 1
    return stored, unchanged, refused


class RulesAtLoad:
    """The services' write rules (records/write_rules.py), applied to what a load
    writes of the types they name, as to every other write: preparing on each resource
    before it is stored (made again if a rule amended it), written in the load's
    transaction once its chunk is stored. Resources a rule writes are checked for
    references when they are written; the load's own at its end."""

    def __init__(self, service: RecordService) -> None:
        self.rules = service.rules
        self.base_url = service.base_url
        # What rules write goes through the service, its references checked at once
        # (they name what the loaded resource names, already written or in the load).
        self.service = copy.copy(service)
        self.service.referential_integrity = False
        # The content of each resource of the chunk being written, as the rules left it.
        self._contents: dict[tuple[str, str], dict[str, Any]] = {}
        # Lines (file, line) a rule refused for want of a resource not stored yet: tried
        # again once every file is in, as references are checked then.
        self.deferred: list[tuple[int, int]] = []
        self.deferring = True
        self._putting_off: set[int] = set()  # files whose watched lines are put off

    def putting_off(self, resource: BulkResource) -> bool:
        """Return True (and put it off) if resource's file has a line put off before it."""
        if self.deferring and resource.file in self._putting_off:
            self.deferred.append((resource.file, resource.line))
            return True
        return False

    def next_round(self) -> None:
        """Start a round of trying again what was put off."""
        self.deferred = []
        self._putting_off = set()

    def names(self, resource_type: str) -> bool:
        """Return True if a rule watches writes of resource_type."""
        return bool(self.rules) and bool(self.rules.for_type(resource_type))

    def prepared(
        self, resources: list[BulkResource], refused: list[tuple[BulkResource, str]]
    ) -> list[BulkResource]:
        """Return resources as the rules leave them, without those they refuse."""
        if not self.rules:
            return resources
        kept = []
        for resource in resources:
            if not self.names(resource.resource_type):
                kept.append(resource)
                continue
            stamped = json_text.loads(resource.content)
            before = dict(stamped)
            try:
                self.rules.preparing(resource.resource_type, stamped)
            except FhirError as error:
                refused.append((resource, describe(error.issues)))
                continue
            self._contents[(resource.resource_type, resource.id)] = stamped
            if stamped.keys() == before.keys() and all(
                stamped[k] is before[k] or stamped[k] == before[k] for k in stamped
            ):
                kept.append(resource)  # a rule assigns what it changes: nothing was
                continue
            version = prepare_version(
                resource.resource_type, resource.id, stamped, resource.version_id, self.base_url
            )
            self._contents[(resource.resource_type, resource.id)] = version.resource
            kept.append(bulk_resource(version, self.base_url, resource.file, resource.line))
        return kept

    def written(
        self,
        bulk: BulkSession,
        written: list[tuple[BulkResource, int, int, bool]],
        refused: list[tuple[BulkResource, str]],
    ) -> set[int]:
        """Tell the rules of each resource written (resource, seq, rid, created); return
        the rids of those a rule refused, each undone with what its rule wrote."""
        named = [w for w in written if self.names(w[0].resource_type)]
        contents, self._contents = self._contents, {}
        if not named:
            return set()
        undone: set[int] = set()
        session = bulk.write_session()
        try:
            for resource, seq, rid, _ in named:
                stored = StoredVersion(
                    resource.resource_type,
                    resource.id,
                    resource.version_id,
                    resource.last_updated,
                    False,
                    resource.content,
                    seq,
                )
                if self.putting_off(resource):
                    # after one line is put off, the rest of its file follows it, in order
                    undone.add(rid)
                    continue
                content = contents.get((resource.resource_type, resource.id))
                if content is None or resource.version_id != 1:  # a new version's meta
                    content = json_text.loads(resource.content)
                try:
                    with session.savepoint():
                        self.rules.written(self.service, Written(session, stored, content))
                except FhirError as error:
                    undone.add(rid)
                    if self.deferring and all(i.code == "not-found" for i in error.issues):
                        # what it needs may come in a later file: try it again then
                        self.deferred.append((resource.file, resource.line))
                        self._putting_off.add(resource.file)
                    else:
                        refused.append((resource, describe(error.issues)))
        finally:
            bulk.rules_done(session)
        bulk.discard(undone)
        return undone


def _claim_nhs_numbers(
    bulk: BulkSession, resources: list[BulkResource], refused: list[tuple[BulkResource, str]]
) -> tuple[list[BulkResource], Callable[[BulkResource, list[Any]], bool]]:
    """Return the resources whose NHS numbers are free (or their own), refusing the rest:
    one Patient per NHS number, as for every other write."""
    numbers = [n for r in resources for n in r.nhs_numbers]
    holders = bulk.nhs_number_holders(numbers) if numbers else {}

    def allowed(resource: BulkResource, refused: list[Any]) -> bool:
        for number in resource.nhs_numbers:
            holder = holders.get(number)
            if holder is not None and holder != resource.id:
                refused.append(
                    (
                        resource,
                        f"Patient/{holder} holds NHS number {number}; one Patient per NHS number",
                    )
                )
                return False
        for number in resource.nhs_numbers:
            holders[number] = resource.id
        return True

    return [r for r in resources if not r.nhs_numbers or allowed(r, refused)], allowed


def _same_content(current: CurrentResource, resource: BulkResource) -> bool:
    """Return True if the stored version says what resource says (meta's version aside)."""
    if current.content is None:
        return False
    return _without_version(json_text.loads(current.content)) == _without_version(
        json_text.loads(resource.content)
    )


def _without_version(resource: dict[str, Any]) -> dict[str, Any]:
    meta = dict(resource.get("meta") or {})
    meta.pop("versionId", None)
    meta.pop("lastUpdated", None)
    return {**resource, "meta": meta}


def _as_next_version(resource: BulkResource, current: CurrentResource) -> BulkResource:
    version = current.version_id + 1
    stamped = json_text.loads(resource.content)
    stamped["meta"]["versionId"] = str(version)
    return resource._replace(version_id=version, content=json_text.dumps(stamped).decode())


def _try_deferred_again(
    bulk: BulkSession,
    rules: RulesAtLoad,
    paths: list[Path],
    report: LoadReport,
    counts: dict[int, Counter[str]],
) -> None:
    """Write again the lines a rule put off, round after round while a round stores
    some; in the last round what still fails is refused, with the rule's reason."""
    while rules.deferred:
        waiting = sorted(set(rules.deferred))
        rules.next_round()
        lines = _lines(paths, set(waiting))
        for file in sorted({file for file, _ in waiting}):
            chunk = prepare_chunk(
                file, rules.base_url, [(n, lines[(f, n)]) for f, n in waiting if f == file]
            )
            loading = FileLoad(bulk, file, paths[file], report, lambda n: None, True, rules)
            loading.write(chunk)
            stored = loading.finish() or Counter()
            counts.setdefault(file, Counter()).update(stored)
            for resource_type, n in stored.items():
                report.count(resource_type, n)
        if len(set(rules.deferred)) >= len(waiting):  # this round stored nothing
            if not rules.deferring:
                return
            rules.deferring = False


def _check_references(
    bulk: BulkSession,
    service: RecordService,
    paths: list[Path],
    report: LoadReport,
    counts: dict[int, Counter[str]],
    partial: bool,
) -> None:
    """Report each reference that resolves nowhere by file and line; with referential
    integrity on, refuse it: its resource (partial) or its whole file, then anything
    that referred to what was so refused, until every reference left resolves."""
    from bevan.records.referential_integrity import UNRESOLVED

    seen: set[tuple[int, int, str, str]] = set()
    refused_files: set[int] = set()
    while True:
        unresolved = [
            u for u in bulk.unresolved() if (u.file, u.line, u.target_type, u.target_id) not in seen
        ]
        if not unresolved:
            return
        # Only what this load created can be refused; a resource found stored already
        # stays, its reference reported.
        created = (
            bulk.created(u.rid for u in unresolved) if service.referential_integrity else set()
        )
        lines = _lines(paths, {(u.file, u.line) for u in unresolved})
        for u in unresolved:
            seen.add((u.file, u.line, u.target_type, u.target_id))
            target = (u.target_type, u.target_id)
            where = reference_path(lines[(u.file, u.line)], target, service.base_url)
            why = f"{where} refers to '{u.target_type}/{u.target_id}', which {UNRESOLVED}"
            if u.rid in created:
                report.refuse(paths[u.file], u.line, why)
            else:
                report.unresolved.append(f"{paths[u.file]}: line {u.line}: {why}")
        unresolved = [u for u in unresolved if u.rid in created]
        if not unresolved:
            return
        bulk.begin()
        try:
            if partial:
                by_rid = {u.rid: u.source_type for u in unresolved}
                bulk.discard(by_rid)
                for resource_type in by_rid.values():
                    report.count(resource_type, -1)
            else:
                files = {u.file for u in unresolved} - refused_files
                bulk.discard(bulk.rids_of_files(files))
                for file in sorted(files):
                    report.refuse(
                        paths[file],
                        None,
                        "nothing stored from this file (a reference in it resolves nowhere)",
                    )
                    for resource_type, n in counts.get(file, Counter()).items():
                        report.count(resource_type, -n)
                refused_files |= files
            bulk.commit()
        except BaseException:
            bulk.rollback()
            raise


def _lines(paths: list[Path], wanted: set[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
    """Return the lines wanted (file, line from 1), each file read once, for a report."""
    found: dict[tuple[int, int], bytes] = {}
    for file in sorted({file for file, _ in wanted}):
        numbers = {line for f, line in wanted if f == file}
        with paths[file].open("rb") as handle:
            for number, line in enumerate(handle, start=1):
                if number in numbers:
                    found[(file, number)] = line
    return {key: found.get(key, b"{}") for key in wanted}
