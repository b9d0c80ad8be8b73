"""Run the pipeline from a plain script (dry run on the built-in simulator: no key, no network)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sft_distill import DatasetDistillationPipeline, load_config

HERE = Path(__file__).parent

if __name__ == "__main__":
    config = load_config(HERE / "config.dry_run.json", {"output_dir": "./example_output"})
    pipeline = DatasetDistillationPipeline(config)
    result = pipeline.run_sync(HERE / "slices.jsonl", dry_run=True)
    c = result.counts
    print(
        f"{c.samples_generated} generated, {c.passed_thresholds} passed, "
        f"{c.train} train / {c.val} val in {result.output_dir}"
    )
