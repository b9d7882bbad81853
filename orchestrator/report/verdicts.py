"""The statistics of ``llem compare``: per metric, is the new study better, worse or the same?

For one metric of one configuration, the old and new studies each give per-cycle values. The
change is ``(new mean - old mean) / |old mean|`` in %: its sign is the sign of new - old, so a
negative old mean (dynamic energy a little below zero) does not turn the direction around. Its
95 % interval is Welch's interval of the difference of means (Welch-Satterthwaite degrees of
freedom) divided by ``|old mean|``; it treats the old mean as exact, so it is a little narrow
when the old study is noisy. The p-value is Welch's t-test
(``scipy.stats.ttest_ind(equal_var=False)``) on the per-cycle values.

A verdict of *regressed* (or *improved*) needs both:

- a change in the worse (better) direction beyond the threshold (5 % unless set per metric),
  so a real but tiny change does not fail a nightly; and
- statistical evidence: the Benjamini-Hochberg adjusted p-value (q) below 0.05, adjusted over
  every compared (configuration, metric) pair of the same family (:attr:`Sample.family`), so
  many metrics and configurations do not multiply false alarms.

When the old mean is *about zero* (:func:`about_zero`: 0, or within one standard deviation of
the old values from 0) a percentage of it means nothing: the change is None. The threshold then
applies to |new mean - old mean| in % of :attr:`Sample.scale` (for dynamic energy, the old mean
of the matching total energy), so a move of dynamic J/token by 0.5 % of the total J/token does
not fail a nightly, while a real move away from zero beyond the threshold of the total still
does. Without a scale the verdict is the test alone (q < 0.05). The direction is the sign of
new - old.

A metric measured in the old study and with no value in the new one is *lost*, or *excluded
(flagged)* when every new run of the configuration was flagged: both fail a gate
(:data:`FAILING`), as a nightly that lost its energy figures must not pass. A metric with no
old value is *not measured* (never a failure). A side with fewer than 2 values is *too few
cycles* (no variance, so no test), except for a gating metric with at least 2 old values and
fewer than 2 new ones (flagged runs left out, values missing): that is *too few cycles
(gating)* and fails, as flagging all runs but one must not turn a failure into a pass.
``tests/perf/bench_compare.py`` measures the false-alarm and detection rates of these rules.
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
                  "too few cycles", "too few cycles (gating)", "lost", "excluded (flagged)"]
Better = Literal["lower", "higher"]

FAILING: frozenset[Verdict] = frozenset({"regressed", "lost", "excluded (flagged)",
                                         "too few cycles (gating)"})
"""The verdicts that fail ``llem compare`` (exit 1) on a gating metric."""

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
        threshold_pct: the smallest change (in % of |old mean|) that counts.
        gating: whether a failing verdict of it fails the comparison.
        family: the Benjamini-Hochberg family it is adjusted in; None: ``"gating"`` or
            ``"other"`` after ``gating``. ``llem compare`` keeps the default gating metrics
            a family of their own, so gating more metrics never weakens the default gate.
        flagged_reasons: why every new run of the configuration was left out (flag codes);
            empty when some were used. With no new value, it makes the verdict *excluded
            (flagged)* instead of *lost*.
        scale: with an old mean about zero, what the threshold is a % of (the old mean of
            the matching total metric); None: the test alone decides then.
    """

    old: Sequence[float]
    new: Sequence[float]
    better: Better
    threshold_pct: float = DEFAULT_THRESHOLD_PCT
    gating: bool = True
    family: str | None = None
    flagged_reasons: tuple[str, ...] = ()
    scale: float | None = None

    @property
    def family_name(self) -> str:
        """The family it is adjusted in."""
        if self.family is not None:
            return self.family
        return "gating" if self.gating else "other"


