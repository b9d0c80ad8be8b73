"""Deduplicate by embedding cosine with your own ``embed_fn``.

Here the embeddings come from an OpenAI-compatible ``/v1/embeddings`` endpoint (the built-in
simulator, so it runs offline); swap the URL and model for a real one, or return
``SentenceTransformer.encode(texts)`` from a plain function. ``embed_fn`` may be sync or async and
is called with batches of ``embed_batch_size`` texts.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import aiohttp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sft_distill import DatasetDistillationPipeline
from sft_distill.simulator import Simulator, SimulatorConfig

HERE = Path(__file__).parent


async def main() -> None:
    async with Simulator(SimulatorConfig()) as sim, aiohttp.ClientSession() as http:

        async def embed_fn(texts: list[str]) -> np.ndarray:
            body = {"model": "embedding-sim", "input": texts}
            async with http.post(f"{sim.url}/embeddings", json=body) as resp:
                resp.raise_for_status()
                data = (await resp.json())["data"]
            return np.array([d["embedding"] for d in sorted(data, key=lambda d: d["index"])])

        config = {
            "output_dir": "./embed_output",
            "dedup_threshold": 0.9,
            "embed_batch_size": 32,
        }
        pipeline = DatasetDistillationPipeline(config, embed_fn=embed_fn, show_progress=False)
        result = await pipeline.run(HERE / "slices.jsonl", dry_run=True)
        print("dedup:", result.metadata["dedup"])
        print("kept:", result.counts.after_dedup, "of", result.counts.passed_thresholds)


if __name__ == "__main__":
    asyncio.run(main())
