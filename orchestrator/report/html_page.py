"""The page of ``report.html``: one self-contained page of a study's figures that opens offline.

Plotly's JavaScript is inlined once in the page's head and every figure is a ``<div>`` with the
script that draws it, so the file needs no network, no CDN, no web font and no other file; it
can be mailed or archived alone. Every figure says how it was made (its method, with the
section of ``docs/methodology.md`` that defines its figures), and a figure with nothing to show
(no energy measured, no latency measured) is replaced by a note saying why, never drawn empty.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import plotly.graph_objects as go  # type: ignore[import-untyped]
from plotly.offline import get_plotlyjs  # type: ignore[import-untyped]

from orchestrator.report import figures as fig
from orchestrator.report import html_tables as tables
from orchestrator.report.figures import (
    J_PER_TOKEN,
    LATENCY_P90,
    THROUGHPUT,
    display_name,
    power_figure,
)
from orchestrator.report.html_tables import esc, note
from orchestrator.report.pareto import Point, pareto_front
from orchestrator.report.power import MAX_POINTS, read_trace
from orchestrator.report.serving import (
    RATE_SETTING,
    ServingLine,
    serving_configurations,
    serving_lines,
    unpooled,
)
from orchestrator.report.serving_figure import serving_figure
from orchestrator.report.study_data import METRICS_BY_NAME, Configuration, StudyData
from orchestrator.study.report_inputs import ReportInputs

METHODOLOGY = "docs/methodology.md"
MAX_POWER_RUNS = 24
"""Runs whose power is plotted one by one; beyond, the first used run of each configuration."""
PLOT_CONFIG = {"displaylogo": False, "responsive": True,
               "modeBarButtonsToRemove": ["sendDataToCloud"]}


@dataclass(frozen=True)
class Section:
    """One section of the page: its anchor, title and HTML body."""

    anchor: str
    title: str
    body: str


DYNAMIC_J_PER_TOKEN = "energy_dynamic_per_output_token_j"  # noqa: S105 - a metric name
HOST_CPU_J = "host_cpu_package_energy_j"
HOST_DRAM_J = "host_dram_energy_j"

def render_report(data: StudyData, inputs: ReportInputs) -> str:
    """The whole page as a string (see the module docstring for what it holds)."""
    built = [builder(data, inputs) for builder in SECTIONS]
    return _page(data, [section for section in built if section is not None],
                 str(get_plotlyjs()))


def plot(figure: go.Figure, name: str) -> str:
    """A figure as a ``<div>`` and its drawing script, without Plotly's library or MathJax."""
    div_id = f"plot-{name}"
    return str(figure.to_html(full_html=False, include_plotlyjs=False, include_mathjax=False,
                              config=PLOT_CONFIG, div_id=div_id))


def method(text: str, *anchors: str) -> str:
    """How a figure was made, with the methodology sections that define its figures."""
    links = ", ".join(f'<a class="doc" href="{METHODOLOGY}#{a}">{METHODOLOGY}#{a}</a>'
                      for a in anchors)
    return f'<p class="method"><b>Method.</b> {esc(text)} See {links}.</p>'


def _figure_or_note(figure: go.Figure | None, name: str, why_absent: str) -> str:
    return plot(figure, name) if figure is not None else note(why_absent)


def _energy_measured(data: StudyData) -> bool:
    return any(config.mean(J_PER_TOKEN) is not None for config in data.configurations)


