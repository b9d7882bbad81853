"""Live study progress on stderr, fed by typed study events (each run's events.jsonl nested).

On a terminal: a runs bar plus a bar for the current run (phase, then requests done). With
``-v`` every phase change, warning and baseline is also printed as a line, and where stderr is
not a terminal (so no bar is drawn) the current run's progress too, about every tenth of it.
"""

from __future__ import annotations

from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from harness.schema.events import (
    BaselineEvent,
    Cooling,
    ErrorEvent,
    Gap,
    JobQueued,
    PhaseEvent,
    ProgressEvent,
    RunEvent,
    RunEventReceived,
    RunFinished,
    RunStarted,
    StudyEvent,
    UnknownEvent,
    WarningEvent,
)

PROGRESS_LINES = 10
"""Progress lines printed per run with -v when no bar can be drawn."""


class StudyProgress:
    """A runs bar plus a line for the current run's phase and batch progress.

    Args:
        console: where to draw (stderr).
        total_runs: runs planned.
        quiet: draw nothing.
        verbose: also print every phase change and warning.
    """

    def __init__(self, console: Console, total_runs: int, quiet: bool = False,
                 verbose: bool = False) -> None:
        self.console = console
        self.quiet = quiet
        self.verbose = verbose
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            disable=quiet,
            transient=False,
        )
        self.runs_task = self.progress.add_task("runs", total=total_runs)
        self.current = self.progress.add_task("", total=None, visible=False)
        self._printed_tenth = -1
        self._unknown_kinds: set[str] = set()

    def __enter__(self) -> StudyProgress:
        self.progress.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.progress.stop()

    def on_event(self, event: StudyEvent) -> None:
        """Update the display from one study event."""
        if isinstance(event, RunStarted):
            self._printed_tenth = -1
            # A fresh task: rich cannot set a used task's total back to "unknown".
            self.progress.remove_task(self.current)
            self.current = self.progress.add_task(f"{event.run_id}: starting", total=None)
        elif isinstance(event, RunFinished):
            self.progress.advance(self.runs_task)
            self.progress.update(self.current, visible=False)
            cause = f" ({event.cause})" if event.cause else ""
            self._say(f"{event.run_id}: {event.status}{cause}")
        elif isinstance(event, Gap):
            self.progress.update(self.current, description=(
                f"gap: next run in {event.remaining_s:.0f} s (of {event.seconds:g} s)"))
        elif isinstance(event, Cooling):
            self.progress.update(self.current,
                                 description=f"cooling down ({event.elapsed_s:.0f} s)")
        elif isinstance(event, RunEventReceived):
            self._run_event(event.run_id, event.event)
        elif isinstance(event, JobQueued):
            self._job(event)

    def _job(self, event: JobQueued) -> None:
        if event.node and event.position is None:
            text = f"{event.run_id}: job {event.job_id} {event.state.lower()} on {event.node}"
        else:
            place = f", position {event.position}" if event.position is not None else ""
            why = f", {event.reason}" if event.reason else ""
            text = f"{event.run_id}: job {event.job_id} {event.state.lower()}{place}{why}"
        self.progress.update(self.current, description=text)
        self._note(text)

    def _run_event(self, run_id: str, event: RunEvent) -> None:
        if isinstance(event, PhaseEvent):
            self.progress.update(self.current, description=f"{run_id}: {event.phase}")
            self._note(f"{run_id}: phase {event.phase}")
        elif isinstance(event, ProgressEvent):
            self.progress.update(self.current, completed=event.done, total=event.total)
            self._progress_line(run_id, event)
        elif isinstance(event, WarningEvent):
            self._note(f"{run_id}: warning {event.code}: {event.message}")
        elif isinstance(event, BaselineEvent):
            watts = ", ".join(f"{w:.1f}" for w in event.power_w)
            self._note(f"{run_id}: baseline {watts} W ({event.provenance})")
        elif isinstance(event, ErrorEvent):
            self._say(f"{run_id}: error in {event.phase}: {event.message}")
        elif isinstance(event, UnknownEvent) and event.event not in self._unknown_kinds:
            self._unknown_kinds.add(event.event)
            self._note(f"{run_id}: event '{event.event}' not understood (a newer harness?); "
                       "ignored")

    def _progress_line(self, run_id: str, event: ProgressEvent) -> None:
        # A live bar shows progress on a terminal; elsewhere -v prints about every tenth.
        if self.console.is_terminal or event.total <= 0:
            return
        tenth = event.done * PROGRESS_LINES // event.total
        if tenth > self._printed_tenth:
            self._printed_tenth = tenth
            self._note(f"{run_id}: {event.done}/{event.total} requests")

    def _note(self, text: str) -> None:
        if self.verbose:
            self._say(text)

    def _say(self, text: str) -> None:
        if not self.quiet:
            self.progress.console.print(text, highlight=False, markup=False, soft_wrap=True)
