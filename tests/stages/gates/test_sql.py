"""The Text2SQL execution gate, the simulator's Text2SQL samples and the examples/text2sql job."""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import shutil
import sqlite3
import time
from pathlib import Path

import pytest

from sft_distill import DatasetDistillationPipeline, load_config
from sft_distill import simulator as simulator_module
from sft_distill.errors import ConfigError
from sft_distill.llm.prompts import text2sql_system_prompt
from sft_distill.models import Sample
from sft_distill.simulator.text2sql import parse_create_tables, text2sql_samples
from sft_distill.stages.gates import sql as sql_gate_module
from sft_distill.stages.gates.registry import build_gates
from sft_distill.stages.gates.sql import SQLExecutionGate, extract_sql, run_query, split_statements
from tests.helpers import EXAMPLES, judged_samples, read_jsonl, sim_config

EXAMPLE_DIR = EXAMPLES / "text2sql"


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "shop.db"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA synchronous = OFF")  # test data: no need to wait for the disk
    with conn:
        conn.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT, price REAL)")
        conn.executemany(
            "INSERT INTO items VALUES (?, ?, ?)",
            [(1, "tea", 10.0), (2, "cup", 5.5), (3, "pot", 30.0), (4, "tray", 5.5)],
        )
    conn.close()
    return path


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def sql_sample(output: str, **annotations) -> Sample:
    return Sample(
        id="q1",
        slice_id="schema",
        instruction="List the items.",
        output=output,
        annotations=dict(annotations),
    )


# --- taking the SQL out of the output --------------------------------------------------------


@pytest.mark.parametrize(
    ("output", "sql"),
    [
        ("```sql\nSELECT 1;\n```", "SELECT 1;"),
        (
            "Here it is:\n\n```SQL\nSELECT name\nFROM items;\n```\nIt lists names.",
            "SELECT name\nFROM items;",
        ),
        ("```sqlite\nSELECT 2\n```", "SELECT 2"),
        ("```\nWITH a AS (SELECT 1) SELECT * FROM a\n```", "WITH a AS (SELECT 1) SELECT * FROM a"),
        ("```python\nprint(1)\n```\n```sql\nSELECT 3\n```", "SELECT 3"),
        ("SELECT name FROM items WHERE price > 5", "SELECT name FROM items WHERE price > 5"),
        ("  select 1  ", "select 1"),
        ("-- names\nSELECT name FROM items", "-- names\nSELECT name FROM items"),
        ("DELETE FROM items", "DELETE FROM items"),  # found, then refused when run
        ("```sql\nSELECT 1", "SELECT 1"),  # unclosed fence
        ("The answer is that there are four items.", None),
        ("```python\nprint('SELECT 1')\n```", None),
        ("Selecting the right items is important.", None),
    ],
)
def test_extract_sql(output, sql):
    assert extract_sql(output) == sql


def test_split_statements_respects_quotes_and_comments():
    stmts = split_statements("SELECT ';' AS a -- x; y\n; /* ; */ SELECT \"b;\" FROM [t;]")
    assert len(stmts) == 2
    assert stmts[0].text.startswith("SELECT ';' AS a")
    assert split_statements("SELECT 1;  ;\n-- trailing comment\n")[0].text == "SELECT 1"
    # ORDER BY is seen only at the top level (not inside a window or a subquery)
    (top,) = split_statements("SELECT a FROM t ORDER BY a")
    (inner,) = split_statements(
        "SELECT a, rank() OVER (ORDER BY a) FROM (SELECT a FROM t ORDER BY a)"
    )
    assert "ORDER BY" in top.skeleton and "ORDER" not in inner.skeleton


# --- running it ------------------------------------------------------------------------------


async def test_valid_sql_passes_and_is_recorded(db):
    gate = SQLExecutionGate(database=db)
    sample = sql_sample("```sql\nSELECT name FROM items WHERE price > 6;\n```")
    result = await gate.check(sample)
    assert result.keep
    assert result.annotations == {
        "sql": "SELECT name FROM items WHERE price > 6;",
        "exec_pass": True,
        "exec_error": None,
        "exec_rows": 2,
    }


