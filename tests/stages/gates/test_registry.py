"""Rule gates (keep and drop, Chinese and English), the gate registry, custom gates, pipeline."""

from __future__ import annotations

import json
from typing import Any

import pytest

from sft_distill import DatasetDistillationPipeline
from sft_distill import gates as gates_module
from sft_distill.errors import ConfigError
from sft_distill.models import Sample
from sft_distill.stages.gates.base import GATE_PREFIX, Gate, GateResult, check_gate, run_gates
from sft_distill.stages.gates.checks.base import cjk_ratio, strip_code
from sft_distill.stages.gates.registry import (
    QUALITY_GATE_TYPES,
    RULE_GATE_TYPES,
    build_gates,
    register_gate_type,
)
from sft_distill.stages.gates.rules import (
    EchoGate,
    GroundingGate,
    LanguageGate,
    LengthGate,
    PlaceholderGate,
    RefusalGate,
)
from tests.helpers import judged_samples, read_jsonl, sim_config

ZH_SOURCE = (
    "第十六条 订立保险合同，保险人就保险标的或者被保险人的有关情况提出询问的，投保人应当如实告知。"
    "投保人故意或者因重大过失未履行前款规定的如实告知义务，足以影响保险人决定是否同意承保或者提高"
    "保险费率的，保险人有权解除合同。"
)
EN_SOURCE = (
    "No person shall be held to answer for a capital, or otherwise infamous crime, unless on a "
    "presentment or indictment of a Grand Jury, nor shall private property be taken for public "
    "use, without just compensation."
)

# This module, as a gate target ("module:attribute") names it.
HERE = __name__


def make(
    instruction: str = "保险人什么时候可以解除合同？",
    output: str = "投保人故意不履行如实告知义务时，保险人有权解除合同。",
    *,
    source: str = "",
    input: str = "",
    **kw: Any,
) -> Sample:
    return Sample(
        id="s1",
        slice_id="slice",
        instruction=instruction,
        input=input,
        output=output,
        source_text=source,
        **kw,
    )


async def verdict(gate: Gate, sample: Sample) -> GateResult:
    return await gate.check(sample)


# --- length ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("instruction", "output", "options", "keep", "reason"),
    [
        ("保险人什么时候可以解除合同？", "保险人有权解除合同。", {}, True, None),
        ("What is just compensation?", "Fair market value of the property.", {}, True, None),
        ("问？", "保险人有权解除合同。", {}, False, "instruction too short (2 < 4 chars)"),
        ("What is it?", "Yes.", {}, False, "output too short (4 < 8 chars)"),
        ("What is it?", "   Yes.      ", {}, False, "output too short (4 < 8 chars)"),
        ("问题是什么呢", "是的", {"min_output_chars": 2}, True, None),
        ("What is it?", "x" * 101, {"max_output_chars": 100}, False, "output too long"),
        ("Q" * 50, "A long enough answer.", {"max_instruction_chars": 40}, False, "instruction"),
    ],
)
async def test_length_gate(instruction, output, options, keep, reason):
    result = await verdict(LengthGate(**options), make(instruction, output))
    assert result.keep is keep
    if reason:
        assert reason in result.reason


# --- refusal ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "output",
    [
        "I'm sorry, but I can't help with that request.",
        "I’m sorry, but I cannot provide legal advice.",  # curly apostrophe
        "As an AI language model, I do not have opinions about the Constitution.",
        "I cannot provide an answer based on the material.",
        "  **I apologize**, the document does not say.",
        "> Sorry, but this is outside what I can answer.",
        "Unfortunately, I can't determine that from the text.",
        "The answer depends. As an AI language model I cannot be sure.",
        "抱歉，我不能回答这个问题。",
        "抱歉, 我不能回答这个问题。",
        "作为一个AI，我无法提供法律意见。",
        "作为一个ＡＩ语言模型，我没有个人观点。",  # full-width letters
        "我无法根据资料回答这个问题。",
        "很抱歉，资料中没有相关内容。",
        "对不起，我不清楚。",
        "根据资料，作为一个人工智能助手，我建议咨询律师。",
        # the role phrases and "I cannot" still catch refusals and self-references
        "作为一个AI语言模型，我无法回答这个问题。",
        "作为AI，我没有个人观点。",
        "作为人工智能助手，我建议咨询律师。",
        "抱歉，我不能提供这方面的信息。",
        "对不起，我无法回答这个问题。",
        "I'm sorry, but I can't help with that.",
        "As an AI language model, I cannot give legal advice.",
        "As an AI, I do not have opinions.",
        "As a language model I cannot know that.",
        "I cannot help with that request.",
        "I can't assist with questions about this case.",
        "I can not answer that from the material.",
    ],
)
async def test_refusal_gate_drops(output):
    result = await verdict(RefusalGate(), make(output=output))
    assert not result.keep
    assert result.reason.startswith("refusal or apology")


