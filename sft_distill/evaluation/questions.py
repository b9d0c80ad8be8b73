"""The held-out questions of ``sft-distill eval``, each with its reference answer and source.

Two ways in:

- a run's split (``val.jsonl`` by default): the file of the run's first output format, read and
  mapped like an instruction set (``sources.fields``: ShareGPT, Alpaca or OpenAI rows). The
  reference is the teacher's recorded answer; the provenance of each row (in the row, or line
  for line in the OpenAI format's sidecar) gives its slice and chunk. The source chunk itself is
  not in the outputs: it is cut again from the run's input slices, the file ``metadata.json``
  names, chunked with the run's ``chunk_chars`` exactly as the run did (``chunk_slice``), once
  the file's hash shows it is the same file. Only the slices that have questions are chunked.
  A run of instruction sets (distill) gets the source text of its records the same way.
- any instruction set (``--questions FILE``): JSONL, a JSON array or Parquet, columns found like
  ``distill``'s; its answer column is the reference, and a source text column (``source_text``,
  ``reference_text``, ``source_document``, ``document``, ``passage``, or ``--source-col``) the
  source chunk.

A question without a source is judged against well-established knowledge (the judge prompt
says so), a question without a reference gets no student-vs-reference comparison.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..config.models import DistillConfig
from ..errors import InputError, file_error
from ..ids import file_digest
from ..outputs.formats import provenance_file
from ..sources.fields import FieldMap, Record, RecordMapper, detect_field_map
from ..sources.reader import BadLine, BadLineKind, iter_slices
from ..sources.records import iter_raw_records, read_head
from ..stages.generate import chunk_slice
from ..text import plural

log = logging.getLogger(__name__)

__all__ = [
    "SOURCE_TEXT_COLUMNS",
    "Question",
    "QuestionSet",
    "load_question_file",
    "load_run_split",
    "read_run_metadata",
]

# Columns of an instruction set that hold the source document (``context``/``source`` are read
# as the input by ``sources.fields``, which an answer is judged with anyway).
SOURCE_TEXT_COLUMNS = ("source_text", "reference_text", "source_document", "document", "passage")


@dataclass(frozen=True)
class Question:
    """One held-out question: what the models are asked and what their answers are judged by."""

    id: str
    instruction: str
    input: str = ""
    reference: str | None = None
    source_text: str = ""
    system: str | None = None
    slice_id: str = ""
    chunk_index: int | None = None
    group: str = ""
    line: int = 0
    reference_model: str = ""


@dataclass
class QuestionSet:
    """The questions, where they came from, and what the user should know about them."""

    questions: list[Question]
    described: dict[str, Any]
    warnings: list[str] = field(default_factory=list)
    bad_lines: int = 0

    @property
    def with_source(self) -> int:
        """Questions whose source chunk is known."""
        return sum(1 for q in self.questions if q.source_text.strip())

    @property
    def with_reference(self) -> int:
        """Questions with a reference answer."""
        return sum(1 for q in self.questions if q.reference)


def read_run_metadata(run_dir: Path) -> dict[str, Any] | None:
    """A run's ``metadata.json``, or None when the directory holds no run.

    Raises:
        InputError: the file exists but cannot be read as a run's metadata.
    """
    path = run_dir / "metadata.json"
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise file_error(path, exc, failed="cannot read metadata") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: cannot read metadata: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("config"), dict):
        raise InputError(f"{path}: no recorded 'config'; is this an sft_distill output directory?")
    return data


class _BadLines:
    """Counts the lines a reader skipped and keeps the first few messages."""

    def __init__(self) -> None:
        self.count = 0
        self.examples: list[str] = []

    def __call__(self, line: int, kind: BadLineKind, reason: str, skipped: bool = True) -> None:
        if skipped:
            self.count += 1
            if len(self.examples) < 3:
                self.examples.append(f"line {line}: {reason}")


def _records(path: Path, fmap: FieldMap, bad: _BadLines) -> Iterator[tuple[Record, dict[str, Any]]]:
    """(record, raw row) for every usable row of an instruction-set file."""
    mapper = RecordMapper(fmap, bad, output_required=False, key_on_output=False)
    for line, data in iter_raw_records(path, lambda ln, kind, reason: bad(ln, kind, reason)):
        record = mapper.map(line, data)
        if record is not None:
            yield record, data


def _field_map(path: Path, overrides: FieldMap | None = None) -> FieldMap:
    head, bad = read_head(path)
    if not head:
        first = f"; first: {bad[0]}" if bad else ""
        raise InputError(f"{path}: no question found ({plural(len(bad), 'bad line')}{first})")
    return detect_field_map(head, overrides, path=path)


def _group(record: Record, group_by: str | None, fallback: str) -> str:
    value = record.metadata.get(group_by) if group_by else None
    return str(value) if value is not None and str(value).strip() else fallback


def _source_of(record: Record, source_col: str | None) -> str:
    """A record's source text: ``--source-col`` when given, else the mapping's own, else a
    source column."""
    if source_col:
        value = record.metadata.get(source_col)
        if isinstance(value, str) and value.strip():
            return value.strip()
    own = getattr(record, "source_text", "")  # sources.fields maps source_text, document, ...
    if isinstance(own, str) and own.strip():
        return own.strip()
    for col in SOURCE_TEXT_COLUMNS:
        value = record.metadata.get(col)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return ""


def load_question_file(
    path: str | Path,
    *,
    columns: FieldMap | None = None,
    source_col: str | None = None,
    group_by: str | None = None,
) -> QuestionSet:
    """Questions from any instruction set (``--questions FILE``).

    Raises:
        InputError: unreadable file, no usable record, a column that is not there.
    """
    p = Path(path)
    fmap = _field_map(p, columns)
    if source_col:
        head, _ = read_head(p)
        if not any(source_col in row for row in head):
            raise InputError(f"{p}: --source-col {source_col!r} not found in the first records")
    bad = _BadLines()
    questions = [
        Question(
            id=record.key,
            instruction=record.instruction,
            input=record.input,
            reference=record.output,
            source_text=_source_of(record, source_col),
            system=record.system,
            slice_id=record.slice_id,
            group=_group(record, group_by, record.slice_id),
            line=record.line,
            reference_model=record.teacher_model,
        )
        for record, _ in _records(p, fmap, bad)
    ]
    described = {
        "kind": "file",
        "path": str(p.resolve()),
        "input_blake2b": file_digest(p),
        "columns": fmap.as_dict(),
    }
    return _finish(QuestionSet(questions, described, bad_lines=bad.count), p, bad)


def _finish(qs: QuestionSet, path: Path, bad: _BadLines) -> QuestionSet:
    if bad.count:
        qs.warnings.append(
            f"{path}: skipped {plural(bad.count, 'bad line')} ({'; '.join(bad.examples)})"
        )
    if not qs.questions:
        raise InputError(f"{path}: no usable question ({plural(bad.count, 'bad line')})")
    return qs


def _split_file(run_dir: Path, split: str) -> Path:
    """The split in the run's first output format (``val.jsonl``; ``provenance`` sidecars aside)."""
    return run_dir / f"{split}.jsonl"