@pytest.mark.parametrize(
    ("output", "error"),
    [
        ("```sql\nSELEC name FROM items\n```", 'near "SELEC": syntax error'),
        ("```sql\nSELECT nmae FROM items\n```", "no such column: nmae"),
        ("```sql\nSELECT * FROM customers\n```", "no such table: customers"),
        ("```sql\nSELECT 1; SELECT 2\n```", "2 statements; only one SELECT is allowed"),
        ("```sql\n\n```", "no SQL found in the output"),
        ("The items are tea and cup.", "no SQL found in the output"),
    ],
)
async def test_failing_sql_is_dropped_with_its_error(db, output, error):
    result = await SQLExecutionGate(database=db).check(sql_sample(output))
    assert not result.keep
    assert result.annotations["exec_pass"] is False
    assert error in result.annotations["exec_error"]
    assert error in result.reason
    # drop_on_error: false keeps the sample, still recording the failure
    kept = await SQLExecutionGate(database=db, drop_on_error=False).check(sql_sample(output))
    assert kept.keep and kept.annotations["exec_pass"] is False


async def test_skip_without_sql_keeps_prose_unchecked(db):
    gate = SQLExecutionGate(database=db, skip_without_sql=True)
    result = await gate.check(sql_sample("The items are tea and cup."))
    assert result.keep and result.annotations == {}


WRITES = [
    "INSERT INTO items VALUES (9, 'x', 1.0)",
    "UPDATE items SET price = 0",
    "DELETE FROM items",
    "DROP TABLE items",
    "CREATE TABLE evil (x)",
    "CREATE TEMP TABLE evil (x)",
    "ALTER TABLE items ADD COLUMN x",
    "REPLACE INTO items VALUES (1, 'x', 1.0)",
    "ATTACH DATABASE ':memory:' AS other",
    "PRAGMA query_only = OFF",
    "PRAGMA writable_schema = ON",
    "VACUUM",
    "BEGIN",
    "WITH a AS (SELECT 1) DELETE FROM items",
    "WITH a AS (SELECT 1) INSERT INTO items SELECT 9, 'x', 1.0 FROM a",
    "SELECT 1; DROP TABLE items",
    "SELECT load_extension('evil')",
    # sqlite_master may be "updated" only as SQLite itself needs for json_each: never written
    "UPDATE sqlite_master SET sql = 'CREATE TABLE items (x)'",
    "WITH a AS (SELECT 1) UPDATE sqlite_master SET sql = 'CREATE TABLE items (x)'",
    "WITH a AS (SELECT 1) DELETE FROM sqlite_master",
    "WITH a AS (SELECT 1) INSERT INTO sqlite_master VALUES ('table', 'x', 'x', 0, '')",
    "PRAGMA writable_schema = ON; UPDATE sqlite_master SET sql = 'x'",
    "WITH j AS (SELECT value FROM json_each('[9]')) INSERT INTO items SELECT value, 'x', 1 FROM j",
    "WITH j AS (SELECT value FROM json_each('[1]')) UPDATE items SET price = 0",
]


@pytest.mark.parametrize("sql", WRITES)
async def test_writes_and_schema_changes_are_blocked(db, sql):
    before = digest(db)
    result = await SQLExecutionGate(database=db).check(sql_sample(f"```sql\n{sql}\n```"))
    assert not result.keep
    assert result.annotations["exec_pass"] is False and result.annotations["exec_error"]
    assert digest(db) == before
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("SELECT count(*) FROM items").fetchone() == (4,)
        assert conn.execute("SELECT count(*) FROM sqlite_master").fetchone() == (1,)
    finally:
        conn.close()


def test_read_only_even_without_the_statement_check(db):
    # The authorizer and the read-only connection stop a write the prefix check lets through.
    result = run_query(db, "WITH x AS (SELECT 1) UPDATE items SET price = 0")
    assert not result.ok and "not allowed" in result.error


