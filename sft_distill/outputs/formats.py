"""Output rows per fine-tuning format, split file names, LLaMA-Factory ``dataset_info.json``.

Formats (exact shapes in ``../shared/formats.md``):

- ``sharegpt``: ``to_sharegpt`` (``conversations`` of ``from``/``value``) plus
  ``provenance``. Loads in LLaMA-Factory (``formatting: sharegpt``) and axolotl
  (``chat_template`` with ``field_messages: conversations`` and
  ``message_property_mappings: {role: from, content: value}``).
- ``alpaca``: ``instruction``, ``input``, ``output``, ``system`` (only when a system prompt is
  set), ``id`` and ``provenance``. LLaMA-Factory's default format; axolotl ``type: alpaca``
  (``alpaca_w_system`` when a system prompt is set: ``alpaca`` ignores ``system``).
  No ``history``: every sample is one turn. The chat formats' user turn is instruction and
  input joined by one newline, as LLaMA-Factory joins them here.
- ``openai``: ``{"messages": [system?, user, assistant]}`` and nothing else, so rows pass OpenAI's
  cookbook validator (allowed message keys: role, content, name, function_call, weight) and TRL.
  Provenance goes to a sidecar ``<split file>.provenance.jsonl`` whose line *i* describes line *i*.

Extra top-level columns (``id``, ``provenance``, ``avg_score``…) are ignored by LLaMA-Factory
(it keeps only the registered columns) and by axolotl's ``chat_template``.

Reasoning (``include_reasoning``): ShareGPT and Alpaca get ``<think>\\n…\\n</think>\\n\\n``
before the answer, as LLaMA-Factory documents and Qwen3's template renders it. OpenAI rows get a
``reasoning_content`` field on the assistant message, which axolotl's qwen3 template and Qwen3's
own chat template (TRL) read; OpenAI's validator flags that key, so such a file is for TRL/axolotl,
not for upload to OpenAI. LLaMA-Factory's converters copy only role and content, so they would
drop ``reasoning_content``: its ``dataset_info.json`` entries for the openai format point at a
companion file (``train.openai.lf.jsonl``, see ``llamafactory_file``) with the same messages and
the reasoning as a ``<think>`` block in the assistant content. Without ``include_reasoning`` no
reasoning is written anywhere.

File names: the first (primary) format is written to ``train.jsonl``/``val.jsonl`` (so the default,
ShareGPT only, is unchanged); every further format to ``train.<fmt>.jsonl``/``val.<fmt>.jsonl``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError

if TYPE_CHECKING:
    from ..models import ScoredSample

__all__ = [
    "DATASET_INFO_FILE",
    "DEFAULT_FORMAT",
    "FORMATS",
    "SPLITS",
    "all_split_file_names",
    "dataset_info",
    "llamafactory_file",
    "llamafactory_files",
    "llamafactory_row",
    "parse_formats",
    "provenance",
    "provenance_file",
    "row_for",
    "split_files",
    "user_text",
    "with_reasoning",
]

FORMATS: tuple[str, ...] = ("sharegpt", "alpaca", "openai")
DEFAULT_FORMAT = "sharegpt"
SPLITS: tuple[str, ...] = ("train", "val")
DATASET_INFO_FILE = "dataset_info.json"

# Formats whose rows may not carry provenance (OpenAI's validator checks every message key).
SIDECAR_FORMATS = frozenset({"openai"})
# Formats whose reasoning LLaMA-Factory would drop (it reads only role and content): with
# include_reasoning they get a companion file for it, the reasoning inside the content.
LF_COMPANION_FORMATS = frozenset({"openai"})

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def parse_formats(spec: str | Sequence[str] | None) -> list[str]:
    """``"sharegpt,alpaca"`` (or a list) -> ``["sharegpt", "alpaca"]``; order kept, repeats dropped.

    Raises:
        ConfigError: an unknown or empty format name.
    """
    if spec is None:
        return [DEFAULT_FORMAT]
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    out: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise ConfigError(f"output format must be a string, got {type(item).__name__}")
        name = item.strip().lower()
        if not name:
            continue
        if name not in FORMATS:
            raise ConfigError(
                f"unknown output format {item.strip()!r}; known: {', '.join(FORMATS)}"
            )
        if name not in out:
            out.append(name)
    if not out:
        raise ConfigError(f"no output format given; known: {', '.join(FORMATS)}")
    return out


def user_text(sample: ScoredSample) -> str:
    """The user turn: instruction, then a newline and the input when there is one."""
    return join_prompt(sample.instruction, sample.input)


def with_reasoning(answer: str, reasoning: str | None) -> str:
    """``<think>\\nreasoning\\n</think>\\n\\nanswer``; the answer alone without reasoning."""
    if not reasoning or not reasoning.strip():
        return answer
    return f"<think>\n{reasoning.strip()}\n</think>\n\n{answer}"


def provenance(sample: ScoredSample, *, evidence: bool = False) -> dict[str, Any]:
    """Where a kept sample came from (slice, chunk, teacher, prompt, the slice's source and
    licence) and how each evaluator scored it (ok judgements only).

    ``evidence`` adds the teacher's evidence quotes (``include_evidence``).
    """
    scores: dict[str, dict[str, Any]] = {}
    for j in sample.judgements:
        if not j.ok:
            continue
        scores[j.evaluator] = {
            "model": j.model,
            "weighted_mean": j.weighted_mean,
            "dimensions": dict(j.scores),
        }
    out = {
        "sample_id": sample.id,
        "slice_id": sample.slice_id,
        "chunk_index": sample.chunk_index,
        "source_title": sample.source_title,
        "heading_path": list(sample.heading_path),
        "teacher_model": sample.teacher_model,
        "prompt_version": sample.prompt_version,
        "source": sample.source,
        "license": sample.license,
        "avg_score": sample.avg_score,
        "votes": sample.votes,
        "scores": scores,
    }
    if evidence:
        out["evidence"] = list(sample.evidence)
    return out


@dataclass(frozen=True)
class _RowOptions:
    """What a row carries beyond the sample: the reasoning, the evidence quotes."""

    reasoning: bool = False
    evidence: bool = False


def _sharegpt(sample: ScoredSample, system: str | None, opts: _RowOptions) -> dict[str, Any]:
    row = to_sharegpt(sample, system=system)
    if opts.reasoning:
        row["conversations"][1]["value"] = with_reasoning(sample.output, sample.reasoning)
    row["provenance"] = provenance(sample, evidence=opts.evidence)
    return row


def _alpaca(sample: ScoredSample, system: str | None, opts: _RowOptions) -> dict[str, Any]:
    output = with_reasoning(sample.output, sample.reasoning) if opts.reasoning else sample.output
    row: dict[str, Any] = {
        "instruction": sample.instruction,
        # A blank input is left out of LLaMA-Factory's prompt only when it is empty.
        "input": sample.input if sample.input.strip() else "",
        "output": output,
    }
    if system:
        row["system"] = system
    row["id"] = sample.id
    row["provenance"] = provenance(sample, evidence=opts.evidence)
    return row


def _openai(sample: ScoredSample, system: str | None, opts: _RowOptions) -> dict[str, Any]:
    messages: list[dict[str, Any]] = []
    if system:
        messages.append({"role": "system", "content": system})
    messages.append({"role": "user", "content": user_text(sample)})
    assistant: dict[str, Any] = {"role": "assistant", "content": sample.output}
    if opts.reasoning and sample.reasoning and sample.reasoning.strip():
        assistant["reasoning_content"] = sample.reasoning.strip()
    messages.append(assistant)
    return {"messages": messages}


def _openai_lf(sample: ScoredSample, system: str | None, opts: _RowOptions) -> dict[str, Any]:
    row = _openai(sample, system, _RowOptions(reasoning=False))
    if opts.reasoning:
        row["messages"][-1]["content"] = with_reasoning(sample.output, sample.reasoning)
    return row


_WRITERS = {"sharegpt": _sharegpt, "alpaca": _alpaca, "openai": _openai}
_LF_WRITERS = {"openai": _openai_lf}


def row_for(
    sample: ScoredSample,
    fmt: str,
    *,
    system: str | None,
    include_reasoning: bool,
    include_evidence: bool = False,
) -> dict[str, Any]:
    """One output row of ``sample`` in format ``fmt`` (see the module docstring for the shapes).

    Raises:
        ConfigError: ``fmt`` is not a known format.
    """
    writer = _WRITERS.get(fmt)
    if writer is None:
        raise ConfigError(f"unknown output format {fmt!r}; known: {', '.join(FORMATS)}")
    return writer(sample, system or None, _RowOptions(include_reasoning, include_evidence))


def llamafactory_row(
    sample: ScoredSample, fmt: str, *, system: str | None, include_reasoning: bool
) -> dict[str, Any]:
    """A row of ``fmt``'s LLaMA-Factory companion file: the reasoning as a ``<think>`` block."""
    return _LF_WRITERS[fmt](sample, system or None, _RowOptions(include_reasoning))


