"""Decontamination: a sample whose question (or question and answer) is an eval item is dropped.

Eval sets are instruction-set files (JSONL, a JSON array or Parquet; fields mapped as for
``distill``: instruction/prompt/query/question, input, output/response/answer, or ShareGPT and
OpenAI chats). Each sample is matched, cheapest first, by:

- ``exact``: the question (instruction and input), normalised, equals an eval question;
- ``ngram``: n-grams shared with one eval question cover ``overlap`` (0.6) of the sample's
  question tokens; tokens are single CJK characters and other words, NFKC and case folded,
  punctuation and spaces ignored, and n is 13 for a text that is mostly CJK, else 8 (words);
- ``answer``: the same over question and answer, against eval items that have an answer of
  their own of at least n tokens;
- ``embedding`` (with an ``embed_fn``): cosine of the question to an eval question of at least
  ``cosine`` (0.9), for rephrasings.

Coverage, not the share of n-grams: one changed character breaks the 13 n-grams around it, but
the n-grams either side still cover nearly the whole question, so a light edit is still found;
a question that only quotes a clause the eval item quotes too (a statute, a definition) covers
little of itself with it. Eval n-grams are kept as sorted 64-bit hashes with their item number
(about 12 bytes each), so a sample is two binary searches and a count; an n-gram found in more
than ``MAX_ITEMS_PER_NGRAM`` eval items (a template such as "which of the following") names no
candidate but still counts toward one. A question shorter than n tokens is matched exactly (or
by embedding) only.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import re
import unicodedata
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from ..errors import ConfigError, InputError
from ..ids import file_digest
from ..models import Sample
from ..sources.fields import detect_field_map, iter_records
from ..sources.reader import DUPLICATE_KINDS, BadLine
from ..sources.records import read_head
from ..stages.gates.base import GateResult, resolve_path
from .dedup.embedding import _default_namespace, _is_async_callable, embedding_key

# The n-gram hashing of the Jaccard dedup: a 64-bit polynomial over mixed values, then fmix64.
from .dedup.jaccard import _POLY, _fmix64
from .thresholds import DROP_CONTAMINATED

if TYPE_CHECKING:
    from ..config.models import DistillConfig
    from ..llm.cache import ResponseCache

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_COSINE",
    "DEFAULT_OVERLAP",
    "Contamination",
    "DecontaminationGate",
    "Decontaminator",
    "EvalItems",
    "load_eval_items",
    "sample_texts",
    "tokens",
]

DEFAULT_OVERLAP = 0.6


DEFAULT_COSINE = 0.9


NGRAM_CJK = 13


NGRAM_WORDS = 8


# An n-gram in more eval items than this is a template: it names no candidate item.
MAX_ITEMS_PER_NGRAM = 256


# Candidate items whose coverage is computed exactly (those sharing the most n-grams).
_CANDIDATES = 3


# Eval rows compared with a block of sample vectors at once (a 64 x 16384 float32 product).
_EVAL_BLOCK = 16384


# Samples whose questions are embedded together (the gate waits at most _BATCH_WAIT_S for more).
_BATCH_WAIT_S = 0.05


_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af"
_TOKEN_RE = re.compile(rf"[{_CJK}]|[^\W_{_CJK}]+")
_CJK_RE = re.compile(rf"[{_CJK}]")


def tokens(text: str) -> list[str]:
    """Single CJK characters and other words of ``text``, NFKC and case folded."""
    return _TOKEN_RE.findall(unicodedata.normalize("NFKC", text).casefold())


def gram_size(toks: Sequence[str]) -> int:
    """13 for a text whose tokens are mostly CJK characters, else 8 (words)."""
    # A CJK character is always a token of its own: count them in the joined tokens.
    cjk = len(_CJK_RE.findall("".join(toks)))
    return NGRAM_CJK if toks and 2 * cjk >= len(toks) else NGRAM_WORDS


def _gram_hashes(toks: Sequence[str], n: int) -> np.ndarray:
    """The uint64 hash of the n-gram starting at each token (empty when shorter than n)."""
    m = len(toks) - n + 1
    if m < 1:
        return np.empty(0, dtype=np.uint64)
    # Python's str hash is salted per process: the index and the samples share the process.
    ids = np.array([hash(t) for t in toks], dtype=np.int64).view(np.uint64)
    h = ids[:m].copy()
    for k in range(1, n):
        h *= _POLY
        h += ids[k : k + m]
    h += np.uint64(n)  # an 8-gram and a 13-gram never share a hash by construction
    return _fmix64(h)


def _exact_key(toks: Sequence[str]) -> int:
    return hash("\x1f".join(toks))


class Contamination(NamedTuple):
    """How a sample matched an eval item: its id, file, the kind of match and its strength."""

    item_id: str
    eval_set: str
    match: str  # exact, ngram, answer, embedding
    score: float  # 1.0 exact; coverage for n-grams; cosine for embeddings

    def detail(self) -> str:
        """One line for ``drop_detail``."""
        where = f"eval item {self.item_id!r} ({self.eval_set})"
        if self.match == "exact":
            return f"same question as {where}"
        if self.match == "ngram":
            return f"{self.score:.0%} of the question is in {where}"
        if self.match == "answer":
            return f"{self.score:.0%} of the question and answer is in {where}"
        return f"cosine {self.score:.3f} with the question of {where}"

    def annotations(self) -> dict[str, Any]:
        """What the raw sample records: the item's id, and its file, match and score."""
        return {
            "contaminated_by": self.item_id,
            "contamination": {
                "eval_set": self.eval_set,
                "match": self.match,
                "score": round(self.score, 4),
            },
        }