def _overview(data: StudyData, inputs: ReportInputs) -> Section:

    counts = ", ".join(f"{n} {status}" for status, n in sorted(data.summary.counts.items()))
    rows = [[display_name(c), c.backend, c.config_hash, len(c.used_runs),
             c.stats.n_excluded, _mean_ci(c, J_PER_TOKEN), _mean_ci(c, DYNAMIC_J_PER_TOKEN),
             _mean_ci(c, THROUGHPUT), _mean_ci(c, LATENCY_P90), _mean_ci(c, HOST_CPU_J),
             _mean_ci(c, HOST_DRAM_J)] for c in data.configurations]
    body = (f"<p>Study <b>{esc(data.name)}</b> in <code>{esc(data.directory.name)}</code>: "
            f"runner {esc(data.summary.runner)}, runs: {esc(counts)}; design hash "
            f"<code>{esc(data.summary.design_hash)}</code>; finished "
            f"{esc(data.summary.finished_at)}.</p>")
    if not _energy_measured(data):
        body += note(tables.no_energy_reason(data.results), "note no-energy")
    body += tables.table(["configuration", "backend", "config hash", "runs used", "excluded",
                          "J/token", "dynamic J/token", "tokens/s", "e2e p90 (s)",
                          "host CPU package J", "host DRAM J"], rows, "configurations")
    body += method("Means over the runs stats.json pools per configuration, with the 95 % "
                   "interval of the mean (Student t below 30 cycles, BCa bootstrap from 30). "
                   "Host CPU package and DRAM energy are the window's RAPL figures (n/a where "
                   "the host's powercap could not be read); they are not part of J/token.",
                   "statistics-across-cycles")
    return Section("overview", "Overview", body)


def _mean_ci(config: Configuration, metric: str) -> str:
    stats = config.metric(metric)
    if stats is None or stats.mean is None:
        return "n/a"
    if stats.ci is None:
        return f"{stats.mean:.4g}"
    return f"{stats.mean:.4g} [{stats.ci[0]:.4g}, {stats.ci[1]:.4g}]"


def _pareto(data: StudyData, inputs: ReportInputs) -> Section:

    configs, swept = data.configurations, data.swept_settings
    if not _energy_measured(data):
        body = note(tables.no_energy_reason(data.results), "note no-energy")
        body += "<p>Without energy, the front of throughput against latency:</p>"
        body += _figure_or_note(
            fig.pareto_figure(configs, swept, fig.THROUGHPUT, fig.LATENCY_P90), "pareto-tput-lat",
            "no latency measured (no backend reported per-request end-to-end latency)")
    else:
        body = plot(_required(fig.pareto_figure(configs, swept, fig.THROUGHPUT)),
                    "pareto-throughput")
        body += _figure_or_note(
            fig.pareto_figure(configs, swept, fig.LATENCY_P90), "pareto-latency",
            "no latency front: no configuration measured per-request end-to-end latency "
            "(engines that return every request at once have none)")
    body += _front_list(data)
    body += method("Each point is a configuration's mean over its pooled runs. A configuration "
                   "is on the front when no other is at least as good on both axes and better "
                   "on one; dominated points are faded, front members are diamonds joined by "
                   "a dotted line. Hover a point for its settings.",
                   "statistics-across-cycles", "throughput-and-latency")
    return Section("pareto", "Pareto fronts", body)


def _required(figure: go.Figure | None) -> go.Figure:
    if figure is None:
        raise ValueError("a figure the measured data should give is missing")
    return figure


def _front_list(data: StudyData) -> str:
    """Which configurations are on which front, in words (also for readers without hover)."""
    pairs = [(fig.THROUGHPUT, fig.J_PER_TOKEN), (fig.LATENCY_P90, fig.J_PER_TOKEN),
             (fig.THROUGHPUT, fig.LATENCY_P90)]
    items = []
    for x_metric, y_metric in pairs:
        points = [Point(c.key, c.mean(x_metric), c.mean(y_metric)) for c in data.configurations]
        front = pareto_front(points, METRICS_BY_NAME[x_metric].better or "higher",
                             METRICS_BY_NAME[y_metric].better or "lower")
        if front:
            names = [fig.display_name(c) for c in data.configurations if c.key in front]
            items.append(f'<li>{esc(y_metric)} against {esc(x_metric)}: <span class="front" '
                         f'data-front="{esc(x_metric)}">{esc(", ".join(names))}</span></li>')
    return f"<p>On the front:</p><ul>{''.join(items)}</ul>" if items else ""


