"""Held-out questions: a run's split with its source chunks cut again from the run's input, or
any instruction set; what is said when the source cannot be recovered."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from sft_distill.config.merging import build_config
from sft_distill.errors import InputError
from sft_distill.evaluation.questions import (
    load_question_file,
    load_run_split,
    read_run_metadata,
)
from sft_distill.evaluation.targets import eval_config
from sft_distill.sources.fields import FieldMap
from tests.evaluation.conftest import make_run
from tests.helpers import read_jsonl, write_jsonl


def load(run: Path, **kw):
    metadata = read_run_metadata(run)
    return load_run_split(run, metadata, eval_config(metadata, None), **kw)


def raw_sources(run: Path) -> dict[str, str]:
    """What each kept sample was judged against in the run: its chunk (found via the raw file)."""
    meta = read_run_metadata(run)
    slices = {r["id"]: r["content"] for r in read_jsonl(Path(meta["source"]["input"]))}
    return {r["id"]: slices[r["slice_id"]] for r in read_jsonl(run / "generated_raw.jsonl")}


@pytest.mark.slow
def test_val_questions_get_their_chunk_and_the_teachers_answer(finished_run):
    qs = load(finished_run)
    val = read_jsonl(finished_run / "val.jsonl")
    assert [q.id for q in qs.questions] == [r["id"] for r in val]
    assert qs.warnings == [] and qs.with_source == len(val) == qs.with_reference
    sources = raw_sources(finished_run)
    for q, row in zip(qs.questions, val, strict=True):
        assert q.reference == row["conversations"][1]["value"]
        assert q.slice_id == row["slice_id"] and q.chunk_index == 0
        # one chunk per slice here: the chunk is the whole slice, stripped
        assert q.source_text == sources[q.id].strip()
        # the simulated teacher quotes its chunk (after a lead-in naming the article)
        clauses = [c for c in re.split(r"[，。；]", q.reference) if len(c) >= 8]
        assert clauses and any(c in q.source_text for c in clauses)


@pytest.mark.slow
def test_a_moved_input_is_found_with_slices_and_a_changed_one_is_refused(finished_run, tmp_path):
    meta = read_run_metadata(finished_run)
    original = Path(meta["source"]["input"])
    moved = tmp_path / "elsewhere.jsonl"
    shutil.copy(original, moved)
    qs = load(finished_run, slices=moved)
    assert qs.with_source == len(qs.questions) and qs.warnings == []

    changed = tmp_path / "changed.jsonl"
    changed.write_text(original.read_text(encoding="utf-8") + "\n", encoding="utf-8")
    qs = load(finished_run, slices=changed)
    assert qs.with_source == 0
    assert qs.warnings == [
        f"{changed}: not the file the run read (its hash differs); questions are judged without "
        "their source chunk"
    ]

    run = tmp_path / "run"
    shutil.copytree(finished_run, run, ignore=shutil.ignore_patterns("eval"))
    meta["source"]["input"] = str(tmp_path / "gone.jsonl")
    (run / "metadata.json").write_text(json.dumps(meta), encoding="utf-8")
    qs = load(run)
    assert qs.with_source == 0 and "give it with --slices FILE if it moved" in qs.warnings[0]


@pytest.mark.slow
def test_openai_rows_take_their_provenance_from_the_sidecar(tmp_path):
    run = make_run(tmp_path, "--split-by", "slice", "--format", "openai,alpaca")
    qs = load(run)
    alpaca = read_jsonl(run / "val.alpaca.jsonl")
    assert [q.id for q in qs.questions] == [r["id"] for r in alpaca]
    assert all(q.source_text and q.chunk_index == 0 for q in qs.questions)
    assert [q.instruction for q in qs.questions] == [
        r["instruction"] + ("\n" + r["input"] if r["input"] else "") for r in alpaca
    ]


def test_a_missing_split_is_an_input_error(tmp_path):
    (tmp_path / "metadata.json").write_text(json.dumps({"config": {}}), encoding="utf-8")
    metadata = read_run_metadata(tmp_path)
    with pytest.raises(InputError, match=r"val\.jsonl: not found; --split val needs"):
        load_run_split(tmp_path, metadata, build_config({}))


def test_a_questions_file_maps_columns_like_distill(tmp_path):
    path = write_jsonl(
        tmp_path / "q.jsonl",
        [
            {
                "query": "Q1?",
                "context": "ctx",
                "response": "A1.",
                "passage": "Doc one.",
                "area": "x",
            },
            {"query": "Q2?", "response": "A2.", "passage": "Doc two.", "area": "y"},
            {"query": "", "response": "no question"},
        ],
    )
    qs = load_question_file(path, group_by="area")
    assert [
        (q.instruction, q.input, q.reference, q.source_text, q.group) for q in qs.questions
    ] == [
        ("Q1?", "ctx", "A1.", "Doc one.", "x"),
        ("Q2?", "", "A2.", "Doc two.", "y"),
    ]
    assert qs.bad_lines == 1 and "skipped 1 bad line" in qs.warnings[0]
    qs = load_question_file(path, columns=FieldMap(output="none"), source_col="area")
    assert qs.questions[0].reference is None and qs.questions[0].source_text == "x"
    with pytest.raises(InputError, match="--source-col 'nope' not found"):
        load_question_file(path, source_col="nope")
