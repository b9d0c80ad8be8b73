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


# --- the old module paths (sft_distill/_legacy.py) -------------------------------------------

# Every module the package had before it was arranged in folders (issue 11).
OLD_MODULES = [
    "augment",
    "cache",
    "check_base",
    "checks",
    "chunking",
    "cli",
    "cli_tools",
    "concurrency",
    "config",
    "data_io",
    "dedup",
    "errors",
    "estimate",
    "estimate_modes",
    "evaluator",
    "filtering",
    "finalize",
    "formats",
    "gates",
    "generator",
    "instruction_sets",
    "llm_client",
    "manifest",
    "models",
    "number_check",
    "numerals",
    "outputs",
    "pii",
    "pipeline",
    "prompts",
    "provisions",
    "quality",
    "quality_gates",
    "refilter",
    "report",
    "report_html",
    "rule_gates",
    "run_index",
    "run_usage",
    "server_context",
    "simulator",
    "sources",
    "splitting",
    "sql_gate",
    "support_check",
    "topics",
    "utils",
]


def test_every_old_module_path_still_imports():
    import importlib

    for old in OLD_MODULES:
        module = importlib.import_module(f"sft_distill.{old}")
        assert getattr(sft_distill, old) is module or old in ("estimate", "refilter"), old


def test_a_moved_module_is_the_module_itself_and_a_split_one_finds_each_name():
    import sft_distill.cache
    import sft_distill.data_io
    import sft_distill.llm.cache
    from sft_distill.data_io import JsonlWriter, iter_slices, split_train_val
    from sft_distill.outputs.writers import JsonlWriter as writer
    from sft_distill.selection.splitting import split_train_val as split
    from sft_distill.sources.reader import iter_slices as read
    from sft_distill.utils import normalize_text

    assert sft_distill.cache is sft_distill.llm.cache
    assert (JsonlWriter, iter_slices, split_train_val) == (writer, read, split)
    assert normalize_text(" A\u3000b ") == "a b"  # renamed casefold_spaced, still served


def test_old_module_names_never_rebind_the_exported_functions():
    import sft_distill.estimate
    import sft_distill.refilter

    assert callable(sft_distill.estimate) and callable(sft_distill.refilter)
    assert sft_distill.estimate.__name__ == "estimate"
    assert sft_distill.refilter.__name__ == "refilter"


def test_monkeypatching_a_split_module_sets_and_restores_the_real_name(monkeypatch):
    from sft_distill import data_io
    from sft_distill.sources import jsonl

    real = jsonl.iter_jsonl
    with monkeypatch.context() as m:
        m.setattr(data_io, "iter_jsonl", len)
        assert jsonl.iter_jsonl is len
        m.setattr(data_io, "open", len, raising=False)  # a builtin shadowed in every home
        assert jsonl.open is len
    assert jsonl.iter_jsonl is real and "open" not in vars(jsonl)


def test_help_imports_no_mode_nor_the_heavy_libraries():
    """``sft-distill --help`` only parses: the modes, aiohttp, numpy and pydantic load when a
    command runs (about a second of imports before, a few tens of milliseconds now)."""
    import subprocess
    import sys

    code = (
        "import contextlib, io, sys\n"
        "from sft_distill.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
        "    main(['--help'])\n"
        "heavy = {'aiohttp', 'numpy', 'pydantic', 'sft_distill.pipeline', 'sft_distill.sources',\n"
        "         'sft_distill.stages', 'sft_distill.llm'}\n"
        "assert not heavy & set(sys.modules), sorted(heavy & set(sys.modules))\n"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
