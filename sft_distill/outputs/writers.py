"""Writing a run's files safely: JSONL lines that never split, atomic JSON, the output directory.

Every JSONL line is compact UTF-8 (``ensure_ascii=False``), flushed as it is written, with lone
surrogates replaced, NaN/inf written as ``null``, and U+2028/U+2029/U+0085 escaped so that no
reader (``str.splitlines``, JavaScript) can split a record. The output directory is created,
probed for writing and locked against a second process.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Literal

from pydantic import BaseModel

from ..errors import OutputError
from ..models import PathLike
from ..text import fix_surrogates

log = logging.getLogger(__name__)

# Line breaks for str.splitlines() / JavaScript that json.dumps(ensure_ascii=False) leaves raw.
_LINE_BREAKS_RE = re.compile("[\u2028\u2029\x85]")


def _no_nan(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _no_nan(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_no_nan(v) for v in value]
    return value


def _to_jsonable(obj: dict[str, Any] | BaseModel) -> Any:
    return obj.model_dump(mode="json") if isinstance(obj, BaseModel) else obj


def dumps_line(obj: dict[str, Any] | BaseModel) -> str:
    """One compact JSON line (no newline) that always encodes to UTF-8 and never splits."""
    data = _to_jsonable(obj)
    try:
        text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except ValueError:
        # NaN/inf are not JSON: HF datasets and jq reject them; null is what they mean.
        log.warning("NaN or infinite number written as null")
        text = json.dumps(_no_nan(data), ensure_ascii=False, separators=(",", ":"))
    # Outside strings json.dumps emits only ASCII, so these edits touch string contents only.
    text = fix_surrogates(text)
    return _LINE_BREAKS_RE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def _tmp_path(path: Path) -> Path:
    return path.with_name(path.name + ".tmp")


def _fsync(f: IO[bytes]) -> None:
    f.flush()
    os.fsync(f.fileno())


class JsonlWriter:
    """Write one JSON object per line as the run goes, flushed after every line.

    ``atomic=True`` writes ``name.tmp`` and renames it over ``name`` on a clean ``close()``; on an
    exception inside ``with`` the temp file is removed and ``name`` is left untouched.
    ``mode="a"`` appends (for resume); a last line cut by a crash is ended first so it stays one
    bad line instead of corrupting the next record.
    """

    def __init__(
        self,
        path: PathLike,
        *,
        atomic: bool = False,
        mode: Literal["w", "a"] = "w",
        flush_lines: bool = True,
    ) -> None:
        if atomic and mode == "a":
            raise ValueError("atomic=True cannot append")
        self.path = Path(path)
        self.atomic = atomic
        # A file the caller can rebuild (it is only read after close) need not be flushed
        # line by line: one system call per line is most of the cost of writing it.
        self._flush_lines = flush_lines and not atomic
        self.lines = 0
        self.offset = 0  # bytes written so far (plus what an appended file held)
        self._target = _tmp_path(self.path) if atomic else self.path
        try:
            self._f: IO[bytes] | None = open(self._target, mode + "b")  # noqa: SIM115
            if mode == "a" and self._f.tell() > 0:
                with open(self._target, "rb") as r:
                    r.seek(-1, os.SEEK_END)
                    if r.read(1) != b"\n":
                        self._f.write(b"\n")
            self.offset = self._f.tell()
        except OSError as exc:
            raise OutputError(f"cannot write {self._target}: {exc.strerror or exc}") from None

    def write(self, obj: dict[str, Any] | BaseModel) -> int:
        """Append one object as a JSON line; return the byte offset where the line starts."""
        return self.write_line(dumps_line(obj).encode("utf-8") + b"\n")

    def write_line(self, data: bytes) -> int:
        """Append a line already encoded by ``dumps_line`` (ending in a newline); its offset."""
        if self._f is None:
            raise ValueError(f"{self.path}: writer is closed")
        start = self.offset
        try:
            self._f.write(data)
            if self._flush_lines:
                # A file written as the run goes is flushed per line, so a crash loses at most
                # the line being written; an atomic file only becomes visible at close() anyway.
                self._f.flush()
        except OSError as exc:  # disk full, I/O error: one line for the user, exit status 2
            raise OutputError(f"cannot write {self._target}: {exc.strerror or exc}") from None
        self.offset += len(data)
        self.lines += 1
        return start

    def close(self) -> None:
        """Finish the file (rename the temp file into place when atomic); safe to call twice."""
        if self._f is None:
            return
        f, self._f = self._f, None
        try:
            try:
                if self.atomic:
                    _fsync(f)
            finally:
                f.close()  # writes what is still buffered
            if self.atomic:
                os.replace(self._target, self.path)
        except OSError as exc:  # disk full on the last bytes: one line for the user, status 2
            if self.atomic:  # an unfinished temp file is of no use to a rerun
                self._target.unlink(missing_ok=True)
            raise OutputError(f"cannot write {self._target}: {exc.strerror or exc}") from None

    def abort(self) -> None:
        """Close without committing: an atomic writer removes its temp file."""
        if self._f is None:
            return
        f, self._f = self._f, None
        try:
            f.close()
        except OSError:
            # The buffered rest cannot be written (a full disk): it was being discarded anyway,
            # and the error that caused the abort is the one to report.
            pass
        finally:
            if self.atomic:
                self._target.unlink(missing_ok=True)

    def __enter__(self) -> JsonlWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is not None and self.atomic:
            self.abort()
        else:
            self.close()


def write_json_atomic(path: PathLike, obj: Any) -> None:
    """Write ``obj`` as indented UTF-8 JSON via ``name.tmp`` + ``os.replace``."""
    p = Path(path)
    data = obj.model_dump(mode="json") if isinstance(obj, BaseModel) else obj
    try:
        text = json.dumps(data, ensure_ascii=False, indent=2, allow_nan=False)
    except ValueError:
        text = json.dumps(_no_nan(data), ensure_ascii=False, indent=2)
    tmp = _tmp_path(p)
    try:
        with open(tmp, "wb") as f:
            f.write(fix_surrogates(text).encode("utf-8") + b"\n")
            _fsync(f)
        os.replace(tmp, p)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise OutputError(f"cannot write {p}: {exc.strerror or exc}") from None


def prepare_output_dir(path: PathLike) -> Path:
    """Create the output directory (with parents) and check that it is writable.

    Raises:
        OutputError: it is an existing file, cannot be created, or cannot be written.
    """
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise OutputError(f"output directory {p} exists and is not a directory")
    try:
        p.mkdir(parents=True, exist_ok=True)
    except PermissionError:
        raise OutputError(f"cannot create output directory {p}: permission denied") from None
    except OSError as exc:
        raise OutputError(f"cannot create output directory {p}: {exc.strerror or exc}") from None
    try:
        fd, probe = tempfile.mkstemp(dir=p, prefix=".write-test-")
        os.close(fd)
        os.unlink(probe)
    except PermissionError:
        raise OutputError(f"cannot write to output directory {p}: permission denied") from None
    except OSError as exc:
        raise OutputError(f"cannot write to output directory {p}: {exc.strerror or exc}") from None
    return p


LOCK_FILENAME = ".sft_distill.lock"


@contextlib.contextmanager
def lock_output_dir(out_dir: PathLike) -> Iterator[bool]:
    """Hold an exclusive lock on the output directory for a run or a refilter.

    Two processes writing one directory would truncate each other's files; the second one is
    refused at once. The lock dies with its process, so a ``kill -9`` leaves nothing to clean.
    Yields whether the lock is held (False where ``fcntl`` is missing, e.g. on Windows).

    Raises:
        OutputError: another process holds the lock.
    """
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock, as before
        yield False
        return
    path = Path(out_dir) / LOCK_FILENAME
    if not path.parent.is_dir():  # nothing to protect; the caller reports the missing directory
        yield False
        return
    with open(path, "a+b") as f:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise OutputError(
                f"output directory {out_dir} is in use by another sft-distill process; wait for "
                "it to finish or choose another --output"
            ) from None
        try:
            yield True
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)
