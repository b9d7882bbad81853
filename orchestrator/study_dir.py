"""The study directory: created or resumed here, and held under a lock while a study uses it.

This module is the only writer of ``manifest.json``. Creating a study directory makes
``<output>/<study-name>_<UTC timestamp>`` (suffixed on collision), keeps the study file and its
bases in it (byte for byte) and writes a manifest with every planned run pending. A run is
identified by its configuration hash and cycle; its folder name is a label, given once. Resuming
one re-runs every run that is not completed, re-validates every completed result (a damaged one
is moved aside, never deleted, and run again), refuses a study file that measures other
configurations, and adds the cycles a larger ``--cycles`` asks for. Either way the manifest
records the invocation (the files it loaded the study from, kept in the directory too, and how it
runs the study), and the directory is locked for as long as it is open, so two llem processes
never work on one study.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from harness.errors import ConfigError
from harness.io import write_bytes, write_json
from harness.models import hub_cache, is_commit, is_hub_id
from harness.paths import create_unique_dir, sanitize, utc_stamp
from harness.schema.config import CONTENT_DIGESTS, ExperimentConfig
from harness.schema.reading import SchemaVersionError, UnreadableFileError, read_model
from harness.schema.result import ExperimentResult
from harness.schema.run_spec import RunSpec
from orchestrator.manifest import (
    MANIFEST_NAME,
    Invocation,
    KeptFile,
    Manifest,
    RunEntry,
    SkippedRecord,
    now_utc,
)
from orchestrator.schedule import PlannedRun, RunKey, plan
from orchestrator.stats import STATS_NAME
from orchestrator.study import Study, check_cycles, design_hash, load_study
from orchestrator.study.inputs import changed_content, local_inputs
from orchestrator.summary import SUMMARY_NAME
from orchestrator.tables import CSV_NAME, TABLE_NAME

LOCK_NAME = ".llem.lock"
STUDY_FILE = "study.yaml"
SOURCES_DIR = "sources"
"""Where the files a study was built from are kept, besides the first ``study.yaml``."""
STUDY_FILES = frozenset({MANIFEST_NAME, STUDY_FILE, SUMMARY_NAME, STATS_NAME, TABLE_NAME,
                         CSV_NAME})
"""The study directory's own files (besides hidden ones and ``sources/``): no run folder's name."""
RESULT_FILE = "result.json"
MAX_NAMED = 5
"""Configurations named one by one in a refused design; the rest are counted."""
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

    def positions_to_do(self) -> list[int]:
        """Positions in ``runs`` of the runs still to execute (as the execution picks them)."""
        done = {entry_key(entry) for entry in self.manifest.runs
                if entry.status in ("completed", "skipped")}
        return [i for i, run in enumerate(self.runs) if run.key not in done]

    def runs_to_do(self) -> list[PlannedRun]:
        """The planned runs still to execute, in order."""
        return [self.runs[i] for i in self.positions_to_do()]


@contextlib.contextmanager
def open_study_dir(study: Study, runner_name: str, *, output_root: Path | None = None,
                   resume_dir: Path | None = None, cycles: int | None = None,
                   no_gaps: bool = False) -> Iterator[OpenStudy]:
    """Create a study directory under ``output_root``, or resume ``resume_dir``; hold its lock.

    Args:
        study: the loaded study (its execution settings already overridden).
        runner_name: recorded in the manifest (and its invocation).
        output_root: where a new study directory is made (without ``resume_dir``).
        resume_dir: the study directory to continue.
        cycles: with ``resume_dir``: top up to this many cycles.
        no_gaps: the gaps will be skipped (recorded in the invocation).

    Raises:
        ConfigError: another process holds the directory, the study file's design differs,
            or a file of the directory is damaged or newer (nothing is changed then).
    """
    if resume_dir is not None:
        check_study_dir(resume_dir)
        with study_lock(resume_dir):
            yield resume(study, resume_dir, cycles, runner_name, no_gaps)
        return
    path = new_study_dir(study, output_root or Path("results"))
    with study_lock(path):
        yield create(study, path, runner_name, no_gaps)


def new_study_dir(study: Study, output_root: Path) -> Path:
    """Create ``<output>/<study-name>_<UTC timestamp>`` (suffixed on collision).

    Raises:
        ConfigError: the output root is a file, or lies under one (`check_output_root`).
    """
    check_output_root(output_root)
    return create_unique_dir(output_root, f"{sanitize(study.name)}_{utc_stamp()}")


def check_output_root(output_root: Path) -> None:
    """Refuse an output root that is a file, or lies under one, before anything is written.

    Raises:
        ConfigError: naming the file in the way.
    """
    for folder in (output_root, *output_root.parents):
        if not folder.exists():
            continue
        if folder.is_dir():
            return
        raise ConfigError(
            f"the output root {output_root} cannot be a folder: {folder} is a file",
            fix="pass --output a folder, or a path where one can be made (or move the file "
                "away)")


def create(study: Study, path: Path, runner_name: str, no_gaps: bool = False) -> OpenStudy:
    """Fill a new (empty) study directory: the study's files and a manifest of pending runs."""
    runs = plan(study)
    manifest = new_manifest(study, runs, runner_name)
    record_invocation(path, manifest, study, runner_name, no_gaps)
    save_manifest(path, manifest)
    return OpenStudy(path, manifest, runs)


