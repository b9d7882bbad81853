"""The report's tables: serving, derived figures, environment, warnings, exclusions, failures.

Plain HTML from the study's files, every value escaped; no figure is computed here that a
result file or stats.json does not hold, except the derived figures of :mod:`derived`, each
labelled with its inputs.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence

from harness.schema.result import Environment, ExperimentResult
from harness.schema.warnings import WARNING_CODES
from orchestrator.report.derived import derived_figures
from orchestrator.report.figures import J_PER_TOKEN, display_name
from orchestrator.report.serving import (
    ACHIEVED,
    GOODPUT,
    OFFERED,
    TPOT_P90,
    TTFT_P90,
    ServingLine,
    mean_ci,
    saturated_text,
)
from orchestrator.report.study_data import Configuration, StudyData
from orchestrator.study.report_inputs import ReportInputs

ENERGY_NULL_CODES = ("no_energy_sensor", "energy_source_none", "gpu_unreadable")
"""Warnings that come with every energy field null."""


def esc(value: object) -> str:
    """``value`` as escaped HTML text; None is an empty cell."""
    return "" if value is None else html.escape(str(value))


def table(header: Sequence[str], rows: Iterable[Sequence[object]], css: str = "") -> str:
    """An HTML table; cells are escaped unless given as :class:`Raw`."""
    head = "".join(f"<th>{esc(cell)}</th>" for cell in header)
    body = "".join("<tr>" + "".join(f"<td>{_cell(cell)}</td>" for cell in row) + "</tr>"
                   for row in rows)
    return f'<table class="{css}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


class Raw(str):
    """HTML that a table cell shows as it is (already escaped)."""


def _cell(cell: object) -> str:
    return str(cell) if isinstance(cell, Raw) else esc(cell)


def note(text: str, css: str = "note") -> str:
    """A highlighted paragraph (why a figure is absent, what a reader must know)."""
    return f'<p class="{css}">{esc(text)}</p>'


def _energy_null_codes(runs: Sequence[ExperimentResult]) -> list[str]:
    return sorted({w.code for run in runs for w in run.warnings if w.code in ENERGY_NULL_CODES})


def no_energy_reason(runs: Sequence[ExperimentResult]) -> str:
    """``no energy measured: <code> (<meaning>)`` from the runs' warnings, for notes."""
    codes = _energy_null_codes(runs)
    if not codes:
        return "no energy measured: no run reported an energy figure"
    return "no energy measured: " + "; ".join(f"{code} ({WARNING_CODES[code]})"
                                               for code in codes)


def _number(value: float | None, spec: str = ".4g") -> str:
    return "n/a" if value is None else format(value, spec)


def inputs_paragraph(inputs: ReportInputs) -> str:
    """The user's inputs the derived figures use, or what is missing and what it costs."""
    carbon = (f"{inputs.carbon_intensity_g_per_kwh:g} gCO2e/kWh"
              if inputs.carbon_intensity_g_per_kwh is not None
              else "not given (no emissions figure)")
    price = (f"{inputs.electricity_price_per_kwh:g} {inputs.currency}/kWh"
             if inputs.electricity_price_per_kwh is not None else "not given (no cost figure)")
    return (f"<p>Inputs (the study's <code>report:</code> section or <code>llem report</code>'s"
            f" options): grid carbon intensity {esc(carbon)}; electricity price {esc(price)}."
            "</p>")


def derived_table(configs: Sequence[Configuration], inputs: ReportInputs) -> str:
    """Per configuration: mean J/token and each derived figure with the inputs it came from."""
    rows = []
    for config in configs:
        mean = config.mean(J_PER_TOKEN)
        figures = derived_figures(mean, inputs)
        if not figures:
            codes = ", ".join(_energy_null_codes(config.runs)) or "no energy figure"
            rows.append([display_name(config), "n/a",
                         Raw(note(f"no energy measured ({codes}): nothing derived",
                                  "note inline"))])
            continue
        cells = "<br>".join(f'<span class="derived" data-name="{esc(f.name)}">{f.value:.4g} '
                            f"{esc(f.unit)}</span> <small>({esc(f.inputs)})</small>"
                            for f in figures)
        rows.append([display_name(config), _number(mean), Raw(cells)])
    return table(["configuration", "J/token (mean)", "derived figures (inputs)"], rows)


def _gpus(environment: Environment) -> str:
    if not environment.gpus:
        return "none"
    return "; ".join(f"{gpu.index}: {gpu.name}, {gpu.memory_total_mb:.0f} MiB, power limit "
                     f"{_number(gpu.power_limit_w, '.0f')} W (default "
                     f"{_number(gpu.default_power_limit_w, '.0f')} W)"
                     for gpu in environment.gpus)


def _environment_rows(run: ExperimentResult) -> list[tuple[str, str]]:
    env = run.environment
    versions = ", ".join(f"{name} {version}" for name, version
                         in sorted(env.backend_versions.items())) or "none recorded"
    return [("runner", run.runner), ("GPUs", _gpus(env)),
            ("driver", env.driver_version or "none"), ("CUDA", env.cuda_version or "none"),
            ("cuDNN", env.cudnn_version or "none"), ("CPU", env.cpu or "unknown"),
            ("OS", env.os), ("Python", env.python), ("llem harness", env.harness_version),
            ("backend versions", versions),
            ("image", env.container_image_digest or env.container_image_id or "none (local)")]


