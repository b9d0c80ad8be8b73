"""Instruction-set files as raw records: JSON Lines, a JSON array or Parquet.

The format is told by the suffix ``.parquet``/``.pq`` or the ``PAR1`` magic, else by the first
character: ``[`` is a JSON array, anything else JSON Lines.

- JSON Lines: streamed line by line like ``reader.read_slices`` (BOM, CRLF and blank lines
  accepted; a bad line is reported as ``data.jsonl:17: reason``, skipped and counted).
- JSON array: loaded whole (the file must be valid JSON as a whole, so a syntax error stops the
  run with its line); each element is read like a JSONL record and reported with its line.
- Parquet: read in batches of rows with pyarrow when it is installed; "line" means row number.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ..errors import InputError
from .jsonl import (
    DEFAULT_MAX_LINE_BYTES,
    _json_type,
    _open_input,
    _read_lines,
    count_lines,
    json_value_error,
    refuse_delimited,
)
from .reader import BadLineKind

# Where a reader says a line is bad: (line, kind, reason).
Report = Callable[[int, BadLineKind, str], None]

# Records looked at to decide the field mapping (and columns listed in its error messages).
HEAD_RECORDS = 100


_PARQUET_BATCH_ROWS = 1024


_WS_RE = re.compile(r"[ \t\n\r]*")


def input_format(path: str | Path) -> str:
    """``"parquet"``, ``"json"`` (one JSON array) or ``"jsonl"``, from the suffix or first bytes.

    Raises:
        InputError: the file is missing, a directory, unreadable, empty, or CSV/TSV.
    """
    p = Path(path)
    with _open_input(p) as f:
        head = f.read(1 << 16)
        if p.suffix.lower() in (".parquet", ".pq") or head.startswith(b"PAR1"):
            return "parquet"
        if head.removeprefix(b"\xef\xbb\xbf").lstrip().startswith(b"["):
            return "json"
        f.seek(0)
        refuse_delimited(f, path, expected="JSONL, a JSON array or Parquet")
    return "jsonl"


def _iter_jsonl(path: Path, report: Report) -> Iterator[tuple[int, Any]]:
    with _open_input(path) as f:
        for lineno, (raw, offset) in enumerate(_read_lines(f, DEFAULT_MAX_LINE_BYTES), start=1):
            if raw is None:
                report(lineno, "line_too_long", f"line longer than {DEFAULT_MAX_LINE_BYTES} bytes")
                continue
            raw = raw.removesuffix(b"\r")
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                if raw.strip():
                    byte = raw[exc.start : exc.start + 1].hex()
                    report(
                        lineno,
                        "invalid_utf8",
                        f"invalid UTF-8 byte 0x{byte} at byte {exc.start} of the line "
                        f"(file offset {offset + exc.start})",
                    )
                continue
            text = text.removeprefix("\ufeff")
            if not text.strip():
                continue
            try:
                yield lineno, json.loads(text, strict=False)
            except json.JSONDecodeError as exc:
                report(lineno, "invalid_json", f"invalid JSON: {exc.msg} at column {exc.colno}")
            except RecursionError:
                report(lineno, "invalid_json", "invalid JSON: nested too deeply")
            except ValueError as exc:  # e.g. a number longer than Python parses
                report(lineno, "invalid_json", f"invalid JSON: {json_value_error(exc)}")


def _iter_json_array(path: Path) -> Iterator[tuple[int, Any]]:
    """Elements of a JSON array file with the line each starts on (the file is loaded whole)."""
    with _open_input(path) as f:
        data = f.read()
    try:
        text = data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise InputError(
            f"{path}:{line}: invalid UTF-8 byte 0x{data[exc.start : exc.start + 1].hex()} "
            "(a JSON array file must be valid as a whole)"
        ) from None
    del data
    decoder = json.JSONDecoder(strict=False)

    def skip(pos: int) -> int:
        m = _WS_RE.match(text, pos)
        return m.end() if m else pos

    pos = skip(0)
    if text[pos : pos + 1] != "[":
        raise InputError(f"{path}: expected a JSON array ('[') or JSON Lines")
    pos += 1
    line, counted = 1, 0
    while True:
        pos = skip(pos)
        line += text.count("\n", counted, pos)
        counted = pos
        if pos >= len(text):
            raise InputError(f"{path}:{line}: the JSON array is cut off (no closing ']')")
        if text[pos] == "]":
            break
        try:
            value, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            raise InputError(
                f"{path}:{exc.lineno}: invalid JSON: {exc.msg} at column {exc.colno} "
                "(a JSON array file must be valid as a whole)"
            ) from None
        except RecursionError:
            raise InputError(f"{path}:{line}: invalid JSON: nested too deeply") from None
        except ValueError as exc:
            raise InputError(f"{path}:{line}: invalid JSON: {json_value_error(exc)}") from None
        yield line, value
        pos = skip(end)
        if text[pos : pos + 1] == ",":
            pos += 1
        elif text[pos : pos + 1] != "]":
            line += text.count("\n", counted, pos)
            raise InputError(f"{path}:{line}: expected ',' or ']' after an array element")
    rest = skip(pos + 1)
    if rest < len(text):
        line += text.count("\n", counted, rest)
        raise InputError(f"{path}:{line}: unexpected text after the JSON array")


def _parquet_file(path: Path) -> Any:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise InputError(f"{path}: reading Parquet needs pyarrow: pip install pyarrow") from None
    _open_input(path).close()  # the usual messages for a missing, empty or unreadable file
    try:
        return pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises ArrowInvalid, OSError...: all mean "unreadable"
        raise InputError(f"{path}: not a readable Parquet file: {exc}") from None


def _iter_parquet(path: Path) -> Iterator[tuple[int, Any]]:
    row = 0
    for batch in _parquet_file(path).iter_batches(batch_size=_PARQUET_BATCH_ROWS):
        for record in batch.to_pylist():
            row += 1
            yield row, record


def iter_raw_records(path: str | Path, report: Report) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line, object) for every record; other lines are reported and skipped.

    Raises:
        InputError: the file is missing or unreadable; a JSON array file that is not valid JSON.
    """
    p = Path(path)
    fmt = input_format(p)
    items = (
        _iter_parquet(p)
        if fmt == "parquet"
        else _iter_json_array(p)
        if fmt == "json"
        else _iter_jsonl(p, report)
    )
    for line, value in items:
        if isinstance(value, dict):
            yield line, value
        else:
            report(line, "not_object", f"expected a JSON object, got {_json_type(value)}")


def count_records(path: str | Path) -> int:
    """Lines of a JSONL file, elements of a JSON array, rows of a Parquet file (for progress)."""
    p = Path(path)
    fmt = input_format(p)
    if fmt == "parquet":
        return int(_parquet_file(p).metadata.num_rows)
    if fmt == "json":
        return sum(1 for _ in _iter_json_array(p))
    return count_lines(p)


def read_head(path: str | Path, n: int = HEAD_RECORDS) -> tuple[list[dict[str, Any]], list[str]]:
    """The first ``n`` object records and the messages of the bad lines met on the way."""
    bad: list[str] = []
    records: list[dict[str, Any]] = []

    def report(line: int, kind: BadLineKind, reason: str) -> None:
        bad.append(f"{path}:{line}: {reason}")

    for _, record in iter_raw_records(path, report):
        records.append(record)
        if len(records) >= n:
            break
    return records, bad
