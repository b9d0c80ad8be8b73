"""The output directory a run owns: which files are the run's, and whose run they hold.

A run claims the directory (``claim_output_dir``) once it holds the directory's lock: an
identity recorded in the cache says which input (and mode) the files belong to, so that a rerun
resumes and another run is refused unless told to replace them.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ..errors import OutputError
from ..llm.cache import CACHE_FILENAME, ResponseCache
from ..llm.run_usage import restore_meta, start_invocation
from .datasets import all_split_file_names
from .failures import FAILURES_FILE
from .formats import DATASET_INFO_FILE
from .manifest import MANIFEST_FILE
from .metadata import METADATA_FILE
from .report import RAW_FILE, REPORT_FILE
from .writers import lock_output_dir

TRAIN_FILE = "train.jsonl"
VAL_FILE = "val.jsonl"
PARTIAL_RAW_FILE = RAW_FILE + ".partial"  # the raw file in completion order, while streaming
OUTPUT_FILES = (
    *sorted(all_split_file_names()),
    RAW_FILE,
    METADATA_FILE,
    FAILURES_FILE,
    DATASET_INFO_FILE,
    REPORT_FILE,
    MANIFEST_FILE,
    CACHE_FILENAME,
)
# Everything a run may leave in its output directory (what --fresh deletes).
RUN_FILES = (*OUTPUT_FILES, PARTIAL_RAW_FILE, CACHE_FILENAME + "-wal", CACHE_FILENAME + "-shm")


def same_run(previous: dict[str, Any], current: dict[str, Any]) -> bool:
    """Whether two run identities are one run: same content and mode, wherever the input lives.

    ``input`` (the path, or a description) is for messages only: the same bytes moved to
    another path, mounted elsewhere or in another checkout still resume.
    """

    def key(identity: dict[str, Any]) -> dict[str, Any]:
        k = {name: value for name, value in identity.items() if name != "input"}
        k.setdefault("kind", "slices")  # identities written before modes existed
        return k

    return key(previous) == key(current)


def claim_output_dir(
    out: Path, cache: ResponseCache, identity: dict[str, Any], *, overwrite: bool
) -> Callable[[], None]:
    """Refuse to replace another run's results silently; record this run as the owner.

    Returns what puts the claim back as it was (for a run that then fails before any work).

    Raises:
        OutputError: the directory holds results of a different input (or mode).
    """
    stored = cache.get_meta("run_identity")
    previous: dict[str, Any] | None = None
    if stored is not None:
        previous = json.loads(stored)
    elif any((out / name).exists() for name in OUTPUT_FILES if name != CACHE_FILENAME):
        try:
            meta = json.loads((out / METADATA_FILE).read_text(encoding="utf-8"))
            previous = {**meta["source"], "simulator": meta.get("simulator")}
        except (OSError, ValueError, KeyError, TypeError):
            previous = {"input": "unknown (not written by sft_distill?)"}
    same = previous is not None and same_run(previous, identity)
    if previous is not None and not same and not overwrite:
        raise OutputError(
            f"output directory {out} {_holds(previous, identity)}; use --overwrite to "
            "replace them (cached replies are reused), --fresh to start over, or choose "
            "another --output"
        )
    cache.set_meta("run_identity", json.dumps(identity, sort_keys=True))
    _, saved = start_invocation(cache, new_run=not same)

    def undo() -> None:
        restore_meta(cache, {**saved, "run_identity": stored})

    return undo


def _holds(previous: dict[str, Any], identity: dict[str, Any]) -> str:
    """What the directory holds, said by what differs from this run."""
    was_sim, is_sim = previous.get("simulator"), identity.get("simulator")
    what = previous.get("input")
    if was_sim is not None and was_sim != is_sim:
        data = {k: v for k, v in previous.items() if k != "simulator"}
        mine = {k: v for k, v in identity.items() if k != "simulator"}
        kind = "a real run" if was_sim is False else "a dry run on the simulator"
        if same_run(data, mine):  # only real vs simulated replies differ
            return f"holds {kind} of the same input ({what})"
        return f"holds {kind} of another input ({what})"
    if what is not None and what == identity.get("input"):
        what = f"{what} as it was before it changed"
    return f"holds the results of another run (input {what})"


@contextlib.contextmanager
def owned_output_dir(
    out: Path, identity: dict[str, Any], *, fresh: bool, overwrite: bool, repair: bool
) -> Iterator[ResponseCache]:
    """The directory's lock, its cache and its claim, for the length of a run.

    With ``fresh`` the run's files are deleted once the lock is ours (never another job's).
    A run that fails before any work (no call made, no reply cached: an empty input, a refused
    directory) puts the claim back and removes what it made, so that the next run does not
    need ``--overwrite``.

    Raises:
        OutputError: another process holds the directory, or it holds another run's results.
    """
    with lock_output_dir(out) as locked:
        if fresh:
            for name in RUN_FILES:
                (out / name).unlink(missing_ok=True)
        found = {name for name in RUN_FILES if (out / name).exists()}
        worked = False
        try:
            # Exclusive when locked: no other run can write to this cache meanwhile.
            with ResponseCache(out / CACHE_FILENAME, exclusive=locked, repair=repair) as cache:
                undo = claim_output_dir(out, cache, identity, overwrite=overwrite)
                try:
                    yield cache
                except BaseException:
                    worked = cache.writes > 0 or cache.calls_logged > 0
                    if not worked:
                        undo()
                    raise
        except BaseException:
            if not worked:
                for name in RUN_FILES:
                    if name not in found:
                        (out / name).unlink(missing_ok=True)
            raise
