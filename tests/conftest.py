"""Shared fixtures: the project's own OpenAI-compatible simulator on 127.0.0.1, the command
line in process, and no network beyond loopback. Plain helpers live in ``tests/helpers.py``."""

from __future__ import annotations

import functools
import socket
from collections.abc import AsyncIterator, Callable

import pytest

from sft_distill.simulator.server import Simulator, SimulatorConfig

# Re-exported: tests written before tests/helpers.py import these from conftest.
from tests.helpers import (  # noqa: F401
    EXAMPLES,
    NO_SHARED,
    REPO,
    SCRIPT,
    SHARED_DATA,
    CliRun,
    SleepRecorder,
    cli_config,
    endpoint,
    run_cli,
    run_main,
    sim_config,
)

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


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., CliRun]:
    """``cli(*args)``: ``sft-distill ARGS`` in this process; its status, stdout and stderr."""
    return functools.partial(run_main, capsys)
