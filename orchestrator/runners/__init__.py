"""Runners by name. Where a study runs is not part of the study file."""

from __future__ import annotations

from typing import Any

from harness.errors import ConfigError
from harness.schema.messages import did_you_mean
from orchestrator.runners.base import Runner, RunOutcome
from orchestrator.runners.docker.runner import DockerRunner
from orchestrator.runners.local import LocalRunner
from orchestrator.runners.slurm.runner import SlurmRunner

RUNNERS: dict[str, type[Runner]] = {"docker": DockerRunner, "local": LocalRunner,
                                    "slurm": SlurmRunner}


def make_runner(name: str, **options: Any) -> Runner:
    """Instantiate the runner called ``name`` with its options (unknown ones are dropped)."""
    if name not in RUNNERS:
        guess = did_you_mean(name, list(RUNNERS))
        hint = f"; did you mean '{guess}'?" if guess else ""
        raise ConfigError(
            f"unknown runner '{name}'{hint}", fix=f"use --runner {' or '.join(RUNNERS)}"
        )
    if name == "docker":
        return DockerRunner(**{k: v for k, v in options.items()
                               if v is not None and k in ("image", "images", "mem_limit")})
    if name == "slurm":
        return SlurmRunner(slurm=options.get("slurm"), image=options.get("image"))
    return RUNNERS[name]()


__all__ = ["RUNNERS", "DockerRunner", "LocalRunner", "RunOutcome", "Runner", "SlurmRunner",
           "make_runner"]
