"""``--estimate``: calls, tokens and cost from the input alone, with zero LLM calls."""

from __future__ import annotations

import json
import math

import pytest

from sft_distill.cli.estimate import format_estimate
from sft_distill.errors import InputError
from sft_distill.llm.prompts import evaluation_messages, generation_messages
from sft_distill.llm.structured import PriceCard, cost
from sft_distill.pipeline import DatasetDistillationPipeline
from sft_distill.planning.estimate import estimate, estimate_tokens
from tests.helpers import SLICES, TEST_DATA, sim_config


@pytest.mark.parametrize(
    ("text", "tokens"),
    [("", 0), ("a" * 40, 10), ("a" * 41, 11), ("保" * 16, 10), ("保险" * 40, 50)],
)
def test_estimate_tokens_by_language(text, tokens):
    assert estimate_tokens(text) == tokens


async def test_estimate_calls_match_a_real_run_and_make_no_request(sim, tmp_path):
    # No gates: the estimate counts a judge call for every sample, as a run without gates makes.
    # One judge call per sample (batched judging: tests/stages/test_judge_batch.py), and every
    # judge asked about every sample (early_drop: tests/stages/test_early_drop.py).
    cfg = sim_config(sim, gates=[], judge_batch_size=1, early_drop=False)
    est = estimate(SLICES, cfg)
    assert sim.stats["requests"] == 0
    result = await DatasetDistillationPipeline(cfg, show_progress=False).run(
        SLICES, output_dir=tmp_path / "out"
    )
    usage = result.metadata["usage"]
    assert (est.slices, est.chunks) == (result.counts.slices, result.counts.chunks)
    assert est.expected_samples == result.counts.samples_generated  # the simulator obeys n
    by_name = {e.endpoint: e for e in est.endpoints}
    assert by_name["generator"].calls == usage["generator"]["calls"]
    # Every planned sample is judged, except a question repeating an earlier one of its slice
    # (dropped as it is generated, gen-v2): the estimate cannot know those in advance.
    repeats = result.counts.dropped.get("duplicate_question", 0)
    assert by_name["primary"].calls == usage["primary"]["calls"] + repeats
    assert by_name["secondary"].calls == usage["secondary"]["calls"] + repeats
    assert est.calls == sum(u["calls"] for u in usage.values()) + 2 * repeats
    assert est.languages == {"en": 6, "zh": 7}


def test_tokens_and_cost_for_a_small_input(tmp_path):
    from sft_distill.config.merging import build_config

    doc = "保险合同是投保人与保险人约定保险权利义务关系的协议。" * 4
    path = tmp_path / "in.jsonl"
    path.write_text(json.dumps({"id": "x", "content": doc}, ensure_ascii=False) + "\n", "utf-8")
    cfg = build_config(
        {
            "samples_per_slice": 2,
            "evaluators": {"secondary": None},
            "min_votes": 1,
            "judge_batch_size": 1,
        }
    )
    prices = {"qwen-max": {"input_per_1k": 0.02, "output_per_1k": 0.06}}
    est = estimate(path, cfg, prices=prices)
    gen, judge = est.endpoints
    template = generation_messages("", 2, language="zh")
    expected_prompt = sum(estimate_tokens(m["content"]) + 4 for m in template) + 3
    expected_prompt += math.ceil(len(doc) / 1.6)
    # a reply's samples carry their evidence quotes, type and difficulty (gen-v2): 250 + 60 each
    assert (gen.calls, gen.prompt_tokens, gen.completion_tokens) == (1, expected_prompt, 620)
    assert gen.completion_tokens_max == 4096
    ev_overhead = sum(
        estimate_tokens(m["content"]) + 4 for m in evaluation_messages("", "", "", "")
    )
    assert judge.calls == 2
    assert judge.prompt_tokens == 2 * (ev_overhead + 3 + math.ceil(len(doc) / 1.6) + 250)
    # eval-v2: claims and analysis before the scores (~400 tokens), max_tokens 1024 (issue 12).
    assert judge.completion_tokens == 2 * 400 and judge.completion_tokens_max == 2 * 1024
    assert gen.cost == pytest.approx(expected_prompt / 1000 * 0.02 + 620 / 1000 * 0.06)
    assert judge.cost is None and est.unpriced == ["deepseek-chat"]
    assert est.total_cost == pytest.approx(gen.cost)
    text = format_estimate(est)
    assert "qwen-max" in text and "deepseek-chat" in text and f"{gen.cost:,.4f}" in text
    assert "No price for: deepseek-chat" in text


