"""What each teacher request asks for: density, big chunks split over articles, the question mix."""

from __future__ import annotations

import itertools
import json

import pytest

from sft_distill.sources.chunking import split_text
from sft_distill.sources.headings import find_articles
from sft_distill.sources.plan import (
    CATEGORIES,
    chunk_sample_count,
    question_mix,
    split_requests,
)
from tests.helpers import SLICES

LAW = json.loads(SLICES.read_text(encoding="utf-8").splitlines()[0])["content"]
FIRST_CHUNK = split_text(LAW, 6000)[0]


def test_the_mix_of_five_is_the_issue_example():
    text = "第十六条 投保人应当在三十日内如实告知；但是，保险人不得解除合同。" * 30
    mix = question_mix(5, text)
    assert dict(mix.types) == {"fact": 2, "condition": 1, "calculation": 1, "case": 1}
    assert mix.difficulty == (2, 2, 1)
    assert mix.n == 5 and len(mix.slots()) == 5
    assert mix.slots()[0] == ("fact", "easy") and mix.slots()[-1][1] == "hard"


def test_the_mix_asks_only_what_the_text_supports():
    plain = "保险合同是投保人与保险人约定保险权利义务关系的协议。"
    mix = question_mix(6, plain)
    assert {c for c, _ in mix.types} <= {"fact", "case", "reasoning"}
    assert "calculation" not in dict(question_mix(12, plain).types)
    rich = FIRST_CHUNK
    assert set(dict(question_mix(12, rich).types)) == set(CATEGORIES)
    assert question_mix(1, rich).difficulty == (0, 1, 0)
    assert question_mix(2, rich).difficulty == (1, 1, 0)
    assert question_mix(10, rich).difficulty == (4, 4, 2)


def test_the_mix_is_deterministic():
    assert question_mix(7, FIRST_CHUNK) == question_mix(7, FIRST_CHUNK)


def test_density_per_article_and_per_1k_chars():
    assert chunk_sample_count(FIRST_CHUNK, samples_per_1k_chars=None, per_article=False) is None
    articles = len(find_articles(FIRST_CHUNK))
    one = chunk_sample_count(FIRST_CHUNK, samples_per_1k_chars=None, per_article=True)
    assert one == articles + 1  # the preamble before 第一条 is long enough to count once
    two = chunk_sample_count(FIRST_CHUNK, samples_per_1k_chars=None, per_article=2)
    assert two == 2 * one
    per_1k = chunk_sample_count(FIRST_CHUNK, samples_per_1k_chars=4, per_article=False)
    assert per_1k == -(-len(FIRST_CHUNK.strip()) * 4 // 1000)
    both = chunk_sample_count(FIRST_CHUNK, samples_per_1k_chars=4, per_article=True)
    assert both == max(one, per_1k)
    # no cap of 100 of our own: big chunks are split into requests instead
    assert chunk_sample_count(FIRST_CHUNK, samples_per_1k_chars=None, per_article=3) > 100


def test_a_small_chunk_is_one_request():
    (part,) = split_requests(FIRST_CHUNK, 10, 10)
    assert (part.n, part.whole, part.start, part.end) == (10, True, 0, len(FIRST_CHUNK))


def test_a_big_chunk_is_split_over_contiguous_article_ranges():
    n = chunk_sample_count(FIRST_CHUNK, samples_per_1k_chars=None, per_article=True)
    parts = split_requests(FIRST_CHUNK, n, 10)
    assert len(parts) == 5 and sum(p.n for p in parts) == n
    assert all(p.articles and p.n <= 10 for p in parts)
    assert [p.index for p in parts] == list(range(5)) and {p.total for p in parts} == {5}
    labels = [a.label for a in find_articles(FIRST_CHUNK)]
    assert parts[0].first == ""  # the preamble, then 第一条 to 第八条
    assert (parts[0].last, parts[1].first) == ("第八条", "第九条")
    covered = [
        lab for p in parts for lab in labels[labels.index(p.first or labels[0]) :][: p.units]
    ]
    assert covered == labels  # every article in exactly one range, in order
    for a, b in itertools.pairwise(parts):
        assert a.end == b.start


def test_a_big_chunk_without_articles_is_split_over_its_text():
    text = "Employees accrue leave every month. Leave must be approved in writing. " * 60
    parts = split_requests(text, 25, 10)
    assert len(parts) == 3 and sum(p.n for p in parts) == 25
    assert not any(p.articles for p in parts)
    for p in parts:
        assert text[p.start : p.end].startswith(p.first)
        assert text[p.start : p.end].rstrip().endswith(p.last)


@pytest.mark.parametrize("n", [11, 37, 120])
def test_split_shares_add_up_and_stay_near_the_cap(n):
    parts = split_requests(FIRST_CHUNK, n, 10)
    assert sum(p.n for p in parts) == n
    assert max(p.n for p in parts) <= 13
