"""The report commands: ``llem compare`` and ``llem history``.

``llem compare`` exits 0 without a failing verdict of a gating metric, 1 with one (regressed,
lost, or excluded (flagged); stderr names the metric and configuration), 2 when the studies are
not comparable or the input is bad.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import click

from harness.errors import ConfigError
from orchestrator.cli_common import EXIT_FAILED, EXIT_OK, PERCENT, JsonCommand, err, fail, out

if TYPE_CHECKING:
    from orchestrator.report.compare import MetricComparison

_STUDY_DIR = click.Path(exists=False, file_okay=False, path_type=Path)


def parse_metric_thresholds(pairs: tuple[str, ...]) -> dict[str, float]:
    """``("energy_j=10",)`` -> ``{"energy_j": 10.0}``; ConfigError for a malformed pair.

    The percentage must be finite and >= 0 (``nan`` would silently make it 0 %).
    """
    thresholds = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        try:
            pct = float(value)
        except ValueError:
            pct = -1.0
        if not sep or not math.isfinite(pct) or pct < 0:
            raise ConfigError(f"--metric-threshold {pair!r} is not NAME=PCT",
                              fix="e.g. --metric-threshold latency_e2e_p50_s=10")
        thresholds[name.strip()] = pct
    return thresholds


def gating_metrics(gates: tuple[str, ...]) -> list[str]:
    """The default gating metrics plus those of ``--gate`` (``all``: every directed metric)."""
    from orchestrator.report.compare import DEFAULT_GATING, DIRECTED_METRICS

    if "all" in gates:
        return [metric.name for metric in DIRECTED_METRICS]
    return list(dict.fromkeys([*DEFAULT_GATING, *gates]))


@click.command("compare", cls=JsonCommand)
@click.argument("old", type=_STUDY_DIR)
@click.argument("new", type=_STUDY_DIR)
@click.option("--threshold", type=PERCENT, default=5.0, show_default=True,
              help="Smallest change (% of |old mean|) that counts as a regression.")
@click.option("--metric-threshold", "metric_thresholds", multiple=True, metavar="NAME=PCT",
              help="Threshold of one metric (repeatable).")
@click.option("--gate", "gates", multiple=True, metavar="METRIC",
              help="Also fail on a regression of METRIC (repeatable; 'all': every metric). "
              "Energy per token and throughput always gate.")
@click.option("--json", "as_json", is_flag=True, help="Print the comparison as JSON.")
@click.option("--markdown", "as_markdown", is_flag=True,
              help="Print a markdown summary (e.g. for a CI job summary).")
def compare(old: Path, new: Path, threshold: float, metric_thresholds: tuple[str, ...],
            gates: tuple[str, ...], as_json: bool, as_markdown: bool) -> None:
    """Compare study directory NEW against OLD: per configuration and metric, a verdict.

    Exits 1 when a gating metric (energy per token, throughput, and any --gate) regressed
    (a change in the worse direction beyond the threshold that a Welch test, adjusted for
    the number of comparisons (Benjamini-Hochberg), supports), was lost (measured in OLD, no
    value in NEW, or a configuration of the same design missing from NEW), was excluded
    (every NEW run flagged) or kept fewer than 2 usable NEW values. Exits 2 when not
    comparable.
    """
    from orchestrator.report.compare import compare_studies
    from orchestrator.report.compare_output import markdown, print_terminal
    from orchestrator.report.study_data import StudyData

    if as_json and as_markdown:
        fail(ConfigError("--json and --markdown are two outputs", fix="give one of them"))
    try:
        comparison = compare_studies(
            StudyData.load(old), StudyData.load(new), threshold,
            parse_metric_thresholds(metric_thresholds), gating_metrics(gates))
    except ConfigError as error:
        fail(error)
    if as_json:
        click.echo(comparison.model_dump_json(indent=1))
    elif as_markdown:
        click.echo(markdown(comparison), nl=False)
    else:
        print_terminal(comparison, out)
    for row in comparison.regressions:
        err.print(failure_line(row), highlight=False, markup=False)
    raise SystemExit(EXIT_FAILED if comparison.regressions else EXIT_OK)


def failure_line(row: MetricComparison) -> str:
    """What stderr says of one failing gating row: the verdict, metric, configuration, why."""
    where = f"{row.metric} of {row.label} ({row.config_hash})"
    if row.verdict == "lost":
        return (f"lost: {where} was measured in the old study ({row.old_n} values) and has no "
                "value in the new one")
    if row.verdict == "too few cycles (gating)":
        return (f"too few cycles (gating): {where} had {row.old_n} values in the old study and "
                f"{row.new_n} usable in the new one (flagged: "
                f"{', '.join(row.flagged_reasons) or 'none; values missing'})")
    if row.verdict == "excluded (flagged)":
        return (f"excluded (flagged): {where}: every new run was flagged "
                f"({', '.join(row.flagged_reasons) or 'no reason recorded'})")
    change = ("old mean about 0" if row.change_pct is None else f"{row.change_pct:+.1f} %")
    return f"regression: {where} {change} (q {row.q_value:.2g})"


@click.command("history", cls=JsonCommand)
@click.argument("directories", nargs=-1, required=True, type=_STUDY_DIR)
@click.option("--threshold", type=PERCENT, default=5.0, show_default=True,
              help="Smallest step (% of the mean before it) that counts.")
@click.option("--html", "html_file", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write one self-contained HTML page of the series here.")
@click.option("--json", "as_json", is_flag=True, help="Print the history as JSON.")
def history(directories: tuple[Path, ...], threshold: float, html_file: Path | None,
            as_json: bool) -> None:
    """Every headline metric across study DIRECTORIES (sorted by start), with its first step.

    A step is the earliest study from which a metric's level changed beyond the threshold,
    with Welch-test evidence, and stayed changed (see docs/compare.md).
    """
    from harness.io import write_text
    from orchestrator.report.history import load_series, study_history
    from orchestrator.report.history_output import html_page, print_terminal

    try:
        found = study_history(load_series(directories), threshold)
    except ConfigError as error:
        fail(error)
    if html_file is not None:
        write_text(html_file, html_page(found))
    if as_json:
        click.echo(found.model_dump_json(indent=1))
    else:
        print_terminal(found, out)
        if html_file is not None:
            out.print(f"wrote {html_file}", highlight=False, markup=False)
