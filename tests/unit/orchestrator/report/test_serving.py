"""Serving studies in the report: lines by configuration without the rate, saturation, J/token.

The serving study (llem_testkit.serving.SERVING_STUDY) has three lines of four rates (1, 2, 4,
8 req/s), three cycles each, with known figures (:func:`script`):

- vLLM at 64 sequences saturates at 8 req/s in cycles 2 and 3 only: its saturation point is
  4 req/s;
- vLLM at 1 sequence saturates at every rate: no point is marked; its runs at 1 req/s have no
  energy sensor;
- TensorRT-LLM never saturates: its highest rate, 8 req/s, is marked "not reached"; it has
  SLOs, so goodput.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from llem_testkit.pages import figures, layouts, points, values
from llem_testkit.serving import ServingFigures, ServingRunWriter, serving_study
from rich.console import Console

from harness.schema.config import ExperimentConfig
from harness.schema.result import ExperimentResult
from orchestrator.report.html import write_html_report
from orchestrator.report.serving import (
    GOODPUT,
    J_PER_TOKEN,
    RATE_SETTING,
    saturation_point,
    serving_lines,
)
from orchestrator.report.study_data import StudyData
from orchestrator.report.terminal import print_report
from orchestrator.runners.base import EventCallback, RunOutcome
from orchestrator.study.report_inputs import ReportInputs

ROOT = Path(__file__).resolve().parents[4]
RATES = (1.0, 2.0, 4.0, 8.0)
J_PER_TOKEN_AT = {1.0: 2.0, 2.0: 1.2, 4.0: 0.8, 8.0: 0.7}
TTFT_AT = {1.0: 0.05, 2.0: 0.06, 4.0: 0.1, 8.0: 0.9}
SEQS64, SEQS1, TRT = "vllm, max_num_seqs=64", "vllm, max_num_seqs=1", "tensorrt"


def script(config: ExperimentConfig, cycle: int) -> ServingFigures:
    rate = config.load.request_rate
    assert rate is not None
    wobble = 1 + 0.01 * (cycle - 2)  # cycles 1..3: -1 %, 0, +1 %: the mean is the table's
    j_per_token = J_PER_TOKEN_AT[rate] * wobble
    seqs = config.vllm.max_num_seqs if config.vllm is not None else None
    if seqs == 1:
        return ServingFigures(j_per_token=None if rate == 1 else j_per_token * 2,
                              ttft_p90_s=TTFT_AT[rate] * 10, tpot_p90_s=0.2, saturated=True)
    if seqs == 64:
        return ServingFigures(j_per_token=j_per_token, ttft_p90_s=TTFT_AT[rate],
                              tpot_p90_s=0.02, saturated=rate == 8 and cycle >= 2)
    return ServingFigures(j_per_token=j_per_token * 1.1, ttft_p90_s=TTFT_AT[rate],
                          tpot_p90_s=0.03, goodput_share=0.9)


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> tuple[StudyData, str]:
    data = StudyData.load(serving_study(tmp_path_factory.mktemp("serve"), script))
    page = write_html_report(data, ReportInputs()).read_text(encoding="utf-8")
    return data, page


def section(page: str, anchor: str) -> str:
    start = page.index(f'<section id="{anchor}">')
    return page[start:page.index("</section>", start)]


def rendered(data: StudyData) -> str:
    console = Console(width=250, record=True, color_system=None, file=io.StringIO())
    print_report(data, console)
    return console.export_text()


# The saturation point on (rate, saturated) points


def test_the_point_is_the_highest_rate_sustained_before_the_first_saturated_one():
    found = saturation_point([(8, True), (1, False), (4, False), (2, False)])
    assert (found.rate_rps, found.reached) == (4, True)
    assert found.text == ("4 req/s: the highest rate sustained before the first saturated one "
                          "(8 req/s)")


def test_a_rate_sustained_again_above_the_first_saturated_one_does_not_move_the_point():
    found = saturation_point([(1, False), (2, True), (4, False), (8, True)])
    assert (found.rate_rps, found.reached) == (1, True)
    assert "sustained again at 4 req/s, above the first saturated rate" in found.text


def test_when_every_rate_saturated_none_is_marked_and_the_text_says_so():
    found = saturation_point([(2, True), (1, True)])
    assert (found.rate_rps, found.reached) == (None, True)
    assert found.text.startswith("saturated at every rate from the lowest, 1 req/s: none marked")


def test_when_no_rate_saturated_the_highest_is_marked_as_not_reached():
    for line in ([(1, False), (16, False), (4, False)], [(16, False)]):
        found = saturation_point(line)
        assert (found.rate_rps, found.reached) == (16, False)
        assert found.text.startswith("not reached: every rate up to 16 req/s was sustained")


# Lines and points of a study


def test_configurations_that_differ_only_in_rate_form_one_line(study):
    data, _ = study
    lines = serving_lines(data)
    assert [line.name for line in lines] == [TRT, SEQS1, SEQS64]
    for line in lines:
        assert [point.rate_rps for point in line.points] == list(RATES)
        hashes = {point.config.config_hash for point in line.points}
        assert len(hashes) == 4, "each rate is its own configuration"
        settings = [{k: v for k, v in point.config.settings.items() if k != RATE_SETTING}
                    for point in line.points]
        assert all(s == settings[0] for s in settings)
    assert len(data.configurations) == 12


def test_a_point_pools_its_cycles_as_stats_json_does(study):
    data, _ = study
    line = next(line for line in serving_lines(data) if line.name == SEQS64)
    for point in line.points:
        pooled = point.figures[J_PER_TOKEN]
        stats = point.config.metric(J_PER_TOKEN)
        assert pooled is not None and stats is not None and stats.ci is not None
        assert pooled.mean == pytest.approx(J_PER_TOKEN_AT[point.rate_rps])
        assert pooled.mean == pytest.approx(stats.mean)
        assert pooled.ci == pytest.approx(stats.ci)
        assert pooled.n == point.cycles == 3
    top = line.points[-1]
    assert (top.saturated, top.saturated_cycles) == (True, 2)  # 2 of 3 cycles is saturated
    assert top.saturation_reasons == ("achieved_rate_rps below 90 % of offered_rate_rps",)
    trt = next(line for line in serving_lines(data) if line.name == TRT)
    assert [p.mean(GOODPUT) for p in trt.points] == pytest.approx([0.9 * r for r in RATES])
    assert line.points[0].mean(GOODPUT) is None  # no slo:


def test_each_line_gets_its_saturation_point(study):
    data, _ = study
    found = {line.name: line.saturation for line in serving_lines(data)}
    assert (found[SEQS64].rate_rps, found[SEQS64].reached) == (4.0, True)
    assert (found[SEQS1].rate_rps, found[SEQS1].reached) == (None, True)
    assert (found[TRT].rate_rps, found[TRT].reached) == (8.0, False)


# report.html


def test_the_figure_draws_each_line_in_three_panels_with_saturation_marked(study):
    _, page = study
    traces = figures(page)["plot-serving"]
    lines = {(t["name"], t["yaxis"]): t for t in traces if t["mode"] == "lines+markers"}
    assert {name for name, _ in lines} == {TRT, SEQS1, SEQS64}
    seqs64 = lines[(SEQS64, "y")]  # J/token, the first panel
    assert values(seqs64["x"]) == list(RATES)
    assert values(seqs64["y"]) == pytest.approx([J_PER_TOKEN_AT[r] for r in RATES])
    assert seqs64["marker"]["symbol"] == ["circle", "circle", "circle", "x"]
    ttft = lines[(SEQS64, "y2")]
    assert values(ttft["y"]) == pytest.approx([TTFT_AT[r] for r in RATES])
    assert {axis for _, axis in lines} == {"y", "y2", "y3"}  # J/token, TTFT p90, TPOT p90
    marks = {(t["name"], t["yaxis"]): t for t in traces if t["name"].count(": ")}
    assert values(marks[(f"{SEQS64}: saturation point", "y")]["x"]) == [4.0]
    assert marks[(f"{SEQS64}: saturation point", "y")]["marker"]["symbol"] == "star"
    assert values(marks[(f"{TRT}: not reached", "y2")]["x"]) == [8.0]
    assert marks[(f"{TRT}: not reached", "y")]["marker"]["symbol"] == "star-open"
    assert not any(name.startswith(SEQS1) for name, _ in marks), "all saturated: none marked"
    assert layouts(page)["plot-serving"]["xaxis3"]["type"] == "log"  # 1 to 8 req/s


def test_missing_energy_is_said_in_the_figure_and_below_it(study):
    _, page = study
    traces = figures(page)["plot-serving"]
    seqs1 = next(t for t in traces if t["name"] == SEQS1 and t["yaxis"] == "y")
    assert values(seqs1["x"]) == [2.0, 4.0, 8.0]
    seqs1_ttft = next(t for t in traces if t["name"] == SEQS1 and t["yaxis"] == "y2")
    assert points(seqs1_ttft["x"]) == 4
    gap = f"no J/token for {SEQS1} at 1 req/s (no energy measured: no_energy_sensor"
    notes = [a["text"] for a in layouts(page)["plot-serving"]["annotations"]]
    assert any(text.replace("<br>", " ").startswith(gap) for text in notes)
    assert gap in section(page, "serving")


def test_the_table_and_the_saturation_list(study):
    _, page = study
    serving = section(page, "serving")
    assert '<a href="#serving">' in page
    assert re.findall(r'data-saturation="([^"]+)"><b>([^<]+)</b>', serving) == [
        ("8", TRT), ("none", SEQS1), ("4", SEQS64)]
    rows = re.findall(r"<tr>(.*?)</tr>", serving[serving.index('<table class="serving">'):])
    cells = [re.findall(r"<td>(.*?)</td>", row) for row in rows[1:]]
    assert len(cells) == 12
    by_row = {(row[0], row[2]): row for row in cells}
    assert by_row[(SEQS64, "4")][9] == "<b>no: saturation point</b>"
    assert by_row[(SEQS64, "8")][9] == ("yes (2 of 3 cycles: achieved_rate_rps below 90 % of "
                                        "offered_rate_rps)")
    assert by_row[(SEQS64, "8")][3:5] == ["8", "6.4"]  # offered; achieved: mean of 8, 5.6, 5.6
    assert by_row[(TRT, "8")][9] == "<b>no: highest rate measured, saturation not reached</b>"
    assert by_row[(TRT, "2")][5] == "1.8"  # goodput: 90 % of 2 req/s met the SLO
    assert by_row[(SEQS1, "1")][6] == "n/a"  # J/token without a sensor
    assert by_row[(SEQS64, "1")][6].startswith("2 [")  # mean [95 % interval]


def test_the_rate_is_not_drawn_again_among_the_swept_settings(study):
    _, page = study
    plots = figures(page)
    assert "plot-sweep-vllm.max_num_seqs" in plots
    assert f"plot-sweep-{RATE_SETTING}" not in plots
    assert f"{RATE_SETTING}: see the serving section" in section(page, "sweeps")
    for name, traces in plots.items():
        assert any(points(t.get("x")) > 0 for t in traces), f"{name} has no point"


def test_without_any_energy_the_panel_says_why_and_latency_is_still_drawn(tmp_path):
    def no_sensor(config: ExperimentConfig, cycle: int) -> ServingFigures:
        rate = config.load.request_rate or 0
        return ServingFigures(j_per_token=None, ttft_p90_s=0.1 * rate, tpot_p90_s=0.02,
                              saturated=rate > 1,
                              warnings=("thermal_drift",) if rate == 4 else ())

    study_text = ("name: cpu\nmodel: m\nbackend: vllm\n"
                  "load: {mode: serving, request_rate: 1}\n"
                  "execution: {n_cycles: 1, config_gap_s: 0, cycle_gap_s: 0}\n"
                  "sweep: {load.request_rate: [1, 2, 4]}\n")
    data = StudyData.load(serving_study(tmp_path, no_sensor, study_text))
    page = write_html_report(data, ReportInputs()).read_text(encoding="utf-8")
    traces = figures(page)["plot-serving"]
    assert {t["yaxis"] for t in traces} == {"y2", "y3"}, "no J/token trace without energy"
    layout = layouts(page)["plot-serving"]
    (note,) = [a for a in layout["annotations"] if "energy" in a["text"]]
    text = note["text"].replace("<br>", " ")
    assert text.startswith("no energy measured: no_energy_sensor")
    assert text.endswith("J/token is not drawn")
    # in the J/token panel, though Plotly draws no axes for a panel without a trace
    low, high = layout["yaxis"]["domain"]
    assert (note["xref"], note["yref"]) == ("paper", "paper") and low < note["y"] < high
    serving = section(page, "serving")
    assert "J/token is not drawn" in serving
    assert ("not drawn, every run left out of the statistics (see Runs excluded from "
            "statistics): vllm-request_rate4") in serving
    assert values(traces[0]["x"]) == [1.0, 2.0]
    assert "no (sat. point)" in rendered(data)


def test_the_method_links_to_the_section_of_docs_that_defines_it(study):
    _, page = study
    assert 'href="docs/report.md#serving-studies"' in section(page, "serving")
    assert "\n### Serving studies\n" in (ROOT / "docs" / "report.md").read_text(encoding="utf-8")


# llem report in the terminal


def test_the_terminal_prints_the_compact_serving_table(study):
    data, _ = study
    text = rendered(data)
    rows = {(m[1].strip(), m[2]): line for line in text.splitlines()
            if (m := re.match(r"│ ([^│]+?)\s*│\s+(\d+) │", line))}
    assert len(rows) == 12
    assert rows[(SEQS64, "4")].rstrip(" │").endswith("no (sat. point)")
    assert rows[(SEQS64, "8")].rstrip(" │").endswith("yes 2/3")
    assert rows[(TRT, "8")].rstrip(" │").endswith("no (not reached)")
    assert "│     n/a │" in rows[(SEQS1, "1")]  # J/token, no sensor
    assert (f"saturation of {SEQS1}: saturated at every rate from the lowest, 1 req/s: "
            "none marked") in text


# A study measured partly in a second environment


class ResumedElsewhere(ServingRunWriter):
    """Cycle 3 of the top rate ran in another environment (a resume with a newer harness)."""

    def run(self, run_dir: Path, timeout_s: float | None, on_event: EventCallback,
            gpus: list[int] | None = None) -> RunOutcome:
        outcome = super().run(run_dir, timeout_s, on_event, gpus)
        result = ExperimentResult.model_validate_json((run_dir / "result.json").read_text())
        if result.config.load.request_rate == 8 and result.cycle == 3:
            moved = result.environment.model_copy(update={"harness_version": "1"})
            result = result.model_copy(update={"environment": moved})
            (run_dir / "result.json").write_text(result.model_dump_json())
        return outcome


def test_a_rate_measured_in_two_environments_keeps_its_line_whole(tmp_path):
    # Rates 1, 2 and 4 ran in one environment; 8 ran there in cycles 1 and 2, and elsewhere
    # in cycle 3, so it has one statistics entry per environment. The first environment's
    # line still holds all four rates (8 saturates in cycle 2: the point is 4 req/s), and the
    # second's holds its one rate (sustained there: "not reached"): no line may lose rates
    # because another rate was split.
    def figures_at(config: ExperimentConfig, cycle: int) -> ServingFigures:
        rate = config.load.request_rate
        assert rate is not None
        return ServingFigures(j_per_token=J_PER_TOKEN_AT[rate], ttft_p90_s=TTFT_AT[rate],
                              tpot_p90_s=0.02, saturated=rate == 8 and cycle == 2)

    study_text = ("name: resumed\nmodel: m\nbackend: vllm\n"
                  "load: {mode: serving, request_rate: 1}\n"
                  "execution: {n_cycles: 3, config_gap_s: 0, cycle_gap_s: 0}\n"
                  "sweep: {load.request_rate: [1, 2, 4, 8]}\n")
    folder = tmp_path / "study"
    folder.mkdir()
    (folder / "study.yaml").write_text(study_text)
    from orchestrator import run_study

    _, study_dir = run_study(folder / "study.yaml", ResumedElsewhere(figures_at),
                             output=folder / "out", no_gaps=True)
    data = StudyData.load(study_dir)
    assert len(data.configurations) == 5  # 8 req/s has an entry per environment

    lines = serving_lines(data)

    by_rates = sorted((([p.rate_rps for p in line.points], line.saturation.rate_rps)
                       for line in lines), key=repr)
    assert by_rates == [([1.0, 2.0, 4.0, 8.0], 4.0), ([8.0], 8.0)]
    assert len({line.name for line in lines}) == 2
