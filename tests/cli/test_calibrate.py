"""``sft-distill calibrate``: a run's judges against a person's labels, end to end."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.helpers import SLICES, dry_run, read_jsonl, read_metadata, write_jsonl
from tests.raw_factory import judgement, write_run

SIX = ("accuracy", "completeness", "logicality", "helpfulness", "safety", "standalone")


def _planted_run(out: Path) -> Path:
    """Two judges, threshold 7, min_votes 2, default floors (accuracy 6, standalone 5).

    A person passes s1, s2 and s7. At the current setting s3 (7.5, 7.5) and s4 (7, 8) pass too
    and s6 (means 8.0, accuracy 4) is stopped by the accuracy floor.
    """
    from sft_distill.config.merging import build_config
    from sft_distill.models import ScoredSample

    pairs: dict[str, tuple[Any, Any]] = {
        "s1": (9, 9),
        "s2": (8, 8),
        "s3": (7.5, 7.5),
        "s4": (7, 8),
        "s5": (6, 6),
        "s6": ({**dict.fromkeys(SIX, 9), "accuracy": 4},) * 2,
        "s7": (8.5, 8),
        "s8": (5, 5),
    }
    samples = []
    for sid, (a, b) in pairs.items():
        js = [
            judgement(name, dict.fromkeys(SIX, v) if isinstance(v, (int, float)) else v)
            for name, v in (("e0", a), ("e1", b))
        ]
        samples.append(
            ScoredSample(id=sid, slice_id="x", instruction=f"Q {sid}?", output="A.", judgements=js)
        )
    return write_run(out, samples, build_config({}))


def _labels(path: Path, rows: list[dict[str, Any]]) -> Path:
    return write_jsonl(path, rows)


def kappa(tp: int, fp: int, fn: int, tn: int) -> float:
    """Cohen's kappa from a 2x2 table, by the textbook formula."""
    n = tp + fp + fn + tn
    p_o = (tp + tn) / n
    p_e = ((tp + fp) * (tp + fn) + (fn + tn) * (fp + tn)) / (n * n)
    return (p_o - p_e) / (1 - p_e)


def test_calibrate_a_planted_set_by_hand(tmp_path, cli):
    out = _planted_run(tmp_path / "run")
    passing = {"s1", "s2", "s7"}
    rows = [{"id": f"s{i}", "label": "pass" if f"s{i}" in passing else "fail"} for i in range(1, 9)]
    rows[5]["defect"] = "number_swapped"  # s6
    rows += [{"id": "nope-1", "label": "pass"}, {"id": "nope-2", "label": "fail"}]
    labels = _labels(tmp_path / "labels.jsonl", rows)
    done = cli("calibrate", "--output", str(out), "--labels", str(labels))
    assert done.returncode == 0, done.stderr
    # Unknown ids: a warning with their count, on stderr.
    assert "warning: 2 labelled id(s) are not in this run's samples" in done.stderr
    cal = read_metadata(out)["calibration"]
    # Current (7, floor 6, 2 votes): kept s1 s2 s3 s4 s7 -> tp 3, fp 2, fn 0, tn 3.
    # p_o 6/8, p_e (5*3 + 3*5) / 64 = 30/64 -> kappa (48/64 - 30/64) / (34/64) = 18/34 = 9/17.
    cur = cal["current"]
    assert (cur["threshold"], cur["floor"], cur["min_votes"]) == (7.0, 6.0, 2)
    assert (cur["tp"], cur["fp"], cur["fn"], cur["tn"]) == (3, 2, 0, 3)
    assert cur["kappa"] == pytest.approx(9 / 17) == pytest.approx(kappa(3, 2, 0, 3))
    assert cur["precision"] == pytest.approx(3 / 5) and cur["recall"] == 1.0
    # Best: threshold 8 with both votes drops s3 and s4; the floor (kept at 6) drops s6, whose
    # means are 8.0: kappa 1. Above 8, s2 (8, 8) would fail.
    best = cal["best"]
    assert (best["threshold"], best["floor"], best["min_votes"]) == (8.0, 6.0, 2)
    assert best["kappa"] == pytest.approx(1.0)
    assert cal["counts"] == {
        "labels": 10,
        "matched": 8,
        "pass_labels": 3,
        "fail_labels": 5,
        "unknown_ids": 2,
        "not_judged": 0,
    }
    # Each judge alone at the current setting: e0 and e1 keep the same five.
    assert cal["judges"]["e0"]["vote"]["kappa"] == pytest.approx(9 / 17)
    assert cal["defects"]["number_swapped"]["recall_current"] == 1.0  # the floor rejected it
    assert cal["other_floors"] == {"standalone": 5.0}
    # Printed: the table and the best setting in one line.
    assert "best match: min_score_threshold 8, accuracy floor 6, min_votes 2" in done.stdout
    assert f"{9 / 17:.2f}" in done.stdout
    # The report gets a Calibration section.
    html = (out / "report.html").read_text(encoding="utf-8")
    assert '<section id="calibration"><h2>Calibration</h2>' in html
    assert read_metadata(out)["report"]["calibration"]["best"] == best