@pytest.mark.parametrize(
    "output",
    [
        "The insurer cannot refuse payment once the contract has run for two years.",
        'If the policyholder says "I cannot pay", the insurer may terminate the contract.',
        "As an aide to the President, the Secretary must follow the law.",
        "Sorry is not a legal term; the statute speaks of apology only in article 3.",
        "Icannot is not a word.",
        "投保人无法履行义务时，保险人可以解除合同。",
        "被保险人表示“我无法接受该条款”时，应当在合同订立前提出。",
        "他说对不起之后，双方达成了和解协议。",
        "作为投保人，应当如实告知保险人有关情况。",
        "Article I: all legislative powers are vested in a Congress.",
        # ordinary answers that open like a refusal or an AI disclaimer
        "作为人工智能的一个分支，机器学习研究如何从数据中学习。",
        "作为AI时代的基础设施，算力越来越重要。",
        "As an AI product manager, you should start from the user's problem.",
        "对不起、谢谢、请是日常礼貌用语。",
        "I cannot stress enough how important the notice period is.",
        "I can't overstate the role of good faith in insurance contracts.",
    ],
)
async def test_refusal_gate_keeps(output):
    assert (await verdict(RefusalGate(), make(output=output))).keep


async def test_refusal_gate_extra_phrases_and_no_defaults():
    gate = RefusalGate(extra_phrases=["无可奉告"], extra_start_phrases=["Nope"])
    assert not (await gate.check(make(output="关于这一点，无可奉告。"))).keep
    assert not (await gate.check(make(output="Nope, that is not covered."))).keep
    assert (await gate.check(make(output="A nope is not covered."))).keep
    bare = RefusalGate(use_defaults=False, extra_phrases=["无可奉告"])
    assert (await bare.check(make(output="I'm sorry, but I can't."))).keep


# --- placeholder -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("instruction", "output"),
    [
        ("What is it?", "TODO: write the answer"),
        ("What is it?", "The answer is FIXME later."),
        ("合同应包括哪些内容？", "合同应写明[插入公司名称]的地址。"),
        ("合同应包括哪些内容？", "合同应写明【请填写投保人姓名】。"),
        ("合同应包括哪些内容？", "甲方：【公司名称】，乙方：【投保人姓名】。"),
        ("What is it?", "The answer is <placeholder>."),
        ("What is it?", "Lorem ipsum dolor sit amet, consectetur adipiscing."),
        ("联系人是谁？", "联系人：XXX，电话待补充。"),
        ("What is it?", "Dear {{ customer_name }}, your claim was approved."),
        ("What is it?", "Please sign here: [YOUR NAME]"),
        ("What is it?", "Write to [Insert address here] within ten days."),
        ("TODO", "An answer that is long enough."),  # the instruction is checked too
        ("What is it?", "TODO: explain"),
        ("What is it?", "Lorem ipsum dolor"),
        ("合同应包括哪些内容？", "[插入公司名称]"),
        ("合同应包括哪些内容？", "【请填写姓名】"),
        ("合同应包括哪些内容？", "金额：【请输入金额】"),
        ("合同应包括哪些内容？", "签署日期：【签署日期】"),
        ("What is it?", "{{customer_name}}"),
        ("What is it?", "Name: [Enter your name]"),
        ("联系人是谁？", "待补充"),
        ("What is it?", "XXX was approved on Monday."),
        ("What is it?", "Dear XXX, your claim was approved."),
        ("What is it?", "Call XXXX for details."),
    ],
)
async def test_placeholder_gate_drops(instruction, output):
    result = await verdict(PlaceholderGate(), make(instruction, output))
    assert not result.keep
    assert "placeholder text in" in result.reason


