"""Run a study: order its runs, run each through a runner, checkpoint, summarise.

A failed run never stops the study. The manifest is rewritten atomically on every status
change, and a run is marked completed only after its result.json validated.
"""

from __future__ import annotations

import random
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from harness.energy import GpuSet
from harness.engine_cache import default_cache_root
from harness.io import write_json, write_text
from harness.paths import create_unique_dir, sanitize, utc_stamp
from harness.schema.result import CoolDownRecord, ErrorRecord, ExperimentResult
from harness.schema.run_spec import RunSpec
from orchestrator.cooling import NOT_REQUESTED, CoolDown
from orchestrator.manifest import Failure, Manifest, RunEntry, SkippedRecord, now_utc
from orchestrator.runners.base import Runner, RunOutcome
from orchestrator.stats import write_stats
from orchestrator.study import Study, StudyEntry
from orchestrator.tables import StudyResult, load_results, write_results_table

BASELINE_CACHE = ".baseline-cache"
StudyEvent = dict[str, Any]
OnStudyEvent = Callable[[StudyEvent], None]


@dataclass(frozen=True)
class PlannedRun:
    """One (configuration, cycle) in execution order."""

    entry: StudyEntry
    number: int
    cycle: int

    @property
    def run_id(self) -> str:
        """Directory name: ``<NNN>_<slug>_c<cycle>``."""
        return f"{self.number:03d}_{sanitize(self.entry.slug)[:48]}_c{self.cycle}"


def plan(study: Study, cycles: int | None = None) -> list[PlannedRun]:
    """Order the runs by ``execution.cycle_order`` (shuffled is seeded per cycle)."""
    execution = study.execution
    n_cycles = cycles or execution.n_cycles
    numbered = [(index + 1, entry) for index, entry in enumerate(study.experiments)]
    if execution.cycle_order == "sequential":
        return [PlannedRun(e, n, c) for n, e in numbered for c in range(1, n_cycles + 1)]
    runs: list[PlannedRun] = []
    for cycle in range(1, n_cycles + 1):
        order = list(numbered)
        if execution.cycle_order == "shuffled":
            random.Random(execution.shuffle_seed * 1000 + cycle).shuffle(order)  # noqa: S311
        runs.extend(PlannedRun(e, n, cycle) for n, e in order)
    return runs


def new_study_dir(study: Study, output_root: Path) -> Path:
    """Create ``<output>/<study-name>_<UTC timestamp>`` (suffixed on collision)."""
    return create_unique_dir(output_root, f"{sanitize(study.name)}_{utc_stamp()}")


def new_manifest(study: Study, runs: list[PlannedRun], runner: str) -> Manifest:
    """A manifest with every planned run pending and every skipped entry listed."""
    return Manifest(
        study=study.name,
        design_hash=study.design_hash,
        runner=runner,
        cycle_order=study.execution.cycle_order,
        runs=[
            RunEntry(
                run_id=run.run_id,
                config_hash=run.entry.config.measurement_config_hash,
                cycle=run.cycle,
                slug=run.entry.slug,
                backend=run.entry.config.backend,
            )
            for run in runs
        ],
        skipped=[SkippedRecord(description=s.description, reason=s.reason) for s in study.skipped],
    )


