"""The deterministic checks, round 2: principles that generalise to texts the checks never saw.

Every text here is written for these tests (a made-up critical-illness policy, a made-up charter
with numbered amendments, made-up HTTP client docs); none comes from a benchmark set.
"""

from __future__ import annotations

import pytest

from sft_distill.stages.gates.checks.numbers import check_numbers
from sft_distill.stages.gates.checks.referential import find_referential
from sft_distill.stages.gates.checks.truncation import find_truncation

# A made-up insurance product's terms, one chunk of them.
ZH_POLICY = """# 云帆守护星重大疾病保险B款（互联网版）条款

第五条 自本合同生效之日起九十日为等待期。等待期内被保险人非因意外伤害确诊重大疾病的，\
本公司不承担给付保险金的责任，无息退还已交保险费，本合同终止。

第九条 分期支付保险费的，投保人支付首期保险费后，应当在每期保险费约定支付日起六十日内\
支付当期保险费。

第十二条 二人以上共同投保同一被保险人的，应当由投保人书面指定受益人。
"""

# A made-up charter: amendments whose sections are numbered paragraphs.
EN_CHARTER = """# Charter of the Free States

## Amendments

### 3. Third Amendment

1. No State shall levy a toll on a public road.

2. The Assembly shall have power to enforce this article by appropriate legislation.

### 4. Fourth Amendment

1. The Consent of the Assemblies of nine States, shall be sufficient for the Admission of a new
State, and the new State shall perform such duties as provided by the third article of amendment.

2. The Assembly shall meet within forty eight hours when a State is admitted.
"""


# --- referential: a named document licenses bare article numbers ------------------------------


@pytest.mark.parametrize(
    "question",
    [
        # a product named without 《》, with a version and a bracketed qualifier
        "云帆守护星重大疾病保险B款（互联网版）条款第九条对交费宽限有什么规定？",
        "依照云帆守护星重大疾病保险B款条款第五条，等待期内确诊要赔吗？",
        # named earlier in the question, then "按条款第N条"
        "去年投保了云帆守护星重大疾病保险B款，保单生效一个月就确诊了。按条款第五条怎么处理？",
        # a judicial interpretation named with its number
        "示范保险法解释（二）第五条对合同成立前的事故怎么处理？",
    ],
)
def test_a_named_document_anywhere_in_the_question_licenses_its_article_numbers(question):
    assert find_referential(question) is None, question


@pytest.mark.parametrize(
    "question",
    [
        # no name at all, a generic kind of contract, a verb before the noun
        "按照条款第九条，交费宽限期多长？",
        "按照劳动合同第九条，试用期多长？",
        "按照本章的规定，买受人什么情况下可以一并解除合同？",
    ],
)
def test_an_unnamed_or_generic_document_does_not_license_article_numbers(question):
    assert find_referential(question) is not None, question


# --- referential: demonstrative + description + document noun, and other deixis ---------------


@pytest.mark.parametrize(
    "question",
    [
        "这款百万医疗险的免赔额是多少？",
        "按这份附加条款，住院要提前几天通知？",
        "这份少儿重疾险条款的等待期从哪天算？",
        # a quoted term says what is asked, not which document
        "依照这份规定，哪些情形算“紧急避险”？",
        # a law named does not say which interpretation 该解释 is
        "该解释第三条对示范保险法施行前的事故怎么处理？",
        "按照上面关于要约的规定，要约何时生效？",
        "此处关于饲养动物致害，谁先承担责任？",
        "文件里提到的免赔额怎么计算？",
        "What limit does the last section here set?",
        "What does the retry example here print?",
        # a demonstrative with its measure word is no part of a name
        "结合该规定，用人单位应当怎么做？",
        "按这份医疗险第五条，续保要什么条件？",
        # a provision counted from where the reader is, or not named
        "What does the present article require of the Assembly?",
        "Under the provision in question, who may vote?",
        "What does the second paragraph say about tolls?",
        "What does Section 3 of this article provide?",
        "Which powers does the article grant?",
        "Under these rules, who may admit a new State?",
        "What does the guide recommend for timeouts?",
        "As described, how many delegates does each State send?",
    ],
)
def test_a_demonstrated_document_with_no_named_antecedent_is_referential(question):
    assert find_referential(question) is not None, question


