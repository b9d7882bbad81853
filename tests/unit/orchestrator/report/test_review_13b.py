"""Second review of issue 13: the fixes of the first review, attacked.

Every test here fails on the commit under review (a7577c8). Each says what is wrong and what
would be right.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path

from click.testing import CliRunner
from llem_testkit.runners import ScriptedResults

from harness.schema.run_spec import RunSpec
from orchestrator import run_study
from orchestrator.cli import main
from orchestrator.report.compare import compare_studies
from orchestrator.report.nightly import find_previous
from orchestrator.report.study_data import StudyData
from orchestrator.runners.base import EventCallback, RunOutcome

EPT = "energy_per_output_token_j"
DYN = "energy_dynamic_per_output_token_j"
TPS = "output_tokens_per_s"
BASE = [1.00, 1.01, 0.99, 1.00]
BASE_TPS = [50.0, 50.5, 49.5, 50.2]


class Scripted(ScriptedResults):
    """ScriptedResults that flags (thermal_drift) or fails the runs the predicates pick."""

    def __init__(self, values: Callable[[RunSpec], Mapping[str, float]],
                 flag: Callable[[RunSpec], bool] = lambda spec: False,
                 fail: Callable[[RunSpec], bool] = lambda spec: False) -> None:
        super().__init__(values)
        self.flag, self.fail = flag, fail

    def run(self, run_dir: Path, timeout_s: float | None, on_event: EventCallback,
            gpus: list[int] | None = None) -> RunOutcome:
        spec = RunSpec.model_validate_json((run_dir / "experiment.json").read_text())
        if self.fail(spec):
            return RunOutcome(end="error", exit_code=1, message="failed on purpose")
        outcome = super().run(run_dir, timeout_s, on_event, gpus)
        if self.flag(spec):
            path = run_dir / "result.json"
            result = json.loads(path.read_text())
            result["warnings"].append({"code": "thermal_drift", "message": "on purpose"})
            path.write_text(json.dumps(result))
        return outcome


def _size(spec: RunSpec) -> int | None:
    """The run's pytorch batch size."""
    assert spec.config.pytorch is not None
    return spec.config.pytorch.batch_size


def _study(folder: Path, out: Path, sizes: list[int], runner: Scripted,
           rename: str | None = None) -> Path:
    path = folder / "s.yaml"
    path.write_text("name: s\nmodel: m\nbackend: pytorch\n"
                    "execution: {n_cycles: 4, config_gap_s: 0, cycle_gap_s: 0}\n"
                    f"sweep: {{pytorch.batch_size: {sizes}}}\n")
    _, study_dir = run_study(path, runner, output=out, no_gaps=True)
    if rename is None:
        return study_dir
    target = study_dir.with_name(rename)
    study_dir.rename(target)
    return target


def _values(ept: Mapping[int, float]) -> Callable[[RunSpec], dict[str, float]]:
    """EPT = ept[batch size] * BASE[cycle], throughput BASE_TPS[cycle]."""
    def values(spec: RunSpec) -> dict[str, float]:
        i = spec.cycle - 1
        return {EPT: ept[_size(spec)] * BASE[i], TPS: BASE_TPS[i]}
    return values


def test_one_usable_new_cycle_lets_a_tripled_energy_per_token_pass(
        tmp_path: Path) -> None:
    # WRONG: tonight 3 of the 4 runs of the configuration were flagged (thermal_drift) and
    # left out; the one run left has J/token tripled. With one new value there is no variance,
    # so the verdict is "too few cycles", never a failure: llem compare (and llem nightly:
    # flagged runs are completed, not failed) exits 0. All 4 flagged gives "excluded
    # (flagged)" and exit 1, so flagging one run fewer turns a fail into a pass.
    # RIGHT: a gating metric that had >= 2 old values and has fewer than 2 usable new ones
    # fails the gate (or is judged against the old interval), naming the flagged runs.
    old = _study(tmp_path, tmp_path / "old", [1], Scripted(_values({1: 1.0})))
    new = _study(tmp_path, tmp_path / "new", [1],
                 Scripted(_values({1: 3.0}), flag=lambda spec: spec.cycle > 1))
    rows = compare_studies(StudyData.load(old), StudyData.load(new)).rows
    assert next(r for r in rows if r.metric == EPT).verdict == "too few cycles (gating)"
    assert next(r for r in rows if r.metric == EPT).flagged_reasons == ["thermal_drift"]
    result = CliRunner().invoke(main, ["compare", str(old), str(new)])
    assert result.exit_code == 1, result.stdout
    assert "too few cycles (gating)" in result.stderr and "thermal_drift" in result.stderr


def test_an_old_mean_about_zero_fails_the_gate_on_a_change_far_below_the_threshold(
        tmp_path: Path) -> None:
    # WRONG: dynamic J/token about 0 in the old study (idle-dominated, values straddling 0):
    # about_zero drops the threshold and the Welch test alone decides. A rise of 0.0045 J/token
    # (0.45 % of the 1.0 J/token total, which itself did not move) is "regressed" and
    # llem compare exits 1: the 5 % threshold, there "so a real but tiny change does not fail
    # a nightly", no longer protects a gating metric. RIGHT: with no usable |old mean|, a
    # threshold on another scale (e.g. % of the old total J/token, or an absolute floor),
    # or a non-failing verdict such as "changed (old mean about 0)"; exit 0 here.
    dyn_old, dyn_new = [-0.002, 0.002, 0.001, -0.001], [0.004, 0.005, 0.004, 0.005]

    def values(dyn: list[float]) -> Callable[[RunSpec], dict[str, float]]:
        return lambda spec: {EPT: BASE[spec.cycle - 1], TPS: BASE_TPS[spec.cycle - 1],
                             DYN: dyn[spec.cycle - 1]}

    old = _study(tmp_path, tmp_path / "old", [1], Scripted(values(dyn_old)))
    new = _study(tmp_path, tmp_path / "new", [1], Scripted(values(dyn_new)))
    rows = compare_studies(StudyData.load(old), StudyData.load(new)).rows
    assert next(r for r in rows if r.metric == EPT).verdict == "no significant change"
    result = CliRunner().invoke(main, ["compare", str(old), str(new)])
    assert result.exit_code == 0, result.stderr


