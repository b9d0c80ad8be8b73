"""Train/val split (by sample or by slice) and caps per slice or per metadata group.

Pure functions over ids, so the pipeline and ``refilter`` make the same decisions from the same
recorded scores: ``plan_split`` applies the caps, then splits what is left.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import logging
import math
from collections import Counter
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..ids import text_digest

if TYPE_CHECKING:
    from ..outputs.datasets import OutputOptions

log = logging.getLogger(__name__)

__all__ = [
    "DROP_CAPPED",
    "SplitPlan",
    "group_value",
    "plan_split",
    "select_balanced",
    "split_by_slice",
    "split_ids",
    "split_key",
    "split_train_val",
    "usable_group_cap",
]


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


def split_key(seed: int, sid: str) -> bytes:
    return text_digest(f"{seed}\x00{sid}", size=64)


def split_train_val(ids: list[str], ratio: float, seed: int) -> tuple[set[str], set[str]]:
    """Split ids deterministically and independently of their order.

    Ids are sorted by blake2b(seed, id); the first ``n_train`` go to train, where
    ``n_train = floor(ratio * n + 0.5)`` (half up, not banker's rounding), then nudged so that a
    ratio above 0 gives at least one train id and a ratio below 1 with n >= 2 at least one val id.
    ratio 1.0 gives no val, ratio 0.0 no train, and a single id goes to train when ratio > 0.

    Raises:
        ValueError: ratio outside [0, 1].
    """
    if not 0.0 <= ratio <= 1.0 or math.isnan(ratio):
        raise ValueError(f"ratio must be within [0, 1], got {ratio}")
    unique = sorted(set(ids), key=lambda s: (split_key(seed, s), s))
    n = len(unique)
    n_train = math.floor(ratio * n + 0.5)
    if ratio > 0 and n > 0:
        n_train = max(n_train, 1)
    if ratio < 1 and n >= 2:
        n_train = min(n_train, n - 1)
    return set(unique[:n_train]), set(unique[n_train:])


def usable_group_cap(
    opts: OutputOptions,
    groups: Mapping[str, str | None],
    *,
    fields: Iterable[str] | None = None,
) -> OutputOptions:
    """``opts`` without ``max_per_group`` (with a warning) when no slice has ``balance_by``.

    ``groups`` maps every slice id read to its group (None: field absent); ``fields``, when
    known, are the metadata fields the slices do have, to suggest one. Capping every sample as
    one "field absent" group would keep only ``max_per_group`` in all: a typo, not a wish.
    """
    if not opts.balance_by or opts.max_per_group is None or not groups:
        return opts
    if any(g is not None for g in groups.values()):
        return opts
    known = sorted(set(fields or ()))
    close = difflib.get_close_matches(opts.balance_by, known, n=1)
    hint = ""
    if close:
        hint = f"; did you mean {close[0]!r}?"
    elif known:
        hint = f"; the slices have: {', '.join(known[:20])}"
    elif fields is not None:
        hint = "; the slices have no metadata"
    log.warning(
        "balance_by %r: no slice has this metadata field, so max_per_group was not applied%s",
        opts.balance_by,
        hint,
    )
    return dataclasses.replace(opts, max_per_group=None)


@dataclass
class SplitPlan:
    """Which kept samples go to train and val, and which the caps left out."""

    train: set[str]
    val: set[str]
    capped: set[str]


def plan_split(
    kept: Iterable[tuple[str, str, str | None, float | None]], opts: OutputOptions
) -> SplitPlan:
    """Apply the caps, then split, over ``(sample_id, slice_id, group_key, score)`` of kept samples.

    ``group_key`` is the slice's ``metadata[balance_by]`` (None when unused or absent).
    """
    items = list(kept)
    ids = [i[0] for i in items]
    if opts.max_per_slice is not None or opts.max_per_group is not None:
        chosen = select_balanced(
            items,
            max_per_slice=opts.max_per_slice,
            max_per_group=opts.max_per_group if opts.balance_by else None,
        )
    else:
        chosen = set(ids)
    capped = set(ids) - chosen
    pairs = [(sid, slice_id) for sid, slice_id, _g, _s in items if sid in chosen]
    train, val = split_ids(pairs, opts.train_val_split, opts.seed, by=opts.split_by)
    return SplitPlan(train=train, val=val, capped=capped)


# drop_reason of a passing, non-duplicate sample left out by max_per_slice / max_per_group.
DROP_CAPPED = "capped"