def new_manifest(study: Study, runs: list[PlannedRun], runner: str) -> Manifest:
    """A manifest with every planned run pending and every skipped entry listed."""
    return Manifest(
        study=study.name,
        design_hash=study.design_hash,
        runner=runner,
        cycle_order=study.execution.cycle_order,
        gpus=study.execution.gpus,
        runs=[_entry(run) for run in runs],
        skipped=[SkippedRecord(description=s.description, reason=s.reason) for s in study.skipped],
        inputs=local_inputs(entry.config for entry in study.experiments),
    )


def _entry(run: PlannedRun, run_id: str | None = None) -> RunEntry:
    config = run.entry.config
    return RunEntry(run_id=run_id or run.run_id, config_hash=config.measurement_config_hash,
                    cycle=run.cycle, slug=run.entry.slug, backend=config.backend)


def entry_key(entry: RunEntry) -> RunKey:
    """A manifest entry's identity: (measurement config hash, cycle)."""
    return entry.config_hash, entry.cycle


def entries_by_key(manifest: Manifest) -> dict[RunKey, RunEntry]:
    """The manifest's entries by identity (what a planned run is looked up by)."""
    return {entry_key(entry): entry for entry in manifest.runs}


def save_manifest(study_dir: Path, manifest: Manifest) -> None:
    """Rewrite manifest.json atomically (the only place that writes it)."""
    write_json(study_dir / MANIFEST_NAME, manifest)


def resume(study: Study, path: Path, cycles: int | None, runner_name: str,
           no_gaps: bool = False) -> OpenStudy:
    """Plan the remaining work of ``path``; the manifest is updated and saved.

    Nothing is written before every check passed: a damaged or newer manifest, a changed
    design or a newer result file leaves the directory as it was.
    """
    manifest, runs, problems = _plan_resume(study, path, cycles)
    notes = [_set_aside(path, entry, problem) for entry, problem in problems]
    if manifest.gpus != study.execution.gpus:
        notes.append(f"GPUs {_gpus(study.execution.gpus)} this time (before: "
                     f"{_gpus(manifest.gpus)})")
        manifest.gpus = study.execution.gpus
    last_order = _last_order(manifest)
    if last_order != study.execution.cycle_order:
        notes.append(f"cycle order {study.execution.cycle_order} this time (before: "
                     f"{last_order})")
    manifest.cycle_order = study.execution.cycle_order  # as of the latest invocation
    record_invocation(path, manifest, study, runner_name, no_gaps)
    save_manifest(path, manifest)
    return OpenStudy(path, manifest, runs, notes)


