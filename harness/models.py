"""A model checkpoint, found and read offline: its one home.

Runs never download. A model is a local directory (config.json plus weights) or a Hugging Face
id whose files the local Hugging Face cache already holds at the requested revision. The cache
is read through huggingface_hub's cache API (``try_to_load_from_cache``,
``get_cached_repo_tree``, ``snapshot_download(local_files_only=True)``), never through
hand-built paths, so a branch, tag or commit in ``revision:`` selects the snapshot it names.
This module alone decides whether a name is a hub id or a path, where the hub cache is, and
whether a checkpoint is complete there; ``llem fetch`` (orchestrator/fetch.py) only downloads.
Everything here is read-only; huggingface_hub, safetensors and transformers are imported inside
the functions that use them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

from harness.digests import changed_files, directory_digest
from harness.errors import BackendError, PreflightError

ModelSource = Literal["local_directory", "hf_cache"]

LOCAL_DIGEST_PREFIX = "local-files-sha256:"
"""Marks the content digest of a local directory (before: ``local-sha256:``, names and sizes)."""

WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
"""A model directory or cache snapshot needs config.json and one of these."""

TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "vocab.txt")
"""...and one of these: every backend tokenises prompts with the model's own tokenizer."""

EMBEDDING_SUFFIXES = (
    "embed_tokens.weight",
    "wte.weight",
    "word_embeddings.weight",
    "embed_in.weight",
    "lm_head.weight",
    "embed_out.weight",
)
"""Tensor-name endings of input embeddings and output heads (excluded from the FLOPs count)."""

CONFIG_FILES = (
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "tokenizer.model",
    "vocab.json",
    "vocab.txt",
    "merges.txt",
    "*.tiktoken",
    "chat_template.jinja",
    "chat_template.json",
)
"""Top-level files inference reads besides the weights (``*`` does not reach into folders
because every pattern is matched against the whole path)."""

SAFETENSORS_WEIGHTS = ("model*.safetensors", "model.safetensors.index.json")
BIN_WEIGHTS = ("pytorch_model*.bin", "pytorch_model.bin.index.json")
"""The weights transformers saves, single-file or sharded; other weight files in a repository
(a second format, ``consolidated.*``, ``original/``) are not inference's."""

_REPO_ID = re.compile(r"[\w.-]+(/[\w.-]+)?")
_COMMIT = re.compile(r"[0-9a-f]{40}")

_WEIGHTS = "weights (" + " or ".join(WEIGHT_FILES[::2]) + ")"
_TOKENIZER = "tokenizer files (" + " or ".join(TOKENIZER_FILES) + ")"

_TOKENIZER_ERRORS = (OSError, ValueError, ImportError, RuntimeError, KeyError, TypeError)
"""What ``AutoTokenizer.from_pretrained`` raises for missing or unreadable files."""


def looks_like_path(model: str) -> bool:
    """Whether ``model`` is meant as a path: a Hugging Face id is "name" or "org/name"."""
    return model.startswith(("/", ".", "~")) or model.count("/") > 1 or "\\" in model


def is_hub_id(model: str, cwd: Path | None = None) -> bool:
    """Whether ``model`` names a hub repository rather than a path.

    While a study file is read (``cwd``: the folder its paths are relative to), an existing
    path there wins, and becomes absolute. Without ``cwd`` (a loaded configuration, whose
    local paths are absolute), a relative ``name`` or ``org/name`` is a hub id even where the
    working directory holds a folder of that name: what runs is what the configuration pins.
    """
    if looks_like_path(model) or (cwd is not None and local_path(model, cwd).exists()):
        return False
    return _REPO_ID.fullmatch(model) is not None and "--" not in model and ".." not in model


def hub_cache() -> Path:
    """The hub cache huggingface_hub uses (HF_HUB_CACHE, HF_HOME/hub, XDG_CACHE_HOME, ~/.cache)."""
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def inference_patterns(files: Iterable[str]) -> list[str]:
    """The ``allow_patterns`` of what inference reads of a repository holding ``files``.

    Configs, tokenizer and one weight format: safetensors when the repository has them, else
    PyTorch ``.bin``.
    """
    names = list(files)
    safetensors = any(name.endswith(".safetensors") for name in names)
    return [*CONFIG_FILES, *(SAFETENSORS_WEIGHTS if safetensors else BIN_WEIGHTS)]


def local_path(model: str, cwd: Path | None = None) -> Path:
    """``model`` as a local path: ``~`` expanded, relative paths taken from ``cwd``."""
    path = Path(model).expanduser()
    return path if path.is_absolute() or cwd is None else cwd / path


