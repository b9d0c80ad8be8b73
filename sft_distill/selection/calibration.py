"""Judge calibration against human labels: agreement, thresholds, and the best settings.

Pure functions over ``ScoredSample`` judgements and a person's labels (``labels.jsonl``, one
``{"id": ..., "label": "pass"|"fail", "defect": "tag"}`` per line); ``sft-distill calibrate``
reads the files and prints ``format_calibration(calibration_report(...))``.

Conventions (one line each):

- Positive class: a "pass" label, and a "passed" decision. Precision is the share of kept samples
  a person would keep; recall the share of good samples kept.
- A metric that divides by zero is NaN (precision with nothing kept, recall with no "pass"
  label); ``calibration_report`` writes NaN as ``null`` so its dict is strict JSON.
- Cohen's kappa is NaN when both raters put every item in the same one class (chance agreement
  is then 1, and kappa is 0/0); with only one rater constant it is 0. NaN ranks last.
- Duplicate label ids: the last line wins, with one warning naming the count and the first case
  (people append corrections to a label file).
- Samples never judged (dropped by a gate, or every judge failed) are left out: no threshold can
  change their fate; the report counts them.
- A judge's vote with a floor needs the floor dimension's score present and >= the floor
  (issue 12): a judge that did not score accuracy cannot vouch for it (a judgement made before
  ``standalone`` existed is not held to that floor: ``thresholds.floor_score``). ``floor=None``
  is off.
- The vote is ``selection.thresholds.decide``, the very function the pipeline and ``refilter``
  decide with; the settings search is its vectorised form, checked against it by a test. The
  search moves one floor (``floor_dimension``); ``other_floors`` (the rest of the config's
  ``score_floors``) stay fixed.
"""

from __future__ import annotations

import json
import logging
import math
from collections import Counter
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..models import Judgement, ScoredSample
from ..stages.gates.base import GATE_PREFIX
from .thresholds import (
    DEFAULT_FLOOR_DIMENSION,
    Decision,
    decide,
    floor_score,
    judge_mean,
    meets_floors,
)

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_FLOOR_DIMENSION",
    "LABEL_VALUES",
    "Decision",
    "Label",
    "SettingResult",
    "SettingsSearch",
    "best_settings",
    "binary_metrics",
    "calibration_report",
    "cohen_kappa",
    "decide",
    "default_thresholds",
    "format_calibration",
    "judge_mean",
    "parse_label",
    "precision_recall_at_thresholds",
    "read_labels",
]

# The same slack as thresholds.decide: (6.9 + 7.1) / 2 must still reach 7.0.
_SCORE_SLACK = 1e-9
# Kappas this close are a tie (floating point noise between equal confusion tables).
_TIE_DECIMALS = 12

LABEL_VALUES: dict[str, bool] = {
    "pass": True,
    "fail": False,
    "true": True,
    "false": False,
    "1": True,
    "0": False,
    "good": True,
    "bad": False,
}
_LABEL_HINT = "pass/fail (or true/false, 1/0, good/bad)"


# ---------------------------------------------------------------------------------------------
# Labels


@dataclass(frozen=True)
class Label:
    """One person's verdict on one sample: ``passed`` True for "pass"."""

    id: str
    passed: bool
    defect: str | None = None
    line: int = 0


