"""Server-assigned ids: valid R4 ids, never repeated, in the order they were made."""

from __future__ import annotations

import uuid

from bevan.fhir.ids import is_valid_id, new_id


def test_new_ids_are_valid_unique_and_sort_in_the_order_they_were_made() -> None:
    made = [new_id() for _ in range(5_000)]

    assert all(is_valid_id(i) and len(i) == 36 for i in made)
    assert len(set(made)) == len(made)
    assert made == sorted(made)  # so a new resource's index rows go at the end
    assert {uuid.UUID(i).version for i in made} == {7}


def test_ids_are_not_a_plain_counter() -> None:
    # the low 62 bits are random: one id does not give away the next
    first, second = uuid.UUID(new_id()).int, uuid.UUID(new_id()).int
    assert bin((first ^ second) & ((1 << 62) - 1)).count("1") > 10
