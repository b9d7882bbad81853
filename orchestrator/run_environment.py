"""The measurement-relevant environment of a run: what must match for runs to be pooled.

Two runs of one configuration (one measurement config hash) are cycles of one measurement only
when they ran on the same software and hardware that decide the figures: the runner, the
container image (Docker), the harness version, the backend's library versions (cuDNN
included), the Python version, and the GPU models and driver when there are GPUs. Everything
else the result's ``environment`` records (host name, CPU count, RAM, OS string, determinism
settings) is context, not identity. ``docs/studies.md`` states the same definition.
"""

from __future__ import annotations

import hashlib

from pydantic import BaseModel, ConfigDict, Field

from harness.schema.result import ExperimentResult


class RunEnvironment(BaseModel):
    """What a run measured on, as far as pooling it with other cycles is concerned."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    runner: str = Field(description="What started the harness: local or docker.")
    image_id: str | None = Field(None, description="Docker image id; null for local runs.")
    image_digest: str | None = Field(
        None, description="Repository digest of that image, where it has one.")
    harness_version: str = Field(description="llem version of the harness that ran.")
    backend_versions: dict[str, str] = Field(
        default_factory=dict, description="Backend library versions by name (cudnn included).")
    python: str = Field(description="Python version the harness ran on.")
    gpu_models: list[str] = Field(
        default_factory=list, description="Product name of each measured GPU, in order.")
    driver_version: str | None = Field(None, description="NVIDIA driver version, with GPUs.")

    @classmethod
    def of(cls, result: ExperimentResult) -> RunEnvironment:
        """The measurement-relevant part of ``result``'s runner and environment."""
        environment = result.environment
        versions = dict(environment.backend_versions)
        if environment.cudnn_version is not None:
            versions["cudnn"] = environment.cudnn_version
        return cls(runner=result.runner, image_id=environment.container_image_id,
                   image_digest=environment.container_image_digest,
                   harness_version=environment.harness_version,
                   backend_versions=dict(sorted(versions.items())), python=environment.python,
                   gpu_models=[gpu.name for gpu in environment.gpus],
                   driver_version=environment.driver_version)

    def key(self) -> str:
        """A stable text form: equal keys, equal environments."""
        return self.model_dump_json()

    def short_id(self) -> str:
        """First 12 hex digits of the SHA-256 of `key`: ``environment_id`` in results.parquet.

        Rows with one id are the runs ``stats.json`` pools (with one configuration hash).
        """
        return hashlib.sha256(self.key().encode()).hexdigest()[:12]

    def differences(self, other: RunEnvironment) -> list[str]:
        """One ``field: this vs other`` line per field that differs, in field order."""
        mine, theirs = self.model_dump(), other.model_dump()
        return [f"{name} {_shown(mine[name])} vs {_shown(theirs[name])}"
                for name in type(self).model_fields if mine[name] != theirs[name]]


def _shown(value: object) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} {v}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(str(item) for item in value) + "]"
    return "none" if value is None else str(value)
