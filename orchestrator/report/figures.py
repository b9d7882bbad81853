"""The report's Plotly figures, each drawn only from figures the study measured.

Every builder returns None when it has nothing to draw (no configuration measured its
figures), so that the page says why instead of showing an empty box. Values are read from
``stats.json`` (means and 95 % intervals) or, where stats.json has no entry (cold start), from
the runs' ``result.json`` fields named in each docstring.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from statistics import fmean

import plotly.graph_objects as go  # type: ignore[import-untyped]
from plotly.subplots import make_subplots  # type: ignore[import-untyped]

from orchestrator.report.pareto import Better, Point, pareto_front
from orchestrator.report.power import RunTrace
from orchestrator.report.study_data import METRICS_BY_NAME, Configuration

J_PER_TOKEN = "energy_per_output_token_j"  # noqa: S105 - a metric name
THROUGHPUT = "output_tokens_per_s"
LATENCY_P90 = "latency_e2e_p90_s"
BACKEND_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")
PHASE_COLOURS = {"baseline": "#9ecae1", "load": "#fdae6b", "warmup": "#fdd0a2",
                 "measure": "#a1d99b", "prefill_pass": "#bcbddc", "prefill": "#bcbddc",
                 "decode": "#c7e9c0"}
PHASE_NAMES = {"baseline": "baseline", "load": "load", "warmup": "warmup",
               "measure": "measurement window", "prefill_pass": "prefill pass",
               "prefill": "prefill", "decode": "decode"}
LAYOUT = {"template": "none", "font": {"family": "system-ui, sans-serif", "size": 12},
          "margin": {"l": 70, "r": 30, "t": 50, "b": 60}, "hoverlabel": {"align": "left"},
          "legend": {"orientation": "h", "y": -0.25, "yanchor": "top"},
          "xaxis": {"automargin": True}, "yaxis": {"automargin": True}}
DASHES = ("solid", "dash", "dot", "dashdot", "longdash")


def display_name(config: Configuration) -> str:
    """The configuration's label, with its environment id when it has several environments."""
    _, at, environment = config.key.partition("@")
    return f"{config.label} @{environment}" if at else config.label


def axis_title(metric: str) -> str:
    """``name (unit)`` of a headline metric."""
    return f"{metric} ({METRICS_BY_NAME[metric].unit})"


def backend_colour(backends: Sequence[str], backend: str) -> str:
    """One colour per backend, stable within a report."""
    return BACKEND_COLOURS[sorted(set(backends)).index(backend) % len(BACKEND_COLOURS)]


def hover_text(config: Configuration, swept: Sequence[str], *metrics: str) -> str:
    """A configuration's name, swept settings and the given metrics' means, for hover."""
    lines = [f"<b>{html.escape(display_name(config))}</b>", f"backend: {config.backend}"]
    lines += [f"{key}: {html.escape(str(config.settings[key]))}" for key in swept
              if key != "backend" and config.settings.get(key) is not None]
    for metric in metrics:
        mean = config.mean(metric)
        lines.append(f"{metric}: {'n/a' if mean is None else f'{mean:.4g}'}")
    return "<br>".join(lines)


def _figure(title: str, height: int = 420) -> go.Figure:
    figure = go.Figure()
    figure.update_layout(title={"text": title}, height=height, **LAYOUT)
    return figure


def pareto_figure(configs: Sequence[Configuration], swept: Sequence[str], x_metric: str,
                  y_metric: str = J_PER_TOKEN) -> go.Figure | None:
    """Y against x per configuration; the front's members bold, dominated points faded."""
    points = [Point(c.key, c.mean(x_metric), c.mean(y_metric)) for c in configs]
    measured = [(c, p) for c, p in zip(configs, points, strict=True)
                if p.x is not None and p.y is not None]
    if not measured:
        return None
    x_better, y_better = _better(x_metric), _better(y_metric)
    front = pareto_front(points, x_better, y_better)
    figure = _figure(f"{y_metric} against {x_metric}")
    backends = [c.backend for c in configs]
    for backend in sorted(set(backends)):
        for on_front in (True, False):
            chosen = [(c, p) for c, p in measured
                      if c.backend == backend and (p.key in front) == on_front]
            if chosen:
                figure.add_trace(_pareto_trace(chosen, swept, backends, on_front, x_metric,
                                               y_metric))
    line = sorted((p.x, p.y) for _, p in measured if p.key in front)
    figure.add_trace(go.Scatter(x=[x for x, _ in line], y=[y for _, y in line], mode="lines",
                                name="Pareto front", line={"dash": "dot", "color": "#444"},
                                hoverinfo="skip"))
    figure.update_xaxes(title_text=f"{axis_title(x_metric)}, {x_better} is better")
    figure.update_yaxes(title_text=f"{axis_title(y_metric)}, {y_better} is better")
    return figure


def _better(metric: str) -> Better:
    better = METRICS_BY_NAME[metric].better
    if better is None:
        raise ValueError(f"{metric} has no better direction and cannot span a Pareto front")
    return better