def parse_label(value: Any) -> bool | None:
    """True for pass, False for fail, None when ``value`` is not a recognised label."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        return LABEL_VALUES.get(value.strip().lower())
    return None


def _json_type(value: Any) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}
    if value is None:
        return "null"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return "a number"
    return names.get(type(value), type(value).__name__)


def _label_row(raw: bytes) -> Label | str:
    """The Label on one line, or the reason it cannot be one."""
    try:
        text = raw.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        return f"not UTF-8 (byte {exc.start} of the line)"
    try:
        obj = json.loads(text, strict=False)
    except (json.JSONDecodeError, RecursionError) as exc:
        why = exc.msg if isinstance(exc, json.JSONDecodeError) else "nested too deep"
        return f'not valid JSON ({why}); expected {{"id": ..., "label": "pass"|"fail"}}'
    if not isinstance(obj, dict):
        return f"expected a JSON object, got {_json_type(obj)}"
    sid = obj.get("id")
    if sid is None:
        return "missing 'id'"
    if isinstance(sid, int) and not isinstance(sid, bool):
        sid = str(sid)  # numeric ids are common and harmless, as in data_io
    if not isinstance(sid, str):
        return f"'id' must be a string, got {_json_type(sid)}"
    if not sid.strip():
        return "'id' is empty"
    if "label" not in obj:
        return f"missing 'label' ({_LABEL_HINT})"
    passed = parse_label(obj["label"])
    if passed is None:
        shown = json.dumps(obj["label"], ensure_ascii=False)
        shown = shown if len(shown) <= 40 else shown[:37] + "..."
        return f"'label' must be {_LABEL_HINT}, got {shown}"
    defect = obj.get("defect")
    if defect is not None and not isinstance(defect, str):
        return f"'defect' must be a string, got {_json_type(defect)}"
    return Label(id=sid, passed=passed, defect=(defect or "").strip() or None)


def _open_labels(path: Path) -> bytes:
    """The labels file's bytes (a person's labels: small); any failure is one InputError."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a directory, expected a JSONL file of labels") from None
    except PermissionError:
        raise InputError(f"{path}: permission denied") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror or exc}") from None


def read_labels(path: str | Path) -> dict[str, Label]:
    """Read ``labels.jsonl`` into {id: Label}; blank lines skipped, the last label of an id wins.

    Raises:
        InputError: one line naming ``file:line`` of the first bad row (and how many more are
            bad), or the file when it is missing, unreadable or holds no label.
    """
    p = Path(path)
    labels: dict[str, Label] = {}
    errors: list[str] = []
    repeated: list[tuple[str, int, int]] = []
    for lineno, raw in enumerate(_open_labels(p).split(b"\n"), start=1):
        if not raw.strip():
            continue
        row = _label_row(raw.rstrip(b"\r"))
        if isinstance(row, str):
            errors.append(f"{p}:{lineno}: {row}")
            continue
        if row.id in labels:
            repeated.append((row.id, labels[row.id].line, lineno))
        labels[row.id] = Label(row.id, row.passed, row.defect, lineno)
    if errors:
        more = len(errors) - 1
        raise InputError(
            errors[0] + (f" (and {more} more bad line{'s' * (more > 1)})" * bool(more))
        )
    if not labels:
        raise InputError(
            f'{p}: no labels; expected one {{"id": ..., "label": "pass"|"fail"}} per line'
        )
    if repeated:
        sid, first, last = repeated[0]
        log.warning(
            "%s: %d id(s) labelled more than once (first: %r on lines %d and %d); the last wins",
            p,
            len(repeated),
            sid,
            first,
            last,
        )
    return labels


def _truth(value: Label | bool) -> bool:
    return value.passed if isinstance(value, Label) else bool(value)


# ---------------------------------------------------------------------------------------------
# Agreement metrics


def cohen_kappa(a: Sequence[Hashable], b: Sequence[Hashable]) -> float:
    """Cohen's kappa of two raters over the same items, any number of classes.

    kappa = (p_o - p_e) / (1 - p_e), p_o the observed agreement and p_e = sum over classes of the
    product of the two raters' class shares. NaN for no items, or when both raters use one and the
    same class for every item (p_e = 1: agreement beyond chance is undefined).

    Raises:
        ValueError: the sequences differ in length.
    """
    if len(a) != len(b):
        raise ValueError(f"cohen_kappa: {len(a)} ratings against {len(b)}")
    n = len(a)
    if n == 0:
        return math.nan
    observed = sum(1 for x, y in zip(a, b, strict=True) if x == y) / n
    count_a, count_b = Counter(a), Counter(b)
    expected = sum(count_a[c] * count_b[c] for c in count_a) / (n * n)
    if 1.0 - expected <= 1e-12:
        return math.nan
    return (observed - expected) / (1.0 - expected)


