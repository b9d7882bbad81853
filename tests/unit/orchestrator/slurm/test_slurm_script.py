"""A run's batch script and sbatch options: pure functions of the run and the settings."""

from __future__ import annotations

import csv
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.errors import ConfigError
from harness.schema import ExperimentConfig
from harness.schema.run_spec import RunSpec
from orchestrator.runners.docker.plan import ContainerPlan, MachineSettings, plan_container
from orchestrator.runners.session import Session
from orchestrator.runners.slurm import script as scripts
from orchestrator.runners.slurm.runner import SlurmRunner
from orchestrator.runners.slurm.states import MEMORY_KILL_LINES
from orchestrator.study.execution import SlurmConfig

RUN_ID = "001_pytorch_c1"
CANARY = "hf_canaryCANARYcanaryCANARY0123456789"


def make_plan(tmp_path: Path, mem_limit: str | None = "8g") -> tuple[ContainerPlan, Path]:
    """A container plan as the Docker runner makes one: local model, HF cache, RAPL tree."""
    (tmp_path / "model-dir").mkdir(exist_ok=True)
    (tmp_path / "hf-cache").mkdir(exist_ok=True)
    rapl = tmp_path / "powercap"
    rapl.mkdir(exist_ok=True)
    run_dir = tmp_path / "study" / RUN_ID
    run_dir.mkdir(parents=True, exist_ok=True)
    spec = RunSpec(run_id=RUN_ID, study="s", config=ExperimentConfig(
        model="./model-dir", backend="pytorch"))
    machine = MachineSettings(uid=1234, gid=5678, cwd=tmp_path, hf_cache=tmp_path / "hf-cache",
                              host_env={}, rapl=rapl)
    session = Session("abc123", 42, "777", "host-a")
    plan = plan_container(run_dir, spec, "llem/cpu:latest", "sha256:img", None, session,
                          machine, gpu_ids=None, mem_limit=mem_limit)
    return plan, run_dir


def bash_syntax_ok(tmp_path: Path, text: str) -> None:
    path = tmp_path / "job.sh"
    path.write_text(text)
    done = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr


def job(gpus: int = 0, limit: str = "65") -> scripts.JobRequest:
    return scripts.JobRequest(name=f"llem-{RUN_ID}", comment="llem session abc123",
                              log=Path("/shared/study") / RUN_ID / "container.log",
                              workdir=Path("/shared"), time_limit=limit, gpus=gpus)


# --- sbatch options ---------------------------------------------------------------------------


def test_options_never_requeue_start_from_a_clean_environment_and_take_the_timeout():
    settings = SlurmConfig()
    limit = scripts.time_limit(settings, 3600.0)
    assert limit == "65"  # 60 minutes rounded up, plus 5: llem's own timeout stops first
    options = scripts.sbatch_options(settings, job(limit=limit))
    assert "--no-requeue" in options and "--export=NONE" in options
    assert "--time=65" in options
    assert f"--output=/shared/study/{RUN_ID}/container.log" in options
    assert not any(option.startswith(("--gres", "--partition", "--mem")) for option in options)


def test_time_limit_rounds_up_and_keeps_an_explicit_setting():
    assert scripts.time_limit(SlurmConfig(), 61.0) == "7"
    assert scripts.time_limit(SlurmConfig(), None) == "UNLIMITED"
    explicit = SlurmConfig(time_limit="1:30:00")
    assert scripts.time_limit(explicit, 3600.0) == "1:30:00"
    limit = scripts.time_limit(explicit, 3600.0)
    assert "--time=1:30:00" in scripts.sbatch_options(explicit, job(limit=limit))


def test_settings_become_options_and_extra_options_come_last():
    settings = SlurmConfig(partition="gpu", account="proj", qos="high", cpus_per_run=8,
                           mem="64G", sbatch_options=["--constraint=h100"])
    options = scripts.sbatch_options(settings, job(gpus=2))
    for option in ("--partition=gpu", "--account=proj", "--qos=high", "--cpus-per-task=8",
                   "--mem=64G", "--gres=gpu:2"):
        assert option in options
    assert options[-1] == "--constraint=h100"


