"""The progress display, fed a scripted stream of typed study events."""

from __future__ import annotations

import io

from rich.console import Console

from harness.schema.events import (
    BaselineEvent,
    DoneEvent,
    ErrorEvent,
    Gap,
    HeartbeatEvent,
    PhaseEvent,
    PowerEvent,
    ProgressEvent,
    RunEvent,
    RunEventReceived,
    RunFinished,
    RunStarted,
    StudyEvent,
    UnknownEvent,
    WarningEvent,
)
from orchestrator.progress import StudyProgress

RUN = "001_bs1_c1"


def run_events(*events: RunEvent) -> list[StudyEvent]:
    return [RunEventReceived(run_id=RUN, event=event) for event in events]


def one_run() -> list[StudyEvent]:
    return [
        RunStarted(run_id=RUN),
        *run_events(
            PhaseEvent(phase="preflight"),
            WarningEvent(code="no_energy_sensor", message="no NVIDIA GPU"),
            HeartbeatEvent(phase="preflight"),
            PhaseEvent(phase="baseline"),
            BaselineEvent(provenance="fresh", power_w=[61.25]),
            PhaseEvent(phase="load"),
            PowerEvent(power_w=[120.0]),
            PhaseEvent(phase="measure"),
            *[ProgressEvent(done=done, total=20) for done in range(1, 21)],
            UnknownEvent(event="gpu_on_fire"),
            UnknownEvent(event="gpu_on_fire"),
            DoneEvent(output_tokens=160, duration_s=1.5),
        ),
        RunFinished(run_id=RUN, status="completed"),
    ]


def current_task(progress: StudyProgress):  # type: ignore[no-untyped-def]
    return next(t for t in progress.progress.tasks if t.id == progress.current)


def display(verbose: bool, terminal: bool = False) -> tuple[StudyProgress, io.StringIO]:
    out = io.StringIO()
    console = Console(file=out, force_terminal=terminal, width=120)
    return StudyProgress(console, total_runs=2, verbose=verbose), out


def test_verbose_prints_phases_warnings_baseline_and_progress():
    progress, out = display(verbose=True)
    with progress:
        for event in one_run():
            progress.on_event(event)
    lines = out.getvalue().splitlines()
    for phase in ("preflight", "baseline", "load", "measure"):
        assert f"{RUN}: phase {phase}" in lines
    assert f"{RUN}: warning no_energy_sensor: no NVIDIA GPU" in lines
    assert f"{RUN}: baseline 61.2 W (fresh)" in lines
    # No live bar off a terminal: the run's progress is printed about every tenth instead.
    printed = [line for line in lines if line.endswith(" requests")]
    assert printed == [f"{RUN}: {done}/20 requests" for done in [1, *range(2, 21, 2)]]
    assert sum("gpu_on_fire" in line for line in lines) == 1  # noted once, not a crash
    assert f"{RUN}: completed" in lines
    assert lines.index(f"{RUN}: phase load") < lines.index(f"{RUN}: phase measure")


def test_the_per_run_bar_moves_with_progress_events():
    progress, _ = display(verbose=False)
    events = one_run()
    measure_at = events.index(RunEventReceived(run_id=RUN, event=PhaseEvent(phase="measure")))
    with progress:
        for event in events[:measure_at + 1]:
            progress.on_event(event)
        task = current_task(progress)
        assert task.description == f"{RUN}: measure" and task.visible
        assert task.completed == 0 and task.total is None
        for event in events[measure_at + 1:measure_at + 8]:
            progress.on_event(event)
        assert (task.completed, task.total) == (7, 20)
        for event in events[measure_at + 8:]:
            progress.on_event(event)
        assert progress.progress.tasks[0].completed == 1  # the runs bar
        assert not task.visible
        progress.on_event(RunStarted(run_id="002_bs2_c1"))
        task = current_task(progress)
        assert len(progress.progress.tasks) == 2  # the runs bar and this run's
        assert (task.completed, task.total, task.visible) == (0, None, True)


def test_without_verbose_only_ends_and_errors_are_printed():
    progress, out = display(verbose=False)
    with progress:
        for event in [*one_run(), RunStarted(run_id="002_x_c1"),
                      RunEventReceived(run_id="002_x_c1",
                                       event=ErrorEvent(phase="load", type="OSError",
                                                        message="disk full")),
                      RunFinished(run_id="002_x_c1", status="failed", cause="stalled"),
                      Gap(seconds=60.0, remaining_s=59.0)]:
            progress.on_event(event)
    text = out.getvalue()
    assert "phase" not in text and "warning" not in text and "requests" not in text
    assert f"{RUN}: completed" in text
    assert "002_x_c1: error in load: disk full" in text
    assert "002_x_c1: failed (stalled)" in text


def test_on_a_terminal_the_bar_shows_progress_and_no_progress_lines_are_printed():
    progress, out = display(verbose=True, terminal=True)
    with progress:
        for event in one_run():
            progress.on_event(event)
    assert "requests" not in out.getvalue()
    assert f"{RUN}: phase measure" in out.getvalue()
