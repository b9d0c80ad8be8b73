"""The simulator's prompt prefix cache: how many prompt tokens a real server would have cached.

OpenAI caches prompts from 1,024 tokens and reports the cached part in 128-token steps; DeepSeek
hits only whole "prefix units" (the end of each request, and a prefix two requests were seen to
share: A+B then A+C misses, a third A+D hits); DashScope's implicit cache works like OpenAI's
(../shared/wire.md "Cached prompt tokens", DeepSeek's context-caching guide). Both are modelled
over the serialized messages, in blocks of 128 tokens (at the simulator's 2 characters a token),
each remembered for ``ttl_s`` after it was last seen.
"""

from __future__ import annotations

import collections
import hashlib
from collections.abc import Sequence

BLOCK_TOKENS = 128
CHARS_PER_TOKEN = 2  # as the simulator counts prompt tokens
_MAX_ENTRIES = 200_000


def serialize(model: str, messages: Sequence[tuple[str, str]]) -> str:
    """The text a prefix is matched over: the model, then each (role, content) in order."""
    return model + "\x1d" + "".join(f"{role}\x1f{content}\x1e" for role, content in messages)


class PrefixCache:
    """Prefixes seen lately, by the hash of their 128-token blocks.

    Args:
        min_tokens: no hit below this many tokens (OpenAI: 1,024).
        ttl_s: how long a prefix is remembered after it was last used.
        units: DeepSeek's rule: only a whole prefix unit hits.
    """

    def __init__(self, min_tokens: int = 1024, ttl_s: float = 300.0, *, units: bool = False):
        self.min_tokens = min_tokens
        self.ttl_s = ttl_s
        self.units = units
        self._seen: collections.OrderedDict[bytes, float] = collections.OrderedDict()
        self._units: collections.OrderedDict[bytes, float] = collections.OrderedDict()

    def _blocks(self, text: str) -> list[bytes]:
        """The running hash at the end of each whole block of ``text``."""
        size = BLOCK_TOKENS * CHARS_PER_TOKEN
        h = hashlib.blake2b(digest_size=16)
        out = []
        for start in range(0, len(text) - size + 1, size):
            h.update(text[start : start + size].encode("utf-8", "surrogatepass"))
            out.append(h.digest())
        return out

    def _live(self, table: collections.OrderedDict[bytes, float], key: bytes, now: float) -> bool:
        seen = table.get(key)
        return seen is not None and now - seen <= self.ttl_s

    def _touch(self, table: collections.OrderedDict[bytes, float], key: bytes, now: float) -> None:
        table[key] = now
        table.move_to_end(key)
        while table:
            oldest, when = next(iter(table.items()))
            if now - when <= self.ttl_s and len(table) <= _MAX_ENTRIES:
                break
            del table[oldest]

    def cached_tokens(self, text: str, now: float) -> int:
        """Tokens of ``text`` a server would take from its cache; ``text`` is then cached."""
        blocks = self._blocks(text)
        common = 0
        while common < len(blocks) and self._live(self._seen, blocks[common], now):
            common += 1
        hit = common
        if self.units:
            hit = next(
                (n for n in range(common, 0, -1) if self._live(self._units, blocks[n - 1], now)), 0
            )
            for n in {common, len(blocks)} - {0}:
                self._touch(self._units, blocks[n - 1], now)
        for block in blocks:
            self._touch(self._seen, block, now)
        tokens = hit * BLOCK_TOKENS
        return tokens if tokens >= self.min_tokens else 0