@dataclass
class EvalItems:
    """Eval questions (with answers where given), their ids and files, and what was read."""

    ids: list[str] = field(default_factory=list)
    sets: list[int] = field(default_factory=list)  # index into files
    questions: list[str] = field(default_factory=list)
    answers: list[str | None] = field(default_factory=list)
    files: list[dict[str, Any]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ids)


def _field_map(path: Path) -> Any:
    head, _ = read_head(path)
    try:
        return detect_field_map(head, path=path)
    except InputError as exc:
        # detect_field_map's hint names the distill flag; an eval set takes the usual names.
        message = str(exc).replace(
            "use --instruction-col",
            "an eval set needs a column instruction, prompt, query or "
            "question (or ShareGPT/OpenAI chats)",
        )
        raise InputError(f"decontaminate: {message}") from None


def load_eval_items(paths: Sequence[str | Path], *, base_dirs: Sequence[Path] = ()) -> EvalItems:
    """Every usable eval question of ``paths``; bad lines are skipped and counted.

    An item's id is its own ``id`` when it has one, else ``<file name>:<line>``. A question
    repeated in a file is kept once (the first).

    Raises:
        ConfigError: a file that does not exist.
        InputError: a file that cannot be read, has no question column or no usable question.
    """
    items = EvalItems()
    for given in paths:
        path = resolve_path(str(given), base_dirs)
        if not path.is_file():
            raise ConfigError(f"decontaminate: eval set {str(given)!r} not found")
        fmap = _field_map(path)
        skipped: Counter[str] = Counter()

        def on_bad_line(bad: BadLine, skipped: Counter[str] = skipped) -> None:
            if bad.skipped:
                skipped["repeated" if bad.kind in DUPLICATE_KINDS else "bad"] += 1

        before = len(items)
        for record in iter_records(path, fmap, on_bad_line=on_bad_line):
            question = record.instruction + (f"\n{record.input}" if record.input else "")
            items.ids.append(record.key if record.has_id else f"{path.name}:{record.line}")
            items.sets.append(len(items.files))
            items.questions.append(question)
            items.answers.append(record.output)
        if len(items) == before:
            raise InputError(f"decontaminate: {path}: no usable eval question")
        if skipped["bad"]:
            log.warning("decontaminate: %s: %d bad line(s) skipped", path, skipped["bad"])
        items.files.append(
            {
                "path": str(path.resolve()),
                "name": path.name,
                "items": len(items) - before,
                "repeated_questions": skipped["repeated"],
                "bad_lines": skipped["bad"],
                "blake2b": file_digest(path),
            }
        )
    return items


