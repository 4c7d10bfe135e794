"""The record: versions, current resources, and search index rows of every type.

Revision ID: 0001
"""

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

Key = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

INDEX_TABLES = ("token", "string", "date", "number", "quantity", "reference", "uri")


def _index_table(name: str, *columns: sa.Column[Any]) -> None:
    op.create_table(
        f"index_{name}",
        sa.Column("rid", sa.BigInteger, nullable=False),
        sa.Column("resource_type", sa.String(64), nullable=False),
        sa.Column("param", sa.String(100), nullable=False),
        *columns,
        sa.Column("grp", sa.Integer, nullable=False),
    )
    op.create_index(f"ix_{name}_rid", f"index_{name}", ["rid"])


def upgrade() -> None:
    op.create_table(
        "resource",
        sa.Column("rid", Key, primary_key=True, autoincrement=True),
        sa.Column("resource_type", sa.String(64), nullable=False),
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("version_id", sa.Integer, nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("last_updated", sa.String(40), nullable=False),
        sa.Column("deleted", sa.Boolean, nullable=False),
        sa.UniqueConstraint("resource_type", "id", name="uq_resource_type_id"),
    )
    op.create_index("ix_resource_type_updated", "resource", ["resource_type", "last_updated"])
    op.create_index("ix_resource_type_rid", "resource", ["resource_type", "rid"])
    op.create_table(
        "resource_version",
        sa.Column("seq", Key, primary_key=True, autoincrement=True),
        sa.Column("resource_type", sa.String(64), nullable=False),
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("version_id", sa.Integer, nullable=False),
        sa.Column("last_updated", sa.String(40), nullable=False),
        sa.Column("method", sa.String(8), nullable=False),
        sa.Column("content", sa.Text, nullable=True),
    )
    op.create_index(
        "ix_version_resource",
        "resource_version",
        ["resource_type", "id", "version_id"],
        unique=True,
    )
    op.create_index("ix_version_type_seq", "resource_version", ["resource_type", "seq"])

    _index_table(
        "token",
        sa.Column("system", sa.Text, nullable=True),
        sa.Column("code", sa.Text, nullable=True),
        sa.Column("text", sa.Text, nullable=True),
    )
    op.create_index("ix_token_lookup", "index_token", ["resource_type", "param", "code", "system"])
    _index_table(
        "string",
        sa.Column("value", sa.Text, nullable=False),
        sa.Column("exact", sa.Text, nullable=False),
    )
    op.create_index(
        "ix_string_lookup",
        "index_string",
        ["resource_type", "param", "value"],
        postgresql_ops={"value": "text_pattern_ops"},
    )
    _index_table(
        "date",
        sa.Column("low", sa.String(24), nullable=False),
        sa.Column("high", sa.String(24), nullable=False),
    )
    op.create_index("ix_date_lookup", "index_date", ["resource_type", "param", "low", "high"])
    _index_table("number", sa.Column("value", sa.Float, nullable=False))
    op.create_index("ix_number_lookup", "index_number", ["resource_type", "param", "value"])
    _index_table(
        "quantity",
        sa.Column("value", sa.Float, nullable=False),
        sa.Column("system", sa.Text, nullable=True),
        sa.Column("code", sa.Text, nullable=True),
        sa.Column("canonical_value", sa.Float, nullable=True),
        sa.Column("canonical_unit", sa.Text, nullable=True),
    )
    op.create_index(
        "ix_quantity_lookup", "index_quantity", ["resource_type", "param", "code", "value"]
    )
    op.create_index(
        "ix_quantity_canonical",
        "index_quantity",
        ["resource_type", "param", "canonical_unit", "canonical_value"],
    )
    _index_table(
        "reference",
        sa.Column("target_type", sa.String(64), nullable=True),
        sa.Column("target_id", sa.Text, nullable=True),
        sa.Column("identifier_system", sa.Text, nullable=True),
        sa.Column("identifier_value", sa.Text, nullable=True),
    )
    op.create_index(
        "ix_reference_lookup",
        "index_reference",
        ["resource_type", "param", "target_id", "target_type"],
    )
    op.create_index("ix_reference_target", "index_reference", ["target_id", "target_type"])
    _index_table("uri", sa.Column("value", sa.Text, nullable=False))
    op.create_index("ix_uri_lookup", "index_uri", ["resource_type", "param", "value"])


def downgrade() -> None:
    for name in INDEX_TABLES:
        op.drop_table(f"index_{name}")
    op.drop_table("resource_version")
    op.drop_table("resource")
