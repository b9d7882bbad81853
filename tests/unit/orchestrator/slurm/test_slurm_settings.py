"""execution.slurm, the checks before the first job, the job a result records, the queue shown."""

from __future__ import annotations

import io
from typing import Any

import pytest
from click.testing import CliRunner
from pydantic import TypeAdapter, ValidationError
from rich.console import Console

from harness.environment import SLURM_VARIABLES, scheduler_job
from harness.schema.events import JobQueued, RunStarted, StudyEvent
from harness.schema.result import SchedulerJob
from orchestrator.cli import main
from orchestrator.progress import StudyProgress
from orchestrator.runners.slurm.client import SlurmClient
from orchestrator.runners.slurm.preflight import setting_problems, slurm_problems
from orchestrator.runners.slurm.runner import SlurmRunner
from orchestrator.study.execution import ExecutionConfig, SlurmConfig

# --- execution.slurm --------------------------------------------------------------------------


@pytest.mark.parametrize("limit", ["90", "1:30:00", "1-00:00:00", "30:00", "2-12"])
def test_slurm_time_formats_are_accepted(limit):
    assert SlurmConfig(time_limit=limit).time_limit == limit


@pytest.mark.parametrize("limit", ["1h", "90m", "", "1:30:00:00", "-5"])
def test_other_time_limits_are_refused(limit):
    with pytest.raises(ValidationError, match="time_limit"):
        SlurmConfig(time_limit=limit)


@pytest.mark.parametrize("mem", ["64G", "512M", "1T", "4096"])
def test_memory_in_sbatch_units(mem):
    assert SlurmConfig(mem=mem).mem == mem


@pytest.mark.parametrize("mem", ["64GB", "64 G", "1.5G", "G"])
def test_other_memory_forms_are_refused(mem):
    with pytest.raises(ValidationError, match="mem"):
        SlurmConfig(mem=mem)


def test_poll_period_of_at_least_a_second():
    assert SlurmConfig(poll_s=1.0).poll_s == 1.0
    with pytest.raises(ValidationError, match="poll_s"):
        SlurmConfig(poll_s=0.5)


def test_unknown_keys_and_exec_modes_are_refused():
    with pytest.raises(ValidationError):
        SlurmConfig(partiton="gpu")  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        SlurmConfig(exec="singularity")
    with pytest.raises(ValidationError):
        SlurmConfig(gpus_per_run=-1)


def test_the_execution_block_holds_the_slurm_block():
    execution = ExecutionConfig.model_validate(
        {"runner": "slurm", "slurm": {"partition": "gpu", "time_limit": "2:00:00"}})
    assert execution.runner == "slurm"
    assert (execution.slurm.partition, execution.slurm.exec) == ("gpu", "docker")
    assert ExecutionConfig().slurm == SlurmConfig()


# --- the job a result records -----------------------------------------------------------------


def test_no_job_outside_slurm():
    assert scheduler_job({}) is None
    assert scheduler_job({"SLURM_JOB_ID": "", "SLURMD_NODENAME": "n1"}) is None


def test_the_job_from_slurms_variables():
    job = scheduler_job({"SLURM_JOB_ID": "4242", "SLURMD_NODENAME": "gpu-07",
                         "SLURM_JOB_PARTITION": "gpu", "SLURM_JOB_GPUS": "0,3",
                         "SLURM_JOB_NAME": "llem-001"})
    assert job == SchedulerJob(scheduler="slurm", job_id="4242", node="gpu-07",
                               partition="gpu", gpus="0,3")


def test_a_job_without_gres_records_no_gpus():
    job = scheduler_job({"SLURM_JOB_ID": "7", "SLURMD_NODENAME": "vm",
                         "SLURM_JOB_PARTITION": "debug", "SLURM_JOB_GPUS": ""})
    assert job is not None and (job.gpus, job.node, job.partition) == (None, "vm", "debug")


def test_the_variables_passed_into_a_container_are_those_recorded():
    assert set(SLURM_VARIABLES) == {"SLURM_JOB_ID", "SLURMD_NODENAME", "SLURM_JOB_PARTITION",
                                    "SLURM_JOB_GPUS"}


# --- preflight: the settings against the runner ------------------------------------------------


def runner(recorder: Any = None, **settings: Any) -> SlurmRunner:
    return SlurmRunner(SlurmConfig(**settings), client=SlurmClient(run=recorder))


def test_default_settings_have_no_problem():
    assert setting_problems(runner(), {"pytorch", "tensorrt"}, None) == []