@pytest.mark.parametrize(
    "sql",
    [
        "WITH x AS (SELECT 1) UPDATE sqlite_master SET sql = 'CREATE TABLE items (x)'",
        "WITH x AS (SELECT 1) UPDATE sqlite_master SET name = 'gone' WHERE name = 'items'",
        "WITH x AS (SELECT 1) DELETE FROM sqlite_master",
    ],
)
def test_sqlite_master_cannot_be_written_even_past_the_statement_check(db, sql):
    before = digest(db)
    assert run_query(db, "SELECT value FROM json_each('[1]')").ok  # the vtable is set up
    result = run_query(db, sql)
    assert not result.ok and result.error
    assert digest(db) == before


@pytest.mark.parametrize(
    ("sql", "rows"),
    [
        ("SELECT value FROM json_each('[1,2]')", [(1,), (2,)]),
        ("SELECT key, value FROM json_each('{\"a\": 1}')", [("a", 1)]),
        ("SELECT count(*) FROM json_tree('{\"a\": [1, 2]}')", [(4,)]),
        (
            "SELECT i.name FROM items i JOIN json_each('[1, 3]') j ON i.id = j.value ORDER BY 1",
            [("pot",), ("tea",)],
        ),
    ],
)
async def test_json_table_functions_work(db, sql, rows):
    before = digest(db)
    result = await SQLExecutionGate(database=db).check(sql_sample(f"```sql\n{sql}\n```"))
    assert result.keep and result.annotations["exec_error"] is None
    assert (await SQLExecutionGate(database=db).run(sql)).rows == rows
    assert digest(db) == before


@pytest.fixture
def big_db(tmp_path: Path) -> Path:
    path = tmp_path / "big.db"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA synchronous = OFF")  # test data: no need to wait for the disk
    with conn:
        conn.execute("CREATE TABLE t (x INTEGER)")
        conn.executemany("INSERT INTO t VALUES (?)", [(i,) for i in range(1000)])
    conn.close()
    return path


async def test_a_huge_result_is_stopped_in_time_and_reported(big_db):
    gate = SQLExecutionGate(database=big_db, timeout_s=2)
    assert gate.max_result_bytes == 50_000_000
    for sql, error in [
        # 1000 rows of 900 kB: stopped at the 50 MB result limit, not fetched whole (900 MB)
        ("SELECT zeroblob(900000) FROM t", "result too large"),
        # one value over the 1 MB string/blob limit
        ("SELECT zeroblob(9000000) FROM t", "string or blob too big"),
        ("SELECT length(zeroblob(2000000)) FROM t", "string or blob too big"),
    ]:
        t0 = time.monotonic()
        result = await gate.check(sql_sample(sql))
        assert time.monotonic() - t0 < 2 + 1.0
        assert not result.keep and error in result.annotations["exec_error"]
    small = run_query(big_db, "SELECT zeroblob(100000) FROM t", max_result_bytes=1_000_000)
    assert not small.ok and small.error.startswith("result too large")
    fits = run_query(big_db, "SELECT zeroblob(1000) FROM t", max_result_bytes=2_000_000)
    assert fits.ok and len(fits.rows) == 1000


@pytest.mark.slow
def test_the_deadline_holds_while_rows_are_fetched(big_db, monkeypatch):
    # Time spent outside SQLite (turning rows into Python values) counts too.
    def slow(value):
        time.sleep(0.002)
        return 8

    monkeypatch.setattr(sql_gate_module, "_value_size", slow)
    t0 = time.monotonic()
    result = run_query(big_db, "SELECT x FROM t", timeout_s=0.3)
    assert time.monotonic() - t0 < 0.3 + 1.0
    assert result.error == "timeout: stopped after 0.3 s"


