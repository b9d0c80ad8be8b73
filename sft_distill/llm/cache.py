"""Response cache: every accepted LLM reply, keyed by a hash of the request, in SQLite (WAL).

A rerun on the same output directory replays finished calls from here, so no completed call is
paid for twice. Replies are handed to a writer thread that commits them at once, in small
batches when many arrive together (so the event loop never waits on the disk). With WAL and
``synchronous=FULL`` a committed reply survives ``kill -9`` of the process and a power cut of
the machine (each commit is fsynced). Until its commit, a reply is also served from memory.
Keys never include the API key.

Every stored row carries a checksum of its content (schema version 1): a row that fails it is
treated as missing, with a warning, so a damaged reply is asked again, never used. A cache
written before checksums (``PRAGMA user_version`` 0) is upgraded in place when opened: rows
that are readable text get their checksum, the others are dropped (asked again). A damaged
file (SQLite reports it malformed) is an ``OutputError`` naming ``--repair``, which rebuilds the
cache from the rows that can still be read and pass their checksum.

Every HTTP exchange is also logged in ``calls`` (endpoint, model, status, tokens, start, latency,
invocation), by the same writer in the same transactions as the replies: a run's usage, cost and
timings over all its invocations are summed from there, and a reply that survived a ``kill -9``
has its call logged too. The log holds plain numbers and names, no checksum: a damaged row is
skipped when read, and ``--repair`` starts the log afresh.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import OutputError
from ..ids import digest, hasher
from ..text import fix_surrogates

log = logging.getLogger(__name__)

CACHE_FILENAME = "cache.sqlite3"
# PRAGMA user_version: 0 = written before checksums (upgraded when opened), 1 = checksummed rows,
# 2 = the call log counts cached prompt tokens and reasoning tokens (and requests may carry a
# response_format: see LEGACY_PAYLOADS), 3 = the call log marks calls made through a Batch API.
SCHEMA_VERSION = 3
# Meta row set when a cache from before schema 2 that holds replies is upgraded: its replies
# were asked without response_format, so an endpoint that has no remembered structured-output
# form keeps asking that way (the same payloads, the same keys: the replies are found again).
LEGACY_PAYLOADS = "structured_output/legacy_payloads"
# What --repair leaves of a damaged file, beside the rebuilt cache.
DAMAGED_SUFFIX = ".damaged"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    key TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    content TEXT NOT NULL,
    reasoning TEXT,
    finish_reason TEXT,
    prompt_tokens INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL,
    checksum BLOB
);
CREATE TABLE IF NOT EXISTS embeddings (
    key TEXT PRIMARY KEY,
    vector BLOB NOT NULL,
    checksum BLOB
);
CREATE TABLE IF NOT EXISTS meta (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    checksum BLOB
);
CREATE TABLE IF NOT EXISTS calls (
    invocation INTEGER NOT NULL,
    endpoint TEXT NOT NULL,
    model TEXT NOT NULL,
    status INTEGER,
    prompt_tokens INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    started REAL NOT NULL,
    latency_s REAL NOT NULL,
    cached_prompt_tokens INTEGER NOT NULL DEFAULT 0,
    reasoning_tokens INTEGER NOT NULL DEFAULT 0,
    batch INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS batch_jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    endpoint TEXT NOT NULL,
    uid TEXT NOT NULL,
    state TEXT NOT NULL,
    input_file_id TEXT,
    batch_id TEXT,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS batch_requests (
    job INTEGER NOT NULL,
    custom_id TEXT NOT NULL,
    key TEXT NOT NULL,
    result TEXT,
    PRIMARY KEY (job, custom_id)
);
"""
# Columns of ``calls`` added after its first version (schema 2), with their definitions.
_CALL_COLUMNS_2 = (
    ("cached_prompt_tokens", "INTEGER NOT NULL DEFAULT 0"),
    ("reasoning_tokens", "INTEGER NOT NULL DEFAULT 0"),
    ("batch", "INTEGER NOT NULL DEFAULT 0"),
)


