"""Tables, declared once for SQLite and PostgreSQL (SQLAlchemy Core).

- resource_version: every version of every resource, append-only. Its `seq` is the
  change sequence: strictly increasing, so followers (analytics, subscriptions, exports)
  read "everything after seq N" instead of scanning tables.
- resource: one row per logical resource pointing at its current version (`seq`), with
  a tombstone flag after delete. `rid` is the surrogate key index rows use.
- index_*: search index rows for the current version only, replaced on every write in
  the same transaction.
- patient_nhs_number: which active Patient holds each NHS number; its primary key is
  what makes "one Patient per NHS number" hold when two writers race.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    func,
    literal_column,
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
# Pages of a whole type come in row-key order straight from this index.
Index("ix_resource_type_rid", resource.c.resource_type, resource.c.rid)

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


patient_nhs_number = Table(
    "patient_nhs_number",
    metadata,
    Column("nhs_number", String(16), primary_key=True),
    Column("patient_id", String(64), nullable=False),
)
Index("ix_patient_nhs_number_patient", patient_nhs_number.c.patient_id)


def _index_table(name: str, *columns: Column[Any]) -> Table:
    """An index table: one row per value of a parameter for a resource's current version.

    `grp` ties together the rows of one element for composite parameters (0 otherwise).
    """
    return Table(
        name,
        metadata,
        Column("rid", BigInteger, nullable=False),
        Column("resource_type", String(64), nullable=False),
        Column("param", String(100), nullable=False),
        *columns,
        Column("grp", Integer, nullable=False, default=0),
    )


# Each lookup index ends with rid, so listing a criterion's matches reads the index alone.
index_token = _index_table(
    "index_token",
    Column("system", Text, nullable=True),
    Column("code", Text, nullable=True),
    Column("text", Text, nullable=True),  # normalised display / text, for :text
)
Index(
    "ix_token_lookup",
    index_token.c.resource_type,
    index_token.c.param,
    index_token.c.code,
    index_token.c.system,
    index_token.c.rid,
)
Index("ix_token_rid", index_token.c.rid)

index_string = _index_table(
    "index_string",
    Column("value", Text, nullable=False),  # normalised: case-folded, accents removed
    Column("exact", Text, nullable=False),
)
Index(
    "ix_string_lookup",
    index_string.c.resource_type,
    index_string.c.param,
    index_string.c.value,
    index_string.c.rid,
    postgresql_ops={"value": "text_pattern_ops"},
)
Index("ix_string_rid", index_string.c.rid)
# The rows of each type, parameter and first PREFIX_BUCKET characters of the value (a
# prefix bucket), in row-key order (migration 0008).
PREFIX_BUCKET = 3
PREFIX_BUCKET_OF = func.substr(
    index_string.c.value, literal_column("1"), literal_column(str(PREFIX_BUCKET))
)
Index(
    "ix_string_bucket",
    index_string.c.resource_type,
    index_string.c.param,
    PREFIX_BUCKET_OF,
    index_string.c.rid,
)

index_date = _index_table(
    "index_date",
    Column("low", String(24), nullable=False),  # [low, high) as sortable UTC instants
    Column("high", String(24), nullable=False),
)
Index(
    "ix_date_lookup",
    index_date.c.resource_type,
    index_date.c.param,
    index_date.c.low,
    index_date.c.high,
    index_date.c.rid,
)
Index("ix_date_rid", index_date.c.rid)

index_number = _index_table("index_number", Column("value", Float, nullable=False))
Index(
    "ix_number_lookup",
    index_number.c.resource_type,
    index_number.c.param,
    index_number.c.value,
    index_number.c.rid,
)
Index("ix_number_rid", index_number.c.rid)

index_quantity = _index_table(
    "index_quantity",
    Column("value", Float, nullable=False),
    Column("system", Text, nullable=True),
    Column("code", Text, nullable=True),
    Column("canonical_value", Float, nullable=True),
    Column("canonical_unit", Text, nullable=True),
)
Index(
    "ix_quantity_value",
    index_quantity.c.resource_type,
    index_quantity.c.param,
    index_quantity.c.value,
    index_quantity.c.code,
    index_quantity.c.rid,
)
Index(
    "ix_quantity_canonical",
    index_quantity.c.resource_type,
    index_quantity.c.param,
    index_quantity.c.canonical_unit,
    index_quantity.c.canonical_value,
    index_quantity.c.rid,
)
Index("ix_quantity_rid", index_quantity.c.rid)

index_reference = _index_table(
    "index_reference",
    # Type/id for references inside this server; the URL as given otherwise
    Column("target_type", String(64), nullable=True),
    Column("target_id", Text, nullable=True),
    Column("identifier_system", Text, nullable=True),  # for :identifier
    Column("identifier_value", Text, nullable=True),
)
Index(
    "ix_reference_lookup",
    index_reference.c.resource_type,
    index_reference.c.param,
    index_reference.c.target_id,
    index_reference.c.target_type,
    index_reference.c.rid,
)
# Who points at Type/id: reverse chaining, _revinclude and $everything.
Index("ix_reference_target", index_reference.c.target_id, index_reference.c.target_type)
Index("ix_reference_rid", index_reference.c.rid)

index_uri = _index_table("index_uri", Column("value", Text, nullable=False))
Index(
    "ix_uri_lookup",
    index_uri.c.resource_type,
    index_uri.c.param,
    index_uri.c.value,
    index_uri.c.rid,
)
Index("ix_uri_rid", index_uri.c.rid)

INDEX_TABLES: dict[str, Table] = {
    "token": index_token,
    "string": index_string,
    "date": index_date,
    "number": index_number,
    "quantity": index_quantity,
    "reference": index_reference,
    "uri": index_uri,
}

# --- security: identities, OAuth grants, break-glass, the audit chain -------------------

user_account = Table(
    "user_account",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("username", String(200), nullable=False, unique=True),
    Column("password_hash", Text, nullable=True),  # Argon2id; NULL for devices and systems
    Column("role", String(32), nullable=False),
    Column("organisation", String(16), nullable=True),  # ODS code
    Column("patient_id", String(64), nullable=True),  # the Patient a patient user is
    Column("device_id", String(64), nullable=True),  # the Device a device user is
    Column("display_name", Text, nullable=True),
    Column("disabled", Boolean, nullable=False, default=False),
    Column("created", String(24), nullable=False),
)

oauth_client = Table(
    "oauth_client",
    metadata,
    Column("client_id", String(100), primary_key=True),
    Column("secret_hash", Text, nullable=True),  # Argon2id; NULL for public (PKCE) clients
    Column("name", Text, nullable=False),
    Column("redirect_uris", Text, nullable=False),  # JSON array
    Column("grant_types", Text, nullable=False),  # JSON array
    Column("scope", Text, nullable=False),  # the most this client may ask for
    Column("user_id", String(64), nullable=True),  # client credentials act as this user
    Column("disabled", Boolean, nullable=False, default=False),
    Column("created", String(24), nullable=False),
)

oauth_grant = Table(
    "oauth_grant",
    metadata,
    # authorization codes and refresh tokens, stored only as SHA-256 digests
    Column("digest", String(64), primary_key=True),
    Column("kind", String(16), nullable=False),  # code | refresh
    Column("client_id", String(100), nullable=False),
    Column("user_id", String(64), nullable=False),
    Column("scope", Text, nullable=False),
    Column("redirect_uri", Text, nullable=True),
    Column("code_challenge", Text, nullable=True),
    Column("expires", String(24), nullable=False),
    Column("used", Boolean, nullable=False, default=False),
)

revoked_token = Table(
    "revoked_token",
    metadata,
    Column("jti", String(64), primary_key=True),
    Column("expires", String(24), nullable=False),
)

break_glass = Table(
    "break_glass",
    metadata,
    Column("id", Key, primary_key=True, autoincrement=True),
    Column("user_id", String(64), nullable=False),
    Column("patient_id", String(64), nullable=False),
    Column("reason", Text, nullable=False),
    Column("granted", String(24), nullable=False),
    Column("expires", String(24), nullable=False),
    Column("reviewed_by", String(64), nullable=True),
    Column("reviewed", String(24), nullable=True),
    Column("outcome", Text, nullable=True),
    Column("organisation", String(16), nullable=True),  # ODS code the user acted for
)
Index(
    "ix_break_glass_user_patient",
    break_glass.c.user_id,
    break_glass.c.patient_id,
    break_glass.c.expires,
)

sign_in_failure = Table(
    "sign_in_failure",
    metadata,
    # One row per failed sign-in, under "account:<username>" and "address:<client>".
    Column("id", Key, primary_key=True, autoincrement=True),
    Column("subject", String(240), nullable=False),
    Column("at", String(24), nullable=False),
)
Index("ix_sign_in_failure_subject", sign_in_failure.c.subject, sign_in_failure.c.at)

audit_event = Table(
    "audit_event",
    metadata,
    # Append-only: seq orders the chain; hash = SHA-256(previous hash, seq, content).
    Column("seq", Key, primary_key=True, autoincrement=True),
    Column("recorded", String(24), nullable=False),
    Column("user_id", String(64), nullable=True),
    Column("patient_id", String(64), nullable=True),
    Column("action", String(8), nullable=False),  # C R U D E (BALP / AuditEvent.action)
    Column("outcome", String(4), nullable=False),  # 0 success, 4 minor, 8 serious failure
    Column("break_glass", Boolean, nullable=False, default=False),
    Column("content", Text, nullable=False),  # the AuditEvent resource, JSON
    Column("previous_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
    # HMAC-SHA-256 of "seq|hash" under the audit key, kept outside the database: one who
    # can write this table cannot recompute it after rewriting entries (NULL: written
    # before the trail had a key).
    Column("seal", String(64), nullable=True),
)
Index("ix_audit_patient", audit_event.c.patient_id, audit_event.c.seq)
Index("ix_audit_user", audit_event.c.user_id, audit_event.c.seq)

# Every patient and resource ("Type/id") an entry is about: a search or a Bundle may
# touch many, and each one's access log (and an AuditEvent search by entity) finds it.
audit_entity = Table(
    "audit_entity",
    metadata,
    Column("reference", String(200), primary_key=True),
    Column("seq", Key, primary_key=True),
)

# Subscriptions (monitoring/subscriptions.py): kept beside the record, not in it, because
# each is the standing request of one user, delivered only what that user may read; the
# owner_* columns are who created it, as their token said.
subscription = Table(
    "subscription",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("version_id", Integer, nullable=False),
    Column("last_updated", String(40), nullable=False),
    Column("status", String(16), nullable=False),  # requested | active | error | off
    Column("owner_subject", String(200), nullable=False),
    Column("owner_role", String(32), nullable=False),
    Column("owner_scope", Text, nullable=False),
    Column("owner_organisation", String(16), nullable=True),
    Column("owner_patient_id", String(64), nullable=True),
    Column("owner_token_id", String(64), nullable=True),
    Column("content", Text, nullable=False),  # the Subscription resource, JSON
)
Index("ix_subscription_owner", subscription.c.owner_subject)
# Asynchronous bulk requests ($export, $import): one row each, so that any worker can
# answer a status poll. Times are seconds since the epoch; `heartbeat` moves while the
# job runs, and a job whose heartbeat stops has lost its worker.
bulk_job = Table(
    "bulk_job",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("kind", String(16), nullable=False),  # export | import
    Column("owner", String(240), nullable=False),  # the token subject that asked
    Column("request", Text, nullable=False),  # the kick-off URL
    Column("state", String(16), nullable=False),  # in-progress | complete | failed
    Column("created", Float, nullable=False),
    Column("heartbeat", Float, nullable=False),
    Column("expires", Float, nullable=False),
    Column("progress", Text, nullable=False, default=""),
    Column("result", Text, nullable=True),  # the manifest, report or OperationOutcome (JSON)
)
Index("ix_bulk_job_expires", bulk_job.c.expires)
