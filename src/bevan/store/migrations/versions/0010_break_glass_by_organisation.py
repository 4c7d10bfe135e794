"""Break-glass grants keyed by user and organisation; failed sign-ins kept for throttling.

A grant was found by the token's subject alone, so two tokens naming the same subject
for different organisations shared each other's grants. Failed sign-ins are counted per
account and per client address across every worker process, so guessing passwords is
slowed wherever the requests land.

Revision ID: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

Key = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.add_column("break_glass", sa.Column("organisation", sa.String(16), nullable=True))
    op.create_table(
        "sign_in_failure",
        sa.Column("id", Key, primary_key=True, autoincrement=True),
        sa.Column("subject", sa.String(240), nullable=False),
        sa.Column("at", sa.String(24), nullable=False),
    )
    op.create_index("ix_sign_in_failure_subject", "sign_in_failure", ["subject", "at"])


def downgrade() -> None:
    op.drop_index("ix_sign_in_failure_subject", "sign_in_failure")
    op.drop_table("sign_in_failure")
    with op.batch_alter_table("break_glass") as batch:
        batch.drop_column("organisation")
