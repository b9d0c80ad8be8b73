"""OpenAI-compatible chat client: one aiohttp session per endpoint, bounded, retried, cached.

This is the only module that imports aiohttp (the simulator aside). Transport failures are mapped
into the package's ``LLMError`` tree in one place; retryability comes from the error type.
"""

from __future__ import annotations

import asyncio
import email.utils
import itertools
import json
import logging
import random
import re
import time
import urllib.parse
import urllib.request
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, NoReturn, TypeVar

import aiohttp
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
)

from ..config.models import EndpointConfig, display_url
from ..errors import (
    ContextOverflowError,
    EndpointStoppedError,
    JSONExtractionError,
    LLMError,
    RetryableLLMError,
    TruncatedReplyError,
    UnusableReplyError,
)
from ..models import Usage
from .cache import ResponseCache, finish_key, key_prefix
from .limits import AdaptiveLimiter, TokenBucket
from .prompts import reask_messages

log = logging.getLogger(__name__)

T = TypeVar("T")
E = TypeVar("E", bound=LLMError)

MAX_RETRY_AFTER_S = 120.0
LATENCY_SAMPLE_SIZE = 20_000
# Payload keys left out of cache keys: a reply that was not truncated stays valid when only the
# token budget changes, so raising max_tokens re-sends just the replies that were cut off.
_UNKEYED = frozenset({"max_tokens", "max_completion_tokens"})
RETRYABLE_STATUSES = frozenset({408, 409, 429})
# 429 bodies that retrying never fixes (billing), per OpenAI and DeepSeek docs.
_NON_RETRYABLE_429_CODES = frozenset({"insufficient_quota", "billing_hard_limit_reached"})
# A server's text in a log line / in failures.jsonl: one short line / a sensible cut.
SUMMARY_MAX_CHARS = 300
DETAIL_MAX_CHARS = 2000
# Connection errors and timeouts all count as "the same" failure for the consecutive-failure stop.
TRANSPORT = "transport"
# Errors about one request's content, not about the endpoint: a run of them (sensitive slices
# one after the other, say) must not stop it. DashScope: 400 data_inspection_failed "Input data
# may contain inappropriate content." (camel-ai/owl#432); Azure: content_filter; context
# overflow in its several wordings (wire.md).
_REQUEST_SPECIFIC_CODES = frozenset(
    {
        "data_inspection_failed",
        "content_filter",
        "content_policy_violation",
        "context_length_exceeded",
    }
)
_REQUEST_SPECIFIC_RE = re.compile(
    r"inappropriate content|DataInspectionFailed|content (?:filter|management|policy)"
    r"|context length|maximum context",
    re.IGNORECASE,
)
_TRACEBACK = "Traceback (most recent call last):"
_HTML_RE = re.compile(r"<(?:!doctype|html|head|body|title)\b", re.IGNORECASE)
_TITLE_RE = re.compile(r"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)
_TAG_RE = re.compile(r"<[^>]+>")


@dataclass(slots=True)
class ChatResult:
    """One accepted reply."""

    content: str
    reasoning: str | None
    finish_reason: str | None
    model: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    attempts: int = 1
    cached: bool = False
    latency_s: float = 0.0

    def to_cache(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "content": self.content,
            "reasoning": self.reasoning,
            "finish_reason": self.finish_reason,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
        }


def parse_retry_after(headers: Any) -> float | None:
    """Seconds to wait from ``retry-after-ms``, ``retry-after`` (seconds or HTTP date)."""
    if headers is None:
        return None
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000.0)
        except ValueError:
            pass
    ra = headers.get("retry-after")
    if not ra:
        return None
    try:
        return max(0.0, float(ra))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(ra)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def one_line(text: str, limit: int = SUMMARY_MAX_CHARS) -> str:
    """A server's text in one short line: a traceback gives its exception, HTML its title."""
    text = text.strip()
    start = text.find(_TRACEBACK)
    if start >= 0:
        # Frames are indented; the exception (of the last chained traceback) is the first
        # line after them that is not.
        frames = text[text.rfind(_TRACEBACK) + len(_TRACEBACK) :].splitlines()
        raised = itertools.dropwhile(lambda ln: not ln.strip() or ln[:1].isspace(), frames)
        text = f"{text[:start]} {' '.join(raised)} [server traceback omitted]"
    elif _HTML_RE.match(text):
        title = _TITLE_RE.search(text)
        text = title.group(1) if title else _TAG_RE.sub(" ", text)
    text = " ".join(text.split())
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return text or "empty body"


