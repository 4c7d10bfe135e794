"""PostgreSQL keeps statistics of index-row columns taken together.

Each index table holds every type and parameter, and the planner takes their columns
as independent: of the 34,677 Encounters with status `finished` it expected 659 (the
share of `finished` among all codes, times the share of Encounter status rows), and of
the 132,082 Observation subject references to Patients, 59,615. Plans built on such
estimates hash whole lists where a few lookups would do. Statistics of the columns
together (their most common combinations) give the true counts. SQLite has no such
statistics: it samples each index whole.

Revision ID: 0007
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

# name, table, columns
STATISTICS = (
    ("st_token_value", "index_token", ("resource_type", "param", "code")),
    ("st_reference_kind", "index_reference", ("resource_type", "param", "target_type")),
)


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for name, table, columns in STATISTICS:
        op.execute(
            f"CREATE STATISTICS {name} (mcv, dependencies) ON {', '.join(columns)} FROM {table}"
        )
        op.execute(f"ANALYZE {table}")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for name, _table, _columns in STATISTICS:
        op.execute(f"DROP STATISTICS IF EXISTS {name}")
