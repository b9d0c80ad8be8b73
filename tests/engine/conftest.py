"""One local Ray instance for the tests of this folder (2 CPUs: two shard workers at once),
started once and shut down after them, so the rest of the suite runs without it."""

from __future__ import annotations

import importlib.util
import os
import signal
from collections.abc import Iterator
from typing import Any

import pytest

NO_RAY = "ray not installed: pip install -e '.[ray]' (CI installs it)"
HAS_RAY = importlib.util.find_spec("ray") is not None


@pytest.fixture(scope="package")
def ray_local() -> Iterator[Any]:
    """A local Ray instance, started once; the pipeline joins it instead of starting its own."""
    if not HAS_RAY:
        pytest.skip(NO_RAY)
    import ray

    from sft_distill.engine.driver import LOCAL_RAY_SYSTEM_CONFIG

    # Ray leaves a SIGTERM handler and a few variables in this process: put them back after.
    sigterm, environ = signal.getsignal(signal.SIGTERM), dict(os.environ)
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        logging_level="WARNING",
        _system_config=LOCAL_RAY_SYSTEM_CONFIG,
    )
    yield ray
    ray.shutdown()
    signal.signal(signal.SIGTERM, sigterm)
    for name in set(os.environ) - set(environ):
        del os.environ[name]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that starts or joins the Ray instance is slow (``-m "not slow"`` skips it)."""
    for item in items:
        if "ray_local" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)
