"""A run's life in its output directory: failed starts, --fresh, whole-run figures, progress."""

from __future__ import annotations

import io
import re
import sys

from sft_distill.cli import main
from sft_distill.simulator import SimulatorConfig, run_in_thread

from .test_resume import make_input, write_config

# -- item 14: the generate bar counts work answered, not slices read --------------------------


class _Terminal(io.StringIO):
    """A stderr that says it is a terminal, so tqdm draws; each write notes what the server saw."""

    def __init__(self, sim) -> None:
        super().__init__()
        self.sim = sim
        self.seen: list[tuple[str, int]] = []

    def isatty(self) -> bool:
        return True

    def write(self, s: str) -> int:
        if "generate" in s:
            self.seen.append((s, self.sim.stats()["by_kind"]["generation"]))
        return super().write(s)


def test_the_generate_bar_counts_work_answered_not_slices_read(tmp_path, monkeypatch):
    inp = make_input(tmp_path / "in.jsonl", n=24)  # one chunk per slice
    with run_in_thread(SimulatorConfig(latency_ms=150)) as sim:
        cfg = write_config(tmp_path / "c.json", sim.url)  # 4 in flight per endpoint
        term = _Terminal(sim)
        monkeypatch.setattr(sys, "stderr", term)
        rc = main(["--input", str(inp), "--output", str(tmp_path / "out"), "--config", str(cfg)])
    assert rc == 0
    states = []
    for text, sent in term.seen:
        for done, total in re.findall(r"generate:[^|]*\|[^|]*\|\s*(\d+)/(\d+)", text):
            states.append((int(done), int(total), sent))
    assert states and states[-1][:2] == (24, 24)
    # A slice counts once its teacher reply is in: never ahead of the requests the server got.
    ahead = [(done, sent) for done, _, sent in states if done > sent]
    assert not ahead, ahead
