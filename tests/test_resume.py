"""Never lose work, never pay twice: kill -9, SIGINT/SIGTERM, reruns with changed settings."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from sft_distill import DatasetDistillationPipeline
from sft_distill.cli import main
from sft_distill.errors import OutputError
from sft_distill.simulator.server import SimulatorConfig, run_in_thread
from tests.helpers import (
    cache_rows,
    make_input,
    outputs,
    read_jsonl,
    run_args,
    sim_config,
    start_cli,
    write_config,
)


@pytest.fixture(scope="module")
def sim_thread():
    with run_in_thread(SimulatorConfig(latency_ms=25, jitter_ms=15, seed=7)) as sim:
        yield sim


@pytest.fixture(scope="module")
def reference(sim_thread, tmp_path_factory):
    """An uninterrupted run: its outputs and how many calls it needed."""
    d = tmp_path_factory.mktemp("ref")
    # No gates: every sample is judged, so the kill points fall inside the run.
    # One judge call per sample: a reply per call, so the cache's rows count the calls made.
    inp = make_input(d / "in.jsonl")
    cfg = write_config(d / "c.json", sim_thread.url, gates=[], judge_batch_size=1)
    sim_thread.reset_stats()
    assert main(run_args(inp, d / "out", cfg)) == 0
    return {
        "inp": inp,
        "cfg": cfg,
        "calls": sim_thread.stats()["chat_requests"],
        "outputs": outputs(d / "out"),
    }


@pytest.mark.parametrize("kill_after", [5, 60, 130])
@pytest.mark.slow
def test_kill_9_then_rerun_gives_the_same_dataset_and_resends_only_unfinished(
    sim_thread, reference, tmp_path, kill_after
):
    assert reference["calls"] > 140  # the kill points fall inside the run
    out = tmp_path / "out"
    sim_thread.reset_stats()
    p = start_cli(*run_args(reference["inp"], out, reference["cfg"]))
    deadline = time.monotonic() + 60
    while sim_thread.stats()["chat_requests"] < kill_after and time.monotonic() < deadline:
        time.sleep(0.002)
    os.kill(p.pid, signal.SIGKILL)
    p.communicate(timeout=10)
    assert p.returncode == -signal.SIGKILL
    sent_before_kill = sim_thread.stats()["chat_requests"]
    finished = cache_rows(out)
    assert finished < reference["calls"]
    if kill_after >= 60:
        assert finished > 0  # late kills interrupt a run that has finished work to keep

    sim_thread.reset_stats()
    assert main(run_args(reference["inp"], out, reference["cfg"])) == 0  # the rerun
    resent = sim_thread.stats()["chat_requests"]
    assert resent == reference["calls"] - finished  # only calls without a recorded reply
    # Lost: what was in flight (3 endpoints x 4) plus replies still queued for the cache writer
    # thread at the kill (a few ms of replies; more when the machine is loaded).
    assert sent_before_kill - finished <= 24
    assert outputs(out) == reference["outputs"]  # same samples, none duplicated or missing


@pytest.mark.parametrize(
    ("sig", "code", "name"), [(signal.SIGINT, 130, "SIGINT"), (signal.SIGTERM, 143, "SIGTERM")]
)
@pytest.mark.slow
def test_signal_stops_quickly_with_a_message_and_resumes(
    sim_thread, reference, tmp_path, sig, code, name
):
    out = tmp_path / "out"
    sim_thread.reset_stats()
    p = start_cli(*run_args(reference["inp"], out, reference["cfg"]))
    while sim_thread.stats()["chat_requests"] < 40:
        time.sleep(0.002)
    t0 = time.monotonic()
    p.send_signal(sig)
    _, err = p.communicate(timeout=30)
    assert time.monotonic() - t0 < 5
    assert p.returncode == code
    assert f"interrupted by {name}" in err and "rerun the same command" in err
    assert "Traceback" not in err
    finished = cache_rows(out)
    sim_thread.reset_stats()
    assert main(run_args(reference["inp"], out, reference["cfg"])) == 0  # the rerun
    assert sim_thread.stats()["chat_requests"] == reference["calls"] - finished
    assert outputs(out) == reference["outputs"]


async def test_adding_an_evaluator_sends_only_its_calls(sim, tmp_path):
    inp = make_input(tmp_path / "in.jsonl", n=6)
    one = sim_config(
        sim,
        output_dir=str(tmp_path / "out"),
        min_votes=1,
        gates=[],  # every sample judged: the new judge's calls are one per sample
        evaluators={
            "primary": {"api_base": sim.url, "model": "judge-a", "api_key_env": None},
            "secondary": None,
        },
    )
    first = await DatasetDistillationPipeline(one, show_progress=False).run(inp)
    sim.reset_stats()
    two = sim_config(sim, output_dir=str(tmp_path / "out"), min_votes=1, gates=[])
    second = await DatasetDistillationPipeline(two, show_progress=False).run(inp)
    # Batched judging: one call per chunk (each of these chunks has its samples judged).
    raw = read_jsonl(tmp_path / "out" / "generated_raw.jsonl")
    chunks = {(r["slice_id"], r["chunk_index"]) for r in raw}
    assert sim.stats["by_model"] == {"judge-b": len(chunks)}
    assert len(chunks) < first.counts.samples_generated
    assert second.counts.samples_generated == first.counts.samples_generated


async def test_raising_max_tokens_resends_only_truncated_replies(sim, tmp_path):
    inp = make_input(tmp_path / "in.jsonl", n=10)
    out = str(tmp_path / "out")
    ep = {"api_base": sim.url, "api_key_env": None, "max_retries": 1, "retry_backoff_s": 0.0}
    # No gates: every new sample is judged by both judges. gen-v2 replies carry evidence, type
    # and difficulty: 425 tokens cuts about half of them.
    small = sim_config(
        sim,
        output_dir=out,
        gates=[],
        judge_batch_size=1,
        early_drop=False,
        generator={**ep, "model": "teacher-sim", "max_tokens": 425},
    )
    first = await DatasetDistillationPipeline(small, show_progress=False).run(inp)
    truncated = first.counts.generation_failed_chunks
    assert 0 < truncated < first.counts.chunks  # some replies were cut, some were not
    failures = read_jsonl(Path(out, "failures.jsonl"))
    assert all("finish_reason=length" in f["reason"] for f in failures)

    sim.reset_stats()
    sim.requests_log.clear()
    big = sim_config(
        sim,
        output_dir=out,
        gates=[],
        judge_batch_size=1,
        early_drop=False,
        generator={**ep, "model": "teacher-sim", "max_tokens": 8000},
    )
    second = await DatasetDistillationPipeline(big, show_progress=False).run(inp)
    gen_calls = sum(1 for kind, _, _ in sim.requests_log if kind == "generation")
    assert gen_calls == truncated
    new_samples = second.counts.samples_generated - first.counts.samples_generated
    assert sim.stats["by_kind"].get("evaluation", 0) == 2 * new_samples
    assert second.failures == 0


@pytest.mark.slow
async def test_output_dir_of_another_run_is_never_overwritten_silently(sim, tmp_path):
    a = make_input(tmp_path / "a.jsonl", n=3)
    b = tmp_path / "b.jsonl"
    b.write_text(
        '{"id": "x", "content": "第一条 为了规范保险活动，制定本法。"}\n', encoding="utf-8"
    )
    cfg = sim_config(sim, output_dir=str(tmp_path / "out"))
    await DatasetDistillationPipeline(cfg, show_progress=False).run(a)
    before = (tmp_path / "out" / "train.jsonl").read_bytes()
    with pytest.raises(OutputError, match="holds the results of another run"):
        await DatasetDistillationPipeline(cfg, show_progress=False).run(b)
    assert (tmp_path / "out" / "train.jsonl").read_bytes() == before
    calls = sim.stats["chat_requests"]
    result = await DatasetDistillationPipeline(cfg, show_progress=False, overwrite=True).run(b)
    assert result.counts.slices == 1 and sim.stats["chat_requests"] > calls
    # the same input again is a resume, not "another run"
    await DatasetDistillationPipeline(cfg, show_progress=False).run(b)
    result = await DatasetDistillationPipeline(cfg, show_progress=False, fresh=True).run(a)
    assert result.counts.slices == 3
    mine = result.metadata["usage"]["generator"]["this_invocation"]
    assert mine["cached"] == 0  # fresh dropped the cache


async def test_foreign_files_in_output_dir_are_protected(sim, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "train.jsonl").write_text("my own data\n", encoding="utf-8")
    cfg = sim_config(sim, output_dir=str(out))
    with pytest.raises(OutputError, match="another run"):
        await DatasetDistillationPipeline(cfg, show_progress=False).run(
            make_input(tmp_path / "a.jsonl", n=2)
        )
    assert (out / "train.jsonl").read_text(encoding="utf-8") == "my own data\n"


async def test_the_same_input_at_another_path_still_resumes(sim, tmp_path):
    a = make_input(tmp_path / "a.jsonl", n=3)
    moved = tmp_path / "elsewhere" / "a.jsonl"
    moved.parent.mkdir()
    moved.write_bytes(a.read_bytes())
    cfg = sim_config(sim, output_dir=str(tmp_path / "out"))
    await DatasetDistillationPipeline(cfg, show_progress=False).run(a)
    calls = sim.stats["chat_requests"]
    result = await DatasetDistillationPipeline(cfg, show_progress=False).run(moved)
    assert sim.stats["chat_requests"] == calls and result.counts.slices == 3


@pytest.mark.slow
def test_a_second_process_on_the_same_output_dir_is_refused(sim_thread, reference, tmp_path):
    from sft_distill.outputs.writers import lock_output_dir

    out = tmp_path / "out"
    out.mkdir()
    with lock_output_dir(out):  # as a run in progress holds it
        q = start_cli(*run_args(reference["inp"], out, reference["cfg"]))
        _, err = q.communicate(timeout=60)
    assert q.returncode == 2 and "in use by another sft-distill process" in err
    # free again: the run goes ahead
    assert main(run_args(reference["inp"], out, reference["cfg"])) == 0
