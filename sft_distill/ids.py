"""Ids and digests: stable sample ids, and the one BLAKE2b helper behind ids, keys, checksums."""

from __future__ import annotations

import hashlib

from .models import PathLike

_SEP = "\x1f"  # ASCII unit separator: never typed, so parts cannot run into each other


_ESC = "\x1e"


def stable_id(*parts: str, prefix: str = "", length: int = 16) -> str:
    """Deterministic hex id of ``parts`` (BLAKE2b), the same in every process and run.

    Parts are joined with "\\x1f"; the rare "\\x1e"/"\\x1f" inside a part are escaped first,
    so ``("a\\x1fb",)`` and ``("a", "b")`` get different ids.

    Raises:
        ValueError: ``length`` is outside 1..64.
        TypeError: a part is not a str.
    """
    if not 1 <= length <= 64:
        raise ValueError(f"length must be 1..64, got {length}")
    encoded = []
    for part in parts:
        if not isinstance(part, str):
            raise TypeError(f"stable_id parts must be str, got {type(part).__name__}")
        if _ESC in part or _SEP in part:
            part = part.replace(_ESC, _ESC + _ESC).replace(_SEP, _ESC + _SEP)
        encoded.append(part)
    # surrogatepass: a lone surrogate from a "\ud800" escape in the input must not crash.
    data = _SEP.join(encoded).encode("utf-8", "surrogatepass")
    digest = hashlib.blake2b(data, digest_size=32).hexdigest()
    return prefix + digest[:length]


def file_digest(path: PathLike, *, chunk_bytes: int = 1 << 20) -> str:
    """Hex blake2b of a file's bytes, read in chunks (identifies the input of a run)."""
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        while block := f.read(chunk_bytes):
            h.update(block)
    return h.hexdigest()
