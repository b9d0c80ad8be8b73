"""``--estimate`` for the other modes: topics, distill, augment (``estimate`` does slices).

Every request is counted with the prompt the mode would build (``prompts``), so prompt tokens
follow the real templates; replies are assumed to be a typical size, capped by ``max_tokens``.

- topics: a generated tree of ``levels`` levels asks ``tags_per_level`` sub-topics of every
  node, so the figures are **upper bounds**: ``tags_per_level ** levels`` leaves and
  ``questions_per_tag`` questions at each, as if every reply were complete (duplicates and short
  replies make fewer; a short reply can cost one extra request for that node). A given tree
  (``--tree``) is counted as it is, with the questions it already has.
- distill: one teacher request per record (none with ``skip_generation``); a new answer is
  assumed as long as the record's own answer, when it has one.
- augment: per kept sample one rephrase request, then up to ``num_aug`` answers (an upper bound:
  near-copies are dropped before they are answered), and every original and variant judged.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from ..config.models import DistillConfig
from ..llm.prompts import (
    detect_language,
    iset_answer_messages,
    iset_rephrase_messages,
    topic_answer_messages,
    topic_expand_messages,
    topic_questions_messages,
)
from ..sources.reader import BadLine
from .estimate import (
    Estimate,
    Tally,
    early_drop_note,
    estimate,
    estimate_tokens,
    eval_prompt_tokens,
    messages_tokens,
)

if TYPE_CHECKING:
    from ..llm.server_context import ContextLimit
    from ..sources.augment import AugmentSource
    from ..sources.base import SampleSource
    from ..sources.distill import DistillSource
    from ..sources.fields import Record
    from ..sources.topics import TopicSource

__all__ = [
    "TYPICAL_ANSWER_TOKENS",
    "estimate_augment",
    "estimate_distill",
    "estimate_source",
    "estimate_topics",
]

# A plain-text answer to one question (topics, distill without a reference answer).
TYPICAL_ANSWER_TOKENS = {"zh": 400, "en": 300}
# Stand-ins of typical length for names and questions the teacher has not made yet.
_NAME = {"zh": "示例子话题名称", "en": "Example Sub-topic Name"}
_QUESTION = {
    "zh": "关于这个话题，初学者最常问的一个具体问题是什么？",
    "en": "What is one specific question a beginner would ask about this topic?",
}


def _json_list_tokens(items: list[str]) -> int:
    return estimate_tokens(json.dumps(items, ensure_ascii=False))


def _collect_requests(
    tally: Tally,
    build: Any,
    *,
    have: int,
    want: int,
    batch: int,
    item: str,
    calls: int,
    where: str,
) -> int:
    """Count the batched list requests of ``sources.topics`` for ``calls`` nodes alike."""
    requests = 0
    while have < want:
        n = min(batch, want - have)
        prompt = messages_tokens(build(have, n))
        reply = tally.reply("generator", _json_list_tokens([item] * n))
        tally.add(tally.generator, prompt, reply, calls=calls, where=where)
        have += n
        requests += calls
    return requests


# (path, questions the tree already has, how many leaves are alike) of each group of leaves
_LeafGroups = list[tuple[tuple[str, ...], list[str], int]]


def estimate_topics(
    source: TopicSource,
    config: DistillConfig,
    *,
    prices: Mapping[str, Any] | None = None,
    contexts: Mapping[str, ContextLimit] | None = None,
) -> Estimate:
    """Expansion, question and answer requests of a topic run, and the judgements of its answers."""
    lang = config.language if config.language in ("zh", "en") else detect_language(source.root_name)
    tally = Tally(config, contexts)
    root = source.root_name
    est = Estimate(input=f"topic {root!r}", kind="topics")
    expansions = 0
    if source.tree is not None:
        # Each leaf as given, with the questions it already has.
        groups: _LeafGroups = [
            (tuple(path), list(node.questions), 1) for path, node in source.tree.leaves()
        ]
        est.input = f"tree {root!r}"
    else:
        groups, expansions = _expansions(tally, source, lang)
    leaves_total = sum(n for _, _, n in groups)
    answers_total = sum(_leaf_requests(tally, est, source, config, lang, g) for g in groups)
    est.slices = leaves_total
    est.expected_samples = answers_total
    est.detail = {
        "root": root,
        "tree": source.tree is not None,
        "levels": None if source.tree is not None else source.levels,
        "tags_per_level": None if source.tree is not None else source.tags_per_level,
        "questions_per_tag": source.questions_per_tag,
        "leaves": leaves_total,
        "expansion_requests": expansions,
        "question_requests": est.chunks,
        "given_questions": sum(len(g) * n for _, g, n in groups),
    }
    if source.tree is None:
        est.notes.append(
            f"Upper bounds: {source.tags_per_level} sub-topics per node over {source.levels} "
            f"level(s) make at most {leaves_total:,} leaves ({expansions:,} expansion requests), "
            f"each asked for {source.questions_per_tag} questions; duplicate or short replies "
            "make fewer (a short reply can cost one extra request for its node)."
        )
    return tally.finish(est, _prices(config, prices))


def _expansions(tally: Tally, source: TopicSource, lang: str) -> tuple[_LeafGroups, int]:
    """The expansion requests of a full tree, and its leaves (all alike: stand-in names)."""
    name, root = _NAME[lang], source.root_name
    levels, tags = source.levels, source.tags_per_level
    expansions = 0
    for depth in range(levels):
        path = (root, *[name] * depth)
        siblings = [name] * (tags - 1) if depth else []

        def build(have: int, n: int, path: tuple[str, ...] = path, sib: list[str] = siblings):
            return topic_expand_messages(
                path, n, siblings=sib, existing=[name] * have, language=lang
            )

        expansions += _collect_requests(
            tally,
            build,
            have=0,
            want=tags,
            batch=source.tags_per_request,
            item=name,
            calls=tags**depth,
            where=f"expanding a topic at level {depth}",
        )
    return [((root, *[name] * levels), [], tags**levels)], expansions


def _leaf_requests(
    tally: Tally,
    est: Estimate,
    source: TopicSource,
    config: DistillConfig,
    lang: str,
    group: tuple[tuple[str, ...], list[str], int],
) -> int:
    """Count a group of alike leaves' question and answer requests; returns its answers."""
    path, given, n = group
    question = _QUESTION[lang]
    where = f"leaf {' > '.join(path)!r}" if n == 1 else "a leaf"

    def build_q(have: int, k: int) -> Any:
        existing = [*given, *[question] * max(0, have - len(given))]
        return topic_questions_messages(path, k, existing=existing, language=lang)

    est.chunks += _collect_requests(
        tally,
        build_q,
        have=len(given),
        want=source.questions_per_tag,
        batch=source.questions_per_request,
        item=question,
        calls=n,
        where=where,
    )
    # Given questions are answered as they are; the rest are stand-ins of typical length.
    asked = max(0, source.questions_per_tag - len(given))
    answer_tokens = tally.reply("generator", TYPICAL_ANSWER_TOKENS[lang])
    answers = 0
    for text, calls in [*((q, n) for q in given), (question, n * asked)]:
        messages = topic_answer_messages(
            path, text, language=lang, system_prompt=config.system_prompt
        )
        prompt = messages_tokens(messages)
        tally.add(tally.generator, prompt, answer_tokens, calls=calls, where=where)
        judged = eval_prompt_tokens(text, "", answer_tokens)
        tally.judge_all(judged, calls=calls, where=where)
        answers += calls
    return answers