def preview_resume(study: Study, path: Path, cycles: int | None) -> OpenStudy:
    """What ``resume`` would do, read only (``--resume --dry-run``): no lock, nothing written.

    The same checks as ``resume`` (a study directory, its manifest, the design hash, the run
    limit, result files); a completed result that no longer validates counts as to do.

    Raises:
        ConfigError: as ``open_study_dir`` with ``resume_dir``.
    """
    check_study_dir(path)
    manifest, runs, problems = _plan_resume(study, path, cycles)
    notes = []
    for entry, problem in problems:
        entry.status, entry.result_path = "pending", None
        notes.append(f"{entry.run_id}: {problem}; it would be kept aside and run again")
    return OpenStudy(path, manifest, runs, notes)


def _plan_resume(study: Study, path: Path, cycles: int | None,
                 ) -> tuple[Manifest, list[PlannedRun], list[tuple[RunEntry, str]]]:
    """Read only: the manifest with the top-up's runs added, every planned run, bad results."""
    manifest = Manifest.load(path)
    check_inputs(study, manifest, path)
    check_design(study, manifest, path)
    check_runs(manifest, path)
    done_cycles = max((run.cycle for run in manifest.runs), default=0)
    n_cycles = max(cycles or 0, study.execution.n_cycles if cycles is None else 0, done_cycles)
    if cycles is not None:
        check_cycles(study, cycles, f"cycles={cycles}")
    runs = plan(study, n_cycles)
    manifest.runs = _in_planned_order([*manifest.runs, *_new_entries(runs, manifest, path)],
                                      runs)
    manifest.design_hash = study.design_hash  # the same design; recorded as hashed today
    return manifest, runs, _invalid_results(manifest, path)


def _gpus(gpus: list[int] | None) -> str:
    return "the runner's choice" if gpus is None else ",".join(map(str, gpus))


def record_invocation(study_dir: Path, manifest: Manifest, study: Study, runner_name: str,
                      no_gaps: bool) -> None:
    """Keep the study's files in ``study_dir``; append this invocation to the manifest."""
    execution = study.execution
    manifest.invocations.append(Invocation(
        started_at=now_utc(),
        resumed=(study_dir / MANIFEST_NAME).is_file(),  # saved only once a study is made
        study=study.name,
        files=keep_files(study_dir, study, manifest),
        runner=runner_name,
        n_cycles=max((run.cycle for run in manifest.runs), default=0),
        cycle_order=execution.cycle_order,
        gpus=execution.gpus,
        config_gap_s=0.0 if no_gaps else execution.config_gap_s,
        cycle_gap_s=0.0 if no_gaps else execution.cycle_gap_s,
        no_gaps=no_gaps,
        timeout_s=execution.timeout_s,
        first_executed=len(manifest.executed),
    ))


def keep_files(study_dir: Path, study: Study, manifest: Manifest) -> list[KeptFile]:
    """Copy the files ``study`` was built from into ``study_dir``, byte for byte.

    A file whose bytes the directory already keeps is not copied again, unless this
    invocation read the same bytes from two folders: relative paths in each mean its own
    folder's files, so each gets its own copy. The first study file becomes ``study.yaml``;
    every other file goes to ``sources/<sha256[:12]>/<its name>`` (``<sha256[:12]>_2`` and so
    on for the same bytes from another folder), so files of the same name (two
    ``base.yaml``) never meet. Loading the copies in the order returned (`load_kept_study`)
    rebuilds the study exactly.
    """
    kept = _kept_by_digest(study_dir, manifest)
    folders: dict[str, Path] = {}  # the folder each copy this invocation uses stands for
    records = []
    for source in study.files:
        digest = hashlib.sha256(source.data).hexdigest()
        origin = _origin(source.path)
        copy = kept.get(digest)
        if copy is None or folders.get(copy, origin.parent) != origin.parent:
            copy = _new_copy(study_dir, digest, source.path.name)
            write_bytes(study_dir / copy, source.data)
            kept.setdefault(digest, copy)
        folders[copy] = origin.parent
        records.append(KeptFile(path=copy, origin=str(origin), sha256=digest,
                                base=source.base))
    return records