def _provenance(row: Mapping[str, Any], sidecar: Iterator[str] | None) -> dict[str, Any]:
    """A split row's provenance: in the row, or the sidecar's line for it (OpenAI format)."""
    own = row.get("provenance")
    if isinstance(own, dict):
        return own
    if sidecar is not None:
        line = next(sidecar, None)
        if line:
            try:
                data = json.loads(line)
            except ValueError:
                return {}
            return data if isinstance(data, dict) else {}
    return {}


def load_run_split(
    run_dir: Path,
    metadata: Mapping[str, Any],
    config: DistillConfig,
    *,
    split: str = "val",
    slices: str | Path | None = None,
    group_by: str | None = None,
) -> QuestionSet:
    """The questions of a run's split, with the teacher's answers and their source chunks.

    ``slices`` is the run's input when it moved (its hash must still match).

    Raises:
        InputError: the split file is missing or holds no usable question.
    """
    path = _split_file(run_dir, split)
    if not path.is_file():
        raise InputError(
            f"{path}: not found; --split {split} needs the run's {path.name} (is {run_dir} a "
            "finished run?)"
        )
    fmap = _field_map(path)
    bad = _BadLines()
    sidecar_path = run_dir / provenance_file(path.name)
    system = config.system_prompt
    questions: list[Question] = []
    with _sidecar_lines(sidecar_path) as sidecar:
        for record, row in _records(path, fmap, bad):
            prov = _provenance(row, sidecar)
            chunk = prov.get("chunk_index")
            slice_id = prov.get("slice_id") or record.slice_id
            questions.append(
                Question(
                    id=str(prov.get("sample_id") or record.key),
                    instruction=record.instruction,
                    input=record.input,
                    reference=record.output,
                    system=record.system or system,
                    slice_id=str(slice_id),
                    chunk_index=chunk if isinstance(chunk, int) else None,
                    group=_group(record, group_by, str(slice_id)),
                    line=record.line,
                    reference_model=str(prov.get("teacher_model") or ""),
                )
            )
    source = dict(metadata.get("source") or {})
    described = {"kind": "run", "path": str(path.resolve()), "split": split, "source": source}
    qs = _finish(QuestionSet(questions, described, bad_lines=bad.count), path, bad)
    split_by = (metadata.get("config") or {}).get("split_by", "sample")
    described["split_by"] = split_by
    if split_by != "slice" and source.get("kind", "slices") == "slices":
        qs.warnings.append(
            f"the run split train/val by sample (split_by {split_by!r}): {split} questions share "
            "slices with the training data, so this measures recall of the slices more than "
            "generalisation; rerun the distillation with --split-by slice for a held-out set"
        )
    _attach_sources(qs, source, config, slices=slices, group_by=group_by)
    return qs


