"""stats.json: BCa intervals that match scipy, and no interval below 3 cycles."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import bootstrap

from orchestrator.stats import SEED, describe

KNOWN = [0.0121, 0.0125, 0.0119, 0.0131, 0.0122]


def test_summary_of_known_data():
    summary = describe(KNOWN)
    assert summary["n"] == 5
    assert summary["mean"] == pytest.approx(np.mean(KNOWN))
    assert summary["median"] == pytest.approx(0.0122)
    assert summary["std"] == pytest.approx(np.std(KNOWN, ddof=1))
    assert summary["cv"] == pytest.approx(np.std(KNOWN, ddof=1) / np.mean(KNOWN))


def test_ci_matches_scipy_bca():
    expected = bootstrap((np.asarray(KNOWN),), np.mean, n_resamples=2000, method="BCa",
                         confidence_level=0.95, random_state=np.random.default_rng(SEED))
    low, high = describe(KNOWN)["ci"]
    assert low == pytest.approx(expected.confidence_interval.low)
    assert high == pytest.approx(expected.confidence_interval.high)
    assert low < np.mean(KNOWN) < high


def test_fewer_than_three_cycles_has_no_ci_and_says_why():
    summary = describe([1.0, 2.0])
    assert summary["ci"] is None
    assert "2 cycle(s)" in summary["ci_note"] and "at least 3" in summary["ci_note"]
    assert describe([1.0])["std"] is None


def test_identical_values_give_a_point_interval():
    summary = describe([5.0, 5.0, 5.0])
    assert summary["ci"] == [5.0, 5.0] and summary["std"] == 0.0
