"""``--engine ray``: the same job on a local Ray instance gives a local run's outputs."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest

from sft_distill.ids import shard_of
from sft_distill.pipeline import DatasetDistillationPipeline
from sft_distill.simulator.server import Simulator, SimulatorConfig
from tests.helpers import (
    SLICES,
    TEST_DATA,
    make_input,
    outputs,
    read_jsonl,
    read_metadata,
    sim_config,
    write_jsonl,
)


def _ids(out: Path) -> tuple[list[str], list[str]]:
    return (
        [r["id"] for r in read_jsonl(out / "train.jsonl")],
        [r["id"] for r in read_jsonl(out / "val.jsonl")],
    )


def _manifest(out: Path) -> dict[str, Any]:
    m = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    m.pop("created", None)
    return m


async def test_ray_run_equals_local_run(ray_local: Any, tmp_path: Path) -> None:
    # Each text twice under two ids: near-duplicate samples fall in different shards.
    rows = read_jsonl(make_input(tmp_path / "in.jsonl", 12))
    rows += [{"id": f"copy-{r['id']}", "content": r["content"] + "（副本）"} for r in rows]
    inp = write_jsonl(tmp_path / "in.jsonl", rows)
    async with Simulator(SimulatorConfig(latency_ms=2.0)) as sim:
        config = sim_config(sim)
        local = await DatasetDistillationPipeline(config, show_progress=False).run(
            inp, output_dir=tmp_path / "local"
        )
        ray = await DatasetDistillationPipeline(
            config, show_progress=False, engine="ray", workers=2
        ).run(inp, output_dir=tmp_path / "ray")
    a, b = tmp_path / "local", tmp_path / "ray"
    assert local.counts.model_dump() == ray.counts.model_dump()
    assert _ids(a) == _ids(b) and _ids(a)[0]
    assert outputs(a) == outputs(b)  # train, val and the raw file with every decision
    assert _manifest(a) == _manifest(b)
    meta = read_metadata(b)
    assert meta["engine"]["shards"] == 2
    assert sum(s["slices"] for s in meta["engine"]["per_shard"].values()) == 24
    assert all(s["slices"] for s in meta["engine"]["per_shard"].values())
    # Near-duplicates were resolved across shards, as the local run did.
    raw = {r["id"]: r for r in read_jsonl(b / "generated_raw.jsonl")}
    dupes = [r for r in raw.values() if r.get("drop_reason") == "duplicate"]
    assert meta["dedup"]["removed"] == len(dupes) > 0
    assert any(
        shard_of(r["slice_id"], 2) != shard_of(raw[r["duplicate_of"]]["slice_id"], 2) for r in dupes
    )
    assert (b / "shards/0/cache.sqlite3").is_file() and (b / "shards/1/done").is_file()
    # Each shard sketched its samples: the driver merged their MinHash indexes.
    assert all((b / f"shards/{k}/signatures.npz").is_file() for k in (0, 1))


async def test_no_request_twice_and_peak_within_global_limits(
    ray_local: Any, tmp_path: Path
) -> None:
    inp = make_input(tmp_path / "in.jsonl", 16)
    limits = {"generator": 3, "primary": 2, "secondary": 2}
    async with AsyncExitStack() as stack:
        sims = {
            name: await stack.enter_async_context(
                Simulator(SimulatorConfig(latency_ms=40.0, keep_prompts=True))
            )
            for name in limits
        }

        def ep(name: str, model: str) -> dict[str, Any]:
            return {
                "api_base": sims[name].url,
                "model": model,
                "api_key": "sk-test-0000",
                "api_key_env": None,
                "max_concurrent": limits[name],
            }

        config = sim_config(
            sims["generator"],
            generator=ep("generator", "teacher-sim"),
            evaluators={"primary": ep("primary", "judge-a"), "secondary": ep("secondary", "b")},
        )
        pipeline = DatasetDistillationPipeline(config, show_progress=False, engine="ray", workers=2)
        await pipeline.run(inp, output_dir=tmp_path / "out")
        for name, sim in sims.items():
            # Each of the 2 workers alone would send up to the limit: together, never more.
            assert 1 < sim.stats["peak_in_flight"] <= limits[name], name
            repeated = [n for n in Counter(sim.bodies).values() if n > 1]
            assert sim.stats["chat_requests"] > 0 and not repeated, name
        sent = {name: sim.stats["chat_requests"] for name, sim in sims.items()}
        # A rerun finds every shard done: nothing is sent, the outputs are written again.
        before = outputs(tmp_path / "out")
        await pipeline.run(inp, output_dir=tmp_path / "out")
        assert {name: sim.stats["chat_requests"] for name, sim in sims.items()} == sent
        assert outputs(tmp_path / "out") == before
    limits_seen = read_metadata(tmp_path / "out")["engine"]["limits"]
    assert all(limits_seen[n]["peak_in_flight"] <= limits[n] for n in limits)


def test_cli_engine_ray(ray_local: Any, tmp_path: Path, cli: Any) -> None:
    inp = make_input(tmp_path / "in.jsonl", 6)
    res = cli("-i", str(inp), "-o", str(tmp_path / "out"), "--dry-run", "-q", "--engine", "ray")
    assert res.returncode == 0, res.stderr
    assert "6 slices" in res.stdout
    assert read_metadata(tmp_path / "out")["engine"]["workers"] == 2


def test_engine_ray_without_ray_is_one_line(
    tmp_path: Path, cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # as if it were not installed
    inp = make_input(tmp_path / "in.jsonl", 2)
    res = cli("-i", str(inp), "-o", str(tmp_path / "out"), "--dry-run", "--engine", "ray")
    assert res.returncode == 2
    assert res.stderr == (
        "sft-distill: error: --engine ray needs Ray: pip install 'sft-distill[ray]'\n"
    )
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--workers", "2"], "--workers needs --engine ray"),
        (["--address", "auto"], "--address needs --engine ray"),
        (["--engine", "ray", "--workers", "0"], "--workers must be at least 1, got 0"),
    ],
)
def test_engine_flags(tmp_path: Path, cli: Any, flags: list[str], message: str) -> None:
    inp = make_input(tmp_path / "in.jsonl", 2)
    res = cli("-i", str(inp), "-o", str(tmp_path / "out"), "--dry-run", *flags)
    assert res.returncode == 2
    assert res.stderr == f"sft-distill: error: {message}\n"


@pytest.mark.slow  # over 0.3 s: in the full suite, not in -m "not slow"
def test_ray_is_imported_only_by_engine_ray(tmp_path: Path) -> None:
    inp = make_input(tmp_path / "in.jsonl", 2)
    code = (
        "import sys\n"
        "from sft_distill.cli import main\n"
        f"main(['-i', {str(inp)!r}, '-o', {str(tmp_path / 'out')!r}, '--dry-run', '-q'])\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "print('ray' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip().splitlines()[-1] == "False", done.stderr


@pytest.mark.parametrize("mode", ["distill", "augment"])
def test_record_modes_on_ray_equal_local(
    ray_local: Any, tmp_path: Path, cli: Any, mode: str
) -> None:
    inp = TEST_DATA / "iset_alpaca.jsonl"
    for engine in ("local", "ray"):
        out = tmp_path / engine
        res = cli(mode, "-i", str(inp), "-o", str(out), "--dry-run", "-q", "--engine", engine)
        assert res.returncode == 0, res.stderr
    assert outputs(tmp_path / "local") == outputs(tmp_path / "ray")
    local, ray = read_metadata(tmp_path / "local"), read_metadata(tmp_path / "ray")
    assert local["counts"] == ray["counts"]
    assert local.get("source_counts") == ray.get("source_counts")
    assert all(s["slices"] for s in ray["engine"]["per_shard"].values())


def test_topics_on_ray_is_refused_in_one_line(ray_local: Any, tmp_path: Path, cli: Any) -> None:
    out = tmp_path / "out"
    res = cli("topics", "--topic", "保险法", "-o", str(out), "--dry-run", "--engine", "ray")
    assert res.returncode == 2
    assert res.stderr == (
        "sft-distill: error: --engine ray: the topics mode cannot be split into shards; "
        "use --engine local\n"
    )
    assert not out.exists()


def test_batch_on_ray_is_refused_in_one_line(ray_local: Any, tmp_path: Path, cli: Any) -> None:
    out = tmp_path / "out"
    args = ("-i", str(SLICES), "-o", str(out), "--dry-run", "--engine", "ray", "--workers", "1")
    res = cli(*args, "--batch")
    assert res.returncode == 2
    assert res.stderr.startswith("sft-distill: error: --engine ray does not send Batch API")
    assert len(res.stderr.strip().splitlines()) == 1
    # Nothing was asked: the same directory takes the run without --batch, no --overwrite.
    assert cli(*args, "-q").returncode == 0
