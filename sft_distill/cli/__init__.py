"""Command line: ``sft-distill [run|topics|distill|augment|refilter|calibrate|eval] ...``.

Parsing and exit codes only: each subcommand has a module here, imported when that subcommand
runs, so ``sft-distill --help`` loads none of the modes (nor aiohttp, numpy or pydantic).

Exit status: 0 completed; 2 usage, config, input or output error (one line, no traceback);
3 completed but some work failed after retries (see failures.jsonl); 4 completed but a run-level
quality floor (min_keep_rate, min_mean_score, min_exec_pass_rate) failed; 130 interrupted by SIGINT
(Ctrl-C), 143 by SIGTERM. An interrupted run leaves a resumable state: rerun the same command.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

from .._legacy import package_getattr

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_PARTIAL = 3
EXIT_QUALITY = 4
EXIT_TERMINATED = 143

# Every subcommand and its line in ``sft-distill --help``; ``run`` is the default.
COMMANDS: dict[str, str] = {
    "run": "knowledge slices -> teacher -> judges -> dataset (the default)",
    "topics": "expand a topic into a tree, ask and answer questions at its leaves",
    "distill": "new answers for an existing instruction set (or judge the answers it has)",
    "augment": "rephrase kept samples N ways and answer the variants",
    "refilter": "re-filter a finished run from its recorded scores, without LLM calls",
    "calibrate": "compare a finished run's judges with a person's pass/fail labels",
    "eval": "ask the fine-tuned student the held-out questions and judge it: did it learn?",
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``sft-distill`` and ``scripts/run_pipeline.py``; returns the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    command = "run"
    if args and args[0] in COMMANDS:
        command = args.pop(0)
    module = importlib.import_module(f".{command}", __name__)
    status: int = module.main(args)
    return status


__getattr__ = package_getattr(__name__)
