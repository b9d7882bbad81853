"""``llem report``'s table: one row per configuration, from the study directory's files.

Each figure is the mean over the runs ``stats.json`` pooled, with its 95 % interval where there
are enough cycles. A ``*`` marks a configuration on a Pareto front (J/token against tokens/s, or
against p90 latency); the best value of each column is in bold. Warnings and sanity flags are
listed per configuration, with the runs left out of the figures. A serving study gets a second,
compact table: per line and requested rate, the load achieved, J/token and p90 latencies (means),
whether the rate saturated, and each line's saturation point (:mod:`serving`).
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.console import Console
from rich.table import Table

from orchestrator.report import serving
from orchestrator.report.pareto import Better, Point, pareto_front
from orchestrator.report.serving import ServingLine, ServingPoint, mean_ci, serving_lines
from orchestrator.report.study_data import METRICS_BY_NAME, Configuration, StudyData

ENERGY = "energy_per_output_token_j"
THROUGHPUT = "output_tokens_per_s"
P90_LATENCY = "latency_e2e_p90_s"


@dataclass(frozen=True)
class Column:
    """A column of the report.

    Attributes:
        metric: the headline metric it shows.
        header: its header.
        spec: format spec of its figures.
        with_interval: the 95 % interval follows the mean.
        always: shown even when no configuration has a value (the energy columns say n/a).
    """

    metric: str
    header: str
    spec: str
    with_interval: bool = False
    always: bool = False


COLUMNS: tuple[Column, ...] = (
    Column(ENERGY, "J/token", ".4g", with_interval=True, always=True),
    Column("energy_dynamic_per_output_token_j", "dyn. J/token", ".4g", with_interval=True,
           always=True),
    Column(THROUGHPUT, "tokens/s", ".1f", with_interval=True, always=True),
    Column(P90_LATENCY, "e2e p90 s", ".3g"),
    Column("latency_ttft_p50_s", "TTFT p50 s", ".3g"),
    Column("latency_ttft_p90_s", "TTFT p90 s", ".3g"),
    Column("latency_tpot_p50_s", "TPOT p50 s", ".3g"),
    Column("latency_tpot_p90_s", "TPOT p90 s", ".3g"),
    Column("mean_power_w", "power W", ".4g"),
    Column("host_cpu_package_energy_j", "host CPU J", ".4g"),
)


def pareto_members(data: StudyData) -> dict[str, set[str]]:
    """Configuration keys on each front: 'throughput' (J/token vs tokens/s), 'latency'."""
    fronts = {"throughput": (THROUGHPUT, "higher"), "latency": (P90_LATENCY, "lower")}
    members: dict[str, set[str]] = {}
    for name, (metric, better) in fronts.items():
        points = [Point(config.key, config.mean(ENERGY), config.mean(metric))
                  for config in data.configurations]
        y_better: Better = "higher" if better == "higher" else "lower"
        members[name] = pareto_front(points, "lower", y_better)
    return members


def best_values(data: StudyData) -> dict[str, float]:
    """Per column, the best mean across configurations (by the metric's direction)."""
    best: dict[str, float] = {}
    for column in COLUMNS:
        better = METRICS_BY_NAME[column.metric].better
        found = (config.mean(column.metric) for config in data.configurations)
        means = [mean for mean in found if mean is not None]
        if means and better is not None:
            best[column.metric] = min(means) if better == "lower" else max(means)
    return best


def shown_columns(data: StudyData) -> list[Column]:
    """Energy and throughput, and the others where some configuration has a value."""
    return [column for column in COLUMNS
            if column.always
            or any(config.mean(column.metric) is not None for config in data.configurations)]


def figure(config: Configuration, column: Column, best: float | None) -> str:
    """One cell: mean (and interval), bold when it is the column's best; n/a when null."""
    stats = config.metric(column.metric)
    if stats is None or stats.mean is None:
        return "n/a"
    text = format(stats.mean, column.spec)
    if column.with_interval and stats.ci is not None:
        low, high = stats.ci
        text += f" [{format(low, column.spec)}, {format(high, column.spec)}]"
    return f"[bold]{text}[/]" if best is not None and stats.mean == best else text


def flags(config: Configuration) -> str:
    """Warning codes of its runs, and the runs left out of its figures with why."""
    codes: list[str] = []
    for run in config.runs:
        codes += [code for code in run.warning_codes() if code not in codes]
        if run.sanity is not None and not run.sanity.passed and "sanity_failed" not in codes:
            codes.append("sanity_failed")
    excluded = [f"{flagged.run_id} left out ({', '.join(flagged.reasons)})"
                for flagged in config.stats.flagged if flagged.run_id not in config.stats.run_ids]
    return "; ".join(filter(None, [" ".join(codes), *excluded]))


def report_table(data: StudyData) -> Table:
    """The report as a rich table (one row per configuration)."""
    columns = shown_columns(data)
    best = best_values(data)
    fronts = pareto_members(data)
    table = Table(title=f"{data.name} ({data.directory})")
    table.add_column("configuration", overflow="fold")
    table.add_column("backend", no_wrap=True)
    table.add_column("cycles", justify="right")
    for column in columns:
        table.add_column(column.header, justify="right")
    table.add_column("warnings and flags", overflow="fold")
    for config in data.configurations:
        on_front = any(config.key in members for members in fronts.values())
        label = f"* {config.label}" if on_front else config.label
        table.add_row(label, config.backend, str(len(config.stats.run_ids)),
                      *[figure(config, column, best.get(column.metric)) for column in columns],
                      flags(config))
    return table


SERVING_COLUMNS = (("offered", serving.OFFERED, ".3g"), ("achieved", serving.ACHIEVED, ".3g"),
                   ("goodput", serving.GOODPUT, ".3g"), ("J/token", serving.J_PER_TOKEN, ".4g"),
                   ("TTFT p90 s", serving.TTFT_P90, ".3g"), ("TPOT p90 s", serving.TPOT_P90, ".3g"))
"""The serving table's figures after the requested rate: header, figure, format spec."""


def saturation_cell(line: ServingLine, point: ServingPoint) -> str:
    """``yes k/n`` (k of n pooled cycles saturated), or ``no`` (the mark's, said so)."""
    if point.saturated:
        return f"yes {point.saturated_cycles}/{point.cycles}"
    if line.is_marked(point):
        return "no (sat. point)" if line.saturation.reached else "no (not reached)"
    return "no"


def serving_table(lines: list[ServingLine]) -> Table:
    """The serving study's compact table: one row per line and requested rate (means)."""
    table = Table(title="serving: against the requested rate (req/s; means)")
    table.add_column("line", overflow="fold")
    table.add_column("rate", justify="right")
    for header, _, _ in SERVING_COLUMNS:
        table.add_column(header, justify="right")
    table.add_column("saturated", no_wrap=True)
    for line in lines:
        for point in line.points:
            table.add_row(line.name, f"{point.rate_rps:g}",
                          *[mean_ci(point.figures[name], spec, interval=False)
                            for _, name, spec in SERVING_COLUMNS],
                          saturation_cell(line, point))
    return table


def print_serving(data: StudyData, console: Console) -> None:
    """The serving table and each line's saturation point; nothing for an offline study."""
    lines = serving_lines(data)
    if not lines:
        return
    console.print(serving_table(lines))
    console.print("sat. point: the highest rate sustained before the first saturated one; "
                  "not reached: no rate saturated; yes k/n: k of the n pooled cycles saturated",
                  highlight=False)
    for line in lines:
        console.print(f"saturation of {line.name}: {line.saturation.text}", highlight=False,
                      markup=False)


def print_report(data: StudyData, console: Console) -> None:
    """The table, then what its marks mean and what is missing."""
    if not data.configurations:
        console.print(f"{data.name}: no completed run, nothing to report", highlight=False)
        return
    console.print(report_table(data))
    fronts = pareto_members(data)
    if any(fronts.values()):
        console.print("* on a Pareto front: J/token against tokens/s"
                      + (" or against p90 latency" if fronts["latency"] else "")
                      + "; bold: best of its column; \\[low, high]: 95 % interval of the mean",
                      highlight=False)
    else:
        console.print("no Pareto front: no configuration has an energy figure "
                      "(see its warnings)", highlight=False)
    print_serving(data, console)
    for warning in data.summary.warnings:
        console.print(f"[yellow]warning:[/] {warning}", highlight=False)
    for failure in data.summary.failures:
        console.print(f"[red]failed:[/] {failure.run_id}: {failure.cause}: {failure.message}",
                      highlight=False)
