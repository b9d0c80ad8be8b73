"""sft_distill: turn domain knowledge slices into supervised fine-tuning data with LLMs."""

from __future__ import annotations

__version__ = "0.1.0"

from .config import CONFIG_TEMPLATE, DistillConfig, EndpointConfig, build_config, load_config
from .errors import (
    ConfigError,
    DistillError,
    InputError,
    JSONExtractionError,
    LLMError,
    OutputError,
    RetryableLLMError,
)
from .estimate import Estimate, estimate
from .filtering import DataFilter
from .llm_client import LLMClient
from .models import Chunk, Failure, Judgement, Sample, ScoredSample, Slice
from .pipeline import DatasetDistillationPipeline, RunResult
from .refilter import RefilterResult, arefilter, refilter
from .utils import extract_json

__all__ = [
    "CONFIG_TEMPLATE",
    "Chunk",
    "ConfigError",
    "DataFilter",
    "DatasetDistillationPipeline",
    "DistillConfig",
    "DistillError",
    "EndpointConfig",
    "Estimate",
    "Failure",
    "InputError",
    "JSONExtractionError",
    "Judgement",
    "LLMClient",
    "LLMError",
    "OutputError",
    "RefilterResult",
    "RetryableLLMError",
    "RunResult",
    "Sample",
    "ScoredSample",
    "Slice",
    "__version__",
    "arefilter",
    "build_config",
    "estimate",
    "extract_json",
    "load_config",
    "refilter",
]
