"""Near-duplicate removal: MinHash-LSH over character n-grams, or cosine over embeddings.

Both deduplicators take samples one at a time (``add``) and decide at the end (``resolve``), keeping
only a compact index per sample while streaming. Both resolve greedily: samples are visited best
score first (ties: smallest id) and a sample is kept unless it is a verified near-duplicate of a
sample already kept. Unlike clustering (union-find), this never drops a sample as a duplicate of
something it is not itself similar to; the price is that two dropped samples may be similar to
different kept ones.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import math
import unicodedata
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from .errors import ConfigError

if TYPE_CHECKING:
    from .config import DistillConfig

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_COSINE_THRESHOLD",
    "DEFAULT_JACCARD_THRESHOLD",
    "Deduplicator",
    "EmbeddingDeduplicator",
    "JaccardDeduplicator",
    "choose_bands",
    "exact_jaccard_pairs",
    "lsh_recall",
    "make_deduplicator",
    "normalize_text",
    "shingle_hashes",
]

DEFAULT_JACCARD_THRESHOLD = 0.8
DEFAULT_COSINE_THRESHOLD = 0.95
DEFAULT_MIN_RECALL = 0.99

_U64 = np.uint64
# Multiplier of the rolling polynomial hash over n-gram windows (any odd 64-bit constant works,
# because the code points are mixed first; see _shingle_batch).
_POLY = _U64(0x9E3779B97F4A7C15)
_SHIFT33 = _U64(33)
_FMIX1 = _U64(0xFF51AFD7ED558CCD)
_FMIX2 = _U64(0xC4CEB9FE1A85EC53)
# Shingles per MinHash chunk: a chunk x 126 uint32 block stays in L2 cache (about 1 MB).
_MINHASH_CHUNK = 2048
# Float slack when comparing an integer overlap with threshold * union.
_EPS = 1e-9


class Deduplicator(Protocol):
    """What the filter needs from a deduplicator: add samples, then map dropped id -> kept id."""

    def add(self, sample_id: str, text: str, score: float) -> None: ...

    async def aresolve(self) -> dict[str, str]: ...

    def __len__(self) -> int: ...


# --------------------------------------------------------------------------- text -> shingles


@functools.cache
def _drop_table() -> np.ndarray:
    """Boolean table over all code points: True for whitespace, punctuation and controls."""
    table = np.zeros(0x110000, dtype=bool)
    # Planes 4-13 are unassigned and 15-16 private use: scanning only the rest saves ~0.4 s.
    ranges = (range(0x40000), range(0xE0000, 0xF0000))
    drop = [
        cp
        for r in ranges
        for cp in r
        if (cat := unicodedata.category(chr(cp)))[0] in "PZ" or cat in ("Cc", "Cf", "Cs")
    ]
    table[drop] = True
    return table


def _codes(text: str) -> np.ndarray:
    """NFKC + casefold ``text`` and return its code points as uint32 (punctuation still in)."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    # surrogatepass: a lone surrogate in broken input must not crash dedup (it is dropped later).
    return np.frombuffer(folded.encode("utf-32-le", "surrogatepass"), dtype="<u4")


def normalize_text(text: str) -> str:
    """NFKC, casefold, drop whitespace, punctuation and controls (needs no word spaces)."""
    codes = _codes(text)
    codes = codes[~_drop_table()[codes]]
    normalized: str = codes.tobytes().decode("utf-32-le")
    return normalized


