"""Tests for sft_distill.data_io: tolerant slice reading and crash-safe output writing."""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
from pathlib import Path
from typing import Any

import pytest

from sft_distill import data_io
from sft_distill.errors import InputError, OutputError
from sft_distill.models import Judgement, ScoredSample, Slice
from sft_distill.outputs.datasets import write_splits
from sft_distill.outputs.formats import to_sharegpt
from sft_distill.outputs.writers import (
    JsonlWriter,
    dumps_line,
    prepare_output_dir,
    write_json_atomic,
)
from sft_distill.selection.splitting import split_train_val
from sft_distill.sources.jsonl import count_lines, iter_jsonl
from sft_distill.sources.reader import BadLine, ReadStats, derive_slice_id, iter_slices, read_slices
from tests.helpers import SHARED_DATA, TEST_DATA, needs_shared, read_jsonl

NASTY_SMALL = TEST_DATA / "io_nasty_small.jsonl"
SHARED_NASTY = SHARED_DATA / "slices_nasty.jsonl"


def build_nasty_small() -> bytes:
    """The exact bytes of tests/data/io_nasty_small.jsonl (BOM, CRLF); line numbers in comments."""
    lines = [
        b'{"id": "a-001", "content": "Alpha: fire insurance covers damage caused by fire.", '
        b'"metadata": {"topic": "fire"}}',  # 1 ok
        b'{"id": "a-002", "content": "Beta: marine cargo insurance covers goods in transit."}',  # 2
        b"",  # 3 blank
        b'{"id": "a-003", "content": "Gamma: this record was cut off mid-str',  # 4
        b'{"id": "a-004", "text": "Delta: the text sits under the wrong key."}',  # 5
        b'{"id": "a-005", "content": ""}',  # 6
        b'{"id": "a-006", "content": " \\r\\n\\t' + "\u3000".encode() + b' "}',  # 7
        b'{"id": "a-007", "content": ["Epsilon one.", "Epsilon two."]}',  # 8
        b'{"id": "a-008", "content": null}',  # 9
        b'{"id": "a-009", "content": 12345}',  # 10
        b"   ",  # 11 whitespace only
        b'{"id": "a-002", "content": "Zeta: a different text under a reused id."}',  # 12
        b'{"id": "a-010", "content": "Alpha: fire insurance covers damage caused by fire."}',  # 13
        b'{"id": 12, "content": "Eta: an integer id.", "metadata": "court_case"}',  # 14
        b'{"content": "Theta: this record has no id."}',  # 15
        b'[{"id": "a-011", "content": "Iota: a record wrapped in an array."}]',  # 16
        b'{"id": "a-012", "content": "Kappa: lone surrogate \\ud800 here."}',  # 17
        b'{"id": "a-013", "content": "Lambda one.\\r\\nLambda two."}',  # 18
        '{"id": "a-014", "content": "Mu one.\u2028Mu two.\u2029Mu three."}'.encode(),  # 19
        b'{"id": "a-015", "content": "Nu: a stray byte \xff here."}',  # 20
        b'{"id": "a-016", "content": "Xi: read after the bad byte."}',  # 21
        b'{"id": true, "content": "Omicron: a boolean id."}',  # 22
        "\u3000".encode(),  # 23 ideographic space only
        b'{"id": "a-017", "content": "Pi: a pair \\ud83d\\ude00 and a raw\ttab.", '
        b'"metadata": null, "source": "handbook"}',  # 24 ok
        b'{"id": "a-018", "content": "Rho."}{"id": "a-019", "content": "Sigma."}',  # 25
        b'{"id": "a-020", "content": "\\u200b\\ufeff"}',  # 26 zero-width only
        b"",  # 27 blank
    ]
    return b"\xef\xbb\xbf" + b"".join(line + b"\r\n" for line in lines)