def _metrics_from_counts(
    tp: np.ndarray, fp: np.ndarray, fn: np.ndarray, tn: np.ndarray
) -> dict[str, np.ndarray]:
    """Precision, recall, F1, accuracy and kappa from confusion counts, element-wise (NaN: 0/0)."""
    tp, fp, fn, tn = (np.asarray(x, dtype=float) for x in (tp, fp, fn, tn))
    n = tp + fp + fn + tn
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(tp + fp > 0, tp / (tp + fp), np.nan)
        recall = np.where(tp + fn > 0, tp / (tp + fn), np.nan)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
        f1 = np.where(np.isnan(precision) | np.isnan(recall), np.nan, f1)
        accuracy = np.where(n > 0, (tp + tn) / n, np.nan)
        # Chance agreement from the two marginals (prediction and label), as in cohen_kappa.
        expected = ((tp + fp) * (tp + fn) + (fn + tn) * (fp + tn)) / (n * n)
        kappa = np.where(
            (n > 0) & (1.0 - expected > 1e-12), (accuracy - expected) / (1.0 - expected), np.nan
        )
    return {
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "accuracy": accuracy,
        "kappa": kappa,
    }


def binary_metrics(predicted: Sequence[bool], truth: Sequence[bool]) -> dict[str, Any]:
    """Confusion counts, precision, recall, F1, accuracy and kappa of ``predicted`` vs ``truth``."""
    if len(predicted) != len(truth):
        raise ValueError(f"binary_metrics: {len(predicted)} predictions against {len(truth)}")
    p = np.asarray(predicted, dtype=bool)
    t = np.asarray(truth, dtype=bool)
    counts = {
        "tp": int(np.sum(p & t)),
        "fp": int(np.sum(p & ~t)),
        "fn": int(np.sum(~p & t)),
        "tn": int(np.sum(~p & ~t)),
    }
    metrics = _metrics_from_counts(*(np.array(counts[k]) for k in ("tp", "fp", "fn", "tn")))
    return {"n": len(p), **counts, **{k: float(v) for k, v in metrics.items()}}


def default_thresholds(scores: Iterable[float | None]) -> list[float]:
    """Every distinct finite score in [0, 10] plus a 0.5 grid from 0 to 10, ascending."""
    grid = {i / 2 for i in range(21)}
    seen = {float(s) for s in scores if s is not None and math.isfinite(s) and 0 <= s <= 10}
    return sorted(grid | seen)


def precision_recall_at_thresholds(
    scores: Sequence[float | None],
    labels: Sequence[bool],
    thresholds: Sequence[float] | None = None,
) -> list[dict[str, Any]]:
    """One row per threshold t: a sample is "passed" when its score >= t (None never passes).

    Each row: threshold, predicted_pass, tp, fp, fn, tn, precision, recall, f1, accuracy, kappa.
    ``thresholds`` default to ``default_thresholds(scores)``.
    """
    if len(scores) != len(labels):
        raise ValueError(f"{len(scores)} scores against {len(labels)} labels")
    ts = np.asarray(default_thresholds(scores) if thresholds is None else thresholds, dtype=float)
    s = np.array([math.nan if v is None else float(v) for v in scores], dtype=float)
    y = np.asarray(labels, dtype=bool)
    pred = s[None, :] >= ts[:, None] - _SCORE_SLACK  # NaN never passes
    return _rows(ts, pred, y)


def _rows(thresholds: np.ndarray, pred: np.ndarray, y: np.ndarray) -> list[dict[str, Any]]:
    """Metric rows for a (thresholds x samples) prediction matrix against labels ``y``."""
    yf = y.astype(float)
    tp = pred.astype(float) @ yf
    fp = pred.astype(float) @ (1.0 - yf)
    fn = yf.sum() - tp
    tn = (1.0 - yf).sum() - fp
    m = _metrics_from_counts(tp, fp, fn, tn)
    return [
        {
            "threshold": float(t),
            "predicted_pass": int(tp[i] + fp[i]),
            "tp": int(tp[i]),
            "fp": int(fp[i]),
            "fn": int(fn[i]),
            "tn": int(tn[i]),
            **{name: float(v[i]) for name, v in m.items()},
        }
        for i, t in enumerate(thresholds)
    ]


