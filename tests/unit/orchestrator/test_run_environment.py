"""A study never pools what differs: each run's environment is recorded, and statistics group
only runs of one configuration whose measurement-relevant environment matches."""

from __future__ import annotations

import json
from pathlib import Path

from llem_testkit.results import fake_result

from harness.schema.result import Environment, ExperimentResult, GpuInfo
from harness.schema.run_spec import RunSpec
from orchestrator import run_study
from orchestrator.manifest import Manifest
from orchestrator.run_environment import RunEnvironment
from orchestrator.runners.base import Runner, RunOutcome
from orchestrator.stats import StudyStats, study_stats
from orchestrator.summary import StudySummary

LOCAL = Environment(os="Linux", python="3.11.7", harness_version="0.4.0",
                    backend_versions={"torch": "2.5.1", "transformers": "4.46.0"})
DOCKER = LOCAL.model_copy(update={"python": "3.11.2", "container_image_id": "sha256:abc",
                                  "container_image_digest": "llem/cpu@sha256:def"})


class EnvironmentHarness(Runner):
    """Writes a valid result.json whose environment is the one this runner was given."""

    def __init__(self, name: str, environment: Environment) -> None:
        super().__init__()
        self.name = name
        self.environment = environment

    def run(self, run_dir, timeout_s, on_event, gpus=None):
        spec = RunSpec.model_validate_json((run_dir / "experiment.json").read_text())
        result = fake_result(spec, 100.0 + spec.cycle)
        result.environment = self.environment
        (run_dir / "result.json").write_text(result.model_dump_json())
        return RunOutcome(end="ok", exit_code=0, message="")


def write_study(tmp_path: Path, cycles: int) -> Path:
    path = tmp_path / "s.yaml"
    path.write_text(f"name: env\nmodel: m\nbackend: pytorch\nexecution: {{n_cycles: {cycles}, "
                    "config_gap_s: 0, cycle_gap_s: 0}\n")
    return path


def result(run_id: str, cycle: int, runner: str, environment: Environment) -> ExperimentResult:
    spec = RunSpec.model_validate({"run_id": run_id, "cycle": cycle, "runner": runner,
                                   "config": {"model": "m", "backend": "pytorch"}})
    made = fake_result(spec, 100.0 + cycle)
    made.environment = environment
    return made


def test_statistics_refuse_to_pool_runs_of_different_environments():
    results = [result("a-c1", 1, "local", LOCAL), result("a-c2", 2, "local", LOCAL),
               result("a-c3", 3, "docker", DOCKER), result("a-c4", 4, "docker", DOCKER)]
    stats = study_stats(results)
    groups = {tuple(config.cycles) for config in stats.configurations}
    assert groups == {(1, 2), (3, 4)}  # two groups of one configuration, never one of four
    assert len({config.config_hash for config in stats.configurations}) == 1
    assert {config.environment.runner for config in stats.configurations} == {"local", "docker"}
    (warning,) = stats.warnings
    assert stats.configurations[0].config_hash in warning
    assert "not pooled" in warning and "runner" in warning and "python" in warning
    assert "3.11.7" in warning and "3.11.2" in warning


def test_runs_whose_environments_match_are_pooled_with_no_warning():
    other_host = LOCAL.model_copy(update={"hostname_hash": "0123", "cpu_count": 64})
    stats = study_stats([result("a-c1", 1, "local", LOCAL), result("a-c2", 2, "local",
                                                                     other_host)])
    (config,) = stats.configurations
    assert config.cycles == [1, 2] and stats.warnings == []


def test_a_gpu_model_or_driver_difference_splits_the_statistics():
    gpu = GpuInfo(index=0, name="NVIDIA H100 80GB HBM3", uuid="GPU-1", memory_total_mb=81559)
    h100 = LOCAL.model_copy(update={"gpus": [gpu], "driver_version": "550.54"})
    newer_driver = h100.model_copy(update={"driver_version": "560.35"})
    stats = study_stats([result("a-c1", 1, "local", h100), result("a-c2", 2, "local",
                                                                    newer_driver)])
    assert len(stats.configurations) == 2
    assert "driver" in stats.warnings[0]


def test_the_environment_key_covers_what_the_docs_define_and_nothing_else():
    key = RunEnvironment.of(result("a-c1", 1, "docker", DOCKER))
    assert key.runner == "docker" and key.python == "3.11.2" and key.harness_version == "0.4.0"
    assert key.image_id == "sha256:abc" and key.image_digest == "llem/cpu@sha256:def"
    assert key.backend_versions == {"torch": "2.5.1", "transformers": "4.46.0"}
    assert key.gpu_models == [] and key.driver_version is None


def test_a_top_up_with_another_runner_is_recorded_per_run_and_not_pooled(tmp_path):
    first, study_dir = run_study(write_study(tmp_path, 2), EnvironmentHarness("local", LOCAL),
                                 output=tmp_path / "out", no_gaps=True)
    assert first.failed == 0
    run_study(write_study(tmp_path, 4), EnvironmentHarness("docker", DOCKER),
              resume=study_dir, no_gaps=True)

    manifest = Manifest.load(study_dir)
    by_cycle = {run.cycle: run for run in manifest.runs}
    assert [by_cycle[c].runner for c in (1, 2, 3, 4)] == ["local", "local", "docker", "docker"]
    assert by_cycle[1].environment is not None and by_cycle[1].environment.python == "3.11.7"
    assert by_cycle[4].environment is not None
    assert by_cycle[4].environment.image_digest == "llem/cpu@sha256:def"
    assert manifest.runner == "docker"  # the latest invocation's; each run records its own

    stats = StudyStats.load(study_dir)
    assert sorted(tuple(config.cycles) for config in stats.configurations) == [(1, 2), (3, 4)]
    summary = StudySummary.load(study_dir)
    assert summary.warnings == stats.warnings and len(summary.warnings) == 1
    assert json.loads((study_dir / "stats.json").read_text())["warnings"] == stats.warnings


def test_a_resume_with_another_runner_says_up_front_that_it_will_not_pool(tmp_path):
    from orchestrator.cli import _runner_change

    _, study_dir = run_study(write_study(tmp_path, 1), EnvironmentHarness("local", LOCAL),
                             output=tmp_path / "out", no_gaps=True)
    manifest = Manifest.load(study_dir)
    assert _runner_change(manifest, "docker") == []  # nothing left to run
    manifest.runs.append(manifest.runs[0].model_copy(update={"cycle": 2, "status": "pending"}))
    (note,) = _runner_change(manifest, "docker")
    assert "local" in note and "docker" in note and "not pooled" in note
    assert _runner_change(manifest, "local") == []
