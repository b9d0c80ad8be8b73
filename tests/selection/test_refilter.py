"""``refilter``: new thresholds, dedup, caps and splits from recorded scores; zero LLM calls."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sft_distill.errors import ConfigError, InputError
from sft_distill.pipeline import DatasetDistillationPipeline
from sft_distill.selection.refilter import load_run_config, refilter
from tests.helpers import SLICES, read_jsonl, read_metadata, sim_config
from tests.raw_factory import scored, write_run


def corpus() -> list:
    same = "Article 16: the insurer may rescind the contract when the policyholder lied on purpose."
    return [
        scored("hi1", "A", (9.0, 9.0)),
        scored("hi2", "A", (8.5, 8.0)),
        scored("mid", "B", (7.5, 7.0)),
        scored("low", "B", (7.0, 6.0)),  # one vote at 7.0
        scored("bad", "C", (3.0, None)),
        scored("dup1", "C", (9.5, 9.5), instruction="What does article 16 say?", output=same),
        scored("dup2", "D", (8.0, 8.0), instruction="What does article 16 say ?", output=same),
    ]


@pytest.fixture
async def run(sim, tmp_path: Path) -> Path:
    """A finished run whose endpoints point at the simulator (so any call would be counted)."""
    return write_run(tmp_path / "out", corpus(), sim_config(sim))


def raw_by_id(out: Path) -> dict[str, dict]:
    return {r["id"]: r for r in read_jsonl(out / "generated_raw.jsonl")}


def split_ids(out: Path, name: str = "train.jsonl") -> list[str]:
    return [r["id"] for r in read_jsonl(out / name)]


async def test_refilter_applies_new_threshold_and_dedup_without_calls(sim, run):
    result = refilter(run, overrides={"min_score_threshold": 7.0, "min_votes": 2})
    raw = raw_by_id(run)
    # hi1, hi2, mid, dup1, dup2 pass; dup2 repeats dup1 (lower score) -> duplicate.
    assert result.counts["passed_thresholds"] == 5
    assert result.counts["after_dedup"] == 4
    assert raw["dup2"]["drop_reason"] == "duplicate" and raw["dup2"]["duplicate_of"] == "dup1"
    assert raw["low"]["drop_reason"] == "low_votes" and raw["bad"]["drop_reason"] == "low_votes"
    assert result.counts["dropped"] == {"duplicate": 1, "low_votes": 2}
    assert sorted(split_ids(run) + split_ids(run, "val.jsonl")) == ["dup1", "hi1", "hi2", "mid"]
    assert sim.stats["requests"] == 0

    stricter = refilter(run, overrides={"min_score_threshold": 8.5})
    assert stricter.counts["passed_thresholds"] == 2  # hi1, dup1 (hi2 has 8.0 from e1)
    assert stricter.previous_counts["after_dedup"] == 4
    assert raw_by_id(run)["mid"]["drop_reason"] == "low_votes"
    assert sorted(split_ids(run) + split_ids(run, "val.jsonl")) == ["dup1", "hi1"]
    assert sim.stats["requests"] == 0


async def test_refilter_records_itself_in_metadata_and_report(sim, run):
    refilter(run, overrides={"min_score_threshold": 8.0, "min_votes": 1})
    meta = read_metadata(run)
    assert meta["config"]["min_score_threshold"] == 8.0 and meta["config"]["min_votes"] == 1
    assert meta["refiltered"]["count"] == 1
    (entry,) = meta["refiltered"]["history"]
    assert entry["overrides"] == {"min_score_threshold": 8.0, "min_votes": 1}
    assert entry["previous_counts"]["passed_thresholds"] == sum(s.passed for s in corpus())
    assert meta["counts"]["train"] + meta["counts"]["val"] == meta["counts"]["after_dedup"]
    assert meta["report"]["settings"]["min_score_threshold"] == 8.0
    assert meta["outputs"]["files"]["sharegpt"]["train"] == "train.jsonl"
    assert "secret" not in json.dumps(meta) and "sk-test" not in json.dumps(meta)
    html = (run / "report.html").read_text(encoding="utf-8")
    assert "refiltered" in html
    refilter(run, overrides={"min_score_threshold": 8.0, "min_votes": 1})
    assert read_metadata(run)["refiltered"]["count"] == 2
    assert sim.stats["requests"] == 0


async def test_refilter_is_idempotent(run):
    refilter(run, overrides={"min_score_threshold": 7.5})
    first = {p.name: p.read_bytes() for p in run.glob("*.jsonl")}
    refilter(run, overrides={"min_score_threshold": 7.5})
    assert {p.name: p.read_bytes() for p in run.glob("*.jsonl")} == first


async def test_refilter_formats_split_by_slice_and_caps(sim, run):
    result = refilter(
        run,
        overrides={
            "min_score_threshold": 7.0,
            "output_formats": "alpaca,openai",
            "split_by": "slice",
            "train_val_split": 0.5,
            "max_per_slice": 1,
        },
    )
    raw = raw_by_id(run)
    assert raw["hi2"]["drop_reason"] == "capped"  # A keeps hi1 (9.0) only
    assert result.counts["dropped"]["capped"] == 1
    names = {p.name for p in run.iterdir()}
    assert {"train.jsonl", "train.openai.jsonl", "train.openai.provenance.jsonl"} <= names
    train = read_jsonl(run / "train.jsonl")
    assert train and set(train[0]) >= {"instruction", "input", "output", "provenance"}
    slices_train = {r["provenance"]["slice_id"] for r in train}
    slices_val = {r["provenance"]["slice_id"] for r in read_jsonl(run / "val.jsonl")}
    assert slices_train and slices_val and not slices_train & slices_val
    info = json.loads((run / "dataset_info.json").read_text(encoding="utf-8"))
    assert info["sft_distill_train"]["file_name"] == "train.jsonl"
    assert info["sft_distill_openai_train"]["formatting"] == "sharegpt"
    assert sim.stats["requests"] == 0


async def test_refilter_balance_by_uses_recorded_slice_groups(sim, tmp_path):
    groups = {"A": "auto", "B": "auto", "C": "life", "D": "life"}
    out = write_run(
        tmp_path / "out",
        corpus(),
        sim_config(sim),
        extra={"slice_groups": {"field": "type", "groups": groups}},
    )
    result = refilter(
        out,
        overrides={
            "min_score_threshold": 7.0,
            "balance_by": "type",
            "max_per_group": 1,
            "enable_dedup": False,
        },
    )
    kept = {r["id"] for r in read_jsonl(out / "generated_raw.jsonl") if r["passed"]}
    assert kept == {"hi1", "dup1"}  # the best of "auto" and the best of "life"
    assert result.counts["dropped"]["capped"] == 3
    assert sim.stats["requests"] == 0


async def test_refilter_balance_by_without_groups_or_input_is_an_error(run):
    with pytest.raises(ConfigError, match="balance_by='type'"):
        refilter(run, overrides={"balance_by": "type", "max_per_group": 1})


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"min_score_treshold": 7}, "min_score_treshold"),
        ({"min_votes": 5}, "min_votes: 5 is more than the 2 evaluators"),
        ({"output_formats": "xml"}, "'xml'"),
        ({"split_by": "chunk"}, "split_by"),
    ],
)
async def test_refilter_rejects_bad_overrides(run, overrides, fragment):
    before = (run / "generated_raw.jsonl").read_bytes()
    with pytest.raises(ConfigError, match=fragment):
        refilter(run, overrides=overrides)
    assert (run / "generated_raw.jsonl").read_bytes() == before


def test_refilter_needs_a_run_directory(tmp_path):
    with pytest.raises(InputError, match=r"metadata\.json"):
        refilter(tmp_path, overrides={})


async def test_load_run_config_drops_template_evaluators_the_run_removed(sim):
    only = {"api_base": sim.url, "model": "j"}
    cfg = sim_config(
        sim, evaluators={"primary": None, "secondary": None, "only": only}, min_votes=1
    )
    assert list(cfg.evaluators) == ["only"]
    meta = {"config": cfg.public_dict()}
    again = load_run_config(meta, {"min_score_threshold": 9})
    assert list(again.evaluators) == ["only"]
    assert again.min_score_threshold == 9 and again.generator.model == "teacher-sim"


@pytest.mark.slow  # over 0.3 s: in the full suite, not in -m "not slow"
async def test_refilter_after_a_real_run_makes_no_request_and_matches_its_splits(sim, tmp_path):
    out = tmp_path / "run"
    pipeline = DatasetDistillationPipeline(sim_config(sim), show_progress=False)
    await pipeline.run(SLICES, output_dir=out)
    before_train = read_jsonl(out / "train.jsonl")
    before_val = read_jsonl(out / "val.jsonl")
    assert sim.stats["requests"] > 0
    sim.reset_stats()

    result = await _arefilter(out, {})  # same settings: same decisions, same rows, same order
    assert sim.stats["requests"] == 0

    # Rows equal the pipeline's, in the same order (provenance is compared separately).
    def strip(rows: list[dict]) -> list[dict]:
        return [{k: v for k, v in r.items() if k != "provenance"} for r in rows]

    after_train = read_jsonl(out / "train.jsonl")
    assert strip(after_train) == strip(before_train)
    assert all(r["provenance"]["slice_id"] == r["slice_id"] for r in after_train)
    assert [r["id"] for r in read_jsonl(out / "val.jsonl")] == [r["id"] for r in before_val]
    assert result.counts["passed_thresholds"] == result.previous_counts["passed_thresholds"]

    looser = await _arefilter(
        out, {"min_score_threshold": 5.0, "min_votes": 1, "score_floors": None}
    )
    assert looser.counts["after_dedup"] > result.counts["after_dedup"]
    assert sim.stats["requests"] == 0


async def _arefilter(out: Path, overrides: dict):
    from sft_distill.selection.refilter import arefilter

    return await arefilter(out, overrides=overrides)


@pytest.mark.slow
async def test_refilter_with_embedding_dedup_embeds_nothing_again(sim, tmp_path):
    import numpy as np

    from sft_distill import DatasetDistillationPipeline, arefilter

    calls: list[int] = []

    def embed(texts):
        calls.append(len(texts))
        return np.array([[len(t) % 5 + 1.0, t.count("的") + 1.0] for t in texts])

    cfg = sim_config(sim, output_dir=str(tmp_path / "out"))
    await DatasetDistillationPipeline(cfg, embed_fn=embed, show_progress=False).run(SLICES)
    before = sum(calls)
    await arefilter(tmp_path / "out", overrides={"min_score_threshold": 7.5}, embed_fn=embed)
    assert sum(calls) == before and before > 0  # every vector came from the run's cache
    requests = sim.stats["chat_requests"]
    await arefilter(tmp_path / "out", overrides={"min_votes": 1}, embed_fn=embed)
    assert sim.stats["chat_requests"] == requests  # and no LLM call either


async def test_refilter_balance_by_on_a_distill_run_says_how(sim, tmp_path):
    import json as _json

    from sft_distill import DatasetDistillationPipeline, DistillSource, arefilter
    from sft_distill.errors import ConfigError

    src = tmp_path / "d.jsonl"
    rows = [
        {
            "instruction": f"问题{i}：保险合同是什么？",
            "output": f"保险合同是约定权利义务的协议{i}。",
            "domain": "ab"[i % 2],
        }
        for i in range(4)
    ]
    src.write_text("\n".join(_json.dumps(r, ensure_ascii=False) for r in rows), encoding="utf-8")
    cfg = sim_config(sim, output_dir=str(tmp_path / "out"), min_votes=1)
    await DatasetDistillationPipeline(cfg, show_progress=False).run(
        source=DistillSource(src, skip_generation=True)
    )
    with pytest.raises(ConfigError, match="run the distill command again with --balance-by domain"):
        await arefilter(tmp_path / "out", overrides={"balance_by": "domain", "max_per_group": 1})


@pytest.mark.slow
def test_refilter_writes_what_a_fresh_run_at_the_same_settings_writes(tmp_path):
    """Run at 7 then refilter to 8, against a fresh run at 8 on the same cache: file by file."""
    import shutil

    from sft_distill.cli import main

    refiltered, fresh = tmp_path / "refiltered", tmp_path / "fresh"
    prices = tmp_path / "prices.json"
    price = {"input_per_1k": 0.01, "output_per_1k": 0.03}
    prices.write_text(json.dumps({"prices": {"qwen-max": price, "deepseek-chat": price}}))
    common = ["--input", str(SLICES), "--dry-run", "-q", "--config", str(prices)]
    common += ["--format", "sharegpt,alpaca,openai", "--max-per-slice", "4"]
    assert main([*common, "--output", str(refiltered), "--min-score-threshold", "7"]) == 0
    fresh.mkdir()
    shutil.copy(refiltered / "cache.sqlite3", fresh / "cache.sqlite3")  # replies, no outputs
    assert main(["refilter", "--output", str(refiltered), "--min-score-threshold", "8"]) == 0
    assert main([*common, "--output", str(fresh), "--min-score-threshold", "8"]) == 0

    def outputs(out: Path) -> dict[str, bytes]:
        skip = {"cache.sqlite3", "metadata.json", "report.html", ".sft_distill.lock"}
        return {p.name: p.read_bytes() for p in sorted(out.iterdir()) if p.name not in skip}

    got, want = outputs(refiltered), outputs(fresh)
    assert {"train.alpaca.jsonl", "val.openai.provenance.jsonl", "manifest.json"} <= set(want)
    assert list(got) == list(want)
    for name in want:  # splits in every format, raw, failures, dataset_info, manifest
        assert got[name] == want[name], name
    manifest = json.loads(want["manifest.json"])
    kept = {r["id"] for r in read_jsonl(fresh / "train.jsonl") + read_jsonl(fresh / "val.jsonl")}
    assert set(manifest["samples"]["train"]) | set(manifest["samples"]["val"]) == kept

    def comparable(meta: dict) -> dict:
        meta = json.loads(json.dumps(meta))
        # When and how long each command ran: wall-clock figures of one invocation.
        meta.pop("timings_s")
        # The refilter's own record of itself (history, time stamps).
        meta.pop("refiltered", None)
        # The fresh run is a second invocation of the same run; refilter is not one.
        meta.pop("whole_run")
        for u in meta["usage"].values():
            u.pop("this_invocation")  # the fresh run's own calls (none: all cached)
        meta["report"]["run"].pop("refiltered")
        meta["report"].pop("usage")  # this invocation vs whole run, by invocation
        meta["report"]["cost"].pop("this_invocation")  # the fresh run's own cost: nothing
        tp = meta["report"]["throughput"]
        for key in ("kept_per_hour", "run_wall_s", "this_invocation"):
            tp.pop(key)  # per hour of wall time: the fresh run's own minutes count
        meta["config"].pop("output_dir")  # two directories
        return meta

    a, b = read_metadata(refiltered), read_metadata(fresh)
    assert a["report"]["cost"]["total"] > 0  # the whole run's cost, the same in both
    assert (
        a["counts"]["passed_thresholds"]
        < a["refiltered"]["history"][0]["previous_counts"]["passed_thresholds"]
    )
    assert comparable(a) == comparable(b)


# --- score floors (issue 12) ------------------------------------------------------------------

FIVE = ("accuracy", "completeness", "logicality", "helpfulness", "safety")


def _eval_v1_run(sim, out: Path) -> Path:
    """A run judged before floors existed: its config recorded no score_floors, and one sample
    (like every eval-v1 judgement) has no standalone score."""
    low_accuracy = {**dict.fromkeys((*FIVE, "standalone"), 8.0), "accuracy": 3.0}
    samples = [
        # The example: accuracy 3 and 4, 8 elsewhere; means 7.0 and 7.2 passed.
        scored("wrong", "A", (low_accuracy, {**low_accuracy, "accuracy": 4.0})),
        scored("legacy", "B", (dict.fromkeys(FIVE, 8.0), dict.fromkeys(FIVE, 8.5))),
        scored("fine", "C", (9.0, 8.0)),
    ]
    assert all(s.passed for s in samples)  # decided without floors
    write_run(out, samples, sim_config(sim))
    meta = read_metadata(out)
    del meta["config"]["score_floors"]
    (out / "metadata.json").write_text(json.dumps(meta), encoding="utf-8")
    return out


async def test_refilter_reapplies_score_floors_from_recorded_scores(sim, tmp_path, cli):
    out = _eval_v1_run(sim, tmp_path / "out")
    done = cli("refilter", "--output", str(out))
    assert done.returncode == 0, done.stderr
    raw = raw_by_id(out)
    assert raw["wrong"]["drop_reason"] == "below_floor"
    assert raw["wrong"]["drop_detail"] == "e0: accuracy 3 < 6; e1: accuracy 4 < 6"
    # Judged before standalone existed: that floor does not apply to it.
    assert raw["legacy"]["passed"] and raw["fine"]["passed"]
    assert read_metadata(out)["config"]["score_floors"] == {"accuracy": 6.0, "standalone": 5.0}
    assert "below_floor 1" in done.stdout
    # Floors off: the recorded means decide alone again, and "no floors" is what is recorded.
    done = cli("refilter", "--output", str(out), "--config", str(_floors(tmp_path, None)))
    assert done.returncode == 0, done.stderr
    assert raw_by_id(out)["wrong"]["passed"]
    assert read_metadata(out)["config"]["score_floors"] is None
    # A refilter without overrides keeps the recorded "no floors".
    assert cli("refilter", "--output", str(out)).returncode == 0
    assert raw_by_id(out)["wrong"]["passed"]
    # A lower floor lets both judges' votes count.
    done = cli(
        "refilter", "--output", str(out), "--config", str(_floors(tmp_path, {"accuracy": 3}))
    )
    assert done.returncode == 0 and raw_by_id(out)["wrong"]["passed"]
    assert sim.stats["requests"] == 0


def _floors(tmp_path: Path, floors: dict | None) -> Path:
    path = tmp_path / "floors.json"
    path.write_text(json.dumps({"score_floors": floors}), encoding="utf-8")
    return path