@pytest.mark.parametrize(
    ("output", "source"),
    [
        ("Todo lo que dice el artículo es aplicable.", ""),
        ("Sizes go up to XXL in the catalogue.", ""),
        ("See articles [1] and [2] of the law.", ""),
        ("See [Article 5](https://example.org/a5) of the law.", ""),
        ("The placeholder doctrine is not recognised by the court.", ""),
        ("保险合同应当采用书面形式，并载明保险金额。", ""),
        # the slice itself uses the template: quoting it is fine
        ("该案中的 XXX 公司应当承担赔偿责任。", "案例：XXX 公司与李某保险合同纠纷。"),
        ("合同首部写明甲方【公司名称】。", "合同范本：甲方：【公司名称】"),
        # ordinary text that looks like a template
        ("（补充说明：见第二十三条）", ""),
        ("参数 s（输入为字符串）表示文件名。", ""),
        ("【保险金额】是指保险人承担赔偿或者给付保险金责任的最高限额。", ""),
        ("本合同的【保险金额】为十万元。", ""),
        ("Press [Enter] to continue.", ""),
        ("Super Bowl XXX was played in 1996.", ""),
        ("TBD in the output of a schedule means the date is not fixed yet.", ""),
        ("我国相关制度仍有待完善。", ""),
    ],
)
async def test_placeholder_gate_keeps(output, source):
    assert (await verdict(PlaceholderGate(), make(output=output, source=source))).keep


async def test_placeholder_gate_options():
    sample = make(output="联系人：XXX，请尽快联系。")
    assert not (await PlaceholderGate().check(sample)).keep
    assert (await PlaceholderGate(ignore=["xxx"]).check(sample)).keep
    extra = PlaceholderGate(extra_patterns=[r"\?\?\?"])
    assert not (await extra.check(make(output="The amount is ??? yuan."))).keep
    with pytest.raises(ValueError, match="ignore: unknown pattern"):
        PlaceholderGate(ignore=["nope"])
    with pytest.raises(ValueError, match="invalid regex"):
        PlaceholderGate(extra_patterns=["("])


# --- echo ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("instruction", "output", "keep"),
    [
        ("保险人什么时候可以解除合同？", "保险人什么时候可以解除合同？", False),
        ("保险人什么时候可以解除合同？", "保险人什么时候可以解除合同", False),
        ("What is just compensation?", "what is JUST compensation", False),
        (
            "What is just compensation?",
            "What is just compensation? What is just compensation",
            False,
        ),
        ("请解释：保险合同的定义", "保险合同的定义", False),  # contained in the instruction
        ("Explain: the takings clause of the Fifth Amendment", "The takings clause.", True),
        ("Which is correct, A or B?", "B", True),  # short, contained, but an answer
        (
            "保险人什么时候可以解除合同？",
            "投保人故意不履行如实告知义务的，保险人有权解除合同。",
            True,
        ),
        ("What is just compensation?", "Fair market value of the property taken.", True),
    ],
)
async def test_echo_gate(instruction, output, keep):
    result = await verdict(EchoGate(), make(instruction, output))
    assert result.keep is keep
    if not keep:
        assert "repeats the instruction" in result.reason


