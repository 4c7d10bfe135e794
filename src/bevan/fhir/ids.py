"""Logical ids: the R4 id datatype, and new server-assigned ids."""

from __future__ import annotations

import re

from uuid6 import uuid7

ID_PATTERN = re.compile(r"[A-Za-z0-9\-.]{1,64}")


def is_valid_id(value: str) -> bool:
    """Return True if value matches the R4 id datatype ([A-Za-z0-9-.]{1,64})."""
    return ID_PATTERN.fullmatch(value) is not None


def new_id() -> str:
    """Return a new server-assigned logical id: a UUID of version 7 (RFC 9562), 36 characters.

    Its first 48 bits are the time in milliseconds and the rest a counter and random
    bits, so ids made one after another sort together. A new resource's rows then go at
    the end of the indexes keyed by id, and by what points at it, instead of into a
    random page of each: once a database is large, those pages were most of what a
    commit wrote. Guessing one is no easier than guessing a random UUID's 74 bits.
    """
    return str(uuid7())
