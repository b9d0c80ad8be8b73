"""Decontamination: samples repeating an eval item are dropped as ``contaminated`` (exact,
n-gram and embedding matches), with the matched item's id; eval files read like ``distill``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from sft_distill import DatasetDistillationPipeline
from sft_distill.errors import ConfigError, InputError
from sft_distill.models import Sample, ScoredSample
from sft_distill.selection.decontaminate import (
    NGRAM_CJK,
    NGRAM_WORDS,
    DecontaminationGate,
    Decontaminator,
    gram_size,
    load_eval_items,
    tokens,
)
from sft_distill.selection.refilter import refilter
from sft_distill.selection.thresholds import apply_thresholds
from sft_distill.stages.gates.base import run_gates
from tests.helpers import read_jsonl, read_metadata, sim_config, write_jsonl

ZH_Q = "投保人故意不履行如实告知义务的，保险人对于合同解除前发生的保险事故是否承担赔偿责任？"
ZH_A = "不承担赔偿或者给付保险金的责任，并不退还保险费。"
EN_Q = (
    "Under the Fourth Amendment to the United States Constitution, what must a search warrant "
    "particularly describe before a judge may issue it to the police?"
)
EN_A = "The place to be searched, and the persons or things to be seized."


def eval_file(tmp_path: Path, rows: list[dict], name: str = "eval.jsonl") -> Path:
    return write_jsonl(tmp_path / name, rows)


def decontaminator(tmp_path: Path, rows: list[dict], **kw) -> Decontaminator:
    return Decontaminator(load_eval_items([eval_file(tmp_path, rows)]), **kw).build()


def test_tokens_and_gram_size():
    assert tokens("第十六条：Ｔｈｅ Insurer’s DUTY！") == [
        "第",
        "十",
        "六",
        "条",
        "the",
        "insurer",
        "s",
        "duty",
    ]
    assert gram_size(tokens(ZH_Q)) == NGRAM_CJK
    assert gram_size(tokens(EN_Q)) == NGRAM_WORDS


@pytest.mark.parametrize(
    ("question", "match"),
    [
        (ZH_Q, "exact"),
        # spacing, punctuation, width and case do not matter
        (
            " 投保人故意不履行如实告知义务的 保险人对于合同解除前发生的保险事故，是否承担赔偿责任 ",
            "exact",
        ),
        (EN_Q.upper().replace(",", ""), "exact"),
        # light edits: a character or word changed, removed or added
        (ZH_Q.replace("故意", "有意"), "ngram"),
        (ZH_Q.replace("是否", "能否"), "ngram"),
        ("请回答：" + ZH_Q, "ngram"),
        (EN_Q.replace("particularly", "specifically"), "ngram"),
        (EN_Q.replace(" to the police", ""), "ngram"),
    ],
)
def test_copies_and_light_edits_are_found_with_the_items_id(tmp_path, question, match):
    d = decontaminator(
        tmp_path,
        [
            {"id": "zh-16", "question": ZH_Q, "answer": ZH_A},
            {"id": "en-4", "question": EN_Q, "answer": EN_A},
            {
                "id": "other",
                "question": "什么是保险利益？",
                "answer": "对保险标的具有的法律上承认的利益。",
            },
        ],
    )
    hit = d.match(question)
    assert hit is not None and hit.match == match, hit
    assert hit.item_id == ("en-4" if question.isascii() else "zh-16")
    assert hit.eval_set == "eval.jsonl"
    assert 0.6 <= hit.score <= 1.0


@pytest.mark.parametrize(
    "question",
    [
        # the same subject, other questions
        "投保人未履行如实告知义务时，保险人在什么期限内可以行使合同解除权？",
        "保险人对于合同解除后发生的保险事故如何处理？",
        # quotes a clause the eval item quotes, but asks something else
        "“投保人故意不履行如实告知义务的”这一情形下，保险费如何处理？请结合第十六条第四款说明。",
        "What does the Fourth Amendment say about unreasonable searches and seizures?",
        "Which amendment requires that a warrant describe the place to be searched?",
        # shorter than n tokens and not the same: only exact (or embedding) matching applies
        "什么是保险？",
    ],
)
def test_other_questions_on_the_same_subject_are_not_contaminated(tmp_path, question):
    d = decontaminator(
        tmp_path,
        [
            {"id": "zh-16", "question": ZH_Q, "answer": ZH_A},
            {"id": "en-4", "question": EN_Q, "answer": EN_A},
            {"id": "short", "question": "什么是保险利益？"},
        ],
    )
    assert (
        d.match(question, f"{question}\n应当依照保险法和合同的约定处理，具体视情形而定。") is None
    )


def test_question_and_answer_copied_with_a_reworded_question(tmp_path):
    answer = (
        "依照保险法第十六条，投保人故意不履行如实告知义务的，保险人对于合同解除前发生的保险事故，"
        "不承担赔偿或者给付保险金的责任，并不退还保险费；因重大过失未履行的，可以不承担责任但应当退还保险费。"
    )
    d = decontaminator(tmp_path, [{"id": "qa-1", "question": ZH_Q, "answer": answer}])
    question = "隐瞒病史投保后出险，保险公司怎么处理？"
    assert d.match(question) is None  # the question alone is not the eval question
    hit = d.match(question, f"{question}\n{answer}")
    assert hit is not None and (hit.match, hit.item_id) == ("answer", "qa-1")
    # the threshold is configurable
    strict = decontaminator(
        tmp_path, [{"id": "qa-1", "question": ZH_Q, "answer": answer}], overlap=0.99
    )
    assert strict.match(question, f"{question}\n{answer}") is None


def test_a_template_shared_by_many_items_names_none_of_them(tmp_path):
    stem = "Which of the following statements about the insurance contract is correct"
    rows = [{"id": f"t{i}", "question": f"{stem}? Option set {i}."} for i in range(300)]
    rows.append(
        {"id": "real", "question": "Explain why an insurer may rescind a contract for fraud."}
    )
    d = decontaminator(tmp_path, rows)
    assert d.match(f"{stem} when the policyholder lied?") is None
    hit = d.match(f"{stem}? Option set 17.")
    assert hit is not None and hit.item_id == "t17"


def concept_embed(texts: list[str]) -> np.ndarray:
    """A stand-in model: rephrasings of the same question share a direction."""
    concepts = {"warrant": 0, "搜查令": 0, "告知": 1, "隐瞒": 1, "天气": 2}
    out = np.zeros((len(texts), 4), dtype=np.float32)
    for i, t in enumerate(texts):
        k = next((c for w, c in concepts.items() if w in t), 3)
        out[i, k] = 1.0
        out[i, 3] += 0.1 * (len(t) % 3)  # not quite the same vector
    return out


async def test_rephrasings_are_found_by_embedding(tmp_path):
    d = Decontaminator(
        load_eval_items([eval_file(tmp_path, [{"id": "en-4", "question": EN_Q}])]),
        embed_fn=concept_embed,
    )
    await d.prepare()
    hit = await d.amatch("签发搜查令之前必须具体写明什么？")
    assert hit is not None and (hit.match, hit.item_id) == ("embedding", "en-4")
    assert hit.score >= 0.9
    assert await d.amatch("明天天气怎么样？") is None
    hits = await d.match_many([("签发搜查令要写明什么？", ""), ("天气", ""), (EN_Q, "")])
    assert [h and (h.match, h.item_id) for h in hits] == [
        ("embedding", "en-4"),
        None,
        ("exact", "en-4"),
    ]


async def test_the_gate_drops_as_contaminated_and_records_the_item(tmp_path):
    d = decontaminator(tmp_path, [{"id": "zh-16", "question": ZH_Q, "answer": ZH_A}])
    gate = DecontaminationGate(d)
    sample = Sample(id="s", slice_id="law", instruction=ZH_Q.replace("故意", "有意"), output="...")
    result, by = await run_gates(sample, [gate])
    assert by == "decontaminate" and result is not None and not result.keep
    assert result.drop_reason == "contaminated"
    assert sample.annotations["contaminated_by"] == "zh-16"
    assert sample.annotations["contamination"]["match"] == "ngram"
    assert "eval item 'zh-16' (eval.jsonl)" in result.reason
    # a contaminated sample stays dropped when thresholds are applied again (refilter)
    scored = ScoredSample(**sample.model_dump(), drop_reason="contaminated")
    again = apply_thresholds(scored, min_score_threshold=0, min_votes=1)
    assert (again.passed, again.drop_reason) == (False, "contaminated")


def test_eval_files_are_read_like_instruction_sets(tmp_path):
    jsonl = eval_file(
        tmp_path, [{"prompt": "问题一是什么？", "response": "答"}, {"prompt": "问题一是什么？"}]
    )
    array = tmp_path / "eval.json"
    array.write_text(
        json.dumps([{"instruction": "Q two?", "input": "ctx", "output": "A"}]), "utf-8"
    )
    chats = eval_file(
        tmp_path,
        [
            {
                "id": "c1",
                "conversations": [
                    {"from": "human", "value": "Q three?"},
                    {"from": "gpt", "value": "A3"},
                ],
            }
        ],
        "chats.jsonl",
    )
    items = load_eval_items([jsonl, array, chats])
    assert items.ids == ["eval.jsonl:1", "eval.json:1", "c1"]
    assert items.questions == ["问题一是什么？", "Q two?\nctx", "Q three?"]
    assert items.answers == ["答", "A", "A3"]
    assert [f["items"] for f in items.files] == [1, 1, 1]
    assert items.files[0]["repeated_questions"] == 1


def test_bad_eval_files_are_one_line_errors(tmp_path):
    with pytest.raises(ConfigError, match=r"decontaminate: eval set 'missing\.jsonl' not found"):
        load_eval_items(["missing.jsonl"], base_dirs=[tmp_path])
    bad = eval_file(tmp_path, [{"text": "no question column"}])
    with pytest.raises(InputError, match=r"no instruction column found.*an eval set needs"):
        load_eval_items([bad])


# --- through the pipeline and refilter ------------------------------------------------------

SLICES = [
    {
        "id": "law",
        "content": "第十六条 订立保险合同，保险人就保险标的或者被保险人的有关情况提出询问的，"
        "投保人应当如实告知。投保人故意或者因重大过失未履行前款规定的如实告知义务，足以影响保险人"
        "决定是否同意承保或者提高保险费率的，保险人有权解除合同。",
    },
    {
        "id": "con",
        "content": "The right of the people to be secure in their persons, houses, papers, "
        "and effects, against unreasonable searches and seizures, shall not be violated, and no "
        "Warrants shall issue, but upon probable cause, supported by Oath or affirmation, and "
        "particularly describing the place to be searched, and the persons or things to be seized.",
    },
]


async def _run(sim, tmp_path: Path, name: str, **cfg) -> tuple[list[dict], dict]:
    path = write_jsonl(tmp_path / "slices.jsonl", SLICES)
    config = sim_config(
        sim, output_dir=str(tmp_path / name), samples_per_slice=4, min_votes=1, **cfg
    )
    result = await DatasetDistillationPipeline(config, show_progress=False).run(path)
    return read_jsonl(result.output_dir / "generated_raw.jsonl"), read_metadata(result.output_dir)


async def test_a_run_drops_contaminated_samples_before_the_judges(sim, tmp_path):
    clean, _ = await _run(sim, tmp_path, "clean")
    assert len(clean) >= 4
    # Eval items copying two generated questions (one lightly edited) and an unrelated one.
    taken = [clean[0], clean[-1]]
    rows = [
        {"id": "E1", "question": taken[0]["instruction"]},
        {"id": "E2", "question": "请回答：" + taken[1]["instruction"]},
        {"id": "E3", "question": "What is the capital of France and why was it chosen?"},
    ]
    eval_path = eval_file(tmp_path, rows)
    raw, meta = await _run(sim, tmp_path, "decon", decontaminate=[str(eval_path)])
    by_id = {r["id"]: r for r in raw}
    for sample, item in zip(taken, ("E1", "E2"), strict=True):
        r = by_id[sample["id"]]
        assert (r["passed"], r["drop_reason"]) == (False, "contaminated")
        assert r["annotations"]["contaminated_by"] == item
        assert r["judgements"] == []  # no judge was paid for it
    # The simulator's questions on one slice quote the same sentence: those mostly made of
    # an eval question's words are caught too, and name it.
    contaminated = [r for r in raw if r["drop_reason"] == "contaminated"]
    assert {r["annotations"]["contaminated_by"] for r in contaminated} == {"E1", "E2"}
    n = len(contaminated)
    assert meta["counts"]["dropped"]["contaminated"] == n
    assert meta["decontamination"]["contaminated"] == n
    assert meta["decontamination"]["eval_sets"][0]["items"] == 3
    assert meta["quality_gates"]["gates"][:2] == ["pii", "decontaminate"]
    by_match = meta["report"]["compliance"]["contaminated"]
    assert by_match["exact"] == 1 and sum(by_match.values()) == n
    # only the samples no gate dropped were judged
    gated = sum(1 for r in raw if (r["drop_reason"] or "").startswith(("gate:", "contaminated")))
    assert meta["counts"]["samples_evaluated"] == len(raw) - gated
    manifest = json.loads((tmp_path / "decon" / "manifest.json").read_text("utf-8"))
    assert manifest["decontaminated_against"][0]["path"] == str(eval_path.resolve())
    kept = manifest["samples"]["train"] + manifest["samples"]["val"]
    assert not {s["id"] for s in taken} & set(kept)


async def test_refilter_applies_a_new_eval_set(sim, tmp_path):
    raw, _ = await _run(sim, tmp_path, "run")
    passed = [r for r in raw if r["passed"]]
    assert passed
    eval_path = eval_file(tmp_path, [{"id": "late", "question": passed[0]["instruction"]}])
    result = refilter(tmp_path / "run", overrides={"decontaminate": [str(eval_path)]})
    after = {r["id"]: r for r in read_jsonl(tmp_path / "run" / "generated_raw.jsonl")}
    dropped = [r for r in after.values() if r["drop_reason"] == "contaminated"]
    assert {r["annotations"]["contaminated_by"] for r in dropped} == {"late"}
    assert result.counts["dropped"]["contaminated"] == len(dropped) >= 1
    assert after[passed[0]["id"]]["drop_reason"] == "contaminated"
    assert after[passed[0]["id"]]["annotations"]["contaminated_by"] == "late"
    train = (tmp_path / "run" / "train.jsonl").read_text("utf-8")
    assert passed[0]["id"] not in train
    # a later refilter with other settings keeps the decision
    again = refilter(tmp_path / "run", overrides={"min_votes": 1})
    assert again.counts["dropped"]["contaminated"] == len(dropped)


def test_cli_missing_eval_set_is_one_line_and_exit_2(cli, tmp_path):
    inp = write_jsonl(tmp_path / "slices.jsonl", SLICES)
    run = cli(
        "--input",
        str(inp),
        "--output",
        str(tmp_path / "out"),
        "--dry-run",
        "--decontaminate",
        str(tmp_path / "nope.jsonl"),
    )
    assert run.returncode == 2
    assert run.stderr.strip().splitlines() == [
        f"sft-distill: error: decontaminate: eval set {str(tmp_path / 'nope.jsonl')!r} not found"
    ]
    assert not (tmp_path / "out").exists()
