"""report.html from study directories made by the library with a fake measured runner.

The fake's figures are known (llem_testkit.measured.FIGURES): vLLM at 8 and at 64 sequences,
both precisions, make the J/token-throughput front; PyTorch bf16 at batch 1 and 4 the
J/token-latency front. A CPU-like study (energy null, no_energy_sensor) must give notes where
energy figures would be, and only plots that have points.
"""

from __future__ import annotations

import io
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from llem_testkit.measured import SWEEP_STUDY, MeasuredRunWriter, measured_study
from llem_testkit.pages import figures, points
from plotly.offline import get_plotlyjs
from rich.console import Console

from harness.schema.run_spec import RunSpec
from orchestrator import run_study
from orchestrator.report.derived import ReportInputs
from orchestrator.report.html import write_html_report
from orchestrator.report.study_data import StudyData
from orchestrator.report.terminal import print_report

ROOT = Path(__file__).resolve().parents[4]
INPUTS = ReportInputs(carbon_intensity_g_per_kwh=350, electricity_price_per_kwh=0.25)
SECTIONS = ("overview", "pareto", "per-configuration", "sweeps", "power", "cold-start",
            "derived", "environment", "warnings", "excluded", "failures")
FAILED = "002_pytorch-bf16-bs4_c3"
DRIFTED = "006_vllm-bf16-seqs64_c2"


def _report(folder: Path, gpus: int, inputs: ReportInputs = INPUTS,
            text: str = SWEEP_STUDY) -> tuple[StudyData, str]:
    study_dir = measured_study(folder, gpus=gpus, fail=(FAILED,), drift=(DRIFTED,), text=text)
    data = StudyData.load(study_dir)
    path = write_html_report(data, inputs)
    assert path == study_dir / "report.html"
    return data, path.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def gpu_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[StudyData, str]:
    return _report(tmp_path_factory.mktemp("gpu"), gpus=1)


@pytest.fixture(scope="module")
def cpu_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[StudyData, str]:
    return _report(tmp_path_factory.mktemp("cpu"), gpus=0)


