"""Pydantic models that cross module boundaries: Slice -> Chunk -> Sample -> ScoredSample."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, model_serializer

from .errors import LLMError

# A path as users give it: a string or any os.PathLike.
PathLike = str | os.PathLike[str]


class Slice(BaseModel):
    """One knowledge slice read from the input JSONL."""

    model_config = ConfigDict(frozen=True)

    id: str
    content: str
    metadata: dict[str, Any] = Field(default_factory=dict)
    line: int | None = Field(None, description="1-based input line, for messages")


class Chunk(BaseModel):
    """A part of a slice small enough for one teacher request."""

    model_config = ConfigDict(frozen=True)

    slice_id: str
    index: int = Field(ge=0)
    total: int = Field(ge=1)
    text: str
    n_samples: int = Field(ge=1, description="this chunk's share of samples_per_slice")
    metadata: dict[str, Any] = Field(default_factory=dict)
    # Where the chunk sits, shown to the teacher (sources.headings): the slice's title and the
    # headings above the chunk's start, outermost first.
    title: str | None = None
    heading_path: list[str] = Field(default_factory=list)
    start: int = Field(0, ge=0, description="offset of the chunk in its slice's content")


class Sample(BaseModel):
    """One instruction/response pair made by the teacher."""

    id: str
    slice_id: str
    chunk_index: int = 0
    instruction: str
    input: str = ""
    output: str
    reasoning: str | None = None
    teacher_model: str = ""
    prompt_version: str = ""
    source_kind: str = "slices"
    reference_output: str | None = Field(
        None, description="an answer the input already had (distill mode), kept for comparison"
    )
    annotations: dict[str, Any] = Field(
        default_factory=dict, description="facts recorded by gates and modes (exec_pass, ...)"
    )
    # Verbatim quotes of the chunk the teacher says the answer rests on (the evidence gate
    # checks them). Kept in generated_raw.jsonl, in the training rows only with include_evidence.
    evidence: list[str] = Field(default_factory=list)
    # The teacher's plan for the question (fact, definition, condition, procedure, calculation,
    # case, comparison, reasoning) and its difficulty (easy, medium, hard), when it gave them.
    question_type: str | None = None
    difficulty: str | None = None
    # Provenance: the slice's title and the headings above the chunk (sources.headings).
    source_title: str | None = None
    heading_path: list[str] = Field(default_factory=list)
    # The source articles (第X条, Article N) the sample cites or quotes: article coverage.
    articles: list[str] = Field(default_factory=list)
    # Where the text came from and under which licence (a slice's metadata.source and
    # metadata.license): carried into every output row's provenance and the manifest.
    license: str | None = None
    source: str | None = None
    # The chunk text the sample came from: the evaluator judges accuracy against it.
    # Not written to the outputs (it would repeat the slice once per sample).
    source_text: str = Field("", exclude=True, repr=False)


# Metadata keys naming a slice's licence (either spelling) and its source.
LICENSE_KEYS = ("license", "licence")


SOURCE_KEY = "source"


def _plain_text(value: Any) -> str | None:
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return None


def origin_of(metadata: Mapping[str, Any] | None) -> dict[str, str | None]:
    """``{"license", "source"}`` of a slice or record from its metadata (None when absent)."""
    meta = metadata or {}
    license_ = next((v for k in LICENSE_KEYS if (v := _plain_text(meta.get(k)))), None)
    return {"license": license_, "source": _plain_text(meta.get(SOURCE_KEY))}


class Judgement(BaseModel):
    """One evaluator's scores for one sample (or its failure)."""

    evaluator: str
    model: str
    scores: dict[str, float] = Field(default_factory=dict)
    weighted_mean: float | None = None
    reason: str | None = None
    error: str | None = None
    # The judge's claim checks (eval-v2): {"claim", "verdict", "evidence"?}, verdict one of
    # supported, contradicted, not_in_source. Kept in generated_raw.jsonl for review.
    claims: list[dict[str, str]] = Field(default_factory=list)
    # Not asked (``early_drop``): the judges before it had already voted the sample down, so no
    # vote of this one could carry it. No scores, no error; refilter knows it is missing.
    skipped: bool = False

    @model_serializer(mode="wrap")
    def _dump(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data = handler(self)
        if not self.skipped:
            data.pop("skipped", None)  # written only when true: raw files keep their shape
        return data

    @property
    def ok(self) -> bool:
        return self.error is None and self.weighted_mean is not None


class ScoredSample(Sample):
    """A sample with every evaluator's judgement and the filter's decision."""

    judgements: list[Judgement] = Field(default_factory=list)
    avg_score: float | None = None
    votes: int = 0
    passed: bool = False
    drop_reason: str | None = None
    drop_detail: str | None = None
    duplicate_of: str | None = None

    @property
    def text_for_dedup(self) -> str:
        return f"{self.instruction}\n{self.input}\n{self.output}"


class Failure(BaseModel):
    """A unit of work that failed for good (after retries): written to failures.jsonl."""

    kind: str = Field(description="generation | evaluation | input | endpoint | ...")
    slice_id: str | None = None
    sample_id: str | None = None
    endpoint: str | None = None
    model: str | None = None
    status: int | None = None
    reason: str
    attempts: int = 0
    cause: str | None = Field(
        None, description="context_overflow: the prompt did not fit; a rerun alone will not help"
    )
    detail: str | None = Field(
        None, description="the server's full text (e.g. a traceback) or the unusable reply, cut"
    )

    @classmethod
    def from_error(
        cls,
        exc: LLMError,
        kind: str,
        *,
        slice_id: str | None = None,
        sample_id: str | None = None,
        reason: str | None = None,
    ) -> Failure:
        """The record of a unit of work that ``exc`` failed for good (endpoint, status, cause)."""
        return cls(
            kind=kind,
            slice_id=slice_id,
            sample_id=sample_id,
            endpoint=exc.endpoint,
            model=exc.model,
            status=exc.status,
            reason=str(exc) if reason is None else reason,
            attempts=exc.attempts,
            cause=exc.cause,
            detail=exc.detail,
        )


class Usage(BaseModel):
    """Calls and tokens for one endpoint."""

    model: str
    calls: int = 0
    cached: int = 0
    failed_calls: int = 0
    retries: int = Field(0, description="attempts repeated after a transport or server error")
    reasks: int = Field(0, description="attempts that re-asked after an unusable reply")
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_prompt_tokens: int = Field(
        0, description="prompt tokens the server took from its prefix cache (part of prompt_tokens)"
    )
    reasoning_tokens: int = Field(0, description="thinking tokens (part of completion_tokens)")
    batch_calls: int = Field(0, description="replies that came through a Batch API (part of calls)")
    batch_prompt_tokens: int = Field(0, description="their prompt tokens (part of prompt_tokens)")
    batch_completion_tokens: int = Field(0, description="their completion tokens")
    batch_cached_prompt_tokens: int = Field(0, description="their cached prompt tokens")
    structured_output: str | None = Field(
        None, description="the structured-output form replies were asked in (None: not asked)"
    )
    response_format_rejections: int = Field(
        0, description="forms the server rejected before one was taken (structured_output auto)"
    )
    latency_s_total: float = 0.0
    peak_in_flight: int = 0
    concurrency_limit: float = 0.0
    limit_decreases: int = 0


class StageCounts(BaseModel):
    """The funnel and every drop reason, assembled from the stages that count them.

    The source counts lines, bad lines, units, requests and samples; the judging stage the
    samples judged; the final pass what passed, survived dedup and was written.
    """

    lines_read: int = 0
    bad_lines: int = 0
    bad_line_reasons: dict[str, int] = Field(default_factory=dict)
    duplicate_slices: int = 0
    slices: int = 0
    chunks: int = 0
    generation_failed_chunks: int = 0
    generation_unparsable_items: int = 0
    # two-stage generation: questions dropped before any answer was asked, by reason
    questions_dropped: dict[str, int] = Field(default_factory=dict)
    samples_generated: int = 0
    samples_evaluated: int = 0
    evaluation_failures: int = 0
    judgements_skipped: int = 0
    passed_thresholds: int = 0
    after_dedup: int = 0
    train: int = 0
    val: int = 0
    dropped: dict[str, int] = Field(default_factory=dict)

    @classmethod
    def assemble(cls, *stages: Any) -> StageCounts:
        """The funnel from each stage's own counters (dataclasses or mappings; later win)."""
        fields: dict[str, Any] = {}
        for stage in stages:
            if isinstance(stage, BaseModel):
                stage = stage.model_dump()
            fields.update(stage if isinstance(stage, Mapping) else dataclasses.asdict(stage))
        return cls(**{k: v for k, v in fields.items() if k in cls.model_fields})
