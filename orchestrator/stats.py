"""``stats.json``: per configuration, across cycles: mean, median, std, CV and a 95 % CI.

The interval is Student t below 30 cycles and scipy's BCa bootstrap of the mean (2000
resamples, seeded) from 30; each metric names the method it got. BCa needs more data than it
looks: measured on simulated studies (``tests/perf/bench_ci_coverage.py``) it covers the true
mean about 71 % of the time at 3 cycles, 84 % at 5, 90 % at 10 and 93 % at 30, where the t
interval covers about 95 % throughout; hence the switch at 30, not at 10. With fewer than 3
cycles there is no interval, and ``ci_note`` says why.

Runs whose figures are in doubt (a failed sanity check, or an ``energy_disagreement``,
``thermal_drift`` or ``foreign_processes`` warning) are left out by default and listed per
configuration with their reasons; ``include_flagged`` keeps them in. The metrics are the
headline metrics (``harness.schema.headline``), the same as results.parquet's columns.

Runs are pooled only when their measurement-relevant environment matches as well
(:mod:`orchestrator.run_environment`): a configuration measured in two environments (a top-up
with another runner, image or library version) gets one entry per environment, and a warning
says which configuration was not pooled and what differs.
"""

from __future__ import annotations

import warnings
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from harness.io import write_json
from harness.schema.headline import HEADLINE_METRICS
from harness.schema.reading import read_model
from harness.schema.result import SCHEMA_VERSION, ExperimentResult
from orchestrator.run_environment import RunEnvironment

MIN_CYCLES_FOR_CI = 3
BCA_FROM_CYCLES = 30
"""The BCa bootstrap covers its nominal 95 % only from about 30 cycles (90 % at 10, 92.5 % at
20, measured by tests/perf/bench_ci_coverage.py); Student t covers 94-96 % below that."""
RESAMPLES = 2000
CONFIDENCE = 0.95
SEED = 20_241_129

SANITY_FLAG = "sanity_check_failed"
# Warnings that put a run's energy or its conditions in doubt; others (throttling,
# short_window, ...) describe the configuration itself and do not remove a run.
FLAGGING_WARNINGS = ("energy_disagreement", "thermal_drift", "foreign_processes",
                     "cross_request_cache_hits", "baseline_not_idle", "mig_enabled",
                     "gpu_identity_unproven")

IntervalMethod = Literal["student_t", "bca_bootstrap"]
STATS_NAME = "stats.json"

@dataclass(frozen=True)
class Interval:
    """A confidence interval of the mean, or why there is none.

    Attributes:
        bounds: [low, high] in the metric's unit; None below MIN_CYCLES_FOR_CI.
        method: how the bounds were made; None when there are none.
        note: the method in words with the number of cycles, or why there is no interval.

    """

    bounds: list[float] | None
    method: IntervalMethod | None
    note: str


class MetricStats(BaseModel):
    """One metric of one configuration across its cycles, in the metric's unit."""

    model_config = ConfigDict(extra="forbid")

    unit: str | None = Field(None, description="The metric's unit (from the headline table).")
    n: int = Field(description="Values the figures are computed from.")
    mean: float | None = None
    median: float | None = None
    std: float | None = Field(None, description="Sample standard deviation; null below 2.")
    cv: float | None = Field(None, description="std / mean; null without std or at mean 0.")
    ci: list[float] | None = Field(None, description="[low, high] 95 % interval of the mean.")
    ci_method: IntervalMethod | None = None
    ci_note: str | None = Field(None, description="How the interval was made, or why none.")
    note: str | None = Field(None, description="Why there are no values, when n is 0.")


class FlaggedRun(BaseModel):
    """A run whose figures are in doubt, with why."""

    model_config = ConfigDict(extra="forbid")

    run_id: str
    cycle: int
    reasons: list[str]
    sanity_failed_checks: list[str] = Field(default_factory=list)


class ConfigStats(BaseModel):
    """Statistics of one configuration (one measurement config hash) across its cycles."""

    model_config = ConfigDict(extra="forbid")

    config_hash: str
    environment: RunEnvironment | None = Field(
        None, description="The measurement-relevant environment all these runs share; a "
        "configuration measured in several has one entry per environment.")
    run_ids: list[str] = Field(description="The runs the figures are computed from.")
    cycles: list[int]
    n_excluded: int = Field(description="Flagged runs left out of the figures.")
    flagged: list[FlaggedRun] = Field(default_factory=list)
    metrics: dict[str, MetricStats] = Field(description="Per headline metric, by name.")


