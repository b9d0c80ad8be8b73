"""Embedding dedup: cosine over the vectors of an ``embed_fn`` (exact, or faiss IVF when large)."""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
from array import array
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ...errors import ConfigError
from ...ids import digest
from .base import DEFAULT_COSINE_THRESHOLD, TextSpill, best_first

if TYPE_CHECKING:
    from ...llm.cache import ResponseCache

log = logging.getLogger(__name__)

EmbedFn = Callable[[list[str]], Any]

# Above this many samples the embedding dedup uses an approximate index (if faiss is installed).
DEFAULT_APPROX_ABOVE = 200_000


def _is_async_callable(fn: Callable[..., Any]) -> bool:
    """True for ``async def`` functions and objects whose ``__call__`` is one."""
    # type(fn).__call__: for an instance with ``async def __call__`` (fn is known callable).
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(type(fn).__call__)


def embedding_key(namespace: str, text: str) -> str:
    """Cache key of one text's embedding: a hash of the namespace (the model) and the text."""
    pieces = (b"embedding\x1f", namespace.encode("utf-8", "surrogatepass"), b"\x1f")
    return digest((*pieces, text.encode("utf-8", "surrogatepass")), size=20).hex()


def _default_namespace(embed_fn: Callable[..., Any]) -> str:
    """``module.qualname`` of the function (or of the callable's class)."""
    target = embed_fn if hasattr(embed_fn, "__qualname__") else type(embed_fn)
    return f"{getattr(target, '__module__', '')}.{getattr(target, '__qualname__', repr(target))}"


class _ExactKept:
    """Kept vectors in chunks of ``block_size`` rows, matched by exact blockwise cosine."""

    def __init__(self, threshold: float, block_size: int) -> None:
        self.threshold = threshold
        self.block_size = block_size
        self.chunks: list[np.ndarray] = []
        self.count = 0

    def first_hits(self, block: np.ndarray) -> np.ndarray:
        """Per row, the position of the first kept vector with cosine >= threshold, else -1."""
        hit = np.full(len(block), -1, dtype=np.int64)
        base = 0
        for chunk in self.chunks:
            open_rows = np.flatnonzero(hit < 0)
            if not len(open_rows):
                break
            rows = block if len(open_rows) == len(block) else block[open_rows]
            sims = rows @ chunk.T
            # A row maximum is one pass over the product; comparing all of it is several.
            found = np.flatnonzero(sims.max(axis=1) >= self.threshold)
            if len(found):
                first = np.argmax(sims[found] >= self.threshold, axis=1)
                hit[open_rows[found]] = base + first
            base += len(chunk)
        return hit

    def add(self, rows: np.ndarray) -> None:
        """Append kept rows, topping up the last chunk to ``block_size`` first."""
        self.count += len(rows)
        while len(rows):
            if self.chunks and len(self.chunks[-1]) < self.block_size:
                room = self.block_size - len(self.chunks[-1])
                self.chunks[-1] = np.concatenate([self.chunks[-1], rows[:room]])
                rows = rows[room:]
            else:
                self.chunks.append(np.ascontiguousarray(rows[: self.block_size]))
                rows = rows[self.block_size :]


# Kept vectors the IVF index is trained on (the exact scan handles them), and neighbours it returns.
_IVF_TRAIN = 65536


_IVF_NEIGHBOURS = 16


# Rows matched together inside a block (see EmbeddingDeduplicator._match_block).
_SUB_BLOCK = 512


