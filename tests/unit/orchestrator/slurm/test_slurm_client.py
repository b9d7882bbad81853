"""The Slurm client reads what Slurm's own commands print, whichever release prints it."""

from __future__ import annotations

import subprocess

import pytest

from orchestrator.runners.slurm.client import (
    PartitionInfo,
    SlurmClient,
    SlurmError,
    job_from_sacct,
    job_from_squeue,
)

# --- squeue --json, Slurm 22.05 (OpenAPI v0.0.38: a state string, a wait status) --------------


def test_v0038_jobs_read_state_reason_node_and_priority(canned):
    job = job_from_squeue(canned.JOBS_22_05["completed"])
    assert (job.job_id, job.state, job.exit_code, job.signal) == ("14", "COMPLETED", 0, None)
    assert job.reason == ""  # Slurm prints the string "None" for no reason
    assert (job.node, job.partition, job.priority, job.restarts) == ("vm", "debug",
                                                                     4294901746, 0)
    assert job.source == "squeue"
    pending = job_from_squeue(canned.JOBS_22_05["pending"])
    assert (pending.state, pending.reason, pending.node) == ("PENDING", "Resources", "")


@pytest.mark.parametrize(("key", "state", "exit_code", "signal"), [
    ("exit_3", "FAILED", 3, None),         # wait status 768
    ("exit_143", "FAILED", 143, None),     # wait status 36608: exit 143, no signal
    ("sigkill", "FAILED", None, 9),        # wait status 9: SIGKILL
    ("cancelled", "CANCELLED", None, 15),  # a running job scancelled: SIGTERM
    ("timeout", "TIMEOUT", None, 15),
])
def test_v0038_wait_status_is_an_exit_code_or_a_signal(canned, key, state, exit_code, signal):
    job = job_from_squeue(canned.JOBS_22_05[key])
    assert (job.state, job.exit_code, job.signal) == (state, exit_code, signal)


# --- squeue --json, Slurm 23.11+ (OpenAPI v0.0.40+: a list of states, verbose exit codes) ------


def test_v0040_exit_status_and_list_state(canned):
    job = job_from_squeue(canned.job_v40(4242, ["FAILED"], "NonZeroExitCode",
                                         canned.exit_code_v40(143), "gpu-07", 5000))
    assert (job.job_id, job.state, job.exit_code, job.signal) == ("4242", "FAILED", 143, None)
    assert (job.reason, job.node, job.partition, job.priority) == ("NonZeroExitCode", "gpu-07",
                                                                   "gpu", 5000)


def test_v0040_signal_leaves_the_exit_status_unset(canned):
    job = job_from_squeue(canned.job_v40(4243, ["CANCELLED"], "None",
                                         canned.exit_code_v40(None, 9, "KILL"), "gpu-07", 5000))
    assert (job.state, job.exit_code, job.signal, job.reason) == ("CANCELLED", None, 9, "")


def test_v0040_success_and_number_objects(canned):
    raw = canned.job_v40(4244, ["COMPLETED"], "None", canned.exit_code_v40(0), "gpu-01", 7)
    raw["job_id"] = canned.no_val(4244)  # some writers wrap ids and counters too
    raw["restart_cnt"] = canned.no_val(2)
    job = job_from_squeue(raw)
    assert (job.job_id, job.state, job.exit_code, job.signal) == ("4244", "COMPLETED", 0, None)
    assert (job.restarts, job.priority) == (2, 7)


def test_v0040_unset_priority_reads_as_zero(canned):
    raw = canned.job_v40(4245, ["PENDING"], "Priority", canned.exit_code_v40(None), "", 0)
    raw["priority"] = canned.no_val(None)
    raw["exit_code"]["status"] = ["PENDING"]
    job = job_from_squeue(raw)
    assert (job.state, job.priority, job.exit_code, job.signal) == ("PENDING", 0, None, None)


