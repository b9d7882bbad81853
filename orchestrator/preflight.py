"""What a study needs from this host before any run starts (problems come with their fix).

Runs never download, so every model must already be here: a local directory, or a Hugging Face
id in the host's cache (the cache the runs get, read-only). Checked once per study, so a
missing model is bad input (exit 2) instead of one failed run per configuration.
"""

from __future__ import annotations

from harness import models
from harness.errors import LlemError
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
        try:
            models.locate(*key)
        except LlemError as error:
            problems.append(str(error))
    return problems
