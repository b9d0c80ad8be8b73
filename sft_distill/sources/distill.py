"""Existing instruction sets: reading, field mapping, the distill mode (``sft-distill distill``).

Input files (the format is told by the suffix ``.parquet``/``.pq`` or the ``PAR1`` magic, else by
the first character: ``[`` is a JSON array, anything else JSON Lines):

- JSON Lines: streamed line by line like ``sources.reader.read_slices`` (BOM, CRLF and blank lines
  accepted; a bad line is reported as ``data.jsonl:17: reason``, skipped and counted).
- JSON array: loaded whole (the file must be valid JSON as a whole, so a syntax error stops the
  run with its line); each element is read like a JSONL record and reported with its line.
- Parquet: read in batches of rows with pyarrow when it is installed; "line" means row number.

Field mapping is decided once, from the first ``HEAD_RECORDS`` records, and applied to every
record: the first alias present (case-insensitive) fills each role, no column fills two roles,
and ``--instruction-col`` / ``--input-col`` / ``--output-col`` / ``--reasoning-col`` override it
(``none`` turns input, output or reasoning off). Chat records are read too when no override is
given: ShareGPT ``{"conversations": [{"from", "value"}]}`` and OpenAI ``{"messages": [{"role",
"content"}]}``; the first human/user turn is the instruction, the first gpt/assistant turn after
it the reference answer (its ``reasoning_content`` the reasoning), a system turn or ``system``
column goes to ``annotations["system"]`` (it is not sent to the teacher: output rows carry only
the config's ``system_prompt``), later turns are ignored. A reference answer starting with a
``<think>`` block is split into reasoning and answer.

Records: ``id`` (string or integer) is kept, else one is derived from the content; ``slice_id``
is the record's own ``slice_id`` column when it has one (our own outputs), else ``"rec:" + id``.
A duplicate id, or the same instruction and input twice (and the same answer, when answers are
kept), is a bad line: the teacher would only be asked the same thing twice.

Distill mode: without ``skip_generation`` the teacher writes a new answer to every record (one
request each) and the existing answer is kept as ``reference_output``; with it, the existing
answer is the output and no teacher call is made, so the run only judges and filters a dataset
someone already has. Samples carry no ``source_text``: an instruction set has no source
document, the record's input is already shown to the judges as the sample's input, and repeating
it as the document would only double their tokens (and make a source-overlap gate compare the
answer with its own input). In the funnel, ``slices`` counts records taken in and ``chunks``
the records sent to the teacher (0 with ``skip_generation``); a teacher failure is a
``distill_answer`` failure, retried by a rerun.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import AsyncIterator, Callable, Generator, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InputError, LLMError
from ..ids import file_digest, stable_id, text_digest
from ..llm.client import ChatResult, log_failure
from ..llm.json_extract import split_reasoning
from ..llm.prompts import ISET_PROMPT_VERSION, iset_answer_messages
from ..models import Failure, Sample, Slice
from ..stages.stream import bounded_map
from ..text import plural
from .base import SourceContext
from .jsonl import (
    DEFAULT_MAX_LINE_BYTES,
    _json_type,
    _open_input,
    _read_lines,
    count_lines,
    json_value_error,
    refuse_delimited,
)
from .reader import BadLine, BadLineKind, _fix_record

log = logging.getLogger(__name__)

__all__ = [
    "HEAD_RECORDS",
    "INPUT_ALIASES",
    "INSTRUCTION_ALIASES",
    "OUTPUT_ALIASES",
    "REASONING_ALIASES",
    "DistillSource",
    "FieldMap",
    "Record",
    "RecordMapper",
    "aiter_records",
    "count_records",
    "detect_field_map",
    "input_format",
    "iter_raw_records",
    "iter_records",
    "parse_answer",
    "read_head",
    "record_annotations",
    "teacher_answer",
]

INSTRUCTION_ALIASES = ("instruction", "prompt", "query", "question")
INPUT_ALIASES = ("input", "input_text", "context", "source")
OUTPUT_ALIASES = ("output", "response", "answer", "completion", "target", "content")
REASONING_ALIASES = ("reasoning_content", "reasoning", "rationale", "thinking")
# Records looked at to decide the field mapping (and columns listed in its error messages).
HEAD_RECORDS = 100
# An override meaning "this role has no column".
NO_COLUMN = "none"

STYLE_COLUMNS = "columns"
STYLE_SHAREGPT = "sharegpt"
STYLE_OPENAI = "openai"
_CHAT_KEYS = {STYLE_SHAREGPT: "conversations", STYLE_OPENAI: "messages"}
_USER_ROLES = frozenset({"human", "user"})
_ASSISTANT_ROLES = frozenset({"gpt", "assistant", "chatgpt", "bot", "model"})
_SYSTEM_ROLES = frozenset({"system"})
# Columns never copied into a record's metadata (they are mapped, or structured provenance).
_NOT_METADATA = frozenset({"id", "slice_id", "system", "conversations", "messages", "provenance"})
_PARQUET_BATCH_ROWS = 1024
_YIELD_EVERY = 64
_WS_RE = re.compile(r"[ \t\n\r]*")


@dataclass(frozen=True)
class FieldMap:
    """Which column fills each role (None: no column); as overrides, None means "detect"."""

    instruction: str | None = None
    input: str | None = None
    output: str | None = None
    reasoning: str | None = None
    style: str = STYLE_COLUMNS

    def as_dict(self) -> dict[str, str | None]:
        return asdict(self)

    @property
    def overrides_anything(self) -> bool:
        return any(
            v is not None for v in (self.instruction, self.input, self.output, self.reasoning)
        )


@dataclass(frozen=True)
class Record:
    """One usable record of an instruction set, mapped to our roles."""

    line: int
    key: str  # the record's own id, or one derived from its content
    slice_id: str
    instruction: str
    input: str = ""
    output: str | None = None
    reasoning: str | None = None
    system: str | None = None
    has_id: bool = False
    teacher_model: str = ""
    prompt_version: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------
# Reading raw records


Report = Callable[[int, BadLineKind, str], None]


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


# ---------------------------------------------------------------------------------------------
# Field mapping


def _columns_of(records: Sequence[dict[str, Any]]) -> list[str]:
    seen: dict[str, None] = {}
    for record in records:
        for key in record:
            seen.setdefault(str(key), None)
    return list(seen)


def _find(columns: Sequence[str], aliases: Sequence[str], taken: set[str]) -> str | None:
    by_lower: dict[str, str] = {}
    for col in columns:
        by_lower.setdefault(col.lower(), col)
    for alias in aliases:
        found = alias if alias in columns else by_lower.get(alias)
        if found is not None and found not in taken:
            return found
    return None


def detect_field_map(
    records: Sequence[dict[str, Any]],
    overrides: FieldMap | None = None,
    *,
    path: str | Path = "input",
    output_needed: str | None = None,
) -> FieldMap:
    """The field mapping for records like ``records`` (the first of a file).

    Args:
        records: the first records of the file.
        overrides: columns given on the command line; ``"none"`` turns a role off.
        path: named in error messages.
        output_needed: why an answer column is required (None: it is optional).

    Raises:
        InputError: no instruction column, an override naming a column that is not there, or
            no answer column when ``output_needed``.
    """
    columns = _columns_of(records)
    listing = ", ".join(columns) or "(none)"
    over = overrides or FieldMap()
    if not over.overrides_anything:
        for style, key in _CHAT_KEYS.items():
            if any(isinstance(r.get(key), list) for r in records):
                return FieldMap(instruction=key, output=key, style=style)

    taken: set[str] = set()
    resolved: dict[str, str | None] = {}
    for role, aliases in (
        ("instruction", INSTRUCTION_ALIASES),
        ("output", OUTPUT_ALIASES),
        ("input", INPUT_ALIASES),
        ("reasoning", REASONING_ALIASES),
    ):
        flag = f"--{role}-col"
        wanted = getattr(over, role)
        if wanted is not None and wanted.strip().lower() == NO_COLUMN and role != "instruction":
            resolved[role] = None
            continue
        if wanted is not None:
            if wanted not in columns:
                raise InputError(
                    f"{path}: {flag} {wanted!r} not found in the first {len(records)} "
                    f"record(s); columns: {listing}"
                )
            col: str | None = wanted
        else:
            col = _find(columns, aliases, taken)
        if col is None and role == "instruction":
            raise InputError(
                f"{path}: no instruction column found; columns: {listing}; use --instruction-col"
            )
        if col is not None:
            taken.add(col)
        resolved[role] = col
    if output_needed and resolved["output"] is None:
        raise InputError(
            f"{path}: no answer column found ({output_needed}); columns: {listing}; "
            "use --output-col"
        )
    return FieldMap(
        instruction=resolved["instruction"],
        input=resolved["input"],
        output=resolved["output"],
        reasoning=resolved["reasoning"],
    )


# ---------------------------------------------------------------------------------------------
# Mapping records


def _as_text(value: Any, what: str) -> tuple[str | None, str | None]:
    """(text, None), (None, None) when absent, or (None, error) for a value that is not text."""
    if value is None:
        return None, None
    if isinstance(value, str):
        return value, None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value), None
    return None, f"{what} must be a string, got {_json_type(value)}"


def _turn_text(content: Any) -> Any:
    """A chat turn's text: a string, or the text parts of an OpenAI content list joined."""
    if isinstance(content, list):
        parts = [p.get("text") for p in content if isinstance(p, dict)]
        return "".join(p for p in parts if isinstance(p, str))
    return content


