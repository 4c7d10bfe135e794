"""String index rows kept in prefix buckets, each in row-key order.

A search by three letters of a name listed every matching index row to find the lowest
row keys for its first page: at a million resources, some 3,000 rows for 20 Patients.
In this index the rows of each (type, parameter, first three characters of the value)
come in row-key order, so the first page reads its 20 and stops
(SearchCompiler.page_by_prefix).

Revision ID: 0008
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        "CREATE INDEX ix_string_bucket ON index_string"
        " (resource_type, param, substr(value, 1, 3), rid)"
    )
    # Statistics of the new index (of its expression on PostgreSQL), without which the
    # planner guesses (SQLite reads a thousand rows per index).
    if op.get_bind().dialect.name == "sqlite":
        op.execute("PRAGMA analysis_limit=1000")
    op.execute("ANALYZE index_string")


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS ix_string_bucket")
