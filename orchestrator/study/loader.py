"""Load a study file: read, expand, validate, de-duplicate, hash."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

from orchestrator.study.document import read_source
from orchestrator.study.errors import Pos, StudyFileError
from orchestrator.study.expand import Recipe, make_plan
from orchestrator.study.inputs import pin_inputs
from orchestrator.study.model import SkippedEntry, Study, StudyEntry
from orchestrator.study.slug import slug
from orchestrator.study.validate import build, parse_execution

MAX_RUNS = 100_000
"""Most runs (configurations x cycles) a study may expand to."""
MAX_DUPLICATE_WARNINGS = 10
"""Duplicates named one by one; the rest are counted in one more warning."""


def load_study(path: Path, relative_to: Path | None = None) -> Study:
    """Load a study file (or a single-experiment file) and resolve every experiment.

    Local model directories and ``.jsonl`` datasets are made absolute and their content
    pinned (:mod:`orchestrator.study.inputs`).

    Args:
        path: the YAML file.
        relative_to: the directory relative paths resolve against instead of the file's
            own (the original study file's, when ``path`` is a study directory's copy).

    Returns:
        The study: its experiments in design order (grids per backend, then explicit
        entries), the combinations the cross-checks skipped, warnings, and the execution
        settings.

    Raises:
        StudyFileError: the file cannot be read or parsed, a key or value is invalid, the grid
            is too large, or nothing would run. The error names the file, line and column.

    """
    source = read_source(path)
    execution = parse_execution(source.execution)
    plan = make_plan(source)
    _check_size(plan.count(), execution.n_cycles, source.anchor)
    kept, canonical, skipped, warnings = _resolve(plan.recipes(), relative_to)
    _check_not_empty(kept, skipped, source.anchor)
    return Study(
        name=source.name,
        source_path=path,
        source_text=source.text,
        experiments=kept,
        skipped=skipped,
        warnings=warnings,
        execution=execution,
        design_hash=design_hash(canonical),
    )


def design_hash(canonical_configs: Iterable[str]) -> str:
    """First 16 hex digits of SHA-256 over the ordered canonical JSON of the experiments."""
    joined = "[" + ",".join(canonical_configs) + "]"
    return hashlib.sha256(joined.encode()).hexdigest()[:16]


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
    recipes: Iterable[Recipe], relative_to: Path | None,
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
        built = pin_inputs(built, recipe, relative_to)
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
