"""``--engine ray``: the same job past one machine, on a Ray cluster (or a local Ray instance).

The input is split into shards by a stable hash of each unit's id (``ids.shard_of``). Each Ray
worker runs the normal stages (generation, gates, judging) on its shard in
``OUTPUT/shards/<k>/`` with its own response cache, writes its judged samples there and a
completion marker (``shards``, ``worker``). Each endpoint's limits are global: one Ray actor per
endpoint holds its concurrency, AIMD state and per-minute budgets, and workers lease slots from
it in batches (``budget``). The driver then merges every shard's samples through the run's own
deduplicator and ends with the same finalize as a local run (``driver``).

Ray is imported only here, and only when ``--engine ray`` runs: ``pip install 'sft-distill[ray]'``.
"""

from __future__ import annotations

from types import ModuleType

from ..errors import ConfigError

INSTALL_HINT = "--engine ray needs Ray: pip install 'sft-distill[ray]'"


def require_ray() -> ModuleType:
    """The ``ray`` module.

    Raises:
        ConfigError: Ray is not installed (the message says what to install).
    """
    try:
        import ray
    except ImportError:
        raise ConfigError(INSTALL_HINT) from None
    return ray
