"""Calibration against human labels: kappa, thresholds, decide() with floors, best settings."""

from __future__ import annotations

import json
import logging
import math
from typing import Any

import numpy as np
import pytest

from sft_distill.errors import InputError
from sft_distill.models import Judgement, ScoredSample
from sft_distill.selection.calibration import (
    Label,
    best_settings,
    binary_metrics,
    calibration_report,
    cohen_kappa,
    decide,
    default_thresholds,
    format_calibration,
    parse_label,
    precision_recall_at_thresholds,
    read_labels,
)
from sft_distill.selection.thresholds import apply_thresholds, weighted_mean

DIMS = ("accuracy", "completeness", "logicality", "helpfulness", "safety")


def judge(evaluator: str, accuracy: float, rest: float, **extra: float) -> Judgement:
    """A judgement with ``accuracy`` and the four other dimensions at ``rest``."""
    scores = {d: rest for d in DIMS} | {"accuracy": accuracy} | extra
    return Judgement(
        evaluator=evaluator,
        model=f"m-{evaluator}",
        scores=scores,
        weighted_mean=weighted_mean(scores),
    )


def flat(evaluator: str, score: float) -> Judgement:
    """A judgement scoring every dimension ``score`` (its mean is ``score``)."""
    return judge(evaluator, score, score)


def failed(evaluator: str) -> Judgement:
    return Judgement(evaluator=evaluator, model=f"m-{evaluator}", error="HTTP 500")


def sample(sid: str, *judgements: Judgement, **kw: Any) -> ScoredSample:
    return ScoredSample(
        id=sid, slice_id="law-1", instruction="q?", output="a.", judgements=list(judgements), **kw
    )


# ---------------------------------------------------------------------------------------------
# cohen_kappa


def test_kappa_classic_two_by_two():
    # Rater A x rater B, 50 items:      B yes  B no
    #                          A yes      20     5    (A yes 25 = 0.5)
    #                          A no       10    15    (B yes 30 = 0.6)
    # p_o = (20 + 15) / 50 = 0.7; p_e = 0.5 * 0.6 + 0.5 * 0.4 = 0.5; kappa = 0.2 / 0.5 = 0.4.
    a = [True] * 20 + [True] * 5 + [False] * 10 + [False] * 15
    b = [True] * 20 + [False] * 5 + [True] * 10 + [False] * 15
    assert cohen_kappa(a, b) == pytest.approx(0.4)
    assert binary_metrics(a, b)["kappa"] == pytest.approx(0.4)


def test_kappa_three_classes():
    # 10 items, rows A, columns B:   win  tie  loss
    #                      win        3    1    0     A: win 4, tie 3, loss 3
    #                      tie        0    2    1     B: win 3, tie 3, loss 4
    #                      loss       0    0    3
    # p_o = 8/10; p_e = (4*3 + 3*3 + 3*4) / 100 = 0.33; kappa = 0.47 / 0.67 = 0.70149...
    pairs = (
        [("win", "win")] * 3
        + [("win", "tie")]
        + [("tie", "tie")] * 2
        + [("tie", "loss")]
        + [("loss", "loss")] * 3
    )
    a, b = zip(*pairs, strict=True)
    assert cohen_kappa(a, b) == pytest.approx(0.47 / 0.67)


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ([True, False, True], [True, False, True], 1.0),  # perfect, with variation
        ([True, False], [False, True], -1.0),  # p_o 0, p_e 0.5
        # One rater constant: p_e = p_o = share of that class, kappa 0 (defined).
        ([True, True, True, True], [True, False, True, True], 0.0),
        # Both constant on the same class: p_e = 1, 0/0 -> NaN by convention.
        ([True, True, True], [True, True, True], math.nan),
        ([False, False], [False, False], math.nan),
        ([], [], math.nan),
    ],
)
def test_kappa_degenerate_cases(a, b, expected):
    got = cohen_kappa(a, b)
    if math.isnan(expected):
        assert math.isnan(got)
    else:
        assert got == pytest.approx(expected)


