"""The validated settings: one endpoint, prices, and the whole run's ``DistillConfig``.

``merging`` builds a ``DistillConfig`` from the defaults, a config file and flags.
"""

from __future__ import annotations

import os
import urllib.parse
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from ..errors import ConfigError
from .defaults import (
    DEFAULT_CHUNK_CHARS,
    DEFAULT_GATES,
    DEFAULT_JUDGE_BATCH_SIZE,
    DEFAULT_JUDGE_BATCH_TOKENS,
    DEFAULT_MAX_CONSECUTIVE_FAILURES,
    DEFAULT_MAX_RETRIES,
    DEFAULT_SCORE_FLOORS,
    DEFAULT_TIMEOUT_S,
    DIMENSIONS,
    JUDGE_BATCH_AUTO_MAX,
    JUDGE_BATCH_REPLY_TOKENS,
)

if TYPE_CHECKING:
    from ..llm.structured import ThinkingSettings


# An endpoint's ``structured_output`` setting (llm.structured.StructuredOutputSetting).
StructuredOutput = Literal["auto", "json_schema", "json_object_schema", "json_object", "none"]


class KeyProblem(ValueError):
    """A cross-field check that failed, blamed on one key (pydantic gives such errors no key)."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


def display_url(url: str) -> str:
    """The URL without user:password and query string, which can carry credentials."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urllib.parse.urlunsplit((parts.scheme, host, parts.path, "", ""))


class EndpointConfig(BaseModel):
    """One OpenAI-compatible endpoint (teacher or evaluator)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    api_base: str = Field(description="base URL up to /v1, e.g. https://api.deepseek.com/v1")
    model: str = Field(min_length=1)
    api_key: SecretStr | None = Field(None, description="the key itself (prefer api_key_env)")
    api_key_env: str | None = Field(
        None, description="name of an environment variable with the key"
    )
    max_concurrent: int = Field(8, ge=1, le=4096, description="requests in flight")
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    max_tokens: int | None = Field(None, ge=1)
    timeout: float = Field(DEFAULT_TIMEOUT_S, gt=0, description="seconds per request")
    max_retries: int = Field(DEFAULT_MAX_RETRIES, ge=0, le=50)
    max_consecutive_failures: int = Field(
        DEFAULT_MAX_CONSECUTIVE_FAILURES,
        ge=0,
        description="stop the run after this many calls in a row failed for good with the same "
        "connection error or the same server error (0: never stop)",
    )
    extra_body: dict[str, Any] = Field(default_factory=dict)
    retry_backoff_s: float = Field(0.5, ge=0, description="first retry wait; doubles each time")
    retry_backoff_max_s: float = Field(8.0, ge=0, description="longest retry wait")
    adaptive_concurrency: bool = Field(
        True, description="shrink concurrency under sustained 429s, grow it back after"
    )
    max_requests_per_minute: float | None = Field(None, gt=0)
    max_tokens_per_minute: float | None = Field(None, gt=0)
    context_tokens: int | None = Field(
        None,
        ge=1,
        description="the model's context length (prompt + reply) on this server, checked by "
        "--estimate; default: asked of the server (vLLM, llama.cpp report it)",
    )
    structured_output: StructuredOutput = Field(
        "auto",
        description="how replies are constrained to their JSON schema: auto (try json_schema, "
        "then json_object with a schema, then json_object, then the prompt alone; the form that "
        "works is remembered in the output directory), one of those forms, or none",
    )
    thinking: Literal["auto", "on", "off"] = Field(
        "auto", description="switch the model's thinking on or off (auto: the server's default)"
    )
    reasoning_effort: str | None = Field(
        None, min_length=1, description="reasoning_effort sent as is (OpenAI o-series, Ollama)"
    )
    cache_control: bool = Field(
        False,
        description="mark the shared block of each prompt (instructions and source text) with "
        'cache_control {"type": "ephemeral"} for explicit prompt caches (DashScope, Anthropic)',
    )
    judge_batch_size: int | Literal["auto"] | None = Field(
        None,
        description="this evaluator's judge_batch_size (default: the run's)",
    )
    thinking_style: Literal["chat_template_kwargs", "enable_thinking", "reasoning_effort"] = Field(
        "chat_template_kwargs",
        description="how the server takes the thinking switch: chat_template_kwargs (vLLM, "
        "SGLang), enable_thinking (DashScope), reasoning_effort (OpenAI, Ollama)",
    )
    batch: bool | None = Field(
        None,
        description="send this endpoint's requests through its Batch API (true), never (false), "
        "or as the run's batch setting says (null)",
    )

    @field_validator("judge_batch_size", mode="before")
    @classmethod
    def _batch_size(cls, v: int | str | None) -> int | str | None:
        return None if v is None else _judge_batch_size(v)

    @field_validator("api_base")
    @classmethod
    def _http_url(cls, v: str) -> str:
        v = v.strip().rstrip("/")
        if not v.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        if "@" in urllib.parse.urlsplit(v).netloc:
            # The URL is logged and sent in every request; the message must not repeat it.
            raise PydanticCustomError(
                "url_credentials",
                "must not contain a user name or password (user:pass@host); give the key in "
                "api_key_env or api_key",
            )
        if v.endswith("/chat/completions"):
            v = v[: -len("/chat/completions")]
        return v

    @model_validator(mode="after")
    def _thinking_consistent(self) -> EndpointConfig:
        try:
            self.thinking_settings()
        except ValueError as exc:
            raise KeyProblem("reasoning_effort", str(exc)) from None
        return self

    def thinking_settings(self) -> ThinkingSettings:
        """The thinking switches of this endpoint (``llm.structured.thinking_payload``)."""
        from ..llm.structured import ThinkingSettings

        return ThinkingSettings(self.thinking, self.reasoning_effort, self.thinking_style)

    def resolve_key(self) -> str | None:
        """Return the API key from ``api_key`` or the ``api_key_env`` variable (None when unset)."""
        if self.api_key is not None:
            return self.api_key.get_secret_value()
        if self.api_key_env:
            return os.environ.get(self.api_key_env) or None
        return None

    def public_dict(self) -> dict[str, Any]:
        """The endpoint settings with the key removed (safe for logs and metadata)."""
        d = self.model_dump(exclude={"api_key"})
        d["api_key"] = "***" if self.api_key is not None else None
        d["api_base"] = display_url(self.api_base)
        return d


class ModelPrice(BaseModel):
    """Price of one model per 1000 tokens, in any currency (used for cost in report/estimate)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    input_per_1k: float = Field(0.0, ge=0.0)
    output_per_1k: float = Field(0.0, ge=0.0)
    cached_input_per_1k: float | None = Field(
        None, ge=0.0, description="price of cached prompt tokens (default: input_per_1k)"
    )
    batch_discount: float = Field(
        0.0, ge=0.0, lt=1.0, description="share taken off batched requests (0.5: half price)"
    )


