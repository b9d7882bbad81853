"""The headline-metric table names real, numeric result fields, once each."""

from __future__ import annotations

import types
import typing
from pathlib import Path

import pytest
from pydantic import BaseModel

from harness.schema.headline import HEADLINE_METRICS, TERMINAL_METRICS, markdown_table
from harness.schema.result import ExperimentResult


def leaf_type(path: tuple[str, ...]) -> object:
    """The annotation at ``path`` in ExperimentResult, optional models unwrapped on the way."""
    model: type[BaseModel] = ExperimentResult
    annotation: object = None
    for step in path:
        annotation = model.model_fields[step].annotation  # KeyError: no such field
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        union = typing.get_origin(annotation) in (typing.Union, types.UnionType)
        inner = members[0] if union else annotation
        if isinstance(inner, type) and issubclass(inner, BaseModel):
            model = inner
    return annotation


@pytest.mark.parametrize("metric", HEADLINE_METRICS, ids=lambda m: m.name)
def test_each_metric_reads_a_numeric_field_of_the_result(metric):
    numeric = {int, float}
    annotation = leaf_type(metric.path)
    found = set(typing.get_args(annotation)) - {type(None)} or {annotation}
    assert found <= numeric, f"{metric.name}: {annotation}"
    assert metric.unit and metric.description.endswith(".")


def test_names_and_terminal_columns_are_unique():
    names = [metric.name for metric in HEADLINE_METRICS]
    assert len(set(names)) == len(names)
    columns = [metric.column for metric in TERMINAL_METRICS]
    assert len(set(columns)) == len(columns) and None not in columns


def test_the_documented_table_is_the_table():
    docs = Path(__file__).resolve().parents[4] / "docs" / "results.md"
    assert markdown_table() in docs.read_text(encoding="utf-8"), (
        "docs/results.md's headline table differs from harness/schema/headline.py: paste "
        "python -c 'from harness.schema.headline import markdown_table as t; print(t())'")
