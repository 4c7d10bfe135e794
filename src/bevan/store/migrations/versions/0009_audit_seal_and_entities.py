"""Audit entries sealed under a key kept outside the database, and filed under every
patient and resource they are about.

`seal` is HMAC-SHA-256 of an entry's seq and hash, so a rewrite of the table with
recomputed hashes no longer verifies. `audit_entity` lists each "Type/id" an entry is
about, so a search or Bundle across several patients appears in each one's access log;
entries already written are filed under the one patient they name.

Revision ID: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

Key = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("audit_event") as table:
        table.add_column(sa.Column("seal", sa.String(64), nullable=True))
    op.create_table(
        "audit_entity",
        sa.Column("reference", sa.String(200), primary_key=True),
        sa.Column("seq", Key, primary_key=True),
    )
    op.execute(
        "INSERT INTO audit_entity (reference, seq)"
        " SELECT 'Patient/' || patient_id, seq FROM audit_event WHERE patient_id IS NOT NULL"
    )


def downgrade() -> None:
    op.drop_table("audit_entity")
    with op.batch_alter_table("audit_event") as table:
        table.drop_column("seal")
