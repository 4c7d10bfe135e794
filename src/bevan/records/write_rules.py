"""Rules other services attach to writes of the record, so every door obeys them.

A reading sent alone, in a transaction Bundle or in bulk, a booking made through the API
or the web app: each is one write of the record, and what a service must do about it
(refuse an impossible reading, score a completed set, mark a slot busy) belongs to the
write itself, not to one of the doors that lead to it. records/ knows only this protocol;
the services that implement it (monitoring/, scheduling/) sit beside records/ and are
given to the RecordService by the app factory, so records/ imports none of them.

A rule sees two moments of every write of a resource type it names:
- preparing: before the version is made, with no database at hand (a Bundle prepares
  its entries before they queue for the writer). It may amend the resource in place (a
  tag, an interpretation) or raise a FHIR error (e.g. Unprocessable, 422), which refuses
  the write and everything written with it in the same request.
- written: inside the writing transaction, after the version (or the tombstone of a
  delete) is stored. It may read, and write further resources through the service's
  `*_in(session, ...)` methods; what it writes commits or rolls back with the write that
  caused it. Writes a rule makes are themselves written, and so seen by the rules, which
  must therefore come to rest (a rule must not rewrite what it was just told of).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from bevan.fhir import json_text
from bevan.store.versions import StoredVersion
from bevan.store.writing import WriteSession

if TYPE_CHECKING:
    from bevan.records.service import RecordService


@dataclass(frozen=True)
class Written:
    """One version just written, as a rule is told of it."""

    session: WriteSession
    stored: StoredVersion  # the new version; stored.deleted for the tombstone of a delete
    resource: dict[str, Any] | None  # its content as stored; None when deleted

    @property
    def resource_type(self) -> str:
        return self.stored.resource_type

    @property
    def id(self) -> str:
        return self.stored.id

    @property
    def created(self) -> bool:
        return self.stored.version_id == 1

    def previous(self) -> dict[str, Any] | None:
        """Return the content of the version before this one (None if there was none or
        it was a deletion), read in the writing transaction."""
        if self.stored.version_id <= 1:
            return None
        earlier = self.session.version(
            self.stored.resource_type, self.stored.id, self.stored.version_id - 1
        )
        if earlier is None or earlier.content is None:
            return None
        loaded: dict[str, Any] = json_text.loads(earlier.content)
        return loaded


class WriteRule(Protocol):
    """What a service attaches to the writes of the resource types it names."""

    resource_types: frozenset[str]

    def preparing(self, resource_type: str, resource: dict[str, Any]) -> None:
        """Amend resource in place, or raise a FHIR error to refuse it; no I/O. The
        resource is a shallow copy of what was sent: assign its elements, do not mutate
        the values it holds."""

    def written(self, service: RecordService, written: Written) -> None:
        """Act inside the writing transaction on a version just stored."""


class WriteRules:
    """The rules of a RecordService, looked up by resource type."""

    def __init__(self, rules: Sequence[WriteRule] = ()) -> None:
        self._by_type: dict[str, list[WriteRule]] = {}
        for rule in rules:
            for resource_type in rule.resource_types:
                self._by_type.setdefault(resource_type, []).append(rule)

    def __bool__(self) -> bool:
        return bool(self._by_type)

    def for_type(self, resource_type: str) -> list[WriteRule]:
        return self._by_type.get(resource_type, [])

    def preparing(self, resource_type: str, resource: dict[str, Any]) -> None:
        for rule in self._by_type.get(resource_type, ()):
            rule.preparing(resource_type, resource)

    def written(self, service: RecordService, written: Written) -> None:
        for rule in self._by_type.get(written.resource_type, ()):
            rule.written(service, written)
