"""Response cache: every accepted LLM reply, keyed by a hash of the request, in SQLite (WAL).

A rerun on the same output directory replays finished calls from here, so no completed call is
paid for twice. Replies are handed to a writer thread that commits them at once, in small
batches when many arrive together (so the event loop never waits on the disk); with WAL a
committed reply survives ``kill -9`` of the process. Until its commit, a reply is also served
from memory. Keys never include the API key.

Every HTTP exchange is also logged in ``calls`` (endpoint, model, status, tokens, start, latency,
invocation), by the same writer in the same transactions as the replies: a run's usage, cost and
timings over all its invocations are summed from there, and a reply that survived a ``kill -9``
has its call logged too.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Any

from .data_io import fix_surrogates
from .errors import OutputError

log = logging.getLogger(__name__)

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
CREATE TABLE IF NOT EXISTS calls (
    invocation INTEGER NOT NULL,
    endpoint TEXT NOT NULL,
    model TEXT NOT NULL,
    status INTEGER,
    prompt_tokens INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    started REAL NOT NULL,
    latency_s REAL NOT NULL
);
"""


_FIELDS = ("model", "content", "reasoning", "finish_reason", "prompt_tokens", "completion_tokens")
_INSERT = "INSERT OR REPLACE INTO responses VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
_INSERT_CALL = "INSERT INTO calls VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
_STOP = object()


class _Call(tuple):  # type: ignore[type-arg]
    """A ``calls`` row queued for the writer (a plain tuple is a reply)."""

    __slots__ = ()


def request_key(namespace: str, payload: dict[str, Any], *, skip: Collection[str] = ()) -> str:
    """Stable hash of an endpoint namespace and the request body (never the key).

    Message texts are hashed directly (not re-serialised); the other fields as sorted JSON.
    Keys in ``skip`` are left out.
    """
    return finish_key(key_prefix(namespace, payload, skip=skip), payload)


def key_prefix(namespace: str, payload: dict[str, Any], *, skip: Collection[str] = ()) -> Any:
    """The hash state of ``request_key`` before the messages: the same for every request of a
    client whose other fields do not change, so it can be computed once and copied."""
    h = hashlib.blake2b(digest_size=20)
    h.update(namespace.encode("utf-8", "surrogatepass"))
    rest = {k: v for k, v in payload.items() if k != "messages" and k not in skip}
    h.update(b"\x1f")
    h.update(json.dumps(rest, sort_keys=True, ensure_ascii=False).encode("utf-8", "surrogatepass"))
    return h


def finish_key(prefix: Any, payload: dict[str, Any]) -> str:
    """``request_key`` from its ``key_prefix`` (left unchanged) and the payload's messages."""
    h = prefix.copy()
    for m in payload.get("messages", ()):
        h.update(b"\x1e")
        h.update(str(m.get("role", "")).encode())
        h.update(b"\x1f")
        h.update(str(m.get("content", "")).encode("utf-8", "surrogatepass"))
    return str(h.hexdigest())


class _KeyFilter:
    """A Bloom filter of keys (hex digests): "surely absent" spares a SELECT for a new request.

    Fixed memory (2 MB); a false "maybe" only costs the SELECT it would have cost anyway.
    """

    _BITS = 1 << 24

    def __init__(self) -> None:
        self._bits = bytearray(self._BITS >> 3)

    def _positions(self, key: str) -> tuple[int, int, int]:
        a, b = int(key[:12], 16), int(key[12:24], 16) | 1
        m = self._BITS - 1
        return a & m, (a + b) & m, (a + 2 * b) & m

    def add(self, key: str) -> None:
        for p in self._positions(key):
            self._bits[p >> 3] |= 1 << (p & 7)

    def __contains__(self, key: str) -> bool:
        bits = self._bits
        return all(bits[p >> 3] & (1 << (p & 7)) for p in self._positions(key))


