"""sft_distill: turn domain knowledge slices into supervised fine-tuning data with LLMs."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from . import _legacy

__version__ = "0.1.0"

if TYPE_CHECKING:
    from .config.defaults import CONFIG_TEMPLATE
    from .config.merging import build_config, load_config
    from .config.models import DistillConfig, EndpointConfig
    from .errors import (
        ConfigError,
        DistillError,
        InputError,
        JSONExtractionError,
        LLMError,
        OutputError,
        RetryableLLMError,
    )
    from .llm.client import LLMClient
    from .llm.json_extract import extract_json
    from .models import Chunk, Failure, Judgement, Sample, ScoredSample, Slice
    from .pipeline import DatasetDistillationPipeline, RunResult
    from .planning.estimate import Estimate, estimate
    from .selection.decontaminate import Decontaminator
    from .selection.refilter import RefilterResult, arefilter, refilter
    from .selection.thresholds import DataFilter
    from .sources.augment import AugmentSource
    from .sources.base import SampleSource, SourceContext
    from .sources.distill import DistillSource
    from .sources.slices import SliceSource
    from .sources.topic_tree import TopicTree
    from .sources.topics import TopicSource
    from .stages.gates.base import Gate, GateResult
    from .stages.gates.pii import PiiGate
    from .stages.gates.registry import build_gates

# Each export is imported from its module on first use: ``import sft_distill`` stays cheap, so
# the ``sft-distill`` command handles Ctrl-C before its heavy imports (about a second) begin.
_EXPORTS: dict[str, str] = {
    "AugmentSource": "sources.augment",
    "CONFIG_TEMPLATE": "config.defaults",
    "Chunk": "models",
    "ConfigError": "errors",
    "DataFilter": "selection.thresholds",
    "DatasetDistillationPipeline": "pipeline",
    "Decontaminator": "selection.decontaminate",
    "DistillConfig": "config.models",
    "DistillError": "errors",
    "DistillSource": "sources.distill",
    "EndpointConfig": "config.models",
    "Estimate": "planning.estimate",
    "Failure": "models",
    "Gate": "stages.gates.base",
    "GateResult": "stages.gates.base",
    "InputError": "errors",
    "JSONExtractionError": "errors",
    "Judgement": "models",
    "LLMClient": "llm.client",
    "LLMError": "errors",
    "OutputError": "errors",
    "PiiGate": "stages.gates.pii",
    "RefilterResult": "selection.refilter",
    "RetryableLLMError": "errors",
    "RunResult": "pipeline",
    "Sample": "models",
    "SampleSource": "sources.base",
    "ScoredSample": "models",
    "Slice": "models",
    "SliceSource": "sources.slices",
    "SourceContext": "sources.base",
    "TopicSource": "sources.topics",
    "TopicTree": "sources.topic_tree",
    "arefilter": "selection.refilter",
    "build_config": "config.merging",
    "build_gates": "stages.gates.registry",
    "estimate": "planning.estimate",
    "extract_json": "llm.json_extract",
    "load_config": "config.merging",
    "refilter": "selection.refilter",
}

__all__ = [
    "CONFIG_TEMPLATE",
    "AugmentSource",
    "Chunk",
    "ConfigError",
    "DataFilter",
    "DatasetDistillationPipeline",
    "Decontaminator",
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
    "PiiGate",
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


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is not None:
        value = getattr(importlib.import_module(f".{module}", __name__), name)
        globals()[name] = value  # later lookups skip __getattr__
        return value
    if name in _legacy.MOVED:  # an old module path, e.g. ``sft_distill.cache``
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


_legacy.install(_EXPORTS)
