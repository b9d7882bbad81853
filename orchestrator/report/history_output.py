"""``llem history``'s outputs: a terminal table and one self-contained HTML page.

The page inlines plotly's JavaScript once (``plotly.offline.get_plotlyjs``), so it opens
offline; each metric is one figure with a line per configuration, and a step is a marked point.
"""

from __future__ import annotations

import html
from typing import Any

from rich.console import Console
from rich.table import Table

from orchestrator.report.history import History, Series
from orchestrator.report.study_data import METRICS_BY_NAME


def study_label(history: History, index: int) -> str:
    """``#2 nightly 2026-11-30T10:31``: position, name and start minute of a study."""
    study = history.studies[index]
    return f"#{index + 1} {study.name} {study.started_at[:16]}"


def step_text(series: Series) -> str:
    """``#3 +12.3 % (worse, p 0.001)``, or a dash without a step."""
    step = series.step
    if step is None:
        return "-"
    return (f"#{step.study_index + 1} {step.change_pct:+.1f} % "
            f"({'worse' if step.worse else 'better'}, p {step.p_value:.2g})")


def print_terminal(history: History, console: Console) -> None:
    """One row per configuration and metric, a column per study (#1, #2, ...), then the step."""
    table = Table(title=f"llem history: {len(history.studies)} studies, steps beyond "
                  f"{history.threshold_pct:g} %")
    table.add_column("configuration", overflow="fold")
    table.add_column("metric", overflow="fold")
    for index in range(len(history.studies)):
        table.add_column(f"#{index + 1}", overflow="fold")
    table.add_column("step", overflow="fold")
    for series in history.series:
        table.add_row(series.label, f"{series.metric} ({series.unit})", *_cells(series),
                      _styled_step(series))
    console.print(table)
    for index, study in enumerate(history.studies):
        console.print(f"{study_label(history, index)}: {study.directory}", highlight=False,
                      markup=False)
    console.print(f"step rule: {history.rule}", highlight=False, markup=False)


def _cells(series: Series) -> list[str]:
    spec = METRICS_BY_NAME[series.metric].spec
    cells = ["-" if mean is None else format(mean, spec) for mean in series.means]
    if series.step is not None:
        style = "bold red" if series.step.worse else "bold green"
        index = series.step.study_index
        cells[index] = f"[{style}]▶ {cells[index]}[/]"
    return cells


def _styled_step(series: Series) -> str:
    if series.step is None:
        return "-"
    return f"[{'red' if series.step.worse else 'green'}]{step_text(series)}[/]"


def html_page(history: History) -> str:
    """The whole page: plotly's JS inlined once, a figure per metric, the rule and the studies."""
    from plotly.offline import get_plotlyjs  # type: ignore[import-untyped]

    metrics = list(dict.fromkeys(series.metric for series in history.series))
    figures = "\n".join(_figure_html(history, metric) for metric in metrics)
    studies = "".join(f"<li>{html.escape(study_label(history, i))}: "
                      f"{html.escape(study.directory)}</li>"
                      for i, study in enumerate(history.studies))
    return (f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>llem history</title>"
            f"<script type='text/javascript'>{get_plotlyjs()}</script></head><body>"
            f"<h1>llem history</h1><p>Steps (a star; the legend gives the change): "
            f"{html.escape(history.rule)};"
            f" threshold {history.threshold_pct:g} %.</p><ol style='list-style:none'>{studies}"
            f"</ol>{figures}</body></html>\n")


def _figure_html(history: History, metric: str) -> str:
    import plotly.graph_objects as go  # type: ignore[import-untyped]

    figure = go.Figure()
    labels = [study_label(history, i) for i in range(len(history.studies))]
    unit = ""
    for series in (s for s in history.series if s.metric == metric):
        unit = series.unit
        figure.add_trace(go.Scatter(**_trace(series, labels)))
    figure.update_layout(title=f"{metric} ({unit}), better {_better(metric)}",
                         xaxis_title="study", yaxis_title=unit, height=420)
    html_text: str = figure.to_html(full_html=False, include_plotlyjs=False)
    return html_text


def _trace(series: Series, labels: list[str]) -> dict[str, Any]:
    step = series.step
    sizes = [14 if step is not None and i == step.study_index else 7
             for i in range(len(labels))]
    symbols = ["star" if step is not None and i == step.study_index else "circle"
               for i in range(len(labels))]
    name = series.label + ("" if step is None else f" (step {step.change_pct:+.1f} %)")
    return {"x": labels, "y": series.means, "mode": "lines+markers", "name": name,
            "marker": {"size": sizes, "symbol": symbols}, "connectgaps": True}


def _better(metric: str) -> str:
    return METRICS_BY_NAME[metric].better or "-"
