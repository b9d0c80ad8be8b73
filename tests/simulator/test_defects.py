"""The simulator's seeded defects: each kind, determinism, the ground truth at GET /defects."""

from __future__ import annotations

import json
import re
import urllib.request

import aiohttp
import pytest

from sft_distill.errors import ConfigError
from sft_distill.llm.prompts import generation_messages
from sft_distill.simulator.cli import config_from_args, parse_args
from sft_distill.simulator.content import generation_samples
from sft_distill.simulator.defects import (
    DEFECT_KINDS,
    DEFECT_RATE_ENV,
    DefectLedger,
    dry_run_defect_rate,
    fingerprint,
    inject_defects,
    int_to_roman,
    int_to_zh,
    roman_to_int,
    zh_to_int,
)
from sft_distill.simulator.server import Simulator, SimulatorConfig, run_in_thread
from tests.helpers import SLICES, read_jsonl, read_metadata

ZH_LAW = (
    "第四十七条 投保人解除合同的，保险人应当自收到解除合同通知之日起三十日内，按照合同约定退还"
    "保险单的现金价值。第四十八条 保险事故发生时，被保险人对保险标的不具有保险利益的，不得向保险"
    "人请求赔偿保险金。第四十九条 保险标的转让的，保险标的的受让人承继被保险人的权利和义务。"
    "第五十条 货物运输保险合同和运输工具航程保险合同，保险责任开始后，合同当事人不得解除合同。"
    "第五十一条 被保险人应当遵守国家有关消防、安全、生产操作、劳动保护等方面的规定，维护保险标"
    "的的安全。第五十二条 在合同有效期内，保险标的的危险程度显著增加的，被保险人应当按照合同约定"
    "及时通知保险人，保险人可以按照合同约定增加保险费或者解除合同。"
)
EN_LAW = " ".join(r["content"] for r in read_jsonl(SLICES) if r["id"].startswith("us-"))[:6000]


@pytest.mark.parametrize(
    ("n", "zh"),
    [
        (1, "一"),
        (10, "十"),
        (15, "十五"),
        (30, "三十"),
        (105, "一百零五"),
        (110, "一百一十"),
        (1008, "一千零八"),
        (20000, "二万"),
        (100_050, "十万零五十"),
    ],
)
def test_chinese_numerals_both_ways(n, zh):
    assert int_to_zh(n) == zh and zh_to_int(zh) == n
    assert zh_to_int("两万") == 20000 and zh_to_int("二十五") == 25


def test_roman_numerals_both_ways():
    for n in (1, 4, 9, 14, 40, 90, 400, 1999):
        assert roman_to_int(int_to_roman(n)) == n
    assert int_to_roman(12) == "XII"


def _samples(document: str, n: int = 12) -> list[dict[str, str]]:
    return generation_samples("teacher", document, n)


@pytest.mark.parametrize("document", [ZH_LAW, EN_LAW], ids=["zh", "en"])
def test_injection_is_a_pure_function_of_the_prompt_and_seed(document):
    samples = _samples(document)
    first = inject_defects(samples, document, model="teacher", rate=0.7, seed=1)
    assert first == inject_defects(samples, document, model="teacher", rate=0.7, seed=1)
    assert first != inject_defects(samples, document, model="teacher", rate=0.7, seed=2)
    assert inject_defects(samples, document, model="teacher", rate=0.0, seed=1) == (
        samples,
        [None] * len(samples),
    )
    out, kinds = first
    assert 0 < sum(k is not None for k in kinds) < len(kinds)
    for before, after, kind in zip(samples, out, kinds, strict=True):
        assert (after == before) is (kind is None)


def _one_of_each(document: str) -> dict[str, tuple[dict[str, str], dict[str, str]]]:
    """(original, defective) for each kind, found over a few seeds."""
    found: dict[str, tuple[dict[str, str], dict[str, str]]] = {}
    samples = _samples(document)
    for seed in range(60):
        out, kinds = inject_defects(samples, document, model="teacher", rate=1.0, seed=seed)
        for before, after, kind in zip(samples, out, kinds, strict=True):
            if kind is not None:
                found.setdefault(kind, (before, after))
        if len(found) == len(DEFECT_KINDS):
            break
    return found


_TERMINAL = tuple("。！？；.!?;")


@pytest.mark.parametrize("document", [ZH_LAW, EN_LAW], ids=["zh", "en"])
def test_each_kind_does_what_its_name_says(document):
    found = _one_of_each(document)
    assert set(found) == set(DEFECT_KINDS)
    b, a = found["number_swapped"]
    assert a["instruction"] == b["instruction"] and a["output"] != b["output"]
    assert re.sub(r"\w+", "#", a["output"]) == re.sub(r"\w+", "#", b["output"])  # one word
    b, a = found["wrong_article"]
    refs = r"第[零一二三四五六七八九十百千]+条|(?:Article|Section|Amendment) [IVXLC\d]+"
    assert set(re.findall(refs, a["output"])) - set(re.findall(refs, document))
    b, a = found["context_dependent"]
    assert a["instruction"].endswith(b["instruction"][1:]) and a["output"] == b["output"]
    assert re.search(r"上述|上文|以上|前文|above|preceding", a["instruction"])
    b, a = found["truncated"]
    assert b["output"].startswith(a["output"]) and len(a["output"]) < len(b["output"])
    assert not a["output"].endswith(_TERMINAL)
    b, a = found["non_answer"]
    assert re.search(r"无法|没有提及|cannot|does not", a["output"])
    b, a = found["misattributed"]
    assert a["output"] != b["output"]
    assert all(p in document for p in re.split(r"(?<=[。.]) ?", a["output"]) if p)
    b, a = found["invented_sentence"]
    assert a["output"].startswith(b["output"].rstrip("。.")) and len(a["output"]) > len(b["output"])


