"""``llem compare``: two study directories, configuration by configuration, metric by metric.

Configurations are matched by measurement config hash (a configuration measured in several
environments within one study is compared through the entry of its latest run). Every
headline metric with a direction gets a verdict from :func:`orchestrator.report.verdicts.
verdicts` (Welch interval and test, Benjamini-Hochberg across pairs, a threshold). A failing
verdict (regressed, lost, excluded (flagged), too few cycles (gating)) of a *gating* metric is
what makes ``llem compare`` exit 1; the others are shown. The environment differences between
the studies are listed as likely causes.

The old side may be several earlier studies, newest first (``llem nightly`` passes every
earlier comparable night): each new configuration is compared with the newest of them that
has it, so a configuration that failed last night is compared with the last night that
measured it. A configuration of an old study missing from the new one is *lost* (and fails)
when both studies have the same design; with different designs it is only listed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from pydantic import BaseModel, Field, computed_field

from harness.errors import ConfigError
from harness.schema.headline import HEADLINE_METRICS, HeadlineMetric
from harness.schema.result import ExperimentResult
from orchestrator.report.study_data import Configuration, StudyData
from orchestrator.report.verdicts import (
    ALPHA,
    DEFAULT_THRESHOLD_PCT,
    FAILING,
    Better,
    Judgement,
    Sample,
    Verdict,
    verdicts,
)

DIRECTED_METRICS: tuple[HeadlineMetric, ...] = tuple(
    metric for metric in HEADLINE_METRICS if metric.better is not None)
"""The metrics that get a verdict: those with a better direction."""
DEFAULT_GATING = ("energy_per_output_token_j", "energy_dynamic_per_output_token_j",
                  "output_tokens_per_s")
"""Energy per token and throughput: their regression fails ``llem compare`` by default."""
METHOD = ("Welch t-test on per-cycle values (scipy ttest_ind, equal_var=False); change interval "
          "= 95 % Welch-Satterthwaite interval of the difference of means / |old mean|; "
          "Benjamini-Hochberg q < 0.05 within the default gating metrics, the --gate metrics "
          "and the other metrics, each a family; a verdict also needs a change beyond the "
          "threshold (an old mean about 0: beyond the threshold in % of the old mean of the "
          "matching total metric, or the test alone without one); fewer than 2 cycles on a "
          "side: no verdict, except a gating metric with 2 or more old values: too few cycles "
          "(gating), a failure; measured before and not now: lost, or excluded (flagged); a "
          "configuration of the same design missing from the new study: lost.")
_FAMILIES = {True: "default gating", False: "added gating"}
SCALES = {"energy_dynamic_per_output_token_j": "energy_per_output_token_j",
          "energy_dynamic_j": "energy_j"}
"""Dynamic metric -> its total: with an old mean about 0, the threshold is a % of the total."""


class StudyRef(BaseModel):
    """A study compared (or one of a history's series)."""

    name: str = Field(description="The study's name.")
    directory: str = Field(description="Its study directory, as given.")
    started_at: str = Field(description="When it started (summary.json, ISO-8601 UTC).")


class ConfigRef(BaseModel):
    """A configuration found in only one study."""

    config_hash: str = Field(description="Measurement config hash.")
    label: str = Field(description="Its run slug.")


class MetricComparison(BaseModel):
    """One (configuration, metric) pair, old study against new."""

    config_hash: str = Field(description="Measurement config hash.")
    label: str = Field(description="The configuration's run slug (new study).")
    metric: str = Field(description="Headline metric name.")
    unit: str = Field(description="Its unit.")
    better: Better = Field(description="Which direction is an improvement.")
    gating: bool = Field(description="A regression of it makes llem compare exit 1.")
    old_n: int = Field(description="Per-cycle values of the old study.")
    new_n: int = Field(description="Per-cycle values of the new study.")
    old_mean: float | None = Field(description="Mean in the old study (unit above).")
    new_mean: float | None = Field(description="Mean in the new study (unit above).")
    change_pct: float | None = Field(
        description="(new - old) / |old|, in %; null without both means or when the old mean "
        "is about 0 (within one standard deviation of 0).")
    interval_pct: tuple[float, float] | None = Field(
        description="95 % Welch interval of the change, in % of |old mean|.")
    p_value: float | None = Field(description="Welch t-test, two-sided.")
    q_value: float | None = Field(description="Benjamini-Hochberg adjusted p-value.")
    threshold_pct: float = Field(description="Smallest change (%) that gets a verdict.")
    verdict: Verdict = Field(description="improved, regressed, no significant change, "
                             "not measured, too few cycles, lost (measured in the old study, "
                             "no value in the new) or excluded (flagged) (every new run of the "
                             "configuration flagged). regressed, lost and excluded fail a gate.")
    flagged_reasons: list[str] = Field(
        default_factory=list,
        description="Why new runs of the configuration were left out (flag codes), with "
        "excluded (flagged) or too few cycles (gating).")
    baseline: str = Field(default="", description="The old study directory it was compared "
                          "with (the newest of the old studies that has the configuration).")


class Comparison(BaseModel):
    """What ``llem compare`` found (``--json`` prints this)."""

    old: StudyRef
    new: StudyRef
    method: str = Field(default=METHOD, description="How the verdicts are made.")
    alpha: float = Field(default=ALPHA, description="False discovery rate per family.")
    threshold_pct: float = Field(description="Default threshold (%).")
    gating_metrics: list[str] = Field(description="Metrics whose regression fails.")
    rows: list[MetricComparison] = Field(description="One per matched configuration and metric.")
    only_in_old: list[ConfigRef] = Field(description="Configurations of the old study only.")
    only_in_new: list[ConfigRef] = Field(description="Configurations of the new study only.")
    environment_differences: list[str] = Field(
        description="What differs between the studies' environments: likely causes.")
    baselines: list[StudyRef] = Field(
        default_factory=list, description="The old studies some configuration was compared "
        "with, newest first (one unless several old studies were given).")

    @property
    def regressions(self) -> list[MetricComparison]:
        """The gating rows that fail (regressed, lost, excluded): any makes exit 1."""
        return [row for row in self.rows if row.gating and row.verdict in FAILING]

    @computed_field(description="A gating metric regressed, was lost or was excluded "  # type: ignore[prop-decorator]
                    "(flagged): llem compare exits 1.")
    @property
    def regressed(self) -> bool:
        """Whether any gating metric failed."""
        return bool(self.regressions)


def compare_studies(old: StudyData | Sequence[StudyData], new: StudyData,
                    threshold_pct: float = DEFAULT_THRESHOLD_PCT,
                    thresholds: Mapping[str, float] | None = None,
                    gating: Iterable[str] = DEFAULT_GATING) -> Comparison:
    """Compare two studies; ConfigError when they cannot be compared (said why).

    Args:
        old: the reference study, or earlier studies newest first: each configuration of
            ``new`` is compared with the newest of them that has it.
        new: the study under test.
        threshold_pct: smallest change (in % of the old mean) that counts, for every metric.
        thresholds: per-metric overrides of ``threshold_pct``.
        gating: metrics whose failing verdict is a failure. Those of ``DEFAULT_GATING`` are
            one Benjamini-Hochberg family, the others of ``gating`` a second one, so gating
            more metrics never weakens the default gate.
    """
    olds = [old] if isinstance(old, StudyData) else list(old)
    thresholds = dict(thresholds or {})
    gates = set(gating)
    check_metric_names([*thresholds, *gates])
    pairs = _matched(olds, new)
    lost = [(study, config, None) for study, config in _only_in_old(olds, new)
            if study.summary.design_hash == new.summary.design_hash]
    samples, rows = [], []
    for study, old_config, new_config in [*pairs, *lost]:
        reasons = flagged_reasons(new_config) if new_config is not None else ()
        for metric in DIRECTED_METRICS:
            assert metric.better is not None
            gate = metric.name in gates
            samples.append(Sample(
                old_config.values(metric.name),
                new_config.values(metric.name) if new_config is not None else [],
                metric.better, thresholds.get(metric.name, threshold_pct), gate,
                _FAMILIES[metric.name in DEFAULT_GATING] if gate else "other", reasons,
                _scale(old_config, metric.name)))
            rows.append((study, new_config or old_config, metric))
    judged = verdicts(samples)
    used = list({id(study): study for study, _, _ in pairs}.values())
    return Comparison(
        old=study_ref(olds[0]), new=study_ref(new), threshold_pct=threshold_pct,
        gating_metrics=[m.name for m in DIRECTED_METRICS if m.name in gates],
        rows=[_row(study, config, metric, sample, judgement)
              for (study, config, metric), sample, judgement
              in zip(rows, samples, judged, strict=True)],
        only_in_old=[ConfigRef(config_hash=c.config_hash, label=c.label)
                     for _, c in _only_in_old(olds, new)],
        only_in_new=_only(new, olds),
        environment_differences=environment_differences(used, new),
        baselines=[study_ref(study) for study in olds if any(study is u for u in used)])


def _scale(old: Configuration, metric: str) -> float | None:
    """The old mean of the total matching a dynamic metric (threshold scale about 0)."""
    total = SCALES.get(metric)
    values = old.values(total) if total is not None else []
    return sum(values) / len(values) if values else None


def flagged_reasons(config: Configuration, every: bool = False) -> tuple[str, ...]:
    """The flag codes of a configuration none of whose runs was used; empty when some were.

    With ``every``, the flag codes of its flagged runs whether or not some were used.
    """
    if config.used_runs and not every:
        return ()
    return tuple(dict.fromkeys(reason for run in config.stats.flagged
                               for reason in run.reasons))


def check_metric_names(names: Iterable[str]) -> None:
    """ConfigError unless every name is a headline metric with a direction."""
    known = {metric.name for metric in DIRECTED_METRICS}
    unknown = sorted(set(names) - known)
    if unknown:
        raise ConfigError(f"no headline metric with a direction is called {', '.join(unknown)}",
                          fix="one of: " + ", ".join(sorted(known)))


def study_ref(study: StudyData) -> StudyRef:
    """Name, directory and start of a study, as comparisons and histories list it."""
    return StudyRef(name=study.name, directory=str(study.directory),
                    started_at=study.summary.started_at)


def _matched(olds: Sequence[StudyData], new: StudyData
             ) -> list[tuple[StudyData, Configuration, Configuration]]:
    """(old study, old, new) by config hash, the old from the newest old study that has it.

    ConfigError when no old study is given, a study has no runs or none is in common.
    """
    if not olds:
        raise ConfigError("not comparable: no old study given", fix="give an old study")
    for study in (*olds, new):
        if not study.configurations:
            raise ConfigError(f"not comparable: {study.directory} has no completed runs",
                              fix="compare studies with at least one completed run")
    indexed = [(study, by_hash(study)) for study in olds]
    pairs = []
    for config_hash, new_config in by_hash(new).items():
        found = next(((study, configs[config_hash]) for study, configs in indexed
                      if config_hash in configs), None)
        if found is not None:
            pairs.append((found[0], found[1], new_config))
    if not pairs:
        raise ConfigError(
            f"not comparable: {olds[0].directory} and {new.directory} have no configuration in "
            "common (no measurement config hash in both)",
            fix="compare two runs of the same study file (same model, settings and inputs)")
    return pairs


def _only_in_old(olds: Sequence[StudyData], new: StudyData
                 ) -> list[tuple[StudyData, Configuration]]:
    """Configurations of the old studies (the newest that has each) missing from ``new``."""
    found: dict[str, tuple[StudyData, Configuration]] = {}
    news = by_hash(new)
    for study in olds:
        for config_hash, config in by_hash(study).items():
            if config_hash not in news and config_hash not in found:
                found[config_hash] = (study, config)
    return list(found.values())


def by_hash(study: StudyData) -> dict[str, Configuration]:
    """One configuration per hash: of several environments, the one whose runs are latest."""
    chosen: dict[str, Configuration] = {}
    for config in study.configurations:
        current = chosen.get(config.config_hash)
        if current is None or _latest(config) > _latest(current):
            chosen[config.config_hash] = config
    return chosen


def _latest(config: Configuration) -> tuple[int, str]:
    return max((run.cycle, run.started_at) for run in config.runs)


def _only(study: StudyData, olds: Sequence[StudyData]) -> list[ConfigRef]:
    others = {h for other in olds for h in by_hash(other)}
    return [ConfigRef(config_hash=h, label=config.label)
            for h, config in by_hash(study).items() if h not in others]


def _row(study: StudyData, config: Configuration, metric: HeadlineMetric, sample: Sample,
         judgement: Judgement) -> MetricComparison:
    return MetricComparison(
        config_hash=config.config_hash, label=config.label, metric=metric.name,
        unit=metric.unit, better=sample.better, gating=sample.gating, old_n=len(sample.old),
        new_n=len(sample.new), old_mean=judgement.old_mean, new_mean=judgement.new_mean,
        change_pct=judgement.change_pct, interval_pct=judgement.interval_pct,
        p_value=judgement.p_value, q_value=judgement.q_value,
        threshold_pct=sample.threshold_pct, verdict=judgement.verdict,
        flagged_reasons=list(sample.flagged_reasons)
        if judgement.verdict == "excluded (flagged)"
        else list(flagged_reasons(config, every=True))
        if judgement.verdict == "too few cycles (gating)" else [],
        baseline=str(study.directory))


def environment_differences(old: StudyData | Sequence[StudyData], new: StudyData) -> list[str]:
    """``what: old vs new`` for each environment fact that differs between the studies.

    ``old`` may be several studies (the baselines a comparison used): their facts pooled.
    """
    old_facts: dict[str, set[str]] = {}
    for study in [old] if isinstance(old, StudyData) else old:
        for name, values in _facts(study).items():
            old_facts.setdefault(name, set()).update(values)
    new_facts = _facts(new)
    return [f"{name}: {_shown(old_facts.get(name))} vs {_shown(new_facts.get(name))}"
            for name in sorted(old_facts.keys() | new_facts.keys())
            if old_facts.get(name) != new_facts.get(name)]


def _facts(study: StudyData) -> dict[str, set[str]]:
    """Each environment fact (driver, CUDA, versions, image, GPUs, power limits) -> values."""
    facts: dict[str, set[str]] = {}
    for run in (run for config in study.configurations for run in config.used_runs):
        for name, value in _run_facts(run):
            if value is not None:
                facts.setdefault(name, set()).add(value)
    return facts


def _run_facts(run: ExperimentResult) -> list[tuple[str, str | None]]:
    env = run.environment
    facts: list[tuple[str, str | None]] = [
        ("runner", run.runner), ("driver", env.driver_version), ("CUDA", env.cuda_version),
        ("cuDNN", env.cudnn_version), ("harness version", env.harness_version),
        ("python", env.python), ("image digest", env.container_image_digest),
        ("image id", env.container_image_id),
        ("GPU models", ", ".join(gpu.name for gpu in env.gpus) or None),
        ("power limits W", ", ".join(f"{gpu.power_limit_w:g}" for gpu in env.gpus
                                     if gpu.power_limit_w is not None) or None)]
    facts += [(f"{name} version", version) for name, version in env.backend_versions.items()]
    return facts


def _shown(values: set[str] | None) -> str:
    return "/".join(sorted(values)) if values else "none"