@dataclass(frozen=True)
class Judgement:
    """The statistics and verdict of one :class:`Sample`.

    Attributes:
        old_mean: mean of the old values; None without values.
        new_mean: mean of the new values; None without values.
        change_pct: ``(new - old) / |old|`` in %; None without a mean on either side or with
            an old mean about zero.
        interval_pct: 95 % Welch interval of the change in % of |old mean|; None without a
            test or with an old mean about zero.
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
    change_pct: float | None
    interval_pct: tuple[float, float] | None
    p_value: float
    difference: float


def verdicts(samples: Sequence[Sample]) -> list[Judgement]:
    """Judge every sample; p-values are adjusted within each family (:attr:`Sample.family`)."""
    tests = [_welch(sample) for sample in samples]
    q_values: list[float | None] = [None] * len(samples)
    for name in dict.fromkeys(sample.family_name for sample in samples):
        family = [i for i, sample in enumerate(samples)
                  if sample.family_name == name and tests[i] is not None]
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


def about_zero(old: Sequence[float]) -> bool:
    """Whether the old mean is 0 or within one standard deviation of the old values from 0.

    Then its sign is in doubt (the values' CV is 100 % or more), so a change in % of it, and
    a threshold in % of it, mean nothing.
    """
    values = np.asarray(old, float)
    mean = float(values.mean())
    if mean == 0:
        return True
    return len(values) >= MIN_CYCLES and abs(mean) < float(values.std(ddof=1))


def _welch(sample: Sample) -> _Welch | None:
    """Welch's change, interval and p-value; None with too few values.

    Change and interval are in % of |old mean| (None when it is about zero).
    """
    old, new = np.asarray(sample.old, float), np.asarray(sample.new, float)
    if len(old) < MIN_CYCLES or len(new) < MIN_CYCLES:
        return None
    difference = float(new.mean()) - float(old.mean())
    if about_zero(sample.old):
        return _Welch(None, None, welch_p(old, new), difference)
    base = abs(float(old.mean()))
    var_old, var_new = old.var(ddof=1) / len(old), new.var(ddof=1) / len(new)
    se = math.sqrt(var_old + var_new)
    half = 0.0
    if se > 0:
        df = (var_old + var_new) ** 2 / (var_old ** 2 / (len(old) - 1)
                                         + var_new ** 2 / (len(new) - 1))
        half = float(stats.t.ppf((1 + CONFIDENCE) / 2, df)) * se
    low, high = sorted(((difference - half) / base * 100, (difference + half) / base * 100))
    return _Welch(difference / base * 100, (low, high), welch_p(old, new), difference)


def _judge(sample: Sample, test: _Welch | None, q: float | None) -> Judgement:
    old_mean = float(np.mean(sample.old)) if len(sample.old) else None
    new_mean = float(np.mean(sample.new)) if len(sample.new) else None
    if old_mean is None or new_mean is None:
        return Judgement(old_mean, new_mean, None, None, None, None, _missing(sample))
    change = (None if about_zero(sample.old)
              else (new_mean - old_mean) / abs(old_mean) * 100)
    if test is None or q is None:
        verdict: Verdict = ("too few cycles" if min(len(sample.old), len(sample.new)) < MIN_CYCLES
                            else "no significant change")
        if (verdict == "too few cycles" and sample.gating and len(sample.old) >= MIN_CYCLES):
            verdict = "too few cycles (gating)"
        return Judgement(old_mean, new_mean, change, None, None, None, verdict)
    return Judgement(old_mean, new_mean, test.change_pct, test.interval_pct, test.p_value, q,
                     _direction(sample, test, q))


def _missing(sample: Sample) -> Verdict:
    """A side without values: lost or excluded when the old study measured it."""
    if not len(sample.old):
        return "not measured"
    return "excluded (flagged)" if sample.flagged_reasons else "lost"


def _direction(sample: Sample, test: _Welch, q: float) -> Verdict:
    """Improved or regressed when q < ALPHA and beyond the threshold, else no change.

    The direction is the sign of new - old against ``better``; with an old mean about zero
    (no change in %) the threshold is a % of ``sample.scale``, or without one the test alone
    decides.
    """
    if q >= ALPHA or test.difference == 0:
        return "no significant change"
    if test.change_pct is not None and abs(test.change_pct) <= sample.threshold_pct:
        return "no significant change"
    if (test.change_pct is None and sample.scale
            and abs(test.difference) / abs(sample.scale) * 100 <= sample.threshold_pct):
        return "no significant change"
    worse = test.difference > 0 if sample.better == "lower" else test.difference < 0
    return "regressed" if worse else "improved"
