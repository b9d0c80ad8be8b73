"""``benchmarks/bench_quality.py --via-cli``: the labelled pairs through the real distill run."""

from __future__ import annotations

import importlib.util
import json
import sys

import pytest

from tests.helpers import REPO

SHIPPED = REPO / "benchmarks" / "data" / "quality_small.jsonl"


def _bench():
    spec = importlib.util.spec_from_file_location(
        "bench_quality", REPO / "benchmarks" / "bench_quality.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_quality"] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_via_cli_measures_what_the_gates_of_a_run_drop(capsys):
    bench = _bench()
    assert bench.main(["--data", str(SHIPPED), "--json"]) == 0
    direct = json.loads(capsys.readouterr().out)["summary"]
    assert bench.main(["--data", str(SHIPPED), "--via-cli", "--json"]) == 0
    tables = json.loads(capsys.readouterr().out)["via_cli"]
    gates, judged = tables["gates"], tables["gates_and_judges"]
    assert set(gates) == set(judged) == {"en", "zh"}
    for lang, kinds in gates.items():
        for kind, row in kinds.items():
            # The run's default gates are the bundles the direct mode runs: any-gate drops agree.
            assert row["rate"] == direct[lang][kind]["rate"], (lang, kind)
            assert row["n"] == direct[lang][kind]["n"]
            assert bench.JUDGES not in row["by_gate"]
            with_judges = judged[lang][kind]
            assert with_judges["rate"] >= row["rate"]
            assert with_judges["quality_rate"] == row["quality_rate"]
    judged_out = sum(k["by_gate"].get(bench.JUDGES, 0) for k in judged["zh"].values())
    assert judged_out > 0  # the simulated judges voted some rows down

    assert bench.main(["--data", str(SHIPPED), "--via-cli", "--lang", "en"]) == 0
    out = capsys.readouterr().out
    assert "## gates only" in out and "## gates, then the simulated judges" in out
    assert "| judges |" in out and "### zh" not in out