def test_gres_only_for_gpus():
    assert not any(o.startswith("--gres") for o in scripts.sbatch_options(SlurmConfig(), job()))
    assert "--gres=gpu:1" in scripts.sbatch_options(SlurmConfig(), job(gpus=1))


def test_every_run_asks_for_one_gpu_unless_told_otherwise():
    # a pytorch run on a GPU cluster gets its GPU; 0 asks for a run on the node's CPUs
    assert SlurmConfig().gpus_per_run == 1
    assert SlurmConfig(gpus_per_run=0).gpus_per_run == 0


@pytest.mark.parametrize(("option", "own"), [
    ("--time=5", "--time"), ("-t5", "-t"), ("--partition", "--partition"), ("-p", "-p"),
    ("--partition=gpu", "--partition"), ("-pgpu", "-p"), ("--gres=gpu:2", "--gres"),
    ("--export=ALL", "--export"), ("--requeue", "--requeue"), ("-o", "-o"),
    ("--constraint=x", None), ("--tmp=1G", None), ("-C", None), ("--exclusive", None),
    ("--mail-type=END", None)])
def test_own_option(option, own):
    assert scripts.own_option(option) == own


@pytest.mark.parametrize("option", ["--nodes=2", "-N2", "--ntasks=4", "-n4"])
def test_options_llem_sets_for_one_node_are_its_own(option):
    assert "--nodes=1" in scripts.sbatch_options(SlurmConfig(), job())
    assert scripts.own_option(option) is not None


# --- exec docker ------------------------------------------------------------------------------


def parse_docker_run(args: list[str]) -> dict[str, object]:
    """``docker run`` arguments back into the engine API's container-create keywords."""
    kwargs: dict[str, object] = {"labels": {}, "mounts": [], "environment": {},
                                 "security_opt": [], "cap_drop": [], "tmpfs": {},
                                 "privileged": False, "init": False, "read_only": False}
    plain = {"--user": "user", "--workdir": "working_dir", "--network": "network_mode",
             "--shm-size": "shm_size", "--memory": "mem_limit", "--memory-swap": "memswap_limit"}
    flags = {"--privileged": "privileged", "--init": "init", "--read-only": "read_only"}
    items = iter(args)
    for flag in items:
        if flag in flags:
            kwargs[flags[flag]] = True
            continue
        value = next(items)
        if flag in plain:
            kwargs[plain[flag]] = value
        elif flag == "--pids-limit":
            kwargs["pids_limit"] = int(value)
        elif flag in ("--label", "--env"):
            key, _, item = value.partition("=")
            kwargs["labels" if flag == "--label" else "environment"][key] = item  # type: ignore[index]
        elif flag == "--security-opt":
            kwargs["security_opt"].append(value)  # type: ignore[attr-defined]
        elif flag == "--cap-drop":
            kwargs["cap_drop"].append(value)  # type: ignore[attr-defined]
        elif flag == "--tmpfs":
            path, _, options = value.partition(":")
            kwargs["tmpfs"][path] = options  # type: ignore[index]
        elif flag == "--mount":
            # docker reads --mount as one CSV record (its opts/mount.go uses encoding/csv)
            (record,) = csv.reader([value])
            fields = dict(part.partition("=")[::2] for part in record)
            kwargs["mounts"].append({"Target": fields["target"], "Source": fields["source"],  # type: ignore[attr-defined]
                                     "Type": fields["type"], "ReadOnly": "readonly" in fields})
        else:
            raise AssertionError(f"unknown docker run flag {flag}")
    return kwargs


def test_docker_arguments_carry_every_setting_of_the_container_plan(tmp_path):
    plan, _ = make_plan(tmp_path)
    expected = plan.create_kwargs()
    parsed = parse_docker_run(scripts.docker_arguments(plan))
    for key in ("user", "working_dir", "labels", "environment", "network_mode", "shm_size",
                "mem_limit", "memswap_limit", "security_opt", "cap_drop", "privileged", "init",
                "read_only", "tmpfs", "pids_limit"):
        assert parsed[key] == expected[key], key
    assert parsed["mounts"] == [{"Target": m["Target"], "Source": m["Source"],
                                 "Type": m["Type"], "ReadOnly": m["ReadOnly"]}
                                for m in expected["mounts"]]
    # The security defaults themselves, not only their agreement.
    assert parsed["cap_drop"] == ["ALL"] and parsed["security_opt"] == ["no-new-privileges"]
    assert parsed["read_only"] is True and parsed["privileged"] is False
    assert parsed["user"] == "1234:5678" and parsed["network_mode"] == "none"