def test_kappa_needs_equal_lengths():
    with pytest.raises(ValueError, match="2 ratings against 1"):
        cohen_kappa([True, False], [True])


def test_binary_metrics_without_predicted_positives_is_nan_not_an_error():
    m = binary_metrics([False, False, False], [True, False, False])
    assert (m["tp"], m["fp"], m["fn"], m["tn"]) == (0, 0, 1, 2)
    assert math.isnan(m["precision"]) and m["recall"] == 0.0 and math.isnan(m["f1"])
    assert m["accuracy"] == pytest.approx(2 / 3)
    assert m["kappa"] == 0.0  # one rater constant


# ---------------------------------------------------------------------------------------------
# precision / recall at thresholds

SCORES = [9.0, 8.5, 8.0, 7.5, 7.0, 6.5, 6.0, 5.0]
TRUTH = [True, True, False, True, True, False, False, False]


def _row(rows: list[dict[str, Any]], t: float) -> dict[str, Any]:
    return next(r for r in rows if r["threshold"] == t)


def test_precision_recall_at_thresholds_by_hand():
    rows = precision_recall_at_thresholds(SCORES, TRUTH)
    # t=7: kept 9, 8.5, 8, 7.5, 7 -> tp 4, fp 1 (8.0), fn 0, tn 3. P 0.8, R 1, F1 1.6/1.8,
    # acc 7/8; p_e = 5/8 * 4/8 + 3/8 * 4/8 = 0.5 -> kappa (0.875 - 0.5) / 0.5 = 0.75.
    r = _row(rows, 7.0)
    assert (r["tp"], r["fp"], r["fn"], r["tn"], r["predicted_pass"]) == (4, 1, 0, 3, 5)
    assert r["precision"] == pytest.approx(0.8)
    assert r["recall"] == pytest.approx(1.0)
    assert r["f1"] == pytest.approx(1.6 / 1.8)
    assert r["accuracy"] == pytest.approx(0.875)
    assert r["kappa"] == pytest.approx(0.75)
    # t=8: kept 9, 8.5, 8 -> tp 2, fp 1, fn 2, tn 3. P 2/3, R 1/2, F1 4/7, acc 5/8, kappa 0.25.
    r = _row(rows, 8.0)
    assert (r["tp"], r["fp"], r["fn"], r["tn"]) == (2, 1, 2, 3)
    assert r["precision"] == pytest.approx(2 / 3)
    assert r["recall"] == pytest.approx(0.5)
    assert r["f1"] == pytest.approx(4 / 7)
    assert r["accuracy"] == pytest.approx(0.625)
    assert r["kappa"] == pytest.approx(0.25)
    # t=0: everything kept: P 0.5, R 1, kappa 0. t=9.5: nothing kept: P undefined, R 0.
    r = _row(rows, 0.0)
    assert (r["precision"], r["recall"], r["kappa"]) == (0.5, 1.0, 0.0)
    r = _row(rows, 9.5)
    assert math.isnan(r["precision"]) and r["recall"] == 0.0 and math.isnan(r["f1"])
    assert r["kappa"] == 0.0


def test_precision_recall_default_thresholds_and_none_scores():
    assert default_thresholds([7.25, None, 11.0, math.nan, 3.0]) == sorted(
        {i / 2 for i in range(21)} | {7.25}
    )
    # A sample without a score is never kept, even at threshold 0.
    rows = precision_recall_at_thresholds([None, 7.25], [True, True], [0.0, 7.25, 7.3])
    assert [r["tp"] for r in rows] == [1, 1, 0]
    assert [r["threshold"] for r in rows] == [0.0, 7.25, 7.3]


def test_precision_recall_rejects_misaligned_inputs():
    with pytest.raises(ValueError, match="3 scores against 2 labels"):
        precision_recall_at_thresholds([1.0, 2.0, 3.0], [True, False])


# ---------------------------------------------------------------------------------------------
# decide


