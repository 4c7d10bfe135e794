"""Which active Patient holds each NHS number (the patient_nhs_number table).

A Patient's numbers are claimed in its write's transaction. The table's primary key
settles a race: on PostgreSQL a second transaction claiming a number waits for the first
and then inserts nothing (ON CONFLICT DO NOTHING, so its transaction lives on to say
who holds it); on SQLite writers are serialised already.
"""

from __future__ import annotations

from sqlalchemy import Connection, delete, select
from sqlalchemy.dialects import postgresql, sqlite

from bevan.store.schema import patient_nhs_number as holders


def claim(connection: Connection, patient_id: str, numbers: tuple[str, ...]) -> str | None:
    """Make patient_id the holder of numbers (and of no others); return the id of another
    Patient already holding one of them, claiming nothing, or None once claimed."""
    connection.execute(delete(holders).where(holders.c.patient_id == patient_id))
    if not numbers:
        return None
    insert = postgresql.insert if connection.dialect.name == "postgresql" else sqlite.insert
    for number in numbers:
        taken = connection.execute(
            insert(holders)
            .values(nhs_number=number, patient_id=patient_id)
            .on_conflict_do_nothing(index_elements=[holders.c.nhs_number])
            .returning(holders.c.nhs_number)
        ).first()
        if taken is None:
            holder = connection.execute(
                select(holders.c.patient_id).where(holders.c.nhs_number == number)
            ).scalar()
            if holder == patient_id:  # the number given twice in one Patient
                continue
            connection.execute(delete(holders).where(holders.c.patient_id == patient_id))
            return str(holder)
    return None


def release(connection: Connection, patient_id: str) -> None:
    """Let go of every number patient_id holds (it was deleted)."""
    connection.execute(delete(holders).where(holders.c.patient_id == patient_id))
