"""The study directory: one way in (library and CLI), locked, realised order, nothing lost."""

from __future__ import annotations

import contextlib
import dataclasses
import threading
from pathlib import Path

import pytest
from llem_testkit.results import fake_result

from harness.errors import ConfigError
from harness.schema.events import ResumeNote
from harness.schema.reading import UnreadableFileError
from harness.schema.result import ExperimentResult
from harness.schema.run_spec import RunSpec
from orchestrator import run_study
from orchestrator.manifest import Manifest
from orchestrator.runners.base import Runner, RunOutcome
from orchestrator.stats import StudyStats
from orchestrator.study import load_study
from orchestrator.study_dir import open_study_dir
from orchestrator.summary import StudySummary


def write_study(tmp_path: Path, sizes: str = "[1, 2, 3]", cycles: int = 1) -> Path:
    path = tmp_path / "s.yaml"
    path.write_text(f"name: sd\nmodel: m\nbackend: pytorch\nexecution: {{n_cycles: {cycles}, "
                    "cycle_order: interleaved, config_gap_s: 0, cycle_gap_s: 0}\n"
                    f"sweep:\n  pytorch.batch_size: {sizes}\n")
    return path


class FakeHarness(Runner):
    """Stands in for the harness: writes a valid result.json, or fails the run ids it is told.

    ``hold`` makes every run wait (after ``started`` is set) until ``release`` is set.
    """

    name = "fake"

    def __init__(self, fail: tuple[str, ...] = (), hold: bool = False) -> None:
        super().__init__()
        self.fail = fail
        self.hold = hold
        self.started = threading.Event()
        self.release = threading.Event()
        self.run_dirs: list[Path] = []

    def run(self, run_dir, timeout_s, on_event, gpus=None):
        self.run_dirs.append(run_dir)
        self.started.set()
        if self.hold:
            self.release.wait(timeout=60)
        spec = RunSpec.model_validate_json((run_dir / "experiment.json").read_text())
        if spec.run_id in self.fail:
            return RunOutcome(end="error", exit_code=1, message="failed on purpose")
        result = fake_result(spec, 100.0 + 10 * spec.config.pytorch.batch_size + spec.cycle)
        (run_dir / "result.json").write_text(result.model_dump_json())
        return RunOutcome(end="ok", exit_code=0, message="")


def test_a_second_concurrent_run_study_on_the_same_directory_is_refused(tmp_path):
    study = write_study(tmp_path, "[1]")
    holding = FakeHarness(hold=True)
    first: dict[str, object] = {}
    thread = threading.Thread(target=lambda: first.update(
        out=run_study(study, holding, output=tmp_path / "out", no_gaps=True)))
    thread.start()
    try:
        assert holding.started.wait(timeout=60), "the first study never started its run"
        study_dir = holding.run_dirs[0].parent
        manifest_before = (study_dir / "manifest.json").read_bytes()
        second = FakeHarness()
        with pytest.raises(ConfigError, match="another llem run is working on"):
            run_study(study, second, resume=study_dir, no_gaps=True)
        assert second.run_dirs == []
        assert (study_dir / "manifest.json").read_bytes() == manifest_before
    finally:
        holding.release.set()
        thread.join(timeout=60)
    summary, _ = first["out"]
    assert summary.counts == {"completed": 1}
    # Once the first has finished, the directory can be resumed (nothing left to do).
    again, _ = run_study(study, FakeHarness(), resume=study_dir, no_gaps=True)
    assert again.counts == {"completed": 1}


