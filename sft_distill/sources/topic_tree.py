"""A topic tree: the topic, its sub-topics, questions a leaf may carry; read, checked, saved.

Tree files (``--tree``): the canonical form, as saved,
``{"name": "体育与运动", "children": [{"name": "足球", "children": [...]}, ...]}``, where a leaf
may carry ``"questions": ["...", ...]`` (answered as given; more are asked for only while a leaf
has fewer than ``questions_per_tag``) and a child may be a plain string; or the short form,
nested objects and lists of strings with a single root:
``{"体育与运动": {"足球": ["规则", "历史"], "篮球": null}}``. A supplied tree is used as it is:
it is not expanded further, so ``levels`` and ``tags_per_level`` do not apply.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from ..errors import InputError, file_error
from ..ids import stable_id, text_digest
from ..llm.prompts import TOPIC_PATH_SEP
from ..outputs.writers import write_json_atomic
from ..text import casefold_spaced

TREE_FILENAME = "topic_tree.json"


MAX_NAME_CHARS = 200


MAX_QUESTION_CHARS = 2000


MAX_TREE_DEPTH = 32


# Stripped from both ends of a name or question before comparing (not inside: "C" vs "C++").
_EDGE_PUNCT = " \t.。!！?？;；,，、:：\"'“”‘’「」『』《》()（）[]【】"


class TopicTree(BaseModel):
    """A topic and its sub-topics; a leaf may carry questions of its own."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    children: list[TopicTree] = Field(default_factory=list)
    questions: list[str] = Field(default_factory=list)
    _source: Path | None = PrivateAttr(default=None)  # the file it was loaded from

    def __eq__(self, other: object) -> bool:
        # The same content is the same tree, wherever it was loaded from.
        if not isinstance(other, TopicTree):
            return NotImplemented
        return self.to_json() == other.to_json()

    __hash__ = None  # type: ignore[assignment]  # mutable, like any BaseModel

    def leaves(self) -> list[tuple[tuple[str, ...], TopicTree]]:
        """Every leaf with its full path from the root, in tree order."""
        out: list[tuple[tuple[str, ...], TopicTree]] = []
        stack: list[tuple[tuple[str, ...], TopicTree]] = [((self.name,), self)]
        while stack:
            path, node = stack.pop()
            if not node.children:
                out.append((path, node))
            # reversed so that pops come out in tree order
            stack.extend(((*path, c.name), c) for c in reversed(node.children))
        return out

    def depth(self) -> int:
        """Levels below this node (0 for a leaf)."""
        return 1 + max(c.depth() for c in self.children) if self.children else 0

    def to_json(self) -> dict[str, Any]:
        """The canonical JSON form, leaving out empty ``children``/``questions``."""
        out: dict[str, Any] = {"name": self.name}
        if self.children:
            out["children"] = [c.to_json() for c in self.children]
        if self.questions:
            out["questions"] = list(self.questions)
        return out

    def digest(self) -> str:
        """Hex blake2b of the canonical JSON (identifies a supplied tree, whatever its form)."""
        text = json.dumps(self.to_json(), ensure_ascii=False, sort_keys=True)
        return text_digest(text, size=16).hex()

    @classmethod
    def from_json(cls, data: Any) -> TopicTree:
        """A tree from its canonical or short JSON form.

        Raises:
            ValueError: not a tree; the message says where.
        """
        if isinstance(data, list):
            raise ValueError(
                'a list has no root topic; wrap it as {"<root topic>": [...]} or '
                '{"name": "<root topic>", "children": [...]}'
            )
        if isinstance(data, dict) and not _is_canonical(data) and len(data) != 1:
            raise ValueError(
                f"expected a single root topic, found {len(data)} keys "
                f"({', '.join(map(repr, list(data)[:5]))}); wrap them in one root"
            )
        return _parse_node(data, (), 0)

    def save(self, path: str | Path) -> None:
        """Write the canonical JSON form (atomically, creating the directory).

        Raises:
            OutputError: the file cannot be written.
        """
        p = Path(path)
        with contextlib.suppress(OSError):  # write_json_atomic reports the file it cannot write
            p.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(p, self.to_json())

    @classmethod
    def load(cls, path: str | Path) -> TopicTree:
        """Read a tree file (canonical or short form, UTF-8, BOM allowed).

        Raises:
            InputError: the file is missing, unreadable, not JSON or not a tree; names the file.
        """
        p = Path(path)
        try:
            raw = p.read_bytes()
        except OSError as exc:
            raise file_error(
                p,
                exc,
                missing="no such tree file",
                directory="is a directory, not a tree file",
                failed="cannot read",
            ) from None
        try:
            data = json.loads(raw.decode("utf-8-sig"))
        except UnicodeDecodeError:
            raise InputError(f"{p}: not UTF-8 text") from None
        except json.JSONDecodeError as exc:
            raise InputError(f"{p}:{exc.lineno}: invalid JSON: {exc.msg}") from None
        except RecursionError:
            raise InputError(f"{p}: JSON nested too deeply") from None
        try:
            tree = cls.from_json(data)
        except ValueError as exc:
            raise InputError(f"{p}: {exc}") from None
        tree._source = p.resolve()
        return tree