# (line, kind, text the reason must contain, skipped)
SMALL_REPORTS = [
    (4, "invalid_json", "cut off", True),
    (5, "missing_content", "found 'text'", True),
    (6, "empty_content", "is empty", True),
    (7, "empty_content", "whitespace only", True),
    (8, "non_string_content", "got array", True),
    (9, "non_string_content", "got null", True),
    (10, "non_string_content", "got number", True),
    (12, "duplicate_id", "duplicate id 'a-002' (first at line 2)", True),
    (13, "duplicate_content", "duplicate content of line 1 (id 'a-001')", True),
    (14, "bad_metadata", "got string", False),
    (16, "not_object", "got array", True),
    (17, "lone_surrogate", "U+FFFD", False),
    (20, "invalid_utf8", "byte 0xff", True),
    (22, "bad_id", "got boolean", True),
    (25, "invalid_json", "Extra data", True),
    (26, "empty_content", "whitespace only", True),
]
THETA = "Theta: this record has no id."
# (line, id, content) of every slice that comes through, in file order.
SMALL_SLICES = [
    (1, "a-001", "Alpha: fire insurance covers damage caused by fire."),
    (2, "a-002", "Beta: marine cargo insurance covers goods in transit."),
    (14, "12", "Eta: an integer id."),
    (15, "s-" + hashlib.blake2b(THETA.encode(), digest_size=8).hexdigest(), THETA),
    (17, "a-012", "Kappa: lone surrogate \ufffd here."),
    (18, "a-013", "Lambda one.\r\nLambda two."),
    (19, "a-014", "Mu one.\u2028Mu two.\u2029Mu three."),
    (21, "a-016", "Xi: read after the bad byte."),
    (24, "a-017", "Pi: a pair \U0001f600 and a raw\ttab."),
]


def read_all(path: Path | str, **kw: Any) -> tuple[list[Slice], list[BadLine], ReadStats]:
    bad: list[BadLine] = []
    stats = ReadStats()
    slices = list(iter_slices(path, on_bad_line=bad.append, stats=stats, **kw))
    return slices, bad, stats


@pytest.fixture(scope="module")
def small() -> tuple[list[Slice], list[BadLine], ReadStats]:
    return read_all(NASTY_SMALL)


def test_fixture_matches_builder() -> None:
    data = NASTY_SMALL.read_bytes()
    assert data == build_nasty_small()
    assert len(data) < 5000
    assert data.startswith(b"\xef\xbb\xbf")
    assert data.count(b"\r\n") == data.count(b"\n") == 27


@pytest.mark.parametrize(("line", "kind", "needle", "skipped"), SMALL_REPORTS)
def test_small_bad_line_reported(
    small: Any, line: int, kind: str, needle: str, skipped: bool
) -> None:
    _, bad, _ = small
    hits = [b for b in bad if b.line == line]
    assert len(hits) == 1, hits
    assert hits[0].kind == kind
    assert needle in hits[0].reason
    assert hits[0].skipped is skipped
    assert str(hits[0]) == f"{NASTY_SMALL}:{line}: {hits[0].reason}"


def test_small_reports_nothing_else(small: Any) -> None:
    _, bad, _ = small
    assert [(b.line, b.kind) for b in bad] == [(line, kind) for line, kind, _, _ in SMALL_REPORTS]


@pytest.mark.parametrize(("line", "sid", "content"), SMALL_SLICES)
def test_small_slice_comes_through(small: Any, line: int, sid: str, content: str) -> None:
    slices, _, _ = small
    by_line = {s.line: s for s in slices}
    assert by_line[line].id == sid
    assert by_line[line].content == content


def test_small_slices_order_and_metadata(small: Any) -> None:
    slices, _, _ = small
    assert [(s.line, s.id) for s in slices] == [(line, sid) for line, sid, _ in SMALL_SLICES]
    meta = {s.id: s.metadata for s in slices}
    assert meta["a-001"] == {"topic": "fire"}
    assert meta["12"] == {"value": "court_case"}
    assert meta["a-017"] == {"source": "handbook"}  # null metadata + extra top-level key
    assert meta["a-002"] == {}


def test_small_stats(small: Any) -> None:
    _, _, st = small
    assert st.lines_read == 27
    assert st.blank_lines == 4
    assert st.slices == 9
    assert st.duplicate_slices == 2
    assert st.fixed_lines == 2
    assert st.bad_lines == 12
    assert st.lines_read == st.blank_lines + st.slices + st.bad_lines + st.duplicate_slices
    assert st.reasons["empty_content"] == 3
    assert sum(st.reasons.values()) == len(SMALL_REPORTS)


def test_invalid_utf8_offsets(small: Any) -> None:
    _, bad, _ = small
    data = NASTY_SMALL.read_bytes()
    line20 = data.split(b"\n")[19]
    (hit,) = [b for b in bad if b.kind == "invalid_utf8"]
    bad_byte = b"\xff"
    assert f"at byte {line20.index(bad_byte)} of the line" in hit.reason
    assert f"file offset {data.index(bad_byte)}" in hit.reason


