"""The study directory: created or resumed here, and held under a lock while a study uses it.

This module is the only writer of ``manifest.json``. Creating a study directory makes
``<output>/<study-name>_<UTC timestamp>`` (suffixed on collision), copies the study file into
it and writes a manifest with every planned run pending. Resuming one re-runs every run that is
not completed, re-validates every completed result (a damaged one is moved aside, never
deleted, and run again), refuses a study file whose design differs, and adds the cycles a larger
``--cycles`` asks for. Either way the directory is locked for as long as it is open, so two
llem processes never work on one study.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from harness.errors import ConfigError
from harness.io import write_json, write_text
from harness.paths import create_unique_dir, sanitize, utc_stamp
from harness.schema.reading import SchemaVersionError, UnreadableFileError, read_model
from harness.schema.result import ExperimentResult
from orchestrator.manifest import MANIFEST_NAME, Manifest, RunEntry, SkippedRecord, now_utc
from orchestrator.schedule import PlannedRun, plan
from orchestrator.study import Study
from orchestrator.study.inputs import local_inputs

LOCK_NAME = ".llem.lock"
STUDY_FILE = "study.yaml"
RESULT_FILE = "result.json"
INVALID_MARK = ".invalid-"
"""Infix of a result moved aside by resume (``result.json.invalid-<UTC stamp>``)."""
UNRECORDED_MARK = ".unrecorded-"
"""Infix of a result found in the directory of a run being redone, that no manifest recorded
(its orchestrator died while the harness finished): kept, never deleted."""


@dataclass
class OpenStudy:
    """A study directory held under its lock, ready to execute.

    Attributes:
        path: the study directory.
        manifest: its manifest, as saved.
        runs: every planned run in order, completed ones included.
        notes: what resume found and did (results moved aside), one line each for the user.
    """

    path: Path
    manifest: Manifest
    runs: list[PlannedRun]
    notes: list[str] = field(default_factory=list)

    @property
    def todo(self) -> int:
        """Runs still to execute (neither completed nor skipped)."""
        return sum(1 for run in self.manifest.runs if run.status not in ("completed", "skipped"))


@contextlib.contextmanager
def open_study_dir(study: Study, runner_name: str, *, output_root: Path | None = None,
                   resume_dir: Path | None = None,
                   cycles: int | None = None) -> Iterator[OpenStudy]:
    """Create a study directory under ``output_root``, or resume ``resume_dir``; hold its lock.

    Args:
        study: the loaded study (its execution settings already overridden).
        runner_name: recorded in a new manifest.
        output_root: where a new study directory is made (without ``resume_dir``).
        resume_dir: the study directory to continue.
        cycles: with ``resume_dir``: top up to this many cycles.

    Raises:
        ConfigError: another process holds the directory, the study file's design differs,
            or a file of the directory is damaged or newer (nothing is changed then).
    """
    if resume_dir is not None:
        _check_is_study_dir(resume_dir)
        with study_lock(resume_dir):
            yield resume(study, resume_dir, cycles)
        return
    path = new_study_dir(study, output_root or Path("results"))
    with study_lock(path):
        yield create(study, path, runner_name)


def new_study_dir(study: Study, output_root: Path) -> Path:
    """Create ``<output>/<study-name>_<UTC timestamp>`` (suffixed on collision)."""
    return create_unique_dir(output_root, f"{sanitize(study.name)}_{utc_stamp()}")


def create(study: Study, path: Path, runner_name: str) -> OpenStudy:
    """Fill a new (empty) study directory: the study file and a manifest of pending runs."""
    write_text(path / STUDY_FILE, study.source_text)
    runs = plan(study)
    manifest = new_manifest(study, runs, runner_name)
    save_manifest(path, manifest)
    return OpenStudy(path, manifest, runs)


def new_manifest(study: Study, runs: list[PlannedRun], runner: str) -> Manifest:
    """A manifest with every planned run pending and every skipped entry listed."""
    return Manifest(
        study=study.name,
        design_hash=study.design_hash,
        runner=runner,
        cycle_order=study.execution.cycle_order,
        runs=[_entry(run) for run in runs],
        skipped=[SkippedRecord(description=s.description, reason=s.reason) for s in study.skipped],
        inputs=local_inputs(entry.config for entry in study.experiments),
        source_dir=str(study.source_path.resolve().parent),
    )


def _entry(run: PlannedRun) -> RunEntry:
    config = run.entry.config
    return RunEntry(run_id=run.run_id, config_hash=config.measurement_config_hash,
                    cycle=run.cycle, slug=run.entry.slug, backend=config.backend)


def save_manifest(study_dir: Path, manifest: Manifest) -> None:
    """Rewrite manifest.json atomically (the only place that writes it)."""
    write_json(study_dir / MANIFEST_NAME, manifest)


def resume(study: Study, path: Path, cycles: int | None) -> OpenStudy:
    """Plan the remaining work of ``path``; the manifest is updated and saved.

    Nothing is written before every check passed: a damaged or newer manifest, a changed
    design or a newer result file leaves the directory as it was.
    """
    manifest = Manifest.load(path)
    check_inputs(study, manifest, path)
    check_design(study, manifest, path)
    done_cycles = max((run.cycle for run in manifest.runs), default=0)
    n_cycles = max(cycles or 0, study.execution.n_cycles if cycles is None else 0, done_cycles)
    runs = plan(study, n_cycles)
    known = {(run.config_hash, run.cycle) for run in manifest.runs}
    manifest.runs.extend(_entry(run) for run in runs
                         if (run.entry.config.measurement_config_hash, run.cycle) not in known)
    problems = _invalid_results(manifest, path)
    notes = [_set_aside(path, entry, problem) for entry, problem in problems]
    save_manifest(path, manifest)
    return OpenStudy(path, manifest, runs, notes)


def check_design(study: Study, manifest: Manifest, study_dir: Path) -> None:
    """Refuse, saying what changed, when the study file is not the study in ``study_dir``."""
    if study.design_hash == manifest.design_hash:
        return
    old = {run.config_hash for run in manifest.runs}
    new = {entry.config.measurement_config_hash for entry in study.experiments}
    added, removed = len(new - old), len(old - new)
    raise ConfigError(
        f"the study file's design (hash {study.design_hash}) differs from the study in "
        f"{study_dir} (hash {manifest.design_hash}): {added} configuration(s) added, "
        f"{removed} removed or changed",
        fix="resume with the original study file, or start a new study with llem run FILE",
    )


def check_inputs(study: Study, manifest: Manifest, study_dir: Path) -> None:
    """Refuse, naming the file, when a local dataset or model the study read has changed."""
    now = local_inputs(entry.config for entry in study.experiments)
    for path, digest in manifest.inputs.items():
        if path not in now or now[path] == digest:
            continue
        what = ("no longer exists" if now[path] is None else
                f"has changed content (digest {now[path]}, the study's runs measured {digest})")
        raise ConfigError(
            f"{path}, read by the study in {study_dir}, {what}: its runs cannot be continued "
            "with other content", fix=f"restore {Path(path).name} as it was, or start a new "
            "study with llem run FILE (a changed workload or model is another configuration)")


def _invalid_results(manifest: Manifest, study_dir: Path) -> list[tuple[RunEntry, str]]:
    # Read-only: a result of a newer schema raises here, before anything is moved.
    problems = []
    for entry in manifest.runs:
        if entry.status != "completed":
            continue
        try:
            check_result(study_dir / entry.run_id)
        except SchemaVersionError:
            raise
        except UnreadableFileError as error:
            problems.append((entry, f"{RESULT_FILE} {error.detail}"))
    return problems


def _set_aside(study_dir: Path, entry: RunEntry, problem: str) -> str:
    """Mark the run pending again; move its invalid result aside. Returns the note."""
    entry.status, entry.result_path = "pending", None
    result = study_dir / entry.run_id / RESULT_FILE
    if not result.is_file():
        return f"{entry.run_id}: {problem}; it runs again"
    kept = _keep(result, INVALID_MARK)
    return (f"{entry.run_id}: {problem}; kept as {kept.relative_to(study_dir)}; "
            "it runs again")


def _keep(result: Path, mark: str) -> Path:
    """Rename ``result`` to ``result.json<mark><UTC stamp>`` (never over another); the name."""
    kept = result.with_name(f"{RESULT_FILE}{mark}{utc_stamp()}")
    suffix = 0
    while kept.exists():  # a second one within the same second
        suffix += 1
        kept = kept.with_name(f"{RESULT_FILE}{mark}{utc_stamp()}_{suffix}")
    result.rename(kept)
    return kept


def check_result(run_dir: Path) -> ExperimentResult:
    """The run's validated result.json.

    Raises:
        UnreadableFileError: missing, damaged or not matching the schema.
        SchemaVersionError: written by an llem with another schema version.
    """
    return read_model(run_dir / RESULT_FILE, ExperimentResult)


def validate_result(run_dir: Path) -> str | None:
    """None when run_dir/result.json exists and validates; otherwise what is wrong."""
    if not (run_dir / RESULT_FILE).is_file():
        return f"the harness exited 0 but wrote no {RESULT_FILE}"
    try:
        check_result(run_dir)
    except UnreadableFileError as error:
        return f"{RESULT_FILE} {error.detail}"
    return None


def fresh_run_dir(study_dir: Path, run_id: str) -> Path:
    """An empty run directory for a new attempt; results moved aside by resume stay."""
    run_dir = study_dir / run_id
    if run_dir.is_dir():
        if (run_dir / RESULT_FILE).is_file():
            _keep(run_dir / RESULT_FILE, UNRECORDED_MARK)
        for child in run_dir.iterdir():  # what a stale attempt of the run left
            if INVALID_MARK in child.name or UNRECORDED_MARK in child.name:
                continue
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
    run_dir.mkdir(exist_ok=True)
    return run_dir


def mark_running(study_dir: Path, manifest: Manifest, entry: RunEntry) -> None:
    """Record that ``entry`` starts now (and in which order): status, time, ``executed``."""
    entry.status, entry.started_at, entry.failure = "running", now_utc(), None
    manifest.executed.append(entry.run_id)
    save_manifest(study_dir, manifest)


def _check_is_study_dir(path: Path) -> None:
    if not (path / MANIFEST_NAME).is_file():
        raise ConfigError(f"{path} holds no {MANIFEST_NAME}: not a study directory",
                          fix="pass a study directory made by llem run")


@contextlib.contextmanager
def study_lock(study_dir: Path) -> Iterator[None]:
    """Hold the study directory for this process; refuse when another llem run holds it."""
    from filelock import FileLock, Timeout

    lock = FileLock(str(study_dir / LOCK_NAME))
    try:
        lock.acquire(timeout=0)
    except Timeout as error:
        raise ConfigError(f"another llem run is working on {study_dir}",
                          fix="wait for it to finish, or stop it (Ctrl-C) first") from error
    try:
        yield
    finally:
        lock.release()
