"""The gates a run has by default (quality checks, then rule gates), and turning them off."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sft_distill.config.defaults import DEFAULT_GATES
from sft_distill.config.merging import build_config
from sft_distill.stages.gates.registry import QUALITY_GATE_TYPES, RULE_GATE_TYPES
from tests.helpers import cli_config, read_jsonl, read_metadata, write_jsonl

REFERENTIAL = "根据上述资料，犹豫期是多少天？"
STANDALONE = "《保险法》规定的人身保险犹豫期一般是多少天？"
PAIRS = [
    {"id": "ref", "question": REFERENTIAL, "answer": "犹豫期一般为十五日，期间退保可退还保费。"},
    {"id": "ok", "question": STANDALONE, "answer": "一般为十五日，犹豫期内解除合同可退还保费。"},
]


def test_a_config_without_gates_gets_the_quality_checks_then_the_rule_gates():
    assert build_config({}).gates == [{"type": "quality"}, {"type": "rules"}]
    assert [dict(g) for g in DEFAULT_GATES] == build_config({}).gates
    assert build_config({"gates": []}).gates == []


def _distill(cli, tmp_path: Path, *, config: dict | None = None) -> tuple[Path, dict]:
    """``sft-distill distill --skip-generation --dry-run`` over PAIRS; (output dir, raw by id)."""
    ids = {p["question"]: p["id"] for p in PAIRS}
    inp = write_jsonl(tmp_path / "pairs.jsonl", PAIRS)
    out = tmp_path / "out"
    args = ["distill", "--input", str(inp), "--skip-generation", "--dry-run", "-q"]
    if config is not None:
        cfg = tmp_path / "c.json"
        cfg.write_text(json.dumps(cli_config("http://127.0.0.1:9/v1", **config)))
        args += ["--config", str(cfg)]
    p = cli(*args, "--output", str(out))
    assert p.returncode == 0, p.stderr
    return out, {ids[r["instruction"]]: r for r in read_jsonl(out / "generated_raw.jsonl")}


def test_a_run_drops_a_referential_question_by_default(cli, tmp_path):
    out, raw = _distill(cli, tmp_path)
    assert raw["ref"]["drop_reason"] == "gate:referential"
    assert raw["ref"]["drop_detail"].startswith("referential question")
    assert raw["ref"]["judgements"] == []  # no judge was paid for it
    assert not (raw["ok"]["drop_reason"] or "").startswith("gate:")
    meta = read_metadata(out)
    assert meta["counts"]["dropped"]["gate:referential"] == 1
    assert meta["counts"]["samples_evaluated"] == 1
    assert meta["quality_gates"]["gates"] == ["pii", *QUALITY_GATE_TYPES, *RULE_GATE_TYPES]


@pytest.mark.parametrize(
    "gates",
    [[], [{"type": "quality", "exclude": ["referential"]}, {"type": "rules"}]],
    ids=["none", "exclude"],
)
def test_gates_are_turned_off_by_an_empty_list_or_exclude(cli, tmp_path, gates):
    out, raw = _distill(cli, tmp_path, config={"gates": gates})
    assert len(raw["ref"]["judgements"]) == 2  # judged like any other sample
    assert raw["ref"]["drop_reason"] != "gate:referential"
    meta = read_metadata(out)
    assert "gate:referential" not in meta["counts"]["dropped"]
    assert "referential" not in meta["quality_gates"]["gates"]