def test_a_question_with_its_own_input_is_not_made_context_dependent():
    samples = [dict(s, input="某甲于三月一日投保。") for s in _samples(ZH_LAW)]
    for seed in range(30):
        _, kinds = inject_defects(samples, ZH_LAW, model="teacher", rate=1.0, seed=seed)
        assert "context_dependent" not in kinds


def test_text2sql_samples_are_left_alone():
    schema = "CREATE TABLE orders (id INTEGER PRIMARY KEY, amount REAL, created_at TEXT);"
    samples = generation_samples("teacher", schema, 4)
    assert inject_defects(samples, schema, model="teacher", rate=1.0, seed=0)[0] == samples


def test_the_ledger_keeps_a_defect_given_to_a_sample_seen_clean_before():
    ledger = DefectLedger()
    s = {"instruction": " Q ", "input": "", "output": "A"}
    ledger.record([s], ["non_answer"])
    ledger.record([s], [None])
    assert ledger.summary() == {
        "samples": 1,
        "by_kind": {"non_answer": 1},
        "defects": {fingerprint("Q", "", "A"): "non_answer"},
    }


async def test_the_server_injects_and_serves_the_ground_truth():
    async with (
        Simulator(SimulatorConfig(defect_rate=0.6, seed=3)) as sim,
        aiohttp.ClientSession() as http,
    ):
        body = {"model": "teacher", "messages": generation_messages(ZH_LAW, 12)}
        async with http.post(f"{sim.url}/chat/completions", json=body) as resp:
            reply = json.loads((await resp.json())["choices"][0]["message"]["content"])
            items = reply["samples"]
        async with http.get(f"{sim.url.removesuffix('/v1')}/defects") as resp:
            truth = await resp.json()
        sim.reset_stats()  # the ground truth is content: it stays
        assert sim.state.defects.summary() == truth
    assert truth["samples"] == len(items) == 12
    got = {fingerprint(i["instruction"], i["input"], i["output"]): i for i in items}
    assert set(got) == set(truth["defects"])
    expected = inject_defects(_samples(ZH_LAW), ZH_LAW, model="teacher", rate=0.6, seed=3)
    prints = [fingerprint(s["instruction"], s["input"], s["output"]) for s in expected[0]]
    assert [truth["defects"][f] for f in prints] == expected[1]
    assert sum(truth["by_kind"].values()) == 12 and truth["by_kind"]["clean"] < 12


def test_the_cli_flag_and_the_dry_run_variable(monkeypatch):
    assert config_from_args(parse_args(["--defect-rate", "0.3"])).defect_rate == 0.3
    with pytest.raises(SystemExit):
        parse_args(["--defect-rate", "1.5"])
    with pytest.raises(ValueError, match="defect_rate"):
        SimulatorConfig(defect_rate=-0.1)
    monkeypatch.delenv(DEFECT_RATE_ENV, raising=False)
    assert dry_run_defect_rate() == 0.0
    monkeypatch.setenv(DEFECT_RATE_ENV, "0.25")
    assert dry_run_defect_rate() == 0.25
    monkeypatch.setenv(DEFECT_RATE_ENV, "lots")
    with pytest.raises(ConfigError, match=f"^{DEFECT_RATE_ENV}: must be a number from 0 to 1"):
        dry_run_defect_rate()


@pytest.mark.slow  # over 0.3 s: in the full suite, not in -m "not slow"
def test_a_dry_run_takes_the_defect_rate_from_the_environment(cli, tmp_path, monkeypatch):
    monkeypatch.delenv(DEFECT_RATE_ENV, raising=False)
    args = ("--input", str(SLICES), "--dry-run", "-q", "--samples-per-slice", "6")
    assert cli(*args, "--output", str(tmp_path / "clean")).returncode == 0
    monkeypatch.setenv(DEFECT_RATE_ENV, "0.5")
    assert cli(*args, "--output", str(tmp_path / "defects")).returncode == 0
    clean = read_metadata(tmp_path / "clean")["counts"]["dropped"]
    seeded = read_metadata(tmp_path / "defects")["counts"]["dropped"]
    assert "gate:non_answer" not in clean and seeded["gate:non_answer"] > 0
    assert seeded.get("gate:numbers", 0) > clean.get("gate:numbers", 0)

    monkeypatch.setenv(DEFECT_RATE_ENV, "2")
    p = cli(*args, "--output", str(tmp_path / "bad"))
    assert p.returncode == 2
    assert p.stderr.strip().splitlines() == [
        f"sft-distill: error: {DEFECT_RATE_ENV}: must be a number from 0 to 1, got '2'"
    ]
    assert not (tmp_path / "bad").exists()


def test_a_threaded_simulator_serves_the_ground_truth_to_sync_callers():
    body = {"model": "teacher", "messages": generation_messages(ZH_LAW, 6)}
    with run_in_thread(SimulatorConfig(defect_rate=1.0, seed=3)) as sim:
        request = urllib.request.Request(
            f"{sim.url}/chat/completions",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=5) as resp:
            assert resp.status == 200
        truth = sim.defects()
    assert truth["samples"] == 6 and "clean" not in truth["by_kind"]  # every sample has one
