"""``sft-distill eval --output DIR --student CONFIG_OR_NAME``: did the student learn?

Asks the fine-tuned student (and any ``--baseline``) the run's held-out questions, judges every
answer against its source chunk and the teacher's recorded answer, and writes ``DIR/eval/``.
Exit status as for a run: 0 done, 2 usage/config/input/output error, 3 done with failures (see
``eval/failures.jsonl``; rerun to retry them), 130/143 interrupted (rerun to resume).
"""

from __future__ import annotations

import argparse
import logging
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import EXIT_INTERRUPTED, ConfigError, DistillError, InputError, interrupted_message
from ..text import plural
from . import EXIT_OK, EXIT_PARTIAL, EXIT_TERMINATED, EXIT_USAGE

if TYPE_CHECKING:
    from ..evaluation.runner import EvalResult, EvalSettings

_WIDTH = 79
DESCRIPTION = (
    "Did the student learn? Ask the fine-tuned student (and baselines: its base model, another "
    "model) the held-out questions of a run (val.jsonl, or --questions FILE), score every "
    "answer with the run's judges against its source chunk, compare the student with the "
    "teacher's recorded answer and with each baseline in both orders, and write DIR/eval/: "
    "answers.jsonl, eval_metadata.json and eval_report.html. Resumable like a run: rerun the "
    "same command after a crash and nothing answered is asked again."
)
EPILOG = (
    '--student and --baseline take an endpoint config JSON file ({"api_base": '
    '"http://localhost:8000/v1", "model": "student", "api_key_env": null}) or the name of an '
    'endpoint under "students" in the config. Exit status: 0 done, 2 bad usage/config/input/'
    "output, 3 done with failures (see eval/failures.jsonl), 130/143 interrupted by SIGINT/"
    "SIGTERM (rerun the same command to resume)."
)


def build_eval_parser() -> argparse.ArgumentParser:
    """``sft-distill eval``'s flags."""
    from .distill import add_column_arguments

    p = argparse.ArgumentParser(
        prog="sft-distill eval",
        description=textwrap.fill(DESCRIPTION, _WIDTH),
        epilog=textwrap.fill(EPILOG, _WIDTH),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--output",
        "-o",
        required=True,
        metavar="DIR",
        help="the run's output directory (its val.jsonl, metadata.json); writes DIR/eval/",
    )
    p.add_argument(
        "--student",
        required=True,
        metavar="CONFIG_OR_NAME",
        help="the fine-tuned model: an endpoint JSON file or a name under 'students'",
    )
    p.add_argument(
        "--baseline",
        action="append",
        default=[],
        metavar="CONFIG_OR_NAME",
        help="a model to compare the student with (its base model, another model); repeatable",
    )
    p.add_argument(
        "--split", choices=("val", "train"), default="val", help="the run's split to ask"
    )
    p.add_argument(
        "--questions",
        metavar="FILE",
        help="ask these instead (JSONL, JSON array or Parquet; columns found like distill's)",
    )
    p.add_argument(
        "--source-col",
        metavar="COL",
        help="--questions column holding the source document (default: source_text, document, "
        "passage...)",
    )
    p.add_argument(
        "--slices",
        metavar="FILE",
        help="the run's input slices, when they moved (the source chunks are cut from them)",
    )
    p.add_argument(
        "--group-by",
        metavar="FIELD",
        help="break the results down by this slice metadata field or column (default: slice)",
    )
    p.add_argument("--max-questions", type=int, metavar="N", help="ask only the first N")
    p.add_argument("--config", "-c", help="JSON config merged over the run's recorded config")
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="run against the built-in simulator on loopback (no API key, no network)",
    )
    p.add_argument(
        "--estimate",
        action="store_true",
        help="print the expected calls, tokens and cost, and exit without any LLM call",
    )
    p.add_argument("--fresh", action="store_true", help="discard DIR/eval (cache included) first")
    p.add_argument(
        "--repair", action="store_true", help="rebuild a damaged eval/cache.sqlite3, then run"
    )
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar, warnings only")
    p.add_argument("--verbose", "-v", action="store_true", help="log every step")
    add_column_arguments(p)
    return p


def _settings(args: argparse.Namespace) -> EvalSettings:
    """The eval the command line asks for: questions, models, config.

    Raises:
        ConfigError, InputError: naming the flag, file or key that is wrong.
    """
    from ..evaluation.questions import load_question_file, load_run_split, read_run_metadata
    from ..evaluation.runner import EvalSettings
    from ..evaluation.targets import BASELINE_PREFIX, STUDENT, eval_config, resolve_target
    from .distill import field_map_from_args

    run_dir = Path(args.output)
    if run_dir.exists() and not run_dir.is_dir():
        raise InputError(f"--output {run_dir}: not a directory")
    metadata = read_run_metadata(run_dir) if run_dir.is_dir() else None
    if metadata is None and args.questions is None:
        raise InputError(
            f"--output {run_dir}: no metadata.json there; give a finished run's output directory, "
            "or the questions with --questions FILE"
        )
    if args.max_questions is not None and args.max_questions < 1:
        raise InputError(f"--max-questions: must be at least 1, got {args.max_questions}")
    config = eval_config(metadata, args.config)
    student = resolve_target(
        args.student, config, label=STUDENT, flag="--student", dry_run=args.dry_run
    )
    baselines = []
    seen = {student.name}
    for spec in args.baseline:
        target = resolve_target(spec, config, label="", flag="--baseline", dry_run=args.dry_run)
        if target.name in seen:
            raise ConfigError(f"--baseline {spec!r}: given twice (or it is the student)")
        seen.add(target.name)
        baselines.append(
            type(target)(BASELINE_PREFIX + target.name, target.name, target.endpoint, target.source)
        )
    if args.questions is not None:
        questions = load_question_file(
            args.questions,
            columns=field_map_from_args(args),
            source_col=args.source_col,
            group_by=args.group_by,
        )
    else:
        assert metadata is not None
        questions = load_run_split(
            run_dir, metadata, config, split=args.split, slices=args.slices, group_by=args.group_by
        )
    if args.max_questions is not None:
        questions.questions = questions.questions[: args.max_questions]
    return EvalSettings(
        run_dir=run_dir,
        questions=questions,
        student=student,
        baselines=baselines,
        config=config,
        group_by=args.group_by,
    )


