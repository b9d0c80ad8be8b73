"""Split by slice and per-slice / per-group caps: pure, deterministic, order-independent."""

from __future__ import annotations

import random

import pytest

from sft_distill.outputs.datasets import OutputOptions
from sft_distill.selection.splitting import (
    group_value,
    plan_split,
    select_balanced,
    split_by_slice,
    split_ids,
)


def pairs(sizes: dict[str, int]) -> list[tuple[str, str]]:
    return [(f"{s}-{i}", s) for s, n in sizes.items() for i in range(n)]


SIZES = {f"slice{k}": 1 + (k * 7) % 5 for k in range(40)}


def test_no_slice_in_both_splits_and_every_id_placed():
    items = pairs(SIZES)
    train, val = split_by_slice(items, 0.8, seed=1)
    assert not train & val
    assert train | val == {sid for sid, _ in items}
    slice_of = dict(items)
    assert not {slice_of[i] for i in train} & {slice_of[i] for i in val}


def test_ratio_is_close_in_samples():
    items = pairs(SIZES)
    train, _ = split_by_slice(items, 0.8, seed=3)
    assert abs(len(train) - 0.8 * len(items)) <= max(SIZES.values())


def test_split_by_slice_ignores_input_order_and_depends_on_seed():
    items = pairs(SIZES)
    shuffled = items[:]
    random.Random(0).shuffle(shuffled)
    assert split_by_slice(items, 0.7, 5) == split_by_slice(shuffled, 0.7, 5)
    assert split_by_slice(items, 0.7, 5) != split_by_slice(items, 0.7, 6)


@pytest.mark.parametrize(
    ("sizes", "ratio", "n_train_slices", "n_val_slices"),
    [
        ({"a": 3}, 0.9, 1, 0),  # one slice goes to train when ratio > 0
        ({"a": 3}, 0.0, 0, 1),
        ({"a": 3, "b": 1}, 1.0, 2, 0),
        ({"a": 10, "b": 1}, 0.99, 1, 1),  # ratio < 1 with 2 slices: at least one in val
        ({"a": 10, "b": 1}, 0.01, 1, 1),  # ratio > 0: at least one in train
        ({}, 0.9, 0, 0),
    ],
)
def test_split_by_slice_edges(sizes, ratio, n_train_slices, n_val_slices):
    items = pairs(sizes)
    slice_of = dict(items)
    train, val = split_by_slice(items, ratio, seed=42)
    assert len({slice_of[i] for i in train}) == n_train_slices
    assert len({slice_of[i] for i in val}) == n_val_slices


def test_split_errors():
    with pytest.raises(ValueError, match="ratio"):
        split_by_slice([], 1.5, 0)
    with pytest.raises(ValueError, match="split_by"):
        split_ids([], 0.5, 0, by="chunk")


def test_split_ids_by_sample_may_share_slices():
    items = pairs({"a": 20})
    train, val = split_ids(items, 0.5, 0, by="sample")
    assert train and val  # the same slice on both sides: what split_by=slice prevents
    assert split_ids(items, 0.5, 0, by="slice") in ((set(dict(items)), set()),)


def test_select_balanced_keeps_best_per_slice():
    items = [
        ("a1", "A", None, 9.0),
        ("a2", "A", None, 7.0),
        ("a3", "A", None, 8.0),
        ("b1", "B", None, 6.0),
    ]
    assert select_balanced(items, max_per_slice=2) == {"a1", "a3", "b1"}
    assert select_balanced(items) == {"a1", "a2", "a3", "b1"}


def test_select_balanced_group_cap_and_ties_are_deterministic():
    items = [
        ("x1", "s1", "auto", 8.0),
        ("x2", "s2", "auto", 8.0),
        ("x3", "s3", "auto", 8.0),
        ("y1", "s4", "life", 5.0),
        ("z1", "s5", None, None),
        ("z2", "s6", None, float("nan")),
    ]
    kept = select_balanced(items, max_per_group=2)
    assert kept == {"x1", "x2", "y1", "z1", "z2"}
    for seed in range(5):
        shuffled = items[:]
        random.Random(seed).shuffle(shuffled)
        assert select_balanced(shuffled, max_per_group=2) == kept
    assert select_balanced(items, max_per_group=1) == {"x1", "y1", "z1"}  # None scores rank last


def test_select_balanced_rejects_bad_caps():
    with pytest.raises(ValueError, match="max_per_slice"):
        select_balanced([], max_per_slice=0)


@pytest.mark.parametrize(
    ("metadata", "expected"),
    [({"type": "auto"}, "auto"), ({}, None), ({"type": 3}, "3"), ({"type": ["a"]}, '["a"]')],
)
def test_group_value(metadata, expected):
    assert group_value(metadata, "type") == expected


def test_plan_split_caps_then_splits_by_slice():
    kept = [(f"{s}{i}", s, "g", float(i)) for s in "ABCD" for i in range(4)]
    plan = plan_split(kept, OutputOptions(max_per_slice=2, split_by="slice", train_val_split=0.5))
    assert len(plan.capped) == 8
    assert all(sid[1] in "01" for sid in plan.capped)  # the two lowest scores of each slice
    assert len(plan.train) + len(plan.val) == 8
    assert not {s[0] for s in plan.train} & {s[0] for s in plan.val}