def _origin(path: Path) -> Path:
    """Where ``path`` was read, absolute: its folder resolved, the file itself not.

    A study file reached through a symlink stands where the link is: its relative paths (and
    its ``base:``) were resolved beside the link when it was loaded, so they are again.
    """
    return path.parent.resolve() / path.name


def _new_copy(study_dir: Path, digest: str, name: str) -> str:
    """Where a file not kept yet goes (relative to the study directory)."""
    if not (study_dir / STUDY_FILE).exists():
        return STUDY_FILE
    copy, number = f"{SOURCES_DIR}/{digest[:12]}/{sanitize(name)}", 1
    while (study_dir / copy).exists():
        number += 1
        copy = f"{SOURCES_DIR}/{digest[:12]}_{number}/{sanitize(name)}"
    return copy


def _kept_by_digest(study_dir: Path, manifest: Manifest) -> dict[str, str]:
    kept = {file.sha256: file.path for invocation in manifest.invocations
            for file in invocation.files if (study_dir / file.path).is_file()}
    if not manifest.invocations and (study_dir / STUDY_FILE).is_file():  # an older llem's
        kept[hashlib.sha256((study_dir / STUDY_FILE).read_bytes()).hexdigest()] = STUDY_FILE
    return kept


def load_kept_study(study_dir: Path, *, first: bool = False) -> Study:
    """The study as it last ran, from ``study_dir`` alone: the latest invocation's files.

    The latest invocation's files, bases included, give its settings outside the design too
    (``timeout_s``, gaps), as it last ran; its design is the study's (the design check let it
    run). It runs in the cycle order and GPU selection of the latest invocation (an
    ``--order`` or ``--gpus`` given then, not the file's), which flags given now override.
    ``first``: the first invocation's files instead (``study.yaml`` named as the file).

    The loaded study's files stand where their originals stood (``origin``), so the
    invocation that runs it records the originals' places again, never the copies'.

    Raises:
        ConfigError: not a study directory, or a kept file is missing.
        StudyFileError: a kept file no longer loads (edited by hand).
    """
    check_study_dir(study_dir)
    manifest = Manifest.load(study_dir)
    if not manifest.invocations:  # an older llem's: bases are looked up next to study.yaml
        _check_kept(study_dir, [study_dir / STUDY_FILE])
        return as_last_run(load_study(study_dir / STUDY_FILE), manifest)
    kept = manifest.invocations[0 if first else -1].files
    files = [study_dir / file.path for file in kept]
    _check_kept(study_dir, files)
    # Relative paths in each copy mean what they meant beside its original.
    origins = {(study_dir / file.path).resolve(): Path(file.origin).parent for file in kept}
    study = load_study(files[0], files[1:], origins)
    originals = tuple(dataclasses.replace(source, path=Path(file.origin))
                      for source, file in zip(study.files, kept, strict=True))
    return as_last_run(dataclasses.replace(study, files=originals), manifest)


def _check_kept(study_dir: Path, files: list[Path]) -> None:
    for path in files:
        if not path.is_file():
            raise ConfigError(f"{study_dir} holds no {path.relative_to(study_dir)}",
                              fix="pass the study file too: llem run FILE --resume DIR")


def as_last_run(study: Study, manifest: Manifest) -> Study:
    """``study`` with the cycle order and GPU selection its directory last ran with."""
    update = {"cycle_order": _last_order(manifest), "gpus": manifest.gpus}
    return dataclasses.replace(study, execution=study.execution.model_copy(update=update))


