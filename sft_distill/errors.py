"""One exception tree for the package; the CLI maps it to exit codes at the edge."""

from __future__ import annotations

from typing import Any

# The exit status of a command stopped by SIGINT (128 + 2).
EXIT_INTERRUPTED = 130


def interrupted_message(signame: str) -> str:
    """The one line printed when a signal stops the command: what is kept, how to go on."""
    return (
        f"sft-distill: interrupted by {signame}; finished calls are cached, rerun the same "
        "command to resume"
    )


class DistillError(Exception):
    """Base class of every error raised by sft_distill."""


class ConfigError(DistillError):
    """A configuration value is missing or invalid (exit status 2)."""


class InputError(DistillError):
    """An input file or line cannot be used, e.g. ``slices.jsonl:17: missing 'content'``."""


class OutputError(DistillError):
    """The output directory cannot be written or holds another run's results."""


class JSONExtractionError(DistillError):
    """No JSON value could be found in a model reply."""


class LLMError(DistillError):
    """A request to an LLM endpoint failed. Messages name endpoint and model, never the key."""

    def __init__(
        self,
        message: str,
        *,
        endpoint: str = "",
        model: str = "",
        status: int | None = None,
        attempts: int = 1,
        retry_after_s: float | None = None,
        body: Any = None,
    ) -> None:
        super().__init__(message)
        self.endpoint = endpoint
        self.model = model
        self.status = status
        self.attempts = attempts
        self.retry_after_s = retry_after_s
        self.body = body


class RetryableLLMError(LLMError):
    """408/409/429/5xx, connection errors, timeouts, truncated or unparsable replies."""


class TruncatedReplyError(RetryableLLMError):
    """``finish_reason: "length"``: retried once, since the same request is usually cut again."""
