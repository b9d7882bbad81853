"""Nightly studies: one folder per night, compared with the last completed night.

``llem nightly STUDY --root results/nightly`` (``make nightly``) runs the study into a new study
directory under the root (``<study>_<UTC time>``), writes its report, compares it with the
newest earlier study directory there that completed (``comparison.md`` and
``comparison.json`` beside its report) and exits 1 when a gating metric regressed. A lock on the
root keeps two nightlies from overlapping: the second stops before it runs anything. ``--keep``
removes the oldest nightly folders beyond that many, never the two just compared.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path

from harness.errors import ConfigError
from orchestrator.manifest import MANIFEST_NAME
from orchestrator.summary import StudySummary

NIGHTLY_LOCK = ".nightly.lock"
COMPARISON_JSON = "comparison.json"
COMPARISON_MD = "comparison.md"


@contextlib.contextmanager
def nightly_lock(root: Path) -> Iterator[None]:
    """Hold the nightly root; refuse when another nightly holds it (nothing has run then)."""
    from filelock import FileLock, Timeout

    root.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(root / NIGHTLY_LOCK))
    try:
        lock.acquire(timeout=0)
    except Timeout as error:
        raise ConfigError(f"another nightly is running in {root}; this one started nothing",
                          fix="let it finish (a timer or cron line must not start nightlies "
                          "closer together than one lasts)") from error
    try:
        yield
    finally:
        lock.release()


def nightly_dirs(root: Path) -> list[Path]:
    """The study directories under ``root`` (they hold a manifest), oldest first by name."""
    if not root.is_dir():
        return []
    return sorted(path for path in root.iterdir()
                  if path.is_dir() and not path.name.startswith(".")
                  and (path / MANIFEST_NAME).is_file())


def completed(study_dir: Path) -> bool:
    """Whether a study directory finished: a summary, not interrupted, no run left undone."""
    try:
        summary = StudySummary.load(study_dir)
    except ConfigError:
        return False
    undone = sum(count for status, count in summary.counts.items()
                 if status not in ("completed", "skipped"))
    return not summary.interrupted and undone == 0 and summary.counts.get("completed", 0) > 0


def previous_nightly(root: Path, current: Path) -> Path | None:
    """The newest study directory under ``root`` before ``current`` that completed."""
    earlier = [path for path in nightly_dirs(root)
               if path.resolve() != current.resolve() and path.name < current.name]
    return next((path for path in reversed(earlier) if completed(path)), None)


def prune(root: Path, keep: int, protect: tuple[Path, ...]) -> list[Path]:
    """Remove the oldest nightly study directories beyond the newest ``keep``.

    Directories in ``protect`` (the night just run and the one it was compared with) stay
    whatever their age. Returns what was removed.
    """
    protected = {path.resolve() for path in protect}
    dirs = nightly_dirs(root)
    removed = []
    for path in dirs[:max(len(dirs) - keep, 0)]:
        if path.resolve() not in protected:
            shutil.rmtree(path)
            removed.append(path)
    return removed

