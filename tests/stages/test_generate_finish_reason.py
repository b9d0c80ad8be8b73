"""The teacher stage: what a generated sample records about the reply it came from."""

from __future__ import annotations

import json

from sft_distill import DatasetDistillationPipeline
from sft_distill.models import Sample
from sft_distill.simulator.faults import ok
from sft_distill.stages.gates.base import GateResult
from tests.helpers import read_jsonl, sim_config, write_jsonl

SLICE = {
    "id": "law",
    "content": "第四十七条 投保人解除合同的，保险人应当自收到解除合同通知之日起三十日内，"
    "按照合同约定退还保险单的现金价值。",
}
ITEM = {
    "instruction": "《保险法》规定投保人解除合同后，保险人应在多少日内退还现金价值？",
    "output": "保险人应当自收到解除合同通知之日起三十日内退还保险单的现金价值。",
}


class SeenFinishReason:
    """A gate that keeps everything and remembers each sample's finish_reason."""

    name = "seen"

    def __init__(self) -> None:
        self.seen: list[object] = []

    async def check(self, sample: Sample) -> GateResult:
        self.seen.append(sample.annotations.get("finish_reason"))
        return GateResult(True)


async def test_a_generated_sample_carries_its_replys_finish_reason_to_the_gates(sim, tmp_path):
    inp = write_jsonl(tmp_path / "in.jsonl", [SLICE])
    cfg = sim_config(sim, output_dir=str(tmp_path / "out"), samples_per_slice=1, gates=[])
    sim.queue(ok(json.dumps([ITEM], ensure_ascii=False), finish_reason="content_filter"))
    gate = SeenFinishReason()
    pipeline = DatasetDistillationPipeline(cfg, gates=[gate], show_progress=False)
    result = await pipeline.run(inp)
    (row,) = read_jsonl(result.output_dir / "generated_raw.jsonl")
    assert row["annotations"]["finish_reason"] == "content_filter"
    assert gate.seen == ["content_filter"]


async def test_the_simulators_replies_finish_with_stop(sim, tmp_path):
    inp = write_jsonl(tmp_path / "in.jsonl", [SLICE])
    cfg = sim_config(sim, output_dir=str(tmp_path / "out"), samples_per_slice=2)
    result = await DatasetDistillationPipeline(cfg, show_progress=False).run(inp)
    raw = read_jsonl(result.output_dir / "generated_raw.jsonl")
    assert raw and all(r["annotations"]["finish_reason"] == "stop" for r in raw)
