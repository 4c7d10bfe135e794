"""The audit key: the secret that seals audit entries, kept in the data directory.

It lives beside the token signing key and never in the database, so one who can rewrite
the audit table cannot recompute the seals. Backups must carry it (see audit_key_path):
without it a restored trail still verifies as a chain, but its seals cannot be checked.
"""

from __future__ import annotations

import os
import secrets
import tempfile
from pathlib import Path

KEY_FILE = "audit-key"
KEY_BYTES = 32


class AuditKeyError(Exception):
    """The audit key file is there but does not hold a key; the text says where."""


def audit_key_path(data_dir: Path) -> Path:
    """Return where the audit key of a data directory is kept."""
    return data_dir / KEY_FILE


def load_audit_key(data_dir: Path, *, create: bool = True) -> bytes | None:
    """Return the audit key of data_dir, creating it (readable by its owner only) if absent
    and create is set; None if absent and not created."""
    path = audit_key_path(data_dir)
    if not path.exists():
        if not create:
            return None
        data_dir.mkdir(parents=True, exist_ok=True)
        # Written aside under a name of its own, then linked into place: workers and
        # threads starting together each make a key, the first link wins, and no one
        # reads a key half written.
        descriptor, name = tempfile.mkstemp(prefix=f".{KEY_FILE}.", dir=data_dir)
        written = Path(name)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(secrets.token_hex(KEY_BYTES) + "\n")
        try:
            os.link(written, path)
        except FileExistsError:
            pass  # another process's key is in place: use it
        finally:
            written.unlink()
    text = path.read_text().strip()
    try:
        key = bytes.fromhex(text)
    except ValueError:
        raise AuditKeyError(f"{path} does not hold an audit key (hex digits)") from None
    if len(key) < KEY_BYTES:
        raise AuditKeyError(f"{path} holds a key shorter than {KEY_BYTES} bytes")
    return key
