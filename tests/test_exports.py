"""The public API: what ``import sft_distill`` offers is pinned here (httpx style)."""

from __future__ import annotations

import sft_distill

EXPECTED = [
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


def test_all_is_sorted_and_pinned():
    assert sft_distill.__all__ == sorted(sft_distill.__all__)
    assert sft_distill.__all__ == EXPECTED


def test_every_export_exists_and_errors_share_one_root():
    for name in sft_distill.__all__:
        assert hasattr(sft_distill, name), name
    for err in ("ConfigError", "InputError", "OutputError", "LLMError", "JSONExtractionError"):
        assert issubclass(getattr(sft_distill, err), sft_distill.DistillError)
    assert issubclass(sft_distill.RetryableLLMError, sft_distill.LLMError)
