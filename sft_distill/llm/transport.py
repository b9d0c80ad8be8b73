"""HTTP to one endpoint: the only aiohttp user. A response becomes a ``ChatResult`` or an error.

Transport failures (timeouts, connection errors) and error replies are mapped into the package's
``LLMError`` tree here, in one place; retryability comes from the status and the error's type.
"""

from __future__ import annotations

import asyncio
import email.utils
import itertools
import json
import re
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp

from ..config.models import EndpointConfig, display_url
from ..errors import (
    ContextOverflowError,
    LLMError,
    ResponseFormatError,
    RetryableLLMError,
    TruncatedReplyError,
)
from ..models import Usage
from .retry import MAX_RETRY_AFTER_S
from .structured import is_response_format_error, usage_from_body

E = TypeVar("E", bound=LLMError)

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
    # Parts of prompt_tokens / completion_tokens (not cached: a replay costs nothing).
    cached_prompt_tokens: int = 0
    reasoning_tokens: int = 0

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


def _about_the_request(message: str, code: str | None) -> bool:
    """Whether an error is about this request's content (filtered, too long), not the endpoint."""
    return code in _REQUEST_SPECIFIC_CODES or bool(_REQUEST_SPECIFIC_RE.search(message))


class Transport:
    """One endpoint's HTTP session: posts a request, reads the reply or the error it amounts to.

    Tokens of every reply read (truncated ones too) are added to ``usage``; the key goes only
    into the Authorization header and is redacted from any text an error repeats.
    """

    def __init__(self, name: str, config: EndpointConfig, usage: Usage) -> None:
        self.name = name
        self.config = config
        self.model = config.model
        self.url = f"{config.api_base}/chat/completions"
        self.where = f"{name} ({config.model} at {display_url(config.api_base)})"
        self.usage = usage
        self._key = config.resolve_key()
        self._session: aiohttp.ClientSession | None = None
        self._proxy: str | None = None

    @property
    def is_open(self) -> bool:
        return self._session is not None

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
        """Close the session; safe to call twice."""
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()

    def redact(self, text: str) -> str:
        if self._key and self._key in text:
            text = text.replace(self._key, "***")
        return text

    def error(self, cls: type[E], summary: str, **kwargs: Any) -> E:
        """An error of this endpoint: the message names endpoint, model and URL, never the key."""
        return cls(
            f"{self.where}: {summary}",
            endpoint=self.name,
            model=self.model,
            summary=summary,
            **kwargs,
        )

    async def post(self, payload: dict[str, Any]) -> tuple[int, bytes, Any, float]:
        """(status, body, headers, seconds) of one POST; timeouts and connection errors raise.

        Raises:
            RetryableLLMError: the request timed out or the connection failed.
        """
        assert self._session is not None
        t0 = time.perf_counter()
        try:
            async with self._session.post(
                self.url, data=_dumps(payload), headers=_JSON_HEADERS, proxy=self._proxy
            ) as resp:
                status = resp.status
                raw = await resp.read()
                headers = resp.headers
        except asyncio.TimeoutError as exc:
            raise self.error(
                RetryableLLMError,
                f"timed out after {self.config.timeout:g} s",
                signature=TRANSPORT,
            ) from exc
        except aiohttp.ClientError as exc:
            raise self.error(
                RetryableLLMError,
                f"connection error: {exc.__class__.__name__}: "
                f"{one_line(self.redact(str(exc)), 200)}",
                signature=TRANSPORT,
            ) from exc
        return status, raw, headers, time.perf_counter() - t0

    async def api(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        form: aiohttp.FormData | None = None,
        raw: bool = False,
    ) -> Any:
        """One call to the endpoint's files or batches API (``path`` under api_base): the JSON
        reply, or its text with ``raw``.

        Raises:
            RetryableLLMError: a timeout, a connection error or a retryable status.
            LLMError: any other error status (the message never holds the key).
        """
        if self._session is None:
            await self.open()
        assert self._session is not None
        url = f"{self.config.api_base}/{path}"
        data = _dumps(json_body) if json_body is not None else form
        headers = _JSON_HEADERS if json_body is not None else None
        try:
            async with self._session.request(
                method, url, data=data, headers=headers, proxy=self._proxy
            ) as resp:
                status, body, resp_headers = resp.status, await resp.read(), resp.headers
        except asyncio.TimeoutError as exc:
            raise self.error(
                RetryableLLMError,
                f"{method} {path}: timed out after {self.config.timeout:g} s",
                signature=TRANSPORT,
            ) from exc
        except aiohttp.ClientError as exc:
            raise self.error(
                RetryableLLMError,
                f"{method} {path}: connection error: {exc.__class__.__name__}: "
                f"{one_line(self.redact(str(exc)), 200)}",
                signature=TRANSPORT,
            ) from exc
        text = body.decode("utf-8", errors="replace")
        if status >= 400:
            err = self._status_error(status, text, resp_headers)
            err.summary = f"{method} {path.split('?')[0]}: {err.summary}"
            raise err
        if raw:
            return text
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            raise self.error(
                RetryableLLMError,
                f"{method} {path}: HTTP {status} with a body that is not JSON",
                status=status,
            ) from None

    def reply(
        self, status: int, raw: bytes, headers: Any, elapsed: float, *, structured: bool = False
    ) -> ChatResult:
        """The accepted reply in an HTTP response, or the error it amounts to.

        ``structured``: the request carried a ``response_format``, so an error naming it is a
        ``ResponseFormatError`` (never retried as it is).
        """
        text = raw.decode("utf-8", errors="replace")
        if status >= 400:
            raise self._status_error(status, text, headers, structured=structured)
        try:
            # DeepSeek may send blank keep-alive lines before the JSON; loads() skips whitespace.
            body = json.loads(text)
        except json.JSONDecodeError:
            shown = self.redact(text.strip())
            raise self.error(
                RetryableLLMError,
                f"HTTP {status} with a body that is not JSON: {shown[:80]!r}",
                status=status,
                detail=shown[:DETAIL_MAX_CHARS] if len(shown) > 80 else None,
                # e.g. a proxy's error page sent with 200 for every request
                signature=f"HTTP {status} not JSON: {shown[:DETAIL_MAX_CHARS]}",
            ) from None
        return self._read_choice(body, elapsed)

    def _status_error(
        self, status: int, text: str, headers: Any, *, structured: bool = False
    ) -> LLMError:
        try:
            body: Any = json.loads(text)
        except json.JSONDecodeError:
            body = text
        message, code = error_details(body)
        message = self.redact(message)
        short = one_line(message)
        msg = f"HTTP {status}: {short}"
        if structured and is_response_format_error(status, body):
            return self.error(
                ResponseFormatError,
                f"{msg} (the server does not take this structured-output form; "
                "structured_output: auto finds one it takes)",
                status=status,
                detail=message[:DETAIL_MAX_CHARS] if short != " ".join(message.split()) else None,
                signature=f"HTTP {status}: {message}",
            )
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
        return self.error(
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
        # Cached prompt tokens and reasoning tokens in every server's dialect (OpenAI, DeepSeek,
        # DashScope, vLLM, llama.cpp timings).
        counts = usage_from_body(body)
        prompt_tokens, completion_tokens = counts.prompt, counts.completion
        usage = self.usage
        usage.prompt_tokens += prompt_tokens
        usage.completion_tokens += completion_tokens
        usage.cached_prompt_tokens += counts.cached_prompt
        usage.reasoning_tokens += counts.reasoning
        if finish == "length":
            # finish_reason "length" means truncated JSON: retry, never keep.
            raise self.error(
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
            cached_prompt_tokens=counts.cached_prompt,
            reasoning_tokens=counts.reasoning,
        )

    def _bad_reply(self, what: str) -> RetryableLLMError:
        return self.error(RetryableLLMError, what, status=200)