def test_decide_floor_blocks_a_high_mean_with_a_low_accuracy():
    # accuracy 3 and 4, 8 on the other four dimensions: means (3 + 32) / 5 = 7.0, 36 / 5 = 7.2.
    js = [judge("a", 3, 8), judge("b", 4, 8)]
    d = decide(js, 7.0, 2)
    assert d.means == (7.0, 7.2) and d.votes == 2 and d.passed and d.avg_score == 7.1
    d = decide(js, 7.0, 2, None, "accuracy", 6.0)
    assert (d.passed, d.votes, d.voted, d.floor_blocked) == (False, 0, (False, False), 2)
    # Floor 4: judge a (3) is blocked, judge b (4 >= 4) votes.
    d = decide(js, 7.0, 2, None, "accuracy", 4.0)
    assert (d.passed, d.votes, d.voted, d.floor_blocked) == (False, 1, (False, True), 1)
    assert decide(js, 7.0, 1, None, "accuracy", 4.0).passed


def test_decide_with_weights_by_hand():
    # accuracy weighs 3: (3*3 + 32) / 7 = 5.857 -> 5.86, (3*4 + 32) / 7 = 6.2857 -> 6.29.
    weights = dict.fromkeys(DIMS, 1.0) | {"accuracy": 3.0}
    d = decide([judge("a", 3, 8), judge("b", 4, 8)], 7.0, 1, weights)
    assert d.means == (5.86, 6.29) and d.votes == 0 and not d.passed and d.avg_score == 6.08
    assert decide([judge("a", 3, 8), judge("b", 4, 8)], 6.29, 1, weights).votes == 1


def test_decide_failed_judges_overall_only_and_float_slack():
    overall = Judgement(evaluator="o", model="m", scores={"overall": 8.0}, weighted_mean=8.0)
    slack = Judgement(
        evaluator="s",
        model="m",
        scores={"accuracy": 6.9, "completeness": 7.1},
        weighted_mean=7.0,
    )
    d = decide([failed("f"), overall, slack], 7.0, 2)
    # The failed judge neither votes nor counts in the mean; the overall-only judge keeps its
    # own mean; (6.9 + 7.1) / 2 still reaches 7.0.
    assert d.means == (None, 8.0, 7.0) and d.voted == (False, True, True) and d.passed
    assert d.avg_score == 7.5
    # With a floor, a judge that gave no accuracy score cannot vouch for it.
    d = decide([failed("f"), overall, slack], 7.0, 1, None, "accuracy", 6.0)
    assert d.voted == (False, False, True) and d.floor_blocked == 1
    assert decide([], 7.0, 1) == decide([], 0.0, 1)
    assert not decide([], 0.0, 1).passed


def test_decide_matches_apply_thresholds_without_a_floor():
    # decide() recomputes what the pipeline decides: the same votes, pass and mean score.
    rng = np.random.default_rng(7)
    weights = {"accuracy": 2.0, "safety": 1.0, "helpfulness": 0.5}
    for i in range(300):
        js = []
        for name in ("a", "b", "c"):
            if rng.random() < 0.15:
                js.append(failed(name))
            else:
                scores = {d: float(rng.integers(0, 11)) for d in DIMS if rng.random() < 0.9}
                js.append(
                    Judgement(
                        evaluator=name,
                        model="m",
                        scores=scores,
                        weighted_mean=weighted_mean(scores),
                    )
                )
        t = float(rng.choice([5.0, 6.5, 7.0, 7.33]))
        k = int(rng.integers(1, 4))
        w = weights if i % 2 else None
        want = apply_thresholds(sample(f"s{i}", *js), min_score_threshold=t, min_votes=k, weights=w)
        got = decide(js, t, k, w)
        assert (got.votes, got.passed, got.avg_score) == (want.votes, want.passed, want.avg_score)


# ---------------------------------------------------------------------------------------------
# best_settings


