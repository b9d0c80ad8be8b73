"""Input files line by line: opened with one-line errors, CSV refused, lines bounded, counted.

Lines are split on ``\\n`` only, read in binary, so a raw U+2028/U+2029 inside a JSON string
never breaks a record; a line longer than the limit is skipped without being held whole.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import sys
from collections.abc import Container, Iterator
from pathlib import Path
from typing import IO, Any

from pydantic import ValidationError

from ..errors import InputError, file_error
from ..models import PathLike, ScoredSample

log = logging.getLogger(__name__)

DEFAULT_MAX_LINE_BYTES = 64 * 1024 * 1024


# Hand control back to the event loop this often while reading (lines / bytes).
YIELD_EVERY_LINES = 64


YIELD_EVERY_BYTES = 1024 * 1024


_COUNT_CHUNK_BYTES = 1024 * 1024


_JSON_TYPE_NAMES: dict[type, str] = {
    dict: "object",
    list: "array",
    str: "string",
    int: "number",
    float: "number",
    bool: "boolean",
    type(None): "null",
}


def _json_type(value: Any) -> str:
    return _JSON_TYPE_NAMES.get(type(value), type(value).__name__)


def json_value_error(exc: ValueError) -> str:
    """Why ``json.loads`` raised a ValueError that is not a JSONDecodeError, in a few words."""
    if "integer string conversion" in str(exc):
        # Python refuses to parse longer integers (a denial-of-service guard, CVE-2020-10735).
        return f"a number with more than {sys.get_int_max_str_digits()} digits"
    return " ".join(str(exc).split())[:200]


def _open_input(path: PathLike, *, allow_empty: bool = False) -> IO[bytes]:
    """Open ``path`` for binary reading, mapping every whole-file problem to one InputError."""
    p = Path(path)
    try:
        f = open(p, "rb")  # noqa: SIM115 - the caller owns and closes it
    except OSError as exc:
        raise file_error(path, exc, directory="is a directory, expected a JSONL file") from None
    try:
        if not allow_empty and os.fstat(f.fileno()).st_size == 0 and p.is_file():
            raise InputError(f"{path}: is empty")
    except BaseException:
        f.close()
        raise
    return f


_SNIFF_BYTES = 1 << 16


def delimited_kind(head: bytes) -> str | None:
    """``"CSV"`` or ``"TSV"`` when a file starting with ``head`` is columns, not JSON lines.

    The first non-blank line must not be JSON (nor start like an object or array) and, with the
    next row, split into two or more comma- or tab-separated fields.
    """
    text = head.decode("utf-8", errors="replace").removeprefix("\ufeff")
    first = next((line for line in text.split("\n") if line.strip()), "").strip()
    if not first or first.startswith(("{", "[")):
        return None
    try:
        json.loads(first)
        return None
    except ValueError:
        pass
    for delimiter, kind in (("\t", "TSV"), (",", "CSV")):
        if delimiter not in first:
            continue
        try:
            rows = [r for r in csv.reader(io.StringIO(text), delimiter=delimiter) if r][:2]
        except csv.Error:
            continue
        if len(rows) == 2 and len(rows[0]) >= 2 and len(rows[1]) >= 2:
            return kind
    return None


_JSONL = 'JSONL (one JSON object per line, e.g. {"content": "..."})'


def refuse_delimited(f: IO[bytes], path: PathLike, *, expected: str = _JSONL) -> None:
    """Raise a one-line InputError when the open file ``f`` holds CSV or TSV; rewinds ``f``.

    Raises:
        InputError: ``"data.csv: this looks like CSV, not JSONL ...; convert it first ..."``.
    """
    if not f.seekable():
        return
    kind = delimited_kind(f.read(_SNIFF_BYTES))
    f.seek(0)
    if kind is None:
        return
    sep = ", sep='\\t'" if kind == "TSV" else ""
    raise InputError(
        f"{path}: this looks like {kind}, not {expected}; convert it first, e.g. "
        f'pandas.read_csv(path{sep}).to_json(out, orient="records", lines=True, '
        "force_ascii=False)"
    )


def refuse_delimited_file(path: PathLike) -> None:
    """``refuse_delimited`` on the JSONL file at ``path``, before anything else is done with it.

    Raises:
        InputError: the file is CSV or TSV, missing, a directory or unreadable.
    """
    with _open_input(path, allow_empty=True) as f:
        refuse_delimited(f, path)


def _read_lines(f: IO[bytes], max_line_bytes: int) -> Iterator[tuple[bytes | None, int]]:
    """Yield (line without ``\\n``, file offset); line is None when longer than the limit."""
    offset = 0
    while True:
        raw = f.readline(max_line_bytes + 1)
        if not raw:
            return
        start = offset
        offset += len(raw)
        if len(raw) > max_line_bytes and not raw.endswith(b"\n"):
            # Drain the rest of the line in small reads: never hold it whole.
            while raw and not raw.endswith(b"\n"):
                raw = f.readline(_COUNT_CHUNK_BYTES)
                offset += len(raw)
            yield None, start
            continue
        yield raw[:-1] if raw.endswith(b"\n") else raw, start


def count_lines(path: PathLike) -> int:
    """Number of physical lines (``\\n``-separated; a last line without one counts), for tqdm."""
    n = 0
    last = b"\n"
    with _open_input(path, allow_empty=True) as f:
        while chunk := f.read(_COUNT_CHUNK_BYTES):
            n += chunk.count(b"\n")
            last = chunk[-1:]
    return n + (last != b"\n")


def iter_jsonl(path: PathLike) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (line number, object) for each JSON object line; other lines are logged and skipped.

    Meant for our own outputs (``generated_raw.jsonl``), whose last line may be cut by a crash.

    Raises:
        InputError: the file is missing, a directory or unreadable (a 0-byte file yields nothing).
    """
    with _open_input(path, allow_empty=True) as f:
        for lineno, (raw, _offset) in enumerate(_read_lines(f, DEFAULT_MAX_LINE_BYTES), start=1):
            if raw is None or not raw.strip():
                continue
            try:
                obj = json.loads(raw.decode("utf-8").removeprefix("\ufeff"), strict=False)
            except (ValueError, RecursionError) as exc:  # incl. invalid UTF-8, invalid JSON
                log.warning("%s:%d: skipping unreadable line (%s)", path, lineno, exc)
                continue
            if isinstance(obj, dict):
                yield lineno, obj
            else:
                log.warning("%s:%d: skipping %s, expected an object", path, lineno, _json_type(obj))


def iter_scored(
    path: PathLike, *, ids: Container[str] | None = None, unique: bool = False
) -> Iterator[tuple[int, ScoredSample]]:
    """(line number, sample) of each scored sample in one of our raw files, in file order.

    A line that is not a scored sample is logged and skipped. ``ids`` keeps only those samples
    (others are not even validated); ``unique`` keeps the first line of a repeated id.

    Raises:
        InputError: the file is missing, a directory or unreadable.
    """
    seen: set[str] = set()
    for lineno, obj in iter_jsonl(path):
        sid = obj.get("id")
        if ids is not None and (not isinstance(sid, str) or sid not in ids):
            continue
        if unique and sid in seen:
            log.warning("%s:%d: sample %s repeated; kept the first", path, lineno, sid)
            continue
        try:
            sample = ScoredSample.model_validate(obj)
        except ValidationError as exc:
            log.warning("%s:%d: not a scored sample, skipped: %s", path, lineno, exc)
            continue
        if unique:
            seen.add(sample.id)
        yield lineno, sample
