"""Study-level outputs: ``results.parquet`` (one flat row per run) and ``summary.json``."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field

from harness.io import write_bytes
from harness.schema.result import SCHEMA_VERSION, ExperimentResult
from orchestrator.manifest import Manifest

HEADLINE: dict[str, tuple[str, ...]] = {
    "energy_j": ("energy", "energy_j"),
    "energy_per_output_token_j": ("energy", "energy_per_output_token_j"),
    "tokens_per_joule": ("energy", "tokens_per_joule"),
    "mean_power_w": ("energy", "mean_power_w"),
    "energy_dynamic_j": ("energy", "energy_dynamic_j"),
    "energy_dynamic_per_output_token_j": ("energy", "energy_dynamic_per_output_token_j"),
    "energy_method": ("energy", "energy_method"),
    "prefill_energy_j": ("energy", "prefill", "energy_j"),
    "decode_energy_j": ("energy", "decode", "energy_j"),
    "phase_split_method": ("energy", "phase_split_method"),
    "duration_s": ("throughput", "duration_s"),
    "input_tokens": ("throughput", "input_tokens"),
    "output_tokens": ("throughput", "output_tokens"),
    "generated_positions": ("throughput", "generated_positions"),
    "cached_prompt_tokens": ("throughput", "cached_prompt_tokens"),
    "output_tokens_per_s": ("throughput", "output_tokens_per_s"),
    "requests_per_s": ("throughput", "requests_per_s"),
    "latency_e2e_p50_s": ("latency", "e2e", "p50_s"),
    "latency_e2e_p90_s": ("latency", "e2e", "p90_s"),
    "latency_ttft_p50_s": ("latency", "ttft", "p50_s"),
    "latency_tpot_p50_s": ("latency", "tpot", "p50_s"),
    "latency_itl_p50_s": ("latency", "itl", "p50_s"),
}


class StudyResult(BaseModel):
    """``summary.json``: what a study set out to do and what it produced."""

    model_config = ConfigDict(extra="forbid")

    schema_version: Literal["1"] = SCHEMA_VERSION
    study: str
    design_hash: str
    runner: str
    started_at: str
    finished_at: str
    interrupted: bool = False
    protocol: dict[str, Any] = Field(description="Cycles, order and gaps as executed.")
    counts: dict[str, int]
    failures: list[dict[str, Any]] = Field(default_factory=list)
    skipped: list[dict[str, str]] = Field(default_factory=list)
    result_files: list[str] = Field(default_factory=list)
    results_table: str | None = None

    @property
    def failed(self) -> int:
        """Number of failed or interrupted runs."""
        return self.counts.get("failed", 0) + self.counts.get("interrupted", 0)


def flat_row(result: ExperimentResult) -> dict[str, Any]:
    """One results.parquet row: run identity, config fields (dotted) and headline metrics."""
    row: dict[str, Any] = {
        "run_id": result.run_id,
        "cycle": result.cycle,
        "config_hash": result.measurement_config_hash,
        "runner": result.runner,
    }
    _flatten("config", result.config.model_dump(mode="json"), row)
    dumped = result.model_dump(mode="json")
    for column, path in HEADLINE.items():
        row[column] = _get(dumped, path)
    row["sanity_passed"] = result.sanity.passed if result.sanity else None
    row["warnings"] = ",".join(result.warning_codes())
    return row


def _flatten(prefix: str, value: Any, row: dict[str, Any]) -> None:
    if isinstance(value, dict) and value:
        for key, child in value.items():
            _flatten(f"{prefix}.{key}", child, row)
    elif isinstance(value, dict):
        row[prefix] = None
    else:
        row[prefix] = value if not isinstance(value, list) else str(value)


def _get(data: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def write_results_table(path: Path, results: list[ExperimentResult]) -> None:
    """Write results.parquet atomically; columns are the union over runs (missing = null)."""
    rows = [flat_row(result) for result in results]
    columns: list[str] = []
    for row in rows:
        columns.extend(key for key in row if key not in columns)
    table = pa.table({name: [row.get(name) for row in rows] for name in columns})
    table = table.replace_schema_metadata({"schema_version": SCHEMA_VERSION})
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    write_bytes(path, buffer.getvalue())


def load_results(study_dir: Path, manifest: Manifest) -> list[ExperimentResult]:
    """Every completed run's validated result, in manifest order."""
    results: list[ExperimentResult] = []
    for run in manifest.runs:
        if run.status == "completed" and run.result_path:
            text = (study_dir / run.result_path).read_text(encoding="utf-8")
            results.append(ExperimentResult.model_validate_json(text))
    return results


def export_csv(study_dir: Path) -> Path:
    """Write results.csv from results.parquet (atomically) and return its path."""
    import pyarrow.csv as pacsv

    table = pq.read_table(study_dir / "results.parquet")
    buffer = io.BytesIO()
    pacsv.write_csv(table, buffer)
    path = study_dir / "results.csv"
    write_bytes(path, buffer.getvalue())
    return path