def _fmix64(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 64-bit finaliser, in place: every output bit depends on every input bit."""
    h ^= h >> _SHIFT33
    h *= _FMIX1
    h ^= h >> _SHIFT33
    h *= _FMIX2
    h ^= h >> _SHIFT33
    return h


def _shingle_batch(
    codes: np.ndarray, lengths: np.ndarray, ngram: int
) -> tuple[np.ndarray, np.ndarray]:
    """Hash every character n-gram of several normalised texts at once.

    Args:
        codes: the texts' code points, concatenated (uint32).
        lengths: code points per text.
        ngram: window size; a text shorter than ``ngram`` (even empty) becomes one shingle.

    Returns:
        (hashes, counts): uint64 hash per window, texts in order, and windows per text.
    """
    m = len(lengths)
    lengths = lengths.astype(np.int64)
    gap = ngram
    # Mixing the code points first makes the polynomial's collisions as rare as random 64-bit
    # values; on raw code points a mod-2^64 polynomial has short structured collisions.
    mixed = _fmix64(codes.astype(np.uint64) + _U64(0x51ED27))
    # Each text is followed by ngram zero slots, so a short (or empty) text's single window is the
    # text padded with zeros; `mixed` is never zero (fmix64 is a bijection fixing only 0), and
    # windows of longer texts never reach into the padding.
    total = int(lengths.sum())
    starts_in = np.zeros(m, dtype=np.int64)
    np.cumsum(lengths[:-1], out=starts_in[1:])
    starts_pad = starts_in + np.arange(m, dtype=np.int64) * gap
    padded = np.zeros(total + m * gap, dtype=np.uint64)
    if total:
        doc = np.repeat(np.arange(m, dtype=np.int64), lengths)
        padded[np.arange(total, dtype=np.int64) + doc * gap] = mixed
    n_win = len(padded) - (ngram - 1)
    h = padded[:n_win].copy()
    for k in range(1, ngram):
        h *= _POLY
        h += padded[k : k + n_win]
    counts = np.maximum(lengths - ngram + 1, 1)
    first = np.zeros(m, dtype=np.int64)
    np.cumsum(counts[:-1], out=first[1:])
    pos = np.arange(int(counts.sum()), dtype=np.int64) + np.repeat(starts_pad - first, counts)
    return _fmix64(h[pos]), counts


def _sorted_unique(h: np.ndarray) -> np.ndarray:
    """Sorted unique values (np.unique's hash path is slower for these sizes)."""
    h = np.sort(h)
    if len(h) > 1:
        keep = np.empty(len(h), dtype=bool)
        keep[0] = True
        np.not_equal(h[1:], h[:-1], out=keep[1:])
        h = h[keep]
    return h


def shingle_hashes(text: str, ngram: int = 5) -> np.ndarray:
    """Sorted unique uint64 hashes of the character n-grams of ``normalize_text(text)``."""
    codes = _codes(text)
    codes = codes[~_drop_table()[codes]]
    hashes, _ = _shingle_batch(codes, np.array([len(codes)]), ngram)
    return _sorted_unique(hashes)


def _normalized_shingles(norm: str, ngram: int) -> np.ndarray:
    """Sorted unique shingle hashes of an already normalised text."""
    codes = np.frombuffer(norm.encode("utf-32-le"), dtype="<u4")
    hashes, _ = _shingle_batch(codes, np.array([len(codes)]), ngram)
    return _sorted_unique(hashes)


def _jaccard_sets(a: np.ndarray, b: np.ndarray, threshold: float) -> float | None:
    """Exact Jaccard of two sorted unique hash arrays, or None when it is below ``threshold``."""
    la, lb = len(a), len(b)
    # Size filter: J <= min/max, so a pair this lopsided cannot reach the threshold.
    if min(la, lb) < threshold * max(la, lb) - _EPS:
        return None
    if la > lb:
        a, b, la, lb = b, a, lb, la
    # Binary search of the smaller set in the larger: no concatenate-and-sort per pair.
    idx = np.minimum(np.searchsorted(b, a), lb - 1)
    inter = int(np.count_nonzero(b[idx] == a))
    union = la + lb - inter
    if inter < threshold * union - _EPS:
        return None
    return inter / union


# --------------------------------------------------------------------------- LSH banding


def lsh_recall(similarity: float, bands: int, rows: int) -> float:
    """Probability that a pair with this Jaccard similarity shares at least one LSH band."""
    return 1.0 - (1.0 - similarity**rows) ** bands


def choose_bands(
    threshold: float, num_perm: int, *, min_recall: float = DEFAULT_MIN_RECALL
) -> tuple[int, int]:
    """Pick (bands, rows) with bands * rows <= num_perm for a Jaccard threshold.

    Takes the largest ``rows`` (fewest candidates below the threshold, so least verification work)
    whose S-curve, with all ``num_perm // rows`` bands used, still reaches ``min_recall`` at the
    threshold itself. For 0.8 and 128 permutations that is 21 bands x 6 rows (recall 0.998 at
    J = 0.80, 0.99995 at 0.85; 28% of pairs at J = 0.5 become candidates).
    """
    best = (num_perm, 1)
    for rows in range(1, num_perm + 1):
        bands = num_perm // rows
        if lsh_recall(threshold, bands, rows) >= min_recall:
            best = (bands, rows)
    return best


def _band_keys(sig: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """Hash each band of ``rows`` MinHash values to one uint64 key (band index mixed in)."""
    m = sig.shape[0]
    cols = sig.astype(np.uint64).reshape(m, bands, rows)
    keys = np.broadcast_to(
        np.arange(1, bands + 1, dtype=np.uint64) * _U64(0xD6E8FEB86659FD93), (m, bands)
    ).copy()
    for j in range(rows):
        keys ^= cols[:, :, j]
        keys *= _POLY
        keys ^= keys >> _U64(29)
    return _fmix64(keys)


# --------------------------------------------------------------------------- Jaccard


class JaccardDeduplicator:
    """Near-duplicates by Jaccard similarity of character n-gram sets, found with MinHash LSH.

    Per sample it keeps the id, the score, the LSH band keys (``bands`` x 8 bytes, 168 B by
    default; about 400 B per sample in all) and the normalised text, which exact verification
    re-shingles on demand. The text is for now the larger part (1 byte per ASCII or 2 per CJK
    character); a later version could spill it to disk. Every
    LSH candidate is verified with the exact Jaccard of the two shingle sets (64-bit hashes), so a
    reported duplicate always meets the threshold; recall is that of the LSH S-curve (see
    ``choose_bands``). Resolution is greedy by score; see the module docstring.
    """

    def __init__(
        self,
        threshold: float = DEFAULT_JACCARD_THRESHOLD,
        ngram: int = 5,
        num_perm: int = 128,
        seed: int = 0,
        *,
        min_recall: float = DEFAULT_MIN_RECALL,
        batch_chars: int = 1 << 18,
    ) -> None:
        if not 0.0 < threshold <= 1.0:
            raise ConfigError(f"jaccard threshold must be in (0, 1], got {threshold}")
        if ngram < 1 or num_perm < 1:
            raise ConfigError(f"ngram and num_perm must be >= 1, got {ngram} and {num_perm}")
        self.threshold = threshold
        self.ngram = ngram
        self.num_perm = num_perm
        self.bands, self.rows = choose_bands(threshold, num_perm, min_recall=min_recall)
        rng = np.random.default_rng(seed)
        used = self.bands * self.rows
        # h_k(x) = a_k * x + b_k mod 2^32 over well-mixed 32-bit shingle hashes: uint32 keeps the
        # n x k product SIMD-friendly (~3x faster than uint64) and estimates J without bias.
        self._a = (rng.integers(0, 1 << 32, size=used, dtype=np.uint64) | _U64(1)).astype(np.uint32)
        self._b = rng.integers(0, 1 << 32, size=used, dtype=np.uint64).astype(np.uint32)
        self._batch_chars = batch_chars
        self._ids: list[str] = []
        self._id_set: set[str] = set()
        self._scores: list[float] = []
        self._texts: list[str] = []
        self._keys: list[np.ndarray] = []
        self._pending: list[np.ndarray] = []
        self._pending_chars = 0

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, sample_id: str, text: str, score: float) -> None:
        """Register one sample; ``score`` ranks it (higher is kept first)."""
        if sample_id in self._id_set:
            raise ValueError(f"sample id {sample_id!r} added twice")
        self._id_set.add(sample_id)
        self._ids.append(sample_id)
        self._scores.append(-math.inf if math.isnan(score) else float(score))
        codes = _codes(text)
        self._pending.append(codes)
        self._pending_chars += len(codes)
        # Shingling and MinHash run per batch: numpy call overhead per text would dominate.
        if self._pending_chars >= self._batch_chars:
            self._flush()

    def _flush(self) -> None:
        """Normalise, shingle and MinHash the pending texts; keep their band keys and texts."""
        if not self._pending:
            return
        lengths = np.array([len(c) for c in self._pending], dtype=np.int64)
        codes = np.concatenate(self._pending)
        self._pending = []
        self._pending_chars = 0
        keep = ~_drop_table()[codes]
        doc = np.repeat(np.arange(len(lengths)), lengths)
        codes = codes[keep]
        lengths = np.bincount(doc[keep], minlength=len(lengths))
        raw = codes.tobytes()
        pos = 0
        for n in lengths.tolist():
            self._texts.append(raw[pos : pos + 4 * n].decode("utf-32-le"))
            pos += 4 * n
        hashes, counts = _shingle_batch(codes, lengths, self.ngram)
        sig = self._minhash(hashes.astype(np.uint32), counts)
        self._keys.append(_band_keys(sig, self.bands, self.rows))

    def _minhash(self, x: np.ndarray, counts: np.ndarray) -> np.ndarray:
        """MinHash signatures (texts x bands*rows, uint32) of consecutive shingle segments."""
        m = len(counts)
        sig = np.empty((m, len(self._a)), dtype=np.uint32)
        ends = np.cumsum(counts)
        starts = ends - counts
        doc = 0
        while doc < m:
            # A chunk is a run of whole texts, so reduceat never straddles a chunk edge.
            last = int(np.searchsorted(ends, starts[doc] + _MINHASH_CHUNK, side="right"))
            last = max(last, doc + 1)
            lo, hi = int(starts[doc]), int(ends[last - 1])
            block = np.multiply(x[lo:hi, None], self._a[None, :])
            block += self._b
            sig[doc:last] = np.minimum.reduceat(block, starts[doc:last] - lo, axis=0)
            doc = last
        return sig

    def _band_groups(self) -> np.ndarray:
        """Per sample and band, a dense id of the bucket, or -1 when no other sample shares it."""
        self._flush()
        n = len(self._ids)
        keys = np.concatenate(self._keys) if self._keys else np.empty((0, self.bands), np.uint64)
        # int32 halves this n x bands array; ids stay below n * bands.
        dtype = np.int32 if n * self.bands < 2**31 else np.int64
        groups = np.full((n, self.bands), -1, dtype=dtype)
        next_id = 0
        for j in range(self.bands):
            order = np.argsort(keys[:, j], kind="stable")
            sk = keys[order, j]
            new = np.ones(n, dtype=bool)
            new[1:] = sk[1:] != sk[:-1]
            gid = np.cumsum(new) - 1
            size = np.bincount(gid)
            shared_group = size > 1
            shared = shared_group[gid]
            # Number shared buckets densely, after the previous bands' ones.
            dense = np.cumsum(shared_group) - 1 + next_id
            groups[order[shared], j] = dense[gid[shared]]
            next_id += int(shared_group.sum())
        return groups

    def _ranking(self) -> list[int]:
        """Sample indices best first: score descending, then id ascending."""
        ids, scores = self._ids, self._scores
        return sorted(range(len(ids)), key=lambda i: (-scores[i], ids[i]))

    def _shingle_cache(self) -> Callable[[int], np.ndarray]:
        # Kept samples at the centre of a bucket are verified again and again; bound the cache by
        # count (1024 x ~8 KB for a 1,000-character text).
        @functools.lru_cache(maxsize=1024)
        def shingles(i: int) -> np.ndarray:
            return _normalized_shingles(self._texts[i], self.ngram)

        return shingles

    def _similarity(self, i: int, j: int, shingles: Callable[[int], np.ndarray]) -> float | None:
        """Exact Jaccard of samples i and j, or None when below the threshold."""
        if self._texts[i] == self._texts[j]:
            return 1.0
        return _jaccard_sets(shingles(i), shingles(j), self.threshold)

    def resolve(self) -> dict[str, str]:
        """Map each dropped sample id to the id of the kept sample it near-duplicates.

        Visits samples best first; a sample is dropped when an already kept sample shares an LSH
        band with it and their exact Jaccard meets the threshold. It then names the best-ranked
        such kept sample.
        """
        groups = self._band_groups()
        order = self._ranking()
        rank = [0] * len(order)
        for r, i in enumerate(order):
            rank[i] = r
        has_bucket = np.any(groups >= 0, axis=1).tolist()
        kept_in: dict[int, list[int]] = {}
        shingles = self._shingle_cache()
        mapping: dict[str, str] = {}
        verified = 0
        for i in order:
            if not has_bucket[i]:
                continue  # shares no band with anything: kept, and nobody can find it
            row = [g for g in groups[i].tolist() if g >= 0]
            cands: set[int] = set()
            for g in row:
                cands.update(kept_in.get(g, ()))
            dup = None
            for j in sorted(cands, key=rank.__getitem__):
                verified += 1
                if self._similarity(i, j, shingles) is not None:
                    dup = j
                    break
            if dup is None:
                for g in row:
                    kept_in.setdefault(g, []).append(i)
            else:
                mapping[self._ids[i]] = self._ids[dup]
        log.info(
            "jaccard dedup: %d samples, %d verified pairs, %d duplicates",
            len(order),
            verified,
            len(mapping),
        )
        return mapping

    async def aresolve(self) -> dict[str, str]:
        """``resolve`` in a worker thread, so a large run does not block the event loop.

        Do not ``add`` while it runs.
        """
        return await asyncio.to_thread(self.resolve)

    def near_duplicate_pairs(self) -> list[tuple[str, str, float]]:
        """Every verified pair (id_a, id_b, jaccard) with id_a added first, for diagnostics.

        Unlike ``resolve`` this checks all LSH candidate pairs, so it is quadratic in bucket size.
        """
        groups = self._band_groups()
        pairs: set[tuple[int, int]] = set()
        for j in range(self.bands):
            col = groups[:, j]
            members = np.flatnonzero(col >= 0)
            order = members[np.argsort(col[members], kind="stable")]
            bounds = np.flatnonzero(np.diff(col[order])) + 1
            for grp in np.split(order, bounds):
                g = grp.tolist()
                pairs.update((a, b) for k, a in enumerate(g) for b in g[k + 1 :])
        shingles = self._shingle_cache()
        out = []
        for a, b in sorted(pairs):
            sim = self._similarity(a, b, shingles)
            if sim is not None:
                out.append((self._ids[a], self._ids[b], sim))
        return out


def exact_jaccard_pairs(
    texts: Sequence[str], threshold: float, ngram: int = 5
) -> list[tuple[int, int, float]]:
    """All pairs (i, j, jaccard), i < j, whose exact n-gram Jaccard meets ``threshold``.

    An exact oracle for tests and benchmarks (no LSH): an all-pairs similarity join with prefix
    filtering (Bayardo et al. 2007). Shingles are ordered rarest first; two sets with
    J >= t must share a token among the first ``|x| - ceil(t|x|) + 1`` of each, so only pairs
    sharing a prefix token are verified. Exact up to 64-bit shingle-hash collisions.
    """
    if not texts:
        return []
    sets = [shingle_hashes(t, ngram) for t in texts]
    sizes = np.array([len(s) for s in sets], dtype=np.int64)
    flat = np.concatenate(sets)
    doc = np.repeat(np.arange(len(sets), dtype=np.int64), sizes)
    uniq, inv, freq = np.unique(flat, return_inverse=True, return_counts=True)
    token_rank = np.empty(len(uniq), dtype=np.int64)
    token_rank[np.lexsort((uniq, freq))] = np.arange(len(uniq))
    tok = token_rank[inv]
    by_doc = np.lexsort((tok, doc))
    tok, doc = tok[by_doc], doc[by_doc]
    start = np.cumsum(sizes) - sizes
    pos = np.arange(len(tok)) - start[doc]
    # The _EPS makes the prefix one longer when t*|x| lands a hair above an integer: safe side.
    prefix = sizes - np.ceil(threshold * sizes - _EPS).astype(np.int64) + 1
    sel = pos < prefix[doc]
    tok, doc = tok[sel], doc[sel]
    by_tok = np.lexsort((doc, tok))
    tok, doc = tok[by_tok], doc[by_tok]
    # Pair every element with the later elements of its token group.
    grp_end = np.searchsorted(tok, tok, side="right")
    after = grp_end - np.arange(len(tok)) - 1
    left = np.repeat(doc, after)
    offs = np.arange(int(after.sum())) - np.repeat(np.cumsum(after) - after, after)
    right = doc[np.repeat(np.arange(len(tok)) + 1, after) + offs]
    lo, hi = np.minimum(left, right), np.maximum(left, right)
    code = np.unique(lo * len(sets) + hi)
    out = []
    for c in code.tolist():
        i, j = divmod(c, len(sets))
        if i == j:
            continue
        sim = _jaccard_sets(sets[i], sets[j], threshold)
        if sim is not None:
            out.append((i, j, sim))
    return out


# --------------------------------------------------------------------------- embeddings

EmbedFn = Callable[[list[str]], Any]


def _is_async_callable(fn: Callable[..., Any]) -> bool:
    """True for ``async def`` functions and objects whose ``__call__`` is one."""
    # type(fn).__call__: for an instance with ``async def __call__`` (fn is known callable).
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(type(fn).__call__)


class EmbeddingDeduplicator:
    """Near-duplicates by cosine similarity of embeddings from a user ``embed_fn``.

    ``embed_fn(texts: list[str])`` returns an (n, d) array or list of lists, synchronously or as an
    awaitable. Texts are held until ``resolve``; then samples are embedded best first, one block at
    a time, and only the kept samples' (L2-normalised, float32) vectors stay in memory. Cosine is
    exact, computed block x block so the similarity matrix never exceeds ``block_size`` squared.
    """

    def __init__(
        self,
        embed_fn: EmbedFn,
        threshold: float = DEFAULT_COSINE_THRESHOLD,
        batch_size: int = 64,
        block_size: int = 4096,
        *,
        max_concurrency: int = 4,
    ) -> None:
        if not callable(embed_fn):
            raise ConfigError(f"embed_fn must be callable, got {type(embed_fn).__name__}")
        if not -1.0 <= threshold <= 1.0:
            raise ConfigError(f"cosine threshold must be in [-1, 1], got {threshold}")
        if batch_size < 1 or block_size < 1 or max_concurrency < 1:
            raise ConfigError("batch_size, block_size and max_concurrency must be >= 1")
        self.embed_fn = embed_fn
        self.threshold = threshold
        self.batch_size = batch_size
        self.block_size = block_size
        self.max_concurrency = max_concurrency
        self._ids: list[str] = []
        self._id_set: set[str] = set()
        self._scores: list[float] = []
        self._texts: list[str] = []

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
        self._texts.append(text)

    def _check(self, result: Any, n: int, dim: int | None) -> np.ndarray:
        """The batch result as an L2-normalised float32 (n, d) array, or ConfigError."""
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
        if dim is not None and arr.shape[1] != dim:
            raise ConfigError(
                f"embed_fn {name} returned dimension {arr.shape[1]}, earlier batches had {dim}"
            )
        if not np.isfinite(arr).all():
            raise ConfigError(f"embed_fn {name} returned NaN or infinite values")
        norms = np.linalg.norm(arr, axis=1, keepdims=True)
        if (norms == 0).any():
            raise ConfigError(f"embed_fn {name} returned an all-zero vector (no direction)")
        normalized: np.ndarray = arr / norms
        return normalized

    async def _call(self, texts: list[str], sem: asyncio.Semaphore) -> Any:
        async with sem:
            if _is_async_callable(self.embed_fn):
                return await self.embed_fn(texts)
            # A sync model would block the event loop; a plain function returning an awaitable
            # (e.g. a lambda around an async client) is awaited here, in the loop.
            result = await asyncio.to_thread(self.embed_fn, texts)
            if inspect.isawaitable(result):
                result = await result
            return result

    async def _embed(self, texts: list[str], dim: int | None) -> np.ndarray:
        """Embed ``texts`` in batches, a bounded number at a time, rows in input order."""
        # Sync functions run one batch at a time: a local model need not be thread-safe.
        limit = self.max_concurrency if _is_async_callable(self.embed_fn) else 1
        sem = asyncio.Semaphore(limit)
        batches = [texts[i : i + self.batch_size] for i in range(0, len(texts), self.batch_size)]
        tasks = [asyncio.ensure_future(self._call(b, sem)) for b in batches]
        try:
            results = await asyncio.gather(*tasks)
        except BaseException:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        arrays = []
        for batch, result in zip(batches, results, strict=True):
            arr = self._check(result, len(batch), dim)
            dim = arr.shape[1]
            arrays.append(arr)
        return np.concatenate(arrays)

    def _first_hits(self, block: np.ndarray, kept: Sequence[np.ndarray]) -> np.ndarray:
        """Per block row, the index of the first kept vector with cosine >= threshold, else -1."""
        hit = np.full(len(block), -1, dtype=np.int64)
        base = 0
        for chunk in kept:
            open_rows = np.flatnonzero(hit < 0)
            if not len(open_rows):
                break
            sims = block[open_rows] @ chunk.T >= self.threshold
            any_hit = sims.any(axis=1)
            hit[open_rows[any_hit]] = base + sims[any_hit].argmax(axis=1)
            base += len(chunk)
        return hit

    async def resolve(self) -> dict[str, str]:
        """Map each dropped sample id to the id of the best-ranked kept sample it duplicates.

        Raises:
            ConfigError: ``embed_fn`` returned the wrong shape, non-finite or zero vectors.
        """
        ids, scores = self._ids, self._scores
        order = sorted(range(len(ids)), key=lambda i: (-scores[i], ids[i]))
        kept_vecs: list[np.ndarray] = []  # chunks of at most block_size rows, best first
        kept_ids: list[str] = []
        mapping: dict[str, str] = {}
        dim: int | None = None
        for start in range(0, len(order), self.block_size):
            idx = order[start : start + self.block_size]
            vecs = await self._embed([self._texts[i] for i in idx], dim)
            dim = vecs.shape[1]
            # Kept samples from earlier blocks all outrank this block: they are matched first.
            hit = self._first_hits(vecs, kept_vecs)
            intra = vecs @ vecs.T >= self.threshold
            claimed = [int(h) for h in hit]  # -1, or index into kept_ids
            block_kept: list[int] = []
            for r in range(len(idx)):
                if claimed[r] >= 0:
                    mapping[ids[idx[r]]] = kept_ids[claimed[r]]
                    continue
                block_kept.append(r)
                kept_ids.append(ids[idx[r]])
                me = len(kept_ids) - 1
                # Claim the later rows of the block that nobody better has claimed yet.
                for later in np.flatnonzero(intra[r, r + 1 :]).tolist():
                    if claimed[r + 1 + later] < 0:
                        claimed[r + 1 + later] = me
            self._append_kept(kept_vecs, vecs[block_kept])
        log.info("embedding dedup: %d samples, %d duplicates", len(order), len(mapping))
        return mapping

    def _append_kept(self, kept_vecs: list[np.ndarray], rows: np.ndarray) -> None:
        """Append rows to the kept chunks, topping up the last chunk to block_size first."""
        while len(rows):
            if kept_vecs and len(kept_vecs[-1]) < self.block_size:
                room = self.block_size - len(kept_vecs[-1])
                kept_vecs[-1] = np.concatenate([kept_vecs[-1], rows[:room]])
                rows = rows[room:]
            else:
                kept_vecs.append(rows[: self.block_size])
                rows = rows[self.block_size :]

    async def aresolve(self) -> dict[str, str]:
        """Same as ``resolve`` (already a coroutine)."""
        return await self.resolve()


def make_deduplicator(config: DistillConfig) -> JaccardDeduplicator | EmbeddingDeduplicator:
    """Build the deduplicator the config asks for.

    Raises:
        ConfigError: ``dedup_method`` is "embedding" but no ``embed_fn`` was given.
    """
    method = config.effective_dedup_method
    threshold = config.effective_dedup_threshold
    if method == "embedding":
        if config.embed_fn is None:
            raise ConfigError("dedup_method 'embedding' needs an embed_fn (pass embed_fn=...)")
        return EmbeddingDeduplicator(
            config.embed_fn, threshold=threshold, batch_size=config.embed_batch_size
        )
    return JaccardDeduplicator(threshold=threshold, ngram=config.dedup_ngram, seed=config.seed)
