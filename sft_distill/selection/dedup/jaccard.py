"""Jaccard dedup: MinHash-LSH over character n-grams, verified exactly (works on Chinese).

Text is ``casefold_compact``-ed (NFKC, case, spaces and punctuation ignored); each sample keeps
a few bytes of band keys and a pre-filter while streaming, and candidates that share a band are
verified by their exact n-gram Jaccard at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import threading
import unicodedata
import weakref
from array import array
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np

from ...errors import ConfigError, OutputError
from .base import DEFAULT_JACCARD_THRESHOLD, TextSpill, best_first

log = logging.getLogger(__name__)

__all__ = [
    "JaccardDeduplicator",
    "casefold_compact",
    "choose_bands",
    "exact_jaccard_pairs",
    "lsh_recall",
    "shingle_hashes",
]

DEFAULT_MIN_RECALL = 0.99

_U64 = np.uint64
# Multiplier of the rolling polynomial hash over n-gram windows (any odd 64-bit constant works,
# because the code points are mixed first; see _shingle_batch).
_POLY = _U64(0x9E3779B97F4A7C15)
_SHIFT33 = _U64(33)
_FMIX1 = _U64(0xFF51AFD7ED558CCD)
_FMIX2 = _U64(0xC4CEB9FE1A85EC53)
_SHIFT32 = _U64(32)
_LOW32 = _U64(0xFFFFFFFF)
# An empty MinHash bin (no real value reaches it: rounds stay far below 2^32).
_EMPTY = _U64(0xFFFFFFFFFFFFFFFF)
# Shingle sets cached while resolving (a 1,000-character text takes about 8 KB).
_VERIFY_CACHE_BYTES = 64 << 20
# (shingle, round) pairs hashed at once when filling empty bins: 2^20 pairs take about 40 MB.
_ROUND_ELEMENTS = 1 << 20
# Float slack when comparing an integer overlap with threshold * union.
_EPS = 1e-9


# --------------------------------------------------------------------------- text -> shingles


# Code points classified so far: whitespace, punctuation and controls are dropped. Classifying
# lazily (only code points actually seen) costs microseconds per new character, where a table of
# all of Unicode took ~0.4 s at first use: a stall of the event loop in the middle of a run.
_DROP = np.zeros(0x110000, dtype=bool)
_KNOWN = np.zeros(0x110000, dtype=bool)
_DROP_LOCK = threading.Lock()


def _drop_mask(codes: np.ndarray) -> np.ndarray:
    """True where a code point is whitespace, punctuation or a control character."""
    unknown = codes[~_KNOWN[codes]]
    if unknown.size:
        with _DROP_LOCK:
            for cp in np.unique(unknown).tolist():
                cat = unicodedata.category(chr(cp))
                _DROP[cp] = cat[0] in "PZ" or cat in ("Cc", "Cf", "Cs")
                _KNOWN[cp] = True
    return _DROP[codes]


def _codes(text: str) -> np.ndarray:
    """NFKC + casefold ``text`` and return its code points as uint32 (punctuation still in)."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    # surrogatepass: a lone surrogate in broken input must not crash dedup (it is dropped later).
    return np.frombuffer(folded.encode("utf-32-le", "surrogatepass"), dtype="<u4")


def casefold_compact(text: str) -> str:
    """NFKC, casefolded, whitespace, punctuation and controls dropped: the text n-grams are of.

    ``text.casefold_spaced`` keeps one space between words instead.
    """
    codes = _codes(text)
    codes = codes[~_drop_mask(codes)]
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


def _segment_index(counts: np.ndarray, step: int = 1) -> np.ndarray:
    """``step`` times the segment number of every element of consecutive segments (int64).

    A cumulative sum of boundary marks: several times faster than ``np.repeat`` of a range.
    """
    total = int(counts.sum())
    marks = np.zeros(total, dtype=np.int64)
    nonempty = counts > 0
    firsts = (np.cumsum(counts) - counts)[nonempty]
    # A mark at each segment's first element, worth the number of segments it starts after.
    seg = np.flatnonzero(nonempty)
    steps = np.diff(seg, prepend=0) * step
    np.add.at(marks, firsts, steps)
    return np.cumsum(marks, out=marks)


