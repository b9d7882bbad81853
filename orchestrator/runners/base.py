"""The runner interface: start one run directory's experiment, wait, classify the end.

A runner never interprets the experiment: it starts ``python -m harness run
<run-dir>/experiment.json`` in some isolation primitive and reports how that ended. The wait
loop shared by every runner follows ``events.jsonl``: each event is passed on, a run whose
events stop (no heartbeat either) for ``stall_timeout_s`` while it still runs is stopped as
``stalled``, and one whose phase ``load`` lasts longer than ``load_timeout_s`` is stopped as a
``timeout``.
"""

from __future__ import annotations

import abc
import contextlib
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from harness.errors import LlemError
from harness.schema.events import (
    PhaseEvent,
    RunEvent,
    StartEvent,
    StudyEvent,
    parse_run_event,
)

EndKind = Literal["ok", "error", "oom", "killed", "timeout", "stalled", "interrupted",
                  "node_failure", "preempted", "runner_error"]
EventCallback = Callable[[RunEvent], None]

LOG_NAME = "container.log"
"""The run's captured stdout and stderr, whatever the runner (SPEC file name)."""

LOG_TAIL_LINES = 20
HARNESS_STOPPED = 130
"""The harness's own exit status after it caught SIGTERM or SIGINT and finalised its files."""
LOAD_PHASE = "load"
"""The harness's phase from the start of the model load to the start of the warmup."""


@dataclass
class RunOutcome:
    """How a run ended.

    Attributes:
        end: ok | error | oom | killed | timeout | stalled | interrupted | node_failure and
            preempted (a batch scheduler's) | runner_error (the runner raised instead of
            reporting an end: see ``runner_failure``).
        exit_code: the harness process's exit status, None if it never exited by itself.
        message: one line for the manifest.
        log_tail: the last lines of the run's log, for the failure record.
        fatal: the runner can start no further run (e.g. the Docker engine is gone): the
            study records this run and stops, leaving the rest pending for --resume.
        scheduler_cause: the message is a batch scheduler's account of what ended the run
            (a cancel, a memory kill, a node failure), which the manifest puts before the
            harness's own error record.
    """

    end: EndKind
    exit_code: int | None
    message: str = ""
    log_tail: list[str] = field(default_factory=list)
    fatal: bool = False
    scheduler_cause: bool = False


@dataclass(frozen=True)
class ProcessEnd:
    """What the isolation primitive reports about a harness that ended.

    Attributes:
        exit_code: its exit status as the runner sees it (a process's, or a container's).
        signal_number: the signal that ended it, if it did not exit by itself.
        oom: the kernel's OOM killer ended it (where the runner can tell).
    """

    exit_code: int | None
    signal_number: int | None = None
    oom: bool = False


def classify_end(end: EndKind | None, ended: ProcessEnd, log_path: Path, *,
                 timeout_s: float | None, stop_note: str = "",
                 after_stop: str = "") -> RunOutcome:
    """Name how a run ended: what we did to it first, then what its process reports.

    The one classification every runner uses, so a timeout, a stall or a kill reads the same
    in the manifest whatever ran the harness.

    Args:
        end: what the wait loop did (timeout, stalled, interrupted), None if it ended alone.
        ended: what the process or container reported.
        log_path: the run's log, whose last lines go into every failure record.
        timeout_s: the run's timeout (s), named in a timeout's message.
        stop_note: the wait loop's account of why it stopped the run: a stall (silence,
            limit, phase) or a phase limit; empty for the run's own timeout.
        after_stop: what the runner did after stopping it (e.g. "; stopped and removed").
    """
    tail = log_tail(log_path)
    code = ended.exit_code
    if end == "timeout":
        why = stop_note or f"exceeded its timeout of {timeout_s:g} s"
        return RunOutcome("timeout", code, f"{why}{after_stop}", tail)
    if end == "stalled":
        return RunOutcome("stalled", code, f"{stop_note}{after_stop}", tail)
    if end == "interrupted":
        return RunOutcome("interrupted", code, "stopped by the user", tail)
    if ended.oom:
        return RunOutcome("oom", code, f"ran out of memory (killed by the kernel's OOM killer, "
                          f"exit {code})", tail)
    if code == 0:
        return RunOutcome("ok", 0)
    if ended.signal_number is not None:
        try:
            name = signal.Signals(ended.signal_number).name
        except ValueError:  # a number no signal has
            name = f"signal {ended.signal_number}"
        return RunOutcome("killed", code, f"the harness was killed by {name} from outside "
                          f"(exit {code})", tail)
    if code == HARNESS_STOPPED:
        return RunOutcome("killed", code, f"the harness was stopped from outside and exited "
                          f"{code} ({last_error_line(tail, code)})", tail)
    return RunOutcome("error", code, last_error_line(tail, code), tail)