def cached_file(model: str, filename: str, revision: str | None = None,
                cache_dir: Path | None = None) -> Path | None:
    """The cached copy of ``filename`` of hub model ``model`` at ``revision``, else None.

    Args:
        model: a Hugging Face id.
        filename: a file of the repository (``config.json``).
        revision: branch, tag or commit (None: the default branch).
        cache_dir: the hub cache (None: huggingface_hub's, from HF_HUB_CACHE or HF_HOME).
    """
    from huggingface_hub import try_to_load_from_cache

    try:
        found = try_to_load_from_cache(model, filename, cache_dir=cache_dir, revision=revision)
    except ValueError:  # not a valid repository id
        return None
    return Path(found) if isinstance(found, str) else None


def is_commit(revision: str | None) -> bool:
    """Whether ``revision`` is a full commit hash (which, unlike a branch or tag, never moves)."""
    return revision is not None and _COMMIT.fullmatch(revision) is not None


def cached_commit(model: str, revision: str | None = None,
                  cache_dir: Path | None = None) -> str | None:
    """The commit whose snapshot the hub cache holds for ``model`` at ``revision``, else None.

    A branch or tag (None: the default branch) is resolved through the cache's ``refs/``, as
    a run resolves it: offline, nothing downloaded. None when config.json is not cached there.
    """
    found = cached_file(model, "config.json", revision, cache_dir)
    if found is None or found.parent.parent.name != "snapshots":
        return None
    commit = found.parent.name
    return commit if is_commit(commit) else None


def in_cache(model: str, revision: str | None = None, cache_dir: Path | None = None) -> bool:
    """Whether the hub cache holds all of ``model`` at ``revision`` that inference reads."""
    return cache_gaps(model, revision, cache_dir) == []


def cache_gaps(model: str, revision: str | None = None,
               cache_dir: Path | None = None) -> list[str] | None:
    """What the hub cache lacks of ``model`` at ``revision``: None when it has nothing of it.

    The snapshot needs config.json, weights and tokenizer files. When huggingface_hub also
    cached the repository's listing (a download leaves one), every listed file that inference
    reads must be there too, so a sharded download cut off after one shard is incomplete.

    Args:
        model: a Hugging Face id.
        revision: branch, tag or commit (None: the default branch).
        cache_dir: the hub cache (None: :func:`hub_cache`).
    """
    if cached_file(model, "config.json", revision, cache_dir) is None:
        return None
    gaps = []
    if not any(cached_file(model, name, revision, cache_dir) for name in WEIGHT_FILES):
        gaps.append(_WEIGHTS)
    if not any(cached_file(model, name, revision, cache_dir) for name in TOKENIZER_FILES):
        gaps.append(_TOKENIZER)
    missing = [name for name in _listed(model, revision, cache_dir)
               if cached_file(model, name, revision, cache_dir) is None]
    if missing:
        gaps.append("listed files (" + ", ".join(missing) + ")")
    return gaps


def _listed(model: str, revision: str | None, cache_dir: Path | None) -> list[str]:
    """The files inference reads of the repository's cached listing ([] when none is cached)."""
    from huggingface_hub import get_cached_repo_tree
    from huggingface_hub.errors import CachedRepoTreeNotFoundError
    from huggingface_hub.utils import filter_repo_objects  # type: ignore[attr-defined]

    try:
        listing = [entry.path for entry in get_cached_repo_tree(
            model, revision=revision, cache_dir=cache_dir)]
    except (CachedRepoTreeNotFoundError, ValueError):
        return []
    return list(filter_repo_objects(listing, allow_patterns=inference_patterns(listing)))


def locate(model: str, revision: str | None = None, cache_dir: Path | None = None) -> ModelSource:
    """Find ``model`` without the network: a local directory or the Hugging Face cache.

    A hub id (:func:`is_hub_id`) is only ever looked up in the cache, never as a folder of
    the working directory.

    Raises:
        PreflightError: the model is not available offline, with what to do about it.

    """
    if not is_hub_id(model):
        path = local_path(model)
        if path.is_dir():
            _check_model_dir(path)
            return "local_directory"
        raise PreflightError(
            f"model directory {path} does not exist",
            fix=(
                "point model: at a directory holding config.json and the weights (a tiny test "
                "model: python -m harness.tiny_model DIR), or at a Hugging Face id in the "
                "local cache"
            ),
        )
    gaps = cache_gaps(model, revision, cache_dir)
    if gaps:
        raise _incomplete(model, revision, gaps)
    if gaps is None:
        raise _not_cached(model, revision)
    return "hf_cache"


def _download(model: str, revision: str | None) -> str:
    return f"hf download {model}" + (f" --revision {revision}" if revision else "")


