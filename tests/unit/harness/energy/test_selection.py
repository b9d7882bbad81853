"""Which GPUs a run measures: the ones the model computes on, mapped from CUDA to NVML."""

from __future__ import annotations

import os

import pytest

from harness.energy import EnergyMeter, GpuSet, PowerSampler
from harness.energy.selection import (
    candidate_positions,
    narrow_cuda_view,
    parse_visible,
    prove,
    restore_cuda_view,
    select,
)
from harness.errors import PreflightError
from harness.schema.result import GpuBinding, GpuInfo
from harness.testing import FakeClock, FakeGpu

UUIDS = ["GPU-aaaa1111", "GPU-bbbb2222", "GPU-cccc3333", "GPU-dddd4444"]


def infos(names=("H100",) * 4, buses=None) -> list[GpuInfo]:
    buses = buses or [f"00000000:{i + 1:02X}:00.0" for i in range(len(names))]
    return [GpuInfo(index=i, name=name, uuid=UUIDS[i], memory_total_mb=1.0, pci_bus_id=bus)
            for i, (name, bus) in enumerate(zip(names, buses, strict=True))]


def node(clock: FakeClock, powers_w: list[float]) -> GpuSet:
    return GpuSet([FakeGpu([(0.0, power)], index=i, clock=clock,
                           info={"uuid": f"GPU-node-{i}"}) for i, power in enumerate(powers_w)])


def test_unset_gpus_measure_only_the_gpu_the_model_uses_not_the_whole_node():
    # One busy GPU at 450 W and seven idle ones at 70 W, over 60 s: the run's energy is
    # 27,000 J. Summing the node would publish 56,400 J (J/token x2.09).
    clock = FakeClock()
    machine = node(clock, [450.0] + [70.0] * 7)
    selection = select(machine, needed=1, visible=None)
    sampler = PowerSampler(selection.gpus, 100, clock=clock)
    meter = EnergyMeter(selection.gpus, sampler)
    start = meter.mark()
    for _ in range(600):
        clock.advance(0.1)
        sampler.sample_now()
    reading = meter.between(start, meter.mark())
    assert reading.energy_j == pytest.approx(27_000.0)
    assert selection.candidates == 8
    assert [b.nvml_index for b in selection.bindings] == [0]


def test_cuda_order_follows_cuda_visible_devices_not_nvml():
    clock = FakeClock()
    machine = node(clock, [70.0, 70.0, 450.0, 70.0])
    selection = select(machine, needed=1, visible="2,0")
    assert [(b.cuda_index, b.nvml_index, b.uuid) for b in selection.bindings] == [
        (0, 2, "GPU-node-2")]
    assert selection.candidates == 2


def test_visible_devices_by_uuid_and_by_unique_prefix():
    assert candidate_positions(infos(), ["GPU-cccc3333", "GPU-aaaa"], None) == [2, 0]
    # like CUDA, an unresolvable token ends the list
    assert candidate_positions(infos(), ["1", "GPU-zzzz", "3"], None) == [1]
    assert candidate_positions(infos(), [], None) == []
    assert parse_visible(None) is None and parse_visible("") == []


def test_a_mig_device_is_refused_with_the_fix():
    with pytest.raises(PreflightError, match="MIG device") as caught:
        candidate_positions(infos(), ["MIG-1234"], None)
    assert "parent GPU's UUID" in str(caught.value)


def test_runner_restriction_keeps_cuda_order_and_rejects_missing_indices():
    assert candidate_positions(infos(), None, [3, 1]) == [3, 1]
    assert candidate_positions(infos(), ["1", "2"], [2, 3]) == [2]
    with pytest.raises(PreflightError, match=r"GPU index \[7\] not found"):
        candidate_positions(infos(), None, [7])


def test_integer_entries_count_in_pci_bus_order_not_nvml_order():
    # NVML does not promise PCI bus order: here NVML lists the bus-0x41 GPU first
    machine = infos(buses=["00000000:41:00.0", "00000000:01:00.0", "00000000:21:00.0",
                           "00000000:81:00.0"])
    assert candidate_positions(machine, ["0", "1"], None) == [1, 2]
    assert candidate_positions(machine, None, None) == [1, 2, 0, 3]