# --- language --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "instruction", "output", "keep"),
    [
        # Chinese slice
        (
            ZH_SOURCE,
            "保险人何时可以解除合同？",
            "投保人故意不履行如实告知义务的，保险人有权解除合同。",
            True,
        ),
        (
            ZH_SOURCE,
            "保险人何时可以解除合同？",
            "The insurer may terminate the contract if the applicant intentionally fails to "
            "disclose material facts.",
            False,
        ),
        (
            ZH_SOURCE,
            "什么是 GDPR？",
            "GDPR（General Data Protection Regulation）是欧盟的数据保护条例，"
            "规定了个人数据的处理规则。",
            True,
        ),
        # code is not prose: a Chinese slice with a code-only answer is kept
        (
            ZH_SOURCE,
            "写一个查询",
            "```sql\nSELECT name, city FROM customers WHERE is_vip = 1;\n```",
            True,
        ),
        (
            ZH_SOURCE,
            "写一个查询",
            "查询如下：\nSELECT name, city\nFROM customers\nWHERE is_vip = 1;",
            True,
        ),
        (ZH_SOURCE, "什么意思？", "See article 16.", True),  # too little prose to tell
        # English slice
        (EN_SOURCE, "What does it say?", "Private property may not be taken without pay.", True),
        (
            EN_SOURCE,
            "What does it say?",
            "私有财产不得在没有公正补偿的情况下被征用为公共使用。",
            False,
        ),
        (
            EN_SOURCE,
            "What is 'just compensation' (公正补偿)?",
            "Fair market value (公正补偿) of the property at the time it is taken.",
            True,
        ),
        # no source: the instruction decides
        (
            "",
            "保险人什么时候可以解除合同？请详细说明理由。",
            "When the applicant lies about material facts.",
            False,
        ),
        (
            "",
            "When may the insurer terminate a contract?",
            "当投保人故意隐瞒重要事实时，保险人可以解除合同。",
            False,
        ),
        ("", "When may the insurer terminate a contract?", "When the applicant lies.", True),
        # mixed slice: not judged
        (
            "Article 16 第十六条 insurance 保险 contract 合同 disclosure 告知 duty 义务 " * 3,
            "What?",
            "The insurer may terminate the contract for nondisclosure.",
            True,
        ),
    ],
)
async def test_language_gate(source, instruction, output, keep):
    result = await verdict(LanguageGate(), make(instruction, output, source=source))
    assert result.keep is keep, result.reason
    if not keep:
        assert "slice" in result.reason and "answer" in result.reason


def test_cjk_ratio_and_strip_code():
    assert cjk_ratio("保险abc")[0] == pytest.approx(2 / 5)
    assert cjk_ratio("1234 !!")[1] == 0
    text = "说明：\n```python\nprint('hello world')\n```\n用 `len(x)` 计算。\nSELECT a FROM t;"
    stripped = strip_code(text)
    assert "print" not in stripped and "len" not in stripped and "SELECT" not in stripped
    assert "说明" in stripped and "计算" in stripped


# --- grounding -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "output", "input", "keep"),
    [
        (ZH_SOURCE, "投保人故意不履行如实告知义务的，保险人有权解除合同。", "", True),
        (
            ZH_SOURCE,
            "今天天气晴朗，适合外出郊游，公园里的花都开了，孩子们在草地上奔跑。",
            "",
            False,
        ),
        (
            EN_SOURCE,
            "Private property shall not be taken for public use without just compensation.",
            "",
            True,
        ),
        (
            EN_SOURCE,
            "Photosynthesis converts sunlight, water and carbon dioxide into glucose "
            "inside chloroplasts.",
            "",
            False,
        ),
        ("", "Photosynthesis converts sunlight into glucose inside chloroplasts.", "", True),
        # the answer draws on the sample's input: that counts as source
        (
            EN_SOURCE,
            "Photosynthesis converts sunlight, water and carbon dioxide into glucose.",
            "Photosynthesis converts sunlight, water and carbon dioxide into glucose.",
            True,
        ),
        (ZH_SOURCE, "不是。", "", True),  # too short to judge
    ],
)
async def test_grounding_gate(source, output, input, keep):
    sample = make(output=output, source=source, input=input)
    verdict_, name = await run_gates(sample, [GroundingGate()])
    assert (verdict_ is None) is keep
    if not keep:
        assert name == "grounding" and "little overlap" in verdict_.reason
    if source and len(output) > 10:
        assert 0.0 <= sample.annotations["grounding_overlap"] <= 1.0