def _planted_threshold_set() -> tuple[list[ScoredSample], dict[str, bool]]:
    """Two judges; a person keeps a sample exactly when both judges' means are >= 6.5."""
    pairs = [
        (5.0, 5.0), (5.5, 6.0), (6.0, 6.0), (6.0, 7.0), (7.0, 6.0), (6.5, 5.5),
        (6.5, 6.5), (6.5, 7.0), (7.0, 6.5), (7.0, 7.0), (7.5, 8.0), (8.0, 8.0), (9.0, 6.5),
        (8.5, 9.0), (6.0, 9.0),
    ]  # fmt: skip
    samples = [sample(f"s{i}", flat("a", x), flat("b", y)) for i, (x, y) in enumerate(pairs)]
    truth = {s.id: min(x, y) >= 6.5 for s, (x, y) in zip(samples, pairs, strict=True)}
    return samples, truth


def test_best_settings_finds_a_planted_threshold():
    samples, truth = _planted_threshold_set()
    search = best_settings(samples, truth, threshold=7.0, min_votes=2)
    best = search.best
    # Any threshold in (6.0, 6.5] with both votes reproduces the labels; 6.5 is the observed edge.
    assert (best.threshold, best.floor, best.min_votes) == (6.5, None, 2)
    assert best.kappa == pytest.approx(1.0) and (best.fp, best.fn) == (0, 0)
    # The current setting (7.0, 2 votes) drops the four samples with a 6.5: by hand,
    # tp 4, fn 4, fp 0, tn 7 -> p_o 11/15, p_e (4*8 + 11*7) / 225 = 109/225, kappa 56/116.
    cur = search.current
    assert (cur.threshold, cur.floor, cur.min_votes) == (7.0, None, 2)
    assert (cur.tp, cur.fp, cur.fn, cur.tn) == (4, 0, 4, 7)
    assert cur.kappa == pytest.approx((11 / 15 - 109 / 225) / (1 - 109 / 225))
    # One vote at 6.5 lets in the (6.0, 7.0)-like pairs: worse.
    one_vote = next(r for r in search.table if r.setting == (6.5, None, 1))
    assert one_vote.kappa < 1.0
    # Table: thresholds 0..10 by 0.25 plus distinct means, floors None + 0..10 by 0.5, votes 1..2.
    assert len(search.table) == 41 * 22 * 2
    assert search.table[0] is best


def test_best_settings_finds_a_planted_accuracy_floor():
    # A person fails the samples where a judge gave accuracy < 6. Their other scores are 10, so
    # their means (8.6-9.0) are above those of the good samples (7.2-8.2): no threshold alone
    # separates them.
    cases = [
        (9, 9, 7.5), (8, 8, 7.5), (6, 9, 7.5), (7, 6, 8), (6, 6, 7.5), (10, 7, 8),
        (5, 9, 10), (9, 4, 10), (3, 8, 10), (5, 5, 10),
    ]  # fmt: skip
    samples = [
        sample(f"f{i}", judge("a", x, rest), judge("b", y, rest))
        for i, (x, y, rest) in enumerate(cases)
    ]
    truth = {s.id: min(c[:2]) >= 6 for s, c in zip(samples, cases, strict=True)}
    search = best_settings(samples, truth, threshold=7.0, min_votes=2)
    no_floor = [r.kappa for r in search.table if r.floor is None and not math.isnan(r.kappa)]
    assert max(no_floor) < 0.5
    assert search.current.kappa == 0.0  # everything kept: no agreement beyond chance
    best = search.best
    assert (best.floor, best.min_votes, best.kappa) == (6.0, 2, pytest.approx(1.0))
    assert best.threshold == 7.0  # the current threshold already decides the means alike