class CiMethodRule(BaseModel):
    """Which interval a metric gets, by number of values."""

    model_config = ConfigDict(extra="forbid")

    student_t: str
    bca_bootstrap: str
    bca_from_cycles: int
    resamples: int
    seed: int


class StudyStats(BaseModel):
    """``stats.json``: per configuration across cycles."""

    model_config = ConfigDict(extra="forbid")

    schema_version: Literal["1"] = SCHEMA_VERSION
    confidence_level: float
    ci_method_rule: CiMethodRule
    min_cycles_for_ci: int
    include_flagged: bool
    flag_reasons: list[str] = Field(description="The codes that flag a run.")
    n_excluded: int
    configurations: list[ConfigStats]
    warnings: list[str] = Field(
        default_factory=list, description="Configurations whose runs were not pooled because "
        "they ran in different environments, with what differs.")

    @classmethod
    def load(cls, study_dir: Path) -> StudyStats:
        """Read stats.json; a missing, damaged or newer file is a ConfigError naming it."""
        return read_model(study_dir / STATS_NAME, cls,
                          fix="run llem run --resume on the study directory to write it again")



def describe(values: list[float], seed: int = SEED, unit: str | None = None) -> MetricStats:
    """Summary statistics of one metric across cycles (in the metric's unit)."""
    data = np.asarray(values, dtype=float)
    mean = float(data.mean())
    std = float(data.std(ddof=1)) if data.size > 1 else None
    interval = confidence_interval(data, seed)
    return MetricStats(unit=unit, n=int(data.size), mean=mean, median=float(np.median(data)),
                       std=std, cv=std / mean if std is not None and mean else None,
                       ci=interval.bounds, ci_method=interval.method, ci_note=interval.note)


def interval_method(n_cycles: int) -> IntervalMethod:
    """The interval that covers at this sample size: t below BCA_FROM_CYCLES, BCa from it."""
    return "student_t" if n_cycles < BCA_FROM_CYCLES else "bca_bootstrap"


def confidence_interval(data: np.ndarray, seed: int = SEED) -> Interval:
    """95 % confidence interval of the mean of ``data``, by the method for its size."""
    n_cycles = int(data.size)
    if n_cycles < MIN_CYCLES_FOR_CI:
        return Interval(None, None, f"no confidence interval: {n_cycles} cycle(s), at least "
                                    f"{MIN_CYCLES_FOR_CI} are needed")
    method = interval_method(n_cycles)
    if np.all(data == data[0]):
        value = float(data[0])
        return Interval([value, value], method, f"all {n_cycles} cycles gave the same value")
    if method == "student_t":
        return Interval(student_t_interval(data), method,
                        f"95 % Student t interval of the mean, {n_cycles} cycles")
    return Interval(bca_interval(data, seed), method,
                    f"95 % BCa bootstrap of the mean, {RESAMPLES} resamples, {n_cycles} cycles")


def student_t_interval(data: np.ndarray) -> list[float]:
    """Student t interval of the mean: mean +- t(0.975, n - 1) x sample std / sqrt(n)."""
    from scipy.stats import t

    quantile = float(t.ppf(0.5 + CONFIDENCE / 2, df=data.size - 1))
    half_width = quantile * float(data.std(ddof=1)) / float(np.sqrt(data.size))
    mean = float(data.mean())
    return [mean - half_width, mean + half_width]


def bca_interval(data: np.ndarray, seed: int = SEED) -> list[float]:
    """BCa bootstrap interval of the mean (scipy), RESAMPLES resamples from ``seed``."""
    from scipy.stats import bootstrap

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # BCa warns on small samples; the note gives n
        result = bootstrap((data,), np.mean, n_resamples=RESAMPLES, method="BCa",
                           confidence_level=CONFIDENCE, random_state=np.random.default_rng(seed))
    low, high = result.confidence_interval
    return [float(low), float(high)]


def flag_reasons(result: ExperimentResult) -> list[str]:
    """Why a run's figures are in doubt: warning codes, in order; empty when they are not."""
    codes = result.warning_codes()
    reasons = [SANITY_FLAG] if result.sanity is not None and not result.sanity.passed else []
    for code in codes:
        if (code == SANITY_FLAG or code in FLAGGING_WARNINGS) and code not in reasons:
            reasons.append(code)
    return reasons


def group_by_configuration(results: list[ExperimentResult]) -> dict[str, list[ExperimentResult]]:
    """Runs of one configuration, by measurement config hash, each group in cycle order."""
    groups: dict[str, list[ExperimentResult]] = defaultdict(list)
    for result in results:
        groups[result.measurement_config_hash].append(result)
    return {key: sorted(runs, key=lambda run: run.cycle) for key, runs in groups.items()}