@pytest.mark.parametrize("source", ["env", "user_config"])
def test_the_library_picks_its_runner_as_the_cli_does(tmp_path, monkeypatch, source):
    # Before: run_study defaulted to "local" and ignored LLEM_RUNNER and the user config.
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.delenv("LLEM_RUNNER", raising=False)
    if source == "env":
        monkeypatch.setenv("LLEM_RUNNER", "nosuchrunner")
    else:
        (tmp_path / "config" / "llem").mkdir(parents=True)
        (tmp_path / "config" / "llem" / "config.yaml").write_text("runner: nosuchrunner\n")
    with pytest.raises(ConfigError, match="unknown runner 'nosuchrunner'"):
        run_study(write_study(tmp_path), output=tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_without_a_setting_library_and_cli_share_the_default_runner(monkeypatch, tmp_path):
    import inspect

    from orchestrator.settings import DEFAULT_RUNNER, resolve_runner

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.delenv("LLEM_RUNNER", raising=False)
    assert inspect.signature(run_study).parameters["runner"].default is None
    assert resolve_runner(None) == (DEFAULT_RUNNER, "default")


def test_the_manifest_records_the_order_runs_actually_started_in(tmp_path):
    study = write_study(tmp_path, "[1, 2, 3]")
    first_runner = FakeHarness(fail=("002_pytorch-bs2_c1",))
    summary, study_dir = run_study(study, first_runner, output=tmp_path / "out", no_gaps=True)
    planned = [r.run_id for r in Manifest.load(study_dir).runs]
    assert "002_pytorch-bs2_c1" in planned, planned
    assert Manifest.load(study_dir).executed == planned
    assert summary.counts == {"completed": 2, "failed": 1}

    loaded = load_study(study)
    summary, _ = run_study(loaded, FakeHarness(), resume=study_dir, cycles=2, no_gaps=True)
    manifest = Manifest.load(study_dir)
    # Planned order: cycle 1 then the top-up cycle 2. Realised: the retry came first.
    assert [r.run_id for r in manifest.runs] == planned + [p.replace("_c1", "_c2")
                                                           for p in planned]
    assert manifest.executed == [*planned, "002_pytorch-bs2_c1",
                                 *(p.replace("_c1", "_c2") for p in planned)]
    assert summary.protocol.realised_order == manifest.executed
    assert StudySummary.load(study_dir).protocol.realised_order == manifest.executed


def test_resume_moves_an_invalid_result_aside_and_says_so(tmp_path):
    study = write_study(tmp_path, "[1, 2]")
    _, study_dir = run_study(study, FakeHarness(), output=tmp_path / "out", no_gaps=True)
    damaged_path = study_dir / "002_pytorch-bs2_c1" / "result.json"
    damaged = damaged_path.read_bytes()[:120]
    damaged_path.write_bytes(damaged)
    intact = (study_dir / "001_pytorch-bs1_c1" / "result.json").read_bytes()

    events: list[dict[str, object]] = []
    summary, _ = run_study(study, FakeHarness(), events.append, resume=study_dir, no_gaps=True)

    (kept,) = damaged_path.parent.glob("result.json.invalid-*")
    assert kept.read_bytes() == damaged  # the old bytes survive the new attempt
    assert ExperimentResult.model_validate_json(damaged_path.read_text()).cycle == 1
    assert (study_dir / "001_pytorch-bs1_c1" / "result.json").read_bytes() == intact
    (note,) = [e.note for e in events if isinstance(e, ResumeNote)]
    assert "002_pytorch-bs2_c1: result.json is not valid JSON" in str(note)
    assert f"kept as 002_pytorch-bs2_c1/{kept.name}" in str(note)
    assert summary.counts == {"completed": 2}


def test_a_result_of_a_newer_schema_refuses_the_resume_and_changes_nothing(tmp_path):
    study = write_study(tmp_path, "[1, 2]")
    _, study_dir = run_study(study, FakeHarness(), output=tmp_path / "out", no_gaps=True)
    result = study_dir / "002_pytorch-bs2_c1" / "result.json"
    result.write_text(result.read_text().replace('"schema_version":"1"',
                                                 '"schema_version":"7"'))
    before = {p: p.read_bytes() for p in study_dir.rglob("*") if p.is_file()}
    with pytest.raises(ConfigError, match=r"result.json has schema version 7; this llem "
                                          r"reads version 1"), \
            open_study_dir(load_study(study), "fake", resume_dir=study_dir):
        pass
    assert {p: p.read_bytes() for p in study_dir.rglob("*") if p.is_file()} == before


def test_resume_refuses_a_directory_that_is_not_a_study(tmp_path):
    with pytest.raises(ConfigError, match="holds no manifest.json"), \
            open_study_dir(load_study(write_study(tmp_path)), "fake", resume_dir=tmp_path):
        pass
    assert not (tmp_path / ".llem.lock").exists()


@pytest.mark.parametrize(("name", "reader"), [
    ("summary.json", StudySummary.load), ("stats.json", StudyStats.load),
    ("manifest.json", Manifest.load)])
def test_every_study_file_reader_translates_a_damaged_file(tmp_path, name, reader):
    (tmp_path / name).write_text('{"schema_version": "1", "study": ')
    with pytest.raises(UnreadableFileError, match=f"{name} is not valid JSON"):
        reader(tmp_path)


def test_summary_and_stats_round_trip_through_their_models(tmp_path):
    study = write_study(tmp_path, "[1]", cycles=3)
    summary, study_dir = run_study(study, FakeHarness(), output=tmp_path / "out", no_gaps=True)
    assert StudySummary.load(study_dir) == summary
    stats = StudyStats.load(study_dir)
    assert stats.configurations[0].metrics["energy_j"].n == 3
    assert stats.configurations[0].metrics["energy_j"].unit == "J"


def cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("│┃").split("│" if "│" in line else "┃")]