@pytest.mark.parametrize(("status", "exit_code", "signal"), [
    (0, 0, None), (36608, 143, None), (9, None, 9)])
def test_v0039_exit_code_is_a_wait_status_in_a_number_object(status, exit_code, signal):
    # Slurm 23.02.4 to 23.02.x (OpenAPI v0.0.39): SchedMD/slurm tag slurm-23-02-4-1,
    # src/plugins/data_parser/v0.0.39/parsers.c, PARSER_ARRAY(JOB_INFO):
    # add_parse(UINT32_NO_VAL, exit_code, "exit_code") (the raw wait status, dumped by
    # DUMP_FUNC(UINT32_NO_VAL) as {"set", "infinite", "number"}) and JOB_STATE dumped as one
    # string (DUMP_FUNC(JOB_STATE): job_state_string). A COMPLETED job then reads exit None and
    # is classified as an error.
    job = job_from_squeue({"job_id": 77, "job_state": "FAILED", "state_reason": "None",
                           "exit_code": {"set": True, "infinite": False, "number": status},
                           "nodes": "n1", "partition": "batch",
                           "priority": {"set": True, "infinite": False, "number": 1},
                           "restart_cnt": 0})
    assert (job.exit_code, job.signal) == (exit_code, signal)


def test_v0040_flag_states_read_as_the_string_form_does(canned):
    # SchedMD/slurm tag slurm-23-11-0-1: src/common/slurm_protocol_defs.c job_state_string()
    # returns a flag (COMPLETING, CONFIGURING, REQUEUED, ...) before the base state, which is
    # what v0.0.38 printed; v0.0.40's PARSER_FLAG_ARRAY(JOB_STATE) lists the base state, then
    # "CONFIGURING" ("Allocated nodes booting") as a flag.
    job = job_from_squeue(canned.job_v40(4246, ["RUNNING", "CONFIGURING"], "None",
                                         canned.exit_code_v40(None), "gpu-03", 1))
    assert job.state == "CONFIGURING"


# --- sacct --parsable2 -----------------------------------------------------------------------
# Lines as sacct prints JobIDRaw|State|ExitCode|NodeList|Reason: SchedMD/slurm
# src/sacct/print.c writes a cancelled state as "CANCELLED by <uid>" and ExitCode as
# "<exit status>:<signal>" (WEXITSTATUS / WTERMSIG of the wait status).


def test_sacct_cancelled_by_a_user_with_a_signal():
    job = job_from_sacct("4242|CANCELLED by 0|0:15|gpu-07|None")
    assert job is not None
    assert (job.job_id, job.state, job.exit_code, job.signal) == ("4242", "CANCELLED", None, 15)
    assert (job.node, job.reason, job.source) == ("gpu-07", "", "sacct")


def test_sacct_exit_status():
    job = job_from_sacct("4243|FAILED|1:0|gpu-07|NonZeroExitCode")
    assert job is not None
    assert (job.state, job.exit_code, job.signal, job.reason) == ("FAILED", 1, None,
                                                                  "NonZeroExitCode")
    done = job_from_sacct("4244|COMPLETED|0:0|gpu-01|None")
    assert done is not None and (done.exit_code, done.signal) == (0, None)


def test_sacct_lines_without_a_job_are_skipped():
    assert job_from_sacct("") is None
    assert job_from_sacct("|COMPLETED|0:0|n1|None") is None


def test_finished_reads_every_job_in_one_call_and_keeps_the_latest_record(recorder):
    recorder.on("sacct", stdout="4242|NODE_FAIL|0:0|gpu-01|None\n"
                                "4242|COMPLETED|0:0|gpu-02|None\n"
                                "4243|FAILED|1:0|gpu-07|NonZeroExitCode\n")
    found = SlurmClient(run=recorder).finished(["4243", "4242", "4242"])
    (args,) = recorder.commands("sacct")
    assert args[-2:] == ["-j", "4242,4243"] and "--duplicates" in args
    assert (found["4242"].state, found["4242"].node) == ("COMPLETED", "gpu-02")
    assert found["4243"].exit_code == 1