# ---------------------------------------------------------------------------------------------
# Decisions


def _judged(sample: ScoredSample) -> bool:
    """Whether the judges decided this sample (a gate drop or all-failed judges: no)."""
    if sample.drop_reason is not None and sample.drop_reason.startswith(GATE_PREFIX):
        return False
    return any(j.ok for j in sample.judgements)


@dataclass
class _Matrix:
    """Judge means and floor scores as (samples x judgement slots) arrays, NaN where absent;
    ``fixed_ok`` whether each judgement meets the floors the search does not move."""

    means: np.ndarray
    floors: np.ndarray
    fixed_ok: np.ndarray
    y: np.ndarray


def _matrix(
    samples: Sequence[ScoredSample],
    truth: Sequence[bool],
    weights: Mapping[str, float] | None,
    floor_dim: str,
    other_floors: Mapping[str, float] | None = None,
) -> _Matrix:
    width = max((len(s.judgements) for s in samples), default=0)
    means = np.full((len(samples), width), np.nan)
    floors = np.full((len(samples), width), np.nan)
    fixed_ok = np.zeros((len(samples), width), dtype=bool)
    for i, s in enumerate(samples):
        for k, j in enumerate(s.judgements):
            m = judge_mean(j, weights)
            means[i, k] = math.nan if m is None else m
            floors[i, k] = floor_score(j, floor_dim)
            fixed_ok[i, k] = meets_floors(j, other_floors)
    return _Matrix(means, floors, fixed_ok, np.asarray(truth, dtype=bool))


# ---------------------------------------------------------------------------------------------
# Settings search


@dataclass(frozen=True)
class SettingResult:
    """One (threshold, floor, min_votes) setting and how its decisions agree with the labels."""

    threshold: float
    floor: float | None
    min_votes: int
    predicted_pass: int
    tp: int
    fp: int
    fn: int
    tn: int
    precision: float
    recall: float
    f1: float
    accuracy: float
    kappa: float

    @property
    def setting(self) -> tuple[float, float | None, int]:
        return (self.threshold, self.floor, self.min_votes)


@dataclass
class SettingsSearch:
    """The best setting, the current one, and every setting tried, best first."""

    best: SettingResult
    current: SettingResult
    table: list[SettingResult] = field(default_factory=list)
    floor_dimension: str = DEFAULT_FLOOR_DIMENSION


def _grid(step: float, top: float = 10.0) -> list[float]:
    return [round(i * step, 6) for i in range(round(top / step) + 1)]


def _search_rows(
    mx: _Matrix, thresholds: np.ndarray, floors: list[float | None], votes_range: range
) -> list[SettingResult]:
    """Every setting's metrics, vectorised over thresholds for each floor and min_votes."""
    table: list[SettingResult] = []
    reach = mx.means[None, :, :] >= thresholds[:, None, None] - _SCORE_SLACK
    for floor in floors:
        floor_ok = ~np.isnan(mx.means) & mx.fixed_ok
        if floor is not None:
            floor_ok &= mx.floors >= floor - _SCORE_SLACK
        votes = (reach & floor_ok[None, :, :]).sum(axis=2)
        for k in votes_range:
            rows = _rows(thresholds, votes >= k, mx.y)
            table.extend(SettingResult(floor=floor, min_votes=k, **r) for r in rows)
    return table


def _high_first(x: float) -> float:
    """Sort key putting high values first and NaN last; equal up to float noise ties."""
    return -round(x, _TIE_DECIMALS) if math.isfinite(x) else math.inf


def _rank_key(
    r: SettingResult, current: tuple[float, float | None, int]
) -> tuple[float | bool, ...]:
    """Sort key: kappa, precision, the current setting, the least change, the observed edge."""
    t0, f0, k0 = current
    return (
        _high_first(r.kappa),
        _high_first(r.precision),
        r.setting != current,
        r.min_votes != k0,
        r.floor != f0,
        r.threshold != t0,
        # Thresholds between two observed means decide alike; the highest of them is the
        # observed mean itself, the value a person would write in the config.
        -r.threshold,
        1.0 if r.floor is None else -r.floor,
        r.min_votes,
    )


