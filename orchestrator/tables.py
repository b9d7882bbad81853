"""``results.parquet``: one flat row per completed run (config fields and headline metrics).

Besides the configuration, each row carries the run's measurement-relevant environment
(:mod:`orchestrator.run_environment`): ``environment_id``, a short digest of it, and one
``environment.<field>`` column per field (``backend_versions`` a map of text to text,
``gpu_models`` a list of text). Rows of one ``config_hash`` and one ``environment_id`` are the
runs that ``stats.json`` pools into one entry.

The metric columns are the headline metrics (``harness.schema.headline``), each carrying its
unit and description in the Parquet field metadata.

Every column's type comes from the schema (``ExperimentConfig``, ``ExperimentResult``), never
from the values of the runs that happen to be in the table, so a column that is null in every
row still has its real type, and the table's schema is the same whatever the run order or
which runs completed. Free-form settings (``passthrough_kwargs``, one column per key the
study uses) have no type in the schema: theirs is read from the values of every
configuration of the study (completed or not). Values of one type keep it (lists of one
element type are lists); a key whose values mix types (``2`` and ``[2, 3]``), and any value
Arrow cannot hold in its column's type (an integer beyond 64 bits), make a text column that
holds every value of that column as its JSON text (``json.loads`` gives it back).
"""

from __future__ import annotations

import io
import json
import types
import typing
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel

from harness.io import write_bytes
from harness.schema.config import ExperimentConfig
from harness.schema.headline import HEADLINE_METRICS
from harness.schema.reading import read_model
from harness.schema.result import SCHEMA_VERSION, ExperimentResult
from orchestrator.manifest import Manifest
from orchestrator.run_environment import RunEnvironment

TABLE_NAME = "results.parquet"
CSV_NAME = "results.csv"

JSON_TEXT = b"json"
"""Field metadata ``encoding`` of a column that holds each value as its JSON text."""
MAX_EXACT_FLOAT_INT = 2**53
_SCALARS: dict[type, pa.DataType] = {bool: pa.bool_(), int: pa.int64(), float: pa.float64(),
                                     str: pa.string()}


@dataclass(frozen=True)
class Column:
    """One column of results.parquet: its name, its values (one per row) and its schema type.

    Attributes:
        name: the column name.
        values: the value of each row, as JSON-like Python values.
        annotation: the field's type in the schema; ``Any`` for a free-form value.
        peers: values of the same field in every configuration of the study (completed or
            not): they settle the type too, so it does not depend on which runs completed.
    """

    name: str
    values: list[Any]
    annotation: Any
    peers: tuple[Any, ...] = ()


def write_results_table(path: Path, results: list[ExperimentResult],
                        configs: Sequence[ExperimentConfig] = ()) -> None:
    """Write results.parquet atomically: one row per result, typed columns (see the module).

    Args:
        path: the file to write.
        results: the completed runs' results, one row each, in this order.
        configs: every configuration of the study, completed or not: the free-form keys they
            use are columns, and their values settle those columns' types.
    """
    fields, arrays = [], []
    for column in _columns(results, configs):
        field, array = _arrow(column)
        fields.append(field)
        arrays.append(array)
    schema = pa.schema(fields, metadata={"schema_version": SCHEMA_VERSION})
    table = pa.Table.from_arrays(arrays, schema=schema)
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    write_bytes(path, buffer.getvalue())


def _columns(results: list[ExperimentResult],
             configs: Sequence[ExperimentConfig]) -> Iterator[Column]:
    """Run identity, config fields (dotted), energy method, headline metrics, sanity, warnings."""
    yield Column("run_id", [r.run_id for r in results], str)
    yield Column("cycle", [r.cycle for r in results], int)
    yield Column("config_hash", [r.measurement_config_hash for r in results], str)
    yield Column("runner", [r.runner for r in results], str)
    yield from _environment_columns([RunEnvironment.of(r) for r in results])
    dumps = [r.config.model_dump(mode="json") for r in results]
    others = [c.model_dump(mode="json") for c in configs]
    yield from _config_columns(ExperimentConfig, "config", dumps, others)
    # How the energy figures were made: context for the metric columns, not metrics.
    for name in ("energy_method", "phase_split_method"):
        yield Column(name, [getattr(r.energy, name) for r in results],
                     _annotation_at(ExperimentResult, ("energy", name)))
    for metric in HEADLINE_METRICS:
        yield Column(metric.name, [metric.value(r) for r in results],
                     _annotation_at(ExperimentResult, metric.path))
    yield Column("sanity_passed", [r.sanity.passed if r.sanity else None for r in results], bool)
    yield Column("warnings", [",".join(r.warning_codes()) for r in results], str)


def _environment_columns(environments: list[RunEnvironment]) -> Iterator[Column]:
    """``environment_id`` and one column per field of the measurement-relevant environment.

    ``stats.json`` pools the cycles of a configuration only within one environment: rows with
    the same ``config_hash`` and ``environment_id`` are the runs of one statistics entry.
    """
    yield Column("environment_id", [e.short_id() for e in environments], str)
    for name, info in RunEnvironment.model_fields.items():
        yield Column(f"environment.{name}", [getattr(e, name) for e in environments],
                     info.annotation)