@pytest.mark.slow  # over 0.3 s: in the full suite, not in -m "not slow"
def test_calibrate_a_dry_run(tmp_path, cli):
    out = tmp_path / "dry"
    # Calibration compares every judge with the labels: every judge sees every sample.
    assert dry_run(SLICES, out, "--no-early-drop") == 0
    raw_all = read_jsonl(out / "generated_raw.jsonl")
    assert not any(j.get("skipped") for r in raw_all for j in r["judgements"])
    # The judged samples (a gate's drops never reach the judges, so calibration leaves them out).
    raw = [
        r
        for r in read_jsonl(out / "generated_raw.jsonl")
        if any(j["error"] is None for j in r["judgements"])
    ]
    # A person who keeps a sample when both judges' means reach 8.6 and the floors hold.
    cut, labels, edge = 8.6, [], []
    for r in raw:
        js = [j for j in r["judgements"] if j["error"] is None]
        floors = all(j["scores"]["accuracy"] >= 6 and j["scores"]["standalone"] >= 5 for j in js)
        low = min(j["weighted_mean"] for j in js)
        good = floors and low >= cut
        edge += [low] if good else []
        labels.append({"id": r["id"], "label": "pass" if good else "fail"})
    assert edge and len(edge) < len(labels), "the dry run has samples on both sides"
    path = _labels(tmp_path / "labels.jsonl", labels)
    done = cli("calibrate", "--output", str(out), "--labels", str(path))
    assert done.returncode == 0, done.stderr
    cal = read_metadata(out)["calibration"]
    # The current setting's decisions are the run's votes (threshold 7, 2 votes, floors).
    kept = {r["id"] for r in raw if r["votes"] >= 2}
    good = {row["id"] for row in labels if row["label"] == "pass"}
    ids = {r["id"] for r in raw}
    tp, fp = len(kept & good), len(kept - good)
    fn, tn = len(good - kept), len(ids - kept - good)
    cur = cal["current"]
    assert (cur["tp"], cur["fp"], cur["fn"], cur["tn"]) == (tp, fp, fn, tn)
    assert cur["kappa"] == pytest.approx(kappa(tp, fp, fn, tn))
    # The best setting reproduces the labels; its threshold is the lowest kept mean (the top
    # of the range of thresholds that decide alike).
    best = cal["best"]
    assert best["kappa"] == pytest.approx(1.0)
    assert (best["threshold"], best["floor"], best["min_votes"]) == (min(edge), 6.0, 2)
    # Recorded, and shown by the report; a later refilter keeps the section.
    assert '<section id="calibration">' in (out / "report.html").read_text(encoding="utf-8")
    assert cli("refilter", "--output", str(out)).returncode == 0
    assert '<section id="calibration">' in (out / "report.html").read_text(encoding="utf-8")


def test_calibrate_no_write_prints_only(tmp_path, cli):
    out = _planted_run(tmp_path / "run")
    before = (out / "metadata.json").read_bytes()
    labels = _labels(
        tmp_path / "l.jsonl", [{"id": "s1", "label": "pass"}, {"id": "s8", "label": 0}]
    )
    done = cli("calibrate", "-o", str(out), "-l", str(labels), "--no-write")
    assert done.returncode == 0 and "Calibration: 2 of 2 labels matched" in done.stdout
    assert (out / "metadata.json").read_bytes() == before
    assert not (out / "report.html").exists()


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        (None, "labels.jsonl: file not found"),
        ('{"id": "s1", "label": "pass"}\n{"id": "s2", "label": "maybe"}\n', "labels.jsonl:2: "),
        ('{"id": "zz", "label": "pass"}\n', "none of the 1 labelled ids matches a judged sample"),
    ],
)
def test_calibrate_errors_are_one_line_and_exit_2(tmp_path, cli, labels, message):
    out = _planted_run(tmp_path / "run")
    path = tmp_path / "labels.jsonl"
    if labels is not None:
        path.write_text(labels, encoding="utf-8")
    done = cli("calibrate", "--output", str(out), "--labels", str(path))
    assert done.returncode == 2
    assert done.stderr.startswith("sft-distill calibrate: error: ") and message in done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr


def test_calibrate_needs_a_run_directory_and_its_flags(tmp_path, cli):
    labels = _labels(tmp_path / "l.jsonl", [{"id": "s1", "label": "pass"}])
    done = cli("calibrate", "--output", str(tmp_path / "missing"), "--labels", str(labels))
    assert done.returncode == 2 and "not found" in done.stderr
    assert cli("calibrate", "--labels", str(labels)).returncode == 2  # --output is required
    done = cli("calibrate", "--output", str(tmp_path), "--labels", str(labels))
    assert done.returncode == 2 and "metadata.json" in done.stderr


def test_help_lists_calibrate(cli):
    done = cli("--help")
    assert "calibrate" in done.stdout
