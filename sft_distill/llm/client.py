"""``LLMClient``: chat completions against one endpoint, bounded, retried, re-asked, cached.

The HTTP exchange and its error mapping are ``transport``'s, the waits ``retry``'s, the limits
``limits``'; the client decides what is sent when, replays the cache and stops a dead endpoint.

Structured output: a request that names its ``kind`` asks for that kind's JSON schema in the
form the endpoint takes (``structured_output``; ``llm.structured`` has the forms). With
``auto`` the first request probes (one at a time until a form is taken): a reply rejecting the
form steps down one form and is sent again, and the form that worked is remembered in the
response cache's ``meta`` table, so a resume sends the same payloads and finds its replies.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn, TypeVar

from ..config.models import EndpointConfig, display_url
from ..errors import (
    EndpointStoppedError,
    JSONExtractionError,
    LLMError,
    ResponseFormatError,
    RetryableLLMError,
    TruncatedReplyError,
    UnusableReplyError,
)
from ..models import Usage
from .batch import FINAL_CODES, BatchRunner, line_reply
from .cache import LEGACY_PAYLOADS, ResponseCache, finish_key, key_prefix
from .json_extract import extract_json, split_reasoning
from .limits import AdaptiveLimiter, TokenBucket
from .prompts import detect_language, mark_shared_block, reask_messages
from .retry import MAX_RETRY_AFTER_S, RetryPolicy
from .structured import (
    Dialect,
    ReplyKind,
    first_dialect,
    merge_payload,
    next_dialect,
    prompt_suffix_for,
    response_format_for,
    thinking_payload,
    unwrap,
)
from .transport import DETAIL_MAX_CHARS, ChatResult, E, Transport, one_line, parse_duration

log = logging.getLogger(__name__)

T = TypeVar("T")

LATENCY_SAMPLE_SIZE = 20_000
# Payload keys left out of cache keys: a reply that was not truncated stays valid when only the
# token budget changes, so raising max_tokens re-sends just the replies that were cut off.
_UNKEYED = frozenset({"max_tokens", "max_completion_tokens"})
# The meta row (in the response cache) that remembers the structured-output form of an
# (api_base, model); the value is a ``Dialect``.
_DIALECT_META = "structured_output/{base} {model}"


class LLMClient:
    """Chat completions against one endpoint; an async context manager owning its session.

    Args:
        name: the endpoint's role name (``generator``, ``primary`` ...), used in messages.
        config: the endpoint settings.
        cache: where accepted replies are recorded and replayed from.
        cache_namespace: identity of the endpoint in cache keys (default: its api_base).
        sleep: the coroutine used between retries (tests pass a recorder).
        on_stop: called once when ``max_consecutive_failures`` calls in a row failed the same
            way; from then on the client sends nothing more (the pipeline stops the run).
        limiter: a limiter shared with other processes (``engine.budget``); it then holds the
            endpoint's requests and tokens per minute too. Default: this client's own.
    """

    def __init__(
        self,
        name: str,
        config: EndpointConfig,
        *,
        cache: ResponseCache | None = None,
        cache_namespace: str | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        on_stop: Callable[[EndpointStoppedError], None] | None = None,
        batch: BatchRunner | None = None,
        limiter: AdaptiveLimiter | None = None,
    ) -> None:
        self.name = name
        self.config = config
        self.model = config.model
        self.usage = Usage(model=config.model)
        self.transport = Transport(name, config, self.usage)
        self.url = self.transport.url
        self._where = self.transport.where
        self._cache = cache
        # The endpoint's name is part of the namespace: two judges with the same model and settings
        # stay two independent votes instead of sharing one cached reply.
        self._namespace = f"{name}@{cache_namespace or config.api_base}"
        # Hash states of the fields every plain request shares, per (form, kind) of request.
        self._key_prefixes: dict[tuple[Dialect | None, ReplyKind | None], Any] = {}
        self._thinking = thinking_payload(config.thinking_settings())
        # The form structured replies are asked in. A response_format of the user's own in
        # extra_body wins: it is sent as it is, with no schema and no step-down.
        self.structured_output = (
            "none" if "response_format" in config.extra_body else config.structured_output
        )
        self._dialect = first_dialect(self.structured_output)
        self._settled = self.structured_output != "auto"  # a pinned form is never probed
        self._dialect_loaded = False
        self._dialect_meta = _DIALECT_META.format(
            base=display_url(cache_namespace or config.api_base), model=config.model
        )
        # Probing: one request goes first; the others wait until the server's first answer to it
        # (taken, or an error that says nothing about the form: then they all go).
        self._gate = asyncio.Event()
        self._probing = False
        self._probe_payload: dict[str, Any] | None = None
        self._probe_dialect = self._dialect
        self._formats: dict[tuple[Dialect, ReplyKind], dict[str, Any] | None] = {}
        self._suffixes: dict[tuple[Dialect, ReplyKind, str], str] = {}
        self._inflight: dict[str, asyncio.Future[ChatResult]] = {}
        self._closed = False
        self._sleep = sleep
        self.retry_policy = RetryPolicy.of(config)
        self.limiter = limiter or AdaptiveLimiter(
            config.max_concurrent, adaptive=config.adaptive_concurrency
        )
        # A shared limiter holds the per-minute budgets of every process using the endpoint.
        own = limiter is None
        self._rpm = (
            TokenBucket(config.max_requests_per_minute)
            if own and config.max_requests_per_minute
            else None
        )
        self._tpm = (
            TokenBucket(config.max_tokens_per_minute)
            if own and config.max_tokens_per_minute
            else None
        )
        # Consecutive calls that failed for good with the same signature; a success resets it.
        self._streak = 0
        self._streak_key: str | None = None
        self.stopped: EndpointStoppedError | None = None
        self._stopped_event = asyncio.Event()
        self._on_stop = on_stop
        # A uniform reservoir sample of call latencies (for p50/p90/p95): memory stays constant
        # however many calls a run makes.
        self.latencies: list[float] = []
        self._latency_seen = 0
        self._latency_rng = random.Random(0)
        # Through a Batch API: requests that miss the cache wait for the runner's next wave, so
        # the stages keep many more of them open than max_concurrent (which still bounds the
        # online calls: the structured-output probe, the files and batches API).
        self._batch = batch if cache is not None else None
        if self._batch is not None:
            parallel = max(config.max_concurrent, self._batch.settings.max_requests)
            self.config = config.model_copy(update={"max_concurrent": parallel})

    @property
    def where(self) -> str:
        """``name (model at url)`` for messages."""
        return self._where

    @property
    def namespace(self) -> str:
        """The endpoint's identity in cache keys and batch records."""
        return self._namespace

    @property
    def batched(self) -> bool:
        """Whether requests go through a Batch API."""
        return self._batch is not None

    async def __aenter__(self) -> LLMClient:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def open(self) -> None:
        await self.transport.open()

    async def aclose(self) -> None:
        """Close the session; safe to call twice. A closed client sends nothing more."""
        self._closed = True
        await self.transport.aclose()

    def _payload(
        self,
        messages: list[dict[str, str]],
        overrides: dict[str, Any] | None,
        dialect: Dialect | None = None,
        kind: ReplyKind | None = None,
    ) -> dict[str, Any]:
        """The request body. Without a kind, or in the form ``none`` with thinking left at
        ``auto``, it is byte for byte what it was before structured output (same cache keys)."""
        response_format = None
        if dialect is not None and kind is not None and dialect is not Dialect.NONE:
            response_format = self._response_format(dialect, kind)
            messages = self._with_suffix(messages, dialect, kind)
        if self.config.cache_control:
            messages = mark_shared_block(messages)
        payload: dict[str, Any] = {"model": self.model, "messages": messages}
        if self.config.temperature is not None:
            payload["temperature"] = self.config.temperature
        if self.config.max_tokens is not None:
            payload["max_tokens"] = self.config.max_tokens
        if self._thinking:
            # The endpoint's own extra_body keys win over the switch (merged, not replaced).
            payload = merge_payload(merge_payload(payload, self._thinking), self.config.extra_body)
        elif self.config.extra_body:
            payload.update(self.config.extra_body)
        if overrides:
            payload.update(overrides)
        if response_format is not None:
            payload["response_format"] = response_format
        return payload

    def _response_format(self, dialect: Dialect, kind: ReplyKind) -> dict[str, Any] | None:
        """``response_format`` of a form and kind, built once (schemas are large)."""
        slot = (dialect, kind)
        if slot not in self._formats:
            self._formats[slot] = response_format_for(dialect, kind)
        return self._formats[slot]

    def _with_suffix(
        self, messages: list[dict[str, str]], dialect: Dialect, kind: ReplyKind
    ) -> list[dict[str, str]]:
        """``messages`` with the form's line (and example) appended: to the system message, so
        it stays in the prefix every request of the kind shares, else to the last user turn."""
        if not messages:
            return messages
        at = 0 if messages[0].get("role") == "system" else len(messages) - 1
        text = str(messages[at].get("content") or "")
        lang = detect_language(text)
        slot = (dialect, kind, lang)
        suffix = self._suffixes.get(slot)
        if suffix is None:
            suffix = self._suffixes[slot] = prompt_suffix_for(dialect, kind, lang)
        if not suffix:
            return messages
        out = list(messages)
        out[at] = {**messages[at], "content": f"{text}\n\n{suffix}" if text else suffix}
        return out

    async def chat(
        self,
        messages: list[dict[str, str]],
        parse: Callable[[ChatResult], T],
        *,
        overrides: dict[str, Any] | None = None,
        kind: ReplyKind | str | None = None,
    ) -> tuple[T, ChatResult]:
        """Send a chat request and parse the reply, retrying transport and parse failures.

        ``parse`` raises ``JSONExtractionError`` or ``ValueError`` for a reply it cannot use; the
        request is then re-asked with that reply and the error appended, within the same retry
        budget. Only parsed replies are cached, under the original request.

        ``kind`` (a ``structured.ReplyKind``) asks for that kind's JSON schema in the
        endpoint's structured-output form; the reply is then first validated against the
        kind's reply model (a failure is re-asked with the model's error), and an answer's
        ``{"answer": ...}`` reaches ``parse`` as plain text.

        Raises:
            LLMError: after the retry budget, or at once for a non-retryable status.
            ResponseFormatError: a pinned ``structured_output`` form the server rejects.
            EndpointStoppedError: the endpoint was stopped (``max_consecutive_failures``).
        """
        if kind is None or self.structured_output == "none":
            if kind is not None:
                self.usage.structured_output = Dialect.NONE.value
            return await self._chat(messages, parse, overrides, None, None)
        kind = ReplyKind(kind)
        if not self._dialect_loaded:
            self._load_dialect()
        while True:
            dialect = self._dialect
            probe = False
            if not self._settled and not self._gate.is_set():
                if self._probing:
                    await self._gate.wait()
                    continue
                self._probing = probe = True  # this request finds the form
            try:
                value, result = await self._chat(
                    messages, parse, overrides, dialect, kind, probe=probe
                )
            except ResponseFormatError as exc:
                # A fixed form is never stepped down; "none" sends no response_format to refuse.
                if self.structured_output != "auto" or next_dialect(dialect) is None:
                    if probe:
                        self._gate.set()
                    raise
                self._step_down(dialect, exc)
                continue
            except BaseException:
                if probe:
                    self._gate.set()  # the others go ahead, whatever became of this one
                raise
            finally:
                if probe:
                    self._probing = False
                    self._probe_payload = None
            self._settle(dialect)
            return value, result

    def _load_dialect(self) -> None:
        """The form remembered for this (api_base, model) in the output directory, if any."""
        self._dialect_loaded = True
        if self.structured_output != "auto" or self._cache is None:
            if self._settled:  # a pinned form
                self.usage.structured_output = self._dialect.value
            return
        stored = self._cache.get_meta(self._dialect_meta)
        if stored in {d.value for d in Dialect}:
            self._dialect, self._settled = Dialect(stored), True
        elif self._cache.get_meta(LEGACY_PAYLOADS):
            # A run from before structured output: its replies were asked with no
            # response_format, and are found again only if asked the same way.
            self._dialect, self._settled = Dialect.NONE, True
            self._cache.set_meta(self._dialect_meta, Dialect.NONE.value)
        if self._settled:
            self.usage.structured_output = self._dialect.value

    def _settle(self, dialect: Dialect) -> None:
        """A reply came back in ``dialect``: remember it (once)."""
        if self._settled or dialect is not self._dialect:
            return
        self._settled = True
        self._gate.set()
        self.usage.structured_output = dialect.value
        log.info("%s: structured output as %s", self._where, dialect.value)
        if self._cache is not None and self.structured_output == "auto":
            self._cache.set_meta(self._dialect_meta, dialect.value)

    def _step_down(self, dialect: Dialect, exc: ResponseFormatError) -> None:
        """``dialect`` was rejected: the next form is tried (once, however many were in flight)."""
        nxt = next_dialect(dialect)
        if dialect is not self._dialect or nxt is None:
            return  # another request already stepped past it
        self.usage.response_format_rejections += 1
        log.info(
            "%s: %s rejected (%s); trying %s", self._where, dialect.value, exc.summary, nxt.value
        )
        self._dialect, self._settled = nxt, False
        self._gate.clear()  # the next form is probed by one request first, too

    def _probe_answered(self, payload: dict[str, Any], *, taken: bool) -> None:
        """The server's first answer to the probe that was not a refusal of its form: ``taken``
        (a reply came back) settles the form; either way the waiting requests go ahead."""
        if payload is not self._probe_payload:
            return
        self._probe_payload = None
        if taken:
            self._settle(self._probe_dialect)
        self._gate.set()

    async def _chat(
        self,
        messages: list[dict[str, str]],
        parse: Callable[[ChatResult], T],
        overrides: dict[str, Any] | None,
        dialect: Dialect | None,
        kind: ReplyKind | None,
        *,
        probe: bool = False,
    ) -> tuple[T, ChatResult]:
        """One request in one form, from the cache, shared with the same one in flight, or sent."""
        payload = self._payload(messages, overrides, dialect, kind)
        if probe and dialect is not None:
            self._probe_payload, self._probe_dialect = payload, dialect
        if kind is not None and "response_format" in payload:
            parse = _validated(parse, kind)
        key = ""
        if self._cache is not None:
            key = self._key(payload, overrides, dialect, kind)
            hit = self._cache.get(key)
            if hit is not None:
                result = ChatResult(cached=True, attempts=0, **hit)
                try:
                    value = parse(result)
                except (JSONExtractionError, ValueError):
                    pass  # a reply the current parser rejects is asked for again
                else:
                    self.usage.cached += 1
                    return value, result

            # The same request already in flight (a repeated chunk, say): share its reply.
            leader = self._inflight.get(key)
            if leader is not None:
                shared = await asyncio.shield(leader)
                self.usage.cached += 1
                return parse(shared), shared
            future: asyncio.Future[ChatResult] = asyncio.get_running_loop().create_future()
            self._inflight[key] = future
            try:
                value, result = await self._send(payload, parse, key=key, online=probe)
            except BaseException as exc:
                if not future.done():
                    future.set_exception(exc)
                    future.exception()  # retrieved: no "never retrieved" noise without followers
                raise
            finally:
                del self._inflight[key]
            future.set_result(result)
            self._cache.put(key, result.to_cache())
            return value, result
        return await self._send(payload, parse)

    def _key(
        self,
        payload: dict[str, Any],
        overrides: dict[str, Any] | None,
        dialect: Dialect | None,
        kind: ReplyKind | None,
    ) -> str:
        """The response-cache key of a request body."""
        if overrides:
            return finish_key(key_prefix(self._namespace, payload, skip=_UNKEYED), payload)
        # Requests without a response_format share one prefix whatever their kind.
        slot = (dialect, kind) if "response_format" in payload else (None, None)
        prefix = self._key_prefixes.get(slot)
        if prefix is None:
            prefix = key_prefix(self._namespace, payload, skip=_UNKEYED)
            self._key_prefixes[slot] = prefix
        return finish_key(prefix, payload)

    def _form(self, kind: ReplyKind | str | None) -> tuple[Dialect | None, ReplyKind | None]:
        """The (form, kind) a request of ``kind`` is sent in now (as ``chat`` would send it)."""
        if kind is None or self.structured_output == "none":
            return None, None
        if not self._dialect_loaded:
            self._load_dialect()
        return self._dialect, ReplyKind(kind)

    def replay(
        self,
        messages: list[dict[str, str]],
        parse: Callable[[ChatResult], T],
        *,
        kind: ReplyKind | str | None = None,
    ) -> T | None:
        """The parsed cached reply to a request, or None; nothing is sent.

        Batched judging asks for each sample's own request first, so a sample judged before
        (alone or in a batch, ``remember``) is never judged again.
        """
        if self._cache is None:
            return None
        dialect, rkind = self._form(kind)
        payload = self._payload(messages, None, dialect, rkind)
        if rkind is not None and "response_format" in payload:
            parse = _validated(parse, rkind)
        hit = self._cache.get(self._key(payload, None, dialect, rkind))
        if hit is None:
            return None
        try:
            value = parse(ChatResult(cached=True, attempts=0, **hit))
        except (JSONExtractionError, ValueError):
            return None
        self.usage.cached += 1
        return value

    def remember(
        self, messages: list[dict[str, str]], content: str, *, kind: ReplyKind | str | None = None
    ) -> None:
        """Record ``content`` as the reply to a request that was answered another way (one
        sample's part of a batched judging reply), under that request's own cache key."""
        if self._cache is None:
            return
        dialect, rkind = self._form(kind)
        payload = self._payload(messages, None, dialect, rkind)
        result = ChatResult(content=content, reasoning=None, finish_reason="stop", model=self.model)
        self._cache.put(self._key(payload, None, dialect, rkind), result.to_cache())

    async def _send(
        self,
        payload: dict[str, Any],
        parse: Callable[[ChatResult], T],
        *,
        key: str = "",
        online: bool = False,
    ) -> tuple[T, ChatResult]:
        if self.stopped is not None:
            raise self._refusal()
        if self._batch is not None and key and not online:
            return await self._send_batched(payload, parse, key)
        # Fast path: most calls succeed at once, so tenacity's per-call setup is paid only
        # when a retry is actually needed.
        try:
            value, result = await self._attempt(payload, parse, 1)
        except RetryableLLMError as exc:
            if self.config.max_retries == 0:
                self._give_up(exc, 1)
            value, result = await self._retry(payload, parse, exc)
        except EndpointStoppedError:
            raise  # stopped while this call waited for a slot: it was never sent
        except ResponseFormatError as exc:
            if self.structured_output == "auto":
                raise  # the caller steps down: not a failure of the endpoint
            self._give_up(exc, 1)
        except LLMError as exc:
            self._give_up(exc, 1)
        self._streak = 0
        return value, result

    async def _send_batched(
        self, payload: dict[str, Any], parse: Callable[[ChatResult], T], key: str
    ) -> tuple[T, ChatResult]:
        """Ask through the Batch API: a failed, expired, truncated or unusable line is asked
        again (alone, in the next wave), within the same retry budget as an online call."""
        assert self._batch is not None
        current = payload
        truncations = attempts = 0
        while True:
            attempts += 1
            try:
                line = await self._batch.submit(self, key, current)
                result = self._batch_result(line, current, attempts)
            except ResponseFormatError as exc:
                if self.structured_output == "auto":
                    raise
                self._give_up(exc, attempts)
            except TruncatedReplyError as exc:
                truncations += 1
                if truncations >= self.retry_policy.max_truncated:
                    self._give_up(exc, attempts)
                last: LLMError = exc
            except RetryableLLMError as exc:
                last = exc
            except LLMError as exc:
                self._give_up(exc, attempts)
            else:
                try:
                    return parse(result), result
                except (JSONExtractionError, ValueError) as exc:
                    last = self._unusable(result, exc)
                    current = reask_messages_payload(payload, last)  # type: ignore[arg-type]
            if attempts > self.config.max_retries:
                self._give_up(last, attempts)
            if isinstance(last, UnusableReplyError):
                self.usage.reasks += 1
            else:
                self.usage.retries += 1

    def _unusable(self, result: ChatResult, exc: Exception) -> UnusableReplyError:
        """The error of a reply ``parse`` rejected (what a re-ask repeats to the model)."""
        error = self.transport.redact(str(exc))
        err = self._error(
            UnusableReplyError,
            f"unusable reply: {one_line(error, 200)}",
            status=200,
            reply=result.content,
            error=error,
            detail=self.transport.redact(result.content)[:DETAIL_MAX_CHARS] or None,
        )
        err.wants_json = isinstance(exc, JSONExtractionError) or "JSON" in error
        return err

    def _batch_result(self, line: str, payload: dict[str, Any], attempt: int) -> ChatResult:
        """The reply in a batch's result line, read as an online reply is, logged as batched."""
        status, body = line_reply(line)
        if status is None:
            code, message = body  # type: ignore[misc]
            cls = LLMError if code in FINAL_CODES else RetryableLLMError
            raise self._error(cls, f"batch line failed: {code}: {message}")
        u = self.usage
        spent = u.prompt_tokens, u.completion_tokens, u.cached_prompt_tokens, u.reasoning_tokens
        u.calls += 1
        u.batch_calls += 1
        try:
            result = self.transport.reply(
                status,
                body,
                {},
                0.0,
                structured="response_format" in payload,  # type: ignore[arg-type]
            )
        finally:
            u.batch_prompt_tokens += u.prompt_tokens - spent[0]
            u.batch_completion_tokens += u.completion_tokens - spent[1]
            u.batch_cached_prompt_tokens += u.cached_prompt_tokens - spent[2]
            self._log_call(status, 0.0, spent, batch=True)
        result.attempts = attempt
        self._streak = 0
        return result

    async def _attempt(
        self, payload: dict[str, Any], parse: Callable[[ChatResult], T], attempt: int
    ) -> tuple[T, ChatResult]:
        result = await self._request_once(payload, retry=attempt > 1)
        result.attempts = attempt
        try:
            return parse(result), result
        except (JSONExtractionError, ValueError) as exc:
            raise self._unusable(result, exc) from exc

    async def _retry(
        self, payload: dict[str, Any], parse: Callable[[ChatResult], T], first: RetryableLLMError
    ) -> tuple[T, ChatResult]:
        """Attempts 2.. under the tenacity policy (the first one already failed with ``first``).

        An unusable reply is re-asked at once with the reply and the parse error appended; any
        other failure sends the latest request again after the backoff. Only the original
        request is the cache key (``chat``), so a resume finds the reply a re-ask obtained.
        """
        attempts = 1
        pending: LLMError | None = first
        last: LLMError = first
        current = payload
        retrying = self.retry_policy.retrying(
            stopped=lambda: self.stopped is not None, sleep=self._pause
        )
        try:
            async for attempt in retrying:
                with attempt:
                    if pending is not None:  # replay the first failure so tenacity waits for it
                        exc, pending = pending, None
                        if isinstance(exc, UnusableReplyError):
                            current = reask_messages_payload(payload, exc)
                        raise exc
                    if self.stopped is not None:
                        raise last  # woken from the backoff by the stop: give up with the cause
                    attempts += 1
                    if isinstance(last, UnusableReplyError):
                        self.usage.reasks += 1
                    else:
                        self.usage.retries += 1
                    try:
                        value, result = await self._attempt(current, parse, attempts)
                    except EndpointStoppedError:
                        attempts -= 1  # stopped while waiting for a slot: not sent
                        raise last from None
                    except LLMError as exc:
                        last = exc
                        if isinstance(exc, UnusableReplyError):
                            current = reask_messages_payload(payload, exc)
                        raise
        except ResponseFormatError as exc:
            if self.structured_output == "auto":
                raise
            self._give_up(exc, attempts)
        except LLMError as exc:
            self._give_up(exc, attempts)
        return value, result

    async def _pause(self, seconds: float) -> None:
        """The wait between attempts, cut short when the endpoint is stopped meanwhile."""
        if seconds <= 0 or self.stopped is not None:
            return
        sleeper = asyncio.ensure_future(self._sleep(seconds))
        stop = asyncio.ensure_future(self._stopped_event.wait())
        try:
            await asyncio.wait((sleeper, stop), return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
            stop.cancel()

    def _give_up(self, exc: LLMError, attempts: int) -> NoReturn:
        # Not logged here: the caller logs the unit of work that failed, once (log_failure).
        exc.attempts = attempts
        self.usage.failed_calls += 1
        self._count_failure(exc)
        raise exc

    def _count_failure(self, exc: LLMError) -> None:
        """Track failures in a row with the same signature; stop the endpoint at the limit."""
        key = exc.signature
        if key is None:
            return  # the server answered: no sign that the endpoint is down
        if key == self._streak_key and self._streak > 0:
            self._streak += 1
            exc.repeated = True
        else:
            self._streak_key, self._streak = key, 1
        limit = self.config.max_consecutive_failures
        if limit and self._streak >= limit and self.stopped is None:
            self._stop(exc)

    def _stop(self, cause: LLMError) -> None:
        summary = (
            f"stopped after {self._streak} calls in a row failed the same way, last with: "
            f"{cause.summary}; no more requests are sent to it"
        )
        self.stopped = self._error(
            EndpointStoppedError,
            summary,
            status=cause.status,
            attempts=self._streak,
            detail=cause.detail,
        )
        self._stopped_event.set()
        # The one line that names the endpoint's URL: the failures before it are logged once
        # each, repeats of the same error only at DEBUG.
        log.error("%s", self.stopped)
        if self._on_stop is not None:
            self._on_stop(self.stopped)

    def _refusal(self) -> EndpointStoppedError:
        """The error of a call that is not sent because the endpoint was stopped."""
        assert self.stopped is not None
        err = self._error(
            EndpointStoppedError, self.stopped.summary, status=self.stopped.status, attempts=0
        )
        err.repeated = True
        return err

    def _error(self, cls: type[E], summary: str, **kwargs: Any) -> E:
        """An error of this endpoint: the message names endpoint, model and URL, never the key."""
        return self.transport.error(cls, summary, **kwargs)

    async def _request_once(self, payload: dict[str, Any], *, retry: bool = False) -> ChatResult:
        if self._closed:
            # Work still in flight while a stopping run closes its clients: the run's own error
            # is the one line the user sees, so this one is logged at DEBUG (``repeated``).
            err = self._error(LLMError, "client is closed")
            err.repeated = True
            raise err
        if not self.transport.is_open:
            await self.open()
        estimate = 0
        if self._rpm is not None:
            await self._rpm.take(1)
        if self._tpm is not None:
            estimate = self._estimate_tokens(payload)
            await self._tpm.take(estimate)
        # A retry has already waited out its backoff; it should not queue again behind new work.
        await self.limiter.acquire(first=retry)
        if self.stopped is not None:
            self.limiter.release()
            raise self._refusal()
        try:
            status, raw, headers, elapsed = await self.transport.post(payload)
        except LLMError:
            self._probe_answered(payload, taken=False)
            raise
        finally:
            self.limiter.release()
        self.usage.calls += 1
        self.usage.latency_s_total += elapsed
        self._record_latency(elapsed)
        self.limiter.record(overloaded=status == 429)
        self._obey_rate_headers(headers)
        u = self.usage
        spent = u.prompt_tokens, u.completion_tokens, u.cached_prompt_tokens, u.reasoning_tokens
        try:
            result = self.transport.reply(
                status, raw, headers, elapsed, structured="response_format" in payload
            )
        except ResponseFormatError:
            raise  # the form was refused: the caller steps down (or gives up, if it is fixed)
        except LLMError:
            self._probe_answered(payload, taken=status < 400)  # a bad 200 still took the form
            raise
        else:
            self._probe_answered(payload, taken=True)
        finally:
            # Nothing awaited since ``spent``: the difference is this reply's own tokens.
            self._log_call(status, elapsed, spent)
        used = result.prompt_tokens + result.completion_tokens
        self.limiter.spent(used)
        if self._tpm is not None and used > 0:  # no usage reported: keep the estimate charged
            self._tpm.adjust(used - estimate)
        return result

    def _log_call(
        self, status: int, elapsed: float, spent: tuple[int, int, int, int], *, batch: bool = False
    ) -> None:
        """Log one exchange in the cache, where a run's usage over its invocations is summed."""
        if self._cache is None:
            return
        u = self.usage
        self._cache.record_call(
            self.name,
            self.model,
            status=status,
            prompt_tokens=u.prompt_tokens - spent[0],
            completion_tokens=u.completion_tokens - spent[1],
            started=time.time() - elapsed,
            latency_s=elapsed,
            cached_prompt_tokens=u.cached_prompt_tokens - spent[2],
            reasoning_tokens=u.reasoning_tokens - spent[3],
            batch=batch,
        )

    def _record_latency(self, seconds: float) -> None:
        self._latency_seen += 1
        if len(self.latencies) < LATENCY_SAMPLE_SIZE:
            self.latencies.append(seconds)
        else:
            slot = self._latency_rng.randrange(self._latency_seen)
            if slot < LATENCY_SAMPLE_SIZE:
                self.latencies[slot] = seconds

    @staticmethod
    def _estimate_tokens(payload: dict[str, Any]) -> int:
        # About two characters a token across Chinese and English; corrected after the reply.
        chars = sum(_chars(m.get("content")) for m in payload.get("messages", []))
        return chars // 2 + 1

    def _obey_rate_headers(self, headers: Any) -> None:
        """Hold new requests until the reset when the server says the request quota is spent."""
        if headers.get("x-ratelimit-remaining-requests") != "0":
            return
        reset = parse_duration(headers.get("x-ratelimit-reset-requests"))
        if reset:
            self.limiter.pause_until(time.monotonic() + min(reset, MAX_RETRY_AFTER_S))

    def usage_report(self) -> dict[str, Any]:
        """Calls, tokens and concurrency figures for metadata.json."""
        self.usage.peak_in_flight = self.limiter.peak_in_flight
        self.usage.concurrency_limit = round(self.limiter.limit, 2)
        self.usage.limit_decreases = self.limiter.decreases
        return self.usage.model_dump()


def _chars(content: Any) -> int:
    """Characters of a message's content: a string, or text parts (``cache_control``)."""
    if isinstance(content, list):
        return sum(len(p.get("text") or "") for p in content if isinstance(p, dict))
    return len(content or "")


def _validated(parse: Callable[[ChatResult], T], kind: ReplyKind) -> Callable[[ChatResult], T]:
    """``parse`` behind a check of the reply against ``kind``'s reply model.

    A reply the model rejects raises its error (one line, the text of the re-ask). The judge's
    scores are checked for range only: which dimensions are required is the caller's to say.
    An answer given as ``{"answer": ...}`` reaches ``parse`` as its plain text.
    """

    def checked(result: ChatResult) -> T:
        _, content = split_reasoning(result.content)
        if kind is ReplyKind.ANSWER:
            try:
                data: Any = extract_json(content, expect=dict)
            except JSONExtractionError:
                data = None
            if isinstance(data, dict) and isinstance(data.get("answer"), str):
                answer = unwrap(kind, data).answer
                return parse(dataclasses.replace(result, content=answer))
            unwrap(kind, content)
            return parse(result)
        unwrap(kind, extract_json(content), required=())
        return parse(result)

    return checked


def reask_messages_payload(payload: dict[str, Any], exc: UnusableReplyError) -> dict[str, Any]:
    """The original request with the unusable reply and its parse error appended (a re-ask).

    Built from the original each time, so a second re-ask does not pile up earlier replies.
    """
    messages = reask_messages(payload["messages"], exc.reply, exc.error, wants_json=exc.wants_json)
    return {**payload, "messages": messages}


def log_failure(logger: logging.Logger, unit: str, exc: LLMError) -> None:
    """Log a unit of work that failed for good, once, in one line (no server traceback).

    A failure that repeats its endpoint's previous one goes to DEBUG: an endpoint that is down
    gives one warning, then the line that stops it, not one warning per unit of work.
    """
    logger.log(logging.DEBUG if exc.repeated else logging.WARNING, "%s", exc.log_line(unit))