class ResponseCache:
    """SQLite-backed store of replies; safe to open again after a crash."""

    def __init__(self, path: str | Path, *, exclusive: bool = False) -> None:
        """Open (or create) the cache at ``path``.

        ``exclusive``: the caller guarantees no other connection writes this file while it is
        open (the pipeline holds the output directory's lock). A cache that then opens empty
        answers a request it was never given without asking SQLite.
        """
        self.path = Path(path)
        try:
            self._db = self._connect()
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.executescript(_SCHEMA)
            # An exclusive cache that starts empty holds only what it is given: keys never put
            # need no SELECT (on a fresh run, that is every request).
            self._put_keys: _KeyFilter | None = None
            empty = self._db.execute("SELECT 1 FROM responses LIMIT 1").fetchone() is None
            if exclusive and empty:
                self._put_keys = _KeyFilter()
        except sqlite3.Error as exc:
            raise OutputError(f"{self.path}: cannot open response cache: {exc}") from None
        self.hits = 0
        self.writes = 0
        self.invocation = 0  # stamped on every logged call (set by the run that owns the cache)
        self.calls_logged = 0
        self._pending: dict[str, tuple[Any, ...]] = {}
        self._lock = threading.Lock()
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._writer_error: BaseException | None = None
        self._writer = threading.Thread(
            target=self._write_loop, name="sft-distill-cache-writer", daemon=True
        )
        self._writer.start()

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA busy_timeout=10000")
        return db

    def _write_loop(self) -> None:
        """Commit queued rows, as many per transaction as have arrived meanwhile."""
        db = self._connect()
        try:
            stop = False
            while not stop:
                batch = [self._queue.get()]
                while True:
                    try:
                        batch.append(self._queue.get_nowait())
                    except queue.Empty:
                        break
                rows = []
                calls = []
                flushed = []
                for item in batch:
                    if item is _STOP:
                        stop = True
                    elif isinstance(item, threading.Event):
                        flushed.append(item)
                    elif type(item) is _Call:
                        calls.append(item)
                    else:
                        rows.append(item)
                try:
                    if rows or calls:
                        self._commit(db, rows, calls)
                finally:
                    for event in flushed:
                        event.set()
        except BaseException as exc:  # reported to the caller by the next put/flush/close
            self._writer_error = exc
        finally:
            db.close()

    def _commit(
        self, db: sqlite3.Connection, rows: list[tuple[Any, ...]], calls: list[_Call]
    ) -> None:
        """Commit rows in one transaction; if that fails, row by row, skipping a bad row."""
        try:
            db.execute("BEGIN")
            db.executemany(_INSERT_CALL, calls)
            db.executemany(_INSERT, rows)
            db.execute("COMMIT")
        except sqlite3.Error:
            db.execute("ROLLBACK")
            with contextlib.suppress(sqlite3.Error):
                db.executemany(_INSERT_CALL, calls)  # plain numbers: only a full disk stops it
            for row in rows:
                try:
                    db.execute(_INSERT, row)
                except (sqlite3.Error, UnicodeError) as exc:
                    # One unstorable reply costs one repeated call on a rerun, not the run.
                    log.warning("%s: reply not cached: %s", self.path, exc)
        with self._lock:
            for row in rows:
                if self._pending.get(row[0]) is row:
                    del self._pending[row[0]]

    def _check_writer(self) -> None:
        if self._writer_error is not None:
            raise OutputError(f"{self.path}: cannot write the response cache: {self._writer_error}")

    def get(self, key: str) -> dict[str, Any] | None:
        """The stored reply for ``key``, or None."""
        pending = self._pending.get(key)
        if pending is not None:
            self.hits += 1
            _, *fields, _ = pending
            return dict(zip(_FIELDS, fields, strict=True))
        if self._put_keys is not None and key not in self._put_keys:
            return None
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
        """Queue a reply for the writer thread; it is served from memory until committed.

        Raises:
            OutputError: an earlier write failed (e.g. the disk is full).
        """
        self._check_writer()
        if self._db is None:
            raise OutputError(f"{self.path}: the response cache is closed")
        row = (
            key,
            reply["model"],
            fix_surrogates(reply["content"]),
            fix_surrogates(reply["reasoning"]) if reply.get("reasoning") else None,
            reply.get("finish_reason"),
            int(reply.get("prompt_tokens") or 0),
            int(reply.get("completion_tokens") or 0),
            time.time(),
        )
        with self._lock:
            self._pending[key] = row
            if self._put_keys is not None:
                self._put_keys.add(key)
        self._queue.put(row)
        self.writes += 1

    def record_call(
        self,
        endpoint: str,
        model: str,
        *,
        status: int | None,
        prompt_tokens: int,
        completion_tokens: int,
        started: float,
        latency_s: float,
    ) -> None:
        """Queue one HTTP exchange for the ``calls`` log (``started``: epoch seconds)."""
        if self._db is None or self._writer_error is not None:
            return  # closed or broken: put() reports it; the log is never worth a failed call
        self.calls_logged += 1
        self._queue.put(
            _Call(
                (
                    self.invocation,
                    endpoint,
                    model,
                    status,
                    prompt_tokens,
                    completion_tokens,
                    started,
                    latency_s,
                )
            )
        )

    def calls_since(self, invocation: int) -> Iterator[tuple[Any, ...]]:
        """Logged calls of ``invocation`` and later ones, once every queued row is committed:
        (invocation, endpoint, model, prompt_tokens, completion_tokens, started, latency_s)."""
        self.flush()
        yield from self._db.execute(
            "SELECT invocation, endpoint, model, prompt_tokens, completion_tokens, started, "
            "latency_s FROM calls WHERE invocation >= ?",
            (invocation,),
        )

    def flush(self, timeout_s: float = 60.0) -> None:
        """Wait until every queued reply is committed."""
        if self._writer.is_alive():
            done = threading.Event()
            self._queue.put(done)
            done.wait(timeout_s)
        self._check_writer()

    def get_meta(self, name: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, name: str, value: str) -> None:
        self._db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (name, value))

    def delete_meta(self, name: str) -> None:
        self._db.execute("DELETE FROM meta WHERE name = ?", (name,))

    def __len__(self) -> int:
        self.flush()
        return int(self._db.execute("SELECT COUNT(*) FROM responses").fetchone()[0])

    def close(self) -> None:
        """Commit what is queued and close the database; safe to call twice."""
        if self._db is None:
            return
        if self._writer.is_alive():
            self._queue.put(_STOP)
            self._writer.join()
        self._db.close()
        self._db = None  # type: ignore[assignment]
        self._check_writer()

    def __enter__(self) -> ResponseCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def get_vectors(self, keys: list[str]) -> list[Any]:
        """The stored float32 vector (a numpy array) for each key, or None where there is none."""
        import numpy as np  # only the embedding dedup needs it

        found: dict[str, bytes] = {}
        # Chunks stay under SQLite's default limit of 999 bound parameters on old builds.
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(
                f"SELECT key, vector FROM embeddings WHERE key IN ({marks})", tuple(chunk)
            )
            found.update(rows.fetchall())
        return [None if (b := found.get(k)) is None else np.frombuffer(b, "<f4") for k in keys]

    def put_vectors(self, keys: list[str], vectors: Any) -> None:
        """Store one vector per key (the rows of ``vectors``, as float32) in one transaction."""
        import numpy as np

        rows = np.asarray(vectors, dtype="<f4")
        if len(rows) != len(keys):
            raise ValueError(f"{len(keys)} keys for {len(rows)} vectors")
        # Written on this connection, not the reply writer's: embeddings come after the replies,
        # and busy_timeout covers a reply batch still committing.
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._db.executemany(
                "INSERT OR REPLACE INTO embeddings VALUES (?, ?)",
                ((k, row.tobytes()) for k, row in zip(keys, rows, strict=True)),
            )
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")