@pytest.mark.parametrize("odd", ["a,b", 'say "hi"', "x:y"])
def test_docker_mounts_of_paths_with_commas_quotes_or_colons_read_back_whole(tmp_path, odd):
    base = tmp_path / odd
    base.mkdir()
    plan, run_dir = make_plan(base)
    parsed = parse_docker_run(scripts.docker_arguments(plan))

    assert str(run_dir.resolve()) in {m["Source"] for m in parsed["mounts"]}
    assert [m["Source"] for m in parsed["mounts"]] == [m.source for m in plan.mounts]


@pytest.mark.parametrize("odd", ["a,b", "x:y"])
@pytest.mark.parametrize("mode", ["apptainer", "pyxis"])
def test_bind_lists_refuse_paths_they_cannot_quote(tmp_path, odd, mode):
    base = tmp_path / odd
    base.mkdir()
    plan, _ = make_plan(base)

    with pytest.raises(ConfigError, match=f"exec {mode} cannot mount .*{odd}") as raised:
        if mode == "apptainer":
            scripts.apptainer_script(plan, "/shared/x.sif", RUN_ID, "s", False)
        else:
            scripts.pyxis_script(plan, RUN_ID, "s")
    assert "exec docker or local" in (raised.value.fix or "")


def test_no_memory_limit_no_memory_flags(tmp_path):
    plan, _ = make_plan(tmp_path, mem_limit=None)
    args = scripts.docker_arguments(plan)
    assert "--memory" not in args and "--memory-swap" not in args


def docker_script_for(tmp_path: Path, gpus: bool, rapl: str | None = None) -> str:
    plan, _ = make_plan(tmp_path)
    return scripts.docker_script(plan, RUN_ID, "s", gpus, rapl)


def test_docker_script_parses_and_cleans_up_on_every_way_out(tmp_path):
    text = docker_script_for(tmp_path, gpus=False, rapl="/sys/devices/virtual/powercap/x")
    bash_syntax_ok(tmp_path, text)
    lines = text.splitlines()
    assert lines[0] == "#!/bin/bash" and "set -u" in lines
    assert 'cleanup() { docker rm -f "$name" >/dev/null 2>&1 || true; }' in lines
    assert "trap cleanup EXIT" in lines
    assert "trap 'docker stop --time 10 \"$name\" >/dev/null 2>&1' TERM INT" in lines
    assert "--gpus" not in text
    assert "--env SLURM_JOB_ID --env SLURMD_NODENAME" in text


def test_docker_script_hands_the_jobs_gpus_only_when_asked(tmp_path):
    text = docker_script_for(tmp_path, gpus=True)
    bash_syntax_ok(tmp_path, text)
    assert "--gpus" in text and "SLURM_JOB_GPUS" in text


FAKE_DOCKER = r"""#!/bin/bash
printf '%s\x1f' "$@" >> "$FAKE_DIR/calls"; echo >> "$FAKE_DIR/calls"
case "$1" in
  image) [ -e "$FAKE_DIR/no-image" ] && exit 1; echo sha256:node-image ;;
  run) [ -e "$FAKE_DIR/oom" ] && exit 137
       while [ ! -e "$FAKE_DIR/stopped" ]; do sleep 0.02; done; exit 143 ;;
  stop) touch "$FAKE_DIR/stopped" ;;
  inspect) if [ -e "$FAKE_DIR/oom" ]; then echo true; else echo false; fi ;;
esac
"""


def fake_docker(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A ``docker`` that records its arguments (no engine runs here)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "docker").write_text(FAKE_DOCKER)
    (bin_dir / "docker").chmod(0o755)
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "FAKE_DIR": str(tmp_path),
           "SLURM_JOB_ID": "4242", "SLURMD_NODENAME": "gpu-07"}
    return tmp_path / "calls", env


def calls(path: Path) -> list[list[str]]:
    if not path.exists():
        return []
    return [line.split("\x1f")[:-1] for line in path.read_text().splitlines()]


