"""Rules attached to writes see every write of their types, inside its transaction."""

from __future__ import annotations

from typing import Any

import pytest

from bevan.fhir import json_text
from bevan.fhir.errors import BusinessRuleViolation
from bevan.fhir.search import parse_search
from bevan.records.service import RecordService
from bevan.records.write_rules import Written
from bevan.store.record_store import RecordStore


class FlagHeavyReadings:
    """Refuses a weight over 500 kg; tags one over 200 kg; writes a Flag for each
    reading written, and notes deletions."""

    resource_types = frozenset({"Observation"})

    def __init__(self) -> None:
        self.deleted: list[str] = []

    def preparing(self, resource_type: str, resource: dict[str, Any]) -> None:
        value = resource.get("valueQuantity", {}).get("value", 0)
        if value > 500:
            raise BusinessRuleViolation(
                "Observation.valueQuantity.value: over 500 kg cannot be true"
            )
        if value > 200:
            meta = dict(resource.get("meta", {}))
            meta["tag"] = [{"system": "urn:example", "code": "implausible"}]
            resource["meta"] = meta

    def written(self, service: RecordService, written: Written) -> None:
        if written.resource is None:
            self.deleted.append(written.id)
            return
        flag = {
            "resourceType": "Flag",
            "status": "active",
            "code": {"text": f"reading {written.id} version {written.stored.version_id}"},
            "subject": {"reference": "Patient/p"},
        }
        if written.resource.get("valueQuantity", {}).get("value") == 404:
            flag["subject"] = {"reference": "Patient/nobody"}  # refused: nothing stays
        service.create_in(written.session, "Flag", flag)


def reading(kg: float) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "weight"},
        "subject": {"reference": "Patient/p"},
        "valueQuantity": {"value": kg, "unit": "kg"},
    }


@pytest.fixture
def ruled(store: RecordStore) -> tuple[RecordService, FlagHeavyReadings]:
    rule = FlagHeavyReadings()
    service = RecordService(store, rules=[rule])
    service.update("Patient", "p", {"resourceType": "Patient", "id": "p"})
    return service, rule


def found(service: RecordService, resource_type: str) -> list[dict[str, Any]]:
    page = service.search(parse_search(resource_type, ""))
    return [json_text.loads(hit.content or "{}") for hit in page.matches]


def flags(service: RecordService) -> list[str]:
    return sorted(flag["code"]["text"] for flag in found(service, "Flag"))


def test_a_rule_writes_beside_each_write_and_sees_deletions(
    ruled: tuple[RecordService, FlagHeavyReadings],
) -> None:
    service, rule = ruled
    created = service.create(reading(70)).stored
    service.update("Observation", created.id, {**reading(71), "id": created.id})
    service.delete("Observation", created.id)
    assert flags(service) == [f"reading {created.id} version 1", f"reading {created.id} version 2"]
    assert rule.deleted == [created.id]


def test_a_rule_amends_or_refuses_before_anything_is_stored(
    ruled: tuple[RecordService, FlagHeavyReadings],
) -> None:
    service, _ = ruled
    heavy = service.create(reading(250)).stored
    assert '"implausible"' in (heavy.content or "")
    with pytest.raises(BusinessRuleViolation, match="over 500 kg"):
        service.create(reading(600))
    assert len(found(service, "Observation")) == 1


def test_what_a_rule_writes_rolls_back_with_the_write_that_caused_it(
    ruled: tuple[RecordService, FlagHeavyReadings],
) -> None:
    service, _ = ruled
    with pytest.raises(Exception, match="nobody"):
        service.create(reading(404))
    assert found(service, "Observation") == []
    assert flags(service) == []