def _config_columns(model: type[BaseModel], prefix: str, rows: list[Any],
                    others: list[Any]) -> Iterator[Column]:
    """A column per leaf field of ``model`` (every section, set or not), and per free-form key.

    ``rows`` and ``others`` are the model's JSON dumps (or None) in the table's rows and in
    the study's configurations.
    """
    for name, info in model.model_fields.items():
        column = f"{prefix}.{name}"
        values = [_get(row, name) for row in rows]
        peers = [_get(other, name) for other in others]
        section = _section(info.annotation)
        if section is not None:
            yield from _config_columns(section, column, values, peers)
        elif typing.get_origin(info.annotation) is dict:
            item = typing.get_args(info.annotation)[1]
            keys = sorted({key for value in values + peers if value for key in value})
            for key in keys:
                yield Column(f"{column}.{key}", [_get(v, key) for v in values], item,
                             tuple(_get(p, key) for p in peers))
        else:
            yield Column(column, values, info.annotation, tuple(peers))


def _get(mapping: Any, key: str) -> Any:
    return mapping.get(key) if isinstance(mapping, dict) else None


def _section(annotation: Any) -> type[BaseModel] | None:
    """The model of a nested section (``DecoderConfig``, ``VllmConfig | None``), else None."""
    for member in _members(annotation):
        if isinstance(member, type) and issubclass(member, BaseModel):
            return member
    return None


def _members(annotation: Any) -> tuple[Any, ...]:
    """The types of a union without None (``int | None`` -> ``(int,)``); others as they are."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return tuple(a for a in typing.get_args(annotation) if a is not type(None))
    return (annotation,)


def _annotation_at(model: type[BaseModel], path: tuple[str, ...]) -> Any:
    """The annotation of the field at ``path`` inside ``model``."""
    annotation: Any = model
    for step in path:
        section = _section(annotation)
        assert section is not None, f"{path}: {step} is not inside a model"
        annotation = section.model_fields[step].annotation
    return annotation


def _arrow(column: Column) -> tuple[pa.Field, pa.Array]:
    """The column's field and values; JSON text where its values do not fit a typed column."""
    every = [*column.values, *column.peers]
    kind = _declared(column.annotation)
    if kind is None:  # free-form: read from the study's values
        kind = _inferred(every)
    if kind is not None and _fits(every, kind):
        field = pa.field(column.name, kind, metadata=_describe(column.name))
        return field, pa.array(column.values, type=kind)
    texts = [None if value is None else json.dumps(value) for value in column.values]
    metadata = {**_describe(column.name), b"encoding": JSON_TEXT}
    return pa.field(column.name, pa.string(), metadata=metadata), pa.array(texts, pa.string())


def _declared(annotation: Any) -> pa.DataType | None:
    """The Arrow type of a schema annotation; None where the schema leaves it open (Any)."""
    members = _members(annotation)
    if len(members) > 1:
        kinds = {_declared(member) for member in members}
        numbers = {pa.int64(), pa.float64()}
        return pa.float64() if kinds <= numbers else None
    (member,) = members
    origin = typing.get_origin(member)
    if origin is typing.Literal:
        return _scalar(list(typing.get_args(member)))
    if origin is dict:
        key, item = (_declared(arg) for arg in typing.get_args(member))
        return pa.map_(key, item) if key == pa.string() and item is not None else None
    if origin in (list, tuple):
        args = [a for a in typing.get_args(member) if a is not Ellipsis]
        inner = _declared(args[0]) if len(args) == 1 else None
        return None if inner is None or pa.types.is_list(inner) else pa.list_(inner)
    return _SCALARS.get(member) if isinstance(member, type) else None


def _inferred(values: list[Any]) -> pa.DataType | None:
    """The type of free-form values: one scalar type, or lists of one; None when they mix."""
    present = [value for value in values if value is not None]
    if present and all(isinstance(value, list) for value in present):
        inner = _scalar([item for value in present for item in value])
        return None if inner is None else pa.list_(inner)
    return _scalar(present)


def _scalar(values: list[Any]) -> pa.DataType | None:
    """One Arrow scalar type that holds every value exactly (ints and floats: float64)."""
    kinds = {type(value) for value in values}
    if len(kinds) == 1:
        return _SCALARS.get(kinds.pop())
    if kinds == {int, float} and all(abs(v) <= MAX_EXACT_FLOAT_INT for v in values
                                     if isinstance(v, int)):
        return pa.float64()
    return None


def _fits(values: list[Any], kind: pa.DataType) -> bool:
    try:
        pa.array(values, type=kind)
    except (pa.ArrowException, OverflowError, TypeError, ValueError):
        return False
    return True


def _describe(name: str) -> dict[bytes, bytes]:
    """A headline metric's unit and description, for its column's field metadata."""
    metric = next((m for m in HEADLINE_METRICS if m.name == name), None)
    if metric is None:
        return {}
    return {b"unit": metric.unit.encode(), b"description": metric.description.encode()}


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
    """Write results.csv from results.parquet (atomically) and return its path.

    CSV has no lists or maps: such a column holds each value as its JSON text (a map as a
    JSON object), as a column of mixed types does in results.parquet.
    """
    import pyarrow.csv as pacsv

    table = pq.read_table(study_dir / TABLE_NAME)
    for index, field in enumerate(table.schema):
        if pa.types.is_nested(field.type):
            is_map = pa.types.is_map(field.type)  # read back as a list of (key, value)
            texts = [None if value is None else json.dumps(dict(value) if is_map else value)
                     for value in table.column(index).to_pylist()]
            table = table.set_column(index, field.name, pa.array(texts, pa.string()))
    buffer = io.BytesIO()
    pacsv.write_csv(table, buffer)
    path = study_dir / CSV_NAME
    write_bytes(path, buffer.getvalue())
    return path