def test_derived_id_is_stable() -> None:
    assert derive_slice_id(THETA) == SMALL_SLICES[3][1]
    assert derive_slice_id(THETA) != derive_slice_id(THETA + " ")


def test_u2028_does_not_split_a_record(small: Any) -> None:
    slices, _, _ = small
    (mu,) = [s for s in slices if s.id == "a-014"]
    assert "\u2028" in mu.content and "\u2029" in mu.content
    # What the fixture guards against: splitlines() would cut this record in two.
    assert len(NASTY_SMALL.read_bytes().decode("utf-8", "replace").splitlines()) > 27


def test_strict_raises_on_first_bad_line() -> None:
    with pytest.raises(InputError) as info:
        list(iter_slices(NASTY_SMALL, strict=True))
    assert str(info.value).startswith(f"{NASTY_SMALL}:4: invalid JSON")
    assert "\n" not in str(info.value)


def test_strict_raises_on_a_fix(tmp_path: Path) -> None:
    p = tmp_path / "s.jsonl"
    p.write_text('{"id": "x", "content": "ok"}\n{"id": "y", "content": "t", "metadata": 3}\n')
    got: list[str] = []
    with pytest.raises(InputError, match=r"s\.jsonl:2: 'metadata' must be an object"):
        got.extend(s.id for s in iter_slices(p, strict=True))
    assert got == ["x"]


def test_seen_ids_shared_across_files(tmp_path: Path) -> None:
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    a.write_text('{"id": "x", "content": "one"}\n')
    b.write_text('{"id": "x", "content": "two"}\n{"id": "y", "content": "three"}\n')
    seen: set[str] = set()
    assert [s.id for s in iter_slices(a, seen_ids=seen)] == ["x"]
    slices, bad, _ = read_all(b, seen_ids=seen)
    assert [s.id for s in slices] == ["y"]
    assert bad[0].kind == "duplicate_id" and "seen before this file" in bad[0].reason
    assert seen == {"x", "y"}


def test_line_too_long_is_skipped(tmp_path: Path) -> None:
    p = tmp_path / "long.jsonl"
    p.write_text('{"id": "a", "content": "' + "x" * 500 + '"}\n{"id": "b", "content": "short"}\n')
    slices, bad, _ = read_all(p, max_line_bytes=100)
    assert [s.id for s in slices] == ["b"]
    assert [(b.line, b.kind) for b in bad] == [(1, "line_too_long")]


@pytest.mark.parametrize(
    ("make", "needle"),
    [
        (lambda d: d / "nope.jsonl", "file not found"),
        (lambda d: d, "is a directory"),
        (lambda d: (d / "empty.jsonl", (d / "empty.jsonl").write_bytes(b""))[0], "is empty"),
    ],
    ids=["missing", "directory", "empty"],
)
def test_whole_file_errors(tmp_path: Path, make: Any, needle: str) -> None:
    path = make(tmp_path)
    with pytest.raises(InputError) as info:
        list(iter_slices(path))
    assert str(info.value).startswith(f"{path}: {needle}")
    assert "\n" not in str(info.value)


