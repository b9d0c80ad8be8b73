"""Structured replies and their cost: one reply model and one strict JSON schema per request kind,
how each server dialect is asked for it, thinking switches, and what a reply's usage costs.

Pure functions and small value types; the LLM client wires them in. Facts about servers come from
``../shared/wire.md`` ("wire.md" below) unless another source is named beside them.

Reply models are lenient: old cached replies and unconstrained servers still parse (a bare
top-level array, a flat judge object, a plain-text answer). The schemas sent to servers are
strict (every object closed, every property required), so constrained decoding leaves no choice.
"""

from __future__ import annotations

import copy
import functools
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Annotated, Any, ClassVar, Literal, cast, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
    create_model,
    field_validator,
    model_validator,
)
from pydantic.json_schema import SkipJsonSchema

from ..config.defaults import DIMENSIONS, MEAN_DIMENSIONS

__all__ = [
    "AnswerReply",
    "ClaimCheck",
    "ClaimsReply",
    "Dialect",
    "DialectLadder",
    "GenerationReply",
    "JudgeBatchReply",
    "JudgeReply",
    "JudgeResult",
    "PriceCard",
    "QuestionsReply",
    "RephrasingsReply",
    "ReplyKind",
    "SampleItem",
    "StructuredOutputSetting",
    "ThinkingSettings",
    "ThinkingStyle",
    "TopicsReply",
    "UsageCounts",
    "billed_input_equivalents",
    "cost",
    "first_dialect",
    "is_response_format_error",
    "merge_payload",
    "next_dialect",
    "parse_usage",
    "prompt_suffix_for",
    "reply_model",
    "response_format_for",
    "schema_for",
    "thinking_payload",
    "unwrap",
    "usage_from_body",
    "vllm_structured_outputs",
]


class ReplyKind(str, Enum):
    """The kinds of request the package makes, each with its own reply model and schema."""

    GENERATION = "generation"  # generator.parse_samples: samples from a chunk
    JUDGE = "judge"  # evaluator.parse_scores: one sample's scores
    JUDGE_BATCH = "judge_batch"  # several samples' scores in one request, keyed by sample id
    TOPICS = "topics"  # topics: sub-topics of a node
    QUESTIONS = "questions"  # topics: questions at a leaf
    ANSWER = "answer"  # topics / instruction_sets: one answer (plain text today)
    REPHRASINGS = "rephrasings"  # augment.parse_rephrasings
    CLAIMS = "claims"  # claim checks: an answer's claims against its source


# ---------------------------------------------------------------------------------------------
# Reply models
# ---------------------------------------------------------------------------------------------

# The generation plan's types (sources.plan.QUESTION_TYPES) first, then older labels still read.
QuestionType = Literal[
    "fact", "definition", "condition", "procedure", "calculation", "case", "comparison",
    "reasoning", "concept", "application", "scenario", "other",
]  # fmt: skip
QUESTION_TYPES: tuple[str, ...] = get_args(QuestionType)
Difficulty = Literal["easy", "medium", "hard"]
DIFFICULTIES: tuple[str, ...] = get_args(Difficulty)
Verdict = Literal["supported", "contradicted", "not_in_source"]
VERDICTS: tuple[str, ...] = get_args(Verdict)

# Keys older prompts and free-running models use for a sample's question and answer (the same
# order as generator.parse_samples, so a cached reply keeps the text it had).
_INSTRUCTION_KEYS = ("instruction", "question", "prompt", "query")
_OUTPUT_KEYS = ("output", "answer", "response")
# Keys a list item's text sits under when a model answers with objects instead of strings
# (sources.topics and sources.augment read them from here too).
TOPIC_ITEM_KEYS = (
    "name",
    "topic",
    "title",
    "question",
    "q",
    "text",
    "label",
    "subtopic",
    "sub_topic",
    "tag",
    "名称",
    "主题",
    "话题",
    "子话题",
    "子主题",
    "标签",
    "标题",
    "问题",
)
REPHRASE_KEYS = ("instruction", "question", "rephrasing", "text", "prompt")
_VERDICT_SYNONYMS = {
    "yes": "supported",
    "true": "supported",
    "support": "supported",
    "no": "contradicted",
    "false": "contradicted",
    "contradiction": "contradicted",
    "unsupported": "not_in_source",
    "not_supported": "not_in_source",
    "not found": "not_in_source",
    "not_found": "not_in_source",  # the claims kind's first spelling
    "not in source": "not_in_source",
    "not_in_document": "not_in_source",
    "unknown": "not_in_source",
}


def _first_text(item: Mapping[str, Any], keys: tuple[str, ...]) -> str:
    """The first non-blank string among ``keys`` of ``item``, stripped ('' when none)."""
    for k in keys:
        v = item.get(k)
        if isinstance(v, str) and v.strip():
            return v.strip()
    return ""


def _label(value: Any, allowed: tuple[str, ...], fallback: str | None) -> str | None:
    """A label normalised to one of ``allowed`` (case, spaces, hyphens), else ``fallback``."""
    if not isinstance(value, str) or not value.strip():
        return None
    key = value.strip().lower().replace("-", "_").replace(" ", "_")
    return key if key in allowed else fallback


class _Reply(BaseModel):
    """A reply whose root is one object with one wrapper key (json_object grammars need that)."""

    model_config = ConfigDict(extra="ignore")
    wrapper: ClassVar[str]

    @classmethod
    def _legacy(cls, data: Any) -> Any:
        """The wrapped shape of an older or free-form reply (a bare array by default)."""
        if isinstance(data, list):
            return {cls.wrapper: data}
        if isinstance(data, dict) and cls.wrapper not in data:
            lists = [v for v in data.values() if isinstance(v, list)]
            if len(data) == 1 and len(lists) == 1:
                # {"items": [...]}: a json_object reply that chose its own key
                return {cls.wrapper: lists[0]}
        return data

    @classmethod
    def unwrap(cls, data: Any, **context: Any) -> Any:
        """The reply in ``data`` (decoded JSON, or text for answers), legacy shapes included.

        Raises:
            ValueError: not a usable reply; the message says which field and why, in one line.
        """
        try:
            return cls.model_validate(cls._legacy(data), context=context)
        except ValidationError as exc:
            raise ValueError(_describe(exc)) from None


