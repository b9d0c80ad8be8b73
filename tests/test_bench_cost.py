"""``benchmarks/bench_cost.py``: today, the defaults and (when built) the Batch API, per kept
sample, on the shipped examples."""

from __future__ import annotations

import importlib.util
import json
import sys

import pytest

from tests.helpers import REPO


def _bench():
    spec = importlib.util.spec_from_file_location(
        "bench_cost", REPO / "benchmarks" / "bench_cost.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_cost"] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_bench_cost_compares_the_ways_on_the_same_kept_set(capsys):
    bench = _bench()
    data = REPO / "examples" / "slices.jsonl"
    assert bench.main(["--data", str(data), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    ways = summary["ways"]
    today, default, unbatched = ways["today"], ways["default"], ways["unbatched"]
    assert today["ratio"] == 1.0 and today["kept"] > 0
    for way in (default, unbatched):
        assert way["same_kept_set"] and way["kept"] == today["kept"]
        assert way["agreement_with_today"]["max_abs_difference"] == 0
    assert default["ratio"] > unbatched["ratio"] > 1.0
    # Batched judging: fewer judge calls than samples judged, the same calls for the teacher.
    samples = default["agreement_with_today"]["samples"]
    assert default["endpoints"]["primary"]["calls"] < samples
    assert today["endpoints"]["primary"]["calls"] == samples
    assert default["endpoints"]["generator"]["calls"] == today["endpoints"]["generator"]["calls"]
    assert (ways["batch"] is None) is (bench.batch_support() is None)
    if ways["batch"] is not None:
        assert ways["batch"]["same_kept_set"] and ways["batch"]["ratio"] > default["ratio"]
