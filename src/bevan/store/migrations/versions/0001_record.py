"""The record: versions, current resources, token and reference index rows.

Revision ID: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

Key = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


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
    op.create_table(
        "index_token",
        sa.Column("rid", sa.BigInteger, nullable=False),
        sa.Column("resource_type", sa.String(64), nullable=False),
        sa.Column("param", sa.String(64), nullable=False),
        sa.Column("system", sa.Text, nullable=True),
        sa.Column("code", sa.Text, nullable=True),
    )
    op.create_index("ix_token_lookup", "index_token", ["resource_type", "param", "code", "system"])
    op.create_index("ix_token_rid", "index_token", ["rid"])
    op.create_table(
        "index_reference",
        sa.Column("rid", sa.BigInteger, nullable=False),
        sa.Column("resource_type", sa.String(64), nullable=False),
        sa.Column("param", sa.String(64), nullable=False),
        sa.Column("target_type", sa.String(64), nullable=True),
        sa.Column("target_id", sa.Text, nullable=False),
    )
    op.create_index(
        "ix_reference_lookup",
        "index_reference",
        ["resource_type", "param", "target_id", "target_type"],
    )
    op.create_index("ix_reference_rid", "index_reference", ["rid"])


def downgrade() -> None:
    for table in ("index_reference", "index_token", "resource_version", "resource"):
        op.drop_table(table)
