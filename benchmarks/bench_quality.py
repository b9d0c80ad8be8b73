"""Quality benchmark: how many seeded defects the deterministic gates catch, and how many good
answers they drop.

Runs every labelled pair through the quality gates (``{"type": "quality"}``: truncated,
non_answer, referential, evidence, numbers, support) and the rule gates (``{"type": "rules"}``),
each gate on every row, and prints per language one markdown table: for each kind the share of
rows dropped by any gate (a certain finding), the share only flagged for the judges (a suspect
finding, ``annotations.quality_flags``), the share either way, the share the quality gates alone
drop, the share each gate drops on its own, and which gates flag. Targets: recall at drop-or-flag
on a defect kind, false drops (drops alone) on ``good``, ``good_calc`` and ``good_case``::

    python benchmarks/bench_quality.py                  # ../shared/data/quality_seeded.jsonl
    python benchmarks/bench_quality.py --data benchmarks/data/quality_small.jsonl --lang zh
    python benchmarks/bench_quality.py --data a.jsonl b.jsonl --data c.jsonl   # several sets
    python benchmarks/bench_quality.py --json
    python benchmarks/bench_quality.py --via-cli        # what users run, judges included

``--via-cli`` measures what a user runs instead: the rows are written as a QA-pairs file
(instruction, input, output, ``source_text``, ``evidence``) and judged by ``sft-distill distill
--skip-generation --dry-run`` with the default gates and two simulated judges (dedup off, so
that no row is dropped as a near copy of another). From its ``generated_raw.jsonl`` it prints two
tables: gates only (a row counts as dropped when a gate dropped it; the gate columns show the
first gate that did, since a dropped sample meets no later gate), and gates then judges (the
``judges`` column: rows the gates kept and the judges voted down; the simulator's judges score by
a hash of the text, not its truth, so this column shows the judges' share of the funnel, not
their skill).

After each set's tables comes one summary line: the lowest recall over the five kinds with a
target (``number_swapped``, ``wrong_article``, ``context_dependent``, ``truncated``,
``non_answer``) and the highest false-drop rate over the good kinds, each naming its language
and kind, then the same two figures per language.

Without ``--data`` it reads ``../shared/data/quality_seeded.jsonl`` (next to the repository) when
present, else the small set shipped here, ``benchmarks/data/quality_small.jsonl`` (hand-written
pairs over ``examples/slices.jsonl``; ``benchmarks/data/build_quality_small.py`` rebuilds it).
Rows: ``{"id", "lang", "defect", "instruction", "input", "output", "source_text", ...}``, with
optional ``evidence`` (a list of quotes) and ``finish_reason``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import sys
import tempfile
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sft_distill.models import Sample
from sft_distill.stages.gates.base import Gate
from sft_distill.stages.gates.quality import FLAGS_KEY
from sft_distill.stages.gates.registry import QUALITY_GATE_TYPES, RULE_GATE_TYPES, build_gates

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data" / "quality_seeded.jsonl"
SHIPPED = REPO / "benchmarks" / "data" / "quality_small.jsonl"
GOOD_KINDS = ("good", "good_calc", "good_case")
DEFECT_KINDS = (
    "number_swapped",
    "wrong_article",
    "context_dependent",
    "truncated",
    "non_answer",
    "misattributed",
    "invented_sentence",
)
# What each kind must reach: recall at least (defects) or false drops at most (good kinds).
TARGETS = {
    **dict.fromkeys(("number_swapped", "wrong_article", "context_dependent"), 0.9),
    **dict.fromkeys(("truncated", "non_answer"), 0.9),
    **dict.fromkeys(GOOD_KINDS, 0.05),
}
GATE_NAMES = (*QUALITY_GATE_TYPES, *RULE_GATE_TYPES)
# A column of the --via-cli table: rows the gates kept and the judges voted down.
JUDGES = "judges"
COLUMNS = (*GATE_NAMES, JUDGES)
# What a row of a pairs file keeps (the label columns stay out of the run).
PAIR_COLUMNS = ("id", "instruction", "input", "output", "source_text", "evidence")


def default_data() -> Path:
    """The shared seeded set when it is next to the repository, else the shipped small set."""
    return SHARED if SHARED.exists() else SHIPPED


def load_rows(path: Path, lang: str | None = None) -> list[dict[str, Any]]:
    """Labelled rows of a JSONL file, optionally of one language."""
    with path.open(encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return [r for r in rows if lang is None or r["lang"] == lang]


def to_sample(row: dict[str, Any]) -> Sample:
    """The sample a teacher would have produced for a labelled row."""
    annotations = {"finish_reason": row["finish_reason"]} if row.get("finish_reason") else {}
    return Sample(
        id=row["id"],
        slice_id=row.get("source_id", ""),
        instruction=row["instruction"],
        input=row.get("input", ""),
        output=row["output"],
        source_text=row.get("source_text", ""),
        evidence=row.get("evidence") or [],
        annotations=annotations,
    )


async def verdicts(
    rows: Sequence[dict[str, Any]], gates: Sequence[Gate]
) -> tuple[list[set[str]], list[set[str]]]:
    """For each row, the names of the gates that drop it, and of those that keep it with a
    suspect finding for the judges (every gate runs on every row, on a fresh sample)."""
    dropped, flagged = [], []
    for row in rows:
        drops, flags = set(), set()
        for gate in gates:
            result = await gate.check(to_sample(row))
            if not result.keep:
                drops.add(gate.name)
            elif result.annotations.get(FLAGS_KEY):
                flags.add(gate.name)
        dropped.append(drops)
        flagged.append(flags)
    return dropped, flagged


def summarise(
    rows: Sequence[dict[str, Any]],
    dropped: Sequence[set[str]],
    flagged: Sequence[set[str]] | None = None,
) -> dict[str, Any]:
    """{lang: {kind: {"n", "dropped", "rate", "flagged", "flag_rate", "caught_rate",
    "quality_rate", "by_gate": {gate: rate}, "flag_by_gate": {gate: rate}}}}.

    ``rate`` counts a row dropped by any gate (a certain finding), ``flag_rate`` a row no gate
    dropped and some gate flagged for the judges (a suspect one), ``caught_rate`` either;
    ``quality_rate`` a row dropped by any quality gate.
    """
    flagged = flagged if flagged is not None else [set() for _ in rows]
    counts: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    flag_counts: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    for row, names, flags in zip(rows, dropped, flagged, strict=True):
        key = (row["lang"], row["defect"])
        c = counts[key]
        c["n"] += 1
        c["dropped"] += bool(names)
        c["flagged"] += bool(flags) and not names
        c["quality_only"] += bool(names & set(QUALITY_GATE_TYPES))
        for name in names:
            c[name] += 1
        for name in flags:
            flag_counts[key][name] += 1
    out: dict[str, Any] = {}
    for (lang, kind), c in sorted(counts.items()):
        n = c["n"]
        f = flag_counts[(lang, kind)]
        out.setdefault(lang, {})[kind] = {
            "n": n,
            "dropped": c["dropped"],
            "rate": round(c["dropped"] / n, 3),
            "flagged": c["flagged"],
            "flag_rate": round(c["flagged"] / n, 3),
            "caught_rate": round((c["dropped"] + c["flagged"]) / n, 3),
            "quality_rate": round(c["quality_only"] / n, 3),
            "by_gate": {g: round(c[g] / n, 3) for g in COLUMNS if c[g]},
            "flag_by_gate": {g: round(f[g] / n, 3) for g in COLUMNS if f[g]},
        }
    return out


def _order(kinds: Sequence[str]) -> list[str]:
    known = [*GOOD_KINDS, *DEFECT_KINDS]
    return [k for k in known if k in kinds] + sorted(k for k in kinds if k not in known)


def measured(kind: str, k: dict[str, Any]) -> float:
    """What a kind's target is held to: drops on a good kind (false drops), drops and flags
    on a defect kind (recall: a flagged defect is put to the judges' claim check)."""
    return k["rate"] if kind in GOOD_KINDS else k.get("caught_rate", k["rate"])


def _verdict(kind: str, rate: float) -> str:
    target = TARGETS.get(kind)
    if target is None:
        return ""
    ok = rate <= target if kind in GOOD_KINDS else rate >= target
    return "ok" if ok else "MISSED"


def _flags_cell(k: dict[str, Any]) -> str:
    return " ".join(f"{g} {r:.2f}" for g, r in k.get("flag_by_gate", {}).items())


def markdown(summary: dict[str, Any]) -> str:
    """One table per language: per kind the share dropped (certain findings), flagged for the
    judges (suspect ones), either, the target, and the share each gate drops / flags."""
    blocks = []
    for lang, kinds in summary.items():
        gates = [g for g in COLUMNS if any(g in k["by_gate"] for k in kinds.values())]
        head = [
            "kind", "n", "dropped", "flagged", "drop or flag", "target", "quality gates", *gates,
            "flagged by",
        ]  # fmt: skip
        lines = [
            f"### {lang}",
            "",
            "| " + " | ".join(head) + " |",
            "| " + " | ".join(["---"] * len(head)) + " |",
        ]
        for kind in _order(list(kinds)):
            k = kinds[kind]
            target = TARGETS.get(kind)
            shown = "" if target is None else ("≤ " if kind in GOOD_KINDS else "≥ ") + f"{target:g}"
            verdict = _verdict(kind, measured(kind, k))
            cells = [
                kind,
                str(k["n"]),
                f"{k['rate']:.2f}",
                f"{k.get('flag_rate', 0.0):.2f}",
                f"{k.get('caught_rate', k['rate']):.2f}",
                f"{shown} {verdict}".strip(),
                f"{k['quality_rate']:.2f}",
                *(f"{k['by_gate'][g]:.2f}" if g in k["by_gate"] else "" for g in gates),
                _flags_cell(k),
            ]
            lines.append("| " + " | ".join(cells) + " |")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


RECALL_KINDS = tuple(k for k in DEFECT_KINDS if k in TARGETS)


def headline(summary: dict[str, Any]) -> dict[str, Any]:
    """The lowest recall at drop-or-flag and at drop over the target defect kinds, and the
    highest false-drop and false-flag rates over the good kinds, overall and per language:
    {"min_recall": [rate, "lang kind"], "min_recall_drop": ..., "max_false_drop": ...,
    "max_false_flag": ...}."""

    def pick(kinds: Sequence[str], langs: Sequence[str], worst: Any, key: str) -> Any:
        found = [
            (summary[lang][kind].get(key, 0.0), f"{lang} {kind}")
            for lang in langs
            for kind in kinds
            if kind in summary[lang]
        ]
        return list(worst(found, key=lambda f: f[0])) if found else None

    def figures(langs: Sequence[str]) -> dict[str, Any]:
        return {
            "min_recall": pick(RECALL_KINDS, langs, min, "caught_rate"),
            "min_recall_drop": pick(RECALL_KINDS, langs, min, "rate"),
            "max_false_drop": pick(GOOD_KINDS, langs, max, "rate"),
            "max_false_flag": pick(GOOD_KINDS, langs, max, "flag_rate"),
        }

    out: dict[str, Any] = figures(list(summary))
    for lang in summary:
        out[lang] = figures([lang])
    return out


def summary_line(name: str, n: int, head: dict[str, Any]) -> str:
    """One line: "summary NAME (N rows): min recall 0.92 (zh truncated), max false drop …";
    recall is at drop-or-flag, the figures at drop alone and the false flags follow."""

    def show(pair: list[Any] | None, with_kind: bool = True) -> str:
        if pair is None:
            return "n/a"
        return f"{pair[0]:.2f} ({pair[1]})" if with_kind else f"{pair[0]:.2f}"

    per_lang = "; ".join(
        f"{lang} {show(v['min_recall'], False)} / {show(v['max_false_drop'], False)}"
        for lang, v in head.items()
        if isinstance(v, dict)
    )
    return (
        f"summary {name} ({n} rows): min recall {show(head['min_recall'])}, "
        f"max false drop {show(head['max_false_drop'])}  [{per_lang}]; recall counts drops and "
        f"flags; at drop alone min recall {show(head['min_recall_drop'])}; max false flag "
        f"{show(head['max_false_flag'])}"
    )


def via_cli(rows: Sequence[dict[str, Any]], workdir: Path) -> tuple[list[set[str]], ...]:
    """Run ``rows`` through ``sft-distill distill --skip-generation --dry-run`` (default gates).

    Returns, per row, the gate that dropped it (gates only), the same with ``judges`` when the
    gates kept it and the judges did not (gates then judges), and the gates that flagged it for
    the judges (``annotations.quality_flags``); a row the run skipped (a bad or repeated line)
    counts as dropped by neither and is reported on stderr.
    """
    from sft_distill.cli import main as cli_main

    pairs = workdir / "pairs.jsonl"
    with pairs.open("w", encoding="utf-8") as f:
        for row in rows:
            pair = {k: row[k] for k in PAIR_COLUMNS if row.get(k) not in (None, "", [])}
            f.write(json.dumps(pair, ensure_ascii=False) + "\n")
    config = workdir / "config.json"
    config.write_text(json.dumps({"enable_dedup": False}), encoding="utf-8")
    out = workdir / "out"
    args = ["distill", "--input", str(pairs), "--skip-generation", "--dry-run", "-q"]
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = cli_main([*args, "--config", str(config), "--output", str(out)])
    if code not in (0, 4):  # 4: a run-level floor failed, the data is still written
        raise RuntimeError(f"sft-distill distill exited {code}: {printed.getvalue()[-500:]}")
    by_slice = {}
    with (out / "generated_raw.jsonl").open(encoding="utf-8") as f:
        for line in f:
            rec = json.loads(line)
            by_slice[rec["slice_id"]] = rec
    gates_only: list[set[str]] = []
    with_judges: list[set[str]] = []
    flagged: list[set[str]] = []
    missing = 0
    for row in rows:
        rec = by_slice.get(f"rec:{row['id']}")
        reason = (rec or {}).get("drop_reason") or ""
        missing += rec is None
        gate = {reason.removeprefix("gate:")} if reason.startswith("gate:") else set()
        judged = rec is not None and not gate and not rec["passed"]
        judged = judged and reason not in ("duplicate", "capped")
        gates_only.append(gate)
        with_judges.append(gate | ({JUDGES} if judged else set()))
        flags = ((rec or {}).get("annotations") or {}).get(FLAGS_KEY) or []
        flagged.append({f["check"] for f in flags if isinstance(f, dict) and "check" in f})
    if missing:
        print(f"bench_quality: {missing} rows not in the run (bad lines)", file=sys.stderr)
    return gates_only, with_judges, flagged


def print_via_cli(path: Path, rows: Sequence[dict[str, Any]], *, as_json: bool) -> None:
    """Run ``rows`` through the CLI and print both tables (gates only, then judges too)."""
    with tempfile.TemporaryDirectory(prefix="bench_quality_") as tmp:
        gates_only, with_judges, flagged = via_cli(rows, Path(tmp))
    tables = {
        "gates": summarise(rows, gates_only, flagged),
        "gates_and_judges": summarise(rows, with_judges, flagged),
    }
    if as_json:
        print(json.dumps({"data": str(path), "via_cli": tables}, ensure_ascii=False, indent=1))
        return
    print(f"data: {path} ({len(rows)} rows), via sft-distill distill --skip-generation ")
    print("--dry-run with the default gates\n\n## gates only\n")
    print(markdown(tables["gates"]))
    print("\n## gates, then the simulated judges\n")
    print(markdown(tables["gates_and_judges"]))


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark on each ``--data`` file and print its tables and summary line (or
    JSON); 0 on success, 2 on a bad path."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data",
        type=Path,
        nargs="+",
        action="extend",
        default=None,
        help="labelled JSONL file(s) (default: see top); repeat or list several",
    )
    parser.add_argument("--lang", choices=("zh", "en"), default=None, help="one language only")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument(
        "--via-cli",
        action="store_true",
        help="run the rows through sft-distill distill --skip-generation --dry-run instead",
    )
    args = parser.parse_args(argv)
    paths = args.data or [default_data()]
    for path in paths:
        if not path.is_file():
            print(f"bench_quality: {path}: no such file", file=sys.stderr)
            return 2
    if args.via_cli:
        for path in paths:
            print_via_cli(path, load_rows(path, args.lang), as_json=args.json)
        return 0
    gates = build_gates([{"type": "quality"}, {"type": "rules"}])
    runs = []
    for path in paths:
        rows = load_rows(path, args.lang)
        summary = summarise(rows, *asyncio.run(verdicts(rows, gates)))
        head = headline(summary)
        runs.append({"data": str(path), "summary": summary, "headline": head})
        if not args.json:
            print(f"data: {path} ({len(rows)} rows)\n")
            print(markdown(summary))
            print(f"\n{summary_line(path.name, len(rows), head)}\n")
    if args.json:
        out: Any = runs[0] if len(runs) == 1 else {"runs": runs}
        print(json.dumps(out, ensure_ascii=False, indent=1))
    elif len(runs) > 1:
        for run in runs:
            n = sum(k["n"] for kinds in run["summary"].values() for k in kinds.values())
            print(summary_line(Path(run["data"]).name, n, run["headline"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
