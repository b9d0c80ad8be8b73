"""Requests through an OpenAI-compatible Batch API, in waves, resumable after ``kill -9``.

A client with batching on hands each request that missed the response cache to the run's
``BatchRunner`` instead of sending it. The runner waits until the run is quiet (no new request
for ``batch_collect_s``, no online call in flight: everything that can be asked without an
answer has been asked), then submits what it collected as one batch per endpoint: a *wave*
(the teacher's requests, then the judges' of the samples they made, and so on). Each reply goes
back to the request that waits for it and through the client's usual parse, validation and
cache path; a failed, expired or unusable line is asked again in the next wave.

Every step is recorded in the response cache (``batch_jobs``, ``batch_requests``) before the
next is taken: the job and its custom_id -> cache-key map before the upload, the file id before
the batch is created, the batch id once it is, and the downloaded result lines before the
provider's files are deleted. A rerun resumes polling a batch it finds recorded instead of
submitting its requests again; a file uploaded by a run killed before it created its batch is
found (by its name, or as the input of a batch the provider already has) and reused or deleted.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import aiohttp

from ..errors import LLMError, RetryableLLMError
from ..text import plural
from .transport import one_line

if TYPE_CHECKING:
    from .cache import ResponseCache
    from .client import LLMClient

log = logging.getLogger(__name__)

CHAT_URL = "/v1/chat/completions"
TERMINAL = frozenset({"completed", "failed", "expired", "cancelled"})
# Error codes of a line (or of its whole batch) that asking again cannot fix.
FINAL_CODES = frozenset({"batch_failed", "batch_cancelled"})
# Loop turns without a new request that, after the quiet period, mean nothing more is coming.
_IDLE_TURNS = 50


@dataclass(frozen=True)
class BatchSettings:
    """How a run uses Batch APIs (the config's ``batch_*`` keys)."""

    poll_s: float = 30.0
    collect_s: float = 2.0
    max_requests: int = 50_000
    max_bytes: int = 190_000_000  # OpenAI takes input files of up to 200 MB
    timeout_s: float | None = None
    show_progress: bool = False


@dataclass
class _Job:
    """One batch of one endpoint: its record, its lines and where their replies go."""

    client: LLMClient
    job: int
    uid: str
    lines: dict[str, str]  # custom_id -> cache key
    input_file_id: str | None = None
    batch_id: str | None = None
    waiting: set[str] = field(default_factory=set)  # keys


class BatchRunner:
    """The batched requests of one run's clients: collected, submitted, polled, delivered."""

    def __init__(self, cache: ResponseCache, settings: BatchSettings) -> None:
        self.cache = cache
        self.settings = settings
        self.clients: list[LLMClient] = []  # every client of the run (online ones counted too)
        self._pending: dict[str, list[tuple[str, dict[str, Any]]]] = {}
        self._by_ns: dict[str, LLMClient] = {}
        self._waiters: dict[str, asyncio.Future[str]] = {}
        self._available: dict[str, str] = {}  # downloaded lines nobody asked for yet
        self._running: set[str] = set()  # keys in a batch being polled
        self._resumed: dict[str, asyncio.Task[None]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._flusher: asyncio.Task[None] | None = None
        self._asked = 0
        self.waves = 0
        self.submitted = 0

    # -- what clients call -------------------------------------------------------------------

    async def submit(self, client: LLMClient, key: str, payload: dict[str, Any]) -> str:
        """The result line (JSON text) of ``payload``, whose reply belongs under ``key``."""
        await self._resume(client)
        line = self._available.pop(key, None)
        if line is not None:
            return line
        loop = asyncio.get_running_loop()
        future = self._waiters.get(key)
        if future is None or future.done():
            future = self._waiters[key] = loop.create_future()
            if key not in self._running:
                self._pending.setdefault(client.namespace, []).append((key, payload))
                self._asked += 1
                self._start_flusher()
        return await asyncio.shield(future)

    async def start(self, clients: list[LLMClient]) -> None:
        """Take the run's clients; resume the batches a killed run left for the batched ones
        (polled even if this run never asks their requests, so their files get deleted)."""
        self.clients = clients
        for client in clients:
            if client.batched:
                await self._resume(client)

    async def aclose(self, *, clean: bool) -> None:
        """Stop collecting and polling; after a ``clean`` run, forget the finished jobs."""
        tasks = [t for t in (self._flusher, *self._tasks, *self._resumed.values()) if t]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if not clean:
            return  # recorded jobs stay: a rerun resumes them
        await asyncio.to_thread(self.cache.flush)  # the replies taken from batches first
        for ns in self._by_ns:
            for job in self.cache.batch_jobs(ns):
                if job["state"] == "downloaded":
                    self.cache.delete_batch_job(job["job"])

    # -- collecting ----------------------------------------------------------------------------

    def _start_flusher(self) -> None:
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_when_quiet())

    async def _flush_when_quiet(self) -> None:
        while any(self._pending.values()):
            full = [ns for ns, q in self._pending.items() if len(q) >= self.settings.max_requests]
            if not full:
                await self._quiet()
            self.waves += 1
            for ns in full or list(self._pending):
                queue = self._pending.get(ns) or []
                take, self._pending[ns] = (
                    queue[: self.settings.max_requests],
                    queue[self.settings.max_requests :],
                )
                for part in self._parts(take):
                    self._spawn(self._submit(self._by_ns[ns], part))

    def _parts(self, items: list[tuple[str, dict[str, Any]]]) -> list[list[tuple[str, bytes]]]:
        """``items`` as batch-file lines (custom_id: the cache key), in files of at most
        ``max_bytes``."""
        parts: list[list[tuple[str, bytes]]] = []
        size = 0
        for key, payload in items:
            line = json.dumps(
                {"custom_id": key, "method": "POST", "url": CHAT_URL, "body": payload},
                ensure_ascii=False,
            ).encode("utf-8", "replace")
            if not parts or size + len(line) + 1 > self.settings.max_bytes:
                parts.append([])
                size = 0
            parts[-1].append((key, line))
            size += len(line) + 1
        return parts

    async def _quiet(self) -> None:
        """Return once no request came for ``collect_s`` and nothing is in flight online."""
        while True:
            seen = self._asked
            await asyncio.sleep(self.settings.collect_s)
            for _ in range(_IDLE_TURNS):  # work already under way gets to ask its requests
                await asyncio.sleep(0)
            busy = sum(c.limiter.in_flight for c in self.clients)
            if self._asked == seen and busy == 0:
                return

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- submitting ----------------------------------------------------------------------------

    async def _submit(self, client: LLMClient, items: list[tuple[str, bytes]]) -> None:
        """Record, upload and create one batch, then poll it until its replies are delivered."""
        uid = secrets.token_hex(8)
        lines = {key: key for key, _ in items}  # custom_id -> cache key
        keys = list(lines)
        self._running.update(keys)
        try:
            data = b"".join(line + b"\n" for _, line in items)
            # Recorded before the upload: a kill after it finds the file by its name.
            number = self.cache.add_batch_job(client.namespace, uid, list(lines.items()))
            job = _Job(client, number, uid, lines, waiting=set(keys))
            job.input_file_id = await self._upload(client, data, _filename(uid))
            self.cache.update_batch_job(number, state="uploaded", input_file_id=job.input_file_id)
            try:
                job.batch_id = await self._create(client, job.input_file_id)
            except RetryableLLMError:
                # The answer may have been lost, not the batch: one made of the file is taken.
                job.batch_id = await self._batch_of_file(client, job.input_file_id)
                if job.batch_id is None:
                    await self._delete_quietly(client, job.input_file_id)
                    self.cache.delete_batch_job(number)
                    raise
            except LLMError:
                await self._delete_quietly(client, job.input_file_id)
                self.cache.delete_batch_job(number)
                raise
            self.cache.update_batch_job(number, state="submitted", batch_id=job.batch_id)
            self.submitted += 1
            log.info(
                "%s: batch %s submitted (%s)",
                client.where,
                job.batch_id,
                plural(len(lines), "request"),
            )
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            self._fail(keys, exc)
            return
        await self._follow(job)

    async def _follow(self, job: _Job) -> None:
        """Poll a submitted batch, then download, record, clean up and deliver its replies."""
        client = job.client
        try:
            info = await self._poll(job)
            if info is None:
                return
            results = await self._download(client, info, job)
            self.cache.store_batch_results(job.job, results)
            for fid in (job.input_file_id, info.get("output_file_id"), info.get("error_file_id")):
                if fid:
                    await self._delete_quietly(client, fid)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            self._fail(job.waiting, exc)
            return
        self._deliver(job, results, info)

    async def _poll(self, job: _Job) -> dict[str, Any] | None:
        """The batch once it is finished; None (its requests failed) when it ran out of time."""
        client, s = job.client, self.settings
        deadline = None if s.timeout_s is None else time.monotonic() + s.timeout_s
        seen: tuple[Any, ...] | None = None
        bar = _bar(client.name, len(job.lines), s.show_progress)
        try:
            while True:
                try:
                    info = await self._api(client, "GET", f"batches/{job.batch_id}")
                except RetryableLLMError as exc:
                    # A batch runs for hours: a network blip must not fail its requests.
                    log.warning("%s: polling batch %s: %s", client.where, job.batch_id, exc.summary)
                    info = {"status": "unknown"}
                if self._timed_out(job, deadline, str(info.get("status"))):
                    return None
                if info["status"] == "unknown":
                    await asyncio.sleep(s.poll_s)
                    continue
                status = str(info.get("status"))
                counts = info.get("request_counts") or {}
                done = int(counts.get("completed") or 0) + int(counts.get("failed") or 0)
                now = (status, done, counts.get("failed"))
                if now != seen:
                    seen = now
                    log.info(
                        "%s: batch %s %s: %d of %d done, %d failed",
                        client.where,
                        job.batch_id,
                        status,
                        done,
                        int(counts.get("total") or len(job.lines)),
                        int(counts.get("failed") or 0),
                    )
                    bar.set_description(f"batch {client.name} {status}")
                    bar.update(done - bar.n)
                if status in TERMINAL:
                    return info
                await asyncio.sleep(s.poll_s)
        finally:
            bar.close()

    def _timed_out(self, job: _Job, deadline: float | None, status: str) -> bool:
        """Past ``batch_timeout_s`` (and not finished): its requests fail; the batch is kept."""
        if deadline is None or status in TERMINAL or time.monotonic() <= deadline:
            return False
        err = job.client.transport.error(
            LLMError,
            f"batch {job.batch_id} still {status} after batch_timeout_s "
            f"({self.settings.timeout_s:g} s); rerun the same command to go on polling it",
        )
        self._fail(job.waiting, err)
        return True

    async def _download(self, client: LLMClient, info: dict[str, Any], job: _Job) -> dict[str, str]:
        """custom_id -> result line, from the output and error files (any order)."""
        results: dict[str, str] = {}
        for fid in (info.get("output_file_id"), info.get("error_file_id")):
            if not fid:
                continue
            text = await self._api(client, "GET", f"files/{fid}/content", raw=True)
            for row in text.splitlines():
                try:
                    cid = json.loads(row).get("custom_id")
                except (ValueError, AttributeError):
                    continue
                if cid in job.lines:
                    results.setdefault(cid, row)
        return results

    def _deliver(self, job: _Job, results: dict[str, str], info: dict[str, Any]) -> None:
        """Each line's result to the request waiting for it (kept for a later one otherwise)."""
        status = str(info.get("status"))
        for cid, key in job.lines.items():
            line = results.get(cid) or _missing_line(cid, status, info)
            self._running.discard(key)
            future = self._waiters.pop(key, None)
            if future is not None and not future.done():
                future.set_result(line)
            else:
                self._available[key] = line

    def _fail(self, keys: Any, exc: BaseException) -> None:
        for key in list(keys):
            self._running.discard(key)
            future = self._waiters.pop(key, None)
            if future is not None and not future.done():
                future.set_exception(exc)
                future.exception()  # retrieved: no noise when nobody waits any more

    # -- resuming ------------------------------------------------------------------------------

    async def _resume(self, client: LLMClient) -> None:
        """Take up the jobs a killed run of this endpoint left (once per endpoint)."""
        ns = client.namespace
        task = self._resumed.get(ns)
        if task is None:
            self._by_ns[ns] = client
            task = self._resumed[ns] = asyncio.create_task(self._take_up(client))
        await asyncio.shield(task)

    async def _take_up(self, client: LLMClient) -> None:
        for rec in self.cache.batch_jobs(client.namespace):
            requests = self.cache.batch_requests(rec["job"])
            lines = {cid: key for cid, key, _ in requests}
            job = _Job(client, rec["job"], rec["uid"], lines, rec["input_file_id"], rec["batch_id"])
            state = rec["state"]
            if state == "downloaded":
                for _, key, result in requests:
                    if result is not None:
                        self._available.setdefault(key, result)
                continue
            if state == "uploading":
                await self._forget_upload(job)
                continue
            if state == "uploaded":
                job.batch_id = await self._batch_of_file(client, job.input_file_id)
                if job.batch_id is None:
                    await self._delete_quietly(client, job.input_file_id)
                    self.cache.delete_batch_job(job.job)
                    continue
                self.cache.update_batch_job(job.job, state="submitted", batch_id=job.batch_id)
            log.info(
                "%s: resuming batch %s (%s)",
                client.where,
                job.batch_id,
                plural(len(lines), "request"),
            )
            job.waiting = set(lines.values())
            self._running.update(job.waiting)
            self._spawn(self._follow(job))

    async def _forget_upload(self, job: _Job) -> None:
        """A job killed during its upload: delete the file if it got there, and the record."""
        client = job.client
        listing = await self._api(client, "GET", "files?purpose=batch")
        for f in listing.get("data") or []:
            if isinstance(f, dict) and f.get("filename") == _filename(job.uid):
                await self._delete_quietly(client, str(f.get("id")))
        self.cache.delete_batch_job(job.job)

    async def _batch_of_file(self, client: LLMClient, file_id: str | None) -> str | None:
        """The batch the provider made of ``file_id`` (a kill between create and its record)."""
        listing = await self._api(client, "GET", "batches?limit=100")
        for b in listing.get("data") or []:
            if isinstance(b, dict) and b.get("input_file_id") == file_id:
                return str(b.get("id"))
        return None

    # -- HTTP ------------------------------------------------------------------------------------

    async def _upload(self, client: LLMClient, data: bytes, filename: str) -> str:
        body = await self._api(client, "POST", "files", form=lambda: _copy_form(data, filename))
        return str(body["id"])

    async def _create(self, client: LLMClient, file_id: str) -> str:
        body = await self._api(
            client,
            "POST",
            "batches",
            json_body={
                "input_file_id": file_id,
                "endpoint": CHAT_URL,
                "completion_window": "24h",
            },
        )
        return str(body["id"])

    async def _delete_quietly(self, client: LLMClient, file_id: str | None) -> None:
        """Delete a file; a failure is logged (the file only costs storage)."""
        if not file_id:
            return
        try:
            await self._api(client, "DELETE", f"files/{file_id}")
        except LLMError as exc:
            if exc.status != 404:
                log.warning("%s: could not delete file %s: %s", client.where, file_id, exc.summary)

    async def _api(
        self,
        client: LLMClient,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        form: Callable[[], aiohttp.FormData] | None = None,
        raw: bool = False,
    ) -> Any:
        """One call to the files/batches API, retried like a chat request when it may help."""
        attempt = 0
        while True:
            attempt += 1
            try:
                return await client.transport.api(
                    method, path, json_body=json_body, form=form() if form else None, raw=raw
                )
            except RetryableLLMError as exc:
                if attempt > client.config.max_retries:
                    raise
                policy = client.retry_policy
                wait = exc.retry_after_s or policy.backoff_s * 2 ** (attempt - 1)
                await asyncio.sleep(min(wait, policy.backoff_max_s))


def _copy_form(data: bytes, filename: str) -> aiohttp.FormData:
    """A fresh multipart body (aiohttp consumes one when it is sent)."""
    form = aiohttp.FormData()
    form.add_field("purpose", "batch")
    form.add_field("file", data, filename=filename, content_type="application/jsonl")
    return form


def _filename(uid: str) -> str:
    return f"sft-distill-{uid}.jsonl"


def _missing_line(cid: str, status: str, info: dict[str, Any]) -> str:
    """The result of a line the batch gave no answer for: why, as an error line."""
    if status == "failed":
        errors = (info.get("errors") or {}).get("data") or []
        why = "; ".join(str(e.get("message")) for e in errors if isinstance(e, dict))
        code, message = "batch_failed", f"the batch failed: {why or 'no reason given'}"
    elif status == "cancelled":
        code, message = "batch_cancelled", "the batch was cancelled before this request"
    elif status == "expired":
        code, message = "batch_expired", "the batch expired before this request was answered"
    else:
        code, message = "missing_result", "the batch gave no result for this request"
    return json.dumps(
        {"custom_id": cid, "response": None, "error": {"code": code, "message": message}}
    )


def line_reply(line: str) -> tuple[int, bytes] | tuple[None, tuple[str, str]]:
    """(status, body) of a result line, or (None, (code, message)) for a line with no response."""
    try:
        obj = json.loads(line)
    except ValueError:
        return None, ("unreadable_result", "the batch's result line is not JSON")
    response = obj.get("response") if isinstance(obj, dict) else None
    if isinstance(response, dict) and isinstance(response.get("status_code"), int):
        body = response.get("body")
        raw = json.dumps(body, ensure_ascii=False).encode("utf-8", "replace")
        return int(response["status_code"]), raw
    error = obj.get("error") if isinstance(obj, dict) else None
    if isinstance(error, dict):
        return None, (str(error.get("code") or "error"), one_line(str(error.get("message")), 200))
    return None, ("missing_result", "the batch's result line has no response")


def _bar(name: str, total: int, show: bool) -> Any:
    """A progress bar of one batch (state and lines done), when progress is shown."""
    from tqdm.auto import tqdm

    return tqdm(
        total=total,
        desc=f"batch {name}",
        unit="request",
        disable=None if show else True,
        dynamic_ncols=True,
    )


__all__ = ["BatchRunner", "BatchSettings", "line_reply"]
