"""``llem doctor``'s Slurm report, against Slurm's commands as a 22.05 cluster answers them.

The answers below were captured from a one-node Slurm 22.05.8 cluster without accounting
(tests/slurm/single-node.sh); ``FakeSlurm`` plays that cluster. Its node shares the host's
storage when ``shared`` (it runs the batch script with ``sh``), else it never sees the files.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Sequence
from typing import Any

import pytest

from orchestrator.doctor_slurm import runner_check, slurm_checks
from orchestrator.runners.slurm import preflight
from orchestrator.runners.slurm.client import SlurmClient

PING_UP = "Slurmctld(primary) at vm is UP\n"
PING_DOWN = "Slurmctld(primary) at vm is DOWN\n"
SINFO = "debug|1|2|23081|(null)|up|infinite\n"
SACCT_OFF = "Slurm accounting storage is disabled\n"
CONFIG = ("Configuration data as of 2026-12-01T02:10:00\n"
          "MaxJobCount             = 10000\n"
          "MinJobAge               = 300 sec\n"
          "SLURM_VERSION           = 22.05.8\n")


def squeue_json(job_id: str, state: str) -> str:
    """``squeue --json`` (OpenAPI v0.0.38) listing one job, as 22.05 writes it."""
    return json.dumps({"meta": {"plugin": {"type": "openapi/v0.0.38"}}, "errors": [], "jobs": [{
        "job_id": int(job_id), "job_state": state, "state_reason": "None", "exit_code": 0,
        "nodes": "vm" if state != "PENDING" else "", "partition": "debug",
        "priority": 4294901732, "restart_cnt": 0, "name": "llem-storage-probe"}]})


class FakeSlurm:
    """``subprocess.run`` for Slurm's commands: records each call, answers as 22.05 does."""

    def __init__(self, *, ping: tuple[int, str] = (0, PING_UP), sinfo: str = SINFO,
                 accounting: bool = False, shared: bool = True, runs: bool = True) -> None:
        self.ping = ping
        self.sinfo = sinfo
        self.accounting = accounting
        self.shared = shared
        self.runs = runs
        self.calls: list[list[str]] = []
        self.scripts: list[str] = []

    def __call__(self, args: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        args = list(args)
        self.calls.append(args)
        command = args[0]
        if command == "scontrol" and args[1] == "ping":
            code, text = self.ping
            return subprocess.CompletedProcess(args, code, text, "")
        if command == "scontrol":
            return subprocess.CompletedProcess(args, 0, CONFIG, "")
        if command == "sinfo":
            return subprocess.CompletedProcess(args, 0, self.sinfo, "")
        if command == "sacct":
            if self.accounting:
                return subprocess.CompletedProcess(args, 0, "", "")
            return subprocess.CompletedProcess(args, 1, "", SACCT_OFF)
        if command == "sbatch":
            self.scripts.append(kwargs["input"])
            if self.runs and self.shared:
                subprocess.run(["sh", "-c", kwargs["input"]], check=True)
            return subprocess.CompletedProcess(args, 0, "36\n", "")
        if command == "squeue":
            state = "COMPLETED" if self.runs else "PENDING"
            return subprocess.CompletedProcess(args, 0, squeue_json("36", state), "")
        if command == "scancel":
            return subprocess.CompletedProcess(args, 0, "", "")
        raise AssertionError(f"unexpected command {args}")

    def sent(self, command: str) -> list[list[str]]:
        return [call for call in self.calls if call[0] == command]


def by_name(checks: list) -> dict:
    return {check.name: check for check in checks}


def test_the_slurm_runner_gets_the_whole_report_and_a_passing_storage_probe(tmp_path):
    fake = FakeSlurm()
    output = tmp_path / "results"
    checks = by_name(slurm_checks(output, "slurm", SlurmClient(run=fake), installed=True))

    assert checks["slurm controller"].detail == "Slurmctld(primary) at vm is UP"
    debug = checks["slurm partition debug"]
    assert debug.ok
    assert debug.detail == ("1 node(s), 2 CPUs/node, 23081 MB/node, GPUs/node: none, up, "
                            "time limit infinite")
    accounting = checks["slurm accounting"]
    assert accounting.ok and accounting.detail.startswith("no (accounting storage is disabled)")
    assert "MinJobAge (300 sec)" in accounting.detail
    assert checks["slurm exec mode"].detail.startswith("docker (the default")
    storage = checks["slurm shared storage"]
    assert storage.ok, storage
    assert storage.detail == f"{output.resolve()}: a job read a file written here and wrote " \
                             "one back"
    (sbatch,) = fake.sent("sbatch")
    assert f"--chdir={output.resolve()}" in sbatch
    assert not any(arg.startswith("--partition") for arg in sbatch)  # the default partition
    assert list(output.iterdir()) == []  # the probe's files are gone


def test_storage_the_nodes_do_not_see_is_a_problem_with_its_fix(tmp_path):
    fake = FakeSlurm(shared=False)
    checks = by_name(slurm_checks(tmp_path, "slurm", SlurmClient(run=fake), installed=True))
    storage = checks["slurm shared storage"]
    assert not storage.ok
    assert "a job on node vm could not read and write" in storage.detail
    assert "probe job 36 ended COMPLETED" in storage.detail
    assert "shared file system" in storage.fix


def test_a_probe_job_that_never_left_the_queue_is_not_checked_and_cancelled(tmp_path,
                                                                            monkeypatch):
    monkeypatch.setattr(preflight, "PROBE_WAIT_S", 0.0)
    fake = FakeSlurm(runs=False)
    checks = by_name(slurm_checks(tmp_path, "slurm", SlurmClient(run=fake), installed=True))
    storage = checks["slurm shared storage"]
    assert storage.ok
    assert "not checked, the probe job did not run within 0 s" in storage.detail
    assert fake.sent("scancel") == [["scancel", "36"]]


def test_another_runner_gets_the_report_without_the_probe_job(tmp_path):
    fake = FakeSlurm()
    checks = slurm_checks(tmp_path, "docker", SlurmClient(run=fake), installed=True)
    assert all(check.ok for check in checks)
    assert by_name(checks)["slurm shared storage"].detail == (
        "not probed: the runner is docker; llem doctor --runner slurm submits a probe job")
    assert fake.sent("sbatch") == []
    assert "slurm partition debug" in by_name(checks)


def test_without_slurm_one_line_only_the_slurm_runner_needs_it(tmp_path):
    (absent,) = slurm_checks(tmp_path, "docker", installed=False)
    assert absent.ok and absent.name == "slurm"
    assert absent.detail == ("not installed here (sbatch is not on PATH); only --runner slurm "
                             "needs it")
    (missing,) = slurm_checks(tmp_path, "slurm", installed=False)
    assert not missing.ok
    assert "a login node" in missing.fix


@pytest.mark.parametrize(("runner", "ok"), [("slurm", False), ("local", True)])
def test_a_controller_that_is_down_fails_only_the_slurm_runner(tmp_path, runner, ok):
    fake = FakeSlurm(ping=(1, PING_DOWN))
    checks = by_name(slurm_checks(tmp_path, runner, SlurmClient(run=fake), installed=True))
    controller = checks["slurm controller"]
    assert controller.ok is ok
    assert "does not answer: Slurmctld(primary) at vm is DOWN" in controller.detail
    assert "slurmctld" in controller.fix
    assert checks["slurm shared storage"].detail == "not probed: the controller does not answer"
    assert fake.sent("sinfo") == [] and fake.sent("sbatch") == []


def test_gpus_per_node_come_from_each_sinfo_line_and_no_partition_up_is_a_problem(tmp_path):
    sinfo = ("gpu|4|64|515000|gpu:h100:8(S:0-1)|down|2-00:00:00\n"
             "gpu|2|64|515000|gpu:a100:4,tmpdisk:100|down|2-00:00:00\n"
             "cpu|16|128|257000|(null)|inact|1-00:00:00\n")
    fake = FakeSlurm(sinfo=sinfo, accounting=True)
    checks = slurm_checks(tmp_path, "slurm", SlurmClient(run=fake), installed=True)
    gpu_lines = [check.detail for check in checks if check.name == "slurm partition gpu"]
    assert gpu_lines == [
        "4 node(s), 64 CPUs/node, 515000 MB/node, GPUs/node: gpu:h100:8(S:0-1), down, "
        "time limit 2-00:00:00",
        "2 node(s), 64 CPUs/node, 515000 MB/node, GPUs/node: gpu:a100:4, down, "
        "time limit 2-00:00:00"]
    named = by_name(checks)
    assert not named["slurm partitions"].ok
    assert named["slurm partitions"].detail == "no partition is up"
    assert named["slurm accounting"].detail.startswith("yes")
    assert named["slurm shared storage"].detail == "not probed: no partition is up"
    assert fake.sent("sbatch") == []


def test_the_runner_line_names_its_source_and_refuses_an_unknown_runner():
    assert runner_check("slurm", "LLEM_RUNNER").detail == "slurm (from LLEM_RUNNER)"
    assert runner_check("slurm", "--runner").ok
    wrong = runner_check("slurrm", "--runner")
    assert not wrong.ok and wrong.fix == "use --runner docker or local or slurm"