def _incomplete(model: str, revision: str | None, gaps: list[str]) -> PreflightError:
    at = f" at revision {revision}" if revision else ""
    return PreflightError(
        f"model '{model}'{at} is in the Hugging Face cache without "
        f"{' and without '.join(gaps)}, and runs never download",
        fix=f"download all of it on the host first ({_download(model, revision)})",
    )


def _not_cached(model: str, revision: str | None) -> PreflightError:
    at = f" at revision {revision}" if revision else ""
    return PreflightError(
        f"model '{model}'{at} is neither a local directory nor in the Hugging Face cache, "
        "and runs never download",
        fix=(
            f"download it on the host first ({_download(model, revision)}) into the cache that "
            "is mounted into the run (HF_HOME), or point model: at a local directory"
        ),
    )


def directory(model: str, revision: str | None = None, cache_dir: Path | None = None) -> Path:
    """The local directory of ``model``: itself, or its snapshot in the Hugging Face cache.

    Raises:
        PreflightError: the model is not available offline.

    """
    if locate(model, revision, cache_dir) == "local_directory":
        return local_path(model).resolve()
    # The snapshot folder holding the cached config.json (located above, so it is there).
    # Not snapshot_download(local_files_only=True): that refuses a snapshot lacking files of
    # the repository's listing that inference never reads (README.md, a second weight format).
    found = cached_file(model, "config.json", revision, cache_dir)
    if found is None:  # removed since locate() looked
        raise _not_cached(model, revision)
    return found.parent


def read_config(model: str, revision: str | None = None, cwd: Path | None = None,
                cache_dir: Path | None = None) -> dict[str, Any] | None:
    """config.json of a local model directory, or of ``model`` at ``revision`` in the cache.

    A relative path is taken from ``cwd``; without it, a relative name is a hub id
    (:func:`is_hub_id`). Returns None when neither has it (nothing is downloaded).
    """
    if not is_hub_id(model, cwd):
        local = local_path(model, cwd) / "config.json"
        return dict(json.loads(local.read_text(encoding="utf-8"))) if local.is_file() else None
    cached = cached_file(model, "config.json", revision, cache_dir)
    return dict(json.loads(cached.read_text(encoding="utf-8"))) if cached else None


def _check_model_dir(path: Path) -> None:
    missing = []
    if not (path / "config.json").is_file():
        missing.append("config.json")
    if not any((path / name).is_file() for name in WEIGHT_FILES):
        missing.append(_WEIGHTS)
    if not has_tokenizer(path):
        missing.append(_TOKENIZER)
    if missing:
        raise PreflightError(
            f"model directory {path} has no {' and no '.join(missing)}",
            fix="save the model there with save_pretrained(DIR), or point model: elsewhere",
        )


def has_tokenizer(checkpoint: Path) -> bool:
    """Whether a local checkpoint holds tokenizer files (one of :data:`TOKENIZER_FILES`)."""
    return any((checkpoint / name).is_file() for name in TOKENIZER_FILES)


def resolved_revision(checkpoint: Path) -> str:
    """What identifies the checkpoint's content.

    A Hugging Face cache snapshot is named after its commit, which is returned as is. A local
    directory has no commit: its identity is ``local-files-sha256:`` and SHA-256 over the
    relative path and SHA-256 of every file (:func:`harness.digests.directory_digest`; hidden
    files left out). Each file's digest is cached by path, size, mtime, inode, device and
    ctime, so a multi-GB checkpoint is read once, not at every run.
    """
    if checkpoint.parent.name == "snapshots" and len(checkpoint.name) == 40:
        return checkpoint.name
    return LOCAL_DIGEST_PREFIX + directory_digest(checkpoint)


def changed_model_files(checkpoint: Path, old_digest: str) -> list[str] | None:
    """Files of a local checkpoint that differ from when it had ``old_digest`` (None: unknown)."""
    if not old_digest.startswith(LOCAL_DIGEST_PREFIX):
        return None
    return changed_files(checkpoint, old_digest.removeprefix(LOCAL_DIGEST_PREFIX))


