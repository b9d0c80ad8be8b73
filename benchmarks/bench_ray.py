"""``--engine ray`` against a latency-bound simulator: wall time for 1, 2 and 4 workers.

    pip install -e ".[ray]"
    python benchmarks/bench_ray.py                      # 1,000 slices, 500 ms, 256 in flight
    python benchmarks/bench_ray.py --slices 200 --quick # a smaller job

The simulator runs in its own process on 127.0.0.1 with a fixed latency; every endpoint's limit
(``--concurrency``, global across workers under Ray) is the same in every case. One local Ray
instance is started once (its start-up is printed, not counted) and warmed up with a small job,
so each case's wall time is the job's: shard tasks, the workers' runs, the merge and finalize.
The same job on the local engine (this process) is timed too. Every case checks that its
kept ids equal the local run's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_pipeline import SimProcess, config_for, make_slices
from sft_distill import DatasetDistillationPipeline
from sft_distill.engine.driver import LOCAL_RAY_SYSTEM_CONFIG


def _kept(out: Path) -> list[str]:
    return [
        json.loads(line)["id"]
        for name in ("train.jsonl", "val.jsonl")
        for line in (out / name).read_text(encoding="utf-8").splitlines()
    ]


def timed(config: Any, inp: Path, out: Path, **engine: Any) -> tuple[float, Any]:
    """Seconds for one run of the job into ``out``, and its result."""
    pipeline = DatasetDistillationPipeline(config, show_progress=False, **engine)
    t0 = time.perf_counter()
    result = asyncio.run(pipeline.run(inp, output_dir=out))
    return time.perf_counter() - t0, result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--slices", type=int, default=1000)
    ap.add_argument("--latency-ms", type=float, default=500.0)
    ap.add_argument("--concurrency", type=int, default=256, help="per endpoint, global")
    ap.add_argument("--samples", type=int, default=3, help="samples_per_slice")
    ap.add_argument("--workers", default="1,2,4")
    ap.add_argument("--quick", action="store_true", help="200 slices")
    args = ap.parse_args()
    if args.quick:
        args.slices = 200
    import ray

    sim = SimProcess("--latency-ms", str(args.latency_ms))
    tmp = Path(tempfile.mkdtemp(prefix="bench_ray_"))
    try:
        inp = make_slices(tmp / "slices.jsonl", args.slices)
        workers = [int(w) for w in args.workers.split(",")]
        t0 = time.perf_counter()
        ray.init(
            num_cpus=max(workers),
            include_dashboard=False,
            logging_level="WARNING",
            _system_config=LOCAL_RAY_SYSTEM_CONFIG,  # as --engine ray starts it
        )
        start_s = time.perf_counter() - t0
        warm = make_slices(tmp / "warm.jsonl", 8)
        timed(
            config_for(sim.url, tmp, args.concurrency, samples=1),
            warm,
            tmp / "warm",
            engine="ray",
            workers=max(workers),
        )
        config = config_for(sim.url, tmp, args.concurrency, samples=args.samples)
        sim.reset()
        local_s, local = timed(config, inp, tmp / "local")
        calls = sim.stats()["chat_requests"]
        rows = []
        for w in workers:
            sim.reset()
            wall, result = timed(config, inp, tmp / f"ray{w}", engine="ray", workers=w)
            assert _kept(tmp / f"ray{w}") == _kept(tmp / "local"), f"{w} workers: kept ids differ"
            assert sim.stats()["chat_requests"] == calls
            rows.append((w, wall, result))
        one = rows[0][1]
        print(
            f"\n{args.slices} slices, {calls} calls, {args.latency_ms:.0f} ms latency, "
            f"{args.concurrency} in flight per endpoint (global); machine: "
            f"{os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}, "
            f"Ray {ray.__version__} (local instance started in {start_s:.1f} s, not counted)\n"
        )
        print("| engine | workers | wall (s) | speed-up over 1 worker | calls/s |")
        print("| --- | --- | --- | --- | --- |")
        print(f"| local | - | {local_s:.1f} | {one / local_s:.2f} | {calls / local_s:.0f} |")
        for w, wall, _ in rows:
            print(f"| ray | {w} | {wall:.1f} | {one / wall:.2f} | {calls / wall:.0f} |")
        kept = local.counts.train + local.counts.val
        print(f"\nkept {kept} samples in every case (same ids as the local run)")
    finally:
        sim.close()
        ray.shutdown()


if __name__ == "__main__":
    main()
