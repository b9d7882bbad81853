"""Local inputs of an experiment: their paths resolved against the study file, content pinned.

A relative ``model:`` directory or ``.jsonl`` dataset is relative to the file it is written in
(the study file, or the ``base:`` file that sets it), never to the directory ``llem`` runs in,
and becomes an absolute path. Its content identity then enters the configuration, and with it
the configuration hash: ``dataset_sha256`` (SHA-256 of the file's bytes) and ``model_digest``
(:func:`harness.models.resolved_revision`: SHA-256 over every file's path and SHA-256, cached
per file by :mod:`harness.digests`). An edited dataset or model is therefore another
configuration, which resume refuses rather than pools. A local LoRA adapter directory
(``lora.adapter``) is resolved the same way and pinned by ``lora.adapter_digest`` (the same
directory digest as a local model's). A hub adapter id is left as it is and not pinned: no
digest, so a retrained adapter pushed under the same id keeps the configuration hash (pin it by
downloading it and naming the local directory). A hub model id is never downloaded for this:
at a branch or tag (or none: main) its ``model_digest`` is the commit the host's cache holds
for it (:func:`harness.models.cached_commit`), which the runs then load; at a commit it gets
none. A file or hub model that is not there yet gets no digest; preflight reports (or fetches)
it, and ``llem run`` loads the study again after a fetch.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from harness.digests import directory_digest
from harness.io import file_sha256
from harness.models import (
    LOCAL_DIGEST_PREFIX,
    cached_commit,
    changed_model_files,
    is_commit,
    is_hub_id,
    resolved_revision,
)
from harness.paths import local_adapter_path, local_input_paths
from harness.schema.config import ExperimentConfig
from orchestrator.study.errors import StudyFileError
from orchestrator.study.expand import Recipe
from orchestrator.study.keys import ConfigPath


def pin_inputs(config: ExperimentConfig, recipe: Recipe,
               origins: Mapping[Path, Path] | None = None) -> ExperimentConfig:
    """``config`` with its local paths absolute and their content digests filled in.

    Args:
        config: the built experiment.
        recipe: where its settings were written (each path resolves against its own file).
        origins: the directory each file read stood in originally, by its resolved path (a
            resume from the study directory's copies resolves against the originals' places).

    Raises:
        StudyFileError: a digest written in the file does not match the file's content.

    """
    update: dict[str, Any] = local_input_paths(
        config.model, config.dataset, _base(recipe, ("model",), origins),
        _base(recipe, ("dataset",), origins))
    if "dataset" in update and Path(update["dataset"]).is_file():
        path = Path(update["dataset"])
        update["dataset_sha256"] = _pinned(
            recipe, ("dataset_sha256",), config.dataset_sha256, file_sha256(path), str(path),
            f"restore {path.name} to the content it pinned")
    if "model" in update and (Path(update["model"]) / "config.json").is_file():
        path = Path(update["model"])
        update["model_digest"] = _pinned(
            recipe, ("model_digest",), config.model_digest, resolved_revision(path), str(path),
            f"restore {path.name} to the content it pinned")
    elif "model" not in update and not is_commit(config.revision):
        commit = cached_commit(config.model, config.revision)
        if commit is not None:
            at = f"{config.model} at {config.revision or 'main'} in the Hugging Face cache"
            update["model_digest"] = _pinned(
                recipe, ("model_digest",), config.model_digest, commit, at,
                "set revision: to the commit you mean")
    if config.lora is not None:
        update.update(_pinned_adapter(config, recipe, origins))
    return config.model_copy(update=update) if update else config


def _pinned_adapter(config: ExperimentConfig, recipe: Recipe,
                    origins: Mapping[Path, Path] | None) -> dict[str, Any]:
    """``{"lora": ...}`` with a local adapter's absolute path and digest; {} for a hub id."""
    assert config.lora is not None
    adapter = local_adapter_path(config.lora.adapter, _base(recipe, ("lora", "adapter"), origins))
    if adapter is None:
        return {}
    update: dict[str, Any] = {"adapter": adapter}
    path = Path(adapter)
    if path.is_dir():
        update["adapter_digest"] = _pinned(
            recipe, ("lora", "adapter_digest"), config.lora.adapter_digest,
            LOCAL_DIGEST_PREFIX + directory_digest(path), str(path),
            f"restore {path.name} to the content it pinned")
    return {"lora": config.lora.model_copy(update=update)}


def unpinned_hub_models(configs: Iterable[ExperimentConfig]) -> bool:
    """Whether a hub model at a branch or tag was not in the cache when the study was loaded.

    Its commit is unknown until it is fetched: load the study again after fetching, so that
    the configuration hash names the commit the runs read.
    """
    return any(config.model_digest is None and is_hub_id(config.model)
               and not is_commit(config.revision) for config in configs)


def local_inputs(configs: Iterable[ExperimentConfig]) -> dict[str, str | None]:
    """Every local dataset, model directory and LoRA adapter the study reads, with its digest.

    Keys are absolute paths; the value is None for a file or directory that is not there.
    """
    found: dict[str, str | None] = {}
    for config in configs:
        if config.dataset.endswith(".jsonl"):
            found[config.dataset] = config.dataset_sha256
        if Path(config.model).is_absolute():
            found[config.model] = config.model_digest
        if config.lora is not None and Path(config.lora.adapter).is_absolute():
            found[config.lora.adapter] = config.lora.adapter_digest
    return found


def changed_content(path: Path, digest: str | None) -> str:
    """What changed in the local model directory ``path`` since it had ``digest``, in words.

    "" for a dataset, or when the files behind ``digest`` are no longer known.
    """
    if digest is None or not path.is_dir():
        return ""
    if not digest.startswith(LOCAL_DIGEST_PREFIX):
        return " (its digest was taken by an older llem, from file names and sizes only)"
    changed = changed_model_files(path, digest)
    if not changed:
        return ""
    more = f" and {len(changed) - 5} more" if len(changed) > 5 else ""
    return f" (files changed, added or removed: {', '.join(changed[:5])}{more})"


def _base(recipe: Recipe, key: ConfigPath, origins: Mapping[Path, Path] | None) -> Path:
    written_in = recipe.locate(key).file
    if origins is None:
        return written_in.parent
    return origins.get(written_in.resolve(), written_in.parent)


def _pinned(recipe: Recipe, path: ConfigPath, written: str | None, found: str, source: str,
            restore: str) -> str:
    if written is None or written == found:
        return found
    key = ".".join(str(part) for part in path)
    raise StudyFileError.at(
        recipe.locate(path),
        f"{key} {written} does not match {source} (its content gives {found})",
        key=key,
        fix=f"{restore}, or remove '{key}' to take it as it is now",
    )
