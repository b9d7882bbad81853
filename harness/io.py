"""Atomic file writes and the append-only event log.

Every file llem writes is written to a temporary file in the same directory, flushed and
fsynced, then moved into place with ``os.replace``: a reader sees the old file or the new
one, never half of one, even if the process dies mid-write.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from pydantic import BaseModel

from harness.errors import LlemError
from harness.schema.events import RunEvent, parse_run_event

logger = logging.getLogger(__name__)


class DiskFullError(LlemError):
    """A write found no room: the filesystem is full, a quota or the file-size limit is reached.

    Attributes:
        path: the file being written.
        mount: the mount point of the filesystem that holds it.
        remedy: what makes room ("free space on /data"), for callers that add their next step.
    """

    def __init__(self, message: str, *, path: Path, mount: Path, remedy: str) -> None:
        super().__init__(message, fix=f"{remedy}, then run again")
        self.path = path
        self.mount = mount
        self.remedy = remedy


def mount_point(path: Path) -> Path:
    """The mount point of the filesystem holding ``path`` (which need not exist)."""
    current = Path(os.path.abspath(path))
    while not os.path.ismount(current) and current != current.parent:
        current = current.parent
    return current


def no_room_error(error: OSError, path: Path) -> DiskFullError | None:
    """A :class:`DiskFullError` naming the filesystem when ``error`` means "no room", else None.

    ENOSPC (the filesystem is full) and EDQUOT (a quota) name the mount point; EFBIG names the
    process's file-size limit (``ulimit -f``), which is not the disk's fault.
    """
    mount = mount_point(path)
    if error.errno == errno.ENOSPC:
        what, fix = f"the filesystem mounted at {mount} is full", f"free space on {mount}"
    elif error.errno == errno.EDQUOT:
        what, fix = f"the disk quota on {mount} is exhausted", f"free space on {mount}"
    elif error.errno == errno.EFBIG:
        what, fix = "the file-size limit of this process (ulimit -f) is reached", (
            "raise it (ulimit -f unlimited)")
    else:
        return None
    return DiskFullError(f"{what} (writing {path})", path=path, mount=mount, remedy=fix)


@contextlib.contextmanager
def _no_room_named(path: Path) -> Iterator[None]:
    try:
        yield
    except OSError as error:
        named = no_room_error(error, path)
        if named is None:
            raise
        raise named from error


@contextlib.contextmanager
def atomic_open(path: Path, mode: str = "w") -> Iterator[IO[Any]]:
    """Open a temporary sibling of ``path`` and move it over ``path`` when the block succeeds.

    When the disk is full the temporary file is removed, ``path`` keeps its previous content,
    and :class:`DiskFullError` names the filesystem.

    Args:
        path: final location of the file.
        mode: ``"w"`` for text or ``"wb"`` for bytes.
    """
    with _no_room_named(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        tmp = Path(tmp_name)
        os.chmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; results get the usual permissions
        try:
            encoding = None if "b" in mode else "utf-8"
            with os.fdopen(fd, mode, encoding=encoding) as handle:
                yield handle
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
            _fsync_dir(path.parent)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise


def _read_umask() -> int:
    # os.umask can only be read by setting it; do that once, at import, before any thread runs.
    current = os.umask(0)
    os.umask(current)
    return current


_UMASK = _read_umask()


def atomic_replace(tmp: Path, path: Path) -> None:
    """Fsync an already written ``tmp`` and move it over ``path``."""
    with _no_room_named(path):
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    # The rename itself lives in the directory entry; fsync it so it survives a power cut.
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def file_sha256(path: Path) -> str:
    """SHA-256 (hex) of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_json(path: Path, data: BaseModel | dict[str, Any] | list[Any]) -> None:
    """Write JSON atomically; pydantic models are dumped in JSON mode."""
    payload = data.model_dump(mode="json") if isinstance(data, BaseModel) else data
    with atomic_open(path) as handle:
        json.dump(payload, handle, indent=2, sort_keys=False)
        handle.write("\n")


def write_text(path: Path, text: str) -> None:
    """Write text atomically."""
    with atomic_open(path) as handle:
        handle.write(text)


def write_bytes(path: Path, data: bytes) -> None:
    """Write bytes atomically."""
    with atomic_open(path, "wb") as handle:
        handle.write(data)


class EventLog:
    """Append-only ``events.jsonl``: one typed event (``harness.schema.events``) per line.

    The host follows this file for progress and liveness. Each line is written with a single
    ``write`` call on a file opened in append mode and flushed at once, so a reader sees a torn
    line only while that call is under way (or if the process died inside it).

    Args:
        path: the run's ``events.jsonl``.
        on_event: also receives every event written (the in-process API's callback); it is
            called from whichever harness thread emits, so it should return quickly.
    """

    def __init__(self, path: Path, on_event: Callable[[RunEvent], None] | None = None) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._handle = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()
        self._t0 = time.monotonic()
        self._lock = threading.Lock()
        self._on_event = on_event

    def emit(self, event: RunEvent) -> None:
        """Stamp ``event`` with the wall clock and the run-relative time and append it."""
        with self._lock:  # stamped under the lock, so the file's times never go back
            if self._handle.closed:
                return
            stamped = event.model_copy(update={"time": time.time(),
                                               "t_s": time.monotonic() - self._t0})
            # "event" first, so the file reads well; the other fields in schema order.
            record = {"event": stamped.event, **stamped.model_dump(mode="json")}
            self._handle.write(json.dumps(record) + "\n")
            self._handle.flush()
        if self._on_event is not None:
            try:
                self._on_event(stamped)
            except Exception:  # a caller's bug must not stop the run (or the sampler thread)
                logger.exception("the on_event callback failed on a %s event", stamped.event)

    def close(self) -> None:
        """Flush to disk and close; safe to call twice."""
        with self._lock:
            if not self._handle.closed:
                self._handle.flush()
                with contextlib.suppress(OSError):
                    os.fsync(self._handle.fileno())
                self._handle.close()


def read_events(path: Path) -> list[RunEvent]:
    """Read ``events.jsonl`` as typed events, skipping a torn last line.

    A kind this reader does not know comes back as ``UnknownEvent``.
    """
    if not path.exists():
        return []
    events: list[RunEvent] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        event = parse_run_event(line)
        if event is not None:
            events.append(event)
    return events
