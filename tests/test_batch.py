"""``--batch``: whole runs through the Batch API, the same kept set as online, resumed after
``kill -9`` without a second submission, failed and expired lines asked again alone."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sft_distill.cli import main
from sft_distill.llm.structured import PriceCard, cost
from sft_distill.simulator.server import SimulatorConfig, run_in_thread
from tests.helpers import dry_run, make_input, read_metadata, run_args, start_cli, write_config

KEY = "sk-resume-test"  # write_config's key
# Quick polls and a short quiet period: waves go out fast against the simulator.
FAST = {"batch_poll_s": 0.05, "batch_collect_s": 0.15}
KEPT_FILES = ("train.jsonl", "val.jsonl", "generated_raw.jsonl")


def kept(out: Path) -> dict[str, bytes]:
    """The files that hold the kept set and every judged sample."""
    return {name: (out / name).read_bytes() for name in KEPT_FILES}


def usage_totals(out: Path) -> dict[str, int]:
    """Calls and batched calls over the whole run, summed over endpoints and models."""
    totals = {"calls": 0, "batch_calls": 0}
    for u in read_metadata(out)["usage"].values():
        for m in u["models"].values():
            totals["calls"] += m["calls"]
            totals["batch_calls"] += m.get("batch_calls", 0)
    return totals


@pytest.mark.slow  # over 0.3 s: in the full suite, not in -m "not slow"
def test_a_batch_dry_run_keeps_the_same_set_as_the_online_one(tmp_path: Path, capsys: Any) -> None:
    inp = make_input(tmp_path / "in.jsonl", n=6)
    cfg = tmp_path / "fast.json"
    cfg.write_text(json.dumps(FAST), encoding="utf-8")
    assert dry_run(inp, tmp_path / "online") == 0
    capsys.readouterr()
    assert dry_run(inp, tmp_path / "batch", "--batch", "--config", str(cfg)) == 0
    assert "generator 6 calls (5 batched)" in capsys.readouterr().out  # the summary says so
    assert kept(tmp_path / "batch") == kept(tmp_path / "online")
    online, batched = usage_totals(tmp_path / "online"), usage_totals(tmp_path / "batch")
    assert online["batch_calls"] == 0
    assert batched["calls"] == online["calls"]
    # Only each endpoint's structured-output probe went online.
    assert batched["batch_calls"] == batched["calls"] - 3


@pytest.mark.slow  # over 0.3 s: in the full suite, not in -m "not slow"
def test_an_endpoint_can_stay_online_in_a_batch_run(tmp_path: Path) -> None:
    inp = make_input(tmp_path / "in.jsonl", n=4)
    cfg = tmp_path / "mixed.json"
    online = {"batch": False}
    mixed = {**FAST, "batch": True, "evaluators": {"primary": online, "secondary": online}}
    cfg.write_text(json.dumps(mixed), encoding="utf-8")
    assert dry_run(inp, tmp_path / "online") == 0
    assert dry_run(inp, tmp_path / "mixed", "--config", str(cfg)) == 0
    assert kept(tmp_path / "mixed") == kept(tmp_path / "online")
    usage = read_metadata(tmp_path / "mixed")["usage"]
    assert usage["generator"]["this_invocation"]["batch_calls"] == 3  # all but the probe
    assert usage["primary"]["this_invocation"]["batch_calls"] == 0
    assert usage["secondary"]["this_invocation"]["batch_calls"] == 0


@pytest.fixture
def sim_process() -> Iterator[str]:
    """A simulator in its own process whose batches stay in_progress for two seconds."""
    p = subprocess.Popen(
        [sys.executable, "-m", "sft_distill.simulator", "--batch-delay-s", "2.0", "--seed", "3"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert p.stdout is not None
        line = p.stdout.readline()
        assert "listening on" in line, line
        yield line.split()[-1]
    finally:
        p.terminate()
        p.wait(10)
        if p.stdout is not None:
            p.stdout.close()


def stats(url: str) -> dict[str, Any]:
    base = url.removesuffix("/v1")
    with urllib.request.urlopen(f"{base}/stats", timeout=10) as r:
        return dict(json.loads(r.read()))


def files_left(url: str) -> list[dict[str, Any]]:
    with urllib.request.urlopen(f"{url}/files", timeout=10) as r:
        return list(json.loads(r.read())["data"])


def reset(url: str) -> None:
    req = urllib.request.Request(f"{url.removesuffix('/v1')}/stats/reset", method="POST")
    urllib.request.urlopen(req, timeout=10).close()


@pytest.mark.slow
def test_kill_9_during_a_batch_then_rerun_resumes_it_without_submitting_again(
    sim_process: str, tmp_path: Path
) -> None:
    url = sim_process
    inp = make_input(tmp_path / "in.jsonl", n=6)
    # One judge call per sample, both judges at once: the waves below are counted for it.
    cfg = write_config(
        tmp_path / "c.json",
        url,
        gates=[],
        batch=True,
        judge_batch_size=1,
        early_drop=False,
        **FAST,
    )
    assert main(run_args(inp, tmp_path / "ref", cfg)) == 0  # uninterrupted, for comparison
    ref = stats(url)
    # The first wave: the teacher's requests and the judges' of the probe's samples (the
    # structured-output probes go online); the second: the judges' of the other samples.
    assert ref["batches_created"] == 5

    reset(url)
    out = tmp_path / "out"
    p = start_cli(*run_args(inp, out, cfg))
    deadline = time.monotonic() + 60
    while stats(url)["batches_created"] < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.3)  # the batch ids are recorded; the batches are still in progress (2 s)
    os.kill(p.pid, signal.SIGKILL)
    p.communicate(timeout=10)
    assert p.returncode == -signal.SIGKILL
    killed = stats(url)
    assert killed["batches_created"] == 3 and killed["batch_lines"] == 0  # still in progress

    assert main(run_args(inp, out, cfg)) == 0  # the rerun polls the same batch
    after = stats(url)
    assert after["batches_created"] == ref["batches_created"]  # not one more
    assert after["batch_lines_submitted"] == ref["batch_lines_submitted"]
    assert kept(out) == kept(tmp_path / "ref")
    assert files_left(url) == []  # inputs, outputs: all deleted after use
    assert after["files_uploaded"] == after["batches_created"]
    assert after["files_with_auth_key"] == 0
    with sqlite_rows(out) as rows:
        assert rows == []  # finished jobs are forgotten after a clean run


class sqlite_rows:
    """``with sqlite_rows(out) as rows``: the batch jobs left in the output's cache."""

    def __init__(self, out: Path) -> None:
        import sqlite3

        self._db = sqlite3.connect(out / "cache.sqlite3")

    def __enter__(self) -> list[tuple[Any, ...]]:
        return list(self._db.execute("SELECT * FROM batch_jobs"))

    def __exit__(self, *exc: object) -> None:
        self._db.close()