def test_docker_script_stops_and_removes_the_container_on_sigterm(tmp_path):
    # Slurm sends SIGTERM to the batch script on scancel and at the time limit.
    (tmp_path / "job").mkdir()
    script = tmp_path / "job" / "job.sh"
    script.write_text(docker_script_for(tmp_path / "job", gpus=False))
    log, env = fake_docker(tmp_path)
    job_process = subprocess.Popen(["bash", str(script)], env=env, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 10
    while not any(call[0] == "run" for call in calls(log)):
        assert time.monotonic() < deadline and job_process.poll() is None, "docker run never ran"
        time.sleep(0.02)
    job_process.send_signal(signal.SIGTERM)
    job_process.communicate(timeout=10)
    name = f"llem-{RUN_ID}-4242"
    made = calls(log)
    (run,) = [call for call in made if call[0] == "run"]
    assert run[1:3] == ["--name", name] and "--env" in run
    assert run[run.index("LLEM_IMAGE_ID=sha256:node-image") - 1] == "--env"
    assert ["stop", "--time", "10", name] in made
    assert made[-1] == ["rm", "-f", name]  # the EXIT trap, last
    assert job_process.returncode == 143


def test_docker_script_reports_the_containers_oom_kill_as_the_runner_reads_it(tmp_path):
    (tmp_path / "job").mkdir()
    script = tmp_path / "job" / "job.sh"
    script.write_text(docker_script_for(tmp_path / "job", gpus=False))
    log, env = fake_docker(tmp_path)
    (tmp_path / "oom").touch()
    done = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True,
                          timeout=10, check=False)
    assert done.returncode == 137
    assert any(line in done.stdout.lower() for line in MEMORY_KILL_LINES)
    assert calls(log)[-1] == ["rm", "-f", f"llem-{RUN_ID}-4242"]


def test_docker_script_without_the_image_on_the_node_says_so(tmp_path):
    (tmp_path / "job").mkdir()
    script = tmp_path / "job" / "job.sh"
    script.write_text(docker_script_for(tmp_path / "job", gpus=False))
    log, env = fake_docker(tmp_path)
    (tmp_path / "no-image").touch()
    done = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True,
                          timeout=10, check=False)
    assert done.returncode == 2
    assert "llem/cpu:latest is not on node gpu-07" in done.stderr
    assert not any(call[0] == "run" for call in calls(log))


def test_docker_script_passes_the_jobs_gpus_or_refuses_without_any(tmp_path):
    (tmp_path / "job").mkdir()
    script = tmp_path / "job" / "job.sh"
    script.write_text(docker_script_for(tmp_path / "job", gpus=True))
    log, env = fake_docker(tmp_path)
    (tmp_path / "oom").touch()  # docker run ends at once
    refused = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True,
                             timeout=10, check=False)
    assert refused.returncode == 2 and "SLURM_JOB_GPUS is empty" in refused.stderr
    subprocess.run(["bash", str(script)], env={**env, "SLURM_JOB_GPUS": "0,3"},
                   capture_output=True, text=True, timeout=10, check=False)
    (run,) = [call for call in calls(log) if call[0] == "run"]
    assert run[run.index("--gpus") + 1] == '"device=0,3"'  # docker's quoting for a list


def test_the_runners_docker_script_holds_no_host_token_and_leaves_the_image_id_to_the_node(
        tmp_path):
    plan, run_dir = make_plan(tmp_path)
    spec = RunSpec(run_id=RUN_ID, study="s", config=ExperimentConfig(
        model="./model-dir", backend="pytorch"))
    machine = MachineSettings(uid=1234, gid=5678, cwd=tmp_path, hf_cache=None,
                              host_env={"HF_TOKEN": CANARY})
    runner = SlurmRunner(SlurmConfig(exec="docker", mem="16G"), machine=machine)
    text = runner.job_script(run_dir, spec, needs_gpu=False)
    bash_syntax_ok(tmp_path, text)
    assert CANARY not in text and "HF_TOKEN" not in text
    assert "LLEM_IMAGE_ID=sha256" not in text and '"LLEM_IMAGE_ID=$image_id"' in text
    assert "--memory 16g --memory-swap 16g" in text  # Slurm's --mem as Docker's --memory


# --- exec local, apptainer, pyxis --------------------------------------------------------------


