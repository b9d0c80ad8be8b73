"""Provenance and licences: each slice's metadata.license and metadata.source reach every output
row's provenance and manifest.json, which flags non-commercial and unlicensed sources;
``--require-license`` fails such a run (exit 4), as the other quality floors do."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sft_distill import DatasetDistillationPipeline
from sft_distill.models import ScoredSample, origin_of
from sft_distill.outputs.formats import provenance
from sft_distill.outputs.manifest import is_non_commercial, license_summary
from sft_distill.selection.refilter import refilter
from tests.helpers import dry_run, read_jsonl, sim_config, write_jsonl

TEXT = {
    "law": "第二条 本法所称保险，是指投保人根据合同约定，向保险人支付保险费，保险人对于合同约定的"
    "可能发生的事故因其发生所造成的财产损失承担赔偿保险金责任的商业保险行为。",
    "blog": "A deductible is the amount you pay before your insurer pays anything. Higher "
    "deductibles lower the premium, but you carry more of a small loss yourself.",
    "notes": "共同保险是指两个以上保险人对同一保险标的、同一保险利益、同一保险事故"
    "分别订立保险合同，保险金额总和不超过保险价值的保险。",
}
SLICE_ROWS = [
    {
        "id": "law",
        "content": TEXT["law"],
        "metadata": {"license": "public domain", "source": "PRC Insurance Law"},
    },
    {
        "id": "blog",
        "content": TEXT["blog"],
        "metadata": {"license": "CC BY-NC 4.0", "source": "Some Insurance Blog"},
    },
    {"id": "notes", "content": TEXT["notes"], "metadata": {"source": "Internal notes"}},
]


@pytest.mark.parametrize(
    ("license_", "nc"),
    [
        ("CC BY-NC 4.0", True),
        ("cc-by-nc-sa-4.0", True),
        ("CC-BY-NC-ND", True),
        ("Non-Commercial use only", True),
        ("noncommercial", True),
        ("知识共享 署名-非商业性使用 4.0", True),
        ("CC-BY-4.0", False),
        ("CC BY-SA 4.0", False),
        ("University of Illinois/NCSA Open Source License", False),
        ("Apache-2.0", False),
        ("public domain", False),
    ],
)
def test_non_commercial_licences_are_recognised(license_, nc):
    assert is_non_commercial(license_) is nc


def test_origin_from_metadata_and_provenance_carries_it():
    assert origin_of({"licence": " CC-BY-4.0 ", "source": "Wiki"}) == {
        "license": "CC-BY-4.0",
        "source": "Wiki",
    }
    assert origin_of({"license": "", "source": ["not", "text"]}) == {
        "license": None,
        "source": None,
    }
    s = ScoredSample(
        id="x", slice_id="law", instruction="q", output="a", license="MIT", source="docs"
    )
    p = provenance(s)
    assert (p["slice_id"], p["source"], p["license"]) == ("law", "docs", "MIT")


def test_license_summary_counts_and_flags():
    summary = license_summary(
        {
            ("CC-BY-4.0", "Wiki"): 5,
            ("CC BY-NC 4.0", "Blog"): 2,
            ("CC BY-NC 4.0", None): 1,
            (None, "Notes"): 3,
            (None, None): 1,
        }
    )
    assert summary["samples"] == {"(none)": 4, "CC BY-NC 4.0": 3, "CC-BY-4.0": 5}
    assert summary["sources"]["Blog"] == {"CC BY-NC 4.0": 2}
    assert summary["non_commercial"] == {"samples": 3, "sources": ["Blog"], "without_source": 1}
    assert summary["unlicensed"] == {"samples": 4, "sources": ["Notes"], "without_source": 1}


def manifest(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text(encoding="utf-8"))


async def test_licence_and_source_reach_every_row_and_the_manifest(sim, tmp_path):
    path = write_jsonl(tmp_path / "slices.jsonl", SLICE_ROWS)
    cfg = sim_config(
        sim,
        output_dir=str(tmp_path / "out"),
        samples_per_slice=3,
        min_votes=1,
        output_formats=["sharegpt", "alpaca", "openai"],
        enable_dedup=False,
    )
    result = await DatasetDistillationPipeline(cfg, show_progress=False).run(path)
    out = result.output_dir
    assert result.quality_problems == []  # no require_license: flagged, not failed
    expected = {r["id"]: r["metadata"] for r in SLICE_ROWS}
    rows = []
    for name in ("train.jsonl", "val.jsonl", "train.alpaca.jsonl", "val.alpaca.jsonl"):
        rows += [r["provenance"] for r in read_jsonl(out / name)]
    for name in ("train.openai.provenance.jsonl", "val.openai.provenance.jsonl"):
        rows += read_jsonl(out / name)
    assert rows
    for p in rows:
        meta = expected[p["slice_id"]]
        assert (p["license"], p["source"]) == (meta.get("license"), meta["source"])
    kept = result.counts.train + result.counts.val
    m = manifest(out)["licenses"]
    assert sum(m["samples"].values()) == kept
    per_slice = {s: sum(1 for p in rows[:kept] if p["slice_id"] == s) for s in expected}
    assert m["samples"] == {
        k: v
        for k, v in {
            "public domain": per_slice["law"],
            "CC BY-NC 4.0": per_slice["blog"],
            "(none)": per_slice["notes"],
        }.items()
        if v
    }
    assert m["non_commercial"]["sources"] == ["Some Insurance Blog"]
    assert m["unlicensed"]["sources"] == ["Internal notes"]
    assert result.metadata["licenses"] == m
    # the raw file keeps them on every sample, kept or not
    raw = read_jsonl(out / "generated_raw.jsonl")
    assert {(r["slice_id"], r["license"]) for r in raw} == {
        ("law", "public domain"),
        ("blog", "CC BY-NC 4.0"),
        ("notes", None),
    }


def test_require_license_fails_the_run_with_exit_4(tmp_path, capsys):
    path = write_jsonl(tmp_path / "slices.jsonl", SLICE_ROWS)
    assert dry_run(path, tmp_path / "ok") == 0
    capsys.readouterr()
    assert dry_run(path, tmp_path / "strict", "--require-license") == 4
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("sft-distill: quality gate failed: kept samples: ")
    assert "under a non-commercial licence (sources 'Some Insurance Blog')" in err[0]
    assert "with no licence (sources 'Internal notes')" in err[0]
    meta = json.loads((tmp_path / "strict" / "metadata.json").read_text("utf-8"))
    assert meta["quality_gates"]["passed"] is False
    # every slice licensed for commercial use: the same flag passes
    licensed = [{**r, "metadata": {"license": "CC-BY-4.0", "source": r["id"]}} for r in SLICE_ROWS]
    good = write_jsonl(tmp_path / "licensed.jsonl", licensed)
    assert dry_run(good, tmp_path / "good", "--require-license") == 0
    assert manifest(tmp_path / "good")["licenses"]["unlicensed"]["samples"] == 0


def test_refilter_checks_the_licences_too(tmp_path, cli):
    path = write_jsonl(tmp_path / "slices.jsonl", SLICE_ROWS)
    assert dry_run(path, tmp_path / "out") == 0
    p = cli("refilter", "--output", str(tmp_path / "out"), "--require-license")
    assert p.returncode == 4, p.stderr
    assert "quality gate failed: kept samples: " in p.stderr
    # remembered like any refilter setting, until it is changed
    assert refilter(tmp_path / "out").quality_problems
    assert refilter(tmp_path / "out", overrides={"require_license": False}).quality_problems == []


def test_distill_records_carry_their_licence(tmp_path):
    rows = [
        # a top-level "source" column would be read as the input: it goes under metadata
        {
            "instruction": "什么是保险？",
            "output": "一种合同。",
            "license": "CC-BY-4.0",
            "metadata": {"source": "FAQ"},
        },
        {
            "instruction": "What is a premium?",
            "output": "The price of a policy.",
            "provenance": {"license": "MIT", "source": "our run"},
        },
    ]
    path = write_jsonl(tmp_path / "iset.jsonl", rows)
    from sft_distill.cli import main

    assert main(
        ["distill", "--input", str(path), "--output", str(tmp_path / "o"), "--dry-run", "-q"]
    ) in (0, 4)
    raw = read_jsonl(tmp_path / "o" / "generated_raw.jsonl")
    got = {r["instruction"]: (r["license"], r["source"]) for r in raw}
    assert got == {"什么是保险？": ("CC-BY-4.0", "FAQ"), "What is a premium?": ("MIT", "our run")}
