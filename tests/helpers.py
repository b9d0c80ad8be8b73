"""What the tests share, defined once: paths and data, readers, configs on the simulator, and
the command line run in this process or, where a real process is the point, in a subprocess.

``conftest.py`` builds its fixtures from these; tests import them as ``tests.helpers``.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from sft_distill.cli import main
from sft_distill.config.merging import build_config
from sft_distill.config.models import DistillConfig, EndpointConfig
from sft_distill.llm.prompts import parse_evaluation_batch_prompt, parse_evaluation_prompt
from sft_distill.simulator.server import Simulator

# --- paths and data --------------------------------------------------------------------------

REPO = Path(__file__).resolve().parents[1]
TEST_DATA = REPO / "tests" / "data"
EXAMPLES = REPO / "examples"
SLICES = EXAMPLES / "slices.jsonl"
SCRIPT = REPO / "scripts" / "run_pipeline.py"
SHARED_DATA = REPO.parent / "shared" / "data"
NO_SHARED = "../shared/data not present (CI has it; it is not shipped with the project)"
# The files a run's dataset is compared by.
OUTPUTS = ("train.jsonl", "val.jsonl", "generated_raw.jsonl")


def needs_shared(*names: str) -> pytest.MarkDecorator:
    """Skip, saying why, unless ``../shared/data`` (or each file ``names`` there) exists."""
    paths = [SHARED_DATA / name for name in names] or [SHARED_DATA]
    return pytest.mark.skipif(not all(p.exists() for p in paths), reason=NO_SHARED)


def make_input(path: Path, n: int = 24) -> Path:
    """n mid-sized slices cut from the shipped examples (Chinese and English)."""
    texts = [row["content"] for row in read_jsonl(SLICES)]
    pieces = []
    for t in texts:
        pieces += [t[i : i + 900] for i in range(0, len(t), 900) if len(t[i : i + 900]) > 300]
    rows = [
        {"id": f"p{i:03d}", "content": pieces[i % len(pieces)] + f"\n（第{i}段）"} for i in range(n)
    ]
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows), encoding="utf-8")
    return path


# --- reading and writing what a run leaves ---------------------------------------------------


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Every line of a JSONL file, parsed; a blank line fails, as no writer of ours writes one."""
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines()]


def write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> Path:
    """``rows`` as UTF-8 JSONL (CJK kept readable), one per line."""
    path.write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8"
    )
    return path


def read_metadata(out: Path) -> dict[str, Any]:
    """A run's ``metadata.json``."""
    return json.loads((out / "metadata.json").read_text(encoding="utf-8"))


def outputs(out: Path) -> dict[str, bytes]:
    """The dataset files of a run, byte for byte."""
    return {name: (out / name).read_bytes() for name in OUTPUTS}


def judged_samples(prompts: Iterable[str]) -> list[dict[str, str]]:
    """Each sample the simulator was asked to judge (instruction, input, output, document), from
    single-sample and batched judging prompts alike."""
    out = []
    for prompt in prompts:
        one = parse_evaluation_prompt(prompt)
        if one is not None:
            out.append(one)
            continue
        batch = parse_evaluation_batch_prompt(prompt)
        if batch is not None:
            out += [{**s, "document": batch[0]} for s in batch[1]]
    return out


def cache_rows(out: Path) -> int:
    """How many replies a run's ``cache.sqlite3`` holds."""
    with sqlite3.connect(out / "cache.sqlite3") as db:
        return int(db.execute("SELECT COUNT(*) FROM responses").fetchone()[0])


# --- configs on the simulator ----------------------------------------------------------------


def endpoint(sim: Simulator, model: str = "sim-model", **kw: Any) -> EndpointConfig:
    """An endpoint pointing at the simulator."""
    base = {"api_base": sim.url, "model": model, "api_key": "sk-test-0000", "max_retries": 3}
    base.update(kw)
    return EndpointConfig.model_validate(base)


