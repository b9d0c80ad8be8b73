"""``failures.jsonl``: units of work that failed for good, and the endpoint that stopped a run."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from ..errors import EndpointStoppedError
from ..models import Failure
from .writers import JsonlWriter

FAILURES_FILE = "failures.jsonl"


class FailureLog:
    """Writes each failure as it happens and counts them by cause."""

    def __init__(self, writer: JsonlWriter, *, scrub: Callable[[str], str] | None = None) -> None:
        self.writer = writer
        # A failed reply's text (``detail``) may quote the slice: its personal data is
        # replaced as in the samples.
        self.scrub = scrub
        self.count = 0
        self.causes: Counter[str] = Counter()
        self.stopped: EndpointStoppedError | None = None

    def add(self, failure: Failure) -> None:
        """Record one failed unit of work."""
        self.count += 1
        if failure.cause:
            self.causes[failure.cause] += 1
        record = failure.model_dump(mode="json")
        if self.scrub is not None:
            for key in ("reason", "detail"):
                if isinstance(record.get(key), str):
                    record[key] = self.scrub(record[key])
        self.writer.write(record)

    def stop(self, err: EndpointStoppedError) -> bool:
        """Record the endpoint that stopped the run; False when another one already had."""
        if self.stopped is not None:
            return False
        self.stopped = err
        self.add(Failure.from_error(err, "endpoint"))
        return True
