"""``sft-distill eval`` end to end on the simulator: outputs, both-order judging, win rates that
follow the student's quality, intervals in the written metadata, Text2SQL execution accuracy."""

from __future__ import annotations

import json
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from sft_distill.simulator.students import ANSWER_GAPS_ENV, POSITION_BIAS_ENV
from tests.evaluation.conftest import make_run
from tests.helpers import EXAMPLES, read_jsonl, write_jsonl

pytestmark = pytest.mark.slow


def eval_dir(run: Path) -> Path:
    return run / "eval"


def read_eval(run: Path) -> tuple[list[dict], dict]:
    """(answers.jsonl rows, eval_metadata.json) of an eval."""
    meta = json.loads((eval_dir(run) / "eval_metadata.json").read_text(encoding="utf-8"))
    return read_jsonl(eval_dir(run) / "answers.jsonl"), meta


def dry_eval(cli, run: Path, *extra: str):
    return cli("eval", "--output", str(run), "--student", "student", "--dry-run", "-q", *extra)


# --- a dry run end to end -------------------------------------------------------------------


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.urls += [v or "" for k, v in attrs if k in ("src", "href")]


def test_dry_run_eval_end_to_end(cli, run_copy, monkeypatch):
    monkeypatch.delenv(ANSWER_GAPS_ENV, raising=False)
    run = run_copy()
    val = read_jsonl(run / "val.jsonl")
    done = dry_eval(cli, run, "--baseline", "base")
    assert done.returncode == 0, done.stderr
    assert "student vs reference:" in done.stdout and "student vs baseline:base:" in done.stdout
    assert "(dry run: replies came from the built-in simulator)" in done.stdout
    assert done.stderr == ""  # split by slice: nothing to warn about
    rows, meta = read_eval(run)

    # every question asked of every model, in the order of val.jsonl, the reference beside them
    assert len(rows) == 3 * len(val)
    assert [r["question_id"] for r in rows[::3]] == [row["id"] for row in val]
    assert [r["model"] for r in rows[:3]] == ["student", "baseline:base", "reference"]
    for row, reference in zip(rows[2::3], val, strict=True):
        assert row["answer"] == reference["conversations"][1]["value"]
    # each answer scored by both judges against its source chunk (recovered from the input)
    assert all(r["has_source"] for r in rows)
    for r in rows:
        assert set(r["scores"]) == {"primary", "secondary"}
        assert all(s["mean"] is not None for s in r["scores"].values())
    # the student compared with the reference and the baseline by each judge, in both orders
    for r in rows[::3]:
        assert set(r["pairwise"]) == {"reference", "baseline:base"}
        for comparison in r["pairwise"].values():
            assert comparison["outcome"] in ("win", "tie", "loss")
            for verdict in comparison["judges"].values():
                assert verdict["first"] in ("A", "B", "tie")
                assert verdict["swapped"] in ("A", "B", "tie")

    assert meta["simulator"] is True and meta["failures"] == 0
    assert meta["questions"]["n"] == len(val) and meta["questions"]["with_source"] == len(val)
    assert meta["questions"]["split_by"] == "slice"
    assert set(meta["comparisons"]) == {"reference", "baseline:base"}
    assert set(meta["scores"]["by_model"]) == {"student", "baseline:base", "reference"}
    dims = meta["scores"]["by_model"]["student"]["dimensions"]
    assert {"accuracy", "completeness", "safety"} <= set(dims)
    assert meta["breakdown"] and sum(g["questions"] for g in meta["breakdown"]) == len(val)
    assert meta["comparisons"]["reference"]["judge_agreement"][0]["a"] == "primary"
    calls = {name: u["calls"] for name, u in meta["usage"].items()}
    assert calls["student"] == calls["baseline:base"] == len(val)
    # a baseline as good as the student may give the very same answer: asked once, then shared
    assert len(val) * 7 <= calls["primary"] + meta["usage"]["primary"]["this_invocation"]["cached"]

    html = (eval_dir(run) / "eval_report.html").read_text(encoding="utf-8")
    parser = _Tags()
    parser.feed(html)
    assert "script" not in parser.tags and parser.urls == []
    assert "svg" in parser.tags and "Did the student learn?" in html
    assert not re.search(r"https?://", html)