def test_integer_entries_on_mixed_gpus_need_pci_bus_order():
    mixed = infos(names=("H100", "L4", "H100", "L4"))
    with pytest.raises(PreflightError, match="fastest first") as caught:
        candidate_positions(mixed, ["1"], None, order=None)
    assert "CUDA_DEVICE_ORDER=PCI_BUS_ID" in str(caught.value)
    assert candidate_positions(mixed, ["1"], None, order="PCI_BUS_ID") == [1]
    assert candidate_positions(mixed, ["GPU-bbbb"], None, order=None) == [1]  # UUIDs: fine


def test_engines_get_integer_indices_they_can_parse(monkeypatch):
    # vLLM reads every CUDA_VISIBLE_DEVICES entry with int(): a UUID fails its start-up
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    machine = GpuSet([FakeGpu([(0.0, 100.0)], index=i, clock=FakeClock()) for i in range(4)])
    selection = select(machine, needed=2, visible="GPU-fake-2,GPU-fake-0")
    saved = narrow_cuda_view(selection.bindings, form="index")
    try:
        assert os.environ["CUDA_VISIBLE_DEVICES"] == "2,0"
        assert os.environ["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"
        assert [int(entry) for entry in os.environ["CUDA_VISIBLE_DEVICES"].split(",")] == [
            b.nvml_index for b in selection.bindings]
    finally:
        restore_cuda_view(saved)


def test_multi_device_backends_measure_every_gpu_they_use():
    clock = FakeClock()
    machine = node(clock, [300.0] * 4)
    assert len(select(machine, needed=2, visible=None).gpus) == 2
    assert len(select(machine, needed=None, visible="1,3").gpus) == 2  # device_map auto


def test_too_few_gpus_for_the_backend_is_a_preflight_error():
    clock = FakeClock()
    with pytest.raises(PreflightError, match="computes on 4 GPU.s. but the run may use 2"):
        select(node(clock, [300.0] * 2), needed=4, visible=None)


def test_no_nvidia_gpu_selects_nothing():
    selection = select(GpuSet(), needed=1)
    assert len(selection.gpus) == 0 and selection.bindings == []


def test_cuda_view_is_narrowed_by_uuid_and_restored(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2,3")
    monkeypatch.delenv("CUDA_DEVICE_ORDER", raising=False)
    binding = GpuBinding(cuda_index=0, nvml_index=2, uuid="GPU-cccc3333", pci_index=2)
    saved = narrow_cuda_view([binding])
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "GPU-cccc3333"
    assert os.environ["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"
    restore_cuda_view(saved)
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "0,1,2,3"
    assert "CUDA_DEVICE_ORDER" not in os.environ


def _samples(machine: GpuSet) -> list:
    return [gpu.sample(0.0) for gpu in machine]


def test_proof_by_cuda_uuid_passes_only_on_the_same_devices():
    bindings = [GpuBinding(cuda_index=0, nvml_index=1, uuid="GPU-bbbb2222", pci_index=1)]
    proof = prove(bindings, ["bbbb2222"], [], [], [], [])  # torch omits the "GPU-" prefix
    assert proof.method == "cuda_device_uuid"
    with pytest.raises(PreflightError, match="its energy would be another GPU's"):
        prove(bindings, ["aaaa1111"], [], [], [], [])
    with pytest.raises(PreflightError):
        prove(bindings, [], [], [], [], [])  # the model stayed on the CPU


def test_engine_proof_needs_a_new_process_or_memory_growth_on_every_measured_gpu():
    clock = FakeClock()
    machine = GpuSet([FakeGpu([(0.0, 100.0)], index=i, clock=clock, mem_used_mb=500.0)
                      for i in range(2)])
    bindings = select(machine, needed=2, visible=None).bindings
    before = _samples(machine)
    machine[0].occupy(4_000_000, 60_000.0)  # the engine's worker took GPU 0 only
    after = _samples(machine)
    with pytest.raises(PreflightError, match=r"GPU 1 \(GPU-fake-1\) showed no new compute"):
        prove(bindings, None, before, after, [[], []], [[], []])
    machine[1].occupy(4_000_001, 300.0)
    proof = prove(bindings, None, before, _samples(machine), [[], []], [[], []])
    assert proof.method == "nvml_processes_or_memory"
    assert "grew by 60000 MiB" in proof.evidence[0]
    # a new PID is evidence on its own (inside a container, NVML shows host PIDs)
    proof = prove(bindings, None, before, before, [[], []], [[77], [78]])
    assert "new compute process" in proof.evidence[1]
