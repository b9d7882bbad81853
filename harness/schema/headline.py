"""The headline metrics: one table, read by every study-level output.

``results.parquet`` has one column per metric, ``stats.json`` one statistics entry per metric,
and ``llem run``'s table shows the metrics that have a ``column`` header. Each metric names the
result field it is read from, so a renamed field fails the test that resolves every path.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from harness.schema.result import ExperimentResult


@dataclass(frozen=True)
class HeadlineMetric:
    """One headline metric of a run.

    Attributes:
        name: column of results.parquet and key of stats.json's ``metrics``.
        path: attribute path inside ``ExperimentResult`` (e.g. ``("latency", "e2e", "p50_s")``).
        unit: the unit of the value (``J``, ``J/token``, ``s``, ``W``, ``token/s``, ...).
        description: what it is, in a user's words.
        column: header in ``llem run``'s summary table; None: only in the files.
        spec: format spec of the terminal column.
        better: which way is an improvement (``lower`` or ``higher``); None for counts that
            describe the workload rather than its cost (``llem compare`` gives them no verdict).
    """

    name: str
    path: tuple[str, ...]
    unit: str
    description: str
    column: str | None = None
    spec: str = ".4g"
    better: Literal["lower", "higher"] | None = None

    def value(self, result: ExperimentResult) -> float | int | None:
        """The metric of ``result`` (counts stay integers), or None where the path is null."""
        node: Any = result
        for step in self.path:
            node = getattr(node, step, None)
            if node is None:
                return None
        if not isinstance(node, (int, float)):
            raise TypeError(f"headline metric {self.name}: {node!r} is not a number")
        return node


def _m(name: str, path: str, unit: str, description: str, column: str | None = None,
       spec: str = ".4g", better: Literal["lower", "higher"] | None = "lower") -> HeadlineMetric:
    return HeadlineMetric(name, tuple(path.split(".")), unit, description, column, spec, better)


HEADLINE_METRICS: tuple[HeadlineMetric, ...] = (
    _m("energy_per_output_token_j", "energy.energy_per_output_token_j", "J/token",
       "Window energy per output token, idle power included.", "J/token"),
    _m("energy_dynamic_per_output_token_j", "energy.energy_dynamic_per_output_token_j",
       "J/token", "Window energy above idle power per output token."),
    _m("energy_j", "energy.energy_j", "J", "Window energy, summed over the measured GPUs.",
       "energy J"),
    _m("energy_dynamic_j", "energy.energy_dynamic_j", "J",
       "energy_j minus idle power times the window length."),
    _m("tokens_per_joule", "energy.tokens_per_joule", "token/J", "Output tokens per joule.",
       better="higher"),
    _m("mean_power_w", "energy.mean_power_w", "W", "Mean power over the window.",
       better=None),
    _m("host_cpu_package_energy_j", "energy.host.cpu_package_energy_j", "J",
       "The host's CPU packages' energy over the window (RAPL), not part of energy_j.",
       "CPU J"),
    _m("host_dram_energy_j", "energy.host.dram_energy_j", "J",
       "The host's DRAM energy over the window (RAPL), not part of energy_j."),
    _m("prefill_energy_j", "energy.prefill.energy_j", "J", "Energy of the prefill phase."),
    _m("decode_energy_j", "energy.decode.energy_j", "J", "Energy of the decode phase."),
    _m("duration_s", "throughput.duration_s", "s", "Measurement window length.", "window s",
       ".2f", better=None),
    _m("input_tokens", "throughput.input_tokens", "token", "Prompt tokens (padding excluded).",
       better=None),
    _m("output_tokens", "throughput.output_tokens", "token", "Output tokens delivered.",
       better=None),
    _m("generated_positions", "throughput.generated_positions", "token",
       "Decode positions the backend computed.", better=None),
    _m("cached_prompt_tokens", "throughput.cached_prompt_tokens", "token",
       "Prompt tokens served from a cross-request cache.", better=None),
    _m("output_tokens_per_s", "throughput.output_tokens_per_s", "token/s",
       "Output tokens per second of window.", "tokens/s", ".1f", better="higher"),
    _m("requests_per_s", "throughput.requests_per_s", "request/s",
       "Requests per second of window.", better="higher"),
    _m("latency_e2e_p50_s", "latency.e2e.p50_s", "s", "Median end-to-end request latency."),
    _m("latency_e2e_p90_s", "latency.e2e.p90_s", "s", "90th percentile end-to-end latency."),
    _m("latency_e2e_p99_s", "latency.e2e.p99_s", "s", "99th percentile end-to-end latency."),
    _m("latency_ttft_p50_s", "latency.ttft.p50_s", "s", "Median time to first token."),
    _m("latency_ttft_p90_s", "latency.ttft.p90_s", "s", "90th percentile time to first token."),
    _m("latency_tpot_p50_s", "latency.tpot.p50_s", "s", "Median time per output token."),
    _m("latency_tpot_p90_s", "latency.tpot.p90_s", "s", "90th percentile time per output token."),
    _m("latency_itl_p50_s", "latency.itl.p50_s", "s", "Median inter-token latency."),
    _m("serving_achieved_rate_rps", "serving.achieved_rate_rps", "request/s",
       "Serving mode: requests completed per second of window.", better="higher"),
    _m("serving_goodput_rps", "serving.goodput_rps", "request/s",
       "Serving mode: requests meeting every SLO per second of window.", better="higher"),
    _m("serving_queueing_delay_p90_s", "serving.queueing_delay.p90_s", "s",
       "Serving mode: 90th percentile of arrival to first scheduling."),
)
"""Every headline metric, in the order the outputs list them."""

TERMINAL_METRICS: tuple[HeadlineMetric, ...] = tuple(
    metric for metric in HEADLINE_METRICS if metric.column is not None)
"""The metrics ``llem run``'s summary table shows, in its column order."""


def markdown_table() -> str:
    """The table as markdown, as docs/results.md shows it (a test keeps the two equal)."""
    lines = ["| metric | unit | result field | terminal column | better | meaning |",
             "|---|---|---|---|---|---|"]
    lines += [f"| `{m.name}` | {m.unit} | `{'.'.join(m.path)}` | {m.column or ''} | "
              f"{m.better or ''} | {m.description} |" for m in HEADLINE_METRICS]
    return "\n".join(lines) + "\n"
