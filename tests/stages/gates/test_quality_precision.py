"""Precision first: certain findings drop, suspect ones go to the judges (``on_suspect``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sft_distill.errors import ConfigError
from sft_distill.llm.prompts import evaluation_messages, judge_system_prompt
from sft_distill.models import Sample
from sft_distill.stages.gates.base import run_gates
from sft_distill.stages.gates.checks.numbers import check_numbers
from sft_distill.stages.gates.checks.referential import find_referential
from sft_distill.stages.gates.checks.support import find_unsupported
from sft_distill.stages.gates.quality import judge_flags
from sft_distill.stages.gates.registry import build_gates
from tests.helpers import cli_config, read_jsonl, read_metadata, write_jsonl

# Two provisions of a made-up regulation on claims.
RULES = (
    "第十二条 理赔机构收到索赔材料后，应当及时审核；案情复杂的，应当在四十日内审核完毕。\n"
    "第十三条 理赔机构依照第十二条审核后，对不予赔付的，应当自审核完毕之日起四日内书面通知"
    "申请人，并说明理由。"
)
ASK_NOTICE = "《理赔规则》规定，不予赔付时理赔机构要在多久内通知申请人？"
# The answer restates the source's sentence word for word with another number: certain.
SWAPPED = "理赔机构应当自审核完毕之日起七日内书面通知申请人，并说明理由。"
# Another wording of the rule with another number: only a loose match to the source's sentence.
PARAPHRASED = "案情复杂时，理赔机构要在九十日内审核完毕。"
# A figure the source does not have at all: absent, not contradicted.
ADDED = "理赔机构还应当在十五日内退还申请人缴纳的百分之十的审核费。"


def sample(instruction: str = ASK_NOTICE, output: str = SWAPPED, **kw) -> Sample:
    return Sample(
        id="s1", slice_id="c1", instruction=instruction, output=output, source_text=RULES, **kw
    )


def test_the_source_sentence_with_another_number_is_a_certain_contradiction():
    found = check_numbers(SWAPPED, RULES, ASK_NOTICE)
    assert found is not None and found.certain
    assert "7日 (source: 4)" in found.reason
    en = (
        "Each Member of the Board shall serve for a term of four years and may be reappointed once."
    )
    found = check_numbers(
        "Each Member of the Board shall serve for a term of five years.",
        en,
        "How long is a Board Member's term under the Board Charter?",
    )
    assert found is not None and found.certain


def test_a_loose_match_an_absent_figure_and_an_unnamed_contract_are_suspect():
    found = check_numbers(PARAPHRASED, RULES, "案情复杂的理赔审核期限是多久？")
    assert found is not None and not found.certain
    found = find_unsupported(ADDED, RULES, "《理赔规则》第十三条规定了什么？")
    assert found is not None and not found.certain
    found = find_referential("本合同的等待期是多少天？")
    assert found is not None and not found.certain
    # pointing words are certain
    found = find_referential("根据上述资料，等待期是多少天？")
    assert found is not None and found.certain


def test_an_absent_article_is_certain_only_when_the_question_names_the_document():
    cites = "根据第八十条，理赔机构应当自审核完毕之日起四日内书面通知申请人。"
    named = check_numbers(cites, RULES, ASK_NOTICE)
    assert named is not None and named.certain and "第80条" in named.reason
    unnamed = check_numbers(cites, RULES, "不予赔付时要在多久内通知申请人？")
    assert unnamed is not None and not unnamed.certain
    # an article the answer gives to another law, and another law named, are no contradiction
    other = "根据《民法典》第五百条，理赔机构应当自审核完毕之日起四日内书面通知申请人。"
    found = check_numbers(other, RULES, ASK_NOTICE)
    assert found is not None and not found.certain and "第500条" in found.reason
    board = "Article 3. Each Member of the Board shall serve for a term of four years."
    ask = "How long do Members serve under the Board Charter?"
    found = check_numbers("Under Article 9, each Member serves four years.", board, ask)
    assert found is not None and found.certain
    found = check_numbers("Under Article 9 of the Privacy Act, Members serve 4 years.", board, ask)
    assert found is not None and not found.certain


async def test_a_certain_finding_drops_with_the_gate_reason():
    gates = build_gates([{"type": "quality"}])
    result, name = await run_gates(sample(), gates)
    assert name == "numbers" and result is not None and not result.keep
    assert result.reason and result.reason.startswith("number differs from the source")


async def test_a_suspect_finding_keeps_the_sample_flags_it_and_the_judges_see_the_flag():
    s = sample(instruction="案情复杂的理赔审核期限是多久？", output=PARAPHRASED)
    result, name = await run_gates(s, build_gates([{"type": "quality"}]))
    assert result is None and name is None  # kept
    # the numbers check finds a loose contradiction, the support check a figure the source lacks
    flags = {f["check"]: f for f in s.annotations["quality_flags"]}
    assert sorted(flags) == ["numbers", "support"]
    assert flags["numbers"]["reason"].startswith("number differs from the source: 90日")
    assert flags["numbers"]["judge"] is True
    reasons = judge_flags(s)
    assert reasons == [f["reason"] for f in s.annotations["quality_flags"]]
    messages = evaluation_messages(s.source_text, s.instruction, s.input, s.output, flags=reasons)
    system, user = messages[0]["content"], messages[1]["content"]
    note = (
        f"An automatic check flagged: {reasons[0]}. Check this claim against the source before "
        "scoring accuracy."
    )
    # the flag is part of the sample block, after the answer; the system prompt stays static
    assert note in user and user.index("</output>") < user.index(note) < user.index("</sample>")
    assert system == judge_system_prompt() and "flagged" not in system
    plain = evaluation_messages(s.source_text, s.instruction, s.input, s.output)
    assert "check_flags" not in plain[1]["content"]


async def test_flags_of_two_gates_add_up_and_a_rerun_does_not_repeat_them():
    s = sample(instruction="本合同案情复杂的审核期限是多久？", output=PARAPHRASED)
    gates = build_gates([{"type": "quality"}])
    await run_gates(s, gates)
    await run_gates(s, gates)  # a resumed run checks the sample again
    checks = [f["check"] for f in s.annotations["quality_flags"]]
    assert checks == ["referential", "numbers", "support"]


async def test_on_suspect_drop_restores_dropping_and_keep_hides_the_flag_from_the_judges():
    s = sample(instruction="案情复杂的理赔审核期限是多久？", output=PARAPHRASED)
    dropping = build_gates([{"type": "numbers", "on_suspect": "drop"}])  # support not run
    result, name = await run_gates(s, dropping)
    assert name == "numbers" and result is not None and not result.keep
    assert result.reason and result.reason.startswith("number differs from the source: 90日")
    quiet = sample(instruction="案情复杂的理赔审核期限是多久？", output=PARAPHRASED)
    result, _ = await run_gates(
        quiet, build_gates([{"type": "quality", "numbers": {"on_suspect": "keep"}}])
    )
    assert result is None
    flags = {f["check"]: f["judge"] for f in quiet.annotations["quality_flags"]}
    assert flags == {"numbers": False, "support": True}
    assert judge_flags(quiet) == [quiet.annotations["quality_flags"][1]["reason"]]


async def test_on_suspect_on_the_bundle_sets_every_gate_that_has_it_and_a_gate_may_override():
    s = sample(instruction="本合同案情复杂的审核期限是多久？", output=PARAPHRASED)
    result, name = await run_gates(s, build_gates([{"type": "quality", "on_suspect": "drop"}]))
    assert name == "referential" and result is not None and not result.keep
    mixed = [{"type": "quality", "on_suspect": "drop", "referential": {"on_suspect": "judge"}}]
    s = sample(instruction="本合同案情复杂的审核期限是多久？", output=PARAPHRASED)
    result, name = await run_gates(s, build_gates(mixed))
    assert name == "numbers" and result is not None and not result.keep
    assert [f["check"] for f in s.annotations["quality_flags"]] == ["referential"]
    with pytest.raises(ConfigError) as err:
        build_gates([{"type": "rules", "on_suspect": "drop"}])
    assert "unknown option 'on_suspect'" in str(err.value)


def test_on_suspect_is_validated():
    with pytest.raises(ConfigError) as err:
        build_gates([{"type": "quality", "support": {"on_suspect": "ask"}}])
    assert "gates[0] (quality) support: on_suspect must be one of judge, drop, keep" in str(
        err.value
    )


PAIRS = [
    {"id": "swapped", "question": ASK_NOTICE, "answer": SWAPPED, "source_text": RULES},
    {
        "id": "added",
        "question": "《理赔规则》第十三条规定了什么？",
        "answer": "对不予赔付的，理赔机构应当自审核完毕之日起四日内书面通知申请人，并说明理由。"
        + ADDED,
        "source_text": RULES,
    },
]


def _distill(cli, tmp_path: Path, gates: list | None = None) -> dict:
    """``sft-distill distill --skip-generation --dry-run`` over PAIRS: raw records by id."""
    ids = {p["question"]: p["id"] for p in PAIRS}
    tmp_path.mkdir(exist_ok=True)
    inp = write_jsonl(tmp_path / "pairs.jsonl", PAIRS)
    args = ["distill", "--input", str(inp), "--skip-generation", "--dry-run", "-q"]
    if gates is not None:
        cfg = tmp_path / "c.json"
        cfg.write_text(json.dumps(cli_config("http://127.0.0.1:9/v1", gates=gates)))
        args += ["--config", str(cfg)]
    out = tmp_path / "out"
    p = cli(*args, "--output", str(out))
    assert p.returncode == 0, p.stderr
    return {ids[r["instruction"]]: r for r in read_jsonl(out / "generated_raw.jsonl")}


def test_a_run_drops_the_certain_and_judges_the_flagged(cli, tmp_path):
    raw = _distill(cli, tmp_path)
    assert raw["swapped"]["drop_reason"] == "gate:numbers"
    assert raw["swapped"]["judgements"] == []
    added = raw["added"]
    assert not (added["drop_reason"] or "").startswith("gate:")
    assert len(added["judgements"]) == 2  # both judges were asked, with the flag shown
    assert [f["check"] for f in added["annotations"]["quality_flags"]] == ["support"]
    meta = read_metadata(tmp_path / "out")
    assert meta["quality"]["check_flags"]["generated"] == {"support": 1}
    assert meta["quality"]["check_drops"]["numbers"] == 1
    strict = _distill(
        cli, tmp_path / "strict", [{"type": "quality", "support": {"on_suspect": "drop"}}]
    )
    assert strict["added"]["drop_reason"] == "gate:support"
    assert strict["added"]["judgements"] == []