def test_rerun_of_a_finished_eval_asks_nothing_and_writes_the_same_answers(cli, run_copy):
    run = run_copy()
    assert dry_eval(cli, run).returncode == 0
    first = (eval_dir(run) / "answers.jsonl").read_bytes()
    again = dry_eval(cli, run)
    assert again.returncode == 0
    _, meta = read_eval(run)
    assert all(u["this_invocation"]["calls"] == 0 for u in meta["usage"].values())
    assert (eval_dir(run) / "answers.jsonl").read_bytes() == first
    assert meta["whole_eval"]["invocations"] == 2


# --- the student's quality moves the win rate ------------------------------------------------


def panel(run: Path) -> dict:
    return read_eval(run)[1]["comparisons"]["reference"]["panel"]


def test_a_worse_student_loses_and_a_better_one_wins(cli, run_copy, monkeypatch):
    monkeypatch.setenv(ANSWER_GAPS_ENV, "student=-0.8")
    worse = run_copy()
    assert dry_eval(cli, worse).returncode == 0
    monkeypatch.setenv(ANSWER_GAPS_ENV, "student=0.8")
    better = run_copy()
    assert dry_eval(cli, better).returncode == 0
    lost, won = panel(worse), panel(better)
    assert lost["loss_rate"] >= 0.7 and lost["win_rate"] <= 0.1
    assert won["win_rate"] >= 0.6 and won["loss_rate"] <= 0.1
    # the intervals say so too: they do not overlap
    assert lost["win_rate_ci"]["high"] < won["win_rate_ci"]["low"]
    assert lost["win_minus_loss_ci"]["high"] < 0 < won["win_minus_loss_ci"]["low"]


def test_a_judge_biased_to_position_a_gives_ties_not_wins(cli, run_copy, monkeypatch):
    # A better student wins against an unbiased judge ...
    monkeypatch.setenv(ANSWER_GAPS_ENV, "student=0.8")
    fair = run_copy()
    assert dry_eval(cli, fair).returncode == 0
    assert panel(fair)["wins"] > 0
    # ... and only ties against a judge that always picks the first answer: each order alone
    # would give the student a win and then a loss, which both orders together cancel.
    monkeypatch.setenv(POSITION_BIAS_ENV, "1")
    biased = run_copy()
    assert dry_eval(cli, biased).returncode == 0
    rows, meta = read_eval(biased)
    result = meta["comparisons"]["reference"]
    assert result["panel"]["wins"] == result["panel"]["losses"] == 0
    assert result["panel"]["tie_rate"] == 1.0
    for judge, consistency in result["position_consistency"].items():
        assert consistency["first_position"] == consistency["n"] == result["panel"]["n"], judge
        assert consistency["consistency"] == 0.0
    verdicts = [
        v
        for r in rows
        if r["model"] == "student"
        for v in r["pairwise"]["reference"]["judges"].values()
    ]
    assert verdicts and all(
        (v["first"], v["swapped"], v["outcome"]) == ("A", "A", "tie") for v in verdicts
    )


# --- intervals in the written metadata, computed by hand ------------------------------------


def hand_bootstrap(
    values: list[float], n_resamples: int = 2000, seed: int = 0
) -> tuple[float, float]:
    """A percentile bootstrap written out: resample with replacement, mean, 2.5% and 97.5%."""
    x = np.asarray(values, dtype=float)
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, len(x), size=(n_resamples, len(x)))].mean(axis=1)
    low, high = np.quantile(means, [0.025, 0.975])
    return float(low), float(high)


