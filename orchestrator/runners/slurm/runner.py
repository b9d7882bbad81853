"""Slurm runner: each run is one batch job on a real Slurm cluster, over shared storage.

The same contract as the Docker and local runners: the job runs ``python -m harness run
<run-dir>/experiment.json`` on its node (wrapped as ``execution.slurm.exec`` says, see
``script.py``) and writes the run directory, which must be on storage the submitting host and
the nodes share. The study's order, cycles and gaps are kept as on one machine: a run's job is
submitted when the run before it has ended and its gap has passed, so runs never overlap and
every gap is honoured (docs/runners.md says what this costs and what is not guaranteed: two
runs may land on different nodes).

While the job waits in the queue nothing is timed; once it runs, the wait loop shared by every
runner follows its events.jsonl (timeout, stall, load limit). One watcher asks the controller
for every job of the study at once, every ``execution.slurm.poll_s`` seconds; the job's end is
read from Slurm's state (``states.py``). Ctrl-C, a timeout or a stall cancel the job with
``scancel``; so does any crash of the orchestrator's wait.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.environment import IMAGE_ID_ENV
from harness.errors import LlemError
from harness.io import write_json, write_text
from harness.schema.catalog import BY_NAME
from harness.schema.events import JobQueued
from harness.schema.reading import read_model
from harness.schema.run_spec import RunSpec
from orchestrator.runners.base import (
    LOG_NAME,
    EndKind,
    EventCallback,
    EventFollower,
    Runner,
    RunOutcome,
    log_tail,
    runner_failure,
)
from orchestrator.runners.docker.images import image_ref
from orchestrator.runners.docker.plan import (
    HOST_RAPL,
    ContainerPlan,
    MachineSettings,
    plan_container,
)
from orchestrator.runners.session import Session
from orchestrator.runners.slurm import script as scripts
from orchestrator.runners.slurm.client import JobInfo, SlurmClient, SlurmError
from orchestrator.runners.slurm.preflight import slurm_problems
from orchestrator.runners.slurm.states import classify_job, ended, waiting
from orchestrator.study.execution import SlurmConfig

FOLLOW_POLL_S = 0.5
"""How often the run's events.jsonl is read (a file on shared storage, not the controller)."""
CANCEL_WAIT_S = 120.0
"""How long to wait for a cancelled job to end: Slurm's KillWait (30 s by default) and more."""
MISSING_READS = 3
"""Reads in a row in which a submitted job is absent before its end counts as unknown."""
JUST_SUBMITTED_S = 60.0
"""A job submitted less than this long ago may be missing from squeue for a moment."""
CONTROLLER_ERRORS = 5
"""Failed reads of the controller in a row after which the watcher gives up (and the run's job
is cancelled: ``SlurmRunner.run`` never leaves one behind)."""
NEVER_RUNS = frozenset({"PartitionTimeLimit", "PartitionNodeLimit", "PartitionConfig",
                        "BadConstraints", "InvalidAccount", "InvalidQOS",
                        "QOSMaxWallDurationPerJobLimit", "AssocMaxWallDurationPerJobLimit",
                        "QOSMaxGRESPerJob", "AssocMaxGRESPerJob", "QOSMaxCpuPerJobLimit",
                        "AssocMaxCpuPerJobLimit", "QOSMaxMemoryPerJob", "AssocMaxNodePerJobLimit"})
"""Pending reasons that no wait clears (the job asks more than its partition or association
may ever have): the job is cancelled and the run fails with the reason, instead of waiting for
ever, untimed."""
NODE_NOT_AVAILABLE = "ReqNodeNotAvail"
"""Pending reason of a job whose required node is down, drained or reserved."""
JOBS_DIR = ".slurm"
"""Beside the run directories in the study directory: each run's job script and record."""


class NodeUnavailable(SlurmError):
    """A job pinned to a node waits for it, and the node is unavailable."""


