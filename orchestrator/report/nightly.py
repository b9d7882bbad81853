"""Nightly studies: one folder per night, compared with the last comparable night.

``llem nightly STUDY --root results/nightly`` (``make nightly``) runs the study into a new study
directory under the root (``<study>_<UTC time>``), writes its report, compares it with the
previous night (``comparison.md`` and ``comparison.json`` beside its report) and exits 1 when a
gating metric regressed. The earlier nights compared with are those of the same study (its
name) and the same design (its ``design_hash``: a changed study file starts a new series) that
were not interrupted and have at least one completed run, newest first: each configuration is
compared with the newest of them that measured it, so a configuration that failed last night
is compared with the last night that measured it (its regression is not hidden). Nights are
ordered by when they started, not by folder name. A lock on the root keeps two nightlies from
overlapping: the second stops before it runs anything. ``--keep`` removes the oldest nights of
the same study beyond that many, never tonight nor a night some configuration was compared
with, and never another study's directory or a link.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from harness.errors import ConfigError
from orchestrator.manifest import MANIFEST_NAME, Manifest
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
    """The study directories under ``root`` (they hold a manifest), by name; links are skipped.

    A link (``latest -> a night``) is no night of its own: counting it would compare or remove
    the night it points to twice.
    """
    if not root.is_dir():
        return []
    return sorted(path for path in root.iterdir()
                  if not path.is_symlink() and path.is_dir() and not path.name.startswith(".")
                  and (path / MANIFEST_NAME).is_file())


@dataclass(frozen=True)
class Night:
    """One study directory under the nightly root, as its manifest names and dates it.

    Attributes:
        path: the study directory.
        study: the study's name.
        design_hash: the study design's hash (a changed study file changes it).
        started: when the directory was made (its first invocation), UTC.
    """

    path: Path
    study: str
    design_hash: str
    started: dt.datetime

    @classmethod
    def read(cls, path: Path) -> Night | None:
        """The night in ``path``, or None when its manifest cannot be read (no night then)."""
        try:
            manifest = Manifest.load(path)
            started = dt.datetime.fromisoformat(manifest.created_at)
        except (ConfigError, ValueError):
            return None
        if started.tzinfo is None:
            started = started.replace(tzinfo=dt.timezone.utc)
        return cls(path, manifest.study, manifest.design_hash, started)

    @property
    def order(self) -> tuple[dt.datetime, str]:
        """Sort key: start time; the folder name breaks a tie within one second."""
        return self.started, self.path.name


def nights_of(root: Path, study: str) -> list[Night]:
    """The nights of the study named ``study`` under ``root``, oldest first by start time."""
    nights = (Night.read(path) for path in nightly_dirs(root))
    return sorted((night for night in nights if night is not None and night.study == study),
                  key=lambda night: night.order)


def comparable(study_dir: Path) -> bool:
    """Whether a night can be compared with: a summary, not interrupted, a run completed.

    Failed runs do not make a night incomparable: their configurations are listed as only in
    one study, and one configuration that keeps failing does not stop every comparison.
    """
    try:
        summary = StudySummary.load(study_dir)
    except ConfigError:
        return False
    return not summary.interrupted and summary.counts.get("completed", 0) > 0


@dataclass(frozen=True)
class PreviousNight:
    """The night tonight is compared with, or why there is none.

    Attributes:
        path: the previous night's study directory; None when there is none.
        why_none: what to print when ``path`` is None.
        earlier: every comparable earlier night of the study design, newest first
            (``path`` is the first): the baselines a configuration may be compared with.
    """

    path: Path | None
    why_none: str = ""
    earlier: tuple[Path, ...] = ()


def find_previous(root: Path, current: Path) -> PreviousNight:
    """The newest comparable night before ``current`` of the same study and design."""
    tonight = Night.read(current)
    if tonight is None:
        raise ConfigError(f"{current} has no readable manifest.json",
                          fix="give the study directory llem nightly wrote")
    earlier = [night for night in nights_of(root, tonight.study)
               if night.order < tonight.order and night.path.resolve() != current.resolve()]
    if not earlier:
        return PreviousNight(None, "first nightly here: nothing to compare with yet")
    same_design = [night for night in earlier if night.design_hash == tonight.design_hash]
    if not same_design:
        return PreviousNight(None, "no earlier night of this study design (the study file "
                             f"changed since {earlier[-1].path.name}): nothing compared")
    found = tuple(night.path for night in reversed(same_design) if comparable(night.path))
    if not found:
        return PreviousNight(None, "no earlier night of this study design completed a run "
                             "without being interrupted: nothing compared")
    return PreviousNight(found[0], earlier=found)


def previous_nightly(root: Path, current: Path) -> Path | None:
    """The night ``current`` is compared with (see :func:`find_previous`), or None."""
    return find_previous(root, current).path


def prune(root: Path, keep: int, protect: tuple[Path, ...]) -> list[Path]:
    """Remove the oldest nights of the study beyond the newest ``keep``.

    The study is that of ``protect[0]`` (the night just run); directories of other studies
    and links are never counted nor removed. Directories in ``protect`` (the night just run
    and every night a configuration was compared with) stay whatever their age. Returns what
    was removed.
    """
    tonight = Night.read(protect[0]) if protect else None
    if tonight is None:
        return []
    protected = {path.resolve() for path in protect}
    nights = nights_of(root, tonight.study)
    removed = []
    for night in nights[:max(len(nights) - keep, 0)]:
        if night.path.resolve() not in protected and not night.path.is_symlink():
            shutil.rmtree(night.path)
            removed.append(night.path)
    return removed