def _shingle_batch(
    codes: np.ndarray, lengths: np.ndarray, ngram: int
) -> tuple[np.ndarray, np.ndarray]:
    """Hash every character n-gram of several normalised texts at once (unmixed).

    Args:
        codes: the texts' code points, concatenated (uint32).
        lengths: code points per text.
        ngram: window size; a text shorter than ``ngram`` (even empty) becomes one shingle, the
            text padded with zeros.

    Returns:
        (hashes, counts): a uint64 polynomial hash per window, texts in order, and windows per
        text. The hash is injective enough for sets (64 bits) but not well mixed: ``_fmix64`` it
        before using its bits.
    """
    lengths = lengths.astype(np.int64)
    total = len(codes)
    # Mixing the code points first makes the polynomial's collisions as rare as random 64-bit
    # values; on raw code points a mod-2^64 polynomial has short structured collisions. Mixed
    # values are never zero (fmix64 is a bijection fixing only 0), so zero padding is distinct.
    mixed = np.zeros(total + ngram - 1, dtype=np.uint64)
    mixed[:total] = codes
    mixed[:total] += _U64(0x51ED27)
    _fmix64(mixed[:total])
    # Window hash at every position of the concatenation (Horner); windows running into the next
    # text are dropped below.
    h = mixed[:total].copy()
    for k in range(1, ngram):
        h *= _POLY
        h += mixed[k : k + total]
    ends = np.cumsum(lengths)
    starts = ends - lengths
    valid = np.ones(total, dtype=bool)
    for k in range(1, ngram):
        valid[ends[lengths >= k] - k] = False
    short = np.flatnonzero((lengths < ngram) & (lengths > 0))
    if len(short):
        # A short text's one window is the text padded with zeros.
        acc = np.zeros(len(short), dtype=np.uint64)
        for k in range(ngram):
            acc *= _POLY
            inside = lengths[short] > k
            acc[inside] += mixed[starts[short[inside]] + k]
        h[starts[short]] = acc
        valid[starts[short]] = True
    hashes = h[valid]
    counts = np.maximum(lengths - ngram + 1, 1)
    empty = np.flatnonzero(lengths == 0)
    if len(empty):
        # An empty text is one all-padding window, whose hash is 0.
        first = np.cumsum(counts) - counts
        out = np.zeros(int(counts.sum()), dtype=np.uint64)
        slots = np.ones(len(out), dtype=bool)
        slots[first[empty]] = False
        out[slots] = hashes
        hashes = out
    return hashes, counts


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
    """Sorted unique uint64 hashes of the character n-grams of ``casefold_compact(text)``."""
    codes = _codes(text)
    codes = codes[~_drop_mask(codes)]
    hashes, _ = _shingle_batch(codes, np.array([len(codes)]), ngram)
    return _sorted_unique(_fmix64(hashes))


def _utf8_shingles(blob: bytes, ngram: int) -> np.ndarray:
    """Sorted unique (unmixed) shingle hashes of a normalised text stored as UTF-8."""
    codes = np.frombuffer(blob.decode("utf-8").encode("utf-32-le"), dtype="<u4")
    width = len(codes) - ngram + 1
    if width < 1:
        hashes, _ = _shingle_batch(codes, np.array([len(codes)]), ngram)
        return hashes
    # _shingle_batch for one text without its batch bookkeeping: this runs once per verified
    # sample, so its fixed cost matters (about 2x faster for a 600-character text).
    mixed = codes.astype(np.uint64)
    mixed += _U64(0x51ED27)
    _fmix64(mixed)
    h = mixed[:width].copy()
    for k in range(1, ngram):
        h *= _POLY
        h += mixed[k : k + width]
    return _sorted_unique(h)


class _ShingleCache:
    """Shingle sets of recently verified samples, least recently used dropped beyond a budget."""

    def __init__(self, texts: TextSpill, ngram: int, max_bytes: int) -> None:
        self._texts = texts
        self._ngram = ngram
        self._max_bytes = max_bytes
        self._sets: OrderedDict[int, np.ndarray] = OrderedDict()
        self._bytes = 0
        self.misses = 0

    def __call__(self, i: int) -> np.ndarray:
        hashes = self._sets.get(i)
        if hashes is not None:
            self._sets.move_to_end(i)
            return hashes
        self.misses += 1
        hashes = _utf8_shingles(self._texts.get(i), self._ngram)
        self._sets[i] = hashes
        self._bytes += hashes.nbytes
        while self._bytes > self._max_bytes and len(self._sets) > 1:
            self._bytes -= self._sets.popitem(last=False)[1].nbytes
        return hashes


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


