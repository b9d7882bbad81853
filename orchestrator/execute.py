"""Run a study: run each planned run through a runner, checkpoint, summarise.

A failed run never stops the study. The manifest is rewritten atomically (by
``orchestrator.study_dir``) on every status change, and a run is marked completed only after
its result.json validated.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from pathlib import Path

from harness.energy import GpuSet
from harness.engine_cache import default_cache_root
from harness.errors import ConfigError, LlemError, RunnerError
from harness.io import DiskFullError, write_json
from harness.schema.catalog import BY_NAME
from harness.schema.events import (
    Cooled,
    Cooling,
    Gap,
    RunEventReceived,
    RunFinished,
    RunStarted,
    StudyEvent,
)
from harness.schema.result import CoolDownRecord, ErrorRecord
from harness.schema.run_spec import RunSpec
from harness.timeseries import recover_timeseries
from orchestrator.cooling import NOT_REQUESTED, CoolDown
from orchestrator.diskfull import DiskReserve, record_disk_full
from orchestrator.manifest import Failure, Manifest, RunEntry, now_utc
from orchestrator.report.build import REPORT_NAME, write_report
from orchestrator.run_environment import RunEnvironment
from orchestrator.runners.base import LOG_NAME, Runner, RunOutcome, log_tail, runner_failure
from orchestrator.schedule import Gaps, PlannedRun, RunKey, lanes, plan
from orchestrator.stats import STATS_NAME, write_stats
from orchestrator.study import Study
from orchestrator.study_dir import (
    check_result,
    entries_by_key,
    finish_invocation,
    fresh_run_dir,
    mark_running,
    save_manifest,
    validate_result,
)
from orchestrator.summary import SUMMARY_NAME, StudySummary, study_summary
from orchestrator.tables import CSV_NAME, TABLE_NAME, load_results, write_results_table

BASELINE_CACHE = ".baseline-cache"
KILLED_NOW = "killed by a second Ctrl-C, without waiting for it to stop"
logger = logging.getLogger(__name__)
OnStudyEvent = Callable[[StudyEvent], None]


class StudyExecution:
    """Executes the planned runs of one study directory.

    Args:
        study: the loaded study.
        study_dir: its output directory (already created).
        runner: where each run executes.
        on_event: receives typed study events (``harness.schema.events``): run started,
            each run event, run finished, gap, cooling.
        no_gaps: skip config and cycle gaps.
        detach: hand every pending run to the runner's scheduler and return without waiting
            (``llem run --detach``; runners with ``detachable`` only). Each gap becomes a wait
            at the start of the next run's job; no cool-down is watched.
        cooling_gpus: GPUs the cool-down watches; by default the host's NVML GPUs of the
            study's selection.
    """

    def __init__(
        self,
        study: Study,
        study_dir: Path,
        runner: Runner,
        on_event: OnStudyEvent | None = None,
        no_gaps: bool = False,
        cooling_gpus: GpuSet | None = None,
        detach: bool = False,
    ) -> None:
        self.study = study
        self.study_dir = study_dir
        self.runner = runner
        self._callback = on_event
        self.no_gaps = no_gaps
        self.detach = detach
        if detach and not runner.detachable:
            raise ConfigError(f"the {runner.name} runner cannot detach: its runs end with "
                              "llem", fix="use --detach with --runner slurm, or leave it out")
        if study.execution.gap_until_cool and not no_gaps and not runner.host_gpus:
            raise ConfigError(COOL_DOWN_ELSEWHERE.format(runner=runner.name), fix=COOL_DOWN_FIX)
        self.started_at = now_utc()
        self._current: RunEntry | None = None  # the run in progress, for a full disk's record
        execution = study.execution
        runner.stall_timeout_s = execution.stall_timeout_s
        runner.load_timeout_s = execution.load_timeout_s
        runner.on_study_event = self.on_event
        # The idle reference is read now, before the first run heats anything.
        self.cool_down: CoolDown | None = None
        if execution.gap_until_cool and not no_gaps and not detach:
            self.cool_down = (
                CoolDown(cooling_gpus, execution.cool_margin_c, execution.cool_max_s)
                if cooling_gpus is not None
                else CoolDown.for_host(execution.gpus, execution.cool_margin_c,
                                       execution.cool_max_s)
            )

    def on_event(self, event: StudyEvent) -> None:
        """Pass ``event`` to the caller; a bug in the callback never costs a run."""
        if self._callback is None:
            return
        try:
            self._callback(event)
        except Exception:
            logger.exception("the on_event callback failed on a %s event", event.kind)

    def execute(self, runs: list[PlannedRun], manifest: Manifest) -> StudySummary:
        """Run every pending run in order; return the summary (also written to disk).

        A ``KeyboardInterrupt`` (the second Ctrl-C) ends the study at once: the runner has
        killed its run on the way out (runners do on any exception), the run is recorded
        ``interrupted`` and the summary is still written.
        """
        self.runner.startup()
        reserve = DiskReserve(self.study_dir)
        reserve.hold()
        try:
            return self._execute(runs, manifest)
        except DiskFullError as error:
            reserve.release()
            self._record_full_disk(manifest, error)
            raise
        finally:
            reserve.release()

    def _execute(self, runs: list[PlannedRun], manifest: Manifest) -> StudySummary:
        if manifest.runner != self.runner.name:  # a resume with another runner
            manifest.runner = self.runner.name
            save_manifest(self.study_dir, manifest)
        try:
            self._run_pending(runs, manifest)
        except KeyboardInterrupt:
            self._stopped_now(manifest)
        if self.runner.stop_requested.is_set():
            self._stop_left_running(manifest)
        try:
            return self.summarise(manifest)
        except KeyboardInterrupt:  # the second Ctrl-C came while the summary was written
            return self.summarise(manifest)

    def _record_full_disk(self, manifest: Manifest, error: DiskFullError) -> None:
        """The disk filled: the run in progress failed; save and summarise if that fits."""
        if self._current is not None:
            record_disk_full(self._current, error)
        with contextlib.suppress(DiskFullError):
            save_manifest(self.study_dir, manifest)
            self.summarise(manifest)

    def _run_pending(self, runs: list[PlannedRun], manifest: Manifest) -> None:
        # A run is found by what it measures: its folder name is only a label.
        by_key = entries_by_key(manifest)
        gaps = Gaps(runs, self.study.execution)
        if self.detach or self.runner.lanes > 1:
            self._submit_pending(runs, by_key, manifest, gaps)
            if not self.detach:
                self._follow_submitted(runs, by_key, manifest)
            return
        previous: int | None = None  # position of the run this invocation ran last
        self.runner.watch([self.study_dir / by_key[run.key].run_id for run in runs
                           if by_key[run.key].status == "running"])  # read together
        for position, run in enumerate(runs):
            if self.runner.stop_requested.is_set():
                break
            entry = by_key[run.key]
            if entry.status in ("completed", "skipped"):
                continue
            if entry.status == "running":  # an earlier invocation started it: follow it
                adopted = self._collect(entry, manifest)  # before any gap: it ran already
                if adopted is not None:
                    if adopted.fatal:
                        break
                    previous = position
                    continue
            gap = None if previous is None else gaps.between(previous, position)
            cool_down = self._gap(gap)
            if self.runner.stop_requested.is_set():
                break
            if self._run_one(run, entry, manifest, cool_down):
                break  # the runner can start no more runs: stop with the summary
            previous = position

    def _submit_pending(self, runs: list[PlannedRun], by_key: dict[RunKey, RunEntry],
                        manifest: Manifest, gaps: Gaps) -> None:
        """Hand every pending run to the scheduler, one chain of jobs per lane.

        What is submitted to a lane starts after the lane's runs still queued or running (an
        earlier invocation's; the runner says which lane each went to), and waits the plan's
        gap to the lane's previous run in its own allocation first: one still running, one
        that has just ended, or one submitted now. A submission that fails stops the
        submitting; with ``--detach`` the error ends the command, attached the runs submitted
        so far are followed.
        """
        lane_of = lanes(runs, self.runner.lanes)
        previous: dict[int, int] = {}  # lane -> position of the run its next job follows
        live: set[RunKey] = set()
        running = [(position, run, by_key[run.key]) for position, run in enumerate(runs)
                   if by_key[run.key].status == "running"]
        self.runner.watch([self.study_dir / entry.run_id for _, _, entry in running])
        for position, run, entry in running:
            if self.runner.alive(self.study_dir / entry.run_id):
                lane = self.runner.chain_after(self.study_dir / entry.run_id, lane_of[position])
                if lane is not None:
                    previous[lane] = max(previous.get(lane, position), position)
                live.add(run.key)
        for position, run in enumerate(runs):
            if self.runner.stop_requested.is_set():
                break
            entry = by_key[run.key]
            if entry.status in ("completed", "skipped") or run.key in live:
                continue
            lane = lane_of[position]
            if entry.status == "running":  # an earlier invocation's job ended: read it
                previous[lane] = position  # it ran there just now: the gap follows it
                if self._collected_completed(entry, manifest):
                    continue
            gap = 0.0 if self.no_gaps else self._gap_after(gaps, previous.get(lane), position)
            if not self._submit(run, entry, manifest, gap, lane):
                break
            previous[lane] = position

    def _gap_after(self, gaps: Gaps, before: int | None, position: int) -> float:
        """The plan's pause before ``runs[position]`` when ``runs[before]`` ran last in its lane.

        None: nothing ran before it there. The run itself (a new attempt after its job ended):
        ``config_gap_s``.
        """
        if before is None:
            return 0.0
        if before == position:
            return self.study.execution.config_gap_s
        return gaps.between(min(before, position), max(before, position))

    def _follow_submitted(self, runs: list[PlannedRun], by_key: dict[RunKey, RunEntry],
                          manifest: Manifest) -> None:
        """Follow every submitted run to its end and record it, in the plan's order.

        The lanes run side by side on the cluster meanwhile: a run whose job ended while an
        earlier one was followed is read at once (from the watcher's last read of all of
        them). A job left waiting for a node that is down fails as a node failure (the
        runner's account), so one lost node does not hold the study.
        """
        pending = [by_key[run.key] for run in runs if by_key[run.key].status == "running"]
        self.runner.watch([self.study_dir / entry.run_id for entry in pending])
        for entry in pending:
            if self.runner.stop_requested.is_set():
                return
            run_dir = self.study_dir / entry.run_id
            outcome = self._collect(entry, manifest)
            if outcome is None:  # the scheduler lost the job, and it left no result
                outcome = runner_failure(RunnerError(
                    "the run's job is gone from the scheduler and left no result",
                    fix="run llem run --resume DIR to run it again"), run_dir / LOG_NAME,
                    fatal=False)
                self._record(entry, run_dir, outcome)
                save_manifest(self.study_dir, manifest)
            if outcome.fatal:  # the jobs left would fail the same way
                self._interrupt_running(manifest, "cancelled: an earlier run of the study "
                                        "stopped it (see that run's failure)")
                return

    def _stop_left_running(self, manifest: Manifest) -> None:
        """Stopped (Ctrl-C): cancel what still runs outside llem, record it interrupted.

        Runs an earlier ``--detach`` (or this one) handed to a scheduler run on without llem;
        a stop cancels them all, as it stops the run it follows.
        """
        self._interrupt_running(manifest, "cancelled by the user before llem followed it")

    def _stopped_now(self, manifest: Manifest) -> None:
        """Record the run that a second Ctrl-C killed (if any) as interrupted."""
        self.runner.stop_requested.set()
        self._interrupt_running(manifest, KILLED_NOW)

    def _interrupt_running(self, manifest: Manifest, message: str) -> None:
        """Every run still ``running``: its scheduler job cancelled, recorded interrupted.

        A run whose job had already ended by itself (another lane's, while llem followed an
        earlier run) is recorded as it ended, by the runner's account of that end.
        """
        for entry in manifest.runs:
            if entry.status != "running":
                continue
            run_dir = self.study_dir / entry.run_id
            ended = None
            with contextlib.suppress(Exception):  # a controller gone: still record it
                ended = self.runner.ended_outcome(run_dir, self.study.execution.timeout_s)
            if ended is not None:
                self._record(entry, run_dir, ended)
                self.on_event(RunFinished(run_id=entry.run_id, status=entry.status,
                                          cause=entry.failure.cause if entry.failure else None))
                continue
            with contextlib.suppress(Exception):  # a controller gone: still record it
                self.runner.cancel(run_dir)
            entry.status, entry.finished_at = "interrupted", now_utc()
            entry.failure = Failure(
                cause="interrupted", message=message, log_tail=log_tail(run_dir / LOG_NAME))
        save_manifest(self.study_dir, manifest)

    def _gap(self, seconds: float | None) -> CoolDownRecord:
        """The fixed gap of ``seconds`` (None: the first run), then the cool-down.

        Returns how the cool-down ended.
        """
        if seconds is not None and not self.no_gaps:
            self._fixed_gap(seconds)
        return self._cool(first=seconds is None)

    def _fixed_gap(self, seconds: float) -> None:
        remaining = seconds
        while remaining > 0 and not self.runner.stop_requested.is_set():
            self.on_event(Gap(seconds=seconds, remaining_s=remaining))
            step = min(1.0, remaining)
            self.runner.stop_requested.wait(step)
            remaining -= step

    def _cool(self, first: bool) -> CoolDownRecord:
        if self.cool_down is None:
            return NOT_REQUESTED
        if first:
            return self.cool_down.first_run()
        if self.runner.stop_requested.is_set():
            return self.cool_down.record("interrupted", None)
        record = self.cool_down.wait(
            self.runner.stop_requested.wait,
            lambda elapsed: self.on_event(Cooling(elapsed_s=elapsed)),
        )
        self.on_event(Cooled(waited_s=record.waited_s, outcome=record.outcome))
        return record

    def _submit(self, run: PlannedRun, entry: RunEntry, manifest: Manifest,
                delay_s: float, lane: int) -> bool:
        """Prepare the run and hand it to the scheduler's ``lane``; it stays running.

        Returns False when it could not be submitted: recorded interrupted after a stop (the
        submission died with it), failed otherwise, and then, with ``--detach``, raised.
        """
        run_dir = self._claim(entry)
        try:
            self._prepare(run, entry, manifest, None)
            self.runner.submit_detached(run_dir, self.study.execution.timeout_s, delay_s,
                                        lane)
        except DiskFullError:
            raise
        except (LlemError, OSError) as error:
            if self.runner.stop_requested.is_set():
                save_manifest(self.study_dir, manifest)  # still running: the stop records it
                return False
            outcome = runner_failure(error, run_dir / LOG_NAME, fatal=False)
            self._record(entry, run_dir, outcome)
            save_manifest(self.study_dir, manifest)
            if self.detach:
                raise RunnerError(f"run {entry.run_id} could not be submitted: "
                                  f"{outcome.message}", fix="fix the cause, then submit the "
                                  "rest with llem run --resume DIR --detach") from error
            return False
        save_manifest(self.study_dir, manifest)
        return True

    def _claim(self, entry: RunEntry) -> Path:
        """A new attempt of ``entry`` by this runner on this study's GPUs; its run directory."""
        entry.runner, entry.environment = self.runner.name, None
        entry.gpus = self.study.execution.gpus
        return self.study_dir / entry.run_id

    def _run_one(self, run: PlannedRun, entry: RunEntry, manifest: Manifest,
                 cool_down: CoolDownRecord | None = None) -> bool:
        """Run one entry and record it; True when the runner can start no further run."""
        self._current = entry
        fatal = self._attempt(run, entry, manifest, cool_down)
        self._current = None
        return fatal

    def _attempt(self, run: PlannedRun, entry: RunEntry, manifest: Manifest,
                 cool_down: CoolDownRecord | None) -> bool:
        run_dir = self._claim(entry)
        try:
            self._prepare(run, entry, manifest, cool_down)
        except DiskFullError:
            raise
        except (OSError, ConfigError) as error:  # e.g. files a container left, owned by root
            outcome = _unprepared(run_dir, error)
        else:
            self.on_event(RunStarted(run_id=entry.run_id))
            outcome = self._runner_run(entry.run_id, run_dir)
            with contextlib.suppress(OSError):  # a killed harness leaves only the stream
                recover_timeseries(run_dir / "timeseries.parquet")
        self._record(entry, run_dir, outcome)
        save_manifest(self.study_dir, manifest)
        self.on_event(RunFinished(run_id=entry.run_id, status=entry.status,
                                  cause=entry.failure.cause if entry.failure else None))
        return outcome.fatal

    def _prepare(self, run: PlannedRun, entry: RunEntry, manifest: Manifest,
                 cool_down: CoolDownRecord | None) -> None:
        """Give the run a fresh folder with its experiment.json; mark it running.

        Raises:
            OSError: the folder or a file of it could not be written (the run has not started).
            ConfigError: the run's folder is no folder of its own in the study directory.
        """
        self.runner.new_attempt(self.study_dir / entry.run_id)  # no earlier job adopted
        run_dir = fresh_run_dir(self.study_dir, entry.run_id)
        spec = RunSpec(
            run_id=entry.run_id,
            study=self.study.name,
            cycle=run.cycle,
            runner=self.runner.name,
            gpus=self.runner.harness_gpus(self.study.execution.gpus),
            baseline_cache_dir=str(self._baseline_cache()),
            engine_cache_dir=self._engine_cache(run.entry.config.backend),
            cool_down=cool_down,
            config=run.entry.config,
        )
        write_json(run_dir / "experiment.json", spec)
        mark_running(self.study_dir, manifest, entry)

    def _collected_completed(self, entry: RunEntry, manifest: Manifest) -> bool:
        """Record an ended job an earlier invocation left; True when its run completed."""
        self._collect(entry, manifest)
        return entry.status == "completed"

    def _collect(self, entry: RunEntry, manifest: Manifest) -> RunOutcome | None:
        """Follow and record a run an earlier invocation left running; None: nothing to follow.

        Its directory is the job's: it is never emptied for a new attempt before the job's
        end is known.
        """
        run_dir = self.study_dir / entry.run_id
        adopted = self._adopt(entry.run_id, run_dir)
        if adopted is not None:
            self._record(entry, run_dir, adopted)
            save_manifest(self.study_dir, manifest)
            self.on_event(RunFinished(run_id=entry.run_id, status=entry.status,
                                      cause=entry.failure.cause if entry.failure else None))
        return adopted

    def _adopt(self, run_id: str, run_dir: Path) -> RunOutcome | None:
        """The runner's account of a run an earlier invocation left running; None: none."""
        self.on_event(RunStarted(run_id=run_id))
        try:
            adopted = self.runner.adopt(
                run_dir, self.study.execution.timeout_s,
                lambda event: self.on_event(RunEventReceived(run_id=run_id, event=event)))
        except DiskFullError:
            raise
        except (LlemError, OSError) as error:
            fatal = isinstance(error, RunnerError) and error.fatal
            return runner_failure(error, run_dir / LOG_NAME, fatal=fatal)
        return adopted

    def _runner_run(self, run_id: str, run_dir: Path) -> RunOutcome:
        """The runner's account of the run; an error it raises is this run's failure.

        llem's own errors and OS errors fail this run and the study goes on, unless the error
        says the runner can start no further run (``RunnerError.fatal``: the engine is gone).
        Anything else is a bug: the run fails with its name, logged with its traceback, and
        the study stops, since nothing says the next run would fare better. A full disk and
        the second Ctrl-C keep their own way out.
        """
        try:
            return self.runner.run(
                run_dir,
                self.study.execution.timeout_s,
                lambda event: self.on_event(RunEventReceived(run_id=run_id, event=event)),
                gpus=self.study.execution.gpus,
            )
        except DiskFullError:
            raise
        except (LlemError, OSError) as error:
            fatal = isinstance(error, RunnerError) and error.fatal
            return runner_failure(error, run_dir / LOG_NAME, fatal=fatal)
        except Exception as error:
            logger.exception("the %s runner failed on run %s", self.runner.name, run_id)
            return runner_failure(error, run_dir / LOG_NAME, fatal=True)

    def _engine_cache(self, backend: str) -> str | None:
        # Engines outlive studies: one cache per user (LLEM_ENGINE_CACHE or ~/.cache/llem),
        # mounted read-write into the containers of backends that build engines only.
        if not BY_NAME[backend].engine_cache:
            return None
        path = default_cache_root().expanduser().resolve()
        path.mkdir(parents=True, exist_ok=True)
        return str(path)

    def _baseline_cache(self) -> Path:
        # Shared by every run of the study (and mounted into every container).
        path = (self.study_dir / BASELINE_CACHE).resolve()
        path.mkdir(exist_ok=True)
        return path

    def _record(self, entry: RunEntry, run_dir: Path, outcome: RunOutcome) -> None:
        entry.finished_at = now_utc()
        if outcome.end == "ok":
            problem = validate_result(run_dir)
            if problem is None:
                entry.environment = RunEnvironment.of(check_result(run_dir))
                entry.status = "completed"
                entry.result_path = f"{run_dir.name}/result.json"
                return
            entry.status = "failed"
            entry.failure = Failure(cause="invalid_result", message=problem, exit_code=0)
            return
        entry.status = "interrupted" if outcome.end == "interrupted" else "failed"
        entry.failure = Failure(
            cause=outcome.end,
            message=_failure_message(run_dir, outcome),
            exit_code=outcome.exit_code,
            log_tail=outcome.log_tail,
        )

    def summarise(self, manifest: Manifest) -> StudySummary:
        """Write results.parquet and summary.json from what the manifest says completed."""
        results = load_results(self.study_dir, manifest)
        table = None
        warnings: list[str] = []
        if results:
            configs = [entry.config for entry in self.study.experiments]
            write_results_table(self.study_dir / TABLE_NAME, results, configs)
            warnings = write_stats(self.study_dir, results).warnings
            table = TABLE_NAME
        else:  # tables of an earlier invocation whose results were set aside since
            for stale in (TABLE_NAME, CSV_NAME, STATS_NAME):
                (self.study_dir / stale).unlink(missing_ok=True)
        interrupted = self.runner.stop_requested.is_set()
        finish_invocation(self.study_dir, manifest, interrupted)
        summary = study_summary(self.study, manifest, self.runner.name, self.started_at,
                                interrupted=interrupted,
                                no_gaps=self.no_gaps, results_table=table,
                                warnings=warnings)
        write_json(self.study_dir / SUMMARY_NAME, summary)
        return self._with_report(summary)

    def _with_report(self, summary: StudySummary) -> StudySummary:
        """Write report.html from the files just written, and say so in the summary.

        The report is a view of files already on disk: one that cannot be written is a
        warning in the summary (``llem report`` writes it again), never a lost study.
        """
        try:
            write_report(self.study_dir)
        except Exception as error:
            logger.exception("report.html of %s was not written", self.study_dir)
            summary.warnings.append(
                f"report.html was not written ({type(error).__name__}: {error}); "
                f"llem report {self.study_dir} writes it")
        else:
            summary.report = REPORT_NAME
        write_json(self.study_dir / SUMMARY_NAME, summary)
        return summary


COOL_DOWN_ELSEWHERE = ("execution.gap_until_cool watches this host's GPUs, but the {runner} "
                       "runner runs the study on other machines' GPUs")
COOL_DOWN_FIX = ("remove gap_until_cool and set config_gap_s / cycle_gap_s (each job waits its "
                 "gap on its node), or pass --no-gaps")


def _unprepared(run_dir: Path, error: OSError | ConfigError) -> RunOutcome:
    """The end of a run whose folder could not be prepared: it failed, the study goes on.

    Recorded as a ``runner_error``, as an error the runner raises is: nothing of the harness
    ran. The run has no log to append to, so the message carries the cause and the fix.
    """
    if isinstance(error, ConfigError):
        cause, fix = error.message, error.fix
    else:
        cause = f"{type(error).__name__}: {error}"
        fix = (f"make {run_dir} a folder this user can write (e.g. remove what a container "
               f"left there owned by root), then llem run --resume {run_dir.parent}")
    message = f"its folder {run_dir} could not be prepared: {cause} (fix: {fix})"
    return RunOutcome("runner_error", None, " ".join(message.split()))


def _failure_message(run_dir: Path, outcome: RunOutcome) -> str:
    # For a timeout, a stall or an interruption the runner's account is the cause; the harness's
    # error.json only records the stop it was sent. A runner that raised is the cause itself.
    # So is a batch scheduler's account of what ended its job (a cancel, a node failure): the
    # harness's record follows it.
    if outcome.end in ("timeout", "stalled", "interrupted", "runner_error"):
        return outcome.message
    harness = harness_error(run_dir)
    if outcome.scheduler_cause:
        return f"{outcome.message}; the harness: {harness}" if harness else outcome.message
    return harness or outcome.message


def harness_error(run_dir: Path) -> str | None:
    """One line from the run's error.json ("Type: message"), or None without one."""
    path = run_dir / "error.json"
    try:
        record = ErrorRecord.model_validate_json(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    message = " ".join(line.strip() for line in record.message.splitlines() if line.strip())
    return f"{record.type} in {record.phase}: {message}"


__all__ = ["PlannedRun", "StudyExecution", "harness_error", "plan"]
