"""The host's writes hit a full disk mid-study: the run is recorded failed, the study stops."""

from __future__ import annotations

import errno
import json
import os

import pytest

import harness.io
from harness.io import DiskFullError
from harness.schema.events import RunFinished
from orchestrator.diskfull import RESERVE_NAME, DiskReserve
from orchestrator.execute import StudyExecution, plan
from orchestrator.manifest import Manifest
from orchestrator.runners.base import Runner, RunOutcome
from orchestrator.study import load_study
from orchestrator.study_dir import new_manifest
from orchestrator.summary import StudySummary


class Disk:
    """Fills up on demand: then every fsync fails with ENOSPC while the reserve exists.

    Giving the reserve back is what makes room again, as on a real filesystem.
    """

    def __init__(self, study_dir):
        self.reserve = study_dir / RESERVE_NAME
        self.full = False
        self.refused = 0
        self._fsync = os.fsync

    def fsync(self, fd):
        if self.full and self.reserve.exists():
            self.refused += 1
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self._fsync(fd)


class FillsTheDisk(Runner):
    """Fails every run; during its second run the disk fills up (the harness is told so)."""

    name = "fills-the-disk"

    def __init__(self, disk, during_run=2):
        super().__init__()
        self.disk = disk
        self.during_run = during_run
        self.started = 0

    def run(self, run_dir, timeout_s, on_event, gpus=None):
        self.started += 1
        if self.started == self.during_run:
            self.disk.full = True
            return RunOutcome("error", 1, "harness exited with status 1")
        return RunOutcome("error", 1, "not run")


@pytest.fixture
def setup(tmp_path, monkeypatch):
    path = tmp_path / "s.yaml"
    path.write_text("model: m\nbackend: pytorch\nexecution: {config_gap_s: 0}\n"
                    "sweep:\n  pytorch.batch_size: [1, 2, 3]\n")
    loaded = load_study(path)
    out = tmp_path / "out"
    out.mkdir()
    disk = Disk(out)
    monkeypatch.setattr(harness.io.os, "fsync", disk.fsync)
    runs = plan(loaded)
    return loaded, out, disk, runs


def test_the_run_in_progress_is_recorded_failed_for_the_full_disk_and_the_study_stops(setup):
    loaded, out, disk, runs = setup
    runner = FillsTheDisk(disk)
    manifest = new_manifest(loaded, runs, runner.name)
    with pytest.raises(DiskFullError) as raised:
        StudyExecution(loaded, out, runner).execute(runs, manifest)
    assert disk.refused >= 1 and runner.started == 2  # the third run never started
    assert f"the filesystem mounted at {raised.value.mount} is full" in str(raised.value)
    first, second, third = Manifest.load(out).runs
    assert (first.status, second.status, third.status) == ("failed", "failed", "pending")
    assert second.failure is not None and second.failure.exit_code == 1
    assert second.failure.message == (f"{raised.value.message}; the run reported: harness "
                                      "exited with status 1")
    summary = StudySummary.model_validate_json((out / "summary.json").read_text())
    assert summary.counts == {"failed": 2, "pending": 1} and summary.interrupted is False
    assert summary.failures[1].message == second.failure.message
    assert not (out / RESERVE_NAME).exists()
    assert not [p for p in out.rglob("*.tmp")]


def test_a_run_whose_experiment_json_does_not_fit_is_recorded_failed(setup):
    loaded, out, disk, runs = setup
    runner = FillsTheDisk(disk, during_run=0)

    def fill_after_first(event):
        if isinstance(event, RunFinished):
            disk.full = True

    manifest = new_manifest(loaded, runs, runner.name)
    with pytest.raises(DiskFullError):
        StudyExecution(loaded, out, runner, fill_after_first).execute(runs, manifest)
    first, second, third = Manifest.load(out).runs
    assert runner.started == 1
    assert (first.status, second.status, third.status) == ("failed", "failed", "pending")
    assert second.failure is not None and "is full (writing" in second.failure.message
    assert "experiment.json" in second.failure.message
    assert json.loads((out / "summary.json").read_text())["counts"]["failed"] == 2


def test_without_room_for_the_reserve_nothing_is_held(tmp_path, monkeypatch):
    def no_room(fd, offset, length):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    reserve = DiskReserve(tmp_path, size_bytes=4096)
    assert reserve.hold() and (tmp_path / RESERVE_NAME).stat().st_size == 4096
    reserve.release()
    monkeypatch.setattr(os, "posix_fallocate", no_room)
    assert reserve.hold() is False
    assert list(tmp_path.iterdir()) == []