def _last_order(manifest: Manifest) -> str:
    """The cycle order the study last ran in.

    The manifest's own is the first invocation's in a directory an older llem resumed (its
    ``gpus`` is always the latest invocation's).
    """
    return manifest.invocations[-1].cycle_order if manifest.invocations \
        else manifest.cycle_order


def finish_invocation(study_dir: Path, manifest: Manifest, interrupted: bool) -> None:
    """Record that this invocation wrote its summary now (and whether it was stopped)."""
    if manifest.invocations:
        manifest.invocations[-1].finished_at = now_utc()
        manifest.invocations[-1].interrupted = interrupted
        save_manifest(study_dir, manifest)


def _new_entries(runs: list[PlannedRun], manifest: Manifest, study_dir: Path) -> list[RunEntry]:
    """Entries for the planned runs the manifest lacks (a top-up's cycles), newly named.

    A run is named after its configuration's runs already in the manifest (``003_bs8_c1``
    gives ``003_bs8_c2``), whatever the study file now numbers or calls it; a name already
    used by a run or by anything in the directory gets a suffix instead: a new run never
    shares a folder with another.
    """
    known = entries_by_key(manifest)
    taken = {entry.run_id for entry in manifest.runs}
    labels = _labels(manifest)
    added: list[RunEntry] = []
    for run in runs:
        if run.key in known:
            continue
        label = labels.get(run.key[0], run.label)
        run_id = _unused(f"{label}_c{run.cycle}", taken, study_dir)
        taken.add(run_id)
        added.append(_entry(run, run_id))
    return added


def _in_planned_order(entries: list[RunEntry], runs: list[PlannedRun]) -> list[RunEntry]:
    """``entries`` in the order of ``runs`` (a top-up's cycles among the earlier ones).

    An entry the plan lacks keeps its place relative to the others like it, after the rest.
    """
    position = {run.key: i for i, run in enumerate(runs)}
    planned = sorted((e for e in entries if entry_key(e) in position),
                     key=lambda e: position[entry_key(e)])
    return planned + [e for e in entries if entry_key(e) not in position]


def _labels(manifest: Manifest) -> dict[str, str]:
    """The name each configuration's runs carry, without their cycle, by config hash."""
    labels: dict[str, str] = {}
    for entry in manifest.runs:
        suffix = f"_c{entry.cycle}"
        if entry.run_id.endswith(suffix):
            labels.setdefault(entry.config_hash, entry.run_id.removesuffix(suffix))
    return labels


def _unused(name: str, taken: set[str], study_dir: Path) -> str:
    candidate, suffix = name, 0
    while candidate in taken or (study_dir / candidate).exists():
        suffix += 1
        candidate = f"{name}_{suffix}"
    return candidate


def check_runs(manifest: Manifest, study_dir: Path) -> None:
    """Refuse a damaged or edited manifest that would mislead resume.

    It lists one run, or one run directory, twice, or names a run directory that is not a
    folder of its own directly inside the study directory.
    """
    keys: dict[RunKey, str] = {}
    names: set[str] = set()
    for entry in manifest.runs:
        problem = _run_id_problem(entry.run_id)
        if problem is not None:
            raise ConfigError(
                f"{study_dir / MANIFEST_NAME} names the folder of the run of configuration "
                f"{entry.config_hash}, cycle {entry.cycle}, {entry.run_id!r}: {problem}; "
                "resume would empty that folder for the run",
                fix=f"restore manifest.json from a backup, or give the run its own folder "
                    f"name there (e.g. {_plain_name(entry)}), or start a new study with "
                    "llem run FILE")
        first = keys.setdefault(entry_key(entry), entry.run_id)
        if first != entry.run_id or entry.run_id in names:
            raise ConfigError(
                f"{study_dir / MANIFEST_NAME} lists the run {entry.run_id} (configuration "
                f"{entry.config_hash}, cycle {entry.cycle}) twice",
                fix="restore manifest.json from a backup, or start a new study with "
                    "llem run FILE")
        names.add(entry.run_id)