def _sketch_rounds(
    sig: np.ndarray,
    g: np.ndarray,
    first: np.ndarray,
    n: np.ndarray,
    docs: np.ndarray,
    start: np.ndarray,
    rounds: np.ndarray,
    bins: int,
) -> None:
    """Rounds ``start .. start + rounds - 1`` of the texts ``docs`` (elements from ``first``)."""
    per_elem = np.repeat(rounds, n)
    elems = np.arange(int(n.sum()), dtype=np.int64)
    elems += np.repeat(first - (np.cumsum(n) - n), n)
    doc_of = np.repeat(docs, n * rounds)
    el = np.repeat(elems, per_elem)
    r = np.arange(len(el), dtype=np.int64) - np.repeat(np.cumsum(per_elem) - per_elem, per_elem)
    r += np.repeat(np.repeat(start, n), per_elem)
    ru = r.astype(np.uint64)
    gr = _fmix64(g[el] ^ (ru * _POLY))
    slot = doc_of * bins + (((gr >> _SHIFT32) * _U64(bins)) >> _SHIFT32).astype(np.int64)
    np.minimum.at(sig, slot, (ru << _SHIFT32) | (gr & _LOW32))


def _sketch(h: np.ndarray, counts: np.ndarray, bins: int, seed_key: np.uint64) -> np.ndarray:
    """One-permutation MinHash signatures (texts x ``bins``, uint64) of consecutive hash segments.

    Each shingle is hashed once into one of ``bins`` bins and each bin keeps its minimum, so the
    cost is one pass over the shingles instead of one per permutation (Li et al. 2012). Bins left
    empty (texts with few shingles) are filled by further rounds in which every shingle lands in
    another random bin, with values that rank after all earlier rounds: fast similarity
    sketching (Dahlgaard, Knudsen and Thorup 2017). Two texts then agree in each bin with
    probability equal to their Jaccard similarity, whatever their sizes, and a text's signature
    does not depend on the other texts of its batch.
    """
    m = len(counts)
    g = _fmix64(h ^ seed_key)
    sig = np.full(m * bins, _EMPTY, dtype=np.uint64)
    slot = _segment_index(counts, bins)
    slot += (((g >> _SHIFT32) * _U64(bins)) >> _SHIFT32).astype(np.int64)
    np.minimum.at(sig, slot, g & _LOW32)
    sig2 = sig.reshape(m, bins)
    need = np.flatnonzero((sig2 == _EMPTY).any(axis=1))
    next_round = np.ones(m, dtype=np.int64)
    first = np.cumsum(counts) - counts
    while len(need):
        # Enough rounds that about e^-2 of the texts still miss a bin afterwards.
        rounds = np.maximum(np.ceil(bins * (math.log(bins) + 2.0) / counts[need]), 1)
        rounds = rounds.astype(np.int64)
        # Texts in pieces of about _ROUND_ELEMENTS (element, round) pairs: bounded temporaries.
        piece = np.cumsum(counts[need] * rounds) // _ROUND_ELEMENTS
        cuts = np.flatnonzero(np.diff(piece)) + 1
        for docs, r in zip(np.split(need, cuts), np.split(rounds, cuts), strict=True):
            _sketch_rounds(sig, g, first[docs], counts[docs], docs, next_round[docs], r, bins)
        next_round[need] += rounds
        need = need[(sig2[need] == _EMPTY).any(axis=1)]
    return sig2


# --------------------------------------------------------------------------- text spill


# --------------------------------------------------------------------------- Jaccard


