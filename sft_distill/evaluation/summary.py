"""The figures of ``eval_metadata.json`` from the rows of ``answers.jsonl`` (no I/O).

Win/tie/loss of the student against each opponent, over the questions, with percentile
bootstrap intervals (``stats.win_rate_ci``): the panel's outcome per question (the judges'
outcomes added, a win counting +1 and a loss -1) and each judge's alone; how often each judge's
two orders agreed; how often two judges agree. Mean scores per model and dimension, the
student's mean minus each opponent's over the same questions (a bootstrap interval of the paired
differences), a breakdown per slice (or ``--group-by`` value), the questions that changed most,
SQL execution accuracy, calls, tokens and cost.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from ..outputs.report import model_price
from .stats import (
    biggest_changes,
    bootstrap_ci,
    judge_agreement,
    mean_scores_by,
    position_consistency,
    win_rate_ci,
    win_tie_loss,
)

__all__ = ["EXAMPLE_CHARS", "summarise"]

REFERENCE = "reference"
STUDENT = "student"
# Characters of a question or answer kept in the metadata's biggest changes (the report shows them).
EXAMPLE_CHARS = 600
BIGGEST_CHANGES = 10


def _cut(text: Any) -> str:
    s = "" if text is None else str(text)
    return s if len(s) <= EXAMPLE_CHARS else s[: EXAMPLE_CHARS - 1] + "…"


def _by_model(rows: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, Mapping[str, Any]]]:
    """label -> question id -> row."""
    out: dict[str, dict[str, Mapping[str, Any]]] = {}
    for row in rows:
        out.setdefault(row["model"], {})[row["question_id"]] = row
    return out


def _comparison(
    student_rows: Sequence[Mapping[str, Any]],
    opponent: str,
    judges: Sequence[str],
    ci: Mapping[str, Any],
) -> dict[str, Any] | None:
    """Win/tie/loss of the student against one opponent: the panel, each judge, consistency."""
    entries = [r["pairwise"][opponent] for r in student_rows if opponent in r.get("pairwise", {})]
    if not entries:
        return None
    panel = [e["outcome"] for e in entries if e.get("outcome") is not None]
    by_judge: dict[str, list[str]] = {j: [] for j in judges}
    pairs: dict[str, list[tuple[str, str]]] = {j: [] for j in judges}
    by_id: dict[str, dict[str, str]] = {j: {} for j in judges}
    for row, e in zip(
        (r for r in student_rows if opponent in r.get("pairwise", {})), entries, strict=True
    ):
        for j, result in e["judges"].items():
            if result.get("outcome") is None or j not in by_judge:
                continue
            by_judge[j].append(result["outcome"])
            pairs[j].append((result["first"], result["swapped"]))
            by_id[j][row["question_id"]] = result["outcome"]
    agreement = [
        {"a": a, "b": b, **judge_agreement(by_id[a], by_id[b])}
        for a, b in itertools.combinations(judges, 2)
    ]
    return {
        "questions": len(entries),
        "panel": win_rate_ci(panel, **ci),
        "by_judge": {j: win_rate_ci(v, **ci) for j, v in by_judge.items()},
        "position_consistency": {j: position_consistency(p) for j, p in pairs.items()},
        "judge_agreement": agreement,
    }


def _scores(
    rows: Sequence[Mapping[str, Any]],
    models: Sequence[str],
    judges: Sequence[str],
    ci: Mapping[str, Any],
) -> dict[str, Any]:
    """Mean score per model (with an interval) and per dimension, overall and per judge."""
    flat = [
        {"model": r["model"], "judge": j, "scores": s.get("scores") or {}}
        for r in rows
        for j, s in (r.get("scores") or {}).items()
        if "scores" in s
    ]
    dims = mean_scores_by(flat, "model")
    by_judge = {j: mean_scores_by([f for f in flat if f["judge"] == j], "model") for j in judges}
    by_model: dict[str, Any] = {}
    grouped = _by_model(rows)
    for m in models:
        means = [
            r["mean_score"] for r in grouped.get(m, {}).values() if r["mean_score"] is not None
        ]
        interval = bootstrap_ci(
            means, n_resamples=ci["n_resamples"], alpha=ci["alpha"], seed=ci["seed"]
        )
        by_model[m] = {
            "answers": len(grouped.get(m, {})),
            "scored": len(means),
            "mean": interval.as_dict(),
            "dimensions": (dims.get(m) or {}).get("scores", {}),
        }
    return {"by_model": by_model, "by_judge": by_judge}


def _deltas(
    rows: Sequence[Mapping[str, Any]], opponents: Sequence[str], ci: Mapping[str, Any]
) -> dict[str, Any]:
    """The student's mean score minus each opponent's, over the questions both were scored on."""
    grouped = _by_model(rows)
    student = grouped.get(STUDENT, {})
    out: dict[str, Any] = {}
    for opp in opponents:
        other = grouped.get(opp, {})
        diffs = [
            student[q]["mean_score"] - other[q]["mean_score"]
            for q in student
            if q in other
            and student[q]["mean_score"] is not None
            and other[q]["mean_score"] is not None
        ]
        interval = bootstrap_ci(
            diffs, n_resamples=ci["n_resamples"], alpha=ci["alpha"], seed=ci["seed"]
        )
        out[opp] = {"questions": len(diffs), "delta": interval.as_dict()}
    return out


def _breakdown(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per group (slice or --group-by value): questions, student vs reference, mean scores."""
    groups: dict[str, dict[str, Any]] = {}
    grouped = _by_model(rows)
    for qid, row in grouped.get(STUDENT, {}).items():
        g = groups.setdefault(str(row.get("group") or row.get("slice_id") or ""), {"ids": []})
        g["ids"].append(qid)
    out = []
    for name, g in groups.items():
        outcomes = [
            grouped[STUDENT][q]["pairwise"][REFERENCE]["outcome"]
            for q in g["ids"]
            if REFERENCE in grouped[STUDENT][q].get("pairwise", {})
            and grouped[STUDENT][q]["pairwise"][REFERENCE].get("outcome") is not None
        ]

        def mean_of(label: str, ids: list[str] = g["ids"]) -> float | None:
            vals = [
                grouped[label][q]["mean_score"]
                for q in ids
                if q in grouped.get(label, {}) and grouped[label][q]["mean_score"] is not None
            ]
            return round(float(np.mean(vals)), 4) if vals else None

        wtl = win_tie_loss(outcomes)
        out.append(
            {
                "group": name,
                "questions": len(g["ids"]),
                "vs_reference": {k: wtl[k] for k in ("n", "wins", "ties", "losses", "win_rate")},
                "student_mean": mean_of(STUDENT),
                "reference_mean": mean_of(REFERENCE),
            }
        )
    out.sort(key=lambda g: (-g["questions"], g["group"]))
    return out


