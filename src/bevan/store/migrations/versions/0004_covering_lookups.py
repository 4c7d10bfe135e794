"""Lookup indexes end with rid, so a criterion's matches are listed from the index alone.

Without rid in the index, every matching entry cost a visit to its table row just to
read the rid, which made a common name prefix (a few thousand rows) take milliseconds.

Revision ID: 0004
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# name: (table, columns before rid)
LOOKUPS = {
    "ix_token_lookup": ("index_token", ["resource_type", "param", "code", "system"]),
    "ix_string_lookup": ("index_string", ["resource_type", "param", "value"]),
    "ix_date_lookup": ("index_date", ["resource_type", "param", "low", "high"]),
    "ix_number_lookup": ("index_number", ["resource_type", "param", "value"]),
    "ix_quantity_value": ("index_quantity", ["resource_type", "param", "value", "code"]),
    "ix_reference_lookup": (
        "index_reference",
        ["resource_type", "param", "target_id", "target_type"],
    ),
    "ix_uri_lookup": ("index_uri", ["resource_type", "param", "value"]),
}


def _recreate(with_rid: bool) -> None:
    for name, (table, columns) in LOOKUPS.items():
        op.drop_index(name, table_name=table)
        ops = {"value": "text_pattern_ops"} if table == "index_string" else {}
        op.create_index(name, table, columns + (["rid"] if with_rid else []), postgresql_ops=ops)


def upgrade() -> None:
    _recreate(with_rid=True)


def downgrade() -> None:
    _recreate(with_rid=False)
