"""What a request gets instead of its normal answer: a fault, or a reply a test scripted.

Faults are drawn from a seeded sequence; scripted replies are queued by a test
(``sim.queue(429, 500, ok(...))``). Error bodies have the shapes real servers send.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

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
