"""chunking: boundaries on Chinese and English text, the no-loss property, sample shares."""

from __future__ import annotations

import random
import time

import pytest

from sft_distill.sources.chunking import allocate_samples, split_text
from tests.helpers import SHARED_DATA, needs_shared, read_jsonl


def assert_no_loss(text: str, chunks: list[str], max_chars: int) -> None:
    """text == w0 + chunks[0] + w1 + … + chunks[-1] + wn, every wi whitespace (or empty)."""
    if chunks == [text]:
        assert len(text) <= max_chars  # fits: returned unchanged
        return
    pos = 0
    for chunk in chunks:
        assert chunk, "empty chunk"
        assert len(chunk) <= max_chars
        gap_end = pos + (len(text[pos:]) - len(text[pos:].lstrip()))
        assert text.startswith(chunk, gap_end), f"chunk does not follow at {gap_end}"
        pos = gap_end + len(chunk)
    assert text[pos:].strip() == ""
    if len(chunks) > 1:
        assert all(c == c.strip() for c in chunks)


# --- basics --------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["", " ", "\n\n\t\u3000"])
def test_empty_or_blank_text_gives_no_chunks(text: str) -> None:
    assert split_text(text, 10) == []


def test_text_that_fits_is_returned_unchanged() -> None:
    assert split_text("  保险合同。\n", 20) == ["  保险合同。\n"]
    assert split_text("abc", 3) == ["abc"]


def test_text_over_the_limit_only_by_whitespace_is_one_stripped_chunk() -> None:
    assert split_text("  保险合同。\n\n\n", 6) == ["保险合同。"]


def test_max_chars_must_be_positive() -> None:
    with pytest.raises(ValueError):
        split_text("abc", 0)


# --- boundaries ----------------------------------------------------------------------------


def test_paragraphs_are_packed_greedily() -> None:
    paras = [c * 40 for c in "甲乙丙"]
    text = "\n\n".join(paras)
    assert split_text(text, 100) == [paras[0] + "\n\n" + paras[1], paras[2]]


def test_chinese_sentences() -> None:
    sentences = [f"本句编号{i:02d}为十字。" for i in range(20)]  # 10 chars each, no spaces
    text = "".join(sentences)
    chunks = split_text(text, 35)
    assert_no_loss(text, chunks, 35)
    assert chunks[0] == "".join(sentences[:3])  # as full as possible: 30 of 35
    assert all(c.endswith("。") for c in chunks)
    assert [len(c) for c in chunks] == [30] * 6 + [20]


def test_chinese_sentence_keeps_its_closing_quote() -> None:
    text = "他说：“保单已经生效。”然后离开了。" * 3
    chunks = split_text(text, 20)
    assert_no_loss(text, chunks, 20)
    assert all(c.endswith(("。”", "。")) for c in chunks)
    assert not any(c.startswith("”") for c in chunks)


def test_english_sentences_and_decimals() -> None:
    text = "The premium is 3.5 dollars. It is due monthly! Is it refundable? No. " * 4
    chunks = split_text(text, 60)
    assert_no_loss(text, chunks, 60)
    assert all(c.endswith((".", "!", "?")) for c in chunks)
    assert not any(c.endswith("3.") for c in chunks)  # "3.5" is not a sentence end


def test_clause_boundaries_when_a_sentence_is_too_long() -> None:
    text = "，".join(["投保人应当如实告知"] * 12) + "。"
    chunks = split_text(text, 30)
    assert_no_loss(text, chunks, 30)
    assert all(c.endswith("，") for c in chunks[:-1])
    english = ", ".join(["the insured shall disclose"] * 8) + "."
    chunks = split_text(english, 70)
    assert_no_loss(english, chunks, 70)
    assert all(c.endswith(",") for c in chunks[:-1])


def test_words_are_not_cut_when_there_is_no_punctuation() -> None:
    text = " ".join(["policyholder"] * 40)
    chunks = split_text(text, 50)
    assert_no_loss(text, chunks, 50)
    assert all(set(c.split()) == {"policyholder"} for c in chunks)


def test_hard_cut_as_last_resort() -> None:
    text = "字" * 250
    assert split_text(text, 100) == ["字" * 100, "字" * 100, "字" * 50]


def test_crlf_line_endings() -> None:
    text = "\r\n\r\n".join(["第一段内容。" * 5, "第二段内容。" * 5, "第三段内容。" * 5])
    chunks = split_text(text, 60)  # two paragraphs + separator are 64 chars
    assert_no_loss(text, chunks, 60)
    assert chunks == [p.strip() for p in text.split("\r\n\r\n")]


