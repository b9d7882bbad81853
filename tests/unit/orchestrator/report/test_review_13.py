"""Review of issue 13 (reports, compare, history, nightly): cases where a figure is wrong.

Every test here fails on the commit under review. Each says what is wrong and what would be right.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from click.testing import CliRunner
from llem_testkit.runners import ResultWriter, ScriptedResults
from llem_testkit.studies import scripted_study, write

from harness.schema.run_spec import RunSpec
from orchestrator import run_study
from orchestrator.cli import main
from orchestrator.report.compare import compare_studies
from orchestrator.report.history import find_step
from orchestrator.report.nightly import nightly_dirs, previous_nightly, prune
from orchestrator.report.study_data import StudyData
from orchestrator.report.verdicts import Sample, verdicts
from orchestrator.runners.base import EventCallback, RunOutcome

EPT = "energy_per_output_token_j"
DYN = "energy_dynamic_per_output_token_j"
TPS = "output_tokens_per_s"
BASE = [1.00, 1.01, 0.99, 1.00]
BASE_TPS = [50.0, 50.5, 49.5, 50.2]
# Dynamic energy per token a little below zero: idle power measured slightly above the
# window's (sanity tolerates a small negative dynamic energy, so these runs are not flagged).
NEGATIVE_DYN = [-0.010, -0.011, -0.009, -0.010]


def cli(*args: object) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, [str(arg) for arg in args])
    return result.exit_code, result.stdout, result.stderr


# --- a negative old mean turns the verdict around ------------------------------------------

def test_negative_old_mean_falling_further_is_an_improvement_not_a_regression():
    # WRONG: change_pct = (new - old) / old divides by a negative old mean, so a metric that
    # fell from -0.010 to -0.020 (lower is better: it improved) gets change +100 % and the
    # verdict "regressed". RIGHT: the direction comes from new - old (or divide by |old|):
    # "improved", change -100 %.
    judged = verdicts([Sample([-0.010, -0.011, -0.009], [-0.020, -0.021, -0.019], "lower")])[0]
    assert judged.verdict == "improved"
    assert judged.change_pct is not None and judged.change_pct < 0


def test_negative_old_mean_turning_positive_is_a_regression_not_an_improvement():
    # WRONG: dynamic J/token rose from -0.010 to +0.050 (a real regression) but the negative
    # denominator gives change -600 % and the verdict "improved": the nightly passes.
    judged = verdicts([Sample([-0.010, -0.011, -0.009], [0.050, 0.051, 0.049], "lower")])[0]
    assert judged.verdict == "regressed"


def test_llem_compare_fails_a_study_whose_dynamic_energy_per_token_fell(tmp_path):
    # WRONG end to end: energy_dynamic_per_output_token_j is a gating metric; a study whose
    # dynamic J/token went down (better) exits 1 naming it as a regression. RIGHT: exit 0.
    old = scripted_study(tmp_path, {1: {EPT: BASE, TPS: BASE_TPS, DYN: NEGATIVE_DYN}})
    new = scripted_study(tmp_path, {1: {EPT: BASE, TPS: BASE_TPS,
                                        DYN: [2 * v for v in NEGATIVE_DYN]}})
    code, _, stderr = cli("compare", old, new)
    assert code == 0, stderr


def test_history_marks_a_step_on_a_negative_series_with_the_right_direction():
    # WRONG: the same sign error in llem history: a lower-is-better series that fell from
    # -0.010 to -0.020 gets change +100 % and worse=True (shown red). RIGHT: worse=False.
    before, after = [-0.010, -0.011, -0.009], [-0.020, -0.021, -0.019]
    step = find_step([before, before, after, after], "lower")
    assert step is not None and step.study_index == 2
    assert step.worse is False


# --- a gating metric that disappears passes silently ---------------------------------------

class FlaggingResults(ScriptedResults):
    """ScriptedResults whose every result carries a flagging warning (thermal_drift)."""

    def run(self, run_dir: Path, timeout_s: float | None, on_event: EventCallback,
            gpus: list[int] | None = None) -> RunOutcome:
        outcome = super().run(run_dir, timeout_s, on_event, gpus)
        path = run_dir / "result.json"
        result = json.loads(path.read_text())
        result["warnings"].append({"code": "thermal_drift", "message": "drifted on purpose"})
        path.write_text(json.dumps(result))
        return outcome


def test_a_configuration_whose_new_runs_were_all_flagged_does_not_pass_the_gate(tmp_path):
    # WRONG: tonight every run of the configuration was flagged (thermal_drift here; the same
    # for a failed sanity check such as power above the limit), so stats.json pooled none.
    # Its J/token tripled, yet every metric gets "not measured" and llem compare exits 0
    # (and llem nightly too: flagged runs are completed, not failed). RIGHT: a gating
    # metric measured in OLD with no usable value in NEW is not a pass: a verdict such as
    # "excluded (flagged)" that exits 1 or 2, naming the flags.
    old = scripted_study(tmp_path, {1: {EPT: BASE, TPS: BASE_TPS}})
    path = tmp_path / "n.yaml"
    path.write_text("name: s\nmodel: m\nbackend: pytorch\n"
                    "execution: {n_cycles: 4, config_gap_s: 0, cycle_gap_s: 0}\n"
                    "sweep: {pytorch.batch_size: [1]}\n")

    def tripled(spec: RunSpec) -> dict[str, float]:
        return {EPT: 3 * BASE[spec.cycle - 1], TPS: BASE_TPS[spec.cycle - 1]}

    _, new = run_study(path, FlaggingResults(tripled), output=tmp_path / "flagged",
                       no_gaps=True)
    rows = compare_studies(StudyData.load(old), StudyData.load(new)).rows
    assert next(r for r in rows if r.metric == EPT).verdict != "not measured"
    assert cli("compare", old, new)[0] != 0
    # as fixed: the verdict says why, on stderr too, and the exit is 1
    energy = next(r for r in rows if r.metric == EPT)
    assert (energy.verdict, energy.flagged_reasons) == ("excluded (flagged)", ["thermal_drift"])
    code, _, stderr = cli("compare", old, new)
    assert code == 1
    assert ("excluded (flagged): energy_per_output_token_j of pytorch-bs1" in stderr
            and "every new run was flagged (thermal_drift)" in stderr)


def test_a_gating_metric_measured_before_and_missing_now_does_not_pass_the_gate(tmp_path):
    # WRONG: the old study measured energy per token; the new one has none (e.g. the energy
    # sensor vanished after a driver change). The row is "not measured" and llem compare
    # exits 0, so a nightly that lost its energy figures stays green. RIGHT: exit 2 (not
    # comparable on a gating metric) or 1, saying which metric went missing.
    old = scripted_study(tmp_path, {1: {EPT: BASE, TPS: BASE_TPS}})
    new = scripted_study(tmp_path, {1: {EPT: [None] * 4, TPS: BASE_TPS}})  # type: ignore[list-item]
    assert cli("compare", old, new)[0] != 0


# --- nightly bookkeeping --------------------------------------------------------------------

def _study(root: Path, tmp_path: Path, name: str, stamp: str) -> Path:
    path = write(tmp_path, f"name: {name}\nmodel: m\nbackend: pytorch\n"
                 "execution: {n_cycles: 2, config_gap_s: 0, cycle_gap_s: 0}\n",
                 name=f"{name}.yaml")
    _, study_dir = run_study(path, ResultWriter(), output=root, no_gaps=True)
    target = study_dir.with_name(f"{name}_{stamp}")
    study_dir.rename(target)
    return target


def test_previous_nightly_is_a_night_of_the_same_study_not_another_one_in_the_root(tmp_path):
    # WRONG: previous_nightly takes the newest folder whose *name* sorts before tonight's,
    # whatever study it holds. On the first night of "nightly" in a root that also holds a
    # study "baseline" (run there by hand, or a second nightly file), tonight is compared
    # with "baseline": exit 2 "no configuration in common", or, when the configurations
    # match, a comparison with a different study presented as last night's.
    # RIGHT: only earlier directories of the same study (summary.study / design), by start
    # time; here none, so "first nightly here".
    root = tmp_path / "nightly"
    _study(root, tmp_path, "baseline", "20261129T120000Z")
    tonight = _study(root, tmp_path, "nightly", "20261130T023000Z")
    assert previous_nightly(root, tonight) is None


def test_prune_never_removes_a_study_directory_of_another_study(tmp_path):
    # WRONG: prune counts every folder with a manifest under the root as a night and removes
    # the oldest by name: a hand-run study "baseline" kept in results/nightly is deleted by
    # `llem nightly --keep 2` (and names, not times, order mixed studies). RIGHT: prune only
    # the nights of the study being run; never another study's directory.
    root = tmp_path / "nightly"
    other = _study(root, tmp_path, "baseline", "20261201T000000Z")
    nights = [_study(root, tmp_path, "nightly", f"202611{d:02d}T023000Z") for d in (1, 2, 3)]
    prune(root, keep=2, protect=(nights[2], nights[1]))
    assert other.is_dir()


def test_prune_skips_a_symlink_to_a_night_instead_of_crashing(tmp_path):
    # WRONG: a convenience link (results/nightly/latest -> a night) is a "night" for
    # nightly_dirs (is_dir follows links, the manifest is there); when it is among the oldest,
    # shutil.rmtree raises OSError on the link and `llem nightly --keep N` ends in a traceback
    # after its comparison (exit 1 without a regression). RIGHT: links are not nights: skipped,
    # not counted, never followed for removal.
    root = tmp_path / "nightly"
    nights = [_study(root, tmp_path, "nightly", f"202611{d:02d}T023000Z") for d in (2, 3, 4)]
    os.symlink(nights[0], root / "latest")  # "latest" sorts before "nightly_..."
    prune(root, keep=2, protect=(nights[2], nights[1]))  # raises OSError today
    assert (root / "latest").is_symlink()
    assert root / "latest" not in nightly_dirs(root)


# --- command-line inputs ----------------------------------------------------------------------

def test_a_nan_threshold_is_refused(tmp_path):
    # WRONG: --metric-threshold NAME=nan (and --threshold nan: click's FloatRange lets NaN
    # through) is accepted; `abs(change) <= nan` is False, so the threshold silently becomes
    # 0 % and any significant wiggle is a verdict. RIGHT: exit 2, one message.
    old = scripted_study(tmp_path, {1: {EPT: BASE, TPS: BASE_TPS}})
    assert cli("compare", old, old, "--metric-threshold", f"{EPT}=nan")[0] == 2
    assert cli("compare", old, old, "--threshold", "nan")[0] == 2


def test_currency_without_price_does_not_relabel_the_studys_price(tmp_path):
    # WRONG: the study set a price of 0.30 CHF/kWh; `llem report DIR --currency EUR` (no
    # --price) keeps 0.30 and labels it EUR: the cost figure is in a currency it was never
    # priced in. RIGHT: --currency without --price is refused (exit 2, one message), or the
    # study's currency is kept.
    path = write(tmp_path, "name: s\nmodel: m\nbackend: pytorch\n"
                 "execution: {n_cycles: 1, config_gap_s: 0, cycle_gap_s: 0}\n"
                 "report: {electricity_price_per_kwh: 0.3, currency: CHF}\n")
    _, study_dir = run_study(path, ResultWriter(), output=tmp_path / "out", no_gaps=True)
    code, _, _ = cli("report", study_dir, "--currency", "EUR")
    html = (study_dir / "report.html").read_text()
    assert code == 2 or "0.3 EUR/kWh" not in html


# --- history: one noisy night hides every later step --------------------------------------------

def test_one_noisy_night_before_a_step_does_not_hide_the_step_forever():
    # WRONG: the rule needs *every* study before the step below the midpoint. One night at
    # +6 % (noise: itself no step) among nine at 1.00, then ten nights at +10 %: no step is
    # ever reported, and since that night stays in every later "before" set, no later step
    # will be either. Simulated (3 cycles, CV 5 %, a true +10 % step mid-series) detection
    # falls from 87 % at 7 nights to 50 % at 20 as the series grows. Without the noisy night
    # the step is found at index 9 (p ~ 1e-60). RIGHT: a rule robust to single outliers on
    # the before side (e.g. medians per side, a fraction of studies, or a change-point test).
    def night(mean: float) -> list[float]:
        return [mean * 0.995, mean, mean * 1.005]

    before = [night(1.0)] * 4 + [night(1.06)] + [night(1.0)] * 4
    after = [night(1.10)] * 10
    step = find_step(before + after, "lower")
    assert step is not None and step.study_index == 9 and step.worse


# --- more gates make the gate looser ---------------------------------------------------------

def test_gating_more_metrics_never_lets_a_default_gate_regression_pass(tmp_path):
    # WRONG: Benjamini-Hochberg runs over the whole gating family, so `--gate all` (meant to
    # be stricter) adds hypotheses with p ~ 1 and lifts energy per token's q from 0.026 to
    # 0.064: the +7 % regression that fails `llem compare` (exit 1) passes with `--gate all`
    # (exit 0). RIGHT: adding gates never removes a regression of the default gates, e.g.
    # the default gating metrics adjusted as their own family and --gate metrics in another.
    old = scripted_study(tmp_path, {1: {EPT: [1.00, 1.02, 0.98], TPS: [50.0, 50.5, 49.5]}})
    new = scripted_study(tmp_path, {1: {EPT: [1.07, 1.09, 1.05], TPS: [50.2, 49.6, 50.1]}})
    assert cli("compare", old, new)[0] == 1
    assert cli("compare", old, new, "--gate", "all")[0] == 1
# The stale stats.json case (a completed run no entry lists) is test_study_data.py's.