def environment_table(data: StudyData) -> str:
    """The distinct environments the runs measured, side by side, with their configurations."""
    columns: dict[tuple[tuple[str, str], ...], list[str]] = {}
    for config in data.configurations:
        for run in config.runs:
            names = columns.setdefault(tuple(_environment_rows(run)), [])
            if display_name(config) not in names:
                names.append(display_name(config))
    if not columns:
        return note("no completed run: no environment recorded")
    environments = list(columns)
    rows: list[list[object]] = [["configurations", *(", ".join(n) for n in columns.values())]]
    for number, (label, _) in enumerate(environments[0]):
        values = [environment[number][1] for environment in environments]
        differs = len(set(values)) > 1
        rows.append([Raw(f"<b>{esc(label)}</b>") if differs else label, *values])
    header = ["", *(f"environment {n}" for n in range(1, len(environments) + 1))]
    return table(header, rows, "environment")


def warnings_table(data: StudyData) -> str:
    """Every warning code the runs carry, with its meaning, how many runs and one message."""
    seen: dict[str, list[ExperimentResult]] = {}
    for run in data.results:
        for code in dict.fromkeys(run.warning_codes()):
            seen.setdefault(code, []).append(run)
    rows = []
    for code, runs in sorted(seen.items()):
        message = next(w.message for w in runs[0].warnings if w.code == code)
        rows.append([Raw(f'<code class="warning-code">{esc(code)}</code>'),
                     WARNING_CODES.get(code, "not a registered warning code"),
                     f"{len(runs)} of {len(data.results)}", f"{runs[0].run_id}: {message}"])
    study_notes = [*data.summary.warnings, *(data.stats.warnings if data.stats else [])]
    notes = "".join(note(text) for text in study_notes)
    if not rows:
        return notes + note("no run carries a warning", "ok")
    return notes + table(["code", "meaning", "runs", "example"], rows)


def excluded_table(configs: Sequence[Configuration]) -> str:
    """Runs left out of the statistics (stats.json ``flagged``) and why."""
    rows = [[display_name(config), flagged.run_id, flagged.cycle,
             ", ".join(flagged.reasons), "; ".join(flagged.sanity_failed_checks)]
            for config in configs for flagged in config.stats.flagged]
    if not rows:
        return note("no run was excluded from the statistics", "ok")
    return table(["configuration", "run", "cycle", "reasons", "failed sanity checks"], rows)


def failures_table(data: StudyData) -> str:
    """Failed runs and skipped combinations from summary.json."""
    parts = []
    if data.summary.failures:
        parts.append(table(["run", "cause", "exit code", "message"],
                           [[f.run_id, f.cause, f.exit_code, f.message]
                            for f in data.summary.failures], "failures"))
    if data.summary.skipped:
        parts.append(table(["skipped combination", "reason"],
                           [[s.description, s.reason] for s in data.summary.skipped]))
    return "".join(parts) or note("no run failed and no combination was skipped", "ok")


def saturation_list(lines: Sequence[ServingLine]) -> str:
    """Each serving line's saturation point, in words."""
    items = "".join(
        f'<li data-saturation="{esc(_rate(line.saturation.rate_rps))}"><b>{esc(line.name)}'
        f"</b>: {esc(line.saturation.text)}</li>" for line in lines)
    return f"<p>Saturation point per line:</p><ul>{items}</ul>"


def _rate(rate_rps: float | None) -> str:
    return "none" if rate_rps is None else f"{rate_rps:g}"


def serving_table(lines: Sequence[ServingLine]) -> str:
    """One row per line and rate: the load as offered and achieved, J/token, p90 latencies.

    Rates are means; J/token and the latencies carry their 95 % interval.
    """
    rows = []
    for line in lines:
        for point in line.points:
            figures = point.figures
            saturated = esc(saturated_text(line, point))
            rows.append([
                line.name, point.config.label, f"{point.rate_rps:g}",
                mean_ci(figures[OFFERED], ".3g", interval=False),
                mean_ci(figures[ACHIEVED], ".3g", interval=False),
                mean_ci(figures[GOODPUT], ".3g", interval=False), mean_ci(figures[J_PER_TOKEN]),
                mean_ci(figures[TTFT_P90], ".3g"), mean_ci(figures[TPOT_P90], ".3g"),
                Raw(f"<b>{saturated}</b>" if line.is_marked(point) else saturated),
                point.cycles])
    caption = ("<p>Rates in req/s: requested (serving.request_rate_rps), offered, achieved "
               "and goodput (serving.offered_rate_rps, achieved_rate_rps, goodput_rps; means); "
               "J/token and the p90 latencies as mean [95 % interval].</p>")
    return caption + table(["line", "configuration", "requested", "offered", "achieved",
                            "goodput", "J/token", "TTFT p90 (s)", "TPOT p90 (s)", "saturated",
                            "cycles"], rows, "serving")