@pytest.mark.slow
def test_failed_and_expired_lines_are_asked_again_alone(tmp_path: Path) -> None:
    inp = make_input(tmp_path / "in.jsonl", n=6)
    with run_in_thread(SimulatorConfig(seed=3)) as sim:
        online_cfg = write_config(tmp_path / "o.json", sim.url, gates=[])
        assert main(run_args(inp, tmp_path / "online", online_cfg)) == 0
        online_calls = sim.stats()["chat_requests"]

        sim.config.batch_fail_lines = 2
        sim.config.batch_expire = 1  # the first batch expires with half its lines unanswered
        sim.reset_stats()
        cfg = write_config(tmp_path / "b.json", sim.url, gates=[], batch=True, **FAST)
        assert main(run_args(inp, tmp_path / "batch", cfg)) == 0
        st = sim.stats()
        assert files_left(sim.url) == []  # inputs, outputs and error files all deleted
    assert kept(tmp_path / "batch") == kept(tmp_path / "online")
    assert st["batch_lines_failed"] == 2 and st["batch_lines_expired"] > 0
    answered = st["batch_lines"] - st["batch_lines_failed"]
    # Only the failed and expired lines were sent again: every request answered once.
    assert (
        st["batch_lines_submitted"]
        == answered + st["batch_lines_failed"] + st["batch_lines_expired"]
    )
    assert answered + 3 == online_calls  # + the three online probes
    totals = usage_totals(tmp_path / "batch")
    assert totals["batch_calls"] == answered
    retries = sum(
        u["this_invocation"]["retries"] for u in read_metadata(tmp_path / "batch")["usage"].values()
    )
    assert retries == st["batch_lines_failed"] + st["batch_lines_expired"]
    assert st["files_uploaded"] == st["batches_created"] and st["files_with_auth_key"] == 0
    for path in (tmp_path / "batch").rglob("*"):
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), path


