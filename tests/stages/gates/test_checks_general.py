"""The deterministic checks as general principles: each test states one, in Chinese and English.

The texts here are written for these tests (a made-up motor-insurance regulation, a made-up
HTTP client's docs); none comes from a benchmark set.
"""

from __future__ import annotations

import importlib.util
import json
import sys

import pytest

from sft_distill.models import Sample
from sft_distill.stages.gates.checks.non_answer import find_non_answer
from sft_distill.stages.gates.checks.numbers import check_numbers
from sft_distill.stages.gates.checks.referential import find_referential
from sft_distill.stages.gates.checks.support import find_unsupported
from sft_distill.stages.gates.checks.truncation import find_truncation
from sft_distill.stages.gates.registry import build_gates
from tests.conftest import REPO

# A made-up regulation: three articles, numbers that recur across them.
ZH_REG = """# 示范车辆保险管理办法

第十条 保险人收到索赔申请后，应当在十五日内作出核定；情形复杂的，应当在四十五日内作出核定。

第十一条 投保人解除合同的，保险人应当自收到解除申请之日起二十日内退还剩余保险费。

第十二条 保险人违反本办法第十条规定的，处二千元以上二万元以下的罚款；情节严重的，\
处二万元以上五万元以下的罚款。

第十三条 被保险人应当自事故发生之日起四十八小时内通知保险人。
"""
# The same regulation as a chunk that lost its title line.
ZH_UNTITLED = ZH_REG.split("\n", 2)[2]

# Made-up docs of an HTTP client library ("fetchkit").
EN_DOCS = """## Timeouts

By default requests time out after 30 seconds. Pass `timeout=None` to disable it.

```python
client = fetchkit.Client(timeout=5.0, max_redirects=3)
```

## Connection pool

- `pool_size`, number of connections kept per host. (Default 8)
- `idle_expiry`, time an idle connection is kept, in seconds. (Default 60)

## Redirects

Redirects are followed automatically, up to 20 times by default; `fetchkit.TooManyRedirects` is
raised after that.
"""


# --- numbers: only a contradiction is flagged -----------------------------------------------


@pytest.mark.parametrize(
    ("answer", "question"),
    [
        # a number the source lacks is no contradiction: a unit conversion, a worked figure
        (
            "复杂情形下应当在四十五日内核定，即大约一个半月。",
            "示范车辆保险管理办法对核定期限有何规定？",
        ),
        (
            "事故发生后应在四十八小时（两天）内通知保险人。",
            "示范车辆保险管理办法对出险通知有何要求？",
        ),
        # a list number is not a rule quantity
        ("核定期限分两档：\n1. 一般情形十五日；\n2. 复杂情形四十五日。", "核定期限是多久？"),
    ],
)
def test_a_number_the_source_lacks_is_not_flagged(answer, question):
    assert check_numbers(answer, ZH_REG, question) is None


def test_a_number_whose_rule_the_source_states_differently_is_flagged():
    # the clause's own numbers frame the swapped one (no literal words before it)
    found = check_numbers(
        "违反第十条的，处二千元以上三万元以下的罚款。", ZH_REG, "违反核定期限规定会怎样？"
    )
    assert found is not None and "30000元 (source: 20000" in found.reason
    # 二十日 occurs in another article, but this rule says 十五日
    found = check_numbers("保险人收到索赔申请后，应当在二十日内作出核定。", ZH_REG, "核定期限？")
    assert found is not None and "differs from the source" in found.reason
    en = check_numbers(
        "By default, requests time out after 30 minutes.", EN_DOCS, "What is fetchkit's timeout?"
    )
    assert en is not None and "30 minutes" in en.reason


def test_a_stated_default_is_compared_with_the_source_default_of_the_same_setting():
    q = "How long does fetchkit keep idle connections?"
    wrong_unit = check_numbers("`idle_expiry` defaults to 60 minutes.", EN_DOCS, q)
    assert wrong_unit is not None and "60 minutes" in wrong_unit.reason
    assert check_numbers("`idle_expiry` defaults to 60 seconds.", EN_DOCS, q) is None
    wrong = check_numbers("It defaults to 4 connections per host.", EN_DOCS, "What is pool_size?")
    assert wrong is not None and "(source: 8)" in wrong.reason
    # "retried twice" is a number too
    assert check_numbers("Redirects are followed up to twice by default.", EN_DOCS, "") is not None