def test_intervals_in_eval_metadata_match_a_hand_computed_bootstrap(cli, run_copy, monkeypatch):
    monkeypatch.setenv(ANSWER_GAPS_ENV, "student=0.3")
    run = run_copy()
    assert dry_eval(cli, run).returncode == 0
    rows, meta = read_eval(run)
    assert meta["bootstrap"] == {
        "n_resamples": 2000,
        "alpha": 0.05,
        "seed": 0,
        "confidence": 0.95,
        "unit": "question",
    }
    student = [r for r in rows if r["model"] == "student"]
    outcomes = [r["pairwise"]["reference"]["outcome"] for r in student]
    got = meta["comparisons"]["reference"]["panel"]
    n = len(outcomes)
    assert (got["n"], got["wins"], got["ties"], got["losses"]) == (
        n,
        outcomes.count("win"),
        outcomes.count("tie"),
        outcomes.count("loss"),
    )
    assert 0 < got["wins"] < n  # an interval with some width
    wins = [1.0 if o == "win" else 0.0 for o in outcomes]
    ci = got["win_rate_ci"]
    assert ci["estimate"] == pytest.approx(outcomes.count("win") / n)
    assert (ci["low"], ci["high"]) == pytest.approx(hand_bootstrap(wins))
    assert ci["low"] < ci["estimate"] < ci["high"]
    net = [{"win": 1.0, "loss": -1.0}.get(o, 0.0) for o in outcomes]
    wl = got["win_minus_loss_ci"]
    assert (wl["low"], wl["high"]) == pytest.approx(hand_bootstrap(net))
    # each judge's own outcomes, from the verdicts of its two orders
    for judge in ("primary", "secondary"):
        own = [r["pairwise"]["reference"]["judges"][judge]["outcome"] for r in student]
        by_judge = meta["comparisons"]["reference"]["by_judge"][judge]
        assert by_judge["wins"] == own.count("win")
        wins = [1.0 if o == "win" else 0.0 for o in own]
        assert (by_judge["win_rate_ci"]["low"], by_judge["win_rate_ci"]["high"]) == pytest.approx(
            hand_bootstrap(wins)
        )
    # the paired score difference, student minus reference, over the same questions
    reference = {r["question_id"]: r["mean_score"] for r in rows if r["model"] == "reference"}
    diffs = [r["mean_score"] - reference[r["question_id"]] for r in student]
    delta = meta["score_deltas"]["reference"]
    assert delta["questions"] == n
    assert delta["delta"]["estimate"] == pytest.approx(float(np.mean(diffs)))
    assert (delta["delta"]["low"], delta["delta"]["high"]) == pytest.approx(hand_bootstrap(diffs))


# --- what the user is told -----------------------------------------------------------------


def test_a_run_split_by_sample_is_warned_about(cli, tmp_path):
    run = make_run(tmp_path / "by-sample")
    done = dry_eval(cli, run, "--max-questions", "3")
    assert done.returncode == 0
    assert "warning: the run split train/val by sample" in done.stderr
    assert "--split-by slice" in done.stderr
    _, meta = read_eval(run)
    assert meta["questions"]["n"] == 3 and "split train/val by sample" in meta["warnings"][0]