def best_settings(
    samples: Sequence[ScoredSample],
    labels: Mapping[str, Label | bool],
    *,
    threshold: float,
    min_votes: int,
    weights: Mapping[str, float] | None = None,
    floor_dimension: str = DEFAULT_FLOOR_DIMENSION,
    floor: float | None = None,
    other_floors: Mapping[str, float] | None = None,
) -> SettingsSearch:
    """Search threshold x floor x min_votes for the setting whose decisions best match the labels.

    Thresholds: 0..10 step 0.25 plus every distinct judge mean; floors: none, 0..10 step 0.5;
    min_votes: 1..the most judgements a sample has. ``threshold``/``min_votes``/``floor`` are
    the current setting (always in the table). Ranked by kappa; ties go to higher precision, then
    the current setting, then the least change (same min_votes, floor, threshold, in that
    order), then the highest threshold and floor (of a range that decides alike, the observed
    score at its top). Only labelled, judged samples count. ``other_floors`` (dimension ->
    floor, ``floor_dimension`` left out) hold in every setting.

    Raises:
        ValueError: no labelled sample was judged.
    """
    matched = [s for s in samples if s.id in labels and _judged(s)]
    if not matched:
        raise ValueError("no labelled sample was judged: nothing to calibrate against")
    fixed = _fixed(other_floors, floor_dimension)
    truth = [_truth(labels[s.id]) for s in matched]
    mx = _matrix(matched, truth, weights, floor_dimension, fixed)
    distinct = mx.means[~np.isnan(mx.means)]
    thresholds = np.unique(
        np.concatenate([_grid(0.25), distinct[(distinct >= 0) & (distinct <= 10)], [threshold]])
    )
    floors: list[float | None] = [None, *_grid(0.5)]
    if floor is not None and floor not in floors:
        floors.append(floor)
    n_votes = max(mx.means.shape[1], min_votes, 1)
    table = _search_rows(mx, thresholds, floors, range(1, n_votes + 1))
    current = (float(threshold), floor, min_votes)
    table.sort(key=lambda r: _rank_key(r, current))
    now = next(r for r in table if r.setting == current)
    return SettingsSearch(best=table[0], current=now, table=table, floor_dimension=floor_dimension)


# ---------------------------------------------------------------------------------------------
# Report


def _clean(value: Any) -> Any:
    """``value`` with NaN/inf floats as None, so the report is strict JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def _setting_dict(r: SettingResult) -> dict[str, Any]:
    return asdict(r)


def _distinct_top(table: Sequence[SettingResult], top: int) -> list[dict[str, Any]]:
    """The ``top`` best settings, one per confusion table: the rest decide the labels alike."""
    seen: set[tuple[int, ...]] = set()
    out = []
    for r in table:
        counts = (r.tp, r.fp, r.fn, r.tn)
        if counts not in seen:
            seen.add(counts)
            out.append(_setting_dict(r))
            if len(out) == top:
                break
    return out


def _fixed(floors: Mapping[str, float] | None, searched: str) -> dict[str, float]:
    """The floors a search keeps as they are: all but the searched dimension's."""
    return {d: f for d, f in (floors or {}).items() if d != searched}


def _judge_rows(
    matched: Sequence[ScoredSample],
    truth: Mapping[str, bool],
    *,
    threshold: float,
    weights: Mapping[str, float] | None,
    floor_dimension: str,
    floor: float | None,
    other_floors: Mapping[str, float],
) -> dict[str, dict[str, Any]]:
    """Per judge: its vote at the current setting against the labels, and its best threshold."""
    by_judge: dict[str, list[tuple[Judgement, bool]]] = {}
    for s in matched:
        for j in s.judgements:
            if j.ok:
                by_judge.setdefault(j.evaluator, []).append((j, truth[s.id]))
    out: dict[str, dict[str, Any]] = {}
    for name in sorted(by_judge):
        pairs = by_judge[name]
        ys = [y for _, y in pairs]
        votes = [
            decide([j], threshold, 1, weights, floor_dimension, floor, floors=other_floors).passed
            for j, _ in pairs
        ]
        curve = precision_recall_at_thresholds([judge_mean(j, weights) for j, _ in pairs], ys)
        best = _best_threshold_row(curve, threshold)
        models = sorted({j.model for j, _ in pairs})
        out[name] = {
            "model": ", ".join(models),
            "vote": binary_metrics(votes, ys),
            "best_threshold": best["threshold"],
            "best_kappa": best["kappa"],
            "mean_score": round(float(np.mean([judge_mean(j, weights) for j, _ in pairs])), 3),
        }
    return out


