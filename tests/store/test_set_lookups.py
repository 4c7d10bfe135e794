"""Lookups by a list of ids or row keys answer for exactly the listed resources, whatever
the list's length (each is compiled for lengths rounded up to a power of two)."""

from __future__ import annotations

from bevan.records.service import RecordService
from bevan.store.record_store import RecordStore


def test_current_many_finds_exactly_the_listed_live_resources(
    service: RecordService, store: RecordStore
) -> None:
    ids = []
    for n in range(7):
        stored = service.create({"resourceType": "Patient", "name": [{"family": f"F{n}"}]}).stored
        assert stored is not None
        ids.append(stored.id)
    service.delete("Patient", ids[6])
    with store.read() as session:
        for size in range(1, 7):
            wanted = ids[:size]
            found = session.current_many(("Patient", i) for i in [*wanted, "no-such-id"])
            assert sorted(v.id for v in found) == sorted(wanted)
        # Past one chunk of 500, with the deleted one and many that do not exist.
        many = [("Patient", f"missing-{n}") for n in range(600)] + [
            ("Patient", ids[0]),
            ("Patient", ids[6]),
        ]
        assert [v.id for v in session.current_many(many)] == [ids[0]]


def test_versions_and_targets_by_row_key(service: RecordService, store: RecordStore) -> None:
    doctor = service.create({"resourceType": "Practitioner"}).stored
    retired = service.create({"resourceType": "Practitioner"}).stored
    assert doctor is not None and retired is not None
    patient = service.create(
        {
            "resourceType": "Patient",
            "generalPractitioner": [
                {"reference": f"Practitioner/{doctor.id}"},
                {"reference": f"Practitioner/{retired.id}"},
            ],
        }
    ).stored
    assert patient is not None
    # A reference left dangling, as data loaded with referential integrity off may hold.
    RecordService(store, referential_integrity=False).delete("Practitioner", retired.id)
    for code in ("a", "b", "c"):
        service.create(
            {
                "resourceType": "Observation",
                "status": "final",
                "code": {"text": code},
                "subject": {"reference": f"Patient/{patient.id}"},
            }
        )
    with store.read() as session:
        inside = session.compartment(
            "Patient", patient.id, {"Observation": ("subject", "patient")}, 10
        )
        assert len(inside) == 3
        rids = [rid for rid, _ in inside]
        assert [v.resource_type for _, v in session.versions_by_rid(rids[:2])] == [
            "Observation",
            "Observation",
        ]
        # What the Observations reference, and what the Patient itself does (the
        # deleted Practitioner is not there), each once; past one chunk of 500 too.
        for listed in (rids, [*rids, *range(10**9, 10**9 + 600)], []):
            referenced = session.versions_referenced(listed, "Patient", patient.id)
            found = sorted((v.resource_type, v.id) for v in referenced)
            expected = [("Practitioner", doctor.id)]
            if listed:
                expected.insert(0, ("Patient", patient.id))
            assert found == expected
        referencing = session.referencing("Observation", "subject", "Patient", [patient.id], 2)
        assert len(referencing) == 2
