"""Text2SQL samples for a generation prompt whose document holds CREATE TABLE statements.

Each is a question, the schema it needs and a ```sql block; about 1 in 5 is broken (unknown
column, syntax error, a write) so that the SQL execution gate has work in a dry run.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Any

from ..llm.prompts import detect_language
from .seeds import seed_of, unit

_T2S_CREATE_RE = re.compile(
    r"CREATE\s+TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?[\"`\[]?(\w+)[\"`\]]?\s*\(", re.IGNORECASE
)


_T2S_CONSTRAINT_RE = re.compile(r"^(?:PRIMARY|FOREIGN|UNIQUE|CHECK|CONSTRAINT)\b", re.IGNORECASE)


_T2S_FK_RE = re.compile(
    r"FOREIGN\s+KEY\s*\(\s*(\w+)\s*\)\s*REFERENCES\s+(\w+)\s*\(\s*(\w+)\s*\)", re.IGNORECASE
)


_T2S_INLINE_FK_RE = re.compile(r"REFERENCES\s+(\w+)\s*\(\s*(\w+)\s*\)", re.IGNORECASE)


_T2S_NUMERIC = ("INT", "REAL", "NUM", "DEC", "FLOAT", "DOUBLE")


@dataclass
class _T2STable:
    name: str
    ddl: str
    columns: list[tuple[str, str]]  # (name, declared type)
    foreign_keys: list[tuple[str, str, str]]  # (column, other table, other column)

    def numeric(self) -> list[str]:
        return [
            c
            for c, t in self.columns
            if any(k in t.upper() for k in _T2S_NUMERIC)
            and c != "id"
            and not c.endswith("_id")
            and not c.startswith("is_")
        ]

    def text(self) -> list[str]:
        return [c for c, t in self.columns if "CHAR" in t.upper() or "TEXT" in t.upper()]

    def key(self) -> str:
        return self.columns[0][0] if self.columns else "rowid"


def _t2s_split_top(body: str) -> list[str]:
    """Split a column list at commas outside parentheses."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(body):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(body[start:i])
            start = i + 1
    parts.append(body[start:])
    return [p.strip() for p in parts if p.strip()]


def parse_create_tables(document: str) -> list[_T2STable]:
    """The tables declared by CREATE TABLE statements in ``document``, in order."""
    tables: list[_T2STable] = []
    for m in _T2S_CREATE_RE.finditer(document):
        depth, end = 1, None
        for i in range(m.end(), len(document)):
            if document[i] == "(":
                depth += 1
            elif document[i] == ")":
                depth -= 1
                if depth == 0:
                    end = i
                    break
        if end is None:
            continue
        ddl_end = end + 1
        if document[ddl_end : ddl_end + 1] == ";":
            ddl_end += 1
        columns, fks = [], []
        for part in _t2s_split_top(document[m.end() : end]):
            fk = _T2S_FK_RE.search(part)
            if fk:
                fks.append((fk.group(1), fk.group(2), fk.group(3)))
            if _T2S_CONSTRAINT_RE.match(part):
                continue
            words = part.split()
            col = words[0].strip('"`[]')
            columns.append((col, words[1] if len(words) > 1 else ""))
            inline = _T2S_INLINE_FK_RE.search(part)
            if inline:
                fks.append((col, inline.group(1), inline.group(2)))
        if columns:
            tables.append(_T2STable(m.group(1), document[m.start() : ddl_end], columns, fks))
    return tables


def _t2s_pair(
    kind: str, table: _T2STable, tables: dict[str, _T2STable], rng: random.Random, zh: bool
) -> tuple[str, str, list[_T2STable]] | None:
    """(question, sql, tables used) of one kind for ``table``, or None when it does not fit."""
    t, nums, texts = table.name, table.numeric(), table.text()
    fmt: dict[str, Any] = {"t": t}
    used = [table]
    if kind in ("filter", "avg", "top", "max"):
        if not nums:
            return None
        fmt["n"] = rng.choice(nums)
        if kind == "filter":
            fmt["c"] = rng.choice(texts) if texts else table.key()
            fmt["v"] = rng.choice((1, 5, 10, 20, 50, 100))
    elif kind == "group":
        if not texts:
            return None
        fmt["c"] = rng.choice(texts)
    elif kind == "join":
        fks = [fk for fk in table.foreign_keys if fk[1] in tables]
        if not fks:
            return None
        fmt["col"], other, fmt["pcol"] = rng.choice(fks)
        parent = tables[other]
        fmt["pc"] = (parent.text() or [fmt["pcol"]])[0]
        fmt["p"] = other
        used.append(parent)
    question = _T2S_TEMPLATES[kind][1 if zh else 0].format(**fmt)
    return question, _T2S_SQL[kind].format(**fmt), used


# The query each question kind asks for (fields as in ``_T2S_TEMPLATES``, plus the join's keys).
_T2S_SQL: dict[str, str] = {
    "count": "SELECT COUNT(*) FROM {t};",
    "filter": "SELECT {c} FROM {t} WHERE {n} > {v};",
    "avg": "SELECT AVG({n}) FROM {t};",
    "top": "SELECT * FROM {t} ORDER BY {n} DESC LIMIT 3;",
    "max": "SELECT MAX({n}) FROM {t};",
    "group": "SELECT {c}, COUNT(*) AS n FROM {t} GROUP BY {c} ORDER BY n DESC;",
    "join": (
        "SELECT p.{pc}, COUNT(*) AS n FROM {t} AS c JOIN {p} AS p "
        "ON c.{col} = p.{pcol} GROUP BY p.{pcol} ORDER BY n DESC;"
    ),
}