def test_permission_denied(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def deny(*_a: Any, **_k: Any) -> Any:
        raise PermissionError(13, "Permission denied")

    # Tests may run as root, where chmod 000 does not deny: simulate the failing open.
    monkeypatch.setattr(data_io, "open", deny, raising=False)
    with pytest.raises(InputError, match=r"x\.jsonl: permission denied$"):
        list(iter_slices(tmp_path / "x.jsonl"))


def test_blank_only_file_is_not_an_error(tmp_path: Path) -> None:
    p = tmp_path / "blank.jsonl"
    p.write_bytes(b"\xef\xbb\xbf\r\n   \r\n")
    slices, bad, st = read_all(p)
    assert slices == [] and bad == []
    assert st.blank_lines == 2


def test_count_lines(tmp_path: Path) -> None:
    assert count_lines(NASTY_SMALL) == 27
    p = tmp_path / "c.jsonl"
    p.write_bytes(b"a\nb\nc")
    assert count_lines(p) == 3
    p.write_bytes(b"")
    assert count_lines(p) == 0
    with pytest.raises(InputError):
        count_lines(tmp_path / "missing.jsonl")


async def test_read_slices_matches_sync(small: Any) -> None:
    bad: list[BadLine] = []
    got = [s async for s in read_slices(NASTY_SMALL, on_bad_line=bad.append)]
    assert got == small[0]
    assert bad == small[1]


async def test_read_slices_yields_to_event_loop(tmp_path: Path) -> None:
    p = tmp_path / "many.jsonl"
    p.write_text("".join(f'{{"id": "{i}", "content": "text {i}"}}\n' for i in range(2000)))
    ticks = 0
    stop = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not stop.is_set():
            ticks += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    n = 0
    async for _ in read_slices(p):
        n += 1
    stop.set()
    await task
    assert n == 2000
    assert ticks >= 2000 // data_io.YIELD_EVERY_LINES - 1


async def test_read_slices_strict_raises() -> None:
    with pytest.raises(InputError, match=":4: invalid JSON"):
        async for _ in read_slices(NASTY_SMALL, strict=True):
            pass


@needs_shared("slices_nasty.jsonl")
def test_shared_nasty_file() -> None:
    slices, bad, st = read_all(SHARED_NASTY)
    assert [(s.line, s.id) for s in slices] == [
        (1, "n-001"),
        (2, "n-002"),
        (8, "n-007"),
        (15, "12"),
        (16, derive_slice_id(slices[4].content)),
        (18, "n-014"),
        (19, "n-015"),
        (20, "n-016"),
    ]
    assert slices[4].id.startswith("s-")
    assert len(slices[2].content) == 300_000
    assert slices[3].metadata == {"value": "court_case"}
    assert slices[5].content == "lone surrogate follows: \ufffd end"
    assert "\r\n" in slices[6].content
    assert "\u2028" in slices[7].content and "\u2029" in slices[7].content
    assert not slices[0].content.startswith("\ufeff")
    assert [(b.line, b.kind, b.skipped) for b in bad] == [
        (4, "invalid_json", True),
        (5, "missing_content", True),
        (6, "empty_content", True),
        (7, "empty_content", True),
        (9, "non_string_content", True),
        (10, "non_string_content", True),
        (11, "non_string_content", True),
        (13, "duplicate_id", True),
        (14, "duplicate_content", True),
        (15, "bad_metadata", False),
        (17, "not_object", True),
        (18, "lone_surrogate", False),
    ]
    assert "duplicate id 'n-002' (first at line 2)" in bad[7].reason
    assert "found 'text'" in bad[1].reason
    assert (st.lines_read, st.blank_lines, st.slices) == (21, 3, 8)


# ---------------------------------------------------------------------------------------------
# Writing


def make_sample(i: int, **kw: Any) -> ScoredSample:
    fields: dict[str, Any] = {
        "id": f"smp-{i}",
        "slice_id": f"slc-{i % 3}",
        "instruction": f"Question {i}?",
        "output": f"Answer {i}.",
        "avg_score": 8.0 + i / 10,
        "judgements": [
            Judgement(evaluator="primary", model="m-a", scores={"accuracy": 8.0}),
            Judgement(evaluator="secondary", model="m-b", scores={"accuracy": 9.0}),
        ],
    }
    fields.update(kw)
    return ScoredSample(**fields)


def test_to_sharegpt_shape() -> None:
    rec = to_sharegpt(make_sample(1, input="Context text."))
    assert list(rec) == ["id", "conversations", "avg_score", "dimension_scores", "slice_id"]
    conv = rec["conversations"]
    assert [m["from"] for m in conv] == ["human", "gpt"]
    assert all(set(m) == {"from", "value"} for m in conv)
    assert conv[0]["value"] == "Question 1?\nContext text."  # as LLaMA-Factory joins alpaca
    assert conv[1]["value"] == "Answer 1."
    assert rec["dimension_scores"] == {"m-a": {"accuracy": 8.0}, "m-b": {"accuracy": 9.0}}
    assert (rec["id"], rec["slice_id"], rec["avg_score"]) == ("smp-1", "slc-1", 8.1)
    json.loads(json.dumps(rec))


def test_to_sharegpt_system_and_no_input() -> None:
    rec = to_sharegpt(make_sample(2), system="You are an insurance tutor.")
    assert rec["system"] == "You are an insurance tutor."
    assert rec["conversations"][0]["value"] == "Question 2?"
    assert "system" not in to_sharegpt(make_sample(2))
    assert len(rec["conversations"]) % 2 == 0


def test_to_sharegpt_same_model_twice_and_failed_judge() -> None:
    judges = [
        Judgement(evaluator="primary", model="m", scores={"safety": 10.0}),
        Judgement(evaluator="secondary", model="m", scores={"safety": 7.0}),
        Judgement(evaluator="third", model="x", error="timeout"),
    ]
    rec = to_sharegpt(make_sample(3, judgements=judges))
    assert rec["dimension_scores"] == {"m": {"safety": 10.0}, "secondary/m": {"safety": 7.0}}


def test_dumps_line_is_safe() -> None:
    obj = {"t": "a\ud800b", "u": "x\u2028y\u2029z\x85w", "n": float("nan"), "zh": "中文"}
    line = dumps_line(obj)
    line.encode("utf-8")  # would raise on a lone surrogate
    assert len(line.splitlines()) == 1
    assert "中文" in line and ", " not in line
    back = json.loads(line)
    assert back == {"t": "a\ufffdb", "u": "x\u2028y\u2029z\x85w", "n": None, "zh": "中文"}


def test_jsonl_writer_flushes_each_line(tmp_path: Path) -> None:
    p = tmp_path / "raw.jsonl"
    with JsonlWriter(p) as w:
        w.write({"a": 1})
        assert p.read_bytes() == b'{"a":1}\n'  # visible before close: crash-safe
        w.write(make_sample(1))
        assert w.lines == 2
    rows = [obj for _, obj in iter_jsonl(p)]
    assert rows[1]["id"] == "smp-1" and "source_text" not in rows[1]


def test_jsonl_writer_atomic(tmp_path: Path) -> None:
    p = tmp_path / "train.jsonl"
    p.write_text("old\n")
    w = JsonlWriter(p, atomic=True)
    w.write({"x": "é\ud800"})
    assert p.read_text() == "old\n"
    assert (tmp_path / "train.jsonl.tmp").exists()
    w.close()
    w.close()  # safe twice
    assert json.loads(p.read_text(encoding="utf-8")) == {"x": "é\ufffd"}
    assert list(tmp_path.glob("*.tmp")) == []


def test_jsonl_writer_atomic_error_keeps_old_file(tmp_path: Path) -> None:
    p = tmp_path / "train.jsonl"
    p.write_text("old\n")
    with pytest.raises(RuntimeError), JsonlWriter(p, atomic=True) as w:
        w.write({"x": 1})
        raise RuntimeError("boom")
    assert p.read_text() == "old\n"
    assert list(tmp_path.glob("*.tmp")) == []


def test_jsonl_writer_append_after_cut_line(tmp_path: Path) -> None:
    p = tmp_path / "raw.jsonl"
    p.write_bytes(b'{"id": "a"}\n{"id": "b", "out')
    with JsonlWriter(p, mode="a") as w:
        w.write({"id": "c"})
    assert [obj["id"] for _, obj in iter_jsonl(p)] == ["a", "c"]
    with pytest.raises(ValueError, match="append"):
        JsonlWriter(p, atomic=True, mode="a")


def test_write_json_atomic(tmp_path: Path) -> None:
    p = tmp_path / "metadata.json"
    write_json_atomic(p, {"名": "值", "bad": "\udc80", "nan": float("inf")})
    text = p.read_text(encoding="utf-8")
    assert '"名": "值"' in text and "\n  " in text
    assert json.loads(text) == {"名": "值", "bad": "\ufffd", "nan": None}
    assert list(tmp_path.glob("*.tmp")) == []


@pytest.mark.parametrize(
    ("n", "ratio", "n_train"),
    [(10, 0.9, 9), (10, 0.5, 5), (10, 1.0, 10), (10, 0.0, 0), (1, 0.9, 1), (1, 0.0, 0),
     (0, 0.9, 0), (5, 0.9, 4), (3, 0.1, 1), (2, 0.5, 1)],
)  # fmt: skip
def test_split_sizes(n: int, ratio: float, n_train: int) -> None:
    ids = [f"id-{i}" for i in range(n)]
    train, val = split_train_val(ids, ratio, seed=7)
    assert len(train) == n_train
    assert train | val == set(ids) and not train & val


def test_split_deterministic_and_order_independent() -> None:
    ids = [f"id-{i}" for i in range(200)]
    first = split_train_val(ids, 0.8, seed=42)
    shuffled = ids[:]
    random.Random(1).shuffle(shuffled)
    assert split_train_val(shuffled, 0.8, seed=42) == first
    assert split_train_val(ids + ids[:5], 0.8, seed=42) == first
    assert split_train_val(ids, 0.8, seed=43) != first
    # Adding ids moves few old ones: the order key depends on the id alone.
    bigger_val = split_train_val([*ids, "extra"], 0.8, seed=42)[1]
    assert len(first[1] - bigger_val) <= 2


def test_split_rejects_bad_ratio() -> None:
    with pytest.raises(ValueError, match="ratio"):
        split_train_val(["a"], 1.5, seed=0)


def test_write_splits(tmp_path: Path) -> None:
    raw = tmp_path / "generated_raw.jsonl"
    with JsonlWriter(raw) as w:
        for i in range(10):
            w.write(make_sample(i).model_dump(mode="json"))
        w.write(make_sample(3, output="a later copy").model_dump(mode="json"))
    with raw.open("ab") as f:
        f.write(b'{"id": "smp-9", "slice_id"')  # cut by a crash
    out = prepare_output_dir(tmp_path / "out")
    keep = {f"smp-{i}" for i in range(10) if i != 4} | {"smp-missing"}
    counts = write_splits(raw, out, keep, 0.7, seed=3, system="sys")
    train_ids, val_ids = split_train_val(sorted(keep), 0.7, 3)

    train = read_jsonl(out / "train.jsonl")
    val = read_jsonl(out / "val.jsonl")
    assert counts == {"train": len(train), "val": len(val), "missing": 1}
    assert {r["id"] for r in train} == train_ids - {"smp-missing"}
    assert {r["id"] for r in val} == val_ids - {"smp-missing"}
    assert len(train) + len(val) == 9
    for rows in (train, val):
        order = [int(r["id"].split("-")[1]) for r in rows]
        assert order == sorted(order)  # raw-file order within each split
    first3 = [r for r in train + val if r["id"] == "smp-3"]
    assert [r["conversations"][1]["value"] for r in first3] == ["Answer 3."]
    assert all(r["system"] == "sys" for r in train + val)
    assert list(out.glob("*.tmp")) == []


def test_write_splits_ratio_one_gives_empty_val(tmp_path: Path) -> None:
    raw = tmp_path / "raw.jsonl"
    with JsonlWriter(raw) as w:
        for i in range(4):
            w.write(make_sample(i))
    counts = write_splits(raw, tmp_path, {f"smp-{i}" for i in range(4)}, 1.0, seed=0)
    assert counts == {"train": 4, "val": 0, "missing": 0}
    assert (tmp_path / "val.jsonl").read_bytes() == b""


def test_prepare_output_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    made = prepare_output_dir(tmp_path / "a" / "b")
    assert made.is_dir() and list(made.iterdir()) == []
    afile = tmp_path / "file"
    afile.write_text("x")
    with pytest.raises(OutputError, match="not a directory"):
        prepare_output_dir(afile)
    with pytest.raises(OutputError, match="cannot create"):
        prepare_output_dir(afile / "sub")

    def deny(*_a: Any, **_k: Any) -> Any:
        raise PermissionError(13, "Permission denied")

    # Root ignores chmod, so simulate the failing write probe.
    monkeypatch.setattr(data_io.tempfile, "mkstemp", deny)
    with pytest.raises(OutputError) as info:
        prepare_output_dir(tmp_path / "c")
    assert (
        str(info.value) == f"cannot write to output directory {tmp_path / 'c'}: permission denied"
    )


def test_surrogate_slice_round_trips_through_writer(tmp_path: Path, small: Any) -> None:
    slices, _, _ = small
    p = tmp_path / "slices_out.jsonl"
    with JsonlWriter(p, atomic=True) as w:
        for s in slices:
            w.write(s)
    again, bad, _ = read_all(p)
    assert bad == []
    assert [(s.id, s.content) for s in again] == [(s.id, s.content) for s in slices]


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs Linux /dev/full")
@pytest.mark.parametrize("flush_lines", [True, False])
def test_a_full_disk_is_an_output_error_whether_at_write_or_at_close(flush_lines):
    with (
        pytest.raises(OutputError, match="No space left"),
        JsonlWriter("/dev/full", flush_lines=flush_lines) as w,
    ):
        w.write({"id": "a", "text": "保险"})
