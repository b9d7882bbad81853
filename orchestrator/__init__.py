"""llem's host side: study loading, runners, manifest, statistics, reports, CLI."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

from harness._version import __version__
from harness.schema.events import ResumeNote, StudyEvent
from orchestrator.execute import StudyExecution
from orchestrator.runners import Runner, make_runner
from orchestrator.settings import resolve_runner
from orchestrator.study import Study, load_study
from orchestrator.study_dir import open_study_dir
from orchestrator.summary import StudyResult, StudySummary


def run_study(
    study: Study | Path | str,
    runner: Runner | str | None = None,
    on_event: Callable[[StudyEvent], None] | None = None,
    *,
    output: Path = Path("results"),
    resume: Path | None = None,
    cycles: int | None = None,
    no_gaps: bool = False,
) -> tuple[StudySummary, Path]:
    """Run a whole study (or resume one) and return its summary and the study directory.

    The study directory is made, locked and checkpointed exactly as ``llem run`` does it.

    Args:
        study: a loaded ``Study`` or the path of a study file.
        runner: a ``Runner`` or its name; None picks it as ``llem run`` does: LLEM_RUNNER,
            the user config, then the default (docker).
        on_event: receives typed study events (``harness.schema.events.StudyEvent``): run
            started and finished, gaps, cooling, every run event (phases, progress, warnings,
            heartbeats, ...) wrapped in ``RunEventReceived``, and on resume a ``ResumeNote``
            for each result moved aside (a Python warning without ``on_event``).
        output: output root; a new study directory is created inside it.
        resume: continue this study directory instead (pending, failed, interrupted runs).
        cycles: with ``resume``: top up to this many cycles.
        no_gaps: skip the configured gaps between runs and cycles.

    Unlike ``llem run``, this does not check the machine first or fetch hub models: call
    ``orchestrator.preflight.study_problems(study, runner, fetch=True, say=print)`` before it
    to get the same refusals (engine, images, GPUs, models) before anything is written.

    Raises:
        ConfigError: bad input, including a study directory another process is working on.
    """
    loaded = study if isinstance(study, Study) else load_study(Path(study))
    active = runner if isinstance(runner, Runner) else make_runner(resolve_runner(runner)[0])
    with open_study_dir(loaded, active.name, output_root=output, resume_dir=resume,
                        cycles=cycles, no_gaps=no_gaps) as opened:
        for note in opened.notes:
            if on_event is None:
                warnings.warn(f"resume: {note}", stacklevel=2)
            else:
                on_event(ResumeNote(note=note))
        execution = StudyExecution(loaded, opened.path, active, on_event, no_gaps=no_gaps)
        return execution.execute(opened.runs, opened.manifest), opened.path


__all__ = ["StudyResult", "StudySummary", "__version__", "load_study", "run_study"]
