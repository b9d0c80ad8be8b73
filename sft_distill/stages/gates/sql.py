"""The Text2SQL execution gate: run each sample's SQL on a SQLite database, read-only, timed.

The SQL is taken from the output: the first fenced block labelled ``sql`` (or ``sqlite``,
``mysql``...), else the first unlabelled fenced block that starts with an SQL keyword, else the
whole output when it starts with one. It must be a single ``SELECT`` or ``WITH`` statement.

Read-only three times over: the database is opened with a ``file:...?mode=ro`` URI,
``PRAGMA query_only=ON`` is set, and an authorizer denies every action except reading
(writes, ``ATTACH``, ``PRAGMA``, temp tables, transactions). A progress handler aborts a query
after ``timeout_s`` (a runaway recursive CTE included); rows are fetched in batches, stopping
at the deadline or once the result passes ``max_result_bytes``, and no string or blob may pass
1 MB. Queries run in worker threads (``max_concurrent`` per gate) so the event loop keeps going.

Recorded on the sample (``annotations``): ``sql`` (what was run), ``exec_pass``,
``exec_error`` (None when it passed), ``exec_rows``; and, when there is a gold query,
``gold_match`` (result multisets equal; lists equal when the gold query has a top-level
``ORDER BY``) or ``gold_error`` when the gold query itself fails. The gold query is
``annotations["gold_sql"]`` (put there by a source, e.g. a ``gold_sql`` column of an instruction
set), else the SQL in ``reference_output`` when ``reference_as_gold`` is on.
"""

from __future__ import annotations

import asyncio
import os
import re
import sqlite3
import time
import weakref
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...models import Sample
from .base import GateResult

DEFAULT_TIMEOUT_S = 2.0
DEFAULT_MAX_ROWS = 10_000
# Most bytes (strings and blobs by length, other values 8 each) one query may return.
DEFAULT_MAX_RESULT_BYTES = 50_000_000
# Queries one gate runs at once (each holds a worker thread and its result in memory).
DEFAULT_MAX_CONCURRENT = 2
# Progress-handler period in SQLite VM instructions: small enough to stop within milliseconds.
_PROGRESS_STEPS = 1000
# Longest string, blob or row a query may build (randomblob(1e9) would otherwise allocate 1 GB).
_MAX_VALUE_BYTES = 1_000_000
# Rows fetched at a time (the first batch smaller; later ones shrink when rows are large): the
# deadline and the byte total are checked after each batch.
_FETCH_BATCH = 256
_FIRST_BATCH = 16