def _template_regex(template: str) -> re.Pattern[str]:
    """A question template as a regex whose groups are its fields."""
    parts = re.split(r"\{(\w+)\}", template)
    out = []
    for i, part in enumerate(parts):
        if i % 2:
            out.append(f"(?P<{part}>\\w+)")
        else:
            out.append(re.escape(part))
    return re.compile("^" + "".join(out) + "$")


def sql_for_question(question: str, schema: str) -> str | None:
    """The query a question of ours asks for, given the schema it came with; None otherwise.

    The reverse of the question templates: what a student that learned the Text2SQL pairs of a
    dry run answers. A join needs the foreign key, read from ``schema``.
    """
    # The numbered repeats of very small schemas ("... have? (3)") ask the same query.
    text = re.sub(r"\s*\(\d+\)$", "", question.strip())
    for kind, templates in _T2S_TEMPLATES.items():
        for template in templates:
            m = _template_regex(template).match(text)
            if m is None:
                continue
            fmt: dict[str, Any] = dict(m.groupdict())
            if kind == "join":
                by_name = {t.name: t for t in parse_create_tables(schema)}
                table = by_name.get(fmt["t"])
                fks = [fk for fk in (table.foreign_keys if table else []) if fk[1] == fmt["p"]]
                if not fks:
                    return None
                fmt["col"], _, fmt["pcol"] = fks[0]
            return _T2S_SQL[kind].format(**fmt)
    return None


def _t2s_break(sql: str, table: _T2STable, u: float, zh: bool) -> tuple[str | None, str]:
    """A broken variant of ``sql``: (new question or None to keep it, new sql)."""
    variant = int(u * 3) % 3
    if variant == 0:  # a column that does not exist
        col = table.columns[-1][0]
        return None, sql.replace("SELECT ", f"SELECT {col}_nme, ", 1)
    if variant == 1:  # a syntax error
        return None, sql.replace("SELECT", "SELEC", 1)
    question = (
        f"删除 {table.name} 表中 {table.key()} 为空的记录。"
        if zh
        else f"Delete the rows of {table.name} that have no {table.key()}."
    )
    return question, f"DELETE FROM {table.name} WHERE {table.key()} IS NULL;"


def text2sql_samples(model: str, document: str, n: int) -> list[dict[str, str]]:
    """``n`` Text2SQL samples for a document holding CREATE TABLE statements, else []."""
    if "create table" not in document.lower():
        return []
    tables = parse_create_tables(document)
    if not tables:
        return []
    by_name = {t.name: t for t in tables}
    rng = random.Random(seed_of("t2s", model, str(n), document))
    zh = detect_language(document) == "zh"
    kinds = list(_T2S_TEMPLATES)
    samples: list[dict[str, str]] = []
    seen: set[str] = set()
    attempt = 0
    while len(samples) < n and attempt < 20 * n:
        table = tables[attempt % len(tables)]
        kind = kinds[(attempt // len(tables) + rng.randrange(len(kinds))) % len(kinds)]
        attempt += 1
        pair = _t2s_pair(kind, table, by_name, rng, zh)
        if pair is None:
            continue
        question, sql, used = pair
        u = unit("t2s-broken", model, document, question)
        if u < 0.2:
            new_question, sql = _t2s_break(sql, table, u / 0.2, zh)
            question = new_question or question
        if question in seen:
            continue
        seen.add(question)
        schema = "\n\n".join(dict.fromkeys(t.ddl for t in used))
        samples.append({"instruction": question, "input": schema, "output": f"```sql\n{sql}\n```"})
    k = 0
    while len(samples) < n:  # very small schemas: repeat the count question, numbered
        k += 1
        t = tables[k % len(tables)].name
        samples.append(
            {
                "instruction": f"{_T2S_TEMPLATES['count'][1 if zh else 0].format(t=t)} ({k})",
                "input": tables[k % len(tables)].ddl,
                "output": f"```sql\nSELECT COUNT(*) FROM {t};\n```",
            }
        )
    return samples


_T2S_TEMPLATES: dict[str, tuple[str, str]] = {
    # kind: (English question, Chinese question)
    "count": ("How many rows does the {t} table have?", "{t} 表中一共有多少条记录？"),
    "filter": (
        "List the {c} of the rows in {t} whose {n} is greater than {v}.",
        "列出 {t} 表中 {n} 大于 {v} 的记录的 {c}。",
    ),
    "avg": ("What is the average {n} in the {t} table?", "{t} 表中 {n} 的平均值是多少？"),
    "group": (
        "For each {c} in {t}, how many rows are there? Most first.",
        "按 {c} 分组统计 {t} 表的记录数，按数量从多到少排列。",
    ),
    "top": (
        "Which 3 rows of {t} have the highest {n}? Show all their columns.",
        "{t} 表中 {n} 最高的 3 条记录是哪些？列出全部字段。",
    ),
    "max": ("What is the largest {n} in the {t} table?", "{t} 表中最大的 {n} 是多少？"),
    "join": (
        "For each row of {p} (shown by its {pc}), how many rows of {t} refer to it?",
        "对 {p} 表的每条记录（显示 {pc}），统计 {t} 表中引用它的记录数。",
    ),
}
