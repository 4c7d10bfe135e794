"""Quantity index rows are looked up by value first, with or without a unit.

The old lookup index led with the unit code, so a search without a unit
(`value-quantity=lt5`) could use only its (type, parameter) prefix and read every row of
the parameter. Leading with the value serves both: a range on the value, then the unit
code checked inside that range.

Revision ID: 0003
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_quantity_lookup", table_name="index_quantity")
    op.create_index(
        "ix_quantity_value", "index_quantity", ["resource_type", "param", "value", "code"]
    )


def downgrade() -> None:
    op.drop_index("ix_quantity_value", table_name="index_quantity")
    op.create_index(
        "ix_quantity_lookup", "index_quantity", ["resource_type", "param", "code", "value"]
    )
