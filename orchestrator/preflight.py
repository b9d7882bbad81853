"""What a study needs from this host before any run starts (problems come with their fix).

Runs never download, so every model must already be here: a local directory, or a Hugging Face
id complete in the host's cache (the cache the runs get, read-only), put there by ``llem fetch``
or by ``llem run`` itself (see orchestrator/fetch.py). Both questions, hub id or path and complete
or not, are answered by harness/models.py. Checked once per study, so a missing model is
bad input (exit 2) instead of one failed run per configuration. Prompt datasets (a ``.jsonl``
file, a built-in set) are read and checked line by line here too, with the harness's own
reader, so a missing file or a bad line is refused before the first run as a model is.
"""

from __future__ import annotations

from collections.abc import Callable

from harness import models
from harness.datasets import check_dataset
from harness.errors import LlemError, PreflightError
from orchestrator.fetch import HubModel, fetch_missing, hub_model, hub_models
from orchestrator.runners.base import Runner
from orchestrator.study import Study


def study_problems(study: Study, runner: Runner, *, fetch: bool,
                   say: Callable[[str], None]) -> list[str]:
    """Everything that stops ``study`` from running here through ``runner``, each with its fix.

    The runner's own checks come first (engine, images, GPUs); when they pass and ``fetch`` is
    set, hub models missing from the host's cache are fetched (progress through ``say``); then
    every model must be available offline and every prompt dataset readable. ``llem run``
    calls this before anything is written; a library caller of ``orchestrator.run_study`` calls
    it the same way.

    Raises:
        ConfigError: a fetch failed (not found, gated, unreachable hub), with its fix.
    """
    problems = runner.preflight({entry.config.backend for entry in study.experiments},
                                study.execution.gpus)
    if not problems and fetch:
        fetch_missing(hub_models(study), say)
    return problems + model_problems(study) + dataset_problems(study)


def model_problems(study: Study) -> list[str]:
    """Every distinct model of the study that is not available offline on this host.

    A hub model is looked up at the revision its runs load (``load_revision``: the commit the
    study pinned), not where its branch points now: a fetch may have moved ``refs/main``.
    """
    problems = []
    seen: set[tuple[str, str | None]] = set()
    for entry in study.experiments:
        key = (entry.config.model, entry.config.load_revision)
        if key in seen:
            continue
        seen.add(key)
        if models.is_hub_id(key[0]):
            problems += _hub_problem(hub_model(entry.config), study)
            continue
        try:
            models.locate(*key)
        except LlemError as error:
            problems.append(str(error))
    return problems


def dataset_problems(study: Study) -> list[str]:
    """Every problem of the study's prompt datasets (each distinct dataset read once).

    A relative path is read from the working directory, as the runs read it.
    """
    problems: list[str] = []
    checked: set[str] = set()
    for entry in study.experiments:
        if entry.config.dataset not in checked:
            checked.add(entry.config.dataset)
            problems += check_dataset(entry.config)
    return problems


def _hub_problem(model: HubModel, study: Study) -> list[str]:
    gaps = models.cache_gaps(model.model, model.pinned)
    if gaps == []:
        return []
    state = "is not" if gaps is None else f"is incomplete (no {' and no '.join(gaps)})"
    return [str(PreflightError(
        f"model {model} {state} in the Hugging Face cache ({models.hub_cache()}), and runs "
        "never download",
        fix=f"llem fetch {study.source_path} (or llem run without --offline, which fetches it)"))]