_SQL_LABELS = frozenset({"sql", "sqlite", "sqlite3", "mysql", "postgresql", "postgres", "tsql"})
_FENCE_RE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)(?:```|\Z)", re.DOTALL)
_SQL_START_RE = re.compile(
    r"^\s*(?:--[^\n]*\n\s*|/\*.*?\*/\s*)*(?:SELECT|WITH|INSERT|UPDATE|DELETE|REPLACE|CREATE|DROP"
    r"|ALTER|ATTACH|DETACH|PRAGMA|VACUUM|VALUES|EXPLAIN)\b",
    re.IGNORECASE | re.DOTALL,
)
_ORDER_BY_RE = re.compile(r"\border\s+by\b", re.IGNORECASE)
_FIRST_WORD_RE = re.compile(r"[A-Za-z_]+")
# Every other statement SQLite knows: refused before it is even prepared.
# fmt: off
_OTHER_STATEMENTS = frozenset({
    "ALTER", "ANALYZE", "ATTACH", "BEGIN", "COMMIT", "CREATE", "DELETE", "DETACH", "DROP", "END",
    "EXPLAIN", "INSERT", "PRAGMA", "REINDEX", "RELEASE", "REPLACE", "ROLLBACK", "SAVEPOINT",
    "UPDATE", "VACUUM", "VALUES",
})
# fmt: on

_ALLOWED_ACTIONS = frozenset(
    {
        sqlite3.SQLITE_SELECT,
        sqlite3.SQLITE_READ,
        sqlite3.SQLITE_FUNCTION,
        getattr(sqlite3, "SQLITE_RECURSIVE", 33),
    }
)
_DENIED_FUNCTIONS = frozenset({"load_extension", "fts3_tokenizer"})


def extract_sql(text: str) -> str | None:
    """The SQL in a model output (fenced ``sql`` block, SQL-looking block or whole text)."""
    blocks = [(m.group(1).lower(), m.group(2).strip()) for m in _FENCE_RE.finditer(text)]
    for label, body in blocks:
        if label in _SQL_LABELS and body:
            return body
    for label, body in blocks:
        if not label and _SQL_START_RE.match(body):
            return body
    stripped = text.strip()
    if _SQL_START_RE.match(stripped):
        return stripped
    return None


@dataclass(frozen=True)
class _Statement:
    text: str  # without comments
    skeleton: str  # top level only: literals blanked, parenthesised parts removed


def split_statements(sql: str) -> list[_Statement]:
    """The statements of ``sql``, split at semicolons outside quotes and comments."""
    statements: list[_Statement] = []
    text: list[str] = []
    skel: list[str] = []
    depth, i, n = 0, 0, len(sql)

    def flush() -> None:
        body = "".join(text).strip()
        if body:
            statements.append(_Statement(body, "".join(skel)))
        text.clear()
        skel.clear()

    while i < n:
        ch = sql[i]
        if sql.startswith("--", i):
            j = sql.find("\n", i)
            i = n if j < 0 else j
            text.append(" ")
            skel.append(" ")
            continue
        if sql.startswith("/*", i):
            j = sql.find("*/", i + 2)
            i = n if j < 0 else j + 2
            text.append(" ")
            skel.append(" ")
            continue
        if ch in "'\"`[":
            close = "]" if ch == "[" else ch
            j = i + 1
            while j < n:
                if sql[j] == close:
                    if close != "]" and j + 1 < n and sql[j + 1] == close:
                        j += 2  # a doubled quote is an escaped quote
                        continue
                    break
                j += 1
            text.append(sql[i : j + 1])
            if depth == 0:
                skel.append(" '' ")
            i = j + 1
            continue
        if ch == ";" and depth == 0:
            flush()
            i += 1
            continue
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth = max(0, depth - 1)
        elif depth == 0:
            skel.append(ch)
        text.append(ch)
        i += 1
    flush()
    return statements


@dataclass(frozen=True)
class QueryResult:
    """What running one query gave: rows (None on error), the error, whether rows were cut."""

    rows: list[tuple[Any, ...]] | None
    error: str | None = None
    truncated: bool = False
    ordered: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None


def _authorizer(action: int, arg1: str | None, arg2: str | None, *_: Any) -> int:
    if action == sqlite3.SQLITE_UPDATE and arg1 == "sqlite_master":
        # SQLite asks for this when it first sets up an eponymous virtual table (json_each,
        # json_tree...); it never writes. A real write of sqlite_master is still refused
        # (mode=ro, query_only, no writable_schema since PRAGMA is denied).
        return sqlite3.SQLITE_OK
    if action not in _ALLOWED_ACTIONS:
        return sqlite3.SQLITE_DENY
    if action == sqlite3.SQLITE_FUNCTION and (arg2 or "").lower() in _DENIED_FUNCTIONS:
        return sqlite3.SQLITE_DENY
    return sqlite3.SQLITE_OK


def connect_readonly(database: str | os.PathLike[str]) -> sqlite3.Connection:
    """A read-only connection (``mode=ro`` URI and ``PRAGMA query_only``), authorizer unset."""
    uri = Path(database).resolve().as_uri() + "?mode=ro"
    conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
    try:
        conn.execute("PRAGMA query_only=ON")
        if hasattr(conn, "setlimit"):  # Python >= 3.11
            conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, _MAX_VALUE_BYTES)
    except BaseException:
        conn.close()
        raise
    return conn


def run_query(
    database: str | os.PathLike[str],
    sql: str,
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    max_rows: int = DEFAULT_MAX_ROWS,
    max_result_bytes: int = DEFAULT_MAX_RESULT_BYTES,
) -> QueryResult:
    """Run one SELECT/WITH statement read-only with a time limit (blocking; use a thread).

    Rows are fetched in batches; the query fails with ``timeout`` once ``timeout_s`` has
    passed, and with ``result too large`` once its values pass ``max_result_bytes``.
    """
    statements = split_statements(sql)
    if not statements:
        return QueryResult(None, "empty SQL")
    if len(statements) > 1:
        return QueryResult(None, f"{len(statements)} statements; only one SELECT is allowed")
    stmt = statements[0]
    first = _FIRST_WORD_RE.search(stmt.skeleton)
    word = first.group().upper() if first else ""
    if word in _OTHER_STATEMENTS:
        return QueryResult(None, f"not a SELECT query (a {word} statement)")
    # Anything else that is not SELECT/WITH is a syntax error SQLite reports itself; the
    # authorizer still denies whatever is not a read (e.g. WITH ... DELETE).
    timed_out = False
    deadline = time.monotonic() + timeout_s

    def progress() -> int:
        nonlocal timed_out
        if time.monotonic() > deadline:
            timed_out = True
            return 1  # non-zero aborts the statement with "interrupted"
        return 0

    try:
        conn = connect_readonly(database)
    except sqlite3.Error as exc:
        return QueryResult(None, f"cannot open database: {exc}")
    try:
        conn.set_authorizer(_authorizer)
        conn.set_progress_handler(progress, _PROGRESS_STEPS)
        cursor = conn.execute(stmt.text)
        rows: list[Any] = []
        size, want = 0, _FIRST_BATCH
        while len(rows) <= max_rows:
            batch = cursor.fetchmany(min(want, max_rows + 1 - len(rows)))
            if not batch:
                break
            rows.extend(batch)
            size += sum(_value_size(v) for row in batch for v in row)
            if size > max_result_bytes:
                return QueryResult(
                    None, f"result too large: over {max_result_bytes:,} bytes (max_result_bytes)"
                )
            if time.monotonic() > deadline:
                return QueryResult(None, f"timeout: stopped after {timeout_s:g} s")
            # Next batch: as many rows of the average size as still fit under the byte limit.
            room = (max_result_bytes - size) * len(rows) // size + 1
            want = max(1, min(_FETCH_BATCH, room))
    except sqlite3.Error as exc:
        msg = str(exc)
        if timed_out:
            msg = f"timeout: stopped after {timeout_s:g} s"
        elif "not authorized" in msg or "prohibited" in msg:
            msg = f"not allowed (read-only SELECT only): {msg}"
        return QueryResult(None, msg)
    finally:
        conn.close()
    truncated = len(rows) > max_rows
    return QueryResult(
        [tuple(r) for r in rows[:max_rows]],
        truncated=truncated,
        ordered=_ORDER_BY_RE.search(stmt.skeleton) is not None,
    )


def _value_size(v: Any) -> int:
    """Bytes a fetched value counts for: its length for text and blobs, else 8."""
    if isinstance(v, (str, bytes)):
        return max(len(v), 8)
    return 8


def _normalise_value(v: Any) -> Any:
    if isinstance(v, float):
        r = round(v, 6)
        return int(r) if r.is_integer() else r
    return v


def results_match(predicted: QueryResult, gold: QueryResult) -> bool:
    """Same rows (column order counts); order too when the gold query has a top-level ORDER BY."""
    if predicted.rows is None or gold.rows is None:
        return False
    a = [tuple(_normalise_value(v) for v in row) for row in predicted.rows]
    b = [tuple(_normalise_value(v) for v in row) for row in gold.rows]
    if gold.ordered:
        return a == b
    return Counter(a) == Counter(b)


def _resolve_database(database: Any, base_dirs: Sequence[Path]) -> Path:
    if not isinstance(database, (str, os.PathLike)) or not str(database).strip():
        raise ValueError(f"database must be a path to a SQLite file, got {database!r}")
    p = Path(database).expanduser()
    candidates = [p] if p.is_absolute() else [*(b / p for b in base_dirs), Path.cwd() / p]
    for c in candidates:
        if c.is_file():
            return c
    tried = ", ".join(str(c) for c in candidates)
    raise ValueError(f"database {str(database)!r} not found (looked for {tried})")


class SQLExecutionGate:
    """Runs the output's SQL on a SQLite database, read-only and timed, and records the result.

    Annotations: ``sql``, ``exec_pass``, ``exec_error``, ``exec_rows``, and with a gold query
    ``gold_match`` (or ``gold_error``).

    Args:
        database: the SQLite file; a relative path is looked up in ``base_dirs`` (the config
            file's directory when known), then the current directory.
        timeout_s: longest time one query may run.
        drop_on_error: drop a sample whose SQL is missing or fails (else keep and record).
        drop_on_gold_mismatch: drop a sample whose result differs from the gold query's.
        skip_without_sql: keep, unchecked, a sample with no SQL in its output (mixed data).
        reference_as_gold: use the SQL in ``reference_output`` as gold when there is no
            ``annotations["gold_sql"]``.
        max_rows: rows fetched per query; results compared only when both are complete.
        max_result_bytes: most bytes one query's result may hold (else it fails with
            "result too large").
        max_concurrent: queries this gate runs at the same time (the others wait).
    """

    def __init__(
        self,
        *,
        database: str | os.PathLike[str],
        timeout_s: float = DEFAULT_TIMEOUT_S,
        drop_on_error: bool = True,
        drop_on_gold_mismatch: bool = False,
        skip_without_sql: bool = False,
        reference_as_gold: bool = True,
        max_rows: int = DEFAULT_MAX_ROWS,
        max_result_bytes: int = DEFAULT_MAX_RESULT_BYTES,
        max_concurrent: int = DEFAULT_MAX_CONCURRENT,
        name: str = "sql",
        base_dirs: Sequence[Path] = (),
    ) -> None:
        self.name = name
        self.database = _resolve_database(database, base_dirs)
        if (
            isinstance(timeout_s, bool)
            or not isinstance(timeout_s, (int, float))
            or not 0 < timeout_s <= 600
        ):
            raise ValueError(
                f"timeout_s must be a number of seconds in (0, 600], got {timeout_s!r}"
            )
        self.timeout_s = float(timeout_s)
        for option, value in (
            ("drop_on_error", drop_on_error),
            ("drop_on_gold_mismatch", drop_on_gold_mismatch),
            ("skip_without_sql", skip_without_sql),
            ("reference_as_gold", reference_as_gold),
        ):
            if not isinstance(value, bool):
                raise ValueError(f"{option} must be true or false, got {value!r}")
        self.drop_on_error = drop_on_error
        self.drop_on_gold_mismatch = drop_on_gold_mismatch
        self.skip_without_sql = skip_without_sql
        self.reference_as_gold = reference_as_gold
        if isinstance(max_rows, bool) or not isinstance(max_rows, int) or max_rows < 1:
            raise ValueError(f"max_rows must be an integer >= 1, got {max_rows!r}")
        self.max_rows = max_rows
        if (
            isinstance(max_result_bytes, bool)
            or not isinstance(max_result_bytes, int)
            or max_result_bytes < 1
        ):
            raise ValueError(f"max_result_bytes must be an integer >= 1, got {max_result_bytes!r}")
        self.max_result_bytes = max_result_bytes
        if (
            isinstance(max_concurrent, bool)
            or not isinstance(max_concurrent, int)
            or max_concurrent < 1
        ):
            raise ValueError(f"max_concurrent must be an integer >= 1, got {max_concurrent!r}")
        self.max_concurrent = max_concurrent
        # One semaphore per event loop (a gate may outlive the loop it was first used in).
        self._slots: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
            weakref.WeakKeyDictionary()
        )
        try:
            connect_readonly(self.database).close()
            # A file that is not a database only fails on first read.
            probe = run_query(self.database, "SELECT count(*) FROM sqlite_master", timeout_s=5)
        except sqlite3.Error as exc:
            raise ValueError(f"database {str(database)!r} cannot be opened: {exc}") from None
        if not probe.ok:
            raise ValueError(f"database {str(database)!r} is not usable: {probe.error}")

    async def run(self, sql: str) -> QueryResult:
        """Run ``sql`` in a worker thread (the loop never blocks), ``max_concurrent`` at once."""
        loop = asyncio.get_running_loop()
        slots = self._slots.get(loop)
        if slots is None:
            slots = self._slots[loop] = asyncio.Semaphore(self.max_concurrent)
        async with slots:
            return await asyncio.to_thread(
                run_query,
                self.database,
                sql,
                timeout_s=self.timeout_s,
                max_rows=self.max_rows,
                max_result_bytes=self.max_result_bytes,
            )

    def gold_sql(self, sample: Sample) -> str | None:
        """The sample's gold query, if it has one."""
        gold = sample.annotations.get("gold_sql")
        if isinstance(gold, str) and gold.strip():
            return extract_sql(gold) or gold.strip()
        if self.reference_as_gold and sample.reference_output:
            return extract_sql(sample.reference_output)
        return None

    async def check(self, sample: Sample) -> GateResult:
        """Run the sample's SQL (and gold SQL) and keep or drop by the options."""
        sql = extract_sql(sample.output)
        if sql is None:
            if self.skip_without_sql:
                return GateResult(True)
            notes: dict[str, Any] = {
                "sql": None,
                "exec_pass": False,
                "exec_error": "no SQL found in the output",
            }
            return GateResult(not self.drop_on_error, "no SQL found in the output", notes)
        result = await self.run(sql)
        notes = {
            "sql": sql,
            "exec_pass": result.ok,
            "exec_error": result.error,
            "exec_rows": len(result.rows) if result.rows is not None else None,
        }
        gold = self.gold_sql(sample)
        if gold is not None and result.ok:
            gold_result = await self.run(gold)
            if not gold_result.ok:
                notes["gold_error"] = gold_result.error
            elif result.truncated or gold_result.truncated:
                notes["gold_error"] = f"result over max_rows ({self.max_rows}); not compared"
            else:
                notes["gold_match"] = results_match(result, gold_result)
        elif gold is not None:
            notes["gold_match"] = False
        if not result.ok and self.drop_on_error:
            return GateResult(False, f"SQL failed: {result.error}", notes)
        if self.drop_on_gold_mismatch and notes.get("gold_match") is False:
            return GateResult(False, "SQL result differs from the gold query's", notes)
        return GateResult(True, None, notes)