@pytest.mark.slow  # over 0.3 s: in the full suite, not in -m "not slow"
def test_batched_calls_are_billed_at_the_batch_price_in_metadata_and_report(
    tmp_path: Path,
) -> None:
    inp = make_input(tmp_path / "in.jsonl", n=4)
    price = {"input_per_1k": 1.0, "output_per_1k": 3.0, "cached_input_per_1k": 0.1}
    models = ("qwen-max", "deepseek-chat", "moonshot-v1-8k")  # the defaults' models
    prices = {m: {**price, "batch_discount": 0.5} for m in models}
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({**FAST, "prices": prices}), encoding="utf-8")
    out = tmp_path / "out"
    assert dry_run(inp, out, "--batch", "--config", str(cfg)) == 0
    meta = read_metadata(out)
    card = PriceCard.from_config(prices["qwen-max"])
    total = 0.0
    for u in meta["usage"].values():
        for model, m in u["models"].items():
            assert m["batch_calls"] == m["calls"] - 1  # all but the probe
            online = cost(
                m["prompt_tokens"] - m["batch_prompt_tokens"],
                m["cached_prompt_tokens"] - m["batch_cached_prompt_tokens"],
                m["completion_tokens"] - m["batch_completion_tokens"],
                price=card,
            )
            batched = cost(
                m["batch_prompt_tokens"],
                m["batch_cached_prompt_tokens"],
                m["batch_completion_tokens"],
                price=card,
                batched=True,
            )
            figures = meta["report"]["cost"]["per_model"][model]
            assert figures["cost"] == pytest.approx(online + batched)
            assert figures["cost"] < cost(
                m["prompt_tokens"], m["cached_prompt_tokens"], m["completion_tokens"], price=card
            )
            total += online + batched
    assert meta["report"]["cost"]["total"] == pytest.approx(total)
    # A rerun (every reply cached) reads the same figures back from the call log.
    assert dry_run(inp, out, "--batch", "--config", str(cfg)) == 0
    assert read_metadata(out)["report"]["cost"]["total"] == pytest.approx(total)


def test_estimate_with_batch_shows_batch_prices(tmp_path: Path, capsys: Any) -> None:
    inp = make_input(tmp_path / "in.jsonl", n=3)
    prices = {"input_per_1k": 1.0, "output_per_1k": 2.0, "batch_discount": 0.5}
    cfg = write_config(tmp_path / "c.json", "http://127.0.0.1:9/v1", prices={"teacher-sim": prices})
    args = ["--input", str(inp), "--config", str(cfg), "--estimate", "--no-probe"]
    assert main(args) == 0
    online = capsys.readouterr().out
    assert main([*args, "--batch"]) == 0
    batched = capsys.readouterr().out

    def generator_cost(text: str) -> float:
        row = next(ln for ln in text.splitlines() if ln.startswith("generator"))
        return float(row.split()[-2].replace(",", ""))

    assert generator_cost(batched) == pytest.approx(generator_cost(online) / 2, rel=1e-3)
    assert "Through the Batch API" in batched and "Through the Batch API" not in online


@pytest.mark.slow
def test_kill_9_during_a_batch_of_batched_judging_then_rerun_submits_nothing_again(
    sim_process: str, tmp_path: Path
) -> None:
    # The defaults: a chunk's samples judged in one request, that request in a provider batch.
    url = sim_process
    inp = make_input(tmp_path / "in.jsonl", n=6)
    cfg = write_config(tmp_path / "c.json", url, gates=[], batch=True, **FAST)
    assert main(run_args(inp, tmp_path / "ref", cfg)) == 0
    ref = stats(url)
    reset(url)
    out = tmp_path / "out"
    p = start_cli(*run_args(inp, out, cfg))
    deadline = time.monotonic() + 60
    while stats(url)["batches_created"] < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.3)  # the batch ids are recorded; the batches are still in progress (2 s)
    os.kill(p.pid, signal.SIGKILL)
    p.communicate(timeout=10)
    assert stats(url)["batch_lines"] == 0  # killed while its batches were in progress
    assert main(run_args(inp, out, cfg)) == 0
    after = stats(url)
    assert after["batches_created"] == ref["batches_created"]
    assert after["batch_lines_submitted"] == ref["batch_lines_submitted"]
    assert kept(out) == kept(tmp_path / "ref")
    judge_lines = sum(
        1 for r in map(json.loads, (out / "generated_raw.jsonl").read_text().splitlines())
    )
    assert ref["batch_lines_submitted"] < 6 + 2 * judge_lines  # judged in batches