def _describe(exc: ValidationError) -> str:
    """A pydantic error in one line, without its "Value error, " prefixes."""
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(p) for p in err["loc"])
        msg = str(err["msg"]).removeprefix("Value error, ")
        parts.append(f"{loc}: {msg}" if loc else msg)
    more = len(exc.errors()) - len(parts)
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")


class SampleItem(BaseModel):
    """One instruction/response pair from the teacher.

    Field order is the order a constrained model writes them in: the type and difficulty first
    (a plan that varies the questions), and the quoted evidence before the answer it grounds
    (RAFT, quality.md "Ground answers in the source").
    """

    model_config = ConfigDict(extra="ignore")

    question_type: Annotated[
        QuestionType | None,
        WithJsonSchema({"type": "string", "enum": list(QUESTION_TYPES)}),
    ] = None
    difficulty: Annotated[
        Difficulty | None, WithJsonSchema({"type": "string", "enum": list(DIFFICULTIES)})
    ] = None
    instruction: str = Field(min_length=1, description="the question or task, self-contained")
    input: str = Field("", description="extra context the instruction needs, or empty")
    evidence: list[str] = Field(
        default_factory=list, description="sentences quoted verbatim from the document"
    )
    output: str = Field(min_length=1, description="the answer")
    # Legacy replies sometimes carried the item's reasoning; it stays out of the schema.
    reasoning: SkipJsonSchema[str | None] = None

    @model_validator(mode="before")
    @classmethod
    def _legacy_keys(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        out = dict(data)
        out["instruction"] = _first_text(data, _INSTRUCTION_KEYS)
        out["output"] = _first_text(data, _OUTPUT_KEYS)
        inp = data.get("input")
        out["input"] = inp.strip() if isinstance(inp, str) else ""
        reasoning = data.get("reasoning") or data.get("reasoning_content")
        out["reasoning"] = reasoning if isinstance(reasoning, str) else None
        evidence = data.get("evidence")
        if isinstance(evidence, str):
            evidence = [evidence]
        if not isinstance(evidence, list):
            evidence = []
        out["evidence"] = [e.strip() for e in evidence if isinstance(e, str) and e.strip()]
        out["question_type"] = _label(data.get("question_type"), QUESTION_TYPES, "other")
        out["difficulty"] = _label(data.get("difficulty"), DIFFICULTIES, None)
        return out


class GenerationReply(_Reply):
    """The teacher's samples for one chunk: ``{"samples": [...]}``.

    Items without both an instruction and an output are skipped and counted (``skipped``), as
    generator.parse_samples does; a reply with none left is an error (re-asked).
    """

    wrapper: ClassVar[str] = "samples"
    samples: list[SampleItem]
    _skipped: int = PrivateAttr(0)

    @property
    def skipped(self) -> int:
        """Items of the reply that were not usable samples."""
        return self._skipped

    @classmethod
    def _legacy(cls, data: Any) -> Any:
        if (
            isinstance(data, dict)
            and cls.wrapper not in data
            and _first_text(data, _INSTRUCTION_KEYS)
        ):
            return {cls.wrapper: [data]}  # one lone sample object
        return super()._legacy(data)

    @model_validator(mode="wrap")
    @classmethod
    def _keep_usable(cls, data: Any, handler: Any) -> GenerationReply:
        items = data.get(cls.wrapper) if isinstance(data, dict) else None
        if not isinstance(items, list):
            return cast(GenerationReply, handler(data))
        usable = []
        for item in items:
            try:
                usable.append(SampleItem.model_validate(item))
            except ValidationError:
                continue
        if not usable:
            raise ValueError(
                f"no sample with both instruction and output among {len(items)} item(s)"
            )
        reply = cast(GenerationReply, handler({**data, cls.wrapper: usable}))
        reply._skipped = len(items) - len(usable)
        return reply


def _score_value(value: Any) -> tuple[float, bool] | None:
    """(number, already out of 10) from 8, "8", "8/10", "4.5/5", "8.5分" or {"score": 8}.

    The same reading as evaluator._raw_score, so a cached judge reply keeps its scores.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return (float(value), False) if math.isfinite(value) else None
    if isinstance(value, str):
        ratio = re.search(r"(-?\d+(?:\.\d+)?)\s*/\s*(\d+(?:\.\d+)?)", value)
        if ratio and float(ratio.group(2)) > 0:
            return 10.0 * float(ratio.group(1)) / float(ratio.group(2)), True
        m = re.search(r"-?\d+(?:\.\d+)?", value)
        return (float(m.group()), False) if m else None
    if isinstance(value, dict):
        return _score_value(value.get("score"))
    return None


def _scores_0_10(raw: Mapping[str, Any]) -> dict[str, float]:
    """Dimension scores on 0-10 from a judge's values (a 0-100 scale is scaled down).

    Raises:
        ValueError: a plain score below 0 or above 100.
    """
    lowered = {str(k).strip().lower(): v for k, v in raw.items()}
    found = {d: r for d in DIMENSIONS if (r := _score_value(lowered.get(d))) is not None}
    plain = [x for x, scaled in found.values() if not scaled]
    if any(x < 0 or x > 100 for x in plain):
        raise ValueError("scores must be between 0 and 10")
    # As evaluator.parse_scores: plain numbers above 10 (up to 100) mean a 0-100 scale.
    factor = 0.1 if any(x > 10 for x in plain) else 1.0
    return {d: min(10.0, max(0.0, x if s else x * factor)) for d, (x, s) in found.items()}


_Score = Annotated[
    float | None,
    Field(ge=0.0, le=10.0),
    # OpenAI strict mode takes minimum/maximum; llama-cpp-python accepts but does not enforce
    # them (wire.md: a judge replied "accuracy": 2017), so the model checks the range again.
    WithJsonSchema({"type": "integer", "minimum": 0, "maximum": 10}),
]
_SCORE_FIELDS: dict[str, Any] = {d: (_Score, None) for d in DIMENSIONS}
# One field per dimension, in the rubric's order (config.DIMENSIONS is the one list of them).
Scores: type[BaseModel] = create_model(
    "Scores", __config__=ConfigDict(extra="ignore"), **_SCORE_FIELDS
)


# Nullable for old replies that had no reason; a string in the schema sent to servers.
_Text = Annotated[str | None, WithJsonSchema({"type": "string"})]


def _flat_scores(data: Any) -> Any:
    """A judge object with its scores at the top level (eval-v1) moved under ``scores``."""
    if isinstance(data, dict) and not isinstance(data.get("scores"), Mapping):
        keep = ("id", "claims", "analysis", "reason")
        return {**{k: v for k, v in data.items() if k in keep}, "scores": data}
    return data


def _read_scores(cls: type[BaseModel], value: Any) -> Any:
    """Scores as a judge wrote them, read onto 0-10 (field validator of ``scores``)."""
    return _scores_0_10(value) if isinstance(value, Mapping) else value


def _as_text(cls: type[BaseModel], value: Any) -> Any:
    """A text field a judge filled with something else (a number, a list): its str()."""
    return value if value is None or isinstance(value, str) else str(value)


def _check_required(self: Any, info: ValidationInfo) -> Any:
    """Every dimension the caller needs has a score (context ``required``; default the five of
    eval-v1, so an old flat reply still reads: the judging stage names what it needs)."""
    required = (info.context or {}).get("required", MEAN_DIMENSIONS)
    missing = [d for d in required if getattr(self.scores, d, None) is None]
    if missing:
        raise ValueError(f"no score for {', '.join(missing)}")
    return self


class ClaimCheck(BaseModel):
    """One claim of an answer, checked against the source (RAGAS faithfulness, quality.md)."""

    model_config = ConfigDict(extra="ignore")

    claim: str = Field(min_length=1, description="one factual statement made by the answer")
    evidence: str = Field("", description="the sentence of the document that decides it, quoted")
    verdict: Annotated[Verdict, WithJsonSchema({"type": "string", "enum": list(VERDICTS)})]

    @field_validator("claim", "evidence", mode="before")
    @classmethod
    def _text(cls, value: Any) -> Any:
        if value is None:
            return ""
        return value.strip() if isinstance(value, str) else str(value)

    @field_validator("verdict", mode="before")
    @classmethod
    def _verdict(cls, value: Any) -> Any:
        if isinstance(value, bool):
            return "supported" if value else "contradicted"
        if isinstance(value, str):
            key = value.strip().lower()
            return _VERDICT_SYNONYMS.get(key, key.replace(" ", "_").replace("-", "_"))
        return value


def _usable_claims(cls: type[BaseModel], value: Any) -> Any:
    """A judge's claim checks, keeping those that read (a bad one is noise, not a bad reply)."""
    if value is None:
        return []
    if not isinstance(value, list):
        return value
    usable = []
    for item in value:
        try:
            usable.append(ClaimCheck.model_validate(item))
        except ValidationError:
            continue
    return usable


class JudgeReply(_Reply):
    """One judge's verdict on one sample: claims and reasoning first, scores last (G-Eval,
    RAGAS faithfulness; quality.md "Judge well").

    Legacy shapes: the flat ``{"accuracy": 8, ..., "reason": "..."}`` of the eval-v1 prompt and
    ``[{...}]``; scores are read as evaluator.parse_scores read them. ``unwrap(data,
    required=(...))`` names the dimensions that must be scored (default the five of eval-v1).
    """

    wrapper: ClassVar[str] = "scores"
    claims: list[ClaimCheck] = Field(
        default_factory=list, description="the answer's claims, each checked against the document"
    )
    analysis: str = Field("", description="check the answer against the document, step by step")
    reason: _Text = Field(None, description="the verdict in one sentence")
    scores: Scores  # type: ignore[valid-type]

    _in_scores = field_validator("scores", mode="before")(_read_scores)
    _in_text = field_validator("analysis", "reason", mode="before")(_as_text)
    _in_claims = field_validator("claims", mode="before")(_usable_claims)
    _complete = model_validator(mode="after")(_check_required)

    @classmethod
    def _legacy(cls, data: Any) -> Any:
        if isinstance(data, list) and data and isinstance(data[0], dict):
            data = data[0]
        return _flat_scores(data)

    @field_validator("analysis", mode="after")
    @classmethod
    def _no_null(cls, value: str | None) -> str:
        return value or ""

    def score_dict(self) -> dict[str, float]:
        """The scores given, by dimension."""
        scores = cast(BaseModel, self.scores).model_dump()
        return {k: v for k, v in scores.items() if v is not None}


class JudgeResult(BaseModel):
    """One sample's verdict inside a batched judging reply (id first, scores last)."""

    model_config = ConfigDict(extra="ignore")

    id: str = Field(min_length=1, description="the sample id given in the request")
    claims: list[ClaimCheck] = Field(
        default_factory=list, description="the answer's claims, each checked against the document"
    )
    analysis: str = Field("", description="check the answer against the document, step by step")
    reason: _Text = Field(None, description="the verdict in one sentence")
    scores: Scores  # type: ignore[valid-type]

    _in_scores = field_validator("scores", mode="before")(_read_scores)
    _in_text = field_validator("id", "analysis", "reason", mode="before")(_as_text)
    _in_claims = field_validator("claims", mode="before")(_usable_claims)
    _complete = model_validator(mode="after")(_check_required)

    @model_validator(mode="before")
    @classmethod
    def _flat(cls, data: Any) -> Any:
        return _flat_scores(data)

    score_dict = JudgeReply.score_dict


class JudgeBatchReply(_Reply):
    """Several samples judged in one request: ``{"results": [{"id": ..., "scores": ...}]}``.

    An entry that does not read (no id, a required score missing or out of range) is left out
    and counted in ``skipped``: the judging stage re-asks just those samples. A reply with
    entries but none usable is not a reply.
    """

    wrapper: ClassVar[str] = "results"
    results: list[JudgeResult]
    _skipped: int = PrivateAttr(0)

    @model_validator(mode="wrap")
    @classmethod
    def _keep_usable(cls, data: Any, handler: Any, info: ValidationInfo) -> JudgeBatchReply:
        items = data.get(cls.wrapper) if isinstance(data, dict) else None
        if not isinstance(items, list):
            return cast(JudgeBatchReply, handler(data))
        usable = []
        for item in items:
            try:
                JudgeResult.model_validate(item, context=info.context)
            except ValidationError:
                continue
            usable.append(item)
        if items and not usable:
            return cast(JudgeBatchReply, handler(data))  # raises, naming the entries' errors
        reply = cast(JudgeBatchReply, handler({**data, cls.wrapper: usable}))
        reply._skipped = len(items) - len(usable)
        return reply

    @property
    def skipped(self) -> int:
        """Entries left out because they did not read."""
        return self._skipped

    @model_validator(mode="after")
    def _unique_ids(self) -> JudgeBatchReply:
        ids = [r.id for r in self.results]
        dup = sorted({i for i in ids if ids.count(i) > 1})
        if dup:
            raise ValueError(f"sample id(s) judged twice: {', '.join(dup)}")
        return self

    def by_id(self) -> dict[str, JudgeResult]:
        """The results keyed by sample id."""
        return {r.id: r for r in self.results}


class _StringListReply(_Reply):
    """A list of short texts; items may be strings or objects naming the text under a key."""

    item_keys: ClassVar[tuple[str, ...]] = TOPIC_ITEM_KEYS
    allow_empty: ClassVar[bool] = True

    @model_validator(mode="before")
    @classmethod
    def _texts(cls, data: Any) -> Any:
        items = data.get(cls.wrapper) if isinstance(data, dict) else None
        if not isinstance(items, list):
            return data
        texts = [t for t in (cls._item_text(i) for i in items) if t]
        if items and not texts:
            first = json.dumps(items[0], ensure_ascii=False)[:80]
            raise ValueError(f"none of the {len(items)} item(s) is usable text (first: {first})")
        if not texts and not cls.allow_empty:
            raise ValueError(f"the reply lists no {cls.wrapper}")
        return {**data, cls.wrapper: texts}

    @classmethod
    def _item_text(cls, item: Any) -> str:
        if isinstance(item, str):
            return item.strip()
        if isinstance(item, dict):
            text = _first_text(item, cls.item_keys)
            if text:
                return text
            strings = [v for v in item.values() if isinstance(v, str) and v.strip()]
            return strings[0].strip() if len(strings) == 1 else ""
        return ""

    def texts(self) -> list[str]:
        """The items, in order."""
        return list(getattr(self, self.wrapper))


class TopicsReply(_StringListReply):
    """Sub-topics of a topic-tree node: ``{"topics": [...]}``."""

    wrapper: ClassVar[str] = "topics"
    topics: list[str] = Field(description="short sub-topic names, no numbering")


class QuestionsReply(_StringListReply):
    """Questions about a leaf topic: ``{"questions": [...]}``."""

    wrapper: ClassVar[str] = "questions"
    questions: list[str] = Field(description="self-contained questions")


class RephrasingsReply(_StringListReply):
    """Rewordings of one instruction: ``{"rephrasings": [...]}`` (at least one)."""

    wrapper: ClassVar[str] = "rephrasings"
    item_keys: ClassVar[tuple[str, ...]] = REPHRASE_KEYS
    allow_empty: ClassVar[bool] = False
    rephrasings: list[str] = Field(description="the instruction reworded, same meaning")


class AnswerReply(_Reply):
    """One answer: ``{"answer": "..."}``; today's plain-text replies are accepted as they are."""

    wrapper: ClassVar[str] = "answer"
    answer: str = Field(min_length=1, description="the answer text")

    @classmethod
    def _legacy(cls, data: Any) -> Any:
        return {cls.wrapper: data} if isinstance(data, str) else data

    @field_validator("answer", mode="before")
    @classmethod
    def _strip(cls, value: Any) -> Any:
        return value.strip() if isinstance(value, str) else value


class ClaimsReply(_Reply):
    """An answer's claims and whether the source supports each: ``{"claims": [...]}``."""

    wrapper: ClassVar[str] = "claims"
    claims: list[ClaimCheck]

    def supported_share(self) -> float | None:
        """Share of claims the source supports (None for an answer with no claims)."""
        if not self.claims:
            return None
        return sum(c.verdict == "supported" for c in self.claims) / len(self.claims)


_MODELS: dict[ReplyKind, type[_Reply]] = {
    ReplyKind.GENERATION: GenerationReply,
    ReplyKind.JUDGE: JudgeReply,
    ReplyKind.JUDGE_BATCH: JudgeBatchReply,
    ReplyKind.TOPICS: TopicsReply,
    ReplyKind.QUESTIONS: QuestionsReply,
    ReplyKind.ANSWER: AnswerReply,
    ReplyKind.REPHRASINGS: RephrasingsReply,
    ReplyKind.CLAIMS: ClaimsReply,
}


def reply_model(kind: ReplyKind | str) -> type[_Reply]:
    """The reply model of a request kind."""
    return _MODELS[ReplyKind(kind)]


def unwrap(kind: ReplyKind | str, data: Any, **context: Any) -> Any:
    """The validated reply of ``kind`` in ``data`` (decoded JSON; text for answers).

    Raises:
        ValueError: not a usable reply of that kind (the client re-asks with this message).
    """
    return reply_model(kind).unwrap(data, **context)


# ---------------------------------------------------------------------------------------------
# Strict JSON schemas
# ---------------------------------------------------------------------------------------------

# What a schema sent to a server may use. OpenAI strict mode rejects an object without
# "additionalProperties": false or with a property missing from "required" (HTTP 400 "Invalid
# schema for response_format ..."); "title"/"default" are noise at best; string lengths and
# patterns are left to validation (llama-cpp-python enforced maxLength, OpenAI strict mode
# does not list minLength/maxLength).
_SCHEMA_KEYWORDS = frozenset(
    {
        "type",
        "properties",
        "required",
        "additionalProperties",
        "items",
        "enum",
        "anyOf",
        "description",
        "minimum",
        "maximum",
    }
)


def _inline(node: Any, defs: Mapping[str, Any]) -> Any:
    """``node`` with every ``$ref`` to ``$defs`` replaced by the definition itself."""
    if isinstance(node, list):
        return [_inline(n, defs) for n in node]
    if not isinstance(node, dict):
        return node
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        return _inline(defs[ref.removeprefix("#/$defs/")], defs)
    return {k: _inline(v, defs) for k, v in node.items() if k != "$defs"}


def _strict(node: Any) -> Any:
    """A pydantic schema made strict: closed objects, all properties required, known keywords."""
    if isinstance(node, list):
        return [_strict(n) for n in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key not in _SCHEMA_KEYWORDS:
            continue
        if key == "properties":
            out[key] = {name: _strict(sub) for name, sub in value.items()}
        elif key in ("items", "anyOf"):
            out[key] = _strict(value)
        else:
            out[key] = value
    if out.get("type") == "object" or "properties" in out:
        # A model's docstring is for readers of this module, not for the model.
        out.pop("description", None)
        out["type"] = "object"
        props = out.setdefault("properties", {})
        out["required"] = list(props)
        out["additionalProperties"] = False
    return out


@functools.cache
def _schema_json(kind: ReplyKind) -> str:
    raw = _MODELS[kind].model_json_schema()
    return json.dumps(_strict(_inline(raw, raw.get("$defs", {}))))


def schema_for(kind: ReplyKind | str) -> dict[str, Any]:
    """The strict JSON schema of a kind's reply (a fresh copy; built once per kind)."""
    schema: dict[str, Any] = json.loads(_schema_json(ReplyKind(kind)))
    return schema


# ---------------------------------------------------------------------------------------------
# Dialects: how a server is asked for structured output
# ---------------------------------------------------------------------------------------------


class Dialect(str, Enum):
    """How structured output is requested, strongest first (the ``auto`` probe order)."""

    # {"type": "json_schema", "json_schema": {"name", "schema", "strict": true}}: OpenAI, vLLM,
    # SGLang, DashScope (wire.md "Structured output").
    JSON_SCHEMA = "json_schema"
    # {"type": "json_object", "schema": {...}}: llama-cpp-python, which answers the OpenAI form
    # with HTTP 500 "Input should be 'text' or 'json_object'" (wire.md).
    JSON_OBJECT_SCHEMA = "json_object_schema"
    # {"type": "json_object"} plus "JSON" and an example in the prompt: DeepSeek (json_object
    # only; the prompt must say "json" and show an example, wire.md), Moonshot (issue 13).
    JSON_OBJECT = "json_object"
    # no response_format: the prompt alone asks for JSON.
    NONE = "none"


_LADDER = (Dialect.JSON_SCHEMA, Dialect.JSON_OBJECT_SCHEMA, Dialect.JSON_OBJECT, Dialect.NONE)
StructuredOutputSetting = Literal[
    "auto", "json_schema", "json_object_schema", "json_object", "none"
]


def next_dialect(dialect: Dialect | str) -> Dialect | None:
    """The dialect to try after ``dialect`` was rejected (None after ``none``)."""
    i = _LADDER.index(Dialect(dialect))
    return _LADDER[i + 1] if i + 1 < len(_LADDER) else None


def first_dialect(setting: StructuredOutputSetting | str) -> Dialect:
    """The dialect an endpoint's ``structured_output`` setting starts with (auto: the top)."""
    return Dialect.JSON_SCHEMA if setting == "auto" else Dialect(setting)


def response_format_for(dialect: Dialect | str, kind: ReplyKind | str) -> dict[str, Any] | None:
    """The ``response_format`` request field for a dialect and kind (None: leave it out)."""
    dialect, kind = Dialect(dialect), ReplyKind(kind)
    if dialect is Dialect.JSON_SCHEMA:
        # wire.md: {"type": "json_schema", "json_schema": {"name", "schema", "strict": true}}.
        # The name must match ^[a-zA-Z0-9_-]{1,64}$ (OpenAI).
        return {
            "type": "json_schema",
            "json_schema": {
                "name": f"{kind.value}_reply",
                "schema": schema_for(kind),
                "strict": True,
            },
        }
    if dialect is Dialect.JSON_OBJECT_SCHEMA:
        return {"type": "json_object", "schema": schema_for(kind)}
    if dialect is Dialect.JSON_OBJECT:
        return {"type": "json_object"}
    return None


def vllm_structured_outputs(kind: ReplyKind | str) -> dict[str, Any]:
    """vLLM's own field for a schema, ``{"structured_outputs": {"json": schema}}`` (extra_body).

    Not part of the ladder: vLLM takes the OpenAI ``json_schema`` form (wire.md), and its old
    ``guided_json`` was removed in v0.12 with ``structured_outputs`` as the replacement. For a
    vLLM-only setup that configures decoding there; never send it with ``response_format``.
    """
    return {"structured_outputs": {"json": schema_for(kind)}}


class DialectLadder:
    """The dialect each (api_base, model) uses; ``auto`` steps down once per rejection.

    In-memory and pure: the client asks ``current`` before a request, calls ``reject`` when a
    reply says the response_format was not understood (``is_response_format_error``) and
    ``confirm`` after the first good reply. A pinned setting (anything but ``auto``) never
    steps down: the user asked for that form.
    """

    def __init__(self, setting: StructuredOutputSetting | str = "auto") -> None:
        self.setting = setting
        self._start = first_dialect(setting)
        self._current: dict[tuple[str, str], Dialect] = {}
        self._confirmed: set[tuple[str, str]] = set()

    def current(self, api_base: str, model: str) -> Dialect:
        """The dialect to send now."""
        return self._current.get((api_base, model), self._start)

    def reject(self, api_base: str, model: str, dialect: Dialect | str) -> Dialect | None:
        """Record that ``dialect`` was rejected; the dialect to use now (None: none left).

        Requests in flight when the first rejection arrives are rejected too; they step down
        only from the dialect they were sent with, so the ladder drops one level, not several.
        """
        key, dialect = (api_base, model), Dialect(dialect)
        now = self.current(api_base, model)
        if self.setting != "auto":
            return None
        if dialect is not now:
            return now  # already stepped down past it
        nxt = next_dialect(dialect)
        if nxt is not None:
            self._current[key] = nxt
        return nxt

    def confirm(self, api_base: str, model: str) -> bool:
        """Record a good reply in the current dialect; True the first time (to log it once)."""
        key = (api_base, model)
        if key in self._confirmed:
            return False
        self._confirmed.add(key)
        return True


# Errors that name the structured-output request (wire.md; sources beside each test fixture):
# llama-cpp-python's 500 "Input should be 'text' or 'json_object'", DeepSeek's 400 "This
# response_format type is unavailable now" and 422 "response_format.type `json_schema` is
# unavailable now", llama.cpp's "Either \"json_schema\" or \"grammar\" can be specified",
# vLLM's "The provided JSON schema contains features not supported by xgrammar" / "Grammar
# error: ...", OpenAI's "Invalid schema for response_format ...".
_RF_STATUSES = frozenset({400, 422, 500})
_RF_RE = re.compile(
    r"response_format|json_schema|json[ -]schema|json_object|grammar|guided_(?:json|decoding)"
    r"|structured[ _-]outputs?",
    re.IGNORECASE,
)
# pydantic error text echoes the offending input, which may hold the whole request (and so the
# word response_format) when the error is about something else: only its locations count.
_INPUT_VALUE_RE = re.compile(r"input_value=.*?, input_type=\w+", re.DOTALL)
_LOC_RE = re.compile(r"""['"]loc['"]\s*:\s*[\(\[]([^\)\]]*)[\)\]]""")


def _error_text(body: Any) -> str:
    """The parts of an error body that describe the error (message, param, code, locations)."""
    if isinstance(body, (bytes, bytearray)):
        body = body.decode("utf-8", "replace")
    if isinstance(body, str):
        text = body
        try:
            body = json.loads(text)
        except ValueError:
            return text  # plain text (DeepSeek's 422) or an HTML page
    if not isinstance(body, dict):
        return ""
    err = body.get("error") or body.get("detail") or body
    if isinstance(err, str):
        return str(err)
    if isinstance(err, list):  # FastAPI's {"detail": [{"loc": [...], "msg": ...}]}
        return " ".join(
            f"{'.'.join(map(str, e.get('loc') or ()))} {e.get('msg', '')}"
            for e in err
            if isinstance(e, dict)
        )
    if not isinstance(err, dict):
        return ""
    parts = [err.get(k) for k in ("message", "msg", "param", "code")]
    return " ".join(str(p) for p in parts if p is not None)


def is_response_format_error(status: int, body: Any) -> bool:
    """Whether an error reply rejects the structured-output form (so step down, don't retry).

    ``body`` is the decoded JSON or the raw text. Only 400, 422 and 500 count, and only when
    the error names response_format, json_schema, json_object, a grammar or structured output;
    a server's generic 500 does not.
    """
    if status not in _RF_STATUSES:
        return False
    text = _INPUT_VALUE_RE.sub("", _error_text(body))
    locs = _LOC_RE.findall(text)
    if locs:
        text = " ".join(locs)
    return bool(_RF_RE.search(text))


# ---------------------------------------------------------------------------------------------
# Prompt suffixes
# ---------------------------------------------------------------------------------------------

_OBJECT_LINE = {
    "en": "Reply with one JSON object only, nothing else, in this form:",
    "zh": "只输出一个 JSON 对象，不要输出其他内容，格式如下：",
}
_SHAPE_LINE = {
    "en": 'Reply with one JSON object; its "{key}" field holds the {what}.',
    "zh": "输出一个 JSON 对象，其中 “{key}” 字段为{what}。",
}
_WHAT = {
    "en": {"answer": "answer text", "scores": "scores (after the analysis)"},
    "zh": {"answer": "回答正文", "scores": "各项评分（写在分析之后）", "list": "列表"},
}


def _example(node: Mapping[str, Any]) -> str:
    """A compact example of a schema with placeholders, never real values (a judge copies
    fixed numbers from an example: quality.md "Judge well")."""
    if "anyOf" in node:
        return _example(next(n for n in node["anyOf"] if n.get("type") != "null"))
    kind = node.get("type")
    if kind == "object":
        fields = ", ".join(
            f"{json.dumps(k)}: {_example(v)}" for k, v in node.get("properties", {}).items()
        )
        return "{" + fields + "}"
    if kind == "array":
        return "[" + _example(node.get("items", {})) + ", ...]"
    if "enum" in node:
        return '"<' + "|".join(map(str, node["enum"])) + '>"'
    if kind in ("integer", "number"):
        return f"<{node.get('minimum', '')}-{node.get('maximum', '')}>"
    return '"..."'


@functools.cache
def _example_of(kind: ReplyKind) -> str:
    return _example(schema_for(kind))


def prompt_suffix_for(dialect: Dialect | str, kind: ReplyKind | str, lang: str = "en") -> str:
    """A line to append to a request's prompt so it agrees with the dialect ('' for none).

    Both ``json_object`` dialects get the word "JSON" (DeepSeek and DashScope reject
    json_object without it, OpenAI too) and a compact example of the shape; ``json_schema``,
    whose grammar fixes the shape, gets one line naming the wrapper key. The same for every
    request of a kind, so it belongs in the shared prefix of a prompt (prompt caching).
    """
    dialect, kind = Dialect(dialect), ReplyKind(kind)
    lang = "zh" if lang == "zh" else "en"
    if dialect is Dialect.NONE:
        return ""
    if dialect in (Dialect.JSON_OBJECT, Dialect.JSON_OBJECT_SCHEMA):
        # Also with a schema: a server that takes json_object but ignores "schema" (rather than
        # rejecting it) would otherwise get no example at all.
        return f"{_OBJECT_LINE[lang]}\n{_example_of(kind)}"
    key = _MODELS[kind].wrapper
    what = _WHAT[lang].get(key) or (_WHAT[lang]["list"] if lang == "zh" else f"list of {key}")
    return _SHAPE_LINE[lang].format(key=key, what=what)


# ---------------------------------------------------------------------------------------------
# Thinking switches
# ---------------------------------------------------------------------------------------------


class ThinkingStyle(str, Enum):
    """How an endpoint's server takes the thinking switch."""

    # chat_template_kwargs: {"enable_thinking": bool}: vLLM and SGLang serving Qwen3 (the chat
    # template reads it); "many servers take chat_template_kwargs" (wire.md).
    CHAT_TEMPLATE_KWARGS = "chat_template_kwargs"
    # enable_thinking: bool at the top level: DashScope compatible mode (Alibaba Model Studio
    # "deep thinking" guide: extra_body={"enable_thinking": True}).
    ENABLE_THINKING = "enable_thinking"
    # reasoning_effort: OpenAI o-series (low/medium/high), Ollama /v1 (high/medium/low/none,
    # wire.md section 6).
    REASONING_EFFORT = "reasoning_effort"


@dataclass(frozen=True)
class ThinkingSettings:
    """An endpoint's thinking settings: ``thinking`` on|off|auto and an optional effort."""

    thinking: Literal["on", "off", "auto"] = "auto"
    reasoning_effort: str | None = None
    style: ThinkingStyle = ThinkingStyle.CHAT_TEMPLATE_KWARGS

    def __post_init__(self) -> None:
        if self.thinking not in ("on", "off", "auto"):
            raise ValueError(f"thinking must be on, off or auto, not {self.thinking!r}")
        object.__setattr__(self, "style", ThinkingStyle(self.style))
        effort = self.reasoning_effort
        if effort is not None and (not isinstance(effort, str) or not effort.strip()):
            raise ValueError("reasoning_effort must be a non-empty string")
        if self.thinking == "off" and effort not in (None, "none", "minimal"):
            raise ValueError(f"thinking off contradicts reasoning_effort {effort!r}")


def thinking_payload(settings: ThinkingSettings) -> dict[str, Any]:
    """The request fields that carry an endpoint's thinking settings ({} for the defaults).

    ``auto`` leaves the server's default. Reasoning stays out of the JSON either way: servers
    return it in ``reasoning``/``reasoning_content`` (wire.md section 6) and no schema has a
    field for it. Thinking under constrained decoding can spend ``max_tokens`` before the JSON
    starts (vllm#12548, wire.md), so structured requests usually want ``off``.
    """
    out: dict[str, Any] = {}
    if settings.reasoning_effort is not None:
        # Set only for servers that take it: OpenAI o-series, Ollama /v1 (wire.md section 6).
        out["reasoning_effort"] = settings.reasoning_effort
    if settings.thinking == "auto":
        return out
    on = settings.thinking == "on"
    if settings.style is ThinkingStyle.CHAT_TEMPLATE_KWARGS:
        out["chat_template_kwargs"] = {"enable_thinking": on}
    elif settings.style is ThinkingStyle.ENABLE_THINKING:
        out["enable_thinking"] = on
    elif not on:
        out.setdefault("reasoning_effort", "none")  # Ollama's "none"; o-series always think
    return out


def merge_payload(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` updated with ``extra``, nested objects merged (an endpoint's own
    ``chat_template_kwargs`` keep their other keys)."""
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge_payload(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


# ---------------------------------------------------------------------------------------------
# Usage
# ---------------------------------------------------------------------------------------------


def _count(value: Any) -> int | None:
    """A token count from what a server sent (numbers, numeric strings); None if there is none."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return max(0, value)
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return max(0, int(number)) if math.isfinite(number) else None


def _dig(data: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(data, Mapping):
            return None
        data = data.get(key)
    return data


@dataclass(frozen=True)
class UsageCounts:
    """One reply's tokens. ``cached_prompt`` and ``cache_write`` are parts of ``prompt``, and
    ``reasoning`` is part of ``completion`` (as OpenAI, DeepSeek and DashScope count them)."""

    prompt: int = 0
    completion: int = 0
    cached_prompt: int = 0
    reasoning: int = 0
    cache_write: int = 0
    # Whether the server said how many prompt tokens were cached (a 0 then means a miss, not
    # "not reported": vLLM without --enable-prompt-tokens-details sends null).
    cache_reported: bool = False

    @property
    def uncached_prompt(self) -> int:
        """Prompt tokens billed at the full input price."""
        return self.prompt - self.cached_prompt

    def __add__(self, other: UsageCounts) -> UsageCounts:
        return UsageCounts(
            self.prompt + other.prompt,
            self.completion + other.completion,
            self.cached_prompt + other.cached_prompt,
            self.reasoning + other.reasoning,
            self.cache_write + other.cache_write,
            self.cache_reported or other.cache_reported,
        )


def parse_usage(usage: Any, *, timings: Any = None) -> UsageCounts:
    """The token counts in a reply's ``usage`` (and llama.cpp's ``timings``), from any dialect.

    Cached prompt tokens, first found wins: ``prompt_tokens_details.cached_tokens`` (OpenAI,
    DashScope, vLLM with --enable-prompt-tokens-details, SGLang with --enable-cache-report,
    llama.cpp since PR #19361), DeepSeek's ``prompt_cache_hit_tokens`` (its ``prompt_tokens`` =
    hit + miss), llama.cpp's ``timings.cache_n``. Missing, null or garbage values count as 0.
    """
    usage = usage if isinstance(usage, Mapping) else {}
    details = usage.get("prompt_tokens_details")
    hit = _count(usage.get("prompt_cache_hit_tokens"))
    miss = _count(usage.get("prompt_cache_miss_tokens"))
    cache_n = _count(_dig(timings, "cache_n"))
    prompt = _count(usage.get("prompt_tokens"))
    if prompt is None and (hit is not None or miss is not None):
        prompt = (hit or 0) + (miss or 0)
    if prompt is None and (cache_n is not None or _count(_dig(timings, "prompt_n")) is not None):
        # llama.cpp: prompt_n is what it processed, cache_n what it reused.
        prompt = (cache_n or 0) + (_count(_dig(timings, "prompt_n")) or 0)
    prompt = prompt or 0
    cached = next(
        (c for c in (_count(_dig(details, "cached_tokens")), hit, cache_n) if c is not None),
        None,
    )
    write = _count(_dig(details, "cache_creation_input_tokens")) or _count(
        _dig(details, "cache_write_tokens")
    )
    completion = _count(usage.get("completion_tokens")) or 0
    reasoning = _count(_dig(usage, "completion_tokens_details", "reasoning_tokens")) or 0
    return UsageCounts(
        prompt=prompt,
        completion=completion,
        cached_prompt=min(cached or 0, prompt),
        reasoning=min(reasoning, completion),
        cache_write=min(write or 0, prompt),
        cache_reported=cached is not None,
    )


def usage_from_body(body: Any) -> UsageCounts:
    """The token counts of a whole chat completion body (``usage`` + llama.cpp ``timings``).

    Without ``usage``, Ollama's native counters are used (``prompt_eval_count``, ``eval_count``).
    """
    if not isinstance(body, Mapping):
        return UsageCounts()
    usage = body.get("usage")
    if not isinstance(usage, Mapping) and ("prompt_eval_count" in body or "eval_count" in body):
        usage = {
            "prompt_tokens": body.get("prompt_eval_count"),
            "completion_tokens": body.get("eval_count"),
        }
    return parse_usage(usage, timings=body.get("timings"))


# ---------------------------------------------------------------------------------------------
# Prices
# ---------------------------------------------------------------------------------------------


def _price(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a number, got {value!r}")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class PriceCard:
    """A model's prices per 1,000 tokens (any currency) and its batch discount.

    ``cached_input_per_1k`` (None: the input price, no cache discount known) is what a cached
    prompt token costs: e.g. OpenAI up to 90% off, DeepSeek about 2% of a miss, DashScope
    implicit hits 20% (wire.md "Cached prompt tokens"). ``batch_discount`` is the share taken
    off batched requests: 0.5 for the 50% off of OpenAI's, Anthropic's and Alibaba Model
    Studio's batch APIs (wire.md "Batch API").
    """

    input_per_1k: float = 0.0
    output_per_1k: float = 0.0
    cached_input_per_1k: float | None = None
    batch_discount: float = 0.0

    def __post_init__(self) -> None:
        for name in ("input_per_1k", "output_per_1k", "batch_discount"):
            object.__setattr__(self, name, _price(name, getattr(self, name)))
        if self.cached_input_per_1k is not None:
            cached = _price("cached_input_per_1k", self.cached_input_per_1k)
            object.__setattr__(self, "cached_input_per_1k", cached)
        if self.batch_discount >= 1:
            raise ValueError(
                f"batch_discount must be below 1 (a share), got {self.batch_discount!r}"
            )

    @property
    def cached_rate(self) -> float:
        """The price of 1,000 cached prompt tokens."""
        return self.input_per_1k if self.cached_input_per_1k is None else self.cached_input_per_1k

    @classmethod
    def from_config(cls, price: Any) -> PriceCard:
        """A card from a ``prices`` entry: a mapping or an object (config.ModelPrice)."""
        keys = ("input_per_1k", "output_per_1k", "cached_input_per_1k", "batch_discount")
        if isinstance(price, Mapping):
            values = {k: price.get(k) for k in keys}
        else:
            values = {k: getattr(price, k, None) for k in keys}
        return cls(**{k: v for k, v in values.items() if v is not None})

    def factor(self, *, batched: bool) -> float:
        """What a batched request costs relative to the same request sent directly."""
        return 1.0 - self.batch_discount if batched else 1.0


def _tokens(prompt: int, cached: int, completion: int) -> tuple[int, int, int]:
    """(uncached prompt, cached prompt, completion), checked."""
    for name, n in (("prompt", prompt), ("cached", cached), ("completion", completion)):
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"{name} tokens must be an integer >= 0, got {n!r}")
    if cached > prompt:
        raise ValueError(f"cached tokens ({cached}) exceed prompt tokens ({prompt})")
    return prompt - cached, cached, completion


def billed_input_equivalents(
    prompt: int, cached: int, completion: int, *, price: PriceCard, batched: bool = False
) -> float:
    """Tokens in input-token equivalents: what the reply costs, counted in full-price input tokens.

    ``(prompt - cached) + cached * cached_price / input_price
    + completion * output_price / input_price``, times ``1 - batch_discount`` when batched.
    With an input price of 0 (a local server) the ratios are taken as 1, so the figure is the
    plain token count. Reasoning tokens are part of ``completion``.
    """
    uncached, cached, completion = _tokens(prompt, cached, completion)
    if price.input_per_1k > 0:
        cached_ratio = price.cached_rate / price.input_per_1k
        output_ratio = price.output_per_1k / price.input_per_1k
    else:
        cached_ratio = output_ratio = 1.0
    total = uncached + cached * cached_ratio + completion * output_ratio
    return total * price.factor(batched=batched)


def cost(
    prompt: int, cached: int, completion: int, *, price: PriceCard, batched: bool = False
) -> float:
    """What a reply costs in the card's currency (cached prompt tokens at the cached price)."""
    uncached, cached, completion = _tokens(prompt, cached, completion)
    total = (
        uncached * price.input_per_1k
        + cached * price.cached_rate
        + completion * price.output_per_1k
    ) / 1000.0
    return total * price.factor(batched=batched)