def _best_threshold_row(rows: list[dict[str, Any]], current: float) -> dict[str, Any]:
    """The row with the highest kappa, then precision, then ``current``, then the highest."""

    def key(r: dict[str, Any]) -> tuple[float | bool, ...]:
        t = r["threshold"]
        return (_high_first(r["kappa"]), _high_first(r["precision"]), t != current, -t)

    return min(rows, key=key)


def _defect_rows(
    matched: Sequence[ScoredSample],
    labels: Mapping[str, Label | bool],
    decisions: Mapping[str, Mapping[str, bool]],
) -> dict[str, dict[str, Any]]:
    """Per defect tag of "fail" labels: how many each setting rejects (recall of the defect)."""
    tags: dict[str, list[str]] = {}
    for s in matched:
        lab = labels[s.id]
        if _truth(lab):
            continue
        tag = (lab.defect if isinstance(lab, Label) else None) or "(untagged)"
        tags.setdefault(tag, []).append(s.id)
    out: dict[str, dict[str, Any]] = {}
    for tag in sorted(tags):
        ids = tags[tag]
        row: dict[str, Any] = {"n": len(ids)}
        for name, passed in decisions.items():
            caught = sum(1 for i in ids if not passed[i])
            row[f"caught_{name}"] = caught
            row[f"recall_{name}"] = caught / len(ids)
        out[tag] = row
    return out


def _warnings(n_pass: int, n_fail: int, unknown: int, not_judged: int) -> list[str]:
    notes = []
    if n_pass == 0 or n_fail == 0:
        notes.append(
            f"every matched label is {'fail' if n_pass == 0 else 'pass'}: kappa is 0 or "
            "undefined; label some samples of the other class"
        )
    elif min(n_pass, n_fail) < 10:
        notes.append(
            f"only {min(n_pass, n_fail)} {'pass' if n_pass < n_fail else 'fail'} labels: "
            "the best setting is a rough guide"
        )
    if unknown:
        notes.append(f"{unknown} labelled id(s) are not in this run's samples")
    if not_judged:
        notes.append(f"{not_judged} labelled sample(s) were never judged (gate or failed judges)")
    return notes


def _early_drop_warning(matched: Sequence[ScoredSample]) -> list[str]:
    """A note when some judge was not asked about labelled samples (``early_drop``)."""
    skipped = Counter(j.evaluator for s in matched for j in s.judgements if j.skipped)
    if not skipped:
        return []
    n = sum(1 for s in matched if any(j.skipped for j in s.judgements))
    who = ", ".join(sorted(skipped))
    return [
        f"{n} labelled sample(s) were not shown to {who} (early_drop: the judges before had "
        "voted them down): that judge's figures leave them out and looser settings count them "
        'as dropped; for calibration run with --no-early-drop ("early_drop": false)'
    ]


def _labelled_samples(
    samples: Sequence[ScoredSample], labels: Mapping[str, Label | bool]
) -> tuple[list[ScoredSample], list[str], int]:
    """(labelled and judged samples, labelled ids not in the run, labelled but never judged).

    Raises:
        InputError: no labelled id matches a judged sample.
    """
    by_id = {s.id: s for s in samples}
    unknown = sorted(i for i in labels if i not in by_id)
    labelled = [by_id[i] for i in labels if i in by_id]
    matched = [s for s in labelled if _judged(s)]
    if not matched:
        raise InputError(
            f"none of the {len(labels)} labelled ids matches a judged sample "
            f"({len(unknown)} not in the run, {len(labelled)} never judged)"
        )
    return matched, unknown, len(labelled) - len(matched)


