"""The judging stage: eval-v2 and legacy replies, the dimensions a judge must score, and the
reference answer shown to the judges (distill, augment) over real loopback HTTP."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from sft_distill import DatasetDistillationPipeline
from sft_distill.config.defaults import DIMENSIONS, MEAN_DIMENSIONS
from sft_distill.llm.prompts import parse_evaluation_prompt, parse_task_prompt
from sft_distill.llm.transport import ChatResult
from sft_distill.models import Sample
from sft_distill.simulator.server import Simulator, SimulatorConfig
from sft_distill.sources.augment import AugmentSource
from sft_distill.sources.distill import DistillSource
from sft_distill.stages.judge import (
    judge_reference,
    parse_judgement,
    parse_scores,
    required_dimensions,
)
from tests.helpers import read_jsonl, sim_config, write_jsonl

SCORES = dict.fromkeys(DIMENSIONS, 8)


def reply(content: Any) -> ChatResult:
    text = content if isinstance(content, str) else json.dumps(content, ensure_ascii=False)
    return ChatResult(content=text, reasoning=None, finish_reason="stop", model="m")


# --- parsing ----------------------------------------------------------------------------------


def test_eval_v2_reply_reads_claims_and_scores():
    got = parse_judgement(
        reply(
            {
                "claims": [
                    {"claim": "犹豫期为15日。", "evidence": "犹豫期为15日", "verdict": "supported"},
                    {"claim": "退保收10%手续费。", "evidence": None, "verdict": "Not Found"},
                    {"claim": "", "verdict": "supported"},  # unusable: dropped, not fatal
                    {"claim": "应退还全部保费。", "verdict": "contradicted"},
                ],
                "analysis": "逐条核对……",
                "reason": "有一处资料没有的内容。",
                "scores": {**SCORES, "accuracy": 5, "standalone": "9/10"},
            }
        ),
        required=DIMENSIONS,
    )
    assert [c.verdict for c in got.claims] == ["supported", "not_in_source", "contradicted"]
    assert got.score_dict() == {
        **dict.fromkeys(DIMENSIONS, 8.0),
        "accuracy": 5.0,
        "standalone": 9.0,
    }
    assert got.reason == "有一处资料没有的内容。"


@pytest.mark.parametrize(
    "content",
    [
        {**dict.fromkeys(MEAN_DIMENSIONS, 7), "reason": "ok"},  # eval-v1, flat
        [{**dict.fromkeys(MEAN_DIMENSIONS, 7), "reason": "ok"}],  # eval-v1 in a list
        "```json\n"
        + json.dumps({"scores": dict.fromkeys(MEAN_DIMENSIONS, 7), "reason": "ok"})
        + "\n```",
    ],
)
def test_legacy_replies_still_read(content):
    # A cached eval-v1 reply has the five old dimensions and no claims.
    assert parse_scores(reply(content)) == (dict.fromkeys(MEAN_DIMENSIONS, 7.0), "ok")
    assert parse_judgement(reply(content)).claims == []


def test_the_dimensions_the_stage_asks_for_must_be_scored():
    legacy = reply({**dict.fromkeys(MEAN_DIMENSIONS, 7), "reason": "ok"})
    with pytest.raises(ValueError, match="no score for standalone"):
        parse_judgement(legacy, required=required_dimensions(None))
    assert required_dimensions(None) == DIMENSIONS
    # With weights, the weighed dimensions and the floored ones.
    weights = {"accuracy": 2.0, "helpfulness": 1.0}
    floors = {"accuracy": 6.0, "standalone": 5.0}
    assert required_dimensions(weights, floors) == ("accuracy", "helpfulness", "standalone")
    assert required_dimensions(weights) == ("accuracy", "helpfulness")


def test_judge_reference_is_a_different_existing_answer_only():
    base = {"id": "s", "slice_id": "x", "instruction": "Q?", "output": "A new answer."}
    assert judge_reference(Sample(**base)) is None
    assert judge_reference(Sample(**base, reference_output="An old answer.")) == "An old answer."
    # distill --skip-generation judges the existing answer itself: no guide.
    assert judge_reference(Sample(**base, reference_output=" A new answer. ")) is None


# --- reference-guided judging, end to end -----------------------------------------------------

RECORDS = [
    {"id": "tea-1", "instruction": "泡绿茶时水温应该控制在多少度？", "output": "80到85摄氏度。"},
    {
        "id": "bike-1",
        "instruction": "How often should a bicycle chain be lubricated?",
        "output": "Roughly every 150 to 300 kilometres.",
    },
]


def _evaluations(sim: Simulator) -> list[dict[str, str]]:
    return [p for p in map(parse_evaluation_prompt, sim.prompts) if p is not None]


async def _run(sim: Simulator, out: Path, source: Any) -> Any:
    # No gates: every sample reaches the judges (both of them), whose prompts these tests read.
    cfg = sim_config(sim, output_dir=str(out), gates=[], early_drop=False)
    return await DatasetDistillationPipeline(cfg, show_progress=False).run(source=source)


async def test_distill_judges_see_the_existing_answer_as_a_reference(tmp_path):
    path = write_jsonl(tmp_path / "set.jsonl", RECORDS)
    async with Simulator(SimulatorConfig(keep_prompts=True)) as sim:
        await _run(sim, tmp_path / "new", DistillSource(path))
        seen = _evaluations(sim)
        assert len(seen) == 2 * len(RECORDS)
        by_instruction = {r["instruction"]: r["output"] for r in RECORDS}
        for p in seen:
            assert p["reference"] == by_instruction[p["instruction"]]
            assert p["output"] != p["reference"]  # the teacher's new answer is graded
        sim.state.prompts.clear()
        # --skip-generation grades the existing answers themselves: nothing to compare with.
        await _run(sim, tmp_path / "judged", DistillSource(path, skip_generation=True))
        seen = _evaluations(sim)
        assert len(seen) == 2 * len(RECORDS)
        assert all(p["reference"] == "" for p in seen)


@pytest.mark.slow
async def test_augmented_variants_are_answered_and_judged_with_their_original(tmp_path):
    doc = "犹豫期为15日。投保人在犹豫期内解除合同的，保险公司应当退还全部保费。"
    row = {
        "id": "o-1",
        "instruction": "保险合同的犹豫期有多长？",
        "output": "犹豫期为15日，期间退保可退还全部保费。",
        "document": doc,
    }
    path = write_jsonl(tmp_path / "kept.jsonl", [row])
    async with Simulator(SimulatorConfig(keep_prompts=True)) as sim:
        result = await _run(sim, tmp_path / "aug", AugmentSource(path, num_aug=2))
        prompts = sim.prompts
    raw = read_jsonl(result.output_dir / "generated_raw.jsonl")
    variants = [r for r in raw if r["annotations"].get("augmented_from") == "o-1"]
    assert variants, "the simulator's rephrasings are answered"
    assert all(v["reference_output"] == row["output"] for v in variants)
    # The teacher answers each variant with the original's source and answer beside it.
    answers = [t for t in map(parse_task_prompt, prompts) if t and t[0] == "iset_answer"]
    assert len(answers) == len(variants)
    assert all(f["document"] == doc and f["reference"] == row["output"] for _, f in answers)
    # The judges grade variants against the original's source, with its answer as a guide;
    # the original itself against its source, with no guide.
    seen = {p["instruction"]: p for p in map(parse_evaluation_prompt, prompts) if p}
    for v in variants:
        assert seen[v["instruction"]]["document"] == doc
        assert seen[v["instruction"]]["reference"] == row["output"]
    assert seen[row["instruction"]]["document"] == doc
    assert seen[row["instruction"]]["reference"] == ""