def test_best_settings_ties_prefer_precision_then_the_current_setting():
    samples, truth = _planted_threshold_set()
    # With the current setting already perfect, the search keeps it.
    search = best_settings(samples, truth, threshold=6.25, min_votes=2)
    assert search.best.setting == (6.25, None, 2) and search.best.kappa == pytest.approx(1.0)
    # Kappa ties broken by precision: labels that no setting can reproduce exactly.
    js = [flat("a", 6.0), flat("a", 7.0), flat("a", 8.0), flat("a", 9.0)]
    s4 = [sample(f"t{i}", j) for i, j in enumerate(js)]
    # Labels fail, pass, fail, pass. ">= 7": tp 2 fp 1 fn 0 tn 1 (P 2/3); ">= 9": tp 1 fp 0
    # fn 1 tn 2 (P 1). Both p_o 3/4, p_e 3/4 * 1/2 + 1/4 * 1/2 = 1/2 -> kappa 0.5; every
    # other threshold has kappa 0. The current 7.0 loses to the higher precision.
    truth4 = {"t0": False, "t1": True, "t2": False, "t3": True}
    best = best_settings(s4, truth4, threshold=7.0, min_votes=1).best
    assert best.kappa == pytest.approx(0.5)
    assert (best.threshold, best.precision) == (9.0, 1.0)


def test_settings_search_decides_as_decide_with_other_floors_fixed():
    # The search is decide() vectorised: every row of its table must be what decide() gives,
    # with the searched accuracy floor moving and the config's standalone floor held.
    rng = np.random.default_rng(12)
    samples, truth = [], {}
    for i in range(60):
        js = []
        for name in ("a", "b", "c"):
            if rng.random() < 0.1:
                js.append(failed(name))
                continue
            scores = {d: float(rng.integers(2, 11)) for d in DIMS}
            if rng.random() < 0.8:  # some judgements predate standalone (never asked)
                scores["standalone"] = float(rng.integers(0, 11))
            js.append(Judgement(evaluator=name, model="m", scores=scores, weighted_mean=8.0))
        samples.append(sample(f"p{i}", *js))
        truth[f"p{i}"] = bool(rng.random() < 0.5)
    other = {"standalone": 5.0}
    search = best_settings(
        samples, truth, threshold=7.0, min_votes=2, floor=6.0, other_floors=other
    )
    rows = {r.setting: r for r in search.table}
    for t, f, k in [(7.0, 6.0, 2), (6.5, None, 1), (8.0, 4.5, 3), (5.25, 7.0, 2)]:
        passed = [decide(s.judgements, t, k, None, "accuracy", f, floors=other) for s in samples]
        tp = sum(d.passed and truth[s.id] for d, s in zip(passed, samples, strict=True))
        fp = sum(d.passed and not truth[s.id] for d, s in zip(passed, samples, strict=True))
        assert (rows[(t, f, k)].tp, rows[(t, f, k)].fp) == (tp, fp), (t, f, k)


def test_best_settings_needs_labelled_judged_samples():
    with pytest.raises(ValueError, match="no labelled sample was judged"):
        best_settings([sample("x", flat("a", 8))], {"y": True}, threshold=7.0, min_votes=1)


# ---------------------------------------------------------------------------------------------
# The report


def _report_set() -> tuple[list[ScoredSample], dict[str, Label]]:
    samples = [
        sample("p1", flat("a", 8), flat("b", 8)),
        sample("p2", flat("a", 7), flat("b", 6.5)),  # a person keeps it; 7.0 x 2 votes drops it
        sample("p3", flat("a", 9), flat("b", 9)),
        sample("f1", judge("a", 2, 9), judge("b", 3, 9)),  # wrong fact, mean 7.8 / 8.0
        sample("f2", flat("a", 4), flat("b", 5)),  # truncated
        sample("f3", flat("a", 5), flat("b", 4)),  # untagged fail
        sample("f4", judge("a", 4, 8), judge("b", 5, 9)),  # wrong fact, means 7.2 / 8.2
        # Dropped by a gate: its (stale) judgements cannot bring it back, as in apply_thresholds.
        sample("g1", flat("a", 9), flat("b", 9), drop_reason="gate:too_short"),
        sample("e1", failed("a"), failed("b")),  # never judged
    ]
    labels = {
        "p1": Label("p1", True),
        "p2": Label("p2", True),
        "p3": Label("p3", True),
        "f1": Label("f1", False, "wrong_fact"),
        "f2": Label("f2", False, "truncated"),
        "f3": Label("f3", False),
        "f4": Label("f4", False, "wrong_fact"),
        "g1": Label("g1", False),
        "e1": Label("e1", True),
        "zz": Label("zz", True),  # not in the run
    }
    return samples, labels