def test_results_parquet_stats_json_and_the_cli_table_carry_the_same_metrics(tmp_path):
    # Before: three lists (tables.HEADLINE, stats.METRICS, the CLI's columns) that had drifted
    # apart (p99 latency in stats only, prefill energy in the table only).
    import pyarrow.parquet as pq

    from harness.schema.headline import HEADLINE_METRICS, TERMINAL_METRICS
    from orchestrator import cli

    summary, study_dir = run_study(write_study(tmp_path, "[1, 2]"), FakeHarness(),
                                   output=tmp_path / "out", no_gaps=True)
    names = [metric.name for metric in HEADLINE_METRICS]
    table = pq.read_table(study_dir / "results.parquet")
    assert [c for c in table.column_names if c in names] == names
    assert [c for c in table.column_names if c not in names
            and not c.startswith(("config.", "environment."))] == [
        "run_id", "cycle", "config_hash", "runner", "environment_id", "energy_method",
        "phase_split_method", "sanity_passed", "warnings"]
    for metric in HEADLINE_METRICS:
        field = table.schema.field(metric.name)
        assert field.metadata[b"unit"].decode() == metric.unit
    stats = StudyStats.load(study_dir)
    assert all(list(config.metrics) == names for config in stats.configurations)

    with cli.out.capture() as captured:
        cli._print_summary(summary, study_dir, as_json=False)
    lines = captured.get().splitlines()
    header = cells(next(line for line in lines if "status" in line))
    assert header[2:2 + len(TERMINAL_METRICS)] == [m.column for m in TERMINAL_METRICS]
    rows = table.to_pylist()
    for row in rows:
        shown = dict(zip(header, cells(next(line for line in lines if row["run_id"] in line)),
                         strict=False))
        for metric in TERMINAL_METRICS:
            assert shown[metric.column] == format(row[metric.name], metric.spec)


def test_a_second_invalid_result_in_the_same_second_does_not_replace_the_first(tmp_path,
                                                                              monkeypatch):
    import orchestrator.study_dir

    monkeypatch.setattr(orchestrator.study_dir, "utc_stamp", lambda: "20260101T000000Z")
    study = write_study(tmp_path, "[1]")
    _, study_dir = run_study(study, FakeHarness(), output=tmp_path / "out", no_gaps=True)
    result = study_dir / "001_pytorch-bs1_c1" / "result.json"
    for damage in (b"{", b"[]"):
        result.write_bytes(damage)
        run_study(study, FakeHarness(), lambda event: None, resume=study_dir, no_gaps=True)
    kept = {p.name: p.read_bytes() for p in result.parent.glob("result.json.invalid-*")}
    assert kept == {"result.json.invalid-20260101T000000Z": b"{",
                    "result.json.invalid-20260101T000000Z_1": b"[]"}


def test_tables_of_results_set_aside_do_not_outlive_them(tmp_path):
    # The only completed run's result is damaged; resume moves it aside and the new attempt
    # fails. results.parquet and stats.json must not go on showing the figures of a result
    # the study no longer counts (summary.json says no table).
    import pyarrow.parquet as pq

    study = write_study(tmp_path, "[1]")
    _, study_dir = run_study(study, FakeHarness(), output=tmp_path / "out", no_gaps=True)
    assert (study_dir / "results.parquet").is_file()
    damaged_path = study_dir / "001_pytorch-bs1_c1" / "result.json"
    damaged_path.write_bytes(damaged_path.read_bytes()[:120])

    with pytest.warns(UserWarning, match="result.json is not valid JSON"):
        summary, _ = run_study(study, FakeHarness(fail=("001_pytorch-bs1_c1",)),
                               resume=study_dir, no_gaps=True)

    assert summary.counts == {"failed": 1} and summary.results_table is None
    completed = [] if not (study_dir / "results.parquet").exists() else (
        pq.read_table(study_dir / "results.parquet").column("run_id").to_pylist())
    assert completed == [], "results.parquet still lists runs that are not completed"
    assert not (study_dir / "stats.json").exists() or \
        StudyStats.load(study_dir).configurations == []


class StoppedNow(Runner):
    """Plays the second Ctrl-C: the CLI's handler raises KeyboardInterrupt inside the wait,
    after the first one asked the run to stop; the runner kills the harness and re-raises."""

    name = "stopped-now"

    def run(self, run_dir, timeout_s, on_event, gpus=None):
        self.request_stop()
        raise KeyboardInterrupt