def runner_failure(error: Exception, log_path: Path, *, fatal: bool) -> RunOutcome:
    """The end of a run whose runner raised ``error`` instead of reporting how it ended.

    The error's type and message (and its fix) are the run's failure message, and are appended
    to the run's log, whose last lines go into the failure record.

    Args:
        error: what the runner raised (an image untagged mid-study, a registry it cannot
            write, a bug).
        log_path: the run's log.
        fatal: the runner can start no further run: the study stops after this one.
    """
    detail = error.message if isinstance(error, LlemError) else str(error)
    fix = error.fix if isinstance(error, LlemError) else None
    message = f"the runner failed: {type(error).__name__}: {detail}"
    if fix:
        message += f" (fix: {fix})"
    message = " ".join(message.split())
    with contextlib.suppress(OSError), open(log_path, "a", encoding="utf-8") as log:
        log.write(f"llem: {message}\n")  # appended: keep what the harness wrote before
    return RunOutcome("runner_error", None, message, log_tail(log_path), fatal=fatal)


def last_error_line(tail: list[str], exit_code: int | None) -> str:
    """The harness's own ``error:`` line from the log tail, else its exit status."""
    for line in reversed(tail):
        if line.startswith("error:"):
            return line.removeprefix("error:").strip()
    return f"the harness exited with status {exit_code}"


