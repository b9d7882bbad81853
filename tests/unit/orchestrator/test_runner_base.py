"""The shared wait loop: events followed as typed, torn lines kept, stalls, hung loads and
timeouts stopped.

The loop's clock is injected: a FakeClock that moves only when the loop sleeps, so no test
waits on wall time.
"""

from __future__ import annotations

from pathlib import Path

from llem_testkit.studies import single_run_study

from harness.io import EventLog
from harness.schema.events import (
    HeartbeatEvent,
    PhaseEvent,
    ProgressEvent,
    RunEvent,
    StartEvent,
    UnknownEvent,
)
from harness.testing import FakeClock
from orchestrator.runners.base import EventFollower, ProcessEnd, Runner, classify_end


class ScriptedRun(Runner):
    """A run that is alive until stopped, writing what ``script`` says at each poll.

    Args:
        events_path: its events.jsonl (None: the run directory's, opened when it runs).
        script: clock time (s) -> events appended when the loop first polls at or after it.
        stall_timeout_s: as set by a study.
        load_timeout_s: as set by a study.
    """

    name = "scripted"

    def __init__(self, events_path: Path | None, script: dict[float, list[RunEvent]],
                 stall_timeout_s: float | None, load_timeout_s: float | None = None) -> None:
        super().__init__()
        self.events_path = events_path
        self.script = dict(sorted(script.items()))
        self.stall_timeout_s = stall_timeout_s
        self.load_timeout_s = load_timeout_s
        fake = FakeClock()
        self.clock = fake
        self.sleep = fake.advance
        self.stopped_at: float | None = None

    def alive(self) -> bool:
        for at in [t for t in self.script if t <= self.clock()]:
            for event in self.script.pop(at):
                self.log.emit(event)
        return self.stopped_at is None

    def stop(self) -> None:
        self.stopped_at = self.clock()

    def run(self, run_dir, timeout_s, on_event, gpus=None):  # type: ignore[no-untyped-def]
        self.log = EventLog(self.events_path or run_dir / "events.jsonl")
        end = self.supervise(self.alive, self.stop, timeout_s,
                             EventFollower(self.log.path), on_event, poll_s=1.0)
        return classify_end(end, ProcessEnd(None if end else 0), run_dir / "container.log",
                            timeout_s=timeout_s, stop_note=self.stop_note)


def beats(start_s: float, end_s: float, period_s: float = 5.0,
          phase: str = "load") -> dict[float, list[RunEvent]]:
    count = int((end_s - start_s) / period_s) + 1
    return {start_s + i * period_s: [HeartbeatEvent(phase=phase)] for i in range(count)}


def test_a_run_whose_events_stop_is_stopped_as_stalled(tmp_path):
    script = {0.0: [PhaseEvent(phase="load")], **beats(5.0, 40.0)}  # then silence
    runner = ScriptedRun(tmp_path / "events.jsonl", script, stall_timeout_s=30.0)
    seen: list[RunEvent] = []
    outcome = runner.run(tmp_path, 3600.0, seen.append)
    assert outcome.end == "stalled"
    assert runner.stopped_at is not None and 70.0 < runner.stopped_at <= 72.0
    assert "30 s" in outcome.message and "during phase load" in outcome.message
    assert len(seen) == 1 + len(beats(5.0, 40.0))


def test_heartbeats_alone_keep_a_silent_phase_alive(tmp_path):
    script = {0.0: [PhaseEvent(phase="load")], **beats(5.0, 500.0)}
    runner = ScriptedRun(tmp_path / "events.jsonl", script, stall_timeout_s=30.0)
    outcome = runner.run(tmp_path, 400.0, lambda event: None)
    assert outcome.end == "timeout"  # never stalled, however long the load
    assert runner.stopped_at is not None and 400.0 < runner.stopped_at <= 402.0


def test_without_a_stall_timeout_silence_runs_until_the_timeout(tmp_path):
    runner = ScriptedRun(tmp_path / "events.jsonl", {0.0: [PhaseEvent(phase="load")]},
                         stall_timeout_s=None)
    assert runner.run(tmp_path, 100.0, lambda event: None).end == "timeout"


def test_the_first_event_is_awaited_for_the_stall_timeout_too(tmp_path):
    runner = ScriptedRun(tmp_path / "events.jsonl", {}, stall_timeout_s=20.0)
    outcome = runner.run(tmp_path, 3600.0, lambda event: None)
    assert outcome.end == "stalled" and "before its first phase" in outcome.message
    assert runner.stopped_at is not None and 20.0 < runner.stopped_at <= 22.0


