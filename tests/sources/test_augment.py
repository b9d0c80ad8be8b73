"""Augmentation: rephrasings of kept samples, answered, judged, deduplicated with the originals."""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from sft_distill import DatasetDistillationPipeline
from sft_distill.cli.augment import add_augment_arguments, augment_source_from_args
from sft_distill.errors import ConfigError, JSONExtractionError
from sft_distill.llm.transport import ChatResult
from sft_distill.simulator.faults import ok
from sft_distill.simulator.tasks import iset_rephrase_reply
from sft_distill.sources.augment import (
    AugmentSource,
    filter_rephrasings,
    instruction_digest,
    is_near_copy,
    parse_rephrasings,
)
from sft_distill.sources.fields import iter_records
from tests.helpers import TEST_DATA, read_jsonl, read_metadata, sim_config

SLICES = TEST_DATA / "iset_slices.jsonl"


async def run(sim, out: Path, *, source=None, input_path=None, **overrides: Any):
    cfg = sim_config(sim, output_dir=str(out), **overrides)
    pipeline = DatasetDistillationPipeline(cfg, show_progress=False)
    return await pipeline.run(input_path, source=source)


async def base_run(sim, tmp_path: Path, **overrides: Any) -> Path:
    """A main-job run whose kept samples all land in train.jsonl."""
    overrides = {"train_val_split": 1.0, "samples_per_slice": 4, **overrides}
    result = await run(sim, tmp_path / "base", input_path=SLICES, **overrides)
    sim.reset_stats()
    return result.output_dir


@pytest.mark.slow
async def test_augment_end_to_end_from_a_pipeline_train_file(sim, tmp_path):
    base = await base_run(sim, tmp_path)
    train = read_jsonl(base / "train.jsonl")
    source = AugmentSource(base / "train.jsonl", num_aug=3)
    result = await run(sim, tmp_path / "aug", source=source)
    raw = read_jsonl(result.output_dir / "generated_raw.jsonl")

    originals = {r["id"]: r for r in raw if r["annotations"].get("original")}
    assert set(originals) == {t["id"] for t in train}
    for t in train:
        got = originals[t["id"]]
        assert got["output"] == t["conversations"][1]["value"]
        assert got["slice_id"] == t["slice_id"] and got["teacher_model"] == "teacher-sim"
    variants: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in raw:
        if "augmented_from" in r["annotations"]:
            variants[r["annotations"]["augmented_from"]].append(r)
    n_variants = sum(len(v) for v in variants.values())
    planted = 0
    for oid, orig in originals.items():
        dropped = orig["annotations"].get("rephrasings_dropped", [])
        assert len(variants[oid]) + len(dropped) == 3  # N rephrasings per sample
        for d in dropped:  # a variant duplicating its original is dropped naming it
            assert d["duplicate_of"] == oid and d["reason"] == "near copy of the original"
            assert is_near_copy(d["instruction"], orig["instruction"])
            planted += 1
        for v in variants[oid]:
            assert v["slice_id"] == orig["slice_id"] and v["input"] == orig["input"]
            assert v["source_kind"] == "augment" and v["teacher_model"] == "teacher-sim"
            assert not is_near_copy(v["instruction"], orig["instruction"])
            assert v["output"] != orig["output"]
    assert planted >= 1, "the simulator plants near copies; augment should drop some"
    assert all(len(r["judgements"]) == 2 for r in raw)  # originals and variants are judged
    assert len(raw) == len(train) + n_variants
    # one rephrase request per sample and one answer per kept rephrasing; judges see them all
    assert sim.stats["by_kind"] == {
        "generation": len(train) + n_variants,
        "evaluation": 2 * len(raw),
        "other": 0,
    }
    assert source.counts == {
        "originals": len(train),
        "rephrasings": 3 * len(train),
        "rephrasings_duplicate": planted,
        "variants": n_variants,
        "not_kept_skipped": 0,
    }
    meta = read_metadata(result.output_dir)
    assert meta["source"]["kind"] == "augment" and meta["source"]["num_aug"] == 3

    sim.reset_stats()
    again = await run(sim, tmp_path / "aug", source=AugmentSource(base / "train.jsonl"))
    assert sim.stats["chat_requests"] == 0
    assert (again.output_dir / "train.jsonl").read_bytes() == (
        result.output_dir / "train.jsonl"
    ).read_bytes()


