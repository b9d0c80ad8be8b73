"""Read knowledge slices from JSONL and write run outputs (raw JSONL, ShareGPT splits, JSON).

Reading streams the file line by line in binary and splits on ``\\n`` only, so a raw U+2028/U+2029
inside a JSON string never breaks a record. Each line that cannot become a ``Slice`` is reported as
a ``BadLine`` and the rest of the file still runs; ``strict=True`` raises on the first one instead.

Decisions for awkward input (one line each; see ``BadLine`` for the kinds):

- UTF-8 BOM at the start of a line (file start or concatenated files): removed silently.
- CRLF: one trailing ``\\r`` is removed; ``\\r`` escaped inside strings is content and kept.
- Blank or whitespace-only lines (incl. U+3000): skipped silently, counted in ``ReadStats``.
- Bytes that are not UTF-8: line reported (``invalid_utf8``) with the byte offset, skipped.
- Invalid JSON / not an object: reported (``invalid_json`` / ``not_object``), skipped.
  Raw control characters inside strings (a literal tab) are accepted (``json.loads(strict=False)``).
- ``content`` missing, not a string, or empty/whitespace-only (incl. U+3000 and zero-width
  characters): reported (``missing_content`` names a likely alternative key such as ``text``;
  ``non_string_content`` names the JSON type; ``empty_content``), skipped.
- ``id`` an integer: coerced to its decimal string silently (numeric ids are common and harmless).
  ``id`` missing, null or blank: derived from the content, ``"s-" + blake2b-64(content)``, so it is
  stable across runs. Any other ``id`` type (bool, float, array, object): ``bad_id``, skipped.
- ``metadata`` missing or null: ``{}``. Any other non-object: the line is KEPT with
  ``metadata={"value": <original>}`` and reported as ``bad_metadata`` with ``skipped=False``
  (content is what matters; nothing is lost).
- Unknown top-level keys (``title``, ``source``...): merged into ``metadata`` unless already there.
- Lone UTF-16 surrogates (``"\\ud800"``) anywhere in the record: replaced by U+FFFD; the line is
  KEPT and reported as ``lone_surrogate`` with ``skipped=False`` (the text would crash any UTF-8
  writer later; one replaced character does not spoil a slice).
- Duplicate ``id`` of a kept slice (or one in ``seen_ids``): ``duplicate_id``, skipped.
- Same content (after stripping outer whitespace) as a kept slice under another id:
  ``duplicate_content``, skipped. Only a 16-byte hash per slice is kept, never the text.
- A line longer than ``max_line_bytes``: ``line_too_long``, skipped without loading it whole.

Writing: every JSONL line is compact UTF-8 (``ensure_ascii=False``), flushed as it is written, with
lone surrogates replaced, NaN/inf written as ``null``, and U+2028/U+2029/U+0085 escaped so that no
reader (``str.splitlines``, JavaScript) can split a record.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import hashlib
import io
import json
import logging
import math
import os
import re
import sys
import tempfile
from collections.abc import AsyncIterator, Callable, Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from .errors import InputError, OutputError
from .models import ScoredSample, Slice

log = logging.getLogger(__name__)

PathLike = str | os.PathLike[str]

BadLineKind = Literal[
    "invalid_utf8",
    "invalid_json",
    "not_object",
    "missing_content",
    "non_string_content",
    "empty_content",
    "bad_id",
    "duplicate_id",
    "duplicate_content",
    "line_too_long",
    "bad_metadata",
    "lone_surrogate",
]

# Kinds that keep the line (after a fix); every other kind skips it.
FIXED_KINDS: frozenset[str] = frozenset({"bad_metadata", "lone_surrogate"})
DUPLICATE_KINDS: frozenset[str] = frozenset({"duplicate_id", "duplicate_content"})

DEFAULT_MAX_LINE_BYTES = 64 * 1024 * 1024
# Hand control back to the event loop this often while reading (lines / bytes).
YIELD_EVERY_LINES = 64
YIELD_EVERY_BYTES = 1024 * 1024
_COUNT_CHUNK_BYTES = 1024 * 1024

# Keys a slice's text is often stored under by other tools; named in "missing 'content'".
_CONTENT_ALTERNATIVES = (
    "text",
    "contents",
    "body",
    "document",
    "page_content",
    "passage",
    "context",
    "article",
    "input",
)
# Zero-width characters str.strip() keeps but that carry no text.
_INVISIBLE = "\u200b\u200c\u200d\u2060\ufeff"
_SURROGATE_RE = re.compile("[\ud800-\udfff]")
# Line breaks for str.splitlines() / JavaScript that json.dumps(ensure_ascii=False) leaves raw.
_LINE_BREAKS_RE = re.compile("[\u2028\u2029\x85]")

_JSON_TYPE_NAMES: dict[type, str] = {
    dict: "object",
    list: "array",
    str: "string",
    int: "number",
    float: "number",
    bool: "boolean",
    type(None): "null",
}


class BadLine(BaseModel):
    """One input line that was skipped or fixed; ``str()`` gives ``"file:17: reason"``."""

    model_config = ConfigDict(frozen=True)

    path: str
    line: int
    reason: str
    kind: BadLineKind
    skipped: bool = True

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.reason}"


@dataclass
class ReadStats:
    """Line counters: ``lines_read == blank_lines + slices + bad_lines + duplicate_slices``."""

    lines_read: int = 0
    blank_lines: int = 0
    slices: int = 0
    bad_lines: int = 0
    duplicate_slices: int = 0
    fixed_lines: int = 0
    reasons: dict[str, int] = field(default_factory=dict)


def _json_type(value: Any) -> str:
    return _JSON_TYPE_NAMES.get(type(value), type(value).__name__)


def fix_surrogates(text: str) -> str:
    """Join valid surrogate pairs and replace lone surrogates with U+FFFD."""
    if not _SURROGATE_RE.search(text):
        return text
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


def derive_slice_id(content: str) -> str:
    """Stable id for a slice without one: ``"s-"`` + 16 hex digits of blake2b(content)."""
    digest = hashlib.blake2b(content.encode("utf-8", "surrogatepass"), digest_size=8)
    return "s-" + digest.hexdigest()


def _content_key(content: str) -> bytes:
    return hashlib.blake2b(
        content.strip().encode("utf-8", "surrogatepass"), digest_size=16
    ).digest()


def _is_blank(text: str) -> bool:
    return not text.strip().strip(_INVISIBLE).strip()


def _fix_record(value: Any) -> tuple[Any, bool]:
    """Replace lone surrogates in every string (keys too); return (value, changed)."""
    if isinstance(value, str):
        fixed = fix_surrogates(value)
        return fixed, fixed is not value
    if isinstance(value, list):
        changed = False
        out_list = []
        for item in value:
            new, c = _fix_record(item)
            out_list.append(new)
            changed |= c
        return (out_list, True) if changed else (value, False)
    if isinstance(value, dict):
        changed = False
        out_dict = {}
        for key, item in value.items():
            new_key, ck = _fix_record(key)
            new, c = _fix_record(item)
            out_dict[new_key] = new
            changed |= ck or c
        return (out_dict, True) if changed else (value, False)
    return value, False


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
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a directory, expected a JSONL file") from None
    except PermissionError:
        raise InputError(f"{path}: permission denied") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot open: {exc.strerror or exc}") from None
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


class _SliceReader:
    """Turns one file's lines into Slices, reporting bad lines; shared by the sync/async readers."""

    def __init__(
        self,
        path: PathLike,
        *,
        strict: bool,
        on_bad_line: Callable[[BadLine], None] | None,
        seen_ids: set[str] | None,
        stats: ReadStats | None,
        max_line_bytes: int,
    ) -> None:
        self.path = path
        self.name = str(path)
        self.strict = strict
        self.on_bad_line = on_bad_line
        self.seen_ids = seen_ids
        self.stats = stats if stats is not None else ReadStats()
        self.max_line_bytes = max_line_bytes
        self.id_lines: dict[str, int] = {}
        self.content_lines: dict[bytes, tuple[int, str]] = {}

    def _report(self, lineno: int, kind: BadLineKind, reason: str) -> None:
        bad = BadLine(
            path=self.name, line=lineno, reason=reason, kind=kind, skipped=kind not in FIXED_KINDS
        )
        if self.strict:
            raise InputError(str(bad))
        st = self.stats
        st.reasons[kind] = st.reasons.get(kind, 0) + 1
        if self.on_bad_line is not None:
            # The caller reports it; a second warning here would double every message.
            log.debug("%s %s", "skipping" if bad.skipped else "fixed", bad)
            self.on_bad_line(bad)
        else:
            log.warning("%s %s", "skipping" if bad.skipped else "fixed", bad)

    def scan(self) -> Generator[Slice | None, None, None]:
        """Yield a Slice or None (blank/bad line) for every physical line."""
        with _open_input(self.path) as f:
            refuse_delimited(f, self.path)
            for lineno, (raw, offset) in enumerate(_read_lines(f, self.max_line_bytes), start=1):
                self.stats.lines_read += 1
                result = self._line(lineno, raw, offset)
                if isinstance(result, Slice):
                    self.stats.slices += 1
                elif result == "blank":
                    self.stats.blank_lines += 1
                elif result == "duplicate":
                    self.stats.duplicate_slices += 1
                else:
                    self.stats.bad_lines += 1
                yield result if isinstance(result, Slice) else None

    def _line(self, lineno: int, raw: bytes | None, offset: int) -> Slice | str:
        if raw is None:
            self._report(lineno, "line_too_long", f"line longer than {self.max_line_bytes} bytes")
            return "bad"
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            if not raw.strip():
                return "blank"
            byte = raw[exc.start : exc.start + 1].hex()
            self._report(
                lineno,
                "invalid_utf8",
                f"invalid UTF-8 byte 0x{byte} at byte {exc.start} of the line "
                f"(file offset {offset + exc.start})",
            )
            return "bad"
        text = text.removeprefix("\ufeff")
        if _is_blank(text):
            return "blank"
        try:
            record = json.loads(text, strict=False)
        except json.JSONDecodeError as exc:
            reason = f"invalid JSON: {exc.msg.removesuffix(' at')} at column {exc.colno}"
            if not text.rstrip().endswith(("}", "]")):
                reason += "; the record looks cut off"
            self._report(lineno, "invalid_json", reason)
            return "bad"
        except RecursionError:
            self._report(lineno, "invalid_json", "invalid JSON: nested too deeply")
            return "bad"
        except ValueError as exc:
            self._report(lineno, "invalid_json", f"invalid JSON: {json_value_error(exc)}")
            return "bad"
        if not isinstance(record, dict):
            self._report(lineno, "not_object", f"expected a JSON object, got {_json_type(record)}")
            return "bad"
        return self._record(lineno, record)

    def _record(self, lineno: int, record: dict[str, Any]) -> Slice | str:
        record, had_surrogates = _fix_record(record)
        if "content" not in record:
            alt = next(
                (k for k in record if k.strip().lower() == "content"),
                next((k for k in _CONTENT_ALTERNATIVES if isinstance(record.get(k), str)), None),
            )
            hint = f" (found {alt!r}; rename it to 'content')" if alt else ""
            self._report(lineno, "missing_content", f"missing 'content'{hint}")
            return "bad"
        content = record["content"]
        if not isinstance(content, str):
            self._report(
                lineno,
                "non_string_content",
                f"'content' must be a string, got {_json_type(content)}",
            )
            return "bad"
        if _is_blank(content):
            what = "empty" if content == "" else "whitespace only"
            self._report(lineno, "empty_content", f"'content' is {what}")
            return "bad"

        raw_id = record.get("id")
        derived = False
        if isinstance(raw_id, bool) or not isinstance(raw_id, (str, int, type(None))):
            self._report(
                lineno, "bad_id", f"'id' must be a string or an integer, got {_json_type(raw_id)}"
            )
            return "bad"
        if isinstance(raw_id, int):
            sid = str(raw_id)
        elif raw_id is None or not raw_id.strip():
            sid, derived = derive_slice_id(content), True
        else:
            sid = raw_id

        # An explicit id is checked first: "duplicate id" is the message users expect for it.
        if not derived:
            dup = self._duplicate_id(sid)
            if dup:
                self._report(lineno, "duplicate_id", dup)
                return "duplicate"
        key = _content_key(content)
        first = self.content_lines.get(key)
        if first is not None:
            self._report(
                lineno,
                "duplicate_content",
                f"duplicate content of line {first[0]} (id {first[1]!r})",
            )
            return "duplicate"
        if derived:
            dup = self._duplicate_id(sid)
            if dup:
                self._report(lineno, "duplicate_id", dup)
                return "duplicate"

        metadata = record.get("metadata")
        bad_metadata = metadata is not None and not isinstance(metadata, dict)
        if metadata is None:
            metadata = {}
        elif not isinstance(metadata, dict):
            metadata = {"value": metadata}
        extra = {k: v for k, v in record.items() if k not in ("id", "content", "metadata")}
        if extra:
            metadata = {**extra, **metadata}

        # Fixes are reported only for lines that are kept.
        if bad_metadata:
            self._report(
                lineno,
                "bad_metadata",
                f"'metadata' must be an object, got {_json_type(record['metadata'])}; "
                "kept as {'value': ...}",
            )
        if had_surrogates:
            self._report(lineno, "lone_surrogate", "lone UTF-16 surrogate replaced by U+FFFD")
        if bad_metadata or had_surrogates:
            self.stats.fixed_lines += 1

        self.id_lines[sid] = lineno
        if self.seen_ids is not None:
            self.seen_ids.add(sid)
        self.content_lines[key] = (lineno, sid)
        return Slice(id=sid, content=content, metadata=metadata, line=lineno)

    def _duplicate_id(self, sid: str) -> str | None:
        if sid in self.id_lines:
            return f"duplicate id {sid!r} (first at line {self.id_lines[sid]})"
        if self.seen_ids is not None and sid in self.seen_ids:
            return f"duplicate id {sid!r} (seen before this file)"
        return None