def test_calibration_report_by_hand():
    samples, labels = _report_set()
    report = calibration_report(samples, labels, threshold=7.0, min_votes=2)
    json.dumps(report, allow_nan=False)  # strict JSON: NaN written as null
    assert report["counts"] == {
        "labels": 10,
        "matched": 7,
        "pass_labels": 3,
        "fail_labels": 4,
        "unknown_ids": 1,
        "not_judged": 2,
    }
    assert report["unknown_ids"] == ["zz"]
    # Current (7.0, 2 votes): kept p1, p3, f1, f4 -> tp 2 fp 2 fn 1 tn 2.
    cur = report["current"]
    assert (cur["tp"], cur["fp"], cur["fn"], cur["tn"]) == (2, 2, 1, 2)
    # The best setting reproduces the labels: a floor removes f1 and f4, 6.5 keeps p2.
    best = report["best"]
    assert best["kappa"] == pytest.approx(1.0)
    assert best["floor"] is not None and best["threshold"] <= 6.5
    # Per judge at 7.0: judge a votes p1 p2 p3 f1 f4 (tp 3 fp 2 fn 0 tn 2); judge b votes
    # p1 p3 f1 f4 (tp 2 fp 2 fn 1 tn 2).
    va, vb = report["judges"]["a"]["vote"], report["judges"]["b"]["vote"]
    assert (va["tp"], va["fp"], va["fn"], va["tn"]) == (3, 2, 0, 2)
    assert (vb["tp"], vb["fp"], vb["fn"], vb["tn"]) == (2, 2, 1, 2)
    assert report["judges"]["a"]["model"] == "m-a"
    # Defects: now, wrong_fact 0 of 2 rejected, truncated 1 of 1, untagged 1 of 1; best: all.
    d = report["defects"]
    assert d["wrong_fact"] == {
        "n": 2,
        "caught_current": 0,
        "recall_current": 0.0,
        "caught_best": 2,
        "recall_best": 1.0,
    }
    assert (d["truncated"]["caught_current"], d["(untagged)"]["caught_current"]) == (1, 1)
    assert any("only 3 pass labels" in w for w in report["warnings"])


def test_format_calibration_is_a_readable_table():
    samples, labels = _report_set()
    text = format_calibration(calibration_report(samples, labels, threshold=7.0, min_votes=2))
    lines = text.splitlines()
    assert lines[0] == (
        "Calibration: 7 of 10 labels matched (3 pass, 4 fail); 1 not in the run, 2 never judged"
    )
    assert any(line.startswith("current ") and " 7.00 " in line for line in lines)
    assert any(line.startswith("best ") and "1.00" in line for line in lines)
    assert any(line.startswith("wrong_fact ") and "0 (0%)" in line for line in lines)
    assert "Judges (each judge's vote at threshold 7)" in lines


def test_calibration_report_without_a_matching_label_is_one_input_error():
    with pytest.raises(InputError, match=r"none of the 1 labelled ids matches a judged sample"):
        calibration_report([sample("a", flat("a", 8))], {"b": True}, threshold=7, min_votes=1)


def test_report_warns_when_every_label_is_one_class():
    samples = [sample(f"s{i}", flat("a", 5 + i)) for i in range(4)]
    report = calibration_report(samples, dict.fromkeys(("s0", "s1", "s2", "s3"), True),
                                threshold=7.0, min_votes=1)  # fmt: skip
    assert report["warnings"][0].startswith("every matched label is pass")
    json.dumps(report, allow_nan=False)


