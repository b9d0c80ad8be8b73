"""Shared fixtures: the project's own OpenAI-compatible simulator on 127.0.0.1."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from sft_distill.config import EndpointConfig, build_config
from sft_distill.simulator import Simulator, SimulatorConfig

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
EXAMPLES = REPO / "examples"
NO_SHARED = "../shared/data not present (CI has it; it is not shipped with the project)"


_LOOPBACK = ("127.", "::1", "localhost")
_real_getaddrinfo = socket.getaddrinfo


def _loopback_only_getaddrinfo(host, *args, **kwargs):  # type: ignore[no-untyped-def]
    if host is not None and not str(host).startswith(_LOOPBACK):
        raise OSError(f"tests may only contact 127.0.0.1, not {host!r}")
    return _real_getaddrinfo(host, *args, **kwargs)


@pytest.fixture(autouse=True, scope="session")
def _no_network():
    """Fail fast and loudly if any test tries to resolve a host other than loopback."""
    socket.getaddrinfo = _loopback_only_getaddrinfo
    yield
    socket.getaddrinfo = _real_getaddrinfo


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    """A fresh simulator with no faults and no latency."""
    async with Simulator(SimulatorConfig()) as s:
        yield s


def endpoint(sim: Simulator, model: str = "sim-model", **kw: Any) -> EndpointConfig:
    """An endpoint pointing at the simulator."""
    base = {"api_base": sim.url, "model": model, "api_key": "sk-test-0000", "max_retries": 3}
    base.update(kw)
    return EndpointConfig.model_validate(base)


def sim_config(sim: Simulator, **overrides: Any):
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


class SleepRecorder:
    """A ``sleep`` that records the delays asked for and does not wait."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


SCRIPT = REPO / "scripts" / "run_pipeline.py"


def run_cli(*args: str, cwd: Any = None, env: dict[str, str] | None = None):
    """``scripts/run_pipeline.py ARGS`` in a real subprocess, as a user runs it."""
    import os
    import subprocess
    import sys

    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        env={**os.environ, **(env or {})},
    )


def cli_config(url: str, *, endpoint: dict[str, Any] | None = None, **extra: Any) -> dict:
    """A config file's body: teacher and two judges on a simulator at ``url``, no key variables."""
    ep = {"api_base": url, "api_key_env": None, **(endpoint or {})}
    return {
        "generator": {**ep, "model": "t"},
        "evaluators": {"primary": {**ep, "model": "a"}, "secondary": {**ep, "model": "b"}},
        **extra,
    }