def sim_config(sim: Simulator, **overrides: Any) -> DistillConfig:
    """A full DistillConfig with the generator and two evaluators on the simulator."""
    ep = {"api_base": sim.url, "api_key": "sk-test-0000", "api_key_env": None, "max_retries": 2}
    cfg: dict[str, Any] = {
        "generator": {**ep, "model": "teacher-sim"},
        "evaluators": {
            "primary": {**ep, "model": "judge-a"},
            "secondary": {**ep, "model": "judge-b"},
        },
    }
    cfg.update(overrides)
    return build_config(cfg)


def cli_config(url: str, *, endpoint: dict[str, Any] | None = None, **extra: Any) -> dict:
    """A config file's body: teacher and two judges on a simulator at ``url``, no key variables."""
    ep = {"api_base": url, "api_key_env": None, **(endpoint or {})}
    return {
        "generator": {**ep, "model": "t"},
        "evaluators": {"primary": {**ep, "model": "a"}, "secondary": {**ep, "model": "b"}},
        **extra,
    }


def write_config(path: Path, url: str, **extra: Any) -> Path:
    """A config file: teacher and two judges at ``url``, 4 in flight each, quick retries."""
    ep = {
        "api_base": url,
        "api_key": "sk-resume-test",
        "api_key_env": None,
        "max_concurrent": 4,
        "max_retries": 2,
        "retry_backoff_s": 0.01,
    }
    cfg = {
        "generator": {**ep, "model": "teacher-sim"},
        "evaluators": {
            "primary": {**ep, "model": "judge-a"},
            "secondary": {**ep, "model": "judge-b"},
        },
    }
    cfg.update(extra)
    path.write_text(json.dumps(cfg), encoding="utf-8")
    return path


class SleepRecorder:
    """A ``sleep`` that records the delays asked for and does not wait."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


# --- the command line ------------------------------------------------------------------------


def run_args(inp: Path, out: Path, cfg: Path, *extra: str) -> list[str]:
    """``--input INP --output OUT --config CFG -q EXTRA``: a quiet run, in or out of process."""
    return ["--input", str(inp), "--output", str(out), "--config", str(cfg), "-q", *extra]


def dry_run(inp: Path, out: Path, *extra: str) -> int:
    """``sft-distill --input INP --output OUT --dry-run -q EXTRA`` in this process."""
    return main(["--input", str(inp), "--output", str(out), "--dry-run", "-q", *extra])


@dataclass(frozen=True)
class CliRun:
    """What a command left: its exit status and what it printed."""

    returncode: int
    stdout: str
    stderr: str


def run_main(capsys: pytest.CaptureFixture[str], *args: str) -> CliRun:
    """``sft-distill ARGS`` in this process, printing what it prints in a fresh process.

    pytest's log handlers are set aside for the call, so the command's own ``basicConfig``
    decides, as in a new process, which log lines reach stderr and in what format.
    """
    root = logging.getLogger()
    saved, level = root.handlers[:], root.level
    for handler in saved:
        root.removeHandler(handler)
    capsys.readouterr()  # only this command's output
    try:
        code = _exit_status(args)
    finally:
        for handler in root.handlers[:]:
            root.removeHandler(handler)
            handler.close()
        for handler in saved:
            root.addHandler(handler)
        root.setLevel(level)
    out, err = capsys.readouterr()
    return CliRun(code, out, err)


def _exit_status(args: Sequence[str]) -> int:
    """``main(args)``'s status; argparse's exits (--help, --version, bad flags) included."""
    try:
        return main(list(args))
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            return exc.code or 0
        print(exc.code, file=sys.stderr)  # as the interpreter does with a message
        return 1


def run_cli(
    *args: str, cwd: Any = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``scripts/run_pipeline.py ARGS`` in a real subprocess, as a user runs it."""
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        env={**os.environ, **(env or {})},
    )


def start_cli(*args: str) -> subprocess.Popen[str]:
    """``scripts/run_pipeline.py ARGS`` started in a real subprocess, to signal or kill."""
    return subprocess.Popen(
        [sys.executable, str(SCRIPT), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