# ---------------------------------------------------------------------------------------------
# read_labels


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("pass", True), ("FAIL", False), (" Good ", True), ("bad", False), ("true", True),
        ("false", False), ("1", True), ("0", False), (True, True), (False, False), (1, True),
        (0, False), ("maybe", None), (2, None), (None, None), ([], None),
    ],
)  # fmt: skip
def test_parse_label(value, expected):
    assert parse_label(value) is expected


def test_read_labels_accepts_the_documented_forms(tmp_path):
    p = tmp_path / "labels.jsonl"
    rows = [
        {"id": "a", "label": "pass"},
        {"id": "b", "label": "fail", "defect": "wrong_fact", "note": "extra keys are ignored"},
        {"id": 7, "label": 1},
        {"id": "c", "label": "bad", "defect": ""},
    ]
    text = "\ufeff" + "\r\n".join(json.dumps(r) for r in rows) + "\r\n\n  \n"
    p.write_text(text, encoding="utf-8")
    labels = read_labels(p)
    assert labels == {
        "a": Label("a", True, None, 1),
        "b": Label("b", False, "wrong_fact", 2),
        "7": Label("7", True, None, 3),
        "c": Label("c", False, None, 4),
    }


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (
            "{not json",
            "not valid JSON (Expecting property name enclosed in double quotes); "
            'expected {"id": ..., "label": "pass"|"fail"}',
        ),
        ('["a", "pass"]', "expected a JSON object, got an array"),
        ('{"label": "pass"}', "missing 'id'"),
        ('{"id": 1.5, "label": "pass"}', "'id' must be a string, got a number"),
        ('{"id": "  ", "label": "pass"}', "'id' is empty"),
        ('{"id": "x"}', "missing 'label' (pass/fail (or true/false, 1/0, good/bad))"),
        (
            '{"id": "x", "label": "maybe"}',
            """'label' must be pass/fail (or true/false, 1/0, good/bad), got "maybe\"""",
        ),
        ('{"id": "x", "label": "fail", "defect": 3}', "'defect' must be a string, got a number"),
    ],
)
def test_read_labels_bad_row_is_one_line_naming_file_and_line(tmp_path, line, message):
    p = tmp_path / "labels.jsonl"
    p.write_text('{"id": "ok", "label": "pass"}\n' + line + "\n", encoding="utf-8")
    with pytest.raises(InputError) as exc:
        read_labels(p)
    assert str(exc.value) == f"{p}:2: {message}"


def test_read_labels_counts_further_bad_lines_and_reports_bad_bytes(tmp_path):
    p = tmp_path / "labels.jsonl"
    p.write_bytes(b'{"id": "a", "label": "pass"}\n\xff\xfe\n{"id": 1}\n[]\n')
    with pytest.raises(InputError) as exc:
        read_labels(p)
    assert str(exc.value) == f"{p}:2: not UTF-8 (byte 0 of the line) (and 2 more bad lines)"
    assert "\n" not in str(exc.value)


def test_read_labels_whole_file_problems(tmp_path):
    with pytest.raises(InputError, match=r"labels\.jsonl: file not found$"):
        read_labels(tmp_path / "labels.jsonl")
    with pytest.raises(InputError, match="is a directory"):
        read_labels(tmp_path)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"empty\.jsonl: no labels; expected one"):
        read_labels(empty)


def test_read_labels_duplicate_id_last_wins_with_one_warning(tmp_path, caplog):
    p = tmp_path / "labels.jsonl"
    p.write_text(
        '{"id": "a", "label": "pass"}\n{"id": "b", "label": "pass"}\n'
        '{"id": "a", "label": "fail", "defect": "typo"}\n{"id": "b", "label": "pass"}\n',
        encoding="utf-8",
    )
    with caplog.at_level(logging.WARNING, logger="sft_distill.selection.calibration"):
        labels = read_labels(p)
    assert labels["a"] == Label("a", False, "typo", 3)
    assert labels["b"].line == 4
    warnings = [r.getMessage() for r in caplog.records]
    assert warnings == [
        f"{p}: 2 id(s) labelled more than once (first: 'a' on lines 1 and 3); the last wins"
    ]