def test_a_second_ctrl_c_records_the_run_interrupted_and_writes_the_summary(tmp_path):
    study = write_study(tmp_path, "[1, 2]")
    output = tmp_path / "out"
    with contextlib.suppress(KeyboardInterrupt):
        run_study(study, StoppedNow(), output=output, no_gaps=True)
    (study_dir,) = output.iterdir()
    statuses = {run.run_id: run.status for run in Manifest.load(study_dir).runs}
    assert statuses == {"001_pytorch-bs1_c1": "interrupted", "002_pytorch-bs2_c1": "pending"}
    summary = StudySummary.load(study_dir)
    assert summary.interrupted and summary.counts == {"interrupted": 1, "pending": 1}


class OddEvent(FakeHarness):
    """A harness of another version: its progress event has another shape."""

    def run(self, run_dir, timeout_s, on_event, gpus=None):
        from harness.schema.events import parse_run_event

        on_event(parse_run_event(b'{"event": "progress", "done": 3, "of": 4}'))
        return super().run(run_dir, timeout_s, on_event, gpus)


def test_an_event_of_a_known_kind_but_another_shape_reaches_the_caller_as_unknown(tmp_path):
    # parse_run_event keeps such a line as an UnknownEvent; nesting it in a study event must
    # not fail (it used to raise inside the runner's wait, which then killed the harness).
    events: list[object] = []
    summary, _ = run_study(write_study(tmp_path, "[1]"), OddEvent(), events.append,
                           output=tmp_path / "out", no_gaps=True)
    assert summary.counts == {"completed": 1}
    (odd,) = [e.event for e in events if type(e).__name__ == "RunEventReceived"]
    assert odd.event == "progress" and type(odd).__name__ == "UnknownEvent"


def test_a_failing_event_callback_does_not_cost_the_run(tmp_path):
    # The harness shields its runs from the in-process callback's bugs; the host must too: the
    # run's wait calls the callback, and an exception there used to kill the harness.
    class Emitting(FakeHarness):
        def run(self, run_dir, timeout_s, on_event, gpus=None):
            from harness.schema.events import PhaseEvent

            on_event(PhaseEvent(phase="measure"))
            return super().run(run_dir, timeout_s, on_event, gpus)

    def buggy(event: object) -> None:
        raise RuntimeError("a bug in the caller's display")

    summary, study_dir = run_study(write_study(tmp_path, "[1]"), Emitting(), buggy,
                                   output=tmp_path / "out", no_gaps=True)
    assert summary.counts == {"completed": 1}
    assert (study_dir / "results.parquet").is_file()


def test_a_sweep_over_values_of_mixed_types_still_gets_its_tables(tmp_path):
    # passthrough_kwargs are free-form: one run's value may be a number, another's a word.
    # results.parquet must still be written (and the summary with it), each value as its JSON
    # text (a word quoted, so that it cannot be taken for a number or a list).
    import pyarrow.parquet as pq

    path = tmp_path / "s.yaml"
    path.write_text("name: sd\nmodel: m\nbackend: pytorch\nexecution: {n_cycles: 1, "
                    "config_gap_s: 0, cycle_gap_s: 0}\n"
                    "pytorch: {batch_size: 1}\n"
                    "sweep:\n  passthrough_kwargs.cache_implementation: [4, static]\n")
    summary, study_dir = run_study(path, FakeHarness(), output=tmp_path / "out", no_gaps=True)
    assert summary.counts == {"completed": 2} and summary.results_table == "results.parquet"
    table = pq.read_table(study_dir / "results.parquet")
    assert table.num_rows == 2
    assert table.column("config.passthrough_kwargs.cache_implementation").to_pylist() == [
        "4", '"static"']
    assert StudySummary.load(study_dir).counts == {"completed": 2}


def test_a_result_written_after_the_orchestrator_died_is_kept_when_its_run_is_redone(tmp_path):
    # The orchestrator was killed during run 001 (the manifest says running); its container
    # went on and wrote a valid result.json. Resume runs 001 again, as the spec says, but the
    # measurement that was made must not be deleted on the way.
    study = write_study(tmp_path, "[1]")
    _, study_dir = run_study(study, FakeHarness(), output=tmp_path / "out", no_gaps=True)
    manifest = Manifest.load(study_dir)
    manifest.runs[0].status, manifest.runs[0].result_path = "running", None
    (study_dir / "manifest.json").write_text(manifest.model_dump_json())
    orphan_result = (study_dir / "001_pytorch-bs1_c1" / "result.json").read_bytes()

    summary, _ = run_study(study, FakeHarness(), resume=study_dir, no_gaps=True)

    assert summary.counts == {"completed": 1}
    kept = [p.read_bytes() for p in (study_dir / "001_pytorch-bs1_c1").iterdir()
            if p.name.startswith("result.json.")]
    assert kept == [orphan_result], "the unrecorded measurement was deleted"