def error_details(body: Any) -> tuple[str, str | None]:
    """(message, code-or-type) from any of the error shapes real servers send (see wire.md)."""
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, str):
            return err, None
        if isinstance(err, dict):
            msg = err.get("message") or err.get("msg") or json.dumps(err, ensure_ascii=False)
            code = err.get("code")
            etype = err.get("type")
            tag = (
                code
                if isinstance(code, str) and code
                else etype
                if isinstance(etype, str)
                else None
            )
            return str(msg), tag
    if isinstance(body, str):
        # Kept whole (a traceback, an HTML page): ``one_line`` makes the message of it.
        return (body.strip() or "empty body"), None
    return "no error details", None


# How servers say a prompt does not fit (wire.md, section 3): OpenAI and llama-cpp-python
# "maximum context length", vLLM >= 0.16 "context length is only", llama.cpp "exceeds the
# available context size", DashScope "Range of input length should be".
_OVERFLOW_PHRASES = (
    "maximum context length",
    "context length is only",
    "exceeds the available context size",
    "range of input length should be",
    "context_length_exceeded",
)
_OVERFLOW_CODES = frozenset({"context_length_exceeded", "exceed_context_size_error"})
CONTEXT_OVERFLOW_HINT = (
    "the prompt does not fit this endpoint's context: lower chunk_chars (or this endpoint's "
    "max_tokens), or start the server with a longer context (vLLM --max-model-len, llama.cpp "
    "-c); a rerun with the same settings fails the same way"
)


def is_context_overflow(status: int, body: Any) -> bool:
    """Whether an error reply says the prompt is longer than the model's context (wire.md)."""
    if status not in (400, 413):
        return False
    err = body.get("error", body) if isinstance(body, dict) else body
    if isinstance(err, dict):
        tags = {v for v in (err.get("code"), err.get("type")) if isinstance(v, str)}
        if tags & _OVERFLOW_CODES or err.get("param") == "input_tokens":
            return True
        text = str(err.get("message") or "")
    else:
        text = str(err)
    lowered = text.lower()
    return any(phrase in lowered for phrase in _OVERFLOW_PHRASES)


class wait_retry_after:
    """Wait what the server asked for (Retry-After), else fall back to exponential backoff."""

    def __init__(self, fallback: Callable[[RetryCallState], float]) -> None:
        self.fallback = fallback

    def __call__(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        # As openai-python: a server delay of 0 < d <= 120 s is used as is; 0 or a date in the
        # past falls back to backoff (longer ones are not retried at all, see _status_error).
        if isinstance(exc, LLMError) and exc.retry_after_s and exc.retry_after_s > 0:
            return min(exc.retry_after_s, MAX_RETRY_AFTER_S)
        return self.fallback(state)


_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str | None) -> float | None:
    """Seconds from a Go-style duration (``6m0s``, ``17ms``, ``1.5s``) or a bare number."""
    if not text:
        return None
    text = text.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    parts = _DURATION_RE.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        return None
    return sum(float(n) * _DURATION_UNITS[u] for n, u in parts)


_JSON_HEADERS = {"Content-Type": "application/json"}


def backoff(initial_s: float, max_s: float) -> Callable[[RetryCallState], float]:
    """Exponential backoff: ``initial_s`` doubling per attempt up to ``max_s``, less up to 25%.

    The jitter is taken off, not added (as openai-python does): waits still spread apart, and a
    retry in the last wave of a run does not hold up its end for longer than the schedule says.
    """

    def wait(state: RetryCallState) -> float:
        base = min(max_s, initial_s * 2 ** (state.attempt_number - 1))
        return base * (1.0 - 0.25 * random.random())

    return wait


def _dumps(payload: dict[str, Any]) -> bytes:
    # A lone surrogate in a model reply must not crash the request: it becomes "?".
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "replace")


