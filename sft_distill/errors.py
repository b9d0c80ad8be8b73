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
    """A configuration value is missing or invalid (exit status 2).

    ``problems`` holds ``(key, message)`` pairs when the error came from validating a config
    (``"generator.model"``, ``"min_votes"``), so the command line can name the flag that set a
    key; ``source`` is what the message names as the config's origin (a file, or "config").
    """

    def __init__(
        self,
        message: str,
        *,
        problems: tuple[tuple[str, str], ...] = (),
        source: str | None = None,
    ) -> None:
        super().__init__(message)
        self.problems = problems
        self.source = source


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
        summary: str | None = None,
        detail: str | None = None,
        signature: str | None = None,
    ) -> None:
        super().__init__(message)
        self.endpoint = endpoint
        self.model = model
        self.status = status
        self.attempts = attempts
        self.retry_after_s = retry_after_s
        self.body = body
        # One line without the endpoint prefix, for logs that already name the unit of work.
        self.summary = summary or message
        # The server's full text (a traceback, a long body), cut to a sensible length: kept in
        # failures.jsonl, never logged.
        self.detail = detail
        # What makes two failures "the same" for the consecutive-failure stop (None: the server
        # answered, which says nothing about whether the endpoint is down).
        self.signature = signature
        # Set by the client when the failure repeats the endpoint's previous one: logged at DEBUG.
        self.repeated = False

    def log_line(self, what: str) -> str:
        """``what failed (endpoint, N attempts): summary``: one line, no server traceback."""
        n = self.attempts
        tries = f"{n} attempt{'s' if n != 1 else ''}" if n else "not sent"
        who = f"{self.endpoint}, {tries}" if self.endpoint else tries
        return f"{what} failed ({who}): {self.summary}"

    # What kind of failure this is, recorded in failures.jsonl (None: nothing more specific).
    cause: str | None = None


class RetryableLLMError(LLMError):
    """408/409/429/5xx, connection errors, timeouts, truncated or unparsable replies."""


class TruncatedReplyError(RetryableLLMError):
    """``finish_reason: "length"``: retried once, since the same request is usually cut again."""


class ContextOverflowError(LLMError):
    """HTTP 400 "maximum context length": the prompt does not fit; a rerun alone never helps."""

    cause = "context_overflow"


class ResponseFormatError(LLMError):
    """HTTP 400/422/500 naming ``response_format``: the server does not take that structured-output
    form. With ``structured_output: auto`` the client steps down to the next form instead."""

    cause = "response_format"


class UnusableReplyError(RetryableLLMError):
    """A reply the caller could not parse: re-asked with the error, within the retry budget."""

    def __init__(self, message: str, *, reply: str, error: str, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.reply = reply
        self.error = error
        self.wants_json = False


class EndpointStoppedError(LLMError):
    """An endpoint failed ``max_consecutive_failures`` calls in a row: it gets no more requests."""


def file_error(
    path: object,
    exc: OSError,
    *,
    missing: str = "file not found",
    directory: str = "is a directory",
    failed: str = "cannot open",
    cls: type[DistillError] = InputError,
) -> DistillError:
    """The one-line error for a file that cannot be opened: missing, a directory, denied, other.

    ``missing``, ``directory`` and ``failed`` word the first two cases and the start of the
    last (``"cannot open: <why>"``) for the file at hand.
    """
    if isinstance(exc, FileNotFoundError):
        what = missing
    elif isinstance(exc, IsADirectoryError):
        what = directory
    elif isinstance(exc, PermissionError):
        what = "permission denied"
    else:
        what = f"{failed}: {exc.strerror or exc}"
    return cls(f"{path}: {what}")
