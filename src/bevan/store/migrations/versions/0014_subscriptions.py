"""Subscriptions: each user's standing searches and where their matches are delivered.

Revision ID: 0014
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "subscription",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("version_id", sa.Integer, nullable=False),
        sa.Column("last_updated", sa.String(40), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("owner_subject", sa.String(200), nullable=False),
        sa.Column("owner_role", sa.String(32), nullable=False),
        sa.Column("owner_scope", sa.Text, nullable=False),
        sa.Column("owner_organisation", sa.String(16), nullable=True),
        sa.Column("owner_patient_id", sa.String(64), nullable=True),
        sa.Column("owner_token_id", sa.String(64), nullable=True),
        sa.Column("content", sa.Text, nullable=False),
    )
    op.create_index("ix_subscription_owner", "subscription", ["owner_subject"])


def downgrade() -> None:
    op.drop_index("ix_subscription_owner", table_name="subscription")
    op.drop_table("subscription")
