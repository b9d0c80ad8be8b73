"""The run report: funnel, score distributions, keep rate per threshold, agreement, latency, cost.

``compute_report`` reads ``generated_raw.jsonl`` (every scored sample) and ``metadata.json``'s
counts, usage and timings, and returns a JSON-ready dict (stored in metadata.json as ``report``).
``write_report`` also renders it to one self-contained ``report.html`` (see ``report_html``).
No LLM is called: everything is recomputed from the recorded judgements.
"""

from __future__ import annotations

import heapq
import itertools
import json
import logging
import math
import os
from array import array
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import OutputError
from ..llm.structured import PriceCard
from ..llm.structured import cost as token_cost
from ..models import PathLike, ScoredSample
from ..selection.thresholds import apply_thresholds, meets_floors
from ..sources.jsonl import iter_scored
from .quality import QualityStats
from .report_html import render_html

log = logging.getLogger(__name__)

__all__ = [
    "RAW_FILE",
    "REPORT_FILE",
    "THRESHOLDS",
    "ReportBuilder",
    "calibration_view",
    "collect_examples",
    "compute_report",
    "model_card",
    "model_price",
    "percentiles",
    "pick_examples",
    "priced_tokens",
    "rankdata",
    "read_examples",
    "render_html",
    "rewrite_report_page",
    "score_bin",
    "spearman",
    "write_report",
]

RAW_FILE = "generated_raw.jsonl"
REPORT_FILE = "report.html"
# Every threshold a user might pick: 0, 0.5, ..., 10.
THRESHOLDS: tuple[float, ...] = tuple(i / 2 for i in range(21))
N_BINS = 11
# Same slack as filtering: a mean a hair under the threshold in floating point still votes.
_SLACK = 1e-9

# model -> {"input_per_1k", "output_per_1k", "cached_input_per_1k", "batch_discount"}
# (dicts, or config.ModelPrice)
Prices = Mapping[str, Any]


def score_bin(score: float) -> int:
    """Histogram bin 0..10 of a score: bin k holds [k - 0.5, k + 0.5), clipped to the ends."""
    return int(min(N_BINS - 1, max(0, math.floor(score + 0.5))))


def rankdata(values: Sequence[float]) -> np.ndarray:
    """1-based ranks with ties given their average rank (like scipy's ``rankdata``)."""
    x = np.asarray(values, dtype=float)
    order = np.argsort(x, kind="mergesort")
    _, first, counts = np.unique(x[order], return_index=True, return_counts=True)
    ranks = np.empty(len(x), dtype=float)
    ranks[order] = np.repeat(first + (counts - 1) / 2.0 + 1.0, counts)
    return ranks


