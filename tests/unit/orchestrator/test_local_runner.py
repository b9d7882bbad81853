"""The local runner restricts the harness to the selected GPUs, by UUID, in PCI bus order."""

from __future__ import annotations

from orchestrator.runners.local import LocalRunner

UUIDS = {0: "GPU-aaaa", 1: "GPU-bbbb", 2: "GPU-cccc"}


def runner() -> LocalRunner:
    return LocalRunner(gpu_uuids=lambda indices: [UUIDS[i] for i in indices])


def test_selected_gpus_reach_the_child_by_uuid_in_pci_order(monkeypatch):
    # Before: execution.gpus [1] measured NVML GPU 1 while the child computed on CUDA device 0
    # (its view was never restricted and CUDA_DEVICE_ORDER was dropped).
    monkeypatch.setenv("CUDA_DEVICE_ORDER", "FASTEST_FIRST")
    env = runner()._environment([1])
    assert env["CUDA_VISIBLE_DEVICES"] == "GPU-bbbb"
    assert env["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"
    assert runner().harness_gpus([1]) is None  # the harness maps by UUID, not by index


def test_without_a_selection_the_child_keeps_the_users_view(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2")
    env = runner()._environment(None)
    assert env["CUDA_VISIBLE_DEVICES"] == "2"
    assert env["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"


def test_preflight_names_a_selection_that_does_not_exist():
    def no_gpus(indices):
        from harness.errors import PreflightError

        raise PreflightError(f"execution.gpus is {indices}, but NVML finds no NVIDIA GPU",
                             fix="remove execution.gpus")

    problems = LocalRunner(gpu_uuids=no_gpus).preflight({"pytorch"}, [3])
    assert problems and "execution.gpus is [3]" in problems[0]


def test_runs_stay_offline_whatever_the_host_allows(monkeypatch):
    # The host may be online to fetch models; the harness it starts never downloads.
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    assert runner()._environment(None)["HF_HUB_OFFLINE"] == "1"
