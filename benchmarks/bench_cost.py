"""Cost benchmark (issue 13): billed input-token equivalents per kept sample, four ways.

The same job (the shared Chinese slices, ``../shared/data/slices_zh.jsonl``, when present, else
``examples/slices.jsonl``) is run with ``sft-distill run --dry-run`` against the simulator:

- ``today``: what the package did before issue 13: one judge call per sample
  (``judge_batch_size`` 1), every judge asked about every sample (``early_drop`` false), no
  structured output, and no prompt-cache credit (every prompt token billed at the full input
  price, as nothing was laid out for caches or counted);
- ``default``: the new defaults (batched judging, structured output, cached prompt tokens billed
  at ``--cached-share`` of the input price);
- ``batch``: the new defaults with ``--batch`` (the provider Batch API, billed at
  ``--batch-share``); "n/a" when this build's CLI has no ``--batch``;
- ``unbatched``: the new defaults but one judge call per sample (``judge_batch_size`` 1), to
  tell what batching adds to the prompt cache.

Per way and endpoint it prints calls, prompt, cached and completion tokens and the billed
input-equivalents ``(prompt - cached) + cached * cached_share + completion * completion_weight``
(times ``batch_share`` for the requests that went through a Batch API, from the usage's
``batch_*`` figures; the structured-output probe stays online), then the kept samples, the billed
figure per kept sample, the ratios today/way, whether the kept sets (manifest ids) are the same,
and how far each way's scores are from today's::

    python benchmarks/bench_cost.py
    python benchmarks/bench_cost.py --data examples/slices.jsonl --completion-weight 3 --json

Token counts come from each run's ``metadata.json`` (``usage``: the whole run).

``--against-commit REV`` (e.g. ``c18c467``, v1 as released) also runs the same job with the
package as it was at REV (a temporary ``git worktree``, its own prompts and defaults) and prints
its billed figure per kept sample beside the ways above. Its kept set is not comparable (the
quality gates and the judge rubric changed since), so only the per-kept figures are compared.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data" / "slices_zh.jsonl"
SHIPPED = REPO / "examples" / "slices.jsonl"
WAYS = ("today", "default", "batch", "unbatched")
# today: per-sample judging and the replies asked as they were before structured output.
_TODAY = {
    "judge_batch_size": 1,
    "early_drop": False,
    "generator": {"structured_output": "none"},
    "evaluators": {
        "primary": {"structured_output": "none"},
        "secondary": {"structured_output": "none"},
    },
}


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "sft_distill", *args]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=False)


def batch_support() -> str | None:
    """How this build asks for the provider Batch API: "flag" (``--batch``), "config"
    (``batch: true``), or None."""
    if "--batch" in _cli("run", "--help").stdout:
        return "flag"
    from sft_distill.config.models import DistillConfig

    return "config" if "batch" in DistillConfig.model_fields else None


def run_way(
    way: str, data: Path, work: Path, job: dict[str, Any], batch: str | None = None
) -> dict[str, Any]:
    """One dry run; its metadata usage and the kept sample ids."""
    out = work / way
    cfg = work / f"{way}.json"
    way_cfg = {"today": _TODAY, "unbatched": {"judge_batch_size": 1}}.get(way, {})
    if way == "batch":
        # Polled often: the simulator answers a batch at once (what is billed does not change).
        way_cfg = {"batch_poll_s": 0.2, "batch_collect_s": 0.2}
        if batch == "config":
            way_cfg["batch"] = True
    cfg.write_text(json.dumps({**job, **way_cfg}), encoding="utf-8")
    args = ["run", "-i", str(data), "-o", str(out), "-c", str(cfg), "--dry-run", "--quiet"]
    if way == "batch" and batch == "flag":
        args.append("--batch")
    done = _cli(*args)
    if done.returncode != 0:
        raise SystemExit(f"bench_cost: the {way} run failed ({done.returncode}): {done.stderr}")
    meta = json.loads((out / "metadata.json").read_text(encoding="utf-8"))
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    kept = sorted(i for ids in manifest["samples"].values() for i in ids)
    return {
        "usage": meta["usage"],
        "kept": kept,
        "scores": judged_scores(out),
        "not_asked": not_asked(out),
    }


def run_commit(rev: str, data: Path, work: Path, job: dict[str, Any]) -> dict[str, Any]:
    """The same job's dry run with the package as it was at ``rev`` (a temporary worktree)."""
    tree = work / f"at-{rev}"
    add = ["git", "-C", str(REPO), "worktree", "add", "--detach", "-f", str(tree), rev]
    made = subprocess.run(add, capture_output=True, text=True, check=False)
    if made.returncode != 0:
        raise SystemExit(f"bench_cost: --against-commit {rev}: {made.stderr.strip()}")
    try:
        cfg = work / f"at-{rev}.json"
        cfg.write_text(json.dumps(job), encoding="utf-8")
        out = work / f"out-{rev}"
        cmd = [sys.executable, "scripts/run_pipeline.py", "--input", str(data), "--output"]
        cmd += [str(out), "--config", str(cfg), "--dry-run", "-q"]
        done = subprocess.run(
            cmd, cwd=tree, env={**os.environ, "PYTHONPATH": str(tree)}, capture_output=True,
            text=True, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            raise SystemExit(f"bench_cost: the run at {rev} failed: {done.stderr.strip()}")
        meta = json.loads((out / "metadata.json").read_text(encoding="utf-8"))
        manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
        kept = sorted(i for ids in manifest["samples"].values() for i in ids)
        return {"usage": meta["usage"], "kept": kept}
    finally:
        subprocess.run(
            ["git", "-C", str(REPO), "worktree", "remove", "--force", str(tree)],
            capture_output=True, check=False,
        )  # fmt: skip


def judged_scores(out: Path) -> dict[tuple[str, str, str], float]:
    """Every score given: (sample id, evaluator, dimension) -> score."""
    scores = {}
    with (out / "generated_raw.jsonl").open(encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            for j in row.get("judgements") or []:
                for dim, value in (j.get("scores") or {}).items():
                    scores[(row["id"], j["evaluator"], dim)] = value
    return scores


def not_asked(out: Path) -> int:
    """Judgements not asked (``early_drop``: the judges before had voted the sample down)."""
    with (out / "generated_raw.jsonl").open(encoding="utf-8") as f:
        rows = [json.loads(line) for line in f]
    return sum(1 for r in rows for j in r.get("judgements") or [] if j.get("skipped"))


def agreement(a: dict[Any, float], b: dict[Any, float]) -> dict[str, Any]:
    """How far two runs' scores of the same samples are apart."""
    common = sorted(set(a) & set(b))
    diffs = [abs(a[k] - b[k]) for k in common]
    samples = {k[0] for k in common}
    changed = {k[0] for k, d in zip(common, diffs, strict=True) if d}
    return {
        "samples": len(samples),
        "scores": len(common),
        "samples_with_a_different_score": len(changed),
        "max_abs_difference": max(diffs, default=0.0),
        "mean_abs_difference": round(sum(diffs) / len(diffs), 4) if diffs else 0.0,
        "only_in_one": len(set(a) ^ set(b)),
    }


def billed(u: dict[str, Any], *, cached_share: float, weight: float, batch_share: float) -> float:
    """Input-token equivalents of an endpoint's usage: its batched requests (``batch_*`` of the
    run's usage, when the build has a Batch API) at ``batch_share``, the rest at full price."""
    run = u.get("this_invocation") or {}
    part = {k: run.get(f"batch_{k}", 0) for k in ("prompt_tokens", "cached_prompt_tokens")}
    part["completion_tokens"] = run.get("batch_completion_tokens", 0)

    def eq(prompt: int, cached: int, completion: int) -> float:
        return (prompt - cached) + cached * cached_share + completion * weight

    keys = ("prompt_tokens", "cached_prompt_tokens", "completion_tokens")
    online = eq(*(u.get(k, 0) - part[k] for k in keys))
    return online + eq(*(part[k] for k in keys)) * batch_share


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Run the ways and put the figures together."""
    data = Path(args.data) if args.data else (SHARED if SHARED.exists() else SHIPPED)
    ways: dict[str, Any] = {}
    job = {} if args.samples_per_slice is None else {"samples_per_slice": args.samples_per_slice}
    with tempfile.TemporaryDirectory(prefix="bench_cost_") as tmp:
        batch = batch_support()
        for way in WAYS:
            if way == "batch" and batch is None:
                ways[way] = None
                continue
            ways[way] = run_way(way, data, Path(tmp), job, batch)
        rev = args.against_commit
        before = run_commit(rev, data, Path(tmp), job) if rev else None
    for way, res in ways.items():
        if res is None:
            continue
        cached_share = 1.0 if way == "today" else args.cached_share
        batch_share = args.batch_share
        rows = {}
        for name, u in res["usage"].items():
            if not isinstance(u, dict) or "calls" not in u:
                continue
            rows[name] = {
                "calls": u.get("calls", 0),
                "batched_calls": (u.get("this_invocation") or {}).get("batch_calls", 0),
                "prompt_tokens": u.get("prompt_tokens", 0),
                "cached_tokens": u.get("cached_prompt_tokens", 0),
                "completion_tokens": u.get("completion_tokens", 0),
                "billed": billed(
                    u,
                    cached_share=cached_share,
                    weight=args.completion_weight,
                    batch_share=batch_share,
                ),
            }
        total = sum(r["billed"] for r in rows.values())
        res["endpoints"] = rows
        res["billed"] = total
        res["per_kept"] = total / len(res["kept"]) if res["kept"] else float("inf")
    today = ways["today"]
    summary: dict[str, Any] = {"data": str(data), "ways": {}}
    for way, res in ways.items():
        if res is None:
            summary["ways"][way] = None
            continue
        summary["ways"][way] = {
            "endpoints": res["endpoints"],
            "kept": len(res["kept"]),
            "billed": round(res["billed"]),
            "per_kept": round(res["per_kept"], 1),
            "ratio": round(today["per_kept"] / res["per_kept"], 2),
            "same_kept_set": res["kept"] == today["kept"],
            "agreement_with_today": agreement(today["scores"], res["scores"]),
            "not_asked": res.get("not_asked", 0),
        }
    if before is not None:
        rows = {
            name: billed(u, cached_share=1.0, weight=args.completion_weight, batch_share=1.0)
            for name, u in before["usage"].items()
            if isinstance(u, dict) and "calls" in u
        }
        per_kept = sum(rows.values()) / len(before["kept"]) if before["kept"] else float("inf")
        summary["against_commit"] = {
            "rev": args.against_commit,
            "kept": len(before["kept"]),
            "billed": round(sum(rows.values())),
            "per_kept": round(per_kept, 1),
            "ratios": {
                way: round(per_kept / res["per_kept"], 2)
                for way, res in summary["ways"].items()
                if res is not None
            },
        }
    return summary


def _calls(row: dict[str, Any]) -> str:
    batched = row.get("batched_calls", 0)
    return f"{row['calls']:,}" + (f" ({batched:,} batched)" if batched else "")


def table(summary: dict[str, Any], args: argparse.Namespace) -> str:
    """The figures as a markdown table."""
    head = (
        "| way | endpoint | calls | prompt | cached | completion | billed input-eq | kept | "
        "per kept | today / way | same kept set |"
    )
    lines = [head, "|" + "---|" * 11]
    for way in WAYS:
        res = summary["ways"].get(way)
        if res is None:
            lines.append(f"| {way} | n/a (needs --batch) | | | | | | | | | |")
            continue
        for name, r in res["endpoints"].items():
            lines.append(
                f"| {way} | {name} | {_calls(r)} | {r['prompt_tokens']:,} | "
                f"{r['cached_tokens']:,} | {r['completion_tokens']:,} | {r['billed']:,.0f} "
                "| | | | |"
            )
        lines.append(
            f"| {way} | **all** | | | | | {res['billed']:,} | {res['kept']} | "
            f"{res['per_kept']:,.1f} | {res['ratio']:.2f}x | "
            f"{'yes' if res['same_kept_set'] else 'no'} |"
        )
    lines.append("")
    for way in WAYS[1:]:
        res = summary["ways"].get(way)
        if res is not None:
            ag = res["agreement_with_today"]
            lines.append(
                f"{way} vs today: {ag['samples']} samples judged by both, "
                f"{ag['samples_with_a_different_score']} with a different score, largest "
                f"difference {ag['max_abs_difference']:g}, scores in one run only: "
                f"{ag['only_in_one']}; judgements not asked (early_drop): "
                f"{res.get('not_asked', 0)}."
            )
    at = summary.get("against_commit")
    if at is not None:
        ratios = ", ".join(f"{w} {r:.2f}x" for w, r in at["ratios"].items())
        lines.append(
            f"at {at['rev']} (its own prompts and defaults, no cache credit): {at['kept']} kept, "
            f"{at['billed']:,} billed, {at['per_kept']:,.1f} per kept sample; "
            f"{at['rev']} / way: {ratios}."
        )
    lines.append(
        f"data: {summary['data']}; cached tokens at {args.cached_share:g} of the input price "
        f"(today: 1), batch at {args.batch_share:g}, completion tokens weigh "
        f"{args.completion_weight:g} input tokens."
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", help="slices JSONL (default: ../shared/data/slices_zh.jsonl)")
    p.add_argument("--cached-share", type=float, default=0.1, help="price of a cached token")
    p.add_argument("--batch-share", type=float, default=0.5, help="price share when batched")
    p.add_argument(
        "--completion-weight", type=float, default=4.0, help="a completion token in input tokens"
    )
    p.add_argument(
        "--samples-per-slice", type=int, help="the job's samples_per_slice (default: the default)"
    )
    p.add_argument(
        "--against-commit",
        metavar="REV",
        help="also run the job with the package as it was at REV (e.g. c18c467, v1)",
    )
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = p.parse_args(argv)
    summary = measure(args)
    print(json.dumps(summary, indent=2) if args.json else table(summary, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
