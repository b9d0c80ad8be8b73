"""A run's life in its output directory: failed starts, --fresh, whole-run figures, progress."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import sys
import time
from pathlib import Path

import pytest

from sft_distill.cli import main
from sft_distill.outputs.writers import LOCK_FILENAME, lock_output_dir
from sft_distill.simulator.server import SimulatorConfig, run_in_thread
from tests.helpers import (
    SLICES,
    cache_rows,
    cli_config,
    dry_run,
    make_input,
    read_metadata,
    run_args,
    start_cli,
    write_config,
)

PRICES = {
    "qwen-max": {"input_per_1k": 0.02, "output_per_1k": 0.06},
    "deepseek-chat": {"input_per_1k": 0.001, "output_per_1k": 0.002},
    "moonshot-v1-8k": {"input_per_1k": 0.012, "output_per_1k": 0.012},
}


def files(out: Path) -> dict[str, bytes]:
    """Every file the run left in ``out`` (the lock file is no output)."""
    return {p.name: p.read_bytes() for p in sorted(out.iterdir()) if p.name != LOCK_FILENAME}


# -- item 8: a run that failed before any work leaves nothing in the way ----------------------


@pytest.mark.parametrize(
    ("content", "why"),
    [(b"", "is empty"), (b"{broken\n\xff\xfe not json\n", "no usable slice")],
)
@pytest.mark.slow  # over 0.3 s: in the full suite, not in -m "not slow"
def test_a_run_that_failed_before_any_work_leaves_nothing_in_the_way(
    tmp_path, capsys, content, why
):
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(content)
    out = tmp_path / "out"
    assert dry_run(bad, out) == 2
    assert why in capsys.readouterr().err
    assert files(out) == {}  # no cache claiming the directory, no failures file, no partial
    assert dry_run(SLICES, out) == 0  # the next valid run needs no --overwrite
    assert read_metadata(out)["counts"]["train"] > 0


@pytest.mark.slow
def test_a_failed_overwrite_before_any_work_gives_the_directory_back(tmp_path, capsys):
    out = tmp_path / "out"
    assert dry_run(SLICES, out) == 0
    before = files(out)
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    assert dry_run(empty, out, "--overwrite") == 2
    assert "is empty" in capsys.readouterr().err
    assert dry_run(SLICES, out) == 0  # still this run's directory: a plain rerun resumes
    usage = read_metadata(out)["usage"]
    assert sum(u["this_invocation"]["calls"] for u in usage.values()) == 0
    assert files(out)["train.jsonl"] == before["train.jsonl"]


@pytest.mark.slow  # over 0.3 s: in the full suite, not in -m "not slow"
def test_a_dry_run_into_a_real_runs_directory_says_so(tmp_path, capsys):
    out = tmp_path / "out"
    with run_in_thread(SimulatorConfig()) as sim:
        cfg = tmp_path / "c.json"
        cfg.write_text(json.dumps(cli_config(sim.url, min_votes=1)), encoding="utf-8")
        rc = main(["--input", str(SLICES), "--output", str(out), "--config", str(cfg), "-q"])
    assert rc == 0
    capsys.readouterr()
    before = files(out)
    assert dry_run(SLICES, out) == 2
    err = capsys.readouterr().err
    assert "holds a real run" in err and "changed" not in err, err
    assert "--overwrite" in err and len(err.strip().splitlines()) == 1
    assert files(out) == before


@pytest.mark.slow
def test_a_real_run_into_a_dry_runs_directory_says_so(tmp_path, capsys):
    out = tmp_path / "out"
    assert dry_run(SLICES, out) == 0
    capsys.readouterr()
    with run_in_thread(SimulatorConfig()) as sim:
        cfg = tmp_path / "c.json"
        cfg.write_text(json.dumps(cli_config(sim.url)), encoding="utf-8")
        rc = main(["--input", str(SLICES), "--output", str(out), "--config", str(cfg), "-q"])
        assert sim.stats()["chat_requests"] == 0
    assert rc == 2
    err = capsys.readouterr().err
    assert "holds a dry run" in err and "changed" not in err, err


# -- item 10: --fresh deletes nothing while another process holds the directory ---------------


@pytest.mark.slow
def test_fresh_deletes_nothing_while_another_process_holds_the_directory(tmp_path, capsys):
    out = tmp_path / "out"
    assert dry_run(SLICES, out) == 0
    before = files(out)
    assert {"cache.sqlite3", "failures.jsonl", "train.jsonl"} <= set(before)
    # A running job holds the lock (flock: another open file description, as another process).
    with lock_output_dir(out):
        assert dry_run(SLICES, out, "--fresh") == 2
    assert "in use by another sft-distill process" in capsys.readouterr().err
    assert files(out) == before  # the running job's cache and failures are untouched
    assert dry_run(SLICES, out, "--fresh") == 0  # free again: --fresh starts over
    assert all(u["this_invocation"]["cached"] == 0 for u in read_metadata(out)["usage"].values())


# -- item 13: usage, cost, tokens/s and latency add up over resumes and reruns ----------------


@pytest.mark.slow
def test_a_cached_rerun_reports_the_whole_runs_usage_cost_and_speed(tmp_path):
    out = tmp_path / "out"
    cfg = tmp_path / "prices.json"
    cfg.write_text(json.dumps({"prices": PRICES}), encoding="utf-8")
    assert dry_run(SLICES, out, "--config", str(cfg)) == 0
    first = read_metadata(out)
    assert dry_run(SLICES, out, "--config", str(cfg)) == 0  # fully cached: no call at all
    second = read_metadata(out)

    for name, u in second["usage"].items():
        assert u["this_invocation"]["calls"] == 0 and u["this_invocation"]["cached"] > 0
        was = first["usage"][name]
        assert was["this_invocation"]["calls"] == was["calls"] > 0
        for key in ("calls", "prompt_tokens", "completion_tokens"):
            assert u[key] == was[key] > 0, (name, key)
        assert u["latency_s_total"] == pytest.approx(was["latency_s_total"])

    r1, r2 = first["report"], second["report"]
    assert r2["cost"]["total"] == pytest.approx(r1["cost"]["total"]) and r1["cost"]["total"] > 0
    assert r2["cost"]["this_invocation"]["total"] == 0.0
    assert r1["cost"]["this_invocation"]["total"] == pytest.approx(r1["cost"]["total"])
    # tokens/s over the time the teacher was busy: the same figure, however often it is rerun
    tp1, tp2 = r1["throughput"], r2["throughput"]
    gen = second["usage"]["generator"]
    assert 0 < gen["busy_s"] <= first["timings_s"]["generate_and_evaluate"]
    assert tp2["teacher_tokens_per_s"] == pytest.approx(gen["completion_tokens"] / gen["busy_s"])
    assert tp2["teacher_tokens_per_s"] == pytest.approx(tp1["teacher_tokens_per_s"])
    # kept samples per hour of the whole run: both invocations' wall time count
    whole = second["whole_run"]
    assert whole["invocations"] == 2
    walls = first["timings_s"]["total"] + second["timings_s"]["total"]
    assert whole["wall_s"] >= walls - 0.01
    kept = second["counts"]["train"] + second["counts"]["val"]
    assert tp2["kept_per_hour"] == pytest.approx(kept / whole["wall_s"] * 3600)
    assert tp2["kept_per_hour"] < tp1["kept_per_hour"]
    # latency percentiles cover every call of the run, not just this invocation's (none)
    lat = r2["latency"]["endpoints"]["generator"]
    assert lat["n"] == gen["calls"] and lat["p50"] is not None
    assert r2["latency"] == r1["latency"]
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "this invocation" in html and "whole run" in html


@pytest.fixture(scope="module")
def slow_sim():
    with run_in_thread(SimulatorConfig(latency_ms=25, jitter_ms=15, seed=7)) as sim:
        yield sim


@pytest.mark.slow
def test_usage_adds_up_over_a_kill_9_and_the_resume(slow_sim, tmp_path):
    inp = make_input(tmp_path / "in.jsonl")
    cfg = write_config(tmp_path / "c.json", slow_sim.url)
    ref = tmp_path / "ref"
    assert main(run_args(inp, ref, cfg)) == 0
    reference = read_metadata(ref)["usage"]

    out = tmp_path / "out"
    slow_sim.reset_stats()
    p = start_cli(*run_args(inp, out, cfg))  # a real process: it is killed
    deadline = time.monotonic() + 60
    while slow_sim.stats()["chat_requests"] < 80 and time.monotonic() < deadline:
        time.sleep(0.002)
    os.kill(p.pid, signal.SIGKILL)
    p.communicate(timeout=10)
    assert cache_rows(out) > 0
    assert main(run_args(inp, out, cfg)) == 0  # the resume
    sent = slow_sim.stats()["chat_requests"]
    usage = read_metadata(out)["usage"]
    resumed = sum(u["this_invocation"]["calls"] for u in usage.values())
    whole = sum(u["calls"] for u in usage.values())
    # Every call of the killed invocation whose reply was recorded counts; only the replies
    # lost in flight at the kill are missing from the whole-run figures.
    assert resumed < sum(u["calls"] for u in reference.values()) <= whole <= sent
    for name, u in usage.items():
        assert u["completion_tokens"] >= reference[name]["completion_tokens"]
        assert u["completion_tokens"] > u["this_invocation"]["completion_tokens"]
    assert read_metadata(out)["whole_run"]["invocations"] == 2


# -- item 14: the generate bar counts work answered, not slices read --------------------------


class _Terminal(io.StringIO):
    """A stderr that says it is a terminal, so tqdm draws; each write notes what the server saw."""

    def __init__(self, sim) -> None:
        super().__init__()
        self.sim = sim
        self.seen: list[tuple[str, int]] = []

    def isatty(self) -> bool:
        return True

    def write(self, s: str) -> int:
        if "generate" in s:
            self.seen.append((s, self.sim.stats()["by_kind"]["generation"]))
        return super().write(s)


@pytest.mark.slow
def test_the_generate_bar_counts_work_answered_not_slices_read(tmp_path, monkeypatch):
    inp = make_input(tmp_path / "in.jsonl", n=24)  # one chunk per slice
    with run_in_thread(SimulatorConfig(latency_ms=150)) as sim:
        cfg = write_config(tmp_path / "c.json", sim.url)  # 4 in flight per endpoint
        term = _Terminal(sim)
        monkeypatch.setattr(sys, "stderr", term)
        rc = main(["--input", str(inp), "--output", str(tmp_path / "out"), "--config", str(cfg)])
    assert rc == 0
    states = []
    for text, sent in term.seen:
        for done, total in re.findall(r"generate:[^|]*\|[^|]*\|\s*(\d+)/(\d+)", text):
            states.append((int(done), int(total), sent))
    assert states and states[-1][:2] == (24, 24)
    # A slice counts once its teacher reply is in: never ahead of the requests the server got.
    ahead = [(done, sent) for done, _, sent in states if done > sent]
    assert not ahead, ahead
