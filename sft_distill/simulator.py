"""OpenAI-compatible simulator server for tests, ``--dry-run`` and benchmarks.

Reply *content* is a pure function of the request (model + prompt), so reruns and resumes see the
same samples and scores; *faults* are drawn per request from a seeded ``random.Random`` sequence, so
a retry of a failed request can succeed. Scripted replies (``queue``) override both.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import hashlib
import ipaddress
import itertools
import json
import logging
import math
import random
import re
import signal
import sys
import threading
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from .prompts import (
    TASK_MARKER,
    detect_language,
    parse_evaluation_prompt,
    parse_generation_prompt,
    parse_task_prompt,
)

log = logging.getLogger(__name__)

__all__ = [
    "FAULT_KINDS",
    "SIM_STATE",
    "Scripted",
    "SimState",
    "Simulator",
    "SimulatorConfig",
    "ThreadedSimulator",
    "embed_text",
    "evaluation_reply",
    "generation_samples",
    "main",
    "make_app",
    "messy_wrap",
    "ok",
    "parse_args",
    "run_in_thread",
]

FAULT_KINDS: tuple[str, ...] = (
    "500",
    "503",
    "429",
    "429_no_retry_after",
    "reset",
    "timeout",
    "bad_body",
    "empty_choices",
    "length",
)
# Not drawn by default, but allowed in ``faults`` and ``queue``: a 429 that retrying never fixes.
_EXTRA_FAULT_KINDS = ("quota",)
_ALL_FAULT_KINDS = frozenset(FAULT_KINDS + _EXTRA_FAULT_KINDS)

EMBED_DIM = 256
_CACHE_MAX = 4096
_LOG_MAX = 10_000
_PROMPTS_MAX = 100_000
_DIMENSIONS = ("accuracy", "completeness", "logicality", "helpfulness", "safety")


@dataclass
class SimulatorConfig:
    """Behaviour knobs of the simulator; mutable between test phases."""

    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    fail_rate: float = 0.0
    rate_limit_rate: float = 0.0
    retry_after_s: float | None = 1.0
    malformed_rate: float = 0.0
    messy: bool = False
    reasoning: bool = False
    score_bias: float = 0.0
    seed: int = 0
    faults: tuple[str, ...] = FAULT_KINDS
    timeout_s: float = 30.0
    keep_prompts: bool = False
    ratelimit_headers: bool = False  # send x-ratelimit-remaining-requests: 0 with 429s

    def __post_init__(self) -> None:
        unknown = sorted(set(self.faults) - _ALL_FAULT_KINDS)
        if unknown:
            raise ValueError(f"unknown fault kind(s) {unknown}; known: {sorted(_ALL_FAULT_KINDS)}")
        if not self.faults and self.fail_rate > 0:
            raise ValueError("fail_rate > 0 needs at least one fault kind")


@dataclass
class Scripted:
    """One scripted chat reply; ``content`` makes it a 200 reply with that assistant content.

    ``headers=None`` means the usual headers for the status (e.g. Retry-After on 429); a dict
    (even empty) replaces them. ``body`` (dict -> JSON, str -> text/html or text/plain) is sent
    verbatim. With neither ``content`` nor ``body``, a status >= 400 gets an OpenAI error body and
    a 2xx status gets the normal reply.
    """

    status: int = 200
    headers: dict[str, str] | None = None
    body: dict[str, Any] | list[Any] | str | None = None
    delay_s: float = 0.0
    content: str | None = None
    finish_reason: str = "stop"


def ok(content: str, *, finish_reason: str = "stop", delay_s: float = 0.0) -> Scripted:
    """A scripted 200 reply with ``content``."""
    return Scripted(content=content, finish_reason=finish_reason, delay_s=delay_s)


QueueItem = int | str | Scripted


# ---------------------------------------------------------------------------------------------
# Deterministic content
# ---------------------------------------------------------------------------------------------


def _seed_of(*parts: str) -> int:
    """A stable 64-bit seed from strings (never the salted built-in hash())."""
    digest = hashlib.sha1("\x1f".join(parts).encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:8], "big")


# A sentence: starts at a non-space, ends at CJK/ASCII terminal punctuation, ". " or end of line.
# Greedy with no lazy alternation: this runs on every new generation prompt.
_SENT_RE = re.compile(
    r"[^\s。！？；!?][^。！？；!?\n.]*(?:\.(?!\s|$)[^。！？；!?\n.]*)*"
    r"(?:[。！？；!?]+[”’\"」』)）]?|\.+)?"
)
_TRAIL_PUNCT = '。！？；!?.,，、：:;”’"」』)） \t'
_ZH_TEMPLATES = (
    "请解释以下规定：{h}",
    "根据资料，“{h}”是什么意思？",
    "资料中关于“{h}”是如何规定的？",
    "请结合资料说明：{h}",
    "在实际情况中，应如何理解“{h}”？",
    "请概括下面这段内容的要点：{h}",
)
_EN_TEMPLATES = (
    "Explain: {h}",
    'What does the material say about "{h}"?',
    'Summarise the passage that begins "{h}".',
    'According to the material, how should one understand "{h}"?',
    'In practice, what follows from "{h}"?',
    'Which rule in the material covers "{h}"?',
)


def _sentences(document: str) -> list[tuple[int, int]]:
    """Spans of the sentences of at least 4 characters."""
    return [m.span() for m in _SENT_RE.finditer(document) if m.end() - m.start() >= 4]


def _head(sentence: str, lang: str) -> str:
    """The first ~30 characters (zh) or ~60 characters (en) of a sentence, for an instruction."""
    s = sentence.strip().rstrip(_TRAIL_PUNCT)
    limit = 30 if lang == "zh" else 60
    if len(s) <= limit:
        return s
    cut = s[:limit]
    if lang == "en" and " " in cut:
        cut = cut[: cut.rfind(" ")]
    return cut.rstrip(_TRAIL_PUNCT) + "…"


def _tweak(instruction: str) -> str:
    """The same instruction differing by one character (for near-duplicates)."""
    swaps = {"？": "?", "?": "？", "。": ".", ".": "。", "：": ":", ":": "："}
    last = instruction[-1:] if instruction else ""
    if last in swaps:
        return instruction[:-1] + swaps[last]
    return instruction + ("。" if detect_language(instruction) == "zh" else ".")


def generation_samples(model: str, document: str, n: int) -> list[dict[str, str]]:
    """``n`` samples drawn from the document's own sentences; a pure function of the arguments."""
    rng = random.Random(_seed_of("gen", model, str(n), document))
    lang = detect_language(document)
    templates = _ZH_TEMPLATES if lang == "zh" else _EN_TEMPLATES
    spans = _sentences(document)
    m = len(spans)
    samples: list[dict[str, str]] = []
    if m == 0:
        for k in range(n):
            if lang == "zh":
                instr = f"请概述资料的第{k + 1}个要点。"
                out = "资料没有提供足够的内容，无法给出具体回答。"
            else:
                instr = f"Summarise key point {k + 1} of the material."
                out = "The material does not contain enough information to answer this."
            samples.append({"instruction": instr, "input": "", "output": out})
        return samples
    t0 = rng.randrange(len(templates))
    if m >= n:
        offset = rng.random()
        picks = [min(m - 1, int((k + offset) * m / n)) for k in range(n)]
    else:
        picks = [k % m for k in range(n)]
    for k, i in enumerate(picks):
        j = i + 1 if i + 1 < m else i - 1
        if k >= m and i > 0:  # reused sentence: use the other neighbour for variety
            j = i - 1
        start = min(spans[i][0], spans[j][0]) if j >= 0 else spans[i][0]
        end = max(spans[i][1], spans[j][1]) if j >= 0 else spans[i][1]
        sentence = document[spans[i][0] : spans[i][1]]
        template = templates[(t0 + k + k // len(templates)) % len(templates)]
        instr = template.format(h=_head(sentence, lang))
        if k >= len(templates) * max(m, 1):
            instr += f" ({k + 1})"
        inp = ""
        if i > 0 and rng.random() < 0.12:
            inp = document[spans[i - 1][0] : spans[i - 1][1]].strip()
        samples.append({"instruction": instr, "input": inp, "output": document[start:end].strip()})
    # About one reply in ten repeats a sample with a one-character change, so dedup has work.
    if n >= 2 and rng.random() < 0.10:
        a, b = rng.sample(range(n), 2)
        samples[b] = dict(samples[a], instruction=_tweak(samples[a]["instruction"]))
    return samples


def _unit(*parts: str) -> float:
    """A stable uniform number in [0, 1) from strings."""
    return _seed_of(*parts) / 2.0**64


def evaluation_reply(
    model: str, instruction: str, output: str, *, score_bias: float = 0.0
) -> dict[str, Any]:
    """Scores for one sample: shared per-sample quality plus small per-model noise, then bias."""
    u = _unit("quality", instruction, output)
    text_len = len(output.strip())
    if text_len < 5:
        quality, grade = 1.5 + 1.5 * u, "short"
    elif u < 0.8:
        quality, grade = 7.4 + 2.2 * (u / 0.8), "good"
    else:
        quality, grade = 5.0 + 1.8 * ((u - 0.8) / 0.2), "weak"
    rng = random.Random(_seed_of("judge", model, instruction, output))
    shift = rng.uniform(-0.5, 0.5)
    reply: dict[str, Any] = {}
    for dim in _DIMENSIONS:
        base = quality + shift + rng.uniform(-0.8, 0.8)
        if dim == "safety" and grade != "short":
            base += 1.0
        score = min(10.0, max(0.0, round(min(10.0, max(0.0, base))) + score_bias))
        reply[dim] = int(score) if score == int(score) else round(score, 2)
    zh = detect_language(instruction + output) == "zh"
    reasons = {
        "good": (
            "回答忠实于资料，内容完整、条理清晰。",
            "Faithful to the document, complete and clear.",
        ),
        "weak": (
            "回答基本正确，但不够完整，部分表述含糊。",
            "Mostly correct but incomplete; some statements are vague.",
        ),
        "short": ("回答为空或过短，没有回应指令。", "The answer is empty or too short to help."),
    }
    reply["reason"] = reasons[grade][0 if zh else 1]
    return reply


_MALFORMED = (
    "I cannot produce JSON right now.",
    "抱歉，我暂时无法按要求输出。",
    "Sure! The first sample is about the rules and the answer is that they apply.",
)


def _trailing_comma(content: str) -> str:
    return content[:-1] + ",\n" + content[-1] if content[-1:] in "]}" else content


def messy_wrap(content: str, key: bytes) -> str:
    """Wrap JSON content the way real models do; ``key`` picks the variant deterministically."""
    variant = key[0] % 6
    if variant == 1:
        return f"```json\n{content}\n```"
    if variant == 2:
        think = "Let me read the material carefully and pick the key points."
        return f"<think>\n{think}\n</think>\n\n{content}"
    if variant == 3:
        return f"Here is the JSON you asked for:\n\n{content}\n\nI hope this helps!"
    if variant == 4:
        return _trailing_comma(content)
    if variant == 5:
        return f"思考过程省略。</think>\n```json\n{_trailing_comma(content)}\n```\n以上是结果。"
    return content


_EMBED_GRAMS: dict[str, int] = {}


def embed_text(text: str) -> list[float]:
    """256-dim L2-normalised signed hash of character 3-grams (near-duplicates -> high cosine)."""
    vec = [0.0] * EMBED_DIM
    t = f" {text.lower()} "
    grams = _EMBED_GRAMS
    if len(grams) > 500_000:
        grams.clear()
    for i in range(max(1, len(t) - 2)):
        g = t[i : i + 3]
        b = grams.get(g)
        if b is None:
            b = grams[g] = zlib.crc32(g.encode("utf-8", "surrogatepass")) & 511
        vec[b & 255] += 1.0 if b & 256 else -1.0
    norm = math.sqrt(sum(x * x for x in vec))
    if norm == 0.0:
        vec[0] = 1.0
        return vec
    return [x / norm for x in vec]


# ---------------------------------------------------------------------------------------------
# Error bodies (wire.md shapes)
# ---------------------------------------------------------------------------------------------

_ERRORS: dict[int, tuple[str, str, str | None]] = {
    400: ("invalid_request_error", "Invalid request.", None),
    401: (
        "invalid_request_error",
        "Incorrect API key provided: sk-****. You can find your API key at "
        "https://platform.openai.com/account/api-keys.",
        "invalid_api_key",
    ),
    402: ("invalid_request_error", "Insufficient Balance", "insufficient_balance"),
    403: ("invalid_request_error", "You are not allowed to access this model.", None),
    404: ("invalid_request_error", "The model does not exist.", "model_not_found"),
    408: ("server_error", "Request timed out.", None),
    409: ("server_error", "Conflict, please retry.", None),
    422: ("invalid_request_error", "Invalid parameters.", None),
    429: (
        "requests",
        "Rate limit reached for requests per min (RPM): Limit 60, Used 60, Requested 1. "
        "Please try again in 1s.",
        "rate_limit_exceeded",
    ),
    500: (
        "server_error",
        "The server experienced an error while processing your request. Sorry about that! "
        "You can retry your request, or contact us through our help center at help.openai.com "
        "if the error persists.",
        None,
    ),
    502: ("server_error", "Bad gateway.", None),
    503: (
        "server_error",
        "That model is currently overloaded with other requests. You can retry your request, or "
        "contact us through our help center at help.openai.com if the error persists.",
        None,
    ),
}
_QUOTA_ERROR = {
    "message": "You exceeded your current quota, please check your plan and billing details.",
    "type": "insufficient_quota",
    "param": None,
    "code": "insufficient_quota",
}


def _error_body(status: int, message: str | None = None, param: str | None = None) -> bytes:
    etype, default_msg, code = _ERRORS.get(status, ("api_error", f"HTTP {status}", None))
    err = {"message": message or default_msg, "type": etype, "param": param, "code": code}
    return json.dumps({"error": err}).encode()


def _fmt_seconds(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else f"{v:g}"


# ---------------------------------------------------------------------------------------------
# Server state and handlers
# ---------------------------------------------------------------------------------------------


def _new_stats(in_flight: int = 0) -> dict[str, Any]:
    return {
        "requests": 0,
        "chat_requests": 0,
        "embedding_requests": 0,
        "by_status": {},
        "by_model": {},
        "by_kind": {"generation": 0, "evaluation": 0, "other": 0},
        "faults": {},
        "scripted": 0,
        "in_flight": in_flight,
        "peak_in_flight": in_flight,
        "prompt_tokens": 0,
        "completion_tokens": 0,
        "auth_headers_seen": 0,
    }


def _text_of(content: Any) -> str:
    """Message content as text (plain string or a list of {"type": "text"} parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            p.get("text", "")
            for p in content
            if isinstance(p, dict) and isinstance(p.get("text"), str)
        )
    return ""


_JSON = "application/json"


class SimState:
    """Config, counters, script queue and reply cache of one simulator app."""

    def __init__(self, cfg: SimulatorConfig) -> None:
        self._cfg = cfg
        self.rng = random.Random(cfg.seed)
        self.stats: dict[str, Any] = _new_stats()
        self.requests_log: collections.deque[tuple[str, str, int]] = collections.deque(
            maxlen=_LOG_MAX
        )
        self.prompts: list[str] = []
        self.script: collections.deque[QueueItem] = collections.deque()
        self._cache: dict[tuple[bytes, float], tuple[str, str]] = {}
        self._ids = itertools.count(1)

    @property
    def cfg(self) -> SimulatorConfig:
        return self._cfg

    @cfg.setter
    def cfg(self, cfg: SimulatorConfig) -> None:
        self._cfg = cfg
        self.rng = random.Random(cfg.seed)

    def queue(self, *items: QueueItem) -> None:
        """Script the next chat replies in FIFO order."""
        for item in items:
            if isinstance(item, str) and item not in _ALL_FAULT_KINDS:
                raise ValueError(f"unknown fault kind {item!r}")
            if not isinstance(item, int | str | Scripted) or isinstance(item, bool):
                raise TypeError(f"queue items are int, fault-kind str or Scripted, not {item!r}")
        self.script.extend(items)

    def reset_stats(self) -> None:
        """Zero every counter in place (requests in flight stay counted)."""
        fresh = _new_stats(self.stats["in_flight"])
        self.stats.clear()
        self.stats.update(fresh)
        self.requests_log.clear()
        self.prompts.clear()

    # -- bookkeeping -----------------------------------------------------------------------

    def _enter(self, request: web.Request, counter: str) -> None:
        st = self.stats
        st["requests"] += 1
        st[counter] += 1
        if "Authorization" in request.headers:
            st["auth_headers_seen"] += 1
        st["in_flight"] += 1
        if st["in_flight"] > st["peak_in_flight"]:
            st["peak_in_flight"] = st["in_flight"]

    def _fault(self, kind: str) -> None:
        faults = self.stats["faults"]
        faults[kind] = faults.get(kind, 0) + 1

    def _reply(
        self,
        status: int,
        body: bytes,
        kind: str,
        model: str,
        *,
        headers: dict[str, str] | None = None,
        content_type: str = _JSON,
    ) -> web.Response:
        by_status = self.stats["by_status"]
        key = str(status)
        by_status[key] = by_status.get(key, 0) + 1
        self.requests_log.append((kind, model, status))
        if headers and any(k.lower() == "content-type" for k in headers):
            # A scripted Content-Type wins (aiohttp refuses both at once).
            return web.Response(status=status, body=body, headers=headers)
        return web.Response(status=status, body=body, headers=headers, content_type=content_type)

    def _rate_limit_headers(self, *, retry_after: bool) -> dict[str, str]:
        # Random 429s model noise, not a spent quota: only claim "remaining 0" when asked to.
        headers = (
            {"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "1s"}
            if self.cfg.ratelimit_headers
            else {}
        )
        if retry_after:
            ra = self.cfg.retry_after_s
            headers["Retry-After"] = _fmt_seconds(1.0 if ra is None else ra)
        return headers

    def _draw(self) -> str | None:
        """The fault for this request from the seeded sequence, or None."""
        cfg = self.cfg
        if cfg.rate_limit_rate <= 0 and cfg.fail_rate <= 0:
            return None
        u = self.rng.random()
        if u < cfg.rate_limit_rate:
            return "rate_limit"
        if u < cfg.rate_limit_rate + cfg.fail_rate:
            return cfg.faults[int(self.rng.random() * len(cfg.faults)) % len(cfg.faults)]
        return None

    async def _latency(self) -> None:
        cfg = self.cfg
        if cfg.latency_ms <= 0 and cfg.jitter_ms <= 0:
            return
        delay = cfg.latency_ms + random.uniform(-cfg.jitter_ms, cfg.jitter_ms)
        if delay > 0:
            await asyncio.sleep(delay / 1000.0)

    async def _reset(self, request: web.Request) -> web.Response:
        """Drop the connection without a response."""
        transport = request.transport
        if transport is not None:
            transport.abort()
        # With handler_cancellation the lost connection cancels us here; otherwise the write of
        # this response fails quietly inside aiohttp ("premature client disconnection").
        await asyncio.sleep(0)
        return web.Response(status=500)

    def _error_fault(self, kind: str, model: str, req_kind: str) -> web.Response | None:
        """Responses for the faults that need no content; None for the others."""
        if kind in ("rate_limit", "429"):
            headers = self._rate_limit_headers(
                retry_after=kind == "429" or self.cfg.retry_after_s is not None
            )
            return self._reply(429, _error_body(429), req_kind, model, headers=headers)
        if kind == "429_no_retry_after":
            return self._reply(429, _error_body(429), req_kind, model)
        if kind == "quota":
            return self._reply(429, json.dumps({"error": _QUOTA_ERROR}).encode(), req_kind, model)
        if kind == "500":
            return self._reply(500, _error_body(500), req_kind, model)
        if kind == "503":
            return self._reply(503, _error_body(503), req_kind, model)
        if kind == "bad_body":
            return self._reply(
                200, b"<html>502 Bad Gateway</html>", req_kind, model, content_type="text/html"
            )
        return None

    # -- chat --------------------------------------------------------------------------------

    def _content_for(self, model: str, user: str) -> tuple[str, str, bytes]:
        """(kind, good content, prompt key) for a prompt, cached by sha1 of model + prompt."""
        key = hashlib.sha1(f"{model}\x1f{user}".encode("utf-8", "surrogatepass")).digest()
        bias = self.cfg.score_bias
        hit = self._cache.get((key, bias))
        if hit is not None:
            return hit[0], hit[1], key
        # The substring checks skip a full regex parse for the other prompt kind.
        gen = parse_generation_prompt(user) if "SAMPLE_COUNT: " in user else None
        if gen is not None:
            n, document = gen
            kind = "generation"
            content = json.dumps(generation_samples(model, document, n), ensure_ascii=False)
        else:
            ev = parse_evaluation_prompt(user) if "<sample>" in user else None
            if ev is not None:
                kind = "evaluation"
                content = json.dumps(
                    evaluation_reply(model, ev["instruction"], ev["output"], score_bias=bias),
                    ensure_ascii=False,
                )
            else:
                kind, content = "other", "OK. This is the sft_distill simulator."
                task = parse_task_prompt(user) if TASK_MARKER in user else None
                if task is not None and task[0] in TASK_RESPONDERS:
                    kind = "generation"
                    content = TASK_RESPONDERS[task[0]](model, task[1])
        if len(self._cache) >= _CACHE_MAX:
            del self._cache[next(iter(self._cache))]
        self._cache[(key, bias)] = (kind, content)
        return kind, content, key

    def _chat_body(
        self,
        model: str,
        content: str | None,
        finish_reason: str,
        prompt_chars: int,
        *,
        reasoning: str | None = None,
        empty: bool = False,
    ) -> bytes:
        prompt_tokens = max(1, prompt_chars // 2)
        completion_tokens = len(content) // 2 if content else 0
        self.stats["prompt_tokens"] += prompt_tokens
        self.stats["completion_tokens"] += completion_tokens
        message: dict[str, Any] = {"role": "assistant", "content": content}
        if reasoning is not None:
            message["reasoning_content"] = reasoning
        choices = (
            []
            if empty
            else [
                {"index": 0, "message": message, "logprobs": None, "finish_reason": finish_reason}
            ]
        )
        body = {
            "id": f"chatcmpl-sim{next(self._ids):x}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": choices,
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
            "system_fingerprint": "fp_sim",
        }
        return json.dumps(body, ensure_ascii=False).encode()

    async def chat(self, request: web.Request) -> web.StreamResponse:
        """POST /v1/chat/completions."""
        self._enter(request, "chat_requests")
        try:
            return await self._chat(request)
        finally:
            self.stats["in_flight"] -= 1

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        st = self.stats
        try:
            body = json.loads(await request.read())
        except ValueError:
            st["by_kind"]["other"] += 1
            msg = "We could not parse the JSON body of your request."
            return self._reply(400, _error_body(400, msg), "other", "")
        model = body.get("model") if isinstance(body, dict) else None
        messages = body.get("messages") if isinstance(body, dict) else None
        if not isinstance(model, str) or not model:
            st["by_kind"]["other"] += 1
            msg = "you must provide a model parameter"
            return self._reply(400, _error_body(400, msg, "model"), "other", "")
        if not isinstance(messages, list) or not messages:
            st["by_kind"]["other"] += 1
            msg = "'messages' is a required property and must be a non-empty array"
            return self._reply(400, _error_body(400, msg, "messages"), "other", model)
        prompt_chars = 0
        user = ""
        for m in messages:
            if isinstance(m, dict):
                text = _text_of(m.get("content"))
                prompt_chars += len(text)
                if m.get("role") == "user":
                    user = text
        by_model = st["by_model"]
        by_model[model] = by_model.get(model, 0) + 1
        kind, good, key = self._content_for(model, user)
        st["by_kind"][kind] += 1
        cfg = self.cfg
        if cfg.keep_prompts and len(self.prompts) < _PROMPTS_MAX:
            self.prompts.append(user)
        max_tokens = body.get("max_tokens")
        finish = "stop"
        if isinstance(max_tokens, int) and max_tokens > 0 and len(good) // 2 > max_tokens:
            # Like a real server: over max_tokens means cut off mid-JSON.
            good, finish = good[: max_tokens * 2], "length"

        if self.script:
            st["scripted"] += 1
            return await self._scripted(
                request, self.script.popleft(), model, kind, good, finish, prompt_chars, key
            )

        fault = self._draw()
        await self._latency()
        if fault is not None:
            self._fault(fault)
            return await self._chat_fault(request, fault, model, kind, good, prompt_chars, key)
        if cfg.malformed_rate > 0 and self.rng.random() < cfg.malformed_rate:
            self._fault("malformed")
            content = _MALFORMED[key[1] % len(_MALFORMED)]
            return self._reply(
                200, self._chat_body(model, content, "stop", prompt_chars), kind, model
            )
        return self._good(model, kind, good, finish, prompt_chars, key)

    def _good(
        self, model: str, kind: str, good: str, finish: str, prompt_chars: int, key: bytes
    ) -> web.Response:
        cfg = self.cfg
        content = messy_wrap(good, key) if cfg.messy and kind != "other" else good
        reasoning = None
        if cfg.reasoning:
            reasoning = f"The request is a {kind} task; I follow the instructions and the material."
        body = self._chat_body(model, content, finish, prompt_chars, reasoning=reasoning)
        return self._reply(200, body, kind, model)

    async def _chat_fault(
        self,
        request: web.Request,
        fault: str,
        model: str,
        kind: str,
        good: str,
        prompt_chars: int,
        key: bytes,
    ) -> web.StreamResponse:
        resp = self._error_fault(fault, model, kind)
        if resp is not None:
            return resp
        if fault == "reset":
            return await self._reset(request)
        if fault == "empty_choices":
            return self._reply(
                200, self._chat_body(model, None, "stop", prompt_chars, empty=True), kind, model
            )
        if fault == "length":
            cut = good[: len(good) // 2]
            return self._reply(
                200, self._chat_body(model, cut, "length", prompt_chars), kind, model
            )
        if fault == "timeout":
            # Hang, then answer normally (the client has usually given up by then).
            await asyncio.sleep(self.cfg.timeout_s)
            return self._good(model, kind, good, "stop", prompt_chars, key)
        # An unknown kind set on a live config: fail loudly rather than hang or pass silently.
        msg = f"simulator: unknown fault kind {fault!r}"
        return self._reply(500, _error_body(500, msg), kind, model)

    async def _scripted(
        self,
        request: web.Request,
        item: QueueItem,
        model: str,
        kind: str,
        good: str,
        finish: str,
        prompt_chars: int,
        key: bytes,
    ) -> web.StreamResponse:
        if isinstance(item, str):
            self._fault(item)
            return await self._chat_fault(request, item, model, kind, good, prompt_chars, key)
        if isinstance(item, int):
            item = Scripted(status=item)
        if item.delay_s > 0:
            await asyncio.sleep(item.delay_s)
        headers = item.headers
        if item.content is not None:
            body = self._chat_body(model, item.content, item.finish_reason, prompt_chars)
            return self._reply(item.status, body, kind, model, headers=headers)
        if item.body is not None:
            if isinstance(item.body, str):
                ctype = "text/html" if item.body.lstrip().startswith("<") else "text/plain"
                raw = item.body.encode()
            else:
                ctype, raw = _JSON, json.dumps(item.body, ensure_ascii=False).encode()
            return self._reply(item.status, raw, kind, model, headers=headers, content_type=ctype)
        if item.status >= 400:
            if headers is None and item.status == 429:
                headers = self._rate_limit_headers(retry_after=self.cfg.retry_after_s is not None)
            return self._reply(item.status, _error_body(item.status), kind, model, headers=headers)
        resp = self._good(model, kind, good, finish, prompt_chars, key)
        if headers:
            resp.headers.update(headers)
        if item.status != 200:
            resp.set_status(item.status)
        return resp

    # -- embeddings, models, stats -----------------------------------------------------------

    async def embeddings(self, request: web.Request) -> web.StreamResponse:
        """POST /v1/embeddings."""
        self._enter(request, "embedding_requests")
        try:
            return await self._embeddings(request)
        finally:
            self.stats["in_flight"] -= 1

    async def _embeddings(self, request: web.Request) -> web.StreamResponse:
        try:
            body = json.loads(await request.read())
        except ValueError:
            msg = "We could not parse the JSON body of your request."
            return self._reply(400, _error_body(400, msg), "embedding", "")
        model = body.get("model") if isinstance(body, dict) else None
        inp = body.get("input") if isinstance(body, dict) else None
        if not isinstance(model, str) or not model:
            msg = "you must provide a model parameter"
            return self._reply(400, _error_body(400, msg, "model"), "embedding", "")
        texts = [inp] if isinstance(inp, str) else inp
        if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
            msg = "'input' must be a string or a non-empty array of strings"
            return self._reply(400, _error_body(400, msg, "input"), "embedding", model)
        by_model = self.stats["by_model"]
        by_model[model] = by_model.get(model, 0) + 1
        fault = self._draw()
        await self._latency()
        if fault is not None and fault not in ("length",):
            self._fault(fault)
            resp = self._error_fault(fault, model, "embedding")
            if resp is not None:
                return resp
            if fault == "reset":
                return await self._reset(request)
            if fault == "timeout":
                await asyncio.sleep(self.cfg.timeout_s)
            elif fault == "empty_choices":
                texts = []
        chars = sum(len(t) for t in texts)
        tokens = max(1, chars // 2)
        self.stats["prompt_tokens"] += tokens
        data = [
            {"object": "embedding", "index": i, "embedding": embed_text(t)}
            for i, t in enumerate(texts)
        ]
        out = {
            "object": "list",
            "data": data,
            "model": model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
        return self._reply(200, json.dumps(out).encode(), "embedding", model)

    async def models(self, request: web.Request) -> web.StreamResponse:
        """GET /v1/models: the default name plus every model seen so far."""
        names = ["simulator", *sorted(self.stats["by_model"])]
        data = [
            {"id": n, "object": "model", "created": 0, "owned_by": "sft_distill"} for n in names
        ]
        return web.json_response({"object": "list", "data": data})

    async def get_stats(self, request: web.Request) -> web.StreamResponse:
        """GET /stats (``?log=1`` adds ``requests_log``)."""
        out = dict(self.stats)
        if request.query.get("log") in ("1", "true"):
            out["requests_log"] = [list(t) for t in self.requests_log]
        return web.json_response(out)

    async def post_reset(self, request: web.Request) -> web.StreamResponse:
        """POST /stats/reset."""
        self.reset_stats()
        return web.json_response({"ok": True})


SIM_STATE = web.AppKey("sft_distill_simulator_state", SimState)


def make_app(cfg: SimulatorConfig | None = None) -> web.Application:
    """The simulator as an aiohttp application; its state is ``app[SIM_STATE]``."""
    state = SimState(cfg or SimulatorConfig())
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app[SIM_STATE] = state
    app.router.add_post("/v1/chat/completions", state.chat)
    app.router.add_post("/v1/embeddings", state.embeddings)
    app.router.add_get("/v1/models", state.models)
    app.router.add_get("/stats", state.get_stats)
    app.router.add_post("/stats/reset", state.post_reset)
    return app


# ---------------------------------------------------------------------------------------------
# Running it
# ---------------------------------------------------------------------------------------------


def _check_loopback(host: str) -> None:
    if host == "localhost":
        return
    try:
        if ipaddress.ip_address(host).is_loopback:
            return
    except ValueError:
        pass
    raise ValueError(f"simulator binds to loopback only (127.0.0.1, localhost, ::1), not {host!r}")


class Simulator:
    """``async with Simulator(cfg) as sim:`` serves the app on 127.0.0.1 on a free port."""

    def __init__(
        self, cfg: SimulatorConfig | None = None, *, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        _check_loopback(host)
        self.app = make_app(cfg)
        self.state = self.app[SIM_STATE]
        self.host = host
        self.port = port
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        """The api_base clients use, e.g. ``http://127.0.0.1:PORT/v1``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/v1"

    @property
    def config(self) -> SimulatorConfig:
        return self.state.cfg

    @config.setter
    def config(self, cfg: SimulatorConfig) -> None:
        self.state.cfg = cfg

    @property
    def stats(self) -> dict[str, Any]:
        return self.state.stats

    @property
    def prompts(self) -> list[str]:
        return self.state.prompts

    @property
    def requests_log(self) -> collections.deque[tuple[str, str, int]]:
        return self.state.requests_log

    def queue(self, *items: QueueItem) -> None:
        """Script the next chat replies (int status, fault-kind str or ``Scripted``) in order."""
        self.state.queue(*items)

    def reset_stats(self) -> None:
        """Zero the counters in place."""
        self.state.reset_stats()

    async def start(self) -> Simulator:
        """Bind and serve; sets ``port`` when it was 0."""
        if self._runner is not None:
            return self
        runner = web.AppRunner(
            self.app, handler_cancellation=True, access_log=None, shutdown_timeout=0.5
        )
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.host, self.port)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self.port = int(runner.addresses[0][1])
        log.debug("simulator listening on %s", self.url)
        return self

    async def close(self) -> None:
        """Stop serving; safe to call twice."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> Simulator:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class ThreadedSimulator:
    """A ``Simulator`` on its own event loop in a daemon thread, for sync callers."""

    def __init__(
        self, cfg: SimulatorConfig | None = None, *, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self._sim = Simulator(cfg, host=host, port=port)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return self._sim.url

    @property
    def port(self) -> int:
        return self._sim.port

    @property
    def config(self) -> SimulatorConfig:
        return self._sim.config

    def start(self) -> ThreadedSimulator:
        """Start the thread and wait until the server is listening."""
        if self._thread is not None:
            return self
        self._thread = threading.Thread(target=self._run, name="sft-distill-simulator", daemon=True)
        self._thread.start()
        if not self._ready.wait(10.0):
            raise RuntimeError("simulator thread did not start within 10 s")
        if self._error is not None:
            raise self._error
        return self

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # reported to start(); the thread must not die silently
            self._error = exc
            self._ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with self._sim:
            self._ready.set()
            await self._stop.wait()

    def _call(self, fn: Any, *args: Any) -> Any:
        """Run ``fn(*args)`` on the server loop and return its result."""
        loop = self._loop
        if loop is None or self._thread is None or not self._thread.is_alive():
            raise RuntimeError("simulator is not running")

        async def call() -> Any:
            return fn(*args)

        return asyncio.run_coroutine_threadsafe(call(), loop).result(10.0)

    def stats(self) -> dict[str, Any]:
        """A snapshot of the counters."""
        snapshot: dict[str, Any] = self._call(lambda: json.loads(json.dumps(self._sim.stats)))
        return snapshot

    def queue(self, *items: QueueItem) -> None:
        """Script the next chat replies."""
        self._call(self._sim.queue, *items)

    def reset_stats(self) -> None:
        """Zero the counters."""
        self._call(self._sim.reset_stats)

    def close(self) -> None:
        """Stop the server and join the thread; safe to call twice."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        if self._loop is not None and self._stop is not None and thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
        thread.join(10.0)

    def __enter__(self) -> ThreadedSimulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


def run_in_thread(
    cfg: SimulatorConfig | None = None, *, host: str = "127.0.0.1", port: int = 0
) -> ThreadedSimulator:
    """Start a simulator in a daemon thread; use as a context manager or call ``close()``."""
    return ThreadedSimulator(cfg, host=host, port=port).start()


# ---------------------------------------------------------------------------------------------
# Replies to the modes' task prompts (prompts.task_messages): kind -> (model, fields) -> content.
# Each must be a deterministic function of its arguments, like the generation replies.
# ---------------------------------------------------------------------------------------------

TaskResponder = Callable[[str, dict[str, str]], str]
TASK_RESPONDERS: dict[str, TaskResponder] = {}


# --- topic mode responders ---


# --- instruction-set modes responders (distill, augment) ---


# --- gate-related responders (text2sql) ---


# ---------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------


def _loopback_host(value: str) -> str:
    try:
        _check_loopback(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return value


def _rate(value: str) -> float:
    v = float(value)
    if not 0.0 <= v <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {value}")
    return v


def _optional_seconds(value: str) -> float | None:
    if value.strip().lower() in ("none", "off", ""):
        return None
    v = float(value)
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0 or 'none', got {value}")
    return v


def _faults(value: str) -> tuple[str, ...]:
    kinds = tuple(k.strip() for k in value.split(",") if k.strip())
    unknown = sorted(set(kinds) - _ALL_FAULT_KINDS)
    if unknown or not kinds:
        raise argparse.ArgumentTypeError(f"unknown fault kind(s) {unknown}")
    return kinds


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse CLI flags; exits with status 2 on a non-loopback host or a bad value."""
    p = argparse.ArgumentParser(
        prog="python -m sft_distill.simulator",
        description="OpenAI-compatible simulator for sft_distill (loopback only).",
    )
    p.add_argument("--port", type=int, default=0, help="port (0 = pick a free one; printed)")
    p.add_argument("--host", type=_loopback_host, default="127.0.0.1", help="loopback host only")
    p.add_argument("--latency-ms", type=float, default=0.0)
    p.add_argument("--jitter-ms", type=float, default=0.0)
    p.add_argument("--fail-rate", type=_rate, default=0.0)
    p.add_argument("--rate-limit-rate", type=_rate, default=0.0)
    p.add_argument(
        "--retry-after-s",
        type=_optional_seconds,
        default=1.0,
        help="Retry-After on 429s ('none' = no header)",
    )
    p.add_argument("--malformed-rate", type=_rate, default=0.0)
    p.add_argument("--messy", action="store_true", help="wrap JSON like real models do")
    p.add_argument("--reasoning", action="store_true", help="add message.reasoning_content")
    p.add_argument("--score-bias", type=float, default=0.0)
    p.add_argument("--timeout-s", type=float, default=30.0, help="hang of a 'timeout' fault")
    p.add_argument(
        "--faults", type=_faults, default=FAULT_KINDS, help="comma-separated fault kinds"
    )
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def config_from_args(args: argparse.Namespace) -> SimulatorConfig:
    """The ``SimulatorConfig`` described by parsed CLI flags."""
    return SimulatorConfig(
        latency_ms=args.latency_ms,
        jitter_ms=args.jitter_ms,
        fail_rate=args.fail_rate,
        rate_limit_rate=args.rate_limit_rate,
        retry_after_s=args.retry_after_s,
        malformed_rate=args.malformed_rate,
        messy=args.messy,
        reasoning=args.reasoning,
        score_bias=args.score_bias,
        seed=args.seed,
        faults=args.faults,
        timeout_s=args.timeout_s,
    )


async def _serve(cfg: SimulatorConfig, host: str, port: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        # Not available on Windows: KeyboardInterrupt ends asyncio.run there instead.
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    async with Simulator(cfg, host=host, port=port) as sim:
        print(f"simulator listening on {sim.url}", flush=True)
        await stop.wait()


def main(argv: Sequence[str] | None = None) -> int:
    """Serve until Ctrl-C or SIGTERM."""
    args = parse_args(argv)
    try:
        asyncio.run(_serve(config_from_args(args), args.host, args.port))
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        print(f"simulator: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