def _changes(rows: Sequence[Mapping[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """The questions where the student scored furthest below and above the reference."""
    grouped = _by_model(rows)
    student, ref = grouped.get(STUDENT, {}), grouped.get(REFERENCE, {})
    pairs = [
        {"id": q, "student": student[q]["mean_score"], "reference": ref[q]["mean_score"]}
        for q in student
        if q in ref
    ]
    changes = biggest_changes(pairs, k=BIGGEST_CHANGES)
    for items in changes.values():
        for c in items:
            s, r = student[c["id"]], ref[c["id"]]
            c["instruction"] = _cut(s["instruction"])
            c["input"] = _cut(s["input"])
            c["student_answer"] = _cut(s["answer"])
            c["reference_answer"] = _cut(r["answer"])
            c["slice_id"] = s["slice_id"]
    return changes


def _exec(rows: Sequence[Mapping[str, Any]], models: Sequence[str]) -> dict[str, Any] | None:
    """Execution accuracy per model: the query runs (exec_pass), gives the reference's rows."""
    out: dict[str, Any] = {}
    for m in [*models, REFERENCE]:
        runs = [r["exec"] for r in rows if r["model"] == m and r.get("exec") is not None]
        if not runs:
            continue
        passed = sum(1 for e in runs if e.get("exec_pass"))
        entry: dict[str, Any] = {
            "n": len(runs),
            "exec_pass": passed,
            "exec_pass_rate": round(passed / len(runs), 4),
        }
        compared = [e for e in runs if "gold_match" in e]
        if m != REFERENCE and compared:
            matched = sum(1 for e in compared if e["gold_match"])
            entry |= {
                "gold_compared": len(compared),
                "gold_match": matched,
                "gold_match_rate": round(matched / len(runs), 4),
            }
        out[m] = entry
    return out or None


def _cost(
    usage: Mapping[str, Mapping[str, Any]], prices: Mapping[str, Any] | None
) -> dict[str, Any] | None:
    """Cost per model and in all, of the whole eval's tokens; None without prices."""
    if not prices:
        return None
    per_model: dict[str, dict[str, Any]] = {}
    for u in usage.values():
        for model, t in (u.get("models") or {}).items():
            m = per_model.setdefault(model, {"prompt_tokens": 0, "completion_tokens": 0})
            m["prompt_tokens"] += int(t.get("prompt_tokens", 0))
            m["completion_tokens"] += int(t.get("completion_tokens", 0))
    total = 0.0
    for model, m in per_model.items():
        price = model_price(prices, model)
        m["cost"] = (
            None
            if price is None
            else round(
                m["prompt_tokens"] / 1000 * price[0] + m["completion_tokens"] / 1000 * price[1], 6
            )
        )
        total += m["cost"] or 0.0
    return {"per_model": per_model, "total": round(total, 6)}


def summarise(
    rows: Sequence[Mapping[str, Any]],
    *,
    students: Sequence[str],
    judges: Sequence[str],
    weights: Mapping[str, float] | None = None,
    n_resamples: int = 2000,
    alpha: float = 0.05,
    seed: int = 0,
    usage: Mapping[str, Mapping[str, Any]] | None = None,
    prices: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Every figure of the eval from its rows (``students``: the student, then the baselines)."""
    ci = {"n_resamples": n_resamples, "alpha": alpha, "seed": seed}
    student_rows = [r for r in rows if r["model"] == STUDENT]
    opponents = [REFERENCE, *students[1:]]
    comparisons = {}
    for opp in opponents:
        found = _comparison(student_rows, opp, judges, ci)
        if found is not None:
            comparisons[opp] = found
    models = [*students, REFERENCE]
    answered = {
        m: {
            "answers": sum(1 for r in rows if r["model"] == m and r.get("answer") is not None),
            "failed": sum(1 for r in rows if r["model"] == m and r.get("error")),
        }
        for m in models
    }
    usage = usage or {}
    return {
        "bootstrap": {**ci, "confidence": 1 - alpha, "unit": "question"},
        "dimension_weights": dict(weights) if weights else None,
        "answers": answered,
        "comparisons": comparisons,
        "scores": _scores(rows, models, judges, ci),
        "score_deltas": _deltas(rows, opponents, ci),
        "breakdown": _breakdown(rows),
        "biggest_changes": _changes(rows),
        "exec": _exec(rows, students),
        "usage": dict(usage),
        "cost": _cost(usage, prices),
    }
