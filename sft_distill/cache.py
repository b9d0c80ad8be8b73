"""Response cache: every accepted LLM reply, keyed by a hash of the request, in SQLite (WAL).

A rerun on the same output directory replays finished calls from here, so no completed call is
paid for twice. Commits happen per reply: with WAL and ``synchronous=NORMAL`` a committed reply
survives ``kill -9`` of the process. Keys never include the API key.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from pathlib import Path
from typing import Any

from .errors import OutputError

CACHE_FILENAME = "cache.sqlite3"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    key TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    content TEXT NOT NULL,
    reasoning TEXT,
    finish_reason TEXT,
    prompt_tokens INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS embeddings (
    key TEXT PRIMARY KEY,
    vector BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""


def request_key(namespace: str, payload: dict[str, Any]) -> str:
    """Stable hash of an endpoint namespace and the request body (never the key)."""
    blob = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    h = hashlib.blake2b(digest_size=20)
    h.update(namespace.encode("utf-8", "surrogatepass"))
    h.update(b"\x1f")
    h.update(blob.encode("utf-8", "surrogatepass"))
    return h.hexdigest()


class ResponseCache:
    """SQLite-backed store of replies; safe to open again after a crash."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise OutputError(f"{self.path}: cannot open response cache: {exc}") from None
        self.hits = 0
        self.writes = 0

    def get(self, key: str) -> dict[str, Any] | None:
        """The stored reply for ``key``, or None."""
        row = self._db.execute(
            "SELECT model, content, reasoning, finish_reason, prompt_tokens, completion_tokens "
            "FROM responses WHERE key = ?",
            (key,),
        ).fetchone()
        if row is None:
            return None
        self.hits += 1
        return {
            "model": row[0],
            "content": row[1],
            "reasoning": row[2],
            "finish_reason": row[3],
            "prompt_tokens": row[4],
            "completion_tokens": row[5],
        }

    def put(self, key: str, reply: dict[str, Any]) -> None:
        """Record a reply at once (one autocommitted statement)."""
        self._db.execute(
            "INSERT OR REPLACE INTO responses VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                key,
                reply["model"],
                reply["content"],
                reply.get("reasoning"),
                reply.get("finish_reason"),
                int(reply.get("prompt_tokens") or 0),
                int(reply.get("completion_tokens") or 0),
                time.time(),
            ),
        )
        self.writes += 1

    def get_meta(self, name: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, name: str, value: str) -> None:
        self._db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (name, value))

    def __len__(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM responses").fetchone()[0])

    def close(self) -> None:
        """Close the database; safe to call twice."""
        if self._db is not None:
            self._db.close()
            self._db = None  # type: ignore[assignment]

    def __enter__(self) -> ResponseCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
