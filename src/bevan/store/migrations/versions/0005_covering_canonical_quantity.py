"""The canonical-unit quantity index ends with rid, like the other lookup indexes.

A search with a unit (`value-quantity=95|http://unitsofmeasure.org|%`) matches in
canonical units too; without rid in that index, each of its matches cost a visit to the
table row, which made a common value take tens of milliseconds at a million resources.

Revision ID: 0005
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

COLUMNS = ["resource_type", "param", "canonical_unit", "canonical_value"]


def _recreate(columns: list[str]) -> None:
    op.drop_index("ix_quantity_canonical", table_name="index_quantity")
    op.create_index("ix_quantity_canonical", "index_quantity", columns)
    # A new index has no statistics, and without them the planner may prefer it over
    # a better one: sample them now (SQLite reads a thousand rows per index).
    if op.get_bind().dialect.name == "sqlite":
        op.execute("PRAGMA analysis_limit=1000")
    op.execute("ANALYZE index_quantity")


def upgrade() -> None:
    _recreate([*COLUMNS, "rid"])


def downgrade() -> None:
    _recreate(COLUMNS)
