"""Whole runs and structured output: the form each server takes, found once and remembered;
an old run's cache still found; cached prompt tokens and their cost in metadata and the report."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from sft_distill.llm.cache import SCHEMA_VERSION
from sft_distill.llm.structured import PriceCard, cost
from sft_distill.simulator.server import SimulatorConfig, run_in_thread
from tests.helpers import (
    SLICES,
    make_input,
    outputs,
    read_metadata,
    run_args,
    write_config,
)

ENDPOINTS = ("generator", "primary", "secondary")
MODELS = ("teacher-sim", "judge-a", "judge-b")
PRICE = {
    "input_per_1k": 0.002,
    "output_per_1k": 0.006,
    "cached_input_per_1k": 0.0002,
    "batch_discount": 0.5,
}


def meta_rows(out: Path, prefix: str) -> dict[str, str]:
    with sqlite3.connect(out / "cache.sqlite3") as db:
        rows = db.execute("SELECT name, value FROM meta WHERE name LIKE ?", (prefix + "%",))
        return dict(rows.fetchall())


@pytest.mark.slow
def test_a_run_finds_each_models_form_once_and_a_resume_reuses_it(tmp_path, cli):
    with run_in_thread(SimulatorConfig(structured_output="llamacpp")) as sim:
        inp, out = make_input(tmp_path / "in.jsonl", n=4), tmp_path / "out"
        assert cli(*run_args(inp, out, write_config(tmp_path / "a.json", sim.url))).returncode == 0
        first = sim.stats()
        meta = read_metadata(out)
        # One refused json_schema per (api_base, model), then json_object with the schema.
        assert first["response_format_rejected"] == 3
        assert first["response_formats"]["json_schema"] == 3
        for name in ENDPOINTS:
            mine = meta["usage"][name]["this_invocation"]
            assert mine["structured_output"] == "json_object_schema"
            assert mine["failed_calls"] == 0 and mine["retries"] == 0
        assert set(meta_rows(out, "structured_output/").values()) == {"json_object_schema"}

        # More samples per slice: new teacher and judge requests in the same run, no probe.
        sim.reset_stats()
        cfg = write_config(tmp_path / "b.json", sim.url, samples_per_slice=4)
        assert cli(*run_args(inp, out, cfg)).returncode == 0
        again = sim.stats()
    assert again["chat_requests"] > 0
    assert again["response_format_rejected"] == 0
    assert again["response_formats"] == {"json_object_schema": again["chat_requests"]}


def downgrade(out: Path) -> None:
    """Make a run's cache look written before structured output (schema 1)."""
    with sqlite3.connect(out / "cache.sqlite3") as db:
        for column in ("cached_prompt_tokens", "reasoning_tokens"):
            db.execute(f"ALTER TABLE calls DROP COLUMN {column}")
        db.execute("DELETE FROM meta WHERE name LIKE 'structured_output/%'")
        db.execute("PRAGMA user_version = 1")


@pytest.mark.slow
def test_an_old_runs_cache_still_resumes_with_zero_calls(tmp_path, cli):
    # A run whose every request is byte for byte what sft_distill sent before structured output
    # (tests/llm/test_client.py checks that structured_output none sends exactly that).
    old = tmp_path / "old.json"
    old.write_text(
        json.dumps(
            {
                "generator": {"structured_output": "none"},
                "evaluators": {
                    "primary": {"structured_output": "none"},
                    "secondary": {"structured_output": "none"},
                },
            }
        ),
        encoding="utf-8",
    )
    out = tmp_path / "out"
    base = ["--input", str(SLICES), "--output", str(out), "--dry-run", "-q"]
    assert cli(*base, "--config", str(old)).returncode == 0
    before = outputs(out)
    downgrade(out)
    # The default settings (structured_output auto) on the old cache: nothing is asked again.
    rerun = cli(*base)
    assert rerun.returncode == 0, rerun.stderr
    assert "generator 0 calls" in rerun.stdout
    assert "primary 0 calls" in rerun.stdout and "secondary 0 calls" in rerun.stdout
    assert outputs(out) == before
    assert set(meta_rows(out, "structured_output/").values()) == {"none", "1"}
    with sqlite3.connect(out / "cache.sqlite3") as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    usage = read_metadata(out)["usage"]
    assert all(usage[n]["cached_prompt_tokens"] >= 0 for n in ENDPOINTS)


@pytest.mark.slow
@pytest.mark.parametrize("dialect", ["openai", "deepseek", "dashscope"])
def test_cached_tokens_and_their_cost_reach_metadata_and_the_report(tmp_path, cli, dialect):
    cfg = SimulatorConfig(usage_dialect=dialect)
    with run_in_thread(cfg) as sim:
        out = tmp_path / "out"
        prices = {m: PRICE for m in MODELS}
        config = write_config(tmp_path / "c.json", sim.url, prices=prices)
        assert cli(*run_args(SLICES, out, config)).returncode == 0
        served = sim.stats()["cached_prompt_tokens"]
        meta = read_metadata(out)
        # A rerun makes no call: the whole run's figures come from the call log, unchanged.
        assert cli(*run_args(SLICES, out, config)).returncode == 0
        rerun = read_metadata(out)
    usage = meta["usage"]
    # Judges of one chunk share its text (~3,000 tokens): the server's cache serves it.
    assert served > 0 and sum(usage[n]["cached_prompt_tokens"] for n in ENDPOINTS) == served
    assert usage["primary"]["cached_prompt_tokens"] > 0
    assert usage["primary"]["models"]["judge-a"]["cached_prompt_tokens"] > 0
    for name in ENDPOINTS:
        assert rerun["usage"][name]["cached_prompt_tokens"] == usage[name]["cached_prompt_tokens"]
        assert rerun["usage"][name]["this_invocation"]["calls"] == 0

    report = meta["report"]
    card = PriceCard.from_config(PRICE)
    total = without = 0.0
    for name, model in zip(ENDPOINTS, MODELS, strict=True):
        u, c = usage[name], report["cost"]["per_model"][model]
        assert c["cached_prompt_tokens"] == u["cached_prompt_tokens"]
        billed = cost(
            u["prompt_tokens"], u["cached_prompt_tokens"], u["completion_tokens"], price=card
        )
        full = cost(u["prompt_tokens"], 0, u["completion_tokens"], price=card)
        assert c["cost"] == pytest.approx(billed) and c["cost_without_cache"] == pytest.approx(full)
        assert c["cost_batched"] == pytest.approx(billed / 2)
        total, without = total + billed, without + full
    assert report["cost"]["total"] == pytest.approx(total) and total < without
    assert report["cost"]["total_without_cache"] == pytest.approx(without)
    assert report["cost"]["total_batched"] == pytest.approx(total / 2)
    whole = report["usage"]["whole_run"]
    assert whole["cached_prompt_tokens"] == served
    assert whole["cost_without_cache"] == pytest.approx(without)
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "cached prompt tokens" in html and "cost without the cache" in html
    assert "Through a batch API" in html
