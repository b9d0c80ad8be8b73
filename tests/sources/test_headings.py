"""Titles, heading paths, article units, sample density and coverage (sft_distill.headings)."""

from __future__ import annotations

import itertools
import json
import math
import time

import pytest

from sft_distill.sources.chunking import split_text
from sft_distill.sources.headings import (
    Article,
    ArticleRef,
    article_coverage,
    chunk_starts,
    cn_to_int,
    find_article_refs,
    find_articles,
    find_headings,
    format_context_header,
    heading_path_at,
    heading_paths,
    is_article_structured,
    samples_for_chunk,
    slice_title,
)
from tests.conftest import EXAMPLES, NO_SHARED, SHARED_DATA

# Excerpts of the PRC Insurance Law (2015) and the Civil Code, as in examples/slices.jsonl.
ZH_LAW = "\n\n".join(
    [
        "# 中华人民共和国保险法",
        "1995年6月30日 第八届全国人民代表大会常务委员会第十四次会议通过",
        "## 第一章 总则",
        "第一条 为了规范保险活动，保护保险活动当事人的合法权益，加强对保险业的监督管理，"
        "维护社会经济秩序和社会公共利益，促进保险事业的健康发展，制定本法。",
        "第二条 本法所称保险，是指投保人根据合同约定，向保险人支付保险费，保险人对于合同约定的"
        "可能发生的事故因其发生所造成的财产损失承担赔偿保险金责任的商业保险行为。",
        "## 第二章 保险合同",
        "### 第一节 一般规定",
        "第十条 保险合同是投保人与保险人约定保险权利义务关系的协议。",
        "投保人是指与保险人订立保险合同，并按照合同约定负有支付保险费义务的人。",
        "第十六条 订立保险合同，保险人就保险标的或者被保险人的有关情况提出询问的，"
        "投保人应当如实告知。",
        "前款规定的合同解除权，自保险人知道有解除事由之日起，超过三十日不行使而消灭。"
        "自合同成立之日起超过二年的，保险人不得解除合同。",
        "### 第三节 财产保险合同",
        "第四十八条 保险事故发生时，被保险人对保险标的不具有保险利益的，"
        "不得向保险人请求赔偿保险金。",
        "## 第三章 保险公司",
        "第六十七条 设立保险公司应当经国务院保险监督管理机构批准。\n",
    ]
)

ZH_CIVIL = (
    "中华人民共和国民法典 合同编\n\n"
    "### 第八章\u2002\u2002违约责任\n\n"
    "第五百七十七条 当事人一方不履行合同义务或者履行合同义务不符合约定的，应当承担继续履行、"
    "采取补救措施或者赔偿损失等违约责任。\n\n"
    "第五百九十四条 因国际货物买卖合同和技术进出口合同争议提起诉讼或者申请仲裁的"
    "时效期间为四年。\n\n"
    "## 第二分编\u2002\u2002典型合同\n"
)

# US Constitution excerpts in the phoenhome/united-states-constitution markdown layout.
EN_CONST = "\n\n".join(
    [
        "## Preamble",
        "We the People of the United States, in Order to form a more perfect Union, establish "
        "Justice, insure domestic Tranquility, do ordain and establish this Constitution for the "
        "United States of America.",
        "## 1. Article I",
        "### Section 1",
        "All legislative Powers herein granted shall be vested in a Congress of the United "
        "States, which shall consist of a Senate and House of Representatives.",
        "### Section 2",
        "The House of Representatives shall be composed of Members chosen every second Year by "
        "the People of the several States.",
        "### Section 8",
        "The Congress shall have Power To lay and collect Taxes, Duties, Imposts and Excises, to "
        "pay the Debts and provide for the common Defence and general Welfare of the United "
        "States.",
        "## 2. Article II",
        "### Section 1",
        "The executive Power shall be vested in a President of the United States of America. He "
        "shall hold his Office during the Term of four Years.\n",
    ]
)

EN_DOC = """# QuickStart

First, start by importing HTTPX:

```pycon
>>> import httpx
# not a heading: a comment inside a code block
```

## Passing Parameters in URLs

To include URL query parameters in the request, use the `params` keyword:

### [AsyncIO](https://docs.python.org/3/library/asyncio.html)

AsyncIO is Python's built-in library.
"""