def test_estimate_counts_the_calls_and_sends_none(cli, run_copy):
    run = run_copy()
    n = len(read_jsonl(run / "val.jsonl"))
    done = cli(
        "eval", "-o", str(run), "--student", "student", "--baseline", "b", "--estimate", "--dry-run"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(
        f"sft-distill eval estimate for {run / 'val.jsonl'}: {n} questions"
    )
    table = {line.split()[0]: line.split() for line in done.stdout.splitlines() if line.strip()}
    assert table["student"][3] == f"{n:,}" and table["baseline:b"][3] == f"{n:,}"
    # per judge: 3 answers scored and 2 comparisons in both orders, per question
    assert table["primary"][3] == f"{7 * n:,}"
    assert not eval_dir(run).exists()


def test_questions_file_with_source_text_and_reference(cli, tmp_path, monkeypatch):
    monkeypatch.setenv(ANSWER_GAPS_ENV, "student=-0.8")
    clause = "订立保险合同，保险人就保险标的或者被保险人的有关情况提出询问的"
    source = f"第十六条 {clause}，投保人应当如实告知。"
    rows = [
        {
            "id": f"q{i}",
            "question": f"根据《保险法》第十六条，“{clause}”，投保人应当怎么做？（{i}）",
            "answer": f"投保人应当如实告知。{clause}，投保人应当如实告知。",
            "source_text": source,
            "topic": "告知义务" if i % 2 else "合同订立",
        }
        for i in range(6)
    ]
    questions = write_jsonl(tmp_path / "q.jsonl", rows)
    out = tmp_path / "fresh"  # no run there: the questions are all it needs
    done = cli(
        "eval", "-o", str(out), "--questions", str(questions), "--student", "student",
        "--dry-run", "-q", "--group-by", "topic",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    answers, meta = read_eval(out)
    assert meta["questions"]["kind"] == "file" and meta["questions"]["with_source"] == 6
    assert all(r["has_source"] for r in answers)
    assert [r["answer"] for r in answers if r["model"] == "reference"] == [
        r["answer"] for r in rows
    ]
    assert {g["group"] for g in meta["breakdown"]} == {"告知义务", "合同订立"}
    assert meta["comparisons"]["reference"]["panel"]["loss_rate"] >= 0.5


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--student", "nobody"], "--student 'nobody': no such file, and no endpoint of that name"),
        (["--student", "missing.json"], "missing.json: config file not found"),
        (["--student", "s", "--baseline", "s", "--dry-run"], "--baseline 's': given twice"),
        (
            ["--student", "s", "--split", "train", "--dry-run", "--max-questions", "0"],
            "--max-questions",
        ),
    ],
)
def test_usage_errors_are_one_line_with_exit_2(cli, run_copy, args, message):
    run = run_copy()
    done = cli("eval", "-o", str(run), *args)
    assert done.returncode == 2
    assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert "Traceback" not in done.stderr


def test_a_directory_without_a_run_needs_questions(cli, tmp_path):
    done = cli("eval", "-o", str(tmp_path / "nothing"), "--student", "s", "--dry-run")
    assert done.returncode == 2
    assert "no metadata.json there" in done.stderr and "--questions FILE" in done.stderr


