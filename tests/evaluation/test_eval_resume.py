"""``sft-distill eval`` resumes like a run: kill -9 midway, rerun, and nothing finished is asked
again (counted by the simulator's /stats); the rerun writes what an uninterrupted eval writes."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import time
from pathlib import Path

import pytest

from sft_distill.cli import main
from sft_distill.simulator.server import SimulatorConfig, run_in_thread
from tests.helpers import start_cli

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def sim_thread():
    cfg = SimulatorConfig(latency_ms=25, jitter_ms=10, seed=3, answer_gaps={"student": 0.3})
    with run_in_thread(cfg) as sim:
        yield sim


def eval_config(path: Path, url: str) -> Path:
    """The student and one judge on the simulator at ``url`` (the run's second judge removed)."""
    ep = {
        "api_base": url,
        "api_key": "sk-eval-resume-test",
        "api_key_env": None,
        "max_concurrent": 4,
        "max_retries": 2,
        "retry_backoff_s": 0.01,
    }
    config = {
        "evaluators": {"primary": {**ep, "model": "judge-a"}, "secondary": None},
        "min_votes": 1,
        "students": {"tuned": {**ep, "model": "student"}},
    }
    path.write_text(json.dumps(config), encoding="utf-8")
    return path


def eval_args(run: Path, cfg: Path) -> list[str]:
    return ["eval", "--output", str(run), "--config", str(cfg), "--student", "tuned", "-q"]


def cached_replies(run: Path) -> int:
    with sqlite3.connect(run / "eval" / "cache.sqlite3") as db:
        return int(db.execute("SELECT COUNT(*) FROM responses").fetchone()[0])


@pytest.mark.parametrize("kill_after", [10, 60])
def test_kill_9_then_rerun_asks_only_what_was_not_answered(
    sim_thread, run_copy, tmp_path, kill_after
):
    cfg = eval_config(tmp_path / "eval.json", sim_thread.url)
    reference = run_copy()
    sim_thread.reset_stats()
    assert main(eval_args(reference, cfg)) == 0
    calls = sim_thread.stats()["chat_requests"]
    assert calls > 80  # the kill points fall inside the eval

    run = run_copy()
    sim_thread.reset_stats()
    p = start_cli(*eval_args(run, cfg))
    deadline = time.monotonic() + 60
    while sim_thread.stats()["chat_requests"] < kill_after and time.monotonic() < deadline:
        time.sleep(0.002)
    os.kill(p.pid, signal.SIGKILL)
    p.communicate(timeout=10)
    assert p.returncode == -signal.SIGKILL
    finished = cached_replies(run)
    assert 0 < finished < calls
    assert not (run / "eval" / "answers.jsonl").exists()  # written at the end only

    sim_thread.reset_stats()
    assert main(eval_args(run, cfg)) == 0  # the rerun
    assert sim_thread.stats()["chat_requests"] == calls - finished
    for name in ("answers.jsonl",):
        assert (run / "eval" / name).read_bytes() == (reference / "eval" / name).read_bytes()
    # the key never reaches an output file, the cache included
    for path in (run / "eval").iterdir():
        assert b"sk-eval-resume-test" not in path.read_bytes(), path.name
    meta = json.loads((run / "eval" / "eval_metadata.json").read_text(encoding="utf-8"))
    assert meta["whole_eval"]["invocations"] == 2
    # the whole eval's calls: those of the killed invocation (logged as they happened) and the rerun
    assert sum(u["calls"] for u in meta["usage"].values()) >= calls
    assert sum(u["this_invocation"]["calls"] for u in meta["usage"].values()) == calls - finished