@pytest.mark.slow
async def test_queries_per_gate_are_limited(db, monkeypatch):
    running = peak = 0
    real = sql_gate_module.run_query

    def counting(*args, **kwargs):
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        try:
            time.sleep(0.02)
            return real(*args, **kwargs)
        finally:
            running -= 1

    monkeypatch.setattr(sql_gate_module, "run_query", counting)
    gate = SQLExecutionGate(database=db)
    results = await asyncio.gather(*(gate.check(sql_sample(f"SELECT {i}")) for i in range(12)))
    assert all(r.keep for r in results) and peak == 2
    peak = 0
    one = SQLExecutionGate(database=db, max_concurrent=1)
    await asyncio.gather(*(one.check(sql_sample(f"SELECT {i}")) for i in range(4)))
    assert peak == 1


@pytest.mark.slow
async def test_runaway_recursive_cte_is_stopped_without_blocking_the_loop(db):
    gate = SQLExecutionGate(database=db, timeout_s=0.5)
    runaway = (
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c"
    )
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    task = asyncio.create_task(ticker())
    t0 = time.monotonic()
    result = await gate.check(sql_sample(f"```sql\n{runaway}\n```"))
    elapsed = time.monotonic() - t0
    task.cancel()
    assert elapsed < 0.5 + 1.0
    assert not result.keep
    assert result.annotations["exec_error"] == "timeout: stopped after 0.5 s"
    assert ticks >= 10  # the event loop kept running while the query did


async def test_many_queries_run_concurrently(db):
    gate = SQLExecutionGate(database=db)
    results = await asyncio.gather(
        *(gate.check(sql_sample(f"SELECT {i} FROM items")) for i in range(20))
    )
    assert all(r.keep and r.annotations["exec_rows"] == 4 for r in results)


# --- gold SQL --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("predicted", "gold", "match"),
    [
        (
            "SELECT name FROM items WHERE price < 6",
            "SELECT name FROM items WHERE price = 5.5",
            True,
        ),
        # order does not matter without ORDER BY in the gold query ...
        ("SELECT name FROM items ORDER BY name", "SELECT name FROM items", True),
        # ... and does with it
        ("SELECT name FROM items ORDER BY name", "SELECT name FROM items ORDER BY price", False),
        (
            "SELECT name FROM items ORDER BY price, id",
            "SELECT name FROM items ORDER BY price, id",
            True,
        ),
        # multisets, not sets: duplicates count
        ("SELECT price FROM items", "SELECT DISTINCT price FROM items", False),
        ("SELECT avg(price) FROM items", "SELECT sum(price) / 4.0 FROM items", True),
        ("SELECT count(*) FROM items", "SELECT 4.0", True),
        ("SELECT name FROM items", "SELECT name, price FROM items", False),
        ("SELECT name FROM items WHERE price > 100", "SELECT name FROM items", False),
    ],
)
async def test_gold_match(db, predicted, gold, match):
    result = await SQLExecutionGate(database=db).check(sql_sample(predicted, gold_sql=gold))
    assert result.keep  # a mismatch alone does not drop by default
    assert result.annotations["gold_match"] is match


async def test_gold_from_reference_output_and_mismatch_drop(db):
    sample = sql_sample("SELECT name FROM items")
    sample.reference_output = "```sql\nSELECT name FROM items WHERE id = 1\n```"
    gate = SQLExecutionGate(database=db, drop_on_gold_mismatch=True)
    result = await gate.check(sample)
    assert not result.keep and result.annotations["gold_match"] is False
    assert "differs from the gold" in result.reason
    plain = SQLExecutionGate(database=db, reference_as_gold=False)
    assert "gold_match" not in (await plain.check(sample)).annotations


async def test_gold_errors_and_failed_predictions(db):
    gate = SQLExecutionGate(database=db)
    bad_gold = await gate.check(sql_sample("SELECT 1", gold_sql="SELECT nope FROM items"))
    assert bad_gold.keep and "gold_match" not in bad_gold.annotations
    assert "no such column" in bad_gold.annotations["gold_error"]
    failed = await gate.check(sql_sample("SELECT nope", gold_sql="SELECT 1"))
    assert failed.annotations["gold_match"] is False
    big = SQLExecutionGate(database=db, max_rows=2)
    cut = await big.check(sql_sample("SELECT * FROM items", gold_sql="SELECT * FROM items"))
    assert "max_rows" in cut.annotations["gold_error"]


