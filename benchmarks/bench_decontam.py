"""Decontamination: speed and memory at scale, and precision/recall on a labelled set.

    python benchmarks/bench_decontam.py                       # 100k eval x 200k samples + set
    python benchmarks/bench_decontam.py --samples 1000000     # the full 1M samples
    python benchmarks/bench_decontam.py --only labelled
    python benchmarks/bench_decontam.py --embed-model PATH    # rephrasings, sentence-transformers

Scale: synthetic eval items (question + answer) and samples (question + answer), half Chinese
(characters drawn from alpaca_data_zh's character frequencies) and half English (words from
alpaca_data_en), or from the project's examples when ../shared/data is absent. 1% of the
samples copy an eval question (exactly, or with one token changed): all must be found. Reported:
index build time, index bytes, RSS growth, samples per second through ``Decontaminator.match``
(question and question + answer, as the pipeline's stage calls it) and the time 1M samples take
at that rate.

Labelled set: eval items are alpaca questions (zh and en; the examples' sentences otherwise);
positives are exact copies (spacing, punctuation, width and case changed), light edits (one
character or word replaced, removed or inserted; a short prefix or suffix), and rephrasings
(hand-written below, found by embedding only); negatives are other alpaca questions, including
ones sharing a template. Recall is given per kind and per length (questions shorter than twice n
tokens have few n-grams: a change in the middle breaks all of them).
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import resource
import sys
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sft_distill.selection.decontaminate import (  # noqa: E402
    Decontaminator,
    EvalItems,
    gram_size,
    tokens,
)

SHARED = REPO.parent / "shared" / "data"
EXAMPLES = REPO / "examples" / "slices.jsonl"

# Rephrasings (same question, other words), for the embedding stage only.
REPHRASINGS = [
    (
        "投保人故意不履行如实告知义务的，保险人能否解除合同？",
        "如果投保时故意隐瞒病史，保险公司可以取消保单吗？",
    ),
    (
        "保险人收到理赔申请后应当在多长时间内作出核定？",
        "保险公司接到索赔后最迟几天要给出是否赔付的结论？",
    ),
    ("什么是保险利益？", "投保人对保险标的需要具备怎样的法律上承认的利益关系？"),
    ("人身保险合同的宽限期是多久？", "寿险保单欠缴保费后还有多少天可以补交而不失效？"),
    ("被保险人死亡后没有指定受益人怎么办？", "身故保险金在未指定受益人时归谁所有？"),
    (
        "Give three tips for staying healthy.",
        "What are three things I can do to keep in good health?",
    ),
    ("What are the three primary colors?", "Name the primary colours."),
    ("Describe the structure of an atom.", "How is an atom put together?"),
    ("How can we reduce air pollution?", "What measures would lower the level of air pollution?"),
    ("Explain why the sky is blue.", "Why does the sky look blue to us?"),
]


def rss_mb() -> float:
    """Current resident set size (MB), from /proc."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def questions() -> tuple[list[str], list[str], str]:
    """Chinese and English questions (instruction + input) and where they came from."""
    if (SHARED / "alpaca_data_zh.jsonl").exists() and (SHARED / "alpaca_data_en.jsonl").exists():
        out = []
        for lang in ("zh", "en"):
            rows = []
            with open(SHARED / f"alpaca_data_{lang}.jsonl", encoding="utf-8") as f:
                for line in f:
                    r = json.loads(line)
                    rows.append(r["instruction"] + (f"\n{r['input']}" if r["input"] else ""))
            out.append(rows)
        return out[0], out[1], "alpaca_data_zh/en"
    zh, en = [], []
    with open(EXAMPLES, encoding="utf-8") as f:
        for line in f:
            text = json.loads(line)["content"]
            for s in text.replace("\n", "。").split("。"):
                s = s.strip()
                if len(s) >= 8:
                    (en if s.isascii() else zh).append(s + ("?" if s.isascii() else "？"))
    return zh, en, "examples/slices.jsonl sentences"


# --- scale ---------------------------------------------------------------------------------


class Synth:
    """Random Chinese and English texts with realistic character and word frequencies."""

    def __init__(self, zh: list[str], en: list[str], seed: int) -> None:
        self.rng = random.Random(seed)
        chars = Counter(c for q in zh for c in q if "\u4e00" <= c <= "\u9fff")
        words = Counter(w for q in en for w in q.split())
        self.chars, self.cw = list(chars), list(itertools.accumulate(chars.values()))
        self.words, self.ww = list(words), list(itertools.accumulate(words.values()))

    def text(self, zh: bool, lo: int, hi: int) -> str:
        n = self.rng.randint(lo, hi)
        if zh:
            return "".join(self.rng.choices(self.chars, cum_weights=self.cw, k=n)) + "？"
        return " ".join(self.rng.choices(self.words, cum_weights=self.ww, k=n)) + "?"

    def edit(self, text: str) -> str:
        toks = list(text) if not text.isascii() else text.split()
        i = self.rng.randrange(len(toks))
        toks[i] = self.rng.choice(self.chars if not text.isascii() else self.words)
        return ("" if not text.isascii() else " ").join(toks)


