"""Settings: from command-line flags, else BEVAN_* environment variables, else defaults."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

DEFAULT_DATA_DIR = Path("bevan-data")
DEFAULT_MAX_BODY = 50 * 1024 * 1024  # a large Synthea patient bundle is about 5 MB
# What a patient's or a device's request may carry: a questionnaire answered, a day of
# readings, never a record's worth. Staff and systems have max_body_bytes.
DEFAULT_MAX_PATIENT_BODY = 256 * 1024
DEFAULT_BULK_RETENTION_HOURS = 24.0


@dataclass(frozen=True)
class Settings:
    data_dir: Path = DEFAULT_DATA_DIR
    database_url: str | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    max_body_bytes: int = DEFAULT_MAX_BODY
    max_patient_body_bytes: int = DEFAULT_MAX_PATIENT_BODY
    base_path: str = "/fhir"

    public_base_url: str | None = None
    # Proxies (addresses or CIDR networks) whose X-Forwarded-For / Forwarded headers are
    # believed; by default none, and the socket's peer is the client.
    trusted_proxies: tuple[str, ...] = ()
    # Origins whose browser apps may call the API (CORS); none unless the operator names them.
    cors_origins: tuple[str, ...] = ()
    # Addresses or networks that may read /metrics without a system token (a scraper's).
    metrics_allow: tuple[str, ...] = ()
    # One JSON line per request on stdout; `bevan serve` turns it on unless told not to.
    request_log: bool = False
    # References to this server must resolve (BEVAN_REFERENTIAL_INTEGRITY=off for bulk
    # loads of partial data).
    referential_integrity: bool = True
    # How hard a SQLite commit makes sure of the disk (BEVAN_SQLITE_SYNCHRONOUS): NORMAL
    # keeps every acknowledged write across the process being killed, FULL across a
    # power cut too.
    sqlite_synchronous: str = "NORMAL"
    # URL prefixes rest-hook Subscriptions may deliver to (BEVAN_SUBSCRIPTION_ENDPOINTS,
    # comma-separated); none by default, so no rest-hook is accepted until allowed.
    subscription_endpoints: tuple[str, ...] = ()
    # A failed delivery is tried again after this many seconds, doubling each time, and
    # the subscription marked error after this many failures in a row.
    subscription_retry_seconds: float = 1.0
    subscription_attempts: int = 6
    # How long a bulk request ($export, $import) and its files are kept after it was
    # asked for; after that its status and files answer 404.
    bulk_retention_hours: float = DEFAULT_BULK_RETENTION_HOURS
    # The readings of one NEWS2 set are all taken within this many minutes.
    news2_window_minutes: float = 15
    # How often the virtual ward looks for overdue readings (seconds; 0: never, in this
    # process; `bevan ward overdue` runs one look).
    overdue_check_seconds: float = 300

    # How long a slot freed for someone on a waiting list is held for them to accept.
    offer_window_minutes: int = 120
    # How often the server ends offers whose window has passed (0: never; run
    # `bevan waitlist expire-offers` instead).
    offer_check_seconds: float = 60.0

    @property
    def bulk_directory(self) -> Path:
        """Return where bulk requests keep their files (one directory per request)."""
        return self.data_dir / "bulk"

    @property
    def base_url(self) -> str:
        """Return the FHIR base URL clients use: BEVAN_BASE_URL, else host, port and path."""
        return self.public_base_url or f"http://{self.host}:{self.port}{self.base_path}"

    @property
    def resolved_database_url(self) -> str:
        """Return the database URL: the one given, or a SQLite file in the data directory."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'bevan.db').resolve()}"

    @classmethod
    def from_environment(cls, **overrides: object) -> Settings:
        """Return settings from BEVAN_* variables, with non-None overrides on top."""
        settings = cls(
            data_dir=Path(os.environ.get("BEVAN_DATA_DIR", str(DEFAULT_DATA_DIR))),
            database_url=os.environ.get("BEVAN_DATABASE_URL") or None,
            max_body_bytes=int(os.environ.get("BEVAN_MAX_BODY_BYTES", DEFAULT_MAX_BODY)),
            max_patient_body_bytes=int(
                os.environ.get("BEVAN_MAX_PATIENT_BODY_BYTES", DEFAULT_MAX_PATIENT_BODY)
            ),
            public_base_url=os.environ.get("BEVAN_BASE_URL") or None,
            trusted_proxies=_listed(os.environ.get("BEVAN_TRUSTED_PROXIES", "")),
            cors_origins=_listed(os.environ.get("BEVAN_CORS_ORIGINS", "")),
            metrics_allow=_listed(os.environ.get("BEVAN_METRICS_ALLOW", "")),
            request_log=_switch(os.environ.get("BEVAN_REQUEST_LOG"), True),
            referential_integrity=_switch(os.environ.get("BEVAN_REFERENTIAL_INTEGRITY"), True),
            sqlite_synchronous=os.environ.get("BEVAN_SQLITE_SYNCHRONOUS", "NORMAL").upper(),
            subscription_endpoints=_listed(os.environ.get("BEVAN_SUBSCRIPTION_ENDPOINTS", "")),
            subscription_retry_seconds=float(
                os.environ.get("BEVAN_SUBSCRIPTION_RETRY_SECONDS", "1.0")
            ),
            subscription_attempts=int(os.environ.get("BEVAN_SUBSCRIPTION_ATTEMPTS", "6")),
            bulk_retention_hours=float(
                os.environ.get("BEVAN_BULK_RETENTION_HOURS", DEFAULT_BULK_RETENTION_HOURS)
            ),
            news2_window_minutes=float(os.environ.get("BEVAN_NEWS2_WINDOW_MINUTES", 15)),
            overdue_check_seconds=float(os.environ.get("BEVAN_OVERDUE_CHECK_SECONDS", 300)),
            offer_window_minutes=int(os.environ.get("BEVAN_OFFER_WINDOW_MINUTES", 120)),
            offer_check_seconds=float(os.environ.get("BEVAN_OFFER_CHECK_SECONDS", 60)),
        )
        given = {k: v for k, v in overrides.items() if v is not None}
        return replace(settings, **given)  # type: ignore[arg-type]


def _listed(value: str) -> tuple[str, ...]:
    """Return the comma- or space-separated items of a setting."""
    return tuple(item for item in value.replace(",", " ").split() if item)


def _switch(value: str | None, default: bool) -> bool:
    """Return an on/off environment setting (on, off, true, false, 1, 0, yes, no)."""
    if value is None or not value.strip():
        return default
    text = value.strip().lower()
    if text in ("on", "true", "1", "yes"):
        return True
    if text in ("off", "false", "0", "no"):
        return False
    raise ValueError(f"expected on or off, got {value!r}")
