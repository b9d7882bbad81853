"""Config and result schema shared by the harness and the orchestrator."""

from harness.schema.config import (
    BUILTIN_DATASETS,
    BaselineConfig,
    DecoderConfig,
    EnergyConfig,
    ExperimentConfig,
    LatencyConfig,
    LoraConfig,
    PyTorchConfig,
    TensorRtConfig,
    VllmConfig,
    WarmupConfig,
)
from harness.schema.messages import Problem, describe, did_you_mean
from harness.schema.result import SCHEMA_VERSION, ErrorRecord, ExperimentResult

__all__ = [
    "BUILTIN_DATASETS",
    "SCHEMA_VERSION",
    "BaselineConfig",
    "DecoderConfig",
    "EnergyConfig",
    "ErrorRecord",
    "ExperimentConfig",
    "ExperimentResult",
    "LatencyConfig",
    "LoraConfig",
    "Problem",
    "PyTorchConfig",
    "TensorRtConfig",
    "VllmConfig",
    "WarmupConfig",
    "describe",
    "did_you_mean",
]