RST_DOC = """Tenacity
========

Tenacity is an Apache 2.0 licensed general-purpose retrying library.

Features
--------

- Generic Decorator API

Examples
--------

Basic Retry
~~~~~~~~~~~

As you saw above, the default behavior is to retry forever without waiting.

.. code-block:: python

    # a comment in an indented code block
    print("x")
"""


def _texts(headings):
    return [(h.level, h.text) for h in headings]


# --- numbers -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("一百零五", 105),
        ("十", 10),
        ("十五", 15),
        ("二十", 20),
        ("二十四", 24),
        ("一千零一", 1001),
        ("一千一百六十四", 1164),
        ("五百七十七", 577),
        ("两", 2),
        ("两百", 200),
        ("〇", 0),
        ("零", 0),
        ("一〇五", 105),
        ("１０５", 105),
        ("105", 105),
        ("壹佰零伍", 105),
        ("一万零一", 10001),
        ("一百一", 110),
    ],
)
def test_cn_to_int(text, value):
    assert cn_to_int(text) == value


@pytest.mark.parametrize("text", ["", "  ", "abc", "十百", "百百", "一二x", "第五"])
def test_cn_to_int_rejects_non_numerals(text):
    with pytest.raises(ValueError):
        cn_to_int(text)


# --- titles ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "metadata", "title"),
    [
        (ZH_LAW, {"title": "保险法(2015-04-24)"}, "保险法(2015-04-24)"),
        (ZH_LAW, {"name": "  Insurance Law  "}, "Insurance Law"),
        (ZH_LAW, {"标题": "保险法"}, "保险法"),
        (ZH_LAW, {"title": "   ", "source": "x"}, "中华人民共和国保险法"),
        (ZH_LAW, None, "中华人民共和国保险法"),
        (
            "泰康在线财产保险股份有限公司\n\n《个人重大疾病保险I款（互联网专属）》\n\n总则\n\n第一条本保险合同由保险条款组成。",
            {},
            "个人重大疾病保险I款（互联网专属）",
        ),
        (
            "华泰财产保险有限公司\n\n附加意外伤害住院津贴保险条款\n\n第一条\n\n本附加条款须附加于主险。",
            None,
            "附加意外伤害住院津贴保险条款",
        ),
        (ZH_CIVIL, None, "中华人民共和国民法典 合同编"),
        (RST_DOC, None, "Tenacity"),
        (EN_DOC, {}, "QuickStart"),
        ("Intro text that is not a title.\n\nMore text.", None, None),
        ("您通过网络页面点击确认或同意接受《服务协议》，即视为您已达成合意。", None, None),
    ],
)
def test_slice_title(content, metadata, title):
    assert slice_title(content, metadata) == title


# --- headings ----------------------------------------------------------------------------------


def test_headings_of_a_chinese_law():
    assert _texts(find_headings(ZH_LAW)) == [
        (1, "中华人民共和国保险法"),
        (2, "第一章 总则"),
        (2, "第二章 保险合同"),
        (3, "第一节 一般规定"),
        (3, "第三节 财产保险合同"),
        (2, "第三章 保险公司"),
    ]
    # EN SPACE runs are normalised; 分编 is its own unit, not 编.
    assert _texts(find_headings(ZH_CIVIL)) == [(3, "第八章 违约责任"), (2, "第二分编 典型合同")]


def test_plain_chinese_structural_lines_rank_by_unit():
    text = (
        "第一编 总则\n\n第一分编 通则\n\n第二章　合同的订立\n\n第一节：一般规定\n\n"
        "第四百六十九条 当事人订立合同，可以采用书面形式、口头形式或者其他形式。\n\n"
        "一、服务提示\n\n1.请您在投保前认真评估保障需求。\n\n"
        "第三节规定的情形，适用本章。\n\n"
        "一、关于本案诉争行为是否违反了反垄断法第十七条第五项之规定。\n"
    )
    assert _texts(find_headings(text)) == [
        (1, "第一编 总则"),
        (2, "第一分编 通则"),
        (3, "第二章 合同的订立"),
        (4, "第一节：一般规定"),
        (5, "一、服务提示"),
    ]