class _GramIndex:
    """Eval n-gram hashes sorted with their item numbers: which items share a sample's n-grams."""

    def __init__(self) -> None:
        self._parts: list[tuple[np.ndarray, int]] = []
        self.keys = np.empty(0, dtype=np.uint64)
        self.items = np.empty(0, dtype=np.int32)
        # One bit per hash value modulo its size: most n-grams of a sample are in no eval item,
        # and one look-up here is far cheaper than a binary search of the sorted keys.
        self._bits = np.zeros(1, dtype=np.uint8)
        self._mask = np.uint64(7)

    def add(self, item: int, grams: np.ndarray) -> None:
        if len(grams):
            self._parts.append((np.unique(grams), item))

    def freeze(self) -> None:
        """Sort by (hash, item): one binary search finds an n-gram's items, in item order."""
        if not self._parts:
            return
        keys = np.concatenate([g for g, _ in self._parts])
        items = np.repeat(
            np.array([i for _, i in self._parts], dtype=np.int32),
            [len(g) for g, _ in self._parts],
        )
        self._parts = []
        order = np.lexsort((items, keys))
        self.keys, self.items = keys[order], items[order]
        # About 16 bits per key (at least 2^20): a key-less n-gram passes 1 time in 16 or less.
        size = max(1 << 20, 1 << int(np.ceil(np.log2(max(1, len(self.keys)) * 16))))
        self._mask = np.uint64(size - 1)
        bits = self.keys & self._mask
        self._bits = np.zeros(size // 8, dtype=np.uint8)
        np.bitwise_or.at(
            self._bits, (bits >> np.uint64(3)).astype(np.int64), _BIT[bits & np.uint64(7)]
        )

    @property
    def nbytes(self) -> int:
        return int(self.keys.nbytes + self.items.nbytes + self._bits.nbytes)

    def _ranges(self, grams: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Where each n-gram's items start in ``items``, and how many there are (0: none)."""
        lo = np.zeros(len(grams), dtype=np.int64)
        found = np.zeros(len(grams), dtype=np.int64)
        bits = grams & self._mask
        maybe = np.flatnonzero(
            self._bits[(bits >> np.uint64(3)).astype(np.int64)] & _BIT[bits & np.uint64(7)]
        )
        if not len(maybe):
            return lo, found
        # Sorted queries: numpy's binary search then starts from the previous answer.
        order = maybe[np.argsort(grams[maybe], kind="stable")]
        at = np.searchsorted(self.keys, grams[order], "left")
        hit = at < len(self.keys)
        hit[hit] = self.keys[at[hit]] == grams[order[hit]]
        order, at = order[hit], at[hit]
        if len(order):
            lo[order] = at
            found[order] = np.searchsorted(self.keys, grams[order], "right") - at
        return lo, found

    def best(self, grams: np.ndarray, n_tokens: int, n: int) -> tuple[int, float] | None:
        """The item whose shared n-grams cover most of the sample's tokens, and that share."""
        if not len(grams) or not len(self.keys):
            return None
        lo, found = self._ranges(grams)
        hi = lo + found
        specific = np.flatnonzero((found > 0) & (found <= MAX_ITEMS_PER_NGRAM))
        if not len(specific):
            return None
        sizes = found[specific]
        positions = np.repeat(specific, sizes)
        ends = np.cumsum(sizes)
        rows = np.arange(int(ends[-1])) + np.repeat(lo[specific] - (ends - sizes), sizes)
        owners = self.items[rows]
        uniq, shared = np.unique(owners, return_counts=True)
        if len(uniq) > _CANDIDATES:
            uniq = uniq[np.argpartition(-shared, _CANDIDATES)[:_CANDIDATES]]
        templates = np.flatnonzero(found > MAX_ITEMS_PER_NGRAM)
        best: tuple[int, float] | None = None
        for item in uniq.tolist():
            at = positions[owners == item]
            if len(templates):
                # A template n-gram counts for the item when the item has it too.
                has = [j for j in templates.tolist() if _contains(self.items[lo[j] : hi[j]], item)]
                if has:
                    at = np.union1d(at, np.array(has, dtype=at.dtype))
            covered = n + int(np.minimum(np.diff(at), n).sum())
            share = min(1.0, covered / n_tokens)
            if best is None or share > best[1] or (share == best[1] and item < best[0]):
                best = (item, share)
        return best


_BIT = np.array([1 << k for k in range(8)], dtype=np.uint8)


def _contains(sorted_items: np.ndarray, item: int) -> bool:
    i = int(np.searchsorted(sorted_items, item))
    return i < len(sorted_items) and int(sorted_items[i]) == item


def sample_texts(sample: Sample) -> tuple[str, str]:
    """(question, question and answer) of a sample as they are matched."""
    question = sample.instruction + (f"\n{sample.input}" if sample.input else "")
    return question, f"{question}\n{sample.output}"


EmbedFn = Callable[[list[str]], Any]


class Decontaminator:
    """Matches samples against eval items: exact, n-gram coverage, and (with ``embed_fn``)
    embedding cosine. ``build`` makes the n-gram index (in a worker thread for large sets),
    ``prepare`` embeds the eval questions (cached in the run's response cache)."""

    def __init__(
        self,
        items: EvalItems,
        *,
        overlap: float = DEFAULT_OVERLAP,
        cosine: float = DEFAULT_COSINE,
        embed_fn: EmbedFn | None = None,
        batch_size: int = 64,
    ) -> None:
        if not 0.0 < overlap <= 1.0 or not 0.0 < cosine <= 1.0:
            raise ConfigError("decontaminate: overlap and cosine must be in (0, 1]")
        self.items = items
        self.overlap = overlap
        self.cosine = cosine
        self.embed_fn = embed_fn
        self.batch_size = batch_size
        self._exact: dict[int, int] = {}
        self._questions = _GramIndex()
        self._pairs = _GramIndex()
        self._vectors: np.ndarray | None = None
        self._cache: ResponseCache | None = None
        self._namespace = _default_namespace(embed_fn) if embed_fn is not None else ""
        self._batcher: _Batcher | None = None
        self.built = False

    @classmethod
    def from_config(
        cls, config: DistillConfig, *, paths: Sequence[str] | None = None
    ) -> Decontaminator:
        """The decontaminator of ``config.decontaminate`` (or ``paths``), not yet built.

        Relative paths are looked up next to the config file first, then in the current
        directory.

        Raises:
            ConfigError, InputError: see ``load_eval_items``.
        """
        dirs = [Path(config.config_dir)] if config.config_dir else []
        items = load_eval_items(
            paths if paths is not None else config.decontaminate, base_dirs=dirs
        )
        return cls(
            items,
            overlap=config.decontaminate_overlap,
            cosine=config.decontaminate_cosine,
            embed_fn=config.embed_fn,
            batch_size=config.embed_batch_size,
        )

    def build(self) -> Decontaminator:
        """Index every eval item's normalised question and n-grams (once)."""
        if self.built:
            return self
        for i, (question, answer) in enumerate(
            zip(self.items.questions, self.items.answers, strict=True)
        ):
            toks = tokens(question)
            self._exact.setdefault(_exact_key(toks), i)
            n = gram_size(toks)
            self._questions.add(i, _gram_hashes(toks, n))
            if answer:
                answer_toks = tokens(answer)
                # A short answer ("B") adds nothing the question check does not see.
                if len(answer_toks) >= gram_size(answer_toks):
                    both = toks + answer_toks
                    self._pairs.add(i, _gram_hashes(both, gram_size(both)))
        self._questions.freeze()
        self._pairs.freeze()
        self.built = True
        return self

    @property
    def nbytes(self) -> int:
        """Memory of the n-gram index and the eval vectors (the exact-match table not counted)."""
        vectors = 0 if self._vectors is None else int(self._vectors.nbytes)
        return self._questions.nbytes + self._pairs.nbytes + vectors

    def _hit(self, item: int, match: str, score: float) -> Contamination:
        name = self.items.files[self.items.sets[item]]["name"]
        return Contamination(self.items.ids[item], name, match, score)

    def match(self, question: str, pair: str = "") -> Contamination | None:
        """The eval item a sample's question (or question and answer) repeats, by text alone."""
        if not self.built:
            self.build()
        toks = tokens(question)
        item = self._exact.get(_exact_key(toks))
        if item is not None:
            return self._hit(item, "exact", 1.0)
        n = gram_size(toks)
        best = self._questions.best(_gram_hashes(toks, n), len(toks), n)
        if best is not None and best[1] >= self.overlap:
            return self._hit(best[0], "ngram", best[1])
        if pair and len(self._pairs.keys):
            both = tokens(pair)
            n = gram_size(both)
            best = self._pairs.best(_gram_hashes(both, n), len(both), n)
            if best is not None and best[1] >= self.overlap:
                return self._hit(best[0], "answer", best[1])
        return None

    # --- embeddings ---------------------------------------------------------------------------

    async def prepare(self, cache: ResponseCache | None = None) -> None:
        """Build the index if needed, and embed the eval questions (with ``embed_fn``)."""
        if not self.built:
            await asyncio.to_thread(self.build)
        if self.embed_fn is None or self._vectors is not None:
            return
        self._cache = cache
        self._vectors = await self._embed(self.items.questions)
        self._batcher = _Batcher(self._nearest, self.batch_size)

    async def _embed(self, texts: list[str]) -> np.ndarray:
        """L2-normalised float32 rows for ``texts``, from the cache or ``embed_fn`` in batches."""
        assert self.embed_fn is not None
        keys = [embedding_key(self._namespace, t) for t in texts]
        rows: list[Any] = [None] * len(texts)
        if self._cache is not None:
            rows = self._cache.get_vectors(keys)
        todo = [i for i, r in enumerate(rows) if r is None]
        for start in range(0, len(todo), self.batch_size):
            batch = todo[start : start + self.batch_size]
            arr = _checked(await self._call([texts[i] for i in batch]), len(batch), self.embed_fn)
            if self._cache is not None:
                self._cache.put_vectors([keys[i] for i in batch], arr)
            for i, row in zip(batch, arr, strict=True):
                rows[i] = row
        if not rows:
            return np.empty((0, 1), dtype=np.float32)
        out = _checked(np.stack(rows), len(rows), self.embed_fn)
        normalized: np.ndarray = out / np.linalg.norm(out, axis=1, keepdims=True)
        return normalized

    async def _call(self, texts: list[str]) -> Any:
        fn = self.embed_fn
        assert fn is not None
        if _is_async_callable(fn):
            return await fn(texts)
        result = await asyncio.to_thread(fn, texts)
        return await result if inspect.isawaitable(result) else result

    async def _nearest(self, questions: list[str]) -> list[Contamination | None]:
        """For each question, the eval question at ``cosine`` or more (the nearest), or None."""
        assert self._vectors is not None
        vecs = await self._embed(questions)
        if vecs.shape[1] != self._vectors.shape[1]:
            raise ConfigError(
                f"embed_fn returned dimension {vecs.shape[1]} for samples and "
                f"{self._vectors.shape[1]} for the eval questions"
            )
        best, sims = await asyncio.to_thread(_nearest_rows, vecs, self._vectors)
        return [
            self._hit(int(b), "embedding", float(s)) if s >= self.cosine else None
            for b, s in zip(best.tolist(), sims.tolist(), strict=True)
        ]

    async def amatch(self, question: str, pair: str = "") -> Contamination | None:
        """``match``, then (with ``embed_fn``) the embedding of the question; batched."""
        hit = self.match(question, pair)
        if hit is not None or self.embed_fn is None:
            return hit
        if self._batcher is None:
            await self.prepare(self._cache)
        assert self._batcher is not None
        return await self._batcher(question)

    async def match_many(self, texts: Sequence[tuple[str, str]]) -> list[Contamination | None]:
        """``amatch`` of many (question, question and answer) pairs; embeddings in batches."""
        hits = [self.match(q, p) for q, p in texts]
        if self.embed_fn is None:
            return hits
        if self._vectors is None:
            await self.prepare(self._cache)
        todo = [i for i, h in enumerate(hits) if h is None]
        for start in range(0, len(todo), self.batch_size):
            batch = todo[start : start + self.batch_size]
            found = await self._nearest([texts[i][0] for i in batch])
            for i, hit in zip(batch, found, strict=True):
                hits[i] = hit
        return hits

    def describe(self) -> dict[str, Any]:
        """What ``metadata.json`` and the manifest record of the eval sets and settings."""
        return {
            "eval_sets": [
                {k: f[k] for k in ("path", "items", "blake2b")} for f in self.items.files
            ],
            "items": len(self.items),
            "overlap": self.overlap,
            "ngram": {"cjk": NGRAM_CJK, "words": NGRAM_WORDS},
            "cosine": self.cosine if self.embed_fn is not None else None,
        }


def _checked(result: Any, n: int, fn: EmbedFn) -> np.ndarray:
    """``result`` as an (n, d) float32 array of finite, non-zero rows, or ConfigError."""
    name = getattr(fn, "__qualname__", None) or repr(fn)
    try:
        arr = np.asarray(result, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise ConfigError(
            f"embed_fn {name} returned something that is not an array: {exc}"
        ) from None
    if arr.ndim != 2 or arr.shape[0] != n or arr.shape[1] < 1:
        raise ConfigError(f"embed_fn {name} returned shape {arr.shape} for {n} texts")
    if not np.isfinite(arr).all() or not np.any(arr, axis=1).all():
        raise ConfigError(f"embed_fn {name} returned NaN, infinite or all-zero vectors")
    return arr


def _nearest_rows(vecs: np.ndarray, table: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row of ``vecs``, the row of ``table`` with the highest cosine, and that cosine."""
    best = np.zeros(len(vecs), dtype=np.int64)
    sims = np.full(len(vecs), -np.inf, dtype=np.float32)
    for start in range(0, len(table), _EVAL_BLOCK):
        block = vecs @ table[start : start + _EVAL_BLOCK].T
        arg = block.argmax(axis=1)
        top = block[np.arange(len(vecs)), arg]
        better = top > sims
        best[better] = arg[better] + start
        sims[better] = top[better]
    return best, sims


class _Batcher:
    """Gathers single requests into calls of up to ``size`` (or what came in ``wait_s``)."""

    def __init__(
        self,
        fn: Callable[[list[str]], Awaitable[list[Contamination | None]]],
        size: int,
        wait_s: float = _BATCH_WAIT_S,
    ) -> None:
        self.fn = fn
        self.size = size
        self.wait_s = wait_s
        self._pending: list[tuple[str, asyncio.Future[Contamination | None]]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def __call__(self, text: str) -> Contamination | None:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Contamination | None] = loop.create_future()
        self._pending.append((text, future))
        if len(self._pending) >= self.size:
            self._flush()
        elif self._timer is None:
            self._timer = loop.call_later(self.wait_s, self._flush)
        return await future

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        batch, self._pending = self._pending, []
        if batch:
            task = asyncio.ensure_future(self._run(batch))
            self._tasks.add(task)  # keep a reference until it is done
            task.add_done_callback(self._tasks.discard)

    async def _run(self, batch: list[tuple[str, asyncio.Future[Contamination | None]]]) -> None:
        try:
            results = await self.fn([text for text, _ in batch])
        except Exception as exc:
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, future), result in zip(batch, results, strict=True):
            if not future.done():
                future.set_result(result)


class DecontaminationGate:
    """Drops a sample that repeats an eval item (reason ``contaminated``), before any judge.

    The matched item's id is recorded as ``annotations.contaminated_by``, and its file, the
    kind of match and its score as ``annotations.contamination``.
    """

    def __init__(self, decontaminator: Decontaminator, *, name: str = "decontaminate") -> None:
        self.decontaminator = decontaminator
        self.name = name

    async def check(self, sample: Sample) -> GateResult:
        """Keep, or drop as ``contaminated`` naming the eval item."""
        hit = await self.decontaminator.amatch(*sample_texts(sample))
        if hit is None:
            return GateResult(True)
        return GateResult(False, hit.detail(), hit.annotations(), drop_reason=DROP_CONTAMINATED)