def test_cached_tokens_and_cached_and_batch_prices_in_the_estimate():
    from sft_distill.config.merging import build_config

    price = {
        "input_per_1k": 0.002,
        "output_per_1k": 0.008,
        "cached_input_per_1k": 0.0005,
        "batch_discount": 0.5,
    }
    cfg = build_config({"prices": {"qwen-max": price, "deepseek-chat": price}})
    est = estimate(SLICES, cfg)
    gen, primary, secondary = est.endpoints
    card = PriceCard.from_config(price)
    # The judges of a chunk share its text (thousands of tokens): all but the first hit the
    # cache, in 128-token steps; the teacher's shared template is under 1,024 tokens.
    assert gen.cached_prompt_tokens == 0
    assert primary.cached_prompt_tokens > 0 and primary.cached_prompt_tokens % 128 == 0
    for e in (gen, primary):
        assert e.cost == pytest.approx(
            cost(e.prompt_tokens, e.cached_prompt_tokens, e.completion_tokens, price=card)
        )
        assert e.cost_without_cache == pytest.approx(
            cost(e.prompt_tokens, 0, e.completion_tokens, price=card)
        )
        assert e.cost_batched == pytest.approx(e.cost / 2)
    assert primary.cost < primary.cost_without_cache
    assert secondary.cost is None and est.unpriced == ["moonshot-v1-8k"]
    assert est.total_cost == pytest.approx(gen.cost + primary.cost)
    assert est.total_cost_without_cache == pytest.approx(
        gen.cost_without_cache + primary.cost_without_cache
    )
    text = format_estimate(est)
    assert f"{primary.cached_prompt_tokens:,}" in text
    assert f"{est.total_cost_without_cache:,.4f}" in text
    assert f"Through a batch API (batch_discount): {est.total_cost_batched:,.4f}" in text


def test_reply_estimate_is_capped_by_max_tokens(tmp_path):
    from sft_distill.config.merging import build_config

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
    # secondary: the typical eval-v2 judgement (400 tokens), under its max_tokens of 1024
    assert primary.completion_tokens == 10 * 20 and secondary.completion_tokens == 10 * 400


def test_bad_lines_are_counted_and_strict_raises(tmp_path):
    from sft_distill.config.merging import build_config

    path = tmp_path / "in.jsonl"
    path.write_text('{"content": "ok text"}\nnot json\n{"text": "x"}\n', "utf-8")
    cfg = build_config({})
    est = estimate(path, cfg)
    assert (est.slices, est.bad_lines) == (1, 2)
    assert "2 bad lines skipped" in format_estimate(est)
    assert "No prices configured" in format_estimate(est)
    with pytest.raises(InputError, match=r"in\.jsonl:2"):
        estimate(path, cfg, strict=True)


