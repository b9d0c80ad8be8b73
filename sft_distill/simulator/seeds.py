"""Stable numbers from strings: every reply of the simulator is a pure function of its prompt."""

from __future__ import annotations

import hashlib


def seed_of(*parts: str) -> int:
    """A stable 64-bit seed from strings (never the salted built-in hash())."""
    digest = hashlib.sha1("\x1f".join(parts).encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:8], "big")


def unit(*parts: str) -> float:
    """A stable uniform number in [0, 1) from strings."""
    return seed_of(*parts) / 2.0**64
