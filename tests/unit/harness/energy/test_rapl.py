"""The host's RAPL energy through powercap, against a fake powercap tree with known true energy:
package and DRAM totals, wrap-around, zones that vanish or cannot be read, no powercap at all."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.energy.rapl import HostEnergyMeter, discover_zones, forward_step_uj
from harness.testing import FakePowercap

RANGE_UJ = 262_143_328_850  # a common Intel package range (~262 kJ)
DRAM_RANGE_UJ = 65_712_999_613
ROOT_DIR = Path(__file__).resolve().parents[4]


def two_socket_tree(root: Path) -> FakePowercap:
    """Two packages, each with a DRAM subzone; package 0 also has a core subzone."""
    tree = FakePowercap(root)
    tree.add_zone("intel-rapl:0", "package-0", RANGE_UJ, energy_uj=1_000_000)
    tree.add_zone("intel-rapl:0:0", "core", RANGE_UJ, energy_uj=5)
    tree.add_zone("intel-rapl:0:1", "dram", DRAM_RANGE_UJ, energy_uj=7)
    tree.add_zone("intel-rapl:1", "package-1", RANGE_UJ, energy_uj=123_456_789)
    tree.add_zone("intel-rapl:1:0", "dram", DRAM_RANGE_UJ, energy_uj=0)
    return tree


def test_package_and_dram_totals_are_the_true_energy(tmp_path):
    tree = two_socket_tree(tmp_path)
    meter = HostEnergyMeter.open(tmp_path)
    start = meter.mark()
    tree.consume("intel-rapl:0", 150.25)
    tree.consume("intel-rapl:0:0", 90.0)
    tree.consume("intel-rapl:0:1", 12.5)
    tree.consume("intel-rapl:1", 140.0)
    tree.consume("intel-rapl:1:0", 11.0)
    host, warnings = meter.between(start, meter.mark())
    assert host.method == "rapl_powercap" and host.null_reason is None and warnings == []
    assert host.cpu_package_energy_j == pytest.approx(290.25)  # core is part of package-0
    assert host.dram_energy_j == pytest.approx(23.5)
    assert [(z.zone, z.name, z.energy_j) for z in host.zones] == [
        ("intel-rapl:0", "package-0", pytest.approx(150.25)),
        ("intel-rapl:0:0", "core", pytest.approx(90.0)),
        ("intel-rapl:0:1", "dram", pytest.approx(12.5)),
        ("intel-rapl:1", "package-1", pytest.approx(140.0)),
        ("intel-rapl:1:0", "dram", pytest.approx(11.0)),
    ]


def test_the_nested_tree_a_container_gets_reads_the_same(tmp_path, monkeypatch):
    """Docker masks /sys/devices/virtual/powercap; the runner binds its intel-rapl tree."""
    tree = two_socket_tree(tmp_path)
    monkeypatch.setenv("LLEM_POWERCAP_ROOT", str(tmp_path / "intel-rapl"))
    meter = HostEnergyMeter.open()
    start = meter.mark()
    tree.consume("intel-rapl:1", 3.0)
    tree.consume("intel-rapl:0:1", 1.0)
    host, _ = meter.between(start, meter.mark())
    assert [z.zone for z in host.zones] == ["intel-rapl:0", "intel-rapl:0:0", "intel-rapl:0:1",
                                            "intel-rapl:1", "intel-rapl:1:0"]
    assert (host.cpu_package_energy_j, host.dram_energy_j) == pytest.approx((3.0, 1.0))


def test_a_wrap_gives_max_minus_start_plus_end(tmp_path):
    tree = FakePowercap(tmp_path)
    tree.add_zone("intel-rapl:0", "package-0", RANGE_UJ, energy_uj=RANGE_UJ - 2_000_000)
    meter = HostEnergyMeter.open(tmp_path)
    start = meter.mark()
    tree.consume("intel-rapl:0", 5.0)
    assert tree.counter_uj("intel-rapl:0") == 3_000_000  # the counter went back to small
    host, _ = meter.between(start, meter.mark())
    assert host.cpu_package_energy_j == pytest.approx(((RANGE_UJ - (RANGE_UJ - 2_000_000))
                                                       + 3_000_000) / 1e6)
    assert host.cpu_package_energy_j == pytest.approx(5.0)
    assert host.dram_energy_j is None  # no DRAM zone exposed: null, not 0


def test_reads_between_the_edges_count_every_wrap(tmp_path):
    """1.5 ranges of energy in the window: only the intermediate reads can see both wraps."""
    tree = FakePowercap(tmp_path)
    tree.add_zone("intel-rapl:0", "package-0", 1_000_000, energy_uj=900_000)
    meter = HostEnergyMeter.open(tmp_path)
    start = meter.mark()
    for _ in range(5):
        tree.consume("intel-rapl:0", 0.3)
        meter.poll()
    host, warnings = meter.between(start, meter.mark())
    assert host.cpu_package_energy_j == pytest.approx(1.5) and warnings == []


def test_the_thread_reads_between_the_edges(tmp_path):
    tree = FakePowercap(tmp_path)
    tree.add_zone("intel-rapl:0", "package-0", 1_000_000, energy_uj=800_000)
    with HostEnergyMeter.open(tmp_path, poll_s=0.005) as meter:
        start = meter.mark()
        for _ in range(6):
            tree.consume("intel-rapl:0", 0.25)
            reads = meter.reads
            deadline = time.monotonic() + 10
            while meter.reads < reads + 2 and time.monotonic() < deadline:
                time.sleep(0.001)  # wait until the thread has read this step
        host, _ = meter.between(start, meter.mark())
    assert host.cpu_package_energy_j == pytest.approx(1.5)


def test_a_reset_is_not_energy(tmp_path):
    tree = FakePowercap(tmp_path)
    tree.add_zone("intel-rapl:0", "package-0", RANGE_UJ, energy_uj=50_000_000)
    meter = HostEnergyMeter.open(tmp_path)
    start = meter.mark()
    (tmp_path / "intel-rapl:0" / "energy_uj").write_text("1000\n")  # driver reloaded
    host, warnings = meter.between(start, meter.mark())
    assert host.method == "rapl_powercap" and host.cpu_package_energy_j is None
    assert [w.code for w in warnings] == ["host_energy_incomplete"]
    assert "counter reset from 50000000 to 1000 uJ" in warnings[0].message


def test_a_zone_that_disappears_mid_run_is_null_and_said(tmp_path):
    tree = two_socket_tree(tmp_path)
    meter = HostEnergyMeter.open(tmp_path)
    start = meter.mark()
    tree.consume("intel-rapl:0", 10.0)
    tree.consume("intel-rapl:1", 20.0)
    meter.poll()
    shutil.rmtree(tree.zone_dir("intel-rapl:1:0"))
    meter.poll()
    host, warnings = meter.between(start, meter.mark())
    assert host.cpu_package_energy_j == pytest.approx(30.0)
    assert host.dram_energy_j is None  # one DRAM zone unknown: no total pretending otherwise
    assert [z.energy_j for z in host.zones if z.zone == "intel-rapl:0:1"] == [0.0]
    assert [w.code for w in warnings] == ["host_energy_incomplete"]
    assert "intel-rapl:1:0 (dram)" in warnings[0].message
    assert "intel-rapl:1:0/energy_uj: missing" in warnings[0].message


def test_a_zone_unreadable_for_a_while_does_not_join_its_reads(tmp_path):
    """Energy across a failed read is unknown (a wrap may hide in it), even if reads resume."""
    tree = FakePowercap(tmp_path)
    tree.add_zone("intel-rapl:0", "package-0", RANGE_UJ)
    meter = HostEnergyMeter.open(tmp_path)
    start = meter.mark()
    counter = tree.zone_dir("intel-rapl:0") / "energy_uj"
    counter.unlink()
    meter.poll()
    tree.consume("intel-rapl:0", 1.0)
    host, _ = meter.between(start, meter.mark())
    assert host.cpu_package_energy_j is None
    later = meter.mark()
    tree.consume("intel-rapl:0", 2.0)
    assert meter.between(later, meter.mark())[0].cpu_package_energy_j == pytest.approx(2.0)


def test_no_powercap_at_all_is_null_with_the_path(tmp_path):
    meter = HostEnergyMeter.open(tmp_path / "absent")
    host, warnings = meter.between(meter.mark(), meter.mark())
    assert host.method is None and host.cpu_package_energy_j is None and host.zones == []
    assert host.null_reason == (f"{tmp_path / 'absent'}: missing (no powercap interface on this "
                                "machine or in this container)")
    assert [w.code for w in warnings] == ["host_energy_unavailable"]
    assert host.null_reason in warnings[0].message


def test_powercap_without_rapl_zones_says_so(tmp_path):
    (tmp_path / "dtpm").mkdir()
    zones, problems = discover_zones(tmp_path)
    assert zones == [] and problems == [f"{tmp_path}: no intel-rapl zone (the CPU or kernel "
                                        "exposes no RAPL)"]


def test_wrap_arithmetic():
    assert forward_step_uj(10, 30, 100) == 20
    assert forward_step_uj(90, 5, 100) == 15  # (100 - 90) + 5
    assert forward_step_uj(40, 5, 100) is None  # would be 65: more than half the range


PERMISSION_SCRIPT = """
import json, sys
from pathlib import Path
from harness.energy.rapl import HostEnergyMeter
meter = HostEnergyMeter.open(Path(sys.argv[1]))
host, warnings = meter.between(meter.mark(), meter.mark())
print(json.dumps([host.model_dump(), [w.model_dump() for w in warnings]]))
"""


def read_without_file_permissions(root: Path) -> tuple[dict, list[dict]]:
    """Open the meter as a process that file permissions apply to, as an unprivileged user.

    As root (CI containers), the process is run without the capabilities that override file
    permissions, so a mode-0400 energy_uj denies it exactly as the kernel denies a user.
    """
    command = [sys.executable, "-c", PERMISSION_SCRIPT, str(root)]
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root without setpriv: file permissions cannot be applied")
        drop = "-dac_override,-dac_read_search"
        command = [setpriv, f"--inh-caps={drop}", f"--bounding-set={drop}", *command]
    env = {**os.environ, "PYTHONPATH": str(ROOT_DIR)}
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=True)
    host, warnings = json.loads(done.stdout)
    return host, warnings


def test_a_root_only_counter_is_null_and_says_permission_denied(tmp_path):
    tree = two_socket_tree(tmp_path)
    for zone in ("intel-rapl:0", "intel-rapl:0:0", "intel-rapl:0:1", "intel-rapl:1",
                 "intel-rapl:1:0"):
        (tree.zone_dir(zone) / "energy_uj").chmod(0o000)  # the kernel's 0400 root:root
    host, warnings = read_without_file_permissions(tmp_path)
    assert host["method"] is None and host["cpu_package_energy_j"] is None
    assert f"{tmp_path}/intel-rapl:0/energy_uj: permission denied" in host["null_reason"]
    assert "CVE-2020-8694" in host["null_reason"]
    assert [w["code"] for w in warnings] == ["host_energy_unavailable"]


def test_one_root_only_package_nulls_the_package_total(tmp_path):
    tree = two_socket_tree(tmp_path)
    (tree.zone_dir("intel-rapl:1") / "energy_uj").chmod(0o000)
    host, warnings = read_without_file_permissions(tmp_path)
    assert host["method"] == "rapl_powercap"
    assert host["cpu_package_energy_j"] is None  # package-0 alone is not the CPU's energy
    assert host["dram_energy_j"] == 0.0
    assert [w["code"] for w in warnings] == ["host_energy_incomplete"]
    assert "intel-rapl:1 (package-1)" in warnings[0]["message"]
    assert "permission denied" in warnings[0]["message"]


def test_distinct_looking_per_die_zones_null_the_package_total_with_a_reason(tmp_path):
    """Per-die zones whose counters differ may be distinct dies (Cascade Lake-AP) or one
    mirrored socket counter read at slightly different instants: null with a reason, never a
    sum that may be doubled; each die's own energy is still reported."""
    tree = FakePowercap(tmp_path)
    tree.add_zone("intel-rapl:0", "package-0-die-0", RANGE_UJ, energy_uj=1_000_000)
    tree.add_zone("intel-rapl:1", "package-0-die-1", RANGE_UJ, energy_uj=9_000_000)
    meter = HostEnergyMeter.open(tmp_path)
    start = meter.mark()
    tree.consume("intel-rapl:0", 40.0)
    tree.consume("intel-rapl:1", 60.0)
    host, warnings = meter.between(start, meter.mark())
    assert host.cpu_package_energy_j is None
    assert [z.energy_j for z in host.zones] == [pytest.approx(40.0), pytest.approx(60.0)]
    assert "per-die" in (host.null_reason or "")
    assert [w.code for w in warnings] == ["host_package_energy_unknown"]


