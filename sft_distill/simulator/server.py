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

from ..llm.prompts import (
    TASK_MARKER,
    detect_language,
    is_reask,
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
# Not drawn by default, but allowed in ``faults`` and ``queue``: a 429 that retrying never fixes,
# and a 500 whose message is a server traceback (a request the server will never accept; with
# ``fail_rate=1`` every request gets the same body).
_EXTRA_FAULT_KINDS = ("quota", "500_traceback")
_ALL_FAULT_KINDS = frozenset(FAULT_KINDS + _EXTRA_FAULT_KINDS)

_CONTEXT_REPORTS = ("vllm", "llamacpp", "none")
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
    # Like vLLM's --max-model-len: reported as max_model_len by /v1/models, and a prompt whose
    # tokens plus max_tokens exceed it gets vLLM's 400 (tokens counted as characters / 2).
    context_tokens: int | None = None
    # How /v1/models reports it: "vllm" (max_model_len), "llamacpp" (meta.n_ctx_train, the
    # trained length, with the server's own n_ctx in GET /props), or "none" (OpenAI's bare list).
    context_report: str = "vllm"

    def __post_init__(self) -> None:
        unknown = sorted(set(self.faults) - _ALL_FAULT_KINDS)
        if unknown:
            raise ValueError(f"unknown fault kind(s) {unknown}; known: {sorted(_ALL_FAULT_KINDS)}")
        if not self.faults and self.fail_rate > 0:
            raise ValueError("fail_rate > 0 needs at least one fault kind")
        if self.context_tokens is not None and self.context_tokens < 1:
            raise ValueError(f"context_tokens must be >= 1, got {self.context_tokens}")
        if self.context_report not in _CONTEXT_REPORTS:
            raise ValueError(
                f"context_report must be one of {_CONTEXT_REPORTS}, got {self.context_report!r}"
            )


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
    if sql_samples := text2sql_samples(model, document, n):  # a schema: Text2SQL pairs
        return sql_samples
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
# As a Python server that puts the exception in the message: the pydantic error that
# llama-cpp-python's server gives an OpenAI ``json_schema`` response_format (wire.md), with the
# traceback a debug-mode server adds.
_TRACEBACK_500 = {
    "message": (
        "Traceback (most recent call last):\n"
        '  File "/srv/llm/server/app.py", line 412, in create_chat_completion\n'
        "    body = CreateChatCompletionRequest(**payload)\n"
        '  File "/usr/lib/python3.11/site-packages/pydantic/main.py", line 212, in __init__\n'
        "    validated_self = self.__pydantic_validator__.validate_python(data)\n"
        "pydantic_core._pydantic_core.ValidationError: 1 validation error for "
        "CreateChatCompletionRequest\n"
        "response_format.type\n"
        "  Input should be 'text' or 'json_object' [type=literal_error, "
        "input_value='json_schema', input_type=str]\n"
        "    For further information visit https://errors.pydantic.dev/2.9/v/literal_error"
    ),
    "type": "internal_server_error",
    "param": None,
    "code": None,
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


def _context_error_body(prompt_tokens: int, max_tokens: int, context: int) -> bytes:
    """vLLM >= 0.16's reply to a prompt longer than its context (harbor-framework/harbor #996)."""
    message = (
        f"You passed {prompt_tokens} input tokens and requested {max_tokens} output tokens. "
        f"However, the model's context length is only {context} tokens, resulting in a maximum "
        f"input length of {max(0, context - max_tokens)} tokens. Please reduce the length of the "
        f"input prompt. (parameter=input_tokens, value={prompt_tokens})"
    )
    err = {"message": message, "type": "BadRequestError", "param": "input_tokens", "code": 400}
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
        "info_requests": 0,  # GET /v1/models and /props
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
        "reasks": 0,
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
        # The raw request bodies, with keep_prompts (e.g. to see that a re-ask differs).
        self.bodies: list[bytes] = []
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
        self.bodies.clear()

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
        if kind == "500_traceback":
            body = json.dumps({"error": _TRACEBACK_500}).encode()
            return self._reply(500, body, req_kind, model)
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
        raw = await request.read()
        if self.cfg.keep_prompts and len(self.bodies) < _PROMPTS_MAX:
            self.bodies.append(raw)
        try:
            body = json.loads(raw)
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
        reask = False
        for m in messages:
            if isinstance(m, dict):
                text = _text_of(m.get("content"))
                prompt_chars += len(text)
                if m.get("role") == "user":
                    # A re-ask repeats the request before it: the reply is the one to that.
                    reask = is_reask(text)
                    if not reask:
                        user = text
        if reask:
            st["reasks"] += 1
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
        if cfg.context_tokens is not None:
            # Counted as _chat_body counts them; vLLM checks the prompt plus max_tokens.
            prompt_tokens = max(1, prompt_chars // 2)
            wanted = max_tokens if isinstance(max_tokens, int) and max_tokens > 0 else 0
            if prompt_tokens + wanted > cfg.context_tokens:
                body = _context_error_body(prompt_tokens, wanted, cfg.context_tokens)
                return self._reply(400, body, kind, model)

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
        # Real models wrap JSON in fences and prose; a plain-text answer is left as it is.
        messy = cfg.messy and kind != "other" and good[:1] in ("[", "{")
        content = messy_wrap(good, key) if messy else good
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
        """GET /v1/models: the default name plus every model seen so far (vLLM's shape)."""
        self.stats["info_requests"] += 1
        names = ["simulator", *sorted(self.stats["by_model"])]
        card: dict[str, Any] = {"object": "model", "created": 0, "owned_by": "sft_distill"}
        context, report = self.cfg.context_tokens, self.cfg.context_report
        if context is not None and report == "vllm":
            card["max_model_len"] = context
        elif context is not None and report == "llamacpp":
            # The trained length, longer than what this server allocated (see /props).
            card["meta"] = {"vocab_type": 2, "n_vocab": 32000, "n_ctx_train": 4 * context}
        data = [{"id": n, **card} for n in names]
        return web.json_response({"object": "list", "data": data})

    async def props(self, request: web.Request) -> web.StreamResponse:
        """GET /props: llama.cpp server's settings, with the context of one slot."""
        self.stats["info_requests"] += 1
        context = self.cfg.context_tokens
        if context is None or self.cfg.context_report != "llamacpp":
            return web.json_response({"error": "Not Found"}, status=404)
        settings = {"n_ctx": context, "params": {"temperature": 0.8}}
        return web.json_response(
            {"default_generation_settings": settings, "total_slots": 1, "model_alias": "simulator"}
        )

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
    app.router.add_get("/props", state.props)
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
    def bodies(self) -> list[bytes]:
        """Raw chat request bodies (with ``keep_prompts``)."""
        return self.state.bodies

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
# Plausible, distinct names and questions derived from the topic path; never one that the prompt
# lists as a sibling or as already made, so the tests can check that the client-side rules hold.

_TOPIC_WORDS_ZH = (
    "基础知识",
    "历史发展",
    "规则",
    "技术要领",
    "战术",
    "装备",
    "训练方法",
    "赛事",
    "代表人物",
    "文化",
    "科学原理",
    "健康与安全",
    "组织管理",
    "发展趋势",
    "教育",
    "产业经济",
    "媒体传播",
    "心理",
    "常见误区",
    "案例分析",
)
_TOPIC_WORDS_EN = (
    "Basics",
    "History",
    "Rules",
    "Techniques",
    "Tactics",
    "Equipment",
    "Training",
    "Competitions",
    "Key Figures",
    "Culture",
    "Science",
    "Health and Safety",
    "Organisation",
    "Trends",
    "Education",
    "Economics",
    "Media",
    "Psychology",
    "Common Mistakes",
    "Case Studies",
)
_TOPIC_QUESTIONS_ZH = (
    "什么是{t}？它主要包括哪些内容？",
    "{t}的基本原理是什么？",
    "{t}有哪些常见的类型或分类？",
    "{t}在实际中有哪些典型应用？",
    "学习{t}时常见的误区有哪些？",
    "{t}的发展历程是怎样的？",
    "{t}与相关概念有何区别和联系？",
    "评价{t}的水平应关注哪些指标？",
    "{t}目前面临哪些主要挑战？",
    "请举例说明{t}的一个典型案例。",
    "初学者应如何入门{t}？",
    "{t}涉及哪些重要的规则或标准？",
)
_TOPIC_QUESTIONS_EN = (
    "What is {t}, and what does it cover?",
    "What are the basic principles of {t}?",
    "What are the common types or categories of {t}?",
    "Where is {t} typically applied in practice?",
    "What are common misconceptions when learning about {t}?",
    "How has {t} developed over time?",
    "How does {t} differ from related concepts?",
    "Which criteria matter when evaluating {t}?",
    "What are the main challenges facing {t} today?",
    "Can you give a typical example that illustrates {t}?",
    "How should a beginner get started with {t}?",
    "Which important rules or standards apply to {t}?",
)
_TOPIC_ANSWER_ZH = (
    "{t}是{p}中的一个重要方面，理解它首先要掌握其基本概念和适用范围。",
    "从实践角度看，{t}通常涉及规范、方法和经验三个层面，三者相互配合、缺一不可。",
    "常见的误区是只关注{t}的表面现象，而忽视其背后的原理和适用条件。",
    "建议先系统学习{t}的基础知识，再通过具体案例和练习逐步加深理解。",
    "{t}也在不断发展，应关注相关领域的最新研究成果和行业标准。",
    "评价{t}时，可以从有效性、安全性和可持续性几个维度进行比较。",
    "在{p}的整体框架下，{t}与其他分支相互联系，需要放在全局中理解。",
    "历史经验表明，对{t}的认识往往随着实践的积累而不断深化。",
)
_TOPIC_ANSWER_EN = (
    "{t} is an important part of {p}; understanding it starts with its basic concepts and scope.",
    "In practice, {t} involves rules, methods and experience, which work together.",
    "A common mistake is to look only at the surface of {t} and ignore its principles and limits.",
    "It helps to learn the fundamentals of {t} first and then deepen them with worked examples.",
    "{t} keeps evolving, so it is worth following recent research and current standards.",
    "When assessing {t}, compare effectiveness, safety and sustainability.",
    "Within {p} as a whole, {t} connects to the other branches and is best seen in context.",
    "Experience shows that understanding of {t} deepens as practice accumulates.",
)


def _topic_key(text: str) -> str:
    return re.sub(r"[\s\W_]+", "", text.casefold())


def _topic_fields(fields: dict[str, str]) -> tuple[list[str], int, str]:
    """(path, count, language) of a topic task prompt."""
    from ..llm.prompts import TOPIC_PATH_SEP

    path = [p for p in fields.get("path", "").split(TOPIC_PATH_SEP) if p] or ["topic"]
    try:
        n = max(0, int(fields.get("count", "1")))
    except ValueError:
        n = 1
    return path, n, detect_language(TOPIC_PATH_SEP.join(path))


def _fresh_items(candidates: Callable[[int], str], n: int, avoid: set[str]) -> list[str]:
    """The first ``n`` candidates whose keys are not in ``avoid`` (nor repeated)."""
    out: list[str] = []
    seen = set(avoid)
    k = 0
    while len(out) < n and k < 100 * (n + len(avoid) + 1):
        item = candidates(k)
        k += 1
        if _topic_key(item) not in seen:
            seen.add(_topic_key(item))
            out.append(item)
    return out


def topic_expand_reply(model: str, fields: dict[str, str]) -> str:
    """A JSON list of sub-topic names of the path's last topic, none among siblings/existing."""
    from ..llm.prompts import parse_topic_list

    path, n, lang = _topic_fields(fields)
    last = path[-1]
    # Names derive from the last word only, so they stay short however deep the tree goes.
    base = last.rsplit("之", 1)[-1] if lang == "zh" else last.split(" in ")[0]
    pool = _TOPIC_WORDS_ZH if lang == "zh" else _TOPIC_WORDS_EN
    words = [w for w in pool if w not in base] or list(pool)
    random.Random(_seed_of("topic_expand", model, *path)).shuffle(words)

    def name(k: int) -> str:
        word = words[k % len(words)]
        round_ = k // len(words)
        if round_:
            word = f"{word}{round_ + 1}" if lang == "zh" else f"{word} {round_ + 1}"
        return f"{base}之{word}" if lang == "zh" else f"{word} in {base}"

    avoid = {
        _topic_key(x)
        for x in (
            *path,
            *parse_topic_list(fields.get("siblings", "")),
            *parse_topic_list(fields.get("existing", "")),
        )
    }
    return json.dumps(_fresh_items(name, n, avoid), ensure_ascii=False)


def topic_questions_reply(model: str, fields: dict[str, str]) -> str:
    """A JSON list of questions about the path's last topic, none among the existing ones."""
    from ..llm.prompts import parse_topic_list

    path, n, lang = _topic_fields(fields)
    templates = list(_TOPIC_QUESTIONS_ZH if lang == "zh" else _TOPIC_QUESTIONS_EN)
    random.Random(_seed_of("topic_questions", model, *path)).shuffle(templates)
    t = path[-1]

    def question(k: int) -> str:
        if k < len(templates):
            return templates[k].format(t=t)
        if lang == "zh":
            return f"请从第{k - len(templates) + 1}个角度谈谈你对{t}的理解。"
        return f"From angle {k - len(templates) + 1}, what is your understanding of {t}?"

    avoid = {_topic_key(q) for q in parse_topic_list(fields.get("existing", ""))}
    return json.dumps(_fresh_items(question, n, avoid), ensure_ascii=False)


def topic_answer_reply(model: str, fields: dict[str, str]) -> str:
    """A few plain-text sentences about the question, naming its topic and quoting it."""
    path, _, _ = _topic_fields(fields)
    q = fields.get("question", "").strip()
    lang = detect_language(q + "".join(path))
    t, p = path[-1], path[0]
    pool = list(_TOPIC_ANSWER_ZH if lang == "zh" else _TOPIC_ANSWER_EN)
    rng = random.Random(_seed_of("topic_answer", model, q, *path))
    joiner = "" if lang == "zh" else " "
    body = joiner.join(s.format(t=t, p=p) for s in rng.sample(pool, 3))
    core = q.rstrip("？?。.！! ")
    if lang == "zh":
        return (
            f"关于“{core}”，可以从以下几个方面来理解。{body}"
            "总之，回答这一问题需要把概念、原理与应用结合起来。"
        )
    return (
        f'Regarding "{core}", several points matter. {body} In short, a good answer combines '
        "concepts, principles and applications."
    )


TASK_RESPONDERS["topic_expand"] = topic_expand_reply
TASK_RESPONDERS["topic_questions"] = topic_questions_reply
TASK_RESPONDERS["topic_answer"] = topic_answer_reply


# --- instruction-set modes responders (distill, augment) ---

_ISET_REPHRASE_ZH = (
    "请问，{c}？",
    "能否说明一下：{c}？",
    "简单来说，{c}是怎么回事？",
    "请详细解释：{c}。",
    "从实际应用的角度看，应该如何理解{c}？",
    "用通俗的话讲一讲：{c}。",
    "假设你是初学者，该怎样理解{c}？",
    "请结合一个具体例子说明：{c}。",
)
_ISET_REPHRASE_EN = (
    "Explain: {c}.",
    "In simple terms, {c}?",
    "Could you clarify the following: {c}?",
    "From a practical point of view, {c}?",
    "For a beginner, how would you put this: {c}?",
    "In detail, {c}.",
    "Briefly, {c}?",
    "With a concrete example, {c}.",
)
_ISET_ANSWER_ZH = (
    "理解“{c}”，首先要弄清其中涉及的基本概念和适用范围。",
    "从实践角度看，{c}通常需要结合具体情形来判断，不能一概而论。",
    "常见的误区是只看{c}的字面意思，而忽视其背后的条件和例外。",
    "可以分三步来回答：先说明概念，再分析适用条件，最后给出结论。",
    "如果情况较复杂，建议对照相关规定或资料逐条核对。",
    "总的来说，{c}的关键在于把握要点、厘清前提，并注意与相近情形的区别。",
    "举例来说，在典型情形下，{c}的结论通常比较明确；在边界情形下则需要具体分析。",
    "回答时应当条理清楚、依据充分，避免笼统的表述。",
)
_ISET_ANSWER_EN = (
    "Understanding {c} starts with its basic concepts and where they apply.",
    "In practice, {c} depends on the specific situation and cannot be judged in general.",
    "A common mistake is to read {c} literally and ignore its conditions and exceptions.",
    "A good answer has three steps: define the terms, check the conditions, then conclude.",
    "When the case is complex, check the relevant rules or sources point by point.",
    "Overall, the key to {c} is to grasp the main points and state the premises clearly.",
    "For example, in a typical case the answer to {c} is clear; edge cases need analysis.",
    "The answer should be clear and well supported, avoiding vague statements.",
)
_ISET_QUOTES = "“”\"'「」『』‘’"
_ISET_TRAIL = "？?。.！!；;：:，, "


_ISET_QUOTED_RE = re.compile(r'[“"「『]([^”"」』\n]{4,})[”"」』]')
_ISET_AFFIXES = tuple(
    (t.split("{c}")[0], t.split("{c}")[1]) for t in _ISET_REPHRASE_ZH + _ISET_REPHRASE_EN
)


def _iset_core(instruction: str, lang: str) -> str:
    """The subject of an instruction: its quoted part, or the text after a colon, or itself
    without one of our rephrasing templates (so rephrasing a rephrasing does not stack them)."""
    text = instruction.strip().split("\n\n")[0]  # a ShareGPT human turn: instruction + input
    quoted = _ISET_QUOTED_RE.search(text)
    if quoted:
        text = quoted.group(1)
    else:
        for prefix, suffix in _ISET_AFFIXES:
            if text.startswith(prefix) and prefix and len(text) > len(prefix) + 4:
                text = text[len(prefix) :]
                if suffix and text.endswith(suffix):
                    text = text[: -len(suffix)]
                break
        else:
            for sep in ("：", ": "):
                head, found, tail = text.rpartition(sep)
                if found and head and len(tail.strip(_ISET_QUOTES + _ISET_TRAIL)) >= 4:
                    text = tail
                    break
    core = text.strip().strip(_ISET_QUOTES + _ISET_TRAIL).strip(_ISET_QUOTES)
    core = core.rstrip("…") or instruction.strip()
    if lang == "en" and core[:1].isupper() and core[1:2].islower():
        core = core[0].lower() + core[1:]
    return core


def _iset_key(text: str) -> str:
    return re.sub(r"[\W_]+", "", text.casefold())


def iset_rephrase_reply(model: str, fields: dict[str, str]) -> str:
    """A JSON list of ``count`` distinct rephrasings, none equal to the instruction.

    About one reply in five makes its last rephrasing the instruction with one character
    changed, so the augment mode's near-copy check has work.
    """
    instruction = fields.get("instruction", "").strip()
    try:
        n = max(0, int(fields.get("count", "1")))
    except ValueError:
        n = 1
    lang = detect_language(instruction + fields.get("input", ""))
    core = _iset_core(instruction, lang)
    templates = _ISET_REPHRASE_ZH if lang == "zh" else _ISET_REPHRASE_EN
    t0 = random.Random(_seed_of("iset_rephrase", model, instruction)).randrange(len(templates))
    # Compared without case, spaces and punctuation: "Explain: x." must not repeat "Explain: x?"
    seen = {_iset_key(instruction)}
    out: list[str] = []
    k = 0
    while len(out) < n:
        text = templates[(t0 + k) % len(templates)].format(c=core)
        if k >= len(templates):
            text += f"（{k + 1}）" if lang == "zh" else f" ({k + 1})"
        k += 1
        if _iset_key(text) not in seen:
            seen.add(_iset_key(text))
            out.append(text)
    if n >= 2 and _unit("iset_rephrase_copy", model, instruction) < 0.2:
        out[-1] = _tweak(instruction)
    return json.dumps(out, ensure_ascii=False)


def iset_answer_reply(model: str, fields: dict[str, str]) -> str:
    """A plain-text answer of a few sentences naming the instruction's subject."""
    instruction = fields.get("instruction", "").strip()
    inp = fields.get("input", "").strip()
    lang = detect_language(instruction + inp)
    core = _iset_core(instruction, lang)
    pool = _ISET_ANSWER_ZH if lang == "zh" else _ISET_ANSWER_EN
    rng = random.Random(_seed_of("iset_answer", model, instruction, inp))
    joiner = "" if lang == "zh" else " "
    body = joiner.join(s.format(c=core) for s in rng.sample(pool, 3))
    if lang == "zh":
        lead = f"结合所给材料（{inp[:40]}），" if inp else ""
        return f"关于“{core}”：{lead}{body}"
    lead = f'Based on the given input ("{inp[:60]}"), ' if inp else ""
    return f'On "{core}": {lead}{body}'


TASK_RESPONDERS["iset_rephrase"] = iset_rephrase_reply
TASK_RESPONDERS["iset_answer"] = iset_answer_reply


# --- gate-related responders (text2sql) ---

# When a generation prompt's document holds CREATE TABLE statements, the teacher's samples are
# Text2SQL pairs: a question, the schema of the tables it needs as input, and a ```sql block.
# Most queries are valid for that schema; a deterministic ~1 in 5 is broken (unknown column,
# syntax error, or a write) so that the SQL execution gate has work in a dry run.

_T2S_CREATE_RE = re.compile(
    r"CREATE\s+TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?[\"`\[]?(\w+)[\"`\]]?\s*\(", re.IGNORECASE
)
_T2S_CONSTRAINT_RE = re.compile(r"^(?:PRIMARY|FOREIGN|UNIQUE|CHECK|CONSTRAINT)\b", re.IGNORECASE)
_T2S_FK_RE = re.compile(
    r"FOREIGN\s+KEY\s*\(\s*(\w+)\s*\)\s*REFERENCES\s+(\w+)\s*\(\s*(\w+)\s*\)", re.IGNORECASE
)
_T2S_INLINE_FK_RE = re.compile(r"REFERENCES\s+(\w+)\s*\(\s*(\w+)\s*\)", re.IGNORECASE)
_T2S_NUMERIC = ("INT", "REAL", "NUM", "DEC", "FLOAT", "DOUBLE")


@dataclass
class _T2STable:
    name: str
    ddl: str
    columns: list[tuple[str, str]]  # (name, declared type)
    foreign_keys: list[tuple[str, str, str]]  # (column, other table, other column)

    def numeric(self) -> list[str]:
        return [
            c
            for c, t in self.columns
            if any(k in t.upper() for k in _T2S_NUMERIC)
            and c != "id"
            and not c.endswith("_id")
            and not c.startswith("is_")
        ]

    def text(self) -> list[str]:
        return [c for c, t in self.columns if "CHAR" in t.upper() or "TEXT" in t.upper()]

    def key(self) -> str:
        return self.columns[0][0] if self.columns else "rowid"


def _t2s_split_top(body: str) -> list[str]:
    """Split a column list at commas outside parentheses."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(body):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(body[start:i])
            start = i + 1
    parts.append(body[start:])
    return [p.strip() for p in parts if p.strip()]


def parse_create_tables(document: str) -> list[_T2STable]:
    """The tables declared by CREATE TABLE statements in ``document``, in order."""
    tables: list[_T2STable] = []
    for m in _T2S_CREATE_RE.finditer(document):
        depth, end = 1, None
        for i in range(m.end(), len(document)):
            if document[i] == "(":
                depth += 1
            elif document[i] == ")":
                depth -= 1
                if depth == 0:
                    end = i
                    break
        if end is None:
            continue
        ddl_end = end + 1
        if document[ddl_end : ddl_end + 1] == ";":
            ddl_end += 1
        columns, fks = [], []
        for part in _t2s_split_top(document[m.end() : end]):
            fk = _T2S_FK_RE.search(part)
            if fk:
                fks.append((fk.group(1), fk.group(2), fk.group(3)))
            if _T2S_CONSTRAINT_RE.match(part):
                continue
            words = part.split()
            col = words[0].strip('"`[]')
            columns.append((col, words[1] if len(words) > 1 else ""))
            inline = _T2S_INLINE_FK_RE.search(part)
            if inline:
                fks.append((col, inline.group(1), inline.group(2)))
        if columns:
            tables.append(_T2STable(m.group(1), document[m.start() : ddl_end], columns, fks))
    return tables


_T2S_TEMPLATES: dict[str, tuple[str, str]] = {
    # kind: (English question, Chinese question)
    "count": ("How many rows does the {t} table have?", "{t} 表中一共有多少条记录？"),
    "filter": (
        "List the {c} of the rows in {t} whose {n} is greater than {v}.",
        "列出 {t} 表中 {n} 大于 {v} 的记录的 {c}。",
    ),
    "avg": ("What is the average {n} in the {t} table?", "{t} 表中 {n} 的平均值是多少？"),
    "group": (
        "For each {c} in {t}, how many rows are there? Most first.",
        "按 {c} 分组统计 {t} 表的记录数，按数量从多到少排列。",
    ),
    "top": (
        "Which 3 rows of {t} have the highest {n}? Show all their columns.",
        "{t} 表中 {n} 最高的 3 条记录是哪些？列出全部字段。",
    ),
    "max": ("What is the largest {n} in the {t} table?", "{t} 表中最大的 {n} 是多少？"),
    "join": (
        "For each row of {p} (shown by its {pc}), how many rows of {t} refer to it?",
        "对 {p} 表的每条记录（显示 {pc}），统计 {t} 表中引用它的记录数。",
    ),
}


def _t2s_pair(
    kind: str, table: _T2STable, tables: dict[str, _T2STable], rng: random.Random, zh: bool
) -> tuple[str, str, list[_T2STable]] | None:
    """(question, sql, tables used) of one kind for ``table``, or None when it does not fit."""
    t, nums, texts = table.name, table.numeric(), table.text()
    fmt: dict[str, Any] = {"t": t}
    used = [table]
    if kind == "count":
        sql = f"SELECT COUNT(*) FROM {t};"
    elif kind in ("filter", "avg", "top", "max"):
        if not nums:
            return None
        n = fmt["n"] = rng.choice(nums)
        if kind == "filter":
            c = fmt["c"] = rng.choice(texts) if texts else table.key()
            v = fmt["v"] = rng.choice((1, 5, 10, 20, 50, 100))
            sql = f"SELECT {c} FROM {t} WHERE {n} > {v};"
        elif kind == "avg":
            sql = f"SELECT AVG({n}) FROM {t};"
        elif kind == "top":
            sql = f"SELECT * FROM {t} ORDER BY {n} DESC LIMIT 3;"
        else:
            sql = f"SELECT MAX({n}) FROM {t};"
    elif kind == "group":
        if not texts:
            return None
        c = fmt["c"] = rng.choice(texts)
        sql = f"SELECT {c}, COUNT(*) AS n FROM {t} GROUP BY {c} ORDER BY n DESC;"
    else:  # join
        fks = [fk for fk in table.foreign_keys if fk[1] in tables]
        if not fks:
            return None
        col, other, other_col = rng.choice(fks)
        parent = tables[other]
        pc = fmt["pc"] = (parent.text() or [other_col])[0]
        fmt["p"] = other
        sql = (
            f"SELECT p.{pc}, COUNT(*) AS n FROM {t} AS c JOIN {other} AS p "
            f"ON c.{col} = p.{other_col} GROUP BY p.{other_col} ORDER BY n DESC;"
        )
        used.append(parent)
    question = _T2S_TEMPLATES[kind][1 if zh else 0].format(**fmt)
    return question, sql, used


def _t2s_break(sql: str, table: _T2STable, u: float, zh: bool) -> tuple[str | None, str]:
    """A broken variant of ``sql``: (new question or None to keep it, new sql)."""
    variant = int(u * 3) % 3
    if variant == 0:  # a column that does not exist
        col = table.columns[-1][0]
        return None, sql.replace("SELECT ", f"SELECT {col}_nme, ", 1)
    if variant == 1:  # a syntax error
        return None, sql.replace("SELECT", "SELEC", 1)
    question = (
        f"删除 {table.name} 表中 {table.key()} 为空的记录。"
        if zh
        else f"Delete the rows of {table.name} that have no {table.key()}."
    )
    return question, f"DELETE FROM {table.name} WHERE {table.key()} IS NULL;"


def text2sql_samples(model: str, document: str, n: int) -> list[dict[str, str]]:
    """``n`` Text2SQL samples for a document holding CREATE TABLE statements, else []."""
    if "create table" not in document.lower():
        return []
    tables = parse_create_tables(document)
    if not tables:
        return []
    by_name = {t.name: t for t in tables}
    rng = random.Random(_seed_of("t2s", model, str(n), document))
    zh = detect_language(document) == "zh"
    kinds = list(_T2S_TEMPLATES)
    samples: list[dict[str, str]] = []
    seen: set[str] = set()
    attempt = 0
    while len(samples) < n and attempt < 20 * n:
        table = tables[attempt % len(tables)]
        kind = kinds[(attempt // len(tables) + rng.randrange(len(kinds))) % len(kinds)]
        attempt += 1
        pair = _t2s_pair(kind, table, by_name, rng, zh)
        if pair is None:
            continue
        question, sql, used = pair
        u = _unit("t2s-broken", model, document, question)
        if u < 0.2:
            new_question, sql = _t2s_break(sql, table, u / 0.2, zh)
            question = new_question or question
        if question in seen:
            continue
        seen.add(question)
        schema = "\n\n".join(dict.fromkeys(t.ddl for t in used))
        samples.append({"instruction": question, "input": schema, "output": f"```sql\n{sql}\n```"})
    k = 0
    while len(samples) < n:  # very small schemas: repeat the count question, numbered
        k += 1
        t = tables[k % len(tables)].name
        samples.append(
            {
                "instruction": f"{_T2S_TEMPLATES['count'][1 if zh else 0].format(t=t)} ({k})",
                "input": tables[k % len(tables)].ddl,
                "output": f"```sql\nSELECT COUNT(*) FROM {t};\n```",
            }
        )
    return samples


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


def _context_tokens(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {value!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {n}")
    return n


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
    p.add_argument(
        "--context-tokens",
        type=_context_tokens,
        default=None,
        help="context length: /v1/models reports it as max_model_len, and longer prompts get "
        "vLLM's HTTP 400 (tokens = characters / 2)",
    )
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
        context_tokens=args.context_tokens,
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
