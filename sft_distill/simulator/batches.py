"""The simulator's OpenAI-compatible Batch API: ``/v1/files`` and ``/v1/batches``.

A batch's lines are answered by the chat endpoint's own handler (same content, faults, scripted
replies, usage and counters), after ``batch_delay_s``; output and error files are JSONL in
OpenAI's shapes (wire.md "Batch API"). Knobs for tests: ``batch_fail_lines`` (that many lines,
counted over the server's life, fail with a ``server_error`` in the error file) and
``batch_expire`` (that many batches expire with half their lines unanswered).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from typing import TYPE_CHECKING, Any

from aiohttp import web

from .faults import _error_body

if TYPE_CHECKING:
    from .server import SimState

CHAT_URL = "/v1/chat/completions"
# Statuses a batch no longer leaves.
TERMINAL = frozenset({"completed", "failed", "expired", "cancelled"})


class _LineRequest:
    """What the chat handler reads of a request, for one batch line (no connection behind it)."""

    def __init__(self, body: bytes, headers: Any) -> None:
        self._body = body
        self.headers = headers
        self.transport = None

    async def read(self) -> bytes:
        return self._body


def _json(status: int, body: Any) -> web.Response:
    return web.json_response(body, status=status)


def _not_found(what: str) -> web.Response:
    return web.Response(
        status=404, body=_error_body(404, f"No such {what}"), content_type="application/json"
    )


def _bad(message: str, param: str | None = None) -> web.Response:
    return web.Response(
        status=400, body=_error_body(400, message, param), content_type="application/json"
    )


class BatchAPI:
    """Files and batches of one simulator, answered through ``state``'s chat handler."""

    def __init__(self, state: SimState) -> None:
        self.state = state
        self.files: dict[str, dict[str, Any]] = {}
        self.contents: dict[str, bytes] = {}
        self.batches: dict[str, dict[str, Any]] = {}
        self._ids = itertools.count(1)
        self._tasks: set[asyncio.Task[None]] = set()
        self._failed_lines = 0
        self._expired = 0

    def _count(self, name: str, n: int = 1) -> None:
        st = self.state.stats
        st[name] = st.get(name, 0) + n

    def _new_file(self, data: bytes, purpose: str, filename: str) -> dict[str, Any]:
        fid = f"file-sim{next(self._ids):x}"
        meta = {
            "id": fid,
            "object": "file",
            "bytes": len(data),
            "created_at": int(time.time()),
            "filename": filename,
            "purpose": purpose,
        }
        self.files[fid] = meta
        self.contents[fid] = data
        return meta

    # -- files ---------------------------------------------------------------------------------

    async def upload(self, request: web.Request) -> web.Response:
        """POST /v1/files (multipart/form-data: ``purpose`` and ``file``)."""
        if not request.content_type.startswith("multipart/"):
            return _bad("Expected multipart/form-data with 'purpose' and 'file'")
        form = await request.post()
        purpose, upload = form.get("purpose"), form.get("file")
        if not isinstance(purpose, str) or not purpose:
            return _bad("Missing required parameter: 'purpose'", "purpose")
        if upload is None or isinstance(upload, str):
            return _bad("Missing required parameter: 'file'", "file")
        data = upload.file.read()
        auth = request.headers.get("Authorization", "")
        token = auth.removeprefix("Bearer ").strip()
        if token and token.encode() in data:
            self._count("files_with_auth_key")  # a client leaking its key into a file
        self._count("files_uploaded")
        return _json(200, self._new_file(data, purpose, upload.filename or "upload.jsonl"))

    async def list_files(self, request: web.Request) -> web.Response:
        """GET /v1/files (optionally ``?purpose=``)."""
        purpose = request.query.get("purpose")
        data = [f for f in self.files.values() if purpose in (None, f["purpose"])]
        return _json(200, {"object": "list", "data": data, "has_more": False})

    async def get_file(self, request: web.Request) -> web.Response:
        """GET /v1/files/{id}."""
        meta = self.files.get(request.match_info["file_id"])
        return _not_found("file") if meta is None else _json(200, meta)

    async def content(self, request: web.Request) -> web.Response:
        """GET /v1/files/{id}/content."""
        data = self.contents.get(request.match_info["file_id"])
        if data is None:
            return _not_found("file")
        return web.Response(body=data, content_type="application/octet-stream")

    async def delete_file(self, request: web.Request) -> web.Response:
        """DELETE /v1/files/{id}."""
        fid = request.match_info["file_id"]
        if self.files.pop(fid, None) is None:
            return _not_found("file")
        self.contents.pop(fid, None)
        self._count("files_deleted")
        return _json(200, {"id": fid, "object": "file", "deleted": True})

    # -- batches -------------------------------------------------------------------------------

    async def create(self, request: web.Request) -> web.Response:
        """POST /v1/batches."""
        try:
            body = json.loads(await request.read())
        except ValueError:
            return _bad("We could not parse the JSON body of your request.")
        if not isinstance(body, dict):
            return _bad("The body must be a JSON object.")
        fid = body.get("input_file_id")
        if fid not in self.files:
            return _bad(f"Invalid input_file_id: {fid!r}", "input_file_id")
        if body.get("endpoint") != CHAT_URL:
            return _bad(f"Unsupported endpoint {body.get('endpoint')!r}", "endpoint")
        if body.get("completion_window") != "24h":
            return _bad("completion_window must be '24h'", "completion_window")
        lines = [ln for ln in self.contents[fid].splitlines() if ln.strip()]
        bid = f"batch_sim{next(self._ids):x}"
        now = int(time.time())
        batch: dict[str, Any] = {
            "id": bid,
            "object": "batch",
            "endpoint": CHAT_URL,
            "errors": None,
            "input_file_id": fid,
            "completion_window": "24h",
            "status": "in_progress",
            "output_file_id": None,
            "error_file_id": None,
            "created_at": now,
            "in_progress_at": now,
            "expires_at": now + 86400,
            "completed_at": None,
            "request_counts": {"total": len(lines), "completed": 0, "failed": 0},
            "metadata": body.get("metadata"),
        }
        self.batches[bid] = batch
        self._count("batches_created")
        self._count("batch_lines_submitted", len(lines))
        task = asyncio.create_task(self._process(batch, lines, request.headers))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return _json(200, {**batch, "status": "validating"})

    async def get(self, request: web.Request) -> web.Response:
        """GET /v1/batches/{id}."""
        batch = self.batches.get(request.match_info["batch_id"])
        return _not_found("batch") if batch is None else _json(200, batch)

    async def list(self, request: web.Request) -> web.Response:
        """GET /v1/batches (newest first)."""
        data = sorted(self.batches.values(), key=lambda b: b["created_at"], reverse=True)
        return _json(200, {"object": "list", "data": data, "has_more": False})

    async def cancel(self, request: web.Request) -> web.Response:
        """POST /v1/batches/{id}/cancel: unanswered lines are left out."""
        batch = self.batches.get(request.match_info["batch_id"])
        if batch is None:
            return _not_found("batch")
        if batch["status"] not in TERMINAL:
            batch["status"] = "cancelling"
        return _json(200, batch)

    async def _process(self, batch: dict[str, Any], lines: list[bytes], headers: Any) -> None:
        """Wait ``batch_delay_s``, answer each line as the chat endpoint would, write the files."""
        start = time.monotonic()
        # Read again each turn: a test may shorten the delay of a batch already running.
        while True:
            left = start + self.state.cfg.batch_delay_s - time.monotonic()
            if left <= 0:
                break
            await asyncio.sleep(min(0.02, left))
        cfg = self.state.cfg
        expire = self._expired < cfg.batch_expire
        if expire:
            self._expired += 1
        answered = len(lines) // 2 if expire else len(lines)
        out: list[str] = []
        errors: list[str] = []
        counts = batch["request_counts"]
        for i, raw in enumerate(lines):
            if batch["status"] == "cancelling":
                break
            line_id = f"batch_req_sim{next(self._ids):x}"
            try:
                item = json.loads(raw)
                custom_id = item["custom_id"]
                body = json.dumps(item["body"], ensure_ascii=False).encode()
            except (ValueError, KeyError, TypeError):
                custom_id, body = None, b""
            if i >= answered:
                errors.append(_error_line(line_id, custom_id, "batch_expired", "expired"))
                counts["failed"] += 1
                self._count("batch_lines_expired")
                continue
            self._count("batch_lines")
            if custom_id is None or item.get("url") != CHAT_URL:
                msg = "invalid batch line"
                errors.append(_error_line(line_id, custom_id, "invalid_request", msg))
                counts["failed"] += 1
                continue
            if self._failed_lines < cfg.batch_fail_lines:
                self._failed_lines += 1
                self._count("batch_lines_failed")
                errors.append(_error_line(line_id, custom_id, "server_error", "line failed"))
                counts["failed"] += 1
                continue
            resp = await self.state.chat(_LineRequest(body, headers))  # type: ignore[arg-type]
            status = resp.status
            payload = json.loads(resp.body) if resp.body else None
            line = {
                "id": line_id,
                "custom_id": custom_id,
                "response": {"status_code": status, "request_id": line_id, "body": payload},
                "error": None,
            }
            text = json.dumps(line, ensure_ascii=False)
            if status == 200:
                out.append(text)
                counts["completed"] += 1
            else:
                errors.append(text)
                counts["failed"] += 1
        if out:
            data = ("\n".join(out) + "\n").encode()
            batch["output_file_id"] = self._new_file(data, "batch_output", "output.jsonl")["id"]
        if errors:
            data = ("\n".join(errors) + "\n").encode()
            batch["error_file_id"] = self._new_file(data, "batch_output", "errors.jsonl")["id"]
        now = int(time.time())
        if batch["status"] == "cancelling":
            batch["status"], batch["cancelled_at"] = "cancelled", now
        elif expire:
            batch["status"], batch["expired_at"] = "expired", now
        else:
            batch["status"], batch["completed_at"] = "completed", now


def _error_line(line_id: str, custom_id: str | None, code: str, message: str) -> str:
    """An error-file line for a request that got no response (OpenAI's shape)."""
    line = {
        "id": line_id,
        "custom_id": custom_id,
        "response": None,
        "error": {"code": code, "message": message},
    }
    return json.dumps(line, ensure_ascii=False)


def add_routes(app: web.Application, api: BatchAPI) -> None:
    """The Batch API's routes on the simulator's app."""
    app.router.add_post("/v1/files", api.upload)
    app.router.add_get("/v1/files", api.list_files)
    app.router.add_get("/v1/files/{file_id}", api.get_file)
    app.router.add_get("/v1/files/{file_id}/content", api.content)
    app.router.add_delete("/v1/files/{file_id}", api.delete_file)
    app.router.add_post("/v1/batches", api.create)
    app.router.add_get("/v1/batches", api.list)
    app.router.add_get("/v1/batches/{batch_id}", api.get)
    app.router.add_post("/v1/batches/{batch_id}/cancel", api.cancel)
