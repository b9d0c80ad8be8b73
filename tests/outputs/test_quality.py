"""The quality figures of a run: metadata.json "quality" and the Quality section of report.html."""

from __future__ import annotations

import re
from typing import Any

from sft_distill import DatasetDistillationPipeline
from sft_distill.models import Sample, ScoredSample
from sft_distill.outputs.quality import QualityStats
from sft_distill.sources.distill import DistillSource
from sft_distill.stages.gates.base import GateResult
from tests.helpers import read_metadata, sim_config, write_jsonl


def scored(sid: str, question: str, *, passed: bool = True, **kw: Any) -> ScoredSample:
    return ScoredSample(
        id=sid, slice_id="s", instruction=question, output="答案为十五日。", passed=passed, **kw
    )


def test_figures_among_generated_and_kept_samples():
    stats = QualityStats()
    stats.add(scored("a", "犹豫期是多少天？", annotations={"evidence_verified": True}))
    stats.add(scored("b", "宽限期是多少天？", annotations={"evidence_verified": False}))
    stats.add(
        scored("c", "根据上述资料，期限是多久？", passed=False, drop_reason="gate:referential")
    )
    stats.add(scored("d", "根据上文，期限是多久？", annotations={"question_type": "factual"}))
    stats.add(
        scored("e", "等待期是多久？", annotations={"question_type": "factual", "difficulty": 2.0})
    )
    stats.drop_late(["e", "unknown-id"])  # a duplicate: no longer kept
    q = stats.summary({"gate:referential": 1, "low_votes": 3}, ["truncated", "referential"])
    assert q["samples"] == {"generated": 5, "kept": 3}
    assert q["evidence_verified_share"] == round(1 / 3, 4)
    assert q["evidence"]["kept"] == {"verified": 1, "failed": 1, "unchecked": 1}
    assert q["evidence"]["generated"] == {"verified": 1, "failed": 1, "unchecked": 3}
    assert q["referential_rate"] == {"generated": 0.4, "kept": round(1 / 3, 4)}
    assert q["question_types"] == {"generated": {"factual": 2}, "kept": {"factual": 1}}
    assert q["difficulty"] == {"generated": {"2": 1}, "kept": {}}
    assert q["check_drops"] == {"truncated": 0, "referential": 1}


def test_question_types_are_bounded_and_nothing_kept_gives_no_rate():
    stats = QualityStats()
    for i in range(60):
        stats.add(scored(f"s{i}", "何为保险？", passed=False, annotations={"question_type": i}))
    q = stats.summary({})
    assert len(q["question_types"]["generated"]) == 51 and q["question_types"]["kept"] == {}
    assert q["question_types"]["generated"]["other"] == 10
    assert q["evidence_verified_share"] is None and q["referential_rate"]["kept"] is None


class TagTypes:
    """A gate that records a question type and difficulty, as a teacher would give them."""

    name = "tag"

    async def check(self, sample: Sample) -> GateResult:
        kind = "calculation" if "计算" in sample.instruction else "factual"
        return GateResult(True, None, {"question_type": kind, "difficulty": "easy"})


LAW = (
    "第四十七条 投保人解除合同的，保险人应当自收到解除合同通知之日起三十日内，"
    "按照合同约定退还保险单的现金价值。"
)
PAIRS = [
    {
        "question": "《保险法》规定投保人解除合同后，保险人应在多少日内退还现金价值？",
        "answer": "保险人应当自收到解除合同通知之日起三十日内退还保险单的现金价值。",
        "evidence": ["自收到解除合同通知之日起三十日内"],
    },
    {
        "question": "请计算：投保人6月1日通知解除合同，保险人最迟哪天退还现金价值？",
        "answer": "自6月1日起三十日内，即最迟7月1日退还保险单的现金价值。",
        "evidence": ["保险人应当在七日内退还全部保险费"],  # not in the source: flagged
    },
    {
        "question": "根据上述资料，保险人退还的是什么？",
        "answer": "保险人退还的是保险单的现金价值。",
    },
]


async def test_a_run_records_the_quality_figures_in_metadata_and_report(sim, tmp_path):
    rows = [{**p, "source_text": LAW} for p in PAIRS]
    path = write_jsonl(tmp_path / "pairs.jsonl", rows)
    gates = [{"type": "quality", "evidence": {"on_missing": "flag"}}, {"type": "rules"}]
    # Every sample the gates keep is kept: no threshold, no floors.
    cfg = sim_config(
        sim, output_dir=str(tmp_path / "out"), min_votes=1, min_score_threshold=0, score_floors=None
    )
    cfg = cfg.model_copy(update={"gates": gates})
    pipeline = DatasetDistillationPipeline(cfg, gates=[TagTypes()], show_progress=False)
    result = await pipeline.run(source=DistillSource(path, skip_generation=True))
    q = read_metadata(result.output_dir)["quality"]
    assert q["samples"] == {"generated": 3, "kept": 2}
    assert q["evidence"]["kept"] == {"verified": 1, "failed": 1, "unchecked": 0}
    assert q["evidence_verified_share"] == 0.5
    assert q["referential_rate"] == {"generated": round(1 / 3, 4), "kept": 0.0}
    assert q["check_drops"]["referential"] == 1 and q["check_drops"]["numbers"] == 0
    assert "tag" in q["check_drops"]  # every gate the run had, custom ones too
    # the referential sample was dropped before the tag gate ran
    assert q["question_types"] == {
        "generated": {"calculation": 1, "factual": 1},
        "kept": {"calculation": 1, "factual": 1},
    }
    assert q["difficulty"]["kept"] == {"easy": 2}
    assert result.metadata["report"]["quality"] == {
        k: q[k] for k in result.metadata["report"]["quality"]
    }

    html = (result.output_dir / "report.html").read_text(encoding="utf-8")
    section = re.search(r'<section id="quality">.*?</section>', html, re.DOTALL)
    assert section is not None
    text = section.group()
    assert "kept with verified evidence" in text and "50.0%" in text
    assert "calculation" in text and "referential" in text


def test_flags_for_the_judges_are_counted_among_generated_and_kept_samples():
    stats = QualityStats()
    flag = {"check": "numbers", "reason": "number differs from the source: 90日", "judge": True}
    support = {"check": "support", "reason": "states 10日, which the source does not"}
    stats.add(scored("a", "犹豫期是多少天？", annotations={"quality_flags": [flag]}))
    stats.add(scored("b", "宽限期是多少天？", passed=False, annotations={"quality_flags": [flag]}))
    stats.add(scored("c", "等待期是多久？", annotations={"quality_flags": [flag, support]}))
    stats.add(scored("d", "保险期间是多久？"))
    stats.drop_late(["c"])
    q = stats.summary({})
    assert q["check_flags"] == {
        "generated": {"numbers": 3, "support": 1},
        "kept": {"numbers": 1},
    }
