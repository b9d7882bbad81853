"""``summary.json``: what a study set out to do, how it was executed and what it produced."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from harness.schema.reading import read_model
from harness.schema.result import SCHEMA_VERSION
from orchestrator.manifest import FailureCause, Invocation, Manifest, SkippedRecord, now_utc
from orchestrator.study import Study
from orchestrator.study.report_inputs import ReportInputs

SUMMARY_NAME = "summary.json"


class ExecutedProtocol(BaseModel):
    """Cycles, order and gaps as the latest invocation executed the study.

    ``n_cycles`` and ``realised_order`` cover the whole study; each invocation's order, gaps
    and time limit are in ``StudySummary.invocations``.
    """

    model_config = ConfigDict(extra="forbid")

    n_cycles: int = Field(description="Highest cycle in the manifest (top-ups included).")
    cycle_order: str = Field(description="sequential, interleaved or shuffled.")
    config_gap_s: float = Field(description="Gap between runs (s); 0 with --no-gaps.")
    cycle_gap_s: float = Field(description="Gap between cycles (s); 0 with --no-gaps.")
    timeout_s: float = Field(description="Per-run time limit (s).")
    gpus: list[int] | None = Field(
        None, description="Device indices the runs were given (execution.gpus or --gpus); "
        "null: the runner's choice.")
    realised_order: list[str] = Field(
        description="Run ids in the order they started, one entry per attempt (the "
        "manifest's executed list): retries, resumes and top-ups included.")


class RunFailure(BaseModel):
    """Why one run did not complete (the manifest's failure, without the log tail)."""

    model_config = ConfigDict(extra="forbid")

    run_id: str
    cause: FailureCause
    message: str
    exit_code: int | None = None


class StudySummary(BaseModel):
    """``summary.json``: what a study set out to do and what it produced."""

    model_config = ConfigDict(extra="forbid")

    schema_version: Literal["1"] = SCHEMA_VERSION
    study: str = Field(description="The name the study directory was made with; each "
                       "invocation's name is in invocations.")
    design_hash: str
    runner: str = Field(description="The runner of this invocation.")
    started_at: str = Field(description="When this invocation started (ISO-8601 UTC).")
    finished_at: str = Field(description="When it wrote this summary (ISO-8601 UTC).")
    interrupted: bool = False
    protocol: ExecutedProtocol
    counts: dict[str, int] = Field(description="Number of runs per manifest status.")
    failures: list[RunFailure] = Field(default_factory=list)
    skipped: list[SkippedRecord] = Field(default_factory=list)
    result_files: list[str] = Field(default_factory=list,
                                    description="Relative to the study directory.")
    results_table: str | None = Field(None, description="results.parquet, when any run "
                                      "completed.")
    report: str | None = Field(None, description="report.html, once written (after this "
                               "summary: a summary without it has no report yet).")
    invocations: list[Invocation] = Field(
        default_factory=list, description="Every invocation on the study directory, this one "
        "last: when, the files it loaded the study from, its name, runner, cycles, order, "
        "gaps and time limit as run (the manifest's invocations).")
    warnings: list[str] = Field(
        default_factory=list, description="What the reader of the results must know: "
        "configurations whose cycles ran in different environments and were not pooled "
        "(stats.json's warnings).")
    report_inputs: ReportInputs = Field(
        default_factory=ReportInputs, description="The study's report: section (carbon "
        "intensity, electricity price) that llem report derives emissions and cost from.")

    @property
    def failed(self) -> int:
        """Number of failed or interrupted runs."""
        return self.counts.get("failed", 0) + self.counts.get("interrupted", 0)

    @classmethod
    def load(cls, study_dir: Path) -> StudySummary:
        """Read summary.json; a missing, damaged or newer file is a ConfigError naming it."""
        return read_model(study_dir / SUMMARY_NAME, cls,
                          fix="run llem run --resume on the study directory to write it again")


def study_summary(study: Study, manifest: Manifest, runner: str, started_at: str, *,
                  interrupted: bool, no_gaps: bool,
                  results_table: str | None,
                  warnings: list[str] | None = None) -> StudySummary:
    """The summary of ``manifest`` as it stands now."""
    execution = study.execution
    return StudySummary(
        study=manifest.study,
        design_hash=study.design_hash,
        runner=runner,
        started_at=started_at,
        finished_at=now_utc(),
        interrupted=interrupted,
        protocol=ExecutedProtocol(
            n_cycles=max((r.cycle for r in manifest.runs), default=0),
            cycle_order=execution.cycle_order,
            config_gap_s=0.0 if no_gaps else execution.config_gap_s,
            cycle_gap_s=0.0 if no_gaps else execution.cycle_gap_s,
            timeout_s=execution.timeout_s,
            gpus=execution.gpus,
            realised_order=list(manifest.executed),
        ),
        counts=manifest.counts(),
        failures=[RunFailure(run_id=r.run_id, **r.failure.model_dump(exclude={"log_tail"}))
                  for r in manifest.runs if r.failure is not None],
        skipped=list(manifest.skipped),
        result_files=[r.result_path for r in manifest.runs if r.result_path],
        results_table=results_table,
        invocations=list(manifest.invocations),
        warnings=list(warnings or []),
        report_inputs=study.report,
    )


StudyResult = StudySummary
"""The name the library interface (``orchestrator.run_study``) has always returned."""
