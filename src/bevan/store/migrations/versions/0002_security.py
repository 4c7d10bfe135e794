"""Security: user accounts, OAuth clients and grants, revocations, break-glass, audit chain.

Revision ID: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

Key = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "user_account",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("username", sa.String(200), nullable=False, unique=True),
        sa.Column("password_hash", sa.Text, nullable=True),
        sa.Column("role", sa.String(32), nullable=False),
        sa.Column("organisation", sa.String(16), nullable=True),
        sa.Column("patient_id", sa.String(64), nullable=True),
        sa.Column("device_id", sa.String(64), nullable=True),
        sa.Column("display_name", sa.Text, nullable=True),
        sa.Column("disabled", sa.Boolean, nullable=False),
        sa.Column("created", sa.String(24), nullable=False),
    )
    op.create_table(
        "oauth_client",
        sa.Column("client_id", sa.String(100), primary_key=True),
        sa.Column("secret_hash", sa.Text, nullable=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("redirect_uris", sa.Text, nullable=False),
        sa.Column("grant_types", sa.Text, nullable=False),
        sa.Column("scope", sa.Text, nullable=False),
        sa.Column("user_id", sa.String(64), nullable=True),
        sa.Column("disabled", sa.Boolean, nullable=False),
        sa.Column("created", sa.String(24), nullable=False),
    )
    op.create_table(
        "oauth_grant",
        sa.Column("digest", sa.String(64), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("client_id", sa.String(100), nullable=False),
        sa.Column("user_id", sa.String(64), nullable=False),
        sa.Column("scope", sa.Text, nullable=False),
        sa.Column("redirect_uri", sa.Text, nullable=True),
        sa.Column("code_challenge", sa.Text, nullable=True),
        sa.Column("expires", sa.String(24), nullable=False),
        sa.Column("used", sa.Boolean, nullable=False),
    )
    op.create_table(
        "revoked_token",
        sa.Column("jti", sa.String(64), primary_key=True),
        sa.Column("expires", sa.String(24), nullable=False),
    )
    op.create_table(
        "break_glass",
        sa.Column("id", Key, primary_key=True, autoincrement=True),
        sa.Column("user_id", sa.String(64), nullable=False),
        sa.Column("patient_id", sa.String(64), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("granted", sa.String(24), nullable=False),
        sa.Column("expires", sa.String(24), nullable=False),
        sa.Column("reviewed_by", sa.String(64), nullable=True),
        sa.Column("reviewed", sa.String(24), nullable=True),
        sa.Column("outcome", sa.Text, nullable=True),
    )
    op.create_index(
        "ix_break_glass_user_patient", "break_glass", ["user_id", "patient_id", "expires"]
    )
    op.create_table(
        "audit_event",
        sa.Column("seq", Key, primary_key=True, autoincrement=True),
        sa.Column("recorded", sa.String(24), nullable=False),
        sa.Column("user_id", sa.String(64), nullable=True),
        sa.Column("patient_id", sa.String(64), nullable=True),
        sa.Column("action", sa.String(8), nullable=False),
        sa.Column("outcome", sa.String(4), nullable=False),
        sa.Column("break_glass", sa.Boolean, nullable=False),
        sa.Column("content", sa.Text, nullable=False),
        sa.Column("previous_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )
    op.create_index("ix_audit_patient", "audit_event", ["patient_id", "seq"])
    op.create_index("ix_audit_user", "audit_event", ["user_id", "seq"])


def downgrade() -> None:
    for table in (
        "audit_event",
        "break_glass",
        "revoked_token",
        "oauth_grant",
        "oauth_client",
        "user_account",
    ):
        op.drop_table(table)