@contextlib.contextmanager
def _sidecar_lines(path: Path) -> Iterator[Iterator[str] | None]:
    """The lines of a provenance sidecar, or None when the split has none."""
    if not path.is_file():
        yield None
        return
    with open(path, encoding="utf-8") as f:
        yield iter(f)


def _input_file(
    source: Mapping[str, Any], given: str | Path | None, warnings: list[str]
) -> Path | None:
    """The run's input file, when it is still there and unchanged; else None (warned)."""
    recorded = source.get("input")
    if not recorded and given is None:
        return None
    path = Path(given) if given is not None else Path(str(recorded))
    hint = "" if given is not None else " (give it with --slices FILE if it moved)"
    if not path.is_file():
        warnings.append(
            f"{path}: the run's input is not there{hint}; questions are judged without their "
            "source chunk"
        )
        return None
    expected = source.get("input_blake2b")
    if expected and file_digest(path) != expected:
        warnings.append(
            f"{path}: not the file the run read (its hash differs); questions are judged "
            "without their source chunk"
        )
        return None
    return path


def _attach_sources(
    qs: QuestionSet,
    source: Mapping[str, Any],
    config: DistillConfig,
    *,
    slices: str | Path | None,
    group_by: str | None,
) -> None:
    """Give each question its source chunk (and group) from the run's input, when possible."""
    kind = source.get("kind", "slices")
    if kind not in ("slices", "distill"):
        return  # topics and augment runs have no source document
    path = _input_file(source, slices, qs.warnings)
    if path is None:
        return
    if kind == "slices":
        texts, groups = _slice_chunks(path, qs.questions, config, group_by)
    else:
        texts, groups = _record_sources(path, source, qs.questions), {}
    for i, q in enumerate(qs.questions):
        text = texts.get((q.slice_id, q.chunk_index)) or texts.get((q.slice_id, None), "")
        group = groups.get(q.slice_id) if q.group == q.slice_id else None
        qs.questions[i] = replace(q, source_text=text, group=group or q.group)
    missing = sum(1 for q in qs.questions if not q.source_text)
    if missing and kind == "slices":
        qs.warnings.append(
            f"{path}: no source chunk found for {plural(missing, 'question')} (slice or chunk "
            "not in the input as the run chunked it)"
        )


def _slice_chunks(
    path: Path, questions: list[Question], config: DistillConfig, group_by: str | None
) -> tuple[dict[tuple[str, int | None], str], dict[str, str]]:
    """Chunk texts of the slices the questions come from, and their ``group_by`` values."""
    wanted: dict[str, set[int | None]] = {}
    for q in questions:
        wanted.setdefault(q.slice_id, set()).add(q.chunk_index)
    texts: dict[tuple[str, int | None], str] = {}
    groups: dict[str, str] = {}

    def ignore(bad: BadLine) -> None:
        pass  # the run reported its bad lines; the good ones are read the same way

    for slice_ in iter_slices(path, on_bad_line=ignore):
        if slice_.id not in wanted:
            continue
        chunks = chunk_slice(
            slice_, samples_per_slice=config.samples_per_slice, chunk_chars=config.chunk_chars
        )
        for chunk in chunks:
            texts[(slice_.id, chunk.index)] = chunk.text
        if len(chunks) == 1:
            texts[(slice_.id, None)] = chunks[0].text
        value = slice_.metadata.get(group_by) if group_by else None
        if value is not None:
            groups[slice_.id] = str(value)
    return texts, groups


def _record_sources(
    path: Path, source: Mapping[str, Any], questions: list[Question]
) -> dict[tuple[str, int | None], str]:
    """Source texts of a distill run's records, by slice id (``rec:<id>`` or its own)."""
    columns = source.get("columns") or {}
    known = FieldMap.__dataclass_fields__
    fmap = FieldMap(**{k: v for k, v in columns.items() if k in known})
    wanted = {q.slice_id for q in questions}
    out: dict[tuple[str, int | None], str] = {}
    for record, _ in _records(path, fmap, _BadLines()):
        if record.slice_id in wanted:
            text = _source_of(record, None)
            if text:
                out[(record.slice_id, None)] = text
    return out
