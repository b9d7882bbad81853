"""A cache of built TensorRT-LLM engines, keyed by everything that makes an engine different.

Building an engine takes minutes and a study runs the same configuration many times, in fresh
containers. Entries live in one directory (a Docker volume or host directory mounted into every
tensorrt container)::

    <root>/<key>/engine/     what the builder wrote (config.json, rank*.engine, tokenizer)
    <root>/<key>/key.json    the key and its full description: written last
    <root>/.locks/<key>.lock one builder per key, across processes and containers
    <root>/.building-<key>-*/ a build in progress (or one that died)

The key is SHA-256 over the canonical JSON of a description: every build-relevant field, the
model's resolved revision, ``tensorrt_llm.__version__`` and the GPU's compute capability (the
caller assembles it; see ``harness.backends.tensorrt``). A build goes into a temporary directory
under the key's lock; key.json is written last and the directory is renamed into place, so a
crash never leaves something that looks complete. An entry without key.json, without an engine,
or whose key.json describes something else is rebuilt, never used.

An engine loads only with the TensorRT-LLM version that built it, and releases after TensorRT-LLM
removed its TensorRT-engine runtime (July 2026) load none: entries built by such a release (by
the version in their description, :func:`engine_runtime_in`) are ``unusable``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout
from packaging.version import InvalidVersion, Version

from harness._version import __version__
from harness.io import write_json

KEY_FILE = "key.json"
ENGINE_DIR = "engine"
BUILDING_PREFIX = ".building-"
LOCKS_DIR = ".locks"

_FIRST_WITHOUT_ENGINE = Version("1.3.0")
"""The first final release without the TensorRT-engine runtime (removed during its rcs)."""


def engine_runtime_in(trt_version: str | None) -> bool | None:
    """Whether the TensorRT-LLM release ``trt_version`` carries the TensorRT-engine runtime.

    Told from the version string alone: True for 0.x and 1.0-1.2.x (their release candidates,
    dev and post releases included), False for 1.3.0 and later (1.4 release candidates
    included). None (not known) for the 1.3.0 release candidates, since the runtime was removed
    between two of them and which one first lacks it is not known, and for a version that is
    missing or not a PEP 440 version.
    """
    try:
        parsed = Version(trt_version or "")
    except InvalidVersion:
        return None
    if parsed >= _FIRST_WITHOUT_ENGINE:
        return False
    if parsed.release < _FIRST_WITHOUT_ENGINE.release[:2]:
        return True
    return None  # a pre-release (or dev release) of 1.3.0


def cache_key(description: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of the description's canonical JSON: sorted keys, no whitespace."""
    canonical = json.dumps(description, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class CacheOutcome:
    """What the cache did for one run.

    Attributes:
        key: the entry's key.
        engine_dir: the engine to load.
        hit: True when a complete, matching entry was found (no build).
        build_s: seconds this run spent building (None on a hit).
    """

    key: str
    engine_dir: Path
    hit: bool
    build_s: float | None


@dataclass(frozen=True)
class CacheEntry:
    """One directory under the cache root, as ``llem cache list`` shows it.

    Attributes:
        key: directory name (the key, for a complete entry).
        path: the directory.
        state: ``complete``, ``unusable`` (complete, but built by a TensorRT-LLM release
            without the engine runtime: nothing can load it), ``partial`` (no key.json or no
            engine), ``mismatch`` (key.json names another key) or ``building`` (a temporary
            build directory).
        description: the key's description (entries whose key.json names their key).
        size_bytes: bytes on disk.
        created_at: when the build finished (ISO 8601, from the same key.json).
        last_used_s: seconds since the epoch of the last hit or build.
        unusable_reason: why a run cannot load the entry (None for a complete one).
    """

    key: str
    path: Path
    state: str
    description: dict[str, Any] | None
    size_bytes: int
    created_at: str | None
    last_used_s: float
    unusable_reason: str | None = None

    @property
    def usable(self) -> bool:
        """Whether a run can load this entry's engine."""
        return self.state == "complete"


class EngineCache:
    """Engines under ``root``, built at most once per key.

    Args:
        root: the cache directory (created when missing).
        lock_timeout_s: how long to wait for another builder of the same key.
    """

    def __init__(self, root: Path, lock_timeout_s: float = 6 * 3600) -> None:
        self.root = root
        self.lock_timeout_s = lock_timeout_s

    def _lock(self, key: str) -> FileLock:
        locks = self.root / LOCKS_DIR
        locks.mkdir(parents=True, exist_ok=True)
        return FileLock(str(locks / f"{key}.lock"))

    def lookup(self, description: Mapping[str, Any]) -> Path | None:
        """The engine of a complete entry matching ``description`` exactly, else None."""
        entry = self.root / cache_key(description)
        return entry / ENGINE_DIR if _matches(entry, description) else None

    def get_or_build(self, description: Mapping[str, Any],
                     build: Callable[[Path], None]) -> CacheOutcome:
        """Return the engine for ``description``, building it first if needed.

        Args:
            description: every build-relevant field; its hash is the key.
            build: writes a complete engine into the directory it is given (which does not
                exist yet). Called at most once per key across concurrent callers.

        Raises:
            TimeoutError: another builder held the key's lock longer than ``lock_timeout_s``.

        """
        key = cache_key(description)
        entry = self.root / key
        if _matches(entry, description):
            _touch(entry)
            return CacheOutcome(key, entry / ENGINE_DIR, hit=True, build_s=None)
        self.root.mkdir(parents=True, exist_ok=True)
        try:
            with self._lock(key).acquire(timeout=self.lock_timeout_s):
                if _matches(entry, description):  # another builder finished while we waited
                    _touch(entry)
                    return CacheOutcome(key, entry / ENGINE_DIR, hit=True, build_s=None)
                build_s = self._build(key, description, build)
        except Timeout as error:
            raise TimeoutError(f"waited {self.lock_timeout_s:g} s for another build of engine "
                               f"{key[:12]} in {self.root}") from error
        return CacheOutcome(key, entry / ENGINE_DIR, hit=False, build_s=build_s)

    def _build(self, key: str, description: Mapping[str, Any],
               build: Callable[[Path], None]) -> float:
        entry = self.root / key
        if entry.exists() or entry.is_symlink():
            _remove(entry)  # partial or mismatching: never used, rebuilt
        staging = Path(tempfile.mkdtemp(prefix=f"{BUILDING_PREFIX}{key}-", dir=self.root))
        try:
            started = time.perf_counter()
            build(staging / ENGINE_DIR)
            build_s = time.perf_counter() - started
            if not _has_engine(staging):
                raise RuntimeError(f"the engine build wrote nothing into {staging / ENGINE_DIR}")
            write_json(staging / KEY_FILE, {
                "key": key,
                "description": dict(description),
                "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                "build_s": build_s,
                "llem_version": __version__,
            })
            os.rename(staging, entry)
        except BaseException:
            _remove(staging)
            raise
        with contextlib.suppress(OSError):
            _fsync_directory(self.root)
        return build_s

    def entries(self, usable_with: str | None = None) -> list[CacheEntry]:
        """Every entry and leftover build directory, newest use first.

        Args:
            usable_with: a TensorRT-LLM version to judge complete entries against: one built by
                another version is ``unusable`` (an engine loads only with the release that built
                it). Without it, only entries of releases without the engine runtime are.

        """
        if not self.root.is_dir():
            return []
        found = [_describe(path, usable_with) for path in self.root.iterdir()
                 if path.is_dir() and path.name != LOCKS_DIR]
        return sorted(found, key=lambda entry: entry.last_used_s, reverse=True)

    def prune(self, *, unused_for_s: float | None = None, everything: bool = False,
              usable_with: str | None = None) -> list[CacheEntry]:
        """Remove broken and unusable entries, dead build directories and, if asked, complete ones.

        Partial, mismatching and unusable entries are always removed, and so is a build
        directory whose key is not locked (its builder died). A complete entry goes when
        ``everything`` is set or it was last used more than ``unused_for_s`` ago. An entry whose
        key is being built right now is skipped. With ``usable_with``, entries built by another
        TensorRT-LLM version are unusable too (:meth:`entries`). Returns what was removed.
        """
        removed = []
        now = time.time()
        for entry in self.entries(usable_with):
            key = entry.key
            if entry.state == "building":
                key = entry.path.name.removeprefix(BUILDING_PREFIX).rsplit("-", 1)[0]
            elif entry.state == "complete" and not everything and (
                    unused_for_s is None or now - entry.last_used_s <= unused_for_s):
                continue
            try:
                with self._lock(key).acquire(timeout=0):
                    _remove(entry.path)
            except Timeout:
                continue  # a build of this key is running
            removed.append(entry)
        return removed


def _matches(entry: Path, description: Mapping[str, Any]) -> bool:
    try:
        recorded = json.loads((entry / KEY_FILE).read_text())
    except (OSError, ValueError):
        return False
    return (isinstance(recorded, dict)
            and recorded.get("key") == entry.name
            and recorded.get("description") == json.loads(json.dumps(dict(description),
                                                                     default=str))
            and _has_engine(entry))


def _has_engine(entry: Path) -> bool:
    engine = entry / ENGINE_DIR
    return engine.is_dir() and any(engine.iterdir())


_PARTIAL = "no key.json or an empty engine directory (a build that did not finish)"
_MISMATCH = "key.json names another key"
_BUILDING = "a build in progress, or one whose builder died"


def _describe(path: Path, usable_with: str | None = None) -> CacheEntry:
    size = sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())
    last_used = path.stat().st_mtime
    if path.name.startswith(BUILDING_PREFIX):
        return CacheEntry(path.name, path, "building", None, size, None, last_used, _BUILDING)
    try:
        recorded = json.loads((path / KEY_FILE).read_text())
        last_used = (path / KEY_FILE).stat().st_mtime
    except (OSError, ValueError):
        return CacheEntry(path.name, path, "partial", None, size, None, last_used, _PARTIAL)
    if not isinstance(recorded, dict) or recorded.get("key") != path.name:
        return CacheEntry(path.name, path, "mismatch", None, size, None, last_used, _MISMATCH)
    described = recorded.get("description")
    description = described if isinstance(described, dict) else None
    created_at = recorded.get("created_at")
    if not _has_engine(path):
        return CacheEntry(path.name, path, "partial", description, size, created_at, last_used,
                          _PARTIAL)
    reason = _unusable_reason(description, usable_with)
    return CacheEntry(path.name, path, "complete" if reason is None else "unusable", description,
                      size, created_at, last_used, reason)