# --- configuration ---------------------------------------------------------------------------


def test_sql_gate_from_config_resolves_the_database(db, tmp_path, monkeypatch):
    (gate,) = build_gates([{"type": "sql", "database": str(db), "timeout_s": 2}])
    assert gate.name == "sql" and gate.timeout_s == 2.0
    # relative: first the base directory (the config file's), then the current directory
    (gate,) = build_gates([{"type": "sql", "database": "shop.db"}], base_dir=tmp_path)
    assert gate.database == tmp_path / "shop.db"
    monkeypatch.chdir(tmp_path)
    (gate,) = build_gates([{"type": "sql", "database": "shop.db", "name": "shop"}])
    assert gate.name == "shop"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"timeout_s": 0}, "timeout_s must be a number of seconds in (0, 600]"),
        ({"timeout_s": "2"}, "timeout_s must be a number"),
        ({"drop_on_error": "no"}, "drop_on_error must be true or false"),
        ({"max_rows": 0}, "max_rows must be an integer >= 1"),
        ({"max_result_bytes": 0}, "max_result_bytes must be an integer >= 1"),
        ({"max_result_bytes": 1.5}, "max_result_bytes must be an integer >= 1"),
        ({"max_concurrent": 0}, "max_concurrent must be an integer >= 1"),
        ({"max_concurrent": True}, "max_concurrent must be an integer >= 1"),
        ({"timeout": 2}, "unknown option 'timeout'; known: database, timeout_s"),
        ({"database": 3}, "database must be a path"),
    ],
)
def test_sql_gate_option_errors(db, options, message):
    with pytest.raises(ConfigError, match=r"^gates\[0\] \(sql\): ") as exc:
        build_gates([{"type": "sql", "database": str(db), **options}])
    assert message in str(exc.value)


def test_a_file_that_is_not_a_database_is_a_config_error(tmp_path):
    bad = tmp_path / "notes.db"
    bad.write_text("not a database, just text " * 100, encoding="utf-8")
    with pytest.raises(ConfigError, match=r"is not usable|cannot be opened"):
        build_gates([{"type": "sql", "database": str(bad)}])


# --- the example and the simulator's Text2SQL samples ----------------------------------------