class JaccardDeduplicator:
    """Near-duplicates by Jaccard similarity of character n-gram sets, found with MinHash LSH.

    ``add`` normalises each text, spills it (UTF-8) to an anonymous temporary file and keeps in
    RAM only the id, the score, the LSH band keys (``bands`` x 8 bytes: 168 B), one byte per
    MinHash bin (a pre-filter: 126 B) and a file offset: about 350 B per sample with the
    defaults, plus the id string, whatever the text length. Signatures are one-permutation
    MinHash (see ``_sketch``): one hash per shingle instead of ``num_perm``. ``resolve`` checks
    every LSH candidate that passes the pre-filter with the exact Jaccard of the two shingle sets
    (64-bit hashes of texts read back from the file; recent ones cached up to 64 MB), so a
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
        batch_chars: int = 1 << 20,
        min_batch_chars: int = 1 << 15,
        spill_dir: str | Path | None = None,
    ) -> None:
        if not 0.0 < threshold <= 1.0:
            raise ConfigError(f"jaccard threshold must be in (0, 1], got {threshold}")
        if ngram < 1 or num_perm < 1:
            raise ConfigError(f"ngram and num_perm must be >= 1, got {ngram} and {num_perm}")
        self.threshold = threshold
        self.ngram = ngram
        self.num_perm = num_perm
        self.bands, self.rows = choose_bands(threshold, num_perm, min_recall=min_recall)
        self._bins = self.bands * self.rows
        self._seed_key = _fmix64(np.array([seed & 0xFFFFFFFFFFFFFFFF], dtype=np.uint64) + _POLY)[0]
        # A candidate whose signature agrees in fewer bins than this is rejected unverified: for
        # a pair at the threshold that is 7 standard deviations below the expected agreement
        # (the 8-bit bins agree by chance only ever add to it), so recall does not change.
        k, t = self._bins, threshold
        self._min_agree = max(0, math.floor(k * t - 7.0 * math.sqrt(k * t * (1.0 - t)) - 2.0))
        self._batch_chars = batch_chars
        self._min_batch_chars = min(min_batch_chars, batch_chars)
        self._ids: list[str] = []
        self._id_set: set[str] = set()
        self._scores = array("d")
        self._keys: list[np.ndarray] = []
        self._agree: list[np.ndarray] = []
        self._texts = TextSpill(spill_dir)
        self._pending: list[np.ndarray] = []
        self._pending_chars = 0
        # Batches are sketched by one worker thread while the caller goes on adding: in a run,
        # sketching overlaps the wait for replies instead of stalling the event loop or piling
        # up for ``resolve``. One worker keeps batches (and spill offsets) in order.
        self._worker: ThreadPoolExecutor | None = None
        self._inflight: Future[None] | None = None
        self._broken: BaseException | None = None
        self.verified = 0

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, sample_id: str, text: str, score: float) -> None:
        """Register one sample; ``score`` ranks it (higher is kept first)."""
        if sample_id in self._id_set:
            raise ValueError(f"sample id {sample_id!r} added twice")
        if self._broken is not None:
            self._wait()  # raises: the index lost a batch
        self._id_set.add(sample_id)
        self._ids.append(sample_id)
        self._scores.append(-math.inf if math.isnan(score) else float(score))
        codes = _codes(text)
        self._pending.append(codes)
        self._pending_chars += len(codes)
        # Shingling and MinHash run per batch: numpy call overhead per text would dominate.
        # A batch goes to the worker once it has min_batch_chars and the worker is free; at
        # batch_chars the caller waits for the worker, which bounds the memory of pending texts.
        if self._pending_chars >= self._min_batch_chars:
            busy = self._inflight is not None and not self._inflight.done()
            if not busy or self._pending_chars >= self._batch_chars:
                self._submit()

    def _submit(self) -> None:
        """Hand the pending texts to the worker thread (after the batch it is working on)."""
        self._wait()  # in order, and a failure surfaces before more texts are handed over
        batch, self._pending, self._pending_chars = self._pending, [], 0
        if self._worker is None:
            self._worker = ThreadPoolExecutor(1, thread_name_prefix="sft-distill-minhash")
            weakref.finalize(self, self._worker.shutdown, wait=False)
        self._inflight = self._worker.submit(self._sketch_batch, batch)

    def _wait(self) -> None:
        """Wait for the worker's batch. A failed batch leaves texts out of the index for good,
        so the deduplicator refuses any further use (rather than resolve with samples missing).

        Raises:
            OutputError: the spill file could not be written (e.g. the disk is full).
        """
        if self._broken is not None:
            raise RuntimeError("a batch of texts failed to be indexed") from self._broken
        future = self._inflight
        if future is None:
            return
        try:
            future.result()
        except BaseException as exc:
            if future.done():  # the batch itself failed (not this wait being interrupted)
                self._inflight = None
                self._broken = exc
                if isinstance(exc, OSError):
                    raise OutputError(
                        f"cannot write the dedup spill file: {exc.strerror or exc}"
                    ) from exc
            raise
        self._inflight = None

    def _flush(self) -> None:
        """Sketch whatever is pending and wait until every batch is in the index."""
        self._wait()
        if self._pending:
            batch, self._pending, self._pending_chars = self._pending, [], 0
            self._sketch_batch(batch)

    def _sketch_batch(self, batch: list[np.ndarray]) -> None:
        """Normalise, spill, shingle and sketch a batch of texts; keep their band keys."""
        raw_lengths = np.fromiter(map(len, batch), dtype=np.int64, count=len(batch))
        codes = np.concatenate(batch)
        del batch
        keep = ~_drop_mask(codes)
        kept_before = np.zeros(len(codes) + 1, dtype=np.int64)
        np.cumsum(keep, out=kept_before[1:])
        raw_ends = np.cumsum(raw_lengths)
        lengths = kept_before[raw_ends] - kept_before[raw_ends - raw_lengths]
        codes = codes[keep]
        norm = codes.tobytes().decode("utf-32-le")
        bounds = [0, *itertools.accumulate(lengths.tolist())]
        self._texts.extend([norm[a:b].encode("utf-8") for a, b in itertools.pairwise(bounds)])
        hashes, counts = _shingle_batch(codes, lengths, self.ngram)
        sig = _sketch(hashes, counts, self._bins, self._seed_key)
        self._keys.append(_band_keys(sig, self.bands, self.rows))
        self._agree.append(sig.astype(np.uint8))

    def save(self, path: str | Path) -> None:
        """Write the index (ids, scores, band keys, pre-filter bytes, normalised texts) to
        ``path`` (``.npz``) for ``add_saved`` in another process: a shard's signatures, made
        where its samples were judged (``--engine ray``).

        Raises:
            OutputError: the file cannot be written.
        """
        keys, agree = self._index()
        texts = [self._texts.get(i) for i in range(len(self._ids))]
        try:
            with open(path, "wb") as f:
                np.savez(
                    f,
                    settings=self._settings(),
                    ids=np.array(self._ids, dtype=str),
                    scores=np.array(self._scores, dtype=np.float64),
                    keys=keys,
                    agree=agree,
                    texts=np.frombuffer(b"".join(texts), dtype=np.uint8),
                    ends=np.cumsum([len(t) for t in texts], dtype=np.int64),
                )
        except OSError as exc:
            raise OutputError(f"{path}: cannot write signatures: {exc.strerror or exc}") from exc

    def add_saved(self, path: str | Path) -> None:
        """Add the samples ``save`` wrote, without sketching their texts again.

        Raises:
            ValueError: the file was made with other settings (threshold, n-gram, seed), or
                holds an id already added.
        """
        with np.load(path) as data:
            if not np.array_equal(data["settings"], self._settings()):
                raise ValueError(f"{path}: signatures made with other dedup settings")
            ids = [str(i) for i in data["ids"].tolist()]
            repeated = self._id_set.intersection(ids)
            if repeated:
                raise ValueError(f"sample id {min(repeated)!r} added twice")
            self._flush()  # the index's rows stay in the order of the ids
            blob, ends = data["texts"].tobytes(), data["ends"].tolist()
            self._texts.extend([blob[a:b] for a, b in zip([0, *ends[:-1]], ends, strict=True)])
            self._ids.extend(ids)
            self._id_set.update(ids)
            self._scores.extend(data["scores"].tolist())
            self._keys.append(data["keys"])
            self._agree.append(data["agree"])

    def _settings(self) -> np.ndarray:
        """What a saved index must share with this one to be merged into it."""
        values = (self.threshold, self.ngram, self.bands, self.rows, int(self._seed_key))
        return np.array("|".join(map(str, values)))

    def _index(self) -> tuple[np.ndarray, np.ndarray]:
        """All band keys (n x bands) and pre-filter bytes (n x bins), merged once."""
        self._flush()
        if len(self._keys) != 1:
            empty = not self._keys
            bands, bins = self.bands, self._bins
            self._keys = [np.empty((0, bands), np.uint64) if empty else np.concatenate(self._keys)]
            self._agree = [np.empty((0, bins), np.uint8) if empty else np.concatenate(self._agree)]
        return self._keys[0], self._agree[0]

    def _band_groups(self, keys: np.ndarray) -> np.ndarray:
        """Per sample and band, a dense id of the bucket, or -1 when no other sample shares it."""
        n = len(keys)
        # int32 halves this n x bands array; ids stay below n * bands.
        dtype = np.int32 if n * self.bands < 2**31 else np.int64
        groups = np.full((n, self.bands), -1, dtype=dtype)
        next_id = 0
        for j in range(self.bands):
            order = np.argsort(keys[:, j])
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

    def _ranking(self) -> np.ndarray:
        return best_first(self._ids, self._scores)

    def _verifier(self, agree: np.ndarray) -> Callable[[int, np.ndarray], int | None]:
        """A function (i, candidates best first) -> the first verified near-duplicate, or None."""
        threshold, min_agree = self.threshold, self._min_agree
        # Kept samples at the centre of a bucket are verified again and again: cache their sets.
        shingles = _ShingleCache(self._texts, self.ngram, _VERIFY_CACHE_BYTES)

        def first(i: int, cands: np.ndarray) -> int | None:
            agreeing = np.count_nonzero(agree[cands] == agree[i], axis=1)
            for j in cands[agreeing >= min_agree].tolist():
                self.verified += 1
                if _jaccard_sets(shingles(i), shingles(j), threshold) is not None:
                    return int(j)
            return None

        return first

    def resolve(self) -> dict[str, str]:
        """Map each dropped sample id to the id of the kept sample it near-duplicates.

        Visits samples best first; a sample is dropped when an already kept sample shares an LSH
        band with it, passes the signature pre-filter and their exact Jaccard meets the
        threshold. It then names the best-ranked such kept sample.
        """
        keys, agree = self._index()
        groups = self._band_groups(keys)
        order = self._ranking()
        rank = np.empty(len(order), dtype=np.int64)
        rank[order] = np.arange(len(order))
        # Kept samples per bucket, as linked lists in flat arrays (4 + 8 bytes per entry):
        # Python lists per bucket would cost more than the whole index.
        head = array("i", [-1]) * (int(groups.max()) + 1 if groups.size else 0)
        nxt = array("i")
        member = array("i")
        first_match = self._verifier(agree)
        ids = self._ids
        mapping: dict[str, str] = {}
        self.verified = 0
        # A sample that shares no band with anything is kept, and nobody can find it.
        in_bucket: np.ndarray = np.any(groups >= 0, axis=1)
        for i in order[in_bucket[order]].tolist():
            row = [g for g in groups[i].tolist() if g >= 0]
            cands: set[int] = set()
            for g in row:
                node = head[g]
                while node >= 0:
                    cands.add(member[node])
                    node = nxt[node]
            dup = None
            if cands:
                c = np.fromiter(cands, dtype=np.int64, count=len(cands))
                dup = first_match(i, c[np.argsort(rank[c])])
            if dup is None:
                for g in row:
                    nxt.append(head[g])
                    member.append(i)
                    head[g] = len(member) - 1
            else:
                mapping[ids[i]] = ids[dup]
        log.info(
            "jaccard dedup: %d samples, %d verified pairs, %d duplicates",
            len(order),
            self.verified,
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

        Unlike ``resolve`` this checks all LSH candidate pairs that pass the pre-filter, so it is
        quadratic in bucket size.
        """
        keys, agree = self._index()
        groups = self._band_groups(keys)
        pairs: set[tuple[int, int]] = set()
        for j in range(self.bands):
            col = groups[:, j]
            members = np.flatnonzero(col >= 0)
            order = members[np.argsort(col[members], kind="stable")]
            bounds = np.flatnonzero(np.diff(col[order])) + 1
            for grp in np.split(order, bounds):
                g = grp.tolist()
                pairs.update((a, b) for k, a in enumerate(g) for b in g[k + 1 :])
        texts = self._texts
        out = []
        for a, b in sorted(pairs):
            if int(np.count_nonzero(agree[a] == agree[b])) < self._min_agree:
                continue
            ta, tb = texts.get(a), texts.get(b)
            sim = 1.0 if ta == tb else None
            if sim is None:
                sets = _utf8_shingles(ta, self.ngram), _utf8_shingles(tb, self.ngram)
                sim = _jaccard_sets(*sets, self.threshold)
            if sim is not None:
                out.append((self._ids[a], self._ids[b], sim))
        return out

    def close(self) -> None:
        """Stop the worker and delete the spilled texts now, not when collected; safe twice."""
        if self._inflight is not None:
            self._inflight.cancel()
            with contextlib.suppress(Exception):  # a failed batch is of no interest any more
                self._inflight.result()
            self._inflight = None
        if self._worker is not None:
            self._worker.shutdown(wait=True)
        self._texts.close()


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
