"""``stats.json``: per configuration, across cycles: mean, median, std, CV and a 95 % BCa CI.

The confidence interval is scipy's BCa bootstrap of the mean (2000 resamples, seeded), given
only with at least 3 cycles; with fewer, ``ci`` is null and ``ci_note`` says why.
"""

from __future__ import annotations

import warnings
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from harness.io import write_json
from harness.schema.result import SCHEMA_VERSION, ExperimentResult

MIN_CYCLES_FOR_CI = 3
RESAMPLES = 2000
CONFIDENCE = 0.95
SEED = 20_241_129

METRICS: dict[str, tuple[str, ...]] = {
    "energy_per_output_token_j": ("energy", "energy_per_output_token_j"),
    "energy_j": ("energy", "energy_j"),
    "tokens_per_joule": ("energy", "tokens_per_joule"),
    "mean_power_w": ("energy", "mean_power_w"),
    "output_tokens_per_s": ("throughput", "output_tokens_per_s"),
    "latency_e2e_p50_s": ("latency", "e2e", "p50_s"),
    "latency_e2e_p90_s": ("latency", "e2e", "p90_s"),
    "latency_e2e_p99_s": ("latency", "e2e", "p99_s"),
    "latency_ttft_p50_s": ("latency", "ttft", "p50_s"),
    "latency_ttft_p90_s": ("latency", "ttft", "p90_s"),
    "latency_itl_p50_s": ("latency", "itl", "p50_s"),
}


def describe(values: list[float], seed: int = SEED) -> dict[str, Any]:
    """Summary statistics of one metric across cycles."""
    data = np.asarray(values, dtype=float)
    summary: dict[str, Any] = {"n": int(data.size), "mean": float(data.mean()),
                               "median": float(np.median(data))}
    std = float(data.std(ddof=1)) if data.size > 1 else None
    summary["std"] = std
    summary["cv"] = std / summary["mean"] if std is not None and summary["mean"] else None
    summary["ci"], summary["ci_note"] = _confidence_interval(data, seed)
    return summary


def _confidence_interval(data: np.ndarray, seed: int) -> tuple[list[float] | None, str]:
    if data.size < MIN_CYCLES_FOR_CI:
        return None, (f"no confidence interval: {data.size} cycle(s), at least "
                      f"{MIN_CYCLES_FOR_CI} are needed")
    if np.all(data == data[0]):
        return [float(data[0]), float(data[0])], "all cycles gave the same value"
    from scipy.stats import bootstrap

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # BCa warns on tiny samples; the note says how many
        result = bootstrap((data,), np.mean, n_resamples=RESAMPLES, method="BCa",
                           confidence_level=CONFIDENCE, random_state=np.random.default_rng(seed))
    low, high = result.confidence_interval
    return [float(low), float(high)], (f"95 % BCa bootstrap of the mean, {RESAMPLES} resamples, "
                                       f"{data.size} cycles")


def _get(data: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        data = data.get(key) if isinstance(data, dict) else None
    return data


def study_stats(results: list[ExperimentResult]) -> dict[str, Any]:
    """Statistics per configuration (measurement config hash) across its cycles."""
    groups: dict[str, list[ExperimentResult]] = defaultdict(list)
    for result in results:
        groups[result.measurement_config_hash].append(result)
    configurations = []
    for config_hash, runs in groups.items():
        dumped = [run.model_dump(mode="json") for run in runs]
        metrics: dict[str, Any] = {}
        for name, path in METRICS.items():
            values = [v for v in (_get(d, path) for d in dumped) if v is not None]
            metrics[name] = describe(values) if values else {
                "n": 0, "note": "not measured in these runs (see their warnings)"}
        configurations.append({
            "config_hash": config_hash,
            "run_ids": [run.run_id for run in runs],
            "cycles": sorted(run.cycle for run in runs),
            "metrics": metrics,
        })
    return {"schema_version": SCHEMA_VERSION, "confidence_level": CONFIDENCE,
            "method": "scipy.stats.bootstrap, BCa, mean", "resamples": RESAMPLES,
            "min_cycles_for_ci": MIN_CYCLES_FOR_CI, "configurations": configurations}


def write_stats(study_dir: Path, results: list[ExperimentResult]) -> None:
    """Write stats.json atomically."""
    write_json(study_dir / "stats.json", study_stats(results))