class _IvfKept:
    """Kept vectors in a faiss inverted-file index: each query scans only ``probes`` cells."""

    def __init__(self, exact: _ExactKept, n_total: int, probes: int, neighbours: int) -> None:
        import faiss  # the optional extra "ann"

        self.threshold = exact.threshold
        self.neighbours = neighbours
        train = np.concatenate(exact.chunks)
        dim = train.shape[1]
        # About 4 sqrt(n) cells (faiss's guideline), with 39 training vectors per cell at least.
        cells = max(1, min(int(4 * math.sqrt(n_total)), len(train) // 39))
        self._quantizer = faiss.IndexFlatIP(dim)
        self.index = faiss.IndexIVFFlat(self._quantizer, dim, cells, faiss.METRIC_INNER_PRODUCT)
        self.index.cp.niter = 10
        self.index.train(train)
        self.index.nprobe = min(probes, cells)
        self.index.add(train)
        self.count = len(train)

    def first_hits(self, block: np.ndarray) -> np.ndarray:
        """Per row, the best-ranked kept vector among its nearest found with cosine >= threshold."""
        sims, found = self.index.search(block, self.neighbours)
        # Kept positions are in rank order: the smallest qualifying one is the best ranked.
        found = np.where((sims >= self.threshold) & (found >= 0), found, np.iinfo(np.int64).max)
        first = found.min(axis=1)
        return np.where(first == np.iinfo(np.int64).max, -1, first)

    def add(self, rows: np.ndarray) -> None:
        """Add kept rows."""
        self.index.add(rows)
        self.count += len(rows)


def _ann_available() -> bool:
    """True when faiss (the optional extra "ann") can be imported."""
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


class EmbeddingDeduplicator:
    """Near-duplicates by cosine similarity of embeddings from a user ``embed_fn``.

    ``embed_fn(texts: list[str])`` returns an (n, d) array or list of lists, synchronously or as an
    awaitable. ``add`` spills texts to a temporary file (RAM per sample: id, score, an offset).
    ``resolve`` embeds samples best first, ``block_size`` at a time in batches of ``batch_size``
    (up to ``max_concurrency`` batches in flight for an async ``embed_fn``; the next block is
    embedded while the current one is compared), and keeps only the kept samples' L2-normalised
    float32 vectors. With a ``cache``, vectors are stored under ``embedding_key(namespace,
    text)`` and a rerun embeds nothing it has seen. Cosine is exact, block x block, so a
    similarity matrix never exceeds ``block_size`` squared; above ``approx_above`` samples, once
    that many are kept, a faiss IVF index (optional extra ``ann``) replaces the exact scan.
    """

    def __init__(
        self,
        embed_fn: EmbedFn,
        threshold: float = DEFAULT_COSINE_THRESHOLD,
        batch_size: int = 64,
        block_size: int = 4096,
        *,
        max_concurrency: int = 4,
        cache: ResponseCache | None = None,
        namespace: str | None = None,
        approx_above: int | None = DEFAULT_APPROX_ABOVE,
        approx_probes: int = 8,
        spill_dir: str | Path | None = None,
    ) -> None:
        if not callable(embed_fn):
            raise ConfigError(f"embed_fn must be callable, got {type(embed_fn).__name__}")
        if not -1.0 <= threshold <= 1.0:
            raise ConfigError(f"cosine threshold must be in [-1, 1], got {threshold}")
        if batch_size < 1 or block_size < 1 or max_concurrency < 1 or approx_probes < 1:
            raise ConfigError(
                "batch_size, block_size, max_concurrency and approx_probes must be >= 1"
            )
        self.embed_fn = embed_fn
        self.threshold = threshold
        self.batch_size = batch_size
        self.block_size = block_size
        self.max_concurrency = max_concurrency
        self.cache = cache
        self.namespace = namespace if namespace is not None else _default_namespace(embed_fn)
        self.approx_above = approx_above
        self.approx_probes = approx_probes
        self._ids: list[str] = []
        self._id_set: set[str] = set()
        self._scores = array("d")
        self._texts = TextSpill(spill_dir)
        self._dim: int | None = None
        self.embedded = 0
        self.cached = 0
        self.approximate = False

    def __len__(self) -> int:
        return len(self._ids)

    @property
    def _fn_name(self) -> str:
        return getattr(self.embed_fn, "__qualname__", None) or repr(self.embed_fn)

    def add(self, sample_id: str, text: str, score: float) -> None:
        """Register one sample; ``score`` ranks it (higher is kept first)."""
        if sample_id in self._id_set:
            raise ValueError(f"sample id {sample_id!r} added twice")
        self._id_set.add(sample_id)
        self._ids.append(sample_id)
        self._scores.append(-math.inf if math.isnan(score) else float(score))
        self._texts.extend([text.encode("utf-8", "surrogatepass")])

    def _check(self, result: Any, n: int) -> np.ndarray:
        """The batch result as a float32 (n, d) array of finite non-zero rows, or ConfigError."""
        name = self._fn_name
        try:
            arr = np.asarray(result, dtype=np.float32)
        except (TypeError, ValueError) as exc:
            raise ConfigError(
                f"embed_fn {name} returned {type(result).__name__} that is not an (n, d) "
                f"array of numbers: {exc}"
            ) from None
        if arr.ndim != 2 or arr.shape[0] != n or arr.shape[1] < 1:
            raise ConfigError(
                f"embed_fn {name} returned shape {arr.shape} for {n} texts; "
                f"expected ({n}, d) with one row per text"
            )
        if self._dim is not None and arr.shape[1] != self._dim:
            raise ConfigError(
                f"embed_fn {name} returned dimension {arr.shape[1]}, earlier batches had "
                f"{self._dim} (a cached model of another size? use another namespace)"
            )
        if not np.isfinite(arr).all():
            raise ConfigError(f"embed_fn {name} returned NaN or infinite values")
        if not np.any(arr, axis=1).all():
            raise ConfigError(f"embed_fn {name} returned an all-zero vector (no direction)")
        self._dim = arr.shape[1]
        return arr

    async def _call(self, texts: list[str], sem: asyncio.Semaphore) -> np.ndarray:
        async with sem:
            if _is_async_callable(self.embed_fn):
                result = await self.embed_fn(texts)
            else:
                # A sync model would block the event loop; a plain function returning an
                # awaitable (e.g. a lambda around an async client) is awaited here, in the loop.
                result = await asyncio.to_thread(self.embed_fn, texts)
                if inspect.isawaitable(result):
                    result = await result
        arr = self._check(result, len(texts))
        if self.cache is not None:
            self.cache.put_vectors([embedding_key(self.namespace, t) for t in texts], arr)
        return arr

    async def _embed(self, idx: np.ndarray) -> np.ndarray:
        """L2-normalised float32 vectors of samples ``idx``, from the cache or ``embed_fn``."""
        texts = [self._texts.get(i).decode("utf-8", "surrogatepass") for i in idx.tolist()]
        vecs: list[np.ndarray | None] = [None] * len(texts)
        if self.cache is not None:
            vecs = self.cache.get_vectors([embedding_key(self.namespace, t) for t in texts])
        todo = [k for k, v in enumerate(vecs) if v is None]
        self.cached += len(texts) - len(todo)
        # Sync functions run one batch at a time: a local model need not be thread-safe.
        sem = asyncio.Semaphore(self.max_concurrency if _is_async_callable(self.embed_fn) else 1)
        batches = [todo[i : i + self.batch_size] for i in range(0, len(todo), self.batch_size)]
        tasks = [asyncio.ensure_future(self._call([texts[k] for k in b], sem)) for b in batches]
        try:
            results = await asyncio.gather(*tasks)
        except BaseException:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        for batch, arr in zip(batches, results, strict=True):
            for k, row in zip(batch, arr, strict=True):
                vecs[k] = row
        self.embedded += len(todo)
        if not texts:
            return np.empty((0, self._dim or 1), dtype=np.float32)
        try:
            out = np.stack(vecs)  # type: ignore[arg-type]
        except ValueError:
            raise ConfigError(
                f"embed_fn {self._fn_name}: cached vectors of different dimensions in namespace "
                f"{self.namespace!r} (a cached model of another size? use another namespace)"
            ) from None
        out = self._check(out, len(texts))
        normalized: np.ndarray = out / np.linalg.norm(out, axis=1, keepdims=True)
        return normalized

    def _ranking(self) -> np.ndarray:
        return best_first(self._ids, self._scores)

    def _match_block(self, kept: _ExactKept | _IvfKept, vecs: np.ndarray) -> list[int]:
        """Per row of a block (best first): the kept position it duplicates, or -1 if kept."""
        # Sub-blocks: each is matched against everything kept before it (earlier sub-blocks
        # included), so the within-block products shrink from block^2 to block x sub-block.
        # The approximate index is searched once per block (one call for many queries); this
        # block's own kept rows are then matched exactly and join the index at the end.
        ann = isinstance(kept, _IvfKept)
        outer = kept.first_hits(vecs).tolist() if ann else []
        local = kept if isinstance(kept, _ExactKept) else _ExactKept(self.threshold, len(vecs))
        base = kept.count - local.count  # kept position = base + position in `local`
        claimed: list[int] = []
        for s in range(0, len(vecs), _SUB_BLOCK):
            sub = vecs[s : s + _SUB_BLOCK]
            hits = [base + h if h >= 0 else -1 for h in local.first_hits(sub).tolist()]
            if ann:
                # Earlier blocks outrank this one: their match wins.
                pairs = zip(outer[s : s + len(sub)], hits, strict=True)
                hits = [o if o >= 0 else h for o, h in pairs]
            intra = sub @ sub.T >= self.threshold
            sub_kept: list[int] = []
            for r in range(len(sub)):
                if hits[r] >= 0:
                    continue
                me = base + local.count + len(sub_kept)
                sub_kept.append(r)
                # Claim the later rows that nobody better has claimed yet.
                for later in np.flatnonzero(intra[r, r + 1 :]).tolist():
                    if hits[r + 1 + later] < 0:
                        hits[r + 1 + later] = me
                hits[r] = -1 - me  # kept: not to be mistaken for a claim by later rows
            local.add(sub[sub_kept])
            claimed.extend(h if h >= 0 else -1 for h in hits)
        if ann and local.count:
            kept.add(np.concatenate(local.chunks))
        return claimed

    async def resolve(self) -> dict[str, str]:
        """Map each dropped sample id to the id of the best-ranked kept sample it duplicates.

        Raises:
            ConfigError: ``embed_fn`` returned the wrong shape, non-finite or zero vectors.
        """
        ids = self._ids
        order = self._ranking()
        blocks = [order[s : s + self.block_size] for s in range(0, len(order), self.block_size)]
        approx_wanted = self.approx_above is not None and len(order) > self.approx_above
        if approx_wanted and not _ann_available():
            log.warning(
                "embedding dedup: %d samples but faiss is not installed "
                "(pip install 'sft-distill[ann]'); using the exact scan",
                len(order),
            )
            approx_wanted = False
        train_at = min(_IVF_TRAIN, max(self.approx_above or 0, _SUB_BLOCK))
        kept: _ExactKept | _IvfKept = _ExactKept(self.threshold, self.block_size)
        kept_ids: list[str] = []
        mapping: dict[str, str] = {}
        self.embedded = self.cached = 0
        self.approximate = False
        ahead = asyncio.ensure_future(self._embed(blocks[0])) if blocks else None
        try:
            for b, idx in enumerate(blocks):
                assert ahead is not None
                vecs = await ahead
                # Embed the next block while this one is compared (in a thread: BLAS frees the
                # GIL, and the event loop keeps serving embed_fn calls).
                nxt = blocks[b + 1] if b + 1 < len(blocks) else None
                ahead = asyncio.ensure_future(self._embed(nxt)) if nxt is not None else None
                # The exact scan keeps going until the index has enough vectors to train on.
                if approx_wanted and isinstance(kept, _ExactKept) and kept.count >= train_at:
                    kept = await asyncio.to_thread(
                        _IvfKept, kept, len(order), self.approx_probes, _IVF_NEIGHBOURS
                    )
                    self.approximate = True
                claimed = await asyncio.to_thread(self._match_block, kept, vecs)
                for i, c in zip(idx.tolist(), claimed, strict=True):
                    if c >= 0:
                        mapping[ids[i]] = kept_ids[c]
                    else:
                        kept_ids.append(ids[i])
        finally:
            if ahead is not None and not ahead.done():
                ahead.cancel()
                await asyncio.gather(ahead, return_exceptions=True)
        log.info(
            "embedding dedup: %d samples (%d embedded, %d from cache), %d duplicates%s",
            len(order),
            self.embedded,
            self.cached,
            len(mapping),
            " (approximate index)" if self.approximate else "",
        )
        return mapping

    async def aresolve(self) -> dict[str, str]:
        """Same as ``resolve`` (already a coroutine)."""
        return await self.resolve()

    def close(self) -> None:
        """Delete the spilled texts now rather than when garbage-collected; safe twice."""
        self._texts.close()
