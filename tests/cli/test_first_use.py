"""What a new user meets first, through the real command line (in process, on the simulator)."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import pytest

from sft_distill.cli import main
from sft_distill.config.merging import load_config
from tests import helpers
from tests.helpers import REPO, SLICES, read_jsonl, read_metadata


def dry_run(tmp_path: Path, *args: str, out: str = "out") -> tuple[int, Path]:
    """``sft-distill --input examples/slices.jsonl --dry-run -q ARGS`` in process."""
    target = tmp_path / out
    return helpers.dry_run(SLICES, target, *args), target


def write_json(path: Path, obj: object) -> Path:
    path.write_text(json.dumps(obj), encoding="utf-8")
    return path


def error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


# --- 1. a null evaluator stays removed whatever flags are given ------------------------------


@pytest.mark.slow  # over 0.3 s: in the full suite, not in -m "not slow"
def test_null_evaluator_stays_removed_when_flags_set_config_values(tmp_path, capsys):
    cfg = write_json(tmp_path / "c.json", {"evaluators": {"secondary": None}, "min_votes": 1})
    assert list(load_config(cfg, {"output_dir": "x"}).evaluators) == ["primary"]
    code, out = dry_run(
        tmp_path, "--config", str(cfg), "--samples-per-slice", "1", "--min-score-threshold", "7"
    )
    assert code == 0, capsys.readouterr().err
    meta = read_metadata(out)
    assert set(meta["usage"]) == {"generator", "primary"}
    assert list(meta["config"]["evaluators"]) == ["primary"]
    raw = read_jsonl(out / "generated_raw.jsonl")
    assert raw and {j["evaluator"] for r in raw for j in r["judgements"]} == {"primary"}


# --- 2. votes that can never (or always) be reached ------------------------------------------


def test_min_votes_zero_is_refused_naming_the_flag(tmp_path, capsys):
    code, out = dry_run(tmp_path, "--min-votes", "0")
    assert code == 2
    err = error_line(capsys)
    assert "--min-votes: must be at least 1" in err
    assert "config:" not in err and "Value error" not in err
    assert not out.exists()


def test_min_votes_above_the_evaluators_is_refused_at_load(tmp_path, capsys):
    cfg = write_json(tmp_path / "c.json", {"evaluators": {"secondary": None}})
    code, _ = dry_run(tmp_path, "--config", str(cfg))
    assert code == 2
    err = error_line(capsys)
    assert f"{cfg}: invalid config: min_votes: 2 is more than the 1 evaluator configured" in err
    assert "set it to 1 or less" in err


# --- 3. balance_by and what "kept" counts --------------------------------------------------


@pytest.mark.slow  # over 0.3 s: in the full suite, not in -m "not slow"
def test_balance_by_a_field_no_slice_has_warns_and_caps_nothing(tmp_path, capsys, caplog):
    caplog.set_level(logging.WARNING)
    code, out = dry_run(tmp_path, "--balance-by", "titel", "--max-per-group", "1")
    assert code == 0
    warned = [r.getMessage() for r in caplog.records if "balance_by" in r.getMessage()]
    assert len(warned) == 1
    assert "no slice has this metadata field" in warned[0] and "did you mean 'title'" in warned[0]
    counts = read_metadata(out)["counts"]
    assert counts["train"] + counts["val"] == counts["after_dedup"] > 1
    assert "capped" not in counts["dropped"]


@pytest.mark.slow  # over 0.3 s: in the full suite, not in -m "not slow"
def test_balance_by_a_real_field_still_caps(tmp_path, capsys, caplog):
    code, out = dry_run(tmp_path, "--balance-by", "license", "--max-per-group", "1")
    assert code == 0
    assert not [r for r in caplog.records if "balance_by" in r.getMessage()]
    counts = read_metadata(out)["counts"]
    licenses = {row["metadata"]["license"] for row in read_jsonl(SLICES)}
    assert counts["train"] + counts["val"] == len(licenses)


def test_balance_by_without_max_per_group_is_an_error(tmp_path, capsys):
    code, out = dry_run(tmp_path, "--balance-by", "title")
    assert code == 2
    err = error_line(capsys)
    assert "--balance-by: needs max_per_group (--max-per-group N" in err
    assert not out.exists()


@pytest.mark.slow  # over 0.3 s: in the full suite, not in -m "not slow"
def test_summary_kept_counts_what_was_written(tmp_path, capsys):
    code, out = dry_run(tmp_path, "--max-per-slice", "1")
    assert code == 0
    summary = capsys.readouterr().out
    rows = len(read_jsonl(out / "train.jsonl")) + len(read_jsonl(out / "val.jsonl"))
    counts = read_metadata(out)["counts"]
    assert counts["after_dedup"] > rows  # the cap removed some after dedup
    kept = re.search(r"-> (\d+) kept \((\d+) train / (\d+) val\)", summary)
    assert kept, summary
    assert int(kept[1]) == rows == int(kept[2]) + int(kept[3])


@pytest.mark.slow  # over 0.3 s: in the full suite, not in -m "not slow"
def test_refilter_summary_kept_counts_what_was_written(tmp_path, capsys):
    code, out = dry_run(tmp_path)
    assert code == 0
    capsys.readouterr()
    assert main(["refilter", "--output", str(out), "--max-per-slice", "1"]) == 0
    summary = capsys.readouterr().out
    rows = len(read_jsonl(out / "train.jsonl")) + len(read_jsonl(out / "val.jsonl"))
    kept = re.search(r"kept (\d+) -> (\d+) \(", summary)
    assert kept, summary
    assert int(kept[2]) == rows < int(kept[1])


# --- 5. errors name the flag, carry no pydantic prefix, suggest the key meant ----------------


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--min-score-threshold", "42"], "--min-score-threshold: Input should be less than"),
        (["--samples-per-slice", "0"], "--samples-per-slice: Input should be greater than"),
        (["--format", "xml"], "--format: "),
        (["--max-per-group", "2"], "--max-per-group: needs balance_by"),
    ],
)
def test_flag_errors_name_the_flag(tmp_path, capsys, args, expected):
    code, _ = dry_run(tmp_path, *args)
    assert code == 2
    err = error_line(capsys)
    assert err.startswith("sft-distill: error: " + expected), err
    assert "config:" not in err and "Value error" not in err


def test_file_and_flag_errors_each_name_their_origin(tmp_path, capsys):
    cfg = write_json(tmp_path / "c.json", {"generator": {"api_base": "ftp://x"}})
    code, _ = dry_run(tmp_path, "--config", str(cfg), "--min-votes", "0")
    assert code == 2
    err = error_line(capsys)
    assert "--min-votes: must be at least 1" in err
    assert f"{cfg}: invalid config: generator.api_base: must start with http" in err
    assert "Value error" not in err


def test_unknown_key_suggests_the_closest(tmp_path, capsys):
    cfg = write_json(
        tmp_path / "c.json",
        {"sampels_per_slice": 2, "evaluators": {"primary": {"modle": "m"}}, "zzz": 1},
    )
    code, _ = dry_run(tmp_path, "--config", str(cfg))
    assert code == 2
    err = error_line(capsys)
    assert "sampels_per_slice: unknown key (did you mean 'samples_per_slice'?)" in err
    assert "evaluators.primary.modle: unknown key (did you mean 'model'?)" in err
    assert "zzz: unknown key;" in err or err.endswith("zzz: unknown key")


@pytest.mark.slow  # over 0.3 s: in the full suite, not in -m "not slow"
def test_refilter_flag_errors_name_the_flag(tmp_path, capsys):
    code, out = dry_run(tmp_path)
    assert code == 0
    capsys.readouterr()
    assert main(["refilter", "--output", str(out), "--min-votes", "0"]) == 2
    err = error_line(capsys)
    assert "--min-votes: must be at least 1" in err and "Value error" not in err


@pytest.mark.slow  # over 0.3 s: in the full suite, not in -m "not slow"
def test_refilter_unknown_setting_suggests_the_closest(tmp_path, capsys):
    code, out = dry_run(tmp_path)
    assert code == 0
    changes = write_json(tmp_path / "changes.json", {"min_score_treshold": 8})
    capsys.readouterr()
    assert main(["refilter", "--output", str(out), "--config", str(changes)]) == 2
    assert "did you mean 'min_score_threshold'?" in error_line(capsys)


# --- 6. README configs paste as they are; comments get a hint -------------------------------


def readme_json_blocks() -> list[str]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    return re.findall(r"^```json\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL)


def test_readme_json_blocks_are_valid_configs(tmp_path):
    text = (REPO / "README.md").read_text(encoding="utf-8")
    assert "```jsonc" not in text  # a block users paste must be plain JSON
    blocks = readme_json_blocks()
    assert sum('"generator"' in b for b in blocks) >= 3  # the endpoint examples
    for i, block in enumerate(blocks):
        path = tmp_path / f"block{i}.json"
        path.write_text(block, encoding="utf-8")
        load_config(path)  # raises ConfigError naming the key when a block is wrong


def test_config_with_comments_gets_a_hint(tmp_path, capsys):
    cfg = tmp_path / "c.json"
    cfg.write_text('// local judges\n{"min_votes": 1}\n', encoding="utf-8")
    code, _ = dry_run(tmp_path, "--config", str(cfg))
    assert code == 2
    err = error_line(capsys)
    assert f"{cfg}:1: not valid JSON" in err and "JSON has no comments" in err


# --- 7. CSV or TSV given as JSONL ----------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "body", "kind"),
    [
        ("slices.csv", 'id,content\n1,"第一条 为了规范保险活动, 制定本法。"\n2,abc\n', "CSV"),
        ("slices.jsonl", "id\tcontent\n1\t第一条\n", "TSV"),
    ],
)
@pytest.mark.parametrize("mode", [[], ["distill"], ["augment"], ["--estimate"]])
def test_csv_input_is_named_as_csv(tmp_path, capsys, name, body, kind, mode):
    src = tmp_path / name
    src.write_text(body, encoding="utf-8")
    out = tmp_path / "out"
    subcommand = [m for m in mode if not m.startswith("-")]
    flags = [m for m in mode if m.startswith("-")]
    code = main([*subcommand, "--input", str(src), "--output", str(out), "--dry-run", *flags])
    assert code == 2
    err = error_line(capsys)
    assert f"{src}: this looks like {kind}, not JSONL" in err
    assert not out.exists()


def test_jsonl_with_commas_is_not_taken_for_csv(tmp_path, capsys):
    src = tmp_path / "s.jsonl"
    src.write_text(
        '{"id": "a", "content": "第一条 保险, 合同。"}\n{"id": "b", "content": "x, y, z"}\n',
        encoding="utf-8",
    )
    code = main(["--input", str(src), "--output", str(tmp_path / "o"), "--dry-run", "-q"])
    assert code == 0, capsys.readouterr().err


# --- 9. help, quiet refilter, plurals, rounded scores ---------------------------------------


def help_text(capsys, *argv: str) -> str:
    with pytest.raises(SystemExit) as info:
        main([*argv, "--help"])
    assert info.value.code == 0
    return capsys.readouterr().out


def test_each_subcommand_has_its_own_description(capsys):
    top = help_text(capsys)
    usage = top.split("\n\n")[0]
    for command in ("run", "topics", "distill", "augment", "refilter"):
        assert command in usage, usage
    descriptions = {}
    for command in ("run", "topics", "distill", "augment", "refilter"):
        text = help_text(capsys, command)
        descriptions[command] = text.split("\n\n")[1]  # the paragraph after the usage
    assert len(set(descriptions.values())) == 5, descriptions
    assert "topic" in descriptions["topics"] and "instruction set" in descriptions["distill"]
    assert "Rephrase" in descriptions["augment"] and "finished run" in descriptions["refilter"]


@pytest.mark.slow
def test_refilter_is_quiet_by_default_and_talks_with_v(tmp_path, cli):
    out = tmp_path / "out"
    p = cli("--input", str(SLICES), "--output", str(out), "--dry-run", "-q")
    assert p.returncode == 0, p.stderr
    p = cli("refilter", "--output", str(out), "--min-score-threshold", "8")
    assert p.returncode == 0 and p.stderr == "", p.stderr
    assert "sft-distill refilter:" in p.stdout
    p = cli("refilter", "--output", str(out), "--min-score-threshold", "7.5", "-v")
    assert p.returncode == 0 and "INFO" in p.stderr


def test_summary_says_1_slice_not_1_slices(tmp_path, capsys):
    one = tmp_path / "one.jsonl"
    one.write_text(SLICES.read_text(encoding="utf-8").splitlines()[6] + "\n", encoding="utf-8")
    code = main(
        [
            "--input",
            str(one),
            "--output",
            str(tmp_path / "o"),
            "--dry-run",
            "-q",
            "--samples-per-slice",
            "1",
        ]
    )
    assert code == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith("sft-distill: 1 slice -> 1 chunk -> 1 sample -> "), first


def decimals_ok(value: float | None) -> bool:
    return value is None or round(value, 2) == value


@pytest.mark.slow  # over 0.3 s: in the full suite, not in -m "not slow"
def test_scores_in_outputs_are_rounded_and_agree_with_the_votes(tmp_path, capsys):
    code, out = dry_run(tmp_path, "--format", "sharegpt,alpaca")
    assert code == 0
    raw = read_jsonl(out / "generated_raw.jsonl")
    assert len(raw) > 10
    for r in raw:
        assert decimals_ok(r["avg_score"]), r["avg_score"]
        # A judge early_drop did not ask has no scores (and casts no vote).
        asked = [j for j in r["judgements"] if j["error"] is None and not j.get("skipped")]
        means = [j["weighted_mean"] for j in asked]
        assert all(decimals_ok(m) for m in means), means
        # The written means decide the votes: a written 7.0 always voted at threshold 7.0,
        # given the judge met the default score floors (accuracy 6, standalone 5; issue 12).
        if not (r["drop_reason"] or "").startswith("gate:"):
            ok = asked
            floors_met = [
                j["scores"]["accuracy"] >= 6 and j["scores"]["standalone"] >= 5 for j in ok
            ]
            assert r["votes"] == sum(
                j["weighted_mean"] >= 7.0 and met for j, met in zip(ok, floors_met, strict=True)
            )
    for name in ("train.jsonl", "val.jsonl", "train.alpaca.jsonl"):
        for row in read_jsonl(out / name):
            prov = row["provenance"]
            assert decimals_ok(prov["avg_score"]) and decimals_ok(row.get("avg_score"))
            assert all(decimals_ok(s["weighted_mean"]) for s in prov["scores"].values())
    # refilter recomputes with new weights: still rounded.
    assert main(["refilter", "--output", str(out), "--config", str(weights(tmp_path))]) == 0
    for r in read_jsonl(out / "generated_raw.jsonl"):
        assert decimals_ok(r["avg_score"])
        assert all(
            decimals_ok(j["weighted_mean"])
            for j in r["judgements"]
            if not j["error"] and not j.get("skipped")
        )


def weights(tmp_path: Path) -> Path:
    return write_json(tmp_path / "w.json", {"dimension_weights": {"accuracy": 2, "safety": 1}})


def test_no_usable_slice_counts_in_words(tmp_path, capsys):
    src = tmp_path / "bad.jsonl"
    src.write_text('{"text": "第一条"}\n', encoding="utf-8")
    code = main(["--input", str(src), "--output", str(tmp_path / "o"), "--dry-run", "-q"])
    assert code == 2
    assert "no usable slice (1 bad line: missing_content 1)" in capsys.readouterr().err
