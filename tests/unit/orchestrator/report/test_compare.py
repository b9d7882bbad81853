"""llem compare: verdicts, Benjamini-Hochberg gating, not-comparable studies and exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from llem_testkit.runners import ResultWriter
from llem_testkit.studies import scripted_study

from harness.errors import ConfigError
from orchestrator import run_study
from orchestrator.cli import main
from orchestrator.report.compare import Comparison, MetricComparison, compare_studies
from orchestrator.report.study_data import StudyData
from orchestrator.report.verdicts import Sample, verdicts

EPT = "energy_per_output_token_j"
TPS = "output_tokens_per_s"
BASE = [1.00, 1.01, 0.99, 1.00, 1.005]  # energy per token per cycle, CV about 0.7 %
BASE_TPS = [50.0, 50.5, 49.5, 50.2, 49.8]


def scaled(values: list[float], factor: float) -> list[float]:
    return [v * factor for v in values]


def study(folder: Path, ept: list[float], tps: list[float] | None = None,
          sizes: tuple[int, ...] = (1,), **kwargs: object) -> Path:
    metrics = {EPT: ept, TPS: tps or BASE_TPS[:len(ept)]}
    return scripted_study(folder, {size: metrics for size in sizes}, **kwargs)


def row(comparison: Comparison, metric: str = EPT, label: str = "pytorch-bs1") -> MetricComparison:
    return next(r for r in comparison.rows if r.metric == metric and r.label == label)


def compared(old: Path, new: Path, **kwargs: object) -> Comparison:
    return compare_studies(StudyData.load(old), StudyData.load(new), **kwargs)


def cli(*args: object) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, [str(arg) for arg in args])
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return study(tmp_path_factory.mktemp("base"), BASE)


def test_a_20_percent_energy_rise_is_a_regression_and_exits_1_naming_it(tmp_path, baseline):
    worse = study(tmp_path, scaled(BASE, 1.2))
    found = row(compared(baseline, worse))
    assert found.verdict == "regressed"
    assert found.change_pct == pytest.approx(20.0)
    assert found.interval_pct is not None
    assert found.interval_pct[0] < 20.0 < found.interval_pct[1]
    code, _, stderr = cli("compare", baseline, worse)
    assert code == 1
    assert "regression: energy_per_output_token_j of pytorch-bs1" in stderr


def test_a_20_percent_energy_drop_is_an_improvement_and_exits_0(tmp_path, baseline):
    better = study(tmp_path, scaled(BASE, 0.8), scaled(BASE_TPS, 1.25))
    comparison = compared(baseline, better)
    assert row(comparison).verdict == "improved"
    assert row(comparison, TPS).verdict == "improved"  # higher is better for throughput
    assert cli("compare", baseline, better)[0] == 0


def test_lower_throughput_is_a_regression(tmp_path, baseline):
    slower = study(tmp_path, BASE, scaled(BASE_TPS, 0.85))
    assert row(compared(baseline, slower), TPS).verdict == "regressed"


def test_noise_within_the_threshold_is_no_significant_change(tmp_path, baseline):
    noisy = study(tmp_path, [1.01, 0.995, 1.0, 0.99, 1.012])
    comparison = compared(baseline, noisy)
    assert row(comparison).verdict == "no significant change"
    assert comparison.regressions == []


def test_a_significant_but_tiny_change_below_the_threshold_is_not_a_regression(tmp_path):
    steady = [1.0, 1.0001, 0.9999, 1.0]
    old = study(tmp_path, steady)
    new = study(tmp_path, scaled(steady, 1.02))  # +2 %, with a p-value far below 0.05
    found = row(compared(old, new))
    assert found.p_value is not None and found.p_value < 1e-6
    assert found.verdict == "no significant change"
    assert row(compared(old, new, threshold_pct=1.0)).verdict == "regressed"
    assert row(compared(old, new, thresholds={EPT: 1.0})).verdict == "regressed"
    assert cli("compare", old, new, "--metric-threshold", f"{EPT}=1")[0] == 1


def test_the_interval_is_welchs_divided_by_the_old_mean():
    # old mean 2, new mean 3: difference 1, se sqrt(1/3 + 1/3), Welch df 4, t(0.975, 4) 2.7764
    judged = verdicts([Sample([1, 2, 3], [2, 3, 4], "lower")])[0]
    assert judged.change_pct == pytest.approx(50.0)
    assert judged.interval_pct == pytest.approx((-63.35, 163.35), abs=0.01)
    assert judged.p_value == pytest.approx(0.2879, abs=1e-4)


def test_too_few_cycles_is_never_a_regression(tmp_path):
    old = study(tmp_path, [1.0])
    new = study(tmp_path, [2.0])
    found = row(compared(old, new))
    assert (found.verdict, found.change_pct) == ("too few cycles", pytest.approx(100.0))
    assert cli("compare", old, new)[0] == 0


def test_a_metric_absent_from_one_side_is_not_measured(tmp_path, baseline):
    new = scripted_study(tmp_path, {1: {EPT: BASE, TPS: BASE_TPS,
                                        "energy_dynamic_per_output_token_j": BASE}})
    found = row(compared(baseline, new), "energy_dynamic_per_output_token_j")
    assert (found.verdict, found.old_n, found.new_n) == ("not measured", 0, 5)


def test_configurations_in_one_study_only_are_listed_not_compared(tmp_path):
    old = study(tmp_path, BASE, sizes=(1, 2))
    new = study(tmp_path, BASE, sizes=(1, 4))
    comparison = compared(old, new)
    assert [ref.label for ref in comparison.only_in_old] == ["pytorch-bs2"]
    assert [ref.label for ref in comparison.only_in_new] == ["pytorch-bs4"]
    assert {r.label for r in comparison.rows} == {"pytorch-bs1"}


def test_studies_without_a_configuration_in_common_are_not_comparable(tmp_path):
    old = study(tmp_path, BASE, sizes=(1,))
    new = study(tmp_path, BASE, sizes=(2,))
    with pytest.raises(ConfigError, match="no configuration in common"):
        compared(old, new)
    code, stdout, _ = cli("compare", old, new, "--json")
    assert code == 2
    assert "no configuration in common" in json.loads(stdout)["error"]


def test_a_study_without_completed_runs_is_not_comparable(tmp_path, baseline):
    class FailEverything(ResultWriter):
        def run(self, run_dir, timeout_s, on_event, gpus=None):
            self.fail = (run_dir.name,)
            return super().run(run_dir, timeout_s, on_event, gpus)

    path = tmp_path / "f.yaml"
    path.write_text("name: f\nmodel: m\nbackend: pytorch\n"
                    "execution: {n_cycles: 1, config_gap_s: 0, cycle_gap_s: 0}\n")
    runner = FailEverything()
    runner.fail = ()
    _, failed = run_study(path, runner, output=tmp_path / "out", no_gaps=True)
    assert not StudyData.load(failed).configurations, "the fake did not fail its run"
    code, _, stderr = cli("compare", baseline, failed)
    assert code == 2
    assert "has no completed runs" in stderr


def test_a_missing_directory_exits_2(tmp_path, baseline):
    assert cli("compare", baseline, tmp_path / "nowhere")[0] == 2


def test_benjamini_hochberg_keeps_a_lone_weak_signal_among_many_from_failing():
    weak = Sample([1.00, 1.02, 0.98], [1.07, 1.09, 1.05], "lower")  # +7 %, p about 0.01
    alone = verdicts([weak])[0]
    assert alone.p_value is not None and 0.005 < alone.p_value < 0.05
    assert alone.verdict == "regressed"
    unchanged = Sample([1.00, 1.02, 0.98], [1.01, 0.99, 1.00], "lower")
    among_many = verdicts([weak] + [unchanged] * 11)[0]
    assert among_many.q_value == pytest.approx(alone.p_value * 12)
    assert among_many.verdict == "no significant change"


def test_non_gating_metrics_are_adjusted_in_their_own_family():
    weak = Sample([1.00, 1.02, 0.98], [1.07, 1.09, 1.05], "lower")
    others = [Sample([1.0, 1.02, 0.98], [1.0, 1.01, 0.99], "lower", gating=False)] * 11
    assert verdicts([weak, *others])[0].verdict == "regressed"


def test_a_regression_of_a_non_gating_metric_fails_only_when_gated(tmp_path):
    base_energy = [100.0, 101.0, 99.0, 100.0]
    old = scripted_study(tmp_path, {1: {EPT: BASE[:4], "energy_j": base_energy}})
    new = scripted_study(tmp_path, {1: {EPT: BASE[:4], "energy_j": scaled(base_energy, 1.3)}})
    energy = row(compared(old, new), "energy_j")
    assert (energy.verdict, energy.gating) == ("regressed", False)
    assert cli("compare", old, new)[0] == 0
    assert "regressed (not gating)" in cli("compare", old, new)[1]
    assert cli("compare", old, new, "--gate", "energy_j")[0] == 1
    assert cli("compare", old, new, "--gate", "all")[0] == 1
    code, _, stderr = cli("compare", old, new, "--gate", "energy_jj")
    assert code == 2
    assert "energy_jj" in stderr


def test_environment_differences_are_listed_as_likely_causes(tmp_path, baseline):
    new = study(tmp_path, BASE, environment={"driver_version": "560.1", "cuda_version": "12.6"})
    differences = compared(baseline, new).environment_differences
    assert differences == ["CUDA: none vs 12.6", "driver: none vs 560.1"]


def test_json_is_the_comparison_and_markdown_a_job_summary_table(tmp_path, baseline):
    worse = study(tmp_path, scaled(BASE, 1.2))
    code, stdout, _ = cli("compare", baseline, worse, "--json")
    assert code == 1
    assert row(Comparison.model_validate_json(stdout)).verdict == "regressed"
    code, stdout, _ = cli("compare", baseline, worse, "--markdown")
    assert code == 1
    lines = stdout.splitlines()
    assert "**1 regression(s)** in gating metrics" in lines
    assert "| configuration | metric | old | new | change [95 % interval] | q | verdict |" in lines
    assert any(line.startswith("| `pytorch-bs1` | `energy_per_output_token_j` (J/token) | 1.001 "
                               "| 1.201 | +20.0 % [") and line.endswith("❌ regressed |")
               for line in lines)
    assert cli("compare", baseline, worse, "--json", "--markdown")[0] == 2


def test_the_exit_code_contract_holds_for_the_installed_command(tmp_path, baseline):
    from llem_testkit.cli import llem

    worse = study(tmp_path, scaled(BASE, 1.2))
    assert llem("compare", str(baseline), str(baseline)).returncode == 0
    regressed = llem("compare", str(baseline), str(worse))
    assert regressed.returncode == 1
    assert "regression: energy_per_output_token_j of pytorch-bs1" in regressed.stderr
    assert llem("compare", str(baseline), str(tmp_path / "none")).returncode == 2


def gpu(name: str, power_limit_w: float) -> dict[str, object]:
    return {"index": 0, "name": name, "uuid": "GPU-0", "memory_total_mb": 81920.0,
            "power_limit_w": power_limit_w}


def test_gpu_models_and_power_limits_are_among_the_differences(tmp_path):
    old = study(tmp_path, BASE, environment={"gpus": [gpu("NVIDIA H100", 700.0)]})
    new = study(tmp_path, BASE, environment={"gpus": [gpu("NVIDIA H200", 600.0)]})
    assert compared(old, new).environment_differences == [
        "GPU models: NVIDIA H100 vs NVIDIA H200", "power limits W: 700 vs 600"]


def test_a_configuration_topped_up_in_another_environment_is_compared_by_its_latest_entry(
        tmp_path, baseline):
    from llem_testkit.runners import ScriptedResults

    values = [1.0, 1.01, 0.99, 1.3, 1.31, 1.29]  # cycles 4-6 ran on another driver, 30 % worse
    path = tmp_path / "t.yaml"
    path.write_text("name: t\nmodel: m\nbackend: pytorch\npytorch: {batch_size: 1}\n"
                    "execution: {n_cycles: 3, config_gap_s: 0, cycle_gap_s: 0}\n")

    def runner(driver: str) -> ScriptedResults:
        return ScriptedResults(lambda spec: {EPT: values[spec.cycle - 1]},
                               {"driver_version": driver})

    _, topped_up = run_study(path, runner("550"), output=tmp_path / "out", no_gaps=True)
    run_study(path, runner("560"), resume=topped_up, cycles=6, no_gaps=True)
    assert len(StudyData.load(topped_up).configurations) == 2
    comparison = compared(baseline, topped_up)
    found = row(comparison, label=comparison.rows[0].label)  # the matched configuration
    assert (found.new_n, found.verdict) == (3, "regressed")
    assert found.new_mean == pytest.approx(1.3)


def test_an_old_mean_about_zero_is_judged_by_the_test_alone_with_no_percentage():
    # old values straddle 0 (CV over 100 %): no % change, but a clear rise still regresses
    around_zero = [0.001, -0.001, 0.002]
    risen = verdicts([Sample(around_zero, [0.020, 0.021, 0.019], "lower")])[0]
    assert (risen.verdict, risen.change_pct, risen.interval_pct) == ("regressed", None, None)
    assert risen.q_value is not None and risen.q_value < 0.05
    same = verdicts([Sample(around_zero, [0.0, 0.002, -0.001], "lower")])[0]
    assert (same.verdict, same.change_pct) == ("no significant change", None)


def test_a_lost_gating_metric_exits_1_naming_it_and_a_lost_other_metric_does_not_fail(tmp_path):
    old = scripted_study(tmp_path, {1: {EPT: BASE[:4], TPS: BASE_TPS[:4],
                                        "energy_j": [100.0, 101.0, 99.0, 100.0]}})
    new = scripted_study(tmp_path, {1: {EPT: [None] * 4, TPS: BASE_TPS[:4],  # type: ignore[dict-item]
                                        "energy_j": [None] * 4}})
    code, stdout, stderr = cli("compare", old, new)
    assert code == 1
    assert "lost: energy_per_output_token_j of pytorch-bs1" in stderr
    assert "energy_j of" not in stderr  # lost too, but not gating
    assert row(compared(old, new), "energy_j").verdict == "lost"
    assert "lost (not gating)" in stdout


def test_gates_added_by_the_option_are_adjusted_apart_from_the_default_gates():
    weak = Sample([1.00, 1.02, 0.98], [1.07, 1.09, 1.05], "lower", family="default gating")
    added = [Sample([1.0, 1.02, 0.98], [1.0, 1.01, 0.99], "lower", family="added gating")] * 11
    judged = verdicts([weak, *added])
    assert judged[0].verdict == "regressed"
    assert judged[0].q_value == pytest.approx(judged[0].p_value)  # alone in its family
    assert all(j.verdict == "no significant change" for j in judged[1:])


@pytest.mark.parametrize("value", ["nan", "inf", "-1"])
def test_a_threshold_must_be_a_finite_percentage(tmp_path, baseline, value):
    code, _, stderr = cli("compare", baseline, baseline, "--metric-threshold", f"{EPT}={value}")
    assert code == 2 and "is not NAME=PCT" in stderr
    code, _, stderr = cli("compare", baseline, baseline, "--threshold", value)
    assert code == 2 and "--threshold" in stderr
    assert cli("history", baseline, "--threshold", value)[0] == 2
    study_file = tmp_path / "s.yaml"  # refused before anything runs
    study_file.write_text("name: s\nmodel: m\nbackend: pytorch\n")
    code, _, stderr = cli("nightly", study_file, "--root", tmp_path / "nights",
                          "--threshold", value)
    assert code == 2 and "--threshold" in stderr
    assert not (tmp_path / "nights").exists()


def test_an_old_mean_about_zero_takes_the_threshold_in_percent_of_the_total():
    # dynamic J/token about 0, total J/token 1.0: a rise of 0.4 % of the total is no
    # regression, a rise of 10 % of the total is one
    around_zero = [0.001, -0.001, 0.002]
    small = verdicts([Sample(around_zero, [0.004, 0.005, 0.004], "lower", scale=1.0)])[0]
    assert (small.verdict, small.change_pct) == ("no significant change", None)
    assert small.q_value is not None and small.q_value < 0.05  # the threshold decided
    big = verdicts([Sample(around_zero, [0.10, 0.11, 0.09], "lower", scale=1.0)])[0]
    assert big.verdict == "regressed"


def test_one_new_value_fails_a_gating_metric_and_not_another():
    old, new = [1.0, 1.01, 0.99, 1.0], [3.0]
    gating, other = verdicts([Sample(old, new, "lower"), Sample(old, new, "lower", gating=False)])
    assert (gating.verdict, other.verdict) == ("too few cycles (gating)", "too few cycles")
