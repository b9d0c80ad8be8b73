"""Precision and recall of the ``pii`` gate per type on benchmarks/data/pii_labelled.jsonl.

    python benchmarks/bench_pii.py                  # prints a markdown table
    python benchmarks/bench_pii.py --data other.jsonl

A found span counts as correct only with the labelled type and exact offsets. "leaked" counts
labelled spans not fully covered by any found span (of any type): what redaction would miss.
The gate runs with its defaults plus the data set's name list (``NAMES``). The speed line is the
detector's CPU time on the whole file's text cut into 10,000-character pieces (the set is far
denser in numbers and personal data than ordinary text).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from make_pii_set import NAMES, OUT  # noqa: E402

from sft_distill.stages.gates.pii import PII_TYPES, PiiGate  # noqa: E402


def score(
    rows: list[dict], *, ner: str | None = None
) -> tuple[dict[str, Counter[str]], list[tuple[str, str, str, str]]]:
    """Per-type counts (gold, found, correct, leaked) and the errors as (id, kind, type, text)."""
    detector = PiiGate(names=list(NAMES), ner=ner).detector
    stats: dict[str, Counter[str]] = {t: Counter() for t in PII_TYPES}
    errors = []
    for row in rows:
        text = row["text"]
        gold = {(s["type"], s["start"], s["end"]) for s in row["spans"]}
        pred = {(s.type, s.start, s.end) for s in detector.find(text)}
        for t, a, b in gold:
            stats[t]["gold"] += 1
            if (t, a, b) in pred:
                stats[t]["correct"] += 1
            else:
                errors.append((row["id"], "missed", t, text[a:b]))
            if not any(pa <= a and b <= pb for _, pa, pb in pred):
                stats[t]["leaked"] += 1
        for t, a, b in pred:
            stats[t]["found"] += 1
            if (t, a, b) not in gold:
                errors.append((row["id"], "false", t, text[a:b]))
    return stats, errors


def ratio(num: int, den: int) -> str:
    return f"{num / den:.3f}" if den else "–"


def _row(label: str, c: Counter[str], *, bold: bool = False) -> str:
    p, r = ratio(c["correct"], c["found"]), ratio(c["correct"], c["gold"])
    if bold:
        p, r = f"**{p}**", f"**{r}**"
    return f"| {label} | {c['gold']} | {c['found']} | {c['correct']} | {p} | {r} | {c['leaked']} |"


def table(stats: dict[str, Counter[str]]) -> str:
    """The markdown table: one row per type and the overall (micro) figures."""
    lines = [
        "| type | labelled | found | correct | precision | recall | leaked |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    total: Counter[str] = Counter()
    for t in PII_TYPES:
        c = stats[t]
        total.update(c)
        lines.append(_row(t, c))
    lines.append(_row("**overall**", total, bold=True))
    return "\n".join(lines)


def speed(rows: list[dict]) -> str:
    """Mean time of the detector on 10,000-character pieces of the data set's text."""
    detector = PiiGate(names=list(NAMES)).detector
    text = "\n".join(row["text"] for row in rows)
    pieces = [text[i : i + 10_000] for i in range(0, len(text) - 9_999, 10_000)] or [text]
    for p in pieces:
        detector.find(p)
    best = float("inf")
    for _ in range(5):
        # CPU time: the machine is often shared, and waiting for a core is not our cost.
        start = time.process_time()
        for _ in range(10):
            for p in pieces:
                detector.find(p)
        best = min(best, (time.process_time() - start) / (10 * len(pieces)))
    return f"{best * 1000:.2f} ms CPU per 10,000 characters ({len(pieces)} pieces, best of 5)"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=OUT)
    parser.add_argument("--errors", action="store_true", help="list every miss and false hit")
    parser.add_argument(
        "--ner",
        choices=("jieba",),
        help="add the shipped NER hook (pip install 'sft-distill[ner]') to the name list",
    )
    args = parser.parse_args(argv)
    rows = [json.loads(line) for line in args.data.read_text(encoding="utf-8").splitlines()]
    ner = "sft_distill.stages.gates.pii:JiebaNames" if args.ner == "jieba" else None
    stats, errors = score(rows, ner=ner)
    with_pii = sum(1 for r in rows if r["spans"])
    print(f"{len(rows)} rows ({with_pii} with personal data), {args.data.name}\n")
    print(table(stats))
    print(f"\nspeed: {speed(rows)}")
    if args.errors:
        for e in errors:
            print(" ".join(e))
    else:
        print(f"{len(errors)} errors (--errors lists them)")


if __name__ == "__main__":
    main()