def test_numbers_in_code_are_examples_not_rules():
    q = "How many redirects does fetchkit follow?"
    # the code example passes max_redirects=3; that is no rule the answer could contradict
    assert check_numbers("The defaults are: `max_redirects` = 20.", EN_DOCS, q) is None
    assert check_numbers("You can lower it, e.g. `max_redirects=3`.", EN_DOCS, q) is None


def test_a_case_figure_from_the_question_dates_is_kept():
    # 4月1日 to 4月20日 is 19 days counted from the next day: the case's own figure
    q = "某保险人4月1日收到索赔申请，4月20日才作出核定（情形并不复杂），超期了吗？"
    answer = "超期了：从4月1日的次日起算，到4月20日共19日，超过了十五日的核定期限。"
    assert check_numbers(answer, ZH_REG, q) is None


def test_only_like_quantities_add_up_when_explaining_a_number():
    # 1个月 + 2(倍) would give 3, but a month and a multiple do not add up: 三倍 stays unexplained
    # and contradicts the source's 二倍
    source = "逾期不退还的，应当按照应退金额的二倍支付赔偿金。"
    q = "保险人逾期一个月未退还保费，要赔多少？"
    found = check_numbers("应当按照应退金额的三倍支付赔偿金。", source, q)
    assert found is not None and "3倍" in found.reason
    # and each keeps its unit: 10 minutes times 1 is not 10 seconds
    source3 = "By default requests time out after 10 minutes. Failed requests are retried once."
    q3 = "If I set `timeout=20.0`, how does that compare to the default?"
    found = check_numbers(
        "Requests then time out after 20 seconds, double the default of 10 seconds.", source3, q3
    )
    assert found is not None and "10 seconds" in found.reason
    assert (
        check_numbers(
            "Requests then time out after 20 seconds, far below the default of 10 minutes.",
            source3,
            q3,
        )
        is None
    )
    # while like quantities do: 20日 + 25日 = 45日 in a case
    q2 = "某保险人补充材料用了20日，之后又用25日核定，总共多少日？"
    assert check_numbers("共计45日，仍在四十五日的复杂情形期限内。", ZH_REG, q2) is None


def test_a_law_named_only_by_the_answer_is_judged_by_content():
    q = "投保人解除合同后，保险人多久内要退还保费？"
    good = "依照《示范车辆保险管理办法》，保险人应当自收到解除申请之日起二十日内退还剩余保险费。"
    # the chunk lost its title: the law's name alone is no evidence
    assert check_numbers(good, ZH_UNTITLED, q) is None
    other = "依照《机动车维修管理规定》，维修经营者应当公示维修工时定额和收费标准。"
    found = check_numbers(other, ZH_UNTITLED, q)
    assert found is not None and "not the source's law" in found.reason
    # the chunk's title names another law
    found = check_numbers(good.replace("示范车辆保险管理办法", "道路运输条例"), ZH_REG, q)
    assert found is not None and "道路运输条例" in found.reason


def test_a_cited_article_must_be_the_one_whose_content_the_answer_gives():
    q = "保险人多久内退还剩余保险费？"
    found = check_numbers(
        "根据第十三条，投保人解除合同的，保险人应当自收到解除申请之日起二十日内退还剩余保险费。",
        ZH_REG,
        q,
    )
    assert found is not None and "restates 第十一条" in found.reason
    assert (
        check_numbers(
            "根据第十一条，保险人应当自收到解除申请之日起二十日内退还剩余保险费。", ZH_REG, q
        )
        is None
    )
    # a cross-reference restated with its article is no misattribution
    assert (
        check_numbers(
            "第十二条规定，保险人违反本办法第十条规定的，处二千元以上二万元以下的罚款。",
            ZH_REG,
            "违反核定期限的罚则是什么？",
        )
        is None
    )


def test_a_section_cited_by_title_must_exist_and_match():
    q = "How do I disable fetchkit's timeout?"
    missing = check_numbers('The "Retry policy" section says to pass `timeout=None`.', EN_DOCS, q)
    assert missing is not None and "Retry policy" in missing.reason
    moved = check_numbers(
        'As the "Redirects" section explains, requests time out after 30 seconds by default and '
        "`timeout=None` disables the timeout.",
        EN_DOCS,
        q,
    )
    assert moved is not None and "restates Timeouts" in moved.reason
    assert (
        check_numbers(
            'As the "Timeouts" section explains, pass `timeout=None` to disable it.', EN_DOCS, q
        )
        is None
    )