class Runner(abc.ABC):
    """Starts experiments; one implementation per isolation primitive.

    Attributes:
        stall_timeout_s: stop a run that appends no event for this long (s) while it runs;
            None: never. The study sets it from ``execution.stall_timeout_s``.
        load_timeout_s: stop a run whose phase ``load`` lasts longer than this (s), as a
            timeout; None: no limit but the run's own. The study sets it from
            ``execution.load_timeout_s``.
        stop_note: why the wait loop stopped the last run, when a stall or a phase limit
            did (for its failure record); empty otherwise.
        clock: monotonic clock of the wait loop (s); tests inject a fake one.
        sleep: the wait loop's pause between polls; tests inject one that moves the clock.
    """

    name: str = ""

    def __init__(self) -> None:
        self.stop_requested = threading.Event()
        self.stall_timeout_s: float | None = None
        self.load_timeout_s: float | None = None
        self.stop_note = ""
        self.clock: Callable[[], float] = time.monotonic
        self.sleep: Callable[[float], None] = time.sleep
        self.on_study_event: Callable[[StudyEvent], None] | None = None
        """Receives what the runner itself has to say (a batch job's queue state)."""

    def preflight(self, backends: set[str] | None = None,
                  gpus: list[int] | None = None) -> list[str]:
        """Problems that stop this runner from serving these backends here (with the fix)."""
        return []

    def harness_gpus(self, requested: list[int] | None) -> list[int] | None:
        """GPU indices as the harness will see them (``experiment.json``'s ``gpus``)."""
        return requested

    def startup(self) -> None:  # noqa: B027 - optional hook
        """Called once before a study's first run (e.g. orphan cleanup)."""

    @abc.abstractmethod
    def run(self, run_dir: Path, timeout_s: float | None, on_event: EventCallback,
            gpus: list[int] | None = None) -> RunOutcome:
        """Run ``run_dir/experiment.json`` to its end and classify it.

        Args:
            run_dir: the run directory holding experiment.json.
            timeout_s: wall-clock limit; the run is stopped and classified ``timeout`` past it.
            on_event: receives every event the harness appends to events.jsonl.
            gpus: host GPU indices the run may use (None: all).
        """

    detachable: bool = False
    """Whether the runner can hand runs to a scheduler and return (``llem run --detach``)."""

    host_gpus: bool = True
    """Whether runs use this host's GPUs (the cool-down of ``gap_until_cool`` watches them)."""

    lanes: int = 1
    """How many runs the runner keeps in flight at once, each lane a chain of runs in the
    plan's order (more than 1: the runs are submitted as with ``--detach``, then followed)."""

    def submit_detached(self, run_dir: Path, timeout_s: float | None,
                        delay_s: float = 0.0, lane: int = 0) -> str:
        """Hand ``run_dir``'s experiment to the scheduler without waiting; return its job id.

        Runs submitted so to one ``lane`` start in submission order, the next ``delay_s``
        after the previous one ended. Only runners with ``detachable`` set implement it.
        """
        raise NotImplementedError(f"the {self.name} runner cannot detach")

    def adopt(self, run_dir: Path, timeout_s: float | None,
              on_event: EventCallback) -> RunOutcome | None:
        """Follow a run an earlier invocation started and never recorded (``--resume``).

        Returns how it ended, after waiting for it if it still runs; None when there is
        nothing to follow (the run starts anew). Runners whose runs die with their
        orchestrator (docker, local) have nothing to follow.
        """
        return None

    def alive(self, run_dir: Path) -> bool:
        """Whether a run an earlier invocation started is still queued or running."""
        return False

    def chain_after(self, run_dir: Path, lane: int = 0) -> int | None:
        """Runs submitted from now on to the lane of ``run_dir``'s live run start after it.

        Returns that lane (``lane``, the plan's, unless the runner knows where the run went),
        or None when no run submitted from now on goes where it runs.
        """
        return lane

    def ended_outcome(self, run_dir: Path, timeout_s: float | None) -> RunOutcome | None:
        """How a run handed to a scheduler ended by itself, or None (still running, or unknown).

        A stop records such a run as it ended rather than interrupted. Runners whose runs end
        with llem have none.
        """
        return None

    def watch(self, run_dirs: list[Path]) -> None:  # noqa: B027 - optional hook
        """Runs the orchestrator is about to read one after another (read together)."""

    def cancel(self, run_dir: Path) -> None:  # noqa: B027 - optional hook
        """Stop a run an earlier invocation handed to a scheduler (Ctrl-C of the study)."""

    def new_attempt(self, run_dir: Path) -> None:  # noqa: B027 - optional hook
        """A new attempt of ``run_dir`` starts: forget what the runner kept of earlier ones."""

    def request_stop(self) -> None:
        """Ask the running experiment to stop (first Ctrl-C): graceful, then killed."""
        self.stop_requested.set()

    def supervise(
        self,
        running: Callable[[], bool],
        stop: Callable[[], None],
        timeout_s: float | None,
        follower: EventFollower,
        on_event: EventCallback,
        poll_s: float = 0.25,
    ) -> EndKind | None:
        """Follow a run until it ends by itself (None), or stop it (timeout, stall, user).

        The wall-clock timeout, the load's limit and the stall check are enforced here, by
        the orchestrator, whatever the isolation primitive: neither a subprocess nor the
        Docker SDK's wait enforces one on its own, and a harness whose load hangs keeps
        beating (its heartbeat has a thread of its own), so only the phase's own limit
        catches it before the run's timeout.
        """
        started = self.clock()
        stall = StallWatch(self.stall_timeout_s, started)
        phase = PhaseWatch(self.load_timeout_s, started)
        self.stop_note = ""
        while running():
            events = follower.poll()
            for event in events:
                on_event(event)
            now = self.clock()
            stall.saw(events, now)
            phase.saw(events, now)
            end, self.stop_note = self._stop_reason(now - started, timeout_s, stall, phase, now)
            if end is not None:
                stop()
                return end
            self.sleep(poll_s)
        return None

    def _stop_reason(self, elapsed_s: float, timeout_s: float | None, stall: StallWatch,
                     phase: PhaseWatch, now: float) -> tuple[EndKind | None, str]:
        """Whether to stop the run now, and the account of it for the failure record."""
        if self.stop_requested.is_set():
            return "interrupted", ""
        if timeout_s is not None and elapsed_s > timeout_s:
            return "timeout", ""
        if phase.over_limit(now):
            return "timeout", phase.note()
        if stall.stalled(now):
            return "stalled", stall.note(now, phase.phase)
        return None, ""