def _chat_roles(turns: list[Any], style: str) -> tuple[dict[str, Any], str | None]:
    """The first system, user and following assistant turns of a chat, or an error."""
    role_key, text_key = ("from", "value") if style == STYLE_SHAREGPT else ("role", "content")
    found: dict[str, Any] = {}
    for turn in turns:
        if not isinstance(turn, dict):
            return {}, f"a turn must be an object, got {_json_type(turn)}"
        role = turn.get(role_key, turn.get("role", turn.get("from")))
        role = role.strip().lower() if isinstance(role, str) else ""
        text = _turn_text(turn.get(text_key, turn.get("content", turn.get("value"))))
        if role in _SYSTEM_ROLES and "system" not in found and "user" not in found:
            found["system"] = text
        elif role in _USER_ROLES and "user" not in found:
            found["user"] = text
        elif role in _ASSISTANT_ROLES and "user" in found:
            found["assistant"] = text
            reasoning = turn.get("reasoning_content", turn.get("reasoning"))
            if isinstance(reasoning, str) and reasoning.strip():
                found["reasoning"] = reasoning
            break
    return found, None


def _is_blank(text: str | None) -> bool:
    return text is None or not text.strip().strip("\u200b\u200c\u200d\u2060\ufeff").strip()


class RecordMapper:
    """Turns raw records into ``Record``s with one field mapping, reporting what it must skip."""

    def __init__(
        self,
        fmap: FieldMap,
        report: Callable[[int, BadLineKind, str, bool], None],
        *,
        output_required: bool,
        key_on_output: bool,
    ) -> None:
        self.fmap = fmap
        self.report = report
        self.output_required = output_required
        self.key_on_output = key_on_output
        self._ids: dict[str, int] = {}
        self._contents: dict[bytes, int] = {}

    def _bad(self, line: int, kind: BadLineKind, reason: str) -> None:
        self.report(line, kind, reason, True)

    def _roles(self, line: int, data: dict[str, Any]) -> dict[str, Any] | None:
        fmap = self.fmap
        if fmap.style == STYLE_COLUMNS:
            cols = {
                "instruction": fmap.instruction,
                "input": fmap.input,
                "output": fmap.output,
                "reasoning": fmap.reasoning,
                "system": "system",
            }
            raw = {role: data.get(col) if col else None for role, col in cols.items()}
            where = {role: repr(col) for role, col in cols.items()}
            missing = {role: f"missing {where[role]}" for role in cols}
        else:
            key = _CHAT_KEYS[fmap.style]
            turns = data.get(key)
            if not isinstance(turns, list):
                self._bad(line, "missing_content", f"missing {key!r} (a list of turns)")
                return None
            found, error = _chat_roles(turns, fmap.style)
            if error:
                self._bad(line, "not_object", f"{key!r}: {error}")
                return None
            raw = {
                "instruction": found.get("user"),
                "input": None,
                "output": found.get("assistant"),
                "reasoning": found.get("reasoning"),
                "system": found.get("system", data.get("system")),
            }
            where = {
                "instruction": f"the first user turn of {key!r}",
                "input": "input",
                "output": f"the first assistant turn of {key!r}",
                "reasoning": "reasoning",
                "system": "system",
            }
            missing = {
                "instruction": f"no user turn in {key!r}",
                "output": f"no assistant turn after the user turn in {key!r}",
            }
        texts: dict[str, Any] = {}
        for role in ("instruction", "input", "output", "reasoning", "system"):
            text, error = _as_text(raw[role], where[role])
            if error:
                self._bad(line, "non_string_content", error)
                return None
            texts[role] = text
        for role, needed in (("instruction", True), ("output", self.output_required)):
            if not needed or not _is_blank(texts[role]):
                continue
            if texts[role] is None:
                self._bad(line, "missing_content", missing[role])
            else:
                self._bad(line, "empty_content", f"{where[role]} is empty")
            return None
        return texts

    def map(self, line: int, data: dict[str, Any]) -> Record | None:
        """The record, or None when it was reported as bad."""
        data, fixed = _fix_record(data)
        roles = self._roles(line, data)
        if roles is None:
            return None
        texts = self._texts(line, roles)
        if texts is None:
            return None
        instruction, inp, output, reasoning = texts
        parts = (instruction, inp, output or "") if self.key_on_output else (instruction, inp)
        ident = self._key(line, data.get("id"), parts)
        if ident is None:
            return None
        key, has_id = ident
        if fixed:
            self.report(line, "lone_surrogate", "lone UTF-16 surrogate replaced by U+FFFD", False)
        own_slice = data.get("slice_id")
        prov = data.get("provenance")
        provenance: dict[str, Any] = prov if isinstance(prov, dict) else {}

        def origin(name: str) -> str:
            value = data.get(name, provenance.get(name))
            return value if isinstance(value, str) else ""

        return Record(
            line=line,
            key=key,
            slice_id=own_slice
            if isinstance(own_slice, str) and own_slice.strip()
            else "rec:" + key,
            instruction=instruction,
            input=inp,
            output=output,
            reasoning=reasoning,
            system=None if _is_blank(roles["system"]) else roles["system"].strip(),
            has_id=has_id,
            teacher_model=origin("teacher_model"),
            prompt_version=origin("prompt_version"),
            metadata=self._metadata(data),
        )

    def _texts(
        self, line: int, roles: dict[str, Any]
    ) -> tuple[str, str, str | None, str | None] | None:
        """(instruction, input, answer, reasoning), a leading <think> block split off the answer."""
        instruction = roles["instruction"].strip()
        inp = (roles["input"] or "").strip()
        output = None if _is_blank(roles["output"]) else roles["output"].strip()
        reasoning = None if _is_blank(roles["reasoning"]) else roles["reasoning"].strip()
        if output is not None and output.lstrip().startswith("<think"):
            think, output = split_reasoning(output)
            reasoning = reasoning or think
            output = output.strip() or None
            if output is None and self.output_required:
                self._bad(line, "empty_content", "the answer is a <think> block only")
                return None
        return instruction, inp, output, reasoning

    def _key(self, line: int, raw_id: Any, parts: tuple[str, ...]) -> tuple[str, bool] | None:
        """(key, whether the row gave it), or None (reported) for a repeated id or content."""
        has_id = isinstance(raw_id, (str, int)) and not isinstance(raw_id, bool)
        key = str(raw_id).strip() if has_id else ""
        has_id = bool(key)
        content = text_digest("\x1f".join(parts), size=16)
        if not has_id:
            key = "r-" + content.hex()[:16]
        first = self._ids.get(key) if has_id else None
        if first is not None:
            self._bad(line, "duplicate_id", f"duplicate id {key!r} (first on line {first})")
            return None
        # A derived id repeats only with its content: say "duplicate content" for it.
        first = self._contents.get(content)
        if first is not None:
            what = (
                "instruction, input and answer" if self.key_on_output else "instruction and input"
            )
            self._bad(line, "duplicate_content", f"same {what} as line {first}")
            return None
        self._ids[key] = line
        self._contents[content] = line
        return key, has_id

    def _metadata(self, data: dict[str, Any]) -> dict[str, Any]:
        """Plain top-level values the mapping does not use, then the row's own ``metadata``."""
        mapped = {self.fmap.instruction, self.fmap.input, self.fmap.output, self.fmap.reasoning}
        metadata = {
            str(k): v
            for k, v in data.items()
            if k not in _NOT_METADATA
            and k not in mapped
            and (v is None or isinstance(v, (str, int, float, bool)))
        }
        if isinstance(data.get("metadata"), dict):
            metadata = {**metadata, **data["metadata"]}
            metadata.pop("metadata", None)
        return metadata


