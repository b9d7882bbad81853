"""The serving figure: J/token, TTFT p90 and TPOT p90 against the requested rate, per line.

Three panels share the rate axis, one line per backend and configuration in each
(:mod:`orchestrator.report.serving`). Latency is shown as time to first token and time per
output token, the two figures ``slo:`` sets targets on, rather than end-to-end latency, which
mixes both with the output length. A sustained rate is a filled circle, a saturated one an x;
the saturation point is a star (open, labelled "not reached", when no rate of the line
saturated), as the title's key says. Where a line has no J/token the first panel says so; a
panel is never left empty without a word.
"""

from __future__ import annotations

import html
import textwrap
from collections.abc import Sequence

import plotly.graph_objects as go  # type: ignore[import-untyped]
from plotly.subplots import make_subplots  # type: ignore[import-untyped]

from orchestrator.report.figures import BACKEND_COLOURS, DASHES, LAYOUT, numeric_axis
from orchestrator.report.serving import (
    ACHIEVED,
    J_PER_TOKEN,
    OFFERED,
    SERVING_METRICS,
    TPOT_P90,
    TTFT_P90,
    ServingLine,
    ServingPoint,
    mean_ci,
    saturated_text,
)

PANELS = ((J_PER_TOKEN, "J per output token (J/token)"),
          (TTFT_P90, "TTFT p90 (s), from arrival"),
          (TPOT_P90, "TPOT p90 (s)"))
LINE_COLOURS = (*BACKEND_COLOURS, "#e377c2", "#17becf", "#bcbd22", "#7f7f7f")
NOTE_STYLE = {"showarrow": False, "xref": "paper", "yref": "paper", "align": "left",
              "bgcolor": "rgba(255, 244, 229, 0.85)", "bordercolor": "#f0a030",
              "font": {"size": 11}}
KEY = "circle: sustained; x: saturated; star: saturation point; open star: not reached"


def serving_figure(lines: Sequence[ServingLine], energy_gap: str | None) -> go.Figure | None:
    """The three panels, or None when no line has any of their figures.

    Args:
        lines: the study's lines.
        energy_gap: which points lack J/token and why (written in the first panel); None
            when every point has it.
    """
    if not any(_drawn(line, metric) for line in lines for metric, _ in PANELS):
        return None
    figure = make_subplots(rows=len(PANELS), cols=1, shared_xaxes=True, vertical_spacing=0.07,
                           subplot_titles=[title for _, title in PANELS])
    figure.update_layout(title={"text": "Against the requested rate (mean, 95 % interval)"
                                        f"<br><sup>{KEY}</sup>"},
                         height=300 * len(PANELS), **LAYOUT)
    figure.update_layout(legend={"orientation": "h", "y": -0.08, "yanchor": "top"},
                         margin={"t": 100})
    backends = sorted({line.backend for line in lines})
    for number, line in enumerate(lines):
        style = {"color": LINE_COLOURS[number % len(LINE_COLOURS)],
                 "dash": DASHES[backends.index(line.backend) % len(DASHES)]}
        _add_line(figure, line, style)
    _add_notes(figure, lines, energy_gap)
    rates = sorted({point.rate_rps for line in lines for point in line.points})
    figure.update_xaxes(**numeric_axis(rates))
    figure.update_xaxes(title_text="requested rate (req/s): serving.request_rate_rps",
                        row=len(PANELS), col=1)
    for row, (metric, _) in enumerate(PANELS, start=1):
        figure.update_yaxes(title_text=SERVING_METRICS[metric].unit, rangemode="tozero",
                            row=row, col=1)
    return figure


def _drawn(line: ServingLine, metric: str) -> list[ServingPoint]:
    return [point for point in line.points if point.mean(metric) is not None]


def _add_line(figure: go.Figure, line: ServingLine, style: dict[str, str]) -> None:
    """The line in every panel where it has points; the legend entry on its first."""
    labelled = False
    for row, (metric, title) in enumerate(PANELS, start=1):
        drawn = _drawn(line, metric)
        if not drawn:
            continue
        figure.add_trace(_line_trace(line, drawn, metric, title, style, not labelled),
                         row=row, col=1)
        marked = [point for point in drawn if line.is_marked(point)]
        if marked:
            figure.add_trace(_mark_trace(line, marked[0], metric, title, style, not labelled),
                             row=row, col=1)
        labelled = True


