"""Serving studies: the figures that matter against the request rate, and where load saturates.

A serving study (``load.mode: serving``) sweeps ``load.request_rate``. The configurations that
differ in nothing but that rate, measured in one environment, form one *line*: one per backend
and configuration. Each point of a line is one configuration's runs that ``stats.json`` pools
(flagged runs left out), every figure their mean with its 95 % interval, made exactly as
``stats.json`` makes it (:func:`orchestrator.stats.describe`); the rate is the requested one
(``serving.request_rate_rps``).

A point counts as saturated when any of its pooled runs was (``serving.saturated``: the engine
did not keep up, see docs/serving.md). A line's saturation point is the highest rate it
sustained before its first saturated rate. Configurations whose runs have no ``serving``
section (offline mode) are on no line: an offline study has no serving figures at all.

Nothing here draws; :mod:`serving_figure` and the page do. This module needs no Plotly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from harness.schema.headline import HeadlineMetric
from harness.schema.result import ExperimentResult
from orchestrator.report.study_data import METRICS_BY_NAME, Configuration, StudyData
from orchestrator.stats import MetricStats, describe

RATE_SETTING = "load.request_rate"
J_PER_TOKEN = "energy_per_output_token_j"  # noqa: S105 - a metric name
OFFERED = "serving_offered_rate_rps"
ACHIEVED = "serving_achieved_rate_rps"
GOODPUT = "serving_goodput_rps"
TTFT_P90 = "serving_ttft_p90_s"
TPOT_P90 = "serving_tpot_p90_s"


def _serving(name: str, path: str, unit: str, description: str,
             better: Literal["lower", "higher"] | None) -> HeadlineMetric:
    return HeadlineMetric(name, tuple(path.split(".")), unit, description, better=better)


SERVING_METRICS: dict[str, HeadlineMetric] = {metric.name: metric for metric in (
    METRICS_BY_NAME[J_PER_TOKEN],
    _serving(OFFERED, "serving.offered_rate_rps", "req/s",
             "Arrivals inside the window / window length.", None),
    _serving(ACHIEVED, "serving.achieved_rate_rps", "req/s",
             "Requests completed inside the window / window length.", "higher"),
    _serving(GOODPUT, "serving.goodput_rps", "req/s",
             "Requests of the window that met every SLO / window length (null without slo:).",
             "higher"),
    _serving(TTFT_P90, "serving.ttft.p90_s", "s",
             "90th percentile time to first token, from arrival, in the window.", "lower"),
    _serving(TPOT_P90, "serving.tpot.p90_s", "s",
             "90th percentile time per output token in the window.", "lower"),
)}
"""The figures of a serving point, read from each run's result as headline metrics are."""


@dataclass(frozen=True)
class ServingPoint:
    """One configuration of a line: its requested rate and its pooled runs' figures.

    Attributes:
        config: the configuration.
        rate_rps: the requested rate (``serving.request_rate_rps``, req/s).
        figures: per :data:`SERVING_METRICS` name, the statistics over the pooled runs; None
            where no run has the figure.
        cycles: pooled runs.
        saturated_cycles: pooled runs that saturated.
        saturation_reasons: their ``serving.saturation_reason``, each once.
    """

    config: Configuration
    rate_rps: float
    figures: dict[str, MetricStats | None]
    cycles: int
    saturated_cycles: int
    saturation_reasons: tuple[str, ...]

    @property
    def saturated(self) -> bool:
        """Whether any pooled run saturated (a rate sustained only sometimes is not)."""
        return self.saturated_cycles > 0

    def mean(self, name: str) -> float | None:
        """The mean of one figure, or None where no pooled run has it."""
        stats = self.figures.get(name)
        return None if stats is None else stats.mean


@dataclass(frozen=True)
class Saturation:
    """Where a line saturates.

    Attributes:
        rate_rps: the rate marked: the highest sustained before the first saturated rate, or
            the highest rate measured when none saturated; None when every rate saturated.
        reached: whether some rate of the line saturated.
        text: what it means, in words.
    """

    rate_rps: float | None
    reached: bool
    text: str


@dataclass(frozen=True)
class ServingLine:
    """The configurations that differ only in request rate, by rate.

    Attributes:
        name: backend and the other swept settings (``vllm, max_num_seqs=64``), with the
            environment id when the configurations were measured in several.
        backend: the backend.
        points: one per rate, ascending.
        saturation: where it saturates.
    """

    name: str
    backend: str
    points: list[ServingPoint]
    saturation: Saturation

    def is_marked(self, point: ServingPoint) -> bool:
        """Whether ``point`` is the line's marked saturation point."""
        return point.rate_rps == self.saturation.rate_rps


def is_serving(config: Configuration) -> bool:
    """Whether the configuration's runs were measured in serving mode."""
    return any(run.serving is not None for run in config.runs)


def serving_configurations(data: StudyData) -> list[Configuration]:
    """The study's serving configurations (none in an offline study)."""
    return [config for config in data.configurations if is_serving(config)]


def unpooled(data: StudyData) -> list[Configuration]:
    """Serving configurations on no line: every run was left out of the statistics."""
    return [config for config in serving_configurations(data) if not _pooled(config)]


