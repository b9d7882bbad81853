"""The results reference is generated from the result models, and every field is described."""

from pathlib import Path

import pytest

from harness.schema.docgen import render_results, result_models, unit_expected
from harness.schema.result import ErrorRecord, ExperimentResult, HostEnergyZone, Percentiles

FIELDS = [(model, name, field) for model in result_models()
          for name, field in model.model_fields.items()]


def field_id(entry):
    model, name, _ = entry
    return f"{model.__name__}.{name}"


def test_committed_results_reference_is_the_generated_one():
    committed = Path(__file__).parents[4] / "docs" / "results-reference.md"
    regenerate = "python -m harness.schema.docgen results > docs/results-reference.md"
    assert committed.read_text() == render_results(), f"regenerate with: {regenerate}"


def test_the_reference_covers_both_files_and_every_nested_model():
    models = result_models()
    assert list(models)[0] is ExperimentResult and models[ErrorRecord] == ["error.json"]
    assert models[Percentiles] == [
        "latency.e2e", "latency.ttft", "latency.tpot", "latency.itl", "serving.arrival_lag",
        "serving.queueing_delay", "serving.ttft", "serving.tpot", "serving.itl", "serving.e2e"]
    assert models[HostEnergyZone] == ["energy.host.zones"]
    assert len(models) == 26  # SchedulerJob: the batch job a run ran in
    text = render_results()
    assert all(f"\n## {model.__name__}\n" in text for model in models)
    assert "[ExperimentConfig](configuration.md)" in text


@pytest.mark.parametrize("entry", FIELDS, ids=field_id)
def test_every_result_field_has_a_description(entry):
    _, _, field = entry
    assert field.description and field.description.strip()


@pytest.mark.parametrize("entry", FIELDS, ids=field_id)
def test_numeric_fields_named_with_a_unit_say_the_unit(entry):
    _, name, field = entry
    unit = unit_expected(name, field.annotation)
    assert unit is None or unit in (field.description or ""), f"{name} should mention {unit}"


def test_the_unit_rule_applies_to_numeric_fields_by_their_suffix():
    assert unit_expected("energy_j", float | None) == "(J"
    assert unit_expected("power_w", list[float]) == "(W"
    assert unit_expected("idle_c", list[float | None] | None) == "(degC"
    assert unit_expected("requests_per_s", float) == "/s)"
    assert unit_expected("temperature_slope_c_per_min", list[float | None] | None) == "/min)"
    assert unit_expected("memory_total_mb", float) == "(MiB"
    assert unit_expected("tokens_per_joule", float) is None
    assert unit_expected("phase_s", str) is None
    checked = [entry for entry in FIELDS if unit_expected(entry[1], entry[2].annotation)]
    assert len(checked) >= 40  # the rule is not vacuous over the real models