def load_build_db():
    spec = importlib.util.spec_from_file_location("build_db", EXAMPLE_DIR / "build_db.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def example(tmp_path: Path) -> Path:
    out = tmp_path / "example"
    assert load_build_db().main(["--out", str(out)]) == 0
    return out


def test_build_db_is_deterministic(example, tmp_path, capsys):
    conn = sqlite3.connect(example / "shop.db")
    try:
        tables = [
            r[0]
            for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY 1")
        ]
        rows = sum(conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in tables)
    finally:
        conn.close()
    assert tables == ["customers", "order_items", "orders", "products"]
    assert 40 <= rows <= 80
    slices = read_jsonl(example / "schema_slices.jsonl")
    assert len(slices) == 4 and all("CREATE TABLE" in s["content"] for s in slices)
    again = tmp_path / "again"
    load_build_db().main(["--out", str(again)])
    text = (example / "schema_slices.jsonl").read_bytes()
    assert (again / "schema_slices.jsonl").read_bytes() == text
    shipped = EXAMPLE_DIR / "schema_slices.jsonl"
    if shipped.exists():
        assert shipped.read_bytes() == text


def test_example_config_builds_its_gates(tmp_path, monkeypatch):
    # The config's paths are relative to the directory the README runs it from.
    copy = tmp_path / "examples" / "text2sql"
    shutil.copytree(EXAMPLE_DIR, copy, ignore=shutil.ignore_patterns("shop.db", "__pycache__"))
    load_build_db().main(["--out", str(copy)])
    monkeypatch.chdir(tmp_path)
    config = load_config(copy / "config.json")
    assert config.system_prompt == text2sql_system_prompt("SQLite")
    names = [g.name for g in build_gates(config)]
    assert names[-2:] == ["sql", "join_count"] and "grounding" not in names


def test_parse_create_tables():
    build_db = load_build_db()
    doc = "\n\n".join([build_db.ORDERS_DDL, build_db.ORDER_ITEMS_DDL, "Some notes."])
    orders, items = parse_create_tables(doc)
    assert orders.name == "orders" and [c for c, _ in orders.columns][:2] == ["id", "customer_id"]
    assert orders.foreign_keys == [("customer_id", "customers", "id")]
    assert [c for c, _ in items.columns] == ["order_id", "product_id", "quantity", "unit_price"]
    assert ("product_id", "products", "id") in items.foreign_keys


async def test_simulator_text2sql_samples_run_mostly_and_deterministically(example):
    gate = SQLExecutionGate(database=example / "shop.db")
    passed = failed = 0
    for slice_ in read_jsonl(example / "schema_slices.jsonl"):
        document = slice_["content"]
        samples = text2sql_samples("teacher", document, 8)
        assert samples == text2sql_samples("teacher", document, 8)
        assert len(samples) == 8
        assert len({s["instruction"] for s in samples}) == 8
        for s in samples:
            assert s["output"].startswith("```sql\n") and "CREATE TABLE" in s["input"]
            result = await gate.check(sql_sample(s["output"]))
            passed += result.keep
            failed += not result.keep
    assert failed >= 1 and passed >= 3 * failed
    assert text2sql_samples("teacher", "第一条 为了规范保险活动，制定本法。", 3) == []


# --- end to end ------------------------------------------------------------------------------


@pytest.fixture
def text2sql_simulator(monkeypatch):
    """Make the simulator answer schema documents with Text2SQL pairs (the generation hook)."""
    original = simulator_module.generation_samples

    def generation_samples(model: str, document: str, n: int) -> list[dict[str, str]]:
        return text2sql_samples(model, document, n) or original(model, document, n)

    monkeypatch.setattr(simulator_module, "generation_samples", generation_samples)


async def test_text2sql_job_through_the_pipeline(sim, example, tmp_path, text2sql_simulator):
    sim.config.keep_prompts = True
    cfg = sim_config(
        sim,
        output_dir=str(tmp_path / "out"),
        samples_per_slice=6,
        system_prompt=text2sql_system_prompt(),
        gates=[
            {"type": "rules", "exclude": ["grounding"]},
            {"type": "sql", "database": str(example / "shop.db"), "timeout_s": 2},
        ],
        min_exec_pass_rate=0.99,
    )
    result = await DatasetDistillationPipeline(cfg, show_progress=False).run(
        example / "schema_slices.jsonl"
    )
    raw = read_jsonl(result.output_dir / "generated_raw.jsonl")
    assert raw and all("exec_pass" in r["annotations"] for r in raw)
    dropped = [r for r in raw if r["drop_reason"] == "gate:sql"]
    assert dropped and all(r["annotations"]["exec_pass"] is False for r in dropped)
    assert all(r["drop_detail"].startswith("SQL failed: ") for r in dropped)
    judged = {(s["instruction"], s["output"]) for s in judged_samples(sim.prompts)}
    for r in raw:
        assert ((r["instruction"], r["output"]) in judged) is (r["drop_reason"] != "gate:sql")
    meta = result.metadata
    assert meta["counts"]["dropped"]["gate:sql"] == len(dropped)
    rate = (len(raw) - len(dropped)) / len(raw)
    assert meta["quality_gates"]["exec_pass_rate"] == round(rate, 4)
    # the run-level floor reads the gate's exec_pass annotations
    assert result.quality_problems and "min_exec_pass_rate" in result.quality_problems[0]
    train = read_jsonl(result.output_dir / "train.jsonl")
    assert train and all(row["conversations"][1]["value"].startswith("```sql") for row in train)