def test_finished_without_jobs_asks_nothing(recorder):
    assert SlurmClient(run=recorder).finished([]) == {}
    assert recorder.calls == []


# --- the queue --------------------------------------------------------------------------------


def test_one_squeue_call_reads_the_wanted_jobs_and_their_queue_positions(canned, recorder):
    jobs = canned.JOBS_22_05
    other = dict(jobs["pending"], job_id=500, partition="gpu", priority=4294901799)
    recorder.on("squeue", stdout=canned.squeue_json(
        [jobs["completed"], jobs["pending"], jobs["held"], jobs["begin"], other]))
    client = SlurmClient(run=recorder)
    found, positions = client.jobs_and_queue(["14", "117", "119", "120", "999"])
    assert recorder.commands("squeue") == [["squeue", "--json"]]
    assert client.calls == 1
    assert set(found) == {"14", "117", "119", "120"}  # 999: not listed; 500: not asked for
    # 117 has the highest priority of its partition's pending jobs; 500 is of another one.
    assert positions == {"117": 1, "120": 2, "119": 3}


def test_a_pending_job_of_another_partition_never_counts(canned, recorder):
    jobs = canned.JOBS_22_05
    ahead = dict(jobs["pending"], job_id=501, priority=4294901800)
    other = dict(jobs["pending"], job_id=502, partition="gpu", priority=4294901900)
    recorder.on("squeue", stdout=canned.squeue_json([jobs["begin"], ahead, other]))
    _, positions = SlurmClient(run=recorder).jobs_and_queue(["120"])
    assert positions == {"120": 2}


def test_v0040_queue_positions(canned, recorder):
    queue = [canned.job_v40(n, ["PENDING"], "Priority", canned.exit_code_v40(None), "", prio)
             for n, prio in ((1, 30), (2, 10), (3, 20))]
    queue.append(canned.job_v40(4, ["RUNNING"], "None", canned.exit_code_v40(None), "g1", 99))
    recorder.on("squeue", stdout=canned.squeue_json(queue, canned.SQUEUE_META_23_11))
    found, positions = SlurmClient(run=recorder).jobs_and_queue(["1", "2", "3", "4"])
    assert positions == {"1": 1, "3": 2, "2": 3}
    assert found["4"].state == "RUNNING"


def test_no_jobs_no_call(recorder):
    assert SlurmClient(run=recorder).jobs_and_queue([]) == ({}, {})
    assert recorder.calls == []


def test_squeue_without_json_is_an_error_with_a_fix(recorder):
    recorder.on("squeue", stdout="             JOBID PARTITION     NAME     USER ST\n")
    with pytest.raises(SlurmError) as raised:
        SlurmClient(run=recorder).jobs_and_queue(["1"])
    assert raised.value.fix is not None and "squeue --json" in raised.value.fix


# --- sbatch, sacct probe, scancel, ping, sinfo --------------------------------------------------


@pytest.mark.parametrize(("stdout", "job_id"), [("123\n", "123"), ("123;cluster\n", "123"),
                                                (None, "13")])
def test_submit_returns_the_job_id_and_sends_the_script_on_stdin(canned, recorder, stdout,
                                                                   job_id):
    recorder.on("sbatch", stdout=stdout or canned.SBATCH_PARSABLE)
    script = "#!/bin/bash\nexec true\n"
    assert SlurmClient(run=recorder).submit(script, ["--time=65", "--no-requeue"]) == job_id
    ((args, kwargs),) = recorder.calls
    assert args == ["sbatch", "--parsable", "--time=65", "--no-requeue"]
    assert kwargs["input"] == script and kwargs["text"] is True


