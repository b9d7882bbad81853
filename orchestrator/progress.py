"""Live study progress on stderr, fed by the events each run appends to events.jsonl."""

from __future__ import annotations

from types import TracebackType
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


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

    def __enter__(self) -> StudyProgress:
        self.progress.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.progress.stop()

    def on_event(self, event: dict[str, Any]) -> None:
        """Update the display from one study or run event."""
        kind = event.get("event")
        run_id = event.get("run_id", "")
        if kind == "run_started":
            self.progress.update(self.current, description=f"{run_id}: starting", visible=True,
                                 completed=0, total=None)
        elif kind == "run_finished":
            self.progress.advance(self.runs_task)
            self.progress.update(self.current, visible=False)
            self._say(f"{run_id}: {event.get('status')}")
        elif kind == "gap":
            self.progress.update(self.current, description=(
                f"gap: next run in {event['remaining_s']:.0f} s (of {event['seconds']:g} s)"))
        elif kind == "cooling":
            self.progress.update(self.current,
                                 description=f"cooling down ({event['elapsed_s']:.0f} s)")
        elif kind == "run_event":
            self._run_event(run_id, event)

    def _run_event(self, run_id: str, event: dict[str, Any]) -> None:
        inner = event.get("event")
        if inner == "phase":
            self.progress.update(self.current, description=f"{run_id}: {event['phase']}")
            if self.verbose:
                self._say(f"{run_id}: phase {event['phase']}")
        elif inner == "progress":
            self.progress.update(self.current, completed=event["done"], total=event["total"])
        elif inner == "warning" and self.verbose:
            self._say(f"{run_id}: warning {event['code']}: {event['message']}")
        elif inner == "error":
            self._say(f"{run_id}: error in {event.get('phase')}: {event.get('message')}")

    def _say(self, text: str) -> None:
        if not self.quiet:
            self.progress.console.print(text, highlight=False, markup=False)
