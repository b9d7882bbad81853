"""Write a study directory's ``report.html`` from its files (at the end of a study, or again)."""

from __future__ import annotations

from pathlib import Path

from orchestrator.report.study_data import StudyData
from orchestrator.study.report_inputs import ReportInputs

REPORT_NAME = "report.html"


def write_report(study_dir: Path, override: ReportInputs | None = None) -> Path:
    """Write ``study_dir/report.html`` atomically and return its path.

    Args:
        study_dir: a study directory (its manifest, summary, statistics and run results).
        override: derived-figure inputs given on the command line; each value set there
            replaces the study's ``report:`` section's.

    Raises:
        ConfigError: a file of the study directory is missing or damaged (named).
    """
    from orchestrator.report.html import write_html_report  # plotly loads only here

    data = StudyData.load(study_dir)
    inputs = data.summary.report_inputs
    if override is not None:
        inputs = inputs.merged(override)
    return write_html_report(data, inputs)