def iter_slices(
    path: PathLike,
    *,
    strict: bool = False,
    on_bad_line: Callable[[BadLine], None] | None = None,
    seen_ids: set[str] | None = None,
    stats: ReadStats | None = None,
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
) -> Iterator[Slice]:
    """Stream the valid slices of a JSONL file, reporting every bad line to ``on_bad_line``.

    Args:
        path: the JSONL file; messages name it as given.
        strict: raise on the first bad or fixed line instead of reporting it.
        on_bad_line: called with each ``BadLine`` (skipped, or kept after a fix: ``.skipped``).
        seen_ids: ids already used (e.g. by an earlier file); read ids are added to it.
        stats: filled with line counters as the file is read.
        max_line_bytes: longer lines are reported as ``line_too_long`` and skipped.

    Raises:
        InputError: the file is missing, a directory, unreadable or 0 bytes; or, with
            ``strict``, the first bad line (``"slices.jsonl:17: missing 'content'"``).
    """
    reader = _SliceReader(
        path,
        strict=strict,
        on_bad_line=on_bad_line,
        seen_ids=seen_ids,
        stats=stats,
        max_line_bytes=max_line_bytes,
    )
    for item in reader.scan():
        if item is not None:
            yield item


async def read_slices(
    path: PathLike,
    *,
    strict: bool = False,
    on_bad_line: Callable[[BadLine], None] | None = None,
    seen_ids: set[str] | None = None,
    stats: ReadStats | None = None,
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
) -> AsyncIterator[Slice]:
    """Async version of ``iter_slices`` that yields to the event loop every few lines."""
    reader = _SliceReader(
        path,
        strict=strict,
        on_bad_line=on_bad_line,
        seen_ids=seen_ids,
        stats=stats,
        max_line_bytes=max_line_bytes,
    )
    lines = 0
    size = 0
    scan = reader.scan()
    try:
        for item in scan:
            lines += 1
            if item is not None:
                size += len(item.content)
                yield item
            # Reads are small and synchronous; sleep(0) lets the requests in flight progress.
            if lines >= YIELD_EVERY_LINES or size >= YIELD_EVERY_BYTES:
                lines = size = 0
                await asyncio.sleep(0)
    finally:
        # Close the file now, not when the generator is garbage-collected.
        scan.close()


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


