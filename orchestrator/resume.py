"""Resume and top up a study directory.

Identity of a run is (measurement config hash, cycle). Resuming re-runs every run that is not
completed, re-validates every completed one (a missing or damaged result is run again), refuses
a study file whose design differs, and adds the cycles a larger ``--cycles`` asks for.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from harness.errors import ConfigError
from orchestrator.execute import PlannedRun, plan, validate_result
from orchestrator.manifest import Manifest, RunEntry
from orchestrator.study import Study

LOCK_NAME = ".llem.lock"


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


def prepare(study: Study, study_dir: Path, cycles: int | None) -> tuple[list[PlannedRun],
                                                                         Manifest, list[str]]:
    """Plan the remaining work of ``study_dir``; the manifest is updated and saved.

    Returns the planned runs (in order), the manifest, and notes for the user (runs whose
    result was missing or invalid).
    """
    manifest = Manifest.load(study_dir)
    check_design(study, manifest, study_dir)
    done_cycles = max((run.cycle for run in manifest.runs), default=0)
    n_cycles = max(cycles or 0, study.execution.n_cycles if cycles is None else 0, done_cycles)
    runs = plan(study, n_cycles)
    known = {(run.config_hash, run.cycle) for run in manifest.runs}
    for run in runs:
        if (run.entry.config.measurement_config_hash, run.cycle) not in known:
            manifest.runs.append(RunEntry(
                run_id=run.run_id, config_hash=run.entry.config.measurement_config_hash,
                cycle=run.cycle, slug=run.entry.slug, backend=run.entry.config.backend))
    notes = _revalidate(manifest, study_dir)
    manifest.save(study_dir)
    return runs, manifest, notes


def _revalidate(manifest: Manifest, study_dir: Path) -> list[str]:
    notes = []
    for run in manifest.runs:
        if run.status != "completed":
            continue
        problem = validate_result(study_dir / run.run_id)
        if problem is not None:
            run.status, run.result_path = "pending", None
            notes.append(f"{run.run_id}: {problem}; it runs again")
    return notes


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
