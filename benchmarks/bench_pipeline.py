"""Pipeline throughput against the simulator, compared with the ideal bound of the same run.

    python benchmarks/bench_pipeline.py                 # the standard table (a few minutes)
    python benchmarks/bench_pipeline.py --quick         # smaller sizes
    python benchmarks/bench_pipeline.py --memory        # RSS while streaming 100,000 slices
    python benchmarks/bench_pipeline.py --only sync     # cost of synchronous=FULL in the cache

The simulator runs in its own process on 127.0.0.1 (both processes share this machine's cores).
The ideal bound of a run is computed from what each endpoint actually received (``/stats``):

    bound = max over endpoints (calls_e x mean latency / concurrency_e) + mean latency

(the last term is the one unavoidable generate -> evaluate hop). ``wall / bound`` is the figure of
merit: 1.00 means every endpoint was kept exactly as busy as its concurrency allows.

When the latency bound asks for more calls per second than any Python client can make on this
machine, the client's CPU is the physical limit. ``wall / phys`` divides by
``max(bound, calls / r)``, where r is the calls/s of a bare aiohttp + asyncio.Semaphore client
(no parsing, no cache, no pipeline) measured against the same simulator at the start of the run.
``needed/s`` is ``calls / bound``: the rate the latency bound asks for; when it is above r, no
client on this machine can meet the bound.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sft_distill import DatasetDistillationPipeline, build_config
from sft_distill.llm.cache import ResponseCache

ROOT = Path(__file__).resolve().parents[1]
# concurrency -> calls/s of a bare aiohttp client on this machine, measured at the start of a run
PLAIN_RATE: dict[int, float] = {}
WORDS_ZH = [
    "保险人",
    "投保人",
    "被保险人",
    "受益人",
    "保险合同",
    "保险费",
    "保险金",
    "如实告知",
    "解除合同",
    "赔偿",
    "给付",
    "责任",
    "期限",
    "条款",
]


def make_slices(path: Path, n: int, *, chars: int = 400) -> Path:
    """n distinct short slices (Chinese law-like sentences), written as JSONL."""
    with path.open("w", encoding="utf-8") as f:
        for i in range(n):
            sent = []
            k = i
            while sum(map(len, sent)) < chars:
                a, b, c = WORDS_ZH[k % 14], WORDS_ZH[(k // 14) % 14], WORDS_ZH[(k // 196) % 14]
                sent.append(f"第{i}条第{len(sent)}款 {a}应当依照{b}的约定履行{c}义务。")
                k = k * 31 + 7
            f.write(json.dumps({"id": f"b{i}", "content": "".join(sent)}, ensure_ascii=False))
            f.write("\n")
    return path


class SimProcess:
    """``python -m sft_distill.simulator`` in its own process."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "sft_distill.simulator", "--port", "0", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            cwd=ROOT,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        self.url = line.strip().rsplit(" ", 1)[-1]
        if not self.url.startswith("http://127.0.0.1"):
            raise RuntimeError(f"simulator did not start: {line!r}")

    def stats(self) -> dict:
        base = self.url.rsplit("/v1", 1)[0]
        with urllib.request.urlopen(f"{base}/stats", timeout=10) as r:
            return json.load(r)

    def reset(self) -> None:
        base = self.url.rsplit("/v1", 1)[0]
        req = urllib.request.Request(f"{base}/stats/reset", method="POST")
        urllib.request.urlopen(req, timeout=10).close()

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


async def _plain_client(url: str, n: int, conc: int) -> float:
    """Calls/s of a bare aiohttp + asyncio.Semaphore client (no parsing, cache or pipeline)."""
    import aiohttp

    from sft_distill.llm.prompts import generation_messages

    sem = asyncio.Semaphore(conc)
    docs = [f"第{i}条 保险人应当及时赔付保险金。" * 20 for i in range(n)]
    conn = aiohttp.TCPConnector(limit=conc)
    async with aiohttp.ClientSession(connector=conn) as http:

        async def one(doc: str) -> None:
            body = {"model": "plain", "messages": generation_messages(doc, 3)}
            async with sem, http.post(f"{url}/chat/completions", json=body) as r:
                json.loads(await r.read())

        t0 = time.perf_counter()
        await asyncio.gather(*(one(d) for d in docs))
        return n / (time.perf_counter() - t0)


