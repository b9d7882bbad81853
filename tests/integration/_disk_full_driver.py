"""Runs inside ``unshare -rm`` (no root needed): a study on a real tmpfs that fills mid-run.

The tmpfs is 1100 MiB, enough for llem's 1 GiB free-space check at the start. Once the first
run has completed, a filler file takes every free byte, so the next writes of the harness and
of the host meet a real ENOSPC. The study directory is copied out after the failure, then the
filler is removed and the study resumed, and copied out again; a JSON report says what
happened. The tmpfs vanishes with the namespace.

Usage: python _disk_full_driver.py STUDY MOUNT COPY_DIR REPORT
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

LLEM = str(Path(sys.executable).with_name("llem"))


def main(study: Path, mount: Path, copy_dir: Path, report: Path) -> None:
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1100m", "tmpfs", str(mount)],
                   check=True)
    out = mount / "out"
    process = subprocess.Popen([LLEM, "run", str(study), "--runner", "local", "--output",
                                str(out), "-q"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    study_dir = wait_for_first_completed(out, process)
    first_result = digest(next(study_dir.glob("001_*/result.json")))
    fill(mount / "filler")
    stdout, stderr = process.communicate(timeout=600)
    shutil.copytree(study_dir, copy_dir / "failed")
    (mount / "filler").unlink()
    resumed = subprocess.run([LLEM, "run", "--resume", str(study_dir), "--runner", "local",
                              "-q"], capture_output=True, text=True, timeout=600, check=False)
    shutil.copytree(study_dir, copy_dir / "resumed")
    report.write_text(json.dumps({
        "returncode": process.returncode, "stderr": stderr, "stdout": stdout,
        "study_dir": str(study_dir), "first_result_sha256": first_result,
        "resumed_returncode": resumed.returncode, "resumed_stderr": resumed.stderr,
    }))


def wait_for_first_completed(out: Path, process: subprocess.Popen[str]) -> Path:
    deadline = time.monotonic() + 300  # generous: only a hang reaches it
    while time.monotonic() < deadline and process.poll() is None:
        for manifest in out.glob("*/manifest.json"):
            with contextlib.suppress(ValueError, OSError):
                if json.loads(manifest.read_text())["runs"][0]["status"] == "completed":
                    return manifest.parent
        time.sleep(0.1)
    raise SystemExit(f"the first run never completed (llem exit {process.poll()})")


def fill(path: Path) -> None:
    """Take every free byte of the filesystem holding ``path``."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        stats = os.statvfs(path)
        with contextlib.suppress(OSError):
            os.posix_fallocate(fd, 0, stats.f_bavail * stats.f_frsize)
        os.lseek(fd, 0, os.SEEK_END)
        with contextlib.suppress(OSError):
            while True:  # whatever fallocate left, a page at a time, until ENOSPC
                os.write(fd, b"\0" * 4096)
    finally:
        os.close(fd)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


if __name__ == "__main__":
    main(*(Path(arg) for arg in sys.argv[1:5]))