@pytest.mark.parametrize(
    "question",
    [
        # the product is named: 这款产品 points back at it
        "《云帆守护星重大疾病保险B款条款》里，这款产品的等待期多长？",
        # 应该/因此/那么 are words, not demonstratives
        "政府应该实施哪些政策来减少贫困？",
        "因此产品责任由谁承担？",
        "重写这句话，使其更正式：\n这项新政策得到了很多人的认可。",
        "列出这个法式吐司食谱的成分。",
        "Who signs here?",
        # names: a law's short title, a product before its article, an ordinal amendment
        "民法典婚姻家庭编第一千零七十九条规定了哪些可以判决离婚的情形？",
        "云帆长期医疗险第五条对续保有什么规定？",
        "What does the First Amendment protect?",
        "What does the second paragraph of the Fourteenth Amendment say?",
        "How does the section on timeouts in the fetchkit docs work?",
        "Summarize the article 'Retries in practice'.",
        "What is the first rule of storytelling?",
    ],
)
def test_words_that_only_look_like_demonstratives_are_not_referential(question):
    assert find_referential(question) is None, question


# --- references: what the source cites in any form is not foreign -----------------------------


def test_a_reference_the_source_itself_makes_in_any_form_is_not_foreign():
    q = "What does the Fourth Amendment of the Charter of the Free States require?"
    # "the third article of amendment" is Amendment 3; the numbered paragraph 2 is Section 2
    answer = (
        "Under Section 1 the consent of nine States suffices, and the new State performs the "
        "duties of Amendment 3; under Section 2 the Assembly meets within forty eight hours."
    )
    assert check_numbers(answer, EN_CHARTER, q) is None
    zh = "第12条规定，二人以上共同投保同一被保险人的，应当由投保人书面指定受益人。"
    assert check_numbers(zh, ZH_POLICY, "守护星重疾险B款条款对共同投保有何规定？") is None


def test_a_section_its_amendment_does_not_have_is_flagged():
    q = "What does the Third Amendment of the Charter of the Free States forbid?"
    found = check_numbers(
        "Amendment 3, Section 3 forbids a State to levy a toll on a public road.", EN_CHARTER, q
    )
    assert found is not None and "section 3" in found.reason
    # the opening citation differs from the question's in its section only
    q1 = "What does Section 1 of the Third Amendment of the Charter of the Free States forbid?"
    moved = check_numbers(
        "Under Amendment 3, Section 2, no State shall levy a toll on a public road.", EN_CHARTER, q1
    )
    assert moved is not None and "the question asks about another" in moved.reason


# --- numbers: counts after a comma, counts before a plural noun --------------------------------


def test_a_count_right_after_a_comma_is_compared():
    q = "守护星重疾险B款条款第十二条对共同投保有何规定？"
    found = check_numbers(
        "第十二条规定，三人以上共同投保同一被保险人的，应当由投保人书面指定受益人。", ZH_POLICY, q
    )
    assert found is not None and "3人" in found.reason


def test_a_count_before_a_plural_noun_is_compared():
    # "9 States" is not the ordinal "9st" + "ates": "seven States" contradicts "nine States"
    q = "How many States must consent under the Fourth Amendment of the Charter of the Free States?"
    found = check_numbers(
        "Under Section 1, the consent of the assemblies of seven States was sufficient to admit a "
        "new State and to bind it to the duties of the other States.",
        EN_CHARTER,
        q,
    )
    assert found is not None and "7" in found.reason


# --- numbers: the same rule with another value, however the answer is worded -----------------

EN_AMENDMENTS = """### 5. Fifth Amendment

1. When a State disputes a federal tax, the Assembly shall convene within forty eight hours, and
shall decide the dispute by a two thirds vote within twenty one days.

2. When the right to vote is denied to any of the male residents of such State, being twenty-one
years of age, and citizens of the Union, its seats in the Assembly shall be reduced.

3. After one year from the ratification of this article the sale of lottery tickets within the
States is hereby prohibited.

4. The terms of the Wardens shall end at noon on the 20th day of January, and the terms of the
Stewards at noon on the 3d day of January.
"""


