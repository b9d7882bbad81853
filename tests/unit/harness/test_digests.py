"""A file's digest is its content's, read once while the file is unchanged."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from harness.digests import DigestCache, changed_files, directory_digest
from harness.io import file_sha256


@pytest.fixture
def cache_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "cache" / "file-digests.json"
    monkeypatch.setenv("LLEM_DIGEST_CACHE", str(path))
    return path


def model(folder: Path) -> Path:
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"\x00" * 64)
    return folder


def rewrite_keeping_mtime(path: Path, data: bytes) -> None:
    """New bytes in place (same inode), the old size and modification time put back."""
    before = path.stat()
    with path.open("r+b") as handle:
        handle.write(data)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))


def test_a_same_size_edit_changes_the_directory_digest(tmp_path: Path, cache_path: Path) -> None:
    folder = model(tmp_path / "m")
    before = directory_digest(folder)
    (folder / "model.safetensors").write_bytes(b"\x01" * 64)
    assert directory_digest(folder) != before


def test_hidden_files_and_folders_are_not_the_model(tmp_path: Path, cache_path: Path) -> None:
    folder = model(tmp_path / "m")
    before = directory_digest(folder)
    (folder / ".DS_Store").write_bytes(b"\x00")
    (folder / ".cache" / "huggingface").mkdir(parents=True)
    (folder / ".cache" / "huggingface" / "model.safetensors.lock").write_text("")
    assert directory_digest(folder) == before


def test_an_unchanged_file_is_not_read_again(tmp_path: Path, cache_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    folder = model(tmp_path / "m")
    before = directory_digest(folder)
    read: list[Path] = []

    def counted(path: Path) -> str:
        read.append(path)
        return file_sha256(path)

    monkeypatch.setattr("harness.digests.file_sha256", counted)
    assert directory_digest(folder) == before
    assert read == [], "files whose key is unchanged were read again"


def test_a_rewrite_that_kept_size_and_mtime_is_read_again(tmp_path: Path,
                                                          cache_path: Path) -> None:
    # Same path, inode, size and modification time: only the status-change time tells.
    folder = model(tmp_path / "m")
    weights = folder / "model.safetensors"
    before = directory_digest(folder)
    rewrite_keeping_mtime(weights, b"\x01" * 64)
    assert directory_digest(folder) != before
    assert DigestCache().sha256(weights) == file_sha256(weights)


def test_a_file_whose_key_changed_is_read_again(tmp_path: Path, cache_path: Path) -> None:
    folder = model(tmp_path / "m")
    weights = folder / "model.safetensors"
    before = directory_digest(folder)
    rewrite_keeping_mtime(weights, b"\x01" * 64)
    stat = weights.stat()
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))
    assert directory_digest(folder) != before
    assert DigestCache().sha256(weights) == file_sha256(weights)


@pytest.mark.parametrize("damage", ["{not json", '{"version": 1, "files": [1]}', "[]", ""])
def test_a_damaged_cache_is_read_around_and_rewritten(tmp_path: Path, cache_path: Path,
                                                      damage: str) -> None:
    folder = model(tmp_path / "m")
    cache_path.parent.mkdir()
    cache_path.write_text(damage)
    expected = directory_digest(model(tmp_path / "n"))  # same bytes, another folder
    assert directory_digest(folder) == expected
    assert str(folder / "config.json") in json.loads(cache_path.read_text())["files"]


def test_an_unwritable_cache_is_no_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("LLEM_DIGEST_CACHE", str(blocker / "sub" / "digests.json"))
    assert len(directory_digest(model(tmp_path / "m"))) == 64


def test_the_cache_lives_in_the_users_cache_directory(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LLEM_DIGEST_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    directory_digest(model(tmp_path / "m"))
    assert (tmp_path / "xdg" / "llem" / "file-digests.json").is_file()


def test_changed_files_names_what_differs(tmp_path: Path, cache_path: Path) -> None:
    folder = model(tmp_path / "m")
    before = directory_digest(folder)
    (folder / "model.safetensors").write_bytes(b"\x01" * 64)
    (folder / "tokenizer.json").write_text("{}")
    assert changed_files(folder, before) == ["model.safetensors", "tokenizer.json"]
    assert changed_files(folder, "0" * 64) is None
