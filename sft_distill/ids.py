"""Ids and digests: one BLAKE2b helper behind every sample id, cache key, checksum and file hash.

Each value's digest size (and ``person``) is part of its definition: ids, cache keys and
checksums written by earlier runs must come out the same, so none of them may change.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .models import PathLike

_SEP = "\x1f"  # ASCII unit separator: never typed, so parts cannot run into each other
_ESC = "\x1e"


def hasher(*, size: int = 64, person: bytes = b"") -> Any:
    """A BLAKE2b hash object of ``size`` bytes, to feed piece by piece (or copy midway)."""
    return hashlib.blake2b(digest_size=size, person=person)


def digest(data: bytes | Iterable[bytes], *, size: int = 64, person: bytes = b"") -> bytes:
    """BLAKE2b of ``data`` (bytes, or pieces hashed one after the other) in ``size`` bytes."""
    h = hasher(size=size, person=person)
    if isinstance(data, bytes):
        h.update(data)
    else:
        for piece in data:
            h.update(piece)
    return bytes(h.digest())


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
    return prefix + digest(data, size=32).hex()[:length]


def shard_of(unit_id: str, count: int) -> int:
    """Which of ``count`` shards a unit (slice, record) belongs to: the same on every machine."""
    return int.from_bytes(digest(unit_id.encode("utf-8"), size=8, person=b"shard"), "big") % count


def text_digest(text: str, *, size: int) -> bytes:
    """BLAKE2b of a text's UTF-8 (lone surrogates kept as they are, never an error)."""
    return digest(text.encode("utf-8", "surrogatepass"), size=size)


def file_digest(path: PathLike, *, chunk_bytes: int = 1 << 20) -> str:
    """Hex BLAKE2b-128 of a file's bytes, read in chunks (identifies the input of a run)."""
    with open(path, "rb") as f:
        return digest(iter(lambda: f.read(chunk_bytes), b""), size=16).hex()
