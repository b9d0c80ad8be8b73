"""Use the pipeline inside a running event loop, as in a Jupyter cell (``await pipeline.run``).

In Jupyter, paste the body of ``cell()`` into a cell: the notebook's loop is already running, so
``await`` works directly. ``pipeline.run_sync(...)`` also works there (it uses a worker thread).
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sft_distill import DatasetDistillationPipeline

HERE = Path(__file__).parent


async def cell() -> None:
    pipeline = DatasetDistillationPipeline(
        {"output_dir": "./notebook_output", "samples_per_slice": 2}, show_progress=False
    )
    result = await pipeline.run(HERE / "slices.jsonl", dry_run=True)
    print(result.metadata["counts"])
    print(result.metadata["scores"])


if __name__ == "__main__":
    asyncio.run(cell())