def spearman(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Spearman's rho (Pearson correlation of average ranks); None if undefined (n<2, constant)."""
    if len(a) != len(b):
        raise ValueError(f"lengths differ: {len(a)} and {len(b)}")
    if len(a) < 2:
        return None
    ra, rb = rankdata(a), rankdata(b)
    ra -= ra.mean()
    rb -= rb.mean()
    denom = math.sqrt(float((ra * ra).sum()) * float((rb * rb).sum()))
    if denom == 0:
        return None
    return float((ra * rb).sum()) / denom


def percentiles(values: Sequence[float]) -> dict[str, float | int | None]:
    """n, mean, p50, p90, p95 and max (linear interpolation); Nones when there is no value."""
    if not values:
        return {"n": 0, "mean": None, "p50": None, "p90": None, "p95": None, "max": None}
    x = np.asarray(values, dtype=float)
    p50, p90, p95 = (float(v) for v in np.percentile(x, [50, 90, 95]))
    return {
        "n": len(x),
        "mean": float(x.mean()),
        "p50": p50,
        "p90": p90,
        "p95": p95,
        "max": float(x.max()),
    }


def _settings(
    metadata: Mapping[str, Any],
    min_score_threshold: float | None,
    min_votes: int | None,
    weights: Mapping[str, float] | None,
) -> tuple[float, int, Mapping[str, float] | None]:
    cfg = metadata.get("config") or {}
    thr = (
        cfg.get("min_score_threshold", 7.0) if min_score_threshold is None else min_score_threshold
    )
    votes = cfg.get("min_votes", 2) if min_votes is None else min_votes
    return float(thr), int(votes), weights if weights is not None else cfg.get("dimension_weights")


def _funnel(counts: Mapping[str, Any], n_raw: int, kept_raw: int) -> list[dict[str, Any]]:
    """The stages with their counts; from metadata counts, else what the raw file shows."""
    if not counts:
        return [
            {"stage": "samples generated", "count": n_raw},
            {"stage": "kept", "count": kept_raw},
        ]
    stages = [
        ("input lines", counts.get("lines_read", 0)),
        ("slices read", counts.get("slices", 0)),
        ("chunks", counts.get("chunks", 0)),
        (
            "samples generated",
            counts.get("samples_generated", 0) + counts.get("generation_unparsable_items", 0),
        ),
        ("samples parsed", counts.get("samples_generated", 0)),
        ("passed thresholds", counts.get("passed_thresholds", 0)),
        ("after dedup", counts.get("after_dedup", 0)),
        ("train", counts.get("train", 0)),
        ("val", counts.get("val", 0)),
    ]
    return [{"stage": s, "count": int(c)} for s, c in stages]


def _losses(counts: Mapping[str, Any]) -> dict[str, int]:
    """Work lost before a sample existed or was judged (not in the raw file)."""
    keys = {
        "bad input lines": "bad_lines",
        "failed chunks (generation)": "generation_failed_chunks",
        "unparsable generated items": "generation_unparsable_items",
        "failed judgements": "evaluation_failures",
    }
    return {label: int(counts.get(k, 0)) for label, k in keys.items() if counts.get(k)}


def _latency(
    metadata: Mapping[str, Any], latencies: Mapping[str, Sequence[float]] | None
) -> dict[str, Any]:
    usage = metadata.get("usage") or {}
    if latencies is None:
        previous = (metadata.get("report") or {}).get("latency")
        if previous:  # refilter: no calls were made, keep what the run measured
            return dict(previous)
        # Without per-call timings only the mean per endpoint is known.
        endpoints = {}
        for name, u in usage.items():
            calls = u.get("calls", 0)
            mean = u.get("latency_s_total", 0.0) / calls if calls else None
            endpoints[name] = {
                "model": u.get("model"),
                "stage": "generation" if name == "generator" else "evaluation",
                **percentiles([]),
                "n": calls,
                "mean": mean,
            }
        return {"endpoints": endpoints, "stages": {}, "source": "usage means"}
    endpoints = {}
    stages: dict[str, list[float]] = {"generation": [], "evaluation": []}
    for name, values in latencies.items():
        stage = "generation" if name == "generator" else "evaluation"
        stages[stage].extend(values)
        endpoints[name] = {
            "model": (usage.get(name) or {}).get("model"),
            "stage": stage,
            **percentiles(list(values)),
        }
    return {
        "endpoints": endpoints,
        "stages": {s: percentiles(v) for s, v in stages.items() if v},
        "source": "per call",
    }


def _throughput(metadata: Mapping[str, Any], kept: int) -> dict[str, Any]:
    """Teacher speed over the time it was busy, kept samples per hour of the whole run."""
    usage = (metadata.get("usage") or {}).get("generator") or {}
    timings = metadata.get("timings_s") or {}
    tokens = int(usage.get("completion_tokens", 0))
    # Wall time with at least one teacher request in flight, over every invocation of the run;
    # unknown (None) in metadata written before it was recorded.
    busy = usage.get("busy_s")
    per_request = usage.get("latency_s_total")
    wall = (metadata.get("whole_run") or {}).get("wall_s", timings.get("total"))
    out: dict[str, Any] = {
        "teacher_completion_tokens": tokens,
        "teacher_busy_s": busy,
        "teacher_tokens_per_s": tokens / busy if busy else None,
        "teacher_tokens_per_s_per_request": tokens / per_request if per_request else None,
        "kept_samples": kept,
        "run_wall_s": wall,
        "kept_per_hour": kept / wall * 3600 if wall else None,
    }
    mine = usage.get("this_invocation")
    if mine is not None:
        mine_tokens, mine_busy = int(mine.get("completion_tokens", 0)), mine.get("busy_s")
        out["this_invocation"] = {
            "wall_s": timings.get("total"),
            "teacher_completion_tokens": mine_tokens,
            "teacher_busy_s": mine_busy,
            "teacher_tokens_per_s": mine_tokens / mine_busy if mine_busy else None,
        }
    return out


def model_price(prices: Mapping[str, Any] | None, model: str) -> tuple[float, float] | None:
    """(input, output) price per 1k tokens of ``model``: dicts or objects with those attributes."""
    card = model_card(prices, model)
    return None if card is None else (card.input_per_1k, card.output_per_1k)


def model_card(prices: Mapping[str, Any] | None, model: str) -> PriceCard | None:
    """All of ``model``'s prices (cached input, batch discount too), or None when unpriced."""
    if not prices or model not in prices:
        return None
    return PriceCard.from_config(prices[model])


def _tokens_by_model(usage: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Prompt, cached prompt and completion tokens per model over the endpoints' usage records
    (a run recorded before cached tokens were counted has none), and the part of each that went
    through a Batch API."""
    per_model: dict[str, dict[str, Any]] = {}
    for u in usage:
        # "models": per model of the endpoint over the run (the model may have changed)
        for model, t in (u.get("models") or {u.get("model", "?"): u}).items():
            m = per_model.setdefault(
                model,
                {
                    "prompt_tokens": 0,
                    "cached_prompt_tokens": 0,
                    "completion_tokens": 0,
                    "cost": None,
                },
            )
            m["prompt_tokens"] += int(t.get("prompt_tokens", 0))
            m["cached_prompt_tokens"] += int(t.get("cached_prompt_tokens", 0))
            m["completion_tokens"] += int(t.get("completion_tokens", 0))
            if t.get("batch_calls"):
                for name in BATCH_TOKEN_FIELDS:
                    m[name] = m.get(name, 0) + int(t.get(name, 0))
    return per_model


# The batched part of a model's tokens (usage records and estimates carry them when batched).
BATCH_TOKEN_FIELDS = (
    "batch_calls",
    "batch_prompt_tokens",
    "batch_cached_prompt_tokens",
    "batch_completion_tokens",
)


def priced_tokens(
    prompt: int,
    cached: int,
    completion: int,
    card: PriceCard,
    *,
    batched: tuple[int, int, int] = (0, 0, 0),
) -> dict[str, float]:
    """What the tokens cost: as billed (cached prompt tokens at the cached price, the
    ``batched`` (prompt, cached, completion) part of them at the batch price), had nothing been
    cached, and had everything gone through a batch API (cache prices kept)."""
    cached = min(max(0, cached), prompt)
    b_prompt, b_cached, b_completion = batched
    b_prompt = min(max(0, b_prompt), prompt)
    b_cached = min(max(0, b_cached), b_prompt, cached)
    b_completion = min(max(0, b_completion), completion)
    online = (prompt - b_prompt, cached - b_cached, completion - b_completion)

    def billed(cache: bool) -> float:
        c_online, c_batch = (online[1], b_cached) if cache else (0, 0)
        return token_cost(online[0], c_online, online[2], price=card) + token_cost(
            b_prompt, c_batch, b_completion, price=card, batched=True
        )

    return {
        "cost": billed(True),
        "cost_without_cache": billed(False),
        "cost_batched": token_cost(prompt, cached, completion, price=card, batched=True),
    }


def batched_part(m: Mapping[str, Any]) -> tuple[int, int, int]:
    """(prompt, cached prompt, completion) tokens of ``m`` that went through a Batch API."""
    return (
        int(m.get("batch_prompt_tokens", 0)),
        int(m.get("batch_cached_prompt_tokens", 0)),
        int(m.get("batch_completion_tokens", 0)),
    )


def _priced(per_model: dict[str, dict[str, Any]], prices: Prices) -> dict[str, Any]:
    totals = dict.fromkeys(("cost", "cost_without_cache", "cost_batched"), 0.0)
    unpriced = []
    for model, m in per_model.items():
        card = model_card(prices, model)
        if card is None:
            unpriced.append(model)
            continue
        figures = priced_tokens(
            m["prompt_tokens"],
            m["cached_prompt_tokens"],
            m["completion_tokens"],
            card,
            batched=batched_part(m),
        )
        m.update(figures)
        for k, v in figures.items():
            totals[k] += v
    return {
        "per_model": per_model,
        "total": totals["cost"],
        "total_without_cache": totals["cost_without_cache"],
        "total_batched": totals["cost_batched"],
        "unpriced": sorted(unpriced),
    }


def _cost(metadata: Mapping[str, Any], prices: Prices | None) -> dict[str, Any] | None:
    """Cost of the whole run's tokens, and of this invocation's alone."""
    if not prices:
        return None
    usage = list((metadata.get("usage") or {}).values())
    cost = _priced(_tokens_by_model(usage), prices)
    mine = [u["this_invocation"] for u in usage if isinstance(u.get("this_invocation"), Mapping)]
    if mine:
        cost["this_invocation"] = _priced(_tokens_by_model(mine), prices)
    return cost


def _usage(metadata: Mapping[str, Any], cost: Mapping[str, Any] | None) -> dict[str, Any]:
    """Calls, tokens, cost and wall time: the whole run beside this invocation alone."""
    usage = list((metadata.get("usage") or {}).values())
    whole = metadata.get("whole_run") or {}
    timings = metadata.get("timings_s") or {}

    def totals(records: list[Mapping[str, Any]]) -> dict[str, Any]:
        return {
            k: sum(int(r.get(k, 0)) for r in records)
            for k in (
                "calls",
                "prompt_tokens",
                "cached_prompt_tokens",
                "completion_tokens",
                "reasoning_tokens",
            )
        }

    out: dict[str, Any] = {
        "whole_run": {
            "invocations": whole.get("invocations", 1),
            "wall_s": whole.get("wall_s", timings.get("total")),
            **totals(usage),
            "cost": cost["total"] if cost else None,
            "cost_without_cache": cost["total_without_cache"] if cost else None,
        }
    }
    mine = [u["this_invocation"] for u in usage if isinstance(u.get("this_invocation"), Mapping)]
    if mine:
        out["this_invocation"] = {
            "wall_s": timings.get("total"),
            **totals(mine),
            "cached": sum(int(r.get("cached", 0)) for r in mine),
            "cost": (cost.get("this_invocation") or {}).get("total") if cost else None,
            "cost_without_cache": (
                (cost.get("this_invocation") or {}).get("total_without_cache") if cost else None
            ),
        }
    return out


def _written(counts: Mapping[str, Any], kept: int) -> int:
    """Samples in the output splits (train + val), else the raw file's passing count."""
    if counts and "train" in counts and "val" in counts:
        return int(counts["train"]) + int(counts["val"])
    return kept


def _kth_largest(means: list[float], k: int) -> float | None:
    """The k-th largest mean: a sample passes threshold t iff it is >= t (k = min_votes >= 1)."""
    if len(means) < k:
        return None
    return sorted(means, reverse=True)[k - 1]


class ReportBuilder:
    """The report's per-sample figures, gathered one scored sample at a time.

    ``compute_report`` feeds it the raw file; the pipeline feeds it each sample as it is judged,
    so finishing a run needs no second pass over the raw file. Memory per sample: one float
    (the k-th best mean) and one per evaluator; examples keep only a few ids per drop reason.
    """

    def __init__(
        self,
        min_score_threshold: float,
        min_votes: int,
        weights: Mapping[str, float] | None,
        *,
        n_examples: int = 3,
        floors: Mapping[str, float] | None = None,
    ) -> None:
        self.settings = (float(min_score_threshold), int(min_votes), weights)
        self.floors = dict(floors or {})
        self.n = 0
        self.kept = 0
        # samples some judge was not asked about (early_drop): the curve's lower bound below
        self.not_asked = 0
        self.drops: Counter[str] = Counter()
        self.evaluators: dict[str, str] = {}
        self.hists: dict[str, dict[str, list[int]]] = {}
        self._kth = array("d")
        # evaluator -> its mean per sample (NaN where it gave none), aligned on sample order
        self._means: dict[str, array[float]] = {}
        self._n_examples = n_examples
        # drop reason -> its smallest ids (a max-heap), as many as the examples can show
        self._dropped: dict[str, list[_Desc]] = {}
        # for the run-level floors: mean of every average score, share of SQL that ran
        self._score_sum, self._score_n = 0.0, 0
        self._exec_ok, self._exec_n = 0, 0
        # evidence verified, referential wording, question types (metadata "quality")
        self.quality = QualityStats()
        # passing sample id -> (slice id, source articles it covers), for article coverage
        self._articles: dict[str, tuple[str, tuple[str, ...]]] = {}

        # compliance: samples with personal data and what was found; contamination by match
        self.pii_samples = 0
        self.pii_found: Counter[str] = Counter()
        self.contamination: Counter[str] = Counter()

    @classmethod
    def from_metadata(
        cls,
        metadata: Mapping[str, Any],
        min_score_threshold: float | None = None,
        min_votes: int | None = None,
        weights: Mapping[str, float] | None = None,
        **kwargs: Any,
    ) -> ReportBuilder:
        """Settings given here win; the rest (and ``score_floors``) default to
        ``metadata["config"]``."""
        kwargs.setdefault("floors", (metadata.get("config") or {}).get("score_floors"))
        return cls(*_settings(metadata, min_score_threshold, min_votes, weights), **kwargs)

    def add(self, sample: ScoredSample, *, decided: bool = False) -> None:
        """Count one scored sample: its drop reason, scores and means under the settings.

        ``decided``: the filter has just judged this sample under these very settings, so its
        weighted means need not be computed again.
        """
        thr, min_v, w = self.settings
        if any(j.skipped for j in sample.judgements):
            self.not_asked += 1
        if sample.passed:
            self.kept += 1
        else:
            self._drop(sample.id, sample.drop_reason or "unknown")
        self.quality.add(sample)
        if not decided:
            # Recompute each evaluator's mean under the weights, exactly as the filter does.
            sample = apply_thresholds(
                sample, min_score_threshold=thr, min_votes=min_v, weights=w, floors=self.floors
            )
        if sample.avg_score is not None:
            self._score_sum += sample.avg_score
            self._score_n += 1
        if sample.passed and sample.articles:
            self._articles[sample.id] = (sample.slice_id, tuple(sample.articles))
        if "exec_pass" in sample.annotations:
            self._exec_n += 1
            self._exec_ok += bool(sample.annotations["exec_pass"])
        self._count_compliance(sample)
        means = []
        for j in sample.judgements:
            if not j.ok or j.weighted_mean is None:
                continue
            self.evaluators.setdefault(j.evaluator, j.model)
            h = self.hists.setdefault(j.evaluator, {})
            for dim, score in j.scores.items():
                if math.isfinite(score):
                    h.setdefault(dim, [0] * N_BINS)[score_bin(score)] += 1
            h.setdefault("weighted_mean", [0] * N_BINS)[score_bin(j.weighted_mean)] += 1
            if meets_floors(j, self.floors):
                # The keep-rate curve moves the threshold only: a judge below a floor never votes.
                means.append(j.weighted_mean)
            column = self._means.get(j.evaluator)
            if column is None:
                column = self._means[j.evaluator] = array("d", [math.nan]) * self.n
            if len(column) > self.n:  # the same evaluator twice: its last mean counts
                column[self.n] = j.weighted_mean
            else:
                column.append(j.weighted_mean)
        for column in self._means.values():
            if len(column) == self.n:  # this evaluator gave no mean for this sample
                column.append(math.nan)
        kth = _kth_largest(means, min_v) if min_v > 0 else math.inf
        self._kth.append(math.nan if kth is None else kth)
        self.n += 1

    def kept_articles(self, ids: Iterable[str]) -> list[tuple[str, tuple[str, ...]]]:
        """(slice id, articles covered) of each of ``ids`` that passed and covers some."""
        return [self._articles[i] for i in ids if i in self._articles]

    def _count_compliance(self, sample: ScoredSample) -> None:
        """Personal data the pii gate found (types only) and how a contaminated one matched."""
        pii = sample.annotations.get("pii")
        if isinstance(pii, Mapping) and isinstance(pii.get("counts"), Mapping):
            self.pii_samples += 1
            self.pii_found.update({str(k): int(v) for k, v in pii["counts"].items()})
        if sample.drop_reason == "contaminated":
            how = sample.annotations.get("contamination")
            match = how.get("match") if isinstance(how, Mapping) else None
            self.contamination[str(match or "unknown")] += 1

    def compliance(self) -> dict[str, Any]:
        """Samples with personal data, counts per type, contaminated samples per kind of match."""
        return {
            "pii": {"samples": self.pii_samples, "found": dict(sorted(self.pii_found.items()))},
            "contaminated": dict(sorted(self.contamination.items())),
        }

    def mean_score(self) -> float | None:
        """Mean of the samples' average scores (None when none was judged)."""
        return self._score_sum / self._score_n if self._score_n else None

    def exec_pass_rate(self) -> float | None:
        """Share of samples whose SQL executed (None when no SQL was executed)."""
        return self._exec_ok / self._exec_n if self._exec_n else None

    def drop_late(self, reasons: Mapping[str, str]) -> None:
        """Passing samples dropped after judging (id -> reason: duplicate, capped)."""
        for sid, reason in reasons.items():
            self.kept -= 1
            self._drop(sid, reason)
        self.quality.drop_late(reasons)

    def _drop(self, sid: str, reason: str) -> None:
        self.drops[reason] += 1
        heap = self._dropped.setdefault(reason, [])
        item = _Desc(sid)
        if len(heap) < self._n_examples:
            heapq.heappush(heap, item)
        elif item.id < heap[0].id:
            heapq.heapreplace(heap, item)

    def example_ids(self, kept: Sequence[tuple[float | None, str]]) -> tuple[list[str], list[str]]:
        """Ids of the example samples: kept ones (best, middle, worst of ``kept``, given as
        (score, id)) and dropped ones (each reason in turn, smallest ids first)."""
        dropped = {r: [d.id for d in h] for r, h in self._dropped.items()}
        return pick_examples(kept, dropped, self._n_examples)

    def report(
        self,
        metadata: Mapping[str, Any],
        *,
        latencies: Mapping[str, Sequence[float]] | None = None,
        prices: Prices | None = None,
    ) -> dict[str, Any]:
        """The report dict: these figures plus ``metadata``'s counts, usage and timings."""
        thr, min_v, w = self.settings
        if prices is None:
            prices = (metadata.get("config") or {}).get("prices")
        kth = np.frombuffer(self._kth, dtype=np.float64) if self.n else np.empty(0)
        curve = []
        for t in THRESHOLDS:
            passing = int(np.count_nonzero(kth >= t - _SLACK))  # NaN (no k-th mean) never passes
            curve.append(
                {"threshold": t, "passed": passing, "rate": passing / self.n if self.n else None}
            )

        agreement = []
        for a, b in itertools.combinations(sorted(self._means), 2):
            ma = np.frombuffer(self._means[a], dtype=np.float64)[: self.n]
            mb = np.frombuffer(self._means[b], dtype=np.float64)[: self.n]
            both = ~np.isnan(ma) & ~np.isnan(mb)
            xa, xb = ma[both].tolist(), mb[both].tolist()
            differ = int(np.count_nonzero((ma[both] >= thr - _SLACK) != (mb[both] >= thr - _SLACK)))
            agreement.append(
                {
                    "a": a,
                    "b": b,
                    "n": len(xa),
                    "spearman": spearman(xa, xb),
                    "vote_disagreement": differ / len(xa) if xa else None,
                }
            )

        counts = metadata.get("counts") or {}
        cost = _cost(metadata, prices)
        gates = (metadata.get("quality_gates") or {}).get("gates") or []
        return {
            "settings": {
                "min_score_threshold": thr,
                "min_votes": min_v,
                "dimension_weights": w,
                "score_floors": self.floors or None,
            },
            "samples": self.n,
            "kept": self.kept,
            "funnel": _funnel(counts, self.n, self.kept),
            "drop_reasons": dict(sorted(self.drops.items())),
            "losses": _losses(counts),
            "compliance": self.compliance(),
            "evaluators": dict(sorted(self.evaluators.items())),
            "histograms": {e: dict(sorted(h.items())) for e, h in sorted(self.hists.items())},
            "keep_rate": curve,
            "not_asked": self.not_asked,
            "agreement": agreement,
            "latency": _latency(metadata, latencies),
            "throughput": _throughput(metadata, _written(counts, self.kept)),
            "coverage": (metadata.get("quality") or {}).get("coverage"),
            "cost": cost,
            "usage": _usage(metadata, cost),
            "quality": self.quality.summary(self.drops, gates),
            "run": {
                "simulator": metadata.get("simulator"),
                "input": (metadata.get("input") or {}).get("path"),
                "version": metadata.get("version"),
                "prompt_versions": metadata.get("prompt_versions"),
                "refiltered": bool(metadata.get("refiltered")),
            },
            # ``sft-distill calibrate`` records it; a later refilter keeps showing it.
            "calibration": calibration_view(metadata.get("calibration")),
        }


def coverage_summary(
    totals: Mapping[str, int], kept: Iterable[tuple[str, Sequence[str]]]
) -> dict[str, Any]:
    """Article coverage of each article-structured slice by the kept samples, and overall.

    ``totals``: slice id -> its articles; ``kept``: (slice id, articles a kept sample cites or
    quotes) per kept sample. A slice's ratio is covered / total.
    """
    covered: dict[str, set[str]] = {}
    for sid, labels in kept:
        if sid in totals:
            covered.setdefault(sid, set()).update(labels)
    slices = {}
    for sid, total in sorted(totals.items()):
        n = min(total, len(covered.get(sid, ())))
        slices[sid] = {
            "total": total,
            "covered": n,
            "ratio": round(n / total, 4) if total else None,
        }
    total = sum(v["total"] for v in slices.values())
    n = sum(v["covered"] for v in slices.values())
    return {
        "articles": total,
        "covered": n,
        "ratio": round(n / total, 4) if total else None,
        "slices": slices,
    }


class _Desc:
    """An id ordered backwards, so ``heapq`` (a min-heap) keeps the smallest ids."""

    __slots__ = ("id",)

    def __init__(self, sid: str) -> None:
        self.id = sid

    def __lt__(self, other: _Desc) -> bool:
        return self.id > other.id


def pick_examples(
    kept: Sequence[tuple[float | None, str]], dropped: Mapping[str, Sequence[str]], n: int
) -> tuple[list[str], list[str]]:
    """Example ids: ``n`` kept samples spread from best to worst score (ties: smallest id) and
    dropped ones taking each reason in turn, smallest ids first (at least one per reason)."""
    ranked = sorted(kept, key=lambda k: (-(k[0] if k[0] is not None else -1.0), k[1]))
    picks: list[str] = []
    if ranked and n > 0:
        idx = sorted({round(i * (len(ranked) - 1) / max(1, n - 1)) for i in range(n)})
        picks = [ranked[i][1] for i in idx][:n]
    lists = [sorted(v) for _, v in sorted(dropped.items())]
    drop_picks: list[str] = []
    for row in itertools.zip_longest(*lists):
        drop_picks.extend(item for item in row if item is not None)
    return picks, drop_picks[: max(n, len(lists))]


def compute_report(
    raw_path: PathLike,
    metadata: Mapping[str, Any],
    *,
    latencies: Mapping[str, Sequence[float]] | None = None,
    prices: Prices | None = None,
    min_score_threshold: float | None = None,
    min_votes: int | None = None,
    weights: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """The report dict from the raw samples and ``metadata`` (counts, usage, timings, config).

    Threshold, votes and weights default to ``metadata["config"]``; ``prices`` to
    ``metadata["config"]["prices"]`` (``{model: {"input_per_1k", "output_per_1k"}}``).
    ``latencies`` maps endpoint name to per-call seconds.

    Raises:
        InputError: the raw file is missing or unreadable.
    """
    builder = ReportBuilder.from_metadata(metadata, min_score_threshold, min_votes, weights)
    for _, sample in iter_scored(raw_path):
        builder.add(sample)
    return builder.report(metadata, latencies=latencies, prices=prices)


def _example(obj: Mapping[str, Any], max_chars: int) -> dict[str, Any]:
    def cut(text: Any) -> str:
        s = text if isinstance(text, str) else ""
        return s if len(s) <= max_chars else s[:max_chars] + " …"

    return {
        "id": obj.get("id"),
        "slice_id": obj.get("slice_id"),
        "instruction": cut(obj.get("instruction")),
        "input": cut(obj.get("input")),
        "output": cut(obj.get("output")),
        "avg_score": obj.get("avg_score"),
        "votes": obj.get("votes"),
        "passed": bool(obj.get("passed")),
        "drop_reason": obj.get("drop_reason"),
        "duplicate_of": obj.get("duplicate_of"),
        "judgements": [
            {
                "evaluator": j.get("evaluator"),
                "model": j.get("model"),
                "weighted_mean": j.get("weighted_mean"),
                "reason": cut(
                    j.get("reason")
                    or j.get("error")
                    or ("not asked (early_drop)" if j.get("skipped") else "")
                ),
            }
            for j in obj.get("judgements") or []
            if isinstance(j, dict)
        ],
    }


def collect_examples(raw_path: PathLike, n: int = 3, *, max_chars: int = 600) -> dict[str, Any]:
    """A few kept samples (best, middle, worst score) and dropped ones (each reason in turn)."""
    kept: list[tuple[float | None, str]] = []
    dropped: dict[str, list[str]] = {}
    where: dict[str, int] = {}
    with open(raw_path, "rb") as f:
        offset = 0
        for line in f:
            start, offset = offset, offset + len(line)
            try:
                obj = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError):
                continue
            if not isinstance(obj, dict) or not isinstance(obj.get("id"), str):
                continue
            where.setdefault(obj["id"], start)
            if obj.get("passed"):
                score = obj.get("avg_score")
                kept.append((score if isinstance(score, (int, float)) else None, obj["id"]))
            else:
                dropped.setdefault(obj.get("drop_reason") or "unknown", []).append(obj["id"])
    picks, drop_picks = pick_examples(kept, dropped, n)
    return read_examples(
        raw_path, [where[i] for i in picks], [where[i] for i in drop_picks], max_chars=max_chars
    )


def read_examples(
    raw_path: PathLike, kept: Sequence[int], dropped: Sequence[int], *, max_chars: int = 600
) -> dict[str, Any]:
    """The example records at these byte offsets of the raw file, cut to ``max_chars``."""
    with open(raw_path, "rb") as f:

        def read(at: int) -> dict[str, Any]:
            f.seek(at)
            return _example(json.loads(f.readline()), max_chars)

        return {"kept": [read(o) for o in kept], "dropped": [read(o) for o in dropped]}


def _write_text_atomic(path: Path, text: str) -> None:
    """Write UTF-8 text via ``name.tmp`` + ``os.replace`` so a reader never sees half a file."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_bytes(text.encode("utf-8", "replace"))
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None


# What report.html shows of a calibration (metadata.json keeps the whole of it).
_CALIBRATION_KEYS = (
    "counts",
    "warnings",
    "floor_dimension",
    "other_floors",
    "current",
    "best",
    "judges",
    "defects",
    "labels_file",
    "at",
)


def calibration_view(calibration: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The part of ``metadata["calibration"]`` the report shows (None when none was run)."""
    if not calibration:
        return None
    return {k: calibration[k] for k in _CALIBRATION_KEYS if k in calibration}


def rewrite_report_page(out_dir: PathLike, report: Mapping[str, Any], n_examples: int = 3) -> None:
    """Render ``report.html`` again from a recorded report dict (``sft-distill calibrate``).

    Raises:
        InputError: the raw file is missing or unreadable.
        OutputError: report.html cannot be written.
    """
    out = Path(out_dir)
    examples = collect_examples(out / RAW_FILE, n_examples)
    _write_text_atomic(out / REPORT_FILE, render_html(report, examples))


def write_report(
    out_dir: PathLike,
    metadata: Mapping[str, Any],
    *,
    latencies: Mapping[str, Sequence[float]] | None = None,
    prices: Prices | None = None,
    n_examples: int = 3,
    builder: ReportBuilder | None = None,
    example_offsets: tuple[Sequence[int], Sequence[int]] | None = None,
) -> dict[str, Any]:
    """Write ``report.html`` for the run in ``out_dir`` and return the report dict.

    The figures come from ``builder`` when the caller gathered them while the run went (the
    pipeline), else from a pass over ``out_dir/generated_raw.jsonl``; the examples are read at
    ``example_offsets`` (kept, dropped) of that file, else picked by scanning it.

    Raises:
        InputError: the raw file is missing or unreadable.
        OutputError: report.html cannot be written.
    """
    out = Path(out_dir)
    raw = out / RAW_FILE
    if builder is None:
        report = compute_report(raw, metadata, latencies=latencies, prices=prices)
    else:
        report = builder.report(metadata, latencies=latencies, prices=prices)
    if example_offsets is None:
        examples = collect_examples(raw, n_examples)
    else:
        examples = read_examples(raw, *example_offsets)
    _write_text_atomic(out / REPORT_FILE, render_html(report, examples))
    return report
