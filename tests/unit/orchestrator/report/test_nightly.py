"""Nightly bookkeeping: which earlier night is compared, retention, and no two at once."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from llem_testkit.cli import llem
from llem_testkit.runners import ResultWriter
from llem_testkit.studies import write

from harness.errors import ConfigError
from orchestrator import run_study
from orchestrator.report.nightly import (
    comparable,
    find_previous,
    nightly_dirs,
    nightly_lock,
    previous_nightly,
    prune,
)
from orchestrator.summary import StudySummary


def night(root: Path, tmp_path: Path, fail: tuple[str, ...] = (), sweep: str = "") -> Path:
    path = write(tmp_path, "name: nightly\nmodel: m\nbackend: pytorch\n"
                 "execution: {n_cycles: 2, config_gap_s: 0, cycle_gap_s: 0}\n" + sweep)
    _, study_dir = run_study(path, ResultWriter(fail=fail), output=root, no_gaps=True)
    return study_dir


def renamed(study_dir: Path, stamp: str) -> Path:
    """Give a night a fixed UTC stamp, so that the order of nights is the test's."""
    target = study_dir.with_name(f"nightly_{stamp}")
    study_dir.rename(target)
    return target


def started_at(study_dir: Path, when: str) -> None:
    """Set when a night started (its manifest's created_at), as a night run then would."""
    path = study_dir / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["created_at"] = when
    path.write_text(json.dumps(manifest))


def test_the_newest_earlier_comparable_night_is_compared_and_an_empty_one_skipped(tmp_path):
    # A night where one run failed is still compared with (its failed configuration is only
    # in one study); a night where every run failed has nothing to compare with: skipped.
    root = tmp_path / "nightly"
    first = renamed(night(root, tmp_path), "20261101T023000Z")
    partial = renamed(night(root, tmp_path, fail=("001_pytorch_c2",)), "20261102T023000Z")
    empty = renamed(night(root, tmp_path, fail=("001_pytorch_c1", "001_pytorch_c2")),
                    "20261103T023000Z")
    tonight = renamed(night(root, tmp_path), "20261104T023000Z")
    assert comparable(first) and comparable(partial) and not comparable(empty)
    assert StudySummary.load(partial).failed == 1
    assert previous_nightly(root, tonight) == partial
    assert previous_nightly(root, empty) == partial
    assert previous_nightly(root, first) is None  # the first night has nothing before it
    (root / "notes").mkdir()  # a folder without a manifest is no night
    assert nightly_dirs(root) == [first, partial, empty, tonight]


def test_an_interrupted_night_is_not_compared_with(tmp_path):
    root = tmp_path / "nightly"
    first = renamed(night(root, tmp_path), "20261101T023000Z")
    stopped = renamed(night(root, tmp_path), "20261102T023000Z")
    summary = json.loads((stopped / "summary.json").read_text())
    (stopped / "summary.json").write_text(json.dumps({**summary, "interrupted": True}))
    tonight = renamed(night(root, tmp_path), "20261103T023000Z")
    assert not comparable(stopped)
    assert previous_nightly(root, tonight) == first


def test_nights_are_ordered_by_when_they_started_not_by_folder_name(tmp_path):
    # A folder renamed by hand (or a clock set wrong when it was named) does not move a night.
    root = tmp_path / "nightly"
    older = renamed(night(root, tmp_path), "20261105T023000Z")
    newer = renamed(night(root, tmp_path), "20261101T023000Z")
    tonight = renamed(night(root, tmp_path), "20261106T023000Z")
    for study_dir, when in ((older, "2026-11-01T02:30:00+00:00"),
                            (newer, "2026-11-02T02:30:00+00:00"),
                            (tonight, "2026-11-03T02:30:00+00:00")):
        started_at(study_dir, when)
    assert previous_nightly(root, tonight) == newer
    assert prune(root, keep=2, protect=(tonight, newer)) == [older]


def test_a_night_of_a_changed_study_design_is_not_compared_and_the_output_says_so(tmp_path):
    root = tmp_path / "nightly"
    renamed(night(root, tmp_path), "20261101T023000Z")
    tonight = renamed(night(root, tmp_path, sweep="sweep: {pytorch.batch_size: [1, 2]}\n"),
                      "20261102T023000Z")
    previous = find_previous(root, tonight)
    assert previous.path is None
    assert "no earlier night of this study design" in previous.why_none
    assert "nightly_20261101T023000Z" in previous.why_none


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


def failing_study(tmp_path: Path) -> Path:
    """A study whose every run fails in the local runner: its model has no real tokenizer."""
    model = tmp_path / "model"
    model.mkdir()
    for name in ("config.json", "model.safetensors", "tokenizer.json"):
        (model / name).write_text("{}")
    return write(tmp_path, "name: nightly\nmodel: ./model\nbackend: pytorch\nn: 2\n"
                 "execution: {n_cycles: 1, config_gap_s: 0, cycle_gap_s: 0}\n", name="s.yaml")


def test_a_night_where_every_run_failed_exits_1_compares_nothing_and_still_prunes(tmp_path):
    study = failing_study(tmp_path)
    root = tmp_path / "nightly"
    old = [renamed(night(root, tmp_path), f"202611{day:02d}T023000Z") for day in (1, 2)]
    done = llem("nightly", str(study), "--root", str(root), "--runner", "local", "--keep", "2",
                "-q", cwd=tmp_path, timeout=120)
    assert done.returncode == 1, done.stderr
    assert "no completed run tonight: nothing compared" in done.stdout
    assert "Traceback" not in done.stderr
    (tonight,) = [path for path in nightly_dirs(root) if path not in old]
    assert not (tonight / "comparison.json").exists()
    assert nightly_dirs(root) == [old[1], tonight]  # the oldest pruned; tonight's kept


@pytest.mark.slow
def test_retention_runs_when_the_comparison_is_refused_and_the_exit_is_still_2(
        tiny_model_dir, tmp_path):
    # Last night's stats.json is gone: the comparison is refused (exit 2, naming the file),
    # and --keep still removes the oldest night.
    study = write(tmp_path, f"name: nightly\nmodel: {tiny_model_dir}\nbackend: pytorch\n"
                  "precision: fp32\nn: 2\ninput_len: 8\noutput_len: 4\n"
                  "warmup: {n_warmup: 1, min_seconds: 0}\n"
                  "execution: {n_cycles: 1, config_gap_s: 0, cycle_gap_s: 0}\n", name="s.yaml")
    root = tmp_path / "nightly"
    args = ("nightly", str(study), "--root", str(root), "--runner", "local", "-q")
    first = llem(*args, cwd=tmp_path, timeout=300)
    assert first.returncode == 0, first.stderr[-3000:]
    (last_night,) = nightly_dirs(root)
    oldest = root / "nightly_20200101T000000Z"
    shutil.copytree(last_night, oldest)
    started_at(oldest, "2020-01-01T00:00:00+00:00")
    (last_night / "stats.json").unlink()
    done = llem(*args, "--keep", "2", cwd=tmp_path, timeout=300)
    assert done.returncode == 2, done.stderr[-3000:]
    assert "stats.json" in done.stderr and "Traceback" not in done.stderr
    assert not oldest.exists() and last_night.is_dir() and len(nightly_dirs(root)) == 2
