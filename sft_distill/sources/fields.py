"""Which column is the instruction, the input, the answer: detected once, then applied to each row.

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

Two more roles, for pairs that come with their document: the **source text** (``source_text``,
``reference_text``, ``source_document``, ``document``, ``passage``; ``context`` and
``source`` too when another column is the input) becomes the sample's ``source_text``, which
the checks and the judges read but no output row carries; the **evidence** (``evidence``,
``evidence_quotes``, ``quotes``: a string or a list of strings) becomes ``Sample.evidence``.
``--source-col`` / ``--evidence-col`` override them. ``context`` and ``source`` stay the input
when nothing else is: the input is part of every training row, so a wrong guess there loses
nothing, while a document taken for the source would vanish from the rows.

Records: ``id`` (string or integer) is kept, else one is derived from the content; ``slice_id``
is the record's own ``slice_id`` column when it has one (our own outputs), else ``"rec:" + id``.
A duplicate id, or the same instruction and input twice (and the same answer, when answers are
kept), is a bad line: the teacher would only be asked the same thing twice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..ids import text_digest
from ..llm.json_extract import split_reasoning
from ..models import origin_of
from .jsonl import _json_type
from .reader import BadLine, BadLineKind, _fix_record
from .records import iter_raw_records

log = logging.getLogger(__name__)

INSTRUCTION_ALIASES = ("instruction", "prompt", "query", "question")


INPUT_ALIASES = ("input", "input_text", "context", "source")


OUTPUT_ALIASES = ("output", "response", "answer", "completion", "target", "content")


REASONING_ALIASES = ("reasoning_content", "reasoning", "rationale", "thinking")


SOURCE_TEXT_ALIASES = (
    "source_text",
    "reference_text",
    "source_document",
    "document",
    "passage",
    "context",
    "source",
)


# Source aliases that are also input aliases: the source only when another column is the input.
_AMBIGUOUS_SOURCE = frozenset(INPUT_ALIASES) & frozenset(SOURCE_TEXT_ALIASES)


EVIDENCE_ALIASES = ("evidence", "evidence_quotes", "quotes")


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


@dataclass(frozen=True)
class FieldMap:
    """Which column fills each role (None: no column); as overrides, None means "detect"."""

    instruction: str | None = None
    input: str | None = None
    output: str | None = None
    reasoning: str | None = None
    style: str = STYLE_COLUMNS
    source_text: str | None = None
    evidence: str | None = None

    def as_dict(self) -> dict[str, str | None]:
        d = asdict(self)
        # Absent when unused, so a file without them keeps the run identity it always had.
        for role in ("source_text", "evidence"):
            if d[role] is None:
                del d[role]
        return d

    @property
    def overrides_anything(self) -> bool:
        return any(
            v is not None for v in (self.instruction, self.input, self.output, self.reasoning)
        )

    @property
    def overrides_extra(self) -> bool:
        """Whether the source text or evidence column is given."""
        return self.source_text is not None or self.evidence is not None


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
    source_text: str = ""
    evidence: tuple[str, ...] = ()
    license: str | None = None  # metadata.license, else the provenance of a row of ours
    source: str | None = None


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
                extra = _extra_roles(columns, over, {key}, None, path=path, listing=listing)
                return FieldMap(instruction=key, output=key, style=style, **extra)

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
    extra = _extra_roles(columns, over, taken, resolved["input"], path=path, listing=listing)
    return FieldMap(
        instruction=resolved["instruction"],
        input=resolved["input"],
        output=resolved["output"],
        reasoning=resolved["reasoning"],
        **extra,
    )


def _extra_roles(
    columns: Sequence[str],
    over: FieldMap,
    taken: set[str],
    input_col: str | None,
    *,
    path: str | Path,
    listing: str,
) -> dict[str, str | None]:
    """The source text and evidence columns: overridden, or found among the untaken columns.

    ``context`` and ``source`` are the source text only when another column is the input.
    """
    found: dict[str, str | None] = {}
    taken = set(taken)
    for role, aliases, flag in (
        ("source_text", SOURCE_TEXT_ALIASES, "--source-col"),
        ("evidence", EVIDENCE_ALIASES, "--evidence-col"),
    ):
        wanted = getattr(over, role)
        if wanted is not None and wanted.strip().lower() == NO_COLUMN:
            found[role] = None
            continue
        if wanted is not None:
            if wanted not in columns:
                raise InputError(f"{path}: {flag} {wanted!r} not found; columns: {listing}")
            col: str | None = wanted
        else:
            if input_col is None:  # "context" or "source" here would be the input
                aliases = tuple(a for a in aliases if a not in _AMBIGUOUS_SOURCE)
            col = _find(columns, aliases, taken)
        if col is not None:
            taken.add(col)
        found[role] = col
    return found


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
        extra = self._extra(line, data)
        if extra is None:
            return None
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

        metadata = self._metadata(data)
        licensed = origin_of(provenance)
        licensed.update({k: v for k, v in origin_of(metadata).items() if v is not None})
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
            metadata=metadata,
            source_text=extra[0],
            evidence=extra[1],
            **licensed,
        )

    def _extra(self, line: int, data: dict[str, Any]) -> tuple[str, tuple[str, ...]] | None:
        """(source text, evidence quotes), or None when one is unusable (reported)."""
        source, evidence = "", ()
        col = self.fmap.source_text
        if col:
            value = data.get(col)
            if isinstance(value, list) and all(isinstance(v, str) for v in value):
                value = "\n\n".join(value)  # several passages: one document
            text, error = _as_text(value, repr(col))
            if error:
                self._bad(line, "non_string_content", error)
                return None
            source = (text or "").strip()
        col = self.fmap.evidence
        if col:
            value = data.get(col)
            quotes = [value] if isinstance(value, str) else [] if value is None else value
            if not isinstance(quotes, list) or not all(isinstance(q, str) for q in quotes):
                self._bad(
                    line,
                    "non_string_content",
                    f"{col!r} must be a string or a list of strings, got {_json_type(value)}",
                )
                return None
            evidence = tuple(q.strip() for q in quotes if q.strip())
        return source, evidence

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
        fmap = self.fmap
        mapped = {fmap.instruction, fmap.input, fmap.output, fmap.reasoning}
        mapped |= {fmap.source_text, fmap.evidence}
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