def test_insurance_clause_part_titles_are_headings():
    clause = (
        "华泰财险个人中高端医疗费用保险条款\n\n总则\n\n第一条\n\n本保险合同由保险条款、投保单组成。\n\n"
        "第二条 投保人提出保险申请，经保险人同意承保，本合同成立。\n\n"
        "保险责任\n\n第三条 保险责任\n\n在本保险合同的保险期间内，保险人承担下列保险责任：\n\n"
        "一般医疗保险金\n\n被保险人因遭受意外伤害事故导致其在医院接受治疗的，保险人给付保险金。\n"
    )
    assert _texts(find_headings(clause)) == [(3, "总则"), (3, "保险责任")]
    assert heading_path_at(clause, clause.index("在本保险合同")) == ["保险责任"]
    arts = find_articles(clause)
    # 第二条 ends where the next part's title starts.
    assert clause[arts[1].start : arts[1].end].endswith("本合同成立。")
    # Enumerated definitions inside the last article stay in it.
    definitions = "释义\n\n第九条 本合同所称：\n\n一、既往症\n\n指本合同生效前罹患的疾病。\n"
    last = find_articles(definitions)[-1]
    assert definitions[last.start : last.end].endswith("罹患的疾病。")


def test_english_headings_and_code_fences():
    assert _texts(find_headings(EN_DOC)) == [
        (1, "QuickStart"),
        (2, "Passing Parameters in URLs"),
        (3, "AsyncIO"),
    ]
    assert _texts(find_headings(EN_CONST)) == [
        (2, "Preamble"),
        (2, "Article I"),
        (3, "Section 1"),
        (3, "Section 2"),
        (3, "Section 8"),
        (2, "Article II"),
        (3, "Section 1"),
    ]
    plain = (
        "PART IV\n\nChapter 3 — Remedies\n\nARTICLE I\n\nSection 2. Definitions\n\n"
        "Section 2 of this Act applies to every State.\n\n"
        "Article 5 of the GDPR lists the principles\n\n"
        "Amendment XIV\n\n"
        "Section 1. All persons born or naturalized in the United States are citizens.\n"
    )
    assert _texts(find_headings(plain)) == [
        (1, "PART IV"),
        (3, "Chapter 3 — Remedies"),
        (3, "ARTICLE I"),
        (4, "Section 2. Definitions"),
        (3, "Amendment XIV"),
    ]
    amend = "### 14. **XIV** Fourteenth Amendment\n\n1. All persons born or naturalized …\n"
    assert _texts(find_headings(amend)) == [(3, "Fourteenth Amendment")]


def test_rst_and_setext_titles():
    assert _texts(find_headings(RST_DOC)) == [
        (1, "Tenacity"),
        (2, "Features"),
        (2, "Examples"),
        (3, "Basic Retry"),
    ]
    overlined = "=====\nTitle\n=====\n\nText\n\nPart\n=====\n\nmore\n"
    assert _texts(find_headings(overlined)) == [(1, "Title"), (2, "Part")]
    # A horizontal rule after a blank line, and a table separator, are not underlines.
    assert find_headings("Some text\n\n---\n\n| a | b |\n|---|---|\n") == []


def test_heading_path_at():
    at = ZH_LAW.index("第四十八条")
    assert heading_path_at(ZH_LAW, at) == [
        "中华人民共和国保险法",
        "第二章 保险合同",
        "第三节 财产保险合同",
    ]
    assert heading_path_at(ZH_LAW, ZH_LAW.index("第六十七条")) == [
        "中华人民共和国保险法",
        "第三章 保险公司",
    ]
    # A heading that starts exactly at the offset is part of the path.
    assert heading_path_at(ZH_LAW, ZH_LAW.index("## 第二章")) == [
        "中华人民共和国保险法",
        "第二章 保险合同",
    ]
    assert heading_path_at(ZH_LAW, 0) == ["中华人民共和国保险法"]
    assert heading_path_at("正文\n\n# 标题\n", 0) == []
    assert heading_path_at(EN_CONST, EN_CONST.index("The Congress shall")) == [
        "Article I",
        "Section 8",
    ]
    assert heading_path_at(EN_CONST, EN_CONST.index("The executive Power")) == [
        "Article II",
        "Section 1",
    ]


@pytest.mark.parametrize("text", [ZH_LAW, ZH_CIVIL, EN_CONST, EN_DOC, RST_DOC, ""])
def test_heading_paths_agree_with_heading_path_at_for_every_offset(text):
    offsets = list(range(len(text) + 1))
    assert heading_paths(text, offsets) == [heading_path_at(text, o) for o in offsets]
    # Any order, with repeats.
    shuffled = offsets[::-7] + offsets[::5] + [0, 0]
    assert heading_paths(text, shuffled) == [heading_path_at(text, o) for o in shuffled]