def content_problems(model: str, digest: str | None) -> list[str]:
    """The problem with a local model directory whose content no longer has ``digest``.

    For a run's preflight: the host pinned ``model_digest`` when it loaded the study, and a
    directory rewritten since (a training job saving into it) must not be measured under the
    old identity. Each file's digest is cached (:mod:`harness.digests`), so an unchanged
    checkpoint costs a stat per file. [] for a hub model, a directory that is not there
    (:func:`locate` says so) and a digest that is not a local one.
    """
    path = local_path(model)
    if digest is None or not digest.startswith(LOCAL_DIGEST_PREFIX) or not path.is_dir():
        return []
    found = LOCAL_DIGEST_PREFIX + directory_digest(path)
    if found == digest:
        return []
    changed = changed_model_files(path, digest)
    which = f"; files changed, added or removed: {', '.join(changed[:5])}" if changed else ""
    return [str(PreflightError(
        f"model directory {path} has changed since the study was planned{which} (digest "
        f"{found.removeprefix(LOCAL_DIGEST_PREFIX)[:12]}..., the configuration pins "
        f"{digest.removeprefix(LOCAL_DIGEST_PREFIX)[:12]}...)",
        fix="restore the directory, or start a new study with llem run FILE: a changed model "
        "is another configuration"))]


def parameter_counts(checkpoint: Path) -> tuple[int, int]:
    """(all parameters, non-embedding parameters) from the safetensors headers.

    No tensor is loaded: each file's header names every tensor and its shape.

    Raises:
        BackendError: the checkpoint has no safetensors files (counts need them).

    """
    files = sorted(checkpoint.glob("*.safetensors"))
    if not files:
        raise BackendError(f"{checkpoint} has no .safetensors files to count parameters from",
                           fix="save the model with safe_serialization=True")
    from safetensors import safe_open

    total = embedding = 0
    for path in files:
        with safe_open(str(path), framework="np") as handle:
            for name in handle.keys():  # noqa: SIM118 - safe_open is not a mapping
                count = 1
                for size in handle.get_slice(name).get_shape():
                    count *= int(size)
                total += count
                if name.endswith(EMBEDDING_SUFFIXES):
                    embedding += count
    return total, total - embedding


def vocab_size(checkpoint: Path) -> int | None:
    """``vocab_size`` from the checkpoint's config.json (None when absent).

    Raises:
        PreflightError: config.json is missing or not JSON.

    """
    try:
        value = json.loads((checkpoint / "config.json").read_text()).get("vocab_size")
    except (OSError, ValueError) as error:
        raise PreflightError(f"cannot read {checkpoint / 'config.json'}: {error}",
                             fix="point model: at a complete checkpoint") from error
    return int(value) if isinstance(value, int) else None


def load_tokenizer(model: str, revision: str | None = None) -> Any:
    """The model's transformers tokenizer, offline, padding on the left.

    Read from :func:`directory`: the local directory or the snapshot of ``revision``.

    Raises:
        PreflightError: the model is not available offline.
        BackendError: the tokenizer files are missing or unreadable.

    """
    from transformers import AutoTokenizer

    location = str(directory(model, revision))  # absolute: never a folder of the cwd
    try:
        tokenizer = AutoTokenizer.from_pretrained(location, local_files_only=True)
    except _TOKENIZER_ERRORS as error:
        raise BackendError(
            f"loading the tokenizer of '{model}' failed: {error}",
            fix="check that the model directory or cache entry holds tokenizer files",
        ) from error
    tokenizer.padding_side = "left"
    return tokenizer


def ordinary_token_ids(tokenizer: Any, limit: int | None = None) -> list[int]:
    """Token ids below ``limit`` (the model's vocabulary) that are not special tokens."""
    special = set(tokenizer.all_special_ids)
    special.update(
        token_id
        for token_id, token in tokenizer.added_tokens_decoder.items()
        if getattr(token, "special", False)
    )
    end = len(tokenizer) if limit is None else min(limit, len(tokenizer))
    return [token_id for token_id in range(end) if token_id not in special]


class Tokenizer:
    """The model's tokenizer, loaded on first use (offline, on the CPU).

    Engine backends (vLLM, TensorRT-LLM) load the weights in their own processes; the harness
    still tokenises prompts and draws synthetic ids with the model's own tokenizer.
    """

    def __init__(self, model: str, revision: str | None = None) -> None:
        self._model = model
        self._revision = revision
        self._tokenizer: Any = None

    @property
    def tokenizer(self) -> Any:
        """The transformers tokenizer."""
        if self._tokenizer is None:
            self._tokenizer = load_tokenizer(self._model, self._revision)
        return self._tokenizer

    def encode(self, text: str) -> list[int]:
        """Tokenise without special tokens."""
        ids: list[int] = self.tokenizer.encode(text, add_special_tokens=False)
        return ids

    def vocab_ids(self, limit: int | None = None) -> list[int]:
        """Ordinary token ids below ``limit`` (the model's vocabulary), specials excluded."""
        return ordinary_token_ids(self.tokenizer, limit)

    def eos_token_id(self) -> int | None:
        """The end-of-sequence id (None when the tokenizer has none)."""
        value = self.tokenizer.eos_token_id
        return None if value is None else int(value)
