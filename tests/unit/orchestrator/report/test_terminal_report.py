"""llem report's table, and the study's report: section, from a study directory's files."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from llem_testkit.figures import FigureWriter
from llem_testkit.studies import load_error, write
from rich.console import Console

from harness.schema.config import ExperimentConfig
from orchestrator import run_study
from orchestrator.cli import main
from orchestrator.report.study_data import StudyData
from orchestrator.report.terminal import (
    COLUMNS,
    best_values,
    figure,
    pareto_members,
    print_report,
)
from orchestrator.summary import StudySummary

# batch 1: cheap and slow; batch 2: dear and fast; batch 4: worse than batch 2 on both.
FIGURES = {1: (40.0, 50.0, 0.2), 2: (60.0, 90.0, 0.3), 4: (70.0, 80.0, 0.5)}


def figures(config: ExperimentConfig, cycle: int) -> dict[str, float | None]:
    energy, speed, p90 = FIGURES[config.pytorch.batch_size if config.pytorch else 1]
    wobble = 1 + 0.01 * (cycle - 2)  # cycles 1..3: -1 %, 0, +1 %
    return {"energy_j": energy * wobble, "tokens_per_s": speed * wobble, "p90_s": p90}


def study(tmp_path: Path, report: str = "") -> Path:
    path = write(tmp_path, f"""
        name: r
        model: m
        backend: pytorch
        execution: {{n_cycles: 3, config_gap_s: 0, cycle_gap_s: 0}}
        sweep:
          pytorch.batch_size: [1, 2, 4]
        {report}
        """)
    _, study_dir = run_study(path, FigureWriter(figures), output=tmp_path / "out", no_gaps=True)
    return study_dir


def rendered(data: StudyData) -> str:
    console = Console(width=250, record=True, color_system=None, file=io.StringIO())
    print_report(data, console)
    return console.export_text()


def test_fronts_best_values_and_intervals_come_from_the_pooled_runs(tmp_path):
    data = StudyData.load(study(tmp_path))
    by_batch = {c.settings["pytorch.batch_size"]: c.key for c in data.configurations}
    fronts = pareto_members(data)
    assert fronts["throughput"] == {by_batch[1], by_batch[2]}
    assert fronts["latency"] == {by_batch[1]}  # cheapest and quickest
    best = best_values(data)
    assert best["energy_per_output_token_j"] == pytest.approx(0.4)  # 40 J / 100 tokens
    assert best["output_tokens_per_s"] == 90.0
    text = rendered(data)
    rows = {re.search(r"pytorch-bs\d", line)[0]: line  # type: ignore[index]
            for line in text.splitlines() if "pytorch-bs" in line}
    assert rows["pytorch-bs1"].startswith("│ * pytorch-bs1")
    assert rows["pytorch-bs2"].startswith("│ * pytorch-bs2")
    assert rows["pytorch-bs4"].startswith("│ pytorch-bs4")
    assert "[low, high]: 95 % interval" in text
    # the host's RAPL package energy (60 J a run in the fake results) has its own column
    assert "host CPU J" in text and rows["pytorch-bs1"].rstrip(" │").endswith("│         60")
    # mean with its Student t interval over 3 cycles: 0.4 +- t(0.975,2) x 0.004 / sqrt(3)
    assert "0.4 [0.3901, 0.4099]" in rows["pytorch-bs1"]
    bs1 = data.configuration(by_batch[1])
    column = next(c for c in COLUMNS if c.metric == "energy_per_output_token_j")
    assert figure(bs1, column, best["energy_per_output_token_j"]).startswith("[bold]")
    assert not figure(data.configuration(by_batch[4]), column,
                      best["energy_per_output_token_j"]).startswith("[bold]")


def test_a_study_without_energy_says_so_instead_of_a_front(tmp_path):
    def no_sensor(config: ExperimentConfig, cycle: int) -> dict[str, float | None]:
        return {"energy_j": None, "tokens_per_s": 50.0 + cycle}

    path = write(tmp_path, "name: cpu\nmodel: m\nbackend: pytorch\n"
                 "execution: {n_cycles: 2, config_gap_s: 0, cycle_gap_s: 0}\n")
    _, study_dir = run_study(path, FigureWriter(no_sensor), output=tmp_path / "out",
                             no_gaps=True)
    text = rendered(StudyData.load(study_dir))
    assert "no Pareto front: no configuration has an energy figure" in text
    assert "no_energy_sensor" in text and "n/a" in text and "51.5" in text


def test_llem_report_prints_the_table_and_refuses_a_folder_that_is_no_study(tmp_path):
    study_dir = study(tmp_path)
    done = CliRunner().invoke(main, ["report", str(study_dir), "--no-html"])
    assert done.exit_code == 0, done.output
    assert "pytorch-bs2" in done.output and "Pareto front" in done.output
    missing = CliRunner().invoke(main, ["report", str(tmp_path / "nothing"), "--no-html"])
    assert missing.exit_code == 2
    assert "is not a study directory" in missing.output


def test_the_report_section_is_recorded_in_the_summary_and_the_command_line_wins(tmp_path):
    study_dir = study(tmp_path, "report: {carbon_intensity_g_per_kwh: 400, "
                                "electricity_price_per_kwh: 0.3, currency: CHF}")
    inputs = StudySummary.load(study_dir).report_inputs
    assert (inputs.carbon_intensity_g_per_kwh, inputs.electricity_price_per_kwh,
            inputs.currency) == (400, 0.3, "CHF")
    from orchestrator.study.report_inputs import ReportInputs

    merged = inputs.merged(ReportInputs(carbon_intensity_g_per_kwh=50))
    assert (merged.carbon_intensity_g_per_kwh, merged.currency) == (50, "CHF")
    summary = json.loads((study_dir / "summary.json").read_text())
    assert summary["report_inputs"]["currency"] == "CHF"


def test_a_bad_report_section_names_its_line_and_the_design_ignores_it(tmp_path):
    error = load_error(write(tmp_path, "model: m\nbackend: pytorch\n"
                             "report:\n  carbon_intensity_g_per_kwh: -3\n"))
    assert "report.carbon_intensity_g_per_kwh" in str(error) and ":4" in str(error)
    from orchestrator.study import load_study

    plain = load_study(write(tmp_path, "model: m\nbackend: pytorch\n", name="a.yaml"))
    priced = load_study(write(tmp_path, "model: m\nbackend: pytorch\n"
                              "report: {electricity_price_per_kwh: 0.2}\n", name="b.yaml"))
    assert plain.design_hash == priced.design_hash


def test_currency_alone_is_refused_with_one_message_and_the_report_is_left_as_it_was(tmp_path):
    # The study priced energy at 0.3 CHF/kWh: --currency EUR alone would relabel it EUR.
    study_dir = study(tmp_path, "report: {electricity_price_per_kwh: 0.3, currency: CHF}")
    before = (study_dir / "report.html").read_bytes()
    done = CliRunner().invoke(main, ["report", str(study_dir), "--currency", "EUR"])
    assert done.exit_code == 2
    assert done.output.count("error:") == 1
    assert "--currency EUR without --price" in done.output and "give --price" in done.output
    assert (study_dir / "report.html").read_bytes() == before
    priced = CliRunner().invoke(main, ["report", str(study_dir), "--no-html",
                                       "--price", "0.25", "--currency", "EUR"])
    assert priced.exit_code == 0, priced.output
