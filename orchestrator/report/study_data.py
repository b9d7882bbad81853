"""A finished study directory read back for reports and comparisons, from its files alone.

Everything here comes from what the study wrote (``manifest.json``, ``summary.json``,
``stats.json``, each completed run's ``result.json`` and ``timeseries.parquet``), so a report or a
comparison can be made on any machine from a copied directory. The runs a configuration's
figures come from are the ones ``stats.json`` pooled (:mod:`orchestrator.stats`): flagged runs are
left out the same way, and a configuration measured in two environments is two entries.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from harness.errors import ConfigError
from harness.schema.headline import HEADLINE_METRICS, HeadlineMetric
from harness.schema.result import ExperimentResult
from orchestrator.manifest import Manifest
from orchestrator.run_environment import RunEnvironment
from orchestrator.stats import ConfigStats, MetricStats, StudyStats
from orchestrator.summary import StudySummary
from orchestrator.tables import load_results

METRICS_BY_NAME: dict[str, HeadlineMetric] = {metric.name: metric for metric in HEADLINE_METRICS}

# Settings that identify a run rather than describe its configuration.
_NOT_SETTINGS = frozenset({"name", "output_dir", "run_id", "cycle"})


@dataclass(frozen=True)
class Configuration:
    """One statistics entry of a study: a configuration in one environment.

    Attributes:
        stats: its ``stats.json`` entry.
        label: the run slug the manifest gave it (the configuration's readable name).
        backend: the backend it ran on.
        runs: its completed runs in cycle order, flagged ones included.
        settings: its configuration as flat dotted keys (``pytorch.batch_size``), from the
            first run's ``config``.
        key: ``config_hash`` alone, or ``config_hash@environment`` when the configuration has
            entries for several environments.
    """

    stats: ConfigStats
    label: str
    backend: str
    runs: list[ExperimentResult]
    settings: dict[str, Any]
    key: str

    @property
    def config_hash(self) -> str:
        """The measurement config hash."""
        return self.stats.config_hash

    @property
    def used_runs(self) -> list[ExperimentResult]:
        """The runs its figures come from (``stats.json``'s ``run_ids``)."""
        used = set(self.stats.run_ids)
        return [run for run in self.runs if run.run_id in used]

    def metric(self, name: str) -> MetricStats | None:
        """The statistics of one headline metric, or None when stats.json lacks it."""
        return self.stats.metrics.get(name)

    def mean(self, name: str) -> float | None:
        """Mean of one headline metric over the used runs, or None when not measured."""
        stats = self.metric(name)
        return None if stats is None else stats.mean

    def values(self, name: str) -> list[float]:
        """Per-cycle values of one headline metric over the used runs (nulls dropped)."""
        metric = METRICS_BY_NAME[name]
        return [float(v) for v in (metric.value(run) for run in self.used_runs)
                if v is not None]


@dataclass
class StudyData:
    """A study directory's files, read and checked once.

    Attributes:
        directory: the study directory.
        manifest: ``manifest.json``.
        summary: ``summary.json``.
        stats: ``stats.json``; None when no run completed.
        configurations: one per statistics entry, in ``stats.json`` order.
    """

    directory: Path
    manifest: Manifest
    summary: StudySummary
    stats: StudyStats | None
    configurations: list[Configuration] = field(default_factory=list)

    @classmethod
    def load(cls, directory: Path) -> StudyData:
        """Read a study directory; a missing or damaged file is a ConfigError naming it."""
        if not directory.is_dir():
            raise ConfigError(f"{directory} is not a study directory",
                              fix="give the folder llem run wrote (it holds manifest.json)")
        manifest = Manifest.load(directory)
        summary = StudySummary.load(directory)
        results = load_results(directory, manifest)
        stats = StudyStats.load(directory) if results else None
        if stats is not None:
            _check_every_result_listed(directory, stats, results)
        data = cls(directory, manifest, summary, stats)
        data.configurations = _configurations(manifest, stats, results)
        return data

    @property
    def name(self) -> str:
        """The study's name."""
        return self.summary.study

    @cached_property
    def results(self) -> list[ExperimentResult]:
        """Every completed run, in manifest order."""
        return [run for config in self.configurations for run in config.runs]

    @cached_property
    def swept_settings(self) -> list[str]:
        """The settings (flat dotted keys) whose value differs between configurations."""
        keys = sorted({key for config in self.configurations for key in config.settings})
        return [key for key in keys
                if len({repr(config.settings.get(key)) for config in self.configurations}) > 1]

    def configuration(self, key: str) -> Configuration:
        """The configuration of ``key`` (see :attr:`Configuration.key`)."""
        for config in self.configurations:
            if config.key == key:
                return config
        raise KeyError(key)


def flatten(mapping: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; lists stay values."""
    flat: dict[str, Any] = {}
    for key, value in mapping.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{dotted}."))
        else:
            flat[dotted] = value
    return flat


def _check_every_result_listed(directory: Path, stats: StudyStats,
                               results: list[ExperimentResult]) -> None:
    """Refuse a completed run that no stats.json entry lists, used or flagged.

    stats.json lists every completed run (pooled or flagged); one it lacks means the file is
    older than the results (a resume killed after a run completed, before the summary), and
    figures taken from it would silently leave that run out.
    """
    listed = {run_id for entry in stats.configurations
              for run_id in (*entry.run_ids, *(flagged.run_id for flagged in entry.flagged))}
    missing = [run.run_id for run in results if run.run_id not in listed]
    if missing:
        raise ConfigError(
            f"run {', '.join(missing)} of {directory} completed with a result that stats.json "
            "does not list: stats.json is older than the results",
            fix=f"llem run --resume {directory} writes stats.json again from the results")


def _configurations(manifest: Manifest, stats: StudyStats | None,
                    results: list[ExperimentResult]) -> list[Configuration]:
    if stats is None:
        return []
    slugs = {entry.config_hash: entry.slug for entry in manifest.runs}
    by_id = {run.run_id: run for run in results}
    entries_per_hash: dict[str, int] = {}
    for entry in stats.configurations:
        entries_per_hash[entry.config_hash] = entries_per_hash.get(entry.config_hash, 0) + 1
    configurations = []
    for entry in stats.configurations:
        runs = _runs_of(entry, by_id)
        if not runs:
            raise ConfigError(
                f"stats.json lists configuration {entry.config_hash} but no completed run of "
                "it has a result", fix="llem run --resume on the study directory writes "
                "stats.json again from the results")
        key = entry.config_hash
        if entries_per_hash[entry.config_hash] > 1 and entry.environment is not None:
            key = f"{entry.config_hash}@{entry.environment.short_id()}"
        settings = {k: v for k, v in flatten(runs[0].config.model_dump(mode="json")).items()
                    if k not in _NOT_SETTINGS}
        configurations.append(Configuration(
            stats=entry, label=slugs.get(entry.config_hash, entry.config_hash[:12]),
            backend=runs[0].config.backend, runs=runs, settings=settings, key=key))
    return configurations


def _runs_of(entry: ConfigStats, by_id: dict[str, ExperimentResult]) -> list[ExperimentResult]:
    """The entry's runs: used ones, flagged ones, in cycle order (same hash and environment)."""
    ids = set(entry.run_ids) | {flagged.run_id for flagged in entry.flagged}
    runs = [by_id[run_id] for run_id in ids if run_id in by_id]
    if entry.environment is not None:
        runs = [run for run in runs if RunEnvironment.of(run) == entry.environment]
    return sorted(runs, key=lambda run: run.cycle)
