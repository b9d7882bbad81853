"""Runners by name. Where a study runs is not part of the study file."""

from __future__ import annotations

from harness.errors import ConfigError
from harness.schema.messages import did_you_mean
from orchestrator.runners.base import Runner, RunOutcome
from orchestrator.runners.local import LocalRunner

RUNNERS: dict[str, type[Runner]] = {"local": LocalRunner}


def make_runner(name: str) -> Runner:
    """Instantiate the runner called ``name``."""
    if name not in RUNNERS:
        guess = did_you_mean(name, list(RUNNERS))
        hint = f"; did you mean '{guess}'?" if guess else ""
        raise ConfigError(
            f"unknown runner '{name}'{hint}", fix=f"use --runner {' or '.join(RUNNERS)}"
        )
    return RUNNERS[name]()


__all__ = ["RUNNERS", "LocalRunner", "RunOutcome", "Runner", "make_runner"]
