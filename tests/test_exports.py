"""The public API: what ``import sft_distill`` offers is pinned here (httpx style)."""

from __future__ import annotations

import sft_distill

EXPECTED = [
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


def test_all_is_pinned_without_duplicates():
    # Order: ruff's isort-style sort (RUF022): constants, classes, then functions.
    assert sft_distill.__all__ == EXPECTED
    assert len(set(EXPECTED)) == len(EXPECTED)


def test_every_export_exists_and_errors_share_one_root():
    for name in sft_distill.__all__:
        assert hasattr(sft_distill, name), name
    for err in ("ConfigError", "InputError", "OutputError", "LLMError", "JSONExtractionError"):
        assert issubclass(getattr(sft_distill, err), sft_distill.DistillError)
    assert issubclass(sft_distill.RetryableLLMError, sft_distill.LLMError)
