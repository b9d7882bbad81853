"""stats.json: the interval that covers at each sample size, named; flagged runs left out and
counted; raw and dynamic energy both."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.stats import bootstrap

from harness.schema import ExperimentConfig, ExperimentResult
from harness.schema.result import (
    EnergyMetrics,
    Environment,
    LatencyMetrics,
    SanityRecord,
    ThroughputMetrics,
    WarmupRecord,
    Warning_,
)
from orchestrator.stats import SEED, describe, study_stats, write_stats

KNOWN = [0.0121, 0.0125, 0.0119, 0.0131, 0.0122]
TEN = [0.0121, 0.0125, 0.0119, 0.0131, 0.0122, 0.0127, 0.0118, 0.0124, 0.0160, 0.0123]
THIRTY = TEN + [v * 1.01 for v in TEN] + [v * 0.985 for v in TEN]
# Student t quantiles t(0.975, df) from printed tables, independent of the code under test.
T_975 = {4: 2.776445, 8: 2.306004}


def run(run_id, cycle, energy_j=1000.0, dynamic_j=600.0, warnings=(), sanity_passed=True,
        config_hash="a" * 16):
    """A completed run doing 1000 output tokens with the given window energy (J)."""
    return ExperimentResult(
        run_id=run_id, config=ExperimentConfig(model="m", backend="pytorch"),
        measurement_config_hash=config_hash, effective_parameters={}, cycle=cycle,
        started_at="t", finished_at="t",
        energy=EnergyMetrics(
            energy_j=energy_j, energy_per_output_token_j=energy_j / 1000,
            energy_dynamic_j=dynamic_j,
            energy_dynamic_per_output_token_j=None if dynamic_j is None else dynamic_j / 1000),
        throughput=ThroughputMetrics(input_tokens=10, output_tokens=1000, requests=10,
                                     duration_s=20.0, output_tokens_per_s=50.0,
                                     requests_per_s=0.5),
        latency=LatencyMetrics(), warmup=WarmupRecord(batches=1, duration_s=1.0),
        environment=Environment(os="x", python="3", harness_version="0"),
        sanity=SanityRecord(passed=sanity_passed,
                            failed_checks=[] if sanity_passed else ["energy not positive"]),
        warnings=[Warning_(code=code, message="m") for code in warnings],
    )


def test_summary_of_known_data():
    summary = describe(KNOWN)
    assert summary.n == 5
    assert summary.mean == pytest.approx(np.mean(KNOWN))
    assert summary.median == pytest.approx(0.0122)
    assert summary.std == pytest.approx(np.std(KNOWN, ddof=1))
    assert summary.cv == pytest.approx(np.std(KNOWN, ddof=1) / np.mean(KNOWN))


def test_below_ten_cycles_the_interval_is_student_t():
    summary = describe(KNOWN)
    half_width = T_975[4] * np.std(KNOWN, ddof=1) / np.sqrt(5)
    assert summary.ci_method == "student_t"
    assert summary.ci == pytest.approx([np.mean(KNOWN) - half_width,
                                           np.mean(KNOWN) + half_width], rel=1e-6)
    assert "Student t" in summary.ci_note and "5 cycles" in summary.ci_note


def test_ten_to_twenty_nine_cycles_are_still_student_t():
    # BCa covers only ~90 % at 10 cycles and ~92.5 % at 20 (tests/perf/bench_ci_coverage.py)
    summary = describe(TEN[:9])
    half_width = T_975[8] * np.std(TEN[:9], ddof=1) / 3.0
    assert summary.ci_method == "student_t"
    assert summary.ci[1] - summary.ci[0] == pytest.approx(2 * half_width, rel=1e-6)
    assert describe(TEN).ci_method == "student_t"
    assert describe(THIRTY[:29]).ci_method == "student_t"


def test_from_thirty_cycles_the_interval_is_bca_and_matches_scipy():
    expected = bootstrap((np.asarray(THIRTY),), np.mean, n_resamples=2000, method="BCa",
                         confidence_level=0.95, random_state=np.random.default_rng(SEED))
    summary = describe(THIRTY)
    assert summary.ci_method == "bca_bootstrap"
    assert summary.ci == pytest.approx([expected.confidence_interval.low,
                                           expected.confidence_interval.high])
    assert "BCa" in summary.ci_note and "2000 resamples" in summary.ci_note


def test_fewer_than_three_cycles_has_no_ci_and_says_why():
    summary = describe([1.0, 2.0])
    assert summary.ci is None and summary.ci_method is None
    assert "2 cycle(s)" in summary.ci_note and "at least 3" in summary.ci_note
    assert describe([1.0]).std is None


def test_identical_values_give_a_point_interval():
    summary = describe([5.0, 5.0, 5.0])
    assert summary.ci == [5.0, 5.0] and summary.std == 0.0
    assert summary.ci_method == "student_t"


def test_the_method_is_named_per_metric():
    # Thirty cycles of raw energy, but one cycle had no baseline: dynamic energy has 29.
    runs = [run(f"r{c}", c, energy_j=1000.0 + 10 * c, dynamic_j=None if c == 1 else 500.0 + c)
            for c in range(1, 31)]
    metrics = study_stats(runs).configurations[0].metrics
    assert metrics["energy_j"].n == 30
    assert metrics["energy_j"].ci_method == "bca_bootstrap"
    assert metrics["energy_dynamic_j"].n == 29
    assert metrics["energy_dynamic_j"].ci_method == "student_t"


def test_dynamic_energy_and_dynamic_energy_per_token_are_in_the_statistics():
    runs = [run("r1", 1, 1000.0, 600.0), run("r2", 2, 1100.0, 700.0), run("r3", 3, 900.0, 500.0)]
    metrics = study_stats(runs).configurations[0].metrics
    assert metrics["energy_j"].mean == pytest.approx(1000.0)
    assert metrics["energy_dynamic_j"].mean == pytest.approx(600.0)
    assert metrics["energy_dynamic_per_output_token_j"].mean == pytest.approx(0.6)
    assert metrics["energy_dynamic_per_output_token_j"].ci is not None


def flagged_study():
    """Four clean cycles (one with a harmless warning) and four flagged ones at 50 kJ."""
    return [
        run("ok1", 1, 1000.0), run("ok2", 2, 1100.0), run("ok3", 3, 900.0),
        run("ok4", 4, 1000.0, warnings=["throttling", "short_window"]),
        run("bad5", 5, 50_000.0, sanity_passed=False),
        run("bad6", 6, 50_000.0, warnings=["energy_disagreement"]),
        run("bad7", 7, 50_000.0, warnings=["thermal_drift", "foreign_processes"]),
        run("bad8", 8, 50_000.0, warnings=["foreign_processes"]),
    ]


def test_flagged_runs_are_excluded_by_default_and_counted_with_reasons():
    stats = study_stats(flagged_study())
    (config,) = stats.configurations
    assert stats.include_flagged is False and stats.n_excluded == 4
    assert config.run_ids == ["ok1", "ok2", "ok3", "ok4"] and config.cycles == [1, 2, 3, 4]
    assert config.n_excluded == 4
    assert config.metrics["energy_j"].n == 4
    assert config.metrics["energy_j"].mean == pytest.approx(1000.0)
    reasons = {entry.run_id: entry.reasons for entry in config.flagged}
    assert reasons == {"bad5": ["sanity_check_failed"], "bad6": ["energy_disagreement"],
                       "bad7": ["thermal_drift", "foreign_processes"],
                       "bad8": ["foreign_processes"]}
    bad5 = next(entry for entry in config.flagged if entry.run_id == "bad5")
    assert bad5.cycle == 5 and bad5.sanity_failed_checks == ["energy not positive"]


def test_flagged_runs_can_be_included_explicitly_and_are_still_listed():
    stats = study_stats(flagged_study(), include_flagged=True)
    (config,) = stats.configurations
    assert stats.include_flagged is True and stats.n_excluded == 0
    assert config.n_excluded == 0 and len(config.run_ids) == 8
    assert config.metrics["energy_j"].mean == pytest.approx((4000.0 + 200_000.0) / 8)
    assert {entry.run_id for entry in config.flagged} == {"bad5", "bad6", "bad7", "bad8"}


def test_a_configuration_whose_runs_are_all_flagged_is_listed_without_numbers():
    runs = [run("ok1", 1), run("ok2", 2), run("ok3", 3)]
    runs += [run(f"x{c}", c, config_hash="b" * 16, warnings=["thermal_drift"]) for c in (1, 2)]
    configurations = {c.config_hash: c for c in study_stats(runs).configurations}
    assert configurations["a" * 16].metrics["energy_j"].n == 3
    lost = configurations["b" * 16]
    assert lost.run_ids == [] and lost.n_excluded == 2
    assert lost.metrics["energy_j"].n == 0
    assert "excluded" in lost.metrics["energy_j"].note


def test_write_stats_passes_the_choice_through_and_leaves_no_temporary_file(tmp_path):
    write_stats(tmp_path, flagged_study(), include_flagged=True)
    assert [p.name for p in tmp_path.iterdir()] == ["stats.json"]
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert stats["include_flagged"] is True
    assert stats["ci_method_rule"]["bca_from_cycles"] == 30


@pytest.mark.parametrize("code", ["cross_request_cache_hits", "baseline_not_idle",
                                  "mig_enabled", "gpu_identity_unproven"])
def test_a_run_whose_warning_says_it_is_not_comparable_is_not_pooled(code):
    # Before: a cycle that served 43 % of its prompt tokens from a cache nobody asked for
    # (cross_request_cache_hits: "energy per token is not comparable") was averaged in.
    results = [run("r0", 0, 10_000.0), run("r1", 1, 10_000.0),
               run("r2", 2, 7_000.0, warnings=(code,)), run("r3", 3, 10_000.0)]
    configuration = study_stats(results).configurations[0]
    assert configuration.n_excluded == 1
    assert configuration.flagged[0].reasons == [code]
    assert configuration.metrics["energy_per_output_token_j"].mean == pytest.approx(10.0)
