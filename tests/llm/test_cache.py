"""The response cache: replies survive, and a fresh cache answers misses without SQL."""

from __future__ import annotations

import hashlib

import pytest

from sft_distill.llm.cache import ResponseCache, _KeyFilter, finish_key, key_prefix, request_key

REPLY = {
    "model": "m",
    "content": "答：保险人应当及时赔付。",
    "reasoning": None,
    "finish_reason": "stop",
    "prompt_tokens": 3,
    "completion_tokens": 5,
}


def key(i: int) -> str:
    return hashlib.blake2b(str(i).encode(), digest_size=20).hexdigest()


@pytest.mark.slow
def test_key_filter_has_no_false_negatives_and_few_false_positives():
    f = _KeyFilter()
    for i in range(20_000):
        f.add(key(i))
    assert all(key(i) in f for i in range(20_000))
    false_positives = sum(key(i) in f for i in range(20_000, 120_000))
    assert false_positives < 10  # about 0.005 expected at this fill


def test_fresh_cache_serves_pending_committed_and_reopened_replies(tmp_path):
    path = tmp_path / "c.sqlite3"
    with ResponseCache(path, exclusive=True) as cache:
        assert cache._put_keys is not None  # misses are answered without SQL
        assert cache.get(key(1)) is None
        cache.put(key(1), REPLY)
        assert cache.get(key(1))["content"] == REPLY["content"]  # from memory
        cache.flush()
        assert not cache._pending  # committed: now only SQLite has it
        assert cache.get(key(1))["content"] == REPLY["content"]
        assert cache.get(key(2)) is None
    with ResponseCache(path, exclusive=True) as reopened:  # not empty: every miss asks SQLite
        assert reopened._put_keys is None
        assert reopened.get(key(1))["completion_tokens"] == 5
        assert reopened.get(key(2)) is None


def test_key_prefix_copied_gives_the_same_key_as_request_key():
    payload = {
        "model": "judge",
        "temperature": 0.1,
        "messages": [{"role": "user", "content": "问"}],
    }
    prefix = key_prefix("primary@sim", payload, skip={"max_tokens"})
    first = finish_key(prefix, payload)
    assert first == finish_key(prefix, payload)  # the prefix is not consumed
    assert first == request_key("primary@sim", {**payload, "max_tokens": 9}, skip={"max_tokens"})
    other = {**payload, "messages": [{"role": "user", "content": "答"}]}
    assert finish_key(prefix, other) != first


def test_a_shared_cache_sees_what_another_connection_committed(tmp_path):
    path = tmp_path / "c.sqlite3"
    with ResponseCache(path) as a, ResponseCache(path) as b:
        assert a._put_keys is None  # not exclusive: no shortcut for misses
        b.put(key(7), REPLY)
        b.flush()
        assert a.get(key(7))["content"] == REPLY["content"]  # not paid for twice