async def test_grounding_threshold_is_configurable():
    sample = make(
        output="保险人有权在投保人违反告知义务时通知对方解除合同并退还保费。", source=ZH_SOURCE
    )
    overlap = GroundingGate().overlap(sample)
    assert overlap is not None and 0 < overlap < 1
    assert (await GroundingGate(min_overlap=overlap).check(sample)).keep
    assert not (await GroundingGate(min_overlap=min(1.0, overlap + 0.01)).check(sample)).keep


# --- run_gates -------------------------------------------------------------------------------


class ScoreGate:
    """A user-defined gate: records a score, drops samples whose output mentions ``banned``."""

    def __init__(self, *, banned: str = "forbidden", name: str = "score") -> None:
        self.name = name
        self.banned = banned
        self.seen: list[str] = []

    async def check(self, sample: Sample) -> GateResult:
        self.seen.append(sample.id)
        notes = {"custom_score": len(sample.output) % 10}
        if self.banned in sample.output:
            return GateResult(False, f"mentions {self.banned!r}", notes)
        return GateResult(True, None, notes)


class BrokenGate:
    name = "broken"

    async def check(self, sample: Sample) -> GateResult:
        raise RuntimeError("boom")


class SyncCheckGate:
    name = "sync"

    def check(self, sample: Sample) -> GateResult:
        return GateResult(True)


async def test_run_gates_stops_at_the_first_drop_and_merges_annotations():
    first, second = ScoreGate(banned="zzz", name="first"), ScoreGate(name="second")
    third = ScoreGate(name="third")
    sample = make(output="this one is forbidden")
    result, name = await run_gates(sample, [first, second, third])
    assert name == "second" and result.reason == "mentions 'forbidden'"
    assert first.seen == second.seen == ["s1"] and third.seen == []
    assert sample.annotations["custom_score"] == len(sample.output) % 10
    assert await run_gates(make(), [first]) == (None, None)


async def test_a_gate_that_raises_drops_with_the_error_instead_of_ending_the_run(caplog):
    result, name = await run_gates(make(), [BrokenGate()])
    assert name == "broken" and result.reason == "gate error: RuntimeError: boom"
    assert "gate broken failed" in caplog.text


class WrongResultGate:
    def __init__(self, value: Any, name: str = "wrong") -> None:
        self.value = value
        self.name = name

    async def check(self, sample: Sample) -> Any:
        return self.value


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (True, "gate error: wrong.check returned bool, expected GateResult"),
        (None, "gate error: wrong.check returned NoneType, expected GateResult"),
        ({"keep": True}, "gate error: wrong.check returned dict, expected GateResult"),
        (
            GateResult(True, None, ["x"]),  # type: ignore[arg-type]
            "gate error: wrong.check returned annotations of type list, expected a dict",
        ),
    ],
)
async def test_a_gate_that_returns_no_gate_result_drops_instead_of_crashing(value, reason, caplog):
    after = ScoreGate(name="after")
    sample = make()
    result, name = await run_gates(sample, [WrongResultGate(value), after])
    assert name == "wrong" and not result.keep and result.reason == reason
    assert after.seen == [] and "gate wrong failed" in caplog.text


class FactoryFails:
    name = "fails"

    def __init__(self, *, error: str = "os") -> None:
        if error == "os":
            raise OSError("cannot read the word list")
        if error == "key":
            raise KeyError("model")
        if error == "config":
            raise ConfigError("bad setting")

    async def check(self, sample: Sample) -> GateResult:
        return GateResult(True)


@pytest.mark.parametrize(
    ("error", "message"),
    [
        ("os", "gates[0] (python): OSError: cannot read the word list"),
        ("key", "gates[0] (python): KeyError: 'model'"),
        ("config", "gates[0] (python): bad setting"),
    ],
)
def test_any_error_of_a_gate_factory_is_a_config_error_naming_the_entry(error, message):
    spec = {
        "type": "python",
        "target": f"{HERE}:FactoryFails",
        "options": {"error": error},
    }
    with pytest.raises(ConfigError) as exc:
        build_gates([spec])
    assert str(exc.value) == message


