"""llem history: the step rule on series, and the table, JSON and HTML page of real studies."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from llem_testkit.studies import scripted_study

from orchestrator.cli import main
from orchestrator.report.history import History, find_step, load_series, study_history

LEVEL = [1.00, 1.01, 0.99]  # one study's per-cycle values, CV 1 %


def at(level: float) -> list[float]:
    return [v * level for v in LEVEL]


def test_a_step_that_stays_is_found_at_its_first_study():
    step = find_step([at(1.0), at(1.0), at(1.0), at(1.2), at(1.2), at(1.2)], "lower")
    assert step is not None
    assert step.study_index == 3
    assert step.change_pct == pytest.approx(20.0)
    assert step.worse
    assert step.p_value < 1e-6


def test_a_flat_noisy_series_has_no_step():
    series = [at(1.0), at(1.02), at(0.99), at(1.01), at(0.98), at(1.0)]
    assert find_step(series, "lower") is None


def test_a_one_off_spike_that_does_not_stay_is_no_step():
    assert find_step([at(1.0), at(1.0), at(1.5), at(1.0), at(1.0), at(1.0)], "lower") is None


def test_a_step_at_the_second_study_and_at_the_last():
    first = find_step([at(1.0), at(0.8), at(0.8), at(0.8)], "lower")
    assert first is not None
    assert (first.study_index, first.worse) == (1, False)
    last = find_step([at(1.0), at(1.0), at(1.0), at(0.8)], "higher")
    assert last is not None
    assert (last.study_index, last.worse) == (3, True)  # lower throughput is worse


def test_a_step_below_the_threshold_is_no_step():
    assert find_step([at(1.0)] * 3 + [at(1.03)] * 3, "lower") is None
    assert find_step([at(1.0)] * 3 + [at(1.03)] * 3, "lower", threshold_pct=2.0) is not None


def test_studies_that_did_not_measure_the_metric_are_skipped():
    step = find_step([at(1.0), [], at(1.0), at(1.2), [], at(1.2)], "lower")
    assert step is not None
    assert step.study_index == 3


def test_single_cycle_studies_need_two_on_each_side():
    # one value per study: a step at the second study has one value before it, so no test
    assert find_step([[1.0], [1.2], [1.2], [1.2]], "lower") is None
    step = find_step([[1.0], [1.01], [1.2], [1.21]], "lower")
    assert step is not None
    assert step.study_index == 2


def series_of_studies(folder: Path, levels: list[float]) -> list[Path]:
    directories = []
    for index, level in enumerate(levels):
        directory = scripted_study(folder, {1: {"energy_per_output_token_j": at(level)},
                                            2: {"energy_per_output_token_j": at(2.0)}},
                                   name="nightly")
        summary = json.loads((directory / "summary.json").read_text())
        summary["started_at"] = f"2026-11-{index + 1:02d}T02:00:00+00:00"
        (directory / "summary.json").write_text(json.dumps(summary))
        directories.append(directory)
    return directories


@pytest.fixture(scope="module")
def nightlies(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return series_of_studies(tmp_path_factory.mktemp("nightlies"), [1.0, 1.0, 1.25, 1.25])


def test_the_history_of_studies_is_in_start_order_with_the_step_of_each_configuration(
        nightlies):
    history = study_history(load_series(list(reversed(nightlies))))
    assert [s.started_at[:10] for s in history.studies] == [
        "2026-11-01", "2026-11-02", "2026-11-03", "2026-11-04"]
    steps = {s.label: s.step for s in history.series
             if s.metric == "energy_per_output_token_j"}
    assert steps["pytorch-bs2"] is None
    step = steps["pytorch-bs1"]
    assert step is not None
    assert (step.study_index, step.worse) == (2, True)
    assert step.change_pct == pytest.approx(25.0)


def test_the_command_prints_json_and_writes_one_offline_html_page(nightlies, tmp_path):
    page = tmp_path / "history.html"
    result = CliRunner().invoke(main, ["history", *map(str, nightlies), "--json",
                                       "--html", str(page)])
    assert result.exit_code == 0, result.output
    history = History.model_validate_json(result.stdout)
    assert len(history.studies) == 4
    text = page.read_text()
    assert text.count("<script type='text/javascript'>/**") == 1  # plotly.js inlined once
    assert "<script src=" not in text  # nothing loaded from elsewhere
    assert "energy_per_output_token_j" in text
    assert "pytorch-bs1 (step +25.0 %)" in text


def test_the_terminal_table_marks_the_step(nightlies):
    result = CliRunner().invoke(main, ["history", *map(str, nightlies)])
    assert result.exit_code == 0, result.output
    assert "▶ 1.25 " in result.stdout
    assert "#3 +25.0 % (worse, p" in result.stdout
    assert "#3 nightly 2026-11-03T02:00: " in result.stdout


def test_a_missing_directory_exits_2(tmp_path):
    assert CliRunner().invoke(main, ["history", str(tmp_path / "none")]).exit_code == 2