def bench_scale(n_eval: int, n_samples: int, zh: list[str], en: list[str]) -> dict:
    synth = Synth(zh, en, seed=1)
    t0 = time.perf_counter()
    items = EvalItems(files=[{"name": "synthetic.jsonl"}])
    for i in range(n_eval):
        z = i % 2 == 0
        items.ids.append(f"e{i}")
        items.sets.append(0)
        items.questions.append(synth.text(z, 20, 60) if z else synth.text(z, 10, 35))
        items.answers.append(synth.text(z, 20, 120) if z else synth.text(z, 10, 60))
    t_gen = time.perf_counter() - t0
    rss0 = rss_mb()
    t0 = time.perf_counter()
    d = Decontaminator(items).build()
    t_build = time.perf_counter() - t0
    rss_index = rss_mb() - rss0

    rng = random.Random(2)
    batch = 20_000
    done = found = planted = planted_found = false_hits = 0
    t_probe = 0.0
    while done < n_samples:
        texts, plants = [], []
        for _ in range(min(batch, n_samples - done)):
            if rng.random() < 0.01:
                k = rng.randrange(n_eval)
                q = items.questions[k]
                q = (
                    synth.edit(q)
                    if rng.random() < 0.5 and len(tokens(q)) >= 2 * gram_size(tokens(q))
                    else q
                )
                plants.append(f"e{k}")
            else:
                z = rng.random() < 0.5
                q = synth.text(z, 10, 60) if z else synth.text(z, 6, 35)
                plants.append(None)
            a = synth.text(not q.isascii(), 30, 200)
            texts.append((q, f"{q}\n{a}"))
        t0 = time.perf_counter()
        hits = [d.match(q, p) for q, p in texts]
        t_probe += time.perf_counter() - t0
        for hit, plant in zip(hits, plants, strict=True):
            found += hit is not None
            if plant is not None:
                planted += 1
                planted_found += hit is not None and hit.item_id == plant
            elif hit is not None:
                false_hits += 1
        done += len(texts)
    return {
        "eval_items": n_eval,
        "samples": n_samples,
        "generate_eval_s": round(t_gen, 1),
        "build_s": round(t_build, 1),
        "index_mb": round(d.nbytes / 2**20, 1),
        "rss_index_mb": round(rss_index, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "probe_s": round(t_probe, 1),
        "samples_per_s": round(n_samples / t_probe),
        "per_1m_s": round(t_probe / n_samples * 1_000_000, 1),
        "planted": planted,
        "planted_found": planted_found,
        "other_hits": false_hits,
    }


# --- labelled set --------------------------------------------------------------------------


def light_edit(rng: random.Random, q: str) -> str:
    """One token replaced, removed or inserted, or a short prefix or suffix added."""
    kind = rng.randrange(5)
    if kind == 3:
        return ("请回答：" if not q.isascii() else "Please answer: ") + q
    if kind == 4:
        return q + ("请简要回答。" if not q.isascii() else " Answer briefly.")
    if q.isascii():
        w = q.split(" ")
        i = rng.randrange(len(w))
        if kind == 0:
            w[i] = rng.choice(["the", "a", "some", "this", "that"])
        elif kind == 1 and len(w) > 2:
            del w[i]
        else:
            w.insert(i, rng.choice(["please", "now", "also"]))
        return " ".join(w)
    t = list(q)
    i = rng.randrange(len(t))
    if kind == 0:
        t[i] = rng.choice("的了是在和有这个们中来上大为")
    elif kind == 1 and len(t) > 2:
        del t[i]
    else:
        t.insert(i, rng.choice("请问也"))
    return "".join(t)


def copy_variant(rng: random.Random, q: str) -> str:
    """The same question with spacing, punctuation, width or case changed."""
    kind = rng.randrange(3)
    if kind == 0:
        return q.upper() if q.isascii() else q.replace("，", ",").replace("？", "?")
    if kind == 1:
        return "  " + q.replace(" ", "  ") + "  "
    return q.rstrip("?？。.") + ("!" if q.isascii() else "！")


def bench_labelled(zh: list[str], en: list[str], embed_model: str | None) -> dict:
    rng = random.Random(3)
    pool = [q for q in zh + en if q.strip()]
    rng.shuffle(pool)
    n_eval = min(2000, len(pool) // 3)
    eval_q = pool[:n_eval]
    negatives = pool[n_eval : n_eval + 5 * n_eval]
    cases: list[tuple[str, str, str | None]] = []  # (kind, text, expected item id)
    for i, q in enumerate(eval_q[:1000]):
        cases.append(("exact copy", copy_variant(rng, q), f"e{i}"))
        cases.append(("light edit", light_edit(rng, q), f"e{i}"))
    cases += [("unrelated", q, None) for q in negatives]
    reph_base = len(eval_q)
    eval_q = eval_q + [a for a, _ in REPHRASINGS]
    cases += [("rephrasing", b, f"e{reph_base + k}") for k, (_, b) in enumerate(REPHRASINGS)]
    items = EvalItems(
        ids=[f"e{i}" for i in range(len(eval_q))],
        sets=[0] * len(eval_q),
        questions=eval_q,
        answers=[None] * len(eval_q),
        files=[{"name": "labelled"}],
    )
    embed_fn = None
    if embed_model:
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(embed_model)
        embed_fn = lambda texts: model.encode(texts, normalize_embeddings=True)  # noqa: E731
    import asyncio

    results = {}
    for stage, fn in (("text (exact + n-gram)", None), ("text + embedding", embed_fn)):
        if stage == "text + embedding" and fn is None:
            continue
        d = Decontaminator(items, embed_fn=fn).build()
        hits = asyncio.run(d.match_many([(t, "") for _, t, _ in cases]))
        per: dict[str, Counter[str]] = {}
        for (kind, text, want), hit in zip(cases, hits, strict=True):
            toks = tokens(text)
            length = "short" if len(toks) < 2 * gram_size(toks) else "long"
            for key in (kind, f"{kind} ({length})"):
                c = per.setdefault(key, Counter())
                c["n"] += 1
                c["hit"] += hit is not None
                c["right"] += hit is not None and hit.item_id == want
        flagged = sum(1 for h in hits if h is not None)
        wrong = sum(
            1
            for (_, _, want), h in zip(cases, hits, strict=True)
            if h is not None and h.item_id != want
        )
        results[stage] = {"per": per, "flagged": flagged, "wrong": wrong}
    return {"eval_items": len(eval_q), "cases": len(cases), "results": results}


def print_labelled(out: dict, source: str) -> None:
    print(f"\nLabelled set from {source}: {out['eval_items']} eval questions, {out['cases']} cases")
    for stage, r in out["results"].items():
        flagged, wrong = r["flagged"], r["wrong"]
        precision = (flagged - wrong) / flagged if flagged else float("nan")
        print(f"\n{stage}: precision {precision:.3f} ({flagged - wrong} of {flagged} flagged)")
        print("| kind | n | recall (right item) | flagged |")
        print("| --- | --- | --- | --- |")
        for kind in sorted(r["per"]):
            c = r["per"][kind]
            if kind.startswith("unrelated"):
                print(f"| {kind} | {c['n']} | – | {c['hit']} (false) |")
            else:
                print(f"| {kind} | {c['n']} | {c['right'] / c['n']:.3f} | {c['hit']} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--eval-items", type=int, default=100_000)
    p.add_argument("--samples", type=int, default=200_000)
    p.add_argument("--only", choices=("scale", "labelled"))
    p.add_argument("--embed-model", help="a sentence-transformers model name or path")
    args = p.parse_args()
    zh, en, source = questions()
    if args.only != "labelled":
        r = bench_scale(args.eval_items, args.samples, zh, en)
        print(f"Scale ({source} vocabulary): {json.dumps(r)}")
        print(
            f"| {r['eval_items']:,} eval items | build {r['build_s']} s | index "
            f"{r['index_mb']} MB (RSS +{r['rss_index_mb']} MB) | {r['samples']:,} samples in "
            f"{r['probe_s']} s ({r['samples_per_s']:,}/s) | 1M samples: {r['per_1m_s']} s | "
            f"planted {r['planted_found']}/{r['planted']} found | other hits {r['other_hits']} |"
        )
    if args.only != "scale":
        print_labelled(bench_labelled(zh, en, args.embed_model), source)
        if not args.embed_model:
            print(
                "\nrephrasings: the embedding stage needs a model (--embed-model); none is "
                "installed here, so only the text stages are measured."
            )


if __name__ == "__main__":
    main()