def _serving(data: StudyData, inputs: ReportInputs) -> Section | None:
    """Serving studies only: the figure against the request rate, saturation, the table."""
    if not serving_configurations(data):
        return None
    lines = serving_lines(data)
    gap = _energy_gap(lines)
    body = ""
    if lines:
        body += _figure_or_note(serving_figure(lines, gap), "serving",
                                "no serving figure measured: no J/token, TTFT or TPOT")
        body += note(gap, "note no-energy") if gap else ""
        body += tables.saturation_list(lines) + tables.serving_table(lines)
    left_out = unpooled(data)
    if left_out:
        body += note("not drawn, every run left out of the statistics (see Runs excluded "
                     f"from statistics): {', '.join(display_name(c) for c in left_out)}")
    body += ('<p class="method"><b>Method.</b> One line per backend and configuration: the '
             "configurations that differ only in load.request_rate, against the requested "
             "rate (serving.request_rate_rps). Each point is a configuration's runs that "
             "stats.json pools: the mean, whiskers at the 95 % interval of the mean (none "
             "below 3 cycles). J/token is energy.energy_per_output_token_j over the "
             "steady-state window; TTFT and TPOT p90 are serving.ttft.p90_s and "
             "serving.tpot.p90_s of the requests that arrived in it. A point is saturated (x) "
             "when any of its runs was (serving.saturated); the star marks the highest rate "
             "sustained before the first saturated one (open: none saturated). Goodput needs "
             'slo:. See <a class="doc" href="docs/report.md#serving-studies">'
             "docs/report.md#serving-studies</a>.</p>")
    return Section("serving", "Serving: energy and latency against request rate", body)


def _energy_gap(lines: Sequence[ServingLine]) -> str | None:
    """Which points have no J/token and why; None when every point has it."""
    missing = [(line, [p for p in line.points if p.mean(J_PER_TOKEN) is None])
               for line in lines]
    missing = [(line, points) for line, points in missing if points]
    if not missing:
        return None
    reason = tables.no_energy_reason([run for _, points in missing for point in points
                                      for run in point.config.used_runs])
    if sum(len(points) for _, points in missing) == sum(len(line.points) for line in lines):
        return f"{reason}: J/token is not drawn"
    where = "; ".join(f"{line.name} at {', '.join(f'{p.rate_rps:g}' for p in points)} req/s"
                      for line, points in missing)
    return f"no J/token for {where} ({reason})"


def _per_configuration(data: StudyData, inputs: ReportInputs) -> Section:

    configs, swept = data.configurations, data.swept_settings
    body = _figure_or_note(fig.metric_bars(configs, swept, fig.J_PER_TOKEN), "j-per-token",
                           tables.no_energy_reason(data.results))
    unmeasured = [c for c in configs if c.mean(J_PER_TOKEN) is None]
    if unmeasured and len(unmeasured) < len(configs):
        names = ", ".join(display_name(c) for c in unmeasured)
        runs = [run for c in unmeasured for run in c.runs]
        body += note(f"not in the J/token plot, {tables.no_energy_reason(runs)}: {names}")
    body += _figure_or_note(fig.metric_bars(configs, swept, fig.THROUGHPUT), "throughput",
                            "no run completed: no throughput measured")
    body += method("Bars are the mean over each configuration's pooled runs, whiskers its 95 % "
                   "interval of the mean (none below 3 cycles); one colour per backend. "
                   "J/token is window energy (idle power included) over output tokens.",
                   "energy", "statistics-across-cycles")
    return Section("per-configuration", "Energy and throughput per configuration", body)


