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
import json
import logging
from collections.abc import AsyncIterator, Callable, Generator, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from ..errors import InputError
from ..ids import text_digest
from ..models import PathLike, Slice
from ..text import fix_surrogates
from .jsonl import (
    DEFAULT_MAX_LINE_BYTES,
    YIELD_EVERY_BYTES,
    YIELD_EVERY_LINES,
    _json_type,
    _open_input,
    _read_lines,
    json_value_error,
    refuse_delimited,
)

log = logging.getLogger(__name__)


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


def derive_slice_id(content: str) -> str:
    """Stable id for a slice without one: ``"s-"`` + 16 hex digits of blake2b(content)."""
    return "s-" + text_digest(content, size=8).hex()


def _content_key(content: str) -> bytes:
    return text_digest(content.strip(), size=16)


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
        content = self._content(lineno, record)
        if content is None:
            return "bad"
        ident = self._slice_id(lineno, record.get("id"), content)
        if ident is None:
            return "bad"
        sid, derived = ident
        key = _content_key(content)
        if self._is_duplicate(lineno, sid, derived, key):
            return "duplicate"
        metadata = self._metadata(lineno, record, had_surrogates)
        self.id_lines[sid] = lineno
        if self.seen_ids is not None:
            self.seen_ids.add(sid)
        self.content_lines[key] = (lineno, sid)
        return Slice(id=sid, content=content, metadata=metadata, line=lineno)

    def _content(self, lineno: int, record: dict[str, Any]) -> str | None:
        """The record's text, or None (reported) when it has none."""
        if "content" not in record:
            alt = next(
                (k for k in record if k.strip().lower() == "content"),
                next((k for k in _CONTENT_ALTERNATIVES if isinstance(record.get(k), str)), None),
            )
            hint = f" (found {alt!r}; rename it to 'content')" if alt else ""
            self._report(lineno, "missing_content", f"missing 'content'{hint}")
            return None
        content = record["content"]
        if not isinstance(content, str):
            self._report(
                lineno,
                "non_string_content",
                f"'content' must be a string, got {_json_type(content)}",
            )
            return None
        if _is_blank(content):
            what = "empty" if content == "" else "whitespace only"
            self._report(lineno, "empty_content", f"'content' is {what}")
            return None
        return content

    def _slice_id(self, lineno: int, raw_id: Any, content: str) -> tuple[str, bool] | None:
        """(id, whether derived from the content), or None (reported) for an unusable id."""
        if isinstance(raw_id, bool) or not isinstance(raw_id, (str, int, type(None))):
            self._report(
                lineno, "bad_id", f"'id' must be a string or an integer, got {_json_type(raw_id)}"
            )
            return None
        if isinstance(raw_id, int):
            return str(raw_id), False
        if raw_id is None or not raw_id.strip():
            return derive_slice_id(content), True
        return raw_id, False

    def _is_duplicate(self, lineno: int, sid: str, derived: bool, key: bytes) -> bool:
        """Whether the id or the content was seen already (reported)."""
        # An explicit id is checked first: "duplicate id" is the message users expect for it.
        if not derived:
            dup = self._duplicate_id(sid)
            if dup:
                self._report(lineno, "duplicate_id", dup)
                return True
        first = self.content_lines.get(key)
        if first is not None:
            self._report(
                lineno,
                "duplicate_content",
                f"duplicate content of line {first[0]} (id {first[1]!r})",
            )
            return True
        if derived:
            dup = self._duplicate_id(sid)
            if dup:
                self._report(lineno, "duplicate_id", dup)
                return True
        return False

    def _metadata(
        self, lineno: int, record: dict[str, Any], had_surrogates: bool
    ) -> dict[str, Any]:
        """The slice's metadata (unknown top-level keys merged in); fixes are reported here."""
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
        return metadata

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


# ---------------------------------------------------------------------------------------------
# Writing
