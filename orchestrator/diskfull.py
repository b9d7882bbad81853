"""A disk that fills during a study: keep room to record it, then stop the study.

A few MiB are held in the study directory while the study runs. When a write finds the disk
full, they are given back, so that the manifest can still say which run failed and why, and the
summary can still be written.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from harness.io import DiskFullError
from orchestrator.manifest import Failure, RunEntry, now_utc

RESERVE_NAME = ".llem-disk-reserve"
RESERVE_BYTES = 8 * 2**20


class DiskReserve:
    """Space held in ``directory`` (``.llem-disk-reserve``) for the last writes of a study.

    Args:
        directory: the study directory.
        size_bytes: how much to hold (bytes).
    """

    def __init__(self, directory: Path, size_bytes: int = RESERVE_BYTES) -> None:
        self.path = directory / RESERVE_NAME
        self.size_bytes = size_bytes

    def hold(self) -> bool:
        """Allocate the reserve; False (and nothing held) when there is no room for it."""
        try:
            with open(self.path, "wb") as handle:
                os.posix_fallocate(handle.fileno(), 0, self.size_bytes)
        except OSError:
            self.release()
            return False
        return True

    def release(self) -> None:
        """Give the space back (safe to call twice)."""
        with contextlib.suppress(OSError):
            self.path.unlink(missing_ok=True)


def record_disk_full(entry: RunEntry, error: DiskFullError) -> None:
    """Record the run in progress as failed because the disk filled.

    A run that completed keeps its result. A run that had already failed keeps its own account
    after the disk's, since its failure was most likely the full disk too.
    """
    if entry.status == "completed":
        return
    message = error.message
    previous = entry.failure
    if entry.status == "failed" and previous is not None:
        message = f"{message}; the run reported: {previous.message}"
    entry.status, entry.finished_at = "failed", now_utc()
    entry.failure = Failure(
        cause="error", message=message,
        exit_code=previous.exit_code if previous else None,
        log_tail=previous.log_tail if previous else [])
