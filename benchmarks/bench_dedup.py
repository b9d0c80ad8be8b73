"""Dedup benchmark: Jaccard on real data, recall against an exact oracle, scaling, embeddings.

One command prints one table (see benchmarks/README.md for the figures and what they mean)::

    python benchmarks/bench_dedup.py                       # every section, about 4 minutes
    python benchmarks/bench_dedup.py --scale 250000,500000,1000000   # the 1M target, about 6
    python benchmarks/bench_dedup.py --sections jaccard,recall --datasets t0

Every timed case runs in a fresh subprocess, so its peak RSS (``ru_maxrss``) is its own. Datasets
missing from ``--data-dir`` (default ``../shared/data``) are skipped with a message. The exact
oracle needs scipy (``pip install -e '.[bench]'``); the engine comparison uses rensa and datasketch
when installed; the approximate embedding index needs faiss-cpu (extra ``ann``).
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import math
import random
import resource
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from sft_distill.selection.dedup.embedding import DEFAULT_APPROX_ABOVE, EmbeddingDeduplicator
from sft_distill.selection.dedup.jaccard import (
    JaccardDeduplicator,
    _codes,
    _drop_mask,
    _shingle_batch,
    _sketch,
    shingle_hashes,
)
from sft_distill.selection.dedup.jaccard import casefold_compact as normalize_text

REPO = Path(__file__).resolve().parents[1]
DATA_DIR = REPO.parent / "shared" / "data"
DATASETS = {
    "t0": "t0_train_50k.jsonl.gz",
    "alpaca_en": "alpaca_data_en.jsonl",
    "alpaca_zh": "alpaca_data_zh.jsonl",
}
SECTIONS = ("jaccard", "recall", "engines", "scaling", "embedding")
THRESHOLD = 0.8
NGRAM = 5


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MB (Linux reports KB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --------------------------------------------------------------------------- data


def load_texts(data_dir: Path, name: str) -> list[str] | None:
    """Texts of a dataset (instruction + input + output, as the pipeline does), or None."""
    path = data_dir / DATASETS[name]
    if not path.exists():
        return None
    opener = gzip.open if path.suffix == ".gz" else open
    texts = []
    with opener(path, "rt", encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            parts = [r.get("instruction", ""), r.get("input", ""), r.get("output", "")]
            texts.append("\n".join(p for p in parts if p))
    return texts


def sentence_pool(data_dir: Path, limit: int = 400_000) -> list[str]:
    """Sentences to build synthetic documents from: real ones when the data is present."""
    pool: list[str] = []
    for name in ("t0", "alpaca_en", "alpaca_zh"):
        texts = load_texts(data_dir, name) or []
        for t in texts:
            for s in t.replace("。", "。\n").replace(". ", ".\n").split("\n"):
                if 20 <= len(s) <= 400:
                    pool.append(s)
    if not pool:
        rng = random.Random(0)
        vocab = [f"w{i}" for i in range(5000)]
        pool = [" ".join(rng.choices(vocab, k=rng.randint(6, 30))) + "." for _ in range(limit)]
    random.Random(1).shuffle(pool)
    return pool[:limit]


def mutate(rng: random.Random, text: str, rate: float) -> str:
    """Replace about ``rate`` of the words (or CJK characters); change case and spacing."""
    if " " in text:
        words = text.split(" ")
        for i in range(len(words)):
            if rng.random() < rate:
                words[i] = rng.choice(words)
        text = " ".join(words)
    else:
        chars = list(text)
        for i in range(len(chars)):
            if rng.random() < rate:
                chars[i] = rng.choice(chars)
        text = "".join(chars)
    return text.upper() if rng.random() < 0.3 else text.replace(". ", " .  ")


def generated_corpus(
    n: int, pool: list[str], seed: int, planted: list[tuple[int, int, float]]
) -> Iterator[str]:
    """``n`` documents of 2-6 pool sentences; 15% are mutated copies of an earlier document.

    Appends (source, copy, exact jaccard) of each planted copy to ``planted``.
    """
    rng = random.Random(seed)
    recent: list[tuple[int, str]] = []
    for i in range(n):
        if recent and rng.random() < 0.15:
            src, base = rng.choice(recent)
            text = mutate(rng, base, rng.choice((0.0, 0.01, 0.02, 0.04, 0.08)))
            a, b = shingle_hashes(base), shingle_hashes(text)
            inter = len(np.intersect1d(a, b, assume_unique=True))
            planted.append((src, i, inter / (len(a) + len(b) - inter)))
        else:
            text = " ".join(rng.choices(pool, k=rng.randint(2, 6)))
            if len(recent) < 20_000:
                recent.append((i, text))
            else:
                recent[rng.randrange(len(recent))] = (i, text)
        yield text


# --------------------------------------------------------------------------- exact oracle


def exact_pairs(texts: list[str], threshold: float, ngram: int = NGRAM) -> set[tuple[int, int]]:
    """Every pair (i, j), i < j, with exact n-gram Jaccard >= threshold: no hashing at all.

    N-grams are the code points themselves (21 bits each, packed three to a uint64 column), so
    two n-grams share an id only when they are equal; intersections are a sparse matrix product.
    """
    from scipy import sparse

    cols = math.ceil(ngram / 3)
    windows, docs = [], []
    for d, t in enumerate(texts):
        c = np.frombuffer(normalize_text(t).encode("utf-32-le"), "<u4").astype(np.uint64)
        if len(c) < ngram:  # a short text is one window, padded with zeros (as dedup does)
            c = np.concatenate([c, np.zeros(ngram - len(c), np.uint64)])
        w = np.lib.stride_tricks.sliding_window_view(c, ngram)
        packed = np.zeros((len(w), cols), np.uint64)
        for k in range(ngram):
            packed[:, k // 3] |= w[:, k] << np.uint64(21 * (2 - k % 3))
        windows.append(packed)
        docs.append(np.full(len(w), d, np.int64))
    allw, alld = np.concatenate(windows), np.concatenate(docs)
    order = np.lexsort(allw.T[::-1])
    sw = allw[order]
    new = np.ones(len(sw), bool)
    new[1:] = (sw[1:] != sw[:-1]).any(axis=1)
    token = np.empty(len(sw), np.int64)
    token[order] = np.cumsum(new) - 1
    x = sparse.csr_matrix(
        (np.ones(len(alld), np.int32), (alld, token)), shape=(len(texts), int(new.sum()))
    )
    x.sum_duplicates()
    x.data[:] = 1
    sizes = np.diff(x.indptr)
    xt = x.T.tocsr()
    out: set[tuple[int, int]] = set()
    for lo in range(0, len(texts), 1000):
        inter = (x[lo : lo + 1000] @ xt).tocoo()
        i, j, v = inter.row + lo, inter.col, inter.data
        keep = j > i
        i, j, v = i[keep], j[keep], v[keep]
        sim = v / (sizes[i] + sizes[j] - v)
        hit = sim >= threshold - 1e-12
        out.update(zip(i[hit].tolist(), j[hit].tolist(), strict=True))
    return out


def greedy_exact(n: int, pairs: set[tuple[int, int]], scores: list[float]) -> int:
    """Drops made by the greedy rule on the exact pair graph (ids are str(index))."""
    order = sorted(range(n), key=lambda i: (-scores[i], str(i)))
    nbrs: dict[int, list[int]] = {}
    for a, b in pairs:
        nbrs.setdefault(a, []).append(b)
        nbrs.setdefault(b, []).append(a)
    kept: set[int] = set()
    drops = 0
    for i in order:
        if any(j in kept for j in nbrs.get(i, ())):
            drops += 1
        else:
            kept.add(i)
    return drops


# --------------------------------------------------------------------------- cases


def run_jaccard(texts: list[str], scores: list[float]) -> dict[str, Any]:
    """Add every text, resolve; time both."""
    rss_loaded = peak_rss_mb()
    d = JaccardDeduplicator(threshold=THRESHOLD, ngram=NGRAM)
    t0 = time.perf_counter()
    for i, (t, s) in enumerate(zip(texts, scores, strict=True)):
        d.add(str(i), t, s)
    d._flush()
    t1 = time.perf_counter()
    mapping = d.resolve()
    t2 = time.perf_counter()
    return {
        "n": len(texts),
        "add_s": t1 - t0,
        "resolve_s": t2 - t1,
        "total_s": t2 - t0,
        "dropped": len(mapping),
        "verified": d.verified,
        "rss_loaded_mb": rss_loaded,
        "rss_peak_mb": peak_rss_mb(),
        "spill_mb": d._texts.nbytes / 2**20,
    }


def case_jaccard(args: argparse.Namespace, name: str) -> dict[str, Any]:
    texts = load_texts(args.data_dir, name)
    assert texts is not None
    scores = [float(random.Random(i).randint(0, 20)) / 2 for i in range(len(texts))]
    return run_jaccard(texts, scores)


def case_recall(args: argparse.Namespace, name: str, pick: str) -> dict[str, Any]:
    texts = load_texts(args.data_dir, name)
    assert texts is not None
    n = min(args.recall_n, len(texts))
    idx = list(range(n)) if pick == "first" else random.Random(7).sample(range(len(texts)), n)
    sub = [texts[i] for i in idx]
    scores = [float(random.Random(i).randint(0, 20)) / 2 for i in range(n)]
    t0 = time.perf_counter()
    exact = exact_pairs(sub, THRESHOLD)
    t_oracle = time.perf_counter() - t0
    d = JaccardDeduplicator(threshold=THRESHOLD, ngram=NGRAM)
    for i, t in enumerate(sub):
        d.add(str(i), t, scores[i])
    found = {tuple(sorted((int(a), int(b)))) for a, b, _ in d.near_duplicate_pairs()}
    mapping = d.resolve()
    kept = set(range(n)) - {int(k) for k in mapping}
    hits = found & exact
    return {
        "n": n,
        "exact_pairs": len(exact),
        "pair_recall": len(hits) / len(exact) if exact else 1.0,
        "pair_precision": len(hits) / len(found) if found else 1.0,
        "mapping_precision": sum(
            tuple(sorted((int(a), int(b)))) in exact for a, b in mapping.items()
        )
        / len(mapping)
        if mapping
        else 1.0,
        "missed_kept_pairs": sum(a in kept and b in kept for a, b in exact),
        "dropped": len(mapping),
        "dropped_exact_greedy": greedy_exact(n, exact, scores),
        "oracle_s": t_oracle,
    }


def k_perm_minhash(x: np.ndarray, counts: np.ndarray, perms: int) -> np.ndarray:
    """The previous signature code: ``perms`` affine hash functions mod 2^32 over every shingle."""
    rng = np.random.default_rng(0)
    a = (rng.integers(0, 1 << 32, perms, dtype=np.uint64) | np.uint64(1)).astype(np.uint32)
    b = rng.integers(0, 1 << 32, perms, dtype=np.uint64).astype(np.uint32)
    sig = np.empty((len(counts), perms), np.uint32)
    ends = np.cumsum(counts)
    starts = ends - counts
    doc = 0
    while doc < len(counts):
        last = max(int(np.searchsorted(ends, starts[doc] + 2048, side="right")), doc + 1)
        lo, hi = int(starts[doc]), int(ends[last - 1])
        block = np.multiply(x[lo:hi, None], a[None, :])
        block += b
        sig[doc:last] = np.minimum.reduceat(block, starts[doc:last] - lo, axis=0)
        doc = last
    return sig


def case_engines(args: argparse.Namespace) -> dict[str, Any]:
    """The signature step alone, on the same shingle hashes, for each MinHash implementation."""
    texts = load_texts(args.data_dir, "t0")
    assert texts is not None
    hashes, counts = [], []
    for t in texts:
        c = _codes(t)
        c = c[~_drop_mask(c)]
        h, k = _shingle_batch(c, np.array([len(c)]), NGRAM)
        hashes.append(h)
        counts.append(int(k[0]))
    flat, cnt = np.concatenate(hashes), np.array(counts)
    ends = np.cumsum(cnt)
    out: dict[str, Any] = {"n": len(texts), "shingles": len(flat)}
    key = np.uint64(12345)
    t0 = time.perf_counter()
    for s in range(0, len(cnt), 1000):
        lo, hi = ends[s] - cnt[s], ends[min(s + 1000, len(cnt)) - 1]
        _sketch(flat[lo:hi], cnt[s : s + 1000], 126, key)
    out["numpy_oph_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    k_perm_minhash(flat.astype(np.uint32), cnt, 126)
    out["numpy_126perm_s"] = time.perf_counter() - t0
    try:
        import rensa

        offsets = np.concatenate([[0], ends]).astype(np.uint64)
        t0 = time.perf_counter()
        rensa.RMinHash.digest_matrix_from_flat_token_hashes(flat, offsets, 126, 0)
        out["rensa_rminhash_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        rensa.RMinHash.digest_matrix_from_flat_token_hashes_rho(flat, offsets, 126, 0)
        out["rensa_rho_s"] = time.perf_counter() - t0
    except ImportError:
        out["rensa"] = "not installed"
    try:
        from datasketch import MinHash

        sample = 2000
        t0 = time.perf_counter()
        for h in hashes[:sample]:
            m = MinHash(num_perm=126, hashfunc=int, scheme="affine64")
            m.update_batch(h.tolist())
        out["datasketch_s_extrapolated"] = (time.perf_counter() - t0) * len(texts) / sample
    except ImportError:
        out["datasketch"] = "not installed"
    return out


def case_scaling(args: argparse.Namespace, n: int) -> dict[str, Any]:
    pool = sentence_pool(args.data_dir)
    rss_pool = peak_rss_mb()
    planted: list[tuple[int, int, float]] = []
    d = JaccardDeduplicator(threshold=THRESHOLD, ngram=NGRAM)
    rng = random.Random(3)
    t_add = 0.0
    t0 = time.perf_counter()
    for i, text in enumerate(generated_corpus(n, pool, seed=11, planted=planted)):
        s = time.perf_counter()
        d.add(f"g{i:08d}", text, float(rng.randint(0, 20)) / 2)
        t_add += time.perf_counter() - s
    s = time.perf_counter()
    d._flush()
    t_add += time.perf_counter() - s
    s = time.perf_counter()
    mapping = d.resolve()
    t_resolve = time.perf_counter() - s
    wall = time.perf_counter() - t0
    dropped = {int(k[1:]) for k in mapping}
    true = [(a, b) for a, b, j in planted if j >= THRESHOLD]
    missed = sum(a not in dropped and b not in dropped for a, b in true)
    return {
        "n": n,
        "add_s": t_add,
        "resolve_s": t_resolve,
        "dedup_s": t_add + t_resolve,
        "wall_s": wall,
        "dropped": len(mapping),
        "planted_true": len(true),
        "planted_recall": 1 - missed / max(1, len(true)),
        "rss_pool_mb": rss_pool,
        "rss_peak_mb": peak_rss_mb(),
        "spill_mb": d._texts.nbytes / 2**20,
    }


def clustered(n: int, dim: int, seed: int) -> np.ndarray:
    """Unit vectors in 2,000 topic clusters; 20% are noisy copies (cosine ~0.98) of another."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((2000, dim), dtype=np.float32)
    x = centres[rng.integers(0, 2000, n)] * np.float32(0.8)
    x += rng.standard_normal((n, dim), dtype=np.float32)
    dup = np.flatnonzero(rng.random(n) < 0.2)
    src = rng.integers(0, n, len(dup))
    x[dup] = x[src] + np.float32(0.15) * rng.standard_normal((len(dup), dim), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def case_embedding(args: argparse.Namespace, n: int, approx: bool, cached: bool) -> dict[str, Any]:
    x = clustered(n, 384, seed=5)
    texts = [f"text {i}" for i in range(n)]
    row = {t: i for i, t in enumerate(texts)}
    scores = np.random.default_rng(6).integers(0, 20, n).astype(float)
    calls = 0

    async def embed(batch: list[str]) -> np.ndarray:
        nonlocal calls
        calls += 1
        return x[[row[t] for t in batch]]

    rss_loaded = peak_rss_mb()

    async def run(cache: Any) -> tuple[dict[str, str], EmbeddingDeduplicator]:
        d = EmbeddingDeduplicator(
            embed,
            batch_size=256,
            approx_above=DEFAULT_APPROX_ABOVE if approx else None,
            cache=cache,
            namespace="bench",
        )
        for i, t in enumerate(texts):
            d.add(t, t, float(scores[i]))
        return await d.aresolve(), d

    out: dict[str, Any] = {"n": n, "approx": approx}
    if cached:
        import tempfile

        from sft_distill.llm.cache import ResponseCache

        with tempfile.TemporaryDirectory() as tmp, ResponseCache(Path(tmp) / "c.sqlite3") as c:
            t0 = time.perf_counter()
            asyncio.run(run(c))
            out["first_run_s"] = time.perf_counter() - t0
            calls = 0
            t0 = time.perf_counter()
            mapping, d = asyncio.run(run(c))
            out["total_s"] = time.perf_counter() - t0
            out["embed_calls_on_rerun"] = calls
    else:
        t0 = time.perf_counter()
        mapping, d = asyncio.run(run(None))
        out["total_s"] = time.perf_counter() - t0
    out.update(dropped=len(mapping), rss_loaded_mb=rss_loaded, rss_peak_mb=peak_rss_mb())
    out["approximate_used"] = d.approximate
    # Recall against exact on a sample: a sample "should be dropped" when a kept sample ranked
    # before it has cosine >= threshold; precision: every drop names such a sample.
    rank = np.lexsort((np.array([int(t.split()[1]) for t in texts]), -scores))
    pos = np.empty(n, np.int64)
    pos[rank] = np.arange(n)
    kept = np.ones(n, bool)
    kept[[row[k] for k in mapping]] = False
    sample = np.random.default_rng(8).choice(n, min(n, 3000), replace=False)
    should = did = 0
    for lo in range(0, len(sample), 100):
        cols = sample[lo : lo + 100]
        sims = x @ x[cols].T
        for k, i in enumerate(cols.tolist()):
            before = kept & (pos < pos[i])
            if before.any() and float(sims[before, k].max()) >= 0.95:
                should += 1
                did += texts[i] in mapping
    out["sample_recall"] = did / max(1, should)
    out["precision"] = float(
        np.mean([float(x[row[a]] @ x[row[b]]) >= 0.95 - 1e-6 for a, b in mapping.items()] or [1])
    )
    return out


# --------------------------------------------------------------------------- driver


def run_case(args: argparse.Namespace, spec: list[str]) -> dict[str, Any] | None:
    """Run one case in a fresh interpreter and return its result."""
    cmd = [sys.executable, __file__, "--data-dir", str(args.data_dir)]
    cmd += ["--recall-n", str(args.recall_n), "--case", *spec]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        print(f"  case {spec} failed:\n{proc.stderr[-2000:]}", file=sys.stderr)
        return None
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def dispatch(args: argparse.Namespace) -> dict[str, Any]:
    kind, *rest = args.case
    if kind == "jaccard":
        return case_jaccard(args, rest[0])
    if kind == "recall":
        return case_recall(args, rest[0], rest[1])
    if kind == "engines":
        return case_engines(args)
    if kind == "scaling":
        return case_scaling(args, int(rest[0]))
    if kind == "embedding":
        return case_embedding(args, int(rest[0]), rest[1] == "approx", rest[2] == "cached")
    raise SystemExit(f"unknown case {args.case}")


def fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4f}" if abs(v) < 10 else f"{v:.1f}"
    return str(v)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sections", default=",".join(SECTIONS), help=f"of {','.join(SECTIONS)}")
    p.add_argument("--datasets", default=",".join(DATASETS), help=f"of {','.join(DATASETS)}")
    p.add_argument("--data-dir", type=Path, default=DATA_DIR)
    p.add_argument("--recall-n", type=int, default=5000, help="records in each recall subset")
    p.add_argument("--scale", default="100000,200000,400000", help="generated corpus sizes")
    p.add_argument("--emb-n", type=int, default=52_000, help="vectors for the exact embedding run")
    p.add_argument("--approx-n", type=int, default=250_000, help="vectors for the approximate run")
    p.add_argument("--case", nargs="+", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.case:
        print(json.dumps(dispatch(args)))
        return
    sections = args.sections.split(",")
    datasets = [
        d
        for d in args.datasets.split(",")
        if d in DATASETS and (args.data_dir / DATASETS[d]).exists()
    ]
    for d in set(args.datasets.split(",")) - set(datasets):
        print(f"skipping dataset {d}: {args.data_dir / DATASETS.get(d, d)} not found")
    cases: list[tuple[str, list[str]]] = []
    if "jaccard" in sections:
        cases += [(f"jaccard {d}", ["jaccard", d]) for d in datasets]
    if "recall" in sections:
        try:
            import scipy  # noqa: F401

            for d in datasets:
                cases += [(f"recall {d} {w}", ["recall", d, w]) for w in ("first", "random")]
        except ImportError:
            print("skipping recall: scipy not installed (pip install -e '.[bench]')")
    if "engines" in sections and "t0" in datasets:
        cases.append(("engines t0 (signature step only)", ["engines"]))
    if "scaling" in sections:
        cases += [(f"scaling {n}", ["scaling", n]) for n in args.scale.split(",")]
    if "embedding" in sections:
        n, big = str(args.emb_n), str(args.approx_n)
        cases.append((f"embedding exact {n}x384", ["embedding", n, "exact", "fresh"]))
        cases.append(
            (f"embedding exact {n}x384, cached rerun", ["embedding", n, "exact", "cached"])
        )
        try:
            import faiss  # noqa: F401

            cases.append((f"embedding approx {big}x384", ["embedding", big, "approx", "fresh"]))
        except ImportError:
            print("skipping approximate embedding index: faiss-cpu not installed (extra 'ann')")
    rows = []
    for label, spec in cases:
        t0 = time.perf_counter()
        res = run_case(args, spec)
        print(f"{label}: {time.perf_counter() - t0:.1f} s wall", file=sys.stderr)
        if res is not None:
            rows.append((label, res))
    print()
    for label, res in rows:
        print(f"| {label} | " + " | ".join(f"{k}={fmt(v)}" for k, v in res.items()) + " |")


if __name__ == "__main__":
    main()