def _passed(
    matched: Sequence[ScoredSample],
    setting: SettingResult,
    weights: Mapping[str, float] | None,
    floor_dimension: str,
    floors: Mapping[str, float],
) -> dict[str, bool]:
    """Each sample's vote under one setting (threshold, min_votes, floor)."""
    return {
        s.id: decide(
            s.judgements,
            setting.threshold,
            setting.min_votes,
            weights,
            floor_dimension,
            setting.floor,
            floors=floors,
        ).passed
        for s in matched
    }


def calibration_report(
    samples: Sequence[ScoredSample],
    labels: Mapping[str, Label | bool],
    *,
    threshold: float,
    min_votes: int,
    weights: Mapping[str, float] | None = None,
    floor_dimension: str = DEFAULT_FLOOR_DIMENSION,
    floor: float | None = None,
    other_floors: Mapping[str, float] | None = None,
    top: int = 10,
) -> dict[str, Any]:
    """Everything ``sft-distill calibrate`` shows, as a JSON-serialisable dict (NaN as null).

    Keys: counts, warnings, current and best settings, top settings, per judge vote agreement,
    a threshold table on the panel's mean score, and recall of "fail" labels per defect tag.

    Raises:
        InputError: no labelled id matches a judged sample.
    """
    matched, unknown, not_judged = _labelled_samples(samples, labels)
    truth = {s.id: _truth(labels[s.id]) for s in matched}
    n_pass = sum(truth.values())
    fixed = _fixed(other_floors, floor_dimension)
    search = best_settings(
        matched,
        labels,
        threshold=threshold,
        min_votes=min_votes,
        weights=weights,
        floor_dimension=floor_dimension,
        floor=floor,
        other_floors=fixed,
    )
    decisions = {
        name: _passed(matched, r, weights, floor_dimension, fixed)
        for name, r in (("current", search.current), ("best", search.best))
    }
    panel_means = [decide(s.judgements, 0, 1, weights).avg_score for s in matched]
    report = {
        "counts": {
            "labels": len(labels),
            "matched": len(matched),
            "pass_labels": n_pass,
            "fail_labels": len(matched) - n_pass,
            "unknown_ids": len(unknown),
            "not_judged": not_judged,
        },
        "unknown_ids": unknown[:20],
        "warnings": _warnings(n_pass, len(matched) - n_pass, len(unknown), not_judged)
        + _early_drop_warning(matched),
        "floor_dimension": floor_dimension,
        "other_floors": fixed,
        "current": _setting_dict(search.current),
        "best": _setting_dict(search.best),
        "settings_tried": len(search.table),
        "top_settings": _distinct_top(search.table, top),
        "judges": _judge_rows(
            matched,
            truth,
            threshold=threshold,
            weights=weights,
            floor_dimension=floor_dimension,
            floor=floor,
            other_floors=fixed,
        ),
        "mean_score_thresholds": precision_recall_at_thresholds(
            panel_means, [truth[s.id] for s in matched]
        ),
        "defects": _defect_rows(matched, labels, decisions),
    }
    clean: dict[str, Any] = _clean(report)
    return clean


# ---------------------------------------------------------------------------------------------
# Text


def _num(value: Any, spec: str = ".2f") -> str:
    return "-" if value is None else format(value, spec)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Columns padded to their widest cell; the first column left-aligned, the rest right."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        parts = [
            str(c).ljust(w) if i == 0 else str(c).rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  ".join(parts).rstrip()

    return [line(header), *(line(r) for r in rows)]


def _setting_cells(name: str, r: Mapping[str, Any]) -> list[str]:
    return [
        name,
        _num(r["threshold"]),
        _num(r["floor"], ".1f"),
        str(r["min_votes"]),
        str(r["predicted_pass"]),
        _num(r["precision"]),
        _num(r["recall"]),
        _num(r["f1"]),
        _num(r["accuracy"]),
        _num(r["kappa"]),
    ]


