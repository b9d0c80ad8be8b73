"""OpenAI-compatible simulator server for tests, ``--dry-run`` and benchmarks.

Reply *content* is a pure function of the request (model + prompt), so reruns and resumes see the
same samples and scores; *faults* are drawn per request from a seeded ``random.Random`` sequence, so
a retry of a failed request can succeed. Scripted replies (``queue``) override both.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import ipaddress
import itertools
import json
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from ..evaluation.prompts import PAIRWISE_TASK
from ..llm.prompts import (
    JUDGE_BATCH_TASK,
    TASK_MARKER,
    is_reask,
    parse_evaluation_batch_prompt,
    parse_evaluation_prompt,
    parse_task_prompt,
)
from .batches import BatchAPI
from .batches import add_routes as add_batch_routes
from .content import (
    _MALFORMED,
    batch_faults,
    embed_text,
    evaluation_reply,
    generation_reply,
    generation_samples,
    messy_wrap,
)
from .defects import DefectLedger, inject_defects
from .faults import (
    _ALL_FAULT_KINDS,
    _QUOTA_ERROR,
    _TRACEBACK_500,
    FAULT_KINDS,
    QueueItem,
    Scripted,
    _context_error_body,
    _error_body,
    _fmt_seconds,
)
from .prefix_cache import PrefixCache, serialize
from .response_formats import NONE as RF_NONE
from .response_formats import (
    SERVER_DIALECTS,
    kind_schema,
    rejection,
    requested_form,
    requested_schema,
    shaped,
)
from .students import pairwise_reply, student_reply
from .tasks import TASK_RESPONDERS

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
    "make_app",
    "messy_wrap",
    "run_in_thread",
]


_CONTEXT_REPORTS = ("vllm", "llamacpp", "none")
_USAGE_DIALECTS = ("openai", "deepseek", "dashscope")
_CACHE_MAX = 4096
_LOG_MAX = 10_000
_PROMPTS_MAX = 100_000


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
    # Share of generated samples given a seeded defect (see ``defects``; truth at GET /defects).
    defect_rate: float = 0.0
    # Which response_format forms it takes, and how it refuses the others (simulator.formats):
    # "openai" (json_schema), "llamacpp" (json_object with or without a schema; HTTP 500 for
    # json_schema), "json_object" (DeepSeek, Moonshot), "none" (no response_format at all).
    structured_output: str = "openai"
    # How usage reports cached prompt tokens: "openai" and "dashscope" in
    # prompt_tokens_details.cached_tokens, "deepseek" as prompt_cache_hit/miss_tokens (and its
    # whole-prefix-unit rule for hits, simulator.prefix_cache).
    usage_dialect: str = "openai"
    # The prefix cache: hits from this many tokens of a prompt's start seen within ttl_s.
    prefix_cache_min_tokens: int = 1024
    prefix_cache_ttl_s: float = 300.0
    # sft-distill eval: the models that answer plain questions as students, each with its
    # quality gap (-1 worse than the teacher's answers .. 0 as good .. +1 better), and the share
    # of pairwise verdicts that name position A whatever the answers (``students``).
    answer_gaps: dict[str, float] = field(default_factory=dict)
    position_bias: float = 0.0
    # Batched judging replies with 3 or more entries leave one entry out and spoil another
    # (a score of 2017), both chosen by seed and prompt: only those two are to be re-asked.
    judge_batch_faults: bool = False
    # The Batch API (``batches``): seconds a batch stays in_progress before its lines are
    # answered; lines (over the server's life) that fail with a server_error; batches that
    # expire with half their lines unanswered.
    batch_delay_s: float = 0.0
    batch_fail_lines: int = 0
    batch_expire: int = 0

    def __post_init__(self) -> None:
        bad_gaps = {m: g for m, g in self.answer_gaps.items() if not -1.0 <= g <= 1.0}
        if bad_gaps:
            raise ValueError(f"answer gaps must be between -1 and 1, got {bad_gaps}")
        if not 0.0 <= self.position_bias <= 1.0:
            raise ValueError(f"position_bias must be between 0 and 1, got {self.position_bias}")
        unknown = sorted(set(self.faults) - _ALL_FAULT_KINDS)
        if unknown:
            raise ValueError(f"unknown fault kind(s) {unknown}; known: {sorted(_ALL_FAULT_KINDS)}")
        if not self.faults and self.fail_rate > 0:
            raise ValueError("fail_rate > 0 needs at least one fault kind")
        if self.context_tokens is not None and self.context_tokens < 1:
            raise ValueError(f"context_tokens must be >= 1, got {self.context_tokens}")
        if not 0.0 <= self.defect_rate <= 1.0:
            raise ValueError(f"defect_rate must be between 0 and 1, got {self.defect_rate}")
        if self.context_report not in _CONTEXT_REPORTS:
            raise ValueError(
                f"context_report must be one of {_CONTEXT_REPORTS}, got {self.context_report!r}"
            )
        if self.structured_output not in SERVER_DIALECTS:
            raise ValueError(
                f"structured_output must be one of {SERVER_DIALECTS}, got "
                f"{self.structured_output!r}"
            )
        if self.usage_dialect not in _USAGE_DIALECTS:
            raise ValueError(
                f"usage_dialect must be one of {_USAGE_DIALECTS}, got {self.usage_dialect!r}"
            )
        if self.prefix_cache_min_tokens < 0 or self.prefix_cache_ttl_s < 0:
            raise ValueError("prefix_cache_min_tokens and prefix_cache_ttl_s must be >= 0")
        if self.batch_delay_s < 0 or self.batch_fail_lines < 0 or self.batch_expire < 0:
            raise ValueError("batch_delay_s, batch_fail_lines and batch_expire must be >= 0")


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
        "cached_prompt_tokens": 0,
        "auth_headers_seen": 0,
        "reasks": 0,
        # requests by the form of their response_format, and those refused for it
        "response_formats": {},
        "response_format_rejected": 0,
        # the Batch API: files and batches, lines answered and lines failed on purpose
        "files_uploaded": 0,
        "files_deleted": 0,
        "files_with_auth_key": 0,
        "batches_created": 0,
        "batch_lines_submitted": 0,
        "batch_lines": 0,
        "batch_lines_failed": 0,
        "batch_lines_expired": 0,
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


@dataclass(slots=True)
class _Request:
    """What answering one chat request needs, whichever way it is answered."""

    model: str
    kind: str
    good: str  # the reply content (in the schema's shape when a response_format is in force)
    finish: str
    prompt_chars: int
    key: bytes
    prefix: str  # the serialized messages, matched by the prefix cache
    structured: bool  # a response_format is in force: no prose around the JSON


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
        self._cache: dict[tuple[Any, ...], tuple[str, str, str | None]] = {}
        # Which generated samples were given a defect: content, so reset_stats keeps it.
        self.defects = DefectLedger()
        self._ids = itertools.count(1)
        self._prefix = PrefixCache(cfg.prefix_cache_min_tokens, cfg.prefix_cache_ttl_s)
        self._shapes: dict[tuple[str, str], tuple[dict[str, Any] | None, str]] = {}

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

    def _defects_for(
        self, model: str
    ) -> Callable[[list[dict[str, Any]], str], list[dict[str, Any]]]:
        """Seeded defects for a generation reply, their kinds recorded for ``GET /defects``."""

        def spoil(samples: list[dict[str, Any]], document: str) -> list[dict[str, Any]]:
            samples, kinds = inject_defects(
                samples, document, model=model, rate=self.cfg.defect_rate, seed=self.cfg.seed
            )
            self.defects.record(samples, kinds)
            return samples

        return spoil

    def _content_for(self, model: str, user: str) -> tuple[str, str, bytes, str | None]:
        """(kind, good content, prompt key, task) for a prompt, cached by sha1 of model + prompt."""
        key = hashlib.sha1(f"{model}\x1f{user}".encode("utf-8", "surrogatepass")).digest()
        cfg = self.cfg
        bias, rate = cfg.score_bias, cfg.defect_rate
        # The eval knobs change what a student or a pairwise judge answers: part of the key.
        cache_key = (
            key,
            bias,
            rate,
            cfg.seed if rate else 0,
            cfg.answer_gaps.get(model),
            cfg.position_bias,
        )
        hit = self._cache.get(cache_key)
        if hit is not None:
            return hit[0], hit[1], key, hit[2]
        task_name = None
        # The substring checks skip a full regex parse for the other prompt kind.
        gen = generation_reply(model, user, defects=self._defects_for(model) if rate > 0 else None)
        if gen is not None:
            kind, content = "generation", gen
        else:
            ev = parse_evaluation_prompt(user) if "<sample>" in user else None
            if ev is not None:
                kind = "evaluation"
                reply = evaluation_reply(
                    model,
                    ev["instruction"],
                    ev["output"],
                    score_bias=bias,
                    document=ev["document"],
                    input_text=ev["input"],
                )
                content = json.dumps(reply, ensure_ascii=False)
            elif (batch := parse_evaluation_batch_prompt(user)) is not None:
                # Each sample judged as it would be alone: the same pure function of it.
                kind, task_name = "evaluation", JUDGE_BATCH_TASK
                document, items = batch
                results = [
                    {
                        "id": item["id"],
                        **evaluation_reply(
                            model,
                            item["instruction"],
                            item["output"],
                            score_bias=bias,
                            document=document,
                            input_text=item["input"],
                        ),
                    }
                    for item in items
                ]
                content = json.dumps({"results": results}, ensure_ascii=False)
            else:
                kind, content, task_name = self._other_content(model, user)
        if len(self._cache) >= _CACHE_MAX:
            del self._cache[next(iter(self._cache))]
        self._cache[cache_key] = (kind, content, task_name)
        return kind, content, key, task_name

    def _shaped(
        self,
        form: str,
        good: str,
        schema: dict[str, Any] | None,
        kind: str,
        task: str | None,
    ) -> str:
        """``good`` in the shape of ``schema`` (else of the kind's, for json_object), memoised:
        a request repeats its schema, and reshaping costs more than answering."""
        if schema is None:
            schema = kind_schema(kind, task)
        slot = (good, form)  # the reshaped reply is a function of the reply and the schema
        hit = self._shapes.get(slot)
        if hit is not None and hit[0] == schema:
            return hit[1]
        out = shaped(good, schema)
        if len(self._shapes) >= _CACHE_MAX:
            del self._shapes[next(iter(self._shapes))]
        self._shapes[slot] = (schema, out)
        return out

    def _cached_tokens(self, req: _Request, prompt_tokens: int) -> int:
        """Prompt tokens the prefix cache holds for this request (it is cached from now on)."""
        cfg = self.cfg
        cache = self._prefix
        cache.min_tokens = max(1, cfg.prefix_cache_min_tokens)
        cache.ttl_s = cfg.prefix_cache_ttl_s
        cache.units = cfg.usage_dialect == "deepseek"
        cached = cache.cached_tokens(req.prefix, time.monotonic())
        return min(cached, prompt_tokens)

    def _usage(self, prompt: int, completion: int, cached: int, reasoning: int) -> dict[str, Any]:
        """``usage`` as the configured server reports it (cached prompt tokens, reasoning)."""
        usage: dict[str, Any] = {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }
        dialect = self.cfg.usage_dialect
        if dialect == "deepseek":
            # DeepSeek: prompt_tokens = hit + miss (api-docs.deepseek.com, context caching).
            usage["prompt_cache_hit_tokens"] = cached
            usage["prompt_cache_miss_tokens"] = prompt - cached
        elif dialect == "dashscope":
            usage["prompt_tokens_details"] = {"cached_tokens": cached}
        else:
            usage["prompt_tokens_details"] = {"cached_tokens": cached, "audio_tokens": 0}
        if reasoning or dialect == "openai":
            usage["completion_tokens_details"] = {"reasoning_tokens": reasoning}
        return usage

    def _other_content(self, model: str, user: str) -> tuple[str, str, str | None]:
        """(kind, content, task) of a task prompt, a pairwise comparison or a student's question."""
        task = parse_task_prompt(user) if TASK_MARKER in user else None
        if task is not None and task[0] == PAIRWISE_TASK:
            reply = pairwise_reply(model, task[1], position_bias=self.cfg.position_bias)
            return "evaluation", json.dumps(reply, ensure_ascii=False), PAIRWISE_TASK
        if task is not None and task[0] in TASK_RESPONDERS:
            return "generation", TASK_RESPONDERS[task[0]](model, task[1]), task[0]
        gap = self.cfg.answer_gaps.get(model)
        if task is None and gap is not None:
            return "generation", student_reply(model, user, gap), "student"
        return "other", "OK. This is the sft_distill simulator.", None

    def _chat_body(
        self,
        req: _Request,
        content: str | None,
        finish_reason: str,
        *,
        reasoning: str | None = None,
        empty: bool = False,
    ) -> bytes:
        prompt_tokens = max(1, req.prompt_chars // 2)
        reasoning_tokens = len(reasoning) // 2 if reasoning else 0
        completion_tokens = (len(content) // 2 if content else 0) + reasoning_tokens
        cached = self._cached_tokens(req, prompt_tokens)
        self.stats["prompt_tokens"] += prompt_tokens
        self.stats["completion_tokens"] += completion_tokens
        self.stats["cached_prompt_tokens"] += cached
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
            "model": req.model,
            "choices": choices,
            "usage": self._usage(prompt_tokens, completion_tokens, cached, reasoning_tokens),
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
        missing = _missing_field(model, messages)
        if missing is not None:
            st["by_kind"]["other"] += 1
            field_name, msg = missing
            name = model if isinstance(model, str) else ""
            return self._reply(400, _error_body(400, msg, field_name), "other", name)
        prompt_chars, user, reask, parts = _scan_messages(messages)
        if reask:
            st["reasks"] += 1
        by_model = st["by_model"]
        by_model[model] = by_model.get(model, 0) + 1
        kind, good, key, task = self._content_for(model, user)
        st["by_kind"][kind] += 1
        cfg = self.cfg
        if cfg.keep_prompts and len(self.prompts) < _PROMPTS_MAX:
            self.prompts.append(user)
        prefix = serialize(model, parts)  # each model has its own cache, as on a server
        response_format = body.get("response_format")
        form = requested_form(response_format)
        forms = st["response_formats"]
        forms[form] = forms.get(form, 0) + 1
        refused = None
        if form != RF_NONE:
            said = "\n".join(text for _, text in parts)
            refused = rejection(cfg.structured_output, form, said, len(raw))
        if refused is not None:
            st["response_format_rejected"] += 1
            status, err, ctype = refused
            return self._reply(status, err, kind, model, content_type=ctype)
        if form != RF_NONE:
            # Constrained decoding (or JSON mode following the prompt's example): the reply is
            # the usual one in the schema's shape, never wrapped in prose.
            schema = requested_schema(response_format, form)
            good = self._shaped(form, good, schema, kind, task)
        if task == JUDGE_BATCH_TASK and cfg.judge_batch_faults:
            # After shaping: a schema does not stop a model from dropping or spoiling an entry.
            good = batch_faults(good, f"{cfg.seed}\x1f{key.hex()}")
        max_tokens = body.get("max_tokens")
        finish = "stop"
        if isinstance(max_tokens, int) and max_tokens > 0 and len(good) // 2 > max_tokens:
            # Like a real server: over max_tokens means cut off mid-JSON.
            good, finish = good[: max_tokens * 2], "length"
        req = _Request(model, kind, good, finish, prompt_chars, key, prefix, form != RF_NONE)

        if self.script:
            st["scripted"] += 1
            return await self._scripted(request, self.script.popleft(), req)
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
            return await self._chat_fault(request, fault, req)
        if cfg.malformed_rate > 0 and self.rng.random() < cfg.malformed_rate:
            self._fault("malformed")
            content = _MALFORMED[key[1] % len(_MALFORMED)]
            return self._reply(200, self._chat_body(req, content, "stop"), kind, model)
        return self._good(req, finish)

    def _good(self, req: _Request, finish: str) -> web.Response:
        cfg = self.cfg
        good, kind = req.good, req.kind
        # Real models wrap JSON in fences and prose; a plain-text answer is left as it is.
        messy = cfg.messy and not req.structured and kind != "other" and good[:1] in ("[", "{")
        content = messy_wrap(good, req.key) if messy else good
        reasoning = None
        if cfg.reasoning:
            reasoning = f"The request is a {kind} task; I follow the instructions and the material."
        body = self._chat_body(req, content, finish, reasoning=reasoning)
        return self._reply(200, body, kind, req.model)

    async def _chat_fault(
        self, request: web.Request, fault: str, req: _Request
    ) -> web.StreamResponse:
        model, kind = req.model, req.kind
        resp = self._error_fault(fault, model, kind)
        if resp is not None:
            return resp
        if fault == "reset":
            return await self._reset(request)
        if fault == "empty_choices":
            return self._reply(200, self._chat_body(req, None, "stop", empty=True), kind, model)
        if fault == "length":
            cut = req.good[: len(req.good) // 2]
            return self._reply(200, self._chat_body(req, cut, "length"), kind, model)
        if fault == "timeout":
            # Hang, then answer normally (the client has usually given up by then).
            await asyncio.sleep(self.cfg.timeout_s)
            return self._good(req, "stop")
        # An unknown kind set on a live config: fail loudly rather than hang or pass silently.
        msg = f"simulator: unknown fault kind {fault!r}"
        return self._reply(500, _error_body(500, msg), kind, model)

    async def _scripted(
        self, request: web.Request, item: QueueItem, req: _Request
    ) -> web.StreamResponse:
        model, kind = req.model, req.kind
        if isinstance(item, str):
            self._fault(item)
            return await self._chat_fault(request, item, req)
        if isinstance(item, int):
            item = Scripted(status=item)
        if item.delay_s > 0:
            await asyncio.sleep(item.delay_s)
        headers = item.headers
        if item.content is not None:
            body = self._chat_body(req, item.content, item.finish_reason)
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
        resp = self._good(req, req.finish)
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

    async def get_defects(self, request: web.Request) -> web.StreamResponse:
        """GET /defects: the seeded defects' ground truth ({fingerprint: kind or null})."""
        return web.json_response(self.defects.summary())

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
    app.router.add_get("/defects", state.get_defects)
    app.router.add_post("/stats/reset", state.post_reset)
    add_batch_routes(app, BatchAPI(state))
    return app


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

    def prompts(self) -> list[str]:
        """A copy of the user prompts received (with ``keep_prompts``)."""
        return list(self._call(lambda: list(self._sim.prompts)))

    def defects(self) -> dict[str, Any]:
        """The seeded defects' ground truth (what ``GET /defects`` serves)."""
        summary: dict[str, Any] = self._call(self._sim.state.defects.summary)
        return summary

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


# --- topic mode responders ---


def _missing_field(model: Any, messages: Any) -> tuple[str, str] | None:
    """(field, OpenAI's message) of a request without a model or messages, else None."""
    if not isinstance(model, str) or not model:
        return "model", "you must provide a model parameter"
    if not isinstance(messages, list) or not messages:
        return "messages", "'messages' is a required property and must be a non-empty array"
    return None


def _scan_messages(messages: list[Any]) -> tuple[int, str, bool, list[tuple[str, str]]]:
    """(prompt characters, the user turn answered, whether the last is a re-ask, (role, text)s).

    A re-ask repeats the request before it: the reply is the one to that user turn.
    """
    prompt_chars, user, reask = 0, "", False
    parts: list[tuple[str, str]] = []
    for m in messages:
        if isinstance(m, dict):
            text = _text_of(m.get("content"))
            prompt_chars += len(text)
            parts.append((str(m.get("role", "")), text))
            if m.get("role") == "user":
                reask = is_reask(text)
                if not reask:
                    user = text
    return prompt_chars, user, reask, parts