class StallWatch:
    """When a run last appended an event, and whether it has been silent for too long.

    Args:
        timeout_s: silence (s) after which the run is stalled; None: never.
        now: the clock's reading when the run started (its first event is awaited from here).
    """

    def __init__(self, timeout_s: float | None, now: float) -> None:
        self.timeout_s = timeout_s
        self.last_event_at = now

    def saw(self, events: list[RunEvent], now: float) -> None:
        """Note the events of one poll, read at ``now``."""
        if events:
            self.last_event_at = now
        for event in events:
            if isinstance(event, StartEvent) and event.heartbeat_s is None:
                # A harness from before heartbeats: its silent phases are not stalls.
                self.timeout_s = None

    def stalled(self, now: float) -> bool:
        """True once no event has come for longer than the timeout."""
        return self.timeout_s is not None and now - self.last_event_at > self.timeout_s

    def note(self, now: float, phase: str | None) -> str:
        """One line for the failure record, naming the ``phase`` the run was in."""
        where = f"during phase {phase}" if phase else "before its first phase"
        return (f"no event (not even a heartbeat) in events.jsonl for "
                f"{now - self.last_event_at:.0f} s, past execution.stall_timeout_s "
                f"({self.timeout_s:g} s), {where}; stopped")


class PhaseWatch:
    """Which phase a run is in, since when, and whether its load has outlasted its limit.

    The phase's start is when the wait loop read its ``phase`` event, on the orchestrator's
    clock: the harness's own clock may be another machine's or container's.

    Args:
        load_timeout_s: longest phase ``load`` (s); None: no limit.
        now: the clock's reading when the run started.
    """

    def __init__(self, load_timeout_s: float | None, now: float) -> None:
        self.load_timeout_s = load_timeout_s
        self.phase: str | None = None
        self.since = now

    def saw(self, events: list[RunEvent], now: float) -> None:
        """Note the phase events of one poll, read at ``now``."""
        for event in events:
            if isinstance(event, PhaseEvent):
                self.phase = event.phase
                self.since = now

    def over_limit(self, now: float) -> bool:
        """True once the run has been in phase ``load`` for longer than its limit."""
        return (self.phase == LOAD_PHASE and self.load_timeout_s is not None
                and now - self.since > self.load_timeout_s)

    def note(self) -> str:
        """One line for the failure record: the phase, the limit and the setting to raise."""
        return (f"the model load (phase {LOAD_PHASE}) did not finish within "
                f"execution.load_timeout_s ({self.load_timeout_s:g} s): raise it if this "
                f"model's load or engine build needs longer (null: no limit but "
                f"execution.timeout_s)")


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> list[str]:
    """Last ``lines`` lines of a log file (empty when missing)."""
    if not path.exists():
        return []
    return path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:]


class EventFollower:
    """Yields events appended to ``events.jsonl`` since the last poll.

    Reads only the bytes added since the previous poll and keeps an incomplete last line for
    the next one, so following a long run costs O(new bytes) per poll.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0
        self._partial = b""

    def poll(self) -> list[RunEvent]:
        """New complete events since the previous call.

        An unknown kind comes back as ``UnknownEvent``; a line that is not JSON is skipped
        with a logged note.
        """
        try:
            with open(self.path, "rb") as handle:
                handle.seek(self._offset)
                chunk = handle.read()
        except FileNotFoundError:
            return []
        self._offset += len(chunk)
        data = self._partial + chunk
        lines = data.split(b"\n")
        self._partial = lines.pop()
        events: list[RunEvent] = []
        for line in lines:
            event = parse_run_event(line) if line.strip() else None
            if event is not None:
                events.append(event)
        return events
