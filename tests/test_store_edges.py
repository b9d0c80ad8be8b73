"""Edges of input, config and start-up: a huge number, credentials in a URL, Ctrl-C while the
command starts, and how many input lines were read."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from sft_distill.cli import main
from sft_distill.errors import interrupted_message
from sft_distill.simulator.server import SimulatorConfig, run_in_thread
from tests.helpers import REPO, SLICES, cli_config, dry_run, read_metadata, start_cli

HUGE = "9" * 5000  # Python refuses to parse integers of more than 4,300 digits
GOOD = [
    {"id": "a", "content": "保险合同是投保人与保险人约定保险权利义务关系的协议。"},
    {"id": "b", "content": "The insurer shall pay the sum insured within ten days."},
]
LINUX_PROC = pytest.mark.skipif(
    not Path("/proc/self/maps").exists(), reason="needs Linux /proc to see how far start-up got"
)


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_a_number_too_long_for_python_is_a_bad_line(tmp_path):
    huge = '{"id": "h", "content": "x", "n": ' + HUGE + "}"
    inp = write_lines(tmp_path / "in.jsonl", [json.dumps(GOOD[0]), huge, json.dumps(GOOD[1])])
    assert dry_run(inp, tmp_path / "out") == 0
    meta = read_metadata(tmp_path / "out")
    assert meta["bad_lines"] == [f"{inp}:2: invalid JSON: a number with more than 4300 digits"]
    assert meta["counts"]["slices"] == 2


def test_a_number_too_long_for_python_is_a_bad_line_of_an_instruction_set(tmp_path):
    rows = [
        {"instruction": "泡绿茶的水温是多少？", "output": "八十到八十五度。"},
        {"instruction": "x", "output": "y", "n": 0},
    ]
    lines = [json.dumps(r, ensure_ascii=False) for r in rows]
    lines[1] = lines[1].replace('"n": 0', f'"n": {HUGE}')
    inp = write_lines(tmp_path / "in.jsonl", lines)
    args = ["distill", "--input", str(inp), "--output", str(tmp_path / "out")]
    assert main([*args, "--dry-run", "-q", "--skip-generation"]) == 0
    meta = read_metadata(tmp_path / "out")
    assert f"{inp}:2: invalid JSON: a number with more than 4300 digits" in meta["bad_lines"]


def test_credentials_in_api_base_are_a_config_error_that_does_not_repeat_them(tmp_path, capsys):
    with run_in_thread(SimulatorConfig()) as sim:
        url = sim.url.replace("http://", "http://user:s3cret-pw@")
        cfg = cli_config(sim.url, endpoint={"api_key": "sk-test"})
        cfg["generator"]["api_base"] = url
        path = tmp_path / "c.json"
        path.write_text(json.dumps(cfg), encoding="utf-8")
        args = ["--input", str(SLICES), "--output", str(tmp_path / "out")]
        code = main([*args, "--config", str(path), "-q"])  # was a traceback from aiohttp
    err = capsys.readouterr().err
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "generator.api_base" in err and "user name or password" in err
    assert "s3cret-pw" not in err and "Value error" not in err


def test_input_lines_counts_every_line_read_not_the_last_good_one(tmp_path):
    lines = [json.dumps(GOOD[0]), "", json.dumps(GOOD[1]), "{not json", "", '{"id": "c"}', ""]
    inp = write_lines(tmp_path / "in.jsonl", lines)
    assert dry_run(inp, tmp_path / "out") == 0
    meta = read_metadata(tmp_path / "out")
    assert meta["counts"]["lines_read"] == len(lines)  # 7, not 3 (the line of slice "b")
    funnel = {row["stage"]: row["count"] for row in meta["report"]["funnel"]}
    assert funnel["input lines"] == len(lines)


def _start(inp: Path, out: Path) -> subprocess.Popen[str]:
    """A dry run in a real process: Ctrl-C reaches it while it starts."""
    return start_cli("--input", str(inp), "--output", str(out), "--dry-run", "-q")


def _wait_until(p: subprocess.Popen[str], ready: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 60
    while p.poll() is None and time.monotonic() < deadline:
        try:
            if ready():
                return
        except OSError:  # /proc entries come and go while the process runs
            pass
        time.sleep(0.001)
    pytest.fail(f"start-up never reached the expected point (exit status {p.poll()})")


@LINUX_PROC
def test_ctrl_c_while_the_command_imports_its_modules_is_the_one_line_message(tmp_path):
    p = _start(SLICES, tmp_path / "out")
    # pydantic's compiled core is among the first heavy imports (about a second in all).
    _wait_until(p, lambda: "pydantic_core" in Path(f"/proc/{p.pid}/maps").read_text())
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 130, err
    assert err.strip().splitlines() == [interrupted_message("SIGINT")]


@LINUX_PROC
@pytest.mark.slow
def test_ctrl_c_while_reading_a_large_input_is_the_interrupted_message(tmp_path):
    big = tmp_path / "big.jsonl"
    text = "保险人应当及时赔付保险金。" * 20
    with big.open("w", encoding="utf-8") as f:
        for i in range(300_000):
            f.write(json.dumps({"id": f"s{i}", "content": f"{text}{i}"}, ensure_ascii=False))
            f.write("\n")
    p = _start(big, tmp_path / "out")
    fd_dir = Path(f"/proc/{p.pid}/fd")
    _wait_until(
        p, lambda: any(os.readlink(fd) == str(big) for fd in fd_dir.iterdir() if fd.is_symlink())
    )
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 130, err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == interrupted_message("SIGINT")
    assert all(line.startswith("sft-distill:") for line in err.strip().splitlines())


@pytest.mark.slow
def test_the_package_loads_what_it_exports_on_first_use():
    """What keeps the Ctrl-C window short: ``import sft_distill`` imports no heavy module, and
    the functions named like their modules stay the functions once those modules load."""
    code = (
        "import sys, sft_distill\n"
        "assert not {'aiohttp', 'pydantic', 'numpy'} & set(sys.modules), sorted(sys.modules)\n"
        "import sft_distill.estimate, sft_distill.refilter\n"
        "assert sft_distill.estimate.__module__ == 'sft_distill.planning.estimate'\n"
        "assert sft_distill.refilter.__module__ == 'sft_distill.selection.refilter'\n"
        "from sft_distill import DatasetDistillationPipeline, estimate\n"
        "assert callable(estimate) and DatasetDistillationPipeline.__name__\n"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert p.returncode == 0, p.stderr