# --- registry --------------------------------------------------------------------------------


def test_rules_shorthand_enables_every_rule_gate_in_order():
    gates = build_gates([{"type": "rules"}])
    assert [g.name for g in gates] == list(RULE_GATE_TYPES)
    gates = build_gates(
        [{"type": "rules", "exclude": ["grounding", "echo"], "length": {"min_output_chars": 20}}]
    )
    assert [g.name for g in gates] == ["length", "placeholder", "refusal", "language"]
    assert gates[0].bounds["output"] == (20, 20000)


def test_each_type_with_options_and_a_name():
    gates = build_gates(
        [
            {"type": "length", "min_output_chars": 20},
            {"type": "length", "name": "length_max", "max_output_chars": 500},
            {"type": "refusal", "extra_phrases": ["无可奉告"]},
            {"type": "placeholder", "ignore": ["xxx"]},
            {"type": "echo", "threshold": 0.9},
            {"type": "language", "zh_answer_min": 0.3},
            {"type": "grounding", "min_overlap": 0.1, "ngram": 2},
        ]
    )
    assert [g.name for g in gates] == [
        "length",
        "length_max",
        "refusal",
        "placeholder",
        "echo",
        "language",
        "grounding",
    ]
    assert all(isinstance(g, Gate) for g in gates)


def test_build_gates_takes_the_config():
    from sft_distill.config.merging import build_config

    cfg = build_config({"gates": [{"type": "refusal"}, {"type": "echo"}]})
    # the pii gate is on by default (issue 14) and runs first; "pii": "off" removes it
    assert [g.name for g in build_gates(cfg)] == ["pii", "refusal", "echo"]
    # No "gates" key: the default gates (quality checks, then rule gates); [] turns them off.
    defaults = ["pii", *QUALITY_GATE_TYPES, *RULE_GATE_TYPES]
    assert [g.name for g in build_gates(build_config({}))] == defaults
    assert [g.name for g in build_gates(build_config({"gates": []}))] == ["pii"]
    assert build_gates(build_config({"gates": [], "pii": "off"})) == []


@pytest.mark.parametrize(
    ("specs", "message"),
    [
        (
            [{"type": "rules"}, {"type": "echo"}, {"type": "length", "min_chars": 3}],
            "gates[2] (length): unknown option 'min_chars'; known: min_instruction_chars, "
            "max_instruction_chars, min_output_chars, max_output_chars",
        ),
        ([{"type": "lenght"}], "gates[0] (lenght): unknown gate type; known types: echo,"),
        ([{"min_output_chars": 3}], "gates[0]: missing 'type'; known types:"),
        (["length"], "gates[0]: must be an object"),
        (
            [{"type": "length", "min_output_chars": "20"}],
            "gates[0] (length): min_output_chars must be an integer >= 0, got '20'",
        ),
        (
            [{"type": "length", "min_output_chars": 50, "max_output_chars": 10}],
            "gates[0] (length): min_output_chars (50) is above max_output_chars (10)",
        ),
        ([{"type": "echo", "threshold": 2}], "gates[0] (echo): threshold must be a number"),
        ([{"type": "refusal", "extra_phrases": "sorry"}], "extra_phrases must be a list"),
        ([{"type": "placeholder", "fields": ["answer"]}], "fields: unknown field(s) ['answer']"),
        ([{"type": "rules", "exclude": ["nope"]}], "gates[0] (rules): cannot exclude 'nope'"),
        ([{"type": "rules", "lenght": {}}], "gates[0] (rules): unknown option 'lenght'"),
        (
            [{"type": "rules", "length": {"min_chars": 1}}],
            "gates[0] (rules) length: unknown option 'min_chars'",
        ),
        ([{"type": "rules", "name": "x"}], "'name' is not allowed here"),
        ([{"type": "echo", "name": ""}], "gates[0] (echo): 'name' must be a non-empty string"),
        ([{"type": "echo"}, {"type": "echo"}], "more than one gate named 'echo'"),
        ([{"type": "sql", "database": "no/such.db"}], "gates[0] (sql): database 'no/such.db' not"),
        ([{"type": "sql"}], "gates[0] (sql): missing option 'database'"),
        ([{"type": "python"}], "gates[0] (python): 'target' must look like"),
        ([{"type": "python", "target": "nomodule_xyz:Gate"}], "cannot import 'nomodule_xyz'"),
        ([{"type": "python", "target": f"{HERE}:Nope"}], "has no attribute 'Nope'"),
        ([{"type": "python", "target": f"{HERE}:ZH_SOURCE"}], "not a class or function"),
        (
            [{"type": "python", "target": f"{HERE}:SyncCheckGate"}],
            "must be an 'async def'",
        ),
        (
            [{"type": "python", "target": f"{HERE}:ScoreGate", "banned": "x"}],
            "unknown key(s) 'banned'; known: target, options, name",
        ),
        (
            [{"type": "python", "target": f"{HERE}:ScoreGate", "options": {"bad": 1}}],
            "gates[0] (python): unknown option 'bad'; known: banned",
        ),
        (
            [{"type": "python", "target": "missing_file.py:Gate"}],
            "file 'missing_file.py' not found",
        ),
    ],
)
def test_registry_errors_name_the_gate_and_option(specs, message):
    with pytest.raises(ConfigError) as exc:
        build_gates(specs)
    assert message in str(exc.value)