def test_chunk_starts_and_paths_on_the_insurance_law():
    law = _example("insurance-law")["content"]
    chunks = split_text(law, 2000)
    starts = chunk_starts(law, chunks)
    assert [law[s : s + len(c)] for s, c in zip(starts, chunks, strict=True)] == chunks
    paths = heading_paths(law, starts)
    assert all(p[0] == "中华人民共和国保险法" for p in paths)
    assert any(p[1:] == ["第二章 保险合同", "第三节 财产保险合同"] for p in paths)
    with pytest.raises(ValueError):
        chunk_starts("abc", ["c", "a"])


# --- articles ----------------------------------------------------------------------------------


def test_find_articles_in_a_chinese_law():
    arts = find_articles(ZH_LAW)
    assert [(a.label, a.number) for a in arts] == [
        ("第一条", 1),
        ("第二条", 2),
        ("第十条", 10),
        ("第十六条", 16),
        ("第四十八条", 48),
        ("第六十七条", 67),
    ]
    # 第十六条 ends before the heading of the next section, whitespace trimmed.
    sixteen = arts[3]
    assert ZH_LAW[sixteen.start : sixteen.end].endswith("保险人不得解除合同。")
    assert all(a.kind == "条" and a.sub == 0 and a.parent is None for a in arts)
    assert [a.number for a in find_articles(ZH_CIVIL)] == [577, 594]


def test_find_articles_chinese_variants_and_references():
    text = (
        "**第一条** 本合同由保险条款组成。\n\n"
        "第二条凡投保时身体健康的自然人，均可作为被保险人。\n\n"
        "第三条\n\n本合同的投保人应为被保险人本人。\n\n"
        "#### 第4条 受益人\n\n除另有约定外，受益人为被保险人本人。\n\n"
        "第十条之一 保险人应当及时签发保险单。\n\n"
        "第十条规定的期间届满后，本合同终止。\n\n"
        "第十六条第二款所称重大过失，由保险人举证。\n\n"
        "第五条、第六条的规定适用于附加险。\n\n"
        "第一百零五条 本条款自公布之日起施行。\n"
    )
    arts = find_articles(text)
    assert [(a.label, a.number, a.sub) for a in arts] == [
        ("第一条", 1, 0),
        ("第二条", 2, 0),
        ("第三条", 3, 0),
        ("第4条", 4, 0),
        ("第十条之一", 10, 1),
        ("第一百零五条", 105, 0),
    ]
    # A reference line stays inside the article before it.
    assert "第十条规定的期间" in text[arts[4].start : arts[4].end]


def test_find_articles_in_english_legal_text():
    arts = find_articles(EN_CONST)
    assert [(a.label, a.kind, a.number, a.parent) for a in arts] == [
        ("Article I, Section 1", "section", 1, 1),
        ("Article I, Section 2", "section", 2, 1),
        ("Article I, Section 8", "section", 8, 1),
        ("Article II, Section 1", "section", 1, 2),
    ]
    # The Preamble is not part of Section 1; Section 8 ends before the Article II heading.
    assert EN_CONST[arts[2].start : arts[2].end].endswith("general Welfare of the United States.")
    one_article = EN_CONST[: EN_CONST.index("## 2. Article II")]
    assert [a.label for a in find_articles(one_article)] == ["Section 1", "Section 2", "Section 8"]
    plain = (
        "Art. 1. Scope. This Regulation applies to processing.\n\n"
        "Article 2 The principles below apply.\n\n"
        "Article 3 of the Treaty is not a unit start.\n\n"
        "Art. 4: Definitions\n"
    )
    assert [(a.kind, a.number) for a in find_articles(plain)] == [
        ("article", 1),
        ("article", 2),
        ("article", 4),
    ]
    amendments = (
        "## Amendments\n\n### 1. **I** First Amendment\n\nCongress shall make no law.\n\n"
        "### 2. **II** Second Amendment\n\nA well regulated Militia.\n\n"
        "### 21. **XXI** Twenty-first Amendment\n\n1. The eighteenth article is repealed.\n"
    )
    assert [(a.label, a.number) for a in find_articles(amendments)] == [
        ("Amendment I", 1),
        ("Amendment II", 2),
        ("Amendment XXI", 21),
    ]
    code = "```\nSection 1. Not here.\nSection 2. Nor here.\nSection 3. Nor here.\n```\n"
    assert find_articles(code) == []