def test_local_script_execs_the_harness_on_the_run(tmp_path):
    run_dir = tmp_path / "study" / RUN_ID
    text = scripts.local_script(run_dir, RUN_ID, "s", "/shared/venv/bin/python", tmp_path,
                                {"HF_HOME": "/shared/hf home"})
    bash_syntax_ok(tmp_path, text)
    last = shlex.split(text.splitlines()[-1])
    assert last == ["exec", "/shared/venv/bin/python", "-m", "harness", "run",
                    str(run_dir / "experiment.json")]
    assert Path(last[-1]).is_absolute()
    assert "export HF_HOME='/shared/hf home'" in text and "export HF_HUB_OFFLINE=1" in text


def test_local_script_runs_the_named_interpreter_in_the_working_directory(tmp_path):
    fake_python = tmp_path / "python"
    fake_python.write_text('#!/bin/bash\necho "$PWD|$HF_HUB_OFFLINE|$*"\n')
    fake_python.chmod(0o755)
    workdir = tmp_path / "work dir"
    workdir.mkdir()
    run_dir = tmp_path / "study" / RUN_ID
    text = scripts.local_script(run_dir, RUN_ID, "s", str(fake_python), workdir, {})
    script = tmp_path / "job.sh"
    script.write_text(text)
    done = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=10,
                          check=True, env={"PATH": os.environ["PATH"]})
    assert done.stdout.strip() == f"{workdir}|1|-m harness run {run_dir}/experiment.json"


def test_the_runners_local_script_uses_the_configured_interpreter(tmp_path):
    plan, run_dir = make_plan(tmp_path)
    spec = RunSpec(run_id=RUN_ID, study="s", config=ExperimentConfig(
        model="./model-dir", backend="pytorch"))
    assert SlurmRunner(SlurmConfig(exec="local")).python == sys.executable
    runner = SlurmRunner(SlurmConfig(exec="local", python="/shared/venv/bin/python"))
    text = runner.job_script(run_dir, spec, needs_gpu=False)
    assert text.splitlines()[-1].startswith("exec /shared/venv/bin/python -m harness run ")


def exec_words(text: str) -> list[str]:
    (line,) = [line for line in text.splitlines() if line.startswith("exec ")]
    return shlex.split(line)[1:]


def binds(plan: ContainerPlan) -> set[str]:
    return {f"{m.source}:{m.target}" + (":ro" if m.read_only else "") for m in plan.mounts}


@pytest.mark.parametrize("gpus", [True, False])
def test_apptainer_script_binds_every_mount_of_the_plan(tmp_path, gpus):
    plan, run_dir = make_plan(tmp_path)
    text = scripts.apptainer_script(plan, "/shared/llem-cpu.sif", RUN_ID, "s", gpus)
    bash_syntax_ok(tmp_path, text)
    words = exec_words(text)
    assert words[:2] == ["apptainer", "exec"]
    assert set(words[words.index("--bind") + 1].split(",")) == binds(plan)
    assert len(plan.mounts) >= 4  # run dir, model, HF cache, RAPL
    assert ("--nv" in words) is gpus
    assert words[words.index("--pwd") + 1] == plan.working_dir
    env = dict(item.split("=", 1) for item in words[words.index("--env") + 1].split(","))
    assert env["HF_HUB_OFFLINE"] == "1" and "HOME" not in env
    sif = words.index("/shared/llem-cpu.sif")
    assert words[sif + 1:] == ["python", "-m", "harness", "run",
                               str(run_dir.resolve() / "experiment.json")]


def test_pyxis_script_binds_every_mount_of_the_plan(tmp_path):
    plan, run_dir = make_plan(tmp_path)
    text = scripts.pyxis_script(plan, RUN_ID, "s")
    bash_syntax_ok(tmp_path, text)
    words = exec_words(text)
    assert words[0] == "srun"
    options = dict(word.split("=", 1) for word in words if word.startswith("--"))
    assert set(options["--container-mounts"].split(",")) == binds(plan)
    assert options["--container-image"] == plan.image
    assert options["--container-workdir"] == plan.working_dir
    assert words[-5:] == ["python", "-m", "harness", "run",
                          str(run_dir.resolve() / "experiment.json")]
    assert "export HF_HUB_OFFLINE=1" in text and "export HOME=" not in text