def test_arithmetic_on_the_source_alone_does_not_excuse_a_restated_rule():
    # a "when" question reads as a case, and 72 = 48 / (2/3): one step from two of the source's
    # numbers; but the answer's own words put 72 where the source says 48
    q = "How fast must the Assembly convene when a State disputes a federal tax?"
    found = check_numbers(
        "The Assembly shall convene within seventy two hours and decide the dispute by a two "
        "thirds vote within twenty one days.",
        EN_AMENDMENTS,
        q,
    )
    assert found is not None and "72 hours (source: 48)" in found.reason
    worked = "If the dispute is filed on Monday at noon, the Assembly must convene within forty "
    worked += "eight hours, that is by Wednesday at noon."
    assert check_numbers(worked, EN_AMENDMENTS, q) is None
    # 三十日 = 九十日 - 六十日, but 第九条 says 六十日 in these very words
    zh_q = "某人每期保费约定3月1日支付，最晚多久内交都不影响合同效力？"
    zh = check_numbers(
        "按第九条，投保人应当在每期保险费约定支付日起三十日内支付当期保险费。", ZH_POLICY, zh_q
    )
    assert zh is not None and "30日" in zh.reason
    ok = "按第九条，应当在每期保险费约定支付日起六十日内支付，即最晚在4月30日前后交清。"
    assert check_numbers(ok, ZH_POLICY, zh_q) is None


def test_the_words_on_both_sides_of_a_number_align_it_with_the_source():
    q = "What does Section 2 of the Fifth Amendment provide?"
    # the source's clause is cut by commas; the words around the number are the same
    found = check_numbers(
        "If a State denies the vote to male residents who are eighteen years of age and citizens, "
        "its seats in the Assembly are reduced.",
        EN_AMENDMENTS,
        q,
    )
    assert found is not None and "18 years" in found.reason
    same = "If a State denies the vote to male residents who are twenty-one years of age and "
    same += "citizens, its seats in the Assembly are reduced."
    assert check_numbers(same, EN_AMENDMENTS, q) is None
    # another unit of the same dimension: six months against one year
    moved = check_numbers(
        "Section 3 provided that, after six months from the ratification of the article, the "
        "sale of lottery tickets within the States was prohibited.",
        EN_AMENDMENTS,
        "What did Section 3 of the Fifth Amendment prohibit, and when?",
    )
    assert moved is not None and "6 months" in moved.reason
    zh_source = "第三条 投保人应当为年满十八周岁、具有完全民事行为能力的自然人。"
    zh = check_numbers(
        "按第三条，投保人须是年满十六周岁并具有完全民事行为能力的自然人，否则不能投保。",
        zh_source,
        "第三条对投保人资格有什么要求？",
    )
    assert zh is not None and "16周岁" in zh.reason


def test_a_date_the_source_states_for_the_same_rule_is_compared():
    zh_source = "第二十条 本办法自2019年3月1日起施行。2010年发布的旧办法同时废止。"
    q = "示范办法第二十条规定何时施行？"
    found = check_numbers("根据第二十条，本办法自2019年5月1日起施行。", zh_source, q)
    assert found is not None and "2019年5月1日" in found.reason
    assert check_numbers("根据第二十条，本办法自2019年3月1日起施行。", zh_source, q) is None
    # a date worked out in a case is the case's own
    case = "某人2019年3月5日提出申请，按第二十条当时办法已施行，审核期限的最后一日是2019年4月4日。"
    assert check_numbers(case, zh_source, "某人2019年3月5日提出申请，适用本办法吗？") is None
    en = check_numbers(
        "The terms of the Wardens end at noon on the 15th day of January, and the terms of the "
        "Stewards at noon on the 3d day of January.",
        EN_AMENDMENTS,
        "When do the terms of the Wardens and Stewards end under Section 4?",
    )
    assert en is not None and "15th day of January" in en.reason