def saturation_point(points: Sequence[tuple[float, bool]]) -> Saturation:
    """Where a line of ``(rate_rps, saturated)`` points saturates (any order; not empty).

    The marked rate is the highest one sustained before the first saturated rate; a rate
    sustained again above that is named in the text but does not move the mark, since the
    engine already failed to keep up below it.
    """
    ordered = sorted(points)
    first = next((rate for rate, saturated in ordered if saturated), None)
    if first is None:
        highest = ordered[-1][0]
        return Saturation(highest, False, f"not reached: every rate up to {highest:g} req/s "
                          "was sustained; measure higher rates to find it")
    below = [rate for rate, saturated in ordered if rate < first]
    again = [rate for rate, saturated in ordered if rate > first and not saturated]
    later = (f"; sustained again at {', '.join(f'{r:g}' for r in again)} req/s, above "
             "the first saturated rate" if again else "")
    if not below:
        return Saturation(None, True, f"saturated at every rate from the lowest, {first:g} "
                          f"req/s: none marked; measure lower rates to find it{later}")
    return Saturation(below[-1], True, f"{below[-1]:g} req/s: the highest rate sustained "
                      f"before the first saturated one ({first:g} req/s){later}")


def serving_lines(data: StudyData) -> list[ServingLine]:
    """The study's lines, by backend and name; empty for an offline study.

    A line is one environment's configurations: a rate measured in two environments (a
    resume elsewhere) has a point on each environment's line, and every other rate stays on
    the line of the environment it was measured in. The environment is named only where the
    same settings were measured in several.
    """
    groups: dict[tuple[str, str], list[Configuration]] = {}
    for config in serving_configurations(data):
        if _pooled(config):
            groups.setdefault(_line_key(config), []).append(config)
    environments: dict[str, int] = {}
    for settings, _ in groups:
        environments[settings] = environments.get(settings, 0) + 1
    swept = [key for key in data.swept_settings if key not in (RATE_SETTING, "backend")]
    lines = [_line(configs, swept, named=environments[settings] > 1)
             for (settings, _), configs in groups.items()]
    return sorted(lines, key=lambda line: (line.backend, line.name))


def _pooled(config: Configuration) -> list[ExperimentResult]:
    return [run for run in config.used_runs if run.serving is not None]


def _line_key(config: Configuration) -> tuple[str, str]:
    """Its settings without the rate, and the environment its runs were measured in.

    The environment is the statistics entry's own, not the part of the configuration's key
    after @: that part exists only for a configuration measured in several environments, so
    a rate measured in one would otherwise fall on another line than a rate split between
    that environment and a second one.
    """
    settings = {key: value for key, value in config.settings.items() if key != RATE_SETTING}
    environment = config.stats.environment
    return (repr(sorted(settings.items())),
            "" if environment is None else environment.short_id())


def _line(configs: list[Configuration], swept: Sequence[str], named: bool) -> ServingLine:
    first = configs[0]
    others = [f"{key.split('.')[-1]}={first.settings[key]}" for key in swept
              if first.settings.get(key) is not None]
    name = ", ".join([first.backend, *others])
    environment = _line_key(first)[1]
    points = sorted((_point(config) for config in configs), key=lambda p: p.rate_rps)
    return ServingLine(
        name=f"{name} @{environment}" if named and environment else name,
        backend=first.backend, points=points,
        saturation=saturation_point([(p.rate_rps, p.saturated) for p in points]))


def _point(config: Configuration) -> ServingPoint:
    runs = _pooled(config)
    served = [run.serving for run in runs if run.serving is not None]
    saturated = [serving for serving in served if serving.saturated]
    reasons = dict.fromkeys(serving.saturation_reason or "no reason recorded"
                            for serving in saturated)
    return ServingPoint(
        config=config, rate_rps=served[0].request_rate_rps,
        figures={name: _describe(metric, runs) for name, metric in SERVING_METRICS.items()},
        cycles=len(runs), saturated_cycles=len(saturated), saturation_reasons=tuple(reasons))


def _describe(metric: HeadlineMetric, runs: Sequence[ExperimentResult]) -> MetricStats | None:
    values = [float(v) for v in (metric.value(run) for run in runs) if v is not None]
    return describe(values, unit=metric.unit) if values else None


def mean_ci(stats: MetricStats | None, spec: str = ".4g", interval: bool = True) -> str:
    """``mean [low, high]`` (the interval where there is one and it is wanted); n/a for None."""
    if stats is None or stats.mean is None:
        return "n/a"
    text = format(stats.mean, spec)
    if interval and stats.ci is not None:
        text += f" [{format(stats.ci[0], spec)}, {format(stats.ci[1], spec)}]"
    return text


def saturated_text(line: ServingLine, point: ServingPoint) -> str:
    """The saturated column: yes (with cycles and why) or no, and whether it is the mark."""
    if point.saturated:
        return (f"yes ({point.saturated_cycles} of {point.cycles} cycles: "
                f"{'; '.join(point.saturation_reasons)})")
    if not line.is_marked(point):
        return "no"
    return ("no: saturation point" if line.saturation.reached
            else "no: highest rate measured, saturation not reached")