def with_one_field_more(path: Path) -> bytes:
    """Rewrite a result.json as a newer harness would: valid JSON, one field this llem lacks."""
    import json

    data = json.loads(path.read_text())
    data["energy"]["energy_per_image_j"] = 12.5
    path.write_text(json.dumps(data))
    return path.read_bytes()


def test_resume_moves_a_result_with_one_field_more_aside_and_says_so(tmp_path):
    study = write_study(tmp_path, "[1, 2]")
    _, study_dir = run_study(study, FakeHarness(), output=tmp_path / "out", no_gaps=True)
    newer_path = study_dir / "002_pytorch-bs2_c1" / "result.json"
    newer = with_one_field_more(newer_path)

    events: list[object] = []
    summary, _ = run_study(study, FakeHarness(), events.append, resume=study_dir, no_gaps=True)

    (kept,) = newer_path.parent.glob("result.json.invalid-*")
    assert kept.read_bytes() == newer, "the measurement was not kept byte for byte"
    (note,) = [e.note for e in events if isinstance(e, ResumeNote)]
    assert "002_pytorch-bs2_c1: result.json does not match schema version 1" in note
    assert "energy_per_image_j" in note and f"kept as 002_pytorch-bs2_c1/{kept.name}" in note
    assert summary.counts == {"completed": 2}


class NewerHarness(FakeHarness):
    """Exits 0 with a result.json of one field more (a newer harness in an older image)."""

    def run(self, run_dir, timeout_s, on_event, gpus=None):
        outcome = super().run(run_dir, timeout_s, on_event, gpus)
        with_one_field_more(run_dir / "result.json")
        return outcome


def test_a_result_that_failed_validation_when_written_is_kept_when_its_run_is_redone(tmp_path):
    study = write_study(tmp_path, "[1]")
    summary, study_dir = run_study(study, NewerHarness(), output=tmp_path / "out", no_gaps=True)
    (failure,) = summary.failures
    assert failure.cause == "invalid_result" and "energy_per_image_j" in failure.message
    newer = (study_dir / "001_pytorch-bs1_c1" / "result.json").read_bytes()

    summary, _ = run_study(study, FakeHarness(), resume=study_dir, no_gaps=True)

    assert summary.counts == {"completed": 1}
    kept = [p.read_bytes() for p in (study_dir / "001_pytorch-bs1_c1").iterdir()
            if p.name.startswith("result.json.")]
    assert kept == [newer], "the redone run deleted the measurement its first attempt made"


def test_no_resume_or_retry_ever_loses_a_result_file(tmp_path):
    # Every result.json a harness wrote, valid or not, recorded or not, is still somewhere in
    # its run directory after any number of resumes (content-addressed: nothing overwritten).
    import hashlib

    study = write_study(tmp_path, "[1, 2]", cycles=2)
    written: set[str] = set()

    def digests(study_dir: Path) -> set[str]:
        return {hashlib.sha256(p.read_bytes()).hexdigest()
                for p in study_dir.rglob("result.json*")}

    _, study_dir = run_study(study, NewerHarness(), output=tmp_path / "out", no_gaps=True)
    written |= digests(study_dir)
    for runner in (FakeHarness(fail=("002_pytorch-bs2_c1",)), NewerHarness(), FakeHarness()):
        # A newer harness's result where run 001's was: replaced by this test, not by llem.
        first = study_dir / "001_pytorch-bs1_c1" / "result.json"
        written.discard(hashlib.sha256(first.read_bytes()).hexdigest())
        with_one_field_more(first)
        written |= digests(study_dir)
        run_study(study, runner, lambda event: None, resume=study_dir, no_gaps=True)
        assert written <= digests(study_dir), "a result file was deleted or overwritten"
        written |= digests(study_dir)
    assert Manifest.load(study_dir).counts() == {"completed": 4}


