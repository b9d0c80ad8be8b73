"""Builders for hand-made scored samples and finished-run directories (raw + metadata.json)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from sft_distill.config.models import DIMENSIONS, DistillConfig
from sft_distill.models import Judgement, ScoredSample
from sft_distill.outputs.writers import JsonlWriter
from sft_distill.selection.thresholds import apply_thresholds


def judgement(
    evaluator: str, score: float | Mapping[str, float] | None, *, model: str | None = None
) -> Judgement:
    """An ok judgement with every dimension at ``score`` (or the given dict); None = failed."""
    model = model or f"{evaluator}-model"
    if score is None:
        return Judgement(evaluator=evaluator, model=model, error="HTTP 500 after 3 attempts")
    scores = dict(score) if isinstance(score, Mapping) else dict.fromkeys(DIMENSIONS, score)
    mean = sum(scores.values()) / len(scores)
    return Judgement(evaluator=evaluator, model=model, scores=scores, weighted_mean=mean)


def scored(
    sid: str,
    slice_id: str = "s1",
    scores: Iterable[float | Mapping[str, float] | None] = (8.0, 8.0),
    *,
    instruction: str | None = None,
    output: str | None = None,
    input: str = "",
    reasoning: str | None = None,
    chunk_index: int = 0,
    threshold: float = 7.0,
    min_votes: int = 2,
) -> ScoredSample:
    """A sample judged by evaluators ``e0, e1, …`` and decided at ``threshold``/``min_votes``."""
    judgements = [judgement(f"e{i}", s) for i, s in enumerate(scores)]
    sample = ScoredSample(
        id=sid,
        slice_id=slice_id,
        chunk_index=chunk_index,
        instruction=instruction or f"What does clause {sid} say?",
        input=input,
        output=output or f"Clause {sid} says something specific about topic {sid}.",
        reasoning=reasoning,
        teacher_model="teacher-m",
        prompt_version="gen-v1",
        judgements=judgements,
    )
    return apply_thresholds(sample, min_score_threshold=threshold, min_votes=min_votes)


def write_raw(path: Path, samples: Iterable[ScoredSample]) -> Path:
    """Write samples as generated_raw.jsonl lines."""
    with JsonlWriter(path) as w:
        for s in samples:
            w.write(s.model_dump(mode="json"))
    return path


def write_run(
    out: Path,
    samples: list[ScoredSample],
    config: DistillConfig,
    *,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """A finished-run directory: generated_raw.jsonl and a metadata.json like the pipeline's."""
    out.mkdir(parents=True, exist_ok=True)
    write_raw(out / "generated_raw.jsonl", samples)
    passed = sum(1 for s in samples if s.passed)
    metadata: dict[str, Any] = {
        "package": "sft_distill",
        "version": "0.1.0",
        "simulator": False,
        "input": {"path": str(out / "missing-input.jsonl"), "lines": 1},
        "prompt_versions": {"generation": "gen-v1", "evaluation": "eval-v1"},
        "counts": {
            "lines_read": len({s.slice_id for s in samples}),
            "slices": len({s.slice_id for s in samples}),
            "chunks": len({(s.slice_id, s.chunk_index) for s in samples}),
            "samples_generated": len(samples),
            "samples_evaluated": len(samples),
            "passed_thresholds": passed,
            "after_dedup": passed,
            "train": 0,
            "val": 0,
            "dropped": {},
        },
        "usage": {
            "generator": {
                "model": config.generator.model,
                "calls": 4,
                "prompt_tokens": 4000,
                "completion_tokens": 1000,
                "latency_s_total": 8.0,
                "busy_s": 5.0,
            },
            **{
                name: {
                    "model": ep.model,
                    "calls": len(samples),
                    "prompt_tokens": 2000,
                    "completion_tokens": 100,
                    "latency_s_total": 2.0,
                }
                for name, ep in config.evaluators.items()
            },
        },
        "timings_s": {"generate_and_evaluate": 10.0, "dedup_and_write": 0.5, "total": 12.0},
        "config": config.public_dict(),
    }
    metadata.update(extra or {})
    (out / "metadata.json").write_text(json.dumps(metadata, ensure_ascii=False), encoding="utf-8")
    return out
