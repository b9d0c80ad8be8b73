"""Every output format loads the way its framework documents it (see ../shared/formats.md).

LLaMA-Factory: ``dataset_info.json`` is parsed as ``parser.get_dataset_list`` does (columns absent
from an entry's ``columns`` become None) and rows are converted with the rules of
``converter.py`` (Alpaca/ShareGPT converters: odd/even roles, even count, skipped otherwise).
OpenAI: the cookbook's ``Chat_finetuning_data_prep`` format checks. axolotl: ``chat_template``
default keys and role map. HF ``datasets``: ``load_dataset("json", ...)`` when installed.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from sft_distill.errors import ConfigError
from sft_distill.outputs.datasets import OutputOptions, write_outputs
from sft_distill.outputs.formats import (
    DATASET_INFO_FILE,
    FORMATS,
    dataset_info,
    parse_formats,
    provenance,
    row_for,
    split_files,
    to_sharegpt,
    with_reasoning,
)
from tests.helpers import read_jsonl
from tests.raw_factory import scored, write_raw

SYSTEM = "你是一名保险法律助手。"

# ----------------------------------------------------------------------------- framework rules

# LLaMA-Factory src/llamafactory/extras/constants.py FILEEXT2TYPE
FILEEXT2TYPE = {
    "arrow": "arrow",
    "csv": "csv",
    "json": "json",
    "jsonl": "json",
    "parquet": "parquet",
    "txt": "text",
}
# parser.py DatasetAttr defaults
ATTR_DEFAULTS: dict[str, Any] = {
    "formatting": "alpaca",
    "ranking": False,
    "system": None,
    "tools": None,
    "prompt": "instruction",
    "query": "input",
    "response": "output",
    "history": None,
    "messages": "conversations",
    "role_tag": "from",
    "content_tag": "value",
    "user_tag": "human",
    "assistant_tag": "gpt",
    "observation_tag": "observation",
    "function_tag": "function_call",
    "system_tag": "system",
}


def lf_dataset_attr(info: dict[str, Any], name: str) -> dict[str, Any]:
    """``parser.get_dataset_list`` for one local-file dataset."""
    if name not in info:
        raise ValueError(f"Undefined dataset {name} in {DATASET_INFO_FILE}.")
    entry = info[name]
    attr = dict(ATTR_DEFAULTS, file_name=entry["file_name"])
    attr["formatting"] = entry.get("formatting", "alpaca")
    attr["ranking"] = entry.get("ranking", False)
    if "columns" in entry:
        names = ["system", "tools", "images", "chosen", "rejected", "kto_tag"]
        names += (
            ["prompt", "query", "response", "history"]
            if attr["formatting"] == "alpaca"
            else ["messages"]
        )
        for col in names:
            attr[col] = entry["columns"].get(col)  # set_attr(key, obj, default=None)
    if attr["formatting"] == "sharegpt" and "tags" in entry:
        for tag in (
            "role_tag",
            "content_tag",
            "user_tag",
            "assistant_tag",
            "observation_tag",
            "function_tag",
            "system_tag",
        ):
            attr[tag] = entry["tags"].get(tag)
    return attr


class Example(dict):
    """A row as HF datasets gives it: every column of the file, None where a row lacks it."""

    def __init__(self, row: dict[str, Any], columns: set[str]) -> None:
        super().__init__({c: row.get(c) for c in columns})


def lf_convert(attr: dict[str, Any], ex: Example) -> dict[str, Any]:
    """``AlpacaDatasetConverter`` / ``SharegptDatasetConverter`` for SFT rows."""
    if attr["formatting"] == "alpaca":
        prompt = []
        if attr["history"] and isinstance(ex[attr["history"]], list):
            for old_prompt, old_response in ex[attr["history"]]:
                prompt += [
                    {"role": "user", "content": old_prompt},
                    {"role": "assistant", "content": old_response},
                ]
        query = []
        if attr["prompt"] and ex[attr["prompt"]]:
            query.append(ex[attr["prompt"]])
        if attr["query"] and ex[attr["query"]]:
            query.append(ex[attr["query"]])
        prompt.append({"role": "user", "content": "\n".join(query)})
        if attr["response"] and isinstance(ex[attr["response"]], str):
            response = [{"role": "assistant", "content": ex[attr["response"]]}]
        else:
            response = []  # unsupervised
        return {
            "_prompt": prompt,
            "_response": response,
            "_system": ex[attr["system"]] if attr["system"] else "",
        }
    tag_map = {
        attr["user_tag"]: "user",
        attr["assistant_tag"]: "assistant",
        attr["observation_tag"]: "observation",
        attr["function_tag"]: "function",
        attr["system_tag"]: "system",
    }
    accept = (
        (attr["user_tag"], attr["observation_tag"]),
        (attr["assistant_tag"], attr["function_tag"]),
    )
    messages = ex[attr["messages"]]
    if attr["system_tag"] and messages and messages[0][attr["role_tag"]] == attr["system_tag"]:
        system = messages[0][attr["content_tag"]]
        messages = messages[1:]
    else:
        system = ex[attr["system"]] if attr["system"] else ""
    aligned, broken = [], False
    for i, m in enumerate(messages):
        if m[attr["role_tag"]] not in accept[i % 2]:
            broken = True  # "Invalid role tag" -> skipped
            break
        aligned.append({"role": tag_map[m[attr["role_tag"]]], "content": m[attr["content_tag"]]})
    if len(aligned) % 2 != 0:
        broken = True  # "Invalid message count" -> skipped
    if broken:
        return {"_prompt": [], "_response": [], "_system": system}
    return {"_prompt": aligned[:-1], "_response": aligned[-1:], "_system": system}


def lf_load(dataset_dir: Path, name: str) -> list[dict[str, Any]]:
    """Load a registered dataset the LLaMA-Factory way; raises as it would on a bad entry."""
    info = json.loads((dataset_dir / DATASET_INFO_FILE).read_text(encoding="utf-8"))
    attr = lf_dataset_attr(info, name)
    path = dataset_dir / attr["file_name"]
    if not path.is_file():
        raise ValueError(f"File {path} not found.")
    if FILEEXT2TYPE.get(path.suffix[1:]) != "json":
        raise ValueError(f"Allowed file types: {','.join(FILEEXT2TYPE)}.")
    rows = read_jsonl(path)
    columns = {k for r in rows for k in r}
    return [lf_convert(attr, Example(r, columns)) for r in rows]


def openai_format_errors(dataset: list[Any]) -> dict[str, int]:
    """OpenAI cookbook ``Chat_finetuning_data_prep.ipynb`` format error checks, verbatim logic."""
    format_errors: dict[str, int] = defaultdict(int)
    for ex in dataset:
        if not isinstance(ex, dict):
            format_errors["data_type"] += 1
            continue
        messages = ex.get("messages", None)
        if not messages:
            format_errors["missing_messages_list"] += 1
            continue
        for message in messages:
            if "role" not in message or "content" not in message:
                format_errors["message_missing_key"] += 1
            if any(
                k not in ("role", "content", "name", "function_call", "weight") for k in message
            ):
                format_errors["message_unrecognized_key"] += 1
            if message.get("role", None) not in ("system", "user", "assistant", "function"):
                format_errors["unrecognized_role"] += 1
            content = message.get("content", None)
            function_call = message.get("function_call", None)
            if (not content and not function_call) or not isinstance(content, str):
                format_errors["missing_content"] += 1
        if not any(message.get("role", None) == "assistant" for message in messages):
            format_errors["example_missing_assistant_message"] += 1
    return dict(format_errors)


# axolotl src/axolotl/prompt_strategies/chat_template.py default role map
AXOLOTL_ROLES = {
    "human": "user",
    "user": "user",
    "assistant": "assistant",
    "gpt": "assistant",
    "system": "system",
    "tool": "tool",
}


def axolotl_turns(
    row: dict[str, Any],
    field_messages: str = "messages",
    role: str = "role",
    content: str = "content",
) -> list[tuple[str, str]]:
    """``type: chat_template`` with the given field mapping; KeyError on an unmapped role."""
    return [(AXOLOTL_ROLES[m[role]], m[content]) for m in row[field_messages]]


# ----------------------------------------------------------------------------- fixtures


def samples() -> list:
    return [
        scored(
            "a1",
            "law",
            instruction="投保人故意不履行如实告知义务的后果？",
            reasoning="先找第十六条。",
        ),
        scored("a2", "law", input="第十六条第二款", reasoning=None),
        scored("b1", "constitution", scores=(9.0, None), min_votes=1),  # one evaluator failed
        scored("b2", "constitution", reasoning="  "),
        scored("c1", "code", scores=(5.0, 5.0)),  # dropped: low votes
    ]


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    write_raw(tmp_path / "generated_raw.jsonl", samples())
    return tmp_path


def write_all(out: Path, **opts: Any) -> Any:
    kept = {s.id for s in samples() if s.passed}
    train = {"a1", "b1", "b2"} & kept
    options = OutputOptions(formats=("sharegpt", "alpaca", "openai"), **opts)
    return write_outputs(out / "generated_raw.jsonl", out, train, kept - train, options)


# ----------------------------------------------------------------------------- parse_formats


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (None, ["sharegpt"]),
        ("sharegpt", ["sharegpt"]),
        ("openai", ["openai"]),
        (" ShareGPT , alpaca ", ["sharegpt", "alpaca"]),
        ("openai,sharegpt,openai", ["openai", "sharegpt"]),
        (["alpaca", "openai"], ["alpaca", "openai"]),
        ("sharegpt,,alpaca", ["sharegpt", "alpaca"]),
    ],
)
def test_parse_formats(spec, expected):
    assert parse_formats(spec) == expected


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ("xml", "'xml'"),
        ("", "no output format"),
        (",", "no output format"),
        ("sharegpt,llama", "'llama'"),
    ],
)
def test_parse_formats_errors_name_the_problem(spec, fragment):
    with pytest.raises(ConfigError, match=fragment) as err:
        parse_formats(spec)
    assert "sharegpt, alpaca, openai" in str(err.value)


# ----------------------------------------------------------------------------- rows


def test_sharegpt_row_is_v1_row_plus_provenance():
    s = samples()[0]
    row = row_for(s, "sharegpt", system=SYSTEM, include_reasoning=False)
    v1 = to_sharegpt(s, system=SYSTEM)
    assert {k: v for k, v in row.items() if k != "provenance"} == v1
    assert row["provenance"] == provenance(s)


def test_provenance_has_slice_chunk_teacher_prompt_and_scores():
    s = scored("x", "slice-9", scores=(9.0, {"accuracy": 6.0, "safety": 10.0}), chunk_index=3)
    p = provenance(s)
    assert (p["slice_id"], p["chunk_index"], p["teacher_model"], p["prompt_version"]) == (
        "slice-9",
        3,
        "teacher-m",
        "gen-v1",
    )
    assert p["scores"]["e0"]["dimensions"]["accuracy"] == 9.0
    assert p["scores"]["e1"] == {
        "model": "e1-model",
        "weighted_mean": 8.0,
        "dimensions": {"accuracy": 6.0, "safety": 10.0},
    }
    assert p["avg_score"] == s.avg_score and p["votes"] == 2


def test_provenance_leaves_out_failed_evaluators():
    p = provenance(samples()[2])
    assert list(p["scores"]) == ["e0"]


def test_reasoning_only_when_asked_and_shaped_per_format():
    s = samples()[0]
    for fmt in FORMATS:
        assert "先找第十六条" not in json.dumps(
            row_for(s, fmt, system=None, include_reasoning=False), ensure_ascii=False
        )
    think = "<think>\n先找第十六条。\n</think>\n\n" + s.output
    sg = row_for(s, "sharegpt", system=None, include_reasoning=True)
    assert sg["conversations"][1]["value"] == think
    assert row_for(s, "alpaca", system=None, include_reasoning=True)["output"] == think
    oa = row_for(s, "openai", system=None, include_reasoning=True)
    assert oa["messages"][-1] == {
        "role": "assistant",
        "content": s.output,
        "reasoning_content": "先找第十六条。",
    }


@pytest.mark.parametrize("reasoning", [None, "", "   "])
def test_no_think_block_without_reasoning(reasoning):
    assert with_reasoning("answer", reasoning) == "answer"


def test_alpaca_row_shape():
    s = samples()[1]
    row = row_for(s, "alpaca", system=SYSTEM, include_reasoning=False)
    assert row["instruction"] == s.instruction and row["input"] == "第十六条第二款"
    assert row["output"] == s.output and row["system"] == SYSTEM
    assert "system" not in row_for(s, "alpaca", system=None, include_reasoning=False)
    assert "history" not in row


def test_openai_row_has_messages_only():
    s = samples()[1]
    row = row_for(s, "openai", system=SYSTEM, include_reasoning=False)
    assert list(row) == ["messages"]
    assert [m["role"] for m in row["messages"]] == ["system", "user", "assistant"]
    assert row["messages"][1]["content"] == s.instruction + "\n" + s.input
    no_system = row_for(s, "openai", system="", include_reasoning=False)
    assert [m["role"] for m in no_system["messages"]] == ["user", "assistant"]


def test_row_for_unknown_format():
    with pytest.raises(ConfigError, match="'yaml'"):
        row_for(samples()[0], "yaml", system=None, include_reasoning=False)


# ----------------------------------------------------------------------------- OpenAI validator


@pytest.mark.parametrize("system", [None, SYSTEM])
def test_openai_rows_pass_the_cookbook_validator(run_dir, system):
    write_all(run_dir, system=system)
    for name in ("train.openai.jsonl", "val.openai.jsonl"):
        rows = read_jsonl(run_dir / name)
        assert rows
        assert openai_format_errors(rows) == {}


def test_cookbook_validator_catches_what_we_avoid():
    # The checker is live: provenance on a message, or reasoning_content, is flagged.
    s = samples()[0]
    bad = row_for(s, "openai", system=None, include_reasoning=False)
    bad["messages"][1]["provenance"] = provenance(s)
    assert openai_format_errors([bad]) == {"message_unrecognized_key": 1}
    with_r = row_for(s, "openai", system=None, include_reasoning=True)
    assert openai_format_errors([with_r]) == {"message_unrecognized_key": 1}
    assert openai_format_errors([{"messages": [{"role": "user", "content": "q"}]}]) == {
        "example_missing_assistant_message": 1
    }


def test_openai_provenance_sidecar_is_line_aligned(run_dir):
    written = write_all(run_dir)
    assert written.provenance_files == {
        "openai": {"train": "train.openai.provenance.jsonl", "val": "val.openai.provenance.jsonl"}
    }
    for split in ("train", "val"):
        rows = read_jsonl(run_dir / f"{split}.openai.jsonl")
        side = read_jsonl(run_dir / f"{split}.openai.provenance.jsonl")
        sg = read_jsonl(run_dir / ("train.jsonl" if split == "train" else "val.jsonl"))
        assert len(rows) == len(side) == len(sg)
        for r, p, g in zip(rows, side, sg, strict=True):
            assert p["sample_id"] == g["id"]
            assert r["messages"][-1]["content"] == g["conversations"][1]["value"]


# ----------------------------------------------------------------------------- LLaMA-Factory


@pytest.mark.parametrize("system", [None, SYSTEM])
def test_every_registered_dataset_loads_in_llamafactory(run_dir, system):
    written = write_all(run_dir, system=system, dataset_name="insurance")
    info = json.loads((run_dir / DATASET_INFO_FILE).read_text(encoding="utf-8"))
    assert set(info) == {
        "insurance_train",
        "insurance_val",
        *(f"insurance_{f}_{s}" for f in FORMATS for s in ("train", "val")),
    }
    assert info["insurance_train"]["file_name"] == "train.jsonl"
    for name in info:
        converted = lf_load(run_dir, name)
        split = name.rsplit("_", 1)[1]
        assert len(converted) == written.counts[split] > 0
        for ex in converted:
            assert [m["role"] for m in ex["_prompt"]] == ["user"], name  # not skipped
            assert [m["role"] for m in ex["_response"]] == ["assistant"], name
            assert ex["_prompt"][0]["content"] and ex["_response"][0]["content"]
            assert ex["_system"] == (system or "")


@pytest.mark.parametrize(
    "formats", [("sharegpt", "alpaca", "openai"), ("openai",), ("openai", "sharegpt")]
)
def test_llamafactory_keeps_the_reasoning_in_every_registered_dataset(run_dir, formats):
    kept = {s.id for s in samples() if s.passed}
    options = OutputOptions(formats=formats, include_reasoning=True, system=SYSTEM)
    written = write_outputs(
        run_dir / "generated_raw.jsonl", run_dir, {"a1"}, kept - {"a1"}, options
    )
    info = json.loads((run_dir / DATASET_INFO_FILE).read_text(encoding="utf-8"))
    think = "<think>\n先找第十六条。\n</think>\n\n"  # a1's reasoning, alone in train
    train = [n for n in info if n.endswith("_train")]
    assert len(train) == len(formats) + (len(formats) > 1)
    for name in train:
        (ex,) = lf_load(run_dir, name)  # role and content only, as LLaMA-Factory reads them
        assert ex["_response"][0]["content"].startswith(think), name
        assert ex["_system"] == SYSTEM
    for name in info:  # samples without reasoning get no empty block
        for ex in lf_load(run_dir, name):
            assert "<think>\n\n</think>" not in ex["_response"][0]["content"]
    # The openai file itself still carries reasoning_content for axolotl and TRL.
    openai_train = written.files["openai"]["train"]
    (row,) = read_jsonl(run_dir / openai_train)
    assert row["messages"][-1]["reasoning_content"] == "先找第十六条。"
    assert written.llamafactory_files["openai"]["train"].endswith(".lf.jsonl")


def test_llamafactory_companion_only_with_reasoning_and_removed_after(run_dir):
    write_all(run_dir, include_reasoning=True)
    assert (run_dir / "train.openai.lf.jsonl").is_file()
    written = write_all(run_dir)
    assert written.llamafactory_files == {}
    assert not (run_dir / "train.openai.lf.jsonl").exists()  # stale companion removed
    info = json.loads((run_dir / DATASET_INFO_FILE).read_text(encoding="utf-8"))
    assert info["sft_distill_openai_train"]["file_name"] == "train.openai.jsonl"


def test_llamafactory_user_prompt_matches_each_format(run_dir):
    write_all(run_dir)
    by_fmt = {f: lf_load(run_dir, f"sft_distill_{f}_val") for f in FORMATS}
    a2 = samples()[1]
    # a2 is in val: LLaMA-Factory joins alpaca's instruction and input with "\n"; the chat
    # formats write the same user turn, so one sample trains the same prompt in every format.
    assert by_fmt["alpaca"][0]["_prompt"][0]["content"] == a2.instruction + "\n" + a2.input
    assert by_fmt["sharegpt"][0]["_prompt"] == by_fmt["alpaca"][0]["_prompt"]
    assert by_fmt["openai"][0]["_prompt"] == by_fmt["alpaca"][0]["_prompt"]


def test_blank_input_is_left_out_of_the_prompt_in_every_format():
    s = scored("w", "law", input="  \n ")
    rows = {f: row_for(s, f, system=None, include_reasoning=False) for f in FORMATS}
    assert rows["alpaca"]["input"] == ""  # LLaMA-Factory would join a blank input with "\n"
    assert rows["sharegpt"]["conversations"][0]["value"] == s.instruction
    assert rows["openai"]["messages"][0]["content"] == s.instruction


def test_llamafactory_simulator_rejects_wrong_registrations(run_dir):
    write_all(run_dir)
    info = json.loads((run_dir / DATASET_INFO_FILE).read_text(encoding="utf-8"))
    # openai rows registered as plain sharegpt: no "conversations" column -> KeyError.
    info["broken_openai"] = {"file_name": "train.openai.jsonl", "formatting": "sharegpt"}
    # alpaca "columns" without prompt: LLaMA-Factory sets prompt to None -> empty user turn.
    info["broken_alpaca"] = {"file_name": "train.alpaca.jsonl", "columns": {"response": "output"}}
    # a system column that rows do not have -> KeyError.
    info["broken_system"] = {
        "file_name": "train.jsonl",
        "formatting": "sharegpt",
        "columns": {"messages": "conversations", "system": "system"},
    }
    (run_dir / DATASET_INFO_FILE).write_text(json.dumps(info), encoding="utf-8")
    with pytest.raises(KeyError):
        lf_load(run_dir, "broken_openai")
    assert all(ex["_prompt"][0]["content"] == "" for ex in lf_load(run_dir, "broken_alpaca"))
    with pytest.raises(KeyError):
        lf_load(run_dir, "broken_system")


def test_dataset_info_leaves_out_empty_splits_and_validates_name():
    files = split_files(["sharegpt"])
    info = dataset_info("ds", files, rows={"train": 5, "val": 0})
    assert set(info) == {"ds_train"}
    assert info["ds_train"] == {
        "file_name": "train.jsonl",
        "formatting": "sharegpt",
        "columns": {"messages": "conversations"},
    }
    with pytest.raises(ConfigError, match="dataset name"):
        dataset_info("my data/../x", files)


def test_dataset_info_entries_match_formats_md():
    files = split_files(["alpaca", "openai"])
    assert files == {
        "alpaca": {"train": "train.jsonl", "val": "val.jsonl"},
        "openai": {"train": "train.openai.jsonl", "val": "val.openai.jsonl"},
    }
    info = dataset_info("d", files, system=True)
    assert info["d_train"] == {
        "file_name": "train.jsonl",
        "columns": {
            "prompt": "instruction",
            "query": "input",
            "response": "output",
            "system": "system",
        },
    }
    assert info["d_openai_val"]["tags"] == {
        "role_tag": "role",
        "content_tag": "content",
        "user_tag": "user",
        "assistant_tag": "assistant",
        "system_tag": "system",
    }


# ----------------------------------------------------------------------------- axolotl


def test_axolotl_chat_template_defaults_load_openai_and_mapped_sharegpt(run_dir):
    write_all(run_dir, system=SYSTEM)
    for row in read_jsonl(run_dir / "train.openai.jsonl"):
        assert [r for r, _ in axolotl_turns(row)] == ["system", "user", "assistant"]
    for row in read_jsonl(run_dir / "train.jsonl"):
        turns = axolotl_turns(row, "conversations", "from", "value")
        assert [r for r, _ in turns] == ["user", "assistant"]
    for row in read_jsonl(run_dir / "train.alpaca.jsonl"):  # type: alpaca
        assert all(isinstance(row[k], str) for k in ("instruction", "input", "output"))


# ----------------------------------------------------------------------------- files


def test_one_format_keeps_v1_file_names_and_stale_files_are_removed(run_dir):
    write_all(run_dir)
    assert (run_dir / "train.alpaca.jsonl").exists()
    kept = {s.id for s in samples() if s.passed}
    written = write_outputs(
        run_dir / "generated_raw.jsonl", run_dir, kept, set(), OutputOptions(train_val_split=1.0)
    )
    assert written.files == {"sharegpt": {"train": "train.jsonl", "val": "val.jsonl"}}
    names = {p.name for p in run_dir.iterdir()}
    assert {"train.jsonl", "val.jsonl", DATASET_INFO_FILE} <= names
    assert not names & {"train.alpaca.jsonl", "train.openai.jsonl", "val.openai.provenance.jsonl"}
    assert (run_dir / "val.jsonl").read_bytes() == b""  # always created, even empty
    info = json.loads((run_dir / DATASET_INFO_FILE).read_text(encoding="utf-8"))
    assert set(info) == {"sft_distill_train"}  # the empty val is not registered


def test_rows_are_in_the_same_seeded_order_in_every_format(run_dir):
    write_all(run_dir)
    ids = [r["id"] for r in read_jsonl(run_dir / "train.jsonl")]
    assert ids == [r["id"] for r in read_jsonl(run_dir / "train.alpaca.jsonl")]
    assert ids == [r["sample_id"] for r in read_jsonl(run_dir / "train.openai.provenance.jsonl")]
    assert sorted(ids) == ["a1", "b1", "b2"]


# ----------------------------------------------------------------------------- HF datasets


def test_hf_datasets_loads_every_file(run_dir, tmp_path_factory, monkeypatch):
    datasets = pytest.importorskip(
        "datasets", reason="HF datasets not installed (optional: pip install datasets)"
    )
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cache = tmp_path_factory.mktemp("hf-cache")
    write_all(run_dir, system=SYSTEM, include_reasoning=True)
    info = json.loads((run_dir / DATASET_INFO_FILE).read_text(encoding="utf-8"))
    files = {e["file_name"] for e in info.values()} | {
        "train.openai.provenance.jsonl",
        "val.openai.provenance.jsonl",
    }
    for name in sorted(files):
        ds = datasets.load_dataset(
            "json", data_files=str(run_dir / name), split="train", cache_dir=str(cache)
        )
        assert ds.num_rows == len(read_jsonl(run_dir / name)), name
    ds = datasets.load_dataset(
        "json", data_files=str(run_dir / "train.openai.jsonl"), split="train", cache_dir=str(cache)
    )
    assert {(m["role"], m["content"]) for m in (r["messages"][0] for r in ds)} == {
        ("system", SYSTEM)
    }
    reasoning = [r["messages"][-1].get("reasoning_content") for r in ds]
    assert "先找第十六条。" in reasoning  # a1's reasoning survives Arrow typing


def test_provenance_says_where_in_the_source_the_sample_comes_from():
    s = scored("t1", "law").model_copy(
        update={
            "source_title": "保险法(2015-04-24)",
            "heading_path": ["第二章 保险合同", "第一节 一般规定"],
            "evidence": ["投保人应当如实告知。"],
        }
    )
    p = provenance(s)
    assert p["source_title"] == "保险法(2015-04-24)"
    assert p["heading_path"] == ["第二章 保险合同", "第一节 一般规定"]
    assert "evidence" not in p  # only with include_evidence
    assert provenance(s, evidence=True)["evidence"] == ["投保人应当如实告知。"]
    for fmt in FORMATS:
        plain = json.dumps(
            row_for(s, fmt, system=None, include_reasoning=False), ensure_ascii=False
        )
        assert "投保人应当如实告知。" not in plain
    for fmt in ("sharegpt", "alpaca"):
        row = row_for(s, fmt, system=None, include_reasoning=False, include_evidence=True)
        assert row["provenance"]["evidence"] == ["投保人应当如实告知。"]
    assert "evidence" not in json.dumps(
        row_for(s, "openai", system=None, include_reasoning=False, include_evidence=True)
    )  # OpenAI rows carry no provenance: it is in the sidecar


def test_include_evidence_writes_it_in_every_provenance(tmp_path):
    rows = [s.model_copy(update={"evidence": [f"quote {s.id}"]}) for s in samples()]
    write_raw(tmp_path / "generated_raw.jsonl", rows)
    kept = {s.id for s in rows if s.passed}
    options = OutputOptions(formats=("sharegpt", "openai"), include_evidence=True)
    write_outputs(tmp_path / "generated_raw.jsonl", tmp_path, kept, set(), options)
    for name in ("train.jsonl", "train.openai.provenance.jsonl"):
        got = read_jsonl(tmp_path / name)
        provs = [r.get("provenance", r) for r in got]
        assert provs and all(p["evidence"] == [f"quote {p['sample_id']}"] for p in provs), name
