"""Existing instruction sets: field mapping, input formats, bad lines, and the distill mode."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import pytest

from sft_distill import DatasetDistillationPipeline
from sft_distill.cli.distill import add_distill_arguments, distill_source_from_args
from sft_distill.errors import InputError
from sft_distill.simulator.tasks import iset_answer_reply
from sft_distill.sources.distill import DistillSource
from sft_distill.sources.fields import (
    INPUT_ALIASES,
    INSTRUCTION_ALIASES,
    OUTPUT_ALIASES,
    REASONING_ALIASES,
    FieldMap,
    Record,
    detect_field_map,
    iter_records,
)
from sft_distill.sources.reader import BadLine
from sft_distill.sources.records import input_format
from tests.helpers import (
    SHARED_DATA,
    TEST_DATA,
    needs_shared,
    read_jsonl,
    read_metadata,
    sim_config,
    write_jsonl,
)

ALPACA = TEST_DATA / "iset_alpaca.jsonl"


def records(path: Path, fmap: FieldMap | None = None, **kw: Any) -> list[Record]:
    bad: list[BadLine] = kw.pop("bad", [])
    src = DistillSource(path, columns=fmap)
    return list(iter_records(path, src.field_map, on_bad_line=bad.append, **kw))


# --- field mapping ---------------------------------------------------------------------------

ROLE_ALIASES = [
    *(("instruction", a) for a in INSTRUCTION_ALIASES),
    *(("input", a) for a in INPUT_ALIASES),
    *(("output", a) for a in OUTPUT_ALIASES),
    *(("reasoning", a) for a in REASONING_ALIASES),
]


@pytest.mark.parametrize(("role", "alias"), ROLE_ALIASES, ids=[f"{r}-{a}" for r, a in ROLE_ALIASES])
def test_every_alias_is_detected_alone(tmp_path, role, alias):
    row = {"instruction": "What is a spoke?", "id": "x", "note": "n"}
    if role != "instruction":
        row[alias] = f"value of {alias}"
    else:
        row = {alias: "What is a spoke?", "id": "x", "note": "n"}
    fmap = detect_field_map([row])
    assert getattr(fmap, role) == alias
    others = {"instruction", "input", "output", "reasoning"} - {role, "instruction"}
    assert all(getattr(fmap, r) is None for r in others)
    # and the value reaches the record when read from a file
    (rec,) = records(write_jsonl(tmp_path / "one.jsonl", [row]))
    got = {"instruction": rec.instruction, "input": rec.input, "output": rec.output}
    got["reasoning"] = rec.reasoning
    assert got[role] == row[alias]


def test_aliases_are_case_insensitive_and_take_the_first_in_order():
    fmap = detect_field_map([{"Question": "q", "Answer": "a", "response": "r", "Context": "c"}])
    assert fmap == FieldMap(instruction="Question", input="Context", output="response")


def test_a_column_fills_one_role_only():
    # "input" is taken by the instruction override, so it is not the input too
    fmap = detect_field_map([{"input": "q", "output": "a"}], FieldMap(instruction="input"))
    assert fmap == FieldMap(instruction="input", output="output")


def test_overrides_win_and_none_turns_a_role_off(tmp_path):
    row = {
        "title": "Why oil a chain?",
        "instruction": "ignored",
        "source": "alpaca",  # an origin label, not an input
        "gold": "To stop wear and rust.",
        "why": "Friction wears metal.",
    }
    over = FieldMap(instruction="title", input="none", output="gold", reasoning="why")
    fmap = detect_field_map([row], over)
    assert fmap == FieldMap(instruction="title", input=None, output="gold", reasoning="why")
    (rec,) = records(write_jsonl(tmp_path / "o.jsonl", [row]), over)
    assert (rec.instruction, rec.input, rec.output, rec.reasoning) == (
        "Why oil a chain?",
        "",
        "To stop wear and rust.",
        "Friction wears metal.",
    )
    assert rec.metadata == {"instruction": "ignored", "source": "alpaca"}


def test_no_instruction_column_names_the_columns_found(tmp_path):
    path = write_jsonl(tmp_path / "data.jsonl", [{"a": 1, "b": "x", "c": "y"}])
    with pytest.raises(InputError) as err:
        DistillSource(path).total()
    assert (
        str(err.value)
        == f"{path}: no instruction column found; columns: a, b, c; use --instruction-col"
    )


def test_an_override_naming_a_missing_column_lists_the_columns(tmp_path):
    path = write_jsonl(tmp_path / "data.jsonl", [{"prompt": "p", "answer": "a"}])
    with pytest.raises(
        InputError, match=r"--output-col 'gold' not found .* columns: prompt, answer"
    ):
        DistillSource(path, columns=FieldMap(output="gold")).describe()


def test_skip_generation_needs_an_answer_column(tmp_path):
    path = write_jsonl(tmp_path / "data.jsonl", [{"prompt": "p", "note": "n"}])
    DistillSource(path).total()  # fine: the teacher writes the answers
    with pytest.raises(InputError, match=r"no answer column found .*--output-col"):
        DistillSource(path, skip_generation=True).total()


@needs_shared("alpaca_data_zh.jsonl")
def test_a_real_alpaca_file_maps_its_columns():
    path = SHARED_DATA / "alpaca_data_zh.jsonl"
    fmap = DistillSource(path).field_map
    assert fmap == FieldMap(instruction="instruction", input="input", output="output")


# --- input formats ---------------------------------------------------------------------------


def test_jsonl_records_keep_ids_inputs_and_reasoning():
    recs = records(ALPACA)
    assert [r.key for r in recs][:3] == ["tea-1", "tea-2", "3"]
    assert recs[1].reasoning and recs[1].input.startswith("茶叶应放在")
    assert recs[3].key.startswith("r-") and not recs[3].has_id
    assert all(r.slice_id == "rec:" + r.key for r in recs)
    assert input_format(ALPACA) == "jsonl"


def test_json_array_reports_elements_by_line():
    path = TEST_DATA / "iset_array.json"
    bad: list[BadLine] = []
    recs = records(path, bad=bad)
    assert input_format(path) == "json"
    assert [r.line for r in recs] == [2, 5]
    assert [str(b) for b in bad] == [f"{path}:4: expected a JSON object, got string"]
    assert DistillSource(path).total() == 3


def test_invalid_json_array_stops_with_its_line(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('[\n{"prompt": "a", "completion": "b"},\n{"prompt": oops}\n]', "utf-8")
    with pytest.raises(InputError, match=r"broken.json:3: invalid JSON"):
        DistillSource(path).total()


def test_sharegpt_first_exchange_system_and_think_block():
    path = TEST_DATA / "iset_sharegpt.jsonl"
    fmap = DistillSource(path).field_map
    assert fmap.style == "sharegpt"
    recs = records(path)
    assert recs[0].instruction == "How do I fix a flat tyre?"
    assert recs[0].output.startswith("Remove the wheel")  # the later turns are ignored
    assert recs[0].system == "You are a cycling coach."
    assert (recs[1].system, recs[1].reasoning, recs[1].output) == (
        "你是图书管理员。",
        "看开放时间表。",
        "晚上九点关门。",
    )
    assert recs[2].output is None  # no answer yet: fine unless answers are required
    bad: list[BadLine] = []
    recs = list(iter_records(path, fmap, output_required=True, on_bad_line=bad.append))
    assert len(recs) == 2
    assert [b.kind for b in bad] == ["missing_content"]
    assert "no assistant turn" in bad[0].reason


def test_openai_messages_with_content_parts_and_reasoning():
    path = TEST_DATA / "iset_openai.jsonl"
    assert DistillSource(path).field_map.style == "openai"
    first, second = records(path)
    assert first.instruction == "Why does green tea turn bitter?"
    assert first.reasoning == "Bitterness comes from tannins."
    assert first.system == "Be brief."
    assert second.output == "可以，但要密封，避免串味。"


def test_parquet(tmp_path):
    pa = pytest.importorskip("pyarrow", reason="pyarrow is not installed")
    import pyarrow.parquet as pq

    rows = read_jsonl(ALPACA)
    for r in rows:
        r["id"] = str(r.get("id", ""))
        r.setdefault("reasoning", None)
    path = tmp_path / "data.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    src = DistillSource(path)
    assert input_format(path) == "parquet" and src.total() == len(rows)
    recs = records(path)
    assert [r.instruction for r in recs] == [r["instruction"] for r in rows]
    assert recs[1].reasoning == rows[1]["reasoning"]


def test_parquet_without_pyarrow_says_how_to_install(tmp_path, monkeypatch):
    path = tmp_path / "data.parquet"
    path.write_bytes(b"PAR1 not really")
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(InputError, match="reading Parquet needs pyarrow: pip install pyarrow"):
        DistillSource(path).total()


# --- bad lines -------------------------------------------------------------------------------


def test_bad_lines_are_reported_with_file_and_line_and_skipped():
    path = TEST_DATA / "iset_bad.jsonl"
    bad: list[BadLine] = []
    recs = records(path, bad=bad)
    got = [(b.line, b.kind, b.skipped) for b in bad]
    assert got == [
        (2, "invalid_json", True),
        (3, "not_object", True),
        (4, "missing_content", True),
        (5, "non_string_content", True),
        (6, "empty_content", True),
        (7, "duplicate_content", True),
        (9, "duplicate_id", True),
        (10, "lone_surrogate", False),
    ]
    assert str(bad[2]) == f"{path}:4: missing 'instruction'"
    assert str(bad[5]) == f"{path}:7: same instruction and input as line 1"
    assert [r.line for r in recs] == [1, 8, 10, 12]
    assert "\ufffd" in recs[2].instruction


def test_strict_stops_at_the_first_bad_line():
    path = TEST_DATA / "iset_bad.jsonl"
    fmap = DistillSource(path).field_map
    with pytest.raises(InputError, match=r"iset_bad.jsonl:2: invalid JSON"):
        list(iter_records(path, fmap, strict=True))


def test_same_instruction_with_other_answers_is_kept_when_answers_are_judged(tmp_path):
    rows = [{"prompt": "Q", "answer": "A1"}, {"prompt": "Q", "answer": "A2"}]
    path = write_jsonl(tmp_path / "d.jsonl", rows)
    fmap = DistillSource(path).field_map
    assert len(list(iter_records(path, fmap, key_on_output=True))) == 2
    assert len(list(iter_records(path, fmap, on_bad_line=lambda b: None))) == 1


# --- the distill mode end to end -------------------------------------------------------------


async def run(sim, out: Path, source: DistillSource, **overrides: Any):
    cfg = sim_config(sim, output_dir=str(out), **overrides)
    return await DatasetDistillationPipeline(cfg, show_progress=False).run(source=source)


async def test_distill_asks_the_teacher_once_per_record_and_keeps_the_reference(sim, tmp_path):
    n = len(read_jsonl(ALPACA))
    result = await run(sim, tmp_path / "out", DistillSource(ALPACA))
    assert sim.stats["by_kind"] == {"generation": n, "evaluation": 2 * n, "other": 0}
    raw = read_jsonl(result.output_dir / "generated_raw.jsonl")
    assert len(raw) == n
    refs = {r["instruction"]: r["output"] for r in read_jsonl(ALPACA)}
    for row in raw:
        assert row["source_kind"] == "distill"
        assert row["reference_output"] == refs[row["instruction"]]
        assert row["output"] != row["reference_output"]
        assert row["teacher_model"] == "teacher-sim" and row["prompt_version"] == "iset-v1"
        assert row["annotations"]["answer_source"] == "teacher"
        assert len(row["judgements"]) == 2
        assert row["slice_id"].startswith("rec:")
    tea2 = next(r for r in raw if r["slice_id"] == "rec:tea-2")
    assert tea2["input"].startswith("茶叶应放在")
    fields = {"instruction": tea2["instruction"], "input": tea2["input"]}
    assert tea2["output"] == iset_answer_reply("teacher-sim", fields)
    c = result.counts
    assert c.slices == n and c.samples_generated == c.samples_evaluated == n
    written = read_jsonl(result.output_dir / "train.jsonl") + read_jsonl(
        result.output_dir / "val.jsonl"
    )
    assert len(written) == c.train + c.val == c.after_dedup > 0
    meta = read_metadata(result.output_dir)
    assert meta["source"]["kind"] == "distill"
    assert meta["source"]["columns"]["instruction"] == "instruction"

    # a rerun replays everything from the cache
    sim.reset_stats()
    again = await run(sim, tmp_path / "out", DistillSource(ALPACA))
    assert sim.stats["chat_requests"] == 0
    assert (again.output_dir / "train.jsonl").read_bytes() == (
        result.output_dir / "train.jsonl"
    ).read_bytes()


async def test_skip_generation_only_judges_the_existing_answers(sim, tmp_path):
    rows = read_jsonl(ALPACA)
    result = await run(sim, tmp_path / "out", DistillSource(ALPACA, skip_generation=True))
    assert sim.stats["by_kind"] == {"generation": 0, "evaluation": 2 * len(rows), "other": 0}
    assert all(kind == "evaluation" for kind, _model, _status in sim.requests_log)
    raw = read_jsonl(result.output_dir / "generated_raw.jsonl")
    by_instruction = {r["instruction"]: r for r in raw}
    for row in rows:
        got = by_instruction[row["instruction"]]
        assert got["output"] == got["reference_output"] == row["output"]
        assert got["reasoning"] == row.get("reasoning")
        assert got["teacher_model"] == "" and got["annotations"]["answer_source"] == "reference"
    meta = read_metadata(result.output_dir)
    assert meta["source"]["skip_generation"] is True
    assert meta["usage"]["generator"]["calls"] == 0


async def test_distill_counts_bad_lines_and_runs_the_good_ones(sim, tmp_path):
    result = await run(sim, tmp_path / "out", DistillSource(TEST_DATA / "iset_bad.jsonl"))
    c = result.counts
    assert c.samples_generated == 4
    assert c.bad_lines == 7 and c.bad_line_reasons["lone_surrogate"] == 1
    meta = read_metadata(result.output_dir)
    assert any(m.endswith("iset_bad.jsonl:4: missing 'instruction'") for m in meta["bad_lines"])


async def test_teacher_failure_is_recorded_and_retried_on_rerun(sim, tmp_path):
    path = write_jsonl(tmp_path / "one.jsonl", [{"prompt": "Why oil a chain?"}])
    sim.queue(400)  # not retryable: fails at once
    result = await run(sim, tmp_path / "out", DistillSource(path))
    failures = read_jsonl(result.output_dir / "failures.jsonl")
    assert [f["kind"] for f in failures] == ["distill_answer"]
    assert failures[0]["slice_id"].startswith("rec:r-")
    assert result.counts.samples_generated == 0
    again = await run(sim, tmp_path / "out", DistillSource(path))
    assert again.counts.samples_generated == 1


def test_cli_helpers_build_the_source():
    parser = argparse.ArgumentParser()
    parser.add_argument("--input")
    add_distill_arguments(parser)
    args = parser.parse_args(
        ["--input", "d.jsonl", "--skip-generation", "--instruction-col", "q", "--input-col", "none"]
    )
    src = distill_source_from_args(args)
    assert src.path == Path("d.jsonl") and src.skip_generation
    assert src.overrides == FieldMap(instruction="q", input="none")
    src = distill_source_from_args(parser.parse_args(["--input", "d.jsonl"]))
    assert src.overrides is None and not src.skip_generation


async def test_a_long_run_of_rows_without_records_still_lets_the_event_loop_run(tmp_path):
    """Rows that yield no record (skipped here) must not hold the loop for the whole file."""
    import asyncio

    from sft_distill.config.merging import build_config
    from sft_distill.models import StageCounts
    from sft_distill.sources.base import SourceContext
    from sft_distill.sources.distill import aiter_records

    rows = [{"instruction": f"问题{i}", "output": "答"} for i in range(3000)]
    path = write_jsonl(tmp_path / "rows.jsonl", rows)
    ctx = SourceContext(
        config=build_config({}),
        teacher=None,  # type: ignore[arg-type]  (not used while reading)
        stats=StageCounts(),
        on_failure=lambda f: None,
        on_bad_line=lambda b: None,
    )
    ticks = 0
    reading = True

    async def ticker() -> None:
        nonlocal ticks
        while reading:
            ticks += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    ticks = 0
    got = [
        r.instruction
        async for r in aiter_records(
            path, DistillSource(path).field_map, ctx, skip=lambda d: d["instruction"] != "问题2999"
        )
    ]
    reading = False
    await task
    assert got == ["问题2999"]
    assert ctx.stats.lines_read == 3000 and ctx.stats.slices == 1
    assert ticks >= 3000 // 64 - 1  # the loop ran about every 64 rows, not once at the end
