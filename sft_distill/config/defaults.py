"""The defaults a config file is merged over (``CONFIG_TEMPLATE``) and the judging dimensions."""

from __future__ import annotations

from typing import Any

# Every dimension a judge scores, in the rubric's order. ``standalone`` (eval-v2) asks whether the
# question can be understood without the source document.
DIMENSIONS: tuple[str, ...] = (
    "accuracy",
    "completeness",
    "logicality",
    "helpfulness",
    "safety",
    "standalone",
)

# The dimensions the weighted mean counts when ``dimension_weights`` is not set (equal weights).
# ``standalone`` is left out: a mean would let good prose buy back a question nobody can read
# alone, so it acts through its floor instead (and enters the mean only when weighted).
MEAN_DIMENSIONS: tuple[str, ...] = DIMENSIONS[:5]

# Dimensions added after eval-v1: a judgement recorded before them never scored them, so their
# floor does not apply to it (refilter of an old run keeps working).
LATER_DIMENSIONS: frozenset[str] = frozenset({"standalone"})

# The score a judge must give a dimension for its vote to count, whatever its mean (issue 12).
# accuracy 6: the rubric's 5 is "a claim the source does not contain", 8 "every key claim
# supported", so a judge that found an unsupported or contradicted claim cannot vote to keep.
# standalone 5: the rubric's 2 is "points at a text the reader does not have" (dropped), 5 "vague
# about which law or product" (kept: the referential gate is the stricter check for that).
DEFAULT_SCORE_FLOORS: dict[str, float] = {"accuracy": 6.0, "standalone": 5.0}

# A judge writes its claim checks and analysis before the scores (eval-v2): about 300-700 tokens
# for a Chinese answer of a few sentences. 512 cut such replies off (finish_reason "length", a
# retry, then a failed judgement); 1024 leaves room for a long answer's claims.
DEFAULT_JUDGE_MAX_TOKENS = 1024

# Batched judging (issue 13): one judge call scores the samples of one chunk, the source sent
# once ("auto": as many as fit DEFAULT_JUDGE_BATCH_TOKENS of samples, at most
# JUDGE_BATCH_AUTO_MAX). Chosen from benchmarks/bench_cost.py: README "Judging".
DEFAULT_JUDGE_BATCH_SIZE = "auto"
DEFAULT_JUDGE_BATCH_TOKENS = 6000
# A batch's reply holds one judgement per sample, so it gets the endpoint's max_tokens once per
# sample; 8 keeps that within common output limits (8,192 tokens at the default 1,024).
JUDGE_BATCH_AUTO_MAX = 8
# The most reply tokens a batched judging request asks for (many servers cap replies at 8,192):
# "auto" batches hold at most this over the endpoint's max_tokens samples.
JUDGE_BATCH_REPLY_TOKENS = 8192


DEFAULT_TIMEOUT_S = 600.0


DEFAULT_MAX_RETRIES = 5


DEFAULT_MAX_CONSECUTIVE_FAILURES = 5


DEFAULT_CHUNK_CHARS = 6000


# The gates a config without ``gates`` runs, before any judge is paid: the quality checks first
# (a sample gets the most specific reason: gate:non_answer rather than gate:grounding), then the
# rule gates. ``"gates": []`` turns them all off; ``exclude`` leaves some of a bundle out.
DEFAULT_GATES: tuple[dict[str, Any], ...] = ({"type": "quality"}, {"type": "rules"})


# The keys users already know. Endpoint dicts are merged key by key over these.
CONFIG_TEMPLATE: dict[str, Any] = {
    "generator": {
        "api_base": "https://dashscope.aliyuncs.com/compatible-mode/v1",
        "api_key_env": "DASHSCOPE_API_KEY",
        "model": "qwen-max",
        "max_concurrent": 8,
        "temperature": 0.7,
        "max_tokens": 4096,
    },
    "evaluators": {
        "primary": {
            "api_base": "https://api.deepseek.com/v1",
            "api_key_env": "DEEPSEEK_API_KEY",
            "model": "deepseek-chat",
            "max_concurrent": 8,
            "temperature": 0.0,
            "max_tokens": DEFAULT_JUDGE_MAX_TOKENS,
        },
        "secondary": {
            "api_base": "https://api.moonshot.cn/v1",
            "api_key_env": "MOONSHOT_API_KEY",
            "model": "moonshot-v1-8k",
            "max_concurrent": 8,
            "temperature": 0.0,
            "max_tokens": DEFAULT_JUDGE_MAX_TOKENS,
        },
    },
    "samples_per_slice": 3,
    "min_score_threshold": 7.0,
    "min_votes": 2,
    # Merged key by key like the rest: {"score_floors": {"standalone": null}} removes one floor,
    # "score_floors": null all of them.
    "score_floors": dict(DEFAULT_SCORE_FLOORS),
    "train_val_split": 0.9,
    "enable_dedup": True,
    "output_dir": "./distilled_dataset",
}