def test_no_dram_zone_gives_a_reason_for_the_null_dram_energy(tmp_path):
    tree = FakePowercap(tmp_path)
    tree.add_zone("intel-rapl:0", "package-0", RANGE_UJ)
    meter = HostEnergyMeter.open(tmp_path)
    start = meter.mark()
    tree.consume("intel-rapl:0", 10.0)
    host, warnings = meter.between(start, meter.mark())
    assert host.cpu_package_energy_j == pytest.approx(10.0)
    assert host.dram_energy_j is None
    assert "no dram zone" in (host.null_reason or "") and "intel-rapl:0 (package-0)" in (
        host.null_reason or "")
    assert warnings == []


def test_a_malformed_range_nulls_the_zone_and_names_the_content(tmp_path):
    tree = FakePowercap(tmp_path)
    tree.add_zone("intel-rapl:0", "package-0", RANGE_UJ)
    (tree.zone_dir("intel-rapl:0") / "max_energy_range_uj").write_text("0\n")
    meter = HostEnergyMeter.open(tmp_path)
    start = meter.mark()
    tree.consume("intel-rapl:0", 10.0)
    host, warnings = meter.between(start, meter.mark())
    assert host.cpu_package_energy_j is None and host.zones[0].energy_j is None
    assert [w.code for w in warnings] == ["host_energy_incomplete"]
    assert "max_energy_range_uj: not a positive integer ('0')" in warnings[0].message
