"""Thresholds and votes over judgements, and the in-memory DataFilter end to end."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from sft_distill.config.merging import build_config
from sft_distill.models import Judgement, ScoredSample
from sft_distill.selection.thresholds import (
    DataFilter,
    FilterResult,
    apply_thresholds,
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
        ([failed("a"), failed("b")], 7.0, 1, None, 0, None, False, "no_evaluation"),
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
    assert f.check(sample(judgements=[failed("a")])) == (False, "no_evaluation")


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
    assert dropped["down"].drop_reason == "no_evaluation"
    assert result.drop_counts() == {"duplicate": 1, "low_votes": 1, "no_evaluation": 1}


async def test_filter_without_dedup_keeps_both_copies():
    result = await DataFilter(make_config(enable_dedup=False)).filter(corpus())
    assert [s.id for s in result.kept] == ["dup-low", "dup-high", "unique"]
    assert result.drop_counts() == {"low_votes": 1, "no_evaluation": 1}


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