def _sweeps(data: StudyData, inputs: ReportInputs) -> Section:

    settings = [s for s in data.swept_settings if s != "backend"]
    metric = fig.J_PER_TOKEN if _energy_measured(data) else fig.THROUGHPUT
    parts = [] if metric == fig.J_PER_TOKEN else [
        note(tables.no_energy_reason(data.results) + "; throughput is shown instead",
             "note no-energy")]
    drawn_by_serving = RATE_SETTING in settings and bool(serving_configurations(data))
    if drawn_by_serving:
        settings.remove(RATE_SETTING)
        parts.append(note(f"{RATE_SETTING}: see the serving section, which draws it with "
                          "latency and saturation"))
    for setting in settings:
        parts.append(_figure_or_note(
            fig.sweep_figure(data.configurations, data.swept_settings, setting, metric),
            f"sweep-{setting}", f"no configuration measured {metric} with {setting} set"))
    if not settings and not drawn_by_serving:
        parts.append(note("no setting was swept: one configuration per backend at most"))
    parts.append(method(f"{metric} (mean, 95 % interval) against each swept setting; one line "
                        "per combination of the other swept settings (backend first).",
                        "statistics-across-cycles"))
    return Section("sweeps", "Swept settings", "".join(parts))


def _power_runs(data: StudyData) -> tuple[list[str], str]:
    """The run ids to plot and a note when some were left out."""
    every = [run.run_id for c in data.configurations for run in c.runs]
    if len(every) <= MAX_POWER_RUNS:
        return every, ""
    first = [(c.used_runs or c.runs)[0].run_id for c in data.configurations]
    return first, (f"{len(every)} runs: the first used run of each configuration is shown; "
                   "every run's samples are in its timeseries.parquet.")


def _power(data: StudyData, inputs: ReportInputs) -> Section:

    runs, left_out = _power_runs(data)
    parts = [note(left_out)] if left_out else []
    plots, missing = [], []
    for run_id in runs:
        trace = read_trace(data.directory / run_id)
        figure = None if trace is None else power_figure(
            trace, f"{run_id}{' (partial: the run was killed)' if trace.partial else ''}")
        if figure is None:
            missing.append(run_id)
        else:
            plots.append(plot(figure, f"power-{run_id}"))
    if plots:
        parts.append(f'<div class="grid">{"".join(plots)}</div>')
    if missing:
        parts.append(note(_no_power(data, missing, len(runs)), "note no-power"))
    parts.append(method(
        "Power as the sampler read it (every energy.sample_interval_ms), per GPU, from each "
        "run's timeseries.parquet; phases are shaded from the file's phase markers (baseline, "
        f"load, warmup, measurement window, prefill pass). Long runs are reduced to {MAX_POINTS} "
        "points per GPU by averaging consecutive samples. Temperature (dotted) on the right axis.",
        "the-protocol-of-one-run", "energy"))
    return Section("power", "Power and temperature over time", "".join(parts))


def _no_power(data: StudyData, missing: Sequence[str], plotted: int) -> str:
    runs = "any run" if len(missing) == plotted else ", ".join(missing)
    reason = "" if _energy_measured(data) else f" ({tables.no_energy_reason(data.results)})"
    return f"no power samples in {runs}{reason}"


def _cold_start(data: StudyData, inputs: ReportInputs) -> Section:

    configs = data.configurations
    no_energy = tables.no_energy_reason(data.results)
    body = _figure_or_note(fig.cold_start_figure(
        configs, "cold_start_energy_j", "J", "Cold start (model load) energy"),
        "cold-start-energy", f"no cold-start energy: {no_energy}")
    body += _figure_or_note(fig.cold_start_figure(
        configs, "cold_start_duration_s", "s", "Cold start (model load) time"),
        "cold-start-time", "no run recorded its load time")
    body += _figure_or_note(fig.energy_split_figure(configs), "energy-split",
                            f"no idle/dynamic split: {no_energy}" if not _energy_measured(data)
                            else "no idle/dynamic split: no run measured a baseline "
                                 "(energy_dynamic_j is null)")
    body += method("Cold start: mean of energy.cold_start_energy_j and cold_start_duration_s "
                   "over each configuration's pooled runs (the load phase, outside every other "
                   "figure). Split: energy_dynamic_j is energy_j minus idle power "
                   "(baseline_power_w) times the window length; the grey part is that idle "
                   "share. Means from stats.json.", "the-protocol-of-one-run", "energy")
    return Section("cold-start", "Cold start and idle/dynamic energy", body)


