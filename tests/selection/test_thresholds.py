"""Thresholds and votes over judgements, and the in-memory DataFilter end to end."""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np
import pytest

from sft_distill.config.merging import build_config
from sft_distill.models import Judgement, ScoredSample
from sft_distill.selection.thresholds import (
    DataFilter,
    FilterResult,
    apply_thresholds,
    decide,
    weighted_mean,
)

ALL_7 = dict.fromkeys(("accuracy", "completeness", "logicality", "helpfulness", "safety"), 7.0)


@pytest.mark.parametrize(
    ("scores", "weights", "expected"),
    [
        ({"accuracy": 8.0, "safety": 6.0}, None, 7.0),
        (ALL_7, None, 7.0),
        ({"accuracy": 9.0, "helpfulness": 5.0}, {"accuracy": 3.0, "helpfulness": 1.0}, 8.0),
        # A dimension missing from the reply is ignored, not counted as 0.
        ({"accuracy": 9.0}, {"accuracy": 1.0, "safety": 1.0}, 9.0),
        # A dimension absent from the weights weighs 0.
        ({"accuracy": 9.0, "safety": 1.0}, {"accuracy": 1.0}, 9.0),
        ({"accuracy": 8.0, "overall": 1.0}, None, 8.0),  # unknown key ignored
        ({"accuracy": 8.0, "safety": math.nan}, None, 8.0),  # non-finite ignored
        ({}, None, None),
        ({"overall": 9.0}, None, None),
        ({"safety": 9.0}, {"accuracy": 1.0}, None),  # present weights sum to 0
    ],
)
def test_weighted_mean(scores, weights, expected):
    got = weighted_mean(scores, weights)
    assert got == (None if expected is None else pytest.approx(expected))


def ok(evaluator: str, **scores: float) -> Judgement:
    return Judgement(
        evaluator=evaluator, model="m", scores=scores, weighted_mean=weighted_mean(scores)
    )


def failed(evaluator: str) -> Judgement:
    return Judgement(evaluator=evaluator, model="m", error="HTTP 500 after 3 attempts")


def sample(sid: str = "s1", judgements: list[Judgement] | None = None, **kw: Any) -> ScoredSample:
    base: dict[str, Any] = {
        "id": sid,
        "slice_id": "zh-001",
        "instruction": "什么是如实告知义务？",
        "output": "投保人应当如实告知。",
    }
    base.update(kw)
    return ScoredSample(**base, judgements=judgements or [])


@pytest.mark.parametrize(
    ("judgements", "threshold", "min_votes", "weights", "votes", "avg", "passed", "reason"),
    [
        ([ok("a", accuracy=8), ok("b", accuracy=9)], 7.0, 2, None, 2, 8.5, True, None),
        ([ok("a", accuracy=8), ok("b", accuracy=6)], 7.0, 2, None, 1, 7.0, False, "low_votes"),
        ([ok("a", accuracy=8), ok("b", accuracy=6)], 7.0, 1, None, 1, 7.0, True, None),
        # A failed evaluator casts no vote and does not pull the average down.
        ([ok("a", accuracy=8), failed("b")], 7.0, 2, None, 1, 8.0, False, "low_votes"),
        ([ok("a", accuracy=8), failed("b")], 7.0, 1, None, 1, 8.0, True, None),
        # Every judge failed: judge_failed (issue 12), not low_votes; no judge: no_evaluation.
        ([failed("a"), failed("b")], 7.0, 1, None, 0, None, False, "judge_failed"),
        ([], 7.0, 1, None, 0, None, False, "no_evaluation"),
        ([], 7.0, 0, None, 0, None, True, None),  # min_votes 0 asks for nothing
        # Weights decide the vote: equal -> 7.0 (votes), accuracy x3 -> 8.0, helpfulness x3 -> 6.0.
        ([ok("a", accuracy=9, helpfulness=5)], 7.0, 1, None, 1, 7.0, True, None),
        (
            [ok("a", accuracy=9, helpfulness=5)],
            7.0,
            1,
            {"accuracy": 3.0, "helpfulness": 1.0},
            1,
            8.0,
            True,
            None,
        ),
        (
            [ok("a", accuracy=9, helpfulness=5)],
            7.0,
            1,
            {"accuracy": 1.0, "helpfulness": 3.0},
            0,
            6.0,
            False,
            "low_votes",
        ),
        # Zero weight on every dimension present: the judgement is no longer usable.
        ([ok("a", safety=9)], 7.0, 1, {"accuracy": 1.0}, 0, None, False, "no_evaluation"),
        # Floating point: (6.9 + 7.1) / 2 is a hair under 7.0 but still votes.
        ([ok("a", accuracy=6.9, safety=7.1)], 7.0, 1, None, 1, 7.0, True, None),
        ([ok("a", accuracy=6.9, safety=7.0)], 7.0, 1, None, 0, 6.95, False, "low_votes"),
    ],
)
def test_apply_thresholds_table(
    judgements, threshold, min_votes, weights, votes, avg, passed, reason
):
    got = apply_thresholds(
        sample(judgements=judgements),
        min_score_threshold=threshold,
        min_votes=min_votes,
        weights=weights,
    )
    assert got.votes == votes
    assert got.avg_score == (None if avg is None else pytest.approx(avg))
    assert got.passed is passed
    assert got.drop_reason == reason