def plain_client_rate(conc: int, n: int = 4000) -> float:
    """The physical limit of a Python client on this machine against a 0-latency simulator."""
    sim = SimProcess()
    try:
        return asyncio.run(_plain_client(sim.url, n, conc))
    finally:
        sim.close()


def config_for(url: str, out: Path, conc: int, *, samples: int, retries: int = 5):
    ep = {
        "api_base": url,
        "api_key": "sk-bench",
        "api_key_env": None,
        "max_concurrent": conc,
        "max_retries": retries,
        "timeout": 60,
    }
    return build_config(
        {
            "generator": {**ep, "model": "teacher"},
            "evaluators": {
                "primary": {**ep, "model": "judge-a"},
                "secondary": {**ep, "model": "judge-b"},
            },
            "samples_per_slice": samples,
            "output_dir": str(out),
            # The machinery's throughput, as the figures in benchmarks/README.md were measured
            # (every sample judged); what the gates cost is bench_quality's business.
            "gates": [],
        }
    )


def run_once(
    url: str, slices: Path, conc: int, latency_s: float, sim: SimProcess, *, samples: int = 3
) -> dict:
    out = Path(tempfile.mkdtemp(prefix="bench_out_"))
    sim.reset()
    cfg = config_for(url, out, conc, samples=samples)
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    result = asyncio.run(DatasetDistillationPipeline(cfg, show_progress=False).run(slices))
    wall = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    st = sim.stats()
    by_model = st["by_model"]
    bound = max(n * latency_s / conc for n in by_model.values()) + latency_s
    calls = sum(u["calls"] for u in result.metadata["usage"].values())
    cpu_bound = calls / PLAIN_RATE[conc] if conc in PLAIN_RATE else 0.0
    return {
        "calls": calls,
        "wall_s": wall,
        "bound_s": bound,
        "ratio": wall / bound if latency_s else float("nan"),
        "phys_ratio": wall / max(bound, cpu_bound),
        "calls_per_s": calls / wall,
        # what meeting the latency bound would take, against what a bare client can do
        "needed_per_s": calls / bound if latency_s else float("nan"),
        "cpu_ms_per_call": 1000 * cpu / max(calls, 1),
        "peak_in_flight": st["peak_in_flight"],
        "failures": result.failures,
        "kept": result.counts.after_dedup,
        "by_status": st["by_status"],
    }


