"""GPU tests run only where NVML sees an NVIDIA GPU; elsewhere they are skipped, visibly."""

from __future__ import annotations

import pytest

from harness.energy import discover_gpus


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    gpus = discover_gpus()
    present = len(gpus) > 0
    gpus.close()
    if present:
        return
    skip = pytest.mark.skip(reason="no NVIDIA GPU visible to NVML")
    for item in items:
        # the marker, not the keyword: a folder named "gpu" puts "gpu" in every keyword set
        if item.get_closest_marker("gpu") is not None:
            item.add_marker(skip)
