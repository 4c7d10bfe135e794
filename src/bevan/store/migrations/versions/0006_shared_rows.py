"""Rows no longer written: parameters that repeat another parameter's values.

Observation `combo-code`, `code-value-concept` and the like, and `phonetic` (the same
path as `name`), are now searched in the rows of the parameters they repeat
(bevan.fhir.search_parameters.SharedRows), so their own rows are dead weight. The list is
fixed here as it stood when they stopped being written.

Revision ID: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

TABLES = ("token", "string", "date", "number", "quantity", "reference", "uri")

NO_LONGER_WRITTEN = {
    "CapabilityStatement": ["version"],
    "CodeSystem": ["url"],
    "Observation": [
        "code-value-concept$0",
        "code-value-concept$1",
        "code-value-date$0",
        "code-value-date$1",
        "combo-code",
        "combo-code-value-concept$0",
        "combo-code-value-concept$1",
        "combo-code-value-quantity$0",
        "combo-code-value-quantity$1",
        "combo-data-absent-reason",
        "combo-value-concept",
        "combo-value-quantity",
    ],
    "Patient": ["phonetic"],
    "Person": ["phonetic"],
    "Practitioner": ["phonetic"],
    "RelatedPerson": ["phonetic"],
}


def upgrade() -> None:
    for table in TABLES:
        rows = sa.table(f"index_{table}", sa.column("resource_type"), sa.column("param"))
        for resource_type, params in NO_LONGER_WRITTEN.items():
            op.execute(
                rows.delete().where(rows.c.resource_type == resource_type, rows.c.param.in_(params))
            )


def downgrade() -> None:
    # The rows can be written again from the resources: `bevan reindex`.
    pass