def test_check_gate():
    assert check_gate(ScoreGate()) is not None
    with pytest.raises(ConfigError, match="has no 'name'"):
        check_gate(object())


# --- custom gates: from config and from Python -----------------------------------------------


def test_custom_gate_from_config_by_module():
    (gate,) = build_gates(
        [{"type": "python", "target": f"{HERE}:ScoreGate", "options": {"banned": "x"}}]
    )
    assert isinstance(gate, ScoreGate) and gate.banned == "x" and gate.name == "score"
    (named,) = build_gates([{"type": "python", "target": f"{HERE}:ScoreGate", "name": "mine"}])
    assert named.name == "mine"


CUSTOM_GATE_FILE = """
from sft_distill.gates import GateResult

class LongOutputGate:
    def __init__(self, *, max_chars=100):
        self.name = "long_output"
        self.max_chars = max_chars

    async def check(self, sample):
        n = len(sample.output)
        return GateResult(n <= self.max_chars, f"{n} chars", {"output_chars": n})
"""


async def test_custom_gate_from_config_by_file_relative_to_base_dir(tmp_path, monkeypatch):
    (tmp_path / "my_gates.py").write_text(CUSTOM_GATE_FILE, encoding="utf-8")
    specs = [
        {"type": "python", "target": "my_gates.py:LongOutputGate", "options": {"max_chars": 5}}
    ]
    (gate,) = build_gates(specs, base_dir=tmp_path)
    result = await gate.check(make(output="123456"))
    assert not result.keep and result.annotations == {"output_chars": 6}
    monkeypatch.chdir(tmp_path)  # or relative to the current directory
    assert build_gates(specs)[0].name == "long_output"


def test_custom_gate_file_path_with_colons(tmp_path):
    # The class name is after the last colon (C:\gates\my.py:MyGate on Windows).
    folder = tmp_path / "d:with:colons"
    folder.mkdir()
    (folder / "my_gates.py").write_text(CUSTOM_GATE_FILE, encoding="utf-8")
    (gate,) = build_gates(
        [{"type": "python", "target": f"{folder / 'my_gates.py'}:LongOutputGate"}]
    )
    assert gate.name == "long_output"
    for bad in (f"{folder / 'my_gates.py'}:", ":LongOutputGate", HERE, 3):
        with pytest.raises(ConfigError, match="'target' must look like"):
            build_gates([{"type": "python", "target": bad}])