def test_host_gpu_indices_are_a_problem_naming_gpus_per_run():
    (problem,) = setting_problems(runner(), {"pytorch"}, [0, 1])
    assert "execution.gpus" in problem and "[0, 1]" in problem
    assert "execution.slurm.gpus_per_run" in problem


def test_no_gpu_for_a_gpu_only_backend_is_a_problem():
    (problem,) = setting_problems(runner(gpus_per_run=0), {"pytorch", "tensorrt"}, None)
    assert "backend tensorrt needs a GPU" in problem and "gpus_per_run is 0" in problem
    assert setting_problems(runner(gpus_per_run=0), {"pytorch"}, None) == []


def test_an_option_llem_sets_itself_is_a_problem():
    (problem,) = setting_problems(runner(sbatch_options=["--constraint=h100", "--time=5"]),
                                  {"pytorch"}, None)
    assert "'--time=5'" in problem and "(--time)" in problem and "time_limit" in problem


def test_apptainer_needs_a_sif_file(tmp_path):
    (problem,) = setting_problems(runner(exec="apptainer"), {"pytorch"}, None)
    assert "execution.slurm.sif is not set" in problem
    assert "apptainer build" in problem and "docker-daemon://" in problem
    (missing,) = setting_problems(runner(exec="apptainer", sif=str(tmp_path / "no.sif")),
                                  {"pytorch"}, None)
    assert "no.sif" in missing
    sif = tmp_path / "llem-cpu.sif"
    sif.write_bytes(b"\x00")
    assert setting_problems(runner(exec="apptainer", sif=str(sif)), {"pytorch"}, None) == []


def test_the_nodes_interpreter_is_not_looked_for_on_the_submitting_host(tmp_path):
    # a node-local install (/opt/env/bin/python on every node, not on the login node) is fine
    settings = runner(exec="local", python=str(tmp_path / "python"), gpus_per_run=0)
    assert setting_problems(settings, {"pytorch"}, None) == []


def test_a_partition_the_cluster_lacks_is_named_with_those_it_has(canned, recorder):
    recorder.on("scontrol", stdout=canned.SCONTROL_PING)
    recorder.on("sinfo", stdout=canned.SINFO)
    (problem,) = slurm_problems(runner(recorder, partition="gpu"), {"pytorch"}, None)
    assert "'gpu' is not a partition" in problem and "sinfo lists debug" in problem
    assert slurm_problems(runner(recorder, partition="debug"), {"pytorch"}, None) == []


def test_a_controller_that_is_down_is_a_problem(recorder):
    recorder.on("scontrol", stdout="Slurmctld(primary) at vm is DOWN\n", returncode=1)
    problems = slurm_problems(runner(recorder), {"pytorch"}, [3])
    assert len(problems) == 2 and "does not answer" in problems[1]


# --- the queue in the progress display --------------------------------------------------------


def test_job_queued_is_a_study_event_and_is_shown():
    event = TypeAdapter(StudyEvent).validate_python(
        {"kind": "job_queued", "run_id": "001", "job_id": "4242", "state": "PENDING",
         "reason": "Priority", "position": 2})
    assert isinstance(event, JobQueued)
    out = io.StringIO()
    progress = StudyProgress(Console(file=out, force_terminal=False, width=120), total_runs=1,
                             verbose=True)
    with progress:
        progress.on_event(RunStarted(run_id="001"))
        progress.on_event(event)
        progress.on_event(JobQueued(run_id="001", job_id="4242", state="RUNNING", node="gpu-07"))
    lines = out.getvalue().splitlines()
    assert "001: job 4242 pending, position 2, Priority" in lines
    assert "001: job 4242 running on gpu-07" in lines


def test_pyxis_needs_an_image_enroot_can_read():
    (problem,) = setting_problems(runner(exec="pyxis"), {"pytorch"}, None)
    assert "exec pyxis" in problem and "enroot import" in problem
    assert setting_problems(runner(exec="pyxis", image="/shared/llem-vllm.sqsh"),
                            {"pytorch"}, None) == []


def test_gap_until_cool_with_slurm_exits_2_before_any_directory_is_made(tmp_path):
    study = tmp_path / "s.yaml"
    study.write_text("model: m\nbackend: pytorch\nexecution: {runner: slurm, gap_until_cool: "
                     "true}\n")
    output = tmp_path / "out"

    result = CliRunner().invoke(main, ["run", str(study), "--output", str(output), "--yes"])

    assert result.exit_code == 2, result.output
    assert "gap_until_cool watches this host's GPUs" in result.output
    assert "config_gap_s" in result.output
    assert not output.exists() or not any(output.iterdir())
