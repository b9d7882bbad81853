"""Run ``llem`` as a user would (a subprocess) and look at what it wrote."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

LLEM = str(Path(sys.executable).with_name("llem"))
"""The ``llem`` console script installed next to the running interpreter."""


def llem(*args: str, cwd: Path | None = None, timeout: float = 300,
         env: Mapping[str, str] | None = None,
         check: bool = False) -> subprocess.CompletedProcess[str]:
    """Run ``llem ARGS`` in ``cwd`` to completion (``timeout`` in s), capturing its text output."""
    return subprocess.run([LLEM, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout, check=check)


def start_llem(*args: str, cwd: Path) -> subprocess.Popen[str]:
    """Start ``llem ARGS`` in ``cwd`` without waiting; its stdout and stderr are piped (text)."""
    return subprocess.Popen([LLEM, *args], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def wait_for_event(root: Path, events_glob: str, event: str, timeout_s: float) -> Path | None:
    """Poll until an ``events.jsonl`` matching ``events_glob`` under ``root`` records ``event``.

    Returns that file, or None when none did within ``timeout_s`` seconds.
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = list(root.glob(events_glob))
        if found and f'"{event}"' in found[0].read_text():
            return found[0]
        time.sleep(0.3)
    return None


def only_study_dir(output: Path) -> Path:
    """The one study folder under an ``--output`` folder (fails unless there is exactly one)."""
    (study_dir,) = [p for p in output.iterdir() if p.is_dir()]
    return study_dir


def tree_digest(root: Path) -> dict[str, str]:
    """SHA-256 of every file under ``root``, keyed by its path relative to ``root``."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}
