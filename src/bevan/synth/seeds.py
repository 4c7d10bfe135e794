"""Reproducible randomness: every patient's generator and every id derive from (seed, index).

Python's hash() is salted per process, so seeds come from BLAKE2b and ids from UUID5;
patient i is therefore the same whatever the population size, process or machine.
"""

from __future__ import annotations

import hashlib
import random
import uuid

_NAMESPACE = uuid.UUID("6f1d3c2e-9a57-5b8e-8a43-2f0b6d1c7e59")


def derived_seed(*parts: object) -> int:
    """Return a 64-bit integer derived from the parts, stable across processes."""
    text = "\x1f".join(str(part) for part in parts).encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "big")


def patient_random(seed: int, index: int) -> random.Random:
    """Return the generator for patient index of the population with this seed."""
    return random.Random(derived_seed("patient", seed, index))


def stable_uuid(seed: int, index: int, kind: str) -> str:
    """Return the UUID5 naming one resource (kind) of patient index."""
    return str(uuid.uuid5(_NAMESPACE, f"{seed}/{index}/{kind}"))
