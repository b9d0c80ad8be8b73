"""``--estimate``: calls, tokens and cost from the input alone, with zero LLM calls."""

from __future__ import annotations

import json
import math

import pytest

from sft_distill.errors import InputError
from sft_distill.estimate import estimate, estimate_tokens, format_estimate
from sft_distill.pipeline import DatasetDistillationPipeline
from sft_distill.prompts import evaluation_messages, generation_messages

from .conftest import EXAMPLES, sim_config


@pytest.mark.parametrize(
    ("text", "tokens"),
    [("", 0), ("a" * 40, 10), ("a" * 41, 11), ("保" * 16, 10), ("保险" * 40, 50)],
)
def test_estimate_tokens_by_language(text, tokens):
    assert estimate_tokens(text) == tokens


async def test_estimate_calls_match_a_real_run_and_make_no_request(sim, tmp_path):
    cfg = sim_config(sim)
    est = estimate(EXAMPLES / "slices.jsonl", cfg)
    assert sim.stats["requests"] == 0
    result = await DatasetDistillationPipeline(cfg, show_progress=False).run(
        EXAMPLES / "slices.jsonl", output_dir=tmp_path / "out"
    )
    usage = result.metadata["usage"]
    assert (est.slices, est.chunks) == (result.counts.slices, result.counts.chunks)
    assert est.expected_samples == result.counts.samples_generated  # the simulator obeys n
    by_name = {e.endpoint: e for e in est.endpoints}
    assert by_name["generator"].calls == usage["generator"]["calls"]
    assert by_name["primary"].calls == usage["primary"]["calls"]
    assert by_name["secondary"].calls == usage["secondary"]["calls"]
    assert est.calls == sum(u["calls"] for u in usage.values())
    assert est.languages == {"en": 6, "zh": 7}


def test_tokens_and_cost_for_a_small_input(tmp_path):
    from sft_distill.config import build_config

    doc = "保险合同是投保人与保险人约定保险权利义务关系的协议。" * 4
    path = tmp_path / "in.jsonl"
    path.write_text(json.dumps({"id": "x", "content": doc}, ensure_ascii=False) + "\n", "utf-8")
    cfg = build_config({"samples_per_slice": 2, "evaluators": {"secondary": None}, "min_votes": 1})
    prices = {"qwen-max": {"input_per_1k": 0.02, "output_per_1k": 0.06}}
    est = estimate(path, cfg, prices=prices)
    gen, judge = est.endpoints
    template = generation_messages("", 2, language="zh")
    expected_prompt = sum(estimate_tokens(m["content"]) + 4 for m in template) + 3
    expected_prompt += math.ceil(len(doc) / 1.6)
    assert (gen.calls, gen.prompt_tokens, gen.completion_tokens) == (1, expected_prompt, 500)
    assert gen.completion_tokens_max == 4096
    ev_overhead = sum(
        estimate_tokens(m["content"]) + 4 for m in evaluation_messages("", "", "", "")
    )
    assert judge.calls == 2
    assert judge.prompt_tokens == 2 * (ev_overhead + 3 + math.ceil(len(doc) / 1.6) + 250)
    assert judge.completion_tokens == 2 * 80 and judge.completion_tokens_max == 2 * 512
    assert gen.cost == pytest.approx(expected_prompt / 1000 * 0.02 + 500 / 1000 * 0.06)
    assert judge.cost is None and est.unpriced == ["deepseek-chat"]
    assert est.total_cost == pytest.approx(gen.cost)
    text = format_estimate(est)
    assert "qwen-max" in text and "deepseek-chat" in text and f"{gen.cost:,.4f}" in text
    assert "No price for: deepseek-chat" in text


def test_reply_estimate_is_capped_by_max_tokens(tmp_path):
    from sft_distill.config import build_config

    path = tmp_path / "in.jsonl"
    path.write_text(json.dumps({"content": "An English clause. " * 50}) + "\n", "utf-8")
    cfg = build_config(
        {
            "samples_per_slice": 10,
            "generator": {"max_tokens": 300},
            "evaluators": {"primary": {"max_tokens": 20}},
        }
    )
    gen, primary, secondary = estimate(path, cfg).endpoints
    assert gen.completion_tokens == 300  # not 10 x 200
    assert primary.completion_tokens == 10 * 20 and secondary.completion_tokens == 10 * 80


def test_bad_lines_are_counted_and_strict_raises(tmp_path):
    from sft_distill.config import build_config

    path = tmp_path / "in.jsonl"
    path.write_text('{"content": "ok text"}\nnot json\n{"text": "x"}\n', "utf-8")
    cfg = build_config({})
    est = estimate(path, cfg)
    assert (est.slices, est.bad_lines) == (1, 2)
    assert "2 bad lines skipped" in format_estimate(est)
    assert "No prices configured" in format_estimate(est)
    with pytest.raises(InputError, match=r"in\.jsonl:2"):
        estimate(path, cfg, strict=True)