def test_a_chunk_prefers_to_start_at_an_article_heading() -> None:
    articles = []
    for n in "一二三四五六":
        title = f"第{n}条 保险责任"  # 8 chars
        articles.append(f"{title}\n{'甲' * 54}\n{'乙' * 54}")  # 118 chars, one line break each
    text = "\n".join(articles)
    chunks = split_text(text, 150)
    assert_no_loss(text, chunks, 150)
    # Greedy packing alone would end each chunk with the next article's title line.
    assert chunks == articles


def test_markdown_heading_starts_a_chunk() -> None:
    sections = [f"# Section {i}\n" + "Body sentence here. " * 5 for i in range(4)]
    text = "\n".join(s.strip() for s in sections)
    chunks = split_text(text, 130)
    assert_no_loss(text, chunks, 130)
    assert all(c.startswith("# Section") for c in chunks)


def test_cut_moves_back_to_a_paragraph_end_only_if_little_is_wasted() -> None:
    sentences = [f"后句{i:02d}内容。" for i in range(20)]  # 7 chars each
    tail = "".join(sentences)  # one 140-char paragraph, split on sentences
    # The first paragraph fills 80% of the chunk: end the chunk there, not mid-paragraph.
    full = "甲" * 79 + "。"
    assert split_text(full + "\n\n" + tail, 100)[0] == full
    # It fills only 30%: too much waste, so pack the next paragraph's sentences in.
    short = "甲" * 29 + "。"
    fitting = (100 - len(short) - 2) // 7
    assert split_text(short + "\n\n" + tail, 100)[0] == short + "\n\n" + tail[: 7 * fitting]


# --- no-loss property ----------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(20))
def test_no_loss_on_random_text(seed: int) -> None:
    rng = random.Random(seed)
    separators = ["。", "，", ". ", "\n", "\n\n", "  ", "！", "；", "\r\n"]
    alphabet = [*"保险合同条款abc xyz", *separators]
    text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 3000)))
    for max_chars in (1, 7, 50, 333, 5000):
        assert_no_loss(text, split_text(text, max_chars), max_chars)


@needs_shared("slices_zh.jsonl", "slices_en.jsonl")
@pytest.mark.parametrize("name", ["slices_zh.jsonl", "slices_en.jsonl"])
def test_no_loss_on_real_slices(name: str) -> None:
    for text in (row["content"] for row in read_jsonl(SHARED_DATA / name)):
        for max_chars in (200, 1500, 6000):
            assert_no_loss(text, split_text(text, max_chars), max_chars)


# --- speed guards --------------------------------------------------------------------------


LAW_300K = (
    "\n".join(
        f"第{i}条 被保险人在保险期间内因意外伤害事故导致身故的，保险人按保险金额给付身故保险金，"
        f"本合同终止。投保人、被保险人故意造成保险事故的，保险人不承担给付责任。"
        for i in range(4000)
    )
)[:300_000]


@pytest.mark.parametrize(
    "text",
    [LAW_300K, "字" * 300_000, ("word " * 60_000), ("a, " * 100_000)],
    ids=["law", "no-separators", "words", "clauses"],
)
@pytest.mark.slow
def test_split_text_is_fast_on_300k_chars(text: str) -> None:
    start = time.perf_counter()
    chunks = split_text(text, 2000)
    assert time.perf_counter() - start < 1.0  # a guard against quadratic behaviour
    assert_no_loss(text, chunks, 2000)


# --- allocate_samples ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lengths", "total", "expected"),
    [
        ([3000, 1000], 8, [6, 2]),
        ([1, 1, 1], 10, [4, 3, 3]),  # ties go to the earlier chunk
        ([100, 1, 1, 1], 10, [7, 1, 1, 1]),  # tiny chunks held at 1, the rest shared
        ([5, 5, 5], 2, [1, 1, 1]),  # more chunks than samples: each still gets one
        ([5, 5], 0, [1, 1]),
        ([0, 0], 5, [3, 2]),  # no length information: equal shares
        ([0, 10], 5, [1, 4]),
        ([7], 4, [4]),
        ([], 5, []),
    ],
)
def test_allocate_samples(lengths: list[int], total: int, expected: list[int]) -> None:
    assert allocate_samples(lengths, total) == expected


@pytest.mark.parametrize("seed", range(30))
def test_allocate_samples_properties(seed: int) -> None:
    rng = random.Random(seed)
    lengths = [rng.randint(0, 5000) for _ in range(rng.randint(1, 40))]
    total = rng.randint(0, 200)
    shares = allocate_samples(lengths, total)
    assert sum(shares) == max(total, len(lengths))
    assert all(s >= 1 for s in shares)
    pairs = list(zip(lengths, shares, strict=True))
    for a, b in pairs:
        for c, d in pairs:
            if a > c:
                assert b >= d  # a longer chunk never gets fewer samples


def test_allocate_samples_rejects_negatives() -> None:
    with pytest.raises(ValueError):
        allocate_samples([1, -1], 3)
    with pytest.raises(ValueError):
        allocate_samples([1], -1)
