"""Tables, declared once for SQLite and PostgreSQL (SQLAlchemy Core).

- resource_version: every version of every resource, append-only. Its `seq` is the
  change sequence: strictly increasing, so followers (analytics, subscriptions, exports)
  read "everything after seq N" instead of scanning tables.
- resource: one row per logical resource pointing at its current version (`seq`), with
  a tombstone flag after delete. `rid` is the surrogate key index rows use.
- index_*: search index rows for the current version only, replaced on every write in
  the same transaction.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

# SQLite only auto-increments an INTEGER PRIMARY KEY (a rowid alias).
Key = BigInteger().with_variant(Integer(), "sqlite")

metadata = MetaData()

resource = Table(
    "resource",
    metadata,
    Column("rid", Key, primary_key=True, autoincrement=True),
    Column("resource_type", String(64), nullable=False),
    Column("id", String(64), nullable=False),
    Column("version_id", Integer, nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("last_updated", String(40), nullable=False),
    Column("deleted", Boolean, nullable=False, default=False),
    UniqueConstraint("resource_type", "id", name="uq_resource_type_id"),
)
Index("ix_resource_type_updated", resource.c.resource_type, resource.c.last_updated)

resource_version = Table(
    "resource_version",
    metadata,
    Column("seq", Key, primary_key=True, autoincrement=True),
    Column("resource_type", String(64), nullable=False),
    Column("id", String(64), nullable=False),
    Column("version_id", Integer, nullable=False),
    Column("last_updated", String(40), nullable=False),
    # create | update | delete (a tombstone: content is NULL)
    Column("method", String(8), nullable=False),
    Column("content", Text, nullable=True),
)
Index(
    "ix_version_resource",
    resource_version.c.resource_type,
    resource_version.c.id,
    resource_version.c.version_id,
    unique=True,
)
Index("ix_version_type_seq", resource_version.c.resource_type, resource_version.c.seq)

index_token = Table(
    "index_token",
    metadata,
    Column("rid", BigInteger, nullable=False),
    Column("resource_type", String(64), nullable=False),
    Column("param", String(64), nullable=False),
    Column("system", Text, nullable=True),
    Column("code", Text, nullable=True),
)
Index(
    "ix_token_lookup",
    index_token.c.resource_type,
    index_token.c.param,
    index_token.c.code,
    index_token.c.system,
)
Index("ix_token_rid", index_token.c.rid)

index_reference = Table(
    "index_reference",
    metadata,
    Column("rid", BigInteger, nullable=False),
    Column("resource_type", String(64), nullable=False),
    Column("param", String(64), nullable=False),
    # Type/id for references inside this server; the URL as given otherwise
    Column("target_type", String(64), nullable=True),
    Column("target_id", Text, nullable=False),
)
Index(
    "ix_reference_lookup",
    index_reference.c.resource_type,
    index_reference.c.param,
    index_reference.c.target_id,
    index_reference.c.target_type,
)
Index("ix_reference_rid", index_reference.c.rid)

INDEX_TABLES = {"token": index_token, "reference": index_reference}
