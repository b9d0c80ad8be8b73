"""The defaults a config file is merged over (``CONFIG_TEMPLATE``) and the judging dimensions."""

from __future__ import annotations

from typing import Any

DIMENSIONS: tuple[str, ...] = ("accuracy", "completeness", "logicality", "helpfulness", "safety")


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
            "max_tokens": 512,
        },
        "secondary": {
            "api_base": "https://api.moonshot.cn/v1",
            "api_key_env": "MOONSHOT_API_KEY",
            "model": "moonshot-v1-8k",
            "max_concurrent": 8,
            "temperature": 0.0,
            "max_tokens": 512,
        },
    },
    "samples_per_slice": 3,
    "min_score_threshold": 7.0,
    "min_votes": 2,
    "train_val_split": 0.9,
    "enable_dedup": True,
    "output_dir": "./distilled_dataset",
}