def test_the_files_of_an_attempt_whose_result_is_kept_aside_are_kept_with_it(tmp_path):
    # The time series and the log are part of the measurement: a result kept aside without
    # them could not be checked any more.
    study = write_study(tmp_path, "[1, 2]")
    _, study_dir = run_study(study, FakeHarness(), output=tmp_path / "out", no_gaps=True)
    first, second = study_dir / "001_pytorch-bs1_c1", study_dir / "002_pytorch-bs2_c1"
    for run_dir in (first, second):
        (run_dir / "timeseries.parquet").write_bytes(b"samples of " + run_dir.name.encode())
    with_one_field_more(first / "result.json")  # set aside by resume
    manifest = Manifest.load(study_dir)  # an orchestrator killed after its harness finished
    manifest.runs[1].status, manifest.runs[1].result_path = "running", None
    (study_dir / "manifest.json").write_text(manifest.model_dump_json())

    run_study(study, FakeHarness(), lambda event: None, resume=study_dir, no_gaps=True)

    for run_dir, mark in ((first, "invalid"), (second, "unrecorded")):
        (kept,) = run_dir.glob(f"result.json.{mark}-*")
        stamp = kept.name.removeprefix("result.json")
        series = run_dir / f"timeseries.parquet{stamp}"
        assert series.is_file(), f"{run_dir.name}: the time series of the kept result is gone"
        assert series.read_bytes() == b"samples of " + run_dir.name.encode()
        assert (run_dir / f"experiment.json{stamp}").is_file()


def test_the_gpu_selection_is_recorded_in_the_manifest_and_the_summary(tmp_path):
    study = write_study(tmp_path, "[1]")
    study.write_text(study.read_text().replace("n_cycles: 1,", "n_cycles: 1, gpus: [1, 0],"))
    summary, study_dir = run_study(study, FakeHarness(), output=tmp_path / "out", no_gaps=True)
    assert Manifest.load(study_dir).gpus == [1, 0]
    assert summary.protocol.gpus == StudySummary.load(study_dir).protocol.gpus == [1, 0]

    unset, unset_dir = run_study(write_study(tmp_path, "[1]"), FakeHarness(),
                                 output=tmp_path / "out2", no_gaps=True)
    assert Manifest.load(unset_dir).gpus is None and unset.protocol.gpus is None


def test_a_library_top_up_beyond_the_run_limit_is_refused_before_anything_is_written(tmp_path):
    study = write_study(tmp_path, "[1, 2]")
    _, study_dir = run_study(study, FakeHarness(), output=tmp_path / "out", no_gaps=True)
    before = {p: p.read_bytes() for p in study_dir.rglob("*") if p.is_file()}
    with pytest.raises(ConfigError, match=r"cycles=50001: .* the limit is 100,000"):
        run_study(study, FakeHarness(), resume=study_dir, cycles=50001, no_gaps=True)
    assert {p: p.read_bytes() for p in study_dir.rglob("*") if p.is_file()} == before


def write_chain(root: Path) -> Path:
    """A study on a chain of bases: up a folder, two files named base.yaml, one absolute path."""
    (root / "studies" / "exp").mkdir(parents=True)
    (root / "studies" / "shared" / "more").mkdir(parents=True)
    (root / "elsewhere").mkdir()
    deepest = root / "elsewhere" / "base.yaml"
    deepest.write_bytes(b"model: m\r\nbackend: pytorch\r\n")
    (root / "studies" / "shared" / "more" / "base.yaml").write_text(
        f"base: {deepest}\nexecution: {{config_gap_s: 0, cycle_gap_s: 0}}\n")
    (root / "studies" / "shared" / "base.yaml").write_text(
        "base: more/base.yaml\nsweep:\n  pytorch.batch_size: [1, 2]\n")
    study = root / "studies" / "exp" / "s.yaml"
    study.write_text("name: chained\nbase: ../shared/base.yaml\nexecution: {n_cycles: 1}\n")
    return study


def test_a_study_built_on_bases_loads_from_its_folder_alone(tmp_path):
    from orchestrator.study_dir import load_kept_study

    study = write_chain(tmp_path)
    originals = [study, tmp_path / "studies" / "shared" / "base.yaml",
                 tmp_path / "studies" / "shared" / "more" / "base.yaml",
                 tmp_path / "elsewhere" / "base.yaml"]
    contents = [path.read_bytes() for path in originals]
    _, study_dir = run_study(study, FakeHarness(), output=tmp_path / "out", no_gaps=True)
    for path in originals:
        path.rename(path.with_name(path.name + ".moved"))

    kept = load_kept_study(study_dir)

    assert kept.design_hash == Manifest.load(study_dir).design_hash
    assert kept.name == "chained" and len(kept.experiments) == 2
    (invocation,) = Manifest.load(study_dir).invocations
    assert [(study_dir / f.path).read_bytes() for f in invocation.files] == contents
    assert [f.origin for f in invocation.files] == [str(p.resolve()) for p in originals]
    assert [f.base for f in invocation.files] == [
        "../shared/base.yaml", "more/base.yaml", str(originals[-1]), None]
    assert invocation.files[0].path == "study.yaml"
    assert len({f.path for f in invocation.files}) == 4  # three files named base.yaml kept apart
    summary, _ = run_study(kept, FakeHarness(), resume=study_dir, cycles=2, no_gaps=True)
    assert summary.counts == {"completed": 4}


