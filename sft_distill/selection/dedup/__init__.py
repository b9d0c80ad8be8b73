"""Near-duplicate removal: MinHash-LSH over character n-grams (``jaccard``), or cosine over
embeddings (``embedding``); ``make_deduplicator`` builds the one a config asks for.

Both deduplicators take samples one at a time (``add``) and decide at the end (``resolve``),
keeping only a compact index per sample while streaming: texts go to an anonymous temporary file
(``spill_dir``, default the system temp dir) and are read back when needed, so RAM per sample
does not grow with text length. Both resolve greedily: samples are visited best score first
(ties: smallest id) and a sample is kept unless it is a verified near-duplicate of a sample
already kept; a dropped sample names the best-ranked kept sample it duplicates. Unlike
clustering (union-find), this never drops a sample as a duplicate of something it is not itself
similar to; the price is that two dropped samples may be similar to different kept ones.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ...errors import ConfigError
from .embedding import EmbeddingDeduplicator
from .jaccard import JaccardDeduplicator

if TYPE_CHECKING:
    from ...config.models import DistillConfig
    from ...llm.cache import ResponseCache


def make_deduplicator(
    config: DistillConfig,
    *,
    cache: ResponseCache | None = None,
    spill_dir: str | Path | None = None,
) -> JaccardDeduplicator | EmbeddingDeduplicator:
    """Build the deduplicator the config asks for.

    Args:
        config: the run's configuration (method, threshold, n-gram, batch size, seed).
        cache: where embeddings are stored, so a rerun does not embed again (embedding only).
        spill_dir: where the texts wait for ``resolve`` (default: the system temp dir).

    Raises:
        ConfigError: ``dedup_method`` is "embedding" but no ``embed_fn`` was given.
    """
    method = config.effective_dedup_method
    threshold = config.effective_dedup_threshold
    if method == "embedding":
        if config.embed_fn is None:
            raise ConfigError("dedup_method 'embedding' needs an embed_fn (pass embed_fn=...)")
        return EmbeddingDeduplicator(
            config.embed_fn,
            threshold=threshold,
            batch_size=config.embed_batch_size,
            cache=cache,
            spill_dir=spill_dir,
        )
    return JaccardDeduplicator(
        threshold=threshold, ngram=config.dedup_ngram, seed=config.seed, spill_dir=spill_dir
    )
