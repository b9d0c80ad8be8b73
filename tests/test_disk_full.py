"""A full disk at any point of a run: one line, exit 2, no temp file left, and resumable.

The output directory is on a small tmpfs with a filler file leaving a chosen amount free, so
the disk fills while the cache is created, while the run claims the directory, while replies
are committed, and while the outputs are written. Needs root (mount); skipped otherwise.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import OUTPUTS, SLICES, dry_run

# KiB left free; with the shipped examples the disk fills while creating the cache (8-72),
# while claiming the directory (80), while committing replies and streaming the raw file
# (96 up to about 200 KiB below what a whole run needs) and while writing the final
# generated_raw.jsonl (which comes before the splits, manifest, report and metadata, about
# 120 KiB together, so it fails from about 120 to 180 KiB below what a run needs). What a
# whole run needs is measured first, since it moves whenever the cache or an output gains a
# column; where exactly each stage fails varies a little with how replies are batched.
EARLY_FREE_KIB = (8, 48, 72, 80, 84, 96, 192)
# About forty runs on a filling disk.
pytestmark = pytest.mark.slow


def _mount_tmpfs(where: Path) -> str | None:
    """Mount a 4 MiB tmpfs at ``where``; the reason it cannot be, or None."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "mounting a small tmpfs needs root"
    if shutil.which("mount") is None:
        return "no mount command"
    where.mkdir()
    p = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(where)],
        capture_output=True,
        text=True,
    )
    return None if p.returncode == 0 else f"cannot mount a tmpfs: {p.stderr.strip()}"


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    where = tmp_path / "tmpfs"
    reason = _mount_tmpfs(where)
    if reason:
        pytest.skip(reason)
    try:
        yield where
    finally:
        # Lazily: a file a failed run left open must not keep the mount (and the test) busy.
        subprocess.run(["umount", "-l", str(where)], check=False)


def _fill(disk: Path, free_kib: int) -> Path:
    st = os.statvfs(disk)
    filler = disk / "filler"
    filler.write_bytes(bytes(st.f_bavail * st.f_frsize - free_kib * 1024))
    return filler


def _run(out: Path) -> int:
    return dry_run(SLICES, out)


def _needed_kib(disk: Path, capsys: pytest.CaptureFixture[str]) -> int:
    """The least free KiB (to 8 KiB) with which a whole run completes on ``disk``."""
    low, high = 8, 2048  # fails with low, completes with high
    while high - low > 8:
        mid = (low + high) // 2
        filler = _fill(disk, mid)
        out = disk / "probe"
        ok = _run(out) == 0
        capsys.readouterr()
        filler.unlink()
        shutil.rmtree(out, ignore_errors=True)
        low, high = (low, mid) if ok else (mid, high)
    return high


def test_a_full_disk_is_one_line_exit_2_and_the_run_resumes(small_disk, tmp_path, capsys):
    assert _run(tmp_path / "reference") == 0
    reference = {n: (tmp_path / "reference" / n).read_bytes() for n in OUTPUTS}
    needed = _needed_kib(small_disk, capsys)
    failed_at: list[str] = []
    for free in (*EARLY_FREE_KIB, *range(max(200, needed - 264), needed + 8, 8)):
        out = small_disk / f"out{free}"
        filler = _fill(small_disk, free)
        capsys.readouterr()
        code = _run(out)  # a traceback would be raised here and fail the test
        err = capsys.readouterr().err
        if code == 2:
            lines = err.strip().splitlines()
            assert len(lines) == 1, (free, err)
            assert "disk is full" in lines[0] or "No space left" in lines[0], (free, err)
            assert "rollback" not in lines[0]
            failed_at.append(lines[0])
        else:
            assert code == 0, (free, err)
        assert not [p.name for p in out.glob("*.tmp")], free  # no half-written file is left
        filler.unlink()
        assert _run(out) == 0, free  # room again: the same command resumes
        assert {n: (out / n).read_bytes() for n in OUTPUTS} == reference, free
        shutil.rmtree(out)
    # The disk filled at each stage: creating the cache, committing replies, the final file.
    assert any("cannot open the response cache" in m for m in failed_at)
    assert any("cannot write the response cache" in m for m in failed_at)
    assert any("generated_raw.jsonl.tmp" in m for m in failed_at), failed_at