def job_record(run_dir: Path) -> Path:
    """Where the Slurm runner records the job of ``run_dir`` (``.json``; the script: ``.sh``)."""
    return run_dir.parent / JOBS_DIR / f"{run_dir.name}.json"


class JobWatcher:
    """One watcher for all of a study's jobs: one ``squeue`` call per period.

    The call costs the same whatever the number of jobs; jobs the controller has forgotten are
    looked up in accounting (``sacct``) where the cluster keeps it.

    Args:
        client: the Slurm commands.
        poll_s: the period (s): a read younger than this is answered from memory.
        clock: monotonic clock (tests inject one).
    """

    def __init__(self, client: SlurmClient, poll_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.client = client
        self.poll_s = poll_s
        self.clock = clock
        self._tracked: set[str] = set()
        self._known: dict[str, JobInfo] = {}
        self._missing: dict[str, int] = {}
        self._read_at: float | None = None
        self._accounting: bool | None = None
        self._errors = 0
        self.read_ok = False
        """Whether the last read reached the controller (a failed one answers from memory)."""
        self.positions: dict[str, int] = {}

    def track(self, job_id: str) -> bool:
        """Follow ``job_id`` from now on; False when it was followed already."""
        if job_id in self._tracked:
            return False
        self._tracked.add(job_id)
        self._read_at = None  # the next read asks the controller
        return True

    def forget(self, job_id: str) -> None:
        """Stop following ``job_id``."""
        self._tracked.discard(job_id)
        self._known.pop(job_id, None)
        self._missing.pop(job_id, None)

    def state(self, job_id: str, fresh: bool = False) -> JobInfo | None:
        """The job as last read (re-read when older than the period, or ``fresh``)."""
        now = self.clock()
        if fresh or self._read_at is None or now - self._read_at >= self.poll_s:
            try:
                self.refresh()
                self._errors = 0
                self.read_ok = True
            except SlurmError:
                # A controller busy for a moment (a timeout, a refused connection) is asked
                # again next period; only several failures in a row stop the study.
                self.read_ok = False
                self._errors += 1
                if self._errors >= CONTROLLER_ERRORS:
                    raise
            self._read_at = now
        return self._known.get(job_id)

    def gone(self, job_id: str) -> bool:
        """True once the job was absent from the controller and accounting for a few reads."""
        return self._missing.get(job_id, 0) >= MISSING_READS

    def refresh(self) -> None:
        """Read every tracked job at once."""
        listed, pending = self.client.jobs_and_queue(self._tracked)
        missing = self._tracked - set(listed)
        if missing and self.accounting():
            listed.update(self.client.finished(missing))
        for job_id in self._tracked:
            if job_id in listed:
                self._known[job_id] = listed[job_id]
                self._missing.pop(job_id, None)
            else:
                self._missing[job_id] = self._missing.get(job_id, 0) + 1
        self.positions = pending

    def accounting(self) -> bool:
        """Whether the cluster keeps accounting (asked once)."""
        if self._accounting is None:
            self._accounting = self.client.accounting()
        return self._accounting


class SlurmRunner(Runner):
    """Runs each experiment as one Slurm batch job.

    Args:
        slurm: the study's ``execution.slurm`` settings.
        image: one image for every backend (``--image``), for exec docker, pyxis.
        client: the Slurm commands (tests inject one).
        machine: the submitting host's settings for the container plan (exec docker, pyxis,
            apptainer).
    """

    name = "slurm"

    def __init__(self, slurm: SlurmConfig | None = None, image: str | None = None,
                 client: SlurmClient | None = None,
                 machine: MachineSettings | None = None) -> None:
        super().__init__()
        self.slurm = slurm or SlurmConfig()
        self.image_override = image or self.slurm.image
        self.client = client or SlurmClient()
        # on the runner's clock: the wait loop and the watcher's period agree (tests set one)
        self.watcher = JobWatcher(self.client, self.slurm.poll_s, clock=lambda: self.clock())
        self._machine = machine
        self.session = Session.current()
        self.output_root: Path | None = None
        """Where the study directory goes, for the shared-storage check (set by the CLI)."""
        self._last_detached: dict[int, str] = {}
        """The job each lane's next job depends on (the last submitted to the lane)."""
        self._tail_submitted: dict[int, float] = {}
        """When that job was submitted (the newest live job of a lane is its chain's tail)."""
        self.lanes = self.slurm.lane_count

    @property
    def python(self) -> str:
        """The interpreter the jobs run with exec local."""
        return self.slurm.python or sys.executable

    def harness_gpus(self, requested: list[int] | None) -> list[int] | None:
        """None: the job's allocation decides, and the harness maps what it sees by UUID."""
        return None

    def image_for(self, backend: str) -> str:
        """The image that serves ``backend`` on the nodes (exec docker, pyxis)."""
        if self.image_override:
            return self.image_override
        entry = BY_NAME[backend]
        if not self._needs_gpu(backend) and entry.cpu_image:
            return image_ref(entry.cpu_image)
        return image_ref(entry.image)

    def _needs_gpu(self, backend: str) -> bool:
        """Whether the run's job allocates GPUs (``execution.slurm.gpus_per_run``)."""
        return self.slurm.gpus_per_run > 0

    def preflight(self, backends: set[str] | None = None,
                  gpus: list[int] | None = None) -> list[str]:
        """The controller answers, the settings fit the cluster, the storage is shared."""
        return slurm_problems(self, backends or set(), gpus)

    def run(self, run_dir: Path, timeout_s: float | None, on_event: EventCallback,
            gpus: list[int] | None = None) -> RunOutcome:
        """Submit ``run_dir``'s job, follow it to its end and classify it.

        The run directory gets exactly the files it gets under the other runners; the job's
        script and record (id, options) go to ``<study>/.slurm/<run-id>.{sh,json}``.
        """
        run_dir = run_dir.resolve()
        try:
            job_id = self._submit(run_dir, timeout_s, node=self._node(0))
        except LlemError as error:  # refused: this run failed, and so would the next ones
            return runner_failure(error, run_dir / LOG_NAME, fatal=True)
        return self._follow_to_end(job_id, run_dir, timeout_s, on_event)

    detachable = True
    host_gpus = False

    def submit_detached(self, run_dir: Path, timeout_s: float | None,
                        delay_s: float = 0.0, lane: int = 0) -> str:
        """Submit without waiting; return the job id.

        The job starts after the job this runner submitted last to the same ``lane``
        (``afterany``), on the lane's node when ``nodes`` are named, and waits ``delay_s`` in
        its own allocation first (the gap before the run).
        """
        run_dir = run_dir.resolve()
        job_id = self._submit(run_dir, timeout_s, after=self._last_detached.get(lane),
                              delay_s=delay_s, node=self._node(lane), lane=lane)
        self._last_detached[lane] = job_id
        self._tail_submitted[lane] = time.time()
        return job_id

    def _node(self, lane: int) -> str | None:
        """The node a lane's jobs are pinned to (``execution.slurm.nodes``), or None."""
        nodes = self.slurm.nodes
        return nodes[lane % len(nodes)] if nodes else None

    def adopt(self, run_dir: Path, timeout_s: float | None,
              on_event: EventCallback) -> RunOutcome | None:
        """Follow the job an earlier invocation submitted for ``run_dir``, or read its end.

        The job of a ``--detach`` or of an orchestrator that died. None when the run has no
        job, or Slurm no longer knows it and it left no result: the run starts anew.
        """
        run_dir = run_dir.resolve()
        found = self._recorded_job(run_dir)
        if found is None:
            found = self._unrecorded_job(run_dir)
        if found is None:
            return None
        record, job = found
        limit = str(record.get("time_limit", "?"))
        if job is None:
            if (run_dir / "result.json").is_file():  # ended, and left its result
                return RunOutcome("ok", 0)
            return None
        if ended(job):
            return classify_job(None, job, run_dir / LOG_NAME, timeout_s=timeout_s,
                                stop_note="", limit=limit)
        return self._follow_to_end(job.job_id, run_dir, timeout_s, on_event, limit=limit)

    def alive(self, run_dir: Path) -> bool:
        """Whether the job recorded for ``run_dir`` is still queued or running."""
        found = self._recorded_job(run_dir.resolve())
        job = found[1] if found is not None else None
        return job is not None and not ended(job)

    def _unrecorded_job(self, run_dir: Path) -> tuple[dict[str, Any], JobInfo] | None:
        """A live job of this run whose record was never written, found by its comment.

        The orchestrator died while sbatch answered. Any older such job is cancelled.
        """
        comment = job_comment(run_dir)
        live = sorted((job for job in self.client.live_jobs() if job.comment == comment),
                      key=lambda job: int(job.job_id) if job.job_id.isdigit() else 0)
        if not live:
            return None
        self.client.cancel([job.job_id for job in live[:-1]])
        return {"job_id": live[-1].job_id, "time_limit": "?"}, live[-1]

    def chain_after(self, run_dir: Path, lane: int = 0) -> int | None:
        """Jobs submitted from now on to the lane of ``run_dir``'s live job depend on it.

        The lane is where the job went, not where the plan would deal the run now (the
        study's ``nodes`` or cycles may have changed since): the lane of the node it is pinned
        to, None when that node is no longer one of ``nodes`` (no new job goes there);
        ``lane`` for a job pinned to no node. Of a lane's live jobs, the one submitted last
        is its chain's tail, whatever the order of the calls.
        """
        record = _read_record(job_record(run_dir.resolve()))
        if record is None:
            return None
        node, nodes = record.get("node"), self.slurm.nodes
        if nodes and node:
            if node not in nodes:
                return None
            lane = nodes.index(node)
        elif record.get("lane") is not None and not nodes:
            lane = int(record["lane"]) % self.lanes
        submitted = float(record.get("submitted_at") or 0.0)
        if submitted >= self._tail_submitted.get(lane, float("-inf")):
            self._last_detached[lane] = str(record["job_id"])
            self._tail_submitted[lane] = submitted
        return lane

    def ended_outcome(self, run_dir: Path, timeout_s: float | None) -> RunOutcome | None:
        """How ``run_dir``'s job ended by itself, by Slurm's account.

        None while it is queued or running, or when its end is unknown.
        """
        found = self._recorded_job(run_dir.resolve())
        if found is None or found[1] is None or not ended(found[1]):
            return None
        record, job = found
        return classify_job(None, job, run_dir / LOG_NAME, timeout_s=timeout_s, stop_note="",
                            limit=str(record.get("time_limit", "?")))

    def watch(self, run_dirs: list[Path]) -> None:
        """Follow the jobs of these runs together: one squeue per period answers for all."""
        for run_dir in run_dirs:
            record = _read_record(job_record(run_dir.resolve()))
            if record is not None:
                self.watcher.track(str(record["job_id"]))

    def cancel(self, run_dir: Path) -> None:
        """``scancel`` the job of ``run_dir`` (an ended one is no error).

        The recorded job; without a record (sbatch was interrupted, or its answer lost), the
        live jobs carrying the run's comment.
        """
        record = _read_record(job_record(run_dir.resolve()))
        if record is not None:
            self.client.cancel([str(record["job_id"])])
            return
        comment = job_comment(run_dir.resolve())
        found = [job.job_id for job in self.client.live_jobs() if job.comment == comment]
        if found:
            self.client.cancel(found)

    def new_attempt(self, run_dir: Path) -> None:
        """Forget the job of an earlier attempt: no resume may take it for the new one's."""
        record = job_record(run_dir.resolve())
        record.unlink(missing_ok=True)
        record.with_suffix(".sh").unlink(missing_ok=True)

    def _recorded_job(self, run_dir: Path) -> tuple[dict[str, Any], JobInfo | None] | None:
        """The job record of ``run_dir`` and the job's state now; None without a record."""
        record = _read_record(job_record(run_dir))
        if record is None:
            return None
        job_id = str(record["job_id"])
        added = self.watcher.track(job_id)  # a watched job is answered from the last read
        recent = time.time() - float(record.get("submitted_at") or 0.0) < JUST_SUBMITTED_S
        try:
            return record, self._current(job_id, recent)
        finally:
            if added:
                self.watcher.forget(job_id)

    def _current(self, job_id: str, just_submitted: bool) -> JobInfo | None:
        """The job's state as of the last read (at most a period old), or None.

        None once the controller and accounting do not know it. A job submitted moments ago
        may not be listed yet: it is read again a few times before it counts as unknown.
        """
        job = self.watcher.state(job_id)
        # Absent from a read that failed says nothing: read again (several failures in a row
        # raise). Absent moments after sbatch: read a few times (each read counts every watched
        # job still absent, so this is bounded for all of them at once).
        while job is None and (not self.watcher.read_ok
                               or (just_submitted and not self.watcher.gone(job_id))):
            self.sleep(1.0)
            job = self.watcher.state(job_id, fresh=True)
        return job

    def _submit(self, run_dir: Path, timeout_s: float | None, after: str | None = None,
                delay_s: float = 0.0, node: str | None = None, lane: int = 0) -> str:
        """Write the run's job script and record; submit it; return the job id."""
        spec = read_model(run_dir / "experiment.json", RunSpec)
        limit = scripts.time_limit(self.slurm, timeout_s, delay_s)
        needs_gpu = self._needs_gpu(spec.config.backend)
        text = scripts.delayed(self.job_script(run_dir, spec, needs_gpu), delay_s)
        record = job_record(run_dir)
        write_text(record.with_suffix(".sh"), text)
        options = scripts.sbatch_options(self.slurm, scripts.JobRequest(
            name=f"llem-{spec.run_id}", comment=job_comment(run_dir),
            log=run_dir / LOG_NAME, workdir=Path.cwd(), time_limit=limit,
            gpus=self.slurm.gpus_per_run, node=node))
        if after is not None:
            options.append(f"--dependency=afterany:{after}")
        try:
            job_id = self.client.submit(text, options)
        except SlurmError:
            # A timed-out sbatch may still have queued the job: none may run unfollowed.
            with contextlib.suppress(Exception):
                self.cancel(run_dir)
            raise
        try:
            write_json(record, {"job_id": job_id, "session": self.session.id,
                                "submitted_at": time.time(), "time_limit": limit,
                                "delay_s": delay_s, "options": options, "node": node,
                                "lane": lane})
        except BaseException:
            # A job llem has no record of would run on unfollowed, and a resume would start
            # the run a second time into the same directory.
            with contextlib.suppress(Exception):
                self.client.cancel([job_id])
            raise
        return job_id

    def _follow_to_end(self, job_id: str, run_dir: Path, timeout_s: float | None,
                       on_event: EventCallback, limit: str | None = None) -> RunOutcome:
        """Follow the job until it ends (cancelling it on any way out) and classify it."""
        self.watcher.track(job_id)
        try:
            end, job = self._follow(job_id, run_dir, timeout_s, on_event)
        except NodeUnavailable as gone:  # cancelled: it would wait for its node, untimed
            return RunOutcome("node_failure", None, str(gone), log_tail(run_dir / LOG_NAME),
                              scheduler_cause=True)
        except BaseException:
            # A second Ctrl-C, a controller that went away, a bug: never leave the job behind.
            with contextlib.suppress(Exception):
                self.client.cancel([job_id])
            raise
        finally:
            self.watcher.forget(job_id)
        limit = limit or scripts.time_limit(self.slurm, timeout_s)
        if end is None and job is None and (run_dir / "result.json").is_file():
            return RunOutcome("ok", 0)  # forgotten by the controller, its result written
        return classify_job(end, job, run_dir / LOG_NAME, timeout_s=timeout_s,
                            stop_note=self.stop_note, limit=limit)

    def job_script(self, run_dir: Path, spec: RunSpec, needs_gpu: bool) -> str:
        """The batch script of this run, as ``execution.slurm.exec`` wraps the harness."""
        mode = self.slurm.exec
        if mode == "local":
            host_env = {key: os.environ[key] for key in ("HF_HOME", "HF_HUB_CACHE")
                        if key in os.environ}
            return scripts.local_script(run_dir, spec.run_id, spec.study, self.python,
                                        Path.cwd(), host_env)
        machine = self._machine or MachineSettings.detect()
        plan = plan_container(
            run_dir, spec, self.image_for(spec.config.backend), "", None, self.session,
            # RAPL is bound by the script only where the node has it; HF_TOKEN stays out:
            # runs never download.
            MachineSettings(machine.uid, machine.gid, machine.cwd, machine.hf_cache, {}),
            gpu_ids=None, mem_limit=_docker_memory(self.slurm.mem))
        plan = _without_image_id(plan)
        if mode == "docker":
            return scripts.docker_script(plan, spec.run_id, spec.study, needs_gpu,
                                         str(HOST_RAPL))
        if mode == "apptainer":
            return scripts.apptainer_script(plan, self.slurm.sif or "", spec.run_id,
                                            spec.study, needs_gpu)
        return scripts.pyxis_script(plan, spec.run_id, spec.study)

    def _follow(self, job_id: str, run_dir: Path, timeout_s: float | None,
                on_event: EventCallback) -> tuple[EndKind | None, JobInfo | None]:
        """Wait while the job is queued (untimed), then follow it as every runner does."""
        self.stop_note = ""
        job = self._queued(job_id, run_dir.name, self._pinned_to(run_dir))
        if job is None or ended(job):
            return ("interrupted" if self.stop_requested.is_set() else None), self._final(job_id)
        self._announce(run_dir.name, job)
        self._gap_in_job(job_id, run_dir)
        follower = EventFollower(run_dir / "events.jsonl")
        end = self.supervise(lambda: self._running(job_id), lambda: self._cancel(job_id),
                             timeout_s, follower, on_event, FOLLOW_POLL_S)
        job = self._final(job_id)
        for event in follower.poll():
            on_event(event)
        return end, job

    def _gap_in_job(self, job_id: str, run_dir: Path) -> None:
        """Wait, untimed, while a detached job sleeps its gap before the harness starts.

        Until its first event (or its end, or a stop), bounded by the gap plus a minute.
        """
        record = _read_record(job_record(run_dir)) or {}
        delay_s = float(record.get("delay_s") or 0.0)
        if delay_s <= 0:
            return
        deadline = self.clock() + delay_s + 60.0
        events = run_dir / "events.jsonl"
        while (self.clock() < deadline and not events.exists()
               and not self.stop_requested.is_set()):
            job = self.watcher.state(job_id)
            if job is not None and ended(job):
                return
            self.sleep(1.0)

    def _pinned_to(self, run_dir: Path) -> str | None:
        """The node ``run_dir``'s job was pinned to (``execution.slurm.nodes``), or None."""
        record = _read_record(job_record(run_dir))
        node = record.get("node") if record is not None else None
        return str(node) if node else None

    def _queued(self, job_id: str, run_id: str, node: str | None = None) -> JobInfo | None:
        """The job once it left the queue (running or ended); None if Ctrl-C came first.

        A job pinned to ``node`` that waits because the node is unavailable (down, drained,
        reserved: ``ReqNodeNotAvail``) is cancelled and raises :class:`NodeUnavailable`: it
        could wait for ever, and the run is redone on ``--resume``.
        """
        shown: tuple[str, str, int | None] | None = None
        while True:
            job = self.watcher.state(job_id)
            if job is None and self.watcher.gone(job_id):
                return None
            if job is not None and not waiting(job):
                return job
            if self.stop_requested.is_set():
                self._cancel(job_id)
                return None
            if node is not None and job is not None and job.reason.startswith(NODE_NOT_AVAILABLE):
                self._cancel(job_id)
                raise NodeUnavailable(
                    f"not run: job {job_id} waited for node {node}, which is unavailable "
                    f"({job.reason}); the run is redone on --resume",
                    fix=f"bring {node} back (scontrol update nodename={node} state=resume) or "
                    "leave it out of execution.slurm.nodes, then llem run --resume DIR")
            if job is not None and job.reason in NEVER_RUNS:
                self.client.cancel([job_id])
                error = SlurmError(f"job {job_id} can never start: Slurm holds it for "
                                   f"{job.reason}", fix="fit the job to the partition and the "
                                   "account's limits (execution.slurm: time_limit, "
                                   "gpus_per_run, mem, partition, qos), see sinfo and "
                                   "sacctmgr show qos")
                error.fatal = True  # every later run's job asks the same: the study stops
                raise error
            if job is not None:
                now = (job.state, job.reason, self.watcher.positions.get(job_id))
                if now != shown:
                    shown = now
                    self._announce(run_id, job)
            self.sleep(min(1.0, self.slurm.poll_s))

    def _running(self, job_id: str) -> bool:
        job = self.watcher.state(job_id)
        if job is None:
            return not self.watcher.gone(job_id)
        return not ended(job)

    def _cancel(self, job_id: str) -> None:
        """``scancel`` the job (SIGTERM, then SIGKILL after KillWait) and wait for its end."""
        self.client.cancel([job_id])
        deadline = self.clock() + CANCEL_WAIT_S
        while self.clock() < deadline:
            job = self.watcher.state(job_id, fresh=True)
            if (job is not None and ended(job)) or (job is None and self.watcher.gone(job_id)):
                return
            self.sleep(1.0)

    def _final(self, job_id: str) -> JobInfo | None:
        """The job's final state.

        Read fresh unless the last read shows its end: the wait loop may have ended on the
        run's own events, a period before the controller's.
        """
        job = self.watcher.state(job_id)
        if job is not None and ended(job):
            return job
        for _ in range(MISSING_READS):
            job = self.watcher.state(job_id, fresh=True)
            if job is not None and ended(job):
                return job
            self.sleep(1.0)
        job = self.watcher.state(job_id)
        return job if job is not None and ended(job) else None

    def _announce(self, run_id: str, job: JobInfo) -> None:
        if self.on_study_event is None:
            return
        self.on_study_event(JobQueued(
            run_id=run_id, job_id=job.job_id, state=job.state, reason=job.reason,
            position=self.watcher.positions.get(job.job_id) if waiting(job) else None,
            node=job.node))


def job_comment(run_dir: Path) -> str:
    """The ``--comment`` of a run's job: which study directory and run it belongs to."""
    study = hashlib.sha256(str(run_dir.resolve().parent).encode()).hexdigest()[:12]
    return f"llem:{study}:{run_dir.name}"


def _read_record(path: Path) -> dict[str, Any] | None:
    """A run's job record, None when it has none (or one that cannot be read)."""
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and "job_id" in record else None


def _docker_memory(mem: str | None) -> str | None:
    """Slurm's ``--mem`` (megabytes without a unit) as Docker's ``--memory``."""
    if mem is None:
        return None
    return mem.lower() if mem[-1].isalpha() else f"{mem}m"


def _without_image_id(plan: ContainerPlan) -> ContainerPlan:
    """The plan with the image id left to the node (the script reads it there)."""
    env = {k: v for k, v in plan.environment.items() if k != IMAGE_ID_ENV}
    return dataclasses.replace(plan, environment=env)