@dataclass(frozen=True)
class _Table:
    """A table's columns: ``checked`` (covered by the checksum, with their kind) then the rest."""

    name: str
    checked: tuple[tuple[str, str], ...]  # (column, kind): "t" text, "i" integer, "b" blob
    rest: tuple[str, ...] = ()

    @property
    def insert(self) -> str:
        n = len(self.checked) + len(self.rest) + 1
        return f"INSERT OR REPLACE INTO {self.name} VALUES ({', '.join('?' * n)})"

    def select(self, where: str, *, checksum: bool = True) -> str:
        """Checked columns as stored bytes (never decoded by SQLite), the rest, the checksum."""
        cols = [f"CAST({c} AS BLOB)" for c, _ in self.checked] + list(self.rest)
        cols.append("CAST(checksum AS BLOB)" if checksum else "NULL")
        return f"SELECT {', '.join(cols)} FROM {self.name} WHERE {where}"

    def decode(self, blobs: Sequence[bytes | None]) -> list[Any]:
        """Stored bytes back to values; ValueError (or UnicodeDecodeError) if unreadable."""
        out: list[Any] = []
        for (_, kind), b in zip(self.checked, blobs, strict=True):
            if b is None or kind == "b":
                out.append(b)
            elif kind == "t":
                out.append(b.decode("utf-8"))
            else:
                out.append(int(b))
        return out


_RESPONSES = _Table(
    "responses",
    (
        ("key", "t"),
        ("model", "t"),
        ("content", "t"),
        ("reasoning", "t"),
        ("finish_reason", "t"),
        ("prompt_tokens", "i"),
        ("completion_tokens", "i"),
    ),
    ("created",),
)
_EMBEDDINGS = _Table("embeddings", (("key", "t"), ("vector", "b")))
_META = _Table("meta", (("name", "t"), ("value", "t")))
_TABLES = (_RESPONSES, _EMBEDDINGS, _META)

