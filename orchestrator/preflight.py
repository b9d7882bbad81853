"""What a study needs from this host before any run starts (problems come with their fix).

Runs never download, so every model must already be here: a local directory, or a Hugging Face
id complete in the host's cache (the cache the runs get, read-only), put there by ``llem fetch``
or by ``llem run`` itself (see orchestrator/fetch.py). Both questions, hub id or path and complete
or not, are answered by harness/models.py. Checked once per study, so a missing model is
bad input (exit 2) instead of one failed run per configuration.
"""

from __future__ import annotations

from harness import models
from harness.errors import LlemError, PreflightError
from orchestrator.fetch import HubModel
from orchestrator.study import Study


def model_problems(study: Study) -> list[str]:
    """Every distinct model of the study that is not available offline on this host."""
    problems = []
    seen: set[tuple[str, str | None]] = set()
    for entry in study.experiments:
        key = (entry.config.model, entry.config.revision)
        if key in seen:
            continue
        seen.add(key)
        if models.is_hub_id(key[0]):
            problems += _hub_problem(HubModel(*key), study)
            continue
        try:
            models.locate(*key)
        except LlemError as error:
            problems.append(str(error))
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