def _judge_batch_size(v: int | str) -> int | str:
    """A judge_batch_size: "auto" or an integer of at least 1."""
    if v != "auto" and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
        raise ValueError(f'must be "auto" or an integer of at least 1, got {v!r}')
    return v


class DistillConfig(BaseModel):
    """The whole run's settings; see README "Configuration" for each key."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    generator: EndpointConfig
    evaluators: dict[str, EndpointConfig] = Field(min_length=1)
    students: dict[str, EndpointConfig] = Field(
        default_factory=dict,
        description="models under test for sft-distill eval (--student/--baseline NAME)",
    )
    samples_per_slice: int = Field(3, ge=1, le=1000)
    # Density: when set, each chunk's own text decides its samples, not samples_per_slice.
    samples_per_1k_chars: float | None = Field(
        None, gt=0, le=1000, description="samples per 1,000 characters of each chunk"
    )
    samples_per_article: bool | float = Field(
        False,
        description="true (or a number: samples per article, e.g. 2) for one sample per article "
        "(第X条, Article N, Section N) of each chunk, and one per 1,500 characters of a chunk "
        "without articles",
    )
    max_samples_per_request: int = Field(
        10,
        ge=1,
        le=200,
        description="a chunk asking more samples is asked in several requests over its articles",
    )
    generation: Literal["one_stage", "two_stage"] = Field(
        "one_stage",
        description="two_stage: questions first, checked and deduplicated, then one answer each",
    )
    min_score_threshold: float = Field(7.0, ge=0.0, le=10.0)
    judge_batch_size: int | Literal["auto"] = Field(
        DEFAULT_JUDGE_BATCH_SIZE,
        description="samples of one chunk each judge call scores (the source sent once); auto: "
        "all of a chunk's samples that fit judge_batch_tokens",
    )
    judge_batch_tokens: int = Field(
        DEFAULT_JUDGE_BATCH_TOKENS,
        ge=200,
        description="auto judge batches: the most estimated tokens of samples in one call",
    )
    min_votes: int = Field(2, description="votes a sample needs; 1 to the number of evaluators")
    early_drop: bool = Field(
        True,
        description="judges are asked in the order listed, and one is not asked about a sample "
        "the judges before it have already voted down (the votes left cannot reach min_votes); "
        "false asks every judge about every sample",
    )
    train_val_split: float = Field(0.9, ge=0.0, le=1.0)
    enable_dedup: bool = True
    output_dir: str = "./distilled_dataset"

    chunk_chars: int = Field(
        DEFAULT_CHUNK_CHARS, ge=200, description="max characters of slice text per teacher request"
    )
    dimension_weights: dict[str, float] | None = Field(
        None,
        description="weights per dimension for the weighted mean (default: equal over the five "
        "original dimensions; standalone weighs 0 unless given here)",
    )
    score_floors: dict[str, float] | None = Field(
        default_factory=lambda: dict(DEFAULT_SCORE_FLOORS),
        description="per dimension, the score a judge must give for its vote to count, whatever "
        "its mean (None: no floor)",
    )
    dedup_method: Literal["auto", "jaccard", "embedding"] = "auto"
    dedup_threshold: float | None = Field(
        None, gt=0.0, le=1.0, description="default 0.8 for jaccard, 0.95 for embedding cosine"
    )
    dedup_ngram: int = Field(5, ge=1, le=20, description="character n-gram size for jaccard")
    embed_batch_size: int = Field(64, ge=1)
    seed: int = 42
    system_prompt: str | None = None
    language: Literal["auto", "zh", "en"] = "auto"
    output_formats: list[str] = Field(
        default_factory=lambda: ["sharegpt"],
        description="sharegpt, alpaca, openai; the first is train.jsonl, others train.<fmt>.jsonl",
    )
    include_reasoning: bool = False
    include_evidence: bool = Field(
        False, description="write each sample's evidence quotes in its row's provenance"
    )
    split_by: Literal["sample", "slice"] = "sample"
    max_per_slice: int | None = Field(None, ge=1)
    balance_by: str | None = Field(None, min_length=1)
    max_per_group: int | None = Field(None, ge=1)
    dataset_name: str = Field("sft_distill", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    prices: dict[str, ModelPrice] = Field(default_factory=dict)
    batch: bool = Field(
        False,
        description="send requests through the endpoints' Batch APIs (about half price, replies "
        "within 24 h); an endpoint's own batch setting wins",
    )
    batch_poll_s: float = Field(30.0, gt=0, description="seconds between polls of a batch")
    batch_collect_s: float = Field(
        2.0,
        ge=0,
        description="quiet seconds (no new request, no call in flight) before the requests "
        "collected so far go out as a batch",
    )
    batch_max_requests: int = Field(
        50_000, ge=1, le=50_000, description="requests per batch at most (OpenAI: 50,000)"
    )
    batch_timeout_s: float | None = Field(
        None,
        gt=0,
        description="give up waiting for a batch after this long (its requests fail; a rerun "
        "polls it again); default: wait until the provider ends it",
    )
    gates: list[dict[str, Any]] = Field(
        default_factory=lambda: [dict(g) for g in DEFAULT_GATES],
        description="checks before the judges (default: quality, then rules; [] turns them off)",
    )
    min_keep_rate: float | None = Field(
        None, ge=0.0, le=1.0, description="fail the run (exit 4) when fewer samples are kept"
    )
    min_mean_score: float | None = Field(
        None, ge=0.0, le=10.0, description="fail the run (exit 4) when the mean score is lower"
    )
    min_exec_pass_rate: float | None = Field(
        None, ge=0.0, le=1.0, description="fail the run (exit 4) when fewer SQL samples execute"
    )

    # --- compliance (issue 14): personal data, eval-set contamination, licences ---
    pii: str | dict[str, Any] = Field(
        "redact",
        description='personal data in every sample: "redact" (placeholders), "drop", "tag" '
        '(only record it) or "off"; or an object of the pii gate\'s options',
    )
    pii_scrub_slices: bool = Field(
        False, description="replace personal data in each slice before the teacher sees it"
    )
    decontaminate: list[str] = Field(
        default_factory=list,
        description="eval sets (JSONL, JSON array, Parquet) whose questions must not be in the "
        "data: matching samples are dropped as 'contaminated' before any judge",
    )
    decontaminate_overlap: float = Field(
        0.6,
        gt=0.0,
        le=1.0,
        description="share of a sample's question (or question and answer) covered by n-grams "
        "of one eval item that makes it contaminated",
    )
    decontaminate_cosine: float = Field(
        0.9, gt=0.0, le=1.0, description="embedding cosine to an eval question (with embed_fn)"
    )
    require_license: bool = Field(
        False,
        description="fail the run (exit 4) when a kept sample comes from a slice with no "
        "metadata.license or a non-commercial one",
    )

    embed_fn: Callable[..., Any] | None = Field(None, exclude=True)
    config_dir: str | None = Field(
        None, exclude=True, description="directory of the config file: relative gate paths"
    )

    @field_validator("output_formats", mode="before")
    @classmethod
    def _formats(cls, v: Any) -> list[str]:
        from ..outputs.formats import parse_formats

        try:
            return parse_formats(v)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None

    @field_validator("samples_per_article", mode="before")
    @classmethod
    def _per_article(cls, v: Any) -> bool | float:
        if isinstance(v, bool):
            return v
        if isinstance(v, int | float) and 0 < v <= 100:
            return float(v)
        raise ValueError(
            f"must be true, false or a number of samples per article (0-100], got {v!r}"
        )

    @field_validator("pii")
    @classmethod
    def _pii_setting(cls, v: str | dict[str, Any]) -> str | dict[str, Any]:
        if isinstance(v, str) and v not in PII_SETTINGS:
            raise ValueError(
                f"must be one of {', '.join(PII_SETTINGS)} or an object of the pii gate's "
                f"options, got {v!r}"
            )
        if isinstance(v, dict) and "type" in v:
            raise ValueError('give the pii gate\'s options without "type"')
        return v

    @field_validator("decontaminate", mode="before")
    @classmethod
    def _eval_paths(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v

    @field_validator("decontaminate")
    @classmethod
    def _eval_paths_given(cls, v: list[str]) -> list[str]:
        if any(not p.strip() for p in v):
            raise ValueError("an eval set path is empty")
        return v

    @field_validator("judge_batch_size", mode="before")
    @classmethod
    def _batch_size(cls, v: int | str) -> int | str:
        return _judge_batch_size(v)

    def judge_batch_limits(self, ep: EndpointConfig) -> tuple[int, int | None]:
        """(most samples per judge call, token budget of their text or None) of an evaluator."""
        size = ep.judge_batch_size or self.judge_batch_size
        if size == "auto":
            most = JUDGE_BATCH_AUTO_MAX
            if ep.max_tokens:
                most = max(1, min(most, JUDGE_BATCH_REPLY_TOKENS // ep.max_tokens))
            return most, self.judge_batch_tokens
        return int(size), None

    @field_validator("min_votes")
    @classmethod
    def _at_least_one_vote(cls, v: int) -> int:
        if v < 1:
            raise ValueError(
                f"must be at least 1, got {v} (with 0 a sample would pass without any evaluator "
                "voting for it)"
            )
        return v

    @field_validator("dimension_weights")
    @classmethod
    def _known_dimensions(cls, v: dict[str, float] | None) -> dict[str, float] | None:
        if v is None:
            return v
        unknown = sorted(set(v) - set(DIMENSIONS))
        if unknown:
            raise ValueError(f"unknown dimension(s) {unknown}; known: {list(DIMENSIONS)}")
        if any(w < 0 for w in v.values()) or sum(v.values()) <= 0:
            raise ValueError("weights must be >= 0 with a positive sum")
        return v

    @field_validator("score_floors", mode="before")
    @classmethod
    def _floors(cls, v: Any) -> dict[str, float] | None:
        # A null entry removes that floor (how a config file drops a default one); no floor left
        # is None, so the recorded config replays as "no floors" (refilter merges it over the
        # defaults, where {} would change nothing).
        if v is None:
            return None
        if not isinstance(v, dict):
            raise ValueError("must be an object of dimension -> minimum score, or null")
        floors = {str(k): x for k, x in v.items() if x is not None}
        unknown = sorted(set(floors) - set(DIMENSIONS))
        if unknown:
            raise ValueError(f"unknown dimension(s) {unknown}; known: {list(DIMENSIONS)}")
        for dim, x in floors.items():
            if isinstance(x, bool) or not isinstance(x, (int, float)) or not 0 <= x <= 10:
                raise ValueError(f"{dim}: a floor is a score from 0 to 10, got {x!r}")
        return {d: float(floors[d]) for d in DIMENSIONS if d in floors} or None

    @model_validator(mode="after")
    def _group_cap_needs_field(self) -> DistillConfig:
        if self.max_per_group is not None and not self.balance_by:
            raise KeyProblem(
                "max_per_group", "needs balance_by (--balance-by FIELD, a slice metadata field)"
            )
        if self.balance_by and self.max_per_group is None:
            # Without a cap, balance_by would silently do nothing.
            raise KeyProblem(
                "balance_by", "needs max_per_group (--max-per-group N, the samples kept per group)"
            )
        return self

    @model_validator(mode="after")
    def _votes_possible(self) -> DistillConfig:
        n = len(self.evaluators)
        if self.min_votes > n:
            raise KeyProblem(
                "min_votes",
                f"{self.min_votes} is more than the {n} evaluator{'' if n == 1 else 's'} "
                f"configured ({', '.join(self.evaluators)}), so no sample could ever pass; "
                f"set it to {n} or less",
            )
        return self

    @property
    def effective_dedup_method(self) -> Literal["jaccard", "embedding"]:
        if self.dedup_method == "auto":
            return "embedding" if self.embed_fn is not None else "jaccard"
        return self.dedup_method

    @property
    def effective_dedup_threshold(self) -> float:
        if self.dedup_threshold is not None:
            return self.dedup_threshold
        return 0.95 if self.effective_dedup_method == "embedding" else 0.8

    def endpoints(self) -> dict[str, EndpointConfig]:
        """All endpoints by role name: ``generator`` and each evaluator name."""
        return {"generator": self.generator, **self.evaluators}

    def batched(self, endpoint: EndpointConfig) -> bool:
        """Whether ``endpoint``'s requests go through its Batch API (its own setting first)."""
        return self.batch if endpoint.batch is None else endpoint.batch

    def public_dict(self) -> dict[str, Any]:
        """The config with every secret removed, for metadata.json and logs."""
        d = self.model_dump(
            exclude={"generator", "evaluators", "students", "embed_fn", "config_dir"}
        )
        d["generator"] = self.generator.public_dict()
        d["evaluators"] = {k: v.public_dict() for k, v in self.evaluators.items()}
        d["students"] = {k: v.public_dict() for k, v in self.students.items()}
        d["embed_fn"] = (
            getattr(self.embed_fn, "__name__", repr(self.embed_fn)) if self.embed_fn else None
        )
        # Names listed for the pii gate are personal data themselves: keep only how many.
        if isinstance(d.get("pii"), dict):
            d["pii"] = _names_counted(d["pii"])
        d["gates"] = [
            _names_counted(g) if isinstance(g, dict) and g.get("type") == "pii" else g
            for g in d.get("gates") or []
        ]
        return d


# What the ``pii`` key accepts as a word (an object holds the gate's options).
PII_SETTINGS = ("redact", "drop", "tag", "off")


def _names_counted(options: dict[str, Any]) -> dict[str, Any]:
    """The pii gate's options with its ``names`` list replaced by a count."""
    names = options.get("names")
    if not isinstance(names, list):
        return options
    return {**options, "names": f"<{len(names)} name{'' if len(names) == 1 else 's'}>"}
