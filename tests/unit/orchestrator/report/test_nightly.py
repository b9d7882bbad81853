"""Nightly bookkeeping: which earlier night is compared, retention, and no two at once."""

from __future__ import annotations

from pathlib import Path

import pytest
from llem_testkit.runners import ResultWriter
from llem_testkit.studies import write

from harness.errors import ConfigError
from orchestrator import run_study
from orchestrator.report.nightly import (
    completed,
    nightly_dirs,
    nightly_lock,
    previous_nightly,
    prune,
)


def night(root: Path, tmp_path: Path, fail: tuple[str, ...] = ()) -> Path:
    path = write(tmp_path, "name: nightly\nmodel: m\nbackend: pytorch\n"
                 "execution: {n_cycles: 2, config_gap_s: 0, cycle_gap_s: 0}\n")
    _, study_dir = run_study(path, ResultWriter(fail=fail), output=root, no_gaps=True)
    return study_dir


def renamed(study_dir: Path, stamp: str) -> Path:
    """Give a night a fixed UTC stamp, so that the order of nights is the test's."""
    target = study_dir.with_name(f"nightly_{stamp}")
    study_dir.rename(target)
    return target


def test_the_newest_earlier_completed_night_is_compared_and_a_failed_one_skipped(tmp_path):
    root = tmp_path / "nightly"
    first = renamed(night(root, tmp_path), "20261101T023000Z")
    broken = renamed(night(root, tmp_path, fail=("001_pytorch_c2",)), "20261102T023000Z")
    tonight = renamed(night(root, tmp_path), "20261103T023000Z")
    assert completed(first) and not completed(broken)
    assert previous_nightly(root, tonight) == first
    assert previous_nightly(root, first) is None  # the first night has nothing before it
    (root / "notes").mkdir()  # a folder without a manifest is no night
    assert nightly_dirs(root) == [first, broken, tonight]


def test_retention_removes_the_oldest_but_never_the_two_compared(tmp_path):
    root = tmp_path / "nightly"
    nights = [renamed(night(root, tmp_path), f"202611{day:02d}T023000Z") for day in (1, 2, 3, 4)]
    removed = prune(root, keep=2, protect=(nights[3], nights[0]))
    assert removed == [nights[1]]
    assert nightly_dirs(root) == [nights[0], nights[2], nights[3]]


def test_a_second_nightly_on_the_same_root_is_refused_before_it_runs(tmp_path):
    root = tmp_path / "nightly"
    with (nightly_lock(root), pytest.raises(ConfigError, match="another nightly is running"),
          nightly_lock(root)):
        pass
    with nightly_lock(root):  # released: the next night may run
        pass