def test_a_default_stated_with_its_unit_is_checked_even_when_arithmetic_could_produce_it():
    docs = "By default requests time out after 10 minutes. Failed requests are retried 2 times."
    q = "If I set `Client(timeout=20.0)`, how does that compare to the default timeout?"
    # 10 = 20 / 2, but "the default of 10 seconds" is a claim about the docs, and a wrong one
    found = check_numbers(
        "Requests time out after 20 seconds instead of the default of 10 seconds.", docs, q
    )
    assert found is not None and "10 seconds" in found.reason
    worked = "The default is 10 minutes = 600 seconds; 600 / 20 = 30, so it is 30 times shorter."
    assert check_numbers(worked, docs, q) is None
    zh_docs = "默认情况下，请求在10分钟后超时。失败的请求会重试2次。"
    zh_q = "如果设置`Client(timeout=20.0)`，和默认超时相比如何？"
    zh = check_numbers("请求会在20秒后超时，而默认超时是10秒。", zh_docs, zh_q)
    assert zh is not None and "10秒" in zh.reason


# --- truncation ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "answer",
    [
        # a sentence with a bracket and a semicolon is prose, not a line of code
        "The charter requires a public hearing for new tolls (except on bridges built before the "
        "union); bars any toll on a road that a State has not",
        # a short answer that opened a statement with a lead-in clause
        "根据《示范保险条例》第九条，投保人应当在宽",
        "第九条规定，投保人应当在约定支付日起",
    ],
)
def test_a_cut_sentence_is_truncated_even_when_short_or_bracketed(answer):
    assert find_truncation(answer) is not None, answer


@pytest.mark.parametrize(
    "answer",
    [
        "二年，自知道之日起计算",
        "保湿霜，剃须刀，洗发水，牙刷",
        "```python\nclient = Client(timeout=5.0)\n```",
        "Set it like this:\nclient = fetchkit.Client(timeout=(5, 30), retries={'max': 3})",
        # a line of emphasis markers alone is no line of text
        "The steps are done.\n**",
    ],
)
def test_phrases_lists_and_code_are_not_truncated(answer):
    assert find_truncation(answer) is None, answer


def test_a_number_closing_its_sentence_aligns_with_one_closing_the_source_sentence():
    source = (
        "第八条 被保险人请求给付住院津贴的诉讼时效期间为二年。\n"
        "第九条 被保险人请求给付身故保险金的诉讼时效期间为五年。"
    )
    found = check_numbers(
        "按第九条，身故保险金的诉讼时效期间为十年。", source, "身故保险金的时效？"
    )
    assert found is not None and "10年 (source: 5)" in found.reason
    assert check_numbers("按第九条，身故保险金的诉讼时效期间为五年。", source, "时效？") is None
    en = "Section 2. No appropriation of money to that use shall be for a longer term than two "
    en += "years."
    found = check_numbers(
        "Section 2 says an appropriation of money for that use may not run for a term longer "
        "than one year.",
        en,
        "How long may an appropriation for the army run?",
    )
    assert found is not None and "1 year" in found.reason


def test_a_calls_argument_is_the_questions_own_figure():
    # "wait_fixed(3)" is an argument, not a list marker "(3)": 3 seconds is the question's figure
    docs = "By default `wait_fixed` waits 1 second between attempts."
    q = "How long does `@retry(wait=wait_fixed(3))` wait between attempts?"
    answer = "It waits 3 seconds between attempts, instead of the default 1 second."
    assert check_numbers(answer, docs, q) is None
    zh_docs = "默认情况下，`wait_fixed` 在两次尝试之间等待1秒。"
    zh_q = "`@retry(wait=wait_fixed(3))` 两次尝试之间等待多久？"
    assert check_numbers("两次尝试之间等待3秒，而不是默认的1秒。", zh_docs, zh_q) is None


def test_words_that_contain_a_pronoun_are_no_case():
    # 其他 contains 他, 若干 contains 若: a question about the law, not a case, so a swapped
    # number of a clause worded like the source's is flagged
    source = "人寿保险以外的其他保险的诉讼时效期间为二年。"
    source += "人寿保险的诉讼时效期间为五年，自知道保险事故发生之日起计算。"
    q = "人寿保险和其他保险的诉讼时效分别是多长？"
    found = check_numbers("其他保险的诉讼时效为二年；人寿保险的诉讼时效为十年。", source, q)
    assert found is not None and "10年" in found.reason