# --- referential ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "question",
    [
        "此处所说的复杂情形指什么？",
        "如案例所述，保险人能拒赔吗？",
        "这份判决书里的赔偿金额是多少？",
        "前款规定的期限从哪天开始算？",
        "本条所说的“情节严重”指什么？",
        "这一章对罚款有什么规定？",
        "根据给出的条款，核定期限是多久？",
        "那如果情形复杂呢？",
        "它对通知期限是怎么规定的？",
        "第十条规定的核定期限是多久？",
        "同上，罚款上限是多少？",
        "我想知道第十二条规定的罚款是多少？",
        "What penalties does the Act set for late filing?",
        "What values are listed here for the pool?",
        "In the second example, why is the timeout 5 seconds?",
        "What does the table show for status 503?",
        "According to this page, what is the default timeout?",
        "Per the docs you just read, when is TooManyRedirects raised?",
        "Same question as before, but for one request only?",
        "What about streaming responses?",
    ],
)
def test_deixis_and_follow_ups_are_referential(question):
    assert find_referential(question) is not None, question


@pytest.mark.parametrize(
    "question",
    [
        "《示范车辆保险管理办法》第十条规定的核定期限是多久？",
        "宪法第三十五条规定了哪些自由？",
        # a case told in the question may mention the article it turns on
        "小王的车被撞，保险公司拖了二十天才核定，违反第十条吗？",
        "将这句话分类：“这里的服务很好”。",
        "用被动语态改写下面的句子：\n经理批准了这份报告。",
        "Tell me about the Treaty of Versailles.",
        "Write a SQL query that reads every row from the table orders.",
        "What is the default timeout in fetchkit?",
        "How do I read the fetchkit documentation for proxies offline?",
    ],
)
def test_named_or_self_contained_questions_are_not_referential(question):
    assert find_referential(question) is None, question


# --- truncation -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "answer",
    [
        "可以提出以下请求：\n1. 退还保险费；\n2. 支付赔偿金；\n3. 赔偿因此造成的",
        "fetchkit raises:\n- `TooManyRedirects` after 20 redirects;\n- `Timeout` after",
        "Use the `idle_expi",
        "| Setting | Default |\n| --- | --- |\n| pool_size | 8 |\n| idle_expiry | 6",
        "- **pool_size**: connections per host\n- **idle_expiry",
        "核定期限分两档：\n一、一般情形十五日；\n二、复杂情形四十五日；\n三、补充材料的期间不",
        "The total refund is $",
    ],
)
def test_cut_answers_are_truncated(answer):
    assert find_truncation(answer) is not None, answer


@pytest.mark.parametrize(
    "answer",
    [
        "排序：\n1. 甲\n2. 乙\n3. 丙",
        "Words: 1. the 2. fox 3. a",
        "```python\nprint(2**10)\n```",
        "r = 2**10",
        "保险合同应当载明：\n1. 保险人名称\n2. 保险标的",
        "Free will",
        "See https://example.org/fetchkit/docs",
    ],
)
def test_complete_answers_are_not_truncated(answer):
    assert find_truncation(answer) is None, answer


# --- non-answers ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "question"),
    [
        ("The documentation doesn't specify a default pool size.", ""),
        ("核定期限取决于保险合同的具体约定，请参照您手中的保险单。", ""),
        ("您的问题是：保险人多久内要核定。这是一个关于核定期限的问题。", ""),
        (
            "Timeouts are a nuanced topic. It's best to ask the fetchkit maintainers or open an "
            "issue on their tracker.",
            "",
        ),
        (
            "The default timeout of fetchkit is the timeout fetchkit applies when you set none.",
            "What is the default timeout of fetchkit?",
        ),
    ],
)
def test_non_answers(answer, question):
    assert find_non_answer(answer, question) is not None, answer


@pytest.mark.parametrize(
    ("answer", "question"),
    [
        ("期限取决于情形：一般情形十五日，复杂情形四十五日。", "核定期限是多久？"),
        ("By default requests time out after 30 seconds.", "What is the default timeout?"),
        ("The timeout is applied per request; see `timeout=None` to turn it off.", ""),
    ],
)
def test_answers_with_content_are_not_non_answers(answer, question):
    assert find_non_answer(answer, question) is None, answer


