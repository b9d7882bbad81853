"""Names and directories derived from user text: sanitised, never overwriting, never escaping."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

from harness.errors import ConfigError

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
MAX_NAME_LEN = 80


def sanitize(text: str, fallback: str = "unnamed") -> str:
    """Reduce user text to ``[A-Za-z0-9._-]``, no leading dots, at most 80 characters."""
    cleaned = _UNSAFE.sub("-", text).strip("-.")
    cleaned = re.sub(r"-{2,}", "-", cleaned)[:MAX_NAME_LEN].strip("-.")
    return cleaned or fallback


def utc_stamp() -> str:
    """UTC timestamp for directory names, e.g. 20261129T010400Z."""
    return dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def inside(root: Path, candidate: Path) -> Path:
    """Return ``candidate`` resolved, or raise when it would leave ``root``."""
    root_resolved = root.resolve()
    resolved = candidate.resolve()
    if resolved != root_resolved and root_resolved not in resolved.parents:
        raise ConfigError(
            f"path '{candidate}' would leave the output root '{root}'",
            fix="use a plain name without '..' or absolute paths",
        )
    return resolved


def create_unique_dir(root: Path, name: str) -> Path:
    """Create ``root/name``, or ``name_1``, ``name_2``... when taken; never reuses one.

    ``mkdir`` without ``exist_ok`` is the atomic claim, so two processes never get the same
    directory.
    """
    root.mkdir(parents=True, exist_ok=True)
    base = sanitize(name)
    for suffix in range(10_000):
        candidate = root / (base if suffix == 0 else f"{base}_{suffix}")
        inside(root, candidate)
        try:
            candidate.mkdir()
        except FileExistsError:
            continue
        return candidate
    raise ConfigError(f"too many directories named '{base}' under '{root}'",
                      fix="choose another study name or output root")