def iter_records(path: str | Path, fmap: FieldMap, **options: Any) -> Iterator[Record]:
    """The usable records of ``path`` under ``fmap``; bad lines go to ``on_bad_line``.

    ``options`` and errors as ``_scan_records``, without its None for rows that give no record.
    """
    return (record for record in _scan_records(path, fmap, **options) if record is not None)


def _scan_records(
    path: str | Path,
    fmap: FieldMap,
    *,
    output_required: bool = False,
    key_on_output: bool = False,
    on_bad_line: Callable[[BadLine], None] | None = None,
    strict: bool = False,
    skip: Callable[[dict[str, Any]], bool] | None = None,
    on_raw: Callable[[int, bool], None] | None = None,
) -> Generator[Record | None, None, None]:
    """Each usable record of ``path``, and None for each row skipped or unusable (so an async
    caller can give the event loop a turn during a long run of rows that yield nothing).

    Args:
        output_required: a record without an answer is a bad line.
        key_on_output: duplicates are the same instruction, input *and* answer.
        on_bad_line: called with each skipped (or fixed) line; None logs a warning.
        strict: raise on the first bad line instead.
        skip: records for which it returns True are passed over silently.
        on_raw: called with the line of every record read and whether it is usable (False for
            a bad or skipped one, which needs no work).

    Raises:
        InputError: the file is unreadable, or with ``strict`` the first bad line.
    """
    name = str(path)

    def report(line: int, kind: BadLineKind, reason: str, skipped: bool = True) -> None:
        bad = BadLine(path=name, line=line, reason=reason, kind=kind, skipped=skipped)
        if strict:
            raise InputError(str(bad))
        if on_raw is not None and skipped:
            on_raw(line, False)
        if on_bad_line is not None:
            on_bad_line(bad)
        else:
            log.warning("%s %s", "skipping" if skipped else "fixed", bad)

    mapper = RecordMapper(
        fmap,
        lambda line, kind, reason, skipped: report(line, kind, reason, skipped),
        output_required=output_required,
        key_on_output=key_on_output,
    )
    for line, data in iter_raw_records(path, lambda ln, kind, reason: report(ln, kind, reason)):
        if skip is not None and skip(data):
            if on_raw is not None:
                on_raw(line, False)
            yield None
            continue
        record = mapper.map(line, data)
        if record is not None and on_raw is not None:
            on_raw(line, True)
        yield record


