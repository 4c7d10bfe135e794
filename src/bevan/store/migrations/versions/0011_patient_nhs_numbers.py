"""One Patient per NHS number: the holder of each number, kept with every Patient write.

Filled here from the current, active Patients; where two already share a number, the
one written first keeps it (the other's next write is refused until one is mended).

Revision ID: 0011
"""

import json

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

NHS_NUMBER_SYSTEM = "https://fhir.nhs.uk/Id/nhs-number"


def upgrade() -> None:
    op.create_table(
        "patient_nhs_number",
        sa.Column("nhs_number", sa.String(16), primary_key=True),
        sa.Column("patient_id", sa.String(64), nullable=False),
    )
    op.create_index("ix_patient_nhs_number_patient", "patient_nhs_number", ["patient_id"])
    rows = op.get_bind().execute(
        sa.text(
            "SELECT v.id, v.content FROM resource r JOIN resource_version v ON v.seq = r.seq"
            " WHERE r.resource_type = 'Patient' AND NOT r.deleted ORDER BY r.rid"
        )
    )
    held: dict[str, str] = {}
    for patient_id, content in rows:
        patient = json.loads(content)
        if patient.get("active") is False:
            continue
        for identifier in patient.get("identifier") or []:
            value = identifier.get("value") if isinstance(identifier, dict) else None
            if identifier.get("system") == NHS_NUMBER_SYSTEM and isinstance(value, str):
                held.setdefault(value, patient_id)
    if held:
        table = sa.table("patient_nhs_number", sa.column("nhs_number"), sa.column("patient_id"))
        op.bulk_insert(table, [{"nhs_number": n, "patient_id": p} for n, p in held.items()])


def downgrade() -> None:
    op.drop_index("ix_patient_nhs_number_patient", "patient_nhs_number")
    op.drop_table("patient_nhs_number")