# --- non-answers ----------------------------------------------------------------------------


def test_a_pronoun_one_is_no_amount():
    from sft_distill.stages.gates.checks.non_answer import find_non_answer

    q = "What is the default retry limit of fetchkit?"
    circular = "The default retry limit of fetchkit is the retry limit fetchkit applies when you "
    circular += "have not configured one yourself."
    assert find_non_answer(circular, q) is not None
    assert find_non_answer("The default retry limit is one retry per request.", q) is None
    zh_q = "fetchkit默认的重试次数是多少？"
    zh = "fetchkit默认的重试次数，就是你没有另外设置一个重试次数时fetchkit默认使用的重试次数。"
    assert find_non_answer(zh, zh_q) is not None
    assert find_non_answer("默认重试一次，即失败后再请求一次。", zh_q) is None


def test_a_count_aligns_only_with_a_count_of_the_same_thing():
    source = (
        "第十四条 具有下列情形之一的，被保险人可以请求保险人直接向受害人赔偿保险金：\n"
        "（一）被保险人的赔偿责任经法院生效裁判确认；\n（二）经被保险人与受害人协商一致；\n"
        "（三）其他能够确定被保险人应负赔偿责任的情形。"
    )
    q = "示范解释第十四条规定被保险人在什么情况下可以请求直接赔偿？"
    # 三种情形 counts the items; 情形之一 says any one of them will do
    answer = "第十四条具有三种情形，被保险人可以请求保险人直接向受害人赔偿保险金：生效裁判确认、"
    answer += "协商一致、其他能够确定赔偿责任的情形。"
    assert check_numbers(answer, source, q) is None
    en = "Section 2. The consent of the legislatures of nine States shall be sufficient."
    found = check_numbers(
        "Section 2 says the consent of the legislatures of seven States is enough.", en, "Consent?"
    )
    assert found is not None and "7" in found.reason


# --- support: a figure the source lacks, in any sentence of a direct answer -------------------

EN_CLIENT_DOCS = """## Connection pooling

fetchkit keeps idle connections open and reuses them. The pool holds at most 20 connections
per host; when the pool is full, a new request waits for a free connection.
"""


@pytest.mark.parametrize(
    ("answer", "question", "source", "figure"),
    [
        # not worded as a rule (no 应当/shall): still a claim the source does not make
        (
            "等待期为九十日。等待期内确诊的，本公司按已交保险费的百分之八十退费。",
            "云帆守护星重大疾病保险B款的等待期是多久？",
            ZH_POLICY,
            "80%",
        ),
        (
            "The pool holds at most 20 connections per host. Idle connections are closed after "
            "45 seconds without traffic.",
            "How many connections does fetchkit's pool keep per host?",
            EN_CLIENT_DOCS,
            "45 seconds",
        ),
        # a number word before a unit of time ("one-second") is a duration, not "1-2nd"
        (
            "The pool holds at most 20 connections per host, and a waiting request gives up "
            "after a one-second pause.",
            "How many connections does fetchkit's pool keep per host?",
            EN_CLIENT_DOCS,
            "1-second",
        ),
    ],
)
def test_a_figure_the_source_lacks_is_unsupported_in_any_sentence(answer, question, source, figure):
    from sft_distill.stages.gates.checks.support import find_unsupported

    found = find_unsupported(answer, source, question)
    assert found is not None and figure in found.reason


@pytest.mark.parametrize(
    "answer",
    [
        # a made-up example carries its own figures
        "The pool holds at most 20 connections per host. For example, a crawler hitting 3 hosts "
        "can hold 60 connections in all.",
        "The pool holds at most 20 connections per host. When the pool is full, a new request "
        "waits for a free connection, e.g. for 2 seconds.",
        # how often the answer tells you to do something is narration, not a rule of the source
        "The pool holds at most 20 connections per host; build the client once and reuse it.",
        # "once" that opens a clause is a time, not a count
        "The pool holds at most 20 connections per host. Once the pool is full, a new request "
        "waits for a free connection.",
    ],
)
def test_examples_narrated_counts_and_clause_once_are_not_unsupported(answer):
    from sft_distill.stages.gates.checks.support import find_unsupported

    q = "How many connections does fetchkit's pool keep per host?"
    assert find_unsupported(answer, EN_CLIENT_DOCS, q) is None