def test_a_harness_that_does_not_beat_is_never_taken_for_stalled(tmp_path):
    start = StartEvent(run_id="r", config_hash="h", heartbeat_s=None)  # an older image
    runner = ScriptedRun(tmp_path / "events.jsonl",
                         {0.0: [start, PhaseEvent(phase="load")]}, stall_timeout_s=20.0)
    assert runner.run(tmp_path, 300.0, lambda event: None).end == "timeout"
    beating = StartEvent(run_id="r", config_hash="h", heartbeat_s=5.0)
    runner = ScriptedRun(tmp_path / "events2.jsonl",
                         {0.0: [beating, PhaseEvent(phase="load")]}, stall_timeout_s=20.0)
    assert runner.run(tmp_path, 300.0, lambda event: None).end == "stalled"


# A load that hangs keeps beating (the heartbeat has a thread of its own): only the load's
# own limit stops it before the run's timeout.

def test_a_load_that_outlasts_its_limit_is_stopped_as_a_timeout_naming_the_setting(tmp_path):
    script = {0.0: [PhaseEvent(phase="load")], **beats(5.0, 3600.0)}
    runner = ScriptedRun(tmp_path / "events.jsonl", script, stall_timeout_s=30.0,
                         load_timeout_s=600.0)
    outcome = runner.run(tmp_path, 3600.0, lambda event: None)
    assert outcome.end == "timeout"
    assert runner.stopped_at is not None and 600.0 < runner.stopped_at <= 602.0
    assert "execution.load_timeout_s (600 s)" in outcome.message, outcome.message
    assert "phase load" in outcome.message and "raise it" in outcome.message
    assert "exceeded its timeout" not in outcome.message


def test_the_load_limit_counts_from_the_load_not_from_the_run_start(tmp_path):
    script = {0.0: [PhaseEvent(phase="preflight")], **beats(5.0, 295.0, phase="preflight"),
              300.0: [PhaseEvent(phase="load")], **beats(305.0, 3600.0)}
    runner = ScriptedRun(tmp_path / "events.jsonl", script, stall_timeout_s=30.0,
                         load_timeout_s=600.0)
    assert runner.run(tmp_path, 3600.0, lambda event: None).end == "timeout"
    assert runner.stopped_at is not None and 900.0 < runner.stopped_at <= 902.0


def test_a_load_that_ends_in_time_leaves_the_later_phases_to_the_run_timeout(tmp_path):
    script = {0.0: [PhaseEvent(phase="load")], **beats(5.0, 590.0),
              595.0: [PhaseEvent(phase="warmup")], **beats(600.0, 2000.0, phase="warmup")}
    runner = ScriptedRun(tmp_path / "events.jsonl", script, stall_timeout_s=30.0,
                         load_timeout_s=600.0)
    outcome = runner.run(tmp_path, 1500.0, lambda event: None)
    assert outcome.end == "timeout" and outcome.message == "exceeded its timeout of 1500 s"
    assert runner.stopped_at is not None and 1500.0 < runner.stopped_at <= 1502.0


def test_without_a_load_limit_a_hung_load_runs_until_the_run_timeout(tmp_path):
    script = {0.0: [PhaseEvent(phase="load")], **beats(5.0, 1000.0)}
    runner = ScriptedRun(tmp_path / "events.jsonl", script, stall_timeout_s=30.0,
                         load_timeout_s=None)
    outcome = runner.run(tmp_path, 900.0, lambda event: None)
    assert outcome.end == "timeout" and outcome.message == "exceeded its timeout of 900 s"


def test_a_study_gives_its_load_limit_to_the_runner(tmp_path):
    from orchestrator.execute import StudyExecution
    from orchestrator.manifest import Manifest
    from orchestrator.schedule import plan
    from orchestrator.study_dir import new_manifest, save_manifest

    study, out = single_run_study(tmp_path, "load_timeout_s: 120")
    runs = plan(study)
    script = {0.0: [PhaseEvent(phase="load")], **beats(5.0, 3600.0)}
    runner = ScriptedRun(None, script, stall_timeout_s=None)
    manifest = new_manifest(study, runs, runner.name)
    save_manifest(out, manifest)
    StudyExecution(study, out, runner).execute(runs, manifest)
    (run,) = Manifest.load(out).runs
    assert run.failure is not None and run.failure.cause == "timeout", run.failure
    assert "execution.load_timeout_s (120 s)" in run.failure.message
    assert runner.stopped_at is not None and 120.0 < runner.stopped_at <= 122.0