def _pareto_trace(chosen: list[tuple[Configuration, Point]], swept: Sequence[str],
                  backends: Sequence[str], on_front: bool, x_metric: str,
                  y_metric: str) -> go.Scatter:
    status = "on the Pareto front" if on_front else "dominated"
    backend = chosen[0][0].backend
    return go.Scatter(
        x=[p.x for _, p in chosen], y=[p.y for _, p in chosen], mode="markers",
        name=f"{backend}: {'front' if on_front else 'dominated'}", legendgroup=backend,
        opacity=1.0 if on_front else 0.35,
        marker={"size": 13 if on_front else 10, "symbol": "diamond" if on_front else "circle",
                "color": backend_colour(backends, backend),
                "line": {"width": 1.5 if on_front else 0, "color": "#000"}},
        hovertext=[f"{hover_text(c, swept, x_metric, y_metric)}<br>{status}"
                   for c, _ in chosen],
        hovertemplate="%{hovertext}<extra></extra>")


def _interval(config: Configuration, metric: str) -> tuple[float, float, str]:
    """Distances from the mean to the 95 % interval's ends, and the interval in words."""
    stats = config.metric(metric)
    assert stats is not None and stats.mean is not None
    if stats.ci is None:
        return 0.0, 0.0, stats.ci_note or "no interval"
    low, high = stats.ci
    return high - stats.mean, stats.mean - low, f"95 % CI [{low:.4g}, {high:.4g}], n={stats.n}"


def metric_bars(configs: Sequence[Configuration], swept: Sequence[str],
                metric: str) -> go.Figure | None:
    """A metric's mean per configuration with its 95 % interval, one colour per backend."""
    measured = [c for c in configs if c.mean(metric) is not None]
    if not measured:
        return None
    figure = _figure(f"{metric} per configuration (mean, 95 % interval)")
    backends = [c.backend for c in configs]
    for backend in sorted(set(backends)):
        mine = [c for c in measured if c.backend == backend]
        if not mine:
            continue
        intervals = [_interval(c, metric) for c in mine]
        figure.add_trace(go.Bar(
            x=[display_name(c) for c in mine], y=[c.mean(metric) for c in mine], name=backend,
            offsetgroup="all", marker_color=backend_colour(backends, backend),
            error_y={"type": "data", "symmetric": False, "array": [i[0] for i in intervals],
                     "arrayminus": [i[1] for i in intervals]},
            hovertext=[f"{hover_text(c, swept, metric)}<br>{i[2]}"
                       for c, i in zip(mine, intervals, strict=True)],
            hovertemplate="%{hovertext}<extra></extra>"))
    figure.update_yaxes(title_text=axis_title(metric))
    figure.update_xaxes(tickangle=-30)
    return figure


def sweep_figure(configs: Sequence[Configuration], swept: Sequence[str], setting: str,
                 metric: str) -> go.Figure | None:
    """A metric against one swept setting, one line per combination of the other settings."""
    lines: dict[str, list[Configuration]] = {}
    for config in configs:
        if config.settings.get(setting) is not None and config.mean(metric) is not None:
            lines.setdefault(_line_name(config, swept, setting), []).append(config)
    if not lines:
        return None
    figure = _figure(f"{metric} against {setting}")
    backends = sorted({c.backend for c in configs})
    others = [key for key in swept if key != setting]
    for name, members in sorted(lines.items(), key=lambda line: tuple(
            _sort_key(line[1][0].settings.get(key)) for key in others)):
        members.sort(key=lambda c: _sort_key(c.settings[setting]))
        intervals = [_interval(c, metric) for c in members]
        dash = DASHES[backends.index(members[0].backend) % len(DASHES)]
        figure.add_trace(go.Scatter(
            x=[_axis_value(c.settings[setting]) for c in members],
            y=[c.mean(metric) for c in members], mode="lines+markers", name=name,
            line={"dash": dash},
            error_y={"type": "data", "symmetric": False, "array": [i[0] for i in intervals],
                     "arrayminus": [i[1] for i in intervals]},
            hovertext=[f"{hover_text(c, swept, metric)}<br>{i[2]}"
                       for c, i in zip(members, intervals, strict=True)],
            hovertemplate="%{hovertext}<extra></extra>"))
    figure.update_xaxes(title_text=setting, **_setting_axis(configs, setting))
    figure.update_yaxes(title_text=axis_title(metric))
    return figure


def _line_name(config: Configuration, swept: Sequence[str], setting: str) -> str:
    others = [f"{key.split('.')[-1]}={config.settings[key]}" for key in swept
              if key not in (setting, "backend") and config.settings.get(key) is not None]
    return ", ".join([config.backend, *others])


def _sort_key(value: object) -> tuple[int, float, str]:
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    return (0, float(value), "") if is_number else (1, 0.0, str(value))  # type: ignore[arg-type]


def _axis_value(value: object) -> object:
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else str(value)


