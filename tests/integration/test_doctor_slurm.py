"""``llem doctor --runner slurm`` against a real Slurm cluster (tests/slurm/single-node.sh).

Without Slurm's client commands the test skips, unless LLEM_REQUIRE_SLURM=1 (CI), where a skip
would prove nothing and becomes a failure.
"""

from __future__ import annotations

import os
import shutil

import pytest
from llem_testkit.cli import llem


def row(stdout: str, check: str) -> tuple[str, str]:
    """(status, detail) of ``check``'s row in doctor's table, the detail's lines joined."""
    lines = stdout.splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith(f"│ {check} ")]
    assert starts, f"no row {check!r} in:\n{stdout}"
    cells = [lines[starts[0]].split("│")[1:-1]]
    for line in lines[starts[0] + 1:]:
        parts = line.split("│")[1:-1]
        if len(parts) != 4 or parts[0].strip():
            break
        cells.append(parts)
    return cells[0][1].strip(), " ".join(part[2].strip() for part in cells).strip()


@pytest.mark.slow
def test_doctor_reports_the_real_controller_partition_and_storage(tmp_path):
    if shutil.which("sbatch") is None:
        if os.environ.get("LLEM_REQUIRE_SLURM") == "1":
            pytest.fail("LLEM_REQUIRE_SLURM=1 but sbatch is not on PATH (no Slurm here)")
        pytest.skip("no Slurm here: sbatch is not on PATH (tests/slurm/single-node.sh starts "
                    "a one-node cluster; LLEM_REQUIRE_SLURM=1 makes this skip a failure)")
    output = tmp_path / "results"
    # The probe job may queue behind other jobs for up to 120 s before it counts as not checked.
    done = llem("doctor", "--runner", "slurm", "--output", str(output), cwd=tmp_path,
                timeout=240)
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode in (0, 1), done.stderr  # 1: a check outside Slurm's (GPUs, images)
    assert row(done.stdout, "runner") == ("ok", "slurm (from --runner)")
    status, controller = row(done.stdout, "slurm controller")
    assert status == "ok" and controller.endswith(" is UP"), controller
    status, debug = row(done.stdout, "slurm partition debug")
    assert status == "ok" and "GPUs/node:" in debug and ", up, time limit" in debug, debug
    assert row(done.stdout, "slurm accounting")[0] == "ok"
    assert row(done.stdout, "slurm exec mode")[1].startswith("docker (the default")
    status, storage = row(done.stdout, "slurm shared storage")
    assert status == "ok", storage
    assert ("a job read a file written here and wrote one back" in storage
            or "not checked, the probe job did not run within" in storage), storage
    assert [path.name for path in output.iterdir()] == []  # the probe cleaned up after itself