def _derived(data: StudyData, inputs: ReportInputs) -> Section:
    body = tables.inputs_paragraph(inputs) + tables.derived_table(data.configurations, inputs)
    body += ('<p class="method"><b>Method.</b> kWh per 1M output tokens = mean J/token x 1e6 / '
             "3.6e6; emissions and cost multiply it by the inputs above; nothing is estimated "
             'where energy was not measured. See <a class="doc" href="docs/report.md#derived-'
             'figures">docs/report.md#derived-figures</a>.</p>')
    return Section("derived", "Derived figures", body)


def _environment(data: StudyData, inputs: ReportInputs) -> Section:
    body = tables.environment_table(data)
    body += method("As each run's result.json recorded it (read from NVML and the libraries, "
                   "never from pip); a bold field differs between environments.",
                   "which-gpus-are-measured")
    return Section("environment", "Environment", body)


def _warnings(data: StudyData, inputs: ReportInputs) -> Section:
    body = tables.warnings_table(data)
    body += method("Every code the runs' result.json files carry, with its registered meaning.",
                   "warnings")
    return Section("warnings", "Warnings", body)


def _excluded(data: StudyData, inputs: ReportInputs) -> Section:
    body = tables.excluded_table(data.configurations)
    body += method("stats.json leaves out runs with a failed sanity check or a warning that "
                   "puts their energy in doubt, and lists them here.",
                   "statistics-across-cycles", "sanity-checks")
    return Section("excluded", "Runs excluded from statistics", body)


def _failures(data: StudyData, inputs: ReportInputs) -> Section:
    return Section("failures", "Failures", tables.failures_table(data))


SECTIONS: tuple[Callable[[StudyData, ReportInputs], Section | None], ...] = (
    _overview, _pareto, _serving, _per_configuration, _sweeps, _power, _cold_start, _derived,
    _environment, _warnings, _excluded, _failures)

STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0 auto;
max-width:1200px;padding:0 1.5em 3em;color:#222;line-height:1.45}
h1{margin-top:1em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}
nav ul{display:flex;flex-wrap:wrap;gap:.4em 1.2em;padding:0;list-style:none}
table{border-collapse:collapse;margin:.6em 0;font-size:.9em;max-width:100%}
th,td{border:1px solid #ddd;padding:.3em .6em;text-align:left;vertical-align:top;
overflow-wrap:anywhere}
th{background:#f3f3f3}code{font-size:.92em}
.note{background:#fff4e5;border-left:4px solid #f0a030;padding:.5em .8em}
.ok{background:#eef7ee;border-left:4px solid #5a5;padding:.5em .8em}
.method{color:#555;font-size:.9em}.inline{margin:0}
.plotly-graph-div{margin:1em 0}
.grid{display:grid;grid-template-columns:repeat(2,minmax(0,1fr));gap:0 1em}
@media (max-width:1000px){.grid{grid-template-columns:minmax(0,1fr)}}
.grid>div{min-width:0;overflow:hidden}
"""


def _page(data: StudyData, sections: Sequence[Section], plotly_js: str) -> str:
    nav = "".join(f'<li><a href="#{s.anchor}">{esc(s.title)}</a></li>' for s in sections)
    body = "".join(f'<section id="{s.anchor}"><h2>{esc(s.title)}</h2>{s.body}</section>'
                   for s in sections)
    title = html.escape(f"llem report: {data.name}")
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<title>{title}</title><link rel="icon" href="data:,"><style>{STYLE}</style>'
            f'<script type="text/javascript">{plotly_js}</script></head>'
            f"<body><h1>{title}</h1><nav><ul>{nav}</ul></nav>{body}</body></html>\n")