def _settings_section(report: Mapping[str, Any]) -> list[str]:
    header = [
        "setting",
        "threshold",
        "floor",
        "min_votes",
        "kept",
        "precision",
        "recall",
        "F1",
        "accuracy",
        "kappa",
    ]
    rows = [_setting_cells("current", report["current"]), _setting_cells("best", report["best"])]
    now = [report["current"][k] for k in ("threshold", "floor", "min_votes")]
    for i, r in enumerate(report["top_settings"][1:], start=2):
        same = [r[k] for k in ("threshold", "floor", "min_votes")] == now
        rows.append(_setting_cells(f"#{i} (current)" if same else f"#{i}", r))
    held = _held(report)
    title = (
        f"Panel settings (floor on {report['floor_dimension']}{held and f'; {held} held'}; "
        "kept = predicted pass)"
    )
    return [title, *_table(header, rows)]


def _judges_section(report: Mapping[str, Any]) -> list[str]:
    header = [
        "judge",
        "model",
        "n",
        "mean",
        "kept",
        "precision",
        "recall",
        "kappa",
        "best threshold",
    ]
    rows = [
        [
            name,
            j["model"],
            str(j["vote"]["n"]),
            _num(j["mean_score"]),
            str(j["vote"]["tp"] + j["vote"]["fp"]),
            _num(j["vote"]["precision"]),
            _num(j["vote"]["recall"]),
            _num(j["vote"]["kappa"]),
            f"{_num(j['best_threshold'])} (kappa {_num(j['best_kappa'])})",
        ]
        for name, j in report["judges"].items()
    ]
    cur = report["current"]
    floor = "" if cur["floor"] is None else f", {report['floor_dimension']} >= {cur['floor']:g}"
    if _held(report):
        floor += f", {_held(report)}"
    return [
        f"Judges (each judge's vote at threshold {cur['threshold']:g}{floor})",
        *_table(header, rows),
    ]


def _held(report: Mapping[str, Any]) -> str:
    """The floors the search did not move ("standalone >= 5"), or ''."""
    others = report.get("other_floors") or {}
    return ", ".join(f"{d} >= {f:g}" for d, f in others.items())


def _thresholds_section(report: Mapping[str, Any]) -> list[str]:
    header = ["mean >=", "kept", "precision", "recall", "F1", "kappa"]
    rows, last = [], None
    for r in report["mean_score_thresholds"]:
        if r["threshold"] * 2 != int(r["threshold"] * 2) or r["predicted_pass"] == last:
            continue  # the 0.5 grid only, and only where something changes
        last = r["predicted_pass"]
        rows.append(
            [
                _num(r["threshold"], ".1f"),
                str(r["predicted_pass"]),
                _num(r["precision"]),
                _num(r["recall"]),
                _num(r["f1"]),
                _num(r["kappa"]),
            ]
        )
    return ["Panel mean score (over judges) as a single threshold", *_table(header, rows)]


def _defects_section(report: Mapping[str, Any]) -> list[str]:
    if not report["defects"]:
        return []
    header = ["defect", "n", "rejected now", "rejected at best"]
    rows = [
        [
            tag,
            str(d["n"]),
            f"{d['caught_current']} ({d['recall_current']:.0%})",
            f"{d['caught_best']} ({d['recall_best']:.0%})",
        ]
        for tag, d in report["defects"].items()
    ]
    return ['Defects ("fail" labels the panel rejects)', *_table(header, rows)]


def format_calibration(report: Mapping[str, Any]) -> str:
    """A terminal-readable view of ``calibration_report``'s dict: settings, judges, defects."""
    c = report["counts"]
    head = (
        f"Calibration: {c['matched']} of {c['labels']} labels matched "
        f"({c['pass_labels']} pass, {c['fail_labels']} fail); "
        f"{c['unknown_ids']} not in the run, {c['not_judged']} never judged"
    )
    lines = [head, *(f"  note: {w}" for w in report["warnings"])]
    for section in (_settings_section, _judges_section, _thresholds_section, _defects_section):
        part = section(report)
        if part:
            lines += ["", *part]
    return "\n".join(lines) + "\n"