def llamafactory_file(filename: str) -> str:
    """The LLaMA-Factory companion of a split file: ``x.openai.jsonl`` -> ``x.openai.lf.jsonl``."""
    stem = filename[: -len(".jsonl")] if filename.endswith(".jsonl") else filename
    return f"{stem}.lf.jsonl"


def llamafactory_files(
    files: Mapping[str, Mapping[str, str]], *, include_reasoning: bool
) -> dict[str, dict[str, str]]:
    """Companion file per format and split, for the formats whose reasoning LF would drop."""
    if not include_reasoning:
        return {}
    return {
        fmt: {split: llamafactory_file(name) for split, name in by_split.items()}
        for fmt, by_split in files.items()
        if fmt in LF_COMPANION_FORMATS
    }


def split_files(formats: Sequence[str]) -> dict[str, dict[str, str]]:
    """File name per format and split: the first format in ``train.jsonl``, others suffixed."""
    out: dict[str, dict[str, str]] = {}
    for i, fmt in enumerate(formats):
        suffix = "" if i == 0 else f".{fmt}"
        out[fmt] = {split: f"{split}{suffix}.jsonl" for split in SPLITS}
    return out


def provenance_file(filename: str) -> str:
    """The sidecar of a split file: ``train.openai.jsonl`` -> ``train.openai.provenance.jsonl``."""
    stem = filename[: -len(".jsonl")] if filename.endswith(".jsonl") else filename
    return f"{stem}.provenance.jsonl"