def median_run(repeat: int, *args: Any, **kwargs: Any) -> dict:
    """Run a case ``repeat`` times; the run with the median figure, plus the spread seen."""
    runs = [run_once(*args, **kwargs) for _ in range(repeat)]
    latency = args[3] if len(args) > 3 else kwargs.get("latency_s", 0)
    key = "phys_ratio" if latency else "calls_per_s"
    runs.sort(key=lambda r: r[key])
    median = dict(runs[len(runs) // 2])
    median["spread"] = f"{runs[0][key]:.2f}-{runs[-1][key]:.2f}" if repeat > 1 else ""
    return median


class _CommitMeter:
    """Counts the cache writer's commits (transactions) and the time they take."""

    def __init__(self) -> None:
        self.commits = self.rows = 0
        self.seconds = 0.0
        self._commit = ResponseCache._commit

    def __enter__(self) -> _CommitMeter:
        meter, commit = self, self._commit

        def timed(cache: ResponseCache, db: Any, rows: list) -> None:
            t = time.perf_counter()
            try:
                commit(cache, db, rows)
            finally:
                meter.seconds += time.perf_counter() - t
                meter.commits += 1
                meter.rows += len(rows)

        ResponseCache._commit = timed  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        ResponseCache._commit = self._commit  # type: ignore[method-assign]


def cache_alone(mode: str, n: int = 20_000) -> float:
    """Replies/s the cache commits when fed as fast as a loop can put them (2 KB each)."""
    ResponseCache.synchronous = mode
    path = Path(tempfile.mkdtemp(prefix="bench_cache_")) / "cache.sqlite3"
    text = "保险人应当及时赔付保险金。" * 50
    t0 = time.perf_counter()
    with ResponseCache(path, exclusive=True) as cache:
        for i in range(n):
            reply = {"model": "m", "content": f"{text}{i}", "prompt_tokens": 1}
            cache.put(f"{i:040x}", reply)
    return n / (time.perf_counter() - t0)


def sync_cost(url: str, slices: Path, sim: SimProcess, repeat: int) -> list[tuple[str, dict]]:
    """The 0 ms case with the cache's ``synchronous`` at NORMAL and at FULL, runs interleaved.

    At 0 ms latency replies arrive fastest, so the writer thread's commits (one fsync each
    with FULL, batching whatever arrived meanwhile) weigh the most. Outputs go to a temporary
    directory on the machine's own disk, where an fsync is real. Also printed: the commits
    per run, the writer thread's time in them, and the cache alone fed at full speed.
    """
    runs: dict[str, list[dict]] = {"NORMAL": [], "FULL": []}
    alone: dict[str, list[float]] = {"NORMAL": [], "FULL": []}
    try:
        for _ in range(repeat):
            for mode in runs:
                ResponseCache.synchronous = mode
                with _CommitMeter() as meter:
                    result = run_once(url, slices, 64, 0.0, sim)
                result.update(commits=meter.commits, rows=meter.rows, commit_s=meter.seconds)
                runs[mode].append(result)
                alone[mode].append(cache_alone(mode))
    finally:
        ResponseCache.synchronous = "FULL"
    rows = []
    for mode, results in runs.items():
        results.sort(key=lambda r: r["calls_per_s"])
        median = dict(results[len(results) // 2])
        median["spread"] = f"{results[0]['calls_per_s']:.0f}-{results[-1]['calls_per_s']:.0f}"
        rows.append((f"0 ms, 64/endpoint, cache synchronous={mode}", median))
        rates = sorted(alone[mode])
        print(
            f"synchronous={mode}: {median['commits']} commits for {median['rows']} replies "
            f"(median run), writer busy {median['commit_s']:.2f} s of {median['wall_s']:.2f} s; "
            f"cache alone {rates[len(rates) // 2]:.0f} replies/s "
            f"({rates[0]:.0f}-{rates[-1]:.0f})"
        )
    return rows


def table(rows: list[tuple[str, dict]]) -> None:
    head = (
        f"{'case':48} {'calls':>7} {'wall s':>8} {'bound s':>8} {'wall/bound':>10} "
        f"{'wall/phys':>9} {'calls/s':>8} {'needed/s':>8} {'CPU ms/call':>11} {'peak':>5} "
        f"{'failed':>6} {'spread':>12}"
    )
    print(head)
    print("-" * len(head))
    for name, r in rows:
        print(
            f"{name:48} {r['calls']:>7} {r['wall_s']:>8.2f} {r['bound_s']:>8.2f} "
            f"{r['ratio']:>10.3f} {r['phys_ratio']:>9.3f} {r['calls_per_s']:>8.0f} "
            f"{r['needed_per_s']:>8.0f} {r['cpu_ms_per_call']:>11.3f} "
            f"{r['peak_in_flight']:>5} {r['failures']:>6} {r.get('spread', ''):>12}"
        )


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smaller sizes")
    ap.add_argument("--memory", action="store_true", help="peak RSS while streaming many slices")
    ap.add_argument("--only", help="comma list of cases: latency64,latency512,zero,faults,sync")
    ap.add_argument(
        "--repeat", type=int, default=3, help="runs per case; the median is shown (default 3)"
    )
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench_in_"))
    rows: list[tuple[str, dict]] = []
    cases = set((args.only or "latency64,latency512,zero,faults,sync").split(","))

    if args.memory:
        for n in (10_000, 100_000):
            slices = make_slices(tmp / f"m{n}.jsonl", n, chars=200)
            code = (
                f"import asyncio,sys,time;sys.path.insert(0,{str(ROOT)!r});"
                "from benchmarks.bench_pipeline import *;"
                f"sim=SimProcess();cfg=config_for(sim.url,Path({str(tmp / f'mo{n}')!r}),256,"
                "samples=1);t=time.perf_counter();"
                "r=asyncio.run(DatasetDistillationPipeline(cfg,show_progress=False)"
                f".run({str(slices)!r}));"
                "print(r.counts.samples_generated,time.perf_counter()-t,rss_mb());sim.close()"
            )
            p = subprocess.run(
                [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT
            )
            samples, wall, rss = p.stdout.split()
            print(
                f"{n:>7} slices: {samples} samples, {float(wall):.0f} s, "
                f"peak RSS {float(rss):.0f} MB"
            )
        return

    lat, jit = 200, 150
    for conc in (64, 512):
        PLAIN_RATE[conc] = plain_client_rate(conc)
        print(f"plain aiohttp + semaphore, {conc} in flight, 0 ms: {PLAIN_RATE[conc]:.0f} calls/s")
    if cases & {"latency64", "latency512", "faults"}:
        n64 = 150 if args.quick else 600  # ~6 s ideal, as the 2,000-call peer runs
        n512 = 600 if args.quick else 1500
        sim = SimProcess("--latency-ms", str(lat), "--jitter-ms", str(jit))
        try:
            if "latency64" in cases:
                s = make_slices(tmp / "l64.jsonl", n64)
                rows.append(
                    (
                        "64 in flight/endpoint, 200±150 ms",
                        median_run(args.repeat, sim.url, s, 64, lat / 1000, sim),
                    )
                )
            if "latency512" in cases:
                s = make_slices(tmp / "l512.jsonl", n512)
                rows.append(
                    (
                        "512 in flight/endpoint, 200±150 ms",
                        median_run(args.repeat, sim.url, s, 512, lat / 1000, sim),
                    )
                )
        finally:
            sim.close()
    if "faults" in cases:
        sim = SimProcess(
            "--latency-ms",
            str(lat),
            "--jitter-ms",
            str(jit),
            "--rate-limit-rate",
            "0.02",
            "--retry-after-s",
            "1",
            "--fail-rate",
            "0.02",
            "--faults",
            "500",
        )
        try:
            s = make_slices(tmp / "f64.jsonl", 150 if args.quick else 600)
            rows.append(
                (
                    "64/endpoint, 2% 429 (Retry-After 1 s) + 2% 500",
                    median_run(args.repeat, sim.url, s, 64, lat / 1000, sim),
                )
            )
        finally:
            sim.close()
    if "zero" in cases:
        sim = SimProcess()
        try:
            s = make_slices(tmp / "z.jsonl", 700 if args.quick else 1500)
            rows.append(
                ("0 ms latency, 64/endpoint", median_run(args.repeat, sim.url, s, 64, 0.0, sim))
            )
        finally:
            sim.close()
    if "sync" in cases:
        sim = SimProcess()
        try:
            s = make_slices(tmp / "s.jsonl", 700 if args.quick else 1500)
            rows += sync_cost(sim.url, s, sim, args.repeat)
        finally:
            sim.close()
    print(f"\npython {' '.join(sys.argv)}  (cpus: {os.cpu_count()})\n")
    table(rows)


if __name__ == "__main__":
    main()