# --- the other modes: topics, distill, augment ------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "headline"),
    [
        (
            ["topics", "--topic", "体育与运动", "--levels", "2", "--tags-per-level", "10"],
            "2 levels x 10 sub-topics per level x 10 questions per leaf -> up to 100 leaves and "
            "1,000 samples",
        ),
        (
            ["distill", "-i", str(TEST_DATA / "iset_alpaca.jsonl")],
            "6 teacher requests -> ~6 samples",
        ),
        (
            ["distill", "-i", str(TEST_DATA / "iset_alpaca.jsonl"), "--skip-generation"],
            "no teacher requests (--skip-generation) -> ~6 samples",
        ),
        (
            ["augment", "-i", str(TEST_DATA / "iset_sharegpt.jsonl"), "--num-aug", "3"],
            "2 rephrase requests -> up to 6 variants, 8 samples judged",
        ),
    ],
)
def test_cli_estimate_works_for_every_mode(argv, headline, tmp_path, capsys):
    from sft_distill.cli import main

    out = tmp_path / "out"
    assert main([*argv, "--estimate", "--no-probe", "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert headline in text, text
    assert "generator" in text and "total" in text
    assert not out.exists()  # nothing written, nothing called


def test_topic_estimate_is_an_upper_bound_and_says_so(tmp_path):
    from sft_distill.config.merging import build_config
    from sft_distill.planning.modes import estimate_topics
    from sft_distill.sources.topics import TopicSource

    cfg = build_config({})
    est = estimate_topics(TopicSource("Sports", levels=2, tags_per_level=25), cfg)
    # 1 root request (25 asked in batches of 20: 2 requests) + 25 nodes x 2 = 52 expansions,
    # 625 leaves x 1 question request, 6,250 answers.
    assert est.detail["expansion_requests"] == 2 + 25 * 2
    assert (est.slices, est.chunks, est.expected_samples) == (625, 625, 6250)
    gen, primary, _ = est.endpoints
    assert gen.calls == 52 + 625 + 6250 and primary.calls == 6250
    text = format_estimate(est)
    assert "Upper bounds" in text and "at most 625 leaves" in text


@pytest.mark.slow
async def test_topic_estimate_matches_a_run_whose_replies_are_complete(sim, tmp_path):
    from sft_distill.planning.modes import estimate_topics
    from sft_distill.sources.topics import TopicSource

    def source() -> TopicSource:
        return TopicSource(
            "体育与运动",
            levels=2,
            tags_per_level=3,
            questions_per_tag=3,
            tags_per_request=2,
            questions_per_request=2,
        )

    cfg = sim_config(sim, early_drop=False)  # both judges see every sample, as estimated
    est = estimate_topics(source(), cfg)
    assert sim.stats["requests"] == 0
    result = await DatasetDistillationPipeline(cfg, show_progress=False).run(
        source=source(), output_dir=tmp_path / "out"
    )
    usage = result.metadata["usage"]
    # The simulator always gives as many names and questions as asked: the bound is reached.
    assert est.slices == result.counts.slices == 9
    assert est.expected_samples == result.counts.samples_generated == 27
    assert [e.calls for e in est.endpoints] == [
        usage[name]["calls"] for name in ("generator", "primary", "secondary")
    ]


async def test_tree_estimate_counts_the_questions_it_already_has(sim, tmp_path):
    from sft_distill.planning.modes import estimate_topics
    from sft_distill.sources.topic_tree import TopicTree
    from sft_distill.sources.topics import TopicSource

    tree = TopicTree.from_json(
        {
            "name": "Python",
            "children": [
                {"name": "Variables", "questions": ["What is a variable?", "What is a name?"]},
                "Loops",
            ],
        }
    )
    cfg = sim_config(sim)
    est = estimate_topics(TopicSource(tree=tree, questions_per_tag=3), cfg)
    result = await DatasetDistillationPipeline(cfg, show_progress=False).run(
        source=TopicSource(tree=tree, questions_per_tag=3), output_dir=tmp_path / "out"
    )
    assert est.detail["given_questions"] == 2 and est.chunks == result.counts.chunks == 2
    assert est.expected_samples == result.counts.samples_generated == 6
    assert est.endpoints[0].calls == result.metadata["usage"]["generator"]["calls"]
    assert "tree 'Python': 2 leaves (2 questions given)" in format_estimate(est)


@pytest.mark.parametrize("skip_generation", [False, True])
async def test_distill_estimate_matches_a_run(sim, tmp_path, skip_generation):
    from sft_distill.planning.modes import estimate_distill
    from sft_distill.sources.distill import DistillSource

    path = TEST_DATA / "iset_alpaca.jsonl"
    cfg = sim_config(sim, early_drop=False)  # both judges see every sample, as estimated
    est = estimate_distill(DistillSource(path, skip_generation=skip_generation), cfg)
    assert sim.stats["requests"] == 0
    result = await DatasetDistillationPipeline(cfg, show_progress=False).run(
        source=DistillSource(path, skip_generation=skip_generation), output_dir=tmp_path / "o"
    )
    usage = result.metadata["usage"]
    assert est.expected_samples == result.counts.samples_generated
    assert [e.calls for e in est.endpoints] == [
        usage[name]["calls"] for name in ("generator", "primary", "secondary")
    ]
    assert (est.endpoints[0].calls == 0) is skip_generation


async def test_augment_estimate_bounds_a_run(sim, tmp_path):
    from sft_distill.planning.modes import estimate_augment
    from sft_distill.sources.augment import AugmentSource

    path = TEST_DATA / "iset_sharegpt.jsonl"
    # every sample judged by every judge, as the estimate counts
    cfg = sim_config(sim, gates=[], early_drop=False)
    est = estimate_augment(AugmentSource(path, num_aug=2), cfg)
    assert sim.stats["requests"] == 0
    source = AugmentSource(path, num_aug=2)
    result = await DatasetDistillationPipeline(cfg, show_progress=False).run(
        source=source, output_dir=tmp_path / "o"
    )
    usage = result.metadata["usage"]
    dropped = source.counts["rephrasings_duplicate"]
    assert est.expected_samples - dropped == result.counts.samples_generated
    assert est.endpoints[0].calls - dropped == usage["generator"]["calls"]
    assert est.endpoints[1].calls - dropped == usage["primary"]["calls"]
    assert "Upper bound" in format_estimate(est)
