"""The per-sample index a run keeps for its final pass: right order, few bytes."""

from __future__ import annotations

import random
import tracemalloc

import pytest

from sft_distill.models import ScoredSample
from sft_distill.selection.run_index import RunIndex


def sample(i: int, slice_id: str, chunk: int, score: float | None, passed: bool) -> ScoredSample:
    return ScoredSample(
        id=f"id{i:05d}",
        slice_id=slice_id,
        chunk_index=chunk,
        instruction="问",
        output="答",
        avg_score=score,
        passed=passed,
    )


def test_raw_order_is_slice_chunk_id_whatever_the_arrival_order():
    samples = [
        sample(i, f"s{i % 7}", i % 3, None if i % 5 == 0 else i / 10, i % 2 == 0)
        for i in range(200)
    ]
    arrived = samples[:]
    random.Random(4).shuffle(arrived)
    index = RunIndex()
    for offset, s in enumerate(arrived):
        index.add(s, offset * 100)
    expected = sorted(samples, key=lambda s: (s.slice_id, s.chunk_index, s.id))
    got = list(index.in_raw_order())
    assert [sid for sid, _ in got] == [s.id for s in expected]
    where = {s.id: k * 100 for k, s in enumerate(arrived)}
    assert all(offset == where[sid] for sid, offset in got)
    assert list(index.passed()) == [(s.id, s.slice_id, s.avg_score) for s in arrived if s.passed]
    assert len(index) == 200


@pytest.mark.slow
def test_an_indexed_sample_costs_under_64_bytes_beyond_its_shared_strings():
    samples = [sample(i, f"s{i // 3}", 0, 8.5, True) for i in range(20_000)]
    index = RunIndex()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for k, s in enumerate(samples):
        index.add(s, k)
    grown = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    assert grown / len(samples) < 64
