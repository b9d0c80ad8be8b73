"""Student-vs-reference statistics: pairwise verdicts, win rates, bootstrap intervals, agreement."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sft_distill.evaluation.stats import (
    biggest_changes,
    bootstrap_ci,
    judge_agreement,
    mean_scores_by,
    pairwise_verdict,
    position_consistency,
    win_rate_ci,
    win_tie_loss,
)

# ---------------------------------------------------------------------------------------------
# pairwise_verdict: the student is A in the first order and B in the swapped one.


@pytest.mark.parametrize(
    ("first", "swapped", "expected"),
    [
        ("A", "B", "win"),  # the student's answer won in both positions
        ("B", "A", "loss"),  # the reference's answer won in both positions
        ("tie", "tie", "tie"),
        ("A", "A", "tie"),  # the judge picked position A both times: position bias
        ("B", "B", "tie"),  # position B both times
        ("A", "tie", "tie"),  # the orders disagree: tie
        ("tie", "B", "tie"),
        ("B", "tie", "tie"),
        ("tie", "A", "tie"),
    ],
)
def test_pairwise_verdict_all_nine_combinations(first, swapped, expected):
    assert pairwise_verdict(first, swapped) == expected


def test_pairwise_verdict_normalises_case_and_rejects_unknown_values():
    assert pairwise_verdict(" a ", "b") == "win"
    assert pairwise_verdict("TIE", "Tie") == "tie"
    with pytest.raises(ValueError, match="pairwise verdict must be 'A', 'B' or 'tie', got 'C'"):
        pairwise_verdict("C", "A")


def test_win_tie_loss_counts_and_rates():
    out = win_tie_loss(["win", "win", "tie", "loss", "WIN"])
    assert out == {
        "n": 5,
        "wins": 3,
        "ties": 1,
        "losses": 1,
        "win_rate": 0.6,
        "tie_rate": 0.2,
        "loss_rate": 0.2,
    }
    empty = win_tie_loss([])
    assert empty["n"] == 0 and math.isnan(empty["win_rate"])
    with pytest.raises(ValueError, match="got 'draw'"):
        win_tie_loss(["draw"])


# ---------------------------------------------------------------------------------------------
# bootstrap_ci


def test_bootstrap_is_deterministic_with_the_seed():
    values = np.random.default_rng(3).normal(5.0, 1.0, 200)
    assert bootstrap_ci(values, seed=1) == bootstrap_ci(values, seed=1)
    assert bootstrap_ci(values, seed=1) != bootstrap_ci(values, seed=2)


def test_bootstrap_contains_the_true_mean_with_the_textbook_width():
    # 400 draws from N(5, 1): the 95% interval is about 5 +- 1.96 / sqrt(400) = +- 0.098.
    values = np.random.default_rng(1).normal(5.0, 1.0, 400)
    ci = bootstrap_ci(values)
    assert ci.estimate == pytest.approx(float(np.mean(values)))
    assert ci.low < 5.0 < ci.high
    assert 0.16 < ci.high - ci.low < 0.24
    # Half ones, half zeros: mean 0.5, width about 2 * 1.96 * sqrt(0.25 / 100) = 0.196.
    coin = bootstrap_ci([1.0, 0.0] * 50)
    assert coin.low < 0.5 < coin.high and 0.15 < coin.high - coin.low < 0.25


def test_bootstrap_percentiles_by_hand():
    # Two values 0 and 1: a resample's mean is 0, 0.5 or 1 with chances 1/4, 1/2, 1/4. The
    # 30% and 70% quantiles both fall on 0.5; the 2.5% and 97.5% ones on 0 and 1.
    assert bootstrap_ci([0.0, 1.0], n_resamples=4000, alpha=0.6).as_dict() == {
        "estimate": 0.5,
        "low": 0.5,
        "high": 0.5,
    }
    ci = bootstrap_ci([0.0, 1.0], n_resamples=4000)
    assert (ci.low, ci.high) == (0.0, 1.0)


def test_bootstrap_width_shrinks_with_n():
    # Width ~ 1 / sqrt(n): each 4x more data roughly halves it.
    widths = []
    for n in (20, 80, 320):
        ci = bootstrap_ci([1.0, 0.0] * (n // 2))
        widths.append(ci.high - ci.low)
    assert widths[0] > widths[1] > widths[2]
    assert 1.5 < widths[0] / widths[1] < 2.7
    assert 1.5 < widths[1] / widths[2] < 2.7


def test_bootstrap_other_stats_edge_cases_and_blocks():
    values = np.random.default_rng(5).normal(0.0, 1.0, 101)
    # A stat without an axis argument runs per resample, on the very same resamples.
    assert bootstrap_ci(values, stat=lambda x: float(np.mean(x))) == bootstrap_ci(values)
    med = bootstrap_ci(values, stat=np.median)
    assert med.estimate == pytest.approx(float(np.median(values))) and med.low < med.high
    assert bootstrap_ci([3.0] * 10).as_dict() == {"estimate": 3.0, "low": 3.0, "high": 3.0}
    assert bootstrap_ci([]).as_dict() == {"estimate": None, "low": None, "high": None}
    with pytest.raises(ValueError, match="alpha"):
        bootstrap_ci([1.0], alpha=1.5)
    with pytest.raises(ValueError, match="n_resamples"):
        bootstrap_ci([1.0], n_resamples=0)
    # 5,000 values x 2,000 resamples are drawn in several blocks: still the textbook width,
    # 2 * 1.96 / sqrt(5000) = 0.055.
    big = np.random.default_rng(9).normal(0.0, 1.0, 5000)
    ci = bootstrap_ci(big)
    assert 0.045 < ci.high - ci.low < 0.065 and ci.low < 0.0 < ci.high


def test_win_rate_ci_estimates_and_shared_resamples():
    verdicts = ["win"] * 6 + ["tie"] * 2 + ["loss"] * 2
    out = win_rate_ci(verdicts, seed=4)
    assert (out["wins"], out["ties"], out["losses"]) == (6, 2, 2)
    assert out["win_rate_ci"]["estimate"] == pytest.approx(0.6)
    assert out["win_minus_loss_ci"]["estimate"] == pytest.approx(0.4)
    assert out["score_ci"]["estimate"] == pytest.approx(0.7)  # (6 + 0.5 * 2) / 10
    for key in ("win_rate_ci", "win_minus_loss_ci", "score_ci"):
        ci = out[key]
        assert ci["low"] <= ci["estimate"] <= ci["high"]
    # score = (1 + (win - loss)) / 2 on every resample: the same resamples give the same interval.
    wl, score = out["win_minus_loss_ci"], out["score_ci"]
    assert score["low"] == pytest.approx((1 + wl["low"]) / 2)
    assert score["high"] == pytest.approx((1 + wl["high"]) / 2)
    assert out["confidence"] == pytest.approx(0.95)
    assert win_rate_ci(verdicts, seed=4) == out


# ---------------------------------------------------------------------------------------------
# Scores by group, biggest changes


def test_mean_scores_by_model_skips_missing_scores():
    rows = [
        {"model": "student", "scores": {"accuracy": 8, "helpfulness": 6}},
        {"model": "student", "scores": {"accuracy": 6, "helpfulness": None}},
        {"model": "reference", "scores": {"accuracy": 9, "helpfulness": 7}},
        {"model": "student", "scores": {"accuracy": math.nan, "safety": 10}},
        {"model": "student"},
    ]
    assert mean_scores_by(rows, "model") == {
        "reference": {"n": 1, "scores": {"accuracy": 9.0, "helpfulness": 7.0}},
        "student": {"n": 4, "scores": {"accuracy": 7.0, "helpfulness": 6.0, "safety": 10.0}},
    }
    by_pair = mean_scores_by(
        [{"m": "s", "j": "a", "scores": {"x": 1}}, {"m": "s", "j": "a", "scores": {"x": 2}}],
        lambda r: f"{r['m']}/{r['j']}",
    )
    assert by_pair == {"s/a": {"n": 2, "scores": {"x": 1.5}}}


def test_biggest_changes_by_hand():
    rows = [
        {"id": "q1", "student": 5, "reference": 8},  # two judges: mean 5.5 vs 8 -> -2.5
        {"id": "q1", "student": 6, "reference": 8},
        {"id": "q2", "student": 9, "reference": 6},  # +3
        {"id": "q3", "student": 7, "reference": 7},  # unchanged: in neither list
        {"id": "q4", "student": 6, "reference": 7},  # -1
        {"id": "q5", "student": 8, "reference": 7.5},  # +0.5
        {"id": "q6", "student": None, "reference": 7},  # no score: skipped
    ]
    out = biggest_changes(rows, 10)
    assert [(c["id"], c["delta"], c["n"]) for c in out["regressions"]] == [
        ("q1", -2.5, 2),
        ("q4", -1.0, 1),
    ]
    assert [(c["id"], c["delta"]) for c in out["improvements"]] == [("q2", 3.0), ("q5", 0.5)]
    assert out["regressions"][0] == {
        "id": "q1",
        "student": 5.5,
        "reference": 8.0,
        "delta": -2.5,
        "n": 2,
    }
    top = biggest_changes(rows, 1)
    assert [c["id"] for c in top["regressions"]] == ["q1"]
    assert [c["id"] for c in top["improvements"]] == ["q2"]
    renamed = [{"q": "x", "s": 1.0, "r": 2.0}]
    assert biggest_changes(renamed, 1, id_key="q", student_key="s", reference_key="r")[
        "regressions"
    ][0]["delta"] == pytest.approx(-1.0)


# ---------------------------------------------------------------------------------------------
# Judge agreement


def test_judge_agreement_three_class_kappa_by_hand():
    # Same table as test_calibration's three-class case, 10 shared items:
    #         b: win  tie  loss
    # a: win     3    1    0      p_o = 8/10, p_e = (4*3 + 3*3 + 3*4) / 100 = 0.33
    #    tie     0    2    1      kappa = 0.47 / 0.67
    #    loss    0    0    3
    pairs = (
        [("win", "win")] * 3
        + [("win", "tie")]
        + [("tie", "tie")] * 2
        + [("tie", "loss")]
        + [("loss", "loss")] * 3
    )
    a = {f"q{i}": x for i, (x, _) in enumerate(pairs)} | {"only-a": "win"}
    b = {f"q{i}": y for i, (_, y) in enumerate(pairs)} | {"only-b": "loss", "also-b": "tie"}
    out = judge_agreement(a, b)
    assert out["n"] == 10 and out["only_a"] == 1 and out["only_b"] == 2
    assert out["agreement"] == pytest.approx(0.8)
    assert out["kappa"] == pytest.approx(0.47 / 0.67)
    assert out["confusion"] == {
        "win": {"win": 3, "tie": 1, "loss": 0},
        "tie": {"win": 0, "tie": 2, "loss": 1},
        "loss": {"win": 0, "tie": 0, "loss": 3},
    }


def test_judge_agreement_degenerate():
    out = judge_agreement({"q": "tie", "r": "tie"}, {"q": "tie", "r": "tie"})
    assert out["agreement"] == 1.0 and math.isnan(out["kappa"])  # no variation: undefined
    none = judge_agreement({"q": "win"}, {"r": "win"})
    assert none["n"] == 0 and math.isnan(none["agreement"]) and math.isnan(none["kappa"])


def test_position_consistency():
    pairs = [
        ("A", "B"),
        ("B", "A"),
        ("tie", "tie"),
        ("A", "A"),
        ("a", "A"),
        ("B", "B"),
        ("A", "tie"),
    ]
    assert position_consistency(pairs) == {
        "n": 7,
        "consistent": 3,
        "consistency": pytest.approx(3 / 7),
        "first_position": 2,
        "second_position": 1,
    }
