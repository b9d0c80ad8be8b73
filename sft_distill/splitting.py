"""Train/val split by slice and caps per slice or per metadata group (balanced output).

Pure functions over ids, so the pipeline and ``refilter`` make the same decisions from the same
recorded scores. ``data_io.split_train_val`` remains the per-sample split.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import Any

from .data_io import split_key, split_train_val

__all__ = ["group_value", "select_balanced", "split_by_slice", "split_ids"]


def split_by_slice(
    samples: Sequence[tuple[str, str]], ratio: float, seed: int
) -> tuple[set[str], set[str]]:
    """Split ``(sample_id, slice_id)`` pairs so that each slice lies wholly in train or in val.

    Slices are visited in blake2b(seed, slice_id) order (independent of input order) and a slice
    goes to train when that brings the train sample count closer to ``ratio * n``. Then, as in
    ``split_train_val``, a ratio above 0 keeps at least one slice in train and a ratio below 1 with
    two or more slices at least one in val. A repeated sample id keeps its first slice.

    Raises:
        ValueError: ratio outside [0, 1].
    """
    if not 0.0 <= ratio <= 1.0 or math.isnan(ratio):
        raise ValueError(f"ratio must be within [0, 1], got {ratio}")
    by_slice: dict[str, list[str]] = {}
    seen: set[str] = set()
    for sid, slice_id in samples:
        if sid in seen:
            continue
        seen.add(sid)
        by_slice.setdefault(slice_id, []).append(sid)
    order = sorted(by_slice, key=lambda s: (split_key(seed, s), s))
    target = math.floor(ratio * len(seen) + 0.5)
    train_slices: list[str] = []
    val_slices: list[str] = []
    n_train = 0
    for slice_id in order:
        size = len(by_slice[slice_id])
        if ratio >= 1.0 or (ratio > 0.0 and abs(n_train + size - target) < abs(n_train - target)):
            train_slices.append(slice_id)
            n_train += size
        else:
            val_slices.append(slice_id)
    if ratio > 0 and not train_slices and val_slices:
        train_slices.append(val_slices.pop(0))
    if ratio < 1 and not val_slices and len(train_slices) >= 2:
        val_slices.append(train_slices.pop())
    train = {sid for s in train_slices for sid in by_slice[s]}
    val = {sid for s in val_slices for sid in by_slice[s]}
    return train, val


def split_ids(
    samples: Sequence[tuple[str, str]], ratio: float, seed: int, *, by: str = "sample"
) -> tuple[set[str], set[str]]:
    """Split ``(sample_id, slice_id)`` pairs ``by`` "sample" (``split_train_val``) or "slice".

    Raises:
        ValueError: ratio outside [0, 1] or an unknown ``by``.
    """
    if by == "slice":
        return split_by_slice(samples, ratio, seed)
    if by == "sample":
        return split_train_val([sid for sid, _ in samples], ratio, seed)
    raise ValueError(f"split_by must be 'sample' or 'slice', got {by!r}")


def select_balanced(
    items: Iterable[tuple[str, str, Hashable | None, float | None]],
    *,
    max_per_slice: int | None = None,
    max_per_group: int | None = None,
) -> set[str]:
    """Ids kept under the caps, from ``(sample_id, slice_id, group_key, score)`` tuples.

    Samples are taken best score first (a None or NaN score last; ties by id, so the result does
    not depend on input order) and kept while their slice has fewer than ``max_per_slice`` and
    their group fewer than ``max_per_group`` kept samples. ``None`` is a group of its own. With no
    cap every id is kept.

    Raises:
        ValueError: a cap below 1.
    """
    for name, cap in (("max_per_slice", max_per_slice), ("max_per_group", max_per_group)):
        if cap is not None and cap < 1:
            raise ValueError(f"{name} must be >= 1 or None, got {cap}")

    def rank(item: tuple[str, str, Hashable | None, float | None]) -> tuple[float, str]:
        score = item[3]
        bad = score is None or math.isnan(score)
        return (math.inf if bad else -float(score), item[0])  # type: ignore[arg-type]

    kept: set[str] = set()
    per_slice: Counter[str] = Counter()
    per_group: Counter[Hashable | None] = Counter()
    for sid, slice_id, group, _score in sorted(items, key=rank):
        if sid in kept:
            continue
        if max_per_slice is not None and per_slice[slice_id] >= max_per_slice:
            continue
        if max_per_group is not None and per_group[group] >= max_per_group:
            continue
        kept.add(sid)
        per_slice[slice_id] += 1
        per_group[group] += 1
    return kept


def group_value(metadata: Mapping[str, Any], field: str) -> str | None:
    """A slice's ``metadata[field]`` as a group key (non-strings as JSON); None if absent."""
    value = metadata.get(field)
    if value is None:
        return None
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, sort_keys=True)