async def aiter_records(
    path: str | Path,
    fmap: FieldMap,
    ctx: SourceContext,
    *,
    output_required: bool = False,
    key_on_output: bool = False,
    skip: Callable[[dict[str, Any]], bool] | None = None,
) -> AsyncIterator[Record]:
    """``iter_records`` for a source: counts lines and records, reports bad lines to ``ctx``."""

    def on_raw(line: int, usable: bool) -> None:
        ctx.stats.lines_read = max(ctx.stats.lines_read, line)
        if not usable:  # nothing to ask: done as soon as it is read; the rest once answered
            ctx.progress(1)

    records = _scan_records(
        path,
        fmap,
        output_required=output_required,
        key_on_output=key_on_output,
        on_bad_line=ctx.on_bad_line,
        strict=ctx.strict,
        skip=skip,
        on_raw=on_raw,
    )
    try:
        for n, record in enumerate(records, start=1):
            if n % _YIELD_EVERY == 0:
                # Reads are synchronous; let the requests in flight progress, also during a
                # long run of rows that are skipped.
                await asyncio.sleep(0)
            if record is None:
                continue
            ctx.stats.slices += 1
            ctx.on_slice(
                Slice(
                    id=record.slice_id,
                    content=record.instruction,
                    metadata=record.metadata,
                    line=record.line,
                )
            )
            yield record
    finally:
        records.close()