def test_apply_thresholds_returns_a_copy_with_rescored_judgements():
    original = sample(
        judgements=[ok("a", accuracy=9, helpfulness=5), failed("b")], duplicate_of="old", votes=9
    )
    got = apply_thresholds(
        original, min_score_threshold=7, min_votes=1, weights={"accuracy": 1, "helpfulness": 3}
    )
    assert got.judgements[0].weighted_mean == pytest.approx(6.0)
    assert got.judgements[1].error and got.judgements[1].weighted_mean is None
    assert got.duplicate_of is None
    # The input is untouched.
    assert original.votes == 9 and original.judgements[0].weighted_mean == pytest.approx(7.0)


def test_judgement_without_known_dimensions_keeps_its_own_mean():
    j = Judgement(evaluator="a", model="m", scores={}, weighted_mean=8.0)
    got = apply_thresholds(sample(judgements=[j]), min_score_threshold=7, min_votes=1)
    assert (got.votes, got.avg_score, got.passed) == (1, 8.0, True)


def make_config(**overrides: Any):
    return build_config({"min_votes": 2, "min_score_threshold": 7.0, **overrides})


def test_check_is_keep_and_reason():
    f = DataFilter(make_config())
    assert f.check(sample(judgements=[ok("a", accuracy=9), ok("b", accuracy=8)])) == (True, None)
    assert f.check(sample(judgements=[ok("a", accuracy=9), failed("b")])) == (False, "low_votes")
    assert f.check(sample(judgements=[failed("a")])) == (False, "judge_failed")


ANSWER = (
    "订立保险合同，保险人就保险标的或者被保险人的有关情况提出询问的，投保人应当如实告知。"
    "投保人故意或者因重大过失未履行如实告知义务，足以影响保险人决定是否同意承保或者提高保险费率的，"
    "保险人有权解除合同。"
)


def corpus() -> list[ScoredSample]:
    good = [ok("a", accuracy=9), ok("b", accuracy=9)]
    better = [ok("a", accuracy=10), ok("b", accuracy=9)]
    return [
        sample("dup-low", good, output=ANSWER),
        sample(
            "dup-high", better, output=ANSWER.replace("，", ", ").replace("提出询问", "提出问询")
        ),
        sample("unique", good, instruction="What is a grace period?", output="Thirty days."),
        sample("weak", [ok("a", accuracy=9), ok("b", accuracy=4)], output="不知道"),
        sample("down", [failed("a"), failed("b")], output="无"),
    ]


async def test_filter_end_to_end():
    result = await DataFilter(make_config()).filter(corpus())
    assert isinstance(result, FilterResult)
    assert [s.id for s in result.kept] == ["dup-high", "unique"]
    assert all(s.passed and s.drop_reason is None for s in result.kept)
    dropped = {s.id: s for s in result.dropped}
    assert set(dropped) == {"dup-low", "weak", "down"}
    assert dropped["dup-low"].drop_reason == "duplicate"
    assert dropped["dup-low"].duplicate_of == "dup-high"
    assert dropped["dup-low"].passed is False
    assert dropped["weak"].drop_reason == "low_votes" and dropped["weak"].duplicate_of is None
    assert dropped["down"].drop_reason == "judge_failed"
    assert result.drop_counts() == {"duplicate": 1, "judge_failed": 1, "low_votes": 1}


