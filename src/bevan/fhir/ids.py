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

    Its first 48 bits are the time in milliseconds, moved on by one past the last id's
    when ids come faster than one a millisecond (so a burst runs ahead of the clock),
    and 74 of the other 80 bits are random. Ids made one after another in a process
    sort in that order, so a new resource's rows go at the end of the indexes keyed by
    id, and by what points at it, instead of into a random page of each: once a
    database is large, those pages were most of what a commit wrote.
    """
    return str(uuid7())
