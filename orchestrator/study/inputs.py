"""Local inputs of an experiment: their paths resolved against the study file, content pinned.

A relative ``model:`` directory or ``.jsonl`` dataset is relative to the file it is written in
(the study file, or the ``base:`` file that sets it), never to the directory ``llem`` runs in,
and becomes an absolute path. Its content identity then enters the configuration, and with it
the configuration hash: ``dataset_sha256`` (SHA-256 of the file's bytes) and ``model_digest``
(:func:`harness.models.resolved_revision`: config.json's bytes, every other file's name and
size). An edited dataset or model is therefore another configuration, which resume refuses
rather than pools. A hub id is left as written and never looked up: its revision names it.
A file that does not exist yet gets no digest; preflight reports it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from harness.io import file_sha256
from harness.models import resolved_revision
from harness.paths import local_input_paths
from harness.schema.config import ExperimentConfig
from orchestrator.study.errors import StudyFileError
from orchestrator.study.expand import Recipe


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
        config.model, config.dataset, _base(recipe, "model", origins),
        _base(recipe, "dataset", origins))
    if "dataset" in update and Path(update["dataset"]).is_file():
        path = Path(update["dataset"])
        update["dataset_sha256"] = _pinned(
            recipe, "dataset_sha256", config.dataset_sha256, file_sha256(path), path)
    if "model" in update and (Path(update["model"]) / "config.json").is_file():
        path = Path(update["model"])
        update["model_digest"] = _pinned(
            recipe, "model_digest", config.model_digest, resolved_revision(path), path)
    return config.model_copy(update=update) if update else config


def local_inputs(configs: Iterable[ExperimentConfig]) -> dict[str, str | None]:
    """Every local dataset and model directory the configurations read, with its digest.

    Keys are absolute paths; the value is None for a file or directory that is not there.
    """
    found: dict[str, str | None] = {}
    for config in configs:
        if config.dataset.endswith(".jsonl"):
            found[config.dataset] = config.dataset_sha256
        if Path(config.model).is_absolute():
            found[config.model] = config.model_digest
    return found


def _base(recipe: Recipe, key: str, origins: Mapping[Path, Path] | None) -> Path:
    written_in = recipe.locate((key,)).file
    if origins is None:
        return written_in.parent
    return origins.get(written_in.resolve(), written_in.parent)


def _pinned(recipe: Recipe, key: str, written: str | None, found: str, path: Path) -> str:
    if written is None or written == found:
        return found
    raise StudyFileError.at(
        recipe.locate((key,)),
        f"{key} {written} does not match {path} (its content gives {found})",
        key=key,
        fix=f"restore {path.name} to the content it pinned, or remove '{key}' to take the "
        "file as it is now",
    )
