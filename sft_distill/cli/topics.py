"""``sft-distill topics``: a topic (or a tree of topics) in, samples out."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from ..errors import ConfigError
from ..sources.topic_tree import TopicTree, clean_name
from ..sources.topics import LEVELS_RANGE, QUESTIONS_RANGE, TAGS_RANGE, TopicSource, _check_range
from .run import Mode, run_mode


def add_topic_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``sft-distill topics`` flags."""
    parser.add_argument("--topic", "-t", help='the root topic to expand, e.g. "体育与运动"')
    parser.add_argument(
        "--levels",
        type=int,
        default=2,
        help="levels of sub-topics below the topic (1-5, default 2)",
    )
    parser.add_argument(
        "--tags-per-level",
        type=int,
        default=10,
        help="sub-topics asked for each topic (1-100, default 10)",
    )
    parser.add_argument(
        "--questions-per-tag",
        type=int,
        default=10,
        help="questions asked for each leaf topic (1-100, default 10)",
    )
    parser.add_argument(
        "--tree",
        help="a topic tree JSON used as it is instead of --topic (e.g. a book's table of "
        "contents; a saved topic_tree.json)",
    )
    parser.add_argument(
        "--tree-out", help="where to save the topic tree (default OUTPUT/topic_tree.json)"
    )


def topic_source_from_args(args: argparse.Namespace) -> TopicSource:
    """The ``TopicSource`` that ``sft-distill topics`` flags describe.

    Raises:
        ConfigError: neither or both of --topic and --tree, or a number out of range.
        InputError: the --tree file cannot be used.
    """
    topic = getattr(args, "topic", None)
    tree_file = getattr(args, "tree", None)
    has_topic = topic is not None and bool(clean_name(topic))
    if not has_topic and not tree_file:
        raise ConfigError("topics: give a topic (--topic TEXT) or a tree (--tree FILE)")
    if has_topic and tree_file:
        raise ConfigError("topics: give --topic or --tree, not both")
    for flag, value, bounds in (
        ("--levels", args.levels, LEVELS_RANGE),
        ("--tags-per-level", args.tags_per_level, TAGS_RANGE),
        ("--questions-per-tag", args.questions_per_tag, QUESTIONS_RANGE),
    ):
        _check_range(flag, value, bounds)
    tree = TopicTree.load(tree_file) if tree_file else None
    tree_out = getattr(args, "tree_out", None)
    return TopicSource(
        topic if has_topic else None,
        levels=args.levels,
        tags_per_level=args.tags_per_level,
        questions_per_tag=args.questions_per_tag,
        tree=tree,
        tree_out=Path(tree_out) if tree_out else None,
    )


MODE = Mode(
    "topics",
    add_topic_arguments,
    topic_source_from_args,
    "Distil without documents: expand a topic into a tree of sub-topics (or read your own "
    "tree with --tree), ask questions at its leaves and answer them; the answers are "
    "judged, filtered and written as in a run.",
)


def main(argv: Sequence[str]) -> int:
    """``sft-distill topics ...``; returns the exit status."""
    return run_mode(MODE, argv)
