"""``manifest.json``: the study's live checkpoint, rewritten atomically on every change.

A run's identity is its measurement config hash plus its cycle, so resume can match runs to a
study file regardless of order. ``runs`` lists the runs in planned order; ``executed`` lists
them in the order they actually started (retries, resumes and top-ups included). Only
``orchestrator.study_dir`` writes the file.

Each run records the runner that started it and, once completed, the measurement-relevant
environment of its result (:mod:`orchestrator.run_environment`); the top-level ``runner`` is
the latest invocation's, so a resume with another runner never leaves it naming the wrong one.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from harness.schema.reading import read_model
from harness.schema.result import SCHEMA_VERSION
from orchestrator.run_environment import RunEnvironment

MANIFEST_NAME = "manifest.json"
RunStatus = Literal["pending", "running", "completed", "failed", "skipped", "interrupted"]
FailureCause = Literal["error", "oom", "killed", "timeout", "stalled", "interrupted",
                       "invalid_result"]


def now_utc() -> str:
    """ISO-8601 UTC timestamp with seconds."""
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


class Failure(BaseModel):
    """Why a run did not complete."""

    model_config = ConfigDict(extra="forbid")

    cause: FailureCause
    message: str
    exit_code: int | None = None
    log_tail: list[str] = Field(default_factory=list)


class RunEntry(BaseModel):
    """One (configuration, cycle) of a study."""

    model_config = ConfigDict(extra="forbid")

    run_id: str = Field(description="Run directory name.")
    config_hash: str
    cycle: int
    slug: str
    backend: str
    status: RunStatus = "pending"
    started_at: str | None = None
    finished_at: str | None = None
    result_path: str | None = Field(None, description="Relative to the study directory.")
    failure: Failure | None = None
    runner: str | None = Field(None, description="The runner of the run's latest attempt.")
    environment: RunEnvironment | None = Field(
        None, description="Completed runs: what they measured on, as far as pooling goes "
        "(runner, image, harness, library and Python versions, GPU models and driver).")


class SkippedRecord(BaseModel):
    """A combination the cross-checks rejected, listed up front."""

    model_config = ConfigDict(extra="forbid")

    description: str
    reason: str


class Manifest(BaseModel):
    """Every run of a study and where it stands."""

    model_config = ConfigDict(extra="forbid")

    schema_version: Literal["1"] = SCHEMA_VERSION
    study: str
    design_hash: str
    runner: str = Field(description="The runner of the latest invocation (a resume may use "
                        "another); each run records its own.")
    created_at: str = Field(default_factory=now_utc)
    cycle_order: str
    runs: list[RunEntry] = Field(description="Every run, in planned order.")
    executed: list[str] = Field(
        default_factory=list, description="Run ids in the order they started, one entry per "
        "attempt: a run tried again after a failure or on resume appears again.")
    skipped: list[SkippedRecord] = Field(default_factory=list)
    source_dir: str | None = Field(
        None, description="Directory of the study file the study was created from: relative "
        "paths in the study directory's copy of it resolve against this one.")
    inputs: dict[str, str | None] = Field(
        default_factory=dict, description="Local datasets and model directories the study "
        "reads (absolute paths) and their content digests (dataset_sha256, model_digest); "
        "resume refuses, naming the file, when one has changed.")

    def counts(self) -> dict[str, int]:
        """Number of runs per status."""
        counts: dict[str, int] = {}
        for run in self.runs:
            counts[run.status] = counts.get(run.status, 0) + 1
        return counts

    @classmethod
    def load(cls, study_dir: Path) -> Manifest:
        """Read manifest.json; a missing, damaged or newer file is a ConfigError naming it."""
        return read_model(study_dir / MANIFEST_NAME, cls,
                          fix="pass a study directory made by llem run, with its manifest.json "
                          "intact (restore it from a backup if it was damaged)")