def same_release(recorded: Any, named: str) -> bool:
    """Whether a description's TensorRT-LLM version is the release ``named``.

    PEP 440 equality: ``v1.2.1`` and ``1.2.1`` are one release; ``1.2`` is not ``1.2.1``.
    """
    try:
        return Version(str(recorded)) == Version(named)
    except InvalidVersion:
        return str(recorded) == named


def _unusable_reason(description: Mapping[str, Any] | None,
                     usable_with: str | None = None) -> str | None:
    """Why a complete entry's engine cannot be loaded (by any release, or by ``usable_with``)."""
    version = (description or {}).get("tensorrt_llm_version")
    if usable_with is not None and not same_release(version, usable_with):
        return (f"built by tensorrt_llm {version}; an engine loads only with the release that "
                f"built it, not {usable_with}")
    if engine_runtime_in(str(version) if version is not None else None) is not False:
        return None
    return (f"built by tensorrt_llm {version}, a release without the TensorRT-engine runtime "
            f"(removed in July 2026; 1.3.0 and later lack it): no release can load it")


def _touch(entry: Path) -> None:
    with contextlib.suppress(OSError):  # a read-only cache still serves hits
        os.utime(entry / KEY_FILE)


def _remove(path: Path) -> None:
    """Rename aside first, so a half-deleted entry is never mistaken for a usable one."""
    if not path.exists() and not path.is_symlink():
        return
    if path.is_symlink() or path.is_file():
        path.unlink()
        return
    trash = path.with_name(f"{BUILDING_PREFIX}trash-{path.name}-{os.getpid()}-{time.time_ns()}")
    os.rename(path, trash)
    shutil.rmtree(trash, ignore_errors=True)


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def default_cache_root() -> Path:
    """``LLEM_ENGINE_CACHE``, else ``$XDG_CACHE_HOME/llem/trt-engines`` (~/.cache by default)."""
    configured = os.environ.get("LLEM_ENGINE_CACHE")
    if configured:
        return Path(configured).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "llem" / "trt-engines"


__all__ = ["CacheEntry", "CacheOutcome", "EngineCache", "cache_key", "default_cache_root",
           "engine_runtime_in"]
