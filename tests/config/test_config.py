"""Configuration: defaults, key-by-key merging, env keys, errors that name the key."""

from __future__ import annotations

import json

import pytest

from sft_distill.config.defaults import CONFIG_TEMPLATE
from sft_distill.config.merging import build_config, load_config
from sft_distill.config.models import display_url
from sft_distill.errors import ConfigError


def test_defaults_match_the_documented_keys():
    cfg = build_config()
    assert cfg.samples_per_slice == 3 and cfg.min_score_threshold == 7.0
    assert cfg.min_votes == 2 and cfg.train_val_split == 0.9 and cfg.enable_dedup is True
    assert cfg.output_dir == "./distilled_dataset"
    assert list(cfg.evaluators) == ["primary", "secondary"]
    assert set(CONFIG_TEMPLATE["generator"]) >= {"api_base", "model", "max_concurrent"}


def test_nested_endpoint_merges_key_by_key(tmp_path):
    p = tmp_path / "c.json"
    p.write_text(json.dumps({"generator": {"api_key": "sk-abc"}, "min_votes": 1}))
    cfg = load_config(p)
    assert cfg.generator.resolve_key() == "sk-abc"
    assert cfg.generator.model == CONFIG_TEMPLATE["generator"]["model"]
    assert cfg.generator.api_base == CONFIG_TEMPLATE["generator"]["api_base"]
    assert cfg.min_votes == 1


def test_evaluator_can_be_removed_with_null():
    cfg = build_config({"evaluators": {"secondary": None}, "min_votes": 1})
    assert list(cfg.evaluators) == ["primary"]


def test_unknown_keys_are_named(tmp_path):
    p = tmp_path / "c.json"
    p.write_text(json.dumps({"sampels_per_slice": 3, "generator": {"modle": "x"}}))
    with pytest.raises(ConfigError) as info:
        load_config(p)
    msg = str(info.value)
    assert "sampels_per_slice: unknown key" in msg and "generator.modle: unknown key" in msg
    assert str(p) in msg


@pytest.mark.parametrize(
    ("override", "fragment"),
    [
        ({"min_score_threshold": 11}, "min_score_threshold"),
        ({"train_val_split": 1.5}, "train_val_split"),
        ({"generator": {"max_concurrent": 0}}, "generator.max_concurrent"),
        (
            {"generator": {"api_base": "ftp://x"}},
            "generator.api_base: must start with http",
        ),
        (
            {"evaluators": {"judge3": {"model": "m"}}},
            "evaluators.judge3.api_base: required key is missing",
        ),
        ({"min_votes": 3}, "min_votes: 3 is more than the 2 evaluators configured"),
        ({"dimension_weights": {"speed": 1}}, "unknown dimension(s) ['speed']"),
        ({"samples_per_slice": "many"}, "samples_per_slice"),
        ({"generator": {"structured_output": "xml"}}, "generator.structured_output: Input should"),
        (
            {"evaluators": {"primary": {"thinking": "off", "reasoning_effort": "high"}}},
            "evaluators.primary.reasoning_effort: thinking off contradicts reasoning_effort 'high'",
        ),
        ({"generator": {"thinking": "maybe"}}, "generator.thinking"),
        ({"prices": {"m": {"batch_discount": 1}}}, "prices.m.batch_discount"),
        ({"prices": {"m": {"cached_input_per_1k": -1}}}, "prices.m.cached_input_per_1k"),
    ],
)
def test_bad_values_say_which_key_and_what(override, fragment):
    with pytest.raises(ConfigError) as info:
        build_config(override)
    assert fragment in str(info.value)


def test_key_from_environment(monkeypatch):
    monkeypatch.setenv("MY_TEST_KEY", "sk-from-env")
    cfg = build_config({"generator": {"api_key_env": "MY_TEST_KEY"}})
    assert cfg.generator.resolve_key() == "sk-from-env"


def test_public_dict_never_holds_a_key(monkeypatch):
    monkeypatch.setenv("MY_TEST_KEY", "sk-env-secret")
    cfg = build_config(
        {
            "generator": {"api_key": "sk-inline-secret"},
            "evaluators": {"primary": {"api_key_env": "MY_TEST_KEY"}},
        }
    )
    text = json.dumps(cfg.public_dict())
    assert "sk-inline-secret" not in text and "sk-env-secret" not in text
    assert cfg.public_dict()["generator"]["api_key"] == "***"
    assert "sk-inline-secret" not in repr(cfg) and "sk-inline-secret" not in str(cfg.generator)


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (None, "config file not found"),
        ("{not json", "not valid JSON"),
        ("[1, 2]", "must be a JSON object"),
    ],
)
def test_bad_config_files(tmp_path, content, fragment):
    p = tmp_path / "c.json"
    if content is not None:
        p.write_text(content)
    with pytest.raises(ConfigError) as info:
        load_config(p)
    assert fragment in str(info.value)


def test_api_base_normalised():
    cfg = build_config({"generator": {"api_base": "http://127.0.0.1:8000/v1/chat/completions/"}})
    assert cfg.generator.api_base == "http://127.0.0.1:8000/v1"


def test_dedup_method_follows_embed_fn():
    assert build_config().effective_dedup_method == "jaccard"
    cfg = build_config(embed_fn=lambda texts: None)
    assert cfg.effective_dedup_method == "embedding" and cfg.effective_dedup_threshold == 0.95


def test_public_dict_strips_credentials_from_urls():
    # user:pass@ in api_base is refused (tests/test_store_edges.py); a query string is not.
    cfg = build_config({"generator": {"api_base": "https://gw.example.invalid/v1?k=s"}})
    assert cfg.public_dict()["generator"]["api_base"] == "https://gw.example.invalid/v1"
    assert display_url("https://user:tok987@gw.example.invalid/v1?k=s") == (
        "https://gw.example.invalid/v1"
    )


def test_structured_output_thinking_and_price_keys_have_their_defaults():
    cfg = build_config({"prices": {"m": {"input_per_1k": 1.0}}})
    ep = cfg.generator
    assert (ep.structured_output, ep.thinking, ep.reasoning_effort) == ("auto", "auto", None)
    assert ep.thinking_style == "chat_template_kwargs"
    price = cfg.prices["m"]
    assert price.cached_input_per_1k is None and price.batch_discount == 0.0
    assert cfg.public_dict()["generator"]["structured_output"] == "auto"
