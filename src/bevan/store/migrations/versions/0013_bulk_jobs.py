"""Bulk jobs: asynchronous $export and $import requests, one row each.

Any worker process answers a status poll from this table; the files themselves are
under the data directory.

Revision ID: 0013
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "bulk_job",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("owner", sa.String(240), nullable=False),
        sa.Column("request", sa.Text(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("created", sa.Float(), nullable=False),
        sa.Column("heartbeat", sa.Float(), nullable=False),
        sa.Column("expires", sa.Float(), nullable=False),
        sa.Column("progress", sa.Text(), nullable=False),
        sa.Column("result", sa.Text(), nullable=True),
    )
    op.create_index("ix_bulk_job_expires", "bulk_job", ["expires"])


def downgrade() -> None:
    op.drop_index("ix_bulk_job_expires", "bulk_job")
    op.drop_table("bulk_job")
