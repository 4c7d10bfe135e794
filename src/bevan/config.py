"""Settings: from command-line flags, else BEVAN_* environment variables, else defaults."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

DEFAULT_DATA_DIR = Path("bevan-data")
DEFAULT_MAX_BODY = 50 * 1024 * 1024  # a large Synthea patient bundle is about 5 MB


@dataclass(frozen=True)
class Settings:
    data_dir: Path = DEFAULT_DATA_DIR
    database_url: str | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    max_body_bytes: int = DEFAULT_MAX_BODY
    base_path: str = "/fhir"

    public_base_url: str | None = None
    # References to this server must resolve (BEVAN_REFERENTIAL_INTEGRITY=off for bulk
    # loads of partial data).
    referential_integrity: bool = True

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
            public_base_url=os.environ.get("BEVAN_BASE_URL") or None,
            referential_integrity=_switch(os.environ.get("BEVAN_REFERENTIAL_INTEGRITY"), True),
        )
        given = {k: v for k, v in overrides.items() if v is not None}
        return replace(settings, **given)  # type: ignore[arg-type]


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
