"""A damaged cache.sqlite3 is never used silently and never a traceback: exit 2 naming the way
out (--repair, --fresh), or a warning and the damaged reply asked again."""

from __future__ import annotations

import logging
import random
import shutil
import sqlite3
from pathlib import Path

import pytest

from sft_distill.llm.cache import LEGACY_PAYLOADS, SCHEMA_VERSION, ResponseCache
from tests import helpers
from tests.helpers import SLICES, outputs

CACHE = "cache.sqlite3"

REPLY = {
    "model": "m",
    "content": '{"accuracy": 9, "completeness": 8}',
    "reasoning": None,
    "finish_reason": "stop",
    "prompt_tokens": 3,
    "completion_tokens": 5,
}


def dry_run(out: Path, *extra: str) -> int:
    """A dry run of the examples into ``out``, in process."""
    return helpers.dry_run(SLICES, out, *extra)


def cache_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "sft_distill.llm.cache"]


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished dry run: its cache is the one garbled below, its outputs the reference."""
    out = tmp_path_factory.mktemp("pristine") / "out"
    assert dry_run(out) == 0
    return out


def copy_run(pristine: Path, to: Path) -> Path:
    shutil.copytree(pristine, to)
    return to


def assert_one_line_naming_the_way_out(err: str, cache: Path) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert str(cache) in lines[0] and "damaged" in lines[0]
    assert "--repair" in lines[0] and "--fresh" in lines[0]


@pytest.mark.slow
def test_random_garbles_are_exit_2_or_asked_again_never_a_traceback_or_silent(
    pristine, tmp_path, capsys, caplog
):
    """Random bytes at seeded offsets: each garble either stops the run with one line naming
    the file and --repair (damaged structure), or costs only re-asked calls, with a warning,
    and gives byte-identical outputs (damaged reply, or bytes SQLite never reads)."""
    caplog.set_level(logging.WARNING)
    reference = outputs(pristine)
    size = (pristine / CACHE).stat().st_size
    rng = random.Random(20240610)
    stopped = reasked = 0
    # At least 16 garbles, and on until both kinds of damage were met (the offsets that hit a
    # reply's bytes depend on the cache's layout, which any change to the run's calls moves).
    for i in range(40):
        if i >= 16 and stopped and reasked:
            break
        out = copy_run(pristine, tmp_path / f"g{i}")
        offset, length = rng.randrange(size - 64), rng.choice((1, 8, 64))
        with open(out / CACHE, "r+b") as f:
            f.seek(offset)
            f.write(rng.randbytes(length))
        caplog.clear()
        capsys.readouterr()
        code = dry_run(out)  # a traceback would be raised here and fail the test
        err = capsys.readouterr().err
        where = f"garble {i}: {length} bytes at {offset}"
        assert code in (0, 2), where
        if code == 2:
            stopped += 1
            assert_one_line_naming_the_way_out(err, out / CACHE)
            assert dry_run(out, "--repair") == 0, where  # the way out works
        else:
            reasked += any("fails its checksum" in m for m in cache_warnings(caplog))
            assert all(str(out / CACHE) in m for m in cache_warnings(caplog)), where
        assert outputs(out) == reference, where
    assert stopped and reasked  # both kinds of damage were met


@pytest.mark.slow  # over 0.3 s: in the full suite, not in -m "not slow"
def test_a_garbled_header_is_exit_2_and_repair_starts_over(pristine, tmp_path, capsys):
    out = copy_run(pristine, tmp_path / "out")
    with open(out / CACHE, "r+b") as f:
        f.write(b"this is no db!!\x00")  # the 16-byte "SQLite format 3" magic
    assert dry_run(out) == 2
    assert_one_line_naming_the_way_out(capsys.readouterr().err, out / CACHE)
    assert dry_run(out, "--repair") == 0
    assert outputs(out) == outputs(pristine)
    assert (out / (CACHE + ".damaged")).read_bytes()[:15] == b"this is no db!!"


def test_a_flipped_digit_in_a_cached_score_is_asked_again_with_a_warning(
    pristine, tmp_path, capsys, caplog
):
    """The bytes of a judge's reply are changed in place (the file stays a valid database):
    the reply fails its checksum and is asked again; the dataset is unchanged."""
    out = copy_run(pristine, tmp_path / "out")
    data = bytearray((out / CACHE).read_bytes())
    at = data.index(b'"accuracy": ') + len(b'"accuracy": ')
    data[at : at + 1] = b"3" if data[at : at + 1] != b"3" else b"4"
    (out / CACHE).write_bytes(bytes(data))
    caplog.set_level(logging.WARNING)
    assert dry_run(out) == 0
    warnings = [m for m in cache_warnings(caplog) if "fails its checksum" in m]
    assert len(warnings) == 1 and str(out / CACHE) in warnings[0]
    assert outputs(out) == outputs(pristine)
    assert "1 call +" in capsys.readouterr().out  # that one reply, and only it, was asked again


def test_repair_keeps_every_readable_reply(pristine, tmp_path, caplog):
    out = copy_run(pristine, tmp_path / "out")
    with sqlite3.connect(out / CACHE) as db:
        total = db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]
        index_page = db.execute(
            "SELECT rootpage FROM sqlite_master WHERE name = 'sqlite_autoindex_responses_1'"
        ).fetchone()[0]
        page_size = db.execute("PRAGMA page_size").fetchone()[0]
    with open(out / CACHE, "r+b") as f:  # the key index: every reply is still in the table
        f.seek((index_page - 1) * page_size)
        f.write(b"\xff" * 64)
    caplog.set_level(logging.WARNING)
    with ResponseCache(out / CACHE, repair=True) as cache:
        assert len(cache) == total
    assert any(f"kept {total} cached replies" in m for m in cache_warnings(caplog))


def test_a_cache_from_before_checksums_is_upgraded_and_reused(pristine, tmp_path, capsys):
    """Schema 0 (no checksum column): readable rows get their checksum when the cache is
    opened, and every reply is reused."""
    out = copy_run(pristine, tmp_path / "out")
    with sqlite3.connect(out / CACHE) as db:
        for table in ("responses", "embeddings", "meta"):
            db.execute(f"ALTER TABLE {table} DROP COLUMN checksum")
        db.execute("PRAGMA user_version = 0")
    assert dry_run(out) == 0
    assert outputs(out) == outputs(pristine)
    summary = capsys.readouterr().out
    assert "generator 0 calls" in summary and "primary 0 calls" in summary
    with sqlite3.connect(out / CACHE) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert db.execute("SELECT COUNT(*) FROM responses WHERE checksum IS NULL").fetchone() == (
            0,
        )


def test_an_unreadable_row_of_an_old_cache_is_dropped_when_upgraded(tmp_path, caplog):
    path = tmp_path / CACHE
    with sqlite3.connect(path) as db:
        db.execute(
            "CREATE TABLE responses (key TEXT PRIMARY KEY, model TEXT NOT NULL, content TEXT NOT "
            "NULL, reasoning TEXT, finish_reason TEXT, prompt_tokens INTEGER NOT NULL DEFAULT 0, "
            "completion_tokens INTEGER NOT NULL DEFAULT 0, created REAL NOT NULL)"
        )
        row = ("m", "答", None, "stop", 1, 2, 0.0)
        db.execute("INSERT INTO responses VALUES ('good', ?, ?, ?, ?, ?, ?, ?)", row)
        not_utf8 = "CAST(x'ff00' AS TEXT)"
        db.execute(f"INSERT INTO responses VALUES ('bad', 'm', {not_utf8}, NULL, 'stop', 1, 2, 0)")
    caplog.set_level(logging.WARNING)
    with ResponseCache(path) as cache:
        assert cache.get("good") == dict(zip(REPLY, ("m", "答", None, "stop", 1, 2), strict=True))
        assert cache.get("bad") is None
        assert len(cache) == 1
    assert any("1 unreadable row(s) dropped" in m for m in cache_warnings(caplog))


def test_a_cache_from_a_newer_version_is_refused_in_one_line(pristine, tmp_path, capsys):
    out = copy_run(pristine, tmp_path / "out")
    with sqlite3.connect(out / CACHE) as db:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    assert dry_run(out) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "newer sft_distill" in err


def test_replies_vectors_and_settings_fail_their_checksum_when_changed(tmp_path, caplog):
    path = tmp_path / CACHE
    with ResponseCache(path) as cache:
        cache.put("k", REPLY)
        cache.put_vectors(["e"], [[1.0, 2.0]])
        cache.set_meta("run_identity", '{"kind": "slices"}')
    with sqlite3.connect(path) as db:
        db.execute("UPDATE responses SET prompt_tokens = 4")
        db.execute("UPDATE embeddings SET vector = ?", (bytes(8),))
        db.execute("UPDATE meta SET value = '{}'")
    caplog.set_level(logging.WARNING)
    with ResponseCache(path) as cache:
        assert cache.get("k") is None
        assert cache.get_vectors(["e"]) == [None]
        assert cache.get_meta("run_identity") is None
        assert cache.rejected == 3
    assert len([m for m in cache_warnings(caplog) if "fails its checksum" in m]) == 3


def test_every_commit_is_synced_to_disk(tmp_path):
    """synchronous=FULL: in WAL mode, NORMAL may lose the last commits on a power cut."""
    with ResponseCache(tmp_path / CACHE) as cache:
        assert cache._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def schema_1_cache(path: Path, *, with_reply: bool) -> None:
    """A cache as sft_distill wrote it before schema 2: its calls table has 8 columns."""
    with ResponseCache(path) as cache:
        if with_reply:
            cache.put("k", REPLY)
    with sqlite3.connect(path) as db:
        db.execute("DROP TABLE calls")
        db.execute(
            "CREATE TABLE calls (invocation INTEGER NOT NULL, endpoint TEXT NOT NULL, model TEXT "
            "NOT NULL, status INTEGER, prompt_tokens INTEGER NOT NULL DEFAULT 0, "
            "completion_tokens INTEGER NOT NULL DEFAULT 0, started REAL NOT NULL, latency_s REAL "
            "NOT NULL)"
        )
        db.execute("INSERT INTO calls VALUES (1, 'generator', 'm', 200, 30, 7, 1.0, 0.5)")
        db.execute("DELETE FROM meta")
        db.execute("PRAGMA user_version = 1")


@pytest.mark.parametrize("with_reply", [True, False])
def test_a_schema_1_cache_gets_the_new_call_columns_and_keeps_its_rows(tmp_path, with_reply):
    path = tmp_path / CACHE
    schema_1_cache(path, with_reply=with_reply)
    with ResponseCache(path) as cache:
        cache.record_call(
            "primary",
            "m",
            status=200,
            prompt_tokens=2048,
            completion_tokens=9,
            started=2.0,
            latency_s=0.1,
            cached_prompt_tokens=1024,
            reasoning_tokens=4,
        )
        rows = list(cache.calls_since(0))
        assert (cache.get("k") is not None) is with_reply
        # Its replies were asked with no response_format: asked that way again (same keys).
        assert cache.get_meta(LEGACY_PAYLOADS) == ("1" if with_reply else None)
    assert rows == [
        (1, "generator", "m", 30, 7, 1.0, 0.5, 0, 0, 0),
        (0, "primary", "m", 2048, 9, 2.0, 0.1, 1024, 4, 0),
    ]
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 3


def test_a_schema_2_cache_gets_the_batch_column_and_keeps_its_structured_payloads(tmp_path):
    path = tmp_path / CACHE
    with ResponseCache(path) as cache:
        cache.put("k", REPLY)
    with sqlite3.connect(path) as db:
        db.execute("ALTER TABLE calls DROP COLUMN batch")
        db.execute("INSERT INTO calls VALUES (1, 'generator', 'm', 200, 30, 7, 1.0, 0.5, 3, 1)")
        db.execute("PRAGMA user_version = 2")
    with ResponseCache(path) as cache:
        cache.record_call(
            "primary",
            "m",
            status=200,
            prompt_tokens=5,
            completion_tokens=2,
            started=2.0,
            latency_s=0.0,
            batch=True,
        )
        rows = list(cache.calls_since(0))
        assert cache.get("k") is not None
        # Replies of schema 2 were asked with their response_format: no legacy mark.
        assert cache.get_meta(LEGACY_PAYLOADS) is None
    assert rows == [
        (1, "generator", "m", 30, 7, 1.0, 0.5, 3, 1, 0),
        (0, "primary", "m", 5, 2, 2.0, 0.0, 0, 0, 1),
    ]