def group_by_environment(runs: list[ExperimentResult]
                         ) -> list[tuple[RunEnvironment, list[ExperimentResult]]]:
    """Runs of one configuration split by measurement-relevant environment, in cycle order."""
    groups: dict[str, tuple[RunEnvironment, list[ExperimentResult]]] = {}
    for run in runs:
        environment = RunEnvironment.of(run)
        groups.setdefault(environment.key(), (environment, []))[1].append(run)
    return list(groups.values())


def not_pooled_warning(config_hash: str,
                       groups: list[tuple[RunEnvironment, list[ExperimentResult]]]) -> str:
    """Why the runs of ``config_hash`` have one statistics entry per environment."""
    first, first_runs = groups[0]
    parts = []
    for environment, runs in groups[1:]:
        cycles = ", ".join(str(run.cycle) for run in runs)
        parts.append(f"cycle(s) {cycles} differ from cycle(s) "
                     f"{', '.join(str(run.cycle) for run in first_runs)} in "
                     + "; ".join(first.differences(environment)))
    return (f"configuration {config_hash} ran in {len(groups)} environments and was not "
            f"pooled (one statistics entry per environment): {'. '.join(parts)}")


def study_stats(results: list[ExperimentResult], include_flagged: bool = False) -> StudyStats:
    """Statistics per configuration across its cycles.

    Args:
        results: every completed run of the study.
        include_flagged: keep runs with a failed sanity check or a flagging warning in the
            figures (they are listed with their reasons either way).

    """
    configurations: list[ConfigStats] = []
    not_pooled: list[str] = []
    for key, runs in group_by_configuration(results).items():
        groups = group_by_environment(runs)
        if len(groups) > 1:
            not_pooled.append(not_pooled_warning(key, groups))
        configurations.extend(_configuration(key, environment, group, include_flagged)
                              for environment, group in groups)
    return StudyStats(
        confidence_level=CONFIDENCE,
        ci_method_rule=CiMethodRule(
            student_t=f"below {BCA_FROM_CYCLES} cycles: mean +- t(0.975, n-1) x std / sqrt(n)",
            bca_bootstrap=f"from {BCA_FROM_CYCLES} cycles: scipy.stats.bootstrap, BCa, mean, "
                          f"{RESAMPLES} resamples, seed {SEED}",
            bca_from_cycles=BCA_FROM_CYCLES, resamples=RESAMPLES, seed=SEED),
        min_cycles_for_ci=MIN_CYCLES_FOR_CI,
        include_flagged=include_flagged,
        flag_reasons=[SANITY_FLAG, *FLAGGING_WARNINGS],
        n_excluded=sum(config.n_excluded for config in configurations),
        configurations=configurations,
        warnings=not_pooled,
    )


def _configuration(config_hash: str, environment: RunEnvironment,
                   runs: list[ExperimentResult], include_flagged: bool) -> ConfigStats:
    reasons = {run.run_id: flag_reasons(run) for run in runs}
    used = [run for run in runs if include_flagged or not reasons[run.run_id]]
    no_values_note = ("not measured in these runs (see their warnings)" if used else
                      f"no runs left: all {len(runs)} were excluded as flagged (see flagged)")
    return ConfigStats(
        config_hash=config_hash,
        environment=environment,
        run_ids=[run.run_id for run in used],
        cycles=[run.cycle for run in used],
        n_excluded=len(runs) - len(used),
        flagged=[_flag_entry(run, reasons[run.run_id]) for run in runs if reasons[run.run_id]],
        metrics=_metrics(used, no_values_note),
    )


def _flag_entry(run: ExperimentResult, reasons: list[str]) -> FlaggedRun:
    failed_checks = list(run.sanity.failed_checks) if run.sanity is not None else []
    return FlaggedRun(run_id=run.run_id, cycle=run.cycle, reasons=reasons,
                      sanity_failed_checks=failed_checks)


def _metrics(runs: list[ExperimentResult], no_values_note: str) -> dict[str, MetricStats]:
    metrics: dict[str, MetricStats] = {}
    for metric in HEADLINE_METRICS:
        values = [v for v in (metric.value(run) for run in runs) if v is not None]
        metrics[metric.name] = (describe(values, unit=metric.unit) if values else
                                MetricStats(unit=metric.unit, n=0, note=no_values_note))
    return metrics


def write_stats(study_dir: Path, results: list[ExperimentResult],
                include_flagged: bool = False) -> StudyStats:
    """Write stats.json atomically (see :func:`study_stats`); return what was written."""
    stats = study_stats(results, include_flagged)
    write_json(study_dir / STATS_NAME, stats)
    return stats