def _prices(config: DistillConfig, prices: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    return prices if prices is not None else getattr(config, "prices", None)


class _BadLines:
    """Counts the skipped lines of an instruction-set file."""

    def __init__(self) -> None:
        self.n = 0

    def __call__(self, bad: BadLine) -> None:
        if bad.skipped:
            self.n += 1


def _records(
    est: Estimate, source: DistillSource | AugmentSource, *, strict: bool, **options: Any
) -> Iterator[tuple[Record, str]]:
    """Each usable record of the source's file and its language; ``est`` gets the counts."""
    from ..sources.fields import iter_records

    bad = _BadLines()
    languages: dict[str, int] = {}
    for record in iter_records(
        source.path, source.field_map, on_bad_line=bad, strict=strict, **options
    ):
        est.slices += 1
        lang = detect_language(record.instruction + "\n" + record.input)
        languages[lang] = languages.get(lang, 0) + 1
        yield record, lang
    est.bad_lines = bad.n
    est.languages = dict(sorted(languages.items()))


def _answer_requests(
    tally: Tally, config: DistillConfig, record: Record, answer: int, *, calls: int, where: str
) -> None:
    """Count ``calls`` teacher requests answering ``record``, each replying ``answer`` tokens."""
    messages = iset_answer_messages(
        record.instruction,
        record.input,
        language=config.language,
        system_prompt=config.system_prompt,
    )
    tally.add(tally.generator, messages_tokens(messages), answer, calls=calls, where=where)


def estimate_distill(
    source: DistillSource,
    config: DistillConfig,
    *,
    prices: Mapping[str, Any] | None = None,
    strict: bool = False,
    contexts: Mapping[str, ContextLimit] | None = None,
) -> Estimate:
    """One teacher request per record (none with ``skip_generation``), one judgement per sample.

    Raises:
        InputError: the file cannot be read or mapped (or, with ``strict``, its first bad line).
    """

    skip = source.skip_generation
    tally = Tally(config, contexts)
    est = Estimate(input=str(source.path), kind="distill")
    records = _records(est, source, strict=strict, output_required=skip, key_on_output=skip)
    for record, lang in records:
        where = f"line {record.line}"
        if skip:
            assert record.output is not None  # output_required
            answer = estimate_tokens(record.output)
        else:
            # As long as the record's own answer, when it has one.
            typical = (
                estimate_tokens(record.output) if record.output else TYPICAL_ANSWER_TOKENS[lang]
            )
            answer = tally.reply("generator", typical)
            _answer_requests(tally, config, record, answer, calls=1, where=where)
            est.chunks += 1
        tally.judge_all(eval_prompt_tokens(record.instruction, record.input, answer), where=where)
        est.expected_samples += 1
    est.detail = {"skip_generation": skip}
    if not skip:
        est.notes.append(
            "New answers are assumed as long as each record's own answer (a typical length "
            "where it has none)."
        )
    return tally.finish(est, _prices(config, prices))


def estimate_augment(
    source: AugmentSource,
    config: DistillConfig,
    *,
    prices: Mapping[str, Any] | None = None,
    strict: bool = False,
    contexts: Mapping[str, ContextLimit] | None = None,
) -> Estimate:
    """A rephrase request and up to ``num_aug`` answers per kept sample; all of them judged.

    Raises:
        InputError: the file cannot be read or mapped (or, with ``strict``, its first bad line).
    """
    from ..sources.augment import _is_not_kept

    n_aug = source.num_aug
    tally = Tally(config, contexts)
    est = Estimate(input=str(source.path), kind="augment")
    not_kept = 0

    def skip(data: dict[str, Any]) -> bool:
        nonlocal not_kept
        if _is_not_kept(data):
            not_kept += 1
            return True
        return False

    records = _records(
        est, source, strict=strict, output_required=True, key_on_output=True, skip=skip
    )
    for record, _lang in records:
        assert record.output is not None  # output_required
        where = f"line {record.line}"
        rephrase = iset_rephrase_messages(
            record.instruction, record.input, n_aug, language=config.language
        )
        variants = _json_list_tokens([record.instruction] * n_aug)
        tally.add(
            tally.generator,
            messages_tokens(rephrase),
            tally.reply("generator", variants),
            where=where,
        )
        est.chunks += 1
        # A rephrasing is about as long as its original, and so is its answer.
        answer = tally.reply("generator", estimate_tokens(record.output))
        _answer_requests(tally, config, record, answer, calls=n_aug, where=where)
        judged = eval_prompt_tokens(record.instruction, record.input, answer)
        tally.judge_all(judged, calls=1 + n_aug, where=where)
        est.expected_samples += 1 + n_aug
    est.detail = {"num_aug": n_aug, "not_kept": not_kept, "variants": est.slices * n_aug}
    est.notes.append(
        f"Upper bound: {n_aug} rephrasings answered per sample; near copies of the original or "
        "of each other are dropped before they are answered. The originals are judged again."
    )
    return tally.finish(est, _prices(config, prices))


def estimate_source(
    source: SampleSource,
    config: DistillConfig,
    *,
    prices: Mapping[str, Any] | None = None,
    strict: bool = False,
    contexts: Mapping[str, ContextLimit] | None = None,
) -> Estimate:
    """The estimate of any mode's source (slices, topics, distill, augment).

    Raises:
        InputError: the input cannot be read (or, with ``strict``, its first bad line).
        ValueError: a source of an unknown kind.
    """
    from ..sources.augment import AugmentSource
    from ..sources.distill import DistillSource
    from ..sources.slices import SliceSource
    from ..sources.topics import TopicSource

    if isinstance(source, SliceSource):
        est = estimate(source.path, config, prices=prices, strict=strict, contexts=contexts)
    elif isinstance(source, TopicSource):
        est = estimate_topics(source, config, prices=prices, contexts=contexts)
    elif isinstance(source, AugmentSource):
        est = estimate_augment(source, config, prices=prices, strict=strict, contexts=contexts)
    elif isinstance(source, DistillSource):
        est = estimate_distill(source, config, prices=prices, strict=strict, contexts=contexts)
    else:
        raise ValueError(f"no estimate for a source of kind {getattr(source, 'kind', None)!r}")
    note = early_drop_note(config)
    if note:
        est.notes.append(note)
    return est
