"""End to end: a dry run over slices holding (synthetic) personal data writes no value into the
training files or the raw file with the default settings, and with ``pii_scrub_slices`` not
into the response cache either (nor into any request the judges or the teacher get)."""

from __future__ import annotations

import json
import random
from pathlib import Path

from sft_distill import DatasetDistillationPipeline
from sft_distill.simulator.server import Simulator, SimulatorConfig
from sft_distill.stages.gates.pii_detect import PII_TYPES
from tests import pii_factory as pf
from tests.helpers import dry_run, read_jsonl, sim_config, write_jsonl


def pii_slices(seed: int) -> tuple[list[dict], list[str]]:
    """Slices whose every sentence carries a value the simulator's teacher will copy."""
    r = random.Random(seed)
    values = [
        pf.id_number(r),
        pf.mobile(r),
        pf.bank_card(r),
        pf.email(r),
        pf.ipv4(r),
        pf.passport(r),
        pf.landline(r),
    ]
    zh = (
        f"第一条 被保险人张先生，身份证号码{values[0]}，出险后应在四十八小时内报案。"
        f"第二条 报案电话请拨打{values[1]}，或致电理赔专线{values[6]}，工作日九点至十七点受理。"
        f"第三条 理赔款支付至被保险人名下银行卡{values[2]}，不得由他人代领。"
        f"第四条 电子材料请发送至{values[3]}，护照号码{values[5]}的境外就医材料一并提交。"
        "第五条 保单号P2024030100123的保险期间自2024-03-01起计算，保险金额100,000元。"
    )
    en = (
        f"Claims may be filed by e-mail to {values[3]} or by phone at {values[1]}. "
        f"Online filings are logged from the claimant's address {values[4]} for fraud review. "
        f"Refunds are paid to the card {values[2]} named on the policy, never to a third party."
    )
    rows = [
        {"id": "zh", "content": zh, "metadata": {"license": "CC-BY-4.0", "source": "synthetic"}},
        {"id": "en", "content": en},
    ]
    return rows, values


def files_with(out: Path, values: list[str]) -> dict[str, list[str]]:
    """Every file of the output directory (cache included) that holds one of ``values``."""
    found = {}
    for f in sorted(out.rglob("*")):
        if f.is_file():
            data = f.read_bytes().decode("utf-8", errors="replace")
            hits = [v for v in values if v in data]
            if hits:
                found[f.name] = hits
    return found


def test_default_dry_run_writes_no_value_into_training_or_raw_files(tmp_path):
    rows, values = pii_slices(1)
    inp = write_jsonl(tmp_path / "slices.jsonl", rows)
    out = tmp_path / "out"
    # Many samples per slice, so the teacher quotes every sentence (the look-alikes included).
    cfg = tmp_path / "density.json"
    cfg.write_text(json.dumps({"samples_per_1k_chars": 40}), encoding="utf-8")
    assert dry_run(inp, out, "--format", "sharegpt,alpaca,openai", "--config", str(cfg)) == 0
    raw = read_jsonl(out / "generated_raw.jsonl")
    found = [r["annotations"]["pii"] for r in raw if "pii" in r["annotations"]]
    assert found, "the teacher copied no personal data: the test proves nothing"
    assert all(set(f["counts"]) <= set(PII_TYPES) for f in found)
    leaked = files_with(out, values)
    # What the default does not cover (README): the teacher's prompts and raw replies are in
    # the response cache, unless the slices are scrubbed first.
    assert set(leaked) <= {"cache.sqlite3", "cache.sqlite3-wal"}, leaked
    assert leaked, "the cache holds the teacher's raw replies: the check must be able to see it"
    for name in (
        "train.jsonl",
        "val.jsonl",
        "generated_raw.jsonl",
        "train.alpaca.jsonl",
        "train.openai.jsonl",
        "train.openai.provenance.jsonl",
        "metadata.json",
        "report.html",
        "manifest.json",
        "failures.jsonl",
    ):
        assert (out / name).exists(), name
    assert "P2024030100123" in (out / "generated_raw.jsonl").read_text("utf-8")  # look-alike kept
    meta = json.loads((out / "metadata.json").read_text("utf-8"))
    assert meta["pii"]["mode"] == "redact" and meta["pii"]["samples"]["with_pii"] == len(found)
    assert sum(meta["pii"]["samples"]["found"].values()) == sum(
        sum(f["counts"].values()) for f in found
    )


def test_scrubbed_slices_keep_every_value_out_of_the_cache_too(tmp_path):
    rows, values = pii_slices(2)
    inp = write_jsonl(tmp_path / "slices.jsonl", rows)
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"pii_scrub_slices": True}), encoding="utf-8")
    out = tmp_path / "out"
    assert dry_run(inp, out, "--config", str(cfg)) == 0
    assert files_with(out, values) == {}
    raw = read_jsonl(out / "generated_raw.jsonl")
    assert any("[手机号" in r["instruction"] + r["output"] for r in raw)
    meta = json.loads((out / "metadata.json").read_text("utf-8"))
    assert meta["pii"]["scrub_slices"] is True
    assert meta["pii"]["slices"]["with_pii"] == 2
    assert meta["pii"]["slices"]["found"]["mobile"] == 2


async def test_judges_never_see_a_value_by_default_and_the_teacher_only_without_scrubbing(
    tmp_path,
):
    rows, values = pii_slices(3)
    inp = write_jsonl(tmp_path / "slices.jsonl", rows)
    for scrub in (False, True):
        async with Simulator(SimulatorConfig(keep_prompts=True)) as sim:
            cfg = sim_config(
                sim, output_dir=str(tmp_path / f"o{scrub}"), pii_scrub_slices=scrub, min_votes=1
            )
            await DatasetDistillationPipeline(cfg, show_progress=False).run(inp)
            bodies = [json.loads(b) for b in sim.bodies]
        judged = [b for b in bodies if "completeness" in json.dumps(b, ensure_ascii=False)]
        teacher = [b for b in bodies if b not in judged]
        assert judged and teacher
        text = json.dumps(judged, ensure_ascii=False)
        assert not [v for v in values if v in text]
        asked = json.dumps(teacher, ensure_ascii=False)
        assert bool([v for v in values if v in asked]) is not scrub