# ---------------------------------------------------------------------------------------------
# Writing


def _no_nan(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _no_nan(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_no_nan(v) for v in value]
    return value


def _to_jsonable(obj: dict[str, Any] | BaseModel) -> Any:
    return obj.model_dump(mode="json") if isinstance(obj, BaseModel) else obj


def dumps_line(obj: dict[str, Any] | BaseModel) -> str:
    """One compact JSON line (no newline) that always encodes to UTF-8 and never splits."""
    data = _to_jsonable(obj)
    try:
        text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except ValueError:
        # NaN/inf are not JSON: HF datasets and jq reject them; null is what they mean.
        log.warning("NaN or infinite number written as null")
        text = json.dumps(_no_nan(data), ensure_ascii=False, separators=(",", ":"))
    # Outside strings json.dumps emits only ASCII, so these edits touch string contents only.
    text = fix_surrogates(text)
    return _LINE_BREAKS_RE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def _tmp_path(path: Path) -> Path:
    return path.with_name(path.name + ".tmp")


def _fsync(f: IO[bytes]) -> None:
    f.flush()
    os.fsync(f.fileno())


class JsonlWriter:
    """Write one JSON object per line as the run goes, flushed after every line.

    ``atomic=True`` writes ``name.tmp`` and renames it over ``name`` on a clean ``close()``; on an
    exception inside ``with`` the temp file is removed and ``name`` is left untouched.
    ``mode="a"`` appends (for resume); a last line cut by a crash is ended first so it stays one
    bad line instead of corrupting the next record.
    """

    def __init__(
        self,
        path: PathLike,
        *,
        atomic: bool = False,
        mode: Literal["w", "a"] = "w",
        flush_lines: bool = True,
    ) -> None:
        if atomic and mode == "a":
            raise ValueError("atomic=True cannot append")
        self.path = Path(path)
        self.atomic = atomic
        # A file the caller can rebuild (it is only read after close) need not be flushed
        # line by line: one system call per line is most of the cost of writing it.
        self._flush_lines = flush_lines and not atomic
        self.lines = 0
        self.offset = 0  # bytes written so far (plus what an appended file held)
        self._target = _tmp_path(self.path) if atomic else self.path
        try:
            self._f: IO[bytes] | None = open(self._target, mode + "b")  # noqa: SIM115
            if mode == "a" and self._f.tell() > 0:
                with open(self._target, "rb") as r:
                    r.seek(-1, os.SEEK_END)
                    if r.read(1) != b"\n":
                        self._f.write(b"\n")
            self.offset = self._f.tell()
        except OSError as exc:
            raise OutputError(f"cannot write {self._target}: {exc.strerror or exc}") from None

    def write(self, obj: dict[str, Any] | BaseModel) -> int:
        """Append one object as a JSON line; return the byte offset where the line starts."""
        return self.write_line(dumps_line(obj).encode("utf-8") + b"\n")

    def write_line(self, data: bytes) -> int:
        """Append a line already encoded by ``dumps_line`` (ending in a newline); its offset."""
        if self._f is None:
            raise ValueError(f"{self.path}: writer is closed")
        start = self.offset
        try:
            self._f.write(data)
            if self._flush_lines:
                # A file written as the run goes is flushed per line, so a crash loses at most
                # the line being written; an atomic file only becomes visible at close() anyway.
                self._f.flush()
        except OSError as exc:  # disk full, I/O error: one line for the user, exit status 2
            raise OutputError(f"cannot write {self._target}: {exc.strerror or exc}") from None
        self.offset += len(data)
        self.lines += 1
        return start

    def close(self) -> None:
        """Finish the file (rename the temp file into place when atomic); safe to call twice."""
        if self._f is None:
            return
        f, self._f = self._f, None
        try:
            try:
                if self.atomic:
                    _fsync(f)
            finally:
                f.close()  # writes what is still buffered
            if self.atomic:
                os.replace(self._target, self.path)
        except OSError as exc:  # disk full on the last bytes: one line for the user, status 2
            if self.atomic:  # an unfinished temp file is of no use to a rerun
                self._target.unlink(missing_ok=True)
            raise OutputError(f"cannot write {self._target}: {exc.strerror or exc}") from None

    def abort(self) -> None:
        """Close without committing: an atomic writer removes its temp file."""
        if self._f is None:
            return
        f, self._f = self._f, None
        try:
            f.close()
        except OSError:
            # The buffered rest cannot be written (a full disk): it was being discarded anyway,
            # and the error that caused the abort is the one to report.
            pass
        finally:
            if self.atomic:
                self._target.unlink(missing_ok=True)

    def __enter__(self) -> JsonlWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is not None and self.atomic:
            self.abort()
        else:
            self.close()


def write_json_atomic(path: PathLike, obj: Any) -> None:
    """Write ``obj`` as indented UTF-8 JSON via ``name.tmp`` + ``os.replace``."""
    p = Path(path)
    data = obj.model_dump(mode="json") if isinstance(obj, BaseModel) else obj
    try:
        text = json.dumps(data, ensure_ascii=False, indent=2, allow_nan=False)
    except ValueError:
        text = json.dumps(_no_nan(data), ensure_ascii=False, indent=2)
    tmp = _tmp_path(p)
    try:
        with open(tmp, "wb") as f:
            f.write(fix_surrogates(text).encode("utf-8") + b"\n")
            _fsync(f)
        os.replace(tmp, p)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise OutputError(f"cannot write {p}: {exc.strerror or exc}") from None


def prepare_output_dir(path: PathLike) -> Path:
    """Create the output directory (with parents) and check that it is writable.

    Raises:
        OutputError: it is an existing file, cannot be created, or cannot be written.
    """
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise OutputError(f"output directory {p} exists and is not a directory")
    try:
        p.mkdir(parents=True, exist_ok=True)
    except PermissionError:
        raise OutputError(f"cannot create output directory {p}: permission denied") from None
    except OSError as exc:
        raise OutputError(f"cannot create output directory {p}: {exc.strerror or exc}") from None
    try:
        fd, probe = tempfile.mkstemp(dir=p, prefix=".write-test-")
        os.close(fd)
        os.unlink(probe)
    except PermissionError:
        raise OutputError(f"cannot write to output directory {p}: permission denied") from None
    except OSError as exc:
        raise OutputError(f"cannot write to output directory {p}: {exc.strerror or exc}") from None
    return p


def join_prompt(instruction: str, input_text: str) -> str:
    """The user turn: the instruction, then a newline and the input when there is one.

    One newline, as LLaMA-Factory joins an Alpaca row's ``instruction`` and ``input``, so a
    sample reads the same in every output format.
    """
    if input_text.strip():
        return instruction + "\n" + input_text
    return instruction


def to_sharegpt(sample: ScoredSample, *, system: str | None = None) -> dict[str, Any]:
    """One ShareGPT record (LLaMA-Factory ``formatting: sharegpt``) with scores kept alongside.

    ``dimension_scores`` is keyed by evaluator model; when two evaluators use the same model the
    later one is keyed ``"<evaluator name>/<model>"``.
    """
    human = join_prompt(sample.instruction, sample.input)
    scores: dict[str, dict[str, float]] = {}
    for j in sample.judgements:
        if not j.scores:
            continue
        key = j.model if j.model not in scores else f"{j.evaluator}/{j.model}"
        n = 2
        while key in scores:
            key = f"{j.evaluator}/{j.model}#{n}"
            n += 1
        scores[key] = dict(j.scores)
    record: dict[str, Any] = {
        "id": sample.id,
        "conversations": [
            {"from": "human", "value": human},
            {"from": "gpt", "value": sample.output},
        ],
        "avg_score": sample.avg_score,
        "dimension_scores": scores,
        "slice_id": sample.slice_id,
    }
    if system:
        record["system"] = system
    return record


def split_key(seed: int, sid: str) -> bytes:
    return hashlib.blake2b(f"{seed}\x00{sid}".encode("utf-8", "surrogatepass")).digest()


def split_train_val(ids: list[str], ratio: float, seed: int) -> tuple[set[str], set[str]]:
    """Split ids deterministically and independently of their order.

    Ids are sorted by blake2b(seed, id); the first ``n_train`` go to train, where
    ``n_train = floor(ratio * n + 0.5)`` (half up, not banker's rounding), then nudged so that a
    ratio above 0 gives at least one train id and a ratio below 1 with n >= 2 at least one val id.
    ratio 1.0 gives no val, ratio 0.0 no train, and a single id goes to train when ratio > 0.

    Raises:
        ValueError: ratio outside [0, 1].
    """
    if not 0.0 <= ratio <= 1.0 or math.isnan(ratio):
        raise ValueError(f"ratio must be within [0, 1], got {ratio}")
    unique = sorted(set(ids), key=lambda s: (split_key(seed, s), s))
    n = len(unique)
    n_train = math.floor(ratio * n + 0.5)
    if ratio > 0 and n > 0:
        n_train = max(n_train, 1)
    if ratio < 1 and n >= 2:
        n_train = min(n_train, n - 1)
    return set(unique[:n_train]), set(unique[n_train:])


def write_splits(
    raw_path: PathLike,
    out_dir: PathLike,
    keep_ids: set[str],
    ratio: float,
    seed: int,
    *,
    system: str | None = None,
) -> dict[str, int]:
    """Stream ``raw_path`` (ScoredSample lines) into ShareGPT ``train.jsonl`` and ``val.jsonl``.

    Only ``keep_ids`` are written, each once (its first line), in raw-file order; both files are
    always created (atomically). Returns ``{"train", "val", "missing"}`` counts, where
    ``missing`` is kept ids never found in the raw file.

    Raises:
        InputError: the raw file is missing or unreadable.
        OutputError: an output file cannot be written.
    """
    train_ids, _ = split_train_val(sorted(keep_ids), ratio, seed)
    out = Path(out_dir)
    counts = {"train": 0, "val": 0, "missing": 0}
    written: set[str] = set()
    with (
        JsonlWriter(out / "train.jsonl", atomic=True) as train,
        JsonlWriter(out / "val.jsonl", atomic=True) as val,
    ):
        for lineno, obj in iter_jsonl(raw_path):
            sid = obj.get("id")
            if not isinstance(sid, str) or sid not in keep_ids:
                continue
            if sid in written:
                log.warning("%s:%d: sample %s appears again; kept the first", raw_path, lineno, sid)
                continue
            try:
                sample = ScoredSample.model_validate(obj)
            except ValidationError as exc:
                log.warning("%s:%d: not a scored sample, skipped: %s", raw_path, lineno, exc)
                continue
            record = to_sharegpt(sample, system=system)
            if sid in train_ids:
                train.write(record)
                counts["train"] += 1
            else:
                val.write(record)
                counts["val"] += 1
            written.add(sid)
    counts["missing"] = len(keep_ids) - len(written)
    if counts["missing"]:
        log.warning("%d kept sample(s) not found in %s", counts["missing"], raw_path)
    return counts


def file_digest(path: PathLike, *, chunk_bytes: int = 1 << 20) -> str:
    """Hex blake2b of a file's bytes, read in chunks (identifies the input of a run)."""
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        while block := f.read(chunk_bytes):
            h.update(block)
    return h.hexdigest()


LOCK_FILENAME = ".sft_distill.lock"


@contextlib.contextmanager
def lock_output_dir(out_dir: PathLike) -> Iterator[bool]:
    """Hold an exclusive lock on the output directory for a run or a refilter.

    Two processes writing one directory would truncate each other's files; the second one is
    refused at once. The lock dies with its process, so a ``kill -9`` leaves nothing to clean.
    Yields whether the lock is held (False where ``fcntl`` is missing, e.g. on Windows).

    Raises:
        OutputError: another process holds the lock.
    """
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock, as before
        yield False
        return
    path = Path(out_dir) / LOCK_FILENAME
    if not path.parent.is_dir():  # nothing to protect; the caller reports the missing directory
        yield False
        return
    with open(path, "a+b") as f:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise OutputError(
                f"output directory {out_dir} is in use by another sft-distill process; wait for "
                "it to finish or choose another --output"
            ) from None
        try:
            yield True
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)
