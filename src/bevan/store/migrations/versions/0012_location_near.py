"""Location positions indexed for `near`: a latitude and a longitude number row each.

A Location written from now on gets its rows as it is written
(bevan.fhir.search_parameters, `near$latitude` and `near$longitude`); this writes them
for the Locations already stored, from each one's current version. The lookup index on
number rows (type, parameter, value) serves the band of latitudes a search reads first.

Revision ID: 0012
"""

import json
from decimal import Decimal

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

PARAMS = ("near$latitude", "near$longitude")


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        return None
    return float(value)


def upgrade() -> None:
    bind = op.get_bind()
    resource = sa.table(
        "resource",
        sa.column("rid"),
        sa.column("resource_type"),
        sa.column("id"),
        sa.column("version_id"),
        sa.column("deleted"),
    )
    version = sa.table(
        "resource_version",
        sa.column("resource_type"),
        sa.column("id"),
        sa.column("version_id"),
        sa.column("content"),
    )
    number = sa.table(
        "index_number",
        sa.column("rid"),
        sa.column("resource_type"),
        sa.column("param"),
        sa.column("value"),
        sa.column("grp"),
    )
    op.execute(
        number.delete().where(number.c.resource_type == "Location", number.c.param.in_(PARAMS))
    )
    current = (
        sa.select(resource.c.rid, version.c.content)
        .select_from(
            resource.join(
                version,
                sa.and_(
                    version.c.resource_type == resource.c.resource_type,
                    version.c.id == resource.c.id,
                    version.c.version_id == resource.c.version_id,
                ),
            )
        )
        .where(resource.c.resource_type == "Location", sa.not_(resource.c.deleted))
    )
    rows = []
    for rid, content in bind.execute(current):
        position = json.loads(content or "{}", parse_float=Decimal).get("position")
        if not isinstance(position, dict):
            continue
        latitude = _number(position.get("latitude"))
        longitude = _number(position.get("longitude"))
        if latitude is None or longitude is None:
            continue
        for param, value in zip(PARAMS, (latitude, longitude), strict=True):
            rows.append(
                {"rid": rid, "resource_type": "Location", "param": param, "value": value, "grp": 0}
            )
    if rows:
        op.bulk_insert(number, rows)


def downgrade() -> None:
    number = sa.table("index_number", sa.column("resource_type"), sa.column("param"))
    op.execute(
        number.delete().where(number.c.resource_type == "Location", number.c.param.in_(PARAMS))
    )
