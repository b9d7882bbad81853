"""The statistics of ``llem compare``: per metric, is the new study better, worse or the same?

For one metric of one configuration, the old and new studies each give per-cycle values. The
change is ``(new mean - old mean) / old mean`` in %. Its 95 % interval is Welch's interval of
the difference of means (Welch-Satterthwaite degrees of freedom) divided by the old mean; it
treats the old mean as exact, so it is a little narrow when the old study is noisy. The
p-value is Welch's t-test (``scipy.stats.ttest_ind(equal_var=False)``) on the per-cycle values.

A verdict of *regressed* (or *improved*) needs both:

- a change in the worse (better) direction beyond the threshold (5 % unless set per metric),
  so a real but tiny change does not fail a nightly; and
- statistical evidence: the Benjamini-Hochberg adjusted p-value (q) below 0.05, adjusted over
  every compared (configuration, metric) pair of the same family (gating metrics together,
  the other metrics together), so many metrics and configurations do not multiply false alarms.

A side with no values is *not measured*; a side with fewer than 2 values is *too few cycles*
(no variance, so no test): neither is ever a regression. ``tests/perf/bench_compare.py``
measures the false-alarm and detection rates of these rules.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats

Verdict = Literal["improved", "regressed", "no significant change", "not measured",
                  "too few cycles"]
Better = Literal["lower", "higher"]

ALPHA = 0.05
"""The false discovery rate the Benjamini-Hochberg adjustment keeps, per family."""
CONFIDENCE = 0.95
MIN_CYCLES = 2
DEFAULT_THRESHOLD_PCT = 5.0


@dataclass(frozen=True)
class Sample:
    """One (configuration, metric) pair to judge.

    Attributes:
        old: per-cycle values of the old study.
        new: per-cycle values of the new study.
        better: which direction is an improvement.
        threshold_pct: the smallest change (in % of the old mean) that counts.
        gating: whether it belongs to the gating family (adjusted together).
    """

    old: Sequence[float]
    new: Sequence[float]
    better: Better
    threshold_pct: float = DEFAULT_THRESHOLD_PCT
    gating: bool = True


@dataclass(frozen=True)
class Judgement:
    """The statistics and verdict of one :class:`Sample`.

    Attributes:
        old_mean: mean of the old values; None without values.
        new_mean: mean of the new values; None without values.
        change_pct: ``(new - old) / old`` in %; None without a mean on either side or a zero
            old mean.
        interval_pct: 95 % Welch interval of the change in % of the old mean; None without a
            test.
        p_value: Welch's two-sided p-value; None without a test.
        q_value: Benjamini-Hochberg adjusted p-value in its family; None without a test.
        verdict: the verdict.
    """

    old_mean: float | None
    new_mean: float | None
    change_pct: float | None
    interval_pct: tuple[float, float] | None
    p_value: float | None
    q_value: float | None
    verdict: Verdict


@dataclass(frozen=True)
class _Welch:
    change_pct: float
    interval_pct: tuple[float, float]
    p_value: float


def verdicts(samples: Sequence[Sample]) -> list[Judgement]:
    """Judge every sample; p-values are adjusted within the gating and the other family."""
    tests = [_welch(sample) for sample in samples]
    q_values: list[float | None] = [None] * len(samples)
    for gating in (True, False):
        family = [i for i, sample in enumerate(samples)
                  if sample.gating is gating and tests[i] is not None]
        adjusted = bh_adjust([_p(tests[i]) for i in family])
        for i, q in zip(family, adjusted, strict=True):
            q_values[i] = q
    return [_judge(sample, test, q) for sample, test, q in zip(samples, tests, q_values,
                                                                 strict=True)]


def bh_adjust(p_values: Sequence[float]) -> list[float]:
    """Benjamini-Hochberg adjusted p-values (``scipy.stats.false_discovery_control``)."""
    if not p_values:
        return []
    return [float(q) for q in stats.false_discovery_control(np.asarray(p_values), method="bh")]


def welch_p(before: ArrayLike, after: ArrayLike) -> float:
    """Two-sided Welch p-value; with no spread on either side, 0 if the means differ, else 1."""
    a, b = np.asarray(before, float), np.asarray(after, float)
    if np.var(a) == 0 and np.var(b) == 0:
        return 0.0 if a.mean() != b.mean() else 1.0
    with warnings.catch_warnings():  # a side of near-equal values: scipy warns, p is still fine
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(stats.ttest_ind(a, b, equal_var=False).pvalue)


def _p(test: _Welch | None) -> float:
    assert test is not None  # the family holds tested samples only
    return test.p_value


def _welch(sample: Sample) -> _Welch | None:
    """Welch's change, interval and p-value; None with too few values or a zero old mean."""
    old, new = np.asarray(sample.old, float), np.asarray(sample.new, float)
    if len(old) < MIN_CYCLES or len(new) < MIN_CYCLES or old.mean() == 0:
        return None
    base = float(old.mean())
    difference = float(new.mean()) - base
    var_old, var_new = old.var(ddof=1) / len(old), new.var(ddof=1) / len(new)
    se = math.sqrt(var_old + var_new)
    half = 0.0
    if se > 0:
        df = (var_old + var_new) ** 2 / (var_old ** 2 / (len(old) - 1)
                                         + var_new ** 2 / (len(new) - 1))
        half = float(stats.t.ppf((1 + CONFIDENCE) / 2, df)) * se
    low, high = sorted(((difference - half) / base * 100, (difference + half) / base * 100))
    return _Welch(difference / base * 100, (low, high), welch_p(old, new))


def _judge(sample: Sample, test: _Welch | None, q: float | None) -> Judgement:
    old_mean = float(np.mean(sample.old)) if len(sample.old) else None
    new_mean = float(np.mean(sample.new)) if len(sample.new) else None
    if old_mean is None or new_mean is None:
        return Judgement(old_mean, new_mean, None, None, None, None, "not measured")
    change = (new_mean - old_mean) / old_mean * 100 if old_mean else None
    if test is None or q is None:
        verdict: Verdict = ("too few cycles" if min(len(sample.old), len(sample.new)) < MIN_CYCLES
                            else "no significant change")
        return Judgement(old_mean, new_mean, change, None, None, None, verdict)
    return Judgement(old_mean, new_mean, test.change_pct, test.interval_pct, test.p_value, q,
                     _direction(sample, test.change_pct, q))


def _direction(sample: Sample, change_pct: float, q: float) -> Verdict:
    """Improved or regressed when beyond the threshold and q < ALPHA, else no change."""
    if q >= ALPHA or abs(change_pct) <= sample.threshold_pct:
        return "no significant change"
    worse = change_pct > 0 if sample.better == "lower" else change_pct < 0
    return "regressed" if worse else "improved"
