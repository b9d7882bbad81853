"""``results.parquet``: one flat row per completed run (config fields and headline metrics).

The metric columns are the headline metrics (``harness.schema.headline``), each carrying its
unit and description in the Parquet field metadata.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from harness.io import write_bytes
from harness.schema.headline import HEADLINE_METRICS
from harness.schema.reading import read_model
from harness.schema.result import SCHEMA_VERSION, ExperimentResult
from orchestrator.manifest import Manifest


def flat_row(result: ExperimentResult) -> dict[str, Any]:
    """One results.parquet row: run identity, config fields (dotted) and headline metrics."""
    row: dict[str, Any] = {
        "run_id": result.run_id,
        "cycle": result.cycle,
        "config_hash": result.measurement_config_hash,
        "runner": result.runner,
    }
    _flatten("config", result.config.model_dump(mode="json"), row)
    # How the energy figures were made: context for the metric columns, not metrics.
    row["energy_method"] = result.energy.energy_method
    row["phase_split_method"] = result.energy.phase_split_method
    for metric in HEADLINE_METRICS:
        row[metric.name] = metric.value(result)
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


def write_results_table(path: Path, results: list[ExperimentResult]) -> None:
    """Write results.parquet atomically; columns are the union over runs (missing = null)."""
    rows = [flat_row(result) for result in results]
    columns: list[str] = []
    for row in rows:
        columns.extend(key for key in row if key not in columns)
    table = pa.table({name: _column([row.get(name) for row in rows]) for name in columns})
    table = _describe_metrics(table)
    table = table.replace_schema_metadata({"schema_version": SCHEMA_VERSION})
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    write_bytes(path, buffer.getvalue())


def _column(values: list[Any]) -> list[Any]:
    """A column's values as Arrow can hold them, none of them changed.

    Free-form settings (``passthrough_kwargs``) may differ in type from run to run (a number
    here, a word there; Arrow would refuse them, or turn ``true`` beside ``0.5`` into 1.0):
    such a column holds every value as its JSON text.
    """
    kinds = {type(value) for value in values if value is not None}
    if len(kinds) <= 1 or kinds <= {int, float}:
        return values
    return [value if value is None or isinstance(value, str) else json.dumps(value)
            for value in values]


def _describe_metrics(table: pa.Table) -> pa.Table:
    """Attach each headline metric's unit and description to its column."""
    fields = []
    for column in table.schema:
        metric = next((m for m in HEADLINE_METRICS if m.name == column.name), None)
        if metric is not None:
            column = column.with_metadata({"unit": metric.unit,
                                           "description": metric.description})
        fields.append(column)
    return table.cast(pa.schema(fields))


def load_results(study_dir: Path, manifest: Manifest) -> list[ExperimentResult]:
    """Every completed run's validated result, in manifest order.

    Raises:
        UnreadableFileError: a completed run's result.json is missing, damaged or newer
            (``llem run --resume`` moves it aside and runs it again).
    """
    return [read_model(study_dir / run.result_path, ExperimentResult,
                       fix="llem run --resume on the study directory runs it again")
            for run in manifest.runs if run.status == "completed" and run.result_path]


def export_csv(study_dir: Path) -> Path:
    """Write results.csv from results.parquet (atomically) and return its path."""
    import pyarrow.csv as pacsv

    table = pq.read_table(study_dir / "results.parquet")
    buffer = io.BytesIO()
    pacsv.write_csv(table, buffer)
    path = study_dir / "results.csv"
    write_bytes(path, buffer.getvalue())
    return path
