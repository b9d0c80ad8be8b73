"""The models under test (``--student``/``--baseline``) and the eval's config."""

from __future__ import annotations

import json
import re

import pytest

from sft_distill.config.merging import build_config, load_config
from sft_distill.errors import ConfigError
from sft_distill.evaluation.targets import STUDENT, eval_config, resolve_target
from sft_distill.outputs.manifest import config_digest

STUDENT_EP = {"api_base": "http://localhost:8000/v1", "model": "student", "api_key": "sk-secret-1"}


def test_students_are_endpoints_in_the_config_and_their_keys_stay_secret():
    config = build_config({"students": {"tuned": STUDENT_EP}})
    assert config.students["tuned"].model == "student"
    public = config.public_dict()
    assert public["students"]["tuned"]["api_key"] == "***"
    assert "sk-secret-1" not in json.dumps(public)
    # the models under test do not shape the data: the manifest's config hash ignores them
    assert config_digest(config) == config_digest(build_config({}))


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"studnets": {}}, "studnets: unknown key (did you mean 'students'?)"),
        ({"students": {"t": {**STUDENT_EP, "modle": "x"}}}, "students.t.modle: unknown key"),
        ({"students": {"t": {"api_base": "localhost"}}}, "students.t.api_base: must start with"),
    ],
)
def test_bad_students_are_named(config, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        build_config(config)


def test_the_eval_takes_the_runs_judges_with_the_config_merged_over_them(tmp_path):
    run = build_config({"evaluators": {"secondary": None}, "min_votes": 1, "prices": {}})
    metadata = {"config": run.public_dict()}
    assert eval_config(metadata, None).evaluators.keys() == {"primary"}
    cfg = tmp_path / "eval.json"
    cfg.write_text(
        json.dumps(
            {"evaluators": {"primary": {"model": "judge-x"}}, "students": {"s": STUDENT_EP}}
        ),
        encoding="utf-8",
    )
    merged = eval_config(metadata, cfg)
    assert merged.evaluators["primary"].model == "judge-x"
    assert merged.evaluators["primary"].api_base == run.evaluators["primary"].api_base
    assert merged.students["s"].resolve_key() == "sk-secret-1"
    assert merged.config_dir == str(tmp_path.resolve())
    # a key the run recorded masked ("***") is not taken for a key
    recorded = build_config({"students": {"s": STUDENT_EP}}).public_dict()
    assert eval_config({"config": recorded}, None).students["s"].api_key is None
    cfg.write_text(json.dumps({"evalutors": {}}), encoding="utf-8")
    with pytest.raises(
        ConfigError, match=r"evalutors: unknown key \(did you mean 'evaluators'\?\)"
    ):
        eval_config(metadata, cfg)


def test_a_student_is_a_file_a_name_or_in_a_dry_run_a_simulated_model(tmp_path):
    config = load_config(None, {"students": {"tuned": STUDENT_EP}})
    named = resolve_target("tuned", config, label=STUDENT, flag="--student", dry_run=False)
    assert (named.label, named.name, named.source, named.endpoint.model) == (
        "student",
        "tuned",
        "config",
        "student",
    )
    path = tmp_path / "base-model.json"
    path.write_text(json.dumps({"api_base": "http://localhost:8001/v1", "model": "Qwen-7B"}))
    from_file = resolve_target(str(path), config, label="b", flag="--baseline", dry_run=False)
    assert (from_file.name, from_file.source, from_file.endpoint.model) == (
        "base-model",
        "file",
        "Qwen-7B",
    )
    simulated = resolve_target("base", config, label="b", flag="--baseline", dry_run=True)
    assert simulated.source == "simulator" and simulated.endpoint.model == "base"
    with pytest.raises(ConfigError, match=r"--baseline 'base': no such file.*\(known: tuned\)"):
        resolve_target("base", config, label="b", flag="--baseline", dry_run=False)
    path.write_text(json.dumps({"api_base": "http://localhost:8001/v1"}))
    with pytest.raises(ConfigError, match=r"base-model\.json: invalid config: model: required key"):
        resolve_target(str(path), config, label="b", flag="--baseline", dry_run=False)
    assert "sk-secret-1" not in json.dumps(named.public())
