"""llem's host side: study loading, runners, manifest, statistics, reports, CLI."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from harness._version import __version__
from harness.schema.events import StudyEvent
from orchestrator.execute import (
    StudyExecution,
    copy_study_file,
    new_manifest,
    new_study_dir,
    plan,
)
from orchestrator.runners import Runner, make_runner
from orchestrator.study import Study, load_study
from orchestrator.tables import StudyResult


def run_study(
    study: Study | Path | str,
    runner: Runner | str = "local",
    on_event: Callable[[StudyEvent], None] | None = None,
    *,
    output: Path = Path("results"),
    no_gaps: bool = False,
) -> tuple[StudyResult, Path]:
    """Run a whole study and return its summary and the study directory.

    Args:
        study: a loaded ``Study`` or the path of a study file.
        runner: a ``Runner`` or its name (``local``).
        on_event: receives typed study events (``harness.schema.events.StudyEvent``): run
            started and finished, gaps, cooling, and every run event (phases, progress,
            warnings, heartbeats, ...) wrapped in ``RunEventReceived``.
        output: output root; the study directory is created inside it.
        no_gaps: skip the configured gaps between runs and cycles.
    """
    loaded = study if isinstance(study, Study) else load_study(Path(study))
    active = runner if isinstance(runner, Runner) else make_runner(runner)
    runs = plan(loaded)
    study_dir = new_study_dir(loaded, output)
    copy_study_file(loaded, study_dir)
    manifest = new_manifest(loaded, runs, active.name)
    manifest.save(study_dir)
    execution = StudyExecution(loaded, study_dir, active, on_event, no_gaps=no_gaps)
    return execution.execute(runs, manifest), study_dir


__all__ = ["StudyResult", "__version__", "load_study", "run_study"]
