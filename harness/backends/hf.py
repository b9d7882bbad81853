"""What the engine backends (vLLM, TensorRT-LLM) share about a Hugging Face checkpoint.

Both engines load the model themselves, in their own processes, so the harness never holds the
weights: it resolves the checkpoint to a local directory (runs never download), tokenises with
the model's own tokenizer (transformers, on the CPU, so CUDA is untouched before the engine
starts), and counts parameters from the safetensors headers without loading a tensor.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path
from typing import Any

from harness.backends.pytorch import loading
from harness.backends.pytorch import preflight as model_checks
from harness.errors import BackendError, PreflightError
from harness.schema.config import ExperimentConfig

EMBEDDING_SUFFIXES = (
    "embed_tokens.weight",
    "wte.weight",
    "word_embeddings.weight",
    "embed_in.weight",
    "lm_head.weight",
    "embed_out.weight",
)
"""Tensor-name endings of input embeddings and output heads (excluded from the FLOPs count)."""


def model_directory(model: str, revision: str | None) -> Path:
    """The local directory of ``model``: itself, or its snapshot in the Hugging Face cache.

    Raises:
        PreflightError: the model is not available offline.

    """
    source = model_checks.resolve_model(model, revision)
    if source == "local_directory":
        return Path(model).expanduser().resolve()
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(model, revision=revision, local_files_only=True))


def resolved_revision(directory: Path) -> str:
    """What identifies the checkpoint's content.

    A Hugging Face cache snapshot is named after its commit, which is returned as is. A local
    directory has no commit: its identity is SHA-256 over config.json's bytes and the name and
    size of every other file (weights are not read: hashing gigabytes would dominate a run).
    """
    if directory.parent.name == "snapshots" and len(directory.name) == 40:
        return directory.name
    digest = hashlib.sha256((directory / "config.json").read_bytes())
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        relative = path.relative_to(directory).as_posix()
        if relative != "config.json":
            digest.update(f"\0{relative}\0{path.stat().st_size}".encode())
    return "local-sha256:" + digest.hexdigest()


def checkpoint_parameter_counts(directory: Path) -> tuple[int, int]:
    """(all parameters, non-embedding parameters) from the safetensors headers.

    Raises:
        BackendError: the checkpoint has no safetensors files (counts need them).

    """
    files = sorted(directory.glob("*.safetensors"))
    if not files:
        raise BackendError(f"{directory} has no .safetensors files to count parameters from",
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


class HfTokenizer:
    """The model's tokenizer, loaded on first use (offline), for prompts and synthetic ids."""

    def __init__(self, config: ExperimentConfig) -> None:
        self._config = config
        self._tokenizer: Any = None

    @property
    def tokenizer(self) -> Any:
        """The transformers tokenizer."""
        if self._tokenizer is None:
            self._tokenizer = loading.load_tokenizer(self._config)
        return self._tokenizer

    def encode(self, text: str) -> list[int]:
        """Tokenise without special tokens."""
        ids: list[int] = self.tokenizer.encode(text, add_special_tokens=False)
        return ids

    def vocab_ids(self, limit: int | None = None) -> list[int]:
        """Ordinary token ids below ``limit`` (the model's vocabulary), specials excluded."""
        return loading.ordinary_token_ids(self.tokenizer, limit)

    def eos_token_id(self) -> int | None:
        """The end-of-sequence id (None when the tokenizer has none)."""
        value = self.tokenizer.eos_token_id
        return None if value is None else int(value)


def vocab_size(directory: Path) -> int | None:
    """``vocab_size`` from the checkpoint's config.json (None when absent)."""
    try:
        value = json.loads((directory / "config.json").read_text()).get("vocab_size")
    except (OSError, ValueError) as error:
        raise PreflightError(f"cannot read {directory / 'config.json'}: {error}",
                             fix="point model: at a complete checkpoint") from error
    return int(value) if isinstance(value, int) else None


def library_problem(module: str, backend: str, image: str) -> str | None:
    """A preflight problem when ``module`` is not installed, naming the image that has it.

    Only looked up (``find_spec``), never imported: importing an engine library can probe the
    GPU, and nothing may touch CUDA before the engine initialises.
    """
    if importlib.util.find_spec(module) is not None:
        return None
    return model_checks.problem(
        f"backend '{backend}' needs {module}, which is not installed here",
        f"run it in the {image} image (llem run --runner docker; build it with "
        f"llem images build {image}), or install {module} in this environment",
    )
