"""How an endpoint retries: which failures are tried again, how long to wait, how often."""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt

from ..config.models import EndpointConfig
from ..errors import LLMError, RetryableLLMError, TruncatedReplyError, UnusableReplyError

MAX_RETRY_AFTER_S = 120.0


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


def backoff(initial_s: float, max_s: float) -> Callable[[RetryCallState], float]:
    """Exponential backoff: ``initial_s`` doubling per attempt up to ``max_s``, less up to 25%.

    The jitter is taken off, not added (as openai-python does): waits still spread apart, and a
    retry in the last wave of a run does not hold up its end for longer than the schedule says.
    """

    def wait(state: RetryCallState) -> float:
        base = min(max_s, initial_s * 2 ** (state.attempt_number - 1))
        return base * (1.0 - 0.25 * random.random())

    return wait


@dataclass(frozen=True)
class RetryPolicy:
    """How one endpoint retries a call: how many attempts, how long between them, which errors.

    A retryable error is sent again after the backoff (or the server's ``Retry-After``); an
    unusable reply is re-asked at once (the endpoint answered, only the reply was bad); a
    truncated reply is tried once more only, since the same request is usually cut again.
    """

    max_retries: int
    backoff_s: float
    backoff_max_s: float
    max_truncated: int = 2

    @classmethod
    def of(cls, config: EndpointConfig) -> RetryPolicy:
        """The policy an endpoint's settings ask for."""
        return cls(config.max_retries, config.retry_backoff_s, config.retry_backoff_max_s)

    def wait(self, state: RetryCallState) -> float:
        """Seconds before the next attempt."""
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, UnusableReplyError):
            return 0.0  # the endpoint answered; only the reply was bad: re-ask at once
        return wait_retry_after(backoff(self.backoff_s, self.backoff_max_s))(state)

    def retrying(
        self, *, stopped: Callable[[], bool], sleep: Callable[[float], Awaitable[None]]
    ) -> AsyncRetrying:
        """The attempts of one call (tenacity); none more once ``stopped()`` says so."""
        truncations = 0

        def should_retry(exc: BaseException) -> bool:
            nonlocal truncations
            if stopped():
                return False  # the endpoint was stopped meanwhile: no more attempts
            if isinstance(exc, TruncatedReplyError):
                truncations += 1
                return truncations < self.max_truncated
            return isinstance(exc, RetryableLLMError)

        return AsyncRetrying(
            retry=retry_if_exception(should_retry),
            wait=self.wait,
            stop=stop_after_attempt(self.max_retries + 1),
            sleep=sleep,
            reraise=True,
        )
