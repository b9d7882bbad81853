"""``manifest.json``: the study's live checkpoint, rewritten atomically on every change.

A run's identity is its measurement config hash plus its cycle, so resume can match runs to a
study file regardless of order. ``runs`` lists the runs in planned order; ``executed`` lists
them in the order they actually started (retries, resumes and top-ups included).
``invocations`` lists every ``llem run`` (or ``run_study``) on the directory: the files it
loaded the study from and how it ran it. Only ``orchestrator.study_dir`` writes the file.

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
                       "node_failure", "preempted", "invalid_result", "runner_error"]


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
    gpus: list[int] | None = Field(
        None, description="Device indices its latest attempt was given (execution.gpus or "
        "--gpus); null: the runner's choice, or not recorded (an older llem).")
    environment: RunEnvironment | None = Field(
        None, description="Completed runs: what they measured on, as far as pooling goes "
        "(runner, image, harness, library and Python versions, GPU models and driver).")


class SkippedRecord(BaseModel):
    """A combination the cross-checks rejected, listed up front."""

    model_config = ConfigDict(extra="forbid")

    description: str
    reason: str


class KeptFile(BaseModel):
    """A file a study was built from, kept in the study directory byte for byte."""

    model_config = ConfigDict(extra="forbid")

    path: str = Field(description="The copy, relative to the study directory: study.yaml for "
                      "the study file of the first invocation, sources/<sha256[:12]>/<name> "
                      "for every other file.")
    origin: str = Field(description="Where the invocation read it (absolute path).")
    sha256: str = Field(description="SHA-256 of its bytes.")
    base: str | None = Field(None, description="Its base: value as written; its base is the "
                             "next file of the list.")


class Invocation(BaseModel):
    """One ``llem run`` (or ``run_study``) on the study directory, as it ran the study."""

    model_config = ConfigDict(extra="forbid")

    started_at: str = Field(description="When it opened the study directory (ISO-8601 UTC).")
    finished_at: str | None = Field(None, description="When it wrote its summary; null while "
                                    "it runs, or when it died before.")
    resumed: bool = Field(description="False for the invocation that made the directory.")
    study: str = Field(description="The study's name in the file it loaded.")
    files: list[KeptFile] = Field(description="The study file it loaded, then its base, that "
                                  "file's base, and so on.")
    runner: str = Field(description="docker or local (or a library caller's runner).")
    n_cycles: int = Field(description="Cycles planned once it had topped up (--cycles).")
    cycle_order: str = Field(description="sequential, interleaved or shuffled.")
    gpus: list[int] | None = Field(
        None, description="Device indices its runs were given (execution.gpus or --gpus); "
        "null: the runner's choice, or not recorded (an older llem).")
    config_gap_s: float = Field(description="Gap between runs (s) as applied; 0 with no_gaps.")
    cycle_gap_s: float = Field(description="Gap between cycles (s) as applied; 0 with no_gaps.")
    no_gaps: bool = Field(description="--no-gaps: the gaps and cool-downs were skipped.")
    timeout_s: float = Field(description="Per-run time limit (s).")
    first_executed: int = Field(description="Index in executed[] of its first run: it started "
                                "executed[first_executed:] up to the next invocation's.")
    interrupted: bool = Field(False, description="It was stopped (Ctrl-C, SIGTERM).")


class Manifest(BaseModel):
    """Every run of a study and where it stands."""

    model_config = ConfigDict(extra="forbid")

    schema_version: Literal["1"] = SCHEMA_VERSION
    study: str
    design_hash: str
    runner: str = Field(description="The runner of the latest invocation (a resume may use "
                        "another); each run records its own.")
    created_at: str = Field(default_factory=now_utc)
    cycle_order: str = Field(description="The latest invocation's cycle order (each "
                             "invocation records its own).")
    gpus: list[int] | None = Field(
        None, description="Device indices the runs were given (execution.gpus or --gpus, as "
        "of the latest invocation); null: the runner's choice.")
    runs: list[RunEntry] = Field(description="Every run, in planned order.")
    executed: list[str] = Field(
        default_factory=list, description="Run ids in the order they started, one entry per "
        "attempt: a run tried again after a failure or on resume appears again.")
    skipped: list[SkippedRecord] = Field(default_factory=list)
    invocations: list[Invocation] = Field(
        default_factory=list, description="Every invocation on the directory, in order.")
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