def main(argv: Sequence[str]) -> int:
    """``sft-distill eval ...``; returns the exit status."""
    args = build_eval_parser().parse_args(list(argv))
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    import asyncio

    from tqdm.contrib.logging import logging_redirect_tqdm

    from ..config.merging import format_config_error
    from .run import Interrupted, until_signal

    try:
        settings = _settings(args)
        for warning in settings.questions.warnings:
            print(f"sft-distill eval: warning: {warning}", file=sys.stderr)
        if args.estimate:
            from ..evaluation.estimate import estimate_eval, format_eval_estimate

            print(format_eval_estimate(estimate_eval(settings)))
            return EXIT_OK
        from ..evaluation.runner import Evaluation

        job = Evaluation(
            settings, show_progress=not args.quiet, fresh=args.fresh, repair=args.repair
        )
        with logging_redirect_tqdm():
            result = asyncio.run(until_signal(job.run(dry_run=args.dry_run)))
    except ConfigError as exc:
        print(f"sft-distill eval: error: {format_config_error(exc, {})}", file=sys.stderr)
        return EXIT_USAGE
    except DistillError as exc:
        print(f"sft-distill eval: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (Interrupted, KeyboardInterrupt) as exc:
        signame = exc.signame if isinstance(exc, Interrupted) else "SIGINT"
        print(interrupted_message(signame), file=sys.stderr)
        return EXIT_TERMINATED if signame == "SIGTERM" else EXIT_INTERRUPTED
    print(format_eval_summary(result))
    return EXIT_PARTIAL if result.failures else EXIT_OK


def _rates(r: dict[str, Any]) -> str:
    ci = r.get("win_rate_ci") or {}

    def pct(v: Any) -> str:
        return "–" if v is None or v != v else f"{100 * v:.1f}%"

    return (
        f"{pct(r.get('win_rate'))} win / {pct(r.get('tie_rate'))} tie / "
        f"{pct(r.get('loss_rate'))} loss over {r.get('n', 0)} (win rate "
        f"{pct(ci.get('low'))}–{pct(ci.get('high'))})"
    )


def format_eval_summary(result: EvalResult) -> str:
    """The short report printed at the end of an eval."""
    meta = result.metadata
    q = meta["questions"]
    done = "" if q.get("evaluated") == q["n"] else f", {q.get('evaluated')} evaluated"
    lines = [
        f"sft-distill eval: {plural(q['n'], 'question')}{done} ({q.get('kind')} {q.get('path')})"
    ]
    for opp, c in (meta.get("comparisons") or {}).items():
        lines.append(f"  student vs {opp}: {_rates(c['panel'])}")
    scores = (meta.get("scores") or {}).get("by_model") or {}
    means = ", ".join(
        f"{m} {s['mean']['estimate']:.2f}"
        for m, s in scores.items()
        if (s.get("mean") or {}).get("estimate") is not None
    )
    if means:
        lines.append(f"  mean score: {means}")
    for m, e in (meta.get("exec") or {}).items():
        line = f"  exec: {m} runs {100 * e['exec_pass_rate']:.1f}%"
        if "gold_match_rate" in e:
            line += f", same rows as the reference {100 * e['gold_match_rate']:.1f}%"
        lines.append(line)
    usage = meta.get("usage") or {}
    mine = {n: u.get("this_invocation") or u for n, u in usage.items()}
    lines.append(
        "  "
        + ", ".join(
            f"{n} {plural(u['calls'], 'call')} + {u['cached']} cached" for n, u in mine.items()
        )
    )
    cost = meta.get("cost")
    if cost:
        lines.append(f"  cost: {cost['total']:,.4f} for the whole eval")
    lines.append(
        f"  output: {result.eval_dir} (answers.jsonl, eval_metadata.json, eval_report.html)"
    )
    if meta.get("simulator"):
        lines.append("  (dry run: replies came from the built-in simulator)")
    if result.failures:
        lines.append(
            f"  WARNING: {plural(result.failures, 'unit')} of work failed after retries; see "
            f"{result.paths.get('failures.jsonl')} - rerun the same command to retry them"
        )
    stopped = meta.get("stopped")
    if stopped:
        lines.append(
            f"  STOPPED early: endpoint {stopped['endpoint']} failed "
            f"{stopped['consecutive_failures']} calls in a row; fix it and rerun the same command"
        )
    return "\n".join(lines)
