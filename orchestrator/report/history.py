"""``llem history``: every headline metric with a direction across a series of studies.

The studies are sorted by when they were made (``manifest.json``'s ``created_at``, as
``llem nightly`` orders its nights: a night resumed later keeps its place). For each
configuration (measurement config hash) and metric, the series holds each study's per-cycle
values (studies where it was not measured are skipped) and its mean.

Step rule (:func:`find_step`): a series *stepped at study k* (k >= 1, counted among the
studies that measured it) when

1. the mean of the values pooled over studies 0..k-1 (before) and over k..n-1 (after) differ
   by more than the threshold (5 %) of |before mean| (a before mean of exactly 0: no step);
2. Welch's t-test of the pooled per-cycle values before against after gives p < 0.05 (each side
   needs 2 values); and
3. every study's mean after lies on the after side of the midpoint of the two means (the
   change stayed; a one-off spike does not count), and more than half of the studies before
   lie on the before side (one noisy night before a step does not hide it, nor every later
   step).

The earliest k that holds is the step; its direction is the sign of after - before against
the metric's ``better``. It is deterministic and assumes at most one level change matters; a
step at the last study cannot yet be told from a spike. ``tests/perf/sim_history_step.py``
measures its false steps and detection.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from pydantic import BaseModel, Field

from orchestrator.report.compare import DIRECTED_METRICS, StudyRef, by_hash, study_ref
from orchestrator.report.study_data import StudyData
from orchestrator.report.verdicts import ALPHA, DEFAULT_THRESHOLD_PCT, Better, welch_p


class Step(BaseModel):
    """Where a series changed level and stayed changed."""

    study_index: int = Field(description="Index (in History.studies) of the first study after.")
    before_mean: float = Field(description="Mean of the values pooled before the step.")
    after_mean: float = Field(description="Mean of the values pooled from the step on.")
    change_pct: float = Field(description="(after - before) / |before|, in %.")
    p_value: float = Field(description="Welch t-test, pooled values before against after.")
    worse: bool = Field(description="The change goes the metric's worse way.")


class Series(BaseModel):
    """One metric of one configuration across the studies."""

    config_hash: str = Field(description="Measurement config hash.")
    label: str = Field(description="The configuration's run slug (latest study).")
    metric: str = Field(description="Headline metric name.")
    unit: str = Field(description="Its unit.")
    better: Better = Field(description="Which direction is an improvement.")
    means: list[float | None] = Field(description="Mean per study (null: not measured).")
    cycles: list[int] = Field(description="Per-cycle values per study.")
    step: Step | None = Field(description="The first step that stayed, if any.")


class History(BaseModel):
    """What ``llem history`` found (``--json`` prints this)."""

    studies: list[StudyRef]
    threshold_pct: float = Field(description="Smallest step (%) that counts.")
    rule: str = Field(default=(
        "earliest k where the pooled means before and after differ beyond the threshold, a "
        "Welch test of the pooled per-cycle values gives p < 0.05, every study's mean from k "
        "on lies on the after side of the midpoint and more than half of those before k on "
        "the before side"), description="The step rule.")
    series: list[Series] = Field(description="One per configuration and measured metric.")


def load_series(directories: Sequence[Path]) -> list[StudyData]:
    """The study directories, read and sorted by when they were made (then by directory).

    The manifest's ``created_at`` (the first invocation), not summary.json's ``started_at``
    (the last one): a night resumed days later keeps its place in the series.
    """
    studies = [StudyData.load(directory) for directory in directories]
    return sorted(studies, key=lambda study: (_made(study), str(study.directory)))


def _made(study: StudyData) -> dt.datetime:
    made = dt.datetime.fromisoformat(study.manifest.created_at)
    return made if made.tzinfo is not None else made.replace(tzinfo=dt.timezone.utc)


def study_history(studies: Sequence[StudyData],
                  threshold_pct: float = DEFAULT_THRESHOLD_PCT) -> History:
    """The history of every configuration and directed metric across ``studies`` (in order)."""
    by_study = [by_hash(study) for study in studies]
    hashes = list(dict.fromkeys(h for configs in by_study for h in configs))
    series = []
    for config_hash in hashes:
        present = [configs[config_hash] for configs in by_study if config_hash in configs]
        for metric in DIRECTED_METRICS:
            assert metric.better is not None
            values = [configs[config_hash].values(metric.name) if config_hash in configs else []
                      for configs in by_study]
            if not any(values):
                continue
            series.append(Series(
                config_hash=config_hash, label=present[-1].label, metric=metric.name,
                unit=metric.unit, better=metric.better,
                means=[float(np.mean(v)) if v else None for v in values],
                cycles=[len(v) for v in values],
                step=find_step(values, metric.better, threshold_pct)))
    return History(studies=[study_ref(study) for study in studies],
                   threshold_pct=threshold_pct, series=series)


def find_step(values: Sequence[Sequence[float]], better: Better,
              threshold_pct: float = DEFAULT_THRESHOLD_PCT) -> Step | None:
    """The earliest step that stayed (module docstring's rule); studies without values skipped.

    Args:
        values: per-cycle values of each study, in study order.
        better: which direction is an improvement (says whether the step is worse).
        threshold_pct: smallest change (in % of the before mean) that counts.
    """
    measured = [i for i, study in enumerate(values) if len(study)]
    for k in range(1, len(measured)):
        step = _step_at(values, measured[:k], measured[k:], better, threshold_pct)
        if step is not None:
            return step
    return None


def _step_at(values: Sequence[Sequence[float]], before: list[int], after: list[int],
             better: Better, threshold_pct: float) -> Step | None:
    pooled_before = [v for i in before for v in values[i]]
    pooled_after = [v for i in after for v in values[i]]
    if len(pooled_before) < 2 or len(pooled_after) < 2:
        return None
    mean_before, mean_after = float(np.mean(pooled_before)), float(np.mean(pooled_after))
    if mean_before == 0 or abs(mean_after - mean_before) <= abs(mean_before) * threshold_pct / 100:
        return None
    p_value = welch_p(pooled_before, pooled_after)
    if p_value >= ALPHA or not _stays(values, before, after, mean_before, mean_after):
        return None
    change = (mean_after - mean_before) / abs(mean_before) * 100
    return Step(study_index=after[0], before_mean=mean_before, after_mean=mean_after,
                change_pct=change, p_value=p_value,
                worse=mean_after > mean_before if better == "lower"
                else mean_after < mean_before)


def _stays(values: Sequence[Sequence[float]], before: list[int], after: list[int],
           mean_before: float, mean_after: float) -> bool:
    """Every study after on the after side of the midpoint, more than half before on the before.

    A majority, not every study, before the step: one noisy night would otherwise stay in
    every later "before" and hide every later step for good.
    """
    midpoint = (mean_before + mean_after) / 2
    up = mean_after > mean_before
    on_after_side_before = sum((float(np.mean(values[i])) > midpoint) == up for i in before)
    sides_after = [(float(np.mean(values[i])) > midpoint) == up for i in after]
    return 2 * on_after_side_before < len(before) and all(sides_after)