async def test_filter_without_dedup_keeps_both_copies():
    result = await DataFilter(make_config(enable_dedup=False)).filter(corpus())
    assert [s.id for s in result.kept] == ["dup-low", "dup-high", "unique"]
    assert result.drop_counts() == {"judge_failed": 1, "low_votes": 1}


async def test_filter_uses_embed_fn_when_configured():
    seen: list[str] = []

    def embed(texts: list[str]) -> np.ndarray:
        seen.extend(texts)
        # Everything mentioning 保险 points the same way; the rest is orthogonal.
        return np.array([[1.0, 0.0] if "保险" in t else [0.0, 1.0] for t in texts])

    result = await DataFilter(make_config(embed_fn=embed)).filter(corpus())
    assert len(seen) == 3  # only the samples that passed the thresholds are embedded
    assert [s.id for s in result.kept] == ["dup-high", "unique"]
    assert {s.id: s.duplicate_of for s in result.dropped}["dup-low"] == "dup-high"


# --- score floors (issue 12) ------------------------------------------------------------------

DIMS6 = ("accuracy", "completeness", "logicality", "helpfulness", "safety", "standalone")


def six(evaluator: str, accuracy: float, rest: float = 8.0, **extra: float) -> Judgement:
    """A judgement with ``accuracy`` and every other dimension (standalone too) at ``rest``."""
    return ok(evaluator, **(dict.fromkeys(DIMS6, rest) | {"accuracy": accuracy} | extra))


def test_weighted_mean_leaves_standalone_out_unless_it_is_weighted():
    scores = dict.fromkeys(DIMS6, 8.0) | {"standalone": 2.0}
    assert weighted_mean(scores) == 8.0
    assert weighted_mean(scores, {"accuracy": 1.0, "standalone": 1.0}) == 5.0


def test_issue_example_accuracy_3_and_4_is_dropped_by_the_default_floor():
    # Judges give accuracy 3 and 4 and 8 elsewhere: means (3 + 32) / 5 = 7.0 and 7.2 reach the
    # threshold of 7, so without a floor both vote and the sample passes.
    s = sample(judgements=[six("primary", 3), six("secondary", 4)])
    without = apply_thresholds(s, min_score_threshold=7.0, min_votes=2)
    assert (without.votes, without.passed, without.avg_score) == (2, True, 7.1)
    cfg = make_config()
    assert cfg.score_floors == {"accuracy": 6.0, "standalone": 5.0}  # the default
    got = DataFilter(cfg).apply(s)
    assert (got.votes, got.passed, got.drop_reason) == (0, False, "below_floor")
    assert got.drop_detail == "primary: accuracy 3 < 6; secondary: accuracy 4 < 6"
    assert got.avg_score == 7.1  # the means are what they are; the floor blocks the votes


@pytest.mark.parametrize(
    ("judgements", "votes", "reason"),
    [
        # One judge below the floor, one voting: 1 of 2 votes; the floor decided -> below_floor.
        ([six("a", 9), six("b", 5)], 1, "below_floor"),
        # A question pointing at a text the student lacks: standalone 2 < 5.
        ([six("a", 9, standalone=2), six("b", 9)], 1, "below_floor"),
        # Low means anyway: the floor changed nothing -> low_votes.
        ([six("a", 5, rest=5), six("b", 9)], 1, "low_votes"),
        ([six("a", 9), failed("b")], 1, "low_votes"),
        # Every judge failed: judge_failed, not low_votes.
        ([failed("a"), failed("b")], 0, "judge_failed"),
        ([six("a", 6, standalone=5), six("b", 7)], 2, None),  # floors are inclusive
    ],
)
def test_floor_votes_and_drop_reasons(judgements, votes, reason):
    got = DataFilter(make_config()).apply(sample(judgements=judgements))
    assert (got.votes, got.drop_reason) == (votes, reason)