def all_split_file_names() -> set[str]:
    """Every split and sidecar name any format set can produce (for removing stale files)."""
    names: set[str] = set()
    for suffix in ("", *(f".{f}" for f in FORMATS)):
        for split in SPLITS:
            name = f"{split}{suffix}.jsonl"
            names.update({name, provenance_file(name), llamafactory_file(name)})
    return names


def _entry(fmt: str, file_name: str, system: bool) -> dict[str, Any]:
    # LLaMA-Factory sets every column absent from "columns" to None, so list them all; and a
    # registered column missing from the file is a KeyError there, so "system" only when written.
    if fmt == "alpaca":
        columns = {"prompt": "instruction", "query": "input", "response": "output"}
        if system:
            columns["system"] = "system"
        return {"file_name": file_name, "columns": columns}
    if fmt == "sharegpt":
        columns = {"messages": "conversations"}
        if system:
            columns["system"] = "system"
        return {"file_name": file_name, "formatting": "sharegpt", "columns": columns}
    if fmt == "openai":
        # The system prompt is the first message; LLaMA-Factory takes it via system_tag.
        return {
            "file_name": file_name,
            "formatting": "sharegpt",
            "columns": {"messages": "messages"},
            "tags": {
                "role_tag": "role",
                "content_tag": "content",
                "user_tag": "user",
                "assistant_tag": "assistant",
                "system_tag": "system",
            },
        }
    raise ConfigError(f"unknown output format {fmt!r}; known: {', '.join(FORMATS)}")


def dataset_info(
    name: str,
    files: Mapping[str, Mapping[str, str]],
    *,
    system: bool = False,
    rows: Mapping[str, int] | None = None,
    lf_files: Mapping[str, Mapping[str, str]] | None = None,
) -> dict[str, Any]:
    """LLaMA-Factory ``dataset_info.json`` entries for the written splits.

    The first format is registered as ``<name>_train`` / ``<name>_val``; with several formats
    each one is also ``<name>_<fmt>_train`` / ``<name>_<fmt>_val``. A split with 0 rows
    (``rows``) is left out, because an empty file cannot be loaded. ``system`` says whether rows
    carry a system prompt. A format in ``lf_files`` (``llamafactory_files``) is registered with
    its companion file, which keeps the reasoning where LLaMA-Factory reads it.

    Raises:
        ConfigError: a bad dataset name or an unknown format.
    """
    if not _NAME_RE.match(name):
        raise ConfigError(
            f"dataset name {name!r} must start with a letter or digit and use only "
            "letters, digits, '_', '.', '-'"
        )
    info: dict[str, Any] = {}
    several = len(files) > 1
    for i, (fmt, by_split) in enumerate(files.items()):
        for split, file_name in by_split.items():
            if rows is not None and not rows.get(split, 0):
                continue
            companion = (lf_files or {}).get(fmt, {}).get(split)
            entry = _entry(fmt, companion or file_name, system)
            if i == 0:
                info[f"{name}_{split}"] = entry
            if several:
                info[f"{name}_{fmt}_{split}"] = dict(entry)
    return info


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
