"""Topic-tree distillation against the simulator over loopback, plus its tree files and flags."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pytest

from sft_distill.cli import main
from sft_distill.cli.topics import add_topic_arguments, topic_source_from_args
from sft_distill.errors import ConfigError, InputError, JSONExtractionError
from sft_distill.llm.prompts import TOPIC_PATH_SEP, parse_task_prompt, parse_topic_list
from sft_distill.llm.transport import ChatResult
from sft_distill.pipeline import DatasetDistillationPipeline
from sft_distill.simulator.server import TASK_RESPONDERS, SimulatorConfig, run_in_thread
from sft_distill.simulator.tasks import topic_expand_reply, topic_questions_reply
from sft_distill.sources.topic_tree import TopicTree, topic_id
from sft_distill.sources.topics import TREE_FILENAME, TopicSource, parse_answer, parse_string_list
from tests.helpers import cli_config, read_jsonl, read_metadata, sim_config

BOOK_TOC = {
    "Python Basics": {
        "Chapter 1 Variables": ["1.1 Names", "1.2 Types"],
        "Chapter 2 Control Flow": None,
    }
}


def tasks(sim: Any, kind: str) -> list[dict[str, str]]:
    """The fields of every task prompt of ``kind`` the simulator received, in order."""
    out = []
    for prompt in sim.prompts:
        parsed = parse_task_prompt(prompt)
        if parsed is not None and parsed[0] == kind:
            out.append(parsed[1])
    return out


def key(text: str) -> str:
    return text.casefold().strip()


async def run(sim: Any, out: Path, source: TopicSource, **kw: Any) -> Any:
    cfg = sim_config(sim, output_dir=str(out), **kw.pop("config", {}))
    return await DatasetDistillationPipeline(cfg, show_progress=False, **kw).run(source=source)


def small(topic: str = "体育与运动", **kw: Any) -> TopicSource:
    settings: dict[str, Any] = {
        "levels": 2,
        "tags_per_level": 3,
        "questions_per_tag": 3,
        "tags_per_request": 2,
        "questions_per_request": 2,
    }
    settings.update(kw)
    return TopicSource(topic, **settings)


@pytest.mark.slow
async def test_topic_run_builds_tree_asks_answers_and_writes(sim, tmp_path):
    sim.config = SimulatorConfig(keep_prompts=True, reasoning=True)
    out = tmp_path / "out"
    source = small()
    result = await run(sim, out, source)

    # the tree: 3 x 3, no repeats among siblings, saved as soon as complete
    tree = TopicTree.load(out / TREE_FILENAME)
    assert tree == source.built_tree and source.tree_path == out / TREE_FILENAME
    assert tree.name == "体育与运动" and len(tree.children) == 3
    assert all(len(c.children) == 3 and c.depth() == 1 for c in tree.children)
    leaves = tree.leaves()
    assert len(leaves) == 9 == source.total()

    def check(node: TopicTree, siblings: list[str]) -> None:
        names = [key(c.name) for c in node.children]
        assert len(set(names)) == len(names)
        assert not set(names) & {key(s) for s in siblings}
        for c in node.children:
            check(c, [x.name for x in node.children if x is not c])

    check(tree, [])

    # every expansion request carried the full path and the node's siblings; a second batch
    # showed the first
    expands = tasks(sim, "topic_expand")
    assert len(expands) == 2 * 4  # root + 3 nodes, 3 tags in batches of 2
    assert {e["path"] for e in expands} == {"体育与运动"} | {
        f"体育与运动{TOPIC_PATH_SEP}{c.name}" for c in tree.children
    }
    for child in tree.children:
        path = f"体育与运动{TOPIC_PATH_SEP}{child.name}"
        first, second = [e for e in expands if e["path"] == path]
        siblings = [c.name for c in tree.children if c is not child]
        assert parse_topic_list(first["siblings"]) == siblings
        assert parse_topic_list(first["existing"]) == []
        assert parse_topic_list(second["existing"]) == [c.name for c in child.children[:2]]

    # questions per leaf: distinct, the second batch showed the first
    questions = tasks(sim, "topic_questions")
    assert len(questions) == 2 * 9
    raw = read_jsonl(out / "generated_raw.jsonl")
    by_leaf: dict[str, list[dict[str, Any]]] = {}
    for r in raw:
        by_leaf.setdefault(r["slice_id"], []).append(r)
    assert set(by_leaf) == {topic_id(path) for path, _ in leaves}
    for path, _ in leaves:
        asked = [q for q in questions if q["path"] == TOPIC_PATH_SEP.join(path)]
        assert len(asked) == 2
        made = [
            r["instruction"]
            for r in sorted(by_leaf[topic_id(path)], key=lambda r: r["chunk_index"])
        ]
        assert len(made) == len({key(q) for q in made}) == 3
        assert parse_topic_list(asked[0]["existing"]) == []
        assert parse_topic_list(asked[1]["existing"]) == made[:2]
        for r in by_leaf[topic_id(path)]:
            assert r["annotations"]["topic_path"] == list(path)

    # every answer became a sample that was judged and written
    answers = tasks(sim, "topic_answer")
    c = result.counts
    assert len(answers) == len(raw) == c.samples_generated == c.samples_evaluated == 27
    assert c.slices == 9 and c.chunks == 18 and result.failures == 0
    assert c.train > 0 and c.val > 0
    for r in raw:
        assert r["source_kind"] == "topics" and r["prompt_version"] == "topic-v1"
        assert r["input"] == "" and r["output"] and r["reasoning"]  # reasoning_content kept
        assert len(r["judgements"]) == 2
    meta = read_metadata(out)
    assert meta["source"]["kind"] == "topics" and meta["source"]["tree_blake2b"] is None
    assert source.counts["answers"] == 27 and source.counts["short_leaves"] == 0

    # resume: the same job on the same directory replays everything from the cache
    sim.reset_stats()
    train = (out / "train.jsonl").read_bytes()
    again = await run(sim, out, small())
    assert sim.stats["chat_requests"] == 0
    assert again.counts.samples_generated == 27
    assert (out / "train.jsonl").read_bytes() == train

    # the saved tree given back: no expansion request, and on the same directory no call at all
    tree = TopicTree.load(out / TREE_FILENAME)
    reloaded = TopicSource(None, tree=tree, questions_per_tag=3, questions_per_request=2)
    back = await run(sim, out, reloaded, overwrite=True)
    assert sim.stats["chat_requests"] == 0
    assert back.counts.samples_generated == 27
    assert (out / "train.jsonl").read_bytes() == train


async def test_saved_tree_in_a_new_directory_asks_only_questions_and_answers(sim, tmp_path):
    sim.config = SimulatorConfig(keep_prompts=True)
    first = small(levels=1, tags_per_level=2, questions_per_tag=2)
    await run(sim, tmp_path / "a", first)
    sim.reset_stats()
    tree = TopicTree.load(tmp_path / "a" / TREE_FILENAME)
    second = TopicSource(None, tree=tree, questions_per_tag=2, tree_out=tmp_path / "t.json")
    result = await run(sim, tmp_path / "b", second)
    assert tasks(sim, "topic_expand") == []
    assert len(tasks(sim, "topic_questions")) == 2 and len(tasks(sim, "topic_answer")) == 4
    assert result.counts.samples_generated == 4
    assert TopicTree.load(tmp_path / "t.json") == tree
    assert second.describe()["tree_blake2b"] == tree.digest()


async def test_a_book_toc_is_used_as_given_in_english(sim, tmp_path):
    sim.config = SimulatorConfig(keep_prompts=True)
    toc = tmp_path / "toc.json"
    toc.write_text(json.dumps(BOOK_TOC), encoding="utf-8")
    args = argparse.ArgumentParser()
    add_topic_arguments(args)
    source = topic_source_from_args(
        args.parse_args(["--tree", str(toc), "--questions-per-tag", "2"])
    )
    result = await run(sim, tmp_path / "out", source)
    assert tasks(sim, "topic_expand") == []
    paths = {q["path"] for q in tasks(sim, "topic_questions")}
    assert paths == {
        "Python Basics > Chapter 1 Variables > 1.1 Names",
        "Python Basics > Chapter 1 Variables > 1.2 Types",
        "Python Basics > Chapter 2 Control Flow",
    }
    assert all("Ask 2 new questions" in p for p in sim.prompts if "TASK: topic_questions" in p)
    assert result.counts.slices == 3 and result.counts.samples_generated == 6
    assert toc.read_text(encoding="utf-8") == json.dumps(BOOK_TOC)  # the input is left alone
    saved = TopicTree.load(tmp_path / "out" / TREE_FILENAME)
    assert [p for p, _ in saved.leaves()] == [p for p, _ in source.tree.leaves()]


async def test_questions_in_the_tree_are_answered_and_only_the_rest_asked(sim, tmp_path):
    sim.config = SimulatorConfig(keep_prompts=True)
    tree = TopicTree.from_json(
        {
            "name": "保险法",
            "children": [
                {"name": "保险合同", "questions": ["什么是保险合同？", "什么是保险合同?"]},
                {
                    "name": "保险公司",
                    "questions": ["保险公司如何设立？", "保险公司的偿付能力如何监管？"],
                },
            ],
        }
    )
    assert tree.children[0].questions == ["什么是保险合同？"]  # a repeated question is dropped
    source = TopicSource(None, tree=tree, questions_per_tag=2)
    result = await run(sim, tmp_path / "out", source)
    asked = tasks(sim, "topic_questions")
    assert [q["path"] for q in asked] == ["保险法 > 保险合同"]
    assert parse_topic_list(asked[0]["existing"]) == ["什么是保险合同？"]
    assert "请围绕主题路径" in next(p for p in sim.prompts if "topic_questions" in p)
    assert result.counts.samples_generated == 4


@pytest.mark.slow
async def test_failures_are_reported_and_a_rerun_sends_only_what_failed(sim, tmp_path, monkeypatch):
    sim.config = SimulatorConfig(keep_prompts=True)
    ep = {"api_base": sim.url, "api_key": "sk-test-0000", "api_key_env": None}
    config = {"generator": {**ep, "model": "teacher-sim", "max_retries": 0}}
    broken = {"on": True}
    answer = TASK_RESPONDERS["topic_answer"]
    first_question: list[str] = []

    def expand(model: str, fields: dict[str, str]) -> str:
        if fields["path"] == "topic-root":
            return json.dumps(["node-a", "node-b", "node-a ", ""])  # a repeat and an empty name
        if broken["on"] and fields["path"].endswith("node-b"):
            return "I would rather not."
        return topic_expand_reply(model, fields)

    def questions(model: str, fields: dict[str, str]) -> str:
        reply = topic_questions_reply(model, fields)
        first_question[:] = first_question or json.loads(reply)[:1]
        return reply

    def answer_or_nothing(model: str, fields: dict[str, str]) -> str:
        if broken["on"] and fields["question"] == first_question[0]:
            return ""
        return answer(model, fields)

    monkeypatch.setitem(TASK_RESPONDERS, "topic_expand", expand)
    monkeypatch.setitem(TASK_RESPONDERS, "topic_questions", questions)
    monkeypatch.setitem(TASK_RESPONDERS, "topic_answer", answer_or_nothing)
    source = small("topic-root", questions_per_tag=2)
    out = tmp_path / "out"
    result = await run(sim, out, source, config=config)
    failures = read_jsonl(out / "failures.jsonl")
    assert sorted(f["kind"] for f in failures) == ["answer", "topic_expand"]
    expand_failure = next(f for f in failures if f["kind"] == "topic_expand")
    assert expand_failure["slice_id"] == topic_id(["topic-root", "node-b"])
    assert result.failures == 2 and result.counts.generation_failed_chunks == 2
    # fewer names than asked is fine: recorded, and the tree keeps what it got
    assert source.counts["short_expansions"] == 1
    saved = TopicTree.load(out / TREE_FILENAME)
    assert [c.name for c in saved.children] == ["node-a"]  # the failed branch is left out
    assert result.counts.samples_generated == 3 * 2 - 1

    first_prompts = list(sim.prompts)
    broken["on"] = False
    sim.state._cache.clear()  # the simulator memoises replies per prompt
    sim.reset_stats()
    result = await run(sim, out, small("topic-root", questions_per_tag=2), config=config)
    assert result.failures == 0
    # only the two failed requests were sent again
    assert len(set(sim.prompts) & set(first_prompts)) == 2
    assert [c.name for c in TopicTree.load(out / TREE_FILENAME).children] == ["node-a", "node-b"]
    assert result.counts.samples_generated == 2 * 3 * 2


def topics_cli(tmp_path: Path, url: str, *extra: str) -> int:
    """``sft-distill topics`` in process against a simulator at ``url``; returns the exit status."""
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps(cli_config(url, endpoint={"max_retries": 1})), "utf-8")
    argv = ["topics", "--topic", "体育与运动", "--levels", "1", "--tags-per-level", "3"]
    argv += ["--questions-per-tag", "2", "-c", str(cfg), "-o", str(tmp_path / "out"), "-q"]
    return main([*argv, *extra])


@pytest.mark.parametrize(
    "reply",
    [
        # objects whose text is under keys no one guesses, with more than one string each
        [
            {"编号": 1, "分类": "球类运动", "说明": "用球的运动"},
            {"编号": 2, "分类": "田径", "说明": "跑跳投"},
        ],
        [{"id": 3, "level": 1}],
        [],
    ],
)
def test_cli_topic_expansion_with_nothing_usable_is_a_failure(tmp_path, monkeypatch, capsys, reply):
    # The same shapes for the questions, so a root taken as a leaf gives nothing either.
    monkeypatch.setitem(TASK_RESPONDERS, "topic_expand", lambda m, f: json.dumps(reply))
    monkeypatch.setitem(TASK_RESPONDERS, "topic_questions", lambda m, f: json.dumps(reply))
    with run_in_thread(SimulatorConfig()) as sim:
        status = topics_cli(tmp_path, sim.url)
        expand_requests = sim.stats()["by_kind"]["generation"]
        out, err = capsys.readouterr()
        assert status == 3, out + err  # not a silent empty run with exit 0
        (failure,) = read_jsonl(tmp_path / "out" / "failures.jsonl")
        assert failure["kind"] == "topic_expand"
        assert failure["slice_id"] == topic_id(["体育与运动"])
        assert "nothing" in failure["reason"] or "none of the" in failure["reason"]
        assert expand_requests >= 2  # asked again within the retry budget
        assert "failures.jsonl" in out
        # The useless reply was not cached: the same command asks again and now succeeds.
        monkeypatch.undo()  # the simulator's own replies again (not memoised ones)
        sim._call(sim._sim.state._cache.clear)
        assert topics_cli(tmp_path, sim.url) == 0
    assert len(TopicTree.load(tmp_path / "out" / TREE_FILENAME).children) == 3


def test_cli_topic_objects_with_a_name_are_used(tmp_path, monkeypatch):
    names = [{"name": "足球"}, {"topic": "篮球"}, {"子话题": "游泳", "序号": 3}]
    monkeypatch.setitem(TASK_RESPONDERS, "topic_expand", lambda m, f: json.dumps(names))
    with run_in_thread(SimulatorConfig()) as sim:
        assert topics_cli(tmp_path, sim.url) == 0
    tree = TopicTree.load(tmp_path / "out" / TREE_FILENAME)
    assert [c.name for c in tree.children] == ["足球", "篮球", "游泳"]
    rows = read_jsonl(tmp_path / "out" / "train.jsonl") + read_jsonl(tmp_path / "out" / "val.jsonl")
    assert rows


async def test_answers_start_before_every_leaf_has_questions(sim, tmp_path):
    sim.config = SimulatorConfig(keep_prompts=True)
    ep = {"api_base": sim.url, "api_key": "sk-test-0000", "api_key_env": None}
    config = {"generator": {**ep, "model": "teacher-sim", "max_concurrent": 1}}
    await run(sim, tmp_path / "out", small(), config=config)
    kinds = [p.split("\n", 1)[0] for p in sim.prompts if p.startswith("TASK: ")]
    last_question = max(i for i, k in enumerate(kinds) if k == "TASK: topic_questions")
    assert kinds.index("TASK: topic_answer") < last_question


async def test_max_per_slice_balances_the_output_per_leaf(sim, tmp_path):
    result = await run(sim, tmp_path / "out", small(), config={"max_per_slice": 1})
    rows = read_jsonl(tmp_path / "out" / "train.jsonl") + read_jsonl(tmp_path / "out" / "val.jsonl")
    per_leaf = [r["slice_id"] for r in rows]
    assert len(per_leaf) == len(set(per_leaf)) == result.counts.train + result.counts.val > 0


# ---------------------------------------------------------------------------------------------
# Tree files
# ---------------------------------------------------------------------------------------------


def test_tree_round_trip_and_short_form(tmp_path):
    tree = TopicTree.from_json(BOOK_TOC)
    assert tree.name == "Python Basics"
    assert [p for p, _ in tree.leaves()] == [
        ("Python Basics", "Chapter 1 Variables", "1.1 Names"),
        ("Python Basics", "Chapter 1 Variables", "1.2 Types"),
        ("Python Basics", "Chapter 2 Control Flow"),
    ]
    tree.save(tmp_path / "sub" / "t.json")
    loaded = TopicTree.load(tmp_path / "sub" / "t.json")
    assert loaded == tree and loaded.digest() == tree.digest()
    canonical = json.loads((tmp_path / "sub" / "t.json").read_text(encoding="utf-8"))
    assert canonical["children"][1] == {"name": "Chapter 2 Control Flow"}
    mixed = {"name": "体育", "children": ["足球", {"篮球": ["规则"]}, {"name": "网球"}]}
    assert [p[-1] for p, _ in TopicTree.from_json(mixed).leaves()] == ["足球", "规则", "网球"]


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (None, "no such tree file"),
        (b"{not json", "invalid JSON"),
        (b"\xff\xfe\x00", "not UTF-8"),
        (b'["a", "b"]', "no root topic"),
        (b'{"a": [], "b": []}', "single root"),
        (b'{"r": ["x", "X "]}', "two sub-topics named"),
        (b'{"name": "r", "children": ["x"], "questions": ["q?"]}', "questions belong on leaves"),
        (b'{"r": ["ok", "  "]}', "empty topic name"),
        (b'{"r": 3}', "sub-topics must be"),
        (b'{"name": "r", "questions": "q?"}', "list of strings"),
    ],
)
def test_bad_tree_file_names_the_file(tmp_path, content, why):
    path = tmp_path / "tree.json"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(InputError) as err:
        TopicTree.load(path)
    assert str(path) in str(err.value) and why in str(err.value)


# ---------------------------------------------------------------------------------------------
# Flags, describe, parsers, simulator
# ---------------------------------------------------------------------------------------------


def parse(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    add_topic_arguments(p)
    return p.parse_args(list(argv))


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ((), "--topic"),
        (("--topic", "  "), "--topic"),
        (("--topic", "x", "--tree", "t.json"), "not both"),
        (("--topic", "x", "--levels", "0"), "--levels"),
        (("--topic", "x", "--levels", "6"), "--levels"),
        (("--topic", "x", "--tags-per-level", "101"), "--tags-per-level"),
        (("--topic", "x", "--questions-per-tag", "0"), "--questions-per-tag"),
        (("--topic", "x", "--levels", "5", "--tags-per-level", "20"), "leaves"),
    ],
)
def test_bad_flags_are_one_line_config_errors(argv, message):
    with pytest.raises(ConfigError) as err:
        topic_source_from_args(parse(*argv))
    assert message in str(err.value) and "\n" not in str(err.value)


def test_flags_build_the_source(tmp_path):
    args = parse("--topic", "Sports", "--levels", "3", "--tags-per-level", "4")
    source = topic_source_from_args(args)
    assert (source.levels, source.tags_per_level, source.questions_per_tag) == (3, 4, 10)
    assert source.total() == 64 and source.tree_out is None
    d = source.describe()
    assert d["kind"] == "topics" and d["topic"] == "Sports" and d["tree_blake2b"] is None
    assert d == topic_source_from_args(args).describe()  # no timestamps
    assert parse().levels == 2 and parse().questions_per_tag == 10
    with pytest.raises(InputError, match=r"missing\.json"):
        topic_source_from_args(parse("--tree", str(tmp_path / "missing.json")))
    source = topic_source_from_args(parse("--topic", "x", "--tree-out", str(tmp_path / "t.json")))
    assert source.tree_out == tmp_path / "t.json"


def chat(content: str, reasoning: str | None = None) -> ChatResult:
    return ChatResult(content=content, reasoning=reasoning, finish_reason="stop", model="m")


def test_reply_parsers():
    assert parse_string_list(chat('```json\n["1. 规则", "- 历史", {"name": "装备"}, 3]\n```')) == [
        "规则",
        "历史",
        "装备",
    ]
    assert parse_string_list(chat('{"topics": ["3.5 级地震", "2024年赛季"]}')) == [
        "3.5 级地震",
        "2024年赛季",
    ]
    assert parse_string_list(chat("[]")) == []
    assert parse_string_list(chat('[{"label": "Rules"}, {"子话题": "历史", "n": 2}]')) == [
        "Rules",
        "历史",
    ]
    with pytest.raises(ValueError, match="none of the 2 item"):
        parse_string_list(chat('[{"分类": "球类", "说明": "用球"}, [1]]'))
    with pytest.raises(JSONExtractionError):
        parse_string_list(chat("no list here"))
    assert parse_answer(chat("<think>hmm</think>\nThe answer.")) == ("hmm", "The answer.")
    assert parse_answer(chat("The answer.", reasoning="thought")) == ("thought", "The answer.")
    with pytest.raises(ValueError):
        parse_answer(chat("<think>only thinking"))


def test_simulator_responders_are_deterministic_and_never_repeat():
    fields = {
        "path": "Sports > Football",
        "count": "25",
        "siblings": "- Rules in Football\n- Basketball",
        "existing": "- History in Football",
    }
    names = json.loads(topic_expand_reply("m", fields))
    assert names == json.loads(topic_expand_reply("m", fields))
    assert len(names) == len({n.casefold() for n in names}) == 25
    assert not {"rules in football", "history in football"} & {n.casefold() for n in names}
    asked = {"path": "体育 > 足球", "count": "3", "existing": "- 什么是足球？它主要包括哪些内容？"}
    qs = json.loads(topic_questions_reply("m", asked))
    assert len(qs) == 3 and "什么是足球？它主要包括哪些内容？" not in qs


def test_source_needs_a_topic_or_a_tree():
    with pytest.raises(ConfigError):
        TopicSource(None)
    with pytest.raises(ConfigError):
        TopicSource("x", tree=TopicTree(name="y"))
    with pytest.raises(ConfigError, match="levels"):
        TopicSource("x", levels=0)
    tree = TopicTree.from_json(BOOK_TOC)
    source = TopicSource(None, tree=tree)
    assert source.total() == 3
    assert source.describe()["levels"] is None and source.describe()["topic"] == "Python Basics"