def _line_trace(line: ServingLine, drawn: list[ServingPoint], metric: str, title: str,
                style: dict[str, str], legend: bool) -> go.Scatter:
    intervals = [_interval(point, metric) for point in drawn]
    return go.Scatter(
        x=[point.rate_rps for point in drawn], y=[point.mean(metric) for point in drawn],
        mode="lines+markers", name=line.name, legendgroup=line.name, showlegend=legend,
        line=style,
        marker={"symbol": ["x" if point.saturated else "circle" for point in drawn],
                "size": [11 if point.saturated else 8 for point in drawn],
                "color": style["color"]},
        error_y={"type": "data", "symmetric": False, "array": [i[0] for i in intervals],
                 "arrayminus": [i[1] for i in intervals]},
        hovertext=[_hover(line, point, metric, title) for point in drawn],
        hovertemplate="%{hovertext}<extra></extra>")


def _mark_trace(line: ServingLine, point: ServingPoint, metric: str, title: str,
                style: dict[str, str], labelled: bool) -> go.Scatter:
    reached = line.saturation.reached
    label = "saturation point" if reached else "not reached"
    return go.Scatter(
        x=[point.rate_rps], y=[point.mean(metric)],
        mode="markers+text" if labelled else "markers", text=[label] if labelled else None,
        textposition="top center", textfont={"size": 10, "color": style["color"]},
        name=f"{line.name}: {label}", legendgroup=line.name, showlegend=False,
        marker={"symbol": "star" if reached else "star-open", "size": 17,
                "color": style["color"], "line": {"width": 1, "color": "#000"}},
        hovertext=[f"{_hover(line, point, metric, title)}<br><b>{label}</b>: "
                   f"{html.escape(line.saturation.text)}"],
        hovertemplate="%{hovertext}<extra></extra>")


def _interval(point: ServingPoint, metric: str) -> tuple[float, float]:
    """Distances from the mean to the 95 % interval's ends (0 where there is none)."""
    stats = point.figures.get(metric)
    if stats is None or stats.mean is None or stats.ci is None:
        return 0.0, 0.0
    return stats.ci[1] - stats.mean, stats.mean - stats.ci[0]


def _hover(line: ServingLine, point: ServingPoint, metric: str, title: str) -> str:
    stats = point.figures.get(metric)
    n = f", n={stats.n}" if stats is not None else ""
    return "<br>".join([
        f"<b>{html.escape(line.name)}</b> ({html.escape(point.config.label)})",
        f"requested {point.rate_rps:g} req/s; offered {mean_ci(point.figures[OFFERED], '.3g')}"
        f", achieved {mean_ci(point.figures[ACHIEVED], '.3g')}",
        f"{html.escape(title)}: {mean_ci(stats)}{n}",
        f"saturated: {html.escape(saturated_text(line, point))}"])


def _add_notes(figure: go.Figure, lines: Sequence[ServingLine], energy_gap: str | None) -> None:
    """Say in each panel what it lacks: J/token where energy is null, a panel with no point."""
    for row, (metric, title) in enumerate(PANELS, start=1):
        empty = not any(_drawn(line, metric) for line in lines)
        text = energy_gap if metric == J_PER_TOKEN else None
        if empty and text is None:
            text = f"{title}: no run measured it"
        if text is not None:
            wrapped = "<br>".join(textwrap.wrap(html.escape(text), 110))
            # On the page, not on the panel's axes: Plotly draws no axes for a panel without a
            # trace, and a note referring to them lands elsewhere. Bottom left of a drawn panel,
            # where J/token (from zero, falling with the rate) rarely has points.
            low, high = figure.get_subplot(row, 1).yaxis.domain
            position = ({"x": 0.5, "y": (low + high) / 2, "xanchor": "center",
                         "yanchor": "middle"} if empty
                        else {"x": 0.01, "y": low + 0.01 * (high - low), "xanchor": "left",
                              "yanchor": "bottom"})
            figure.add_annotation(text=wrapped, **position, **NOTE_STYLE)
