"""Logical ids: the R4 id datatype, and new server-assigned ids."""

from __future__ import annotations

import re
import uuid

ID_PATTERN = re.compile(r"[A-Za-z0-9\-.]{1,64}")


def is_valid_id(value: str) -> bool:
    """Return True if value matches the R4 id datatype ([A-Za-z0-9-.]{1,64})."""
    return ID_PATTERN.fullmatch(value) is not None


def new_id() -> str:
    """Return a new server-assigned logical id (a random UUID, 36 characters)."""
    return str(uuid.uuid4())