def _is_canonical(value: dict[str, Any]) -> bool:
    return isinstance(value.get("name"), str) and set(value) <= {"name", "children", "questions"}


def _where(path: tuple[str, ...]) -> str:
    return f"at {TOPIC_PATH_SEP.join(path)!r}" if path else "at the root"


def clean_name(text: str) -> str:
    """A topic name with whitespace collapsed and edge punctuation removed."""
    return " ".join(text.split()).strip(_EDGE_PUNCT)


def name_key(text: str) -> str:
    """What two names or questions must differ in: NFKC, case, spaces, edge punctuation."""
    return casefold_spaced(text).strip(_EDGE_PUNCT)


def _parse_node(value: Any, parent: tuple[str, ...], depth: int) -> TopicTree:
    if depth > MAX_TREE_DEPTH:
        raise ValueError(f"{_where(parent)}: nested deeper than {MAX_TREE_DEPTH} levels")
    questions: list[str] = []
    children_raw: Any
    if isinstance(value, str):
        raw_name, children_raw = value, None
    elif isinstance(value, dict) and _is_canonical(value):
        raw_name, children_raw = value["name"], value.get("children")
        raw_questions = value.get("questions") or []
        if not isinstance(raw_questions, list) or not all(
            isinstance(q, str) for q in raw_questions
        ):
            raise ValueError(
                f"{_where((*parent, raw_name))}: 'questions' must be a list of strings"
            )
        seen: set[str] = set()
        for q in raw_questions:
            if q.strip() and name_key(q) not in seen:  # a repeated question would be answered twice
                seen.add(name_key(q))
                questions.append(q.strip())
    elif isinstance(value, dict) and len(value) == 1:
        ((raw_name, children_raw),) = value.items()
    elif isinstance(value, dict):
        raise ValueError(
            f"{_where(parent)}: an object is either "
            '{"name": ..., "children": [...], "questions": [...]} or {"<topic>": <sub-topics>}, '
            f"found keys {sorted(value)[:5]}"
        )
    else:
        raise ValueError(
            f"{_where(parent)}: expected a topic name or object, found {type(value).__name__}"
        )
    name = clean_name(raw_name)
    if not name:
        raise ValueError(f"{_where(parent)}: empty topic name")
    if len(name) > MAX_NAME_CHARS:
        raise ValueError(f"{_where(parent)}: topic name longer than {MAX_NAME_CHARS} characters")
    path = (*parent, name)
    children = [_parse_node(c, path, depth + 1) for c in _children_items(children_raw, path)]
    seen_names: dict[str, str] = {}
    for child in children:
        if name_key(child.name) in seen_names:
            raise ValueError(f"{_where(path)}: two sub-topics named {child.name!r}")
        seen_names[name_key(child.name)] = child.name
    if children and questions:
        raise ValueError(
            f"{_where(path)}: questions belong on leaves, not on a topic with children"
        )
    return TopicTree(name=name, children=children, questions=questions)


def _children_items(raw: Any, path: tuple[str, ...]) -> list[Any]:
    """The sub-topic values of a node: a list as is, an object as one-key objects, null as none."""
    if raw is None or raw == "":
        return []
    if isinstance(raw, list):
        return raw
    if isinstance(raw, dict):
        if _is_canonical(raw):
            return [raw]
        return [{k: v} for k, v in raw.items()]
    if isinstance(raw, str):
        return [raw]
    raise ValueError(
        f"{_where(path)}: sub-topics must be a list, an object or null, found {type(raw).__name__}"
    )


def _pruned(node: TopicTree, failed: set[int]) -> TopicTree | None:
    """A copy without the nodes whose expansion failed (nor parents left with no children)."""
    if id(node) in failed:
        return None
    if not node.children:
        return TopicTree(name=node.name, questions=list(node.questions))
    kept = [c for c in (_pruned(child, failed) for child in node.children) if c is not None]
    return TopicTree(name=node.name, children=kept) if kept else None


def topic_id(path: Sequence[str]) -> str:
    """The slice id of a topic node: ``"topic:" + stable_id(*path)``."""
    return "topic:" + stable_id(*path)


def _leaf_metadata(path: Sequence[str]) -> dict[str, Any]:
    meta: dict[str, Any] = {"topic_path": TOPIC_PATH_SEP.join(path)}
    for level, name in enumerate(path[1:], start=1):
        meta[f"topic_l{level}"] = name
    return meta
