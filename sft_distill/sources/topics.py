"""Topic-tree distillation: samples from a topic alone, no documents needed.

``sft-distill topics --topic "体育与运动" --levels 2 --tags-per-level 10 --questions-per-tag 10``

1. The teacher expands the topic level by level. Each request carries the full tag path
   ("体育与运动 > 足球"), the node's siblings and the sub-topics already made for it, and asks
   for sub-topics that repeat none of them (duplicates and empty names are dropped; a node that
   gets fewer than asked keeps what it got, counted in ``counts["short_expansions"]``). Items
   may be strings or objects with a name (``{"name": …}``, ``{"topic": …}``, or one string
   field). A reply with nothing usable in it (an empty list for a node that has no sub-topic
   yet, or only objects without a name) is asked again within the retry budget and is not
   cached; if it stays so, the expansion failed (a ``topic_expand`` failure, retried by a
   rerun). Leaves are asked for questions the same way.
2. As soon as the tree is complete it is saved as JSON (``OUTPUT/topic_tree.json``, or
   ``tree_out``), so it can be edited and given back with ``--tree``. A node whose expansion
   failed is left out (with everything below it) until a rerun completes it.
3. Each leaf is asked for questions in batches of ``questions_per_request``, every batch
   showing the questions already made for that leaf.
4. Every question is answered in a request of its own, keeping the reasoning when the model
   gives it. Answering starts as soon as a leaf's questions exist.

Each answer is a ``Sample`` with ``slice_id`` = the leaf id (``"topic:" + stable_id(*path)``) and
``annotations["topic_path"]``, so ``max_per_slice`` gives a balanced output per leaf, and
``balance_by: "topic_l1"`` with ``max_per_group`` one balanced per first-level sub-topic (each
leaf is reported through ``on_slice`` with metadata ``topic_path``, ``topic_l1``,
``topic_l2``...). Counters: ``stats.slices`` leaves, ``stats.chunks`` question requests,
``stats.samples_generated`` answers, ``stats.generation_failed_chunks`` failed requests of any
kind; each failure is also reported as a ``Failure`` of kind ``topic_expand``, ``questions`` or
``answer`` and the run goes on. Every request is a pure function of the tree state and goes
through the response cache, so a rerun on the same output directory replays it.

The tree itself (its file forms, checks and ids) is ``topic_tree``'s.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from ..errors import ConfigError, LLMError
from ..ids import stable_id
from ..llm.client import ChatResult, log_failure
from ..llm.json_extract import extract_json, split_reasoning
from ..llm.prompts import (
    TOPIC_PATH_SEP,
    TOPIC_PROMPT_VERSION,
    Message,
    detect_language,
    topic_answer_messages,
    topic_expand_messages,
    topic_questions_messages,
)
from ..llm.structured import TOPIC_ITEM_KEYS
from ..models import Failure, Sample, Slice
from ..stages.stream import bounded_map
from .base import SourceContext
from .topic_tree import (
    MAX_NAME_CHARS,
    MAX_QUESTION_CHARS,
    TREE_FILENAME,
    TopicTree,
    _leaf_metadata,
    _pruned,
    clean_name,
    name_key,
    topic_id,
)

__all__ = [
    "TREE_FILENAME",
    "TopicSource",
    "TopicTree",
    "parse_answer",
    "parse_string_list",
    "topic_id",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

LEVELS_RANGE = (1, 5)
TAGS_RANGE = (1, 100)
QUESTIONS_RANGE = (1, 100)
# 100 ** 5 leaves would never finish: a typo should fail at once, not after a day of calls.
MAX_LEAVES = 100_000
TAGS_PER_REQUEST = 20
QUESTIONS_PER_REQUEST = 10
_ENUM_PREFIX = ("-", "*", "•", "·")


TopicTree.model_rebuild()


def _strip_enumeration(text: str) -> str:
    """'1. 规则' -> '规则', '- rules' -> 'rules' (models number their items anyway)."""
    s = text.strip()
    if s[:1] in _ENUM_PREFIX and s[1:2] == " ":
        return s[2:].strip()
    digits = len(s) - len(s.lstrip("0123456789"))
    if 0 < digits <= 3 and s[digits : digits + 1] in (".", ")", "、", "）") and len(s) > digits + 1:
        rest = s[digits + 1 :]
        # "3.5 级地震" and "2)" alone are not enumerations; "1. x" and "1、x" are.
        if rest[:1] == " " or s[digits] != ".":
            return rest.strip()
    return s


def _item_text(item: Any) -> Any:
    """A list item's text: a string, an object's name/topic/question field, or its only string."""
    if not isinstance(item, dict):
        return item
    for k in TOPIC_ITEM_KEYS:
        if isinstance(item.get(k), str):
            return item[k]
    strings = [v for v in item.values() if isinstance(v, str)]
    return strings[0] if len(strings) == 1 else None


def parse_string_list(result: ChatResult) -> list[str]:
    """The strings of a JSON array reply (objects give their name/question field).

    ``[]`` is a valid, empty answer. A reply with no JSON array, or one whose items are all
    unusable (objects without a name, numbers, nested lists), is retried.

    Raises:
        JSONExtractionError: no JSON in the reply.
        ValueError: the array has items but none is usable.
    """
    _, content = split_reasoning(result.content)
    data = extract_json(content, expect=list)
    raw = data if isinstance(data, list) else []
    items: list[str] = []
    for item in raw:
        text = _item_text(item)
        if isinstance(text, str) and (text := _strip_enumeration(text)):
            items.append(text)
    if raw and not items:
        # Not cached as an empty answer: a rerun asks again instead of replaying it.
        first = json.dumps(raw[0], ensure_ascii=False)[:80]
        raise ValueError(
            f"none of the {len(raw)} item(s) is a string or an object with a name, topic or "
            f"question field (first: {first})"
        )
    return items


def parse_answer(result: ChatResult) -> tuple[str | None, str]:
    """``(reasoning, answer)`` of a plain-text reply; reasoning from ``<think>`` or the API field.

    Raises:
        ValueError: the answer is empty (e.g. the model only thought), retried.
    """
    reasoning, content = split_reasoning(result.content)
    answer = content.strip()
    if not answer:
        raise ValueError("empty answer")
    if reasoning is None and result.reasoning and result.reasoning.strip() != answer:
        # the client copies reasoning into content when content is empty: not both
        reasoning = result.reasoning.strip()
    return reasoning, answer


def _check_range(name: str, value: int, bounds: tuple[int, int]) -> None:
    lo, hi = bounds
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ConfigError(f"{name} must be an integer from {lo} to {hi}, got {value!r}")


@contextlib.asynccontextmanager
async def _closing(stream: AsyncIterator[T]) -> AsyncIterator[AsyncIterator[T]]:
    """Close an async generator when the block ends, even when it ends early (cancels its tasks)."""
    try:
        yield stream
    finally:
        aclose = getattr(stream, "aclose", None)
        if aclose is not None:
            await aclose()


async def _aiter(items: Iterable[T]) -> AsyncIterator[T]:
    for item in items:
        yield item


class TopicSource:
    """Samples from a topic tree: expanded by the teacher from ``topic``, or ``tree`` as given.

    Args:
        topic: the root topic to expand (exactly one of ``topic`` and ``tree``).
        levels: levels of sub-topics below the topic (1-5).
        tags_per_level: sub-topics asked for each topic (1-100).
        questions_per_tag: questions asked for each leaf (1-100).
        tree: a tree to use as it is (not expanded), e.g. a book's table of contents.
        tree_out: where to save the tree (default ``OUTPUT/topic_tree.json``).
        tags_per_request: sub-topics asked per request (more are asked for in batches).
        questions_per_request: questions asked per request (likewise).

    Raises:
        ConfigError: neither or both of topic and tree, or a number out of range.
    """

    kind = "topics"
    unit = "topic"
    prompt_version = TOPIC_PROMPT_VERSION

    def __init__(
        self,
        topic: str | None = None,
        *,
        levels: int = 2,
        tags_per_level: int = 10,
        questions_per_tag: int = 10,
        tree: TopicTree | None = None,
        tree_out: str | Path | None = None,
        tags_per_request: int = TAGS_PER_REQUEST,
        questions_per_request: int = QUESTIONS_PER_REQUEST,
    ) -> None:
        topic = clean_name(topic) if topic is not None else None
        if tree is None and not topic:
            raise ConfigError("topics: give a topic (--topic TEXT) or a tree (--tree FILE)")
        if tree is not None and topic:
            raise ConfigError("topics: give a topic (--topic) or a tree (--tree), not both")
        _check_range("levels", levels, LEVELS_RANGE)
        _check_range("tags_per_level", tags_per_level, TAGS_RANGE)
        _check_range("questions_per_tag", questions_per_tag, QUESTIONS_RANGE)
        _check_range("tags_per_request", tags_per_request, (1, TAGS_RANGE[1]))
        _check_range("questions_per_request", questions_per_request, (1, QUESTIONS_RANGE[1]))
        if tree is None and tags_per_level**levels > MAX_LEAVES:
            raise ConfigError(
                f"topics: {tags_per_level} tags per level over {levels} levels makes "
                f"{tags_per_level**levels} leaves; at most {MAX_LEAVES}"
            )
        self.topic = topic
        self.levels = levels
        self.tags_per_level = tags_per_level
        self.questions_per_tag = questions_per_tag
        self.tree = tree
        self.tree_out = Path(tree_out) if tree_out is not None else None
        self.tags_per_request = tags_per_request
        self.questions_per_request = questions_per_request
        # Filled by a run: the tree used (generated or given) and where it was saved.
        self.built_tree: TopicTree | None = None
        self.tree_path: Path | None = None
        self.counts: dict[str, int] = {}

    @property
    def root_name(self) -> str:
        return self.tree.name if self.tree is not None else (self.topic or "")

    def describe(self) -> dict[str, Any]:
        supplied = self.tree is not None
        return {
            "kind": self.kind,
            # "input" names the run in "another run's results" messages, as a file path would.
            "input": f"{'tree' if supplied else 'topic'} {self.root_name!r}",
            "topic": self.root_name,
            "levels": None if supplied else self.levels,
            "tags_per_level": None if supplied else self.tags_per_level,
            "questions_per_tag": self.questions_per_tag,
            "tree_blake2b": self.tree.digest() if self.tree is not None else None,
        }

    def total(self) -> int | None:
        if self.tree is not None:
            return len(self.tree.leaves())
        return int(self.tags_per_level**self.levels)

    async def samples(self, ctx: SourceContext) -> AsyncIterator[Sample]:
        run = _TopicRun(self, ctx)
        async with _closing(run.samples()) as samples:
            async for sample in samples:
                yield sample


class _TopicRun:
    """The state of one ``TopicSource.samples`` call."""

    def __init__(self, source: TopicSource, ctx: SourceContext) -> None:
        self.src = source
        self.ctx = ctx
        self.client = ctx.teacher
        lang = ctx.config.language
        # From the root name only: the same for a generated tree and for that tree given back,
        # so the question and answer requests replay from the cache.
        self.lang = lang if lang in ("zh", "en") else detect_language(source.root_name)
        self.limit = max(1, ctx.teacher.config.max_concurrent)
        self.counts = source.counts
        self.counts.clear()
        self.counts.update(
            expansion_requests=0,
            short_expansions=0,
            failed_expansions=0,
            leaves=0,
            question_requests=0,
            short_leaves=0,
            questions=0,
            answers=0,
            failed_answers=0,
        )

    # -- requests ----------------------------------------------------------------------------

    def _fail(self, kind: str, path: Sequence[str], exc: LLMError, *, detail: str = "") -> None:
        reason = f"{detail}: {exc}" if detail else str(exc)
        what = f"{kind} ({detail})" if detail else kind
        log_failure(log, f"topic {TOPIC_PATH_SEP.join(path)}: {what}", exc)
        self.ctx.stats.generation_failed_chunks += 1
        self.ctx.on_failure(Failure.from_error(exc, kind, slice_id=topic_id(path), reason=reason))

    async def _collect(
        self,
        build: Callable[[list[str], int], list[Message]],
        *,
        kind: str,
        want: int,
        batch: int,
        existing: Sequence[str],
        avoid: Iterable[str],
        clean: Callable[[str], str],
        max_chars: int,
    ) -> tuple[list[str], int, LLMError | None]:
        """Ask in batches until ``want`` distinct items exist: (items, requests, error)."""
        items = list(existing)
        seen = {name_key(x) for x in (*avoid, *items)}
        requests = 0
        # One extra round may fill a batch that came back short; a round adding nothing ends it.
        max_rounds = math.ceil(max(0, want - len(items)) / batch) + 1

        def parse(result: ChatResult) -> list[str]:
            got = parse_string_list(result)
            if not got and not items:
                # Nothing at all for a node or leaf: asked again, then a failure (not cached).
                raise ValueError("the reply lists nothing")
            return got

        while len(items) < want and requests < max_rounds:
            n = min(batch, want - len(items))
            requests += 1
            try:
                got, _ = await self.client.chat(build(list(items), n), parse, kind=kind)
            except LLMError as exc:
                return items, requests, exc
            new: list[str] = []
            for raw in got:
                text = clean(raw)
                # an over-long "name" is a paragraph, not a topic: dropped, not cut
                if text and len(text) <= max_chars and name_key(text) not in seen:
                    seen.add(name_key(text))
                    new.append(text)
            if not new:
                break
            items.extend(new[:n])
        return items, requests, None

    async def _expand(
        self, job: tuple[tuple[str, ...], TopicTree, list[str]]
    ) -> tuple[tuple[str, ...], TopicTree, bool]:
        """Give a node its sub-topics: (path, node, ok); not ok when a request failed.

        A node whose expansion failed, even after some batches, is left out of this run: its
        children's requests list their siblings, so expanding them from a partial list would
        ask again, differently, once a rerun completes it.
        """
        path, node, siblings = job
        src = self.src

        def build(existing: list[str], n: int) -> list[Message]:
            return topic_expand_messages(
                path, n, siblings=siblings, existing=existing, language=self.lang
            )

        names, requests, exc = await self._collect(
            build,
            kind="topics",
            want=src.tags_per_level,
            batch=src.tags_per_request,
            existing=[],
            avoid=[*path, *siblings],
            clean=clean_name,
            max_chars=MAX_NAME_CHARS,
        )
        self.counts["expansion_requests"] += requests
        node.children = [TopicTree(name=name) for name in names]
        if exc is not None:
            self.counts["failed_expansions"] += 1
            self._fail("topic_expand", path, exc)
            return path, node, False
        if len(names) < src.tags_per_level:
            self.counts["short_expansions"] += 1
            log.info(
                "topic %s: %d of %d sub-topics",
                TOPIC_PATH_SEP.join(path),
                len(names),
                src.tags_per_level,
            )
        return path, node, True

    async def _questions(
        self, leaf: tuple[tuple[str, ...], TopicTree]
    ) -> tuple[tuple[str, ...], list[str]]:
        """A leaf's questions: its own, then batches from the teacher showing those made so far."""
        path, node = leaf
        ctx, src = self.ctx, self.src
        ctx.stats.slices += 1
        self.counts["leaves"] += 1
        ctx.on_slice(
            Slice(
                id=topic_id(path),
                content=TOPIC_PATH_SEP.join(path),
                metadata=_leaf_metadata(path),
                line=None,
            )
        )

        def build(existing: list[str], n: int) -> list[Message]:
            return topic_questions_messages(path, n, existing=existing, language=self.lang)

        questions, requests, exc = await self._collect(
            build,
            kind="questions",
            want=src.questions_per_tag,
            batch=src.questions_per_request,
            existing=node.questions,
            avoid=[],
            clean=lambda s: " ".join(s.split()),
            max_chars=MAX_QUESTION_CHARS,
        )
        ctx.stats.chunks += requests
        self.counts["question_requests"] += requests
        self.counts["questions"] += len(questions)
        if exc is not None:
            self._fail("questions", path, exc)
        elif len(questions) < src.questions_per_tag:
            self.counts["short_leaves"] += 1
            log.info(
                "topic %s: %d of %d questions",
                TOPIC_PATH_SEP.join(path),
                len(questions),
                src.questions_per_tag,
            )
        ctx.progress(1)
        return path, questions

    async def _answer(self, item: tuple[tuple[str, ...], int, str]) -> Sample | None:
        path, index, question = item
        messages = topic_answer_messages(
            path, question, language=self.lang, system_prompt=self.ctx.config.system_prompt
        )
        try:
            (reasoning, answer), _ = await self.client.chat(messages, parse_answer, kind="answer")
        except LLMError as exc:
            self.counts["failed_answers"] += 1
            self._fail("answer", path, exc, detail=f"question {index}")
            return None
        slice_id = topic_id(path)
        self.ctx.stats.samples_generated += 1
        self.counts["answers"] += 1
        return Sample(
            id=stable_id(slice_id, str(index), question, "", answer),
            slice_id=slice_id,
            chunk_index=index,
            instruction=question,
            input="",
            output=answer,
            reasoning=reasoning,
            reference_output=None,
            teacher_model=self.client.model,
            prompt_version=TOPIC_PROMPT_VERSION,
            source_kind="topics",
            source_text="",  # no document: the evaluator judges against common knowledge
            annotations={"topic_path": list(path)},
        )

    # -- streams -----------------------------------------------------------------------------

    def _save(self, tree: TopicTree) -> None:
        src = self.src
        src.built_tree = tree
        out_dir = getattr(self.ctx, "output_dir", None) or self.ctx.config.output_dir
        target = src.tree_out or Path(out_dir) / TREE_FILENAME
        if tree._source is not None and target.resolve() == tree._source:
            src.tree_path = target  # given back from where it was saved: leave the file alone
            return
        tree.save(target)
        src.tree_path = target
        log.info("topic tree saved to %s", target)

    async def _leaves(self) -> AsyncIterator[tuple[tuple[str, ...], TopicTree]]:
        """Leaves as soon as they exist; the tree is saved once it is complete."""
        src = self.src
        if src.tree is not None:
            self._save(src.tree)
            for leaf in src.tree.leaves():
                yield leaf
            return
        root = TopicTree(name=src.topic or "")
        failed: set[int] = set()
        level: list[tuple[tuple[str, ...], TopicTree, list[str]]] = [((root.name,), root, [])]
        for depth in range(src.levels):
            last = depth == src.levels - 1
            async with _closing(bounded_map(_aiter(level), self._expand, limit=self.limit)) as done:
                async for path, node, ok in done:
                    if not ok:
                        failed.add(id(node))
                    elif not node.children:
                        yield path, node  # nothing distinct to split it into: a leaf already
                    elif last:
                        for child in node.children:
                            yield (*path, child.name), child
            # Siblings come from the full child lists, failed nodes included, so the requests
            # are the same when a rerun retries those nodes.
            level = [
                ((*path, child.name), child, [c.name for c in node.children if c is not child])
                for path, node, _ in level
                if id(node) not in failed
                for child in node.children
            ]
        tree = _pruned(root, failed)
        if failed:
            log.warning(
                "topic tree incomplete: %d expansion(s) failed; rerun the same command to retry",
                len(failed),
            )
        if tree is not None:
            self._save(tree)

    async def _questions_stream(self) -> AsyncIterator[tuple[tuple[str, ...], int, str]]:
        async with _closing(bounded_map(self._leaves(), self._questions, limit=self.limit)) as done:
            async for path, questions in done:
                for index, question in enumerate(questions):
                    yield path, index, question

    async def samples(self) -> AsyncIterator[Sample]:
        answers = bounded_map(self._questions_stream(), self._answer, limit=2 * self.limit)
        async with _closing(answers) as done:
            async for sample in done:
                if sample is not None:
                    yield sample