# ---------------------------------------------------------------------------------------------
# The teacher's answers


def parse_answer(result: ChatResult) -> tuple[str, str | None]:
    """(answer, reasoning) from a plain-text reply; reasoning from ``<think>`` or the API field.

    Raises:
        ValueError: the reply has no answer text (retried like a bad reply).
    """
    reasoning, content = split_reasoning(result.content)
    content = content.strip()
    if not content:
        raise ValueError("empty answer")
    return content, reasoning or result.reasoning


async def teacher_answer(
    ctx: SourceContext,
    instruction: str,
    input_text: str,
    *,
    failure_kind: str,
    slice_id: str,
    sample_id: str | None = None,
) -> tuple[str, str | None] | None:
    """The teacher's (answer, reasoning) for one instruction; None after a failure (reported)."""
    cfg = ctx.config
    messages = iset_answer_messages(
        instruction, input_text, language=cfg.language, system_prompt=cfg.system_prompt
    )
    teacher = ctx.teacher
    try:
        answer, _ = await teacher.chat(messages, parse_answer)
    except LLMError as exc:
        log_failure(log, f"{slice_id}: {failure_kind}", exc)
        ctx.stats.generation_failed_chunks += 1
        ctx.on_failure(
            Failure.from_error(exc, failure_kind, slice_id=slice_id, sample_id=sample_id)
        )
        return None
    return answer