class StudyExecution:
    """Executes the planned runs of one study directory.

    Args:
        study: the loaded study.
        study_dir: its output directory (already created).
        runner: where each run executes.
        on_event: receives study events (run_started, run_event, run_finished, gap).
        no_gaps: skip config and cycle gaps.
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
    ) -> None:
        self.study = study
        self.study_dir = study_dir
        self.runner = runner
        self.on_event = on_event or (lambda event: None)
        self.no_gaps = no_gaps
        self.started_at = now_utc()
        execution = study.execution
        # The idle reference is read now, before the first run heats anything.
        self.cool_down: CoolDown | None = None
        if execution.gap_until_cool and not no_gaps:
            self.cool_down = (
                CoolDown(cooling_gpus, execution.cool_margin_c, execution.cool_max_s)
                if cooling_gpus is not None
                else CoolDown.for_host(execution.gpus, execution.cool_margin_c,
                                       execution.cool_max_s)
            )

    def execute(self, runs: list[PlannedRun], manifest: Manifest) -> StudyResult:
        """Run every pending run in order; return the summary (also written to disk)."""
        self.runner.startup()
        by_id = {entry.run_id: entry for entry in manifest.runs}
        previous: PlannedRun | None = None
        for run in runs:
            if self.runner.stop_requested.is_set():
                break
            entry = by_id[run.run_id]
            if entry.status in ("completed", "skipped"):
                continue
            cool_down = self._gap(previous, run)
            if self.runner.stop_requested.is_set():
                break
            if self._run_one(run, entry, manifest, cool_down):
                break  # the runner can start no more runs: stop with the summary
            previous = run
        return self.summarise(manifest)

    def _gap(self, previous: PlannedRun | None, run: PlannedRun) -> CoolDownRecord:
        """The fixed gap, then the cool-down; returns how the cool-down ended."""
        if previous is not None and not self.no_gaps:
            self._fixed_gap(previous, run)
        return self._cool(previous)

    def _fixed_gap(self, previous: PlannedRun, run: PlannedRun) -> None:
        execution = self.study.execution
        seconds = execution.cycle_gap_s if run.cycle != previous.cycle else execution.config_gap_s
        remaining = seconds
        while remaining > 0 and not self.runner.stop_requested.is_set():
            self.on_event({"event": "gap", "seconds": seconds, "remaining_s": remaining})
            step = min(1.0, remaining)
            self.runner.stop_requested.wait(step)
            remaining -= step

    def _cool(self, previous: PlannedRun | None) -> CoolDownRecord:
        if self.cool_down is None:
            return NOT_REQUESTED
        if previous is None:
            return self.cool_down.first_run()
        if self.runner.stop_requested.is_set():
            return self.cool_down.record("interrupted", None)
        record = self.cool_down.wait(
            self.runner.stop_requested.wait,
            lambda elapsed: self.on_event({"event": "cooling", "elapsed_s": elapsed}),
        )
        self.on_event({"event": "cooled", "waited_s": record.waited_s, "outcome": record.outcome})
        return record

    def _run_one(self, run: PlannedRun, entry: RunEntry, manifest: Manifest,
                 cool_down: CoolDownRecord | None = None) -> bool:
        """Run one entry and record it; True when the runner can start no further run."""
        run_dir = self.study_dir / run.run_id
        if run_dir.exists():
            shutil.rmtree(run_dir)  # a stale attempt of a run that did not complete
        run_dir.mkdir()
        spec = RunSpec(
            run_id=run.run_id,
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
        entry.status, entry.started_at, entry.failure = "running", now_utc(), None
        manifest.save(self.study_dir)
        self.on_event({"event": "run_started", "run_id": run.run_id})
        outcome = self.runner.run(
            run_dir,
            self.study.execution.timeout_s,
            lambda event: self.on_event({"event": "run_event", "run_id": run.run_id, **event}),
            gpus=self.study.execution.gpus,
        )
        self._record(entry, run_dir, outcome)
        manifest.save(self.study_dir)
        self.on_event({"event": "run_finished", "run_id": run.run_id, "status": entry.status})
        return outcome.fatal

    def _engine_cache(self, backend: str) -> str | None:
        # Engines outlive studies: one cache per user (LLEM_ENGINE_CACHE or ~/.cache/llem),
        # mounted read-write into tensorrt containers only.
        if backend != "tensorrt":
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

    def summarise(self, manifest: Manifest) -> StudyResult:
        """Write results.parquet and summary.json from what the manifest says completed."""
        results = load_results(self.study_dir, manifest)
        table = None
        if results:
            write_results_table(self.study_dir / "results.parquet", results)
            write_stats(self.study_dir, results)
            table = "results.parquet"
        execution = self.study.execution
        summary = StudyResult(
            study=self.study.name,
            design_hash=self.study.design_hash,
            runner=self.runner.name,
            started_at=self.started_at,
            finished_at=now_utc(),
            interrupted=self.runner.stop_requested.is_set(),
            protocol={
                "n_cycles": max((r.cycle for r in manifest.runs), default=0),
                "cycle_order": execution.cycle_order,
                "config_gap_s": 0.0 if self.no_gaps else execution.config_gap_s,
                "cycle_gap_s": 0.0 if self.no_gaps else execution.cycle_gap_s,
                "timeout_s": execution.timeout_s,
                "realised_order": [r.run_id for r in manifest.runs],
            },
            counts=manifest.counts(),
            failures=[
                {"run_id": r.run_id, **r.failure.model_dump(exclude={"log_tail"})}
                for r in manifest.runs
                if r.failure is not None
            ],
            skipped=[s.model_dump() for s in manifest.skipped],
            result_files=[r.result_path for r in manifest.runs if r.result_path],
            results_table=table,
        )
        write_json(self.study_dir / "summary.json", summary)
        return summary


def _failure_message(run_dir: Path, outcome: RunOutcome) -> str:
    # For a timeout or an interruption the runner's account is the cause; the harness's
    # error.json only records the stop it was sent.
    if outcome.end in ("timeout", "interrupted"):
        return outcome.message
    return harness_error(run_dir) or outcome.message


def harness_error(run_dir: Path) -> str | None:
    """One line from the run's error.json ("Type: message"), or None without one."""
    path = run_dir / "error.json"
    try:
        record = ErrorRecord.model_validate_json(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    message = " ".join(line.strip() for line in record.message.splitlines() if line.strip())
    return f"{record.type} in {record.phase}: {message}"


def validate_result(run_dir: Path) -> str | None:
    """None when run_dir/result.json exists and validates; otherwise what is wrong."""
    path = run_dir / "result.json"
    if not path.is_file():
        return "the harness exited 0 but wrote no result.json"
    try:
        ExperimentResult.model_validate_json(path.read_text(encoding="utf-8"))
    except ValidationError as error:
        if any(item["type"] == "json_invalid" for item in error.errors()):
            return "result.json is not valid JSON (truncated or damaged)"
        return f"result.json does not match the schema: {error.error_count()} problem(s)"
    except ValueError as error:
        return f"result.json is not valid JSON: {error}"
    return None


def copy_study_file(study: Study, study_dir: Path) -> None:
    """Keep the input next to its results (atomically written)."""
    write_text(study_dir / "study.yaml", study.source_text)
