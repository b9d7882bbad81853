"""Load a study file: read, expand, validate, de-duplicate, hash."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from harness.errors import ConfigError
from orchestrator.study.document import read_source
from orchestrator.study.errors import Pos, StudyFileError
from orchestrator.study.expand import Recipe, make_plan
from orchestrator.study.inputs import pin_inputs
from orchestrator.study.model import SkippedEntry, Study, StudyEntry
from orchestrator.study.slug import slug
from orchestrator.study.validate import build, parse_execution, parse_report

MAX_RUNS = 100_000
"""Most runs (configurations x cycles) a study may expand to."""
MAX_DUPLICATE_WARNINGS = 10
"""Duplicates named one by one; the rest are counted in one more warning."""


def load_study(path: Path, bases: Sequence[Path] | None = None,
               origins: Mapping[Path, Path] | None = None) -> Study:
    """Load a study file (or a single-experiment file) and resolve every experiment.

    Local model directories and ``.jsonl`` datasets are made absolute and their content
    pinned (:mod:`orchestrator.study.inputs`).

    Args:
        path: the YAML file.
        bases: its chain of ``base:`` files, to read instead of looking each up next to the
            file that names it (a study directory's copies): the file's base is ``bases[0]``,
            that one's base ``bases[1]``, and so on.
        origins: the directory each file read stood in when the study was first loaded, by
            the file's resolved path (a study directory's copies): relative paths written in
            the file resolve against it, as they did beside the original.

    Returns:
        The study: its experiments in design order (grids per backend, then explicit
        entries), the combinations the cross-checks skipped, warnings, and the execution
        settings.

    Raises:
        StudyFileError: the file cannot be read or parsed, a key or value is invalid, the grid
            is too large, or nothing would run. The error names the file, line and column.

    """
    source = read_source(path, bases)
    execution = parse_execution(source.execution)
    plan = make_plan(source)
    _check_size(plan.count(), execution.n_cycles, source.anchor)
    kept, canonical, skipped, warnings = _resolve(plan.recipes(), origins)
    _check_not_empty(kept, skipped, source.anchor)
    return Study(
        name=source.name,
        source_path=path,
        source_text=source.text,
        experiments=kept,
        skipped=skipped,
        warnings=warnings,
        execution=execution,
        report=parse_report(source.report),
        design_hash=design_hash(canonical),
        files=source.files,
    )


def design_hash(canonical_configs: Iterable[str]) -> str:
    """First 16 hex digits of SHA-256 over the set of the experiments' canonical JSON.

    A function of which configurations the study measures, not of the order they are written
    or run in: sweep keys or values written in another order give the same hash.
    """
    joined = "[" + ",".join(sorted(set(canonical_configs))) + "]"
    return hashlib.sha256(joined.encode()).hexdigest()[:16]


def check_cycles(study: Study, n_cycles: int, asked: str) -> None:
    """Refuse ``n_cycles`` (an override such as ``--cycles``) when the runs pass ``MAX_RUNS``.

    Args:
        study: the loaded study.
        n_cycles: the cycles asked for.
        asked: how the user asked, for the message (``--cycles 50001``).

    Raises:
        ConfigError: too many runs, with the most cycles this study may have.

    """
    configurations = len(study.experiments)
    runs = configurations * n_cycles
    if runs <= MAX_RUNS:
        return
    raise ConfigError(
        f"{asked}: the study would have {runs:,} runs ({configurations:,} configurations x "
        f"{n_cycles:,} cycles); the limit is {MAX_RUNS:,}",
        fix=f"ask for at most {MAX_RUNS // configurations:,} cycles, or split the study into "
        "several files",
    )


def _check_size(configurations: int, n_cycles: int, anchor: Pos) -> None:
    runs = configurations * n_cycles
    if runs > MAX_RUNS:
        raise StudyFileError(
            f"the study expands to {runs:,} runs ({configurations:,} configurations x "
            f"{n_cycles} cycles); the limit is {MAX_RUNS:,}",
            file=anchor.file,
            fix="sweep fewer values, or split the study into several files",
        )


def _resolve(
    recipes: Iterable[Recipe], origins: Mapping[Path, Path] | None,
) -> tuple[list[StudyEntry], list[str], list[SkippedEntry], list[str]]:
    kept: list[StudyEntry] = []
    seen: dict[str, StudyEntry] = {}
    skipped: list[SkippedEntry] = []
    duplicates: list[str] = []
    for recipe in recipes:
        built = build(recipe)
        if isinstance(built, SkippedEntry):
            skipped.append(built)
            continue
        built = pin_inputs(built, recipe, origins)
        entry = StudyEntry(built, slug(recipe.tokens), recipe.origin)
        canonical = built.canonical_json()
        first = seen.setdefault(canonical, entry)
        if first is entry:
            kept.append(entry)
        else:
            duplicates.append(_duplicate_warning(entry, first))
    return kept, list(seen), skipped, _cap(duplicates)


def _duplicate_warning(entry: StudyEntry, first: StudyEntry) -> str:
    return (
        f"{entry.slug} ({entry.origin}) is the same configuration as {first.slug} "
        f"({first.origin}), hash {first.config.measurement_config_hash}; it runs once"
    )


def _cap(warnings: list[str]) -> list[str]:
    if len(warnings) <= MAX_DUPLICATE_WARNINGS:
        return warnings
    rest = len(warnings) - MAX_DUPLICATE_WARNINGS
    return [*warnings[:MAX_DUPLICATE_WARNINGS], f"... and {rest} more duplicate configurations"]


def _check_not_empty(kept: list[StudyEntry], skipped: list[SkippedEntry], anchor: Pos) -> None:
    if kept:
        return
    if not skipped:
        raise StudyFileError.at(
            anchor,
            "the study has no experiments",
            fix="add values under 'sweep:' or entries under 'experiments:'",
        )
    reasons = "; ".join(f"{s.description}: {s.reason}" for s in skipped[:3])
    more = f" (and {len(skipped) - 3} more)" if len(skipped) > 3 else ""
    raise StudyFileError.at(
        anchor,
        f"every configuration is rejected by the cross-checks, nothing would run: {reasons}{more}",
        fix="change the values so that at least one combination is valid",
    )
