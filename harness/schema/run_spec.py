"""``experiment.json``: the one contract between any runner and the harness.

The host writes it into the run directory; the harness reads it and writes everything else of
the run next to it. Docker, local and any future runner differ only in how they start
``python -m harness run <run-dir>/experiment.json``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from harness.schema.config import ExperimentConfig, Strict
from harness.schema.result import SCHEMA_VERSION, CoolDownRecord


class RunSpec(Strict):
    """One run: a resolved experiment plus where it sits in its study."""

    schema_version: Literal["1"] = SCHEMA_VERSION
    run_id: str = Field(description="Run directory name, e.g. 003_pytorch-bf16-bs8_c1.")
    study: str | None = Field(None, description="Study name, None for a lone experiment.")
    cycle: int = Field(1, ge=1, description="Cycle number (1-based).")
    runner: str = Field("inprocess", description="docker | local | inprocess.")
    gpus: list[int] | None = Field(None, description="NVML indices to measure; None = all.")
    baseline_cache_dir: str | None = Field(
        None, description="Directory shared by a study's runs for cached idle power per GPU."
    )
    engine_cache_dir: str | None = Field(
        None, description="TensorRT-LLM engine cache (mounted read-write into tensorrt runs); "
        "None = LLEM_ENGINE_CACHE or ~/.cache/llem/trt-engines."
    )
    cool_down: CoolDownRecord | None = Field(
        None, description="How the orchestrator's cool-down before this run ended; recorded "
        "in the result's baseline. None for a run not started by a study."
    )
    config: ExperimentConfig
