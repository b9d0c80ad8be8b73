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
from sft_distill.simulator.server import SimulatorConfig, run_in_thread
from sft_distill.simulator.tasks import iset_answer_reply
from sft_distill.sources.distill import DistillSource
from sft_distill.sources.fields import (
    INPUT_ALIASES,
    INSTRUCTION_ALIASES,
    OUTPUT_ALIASES,
    REASONING_ALIASES,
    SOURCE_TEXT_ALIASES,
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
    write_config,
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
    result = await run(sim, tmp_path / "out", DistillSource(ALPACA), early_drop=False)
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
    result = await run(
        sim, tmp_path / "out", DistillSource(ALPACA, skip_generation=True), early_drop=False
    )
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


# --- the source text and evidence of each pair -----------------------------------------------

LAW = (
    "第四十七条 投保人解除合同的，保险人应当自收到解除合同通知之日起三十日内，"
    "按照合同约定退还保险单的现金价值。"
)
QUESTION = "《保险法》规定投保人解除合同后，保险人应在多少日内退还保险单的现金价值？"
SWAPPED = "保险人应当自收到解除合同通知之日起十五日内退还保险单的现金价值。"
RIGHT = "保险人应当自收到解除合同通知之日起三十日内退还保险单的现金价值。"
EXPLICIT_SOURCE_ALIASES = [a for a in SOURCE_TEXT_ALIASES if a not in INPUT_ALIASES]


@pytest.mark.parametrize("alias", EXPLICIT_SOURCE_ALIASES)
def test_every_source_alias_is_the_source_text_and_stays_out_of_metadata(tmp_path, alias):
    row = {"question": QUESTION, "answer": RIGHT, alias: LAW, "note": "n"}
    fmap = detect_field_map([row])
    assert fmap == FieldMap(instruction="question", output="answer", source_text=alias)
    (rec,) = records(write_jsonl(tmp_path / "one.jsonl", [row]))
    assert (rec.source_text, rec.input) == (LAW, "")
    assert rec.metadata == {"note": "n"}  # the document is not copied into every sample


@pytest.mark.parametrize("alias", ["context", "source", "Context"])
def test_context_and_source_are_the_source_only_when_another_column_is_the_input(alias):
    alone = detect_field_map([{"question": QUESTION, "answer": RIGHT, alias: LAW}])
    assert (alone.input, alone.source_text) == (alias, None)  # as before: the input
    both = detect_field_map([{"instruction": QUESTION, "input": "x", "output": RIGHT, alias: LAW}])
    assert (both.input, both.source_text) == ("input", alias)


def test_evidence_is_a_string_or_a_list_and_anything_else_is_a_bad_line(tmp_path):
    pair = {"answer": RIGHT, "source_text": LAW}
    rows = [
        {"id": "a", "question": QUESTION, **pair, "evidence": ["三十日内", " "]},
        {"id": "b", "question": "Q2", **pair, "evidence": "退还保险单的现金价值"},
        {"id": "c", "question": "Q3", **pair, "evidence": {"quote": "x"}},
        {"id": "d", "question": "Q4", **pair, "source_text": ["第一段。", "第二段。"]},
    ]
    bad: list[BadLine] = []
    got = records(write_jsonl(tmp_path / "e.jsonl", rows), bad=bad)
    assert [r.evidence for r in got] == [("三十日内",), ("退还保险单的现金价值",), ()]
    assert got[2].source_text == "第一段。\n\n第二段。"  # several passages, one document
    assert [(b.line, b.kind) for b in bad] == [(3, "non_string_content")]
    assert "'evidence' must be a string or a list of strings, got object" in bad[0].reason


def test_source_and_evidence_columns_can_be_named_or_turned_off(tmp_path):
    row = {"question": QUESTION, "answer": RIGHT, "law": LAW, "document": "other", "cites": "日"}
    path = write_jsonl(tmp_path / "o.jsonl", [row])
    (rec,) = records(path, FieldMap(source_text="law", evidence="cites"))
    assert (rec.source_text, rec.evidence) == (LAW, ("日",))
    (rec,) = records(path, FieldMap(source_text="none"))
    assert rec.source_text == "" and rec.metadata["document"] == "other"
    with pytest.raises(InputError, match=r"--source-col 'text' not found; columns: question, an"):
        DistillSource(path, columns=FieldMap(source_text="text")).field_map  # noqa: B018
    assert "source_text" not in DistillSource(ALPACA).describe()["columns"]  # identity unchanged


def test_skip_generation_checks_and_judges_each_pair_against_its_source(tmp_path, cli):
    """The numbers check reads the source column, the judges are shown it, no output has it."""
    pairs = [
        {"id": "swapped", "question": QUESTION, "answer": SWAPPED, "document": LAW},
        {
            "id": "right",
            "question": QUESTION + "（简答）",
            "answer": RIGHT,
            "document": LAW,
            "evidence": ["自收到解除合同通知之日起三十日内"],
        },
    ]
    inp = write_jsonl(tmp_path / "pairs.jsonl", pairs)
    with run_in_thread(SimulatorConfig(keep_prompts=True)) as sim:
        cfg = write_config(tmp_path / "c.json", sim.url)
        out = tmp_path / "out"
        args = ["distill", "--input", str(inp), "--skip-generation", "--config", str(cfg), "-q"]
        p = cli(*args, "--output", str(out))
        prompts = sim.prompts()
        sim.reset_stats()
        p2 = cli(*args, "--source-col", "none", "--output", str(tmp_path / "out2"))
        prompts2 = sim.prompts()
    assert p.returncode == 0, p.stderr
    raw = {r["output"]: r for r in read_jsonl(out / "generated_raw.jsonl")}
    assert raw[SWAPPED]["drop_reason"] == "gate:numbers"
    assert "15日 (source: 30)" in raw[SWAPPED]["drop_detail"]
    right = raw[RIGHT]
    assert right["evidence"] == ["自收到解除合同通知之日起三十日内"]
    assert right["annotations"]["evidence_verified"] is True
    judged = [q for q in prompts if "<sample>" in q]
    assert len(judged) == 2 and all(LAW in q for q in judged)  # both judges saw the document
    for name in ("train.jsonl", "val.jsonl", "generated_raw.jsonl"):
        assert LAW not in (out / name).read_text(encoding="utf-8")
    assert read_metadata(out)["source"]["columns"]["source_text"] == "document"

    # Without the source column the number cannot be checked, and the judges get no document.
    assert p2.returncode == 0, p2.stderr
    raw = {r["output"]: r for r in read_jsonl(tmp_path / "out2" / "generated_raw.jsonl")}
    assert not (raw[SWAPPED]["drop_reason"] or "").startswith("gate:")
    assert len(prompts2) == 4 and not any(LAW in q for q in prompts2)