def test_is_article_structured():
    assert is_article_structured(ZH_LAW)
    assert is_article_structured(EN_CONST)
    assert not is_article_structured(EN_DOC)
    assert not is_article_structured(ZH_CIVIL)  # two articles
    assert is_article_structured(ZH_CIVIL, min_articles=2)


# --- samples per chunk -------------------------------------------------------------------------


def test_samples_per_article():
    assert samples_for_chunk(ZH_LAW, per_article=True) == 6
    # A 3,200-character article earns ceil(3200 / 1500) = 3; a short one 1.
    long_article = "第五条 " + "保险人应当及时履行赔偿义务。" * 228
    assert (
        samples_for_chunk(long_article + "\n\n第六条 本法自公布之日起施行。", per_article=True) == 4
    )
    # The tail of an article cut by chunking counts when it is long enough; a heading does not.
    tail = "投保人故意不履行如实告知义务的，保险人不承担赔偿责任。" * 10
    assert samples_for_chunk(tail + "\n\n第七条 短条文。", per_article=True) == 2
    assert samples_for_chunk("## 第二章 保险合同\n\n第七条 短条文。", per_article=True) == 1
    # No article: one per 1,500 characters, at least one.
    assert samples_for_chunk("x" * 100, per_article=True) == 1
    assert samples_for_chunk("x" * 3001, per_article=True) == 3


def test_samples_per_1k_chars_and_both():
    assert samples_for_chunk("a" * 2000, samples_per_1k_chars=1.5) == 3
    assert samples_for_chunk("a" * 2001, samples_per_1k_chars=1.0) == 3
    assert samples_for_chunk("a" * 10, samples_per_1k_chars=1.0) == 1
    assert samples_for_chunk("  " + "a" * 1000 + "\n\n", samples_per_1k_chars=1.0) == 1
    # Both: the larger count.
    assert samples_for_chunk(ZH_LAW, per_article=True, samples_per_1k_chars=1.0) == 6
    dense = math.ceil(len(ZH_LAW.strip()) / 1000 * 20)
    assert dense > 6
    assert samples_for_chunk(ZH_LAW, per_article=True, samples_per_1k_chars=20.0) == dense
    assert samples_for_chunk(ZH_LAW, per_article=True, maximum=4) == 4
    assert samples_for_chunk("a", samples_per_1k_chars=0.1, minimum=2, maximum=5) == 2


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"samples_per_1k_chars": 0.0},
        {"samples_per_1k_chars": -1.0},
        {"per_article": True, "minimum": 3, "maximum": 2},
    ],
)
def test_samples_for_chunk_rejects_bad_settings(kwargs):
    with pytest.raises(ValueError):
        samples_for_chunk("第一条 文本。", **kwargs)


# --- references and coverage -------------------------------------------------------------------


def _refs(text):
    return [(r.kind, r.number, r.sub, r.parent) for r in find_article_refs(text)]


@pytest.mark.parametrize(
    ("text", "refs"),
    [
        ("依照《保险法》第16条第二款的规定", [("条", 16, 0, None)]),
        ("第一百零五条、第一百零六条", [("条", 105, 0, None), ("条", 106, 0, None)]),
        ("第105、106条", [("条", 105, 0, None), ("条", 106, 0, None)]),
        ("第105至107条", [("条", n, 0, None) for n in (105, 106, 107)]),
        ("第105-107条", [("条", n, 0, None) for n in (105, 106, 107)]),
        ("第一百零五条至第一百零七条", [("条", n, 0, None) for n in (105, 106, 107)]),
        ("第十六条和第十七条", [("条", 16, 0, None), ("条", 17, 0, None)]),
        ("第十条之一", [("条", 10, 1, None)]),
        ("第三十二种重大疾病", []),
        ("Article 105", [("article", 105, 0, None)]),
        ("Art. 105", [("article", 105, 0, None)]),
        ("§ 105", [("section", 105, 0, None)]),
        ("Section 105", [("section", 105, 0, None)]),
        ("Articles 5 and 6", [("article", 5, 0, None), ("article", 6, 0, None)]),
        ("§§ 3-5", [("section", n, 0, None) for n in (3, 4, 5)]),
        ("Sections 2 through 4", [("section", n, 0, None) for n in (2, 3, 4)]),
        ("In Article 5, 2018", [("article", 5, 0, None)]),
        ("Article I, Section 8", [("article", 1, 0, None), ("section", 8, 0, 1)]),
        ("Section 8 of Article I", [("section", 8, 0, 1), ("article", 1, 0, None)]),
        ("the Fifth and Fourteenth Amendments", [("amendment", n, 0, None) for n in (5, 14)]),
        ("Amendment XIV", [("amendment", 14, 0, None)]),
    ],
)
def test_find_article_refs(text, refs):
    assert _refs(text) == refs