class _Resources(HTMLParser):
    """Every URL the page would load: script src, link href, img/iframe/source src."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        wanted = {"script": "src", "link": "href", "img": "src", "iframe": "src",
                  "source": "src", "embed": "src", "object": "data"}.get(tag)
        self.urls += [value or "" for name, value in attrs if name == wanted]


def test_the_report_is_one_file_that_loads_nothing_from_elsewhere(gpu_report):
    _, page = gpu_report
    plotly_js = get_plotlyjs()
    assert page.count(plotly_js) == 1, "Plotly's library must be inlined exactly once"
    ours = page.replace(plotly_js, "")
    parser = _Resources()
    parser.feed(ours)
    assert parser.urls == ["data:,"], f"the page loads {parser.urls}"  # the empty favicon
    assert "https://cdn" not in ours
    assert "mathjax" not in ours.lower()
    assert not re.search(r"@import|url\(\s*['\"]?https?:", ours)
    assert 'src="http' not in ours and "src='http" not in ours


def test_every_section_and_configuration_is_in_the_report(gpu_report):
    data, page = gpu_report
    for anchor in SECTIONS:
        assert f'<section id="{anchor}">' in page
        assert f'href="#{anchor}"' in page
    assert len(data.configurations) == 8
    for config in data.configurations:
        assert f"<td>{config.label}</td>" in page
        assert config.config_hash in page
    # host energy has its own columns, beside (never inside) J/token; these runs have no RAPL
    assert "<th>host CPU package J</th>" in page and "<th>dynamic J/token</th>" in page


def test_front_membership_is_stated_and_drawn(gpu_report):
    _, page = gpu_report
    throughput_front = re.search(r'data-front="output_tokens_per_s">([^<]*)<', page)
    assert throughput_front is not None
    assert throughput_front.group(1).split(", ") == [
        "vllm-bf16-seqs8", "vllm-bf16-seqs64", "vllm-fp16-seqs8", "vllm-fp16-seqs64"]
    latency_front = re.search(r'data-front="latency_e2e_p90_s">([^<]*)<', page)
    assert latency_front is not None
    assert latency_front.group(1) == "pytorch-bf16-bs1, pytorch-bf16-bs4"
    traces = {t["name"]: t for t in figures(page)["plot-pareto-throughput"]}
    assert points(traces["vllm: front"]["x"]) == 4
    assert points(traces["pytorch: dominated"]["x"]) == 4
    assert traces["pytorch: dominated"]["opacity"] < traces["vllm: front"]["opacity"]
    hovers = traces["vllm: front"]["hovertext"]
    assert any("vllm-fp16-seqs64" in h and "vllm.max_num_seqs: 64" in h
               and "precision: fp16" in h for h in hovers)


def test_j_per_token_bars_carry_the_stats_intervals(gpu_report):
    data, page = gpu_report
    bars = {t["name"]: t for t in figures(page)["plot-j-per-token"]}
    config = next(c for c in data.configurations if c.label == "pytorch-bf16-bs1")
    stats = config.metric("energy_per_output_token_j")
    assert stats is not None and stats.ci is not None and stats.mean is not None
    trace = bars["pytorch"]
    index = trace["x"].index("pytorch-bf16-bs1")
    assert trace["y"][index] == pytest.approx(stats.mean)
    assert trace["error_y"]["array"][index] == pytest.approx(stats.ci[1] - stats.mean)
    assert trace["error_y"]["arrayminus"][index] == pytest.approx(stats.mean - stats.ci[0])


def test_one_plot_per_swept_setting_with_a_line_per_other_setting(gpu_report):
    _, page = gpu_report
    plots = figures(page)
    batch = {t["name"] for t in plots["plot-sweep-pytorch.batch_size"]}
    assert batch == {"pytorch, precision=bf16", "pytorch, precision=fp16"}
    precision = {t["name"] for t in plots["plot-sweep-precision"]}
    assert precision == {"pytorch, batch_size=1", "pytorch, batch_size=4",
                         "vllm, max_num_seqs=8", "vllm, max_num_seqs=64"}
    assert "plot-sweep-vllm.max_num_seqs" in plots


def test_power_is_drawn_per_run_with_its_phases(gpu_report):
    data, page = gpu_report
    plots = figures(page)
    runs = [run.run_id for run in data.results]
    assert FAILED not in runs
    for run_id in runs:
        traces = plots[f"plot-power-{run_id}"]
        assert {t["name"] for t in traces} == {"GPU 0 power (W)", "GPU 0 temperature (degC)"}
        assert all(0 < points(t["x"]) <= 400 for t in traces)
    for phase in ("baseline", "load", "warmup", "measurement window", "prefill pass"):
        assert f'"text":"{phase}"' in page.replace(": ", ":")


def test_cold_start_split_environment_warnings_exclusions_and_failures(gpu_report):
    _, page = gpu_report
    plots = figures(page)
    for name in ("plot-cold-start-energy", "plot-cold-start-time"):
        assert sorted(t["name"] for t in plots[name]) == ["pytorch", "vllm"]
        assert sum(points(t["y"]) for t in plots[name]) == 8
    energy = {t["name"]: t["y"] for t in plots["plot-cold-start-energy"]}
    assert energy["pytorch"] == pytest.approx([270.0] * 4)  # 90 W for the 3 s load
    split = plots["plot-energy-split"]
    assert [points(t["y"]) for t in split] == [8, 8]
    assert "NVIDIA H100 80GB HBM3" in page and "550.54.15" in page and "700 W" in page
    assert "sha256:" + "ab" * 32 in page
    assert "thermal_drift" in page and "temperature moved more than 5 degC" in page
    assert "short_window" in page and "measurement window &lt; 10 s" in page
    excluded = page[page.index('<section id="excluded">'):page.index('<section id="failures">')]
    assert DRIFTED in excluded and "thermal_drift" in excluded
    failures = page[page.index('<section id="failures">'):]
    assert FAILED in failures and "failed on purpose" in failures


def test_derived_figures_are_labelled_with_their_inputs(gpu_report):
    data, page = gpu_report
    config = data.configurations[0]
    mean = config.mean("energy_per_output_token_j")
    assert mean is not None
    kwh = mean * 1e6 / 3.6e6
    assert f"{kwh:.4g} kWh/1M tokens" in page
    assert f"{kwh * 350:.4g} gCO2e/1M tokens" in page
    assert f"{kwh * 0.25:.4g} EUR/1M tokens" in page
    assert "(kWh/1M tokens x 350 gCO2e/kWh)" in page
    assert "(kWh/1M tokens x 0.25 EUR/kWh)" in page
    assert "grid carbon intensity 350 gCO2e/kWh" in page


def test_without_inputs_only_the_energy_figure_is_derived(tmp_path):
    _, page = _report(tmp_path, gpus=1, inputs=ReportInputs(),
                      text=SWEEP_STUDY.replace("n_cycles: 3", "n_cycles: 1"))
    assert "kWh/1M tokens" in page
    assert "gCO2e/1M tokens" not in page and "EUR/1M tokens" not in page
    assert "not given (no emissions figure)" in page and "not given (no cost figure)" in page


def test_a_study_without_energy_says_so_and_draws_no_empty_plot(cpu_report):
    data, page = cpu_report
    plots = figures(page)
    assert "no energy measured: no_energy_sensor (no NVIDIA GPU or NVML library" in page
    assert "no power samples in any run" in page
    for absent in ("plot-j-per-token", "plot-pareto-throughput", "plot-cold-start-energy",
                   "plot-energy-split"):
        assert absent not in plots
    assert not any(name.startswith("plot-power-") for name in plots)
    for present in ("plot-throughput", "plot-pareto-tput-lat", "plot-cold-start-time",
                    "plot-sweep-pytorch.batch_size"):
        assert present in plots
    for name, traces in plots.items():
        assert any(points(t.get("x")) > 0 for t in traces), f"{name} has no point"
    derived = page[page.index('<section id="derived">'):page.index('<section id="environment">')]
    assert "kWh/1M tokens" not in derived, "a figure was derived without energy"
    assert derived.count("no energy measured") == len(data.configurations)


@pytest.mark.parametrize("report", ["gpu_report", "cpu_report"])
def test_an_offline_study_has_no_serving_section_table_or_word(report, request):
    data, page = request.getfixturevalue(report)
    ours = page.replace(get_plotlyjs(), "")
    assert tuple(re.findall(r'<section id="([^"]+)">', ours)) == SECTIONS
    for word in ("serving", "saturat", "request rate", "req/s", "TTFT p90 (s)"):
        assert word not in ours, word
    console = Console(width=250, record=True, color_system=None, file=io.StringIO())
    print_report(data, console)
    text = console.export_text()
    assert "serving" not in text and "saturat" not in text


def test_a_study_whose_runs_all_failed_gives_notes_and_its_failures(tmp_path):
    study_dir = measured_study(tmp_path, fail=("*",),
                               text=SWEEP_STUDY.replace("n_cycles: 3", "n_cycles: 1"))
    page = write_html_report(StudyData.load(study_dir), INPUTS).read_text(encoding="utf-8")
    assert figures(page) == {}
    assert "no run completed: no throughput measured" in page
    failures = page[page.index('<section id="failures">'):]
    assert failures.count("failed on purpose") == 8


class VllmOnCpu(MeasuredRunWriter):
    """PyTorch runs on a fake GPU, vLLM runs without a sensor."""

    def run(self, run_dir, timeout_s, on_event, gpus=None):
        spec = RunSpec.model_validate_json((run_dir / "experiment.json").read_text())
        self.gpus = 0 if spec.config.backend == "vllm" else 1
        return super().run(run_dir, timeout_s, on_event, gpus)


def test_configurations_without_energy_are_named_where_energy_is_plotted(tmp_path):
    (tmp_path / "study.yaml").write_text(SWEEP_STUDY.replace("n_cycles: 3", "n_cycles: 1"))
    _, study_dir = run_study(tmp_path / "study.yaml", VllmOnCpu(), output=tmp_path / "out",
                             no_gaps=True)
    page = write_html_report(StudyData.load(study_dir), INPUTS).read_text(encoding="utf-8")
    bars = {t["name"] for t in figures(page)["plot-j-per-token"]}
    assert bars == {"pytorch"}
    assert ("not in the J/token plot, no energy measured: no_energy_sensor (no NVIDIA GPU or "
            "NVML library was found: every energy field is null): vllm-bf16-seqs8, "
            "vllm-bf16-seqs64, vllm-fp16-seqs8, vllm-fp16-seqs64") in page


def test_every_drawn_plot_has_points(gpu_report):
    _, page = gpu_report
    plots = figures(page)
    assert len(plots) == page.count("Plotly.newPlot(")
    for name, traces in plots.items():
        assert any(points(t.get("x")) > 0 for t in traces), f"{name} has no point"


def test_a_long_study_plots_one_run_per_configuration(tmp_path):
    _, page = _report(tmp_path, gpus=1, text=SWEEP_STUDY.replace("n_cycles: 3", "n_cycles: 4"))
    power = [name for name in figures(page) if name.startswith("plot-power-")]
    assert len(power) == 8
    assert "31 runs: the first used run of each configuration is shown" in page


def _anchors(markdown: Path) -> set[str]:
    """GitHub's anchors of a markdown file's headings."""
    headings = re.findall(r"^#+ (.+)$", markdown.read_text(encoding="utf-8"), re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def test_every_method_link_points_at_a_section_that_exists(gpu_report):
    _, page = gpu_report
    links = set(re.findall(r'href="(docs/[\w.]+\.md)#([\w-]+)"', page))
    assert {doc for doc, _ in links} == {"docs/methodology.md", "docs/report.md"}
    for doc, anchor in links:
        assert anchor in _anchors(ROOT / doc), f"{doc}#{anchor} does not exist"


def test_the_report_replaces_an_earlier_one_and_leaves_no_temporary_file(gpu_report):
    data, page = gpu_report
    write_html_report(data, INPUTS)
    assert (data.directory / "report.html").read_text(encoding="utf-8") == page
    assert not list(data.directory.glob(".report.html.*"))