def test_once_opening_a_clause_is_no_count():
    from sft_distill.stages.gates.checks.numbers import extract_quantities

    def counts(text):
        return [q.text for q in extract_quantities(text, "en") if q.unit == "multiple"]

    assert counts("The lease ends once the tenant leaves.") == []
    assert counts("Once signed, the form cannot be withdrawn.") == []
    assert counts("The tenant leaves; once it is empty, the flat is inspected.") == []
    assert counts("The fee is charged once a quarter.") == ["once"]
    assert counts("The permit can be extended only once.") == ["once"]
    assert counts("Failed uploads are retried twice.") == ["twice"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a three-second grace period", "a 3-second grace period"),
        ("wait one second", "wait 1 second"),
        ("a seventeen-second gap", "a 17-second gap"),
        # an ordinal stays one
        ("the twenty-second day", "the 22nd day"),
        ("the second year", "the 2nd year"),
    ],
)
def test_a_number_word_before_second_is_a_duration(text, expected):
    from sft_distill.stages.gates.checks.base import normalized

    assert normalized(text) == expected


def test_a_figure_the_source_shows_only_in_its_code_is_in_the_source():
    from sft_distill.stages.gates.checks.support import find_unsupported

    source = (
        "## Giving up\n\nStop retrying after a while:\n\n```python\n"
        "@again(give_up=after_delay(25))\ndef poll():\n"
        "    print('Giving up after 25 seconds')\n```\n"
    )
    q = "How do I make again stop retrying after a delay?"
    answer = "Pass `give_up=after_delay(...)` to `@again`; the example gives up after 25 seconds."
    assert find_unsupported(answer, source, q) is None
    invented = "Pass `give_up=after_delay(...)` to `@again`; it gives up after 40 seconds."
    found = find_unsupported(invented, source, q)
    assert found is not None and "40 seconds" in found.reason


def test_a_rule_stated_outside_every_article_is_supported():
    from sft_distill.stages.gates.checks.support import find_unsupported

    source = (
        "为统一办理押金退还业务，结合本市实际，制定本办法。押金应当在租期届满后原路退回承租人。\n\n"
        "第一条 本办法适用于本市住房租赁押金的收取。\n\n"
        "第二条 出租人收取押金不得超过两个月租金。\n"
    )
    q = "示范市住房租赁押金办法对押金怎么退有什么要求？"
    assert find_unsupported("押金应当在租期届满后原路退回承租人。", source, q) is None
    invented = "押金应当由街道办事处统一保管并按季度计息返还。"
    assert find_unsupported(invented, source, q) is not None


# --- support in case answers: a figure no arithmetic can have produced ------------------------


def test_a_case_question_without_figures_cannot_explain_a_new_figure():
    from sft_distill.stages.gates.checks.support import find_unsupported

    q = "投保人没按时交续期保费的话怎么处理？"
    faithful = "投保人应当在每期保险费约定支付日起六十日内支付当期保险费。"
    assert find_unsupported(faithful, ZH_POLICY, q) is None
    invented = faithful + "逾期未交的，投保人应当另付未交保费百分之五的滞纳金。"
    found = find_unsupported(invented, ZH_POLICY, q)
    assert found is not None and "5%" in found.reason
    # with figures of its own the question may feed the answer's arithmetic: not judged here
    q_figures = "投保人2024年3月1日应交续期保费，拖到5月10日才交，怎么处理？"
    assert find_unsupported(invented, ZH_POLICY, q_figures) is None