def test_follower_keeps_a_torn_line_until_it_is_complete(tmp_path):
    path = tmp_path / "events.jsonl"
    follower = EventFollower(path)
    assert follower.poll() == []  # no file yet
    line = '{"event": "progress", "time": 1.0, "t_s": 2.0, "done": 3, "total": 8}\n'
    with open(path, "w") as handle:
        handle.write('{"event": "phase", "phase": "load"}\n' + line[:25])
    assert follower.poll() == [PhaseEvent(phase="load")]
    with open(path, "a") as handle:
        handle.write(line[25:])
    assert follower.poll() == [ProgressEvent(time=1.0, t_s=2.0, done=3, total=8)]
    assert follower.poll() == []  # read once


def test_follower_keeps_unknown_kinds_and_skips_garbage(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_text('{"event": "thermal_alarm", "gpu": 0}\nnot json\n[1, 2]\n\n'
                    '{"event": "heartbeat", "phase": "warmup"}\n')
    unknown, beat = EventFollower(path).poll()
    assert isinstance(unknown, UnknownEvent) and unknown.event == "thermal_alarm"
    assert beat == HeartbeatEvent(phase="warmup")


# One end classification for every runner: the same end reads the same in the manifest.

def _both(end, local_code: int, docker_state: dict, log: Path, note: str = ""):
    from orchestrator.runners.docker.runner import classify
    from orchestrator.runners.local import LocalRunner

    local = LocalRunner(gpu_uuids=lambda indices: [])
    note = note or ("no event for 301 s" if end == "stalled" else "")
    local.stop_note = note
    return (local._outcome(end, local_code, log, 10), classify(end, docker_state, log, 10, note))


def test_a_signal_from_outside_is_a_kill_named_alike_by_both_runners(tmp_path):
    log = tmp_path / "container.log"
    log.write_text("loading\n")
    for local_code, docker_code, name in ((-9, 137, "SIGKILL"), (-15, 143, "SIGTERM")):
        local, docker = _both(None, local_code, {"ExitCode": docker_code}, log)
        assert local.end == docker.end == "killed"
        assert f"killed by {name} from outside" in local.message
        assert f"killed by {name} from outside" in docker.message
        assert local.log_tail == docker.log_tail == ["loading"]


def test_an_error_exit_names_the_harness_error_line_in_both_runners(tmp_path):
    log = tmp_path / "container.log"
    log.write_text("Traceback ...\nerror: model directory /m does not exist\n")
    local, docker = _both(None, 1, {"ExitCode": 1}, log)
    assert local.end == docker.end == "error"
    assert local.message == docker.message == "model directory /m does not exist"
    log.write_text("Segmentation fault\n")
    local, docker = _both(None, 3, {"ExitCode": 3}, log)
    assert local.message == docker.message == "the harness exited with status 3"


def test_what_the_wait_loop_did_comes_first_in_both_runners(tmp_path):
    log = tmp_path / "container.log"
    log.write_text("x\n")
    for end in ("timeout", "stalled", "interrupted"):
        local, docker = _both(end, -15, {"ExitCode": 143}, log)
        assert local.end == docker.end == end
        assert docker.message.startswith(local.message)
    local, docker = _both("timeout", -15, {"ExitCode": 143}, log)
    assert local.message == "exceeded its timeout of 10 s"
    assert docker.message == "exceeded its timeout of 10 s; stopped and removed"
    local, docker = _both("timeout", -15, {"ExitCode": 143}, log, note="load too long")
    assert local.message == "load too long"
    assert docker.message == "load too long; stopped and removed"
    assert _both(None, 0, {"ExitCode": 0}, log)[1].end == "ok"
    oom = _both(None, -9, {"ExitCode": 137, "OOMKilled": True}, log)[1]
    assert oom.end == "oom" and "OOM killer" in oom.message


def test_a_harness_stopped_from_outside_reads_alike_in_both_runners(tmp_path):
    # The harness catches SIGTERM (and SIGINT), finalises its files and exits 130 itself,
    # whatever ran it: a `kill` of the local harness, a `docker stop` of its container.
    log = tmp_path / "container.log"
    log.write_text("measuring\nerror: interrupted\n")
    local, docker = _both(None, 130, {"ExitCode": 130}, log)
    assert local.end == docker.end, (local, docker)
    assert "SIGINT" not in docker.message, docker.message  # it was a SIGTERM