def test_a_refused_submission_names_slurms_reason_and_a_fix(canned, recorder):
    recorder.on("sbatch", stderr=canned.SBATCH_BAD_PARTITION, returncode=1)
    with pytest.raises(SlurmError) as raised:
        SlurmClient(run=recorder).submit("#!/bin/bash\n", ["--partition=nope"])
    assert "Invalid partition name specified" in raised.value.message
    assert raised.value.fix is not None and "execution.slurm" in raised.value.fix


def test_missing_commands_are_an_error_with_a_fix():
    def absent(args, **kwargs):
        raise FileNotFoundError(2, "No such file or directory", args[0])

    client = SlurmClient(run=absent)
    with pytest.raises(SlurmError) as raised:
        client.submit("#!/bin/bash\n", [])
    assert raised.value.fix is not None and "login node" in raised.value.fix
    with pytest.raises(SlurmError, match="squeue is not installed"):
        client.jobs_and_queue(["1"])


def test_a_controller_that_does_not_answer_is_an_error(recorder):
    def hang(args, kwargs):
        raise subprocess.TimeoutExpired(args, kwargs["timeout"])

    recorder.answer("squeue", hang)
    with pytest.raises(SlurmError, match="no answer within 2 s"):
        SlurmClient(run=recorder, timeout_s=2).jobs_and_queue(["1"])


def test_accounting_off_when_sacct_says_storage_is_disabled(canned, recorder):
    recorder.on("sacct", stderr=canned.SACCT_DISABLED, returncode=1)
    assert SlurmClient(run=recorder).accounting() is False
    assert len(recorder.commands("sacct")) == 1


def test_accounting_on_when_sacct_answers(recorder):
    recorder.on("sacct", stdout="")
    assert SlurmClient(run=recorder).accounting() is True


def test_cancel_without_ids_makes_no_call(recorder):
    SlurmClient(run=recorder).cancel([])
    assert recorder.calls == []


def test_cancel_sends_one_scancel_for_all_ids(recorder):
    recorder.on("scancel")
    client = SlurmClient(run=recorder)
    client.cancel(["12", "9", "12"])
    client.cancel(["9"], signal="TERM")
    first, second = recorder.commands("scancel")
    assert first[0] == "scancel" and sorted(first[1:]) == ["12", "9"]  # once each
    assert second == ["scancel", "--signal", "TERM", "--full", "9"]


def test_ping(canned, recorder):
    recorder.on("scontrol", stdout=canned.SCONTROL_PING)
    assert "is UP" in SlurmClient(run=recorder).ping()
    recorder.on("scontrol", stdout="Slurmctld(primary) at vm is DOWN\n", returncode=1)
    with pytest.raises(SlurmError, match="does not answer"):
        SlurmClient(run=recorder).ping()


def test_partitions_parse_sinfo_lines(canned, recorder):
    gpu_line = "gpu|4|112|2063000|gpu:h100:8(S:0-1),mps:800(S:0-1)|up|2-00:00:00|gpu\n"
    recorder.on("sinfo", stdout=canned.SINFO + gpu_line + "\n")
    debug, gpu = SlurmClient(run=recorder).partitions()
    assert debug == PartitionInfo("debug", 1, "2", "23081", "(null)", "up", "infinite",
                                  default=True)
    assert not gpu.default
    assert debug.gpus_per_node == "none"
    assert (gpu.name, gpu.nodes, gpu.cpus_per_node, gpu.time_limit) == ("gpu", 4, "112",
                                                                        "2-00:00:00")
    assert gpu.gpus_per_node == "gpu:h100:8(S:0-1)"
    (args,) = recorder.commands("sinfo")
    assert args == ["sinfo", "--noheader", "--format=%R|%D|%c|%m|%G|%a|%l|%P"]


def test_partition_parse_refuses_other_lines():
    assert PartitionInfo.parse("PARTITION|NODES|CPUS|MEMORY|GRES|AVAIL|TIMELIMIT") is None
    assert PartitionInfo.parse("debug|1|2") is None