def test_a_case_answers_own_working_is_not_a_claim():
    from sft_distill.stages.gates.checks.support import find_unsupported

    q = "How long could a request wait for a free connection if my crawler hits the pool limit?"
    answer = (
        "The pool holds at most 20 connections per host, so a new request must wait for a free "
        "connection. If each of 3 requests ahead of it takes 2 s, it can wait 3 × 2 s = 6 s, "
        "that is 6000 ms in total."
    )
    assert find_unsupported(answer, EN_CLIENT_DOCS, q) is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("3 × 600 s = 1800 s", (1800.0, [3.0, 600.0])),
        ("2 x 45 days = 90 days", (90.0, [2.0, 45.0])),
        ("$8 × 12 = $96", (96.0, [8.0, 12.0])),
    ],
)
def test_a_calculation_with_english_units_is_read(text, expected):
    from sft_distill.stages.gates.checks.base import normalized
    from sft_distill.stages.gates.checks.numbers import _equations

    assert _equations(normalized(text)) == [expected]


def test_a_tilde_heading_underline_is_no_code_fence():
    from sft_distill.stages.gates.checks.base import strip_code, unfence_underlines

    # reStructuredText: headings underlined with tildes, code in indented blocks
    source = (
        "Giving up\n~~~~~~~~~\n\nThe client gives up after 4 tries by default.\n\n"
        ".. code::\n\n    @again(halt=halt_after_tries(9))\n    def fetch():\n        pass\n\n"
        "Waiting\n~~~~~~~\n\nBetween tries the client waits 2 seconds.\n"
    )
    assert "gives up after 4 tries" in strip_code(source)
    assert "waits 2 seconds" in strip_code(source)
    q = "How many tries does the client make before giving up by default?"
    assert check_numbers("By default the client gives up after 4 tries.", source, q) is None
    found = check_numbers("By default the client gives up after 6 tries.", source, q)
    assert found is not None and "6" in found.reason
    # a real fence right under a line of text stays one
    fenced = "Example:\n~~~\nx = 1\n~~~\n"
    assert unfence_underlines(fenced) == fenced
    assert "x = 1" not in strip_code(fenced)


# --- referential: pronouns and anaphora inside the question ------------------------------------


@pytest.mark.parametrize(
    "question",
    [
        # 此 after a preposition is a pronoun for what the question just said
        "网购的生鲜商品能否七日无理由退货？《消费者权益保护法》对此怎么规定？",
        "承租人擅自转租的，出租人能否解除合同？民法典对此有何规定？",
        "示范保险法对此规定了哪些例外？",
        # "the article" right after the question named it
        "What does Article III of the Charter of the Free States cover, and what does the "
        "article say about judges' pay?",
    ],
)
def test_a_pronoun_or_anaphor_for_what_the_question_named_is_not_referential(question):
    assert find_referential(question) is None


@pytest.mark.parametrize(
    "question",
    [
        "此项规定适用于哪些人？",
        "这份附加条款的免赔额是多少？",
        "What does the article say about judges' pay?",
        # a law is named, but not the provision "the section" stands for
        "In the Charter of the Free States, what does the section say about tolls?",
    ],
)
def test_a_demonstrative_with_nothing_named_stays_referential(question):
    assert find_referential(question) is not None


@pytest.mark.parametrize(
    "answer",
    [
        # an approximate gloss of the source's exact figure
        "自本合同生效之日起九十日为等待期，大约三个月。",
        "自本合同生效之日起九十日为等待期（约13周）。",
        "自本合同生效之日起九十日为等待期，也就是三个月左右。",
        # an aside comparing with a norm outside the source
        "自本合同生效之日起九十日为等待期，比常见重疾险的一百八十日等待期短。",
        # the answer's own working over the source's figures
        "自本合同生效之日起九十日为等待期；等待期与六十日交费宽限合计150日。",
    ],
)
def test_approximations_and_outside_comparisons_are_not_unsupported(answer):
    from sft_distill.stages.gates.checks.support import find_unsupported

    q = "云帆守护星重大疾病保险B款的等待期从什么时候起算，有多长？"
    assert find_unsupported(answer, ZH_POLICY, q) is None


def test_a_threshold_stated_as_a_comparison_is_still_checked():
    from sft_distill.stages.gates.checks.support import find_unsupported

    q = "How many connections does fetchkit's pool keep per host?"
    answer = (
        "The pool holds at most 20 connections per host. Requests whose body is larger than "
        "5 MB get a pool of their own."
    )
    found = find_unsupported(answer, EN_CLIENT_DOCS, q)
    assert found is not None and "5 MB" in found.reason