async def test_the_non_answer_gate_reads_the_question():
    (gate,) = build_gates([{"type": "non_answer"}])
    circular = Sample(
        id="c1",
        slice_id="docs",
        instruction="What is the default timeout of fetchkit?",
        output="The default timeout of fetchkit is the timeout that fetchkit applies by default.",
        source_text=EN_DOCS,
    )
    result = await gate.check(circular)
    assert not result.keep and "repeats the question" in (result.reason or "")
    answered = circular.model_copy(update={"output": "Requests time out after 30 seconds."})
    assert (await gate.check(answered)).keep


# --- support: invented rules ------------------------------------------------------------------


def test_a_rule_is_measured_against_one_provision_not_the_whole_chunk():
    q = "投保人解除合同后保险人要做什么？"
    faithful = "保险人应当自收到解除申请之日起二十日内退还剩余保险费。"
    assert find_unsupported(faithful, ZH_REG, q) is None
    # words of three articles stitched into a rule none of them states
    stitched = faithful + "情节严重的，被保险人应当自收到核定之日起通知保险人并处罚款。"
    found = find_unsupported(stitched, ZH_REG, q)
    assert found is not None and "not supported" in found.reason
    # a restatement in other words is not a new rule
    assert find_unsupported(faithful + "也就是说，退款要在收到申请后尽快办理。", ZH_REG, q) is None


def test_a_rule_quantity_the_source_lacks_is_unsupported():
    q = "投保人解除合同后保险人要做什么？"
    found = find_unsupported(
        "保险人应当自收到解除申请之日起二十日内退还剩余保险费。逾期退还的，应当按日加付万分之五的利息。",
        ZH_REG,
        q,
    )
    assert found is not None and "0.05%" in found.reason
    en = find_unsupported(
        "Requests time out after 30 seconds by default. The timeout is doubled after 10 minutes.",
        EN_DOCS,
        "What is fetchkit's default timeout?",
    )
    assert en is not None and "10 minutes" in en.reason


def test_code_names_the_source_never_mentions():
    q = "How do I raise fetchkit's redirect limit?"
    foreign = find_unsupported("Use `aiohttp.ClientSession(max_redirects=30)`.", EN_DOCS, q)
    assert foreign is not None and "aiohttp.ClientSession" in foreign.reason
    invented = find_unsupported("Set `fetchkit.redirect_ceiling` to 30.", EN_DOCS, q)
    assert invented is not None and "redirect_ceiling" in invented.reason
    # standard library, placeholders and names the answer defines are fine
    for ok in (
        "Redirects are followed automatically, up to 20 times by default, and "
        "`fetchkit.TooManyRedirects` is raised after that; to stop sooner, wrap the call in "
        "`asyncio.wait_for`.",
        "Redirects are followed automatically up to 20 times by default; create "
        "`my_client = fetchkit.Client()` once and reuse it.",
    ):
        assert find_unsupported(ok, EN_DOCS, q) is None, ok


# --- the benchmark: several sets, one summary line each ---------------------------------------


def _bench():
    spec = importlib.util.spec_from_file_location(
        "bench_quality_general", REPO / "benchmarks" / "bench_quality.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_quality_general"] = module
    spec.loader.exec_module(module)
    return module


def _write_set(path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")


def test_bench_takes_several_sets_and_prints_a_summary_line_each(tmp_path, capsys):
    base = {"input": "", "source_text": ZH_REG}
    good = {
        **base,
        "lang": "zh",
        "defect": "good",
        "instruction": "示范车辆保险管理办法规定的核定期限是多久？",
        "output": "一般情形十五日内核定，复杂情形四十五日内核定。",
    }
    cut = {
        **good,
        "defect": "truncated",
        "output": "保险人收到索赔申请后，一般情形应当在十五日内作出核定；情形复杂的，应当在",
    }
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    _write_set(a, [{**good, "id": "a1"}, {**cut, "id": "a2"}])
    _write_set(b, [{**good, "id": "b1"}])
    bench = _bench()
    assert bench.main(["--data", str(a), str(b)]) == 0
    out = capsys.readouterr().out
    assert out.count("summary a.jsonl (2 rows): min recall 1.00 (zh truncated)") == 2
    assert "max false drop 0.00 (zh good)" in out
    assert "summary b.jsonl (1 rows): min recall n/a" in out
    assert bench.main(["--data", str(a), "--data", str(b), "--json"]) == 0
    runs = json.loads(capsys.readouterr().out)["runs"]
    assert [r["headline"]["min_recall"] for r in runs] == [[1.0, "zh truncated"], None]
    assert bench.main(["--data", str(a), str(tmp_path / "missing.jsonl")]) == 2
    assert "missing.jsonl: no such file" in capsys.readouterr().err