def test_article_coverage_by_citation():
    samples = [
        "问：根据《中华人民共和国保险法》第十六条，保险人的合同解除权何时消灭？答：……",
        "Under Article 48 of the PRC Insurance Law, the insured must have an insurable interest.",
        "第一条、第2条规定了立法目的和保险的定义。",
        "What does Section 67 say?",  # a Chinese article cited in any form counts
    ]
    cov = article_coverage(ZH_LAW, samples)
    assert (cov.total, cov.cited, cov.covered) == (6, 5, 5)
    assert cov.labels_missing == ("第十条",)
    assert cov.ratio == pytest.approx(5 / 6)
    assert cov.by_content is None
    ranges = article_coverage(ZH_LAW, ["第一条至第十条", "第16-48条"])
    assert ranges.labels_missing == ("第六十七条",)
    none = article_coverage(EN_DOC, ["Section 1"])
    assert (none.total, none.covered, none.ratio) == (0, 0, None)


def test_article_coverage_in_english_respects_the_article():
    samples = ["Article I, Section 8 lists the powers of Congress.", "Under Art. II, § 1 …"]
    cov = article_coverage(EN_CONST, samples)
    assert cov.labels_missing == ("Article I, Section 1", "Article I, Section 2")
    # A bare "Section 1" covers the Section 1 of either article; "Article I" alone covers none.
    assert article_coverage(EN_CONST, ["Section 1"]).covered == 2
    assert article_coverage(EN_CONST, ["Article I"]).covered == 0


def test_article_coverage_by_content():
    quote = "保险事故发生时，被保险人对保险标的不具有保险利益的，不得向保险人请求赔偿保险金。"
    short = "订立保险合同，保险人就保险标的"  # 15 characters: below a 20-character run
    samples = [f"答：依照法律规定，{quote}", f"答：{short}……"]
    plain = article_coverage(ZH_LAW, samples)
    assert (plain.cited, plain.covered, plain.by_content) == (0, 0, None)
    cov = article_coverage(ZH_LAW, samples, by_content=True)
    assert (cov.cited, cov.by_content, cov.covered) == (0, 1, 1)
    assert "第四十八条" not in cov.labels_missing
    # Spacing and punctuation do not matter; half of a short article is enough.
    respaced = "保险事故发生时 被保险人对保险标的不具有保险利益的"
    assert article_coverage(ZH_LAW, [respaced], by_content=True).by_content == 1
    assert article_coverage(ZH_LAW, [respaced], by_content=True, min_share=0.9).by_content == 0
    # English: the section's own heading line is not part of what must be quoted.
    quote_en = (
        "The Congress shall have Power To lay and collect Taxes, Duties, Imposts and Excises, "
        "to pay the Debts"
    )
    en = article_coverage(EN_CONST, [f"It says: {quote_en}."], by_content=True)
    assert (en.cited, en.by_content) == (0, 1)
    assert "Article I, Section 8" not in en.labels_missing
    # Both counts are reported; covered is their union.
    mixed = article_coverage(ZH_LAW, [quote, "第一条"], by_content=True)
    assert (mixed.cited, mixed.by_content, mixed.covered) == (1, 1, 2)


# --- context header ----------------------------------------------------------------------------


def test_format_context_header():
    assert (
        format_context_header(
            "中华人民共和国保险法",
            ["中华人民共和国保险法", "第二章 保险合同", "第三节 财产保险合同"],
            "zh",
        )
        == "资料：《中华人民共和国保险法》 › 第二章 保险合同 › 第三节 财产保险合同"
    )
    # A metadata title is replaced by the fuller heading, keeping its date.
    assert (
        format_context_header(
            "保险法(2015-04-24)", ["中华人民共和国保险法", "第三章 保险公司"], "zh"
        )
        == "资料：《中华人民共和国保险法》(2015-04-24) › 第三章 保险公司"
    )
    # A heading already named in the title is not repeated.
    assert (
        format_context_header(
            "民法典 合同编 第十三章 保证合同", ["第十三章 保证合同", "第二节 保证责任"], "zh"
        )
        == "资料：《民法典 合同编 第十三章 保证合同》 › 第二节 保证责任"
    )
    assert (
        format_context_header("United States Constitution", ["Article I", "Section 8"], "en")
        == "Source: United States Constitution › Article I › Section 8"
    )
    assert format_context_header(None, ["Article I"], "en") == "Source: Article I"
    assert format_context_header(None, [], "zh") == ""
    assert format_context_header("保险法", [], "auto") == "资料：《保险法》"
    assert format_context_header("HTTPX", ["Clients"], "auto") == "Source: HTTPX › Clients"