def _run_id_problem(run_id: str) -> str | None:
    """Why ``run_id`` cannot name a run's folder, or None when it can.

    A run folder is one plain name directly inside the study directory: never a path (with a
    separator, ``..`` or a root), never hidden (``.llem.lock``, ``.baseline-cache``), never
    the folder the study's own files are kept in, since a new attempt empties it, and never
    the name of one of the study directory's own files (``stats.json``, which a folder of
    that name would keep from ever being written). Names are compared case-blind, as a
    case-insensitive filesystem (macOS, Windows) would.
    """
    if not run_id or run_id in (".", ".."):
        return "not a folder name"
    if "/" in run_id or "\\" in run_id or "\0" in run_id or Path(run_id).is_absolute():
        return "a path, not a folder name inside the study directory"
    if run_id.startswith("."):
        return "a hidden name, which llem keeps for its own files"
    if run_id.casefold() == SOURCES_DIR:
        return "the folder the study's files are kept in"
    if run_id.casefold() in STUDY_FILES:
        return "the name of one of the study directory's own files"
    return None


def _plain_name(entry: RunEntry) -> str:
    return f"{sanitize(entry.slug)}_c{entry.cycle}"


def check_design(study: Study, manifest: Manifest, study_dir: Path) -> None:
    """Refuse, naming what changed, when the study file measures other configurations.

    The design is the set of configurations (their hashes), so the order they are written
    in never matters, and a refusal always names at least one configuration. A study directory
    of an older llem (its manifest records no invocation) is told apart: its configuration
    hashes may have been computed otherwise, so the refusal says so and how to finish it.
    """
    old = {run.config_hash: run.slug for run in manifest.runs}
    new = {entry.config.measurement_config_hash: entry.slug for entry in study.experiments}
    added = {key: slug for key, slug in new.items() if key not in old}
    removed = {key: slug for key, slug in old.items() if key not in new}
    if not added and not removed:
        return
    changes = (f"{len(added)} configuration(s) added{_named(added, removed)}, "
               f"{len(removed)} removed or changed{_named(removed, added)}")
    if not manifest.invocations:
        raise ConfigError(
            f"the study in {study_dir} was made by an older llem, whose configuration hashes "
            "differ from this llem's for some configurations (a backend section that sets "
            "nothing, such as pytorch: {}; a local dataset or model, now hashed by its "
            "absolute path and its content): its runs cannot be matched to the study file's "
            f"configurations ({changes})",
            fix="finish the study with the llem that made it, or start a new study with "
                "llem run FILE")
    differs = f"the study file's design differs from the study in {study_dir}"
    if study.design_hash != manifest.design_hash:  # equal hashes are no news to the user
        differs = (f"the study file's design (hash {study.design_hash}) differs from the "
                   f"study in {study_dir} (hash {manifest.design_hash})")
    moved = _moved_inputs(study, manifest, study_dir, set(added), set(removed))
    if moved:
        raise ConfigError(f"{differs}: {changes}; " + "; ".join(text for text, _ in moved),
                          fix=moved[0][1])
    raise ConfigError(
        f"{differs}: {changes}",
        fix="resume with the original study file, or start a new study with llem run FILE",
    )


def _moved_inputs(study: Study, manifest: Manifest, study_dir: Path, added: set[str],
                  removed: set[str]) -> list[tuple[str, str]]:
    """(what moved, its fix) per added configuration differing from a removed one in digests.

    Such a configuration reads the same model or dataset with other content (a hub branch the
    cache moved, a file edited).

    The removed configurations are read from their runs' ``experiment.json``; runs that never
    started have none, and then nothing is said.
    """
    before = _run_configs(manifest, study_dir, removed)
    moved: dict[str, tuple[str, str]] = {}
    for entry in study.experiments:
        now = entry.config
        if now.measurement_config_hash not in added:
            continue
        for old in before.values():
            if _without_digests(old) == _without_digests(now):
                moved.update(_digest_changes(old, now))
    return list(moved.values())