def test_the_study_file_is_kept_byte_for_byte(tmp_path):
    # Before: read as text, so Windows line ends (and a lone CR) came back as LF.
    path = tmp_path / "s.yaml"
    data = ("\ufeffname: bytes\r\nmodel: m\r\nbackend: pytorch\r\n# café\r"
            "pytorch: {batch_size: 1}\n"
            "execution: {n_cycles: 1, config_gap_s: 0, cycle_gap_s: 0}").encode()
    path.write_bytes(data)
    _, study_dir = run_study(path, FakeHarness(), output=tmp_path / "out", no_gaps=True)
    assert (study_dir / "study.yaml").read_bytes() == data


def test_summary_and_manifest_describe_every_invocation(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("name: first\nmodel: m\nbackend: pytorch\nexecution: {n_cycles: 1, "
                    "cycle_order: interleaved, config_gap_s: 0, cycle_gap_s: 3, timeout_s: 900}"
                    "\nsweep:\n  pytorch.batch_size: [1]\n")
    _, study_dir = run_study(path, FakeHarness(), output=tmp_path / "out")
    edited = tmp_path / "edited.yaml"  # the same design, renamed and run another way
    edited.write_text(path.read_text().replace("name: first", "name: second")
                      .replace("timeout_s: 900", "timeout_s: 60"))
    loaded = load_study(edited)
    loaded = dataclasses.replace(loaded, execution=loaded.execution.model_copy(
        update={"n_cycles": 2, "cycle_order": "sequential"}))

    summary, _ = run_study(loaded, FakeHarness(), resume=study_dir, cycles=2, no_gaps=True)

    manifest = Manifest.load(study_dir)
    assert summary.invocations == manifest.invocations == StudySummary.load(study_dir).invocations
    first, second = summary.invocations
    assert summary.study == "first"  # the study directory's name; each invocation has its own
    assert (first.study, first.resumed, first.runner, first.no_gaps) == (
        "first", False, "fake", False)
    assert (first.n_cycles, first.cycle_order, first.config_gap_s, first.cycle_gap_s,
            first.timeout_s) == (1, "interleaved", 0.0, 3.0, 900.0)
    assert (second.study, second.resumed, second.no_gaps) == ("second", True, True)
    assert (second.n_cycles, second.cycle_order, second.config_gap_s, second.cycle_gap_s,
            second.timeout_s) == (2, "sequential", 0.0, 0.0, 60.0)
    assert manifest.executed[first.first_executed:second.first_executed] == [
        "001_pytorch-bs1_c1"]
    assert manifest.executed[second.first_executed:] == ["001_pytorch-bs1_c2"]
    assert first.finished_at is not None and second.finished_at is not None
    # the edited file is kept too, next to the study file it did not replace
    assert first.files[0].path == "study.yaml"
    assert (study_dir / "study.yaml").read_bytes() == path.read_bytes()
    assert (study_dir / second.files[0].path).read_bytes() == edited.read_bytes()
    # resuming with the very same file keeps no second copy of it
    run_study(load_study(path), FakeHarness(), resume=study_dir, no_gaps=True)
    assert Manifest.load(study_dir).invocations[-1].files == first.files


def test_a_kept_file_gone_missing_is_bad_input_naming_it(tmp_path):
    from orchestrator.study_dir import load_kept_study

    _, study_dir = run_study(write_chain(tmp_path), FakeHarness(), output=tmp_path / "out",
                             no_gaps=True)
    missing = Manifest.load(study_dir).invocations[0].files[2].path
    (study_dir / missing).unlink()
    with pytest.raises(ConfigError, match=f"holds no {missing}") as caught:
        load_kept_study(study_dir)
    assert "llem run FILE --resume DIR" in str(caught.value.fix)


def test_a_run_folder_that_links_out_of_the_study_is_not_emptied_and_that_run_fails(tmp_path):
    # A plain run id, but its folder is a symbolic link to a folder of another study.
    path = write_study(tmp_path, "[1, 2]")
    _, study_dir = run_study(path, FakeHarness(fail=("001_pytorch-bs1_c1",)),
                             output=tmp_path / "out", no_gaps=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "stats.json").write_text("precious")
    run_dir = study_dir / "001_pytorch-bs1_c1"
    for child in run_dir.iterdir():
        child.unlink()
    run_dir.rmdir()
    run_dir.symlink_to(elsewhere)

    summary, _ = run_study(path, FakeHarness(), resume=study_dir, no_gaps=True)
    assert (elsewhere / "stats.json").read_text() == "precious"
    assert [p.name for p in elsewhere.iterdir()] == ["stats.json"]
    (entry, other) = Manifest.load(study_dir).runs
    assert entry.status == "failed" and entry.failure is not None
    assert entry.failure.cause == "runner_error"
    assert "is not a folder of its own" in entry.failure.message
    assert other.status == "completed" and summary.counts == {"completed": 1, "failed": 1}


def test_a_design_refusal_never_shows_two_equal_design_hashes_as_a_difference(tmp_path):
    # The manifest records the design hash of the study file, but one run's configuration
    # hash was edited: the configurations differ, their design hashes do not.
    import json

    path = write_study(tmp_path, "[1, 2]")
    _, study_dir = run_study(path, FakeHarness(), output=tmp_path / "out", no_gaps=True)
    manifest = json.loads((study_dir / "manifest.json").read_text())
    manifest["runs"][1]["config_hash"] = "0123456789abcdef"
    (study_dir / "manifest.json").write_text(json.dumps(manifest))
    assert manifest["design_hash"] == load_study(path).design_hash
    with pytest.raises(ConfigError) as refused:
        run_study(path, FakeHarness(), resume=study_dir, no_gaps=True)
    bs2 = load_study(path).experiments[1].config.measurement_config_hash
    assert refused.value.message == (
        f"the study file's design differs from the study in {study_dir}: 1 configuration(s) "
        f"added (pytorch-bs2 [{bs2}]), 1 removed or changed (pytorch-bs2 [0123456789abcdef])")
    assert "older llem" not in str(refused.value)


def test_the_manifest_order_and_gpus_follow_the_latest_invocation(tmp_path):
    from orchestrator.study_dir import load_kept_study

    study = load_study(write_study(tmp_path, "[1, 2]"))  # the file says interleaved
    _, study_dir = run_study(study, FakeHarness(), output=tmp_path / "out", no_gaps=True)
    resumed = dataclasses.replace(study, execution=study.execution.model_copy(
        update={"cycle_order": "sequential", "gpus": [1]}))
    with pytest.warns(UserWarning, match=r"cycle order sequential this time \(before: "
                      r"interleaved\)"):
        run_study(resumed, FakeHarness(), resume=study_dir, cycles=2, no_gaps=True)

    manifest = Manifest.load(study_dir)
    assert (manifest.cycle_order, manifest.gpus) == ("sequential", [1])
    assert [(i.cycle_order, i.gpus) for i in manifest.invocations] == [
        ("interleaved", None), ("sequential", [1])]
    assert {run.cycle: run.gpus for run in manifest.runs} == {1: None, 2: [1]}
    kept = load_kept_study(study_dir)  # goes on as it last ran, not as the file says
    assert (kept.execution.cycle_order, kept.execution.gpus) == ("sequential", [1])


def test_resumes_from_the_folder_alone_read_relative_paths_beside_the_original_each_time(
        tmp_path, monkeypatch):
    # A bare resume loads the latest invocation's copies; the invocation it records names the
    # originals' places, not the copies', so the next bare resume reads ./p.jsonl as the first.
    from orchestrator.study_dir import load_kept_study

    (tmp_path / "p.jsonl").write_text('{"prompt": "hello"}\n')
    path = tmp_path / "s.yaml"
    path.write_text("name: s\nmodel: m\nbackend: pytorch\ndataset: ./p.jsonl\n"
                    "pytorch: {batch_size: 1}\n"
                    "execution: {n_cycles: 1, config_gap_s: 0, cycle_gap_s: 0}\n")
    _, study_dir = run_study(path, FakeHarness(), output=tmp_path / "out", no_gaps=True)
    monkeypatch.chdir(study_dir)
    for cycles in (2, 3):
        summary, _ = run_study(load_kept_study(study_dir), FakeHarness(), resume=study_dir,
                               cycles=cycles, no_gaps=True)
        assert summary.counts.get("completed") == cycles
    manifest = Manifest.load(study_dir)
    assert [[file.origin for file in i.files] for i in manifest.invocations] == \
        [[str(path)]] * 3
