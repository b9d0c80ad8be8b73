"""sft_distill: turn domain knowledge slices into supervised fine-tuning data with LLMs."""

from __future__ import annotations

__version__ = "0.1.0"

from .augment import AugmentSource
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
from .gates import Gate, GateResult, build_gates
from .instruction_sets import DistillSource
from .llm_client import LLMClient
from .models import Chunk, Failure, Judgement, Sample, ScoredSample, Slice
from .pipeline import DatasetDistillationPipeline, RunResult
from .refilter import RefilterResult, arefilter, refilter
from .sources import SampleSource, SliceSource, SourceContext
from .topics import TopicSource, TopicTree
from .utils import extract_json

__all__ = [
    "CONFIG_TEMPLATE",
    "AugmentSource",
    "Chunk",
    "ConfigError",
    "DataFilter",
    "DatasetDistillationPipeline",
    "DistillConfig",
    "DistillError",
    "DistillSource",
    "EndpointConfig",
    "Estimate",
    "Failure",
    "Gate",
    "GateResult",
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
    "SampleSource",
    "ScoredSample",
    "Slice",
    "SliceSource",
    "SourceContext",
    "TopicSource",
    "TopicTree",
    "__version__",
    "arefilter",
    "build_config",
    "build_gates",
    "estimate",
    "extract_json",
    "load_config",
    "refilter",
]