def pin_measured_commits(study: Study, study_dir: Path) -> Study:
    """``study`` with each hub model the cache cannot name a commit for pinned as its runs ran.

    A hub model at a branch or tag gets its commit from the host's Hugging Face cache when the
    study is loaded; after ``hf cache delete``, on another host or with another ``HF_HOME``
    there is none, and the configuration would hash as another one. Resuming, it takes the
    commit the study's runs measured (from their ``experiment.json``), so the resume fetches
    and runs that commit, not wherever the branch points now. Read only; unchanged when no run
    of the configuration ever started.
    """
    if not any(_unpinned(entry.config) for entry in study.experiments):
        return study
    try:
        manifest = Manifest.load(study_dir)
    except (ConfigError, OSError, ValueError):
        return study  # the resume's own checks say what is wrong with the directory
    measured = [config for config in _run_configs(manifest, study_dir).values()
                if is_commit(config.model_digest)]
    entries = []
    for entry in study.experiments:
        same = [old for old in measured if _unpinned(entry.config)
                and _without_digests(old) == _without_digests(entry.config)]
        if same:
            entry = dataclasses.replace(entry, config=entry.config.model_copy(
                update={"model_digest": same[0].model_digest}))
        entries.append(entry)
    canonical = [entry.config.canonical_json() for entry in entries]
    return dataclasses.replace(study, experiments=entries, design_hash=design_hash(canonical))


def _unpinned(config: ExperimentConfig) -> bool:
    return config.model_digest is None and is_hub_id(config.model) and not is_commit(
        config.revision)


def _run_configs(manifest: Manifest, study_dir: Path,
                 hashes: set[str] | None = None) -> dict[str, ExperimentConfig]:
    """The configuration of each hash (all, or ``hashes``) that a started run recorded."""
    found: dict[str, ExperimentConfig] = {}
    for run in manifest.runs:
        if run.config_hash in found or (hashes is not None and run.config_hash not in hashes):
            continue
        with contextlib.suppress(OSError, ValueError):
            found[run.config_hash] = RunSpec.model_validate_json(
                (study_dir / run.run_id / "experiment.json").read_bytes()).config
    return found


def _without_digests(config: ExperimentConfig) -> ExperimentConfig:
    return config.model_copy(update=dict.fromkeys(CONTENT_DIGESTS))


def _digest_changes(old: ExperimentConfig, now: ExperimentConfig) -> dict[str, tuple[str, str]]:
    changes: dict[str, tuple[str, str]] = {}
    if old.model_digest != now.model_digest:
        at = f" at revision '{now.revision or 'main'}'" if is_hub_id(now.model) else ""
        text = (f"model '{now.model}'{at} is now {_short(now.model_digest)}, the study's runs "
                f"measured {_short(old.model_digest)}")
        fix = "restore the model as it was, or start a new study with llem run FILE"
        if is_commit(old.model_digest) and is_commit(now.model_digest):
            refs = hub_cache() / f"models--{now.model.replace('/', '--')}" / "refs"
            text = (f"model '{now.model}'{at} now resolves to commit {now.model_digest} in "
                    "the Hugging Face cache (moved since, e.g. by a fetch after an upstream "
                    f"push); the study's runs measured commit {old.model_digest}")
            fix = (f"start a new study with llem run FILE to measure commit "
                   f"{_short(now.model_digest)}; to finish this one on commit "
                   f"{_short(old.model_digest)}, point the cache back at it (write "
                   f"{old.model_digest} into {refs / (now.revision or 'main')})")
        changes[f"model {now.model}"] = (text, fix)
    if old.dataset_sha256 != now.dataset_sha256:
        changes[f"dataset {now.dataset}"] = (
            f"dataset {now.dataset} now has content SHA-256 {_short(now.dataset_sha256)}, the "
            f"study's runs measured {_short(old.dataset_sha256)}",
            f"restore {Path(now.dataset).name} as it was, or start a new study with llem run FILE")
    return changes