async def test_variants_are_deduplicated_against_other_originals_and_each_other(sim, tmp_path):
    rows = [
        {"id": "a", "instruction": "How often should a chain be oiled?", "output": "Monthly."},
        {"id": "b", "instruction": "What do brake pads do?", "output": "They stop the wheel."},
    ]
    path = tmp_path / "kept.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), "utf-8")
    # Both rephrase requests come first (nothing is judged before its rephrasings are answered).
    reply = json.dumps(["What do brake pads do?", "What is the job of brake pads on a bicycle?"])
    sim.queue(ok(reply), ok(reply))
    result = await run(sim, tmp_path / "out", source=AugmentSource(path, num_aug=2))
    raw = {r["id"]: r for r in read_jsonl(result.output_dir / "generated_raw.jsonl")}
    # a's copy of b's instruction is dropped naming b; b's is a copy of b itself
    for oid in ("a", "b"):
        (d,) = raw[oid]["annotations"]["rephrasings_dropped"]
        assert d["instruction"] == "What do brake pads do?" and d["duplicate_of"] == "b"
    assert raw["a"]["annotations"]["rephrasings_dropped"][0]["reason"] == (
        "instruction of another sample"
    )
    # the same rephrasing of a and of b gets the same answer: the pipeline's near-duplicate
    # removal keeps one of the two (both pass) and names it
    twins = [r for r in raw.values() if r["instruction"].startswith("What is the job")]
    assert len(twins) == 2 and twins[0]["output"] == twins[1]["output"]
    kept = [t for t in twins if t["drop_reason"] is None]
    dup = [t for t in twins if t["drop_reason"] == "duplicate"]
    assert len(kept) == len(dup) == 1 and dup[0]["duplicate_of"] == kept[0]["id"]


@pytest.mark.slow
async def test_our_other_formats_and_generated_raw_are_read(sim, tmp_path):
    base = await base_run(sim, tmp_path, output_formats=["sharegpt", "alpaca", "openai"])
    train = read_jsonl(base / "train.jsonl")
    human = [t["conversations"][0]["value"] for t in train]
    for name, style in (
        ("train.jsonl", "sharegpt"),
        ("train.alpaca.jsonl", "columns"),
        ("train.openai.jsonl", "openai"),
    ):
        src = AugmentSource(base / name)
        assert src.field_map.style == style
        recs = list(iter_records(base / name, src.field_map, output_required=True))
        got = [r.instruction + ("\n" + r.input if r.input else "") for r in recs]
        assert got == human, name
        assert [r.output for r in recs] == [t["conversations"][1]["value"] for t in train]
    raw_path = base / "generated_raw.jsonl"
    raw = read_jsonl(raw_path)
    kept = [r for r in raw if r["passed"] and not r["drop_reason"]]
    assert len(kept) < len(raw), "the base run should drop something"
    src = AugmentSource(raw_path, num_aug=1)
    result = await run(sim, tmp_path / "aug", source=src)
    assert src.counts["originals"] == len(kept)
    assert src.counts["not_kept_skipped"] == len(raw) - len(kept)
    assert result.counts.slices == len(kept)