def proxy_for(url: str) -> str | None:
    """The proxy for ``url`` from the environment (never for loopback), or None."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if host in ("localhost", "::1") or host.startswith("127."):
        return None
    proxies = urllib.request.getproxies()
    proxy = proxies.get(parts.scheme)
    if not proxy or urllib.request.proxy_bypass(host):
        return None
    return proxy


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
    ) -> None:
        self.name = name
        self.config = config
        self.model = config.model
        self.url = f"{config.api_base}/chat/completions"
        self._where = f"{name} ({config.model} at {display_url(config.api_base)})"
        self._key = config.resolve_key()
        self._cache = cache
        # The endpoint's name is part of the namespace: two judges with the same model and settings
        # stay two independent votes instead of sharing one cached reply.
        self._namespace = f"{name}@{cache_namespace or config.api_base}"
        self._key_prefix: Any = None  # hash state of the fields every plain request shares
        self._inflight: dict[str, asyncio.Future[ChatResult]] = {}
        self._closed = False
        self._sleep = sleep
        self.limiter = AdaptiveLimiter(config.max_concurrent, adaptive=config.adaptive_concurrency)
        self._rpm = (
            TokenBucket(config.max_requests_per_minute) if config.max_requests_per_minute else None
        )
        self._tpm = (
            TokenBucket(config.max_tokens_per_minute) if config.max_tokens_per_minute else None
        )
        self._backoff = wait_retry_after(
            backoff(config.retry_backoff_s, config.retry_backoff_max_s)
        )
        # Consecutive calls that failed for good with the same signature; a success resets it.
        self._streak = 0
        self._streak_key: str | None = None
        self.stopped: EndpointStoppedError | None = None
        self._stopped_event = asyncio.Event()
        self._on_stop = on_stop
        self._session: aiohttp.ClientSession | None = None
        self._proxy: str | None = None
        self.usage = Usage(model=config.model)
        # A uniform reservoir sample of call latencies (for p50/p90/p95): memory stays constant
        # however many calls a run makes.
        self.latencies: list[float] = []
        self._latency_seen = 0
        self._latency_rng = random.Random(0)

    async def __aenter__(self) -> LLMClient:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def open(self) -> None:
        if self._session is not None:
            return
        headers = {}
        if self._key:
            headers["Authorization"] = f"Bearer {self._key}"
        conn = aiohttp.TCPConnector(
            limit=self.config.max_concurrent, limit_per_host=self.config.max_concurrent
        )
        # trust_env would make aiohttp look up proxies and .netrc in a thread on every request;
        # the proxy from HTTP(S)_PROXY / NO_PROXY is resolved once here instead.
        self._proxy = proxy_for(self.url)
        self._session = aiohttp.ClientSession(
            connector=conn,
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=self.config.timeout, sock_connect=10),
        )

    async def aclose(self) -> None:
        """Close the session; safe to call twice. A closed client sends nothing more."""
        self._closed = True
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()

    def _redact(self, text: str) -> str:
        if self._key and self._key in text:
            text = text.replace(self._key, "***")
        return text

    def _payload(
        self, messages: list[dict[str, str]], overrides: dict[str, Any] | None
    ) -> dict[str, Any]:
        payload: dict[str, Any] = {"model": self.model, "messages": messages}
        if self.config.temperature is not None:
            payload["temperature"] = self.config.temperature
        if self.config.max_tokens is not None:
            payload["max_tokens"] = self.config.max_tokens
        if self.config.extra_body:
            payload.update(self.config.extra_body)
        if overrides:
            payload.update(overrides)
        return payload

    async def chat(
        self,
        messages: list[dict[str, str]],
        parse: Callable[[ChatResult], T],
        *,
        overrides: dict[str, Any] | None = None,
    ) -> tuple[T, ChatResult]:
        """Send a chat request and parse the reply, retrying transport and parse failures.

        ``parse`` raises ``JSONExtractionError`` or ``ValueError`` for a reply it cannot use; the
        request is then re-asked with that reply and the error appended, within the same retry
        budget. Only parsed replies are cached, under the original request.

        Raises:
            LLMError: after the retry budget, or at once for a non-retryable status.
            EndpointStoppedError: the endpoint was stopped (``max_consecutive_failures``).
        """
        payload = self._payload(messages, overrides)
        key = ""
        if self._cache is not None:
            if overrides:
                key = finish_key(key_prefix(self._namespace, payload, skip=_UNKEYED), payload)
            else:
                if self._key_prefix is None:
                    self._key_prefix = key_prefix(self._namespace, payload, skip=_UNKEYED)
                key = finish_key(self._key_prefix, payload)
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
                value, result = await self._send(payload, parse)
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

    async def _send(
        self, payload: dict[str, Any], parse: Callable[[ChatResult], T]
    ) -> tuple[T, ChatResult]:
        if self.stopped is not None:
            raise self._refusal()
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
        except LLMError as exc:
            self._give_up(exc, 1)
        self._streak = 0
        return value, result

    async def _attempt(
        self, payload: dict[str, Any], parse: Callable[[ChatResult], T], attempt: int
    ) -> tuple[T, ChatResult]:
        result = await self._request_once(payload, retry=attempt > 1)
        result.attempts = attempt
        try:
            return parse(result), result
        except (JSONExtractionError, ValueError) as exc:
            error = self._redact(str(exc))
            err = self._error(
                UnusableReplyError,
                f"unusable reply: {one_line(error, 200)}",
                status=200,
                reply=result.content,
                error=error,
                detail=self._redact(result.content)[:DETAIL_MAX_CHARS] or None,
            )
            err.wants_json = isinstance(exc, JSONExtractionError) or "JSON" in error
            raise err from exc

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
        truncations = 0

        def should_retry(exc: BaseException) -> bool:
            nonlocal truncations
            if self.stopped is not None:
                return False  # the endpoint was stopped meanwhile: no more attempts
            if isinstance(exc, TruncatedReplyError):
                # The same request is usually cut again at the same length: one more try only.
                truncations += 1
                return truncations < 2
            return isinstance(exc, RetryableLLMError)

        retrying = AsyncRetrying(
            retry=retry_if_exception(should_retry),
            wait=self._wait,
            stop=stop_after_attempt(self.config.max_retries + 1),
            sleep=self._pause,
            reraise=True,
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
        except LLMError as exc:
            self._give_up(exc, attempts)
        return value, result

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, UnusableReplyError):
            return 0.0  # the endpoint answered; only the reply was bad: re-ask at once
        return self._backoff(state)

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
        return cls(
            f"{self._where}: {summary}",
            endpoint=self.name,
            model=self.model,
            summary=summary,
            **kwargs,
        )

    async def _request_once(self, payload: dict[str, Any], *, retry: bool = False) -> ChatResult:
        if self._closed:
            raise self._error(LLMError, "client is closed")
        if self._session is None:
            await self.open()
        assert self._session is not None
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
            t0 = time.perf_counter()
            try:
                async with self._session.post(
                    self.url, data=_dumps(payload), headers=_JSON_HEADERS, proxy=self._proxy
                ) as resp:
                    status = resp.status
                    raw = await resp.read()
                    headers = resp.headers
            except asyncio.TimeoutError as exc:
                raise self._error(
                    RetryableLLMError,
                    f"timed out after {self.config.timeout:g} s",
                    signature=TRANSPORT,
                ) from exc
            except aiohttp.ClientError as exc:
                raise self._error(
                    RetryableLLMError,
                    f"connection error: {exc.__class__.__name__}: "
                    f"{one_line(self._redact(str(exc)), 200)}",
                    signature=TRANSPORT,
                ) from exc
            finally:
                elapsed = time.perf_counter() - t0
        finally:
            self.limiter.release()
        self.usage.calls += 1
        self.usage.latency_s_total += elapsed
        self._record_latency(elapsed)
        self.limiter.record(overloaded=status == 429)
        self._obey_rate_headers(headers)
        spent = self.usage.prompt_tokens, self.usage.completion_tokens
        try:
            result = self._reply(status, raw, headers, elapsed)
        finally:
            # Nothing awaited since ``spent``: the difference is this reply's own tokens.
            self._log_call(status, elapsed, spent)
        used = result.prompt_tokens + result.completion_tokens
        if self._tpm is not None and used > 0:  # no usage reported: keep the estimate charged
            self._tpm.adjust(used - estimate)
        return result

    def _log_call(self, status: int, elapsed: float, spent: tuple[int, int]) -> None:
        """Log one exchange in the cache, where a run's usage over its invocations is summed."""
        if self._cache is None:
            return
        self._cache.record_call(
            self.name,
            self.model,
            status=status,
            prompt_tokens=self.usage.prompt_tokens - spent[0],
            completion_tokens=self.usage.completion_tokens - spent[1],
            started=time.time() - elapsed,
            latency_s=elapsed,
        )

    def _reply(self, status: int, raw: bytes, headers: Any, elapsed: float) -> ChatResult:
        """The accepted reply in an HTTP response, or the error it amounts to."""
        text = raw.decode("utf-8", errors="replace")
        if status >= 400:
            raise self._status_error(status, text, headers)
        try:
            # DeepSeek may send blank keep-alive lines before the JSON; loads() skips whitespace.
            body = json.loads(text)
        except json.JSONDecodeError:
            shown = self._redact(text.strip())
            raise self._error(
                RetryableLLMError,
                f"HTTP {status} with a body that is not JSON: {shown[:80]!r}",
                status=status,
                detail=shown[:DETAIL_MAX_CHARS] if len(shown) > 80 else None,
                # e.g. a proxy's error page sent with 200 for every request
                signature=f"HTTP {status} not JSON: {shown[:DETAIL_MAX_CHARS]}",
            ) from None
        return self._read_choice(body, elapsed)

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
        chars = sum(len(m.get("content") or "") for m in payload.get("messages", []))
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

    def _status_error(self, status: int, text: str, headers: Any) -> LLMError:
        try:
            body: Any = json.loads(text)
        except json.JSONDecodeError:
            body = text
        message, code = error_details(body)
        message = self._redact(message)
        short = one_line(message)
        msg = f"HTTP {status}: {short}"
        retry_after = parse_retry_after(headers)
        should_retry = (headers.get("x-should-retry") or "").lower() if headers else ""
        retryable = status in RETRYABLE_STATUSES or status >= 500
        if status == 429 and code in _NON_RETRYABLE_429_CODES:
            retryable = False
        if retryable and retry_after is not None and retry_after > MAX_RETRY_AFTER_S:
            # A quota window or a long outage: waiting inside the run would only stall it.
            retryable = False
            msg += f" (server asks to wait {retry_after:.0f} s; rerun later to resume)"
        if should_retry == "true":
            retryable = True
        elif should_retry == "false":
            retryable = False
        if status in (401, 403):
            msg += " (check the API key for this endpoint)"
        cls = RetryableLLMError if retryable else LLMError
        overflow = is_context_overflow(status, body)
        if overflow:
            cls, msg = ContextOverflowError, f"{msg} ({CONTEXT_OVERFLOW_HINT})"
        return self._error(
            cls,
            msg,
            status=status,
            retry_after_s=retry_after,
            # A traceback or a long body stays out of the one-line message, not out of the record.
            detail=message[:DETAIL_MAX_CHARS] if short != " ".join(message.split()) else None,
            signature=(
                None
                if overflow or _about_the_request(message, code)
                else f"HTTP {status}: {message}"
            ),
        )

    def _read_choice(self, body: Any, elapsed: float) -> ChatResult:
        choices = body.get("choices") if isinstance(body, dict) else None
        if not choices or not isinstance(choices, list) or not isinstance(choices[0], dict):
            raise self._bad_reply("reply has no choices")
        choice = choices[0]
        message = choice.get("message")
        if not isinstance(message, dict):
            raise self._bad_reply("reply has no message object")
        content = message.get("content")
        reasoning = (
            message.get("reasoning_content") or message.get("reasoning") or message.get("thinking")
        )
        finish = choice.get("finish_reason")
        usage = body.get("usage")
        if not isinstance(usage, dict):
            usage = {}
        prompt_tokens = _count(usage.get("prompt_tokens"))
        completion_tokens = _count(usage.get("completion_tokens"))
        self.usage.prompt_tokens += prompt_tokens
        self.usage.completion_tokens += completion_tokens
        if finish == "length":
            # finish_reason "length" means truncated JSON: retry, never keep.
            raise self._error(
                TruncatedReplyError,
                f"reply truncated (finish_reason=length, max_tokens={self.config.max_tokens}); "
                "raise max_tokens and rerun to resend only these",
                status=200,
            )
        if not isinstance(content, str) or not content.strip():
            # Some servers put the whole answer into the reasoning field (Ollama + Qwen3-VL).
            content = reasoning if isinstance(reasoning, str) else ""
        return ChatResult(
            content=content,
            reasoning=reasoning if isinstance(reasoning, str) and reasoning else None,
            finish_reason=finish if isinstance(finish, str) else None,
            model=str(body.get("model") or self.model),
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            latency_s=elapsed,
        )

    def _bad_reply(self, what: str) -> RetryableLLMError:
        return self._error(RetryableLLMError, what, status=200)


def _about_the_request(message: str, code: str | None) -> bool:
    """Whether an error is about this request's content (filtered, too long), not the endpoint."""
    return code in _REQUEST_SPECIFIC_CODES or bool(_REQUEST_SPECIFIC_RE.search(message))


def _count(value: Any) -> int:
    """A token count from whatever a server sent (numbers, numeric strings; else 0)."""
    if isinstance(value, bool):
        return 0
    if isinstance(value, int):
        return max(0, value)
    try:
        return max(0, int(float(value)))
    except (TypeError, ValueError, OverflowError):
        return 0


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