def test_a_night_that_lost_a_configuration_hides_its_regression_from_the_next_night(
        tmp_path: Path) -> None:
    # WRONG: night 1 measures bs1 and bs2 at 1.0 J/token; night 2 every bs2 run fails (exit 1,
    # fine); night 3 bs2 is back at 1.5 J/token (+50 %). Night 3's previous night is night 2
    # (completed a run, not interrupted), which has no bs2, so bs2 is "only in new" and the
    # comparison passes: the regression is never reported, and night 4 takes 1.5 as the
    # baseline. The same with night 2's bs2 runs all flagged (old side empty: "not
    # measured"), or a night where only one configuration of ten completed.
    # RIGHT: compare each configuration with the newest earlier night that measured it (or
    # fail/flag "no baseline tonight"), so night 3 reports bs2 regressed and exits 1.
    root = tmp_path / "nightly"
    _study(tmp_path, root, [1, 2], Scripted(_values({1: 1.0, 2: 1.0})), "s_20261101T020000Z")
    _study(tmp_path, root, [1, 2], Scripted(_values({1: 1.0, 2: 1.0}),
                                            fail=lambda spec: _size(spec) == 2),
           "s_20261102T020000Z")
    night3 = _study(tmp_path, root, [1, 2], Scripted(_values({1: 1.0, 2: 1.5})),
                    "s_20261103T020000Z")
    previous = find_previous(root, night3)
    assert previous.path is not None
    comparison = compare_studies([StudyData.load(path) for path in previous.earlier],
                                 StudyData.load(night3))
    assert comparison.regressed, [c.label for c in comparison.only_in_new]
    bs2 = next(r for r in comparison.rows if r.metric == EPT and r.label == "pytorch-bs2")
    assert (bs2.verdict, Path(bs2.baseline).name) == ("regressed", "s_20261101T020000Z")
    assert [Path(ref.directory).name for ref in comparison.baselines] == [
        "s_20261102T020000Z", "s_20261101T020000Z"]  # both kept by retention


def test_llem_compare_passes_when_every_new_run_of_a_configuration_failed(
        tmp_path: Path) -> None:
    # WRONG: every new run of bs2 failed: bs2 is only "only in old" and llem compare exits 0
    # with "regressed": false, while the milder case (every run flagged) exits 1 as
    # "excluded (flagged)". A CI job gating on llem compare (not on llem nightly's exit for
    # failed runs) passes with a configuration's energy figures gone. RIGHT: a configuration
    # of OLD with no completed run in NEW of the same design fails like "lost" (exit 1), or
    # at least "regressed" in the JSON agrees with the flagged case.
    old = _study(tmp_path, tmp_path / "old", [1, 2], Scripted(_values({1: 1.0, 2: 1.0})))
    new = _study(tmp_path, tmp_path / "new", [1, 2],
                 Scripted(_values({1: 1.0, 2: 1.0}),
                          fail=lambda spec: _size(spec) == 2))
    result = CliRunner().invoke(main, ["compare", str(old), str(new), "--json"])
    assert result.exit_code == 1, result.stdout[-400:]
    lost = {r.label for r in compare_studies(StudyData.load(old), StudyData.load(new)).regressions
            if r.verdict == "lost"}
    assert lost == {"pytorch-bs2"}


def test_history_orders_a_resumed_night_by_its_resume_not_by_when_it_was_made(
        tmp_path: Path) -> None:
    # WRONG: llem history sorts studies by summary.json's started_at, which is when the *last
    # invocation* started: night 1 (1.0 J/token), resumed after nights 2-4 ran (a failed run
    # retried by `llem run --resume`), goes last. The series reads 1.0, 1.5, 1.5, 1.0 instead
    # of 1.0, 1.0, 1.5, 1.5, so the step at night 3 (+50 %, stayed) is not found, and the
    # table's columns are out of date order. llem nightly was fixed to order by manifest created_at;
    # history was not. RIGHT: order by manifest created_at (when the study was made); the
    # step is found at the first 1.5 night.
    import time

    from orchestrator.report.history import load_series, study_history

    root = tmp_path / "series"
    first = _study(tmp_path, root, [1], Scripted(_values({1: 1.0}),
                                                 fail=lambda spec: spec.cycle == 4))
    later = [_study(tmp_path, root, [1], Scripted(_values({1: level})))
             for level in (1.0, 1.5, 1.5)]
    time.sleep(1.1)  # the resume starts in a later second than every other night
    run_study(tmp_path / "s.yaml", Scripted(_values({1: 1.0})), resume=first, no_gaps=True)
    studies = load_series([first, *later])
    assert [s.directory for s in studies][0] == first, [s.directory.name for s in studies]
    series = next(s for s in study_history(studies).series if s.metric == EPT)
    assert series.step is not None and series.step.study_index == 2