def test_register_gate_type(monkeypatch):
    monkeypatch.setattr(gates_module, "_USER_TYPES", {})  # leave no type behind
    register_gate_type("score_test", ScoreGate)
    register_gate_type("score_test", ScoreGate)  # the same again is fine
    (gate,) = build_gates([{"type": "score_test", "banned": "y"}])
    assert isinstance(gate, ScoreGate) and gate.banned == "y"
    with pytest.raises(ValueError, match="built in"):
        register_gate_type("length", ScoreGate)
    with pytest.raises(ValueError, match="already registered"):
        register_gate_type("score_test", LengthGate)


# --- through the pipeline --------------------------------------------------------------------


def judged_pairs(sim) -> set[tuple[str, str]]:
    """(instruction, output) of every evaluation request the simulator received."""
    return {(s["instruction"], s["output"]) for s in judged_samples(sim.prompts)}


SLICES = [
    {
        "id": "insurance",
        "content": (
            "第一条 为了规范保险活动，制定本法。第二条 本法所称保险，是指投保人根据合同约定，"
            "向保险人支付保险费的商业保险行为。第三条 保险合同应当采用书面形式。"
            "第四条 从事保险活动必须遵守法律、行政法规，尊重社会公德，不得损害社会公共利益。"
            "第五条 保险活动当事人行使权利、履行义务应当遵循诚实信用原则。"
            "第六条 保险业务由依照本法设立的保险公司经营。"
        ),
    },
    {
        "id": "takings",
        "content": (
            "No person shall be held to answer for a capital crime without a Grand Jury. Nor "
            "shall any person be twice put in jeopardy. Nor shall any person be compelled to be a "
            "witness against himself. Private property shall not be taken for public use without "
            "just compensation. The Grand Jury may hear any presentment. Due process applies."
        ),
    },
]


async def test_gate_dropped_samples_are_never_judged(sim, tmp_path):
    sim.config.keep_prompts = True
    slices = tmp_path / "slices.jsonl"
    slices.write_text(
        "".join(json.dumps(s, ensure_ascii=False) + "\n" for s in SLICES), encoding="utf-8"
    )
    custom = ScoreGate(banned="Grand Jury", name="no_grand_jury")
    cfg = sim_config(
        sim,
        output_dir=str(tmp_path / "out"),
        samples_per_slice=6,
        gates=[{"type": "rules"}, {"type": "length", "name": "long", "min_output_chars": 60}],
        early_drop=False,  # both judges see every sample the gates let through
    )
    pipeline = DatasetDistillationPipeline(cfg, show_progress=False, gates=[custom])
    assert [g.name for g in pipeline.gates][-3:] == ["grounding", "long", "no_grand_jury"]
    result = await pipeline.run(slices)
    raw = read_jsonl(result.output_dir / "generated_raw.jsonl")
    gated = [r for r in raw if (r["drop_reason"] or "").startswith(GATE_PREFIX)]
    reasons = {r["drop_reason"] for r in gated}
    assert {"gate:long", "gate:no_grand_jury"} <= reasons
    judged = judged_pairs(sim)
    for r in raw:
        pair = (r["instruction"], r["output"])
        if r in gated:
            assert pair not in judged, r["id"]
            assert r["judgements"] == [] and r["avg_score"] is None and not r["passed"]
            assert r["drop_detail"]
        else:
            assert pair in judged
            assert "custom_score" in r["annotations"]  # the Python gate ran on it
    for r in gated:
        if r["drop_reason"] == "gate:long":
            assert len(r["output"].strip()) < 60
            assert r["drop_detail"].startswith("output too short")
    counts = result.metadata["counts"]
    assert counts["samples_evaluated"] == len(raw) - len(gated)
    for reason in reasons:
        assert counts["dropped"][reason] == sum(1 for r in gated if r["drop_reason"] == reason)
    assert result.metadata["quality_gates"]["gates"][-2:] == ["long", "no_grand_jury"]
    # Each sample the gates kept was judged once per judge, a chunk's samples in one call.
    assert len(judged_samples(sim.prompts)) == 2 * (len(raw) - len(gated))
    chunks = {(r["slice_id"], r["chunk_index"]) for r in raw if r not in gated}
    assert sim.stats["by_kind"]["evaluation"] == 2 * len(chunks)
