"""SHA-256 of files' content, remembered so that a multi-GB checkpoint is read once.

A file's digest is kept in a small JSON cache (``$XDG_CACHE_HOME/llem/file-digests.json``, else
``~/.cache/llem/...``; ``LLEM_DIGEST_CACHE`` names another file) under its absolute path,
together with its size, modification time (ns), inode, device and status-change time (ns). It is
reused only while all five are unchanged; any change reads the file again. The status-change time
(ctime) is what tells a rewrite in place that kept size and modification time (``cp
--preserve=timestamps``, ``rsync --inplace -t``, a rewrite within one timestamp tick): no user
can set it, and any write moves it. The cache is only a shortcut: a missing, damaged or
unwritable cache (a read-only home in a container) means reading the files, never an error.

A directory's digest is SHA-256 over the (relative path, SHA-256) pairs of its files; files and
folders whose name starts with ``.`` (``.DS_Store``, ``.git/``, the ``.cache/`` that
``hf download --local-dir`` leaves) are not the model's and are left out. The cache also keeps
the file list behind the last directory digests, so a refusal can name which file changed.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from harness.io import DiskFullError, file_sha256, write_json

CACHE_VERSION = 1
MAX_TREES = 64
"""How many directory digests keep their file list (for naming what changed)."""


def cache_file() -> Path:
    """Where the digest cache lives (``LLEM_DIGEST_CACHE``, else the user's cache directory)."""
    named = os.environ.get("LLEM_DIGEST_CACHE")
    if named:
        return Path(named)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "llem" / "file-digests.json"


def model_files(directory: Path) -> Iterator[tuple[str, Path]]:
    """(relative POSIX path, path) of every file under ``directory``, hidden ones left out."""
    for path in sorted(directory.rglob("*")):
        relative = path.relative_to(directory)
        if path.is_file() and not any(part.startswith(".") for part in relative.parts):
            yield relative.as_posix(), path


class DigestCache:
    """File digests by (path, size, mtime_ns, inode, device, ctime_ns); look up, then ``save``."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = cache_file() if path is None else path
        self._files: dict[str, dict[str, Any]] = {}
        self._trees: dict[str, dict[str, str]] = {}
        self._changed = False
        self._load()

    def _load(self) -> None:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return
        if not isinstance(data, dict) or data.get("version") != CACHE_VERSION:
            return
        files, trees = data.get("files"), data.get("trees")
        if isinstance(files, dict):
            self._files = {name: entry for name, entry in files.items()
                           if isinstance(entry, dict) and isinstance(entry.get("sha256"), str)}
        if isinstance(trees, dict):
            self._trees = {name: tree for name, tree in trees.items() if isinstance(tree, dict)}

    def sha256(self, path: Path) -> str:
        """SHA-256 of ``path``'s bytes: from the cache while its key is unchanged, else read."""
        absolute = str(path.absolute())
        stat = path.stat()
        key = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "inode": stat.st_ino,
               "device": stat.st_dev, "ctime_ns": stat.st_ctime_ns}
        known = self._files.get(absolute)
        if known is not None and all(known.get(name) == value for name, value in key.items()):
            return str(known["sha256"])
        digest = file_sha256(path)
        self._files[absolute] = {**key, "sha256": digest}
        self._changed = True
        return digest

    def tree_digest(self, directory: Path) -> str:
        """SHA-256 (hex) over (relative path, SHA-256) of every non-hidden file of ``directory``."""
        listing = {relative: self.sha256(path) for relative, path in model_files(directory)}
        digest = hashlib.sha256()
        for relative, file_digest in listing.items():
            digest.update(f"{relative}\0{file_digest}\n".encode())
        found = digest.hexdigest()
        if self._trees.get(found) != listing:
            self._trees.pop(found, None)
            self._trees[found] = listing  # newest last; the oldest are dropped on save
            self._changed = True
        return found

    def tree(self, digest: str) -> dict[str, str] | None:
        """The file list (relative path: SHA-256) behind a directory digest, if remembered."""
        return self._trees.get(digest)

    def save(self) -> None:
        """Write the cache atomically when it changed; a failure to write is not an error."""
        if not self._changed:
            return
        files = {name: entry for name, entry in self._files.items() if Path(name).is_file()}
        trees = dict(list(self._trees.items())[-MAX_TREES:])
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_json(self.path, {"version": CACHE_VERSION, "files": files, "trees": trees})
        except (OSError, DiskFullError):  # a cache only: the next load reads the files again
            return
        self._changed = False


def directory_digest(directory: Path, cache: DigestCache | None = None) -> str:
    """:meth:`DigestCache.tree_digest` of ``directory`` through the user's cache, saved after."""
    cache = DigestCache() if cache is None else cache
    found = cache.tree_digest(directory)
    cache.save()
    return found


def changed_files(directory: Path, old_digest: str) -> list[str] | None:
    """Files of ``directory`` added, removed or changed since it had ``old_digest``.

    None when the cache no longer remembers the file list behind ``old_digest``.
    """
    cache = DigestCache()
    before = cache.tree(old_digest)
    if before is None:
        return None
    now = {relative: cache.sha256(path) for relative, path in model_files(directory)}
    cache.save()
    return sorted(name for name in before.keys() | now.keys() if before.get(name) != now.get(name))