async def test_a_failed_rephrase_keeps_the_original_and_is_retried_on_rerun(sim, tmp_path):
    path = tmp_path / "kept.jsonl"
    path.write_text(json.dumps({"question": "Why oil a chain?", "answer": "Less wear."}), "utf-8")
    sim.queue(400)
    result = await run(sim, tmp_path / "out", source=AugmentSource(path, num_aug=2))
    (failure,) = read_jsonl(result.output_dir / "failures.jsonl")
    assert failure["kind"] == "augment_rephrase" and failure["sample_id"].startswith("r-")
    raw = read_jsonl(result.output_dir / "generated_raw.jsonl")
    assert [r["annotations"].get("original") for r in raw] == [True]
    again = await run(sim, tmp_path / "out", source=AugmentSource(path, num_aug=2))
    assert again.counts.samples_generated == 3


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        ("What is a spoke?", "what is a spoke", True),  # case and punctuation
        ("什么是辐条？", "什么是辐条。", True),
        (
            "How often should a bicycle chain be oiled?",
            "How often should a bicycle chain be oiled!",
            True,
        ),
        (
            "How often should a bicycle chain be oiled?",
            "How often should a bicycle chain be olied?",
            True,
        ),
        ("What is a spoke?", "In simple terms, what is a spoke?", False),
        ("什么是辐条？", "请用通俗的话解释辐条的作用。", False),
        ("", "x", False),
    ],
)
def test_is_near_copy(a, b, same):
    assert is_near_copy(a, b) is same


def test_filter_rephrasings_names_what_each_dropped_one_repeats():
    known = {instruction_digest("What is a derailleur?"): "other"}
    kept, dropped = filter_rephrasings(
        "me",
        "How do I oil a chain?",
        [
            "How do I oil a chain.",
            "Explain how to lubricate a bicycle chain.",
            "Explain how to lubricate a bicycle chain!",
            "What is a derailleur?",
            "What steps does chain lubrication take?",
        ],
        known,
    )
    assert kept == [
        "Explain how to lubricate a bicycle chain.",
        "What steps does chain lubrication take?",
    ]
    assert [(d["duplicate_of"], d["reason"]) for d in dropped] == [
        ("me", "near copy of the original"),
        ("me", "near copy of another rephrasing"),
        ("other", "instruction of another sample"),
    ]


def _result(content: str) -> ChatResult:
    return ChatResult(content=content, reasoning=None, finish_reason="stop", model="m")


def test_parse_rephrasings():
    reply = (
        '<think>ok</think>```json\n["A one", {"instruction": "B two"}, "A one", "", "C", "D"]\n```'
    )
    assert parse_rephrasings(_result(reply), n=3) == ["A one", "B two", "C"]
    with pytest.raises(ValueError):
        parse_rephrasings(_result("[1, 2]"), n=3)
    with pytest.raises(JSONExtractionError):
        parse_rephrasings(_result("no json here"), n=3)


@pytest.mark.parametrize(
    "instruction", ["资料中关于“保险期间”是如何规定的？", "Explain: what is a spoke?"]
)
def test_simulator_rephrasings_are_distinct_and_never_the_original(instruction):
    for n in (1, 3, 12):
        got = json.loads(iset_rephrase_reply("m", {"instruction": instruction, "count": str(n)}))
        assert len(got) == n == len(set(got))
        assert instruction not in got
        assert got == json.loads(
            iset_rephrase_reply("m", {"instruction": instruction, "count": str(n)})
        )


def test_num_aug_range_and_cli_helpers():
    for bad in (0, 21):
        with pytest.raises(ConfigError, match=r"num_aug must be 1\.\.20"):
            AugmentSource("kept.jsonl", num_aug=bad)
    parser = argparse.ArgumentParser()
    parser.add_argument("--input")
    add_augment_arguments(parser)
    src = augment_source_from_args(parser.parse_args(["--input", "kept.jsonl"]))
    assert src.num_aug == 3 and src.overrides is None
    args = parser.parse_args(["--input", "k.jsonl", "--num-aug", "20", "--output-col", "gold"])
    src = augment_source_from_args(args)
    assert src.num_aug == 20 and src.overrides is not None and src.overrides.output == "gold"
    for bad in ("0", "21", "x"):
        with pytest.raises(SystemExit):
            parser.parse_args(["--input", "k.jsonl", "--num-aug", bad])


@pytest.mark.parametrize("bad", [True, False, 2.0, 2.5, "3", None, 0, 21, -1])
def test_num_aug_must_be_an_integer_in_range(bad):
    with pytest.raises(ConfigError, match=r"num_aug must be 1\.\.20 \(an integer\)"):
        AugmentSource("kept.jsonl", num_aug=bad)
    assert AugmentSource("kept.jsonl", num_aug=1).num_aug == 1