def test_a_judgement_recorded_before_standalone_is_not_held_to_its_floor():
    # eval-v1 judgements have the five old dimensions: standalone was never asked.
    legacy = [ok("a", **dict.fromkeys(DIMS6[:5], 8.0)), ok("b", **dict.fromkeys(DIMS6[:5], 8.0))]
    assert DataFilter(make_config()).apply(sample(judgements=legacy)).passed
    # A judge that did not score a floored dimension it was asked for cannot vouch for it.
    no_accuracy = [ok("a", completeness=9.0, safety=9.0), ok("b", completeness=9.0, safety=9.0)]
    got = DataFilter(make_config()).apply(sample(judgements=no_accuracy))
    assert (got.passed, got.drop_reason) == (False, "below_floor")


@pytest.mark.parametrize(
    ("floors", "expected"),
    [
        ({"accuracy": 7}, {"accuracy": 7.0, "standalone": 5.0}),  # merged key by key
        ({"standalone": None}, {"accuracy": 6.0}),  # null removes one floor
        (None, None),  # null removes them all
        ({"accuracy": None, "standalone": None}, None),
    ],
)
def test_score_floors_config_merges_over_the_defaults(floors, expected):
    assert make_config(score_floors=floors).score_floors == expected


@pytest.mark.parametrize(
    ("floors", "message"),
    [
        ({"acuracy": 6}, "score_floors: unknown dimension(s) ['acuracy']"),
        ({"accuracy": 11}, "score_floors: accuracy: a floor is a score from 0 to 10, got 11"),
        ({"accuracy": "6"}, "a floor is a score from 0 to 10, got '6'"),
        ([6], "must be an object of dimension -> minimum score, or null"),
    ],
)
def test_bad_score_floors_name_the_key(floors, message):
    from sft_distill.errors import ConfigError

    with pytest.raises(ConfigError, match=re.escape(message)):
        make_config(score_floors=floors)


def test_pipeline_refilter_report_and_calibration_share_one_vote():
    from sft_distill.selection import calibration, thresholds

    assert calibration.decide is thresholds.decide
    assert calibration.judge_mean is thresholds.judge_mean


# --- judges not asked (early_drop) ------------------------------------------------------------


def _j(name: str, accuracy: float, helpfulness: float) -> Judgement:
    """A judgement whose mean is that of its two scores."""
    scores = {"accuracy": accuracy, "helpfulness": helpfulness}
    return Judgement(evaluator=name, model=name, scores=scores, weighted_mean=None)


def _not_asked(name: str) -> Judgement:
    return Judgement(evaluator=name, model=name, skipped=True)


def test_a_judge_not_asked_neither_votes_nor_fails():
    d = decide([_j("a", 8, 8), _not_asked("b")], 7.0, 1)
    assert (d.passed, d.votes, d.avg_score, d.drop_reason) == (True, 1, 8.0, None)
    # Voted down by the one asked, and the one not asked cannot carry it: the usual reason.
    d = decide([_j("a", 8, 2), _not_asked("b")], 7.0, 2)
    assert (d.passed, d.drop_reason) == (False, "low_votes")


def test_a_sample_the_judges_not_asked_could_carry_is_not_judged():
    # min_votes 1 (refilter lowered it): the secondary, never asked, could keep it alone.
    d = decide([_j("a", 8, 2), _not_asked("b")], 7.0, 1)
    assert (d.passed, d.drop_reason) == (False, "not_judged")
    # A threshold the primary now reaches: the secondary's vote decides.
    d = decide([_j("a", 8, 5), _not_asked("b")], 6.0, 2)
    assert (d.passed, d.votes, d.drop_reason) == (False, 1, "not_judged")


def test_a_floor_that_blocked_the_first_vote_is_named_as_the_reason():
    # The primary's mean carried it but accuracy did not: with the secondary counted as a vote
    # (it was not asked), the floor is what decided, as it would be had the secondary voted.
    d = decide([_j("a", 4, 10), _not_asked("b")], 7.0, 2, floors={"accuracy": 6})
    assert d.drop_reason == "below_floor"


def test_a_judgement_not_asked_is_written_as_such_and_only_then():
    assert "skipped" not in _j("a", 8, 8).model_dump(mode="json")
    dumped = _not_asked("b").model_dump(mode="json")
    assert dumped["skipped"] is True
    assert Judgement.model_validate(dumped).skipped
