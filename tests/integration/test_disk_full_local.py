"""The disk fills up during a real study (local runner, tiny model, a real tmpfs).

No root needed: the tmpfs is mounted in a user and mount namespace (``unshare -rm``) that
``tests/integration/_disk_full_driver.py`` runs in; the test skips where such namespaces are
not allowed. What it shows: a real ENOSPC, met by the harness and then by the host's own
writes, ends `llem run` with one line naming the full filesystem and exit 1; the run in
progress is recorded failed with that reason, the summary is written (from the space llem held
back), the completed run is untouched, and `--resume` after freeing space finishes the study.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.manifest import Manifest
from orchestrator.summary import StudySummary

pytestmark = pytest.mark.slow

DRIVER = Path(__file__).with_name("_disk_full_driver.py")


def _namespaces_allowed() -> str | None:
    if shutil.which("unshare") is None:
        return "unshare is not installed"
    done = subprocess.run(["unshare", "-rm", "true"], capture_output=True, text=True,
                          check=False)
    return None if done.returncode == 0 else f"unshare -rm refused: {done.stderr.strip()}"


def test_a_disk_full_mid_study_is_one_line_a_failed_run_and_a_summary(tiny_model_dir, tmp_path):
    refused = _namespaces_allowed()
    if refused:
        pytest.skip(f"no unprivileged user and mount namespaces here ({refused})")
    study = tmp_path / "s.yaml"
    study.write_text(
        f"name: full\nmodel: {tiny_model_dir}\nbackend: pytorch\nprecision: fp32\nn: 2\n"
        "input_len: 8\noutput_len: 4\nwarmup: {n_warmup: 1, min_seconds: 0}\n"
        "execution: {config_gap_s: 0, timeout_s: 300}\n"
        "sweep:\n  pytorch.batch_size: [1, 2, 3]\n")
    mount, copies, report = tmp_path / "mnt", tmp_path / "copies", tmp_path / "report.json"
    mount.mkdir()
    driven = subprocess.run(["unshare", "-rm", sys.executable, str(DRIVER), str(study),
                             str(mount), str(copies), str(report)], capture_output=True,
                            text=True, timeout=1500, check=False)
    assert driven.returncode == 0, driven.stderr[-3000:]
    found = json.loads(report.read_text())

    stderr = found["stderr"]
    assert found["returncode"] == 1, stderr
    assert "Traceback" not in stderr, stderr
    (line,) = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert line.startswith(f"error: the filesystem mounted at {mount} is full (writing "), line
    assert line.endswith("; the study stopped"), line
    assert (f"fix: free space on {mount}, then continue it with: llem run --resume "
            f"{found['study_dir']}") in stderr

    failed = copies / "failed"
    runs = Manifest.load(failed).runs
    statuses = [r.status for r in runs]
    # The run in progress when the disk filled failed; the study stopped there.
    stopped = statuses.index("failed")
    assert statuses == ["completed"] * stopped + ["failed"] + ["pending"] * (2 - stopped)
    first, broken = runs[0], runs[stopped]
    assert broken.failure is not None
    assert broken.failure.message.startswith(f"the filesystem mounted at {mount} is full")
    summary = StudySummary.model_validate_json((failed / "summary.json").read_text())
    assert summary.counts["failed"] == 1 and not summary.interrupted
    assert [f.run_id for f in summary.failures] == [broken.run_id]
    first_result = (failed / first.run_id / "result.json").read_bytes()
    assert hashlib.sha256(first_result).hexdigest() == found["first_result_sha256"]

    assert found["resumed_returncode"] == 0, found["resumed_stderr"][-3000:]
    resumed = copies / "resumed"
    assert [r.status for r in Manifest.load(resumed).runs] == ["completed"] * 3
    assert (resumed / first.run_id / "result.json").read_bytes() == first_result