# ---------------------------------------------------------------------------------------------
# The distill source


def record_annotations(record: Record, **extra: Any) -> dict[str, Any]:
    """What a sample records about its input record: line (or row) and system prompt."""
    notes: dict[str, Any] = {"line": record.line, **extra}
    if record.system:
        notes["system"] = record.system
    return notes


class RecordFileSource:
    """Base of the sources that read an instruction-set file (distill, augment).

    The field mapping is decided once from the file's first records; ``describe`` and ``total``
    make mapping errors surface before any output is made.
    """

    kind = "records"

    def __init__(self, path: str | Path, *, columns: FieldMap | None = None) -> None:
        self.path = Path(path)
        self.overrides = columns
        self._fmap: FieldMap | None = None
        self._total: int | None = None

    def _head_records(self, head: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The first records the mapping is decided from."""
        return head

    def _output_needed(self) -> str | None:
        """Why an answer column is required (None: it is optional)."""
        return None

    def _identity(self) -> dict[str, Any]:
        """What besides the file and its columns identifies this source's input."""
        return {}

    @property
    def field_map(self) -> FieldMap:
        """The mapping decided from the file's first records (read once).

        Raises:
            InputError: unreadable file, no record, or no usable column (see ``detect_field_map``).
        """
        if self._fmap is None:
            head, bad = read_head(self.path)
            records = self._head_records(head)
            if not records:
                first = f"; first: {bad[0]}" if bad else ""
                raise InputError(
                    f"{self.path}: no record found ({plural(len(bad), 'bad line')}{first})"
                )
            self._fmap = detect_field_map(
                records, self.overrides, path=self.path, output_needed=self._output_needed()
            )
        return self._fmap

    def describe(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "input": str(self.path.resolve()),
            "input_blake2b": file_digest(self.path),
            "columns": self.field_map.as_dict(),
            **self._identity(),
        }

    def total(self) -> int | None:
        if self._total is None:
            self.field_map  # noqa: B018 - mapping errors surface before any output is made
            self._total = count_records(self.path)
        return self._total


class DistillSource(RecordFileSource):
    """An existing instruction set: the teacher answers each instruction anew, or is skipped."""

    kind = "distill"
    unit = "record"
    prompt_version = ISET_PROMPT_VERSION

    def __init__(
        self,
        path: str | Path,
        *,
        columns: FieldMap | None = None,
        skip_generation: bool = False,
    ) -> None:
        super().__init__(path, columns=columns)
        self.skip_generation = skip_generation

    def _output_needed(self) -> str | None:
        return "--skip-generation judges the existing answers" if self.skip_generation else None

    def _identity(self) -> dict[str, Any]:
        return {"skip_generation": self.skip_generation}

    def _sample(
        self, record: Record, output: str, reasoning: str | None, *, teacher_model: str = ""
    ) -> Sample:
        sid = stable_id("distill", record.slice_id, record.instruction, record.input, output)
        return Sample(
            id=sid,
            slice_id=record.slice_id,
            instruction=record.instruction,
            input=record.input,
            output=output,
            reasoning=reasoning,
            teacher_model=teacher_model,
            prompt_version=ISET_PROMPT_VERSION if teacher_model else "",
            source_kind=self.kind,
            reference_output=record.output,
            annotations=record_annotations(
                record, answer_source="teacher" if teacher_model else "reference"
            ),
        )

    async def samples(self, ctx: SourceContext) -> AsyncIterator[Sample]:
        records = aiter_records(
            self.path,
            self.field_map,
            ctx,
            output_required=self.skip_generation,
            key_on_output=self.skip_generation,
        )
        if self.skip_generation:
            async for record in records:
                assert record.output is not None  # output_required
                ctx.stats.samples_generated += 1
                ctx.progress(1)  # its answer is the one it has
                yield self._sample(record, record.output, record.reasoning)
            return

        async def answer(record: Record) -> Sample | None:
            ctx.stats.chunks += 1
            got = await teacher_answer(
                ctx,
                record.instruction,
                record.input,
                failure_kind="distill_answer",
                slice_id=record.slice_id,
            )
            ctx.progress(1)
            if got is None:
                return None
            ctx.stats.samples_generated += 1
            return self._sample(record, got[0], got[1], teacher_model=ctx.teacher.model)

        limit = 2 * ctx.teacher.config.max_concurrent
        async for sample in bounded_map(records, answer, limit=limit):
            if sample is not None:
                yield sample


# ---------------------------------------------------------------------------------------------
# Command line