_FIELDS = ("model", "content", "reasoning", "finish_reason", "prompt_tokens", "completion_tokens")
_GET_REPLY = _RESPONSES.select("key = ?")
_INSERT_CALL = (
    "INSERT INTO calls (invocation, endpoint, model, status, prompt_tokens, completion_tokens, "
    "started, latency_s, cached_prompt_tokens, reasoning_tokens, batch) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_STOP = object()
# Errors of one row (not of the file): such a row is left out, the others are still stored.
_ROW_ERRORS = (sqlite3.DataError, sqlite3.IntegrityError, sqlite3.InterfaceError, OverflowError)
# SQLite primary result codes
_SQLITE_IOERR, _SQLITE_CORRUPT, _SQLITE_FULL, _SQLITE_NOTADB = 10, 11, 13, 26
_NEARLY_FULL_BYTES = 1 << 20
# --repair looks this many row ids past the last one it found, for rows behind a damaged page.
_PROBE_SLACK = 1000


class _Call(tuple):  # type: ignore[type-arg]
    """A ``calls`` row queued for the writer (a plain tuple is a reply)."""

    __slots__ = ()


def _stored(value: Any) -> bytes | None:
    """The bytes SQLite holds for ``value`` (what ``CAST(column AS BLOB)`` gives back)."""
    if value is None or isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    return str(value).encode("ascii")


def checksum(blobs: Sequence[bytes | None]) -> bytes:
    """16-byte blake2b of a row's stored bytes, NULL and field boundaries included."""
    return digest(_framed(blobs), size=16, person=b"sft-distill-row")


def _framed(blobs: Sequence[bytes | None]) -> Iterator[bytes]:
    """Each field marked as NULL, or with its length before it: boundaries hash too."""
    for b in blobs:
        if b is None:
            yield b"\x00"
        else:
            yield b"\x01" + len(b).to_bytes(8, "little")
            yield b


def _row_with_checksum(table: _Table, values: Sequence[Any]) -> tuple[Any, ...]:
    """``values`` (checked columns, then the rest) with the checksum of the checked ones."""
    n = len(table.checked)
    return (*values, checksum([_stored(v) for v in values[:n]]))


def _error_code(exc: sqlite3.Error) -> int | None:
    """The primary SQLite result code of ``exc`` (from its message before Python 3.11)."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return int(code) & 0xFF
    text = str(exc).lower()
    if "malformed" in text:
        return _SQLITE_CORRUPT
    if "not a database" in text:
        return _SQLITE_NOTADB
    if "disk is full" in text:
        return _SQLITE_FULL
    return None


def _one_line(text: object, limit: int = 200) -> str:
    return " ".join(str(text).split())[:limit]


def damaged_error(path: Path, why: object) -> OutputError:
    """The one-line error for a cache SQLite cannot read, naming the ways out."""
    return OutputError(
        f"{path}: the response cache is damaged ({_one_line(why)}); rerun with --repair to keep "
        "its readable replies, or with --fresh to discard it"
    )


def _nearly_full(path: Path) -> bool:
    """Whether the file system holding ``path`` has less than 1 MiB left."""
    try:
        st = os.statvfs(path.parent)
    except (OSError, AttributeError):  # no statvfs on Windows
        return False
    return st.f_bavail * st.f_frsize < _NEARLY_FULL_BYTES


def cache_error(path: Path, exc: BaseException, doing: str) -> OutputError:
    """One line for a failed cache operation: damaged file, full disk, or what SQLite said."""
    code = _error_code(exc) if isinstance(exc, sqlite3.Error) else None
    if code in (_SQLITE_CORRUPT, _SQLITE_NOTADB):
        return damaged_error(path, exc)
    # A full disk can also surface as an I/O error (e.g. growing the WAL index on tmpfs).
    if (
        code == _SQLITE_FULL
        or (code == _SQLITE_IOERR and _nearly_full(path))
        or (isinstance(exc, OSError) and exc.errno == errno.ENOSPC)
    ):
        return OutputError(
            f"{path}: cannot {doing} the response cache: the disk is full; free some space and "
            "rerun the same command to resume"
        )
    return OutputError(f"{path}: cannot {doing} the response cache: {_one_line(exc)}")


def request_key(namespace: str, payload: dict[str, Any], *, skip: Collection[str] = ()) -> str:
    """Stable hash of an endpoint namespace and the request body (never the key).

    Message texts are hashed directly (not re-serialised); the other fields as sorted JSON.
    Keys in ``skip`` are left out.
    """
    return finish_key(key_prefix(namespace, payload, skip=skip), payload)


def key_prefix(namespace: str, payload: dict[str, Any], *, skip: Collection[str] = ()) -> Any:
    """The hash state of ``request_key`` before the messages: the same for every request of a
    client whose other fields do not change, so it can be computed once and copied."""
    h = hasher(size=20)
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


def _rollback(db: sqlite3.Connection) -> None:
    """Roll back if a transaction is open: SQLite ends one itself on some errors (a full disk),
    and "cannot rollback - no transaction is active" must not hide the error that did it."""
    if db.in_transaction:
        # The error being handled is the one to report.
        with contextlib.suppress(sqlite3.Error):
            db.execute("ROLLBACK")


class ResponseCache:
    """SQLite-backed store of replies; safe to open again after a crash."""

    # FULL: each commit is fsynced, so a committed reply also survives a power cut. Commits are
    # batched by the writer thread; benchmarks/bench_pipeline.py --only sync measures the cost
    # against NORMAL (which may lose the last commits on a power cut, not on kill -9).
    synchronous = "FULL"

    def __init__(self, path: str | Path, *, exclusive: bool = False, repair: bool = False) -> None:
        """Open (or create) the cache at ``path``.

        ``exclusive``: the caller guarantees no other connection writes this file while it is
        open (the pipeline holds the output directory's lock). A cache that then opens empty
        answers a request it was never given without asking SQLite.
        ``repair``: first rebuild the file from its readable rows (see ``repair_cache``).

        Raises:
            OutputError: the file cannot be opened or written, is damaged, or is newer.
        """
        self.path = Path(path)
        self.hits = 0
        self.writes = 0
        self.invocation = 0  # stamped on every logged call (set by the run that owns the cache)
        self.calls_logged = 0
        self.rejected = 0  # stored rows that failed their checksum (treated as missing)
        self._put_keys: _KeyFilter | None = None
        if repair:
            repair_cache(self.path)
        try:
            self._db = self._connect()
        except sqlite3.Error as exc:
            raise cache_error(self.path, exc, "open") from None
        try:
            self._open(exclusive=exclusive)
        except sqlite3.Error as exc:
            self._db.close()
            raise cache_error(self.path, exc, "open") from None
        except BaseException:
            self._db.close()
            raise
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
        db.execute(f"PRAGMA synchronous={self.synchronous}")
        db.execute("PRAGMA busy_timeout=10000")
        return db

    def _open(self, *, exclusive: bool) -> None:
        """Check the schema version, create or upgrade the tables, check a non-empty file."""
        db = self._db
        version = int(db.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            raise OutputError(
                f"{self.path}: written by a newer sft_distill (cache schema {version}); upgrade "
                "sft_distill, or use --fresh to discard the cache"
            )
        db.execute("PRAGMA journal_mode=WAL")
        db.executescript(_SCHEMA)
        if version < SCHEMA_VERSION:
            self._upgrade()
        empty = db.execute("SELECT 1 FROM responses LIMIT 1").fetchone() is None
        if not empty:
            # A damaged page would otherwise stop the run midway, after calls were paid for.
            result = db.execute("PRAGMA quick_check(1)").fetchone()[0]
            if result != "ok":
                raise damaged_error(self.path, result)
        elif exclusive:
            # An exclusive cache that starts empty holds only what it is given: keys never put
            # need no SELECT (on a fresh run, that is every request).
            self._put_keys = _KeyFilter()

    def _upgrade(self) -> None:
        """Bring a cache from an older schema up to date, in one transaction: checksums for
        every row (schema 0), the call log's new columns and the legacy-payloads mark (1)."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            # Another process may have upgraded the file since it was opened.
            version = int(db.execute("PRAGMA user_version").fetchone()[0])
            if version < SCHEMA_VERSION:
                dropped = sum(self._add_checksums(table) for table in _TABLES)
                self._add_call_columns()
                if (
                    version < 2
                    and db.execute("SELECT 1 FROM responses LIMIT 1").fetchone() is not None
                ):
                    db.execute(_META.insert, _row_with_checksum(_META, (LEGACY_PAYLOADS, "1")))
                db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                if dropped:
                    log.warning(
                        "%s: %d unreadable row(s) dropped while adding checksums; they are asked "
                        "again",
                        self.path,
                        dropped,
                    )
            db.execute("COMMIT")
        except BaseException:
            _rollback(db)
            raise

    def _add_call_columns(self) -> None:
        """Add the columns a call log from before schema 2 lacks (old rows count 0 in them)."""
        db = self._db
        have = {r[1] for r in db.execute("PRAGMA table_info(calls)")}
        for name, definition in _CALL_COLUMNS_2:
            if name not in have:
                db.execute(f"ALTER TABLE calls ADD COLUMN {name} {definition}")

    def _add_checksums(self, table: _Table) -> int:
        """Add the checksum column to ``table`` and fill it; rows that are not text go."""
        db = self._db
        if "checksum" in {r[1] for r in db.execute(f"PRAGMA table_info({table.name})")}:
            return 0
        db.execute(f"ALTER TABLE {table.name} ADD COLUMN checksum BLOB")
        cols = ", ".join(f"CAST({c} AS BLOB)" for c, _ in table.checked)
        select = f"SELECT rowid, {cols} FROM {table.name} WHERE rowid > ? ORDER BY rowid LIMIT 512"
        dropped, last = 0, 0
        while rows := db.execute(select, (last,)).fetchall():
            for rowid, *blobs in rows:
                try:
                    table.decode(blobs)
                except ValueError:
                    db.execute(f"DELETE FROM {table.name} WHERE rowid = ?", (rowid,))
                    dropped += 1
                    continue
                db.execute(
                    f"UPDATE {table.name} SET checksum = ? WHERE rowid = ?",
                    (checksum(blobs), rowid),
                )
            last = rows[-1][0]
        return dropped

    def _verified(
        self, table: _Table, row: Sequence[Any], what: str, then: str
    ) -> list[Any] | None:
        """The values of a stored row, or None (with a warning) when it fails its checksum."""
        n = len(table.checked)
        blobs, stored = row[:n], row[-1]
        if stored is not None and checksum(blobs) == stored:
            try:
                return table.decode(blobs)
            except ValueError:  # only if the checksum itself collided; treated the same way
                pass
        self.rejected += 1
        log.warning("%s: cached %s fails its checksum (damaged); %s", self.path, what, then)
        return None

    def _write_loop(self) -> None:
        """Commit queued rows, as many per transaction as have arrived meanwhile."""
        db: sqlite3.Connection | None = None
        try:
            db = self._connect()
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
            if db is not None:
                db.close()

    def _commit(
        self, db: sqlite3.Connection, rows: list[tuple[Any, ...]], calls: list[_Call]
    ) -> None:
        """Commit replies and logged calls in one transaction; a row SQLite refuses is left out.

        Raises:
            sqlite3.Error: the file cannot be written (full disk, I/O error, damaged file).
        """
        stored = []
        for row in rows:
            try:
                stored.append(_row_with_checksum(_RESPONSES, row))
            except UnicodeError as exc:  # e.g. a lone surrogate in the model name
                log.warning("%s: reply not cached: %s", self.path, exc)
        try:
            db.execute("BEGIN")
            db.executemany(_INSERT_CALL, calls)
            db.executemany(_RESPONSES.insert, stored)
            db.execute("COMMIT")
        except _ROW_ERRORS:
            _rollback(db)
            with contextlib.suppress(*_ROW_ERRORS):
                db.executemany(_INSERT_CALL, calls)  # plain numbers: only a full disk stops it
            for row in stored:
                try:
                    db.execute(_RESPONSES.insert, row)
                except _ROW_ERRORS as exc:
                    # One unstorable reply costs one repeated call on a rerun, not the run.
                    log.warning("%s: reply not cached: %s", self.path, exc)
        except BaseException:
            _rollback(db)
            raise
        with self._lock:
            for row in rows:
                if self._pending.get(row[0]) is row:
                    del self._pending[row[0]]

    def _check_writer(self) -> None:
        if self._writer_error is not None:
            raise cache_error(self.path, self._writer_error, "write")

    def get(self, key: str) -> dict[str, Any] | None:
        """The stored reply for ``key``, or None (also when the stored row is damaged).

        Raises:
            OutputError: the file cannot be read (e.g. it is damaged).
        """
        pending = self._pending.get(key)
        if pending is not None:
            self.hits += 1
            _, *fields, _ = pending
            return dict(zip(_FIELDS, fields, strict=True))
        if self._put_keys is not None and key not in self._put_keys:
            return None
        try:
            row = self._db.execute(_GET_REPLY, (key,)).fetchone()
        except sqlite3.Error as exc:
            raise cache_error(self.path, exc, "read") from None
        if row is None:
            return None
        values = self._verified(_RESPONSES, row, f"reply {key[:16]}", "asking again")
        if values is None:
            return None
        self.hits += 1
        return dict(zip(_FIELDS, values[1:], strict=True))

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
        cached_prompt_tokens: int = 0,
        reasoning_tokens: int = 0,
        batch: bool = False,
    ) -> None:
        """Queue one HTTP exchange (or one line of a batch: ``batch``) for the ``calls`` log
        (``started``: epoch seconds)."""
        if self._db is None or self._writer_error is not None:
            return  # closed or broken: put() reports it; the log is never worth a failed call
        self.calls_logged += 1
        self._queue.put(
            _Call(
                (
                    self.invocation,
                    fix_surrogates(endpoint),
                    fix_surrogates(model),
                    status,
                    prompt_tokens,
                    completion_tokens,
                    started,
                    latency_s,
                    cached_prompt_tokens,
                    reasoning_tokens,
                    int(batch),
                )
            )
        )

    def calls_since(self, invocation: int) -> Iterator[tuple[Any, ...]]:
        """Logged calls of ``invocation`` and later ones, once every queued row is committed:
        (invocation, endpoint, model, prompt_tokens, completion_tokens, started, latency_s,
        cached_prompt_tokens, reasoning_tokens, batch).

        A row that cannot be read back (a damaged file) is skipped.
        """
        self.flush()
        try:
            rows = self._db.execute(
                "SELECT invocation, CAST(endpoint AS BLOB), CAST(model AS BLOB), prompt_tokens, "
                "completion_tokens, started, latency_s, cached_prompt_tokens, reasoning_tokens, "
                "batch FROM calls WHERE invocation >= ?",
                (invocation,),
            ).fetchall()
        except sqlite3.Error as exc:
            raise cache_error(self.path, exc, "read") from None
        for (
            inv,
            endpoint,
            model,
            prompt,
            completion,
            started,
            latency,
            cached,
            reasoning,
            batch,
        ) in rows:
            try:
                yield (
                    inv,
                    endpoint.decode("utf-8"),
                    model.decode("utf-8"),
                    int(prompt),
                    int(completion),
                    float(started),
                    float(latency),
                    int(cached or 0),
                    int(reasoning or 0),
                    int(batch or 0),
                )
            except (AttributeError, UnicodeDecodeError, TypeError, ValueError, OverflowError):
                continue

    def flush(self, timeout_s: float = 60.0) -> None:
        """Wait until every queued reply is committed."""
        if self._writer.is_alive():
            done = threading.Event()
            self._queue.put(done)
            done.wait(timeout_s)
        self._check_writer()

    def get_meta(self, name: str) -> str | None:
        """A stored setting, or None (also when its row is damaged)."""
        try:
            row = self._db.execute(_META.select("name = ?"), (name,)).fetchone()
        except sqlite3.Error as exc:
            raise cache_error(self.path, exc, "read") from None
        if row is None:
            return None
        values = self._verified(_META, row, f"setting {name!r}", "ignored")
        return None if values is None else str(values[1])

    def set_meta(self, name: str, value: str) -> None:
        """Store a setting at once."""
        try:
            self._db.execute(_META.insert, _row_with_checksum(_META, (name, value)))
        except sqlite3.Error as exc:
            raise cache_error(self.path, exc, "write") from None

    def delete_meta(self, name: str) -> None:
        """Remove a setting at once."""
        try:
            self._db.execute("DELETE FROM meta WHERE name = ?", (name,))
        except sqlite3.Error as exc:
            raise cache_error(self.path, exc, "write") from None

    # -- Batch API jobs: written at once (each step must be on disk before the next request) --

    def _write(self, statements: Sequence[tuple[str, Sequence[Any]]]) -> list[int | None]:
        """Run ``statements`` in one transaction; the last row id of each.

        Raises:
            OutputError: the file cannot be written.
        """
        ids: list[int | None] = []
        try:
            self._db.execute("BEGIN IMMEDIATE")
            for sql, params in statements:
                ids.append(self._db.execute(sql, params).lastrowid)
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            _rollback(self._db)
            raise cache_error(self.path, exc, "write") from None
        except BaseException:
            _rollback(self._db)
            raise
        return ids

    def _read(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        try:
            return self._db.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise cache_error(self.path, exc, "read") from None

    def add_batch_job(self, endpoint: str, uid: str, lines: Sequence[tuple[str, str]]) -> int:
        """Record a batch about to be uploaded (state ``uploading``) with its (custom_id, key)
        lines; returns its job number."""
        ids = self._write(
            [
                (
                    "INSERT INTO batch_jobs (endpoint, uid, state, created) VALUES (?, ?, ?, ?)",
                    (endpoint, uid, "uploading", time.time()),
                )
            ]
        )
        job = int(ids[0] or 0)
        self._write(
            [
                ("INSERT INTO batch_requests (job, custom_id, key) VALUES (?, ?, ?)", (job, c, k))
                for c, k in lines
            ]
        )
        return job

    def update_batch_job(self, job: int, **fields: str | None) -> None:
        """Set ``state``, ``input_file_id`` or ``batch_id`` of a job."""
        cols = ", ".join(f"{name} = ?" for name in fields)
        self._write([(f"UPDATE batch_jobs SET {cols} WHERE id = ?", (*fields.values(), job))])

    def batch_jobs(self, endpoint: str) -> list[dict[str, Any]]:
        """The recorded jobs of ``endpoint``, oldest first."""
        rows = self._read(
            "SELECT id, uid, state, input_file_id, batch_id FROM batch_jobs WHERE endpoint = ? "
            "ORDER BY id",
            (endpoint,),
        )
        names = ("job", "uid", "state", "input_file_id", "batch_id")
        return [dict(zip(names, row, strict=True)) for row in rows]

    def batch_requests(self, job: int) -> list[tuple[str, str, str | None]]:
        """(custom_id, key, result line or None) of each request of a job."""
        rows = self._read("SELECT custom_id, key, result FROM batch_requests WHERE job = ?", (job,))
        return [(str(c), str(k), None if r is None else str(r)) for c, k, r in rows]

    def store_batch_results(self, job: int, results: Mapping[str, str]) -> None:
        """Keep each downloaded result line by custom_id and mark the job ``downloaded``, in
        one transaction (the provider's files can then be deleted)."""
        self._write(
            [
                *(
                    (
                        "UPDATE batch_requests SET result = ? WHERE job = ? AND custom_id = ?",
                        (fix_surrogates(line), job, cid),
                    )
                    for cid, line in results.items()
                ),
                ("UPDATE batch_jobs SET state = 'downloaded' WHERE id = ?", (job,)),
            ]
        )

    def delete_batch_job(self, job: int) -> None:
        """Forget a job and its requests."""
        self._write(
            [
                ("DELETE FROM batch_requests WHERE job = ?", (job,)),
                ("DELETE FROM batch_jobs WHERE id = ?", (job,)),
            ]
        )

    def __len__(self) -> int:
        self.flush()
        try:
            return int(self._db.execute("SELECT COUNT(*) FROM responses").fetchone()[0])
        except sqlite3.Error as exc:
            raise cache_error(self.path, exc, "read") from None

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
            try:
                rows = self._db.execute(_EMBEDDINGS.select(f"key IN ({marks})"), chunk).fetchall()
            except sqlite3.Error as exc:
                raise cache_error(self.path, exc, "read") from None
            for row in rows:
                what = f"embedding {row[0][:16].decode('ascii', 'replace')}"
                values = self._verified(_EMBEDDINGS, row, what, "embedding again")
                if values is not None:
                    found[values[0]] = values[1]
        return [None if (b := found.get(k)) is None else np.frombuffer(b, "<f4") for k in keys]

    def put_vectors(self, keys: list[str], vectors: Any) -> None:
        """Store one vector per key (the rows of ``vectors``, as float32) in one transaction."""
        import numpy as np

        rows = np.asarray(vectors, dtype="<f4")
        if len(rows) != len(keys):
            raise ValueError(f"{len(keys)} keys for {len(rows)} vectors")
        # Written on this connection, not the reply writer's: embeddings come after the replies,
        # and busy_timeout covers a reply batch still committing.
        try:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany(
                _EMBEDDINGS.insert,
                (
                    _row_with_checksum(_EMBEDDINGS, (k, row.tobytes()))
                    for k, row in zip(keys, rows, strict=True)
                ),
            )
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            _rollback(self._db)
            raise cache_error(self.path, exc, "write") from None
        except BaseException:
            _rollback(self._db)
            raise


def _sidecars(path: Path) -> tuple[Path, Path]:
    return Path(f"{path}-wal"), Path(f"{path}-shm")


def _row_ids(src: sqlite3.Connection, table: _Table) -> int:
    """The largest row id SQLite can still find in ``table`` by any path (0 when none)."""
    top = 0
    key = table.checked[0][0]
    for sql in (
        f"SELECT max(rowid) FROM {table.name}",
        f"SELECT rowid FROM {table.name}",  # in table order, up to a damaged page
        f"SELECT rowid FROM {table.name} ORDER BY {key}",  # through the key's index
    ):
        try:
            for (rowid,) in src.execute(sql):
                top = max(top, rowid or 0)
        except sqlite3.DatabaseError:
            continue
    return top


def _salvage(src: sqlite3.Connection, dst: sqlite3.Connection, table: _Table) -> tuple[int, int]:
    """Copy every row of ``table`` that can be read and passes its checksum; (kept, dropped).

    Rows are read one row id at a time, so a damaged page costs only the rows on it.
    """
    try:
        columns = {r[1] for r in src.execute(f"PRAGMA table_info({table.name})")}
    except sqlite3.DatabaseError:
        return 0, 0
    if not columns:
        return 0, 0
    has_checksum = "checksum" in columns  # a file from before checksums: readable text is kept
    select = table.select("rowid = ?", checksum=has_checksum)
    n = len(table.checked)
    kept = dropped = 0
    top = _row_ids(src, table)
    rowid = misses = 0
    while rowid < top or misses < _PROBE_SLACK:
        rowid += 1
        try:
            row = src.execute(select, (rowid,)).fetchone()
        except sqlite3.DatabaseError:
            row, dropped, misses = None, dropped + 1, misses + 1
            continue
        if row is None:
            misses += 1
            continue
        misses = 0
        blobs, stored = row[:n], row[-1]
        try:
            if has_checksum and checksum(blobs) != stored:
                raise ValueError("checksum")
            values = [*table.decode(blobs), *row[n:-1]]
            dst.execute(table.insert, (*values, checksum(blobs)))
        except (ValueError, *_ROW_ERRORS):
            dropped += 1
            continue
        kept += 1
    return kept, dropped


def repair_cache(path: str | Path) -> tuple[int, int]:
    """Rebuild the cache at ``path`` from its rows that can be read and pass their checksum.

    The damaged file is kept beside it as ``cache.sqlite3.damaged`` (replacing an older one).
    Returns (replies kept, rows dropped); a missing file is left missing.

    Raises:
        OutputError: the rebuilt file cannot be written (e.g. the disk is full).
    """
    path = Path(path)
    if not path.exists():
        return 0, 0
    new = path.with_name(path.name + ".repairing")
    for p in (new, *_sidecars(new)):
        p.unlink(missing_ok=True)
    kept = dropped = 0
    try:
        dst = sqlite3.connect(new, isolation_level=None)
        try:
            dst.executescript(_SCHEMA)
            dst.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            dst.execute("BEGIN")
            src = sqlite3.connect(path, isolation_level=None)
            try:
                for table in _TABLES:
                    k, d = _salvage(src, dst, table)
                    dropped += d
                    kept += k if table is _RESPONSES else 0
            finally:
                with contextlib.suppress(sqlite3.Error):
                    src.close()
            dst.execute("COMMIT")
        finally:
            dst.close()
        damaged = path.with_name(path.name + DAMAGED_SUFFIX)
        for p in (damaged, *_sidecars(damaged)):
            p.unlink(missing_ok=True)
        os.replace(path, damaged)
        wal, shm = _sidecars(path)
        if wal.exists():  # it belongs to the damaged file: keep the pair together
            os.replace(wal, _sidecars(damaged)[0])
        shm.unlink(missing_ok=True)
        os.replace(new, path)
    except (sqlite3.Error, OSError) as exc:
        for p in (new, *_sidecars(new)):
            p.unlink(missing_ok=True)
        raise cache_error(path, exc, "repair") from None
    log.warning(
        "%s: repaired: kept %d cached replies, dropped %d damaged row(s) (asked again); the old "
        "file is kept as %s",
        path,
        kept,
        dropped,
        path.name + DAMAGED_SUFFIX,
    )
    return kept, dropped
