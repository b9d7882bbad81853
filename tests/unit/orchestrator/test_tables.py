"""results.parquet: typed columns, the same whatever the values, the run order or what completed."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from llem_testkit.results import fake_result
from llem_testkit.studies import write

from harness.schema.config import ExperimentConfig
from harness.schema.result import ExperimentResult
from harness.schema.run_spec import RunSpec
from orchestrator import run_study
from orchestrator.manifest import Manifest
from orchestrator.runners.base import Runner, RunOutcome
from orchestrator.schedule import plan
from orchestrator.stats import StudyStats
from orchestrator.study import Study, load_study
from orchestrator.summary import StudySummary
from orchestrator.tables import write_results_table

EOS = "config.passthrough_kwargs.eos_token_id"
BIG = 2**70
"""An integer Arrow cannot hold as int64 (it used to make pyarrow raise)."""


def sweep_study(tmp_path: Path, sweep: str, backend: str = "pytorch") -> Study:
    return load_study(write(tmp_path, f"name: t\nmodel: m\nbackend: {backend}\n"
                            "execution: {n_cycles: 1, config_gap_s: 0, cycle_gap_s: 0}\n"
                            f"sweep:\n{sweep}"))


def results_of(study: Study) -> list[ExperimentResult]:
    return [fake_result(RunSpec(run_id=run.run_id, cycle=run.cycle, runner="fake",
                                config=run.entry.config), 100.0) for run in plan(study)]


def table(tmp_path: Path, results: list[ExperimentResult],
          configs: list[ExperimentConfig] | None = None) -> pa.Table:
    path = tmp_path / "results.parquet"
    write_results_table(path, results, configs or [])
    return pq.read_table(path)


def test_lists_of_one_type_are_list_columns(tmp_path):
    study = sweep_study(tmp_path, "  passthrough_kwargs.stop: [[a, b], [c]]\n"
                        "  passthrough_kwargs.eos_token_id: [[2, 3], [4]]\n")
    written = table(tmp_path, results_of(study))
    assert written.schema.field("config.passthrough_kwargs.stop").type == pa.list_(pa.string())
    assert written.schema.field(EOS).type == pa.list_(pa.int64())
    assert sorted(map(tuple, written.column(EOS).to_pylist())) == [(2, 3), (2, 3), (4,), (4,)]
    assert sorted(map(tuple, written.column("config.passthrough_kwargs.stop").to_pylist())) == [
        ("a", "b"), ("a", "b"), ("c",), ("c",)]


def test_a_column_mixing_scalars_and_lists_holds_every_value_as_its_json_text(tmp_path):
    study = sweep_study(tmp_path, f"  passthrough_kwargs.eos_token_id: [2, [2, 3], '[2, 3]', "
                        f"{BIG}]\n")
    written = table(tmp_path, results_of(study))
    assert written.schema.field(EOS).type == pa.string()
    assert written.schema.field(EOS).metadata == {b"encoding": b"json"}
    values = written.column(EOS).to_pylist()
    assert values == ["2", "[2, 3]", '"[2, 3]"', str(BIG)]
    assert [json.loads(value) for value in values] == [2, [2, 3], "[2, 3]", BIG]


def test_no_column_has_arrow_null_type_all_null_columns_have_their_schema_type(tmp_path):
    study = sweep_study(tmp_path, "  pytorch.batch_size: [1]\n")
    schema = table(tmp_path, results_of(study)).schema
    assert [field.name for field in schema if field.type == pa.null()] == []
    assert schema.field("config.revision").type == pa.string()
    assert schema.field("config.decoder.temperature").type == pa.float64()
    assert schema.field("config.vllm.max_num_seqs").type == pa.int64()
    assert schema.field("config.vllm.enforce_eager").type == pa.bool_()
    assert schema.field("config.tensorrt.quantization").type == pa.string()
    assert schema.field("config.lora.adapter").type == pa.string()
    assert schema.field("latency_ttft_p50_s").type == pa.float64()
    assert schema.field("generated_positions").type == pa.int64()
    assert schema.field("sanity_passed").type == pa.bool_()
    assert schema.field("energy_method").type == pa.string()


def test_column_names_and_types_do_not_depend_on_run_order_or_on_which_runs_completed(tmp_path):
    study = sweep_study(tmp_path, "  passthrough_kwargs.eos_token_id: [2, [2, 3]]\n"
                        "  passthrough_kwargs.temperature_scale: [1, 1.5]\n")
    configs = [entry.config for entry in study.experiments]
    results = results_of(study)
    full = table(tmp_path, results, configs).schema
    for subset in (results[::-1], results[:1], results[-1:], results[1:3]):
        assert table(tmp_path, subset, configs).schema == full
    assert full.field(EOS).type == pa.string()
    assert full.field("config.passthrough_kwargs.temperature_scale").type == pa.float64()


class FakeHarness(Runner):
    """Writes a valid result.json for every run."""

    name = "fake"

    def run(self, run_dir, timeout_s, on_event, gpus=None):
        spec = RunSpec.model_validate_json((run_dir / "experiment.json").read_text())
        (run_dir / "result.json").write_text(fake_result(spec, 100.0).model_dump_json())
        return RunOutcome(end="ok", exit_code=0)


def test_a_sweep_of_values_arrow_cannot_type_still_writes_every_output_and_resumes(tmp_path):
    path = write(tmp_path, "name: t\nmodel: m\nbackend: pytorch\n"
                 "execution: {n_cycles: 1, config_gap_s: 0, cycle_gap_s: 0}\n"
                 "sweep:\n  passthrough_kwargs.eos_token_id: [2, [2, 3]]\n"
                 f"  passthrough_kwargs.vocab_offset: [{BIG}]\n")
    summary, study_dir = run_study(path, FakeHarness(), output=tmp_path / "out", no_gaps=True)
    assert summary.counts == {"completed": 2} and summary.results_table == "results.parquet"
    assert len(StudyStats.load(study_dir).configurations) == 2
    first = pq.read_table(study_dir / "results.parquet")

    summary, _ = run_study(path, FakeHarness(), resume=study_dir, cycles=2, no_gaps=True)

    assert StudySummary.load(study_dir).counts == summary.counts == {"completed": 4}
    again = pq.read_table(study_dir / "results.parquet")
    assert again.num_rows == 4 and again.schema == first.schema
    assert len(Manifest.load(study_dir).runs) == 4


class FailsTheList(FakeHarness):
    """Fails the run whose eos_token_id is a list."""

    def run(self, run_dir, timeout_s, on_event, gpus=None):
        spec = RunSpec.model_validate_json((run_dir / "experiment.json").read_text())
        if isinstance(spec.config.passthrough_kwargs.get("eos_token_id"), list):
            return RunOutcome(end="error", exit_code=1, message="failed on purpose")
        return super().run(run_dir, timeout_s, on_event, gpus)


def test_a_study_types_its_free_form_columns_by_every_configuration_not_the_completed(tmp_path):
    path = write(tmp_path, "name: t\nmodel: m\nbackend: pytorch\n"
                 "execution: {n_cycles: 1, config_gap_s: 0, cycle_gap_s: 0}\n"
                 "sweep:\n  passthrough_kwargs.eos_token_id: [2, [2, 3]]\n")
    summary, study_dir = run_study(path, FailsTheList(), output=tmp_path / "out", no_gaps=True)
    assert summary.counts == {"completed": 1, "failed": 1}
    written = pq.read_table(study_dir / "results.parquet")
    assert written.schema.field(EOS).type == pa.string()  # not int64: [2, 3] is in the study
    assert written.column(EOS).to_pylist() == ["2"]


def with_environment(result: ExperimentResult, **changes) -> ExperimentResult:
    environment = result.environment.model_copy(update=changes)
    return result.model_copy(update={"environment": environment})


def test_each_row_carries_its_runs_environment_in_typed_columns(tmp_path):
    from harness.schema.result import GpuInfo
    from orchestrator.run_environment import RunEnvironment

    first, second = results_of(sweep_study(tmp_path, "  pytorch.batch_size: [1, 2]\n"))
    gpu = GpuInfo(index=0, name="H100", uuid="GPU-1", memory_total_mb=80000.0)
    first = with_environment(first, backend_versions={"torch": "2.4.0"}, cudnn_version="9.1",
                             driver_version="550.54", gpus=[gpu], container_image_id="sha256:abc")
    written = table(tmp_path, [first, second])
    types = {field.name: field.type for field in written.schema}
    assert types["environment_id"] == pa.string()
    for name in ("runner", "image_id", "image_digest", "harness_version", "python",
                 "driver_version"):
        assert types[f"environment.{name}"] == pa.string(), name  # null in every row or not
    assert types["environment.gpu_models"] == pa.list_(pa.string())
    assert types["environment.backend_versions"] == pa.map_(pa.string(), pa.string())
    rows = written.to_pylist()
    assert [row["environment_id"] for row in rows] == [
        RunEnvironment.of(first).short_id(), RunEnvironment.of(second).short_id()]
    assert rows[0]["environment.gpu_models"] == ["H100"]
    assert dict(rows[0]["environment.backend_versions"]) == {"cudnn": "9.1", "torch": "2.4.0"}
    assert rows[0]["environment.image_id"] == "sha256:abc"
    assert (rows[1]["environment.gpu_models"], rows[1]["environment.image_id"]) == ([], None)


def test_rows_of_one_environment_id_are_the_runs_stats_json_pools(tmp_path):
    study = sweep_study(tmp_path, "  pytorch.batch_size: [1]\n")
    (result,) = results_of(study)
    others = [result.model_copy(update={"cycle": 2}),
              with_environment(result.model_copy(update={"cycle": 3}), python="3.12.1")]
    rows = table(tmp_path, [result, *others]).to_pylist()
    assert [row["environment_id"] for row in rows][:2] == [rows[0]["environment_id"]] * 2
    assert rows[2]["environment_id"] != rows[0]["environment_id"]


def test_csv_export_writes_list_and_map_columns_as_json_text(tmp_path):
    import csv

    from orchestrator.tables import export_csv

    study = sweep_study(tmp_path, "  passthrough_kwargs.stop: [[a, b]]\n")
    (result,) = results_of(study)
    result = with_environment(result, backend_versions={"torch": "2.4.0"})
    empty = with_environment(result, backend_versions={})
    write_results_table(tmp_path / "results.parquet", [result, empty])
    row, other = csv.DictReader(export_csv(tmp_path).open())
    assert json.loads(row["config.passthrough_kwargs.stop"]) == ["a", "b"]
    assert json.loads(row["environment.backend_versions"]) == {"torch": "2.4.0"}
    assert json.loads(other["environment.backend_versions"]) == {}
    assert json.loads(row["environment.gpu_models"]) == []