def test_format_context_header_is_bounded():
    path = [f"第{n}章 " + "很长的章节标题" * 10 for n in range(1, 9)]
    header = format_context_header("中华人民共和国保险法" * 10, path, "zh", max_chars=120)
    assert len(header) <= 120
    assert header.startswith("资料：《中华人民共和国保险法")
    assert "…" in header
    assert "第8章" in header  # the nearest heading survives
    assert len(format_context_header("T", ["x" * 500], "en", max_chars=50)) <= 50


# --- real slices -------------------------------------------------------------------------------


def _example(slice_id: str) -> dict:
    with (EXAMPLES / "slices.jsonl").open(encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            if row["id"] == slice_id:
                return row
    raise LookupError(slice_id)


def test_insurance_law_example_has_its_185_articles():
    row = _example("insurance-law")
    law = row["content"]
    arts = find_articles(law)
    # The 2015 PRC Insurance Law has articles 1 to 185, in order.
    assert [a.number for a in arts] == list(range(1, 186))
    assert arts[104].label == "第一百零五条"
    assert all(a.start < a.end <= b.start for a, b in itertools.pairwise(arts))
    assert len(find_headings(law)) == 12  # title, 8 chapters, 3 sections of chapter 2
    cov = article_coverage(law, [f"第{n}条" for n in range(1, 186, 2)])
    assert (cov.total, cov.covered) == (185, 93)
    assert slice_title(law, row["metadata"]) == "保险法(2015-04-24)"


def _shared_slices():
    for name in ("slices_zh.jsonl", "slices_en.jsonl"):
        with (SHARED_DATA / name).open(encoding="utf-8") as f:
            yield from (json.loads(line) for line in f if line.strip())


_LAW_DOMAINS = {
    "insurance_law",
    "insurance_regulation",
    "insurance_judicial_interpretation",
    "social_insurance",
    "consumer_law",
    "data_protection_law",
    "labor_law",
    "ecommerce_law",
    "civil_code",
    "insurance_clause",
}


@pytest.mark.skipif(not SHARED_DATA.exists(), reason=NO_SHARED)
def test_shared_law_slices_have_articles_in_increasing_order():
    structured = 0
    for row in _shared_slices():
        text = row["content"]
        arts: list[Article] = find_articles(text)
        if row["metadata"].get("domain") in _LAW_DOMAINS:
            assert is_article_structured(text), row["id"]
        if is_article_structured(text):
            structured += 1
            keys = [(a.parent or 0, a.number, a.sub) for a in arts]
            assert keys == sorted(set(keys)), row["id"]
            assert all(a.start < a.end for a in arts), row["id"]
        chunks = split_text(text, 3000)
        starts = chunk_starts(text, chunks)
        assert heading_paths(text, starts) == [heading_path_at(text, s) for s in starts]
    assert structured >= 29  # 27 Chinese laws and clauses, US Constitution articles/amendments


@pytest.mark.skipif(not (SHARED_DATA / "slices_nasty.jsonl").exists(), reason=NO_SHARED)
def test_a_300k_character_slice_is_parsed_quickly():
    with (SHARED_DATA / "slices_nasty.jsonl").open(encoding="utf-8-sig", newline="") as f:
        text = next(json.loads(line)["content"] for n, line in enumerate(f) if n == 7)
    assert len(text) == 300_000
    t0 = time.perf_counter()
    arts = find_articles(text)
    heads = find_headings(text)
    paths = heading_paths(text, list(range(0, len(text), 1000)))
    elapsed = time.perf_counter() - t0
    assert len(arts) > 1000 and len(heads) > 100 and len(paths) == 300
    assert elapsed < 5.0
    assert isinstance(find_article_refs(text[:5000])[0], ArticleRef)
