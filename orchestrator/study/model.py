"""What loading a study file produces."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from harness.schema.config import ExperimentConfig
from orchestrator.study.document import SourceFile
from orchestrator.study.execution import ExecutionConfig
from orchestrator.study.report_inputs import ReportInputs


@dataclass(frozen=True)
class StudyEntry:
    """One configuration to measure (every cycle runs it once).

    Attributes:
        config: the resolved, validated experiment.
        slug: a short filesystem-safe description of what varies (``pytorch-bf16-bs8``).
        origin: where it comes from: ``sweep``, ``file`` (a single-experiment file) or
            ``experiments[i]``.

    """

    config: ExperimentConfig
    slug: str
    origin: str


@dataclass(frozen=True)
class SkippedEntry:
    """A combination the cross-checks reject; listed up front, never run.

    Attributes:
        description: which combination (its slug and origin).
        reason: every cross-check it fails, each saying what is allowed.

    """

    description: str
    reason: str


@dataclass(frozen=True)
class Study:
    """A loaded study: the experiments to run and how to run them.

    Attributes:
        name: the study's ``name:``, or the file name without its extension.
        source_path: the file as given.
        source_text: its text (line ends read as LF).
        experiments: the configurations, in design order, duplicates removed.
        skipped: combinations rejected by the cross-checks, with their reasons.
        warnings: things the user should know (collapsed duplicates, for example).
        execution: cycles, order, gaps, devices and time limits.
        report: inputs of the report's derived figures (carbon intensity, price).
        design_hash: first 16 hex digits of SHA-256 over the set of the experiments'
            canonical JSON; independent of their order, of ``execution`` and of ``name``.
        files: every file the study was built from, as read (bytes): the study file first,
            then its base, that file's base, and so on.

    """

    name: str
    source_path: Path
    source_text: str
    experiments: list[StudyEntry]
    skipped: list[SkippedEntry]
    warnings: list[str]
    execution: ExecutionConfig
    report: ReportInputs
    design_hash: str
    files: tuple[SourceFile, ...]