def test_students_from_the_config_and_from_a_file(cli, run_copy, tmp_path):
    run = run_copy()
    cfg = tmp_path / "eval.json"
    cfg.write_text(
        json.dumps(
            {
                "students": {
                    "tuned": {
                        "api_base": "http://localhost:8000/v1",
                        "model": "student",
                        "api_key_env": None,
                    }
                }
            }
        ),
        encoding="utf-8",
    )
    base = tmp_path / "base.json"
    base.write_text(
        json.dumps({"api_base": "http://localhost:8001/v1", "model": "Qwen-base"}), encoding="utf-8"
    )
    done = cli(
        "eval", "-o", str(run), "-c", str(cfg), "--student", "tuned", "--baseline", str(base),
        "--dry-run", "-q", "--max-questions", "2",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    rows, meta = read_eval(run)
    assert (
        meta["models"]["student"]["name"] == "tuned"
        and meta["models"]["student"]["from"] == "config"
    )
    assert meta["models"]["baseline:base"]["model"] == "Qwen-base"
    assert {r["endpoint_model"] for r in rows if r["model"] == "baseline:base"} == {"Qwen-base"}


# --- Text2SQL: execution accuracy ---------------------------------------------------------


def build_text2sql(tmp_path: Path) -> Path:
    import importlib.util

    spec = importlib.util.spec_from_file_location("build_db", EXAMPLES / "text2sql" / "build_db.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    example = tmp_path / "text2sql"
    assert module.main(["--out", str(example)]) == 0
    shutil.copy(EXAMPLES / "text2sql" / "config.json", example / "config.json")
    return example


def test_text2sql_exec_accuracy_of_each_model(cli, tmp_path, monkeypatch):
    example = build_text2sql(tmp_path)
    config = json.loads((EXAMPLES / "text2sql" / "config.json").read_text(encoding="utf-8"))
    config["gates"] = [
        {"type": "rules", "exclude": ["grounding"]},
        {"type": "sql", "database": str(example / "shop.db"), "timeout_s": 2},
    ]
    config.pop("min_exec_pass_rate")
    config["train_val_split"] = 0.5
    cfg = example / "eval-config.json"
    cfg.write_text(json.dumps(config), encoding="utf-8")
    run = tmp_path / "run"
    made = cli(
        "--input", str(example / "schema_slices.jsonl"), "--config", str(cfg), "--output",
        str(run), "--dry-run", "-q", "--split-by", "slice",
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    monkeypatch.setenv(ANSWER_GAPS_ENV, "student=0,base=-1")
    done = dry_eval(cli, run, "--baseline", "base")
    assert done.returncode == 0, done.stderr
    rows, meta = read_eval(run)
    n = len(read_jsonl(run / "val.jsonl"))
    assert n >= 3
    ex = meta["exec"]
    # the teacher's kept queries all run (the gate dropped those that did not)
    assert ex["reference"] == {"n": n, "exec_pass": n, "exec_pass_rate": 1.0}
    # the student learned the queries: each runs and returns the reference query's rows
    assert ex["student"]["exec_pass_rate"] == 1.0 and ex["student"]["gold_match_rate"] == 1.0
    # the base model gets every one wrong: some fail to run, the others return other rows
    assert ex["baseline:base"]["gold_match"] == 0
    assert 0 < ex["baseline:base"]["exec_pass"] < n
    student = [r for r in rows if r["model"] == "student"]
    assert all(r["exec"]["sql"] in r["answer"] for r in student)
    assert "exec: student runs 100.0%, same rows as the reference 100.0%" in done.stdout
    assert "Execution accuracy" in (eval_dir(run) / "eval_report.html").read_text(encoding="utf-8")


def test_a_dead_student_stops_the_eval_with_exit_3_and_what_was_done_is_written(
    cli, run_copy, sim, tmp_path
):
    run = run_copy()
    ep = {"api_base": sim.url, "api_key": "sk-x", "api_key_env": None, "max_retries": 1}
    config = {
        "evaluators": {"primary": {**ep, "model": "judge"}, "secondary": None},
        "min_votes": 1,
        "students": {"dead": {**ep, "api_base": "http://127.0.0.1:9/v1", "retry_backoff_s": 0}},
    }
    config["students"]["dead"]["model"] = "student"
    cfg = tmp_path / "dead.json"
    cfg.write_text(json.dumps(config), encoding="utf-8")
    done = cli("eval", "-o", str(run), "-c", str(cfg), "--student", "dead", "-q")
    assert done.returncode == 3
    assert "STOPPED early: endpoint student failed 5 calls in a row" in done.stdout
    rows, meta = read_eval(run)
    assert (
        meta["stopped"]["endpoint"] == "student"
        and meta["stopped"]["url"] == "http://127.0.0.1:9/v1"
    )
    assert (
        meta["questions"]["evaluated"]
        == len({r["question_id"] for r in rows})
        < meta["questions"]["n"]
    )
    failures = read_jsonl(eval_dir(run) / "failures.jsonl")
    assert [f["kind"] for f in failures].count("endpoint") == meta["failure_kinds"]["endpoint"] == 1
    assert (eval_dir(run) / "eval_report.html").exists()