def _setting_axis(configs: Sequence[Configuration], setting: str) -> dict[str, object]:
    """A setting's axis: words as categories, numbers ticked at the swept values.

    Numbers that span 8x or more (batch sizes 1 to 64) get a log axis.
    """
    values = [c.settings.get(setting) for c in configs if c.settings.get(setting) is not None]
    numbers = sorted({float(v) for v in values
                      if isinstance(v, (int, float)) and not isinstance(v, bool)})
    if len(numbers) < len(set(map(repr, values))) or not numbers:
        return {"type": "category"}
    return numeric_axis(numbers)


def numeric_axis(numbers: Sequence[float]) -> dict[str, object]:
    """An axis ticked at ``numbers`` (sorted, distinct); log when they span 8x or more."""
    log = numbers[0] > 0 and numbers[-1] >= 8 * numbers[0]
    return {"type": "log" if log else "linear", "tickvals": list(numbers),
            "ticktext": [f"{n:g}" for n in numbers]}


def run_mean(config: Configuration, field: str) -> float | None:
    """Mean of ``energy.<field>`` over the configuration's used runs (None when none has it)."""
    values = [getattr(run.energy, field) for run in config.used_runs]
    present = [float(v) for v in values if v is not None]
    return fmean(present) if present else None


def cold_start_figure(configs: Sequence[Configuration], field: str, unit: str,
                      title: str) -> go.Figure | None:
    """Mean of a cold-start field (``energy.cold_start_*``) per configuration, by backend."""
    figure = _figure(title, height=380)
    backends = [c.backend for c in configs]
    for backend in sorted(set(backends)):
        mine = [(c, run_mean(c, field)) for c in configs if c.backend == backend]
        drawn = [(c, v) for c, v in mine if v is not None]
        if drawn:
            figure.add_trace(go.Bar(
                x=[display_name(c) for c, _ in drawn], y=[v for _, v in drawn], name=backend,
                offsetgroup="all", marker_color=backend_colour(backends, backend),
                hovertemplate=f"%{{x}}<br>{field}: %{{y:.4g}} {unit}<extra></extra>"))
    if not figure.data:
        return None
    figure.update_yaxes(title_text=f"{field} ({unit})")
    figure.update_xaxes(tickangle=-30)
    return figure


def energy_split_figure(configs: Sequence[Configuration]) -> go.Figure | None:
    """Window energy split into idle (baseline x window) and dynamic, per configuration."""
    split = [(c, c.mean("energy_j"), c.mean("energy_dynamic_j")) for c in configs]
    drawn = [(c, total, dynamic) for c, total, dynamic in split
             if total is not None and dynamic is not None]
    if not drawn:
        return None
    figure = _figure("Window energy: idle and dynamic (means)")
    names = [display_name(c) for c, _, _ in drawn]
    figure.add_trace(go.Bar(x=names, y=[total - dynamic for _, total, dynamic in drawn],
                            name="idle (energy_j - energy_dynamic_j)", marker_color="#bdbdbd",
                            hovertemplate="%{x}<br>idle: %{y:.4g} J<extra></extra>"))
    figure.add_trace(go.Bar(x=names, y=[dynamic for _, _, dynamic in drawn],
                            name="dynamic (energy_dynamic_j)", marker_color="#e6550d",
                            hovertemplate="%{x}<br>dynamic: %{y:.4g} J<extra></extra>"))
    figure.update_layout(barmode="relative")
    figure.update_yaxes(title_text="energy (J)")
    figure.update_xaxes(tickangle=-30)
    return figure


def power_figure(trace: RunTrace, title: str) -> go.Figure | None:
    """Power per GPU with phases shaded, temperature on a second axis; None without power."""
    if not trace.power_w:
        return None
    figure = make_subplots(specs=[[{"secondary_y": True}]])
    figure.update_layout(title={"text": title, "font": {"size": 13}, "x": 0.02, "xanchor": "left"},
                         height=340, **LAYOUT)
    for series in trace.power_w:
        figure.add_trace(go.Scatter(x=series.t_s, y=series.values, mode="lines",
                                    name=f"GPU {series.gpu_index} power (W)"),
                         secondary_y=False)
    for series in trace.temperature_c:
        figure.add_trace(go.Scatter(x=series.t_s, y=series.values, mode="lines",
                                    line={"dash": "dot"},
                                    name=f"GPU {series.gpu_index} temperature (degC)"),
                         secondary_y=True)
    shaded = [s for s in trace.phases if s.phase in PHASE_COLOURS and s.end_s > s.start_s]
    for number, span in enumerate(shaded):
        # Alternate label heights so that a short phase's label does not cover the next one's.
        figure.add_vrect(x0=span.start_s, x1=span.end_s, fillcolor=PHASE_COLOURS[span.phase],
                         opacity=0.35, layer="below", line_width=0,
                         annotation_text=PHASE_NAMES[span.phase],
                         annotation_position="top left", annotation_font_size=10,
                         annotation_yshift=-12 * (number % 2))
    figure.update_xaxes(title_text="time since the run's first phase (s)")
    figure.update_yaxes(title_text="power (W)", secondary_y=False, rangemode="tozero")
    figure.update_yaxes(title_text="temperature (degC)", secondary_y=True, tickformat=".1f",
                        showgrid=False)
    return figure