def _short(digest: str | None) -> str:
    if digest is None:
        return "no digest"
    return digest if len(digest) <= 20 else digest[:16] + "..."


def _named(configs: dict[str, str], others: dict[str, str]) -> str:
    """`` (slug, slug and N more)`` in design order; a slug both sides show gets its hash."""
    if not configs:
        return ""
    clashing = set(configs.values()) & set(others.values())
    names = [f"{slug} [{key}]" if slug in clashing else slug for key, slug in configs.items()]
    shown = ", ".join(names[:MAX_NAMED])
    more = f" and {len(names) - MAX_NAMED} more" if len(names) > MAX_NAMED else ""
    return f" ({shown}{more})"


def check_inputs(study: Study, manifest: Manifest, study_dir: Path) -> None:
    """Refuse, naming the file, when a local dataset or model the study read has changed."""
    now = local_inputs(entry.config for entry in study.experiments)
    for path, digest in manifest.inputs.items():
        if path not in now or now[path] == digest:
            continue
        what = ("no longer exists" if now[path] is None else
                f"has changed content{changed_content(Path(path), digest)} (digest "
                f"{now[path]}, the study's runs measured {digest})")
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
    """Rename ``result`` to ``result.json<mark><UTC stamp>`` (never over another); the name.

    The other files of its attempt (time series, events, log, experiment.json) are part of
    the measurement: they are kept beside it under the same suffix, never deleted by the
    attempt that follows.
    """
    stamp = f"{mark}{utc_stamp()}"
    kept = result.with_name(f"{RESULT_FILE}{stamp}")
    suffix = 0
    while kept.exists():  # a second one within the same second
        suffix += 1
        stamp = f"{mark}{utc_stamp()}_{suffix}"
        kept = kept.with_name(f"{RESULT_FILE}{stamp}")
    result.rename(kept)
    for companion in result.parent.iterdir():
        if (companion.is_file() and not companion.is_symlink() and INVALID_MARK not in
                companion.name and UNRECORDED_MARK not in companion.name):
            target = companion.with_name(f"{companion.name}{stamp}")
            if not target.exists():
                companion.rename(target)
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
    """An empty run directory for a new attempt; results moved aside by resume stay.

    Raises:
        ConfigError: ``run_id`` does not name a folder of its own directly inside
            ``study_dir``: a path, or a symbolic link (wherever it leads, even to another
            run's folder beside it): nothing but the run's own folder is ever emptied.
        OSError: the folder could not be emptied or made.
    """
    run_dir = study_dir / run_id
    if (_run_id_problem(run_id) is not None or run_dir.is_symlink()
            or run_dir.resolve().parent != study_dir.resolve()):
        raise ConfigError(
            f"the folder of run {run_id!r} is not a folder of its own in {study_dir} (it "
            f"leads to {run_dir.resolve()}): it is not emptied for a new attempt",
            fix=f"make {run_dir} a plain folder of the study directory (remove the link, "
                "never what it leads to)")
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


def check_study_dir(path: Path) -> None:
    """Refuse a folder without a readable manifest of ours, before anything is written into it.

    Called before the lock is taken, so a folder that is not a study is left as it was.

    Raises:
        ConfigError: no manifest.json, or one that is damaged, newer or not llem's.
    """
    if not (path / MANIFEST_NAME).is_file():
        raise ConfigError(f"{path} holds no {MANIFEST_NAME}: not a study directory",
                          fix="pass a study directory made by llem run")
    Manifest.load(path)


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
