"""The validated settings: one endpoint, prices, and the whole run's ``DistillConfig``.

``merging`` builds a ``DistillConfig`` from the defaults, a config file and flags.
"""

from __future__ import annotations

import os
import urllib.parse
from collections.abc import Callable
from typing import Any, Literal

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
    DEFAULT_MAX_CONSECUTIVE_FAILURES,
    DEFAULT_MAX_RETRIES,
    DEFAULT_TIMEOUT_S,
    DIMENSIONS,
)


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
    min_score_threshold: float = Field(7.0, ge=0.0, le=10.0)
    min_votes: int = Field(2, description="votes a sample needs; 1 to the number of evaluators")
    train_val_split: float = Field(0.9, ge=0.0, le=1.0)
    enable_dedup: bool = True
    output_dir: str = "./distilled_dataset"

    chunk_chars: int = Field(
        DEFAULT_CHUNK_CHARS, ge=200, description="max characters of slice text per teacher request"
    )
    dimension_weights: dict[str, float] | None = Field(
        None, description="weights per dimension for the weighted mean (default: equal)"
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
    split_by: Literal["sample", "slice"] = "sample"
    max_per_slice: int | None = Field(None, ge=1)
    balance_by: str | None = Field(None, min_length=1)
    max_per_group: int | None = Field(None, ge=1)
    dataset_name: str = Field("sft_distill", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    prices: dict[str, ModelPrice] = Field(default_factory=dict)
    gates: list[dict[str, Any]] = Field(
        default_factory=list, description='quality gates before the judges, e.g. {"type": "length"}'
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
        return d
