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
            trusted_proxies=tuple(
                p.strip()
                for p in os.environ.get("BEVAN_TRUSTED_PROXIES", "").split(",")
                if p.strip()
            ),
        )
        given = {k: v for k, v in overrides.items() if v is not None}
        return replace(settings, **given)  # type: ignore[arg-type]
