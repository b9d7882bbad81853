"""Run the harness's whole protocol in process on one fake GPU of constant power."""

from __future__ import annotations

from pathlib import Path

from harness.energy import GpuSet
from harness.protocol import ExperimentRun
from harness.schema.result import ExperimentResult
from harness.schema.run_spec import RunSpec
from harness.testing import FakeGpu


def execute_on_fake_gpu(spec: RunSpec, run_dir: Path, power_w: float) -> ExperimentResult:
    """``spec`` measured on one fake compute-capability-9.0 GPU drawing ``power_w`` throughout
    (40 degC), as ``cuda:0``: its true energy is ``power_w`` times any interval."""
    gpu = FakeGpu([(0.0, power_w), (1e6, power_w)], temperature_c=[(0.0, 40.0), (1e6, 40.0)],
                  info={"compute_capability": "9.0"})
    gpus = GpuSet([gpu], driver_version="999.1", cuda_version="12.9")
    return ExperimentRun(spec, run_dir, gpus=gpus, device="cuda:0").execute()
