"""Backups of the record: a consistent copy of the database and the files that go with it.

A backup is a directory. It holds the database (`bevan.db`, made with SQLite's online
backup API, so a serving server's writers only wait while pages are copied; or
`bevan.dump`, made by pg_dump in its custom format, one snapshot), every other file of
the data directory (the token signing key and whatever keys and anchors the audit trail
keeps there: without them tokens cannot be checked and the chain cannot be verified
against its key), and `backup.json`, saying what was copied and when.

Everything acknowledged before a backup starts is in it: SQLite copies the committed
database as one read transaction sees it, and pg_dump reads one snapshot.
"""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit, urlunsplit

import orjson

MANIFEST = "backup.json"
SQLITE_COPY = "bevan.db"
POSTGRES_COPY = "bevan.dump"
# Files of a data directory that belong to the live SQLite database, not to the backup's
# own list of files: the database, its log, its shared memory and the writers' lock file.
DATABASE_SUFFIXES = ("", "-wal", "-shm", "-journal", "-writer")


class BackupError(Exception):
    """A backup or restore that cannot be done, with the reason an operator can act on."""


@dataclass(frozen=True)
class BackupReport:
    """What a backup or restore copied."""

    engine: str
    database: Path
    files: tuple[str, ...]


def sqlite_path(url: str) -> Path | None:
    """Return the file of a sqlite:/// URL, or None for any other database."""
    if not url.startswith("sqlite"):
        return None
    return Path(unquote(url.split(":///", 1)[1].split("?", 1)[0]))


def libpq_url(url: str) -> str:
    """Return a PostgreSQL URL as libpq's tools take it (no SQLAlchemy driver name)."""
    scheme, rest = url.split("://", 1)
    return f"{scheme.split('+', 1)[0]}://{rest}"


def search_path_schema(url: str) -> str | None:
    """Return the schema a URL's `options=-csearch_path=...` sets, if it sets one."""
    for option in parse_qs(urlsplit(url).query).get("options", []):
        for part in option.split():
            if part.startswith("-csearch_path="):
                return part.split("=", 1)[1].split(",")[0]
    return None


def _companion_files(data_dir: Path, database: Path | None) -> list[Path]:
    """Return the data directory's own files: everything but the live database's."""
    if not data_dir.is_dir():
        return []
    skip = {database.name + suffix for suffix in DATABASE_SUFFIXES} if database else set()
    return sorted(p for p in data_dir.iterdir() if p.is_file() and p.name not in skip)


def back_up(url: str, data_dir: Path, destination: Path) -> BackupReport:
    """Copy the database at url and the data directory's files into destination (a new or
    empty directory); return what was copied. Raises BackupError."""
    if destination.exists() and any(destination.iterdir()):
        raise BackupError(f"{destination} is not empty; give a new directory for the backup")
    destination.mkdir(parents=True, exist_ok=True)
    database = sqlite_path(url)
    if database is not None:
        if not database.exists():
            raise BackupError(f"there is no database at {database}")
        engine, copy = "sqlite", destination / SQLITE_COPY
        _sqlite_copy(database, copy)
    else:
        engine, copy = "postgresql", destination / POSTGRES_COPY
        _pg_dump(url, copy)
    files = []
    for path in _companion_files(data_dir, database):
        shutil.copy2(path, destination / path.name)
        files.append(path.name)
    manifest = {
        "made": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "engine": engine,
        "database": copy.name,
        "files": files,
    }
    (destination / MANIFEST).write_bytes(orjson.dumps(manifest, option=orjson.OPT_INDENT_2))
    return BackupReport(engine, copy, tuple(files))


def restore(source: Path, url: str, data_dir: Path, *, replace: bool = False) -> BackupReport:
    """Put the backup in source back as the database at url and the data directory's
    files; return what was restored. Without replace, refuses to overwrite a database
    that holds anything or a file whose content differs. The server must be stopped."""
    try:
        manifest = orjson.loads((source / MANIFEST).read_bytes())
    except (OSError, orjson.JSONDecodeError) as error:
        raise BackupError(f"{source} is not a Bevan backup (no readable {MANIFEST})") from error
    database = sqlite_path(url)
    engine = "sqlite" if database is not None else "postgresql"
    if manifest["engine"] != engine:
        raise BackupError(
            f"the backup is of a {manifest['engine']} database; restore it into one of those"
        )
    files: Sequence[str] = manifest["files"]
    data_dir.mkdir(parents=True, exist_ok=True)
    if not replace:
        clashes = [
            name
            for name in files
            if (data_dir / name).exists()
            and (data_dir / name).read_bytes() != (source / name).read_bytes()
        ]
        if database is not None and database.exists() and database.stat().st_size > 0:
            clashes.append(str(database))
        if clashes:
            raise BackupError(
                "restoring would overwrite " + ", ".join(clashes) + " (give --replace to do so)"
            )
    if database is not None:
        database.parent.mkdir(parents=True, exist_ok=True)
        for suffix in DATABASE_SUFFIXES[1:4]:
            Path(f"{database}{suffix}").unlink(missing_ok=True)
        _sqlite_copy(source / manifest["database"], database)
        restored = database
    else:
        _pg_restore(source / manifest["database"], url, replace=replace)
        restored = source / manifest["database"]
    for name in files:
        shutil.copy2(source / name, data_dir / name)
    return BackupReport(engine, restored, tuple(files))


def _sqlite_copy(source: Path, destination: Path) -> None:
    """Copy a SQLite database with the online backup API (consistent while it is written)."""
    reading = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    try:
        writing = sqlite3.connect(destination)
        try:
            # All pages in one step: one read transaction, so one consistent state.
            reading.backup(writing)
        finally:
            writing.close()
    finally:
        reading.close()


def pg_dump_command(url: str, destination: Path) -> list[str]:
    """Return the pg_dump command that backs up url's database (or its schema) to a file."""
    schema = search_path_schema(url)
    command = ["pg_dump", "--format=custom", "--no-owner", f"--file={destination}"]
    if schema:
        command.append(f"--schema={schema}")
    return [*command, f"--dbname={_without_options(libpq_url(url))}"]


def pg_restore_command(source: Path, url: str, *, replace: bool) -> list[str]:
    """Return the pg_restore command that loads a dump into url's database."""
    command = ["pg_restore", "--no-owner", "--exit-on-error", "--single-transaction"]
    if replace:
        command += ["--clean", "--if-exists"]
    return [*command, f"--dbname={_without_options(libpq_url(url))}", str(source)]


def _without_options(url: str) -> str:
    """Return url without `options` (a search_path there would hide the dump's schema)."""
    parts = urlsplit(url)
    kept = [p for p in parts.query.split("&") if p and not p.startswith("options=")]
    return urlunsplit(parts._replace(query="&".join(kept)))


def _run(command: list[str], what: str) -> None:
    if shutil.which(command[0]) is None:
        raise BackupError(
            f"{command[0]} is not installed here; run this instead, where it is:\n  "
            + " ".join(command)
        )
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise BackupError(f"{what} failed: {done.stderr.strip()}")


def _pg_dump(url: str, destination: Path) -> None:
    _run(pg_dump_command(url, destination), "pg_dump")


def _pg_restore(source: Path, url: str, *, replace: bool) -> None:
    _run(pg_restore_command(source, url, replace=replace), "pg_restore")
