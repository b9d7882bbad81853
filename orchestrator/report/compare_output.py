"""``llem compare``'s outputs: a terminal table and a markdown table (a GitHub job summary).

Rows not measured in either study (a metric the backend does not report) are left out of both
tables and counted under them; ``--json`` keeps every row.
"""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from orchestrator.report.compare import Comparison, MetricComparison
from orchestrator.report.study_data import METRICS_BY_NAME

VERDICT_STYLES = {"improved": "green", "regressed": "bold red", "no significant change": "dim",
                  "too few cycles": "yellow", "not measured": "dim", "lost": "bold red",
                  "excluded (flagged)": "bold red", "too few cycles (gating)": "bold red"}
MARKDOWN_MARKS = {"improved": "✅ improved", "regressed": "❌ regressed", "lost": "❌ lost",
                  "excluded (flagged)": "❌ excluded (flagged)",
                  "too few cycles": "⚠️ too few cycles",
                  "too few cycles (gating)": "❌ too few cycles (gating)"}


def shown_rows(comparison: Comparison) -> list[MetricComparison]:
    """The rows measured in at least one study."""
    return [row for row in comparison.rows if row.old_n or row.new_n]


def change_text(row: MetricComparison) -> str:
    """``+12.3 % [+8.1, +16.5]``: the change and its 95 % interval, ``old mean ≈ 0``, or a dash."""
    if row.change_pct is None:
        tested = row.old_mean is not None and row.new_mean is not None and row.p_value is not None
        return "old mean ≈ 0" if tested else "-"
    text = f"{row.change_pct:+.1f} %"
    if row.interval_pct is not None:
        low, high = row.interval_pct
        text += f" [{low:+.1f}, {high:+.1f}]"
    return text


def value_text(row: MetricComparison, value: float | None) -> str:
    """A mean in the metric's format, or a dash."""
    return "-" if value is None else format(value, METRICS_BY_NAME[row.metric].spec)


def verdict_text(row: MetricComparison) -> str:
    """The verdict, with the flag codes of an exclusion and "(not gating)" where it applies."""
    text = str(row.verdict)
    if row.flagged_reasons:
        text += f": {', '.join(row.flagged_reasons)}"
    return text if row.gating else f"{text} (not gating)"


def print_terminal(comparison: Comparison, console: Console) -> None:
    """The comparison as a rich table, then the unmatched configurations and environment."""
    table = Table(title=f"llem compare: {comparison.old.name} ({comparison.old.started_at}) -> "
                  f"{comparison.new.name} ({comparison.new.started_at})")
    for column in ("configuration", "metric", "old", "new", "change [95 % interval]",
                   "q", "verdict"):
        table.add_column(column, overflow="fold")
    for row in shown_rows(comparison):
        style = VERDICT_STYLES[row.verdict]
        verdict = verdict_text(row)
        table.add_row(row.label, f"{row.metric} ({row.unit})", value_text(row, row.old_mean),
                      value_text(row, row.new_mean), change_text(row),
                      "-" if row.q_value is None else f"{row.q_value:.3g}",
                      f"[{style}]{verdict}[/]")
    console.print(table)
    for line in footer_lines(comparison):
        console.print(line, highlight=False, markup=False)


def footer_lines(comparison: Comparison) -> list[str]:
    """What the tables cannot show: hidden rows, unmatched configurations, environment."""
    lines = []
    hidden = len(comparison.rows) - len(shown_rows(comparison))
    if hidden:
        lines.append(f"{hidden} metric rows not measured in either study are not shown")
    lost = {row.config_hash for row in comparison.rows if row.config_hash in
            {ref.config_hash for ref in comparison.only_in_old}}
    for side, refs in (("old", comparison.only_in_old), ("new", comparison.only_in_new)):
        if refs:
            how = "lost: same study design" if side == "old" and lost else "not compared"
            lines.append(f"only in the {side} study ({how}): "
                         + ", ".join(f"{ref.label} ({ref.config_hash})" for ref in refs))
    older = sorted({(row.label, row.baseline) for row in comparison.rows
                    if row.baseline and row.baseline != comparison.old.directory})
    if older:
        lines.append("compared with an older study (not measured in the newest): "
                     + ", ".join(f"{label} with {baseline}" for label, baseline in older))
    if comparison.environment_differences:
        lines.append("environment differences (likely causes): "
                     + "; ".join(comparison.environment_differences))
    lines.append(f"gating metrics: {', '.join(comparison.gating_metrics)}; threshold "
                 f"{comparison.threshold_pct:g} %; method: {comparison.method}")
    return lines


def markdown(comparison: Comparison) -> str:
    """A GitHub-flavoured markdown summary: a headline, a table and the footer lines."""
    regressions = comparison.regressions
    headline = (f"**{len(regressions)} regression(s)** in gating metrics" if regressions
                else "No regression in gating metrics")
    if any(row.verdict != "regressed" for row in regressions):
        headline += " (lost, excluded (flagged) or too few cycles (gating) included)"
    lines = [f"## llem compare: {comparison.old.name} → {comparison.new.name}", "",
             headline, "",
             "| configuration | metric | old | new | change [95 % interval] | q | verdict |",
             "|---|---|---:|---:|---|---:|---|"]
    for row in shown_rows(comparison):
        verdict = MARKDOWN_MARKS.get(row.verdict, row.verdict)
        if row.flagged_reasons:
            verdict += f": {', '.join(row.flagged_reasons)}"
        gate = "" if row.gating else " (not gating)"
        q = "-" if row.q_value is None else f"{row.q_value:.3g}"
        lines.append(f"| `{row.label}` | `{row.metric}` ({row.unit}) | "
                     f"{value_text(row, row.old_mean)} | {value_text(row, row.new_mean)} | "
                     f"{change_text(row)} | {q} | {verdict}{gate} |")
    lines.append("")
    lines += [f"- {line}" for line in footer_lines(comparison)]
    return "\n".join(lines) + "\n"
